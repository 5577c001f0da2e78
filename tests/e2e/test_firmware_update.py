"""Secure firmware update end to end (OCPP 2.0.1 L01): CSMS -> HTTPS -> release -> reboot.

A manufacturer PKI and a signed release bundle are made in the test; the bundle is
served over HTTPS on 127.0.0.1.  The real service, on simulated hardware, gets
UpdateFirmware from the test CSMS, downloads, verifies, installs the release into a
temporary releases directory, switches to it and restarts (``Station.run`` returns
with ``restart_requested``: what systemd restarts, here the test does).  The
"reboot" is a new ``Station`` whose ``firmware_version`` is the new release's.
Every frame of ours passes the strict CSMS check.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from ocpp.routing import on
from ocpp.v201 import call_result

from chargepoint.app import Station
from chargepoint.config import parse_config
from chargepoint.release import Releases
from tests.e2e.conftest import Client, stop_station
from tests.e2e.test_ocpp_station import csms_config
from tests.ocpp import csms as csms_module
from tests.ocpp.csms import Csms, CsmsV201
from tests.ocpp.pki import Issued, issue, make_ca, server_context
from tests.ocpp.strict import assert_strictly_valid
from tests.release.test_signing_trust import crl, pem
from tests.release.wheels import make_bundle

CONFIRM_WITHIN_S = 30


class FirmwareCsms(CsmsV201):
    """The test CSMS, also answering FirmwareStatusNotification."""

    @on("FirmwareStatusNotification")
    def on_firmware_status(self, **kwargs: Any) -> Any:
        return call_result.FirmwareStatusNotification()


@pytest.fixture
async def csms(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Csms]:
    monkeypatch.setattr(csms_module, "CsmsV201", FirmwareCsms)
    async with Csms() as server:
        yield server
        assert_strictly_valid(server.frames, server.ws.subprotocol if server.ws else None)


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, Path, Issued]]:
    """An HTTPS file server on 127.0.0.1 serving ``served/``: (base URL, folder, its CA)."""
    served = tmp_path / "served"
    served.mkdir()
    ca = make_ca("Firmware server CA")
    context = server_context(tmp_path, issue(ca, "127.0.0.1"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", served, ca
    server.shutdown()
    server.server_close()
    thread.join()


def config_text(
    tmp_path: Path, port: int, *, version: str, root_pem: Path, ca: Path, crl: Path | None = None
) -> str:
    text = csms_config(tmp_path, port).replace(
        "[station]\n", f'[station]\nfirmware_version = "{version}"\n', 1
    )
    if crl is not None:
        text += f'firmware_signing_crl = "{crl}"\n'
    return text + (
        f'firmware_signing_root = "{root_pem}"\n'
        "\n[firmware]\n"
        f'releases_dir = "{tmp_path / "opt"}"\n'
        f"confirm_within_s = {CONFIRM_WITHIN_S}.0\n"
        f'ca_file = "{ca}"\n'
    )


def signed(bundle: Path, signer: Issued) -> str:
    signature = signer.key.sign(bundle.read_bytes(), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def update_firmware(request_id: int, url: str, signer: Issued, signature: str) -> str:
    payload = {
        "requestId": request_id,
        "retries": 1,
        "retryInterval": 1,
        "firmware": {
            "location": url,
            "retrieveDateTime": "2020-01-01T00:00:00.000Z",
            "signingCertificate": signer.pem,
            "signature": signature,
        },
    }
    return json.dumps([2, f"fw-{request_id}", "UpdateFirmware", payload])


def statuses(csms: Csms, request_id: int) -> list[str]:
    return [
        f[3]["status"]
        for f in csms.received("FirmwareStatusNotification")
        if f[3].get("requestId") == request_id
    ]


@dataclass(frozen=True)
class Trust:
    """A manufacturer root with its signing certificate, and the files the station's
    configuration names: the root and the CA of the HTTPS download server."""

    manufacturer: Issued
    signer: Issued
    root_pem: Path
    ca_pem: Path


def trust(tmp_path: Path, server_ca: Issued) -> Trust:
    manufacturer = make_ca("Manufacturer root")
    signer = issue(manufacturer, "Firmware signing", server=False)
    root_pem = tmp_path / "root.pem"
    root_pem.write_text(manufacturer.pem)
    ca_pem = tmp_path / "server-ca.pem"
    ca_pem.write_text(server_ca.pem)
    return Trust(manufacturer, signer, root_pem, ca_pem)


def running_release(tmp_path: Path) -> Releases:
    """Releases under ``tmp_path/opt`` with 0.1.0 current, as an earlier install left it."""
    releases = Releases(tmp_path / "opt", python="python3")
    (releases.releases / "0.1.0" / "bin").mkdir(parents=True)
    releases.current.symlink_to(Path("releases") / "0.1.0")
    return releases


async def run_until_restart(st: Station, task: asyncio.Task[None], within_s: float) -> None:
    """The firmware update ends the run with a restart request (systemd restarts it)."""
    await asyncio.wait_for(asyncio.shield(task), within_s)
    assert st.restart_requested


async def start(text: str) -> tuple[Station, asyncio.Task[None]]:
    st = Station(parse_config(text, "test"))
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    return st, task


async def test_signed_release_installed_switched_and_a_broken_one_rolled_back(
    tmp_path: Path, csms: Csms, https: tuple[str, Path, Issued]
) -> None:
    base_url, served, server_ca = https
    t = trust(tmp_path, server_ca)
    signer, root_pem, ca_pem = t.signer, t.root_pem, t.ca_pem
    releases = running_release(tmp_path)

    def text(version: str) -> str:
        return config_text(tmp_path, csms.port, version=version, root_pem=root_pem, ca=ca_pem)

    # ---------------------------------------------------- 1: 9.9.9 installs
    good = make_bundle(tmp_path, "fwdemo", "9.9.9")
    (served / good.name).write_bytes(good.read_bytes())
    st, task = await start(text("0.1.0"))
    await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
    call = update_firmware(1, f"{base_url}/{good.name}", signer, signed(good, signer))
    answer = await csms.raw_call(call, "fw-1")
    assert answer[2] == {"status": "Accepted"}, answer
    await run_until_restart(st, task, within_s=120)
    assert releases.current_version() == "9.9.9"
    assert releases.pending() is not None
    assert releases.check(time.time()) is None  # systemd's ExecStartPre: within the deadline
    # the reboot into 9.9.9: BootNotification FirmwareUpdate, Installed, confirmed
    boots = len(csms.received("BootNotification"))
    st, task = await start(text("9.9.9"))
    await csms.until(lambda: "Installed" in statuses(csms, 1), within_s=15)
    assert csms.received("BootNotification")[boots][3]["reason"] == "FirmwareUpdate"
    assert statuses(csms, 1) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
        "Installed",
    ]
    assert releases.pending() is None and releases.outcome() is not None
    assert releases.outcome().confirmed  # type: ignore[union-attr]

    # ------------------------------- 2: 9.9.10 never reports READY: rolled back
    broken = make_bundle(tmp_path, "fwdemo", "9.9.10")
    (served / broken.name).write_bytes(broken.read_bytes())
    call = update_firmware(2, f"{base_url}/{broken.name}", signer, signed(broken, signer))
    answer = await csms.raw_call(call, "fw-2")
    assert answer[2] == {"status": "Accepted"}, answer
    await run_until_restart(st, task, within_s=120)
    assert releases.current_version() == "9.9.10"
    # 9.9.10 hangs before READY; systemd kills it and the check before the next
    # start finds the deadline passed
    outcome = releases.check(time.time() + CONFIRM_WITHIN_S + 1)
    assert outcome is not None and outcome.version == "9.9.10" and not outcome.confirmed
    assert releases.current_version() == "9.9.9"
    st, task = await start(text("9.9.9"))
    await csms.until(lambda: "InstallationFailed" in statuses(csms, 2), within_s=15)
    assert statuses(csms, 2)[-2:] == ["InstallRebooting", "InstallationFailed"]
    await stop_station(st, task)


async def test_a_bad_signature_is_reported_and_nothing_installed(
    tmp_path: Path, csms: Csms, https: tuple[str, Path, Issued]
) -> None:
    """TC_L_06-like over the wire: the download is signed by a key that is not the
    certificate's: Downloaded, InvalidSignature, SecurityEventNotification."""
    base_url, served, server_ca = https
    t = trust(tmp_path, server_ca)
    signer, root_pem, ca_pem = t.signer, t.root_pem, t.ca_pem
    impostor = issue(t.manufacturer, "Someone else", server=False)
    bundle = make_bundle(tmp_path, "fwdemo", "9.9.9")
    (served / bundle.name).write_bytes(bundle.read_bytes())
    text = config_text(tmp_path, csms.port, version="0.1.0", root_pem=root_pem, ca=ca_pem)
    st, task = await start(text)
    try:
        await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
        call = update_firmware(3, f"{base_url}/{bundle.name}", signer, signed(bundle, impostor))
        assert (await csms.raw_call(call, "fw-3"))[2] == {"status": "Accepted"}
        await csms.until(lambda: "InvalidSignature" in statuses(csms, 3), within_s=15)
        await csms.until(
            lambda: any(
                f[3]["type"] == "InvalidFirmwareSignature"
                for f in csms.received("SecurityEventNotification")
            ),
            within_s=10,
        )
        assert statuses(csms, 3) == ["Downloading", "Downloaded", "InvalidSignature"]
        assert not (tmp_path / "opt" / "releases" / "9.9.9").exists()
    finally:
        await stop_station(st, task)


