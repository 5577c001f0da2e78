"""Security profiles 2 and 3 over real TLS on loopback, and certificate management
(A00-A03, M03-M05) against the CSMS; every certificate is made in the test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from ocpp.v201 import call

from chargepoint.adapters.ocpp_client import OcppClientSettings
from chargepoint.adapters.ocpp_security import (
    FileCertificateStore,
    certificate_hash,
    client_tls_context,
)
from chargepoint.ocpp import device_model as dm

from .csms import Csms
from .helpers import IDENTITY, PASSWORD
from .pki import Issued, issue, make_ca, server_context, sign_csr
from .test_client import FAST_RECONNECT, IDENT, preset, running, set_variables, settings

LOGGER = "chargepoint.adapters.ocpp_client"


@pytest.fixture(scope="module")
def cas() -> dict[str, Issued]:
    return {"root": make_ca("Test CSMS root"), "other": make_ca("Unrelated CA")}


def tls_settings(
    port: int, state_file: Path, *, profile: int = 2, roots: Path | None = None, **extra: Any
) -> OcppClientSettings:
    return OcppClientSettings(
        csms_url=f"wss://127.0.0.1:{port}/ocpp",
        identity=IDENT,
        station=IDENTITY,
        state_file=state_file,
        basic_auth_password=PASSWORD,
        security_profile=profile,
        csms_root_certificates=roots,
        organization_name="OpenV2G Test",
        **extra,
    )


def roots_file(folder: Path, ca: Issued) -> Path:
    path = folder / "roots.pem"
    path.write_text(ca.pem)
    return path


class LogWatch(logging.Handler):
    """Wakes the test when a log line containing ``needle`` appears."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = asyncio.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.lines.append(message)
        if self.needle in message:
            self.seen.set()


@contextlib.contextmanager
def watching(needle: str) -> Iterator[LogWatch]:
    watch = LogWatch(needle)
    logger = logging.getLogger(LOGGER)
    logger.addHandler(watch)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(previous)


