"""The manufacturer's trust for firmware signing certificates (L01): root and CRLs.

The PKI is made in the test (`tests/ocpp/pki.py`); the CRLs with `cryptography`,
as the manufacturer's CA would publish them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from chargepoint.adapters.firmware_update import ManufacturerRoot
from chargepoint.errors import ConfigError
from tests.ocpp.pki import NOW, Issued, issue, make_ca


def crl(
    ca: Issued, *revoked: Issued, signer: Issued | None = None
) -> x509.CertificateRevocationList:
    """A CRL naming ``ca`` as issuer and listing ``revoked``, signed by ``signer`` (``ca``)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(NOW - timedelta(hours=1))
        .next_update(NOW + timedelta(days=7))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.cert.serial_number)
            .revocation_date(NOW - timedelta(minutes=5))
            .build()
        )
    return builder.sign((signer or ca).key, hashes.SHA256())


def pem(*items: x509.CertificateRevocationList) -> bytes:
    return b"".join(item.public_bytes(serialization.Encoding.PEM) for item in items)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Issued, Path]:
    root = make_ca("Manufacturer root")
    path = tmp_path / "root.pem"
    path.write_text(root.pem)
    return root, path


def test_tc_l_04_a_signing_certificate_in_the_manufacturer_crl_is_revoked(
    pki: tuple[Issued, Path], tmp_path: Path
) -> None:
    """TC_L_04's station side: the CRL (PEM) lists one signing certificate: it is
    RevokedCertificate, its sibling stays Accepted."""
    root, root_file = pki
    revoked, good = issue(root, "Signing 1", server=False), issue(root, "Signing 2", server=False)
    crl_file = tmp_path / "signing.crl"
    crl_file.write_bytes(pem(crl(root, revoked)))
    trust = ManufacturerRoot.load(root_file, crl_file)
    assert trust.check_signing_certificate(revoked.pem) == "RevokedCertificate"
    assert trust.check_signing_certificate(good.pem) == "Accepted"


def test_an_intermediate_ca_crl_in_der_revokes_its_certificates(
    pki: tuple[Issued, Path], tmp_path: Path
) -> None:
    """A signing certificate under an intermediate CA (sent with the chain): the
    intermediate's CRL, in DER, revokes it; without the CRL it is Accepted."""
    root, root_file = pki
    sub = make_ca("Firmware sub-CA", issuer=root)
    leaf = issue(sub, "Signing", server=False)
    chain = leaf.pem + sub.pem
    assert ManufacturerRoot.load(root_file).check_signing_certificate(chain) == "Accepted"
    crl_file = tmp_path / "sub.crl"
    crl_file.write_bytes(crl(sub, leaf).public_bytes(serialization.Encoding.DER))
    trust = ManufacturerRoot.load(root_file, crl_file)
    assert trust.check_signing_certificate(chain) == "RevokedCertificate"


def test_a_crl_not_signed_by_its_issuer_revokes_nothing(
    pki: tuple[Issued, Path], tmp_path: Path
) -> None:
    """A forged CRL (the sub-CA's name, someone else's key) is ignored; one claiming the
    root's name with another key is refused when the configuration is loaded."""
    root, root_file = pki
    sub = make_ca("Firmware sub-CA", issuer=root)
    leaf = issue(sub, "Signing", server=False)
    forger = make_ca("Forger")
    crl_file = tmp_path / "forged.crl"
    crl_file.write_bytes(pem(crl(sub, leaf, signer=forger)))
    trust = ManufacturerRoot.load(root_file, crl_file)
    assert trust.check_signing_certificate(leaf.pem + sub.pem) == "Accepted"
    crl_file.write_bytes(pem(crl(root, signer=forger)))
    with pytest.raises(ConfigError) as problem:
        ManufacturerRoot.load(root_file, crl_file)
    assert problem.value.problems[0][0] == "csms.firmware_signing_crl"


def test_an_unreadable_crl_is_a_configuration_error(
    pki: tuple[Issued, Path], tmp_path: Path
) -> None:
    _, root_file = pki
    crl_file = tmp_path / "broken.crl"
    crl_file.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    with pytest.raises(ConfigError) as problem:
        ManufacturerRoot.load(root_file, crl_file)
    assert problem.value.problems[0][0] == "csms.firmware_signing_crl"
