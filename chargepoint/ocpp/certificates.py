"""Certificate management as the core sees it (OCPP 2.0.1 A02/A03, M03-M05), sans-I/O.

Theory of operation: the cryptography (parsing certificates, generating keys
and CSRs, walking chains) and the files live in the adapter
(:mod:`chargepoint.adapters.ocpp_security`).  The core talks to it through the
:class:`CertificateStore` protocol, synchronously, because every incoming CALL
is answered at once and the answers depend on what the store finds.  The
core keeps the policies: which certificate types exist in which OCPP
version, which certificate may not be deleted, which CSR to make when.

Hash data (CertificateHashDataType) follows RFC 6960 (OCSP CertID): SHA-256
of the DER issuer name, SHA-256 of the issuer's public key (the BIT STRING
value), the serial number as hex without leading zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

#: InstallCertificateUseEnumType (2.0.1; 2.1 adds OEMRootCertificate).
ROOT_USES_V201 = (
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "ManufacturerRootCertificate",
)
ROOT_USES_V21 = (*ROOT_USES_V201, "OEMRootCertificate")
CSMS_ROOT = "CSMSRootCertificate"
#: CertificateSigningUseEnumType
CHARGING_STATION_CERTIFICATE = "ChargingStationCertificate"
V2G_CERTIFICATE = "V2GCertificate"
#: GetCertificateIdUseEnumType value for the station's own 15118 chain.
V2G_CERTIFICATE_CHAIN = "V2GCertificateChain"


@dataclass(frozen=True)
class CertificateHash:
    """CertificateHashDataType (hashAlgorithm SHA256)."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: str = "SHA256"

    def to_json(self) -> dict[str, Any]:
        return {
            "hashAlgorithm": self.hash_algorithm,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CertificateHash:
        return cls(
            data["issuerNameHash"].lower(),
            data["issuerKeyHash"].lower(),
            data["serialNumber"].lower().lstrip("0") or "0",
            data["hashAlgorithm"],
        )


@dataclass(frozen=True)
class InstalledCertificate:
    """One entry of GetInstalledCertificateIds: ``use`` is a GetCertificateIdUseEnumType."""

    use: str
    hash: CertificateHash


class InstallStatus(Enum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    FAILED = "Failed"


@dataclass(frozen=True)
class Outcome:
    """What the store did; ``reason`` says why not (for logs and statusInfo)."""

    ok: bool
    reason: str = ""
    #: for installs: Rejected (the certificate is unacceptable) vs Failed (storage)
    failed: bool = False


class CertificateStore(Protocol):
    """The station's certificates and keys, kept by the adapter."""

    def installed(self) -> list[InstalledCertificate]: ...

    def has_station_certificate(self) -> bool:
        """Whether a ChargingStationCertificate (and its key) is available (profile 3)."""

    def install_root(self, use: str, pem: str) -> Outcome:
        """InstallCertificate (M05): check and store one CA certificate of type ``use``."""

    def delete(self, target: CertificateHash) -> Outcome:
        """DeleteCertificate (M04): remove the installed certificate with this hash."""

    def create_csr(self, use: str, common_name: str, organization: str) -> str:
        """A02/A03: a fresh key pair (kept on the station) and its CSR, PEM."""

    def accept_signed(self, use: str, chain_pem: str) -> Outcome:
        """CertificateSigned (A02/A03): check the chain against the pending key and the
        installed roots; install it on success."""


class NoCertificates:
    """A store with nothing in it and nothing allowed (when none is configured)."""

    def installed(self) -> list[InstalledCertificate]:
        return []

    def has_station_certificate(self) -> bool:
        return False

    def install_root(self, use: str, pem: str) -> Outcome:
        return Outcome(False, "no certificate store configured", failed=True)

    def delete(self, target: CertificateHash) -> Outcome:
        return Outcome(False, "not found")

    def create_csr(self, use: str, common_name: str, organization: str) -> str:
        return ""

    def accept_signed(self, use: str, chain_pem: str) -> Outcome:
        return Outcome(False, "no certificate store configured")
