"""ISO 15118-20 test PKI and TLS 1.3 contexts: real handshakes on loopback and in memory."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
import struct
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chargepoint.adapters.v2g_pki import (
    DEFAULT_PCID,
    DEFAULT_SECC_ID,
    PkiError,
    TestPki,
    create_test_pki,
    load_test_pki,
)
from chargepoint.adapters.v2g_tls import (
    V2G20_CIPHER_SUITES,
    V2gTlsPolicyError,
    enforce_v2g20_policy,
    evcc_client_context,
    peer_certificate_summary,
    secc_server_context,
)

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))
TIMEOUT_S = 10.0

# IANA code points seen on the wire
TLS_AES_256_GCM_SHA384 = 0x1302
SECP521R1, X448 = 0x0019, 0x001E
EXT_SUPPORTED_GROUPS, EXT_KEY_SHARE = 0x000A, 0x0033


def _loopback() -> str | None:
    for family, host in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
        except OSError:
            continue
        return host
    return None


@pytest.fixture(scope="module")
def host() -> str:
    found = _loopback()
    if found is None:
        pytest.skip("neither ::1 nor 127.0.0.1 is available")
    return found


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return create_test_pki(tmp_path_factory.mktemp("pki") / "v2g")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """Same names, different keys: its certificates chain to roots nobody trusts."""
    return create_test_pki(tmp_path_factory.mktemp("pki") / "other")


def server_context(pki: TestPki, *, mutual: bool = True) -> ssl.SSLContext:
    return secc_server_context(
        cert_chain=pki.secc_chain,
        key=pki.secc_key,
        client_ca=pki.oem_root_cert,
        require_client_cert=mutual,
    )


def car_context(pki: TestPki, *, cert_from: TestPki | None = None) -> ssl.SSLContext:
    return evcc_client_context(
        trust_root=pki.v2g_root_cert,
        cert_chain=cert_from.ev_chain if cert_from else None,
        key=cert_from.ev_key if cert_from else None,
    )


# ------------------------------------------------------------ loopback server


@dataclass
class Seen:
    """What the SECC side observed per accepted connection."""

    peers: list[dict[str, str]] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)
    policy_errors: list[str] = field(default_factory=list)


@asynccontextmanager
async def secc(host: str, context: ssl.SSLContext) -> AsyncIterator[tuple[int, Seen]]:
    """A TLS echo server standing in for the SECC: checks the policy, echoes one line."""
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            enforce_v2g20_policy(ssl_object)
        except V2gTlsPolicyError as exc:
            seen.policy_errors.append(str(exc))
            writer.close()
            return
        seen.peers.append(peer_certificate_summary(ssl_object))
        seen.ciphers.append(ssl_object.cipher()[0])
        try:
            writer.write(await reader.readline())
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, seen


@dataclass(frozen=True)
class CarResult:
    version: str | None
    cipher: str | None
    server: dict[str, str]
    echo: bytes


async def car(host: str, port: int, context: ssl.SSLContext) -> CarResult:
    """Connect like the simulated car, send a line, read the echo."""
    async with asyncio.timeout(TIMEOUT_S):
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            enforce_v2g20_policy(ssl_object)
            writer.write(b"\x01\xfe hello SECC\n")
            await writer.drain()
            echo = await reader.readline()
            return CarResult(
                ssl_object.version(),
                ssl_object.cipher()[0],
                peer_certificate_summary(ssl_object),
                echo,
            )
        finally:
            writer.close()


async def car_is_refused(host: str, port: int, context: ssl.SSLContext) -> str:
    """The car's error when the SECC refuses it.

    In TLS 1.3 the client finishes its side of the handshake before the server
    has checked the client certificate, so the refusal may arrive as an alert
    on the first read instead of from the connect.
    """
    try:
        result = await car(host, port, context)
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc)
    assert result.echo == b"", f"SECC answered a car it should refuse: {result}"
    return "closed without an answer"


# ------------------------------------------------------------ TLS on loopback


async def test_mutual_tls13_exchange(host: str, pki: TestPki) -> None:
    async with secc(host, server_context(pki)) as (port, seen):
        result = await car(host, port, car_context(pki, cert_from=pki))
    assert result.version == "TLSv1.3"
    assert result.cipher in V2G20_CIPHER_SUITES
    # server preference: AES-256-GCM whenever the car offers it (module doc)
    assert result.cipher == "TLS_AES_256_GCM_SHA384" == seen.ciphers[0]
    assert result.echo == b"\x01\xfe hello SECC\n"
    assert result.server["subject_cn"] == DEFAULT_SECC_ID
    assert result.server["issuer_cn"] == "CPO Sub-CA 2"
    assert seen.peers == [
        {
            "subject_cn": DEFAULT_PCID,
            "issuer_cn": "OEM Sub-CA 2",
            "not_after": seen.peers[0]["not_after"],
        }
    ]
    assert datetime.fromisoformat(seen.peers[0]["not_after"]) > datetime.now(UTC)


async def test_client_certificate_from_another_root_is_refused(
    host: str, pki: TestPki, other_pki: TestPki
) -> None:
    async with secc(host, server_context(pki)) as (port, seen):
        error = await car_is_refused(host, port, car_context(pki, cert_from=other_pki))
    assert seen.peers == [] and seen.policy_errors == []
    assert "unknown ca" in error or "closed" in error, error
    # the reason, without the races of a real socket
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake_in_memory(server_context(pki), car_context(pki, cert_from=other_pki))


async def test_car_without_certificate_is_refused_when_required(host: str, pki: TestPki) -> None:
    async with secc(host, server_context(pki)) as (port, seen):
        error = await car_is_refused(host, port, car_context(pki))
    assert seen.peers == []
    assert "certificate required" in error or "closed" in error, error
    with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
        handshake_in_memory(server_context(pki), car_context(pki))


async def test_no_client_certificate_requested_without_mutual_auth(host: str, pki: TestPki) -> None:
    async with secc(host, server_context(pki, mutual=False)) as (port, seen):
        without = await car(host, port, car_context(pki))
        with_cert = await car(host, port, car_context(pki, cert_from=pki))
    assert without.version == with_cert.version == "TLSv1.3"
    assert without.echo and with_cert.echo
    assert seen.peers == [{}, {}]  # not requested, so the car sent none


async def test_tls12_only_car_is_refused(host: str, pki: TestPki) -> None:
    tls12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    tls12.check_hostname = False
    tls12.load_verify_locations(pki.v2g_root_cert)
    tls12.load_cert_chain(pki.ev_chain, pki.ev_key)
    async with secc(host, server_context(pki)) as (port, seen):
        # the SECC's alert may be overtaken by its close (connection reset)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await car(host, port, tls12)
    assert seen.peers == []
    # in memory nothing races: the SECC itself refuses the TLS 1.2 ClientHello
    with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL"):
        handshake_in_memory(server_context(pki), tls12)


async def test_car_refuses_an_expired_secc_certificate(host: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = create_test_pki(
        tmp_path / "expired", secc_validity=(now - timedelta(days=30), now - timedelta(days=1))
    )
    secc_cert = x509.load_pem_x509_certificate(expired.secc_cert.read_bytes())
    assert secc_cert.not_valid_after_utc < now
    async with secc(host, server_context(expired)) as (port, seen):
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await car(host, port, car_context(expired, cert_from=expired))
    assert caught.value.verify_message == "certificate has expired"
    assert seen.peers == []


_OFF_PROFILE_CAR = textwrap.dedent(
    """
    import socket, sys
    from pathlib import Path
    from chargepoint.adapters.v2g_tls import evcc_client_context

    host, port, root, chain, key = sys.argv[1:]
    context = evcc_client_context(trust_root=Path(root), cert_chain=Path(chain), key=Path(key))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            print(tls.cipher()[0], flush=True)
            tls.sendall(b"hello\\n")
            try:
                print(repr(tls.recv(100)))
            except OSError as exc:
                print(type(exc).__name__)
    """
)


async def test_secc_policy_refuses_a_suite_outside_the_profile(
    host: str, pki: TestPki, tmp_path: Path
) -> None:
    """A car whose OpenSSL offers only TLS_AES_128_GCM_SHA256 completes the handshake
    (``ssl`` cannot restrict TLS 1.3 suites per context); the policy check closes it."""
    conf = tmp_path / "openssl.cnf"
    conf.write_text(
        "openssl_conf = init\n[init]\nssl_conf = ssl_sect\n[ssl_sect]\n"
        "system_default = sys_sect\n[sys_sect]\nCiphersuites = TLS_AES_128_GCM_SHA256\n"
    )
    async with secc(host, server_context(pki)) as (port, seen):
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-c",
            _OFF_PROFILE_CAR,
            host,
            str(port),
            str(pki.v2g_root_cert),
            str(pki.ev_chain),
            str(pki.ev_key),
            env={**os.environ, "OPENSSL_CONF": str(conf)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(TIMEOUT_S):
            out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines()[0] == "TLS_AES_128_GCM_SHA256"
    assert "hello" not in out.decode()  # nothing echoed
    assert seen.peers == []
    assert seen.policy_errors == [
        "cipher suite TLS_AES_128_GCM_SHA256 is not allowed by ISO 15118-20"
    ]


# ------------------------------------------------------------ the wire, in memory


@dataclass(frozen=True)
class Hello:
    cipher_suites: list[int]
    extensions: dict[int, bytes]


def parse_hello(record: bytes) -> Hello:
    """ClientHello or ServerHello from the first TLS record of a flight (RFC 8446 4.1.2-3)."""
    assert record[0] == 0x16, "not a handshake record"
    body = record[5 + 4 :]  # record header, handshake header
    server = record[5] == 0x02
    i = 2 + 32  # legacy_version, random
    i += 1 + body[i]  # legacy_session_id
    if server:
        suites = [struct.unpack_from(">H", body, i)[0]]
        i += 2 + 1  # cipher_suite, legacy_compression_method
    else:
        (length,) = struct.unpack_from(">H", body, i)
        suites = [struct.unpack_from(">H", body, i + 2 + n)[0] for n in range(0, length, 2)]
        i += 2 + length
        i += 1 + body[i]  # legacy_compression_methods
    (length,) = struct.unpack_from(">H", body, i)
    i += 2
    extensions: dict[int, bytes] = {}
    end = i + length
    while i < end:
        kind, size = struct.unpack_from(">HH", body, i)
        extensions[kind] = body[i + 4 : i + 4 + size]
        i += 4 + size
    return Hello(suites, extensions)


@dataclass(frozen=True)
class Handshake:
    server: ssl.SSLObject
    client: ssl.SSLObject
    client_hello: Hello
    server_hello: Hello


def handshake_in_memory(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> Handshake:
    """Run a handshake through memory BIOs, keeping the first flight of each side."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    flights: dict[str, bytes] = {}
    for _ in range(8):
        for end in (client, server):
            with suppress(ssl.SSLWantReadError):  # waits for the other side
                end.do_handshake()
        to_server, to_client = c_out.read(), s_out.read()
        if to_server:
            flights.setdefault("client", to_server)
        if to_client:
            flights.setdefault("server", to_client)
        s_in.write(to_server)
        c_in.write(to_client)
        if not (to_server or to_client):
            break
    return Handshake(server, client, parse_hello(flights["client"]), parse_hello(flights["server"]))