# ---------------------------------------------------------------- profile 2
async def test_tc_a_04_profile_2_connects_with_the_configured_root(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    # TC_A_04-like: server certificate valid -> connected, Basic auth inside TLS
    tls = server_context(tmp_path, issue(cas["root"], "csms"))
    async with Csms(tls=tls) as csms:
        cfg = tls_settings(csms.port, tmp_path / "s.db", roots=roots_file(tmp_path, cas["root"]))
        async with running(cfg):
            await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
            assert csms.requests[0].headers["Authorization"].startswith("Basic ")


async def test_tc_a_05_profile_2_refuses_an_unknown_ca_says_why_and_reports_it(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    # TC_A_05-like: not signed by the CSMSRootCertificate; once the right root is
    # installed the next attempt connects and the security event is delivered (A00).
    preset(tmp_path / "s.db", FAST_RECONNECT)
    tls = server_context(tmp_path, issue(cas["root"], "csms"))
    with watching("unknown CA") as watch:
        async with Csms(tls=tls) as csms:
            cfg = tls_settings(
                csms.port, tmp_path / "s.db", roots=roots_file(tmp_path, cas["other"])
            )
            async with running(cfg) as client:
                await asyncio.wait_for(watch.seen.wait(), 5)
                assert csms.requests == []
                assert client.certificates.install_root("CSMSRootCertificate", cas["root"].pem).ok
                await csms.until(lambda: csms.received("SecurityEventNotification"), within_s=8)
                event = csms.received("SecurityEventNotification")[0][3]
                assert event["type"] == "InvalidCsmsCertificate"
                assert "unknown CA" in event["techInfo"]


async def test_tc_a_05_profile_2_refuses_an_expired_server_certificate(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    tls = server_context(tmp_path, issue(cas["root"], "csms", expired=True))
    with watching("server certificate expired") as watch:
        async with Csms(tls=tls) as csms:
            cfg = tls_settings(
                csms.port, tmp_path / "s.db", roots=roots_file(tmp_path, cas["root"])
            )
            async with running(cfg):
                await asyncio.wait_for(watch.seen.wait(), 5)
                assert csms.requests == []


async def test_tc_a_06_profile_2_refuses_a_server_without_tls_1_2(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    # TC_A_06-like: the CSMS offers at most TLS 1.1.  A blocking server sends the
    # protocol_version alert properly (asyncio's TLS server would just reset).
    assert client_tls_context().minimum_version is ssl.TLSVersion.TLSv1_2
    tls = server_context(tmp_path, issue(cas["root"], "csms"), max_tls_1_1=True)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    server_errors: list[str] = []

    def serve_once() -> None:
        conn, _ = listener.accept()
        try:
            tls.wrap_socket(conn, server_side=True)
        except ssl.SSLError as exc:
            server_errors.append(exc.reason or "")
        finally:
            conn.close()
            listener.close()

    thread = threading.Thread(target=serve_once)
    thread.start()
    try:
        with watching("protocol version refused") as watch:
            cfg = tls_settings(
                listener.getsockname()[1],
                tmp_path / "s.db",
                roots=roots_file(tmp_path, cas["root"]),
            )
            async with running(cfg) as client:
                await asyncio.wait_for(watch.seen.wait(), 5)
                assert client.station is not None
                waiting = [m.payload for m in client.station.queued_messages]
                assert waiting[0]["type"] == "InvalidTLSVersion"
    finally:
        await asyncio.to_thread(thread.join, 10)
    assert server_errors  # the server saw no common protocol version either


# ---------------------------------------------------------------- profile 3
async def test_tc_a_07_profile_3_connects_with_a_client_certificate_without_basic_auth(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    # TC_A_07-like
    station_ca = make_ca("Station CA")
    chain, key = issue(station_ca, IDENT, server=False).write(tmp_path, "station")
    tls = server_context(tmp_path, issue(cas["root"], "csms"), client_ca=station_ca)
    async with Csms(tls=tls) as csms:
        cfg = tls_settings(
            csms.port,
            tmp_path / "s.db",
            profile=3,
            roots=roots_file(tmp_path, cas["root"]),
            station_certificate=chain,
            station_private_key=key,
        )
        async with running(cfg):
            await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
            assert "Authorization" not in csms.requests[0].headers


async def test_profile_3_without_a_client_certificate_is_refused(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    station_ca = make_ca("Station CA")
    tls = server_context(tmp_path, issue(cas["root"], "csms"), client_ca=station_ca)
    with watching("client certificate") as watch:
        async with Csms(tls=tls) as csms:
            cfg = tls_settings(
                csms.port, tmp_path / "s.db", profile=3, roots=roots_file(tmp_path, cas["root"])
            )
            async with running(cfg):
                await asyncio.wait_for(watch.seen.wait(), 5)
                assert csms.requests == [] and csms.received() == []
    assert any("without a ChargingStationCertificate" in line for line in watch.lines)


# ------------------------------------------------------ certificate management
def expected_hash(cert: x509.Certificate, issuer: x509.Certificate | None = None
                  ) -> dict[str, str]:  # fmt: skip
    """RFC 6960 CertID fields of ``cert`` (self-signed unless ``issuer`` is given),
    computed independently."""
    point = (
        (issuer or cert)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        "issuer_key_hash": hashlib.sha256(point).hexdigest(),
        "serial_number": format(cert.serial_number, "x"),
    }


async def install(csms: Csms, kind: str, pem: str) -> str:
    result = await csms.cp.call(
        call.InstallCertificate(certificate_type=kind, certificate=pem), suppress=False
    )
    return str(result.status)


async def test_install_list_and_delete_certificates(cas: dict[str, Issued], tmp_path: Path) -> None:
    tls = server_context(tmp_path, issue(cas["root"], "csms"))
    async with Csms(tls=tls) as csms:
        cfg = tls_settings(csms.port, tmp_path / "s.db", roots=roots_file(tmp_path, cas["root"]))
        async with running(cfg) as client:
            await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
            ids = await csms.cp.call(call.GetInstalledCertificateIds(), suppress=False)
            assert ids.status == "NotFound"
            # M05
            assert await install(csms, "CSMSRootCertificate", cas["root"].pem) == "Accepted"
            assert await install(csms, "V2GRootCertificate", cas["other"].pem) == "Accepted"
            leaf = issue(cas["root"], "not a CA")
            assert await install(csms, "CSMSRootCertificate", leaf.pem) == "Rejected"
            assert await install(csms, "CSMSRootCertificate", "garbage") == "Rejected"
            expired = make_ca("Old", days=-1)
            assert await install(csms, "ManufacturerRootCertificate", expired.pem) == "Rejected"
            # M03: hash data of what is installed, filtered by type
            ids = await csms.cp.call(
                call.GetInstalledCertificateIds(certificate_type=["CSMSRootCertificate"]),
                suppress=False,
            )
            assert ids.status == "Accepted"
            [entry] = ids.certificate_hash_data_chain
            assert entry["certificate_type"] == "CSMSRootCertificate"
            assert entry["certificate_hash_data"] == expected_hash(cas["root"].cert)
            # M04: the only CSMS root of a TLS station stays
            delete = call.DeleteCertificate(certificate_hash_data=entry["certificate_hash_data"])
            assert (await csms.cp.call(delete, suppress=False)).status == "Failed"
            other_root = make_ca("Second CSMS root")
            assert await install(csms, "CSMSRootCertificate", other_root.pem) == "Accepted"
            assert (await csms.cp.call(delete, suppress=False)).status == "Accepted"
            assert (await csms.cp.call(delete, suppress=False)).status == "NotFound"
            assert client.station is not None
            model = client.station.model
            assert model.value(dm.SECURITY, dm.CERTIFICATE_ENTRIES) == "2"
    # persisted, private
    folder = tmp_path / "ocpp-certs"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(folder.rglob("*.pem"))
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


async def test_sign_certificate_then_profile_3_with_the_signed_certificate(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    # A02 (TC_A_11-like), then TC_A_07/A_19-like: the new certificate is used on the
    # next connection with profile 3.
    csms_ca = cas["root"]
    state = tmp_path / "s.db"
    server_leaf = issue(csms_ca, "csms")
    async with Csms(tls=server_context(tmp_path, server_leaf)) as csms:
        cfg = tls_settings(csms.port, state, roots=roots_file(tmp_path, csms_ca))
        async with running(cfg) as client:
            await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
            assert await install(csms, "CSMSRootCertificate", csms_ca.pem) == "Accepted"
            # nothing pending yet: a CertificateSigned out of the blue is refused
            stray = sign_csr(csms_ca, csr_from_elsewhere(tmp_path))
            result = await csms.cp.call(call.CertificateSigned(certificate_chain=stray), False)
            assert result.status == "Rejected"
            trigger = call.TriggerMessage(requested_message="SignChargingStationCertificate")
            assert (await csms.cp.call(trigger, suppress=False)).status == "Accepted"
            await csms.until(lambda: csms.received("SignCertificate"))
            request = csms.received("SignCertificate")[0][3]
            assert request["certificateType"] == "ChargingStationCertificate"
            csr = x509.load_pem_x509_csr(request["csr"].encode())
            assert csr.is_signature_valid
            assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == IDENT
            organization = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            assert organization[0].value == "OpenV2G Test"
            # a certificate for another key is refused and reported (A02)
            wrong = sign_csr(csms_ca, csr_from_elsewhere(tmp_path))
            result = await csms.cp.call(call.CertificateSigned(certificate_chain=wrong), False)
            assert result.status == "Rejected"
            # one from a CA the station does not trust is refused too
            untrusted = sign_csr(cas["other"], request["csr"])
            result = await csms.cp.call(call.CertificateSigned(certificate_chain=untrusted), False)
            assert result.status == "Rejected"
            signed = sign_csr(csms_ca, request["csr"])
            result = await csms.cp.call(
                call.CertificateSigned(
                    certificate_chain=signed, certificate_type="ChargingStationCertificate"
                ),
                suppress=False,
            )
            assert result.status == "Accepted"
            await csms.until(lambda: len(csms.received("SecurityEventNotification")) >= 1)
            types = {f[3]["type"] for f in csms.received("SecurityEventNotification")}
            assert types == {"InvalidChargingStationCertificate"}
            credentials = client.certificates.station_credentials()
            assert credentials is not None
            assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in credentials)
            # TC_M_23: the station's own certificate cannot be deleted (M04.FR.06)
            own = x509.load_pem_x509_certificates(credentials[0].read_bytes())[0]
            delete = call.DeleteCertificate(certificate_hash_data=expected_hash(own, csms_ca.cert))
            answer = await csms.cp.call(delete, suppress=False)
            assert answer.status == "Failed"
            assert credentials[0].is_file()
    # The next connection: profile 3 to a CSMS that requires a client certificate
    # issued by its CA.
    tls = server_context(tmp_path, server_leaf, client_ca=csms_ca)
    async with Csms(tls=tls) as csms:
        cfg = tls_settings(csms.port, state, profile=3)  # roots: the installed one only
        async with running(cfg):
            await csms.until(lambda: len(csms.received("StatusNotification")) == 2)
            assert "Authorization" not in csms.requests[0].headers


def csr_from_elsewhere(folder: Path) -> str:
    store = FileCertificateStore(folder / "elsewhere")
    return store.create_csr("ChargingStationCertificate", "someone-else", "")


def test_certificate_hash_of_an_intermediate_uses_its_issuer(cas: dict[str, Issued]) -> None:
    intermediate = make_ca("Sub CA", issuer=cas["root"])
    got = certificate_hash(intermediate.cert, cas["root"].cert)
    assert (
        got.issuer_name_hash == hashlib.sha256(cas["root"].cert.subject.public_bytes()).hexdigest()
    )
    assert got.issuer_key_hash == expected_hash(cas["root"].cert)["issuer_key_hash"]


async def test_tc_a_19_upgrade_to_profile_2_over_ocpp_and_fall_back_when_it_fails(
    cas: dict[str, Issued], tmp_path: Path
) -> None:
    # TC_A_19/A_20-like: the CSMS installs its root, stores a profile-2 connection in
    # slot 1, puts it first and the station restarts (Reset).  The first restart finds
    # the new CSMS down and falls back to slot 0; the next one connects with TLS.
    state = tmp_path / "s.db"
    preset(
        state,
        {
            **FAST_RECONNECT,
            ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"): "1",
        },
    )
    secure = Csms(tls=server_context(tmp_path, issue(cas["root"], "csms")))
    await secure.start()
    new_url = f"wss://127.0.0.1:{secure.port}/ocpp"
    await secure.stop()
    async with Csms() as plain:
        cfg = settings(plain, state)
        async with running(cfg) as client:
            await plain.until(lambda: len(plain.received("StatusNotification")) == 2)
            assert await install(plain, "CSMSRootCertificate", cas["root"].pem) == "Accepted"
            profile = call.SetNetworkProfile(
                configuration_slot=1,
                connection_data={
                    "ocpp_version": "OCPP20",
                    "ocpp_transport": "JSON",
                    "ocpp_csms_url": new_url,
                    "message_timeout": 30,
                    "security_profile": 2,
                    "ocpp_interface": "Wired0",
                },
            )
            assert (await plain.cp.call(profile, suppress=False)).status == "Accepted"
            priority = {("OCPPCommCtrlr", "NetworkConfigurationPriority"): "1,0"}
            assert await set_variables(plain, priority) == ["RebootRequired"]
            assert client.station is not None
        # restart; the new CSMS is down: back to slot 0 (profile 1)
        plain.frames.clear()
        async with running(cfg) as client:
            await plain.until(plain.received, within_s=8)
            assert client.station is not None
            assert client.station.model.value(dm.SECURITY, dm.SECURITY_PROFILE) == "1"
    # restart with the new CSMS up: TLS, Basic auth, SecurityProfile 2
    await secure.start()
    try:
        async with running(cfg) as client:
            await secure.until(lambda: len(secure.received("StatusNotification")) == 2)
            assert client.station is not None
            assert client.station.model.value(dm.SECURITY, dm.SECURITY_PROFILE) == "2"
            await secure.until(lambda: secure.received("SecurityEventNotification"))
            event = secure.received("SecurityEventNotification")[0][3]
            assert event["type"] == "ReconfigurationOfSecurityParameters"
    finally:
        await secure.stop()


async def test_refused_basic_auth_is_explained_and_reported(tmp_path: Path) -> None:
    preset(tmp_path / "s.db", FAST_RECONNECT)
    with watching("refused the station's credentials (HTTP 401)") as watch:
        async with Csms() as csms:
            csms.refuse_with = HTTPStatus.UNAUTHORIZED
            async with running(settings(csms, tmp_path / "s.db")):
                await asyncio.wait_for(watch.seen.wait(), 5)
                csms.refuse_with = None
                await csms.until(lambda: csms.received("SecurityEventNotification"), within_s=8)
                event = csms.received("SecurityEventNotification")[0][3]
                assert event["type"] == "FailedToAuthenticateAtCsms"
