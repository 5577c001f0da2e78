"""Firmware update, the I/O side (OCPP 2.0.1 L01): trust, download, signature, install.

* :class:`ManufacturerRoot` is the core's ``SigningCheck``: the signing certificate
  (PEM, possibly with intermediates) must chain to the manufacturer root of
  ``[csms] firmware_signing_root``, be valid now and not be listed in a CRL of
  ``[csms] firmware_signing_crl`` signed by its issuer (RevokedCertificate).  A CRL
  is what a manufacturer's CA publishes to revoke a signing key; its signature is
  checked, so a forged list can neither revoke nor un-revoke.
* :func:`signature_valid`: the signature is base64 of RSA (PKCS#1 v1.5 or PSS) or
  ECDSA with SHA-256 over the whole firmware file (L01.FR.04-style).
* :class:`FirmwareUpdater` carries out the core's commands one at a time:
  download over HTTPS (system trust store or ``[firmware] ca_file``) with the
  request's retries and interval and a size cap, check the signature, install the
  release bundle beside the running one (:mod:`chargepoint.release`) and switch to
  it, reporting each step as a :class:`FirmwareProgress`.  A cancelled request's
  work stops at once; nothing more is reported for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from chargepoint.adapters.release import run_process
from chargepoint.errors import ChargepointError, ConfigError
from chargepoint.ocpp.station_io import (
    CancelFirmware,
    DownloadFirmware,
    FirmwareProgress,
    InstallFirmware,
)
from chargepoint.release import InstallError, Releases

log = logging.getLogger(__name__)

#: longest certificate chain walked from the signing certificate to the root
MAX_CHAIN = 5
DOWNLOAD_TIMEOUT_S = 60.0


# ------------------------------------------------------------------- trust
class ManufacturerRoot:
    """The root(s) firmware signing certificates must chain to, and the CRLs that
    revoke some of the certificates under them."""

    def __init__(
        self, roots: list[x509.Certificate], crls: Sequence[x509.CertificateRevocationList] = ()
    ) -> None:
        self._roots = roots
        #: the manufacturer's revocation lists (each used only if its issuer signed it)
        self.revoked = tuple(crls)

    @classmethod
    def load(cls, path: Path, crl_path: Path | None = None) -> ManufacturerRoot:
        try:
            roots = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                "csms", [("csms.firmware_signing_root", f"cannot read {path}: {exc}")]
            ) from exc
        crls = [] if crl_path is None else load_crls(crl_path)
        for crl in crls:
            root = next((r for r in roots if r.subject == crl.issuer), None)
            if root is not None and not _crl_signed_by(crl, root):
                raise ConfigError(
                    "csms",
                    [("csms.firmware_signing_crl", f"{crl_path}: not signed by {root.subject}")],
                )
        return cls(roots, crls)

    def check_signing_certificate(self, pem: str) -> str:
        try:
            chain = x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            return "InvalidCertificate"
        now = datetime.now(UTC)
        current = chain[0]
        for _ in range(MAX_CHAIN):
            if not current.not_valid_before_utc <= now <= current.not_valid_after_utc:
                return "InvalidCertificate"
            root = next((r for r in self._roots if _issued_by(current, r)), None)
            issuer = root or next((c for c in chain[1:] if _issued_by(current, c)), None)
            if issuer is None:
                return "InvalidCertificate"
            if self._is_revoked(current, issuer):
                return "RevokedCertificate"
            if root is not None:
                return "Accepted"
            current = issuer
        return "InvalidCertificate"

    def _is_revoked(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        """``cert`` is listed by a CRL that its (verified) issuer signed."""
        return any(
            crl.issuer == cert.issuer
            and _crl_signed_by(crl, issuer)
            and crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
            for crl in self.revoked
        )


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """The CRLs in ``path``: one or more PEM blocks, or one DER CRL."""
    try:
        data = path.read_bytes()
        if PEM_CRL not in data:
            return [x509.load_der_x509_crl(data)]
        blocks = data.split(PEM_CRL)[1:]
        return [x509.load_pem_x509_crl(PEM_CRL + block) for block in blocks]
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "csms", [("csms.firmware_signing_crl", f"cannot read {path}: {exc}")]
        ) from exc


PEM_CRL = b"-----BEGIN X509 CRL-----"


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return False
    return crl.issuer == issuer.subject and crl.is_signature_valid(key)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def signature_valid(certificate_pem: str, signature_b64: str, firmware: Path) -> bool:
    """The firmware file's signature verifies with the signing certificate's key."""
    try:
        key = x509.load_pem_x509_certificates(certificate_pem.encode())[0].public_key()
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error):
        return False
    data = firmware.read_bytes()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
            return True
        if isinstance(key, rsa.RSAPublicKey):
            for scheme in (
                padding.PKCS1v15(),
                padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
            ):
                try:
                    key.verify(signature, data, scheme, hashes.SHA256())
                except InvalidSignature:
                    continue
                return True
    except InvalidSignature:
        return False
    return False


# ---------------------------------------------------------------- download
class DownloadError(ChargepointError):
    pass


def fetch(url: str, dest: Path, context: ssl.SSLContext, max_bytes: int) -> None:
    """Download ``url`` to ``dest`` (blocking: run in a thread); HTTPS only."""
    if not url.lower().startswith("https://"):
        raise DownloadError("only https:// locations are supported (FileTransferProtocols)")
    request = urllib.request.Request(url, headers={"User-Agent": "chargepoint-firmware"})
    total = 0
    try:
        with (
            urllib.request.urlopen(request, context=context, timeout=DOWNLOAD_TIMEOUT_S) as answer,
            dest.open("wb") as out,
        ):
            while chunk := answer.read(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"larger than the {max_bytes} byte limit")
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(str(exc)) from exc


# ----------------------------------------------------------------- updater
@dataclass(frozen=True)
class UpdaterSettings:
    releases_dir: Path
    confirm_within_s: float
    max_download_bytes: int
    ssl_context: ssl.SSLContext
    #: the interpreter new releases' virtual environments are made from
    python: str


Report = Callable[[FirmwareProgress], None]
Command = DownloadFirmware | InstallFirmware


class FirmwareUpdater:
    """Carries out firmware commands one after the other (run :meth:`run` as a task)."""

    def __init__(self, settings: UpdaterSettings, report: Report) -> None:
        self.settings = settings
        self.releases = Releases(settings.releases_dir, python=settings.python)
        self._report = report
        self._queue: asyncio.Queue[Command] = asyncio.Queue()
        self._cancelled: set[int] = set()
        self._busy: tuple[int, asyncio.Task[None]] | None = None

    def submit(self, command: Command | CancelFirmware) -> None:
        if isinstance(command, CancelFirmware):
            self._cancelled.add(command.request_id)
            if self._busy is not None and self._busy[0] == command.request_id:
                self._busy[1].cancel()
            return
        self._queue.put_nowait(command)

    async def run(self) -> None:
        # Files a restart left behind: the core fetches an interrupted job's file again.
        for stale in (self.settings.releases_dir / "downloads").glob("firmware-*.bundle"):
            stale.unlink(missing_ok=True)
        while True:
            command = await self._queue.get()
            if command.request_id in self._cancelled:
                continue
            work = asyncio.create_task(self._carry_out(command), name="firmware")
            self._busy = (command.request_id, work)
            try:
                await work
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being stopped ourselves
                log.info("firmware request %d cancelled", command.request_id)
            finally:
                self._busy = None

    async def _carry_out(self, command: Command) -> None:
        if isinstance(command, DownloadFirmware):
            await self._download(command)
        else:
            await self._install(command)

    async def _download(self, command: DownloadFirmware) -> None:
        downloads = self.settings.releases_dir / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        dest = downloads / f"firmware-{command.request_id}.bundle"
        for attempt in range(command.retries + 1):
            if attempt:
                await asyncio.sleep(command.retry_interval_s)
            try:
                await asyncio.to_thread(
                    fetch,
                    command.url,
                    dest,
                    self.settings.ssl_context,
                    self.settings.max_download_bytes,
                )
                break
            except DownloadError as exc:
                log.warning(
                    "firmware download %d, attempt %d: %s", command.request_id, attempt + 1, exc
                )
                detail = str(exc)
        else:
            dest.unlink(missing_ok=True)
            self._progress(command.request_id, "DownloadFailed", detail=detail)
            return
        self._progress(command.request_id, "Downloaded", path=str(dest))
        valid = await asyncio.to_thread(
            signature_valid, command.signing_certificate, command.signature, dest
        )
        if not valid:
            dest.unlink(missing_ok=True)
            self._progress(command.request_id, "InvalidSignature", detail="signature mismatch")
            return
        self._progress(command.request_id, "SignatureVerified")

    async def _install(self, command: InstallFirmware) -> None:
        try:
            version = await asyncio.to_thread(self._install_and_switch, Path(command.path))
        except InstallError as exc:
            status = "InstallVerificationFailed" if exc.verification else "InstallationFailed"
            self._progress(command.request_id, status, detail=str(exc))
            return
        log.warning("release %s installed and switched to; rebooting into it", version)
        self._progress(command.request_id, "InstallRebooting", version=version)

    def _install_and_switch(self, bundle: Path) -> str:
        """Blocking: build the release, make it current (to be confirmed); its version."""
        try:
            manifest = self.releases.install(bundle, run_process)
        finally:
            bundle.unlink(missing_ok=True)
        self.releases.switch(
            manifest.version, now=time.time(), confirm_within_s=self.settings.confirm_within_s
        )
        return manifest.version

    def _progress(
        self, request_id: int, status: str, *, path: str | None = None, **extra: str
    ) -> None:
        if request_id in self._cancelled:
            return
        self._report(FirmwareProgress(request_id, status, path=path, **extra))
