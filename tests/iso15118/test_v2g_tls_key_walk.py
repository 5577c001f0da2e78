"""The V2G TLS policy reads the peer key type without ``cryptography`` (a DER walk)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from chargepoint.adapters.v2g_tls import peer_key_algorithm

EC, P521, P256 = "2a8648ce3d0201", "2b81040023", "2a8648ce3d030107"
ED448, ED25519, RSA = "2b6571", "2b6570", "2a864886f70d010101"


def _der(key: object, algorithm: hashes.HashAlgorithm | None) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x" * 64)] * 4)  # long lengths
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, algorithm)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("make", "algorithm", "expected"),
    [
        (lambda: ec.generate_private_key(ec.SECP521R1()), hashes.SHA512(), (EC, P521)),
        (lambda: ec.generate_private_key(ec.SECP256R1()), hashes.SHA256(), (EC, P256)),
        (ed448.Ed448PrivateKey.generate, None, (ED448, None)),
        (ed25519.Ed25519PrivateKey.generate, None, (ED25519, None)),
        (lambda: rsa.generate_private_key(65537, 2048), hashes.SHA256(), (RSA, None)),
    ],
)
def test_key_algorithm_of_a_certificate(
    make: object, algorithm: hashes.HashAlgorithm | None, expected: tuple[str, str | None]
) -> None:
    alg, param = peer_key_algorithm(_der(make(), algorithm))  # type: ignore[operator]
    assert (alg.hex(), None if param is None else param.hex()) == expected


def test_garbage_is_refused() -> None:
    der = _der(ec.generate_private_key(ec.SECP521R1()), hashes.SHA512())
    for bad in (b"", der[:50], b"\x04\x03abc", b"\x30\x85" + der[2:]):
        with pytest.raises(ValueError):
            peer_key_algorithm(bad)


def test_the_policy_module_does_not_load_cryptography() -> None:
    code = (
        "import sys, chargepoint.adapters.v2g_tls, chargepoint.adapters.iso15118_setup, "
        "chargepoint.adapters.ocpp_client; "
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
