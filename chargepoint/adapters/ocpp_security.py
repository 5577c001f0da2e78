"""The station's certificates, keys and TLS contexts (OCPP 2.0.1 A00-A03, M03-M05).

:class:`FileCertificateStore` implements
:class:`chargepoint.ocpp.certificates.CertificateStore` with the
``cryptography`` package and plain files:

``<dir>/roots/<use>/<sha256>.pem``
    CA certificates installed with InstallCertificate, one per file.
``<dir>/station/<use>.pem`` and ``<dir>/station/<use>.key``
    the station's own certificate chain (leaf first) and private key, once a
    CertificateSigned was accepted (``use`` = ChargingStationCertificate or
    V2GCertificate).
``<dir>/pending/<use>.key``
    the key of a CSR that has not been answered yet.

Keys are generated here and never leave the station.  The directory is mode
0700 and every file 0600; each file is written to a temporary name, synced,
then renamed, so a crash leaves the old file or the new one.

``cryptography`` (some 12 MB resident) is imported only where a certificate,
key or CSR is actually handled, never at start-up with an empty store: the
service must stay small when no certificate work is done.

:func:`client_tls_context` builds the ``ssl`` context for security profiles 2
and 3, and :func:`describe_tls_failure` turns an ``ssl`` exception into the
sentence an operator needs ("server certificate expired", ...).
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from chargepoint.ocpp.certificates import (
    CHARGING_STATION_CERTIFICATE,
    CSMS_ROOT,
    V2G_CERTIFICATE,
    V2G_CERTIFICATE_CHAIN,
    CertificateHash,
    InstalledCertificate,
    Outcome,
)

if TYPE_CHECKING:
    from cryptography import x509

logger = logging.getLogger(__name__)

#: which installed root a signed certificate of each kind must chain to
_SIGNED_ROOT = {CHARGING_STATION_CERTIFICATE: CSMS_ROOT, V2G_CERTIFICATE: "V2GRootCertificate"}
_MAX_CHAIN_DEPTH = 8


def _public_key_bytes(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value (RFC 6960 issuerKeyHash input)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: PLC0415

    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def certificate_hash(cert: x509.Certificate, issuer: x509.Certificate) -> CertificateHash:
    """CertificateHashDataType of ``cert`` (M03): issuer name, issuer key, serial."""
    return CertificateHash(
        issuer_name_hash=hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=hashlib.sha256(_public_key_bytes(issuer)).hexdigest(),
        serial_number=format(cert.serial_number, "x"),
    )


def _spki(cert_or_key: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return cert_or_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm  # noqa: PLC0415

    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (the folders exist)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


class FileCertificateStore:
    """Certificates and keys in a directory of the state directory."""

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        factory_credentials: tuple[Path, Path] | None = None,
    ) -> None:
        """``factory_credentials``: a client certificate and key provisioned outside
        OCPP, used for profile 3 until CertificateSigned installs one."""
        self.directory = directory
        self._clock = clock
        self._factory = factory_credentials

    def _folder(self, *parts: str) -> Path:
        """``<dir>/<parts>``, created mode 0700 (the store directory itself too)."""
        folders = [self.directory]
        for part in parts:
            folders.append(folders[-1] / part)
        for folder in folders:
            if not folder.is_dir():
                folder.mkdir(mode=0o700, parents=True)
                os.chmod(folder, 0o700)  # whatever the umask
        return folders[-1]

    # ------------------------------------------------------------- queries
    def roots(self, use: str) -> list[x509.Certificate]:
        folder = self.directory / "roots" / use
        out: list[x509.Certificate] = []
        if not folder.is_dir():
            return out
        from cryptography import x509  # noqa: PLC0415

        for path in sorted(folder.glob("*.pem")):
            try:
                out.append(x509.load_pem_x509_certificate(path.read_bytes()))
            except ValueError:
                logger.error("unreadable certificate %s: ignored", path)
        return out

    def roots_pem(self, use: str) -> str:
        roots = self.roots(use)
        if not roots:
            return ""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

        return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in roots)

    def station_credentials(
        self, use: str = CHARGING_STATION_CERTIFICATE
    ) -> tuple[Path, Path] | None:
        """(chain file, key file) of the station's certificate, if one is installed."""
        chain = self.directory / "station" / f"{use}.pem"
        key = self.directory / "station" / f"{use}.key"
        if chain.is_file() and key.is_file():
            return chain, key
        return self._factory if use == CHARGING_STATION_CERTIFICATE else None

    def has_station_certificate(self) -> bool:
        return self.station_credentials() is not None

    def installed(self) -> list[InstalledCertificate]:
        out: list[InstalledCertificate] = []
        folder = self.directory / "roots"
        for use_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
            for cert in self.roots(use_dir.name):
                issuer = self._issuer_of(cert)
                out.append(InstalledCertificate(use_dir.name, certificate_hash(cert, issuer)))
        # the station's own leaf certificates: listed so DeleteCertificate can name them
        # (M04.FR.06: answered Failed); GetInstalledCertificateIds reports only the
        # V2G chain of the two
        for use, listed_as in (
            (V2G_CERTIFICATE, V2G_CERTIFICATE_CHAIN),
            (CHARGING_STATION_CERTIFICATE, CHARGING_STATION_CERTIFICATE),
        ):
            credentials = self.station_credentials(use)
            if credentials is None:
                continue
            from cryptography import x509  # noqa: PLC0415

            try:
                chain = x509.load_pem_x509_certificates(credentials[0].read_bytes())
            except (OSError, ValueError):
                logger.error("unreadable certificate %s: ignored", credentials[0])
                continue
            issuer = chain[1] if len(chain) > 1 else self._issuer_of(chain[0])
            out.append(InstalledCertificate(listed_as, certificate_hash(chain[0], issuer)))
        return out

    def _issuer_of(self, cert: x509.Certificate) -> x509.Certificate:
        """The installed certificate that issued ``cert`` (itself for a root)."""
        roots = self.directory / "roots"
        if _issued_by(cert, cert) or not roots.is_dir():
            return cert
        for use_dir in roots.iterdir():
            for candidate in self.roots(use_dir.name):
                if _issued_by(cert, candidate):
                    return candidate
        return cert  # issuer not installed: hash over the certificate's own key

    # ------------------------------------------------------------ changes
    def install_root(self, use: str, pem: str) -> Outcome:
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415

        try:
            certs = x509.load_pem_x509_certificates(pem.encode())
        except ValueError as exc:
            return Outcome(False, f"not a PEM certificate: {exc}")
        if len(certs) != 1:
            return Outcome(False, "exactly one certificate expected")
        cert = certs[0]
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return Outcome(False, "not a CA certificate (no basicConstraints)")
        if not constraints.ca:
            return Outcome(False, "not a CA certificate")
        problem = self._validity_problem(cert)
        if problem is not None:
            return Outcome(False, problem)
        fingerprint = cert.fingerprint(hashes.SHA256()).hex()
        try:
            _write_private(
                self._folder("roots", use) / f"{fingerprint}.pem",
                cert.public_bytes(serialization.Encoding.PEM),
            )
        except OSError as exc:
            return Outcome(False, f"cannot store the certificate: {exc}", failed=True)
        logger.info("installed %s %s (%s)", use, cert.subject.rfc4514_string(), fingerprint[:16])
        return Outcome(True)

    def delete(self, target: CertificateHash) -> Outcome:
        folder = self.directory / "roots"
        for use_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
            for path in sorted(use_dir.glob("*.pem")):
                from cryptography import x509  # noqa: PLC0415

                cert = x509.load_pem_x509_certificate(path.read_bytes())
                if certificate_hash(cert, self._issuer_of(cert)) == target:
                    try:
                        path.unlink()
                    except OSError as exc:
                        return Outcome(False, f"cannot delete: {exc}", failed=True)
                    logger.info("deleted %s %s", use_dir.name, cert.subject.rfc4514_string())
                    return Outcome(True)
        return Outcome(False, "not found")

    def create_csr(self, use: str, common_name: str, organization: str) -> str:
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415

        # A00.FR.4xx: an EC key on secp256r1, generated and kept on the station.
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name(names))
            .sign(key, hashes.SHA256())
        )
        _write_private(
            self._folder("pending") / f"{use}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        logger.info("new key and CSR for %s (CN=%s)", use, common_name)
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def accept_signed(self, use: str, chain_pem: str) -> Outcome:
        pending = self.directory / "pending" / f"{use}.key"
        if not pending.is_file():
            return Outcome(False, "no CSR pending for this certificate type")
        from cryptography import x509  # noqa: PLC0415
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
        except ValueError as exc:
            return Outcome(False, f"not a PEM certificate chain: {exc}")
        leaf = chain[0]
        key = serialization.load_pem_private_key(pending.read_bytes(), password=None)
        own = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if _spki(leaf) != own:
            return Outcome(False, "the certificate is not for the station's pending key")
        for cert in chain:
            problem = self._validity_problem(cert)
            if problem is not None:
                return Outcome(False, problem)
        if not self._chains_to_root(leaf, chain[1:], self.roots(_SIGNED_ROOT[use])):
            return Outcome(False, f"the chain does not lead to an installed {_SIGNED_ROOT[use]}")
        try:
            station = self._folder("station")
            _write_private(station / f"{use}.pem", chain_pem.encode())
            os.replace(pending, station / f"{use}.key")
        except OSError as exc:
            return Outcome(False, f"cannot store the certificate: {exc}", failed=True)
        logger.info("installed %s %s", use, leaf.subject.rfc4514_string())
        return Outcome(True)

    def _chains_to_root(
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        roots: list[x509.Certificate],
    ) -> bool:
        current = leaf
        for _ in range(_MAX_CHAIN_DEPTH):
            if any(_issued_by(current, root) for root in roots):
                return True
            parent = next((c for c in intermediates if _issued_by(current, c)), None)
            if parent is None or parent == current:
                return False
            current = parent
        return False

    def _validity_problem(self, cert: x509.Certificate) -> str | None:
        now = self._clock()
        if now > cert.not_valid_after_utc:
            return f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
        if now < cert.not_valid_before_utc:
            return f"certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
        return None


# ------------------------------------------------------------------- TLS
def client_tls_context(
    *,
    roots_pem: str = "",
    roots_file: Path | None = None,
    client_credentials: tuple[Path, Path] | None = None,
) -> ssl.SSLContext:
    """The TLS context of security profiles 2 and 3 (A00.FR.3xx).

    TLS 1.2 or newer; the server certificate must chain to the installed
    CSMSRootCertificate(s) (``roots_pem``) or the configured ones (``roots_file``)
    and match the host name; the system store only when neither is given.
    Profile 3 adds the station's certificate and key (``client_credentials``).
    """
    if roots_pem or roots_file is not None:
        context = ssl.create_default_context(
            cafile=str(roots_file) if roots_file is not None else None,
            cadata=roots_pem or None,
        )
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_credentials is not None:
        chain, key = client_credentials
        context.load_cert_chain(chain, key)
    return context


@dataclass(frozen=True)
class TlsFailure:
    """Why a connection attempt failed, and the SecurityEventNotification type it is (A00)."""

    description: str
    security_event: str | None


#: OpenSSL verify codes (X509_V_ERR_*) and what they mean to an operator.
_VERIFY_CODES = {
    2: "unknown CA: the server certificate's issuer is not an installed CSMSRootCertificate",
    10: "server certificate expired",
    9: "server certificate not yet valid",
    18: "unknown CA: the server certificate is self-signed and not installed",
    19: "unknown CA: self-signed certificate in the server's chain",
    20: "unknown CA: the server certificate does not chain to an installed CSMSRootCertificate",
    21: "unknown CA: the server certificate does not chain to an installed CSMSRootCertificate",
    62: "server certificate does not match the CSMS host name",
}
_PROTOCOL_REASONS = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "WRONG_SSL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_VERSION_NUMBER",
    }
)
_CLIENT_CERT_REASONS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)


def describe_tls_failure(exc: BaseException) -> TlsFailure | None:
    """Why a TLS handshake failed, in words; ``None`` if ``exc`` is no TLS failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            meaning = _VERIFY_CODES.get(current.verify_code)
            detail = current.verify_message or current.reason or str(current)
            text = f"TLS: {meaning} ({detail})" if meaning else f"TLS: {detail}"
            return TlsFailure(text, "InvalidCsmsCertificate")  # A00: server cert invalid
        if isinstance(current, ssl.SSLError):
            reason = current.reason or ""
            if reason in _PROTOCOL_REASONS:
                return TlsFailure(
                    "TLS: protocol version refused, the CSMS offers no TLS 1.2 or newer "
                    f"({reason})",
                    "InvalidTLSVersion",
                )
            if reason in _CLIENT_CERT_REASONS:
                return TlsFailure(
                    f"TLS: the CSMS refused the station's client certificate ({reason})",
                    "FailedToAuthenticateAtCsms",
                )
            return TlsFailure(f"TLS: {reason or current}", None)
        current = current.__cause__ or current.__context__
    return None