def test_wire_shows_tls13_aes256_and_secp521r1(pki: TestPki) -> None:
    shake = handshake_in_memory(server_context(pki), car_context(pki, cert_from=pki))
    assert shake.server.version() == shake.client.version() == "TLSv1.3"
    # the car offers only secp521r1 and sends a secp521r1 key share
    assert shake.client_hello.extensions[EXT_SUPPORTED_GROUPS] == struct.pack(">HH", 2, SECP521R1)
    assert struct.unpack_from(">H", shake.client_hello.extensions[EXT_KEY_SHARE], 2)[0] == (
        SECP521R1
    )
    # documented limitation: the offer still includes TLS_AES_128_GCM_SHA256 (0x1301)
    assert {0x1302, 0x1303, 0x1301} <= set(shake.client_hello.cipher_suites)
    # the SECC selects AES-256-GCM and secp521r1
    assert shake.server_hello.cipher_suites == [TLS_AES_256_GCM_SHA384]
    assert struct.unpack(">H", shake.server_hello.extensions[EXT_KEY_SHARE][:2])[0] == SECP521R1
    enforce_v2g20_policy(shake.server)
    enforce_v2g20_policy(shake.client)


def test_x448_can_be_chosen_but_not_mixed(pki: TestPki) -> None:
    def ctx_pair(server_group: str, car_group: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        server = secc_server_context(
            cert_chain=pki.secc_chain,
            key=pki.secc_key,
            client_ca=pki.oem_root_cert,
            require_client_cert=True,
            group=server_group,
        )
        client = evcc_client_context(
            trust_root=pki.v2g_root_cert,
            cert_chain=pki.ev_chain,
            key=pki.ev_key,
            group=car_group,
        )
        return server, client

    shake = handshake_in_memory(*ctx_pair("X448", "X448"))
    assert struct.unpack(">H", shake.server_hello.extensions[EXT_KEY_SHARE][:2])[0] == X448
    with pytest.raises(ssl.SSLError, match="NO_SUITABLE_KEY_SHARE"):
        handshake_in_memory(*ctx_pair("secp521r1", "X448"))
    with pytest.raises(ValueError, match="group"):
        ctx_pair("prime256v1", "secp521r1")


def test_policy_refuses_a_peer_key_outside_the_profile(tmp_path: Path) -> None:
    """A P-256 server certificate: the car's handshake succeeds (ecdsa_secp256r1_sha256
    cannot be switched off), the policy check does not."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "P-256 SECC")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = secc_server_context(
        cert_chain=tmp_path / "c.pem", key=tmp_path / "k.pem", client_ca=None,
        require_client_cert=False,
    )  # fmt: skip
    client = evcc_client_context(trust_root=tmp_path / "c.pem", cert_chain=None, key=None)
    shake = handshake_in_memory(server, client)
    with pytest.raises(V2gTlsPolicyError, match="neither P-521 nor Ed448"):
        enforce_v2g20_policy(shake.client)


def test_context_arguments_are_checked(pki: TestPki) -> None:
    with pytest.raises(ValueError, match="client_ca"):
        secc_server_context(
            cert_chain=pki.secc_chain, key=pki.secc_key, client_ca=None, require_client_cert=True
        )
    with pytest.raises(ValueError, match="both"):
        evcc_client_context(trust_root=pki.v2g_root_cert, cert_chain=pki.ev_chain, key=None)
    car_ctx = car_context(pki, cert_from=pki)
    assert car_ctx.verify_mode == ssl.CERT_REQUIRED and not car_ctx.check_hostname
    assert car_ctx.minimum_version == car_ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert server_context(pki, mutual=False).verify_mode == ssl.CERT_NONE


# ------------------------------------------------------------ the PKI files


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_profile(pki: TestPki) -> None:
    chains = {
        "secc": [pki.secc_cert, pki.cpo_sub_ca2_cert, pki.cpo_sub_ca1_cert, pki.v2g_root_cert],
        "ev": [pki.ev_cert, pki.oem_sub_ca2_cert, pki.oem_sub_ca1_cert, pki.oem_root_cert],
        "contract": [
            pki.contract_cert, pki.mo_sub_ca2_cert, pki.mo_sub_ca1_cert, pki.mo_root_cert,
        ],
    }  # fmt: skip
    bundles = {"secc": pki.secc_chain, "ev": pki.ev_chain, "contract": pki.contract_chain}
    for name, paths in chains.items():
        certs = [_cert(p) for p in paths]
        leaf, sub2, sub1, root = certs
        for cert, issuer in zip(certs, [*certs[1:], root], strict=True):
            assert cert.version == x509.Version.v3
            assert isinstance(cert.signature_hash_algorithm, hashes.SHA512)
            key = cert.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            assert isinstance(key.curve, ec.SECP521R1)
            cert.verify_directly_issued_by(issuer)
        constraints = [c.extensions.get_extension_for_class(x509.BasicConstraints) for c in certs]
        assert all(c.critical for c in constraints)
        assert [(c.value.ca, c.value.path_length) for c in constraints] == [
            (False, None), (True, 0), (True, 1), (True, None),
        ]  # fmt: skip
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and usage.key_agreement and not usage.key_cert_sign
        assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        bundle = x509.load_pem_x509_certificates(bundles[name].read_bytes())
        assert bundle == [leaf, sub2, sub1]
        der = x509.load_der_x509_certificate(paths[0].with_suffix(".der").read_bytes())
        assert der == leaf
    secc_cert = _cert(pki.secc_cert)
    assert secc_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        DEFAULT_SECC_ID
    )
    assert secc_cert.subject.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)[0].value == "CPO"


def test_private_keys_are_0600_and_unencrypted(pki: TestPki) -> None:
    keys = [getattr(pki, f.name) for f in fields(TestPki) if f.name.endswith("_key")]
    assert len(keys) == 12
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert stat.S_IMODE(pki.secc_cert.parent.stat().st_mode) == 0o700


def test_manifest_round_trip_and_overwrite_protection(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    created = create_test_pki(directory, secc_name="SECC-A")
    assert load_test_pki(directory) == created
    manifest = json.loads((directory / "pki.json").read_text())
    assert all(not Path(p).is_absolute() for p in manifest["files"].values())
    assert "secc_chain.pem" in (directory / "README.txt").read_text()

    before = created.secc_cert.read_bytes()
    with pytest.raises(PkiError, match="not empty"):
        create_test_pki(directory, secc_name="SECC-B")
    assert created.secc_cert.read_bytes() == before
    again = create_test_pki(directory, secc_name="SECC-B", force=True)
    assert _cert(again.secc_cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "SECC-B"
    )

    (directory / "pki.json").write_text('{"format": "something else"}')
    with pytest.raises(PkiError, match="manifest"):
        load_test_pki(directory)
    with pytest.raises(PkiError, match="not found"):
        load_test_pki(tmp_path)


# ------------------------------------------------------------ command line


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "chargepoint", "pki", "create-test", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_creates_and_refuses_to_overwrite(tmp_path: Path) -> None:
    directory = tmp_path / "lab-pki"
    first = run_cli(str(directory), "--secc-id", "DE*LAB*E42")
    assert first.returncode == 0, first.stderr
    assert str(directory) in first.stdout and "secc_chain.pem" in first.stdout
    pki = load_test_pki(directory)
    assert _cert(pki.secc_cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "DE*LAB*E42"
    )
    assert stat.S_IMODE(pki.ev_key.stat().st_mode) == 0o600

    again = run_cli(str(directory))
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "not empty" in again.stderr
    assert "Traceback" not in again.stderr

    forced = run_cli(str(directory), "--force")
    assert forced.returncode == 0, forced.stderr

    blocked = run_cli(str(directory / "README.txt" / "below-a-file"))
    assert blocked.returncode == 1
    assert blocked.stderr.startswith("error:") and blocked.stderr.count("\n") == 1
    assert "Traceback" not in blocked.stderr