async def test_an_untrusted_download_server_fails_the_download(
    tmp_path: Path, csms: Csms, https: tuple[str, Path, Issued]
) -> None:
    """TC_L_07-like: the HTTPS server's certificate is not trusted (no ca_file for it):
    after the retry, DownloadFailed."""
    base_url, served, _ = https
    t = trust(tmp_path, make_ca("Not used"))
    signer, root_pem = t.signer, t.root_pem
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(make_ca("Some other CA").pem)
    bundle = make_bundle(tmp_path, "fwdemo", "9.9.9")
    (served / bundle.name).write_bytes(bundle.read_bytes())
    text = config_text(tmp_path, csms.port, version="0.1.0", root_pem=root_pem, ca=other_ca)
    st, task = await start(text)
    try:
        await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
        call = update_firmware(4, f"{base_url}/{bundle.name}", signer, signed(bundle, signer))
        assert (await csms.raw_call(call, "fw-4"))[2] == {"status": "Accepted"}
        await csms.until(lambda: "DownloadFailed" in statuses(csms, 4), within_s=15)
        assert statuses(csms, 4) == ["Downloading", "DownloadFailed"]
    finally:
        await stop_station(st, task)


async def test_tc_l_04_a_revoked_signing_certificate_is_refused(
    tmp_path: Path, csms: Csms, https: tuple[str, Path, Issued]
) -> None:
    """TC_L_04_CS over the wire: the manufacturer's CRL (`[csms] firmware_signing_crl`)
    lists the signing certificate: UpdateFirmware is answered RevokedCertificate, a
    SecurityEventNotification InvalidFirmwareSigningCertificate follows, nothing is
    downloaded (no FirmwareStatusNotification)."""
    base_url, served, server_ca = https
    t = trust(tmp_path, server_ca)
    signer, root_pem, ca_pem = t.signer, t.root_pem, t.ca_pem
    crl_pem = tmp_path / "signing.crl"
    crl_pem.write_bytes(pem(crl(t.manufacturer, signer)))
    bundle = make_bundle(tmp_path, "fwdemo", "9.9.9")
    (served / bundle.name).write_bytes(bundle.read_bytes())
    text = config_text(
        tmp_path, csms.port, version="0.1.0", root_pem=root_pem, ca=ca_pem, crl=crl_pem
    )
    st, task = await start(text)
    try:
        await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
        call = update_firmware(5, f"{base_url}/{bundle.name}", signer, signed(bundle, signer))
        assert (await csms.raw_call(call, "fw-5"))[2] == {"status": "RevokedCertificate"}
        await csms.until(
            lambda: any(
                f[3]["type"] == "InvalidFirmwareSigningCertificate"
                for f in csms.received("SecurityEventNotification")
            ),
            within_s=10,
        )
        assert statuses(csms, 5) == []
    finally:
        await stop_station(st, task)


async def test_l01_fr_07_the_install_waits_for_the_session_with_the_evse_unavailable(
    tmp_path: Path, csms: Csms, https: tuple[str, Path, Issued]
) -> None:
    """L01.FR.06/07 on the real service: a car charges; UpdateFirmware: Downloading,
    Downloaded, SignatureVerified, InstallScheduled, and the charge goes on; the car
    stops and leaves: StatusNotification Unavailable (no new session can start),
    then Installing and InstallRebooting."""
    base_url, served, server_ca = https
    t = trust(tmp_path, server_ca)
    signer, root_pem, ca_pem = t.signer, t.root_pem, t.ca_pem
    releases = running_release(tmp_path)
    bundle = make_bundle(tmp_path, "fwdemo", "9.9.9")
    (served / bundle.name).write_bytes(bundle.read_bytes())
    text = config_text(tmp_path, csms.port, version="0.1.0", root_pem=root_pem, ca=ca_pem)
    st, task = await start(text)
    client = Client(st)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging")
    await csms.until(lambda: csms.received("TransactionEvent"), within_s=10)
    call = update_firmware(6, f"{base_url}/{bundle.name}", signer, signed(bundle, signer))
    assert (await csms.raw_call(call, "fw-6"))[2] == {"status": "Accepted"}
    await csms.until(lambda: "InstallScheduled" in statuses(csms, 6), within_s=15)
    assert (await client.evse())["state"] == "charging"  # L01.FR.06: the session goes on
    seen = len(csms.received("StatusNotification"))
    await client.sim("stop")
    await client.wait_for(lambda s: s["cp"] == "B")
    await client.sim("unplug")
    await csms.until(
        lambda: any(
            f[3]["connectorStatus"] == "Unavailable"
            for f in csms.received("StatusNotification")[seen:]
        ),
        within_s=10,
    )
    await run_until_restart(st, task, within_s=120)
    assert statuses(csms, 6) == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
    ]
    assert releases.current_version() == "9.9.9"
