"""Functional block L: secure firmware update (L01), sans-I/O.

Theory of operation: an UpdateFirmware is answered at once.  Only signed updates
are taken (L01; the unsigned L02 is refused, TC_L_18); the signing certificate is
checked against the manufacturer root through :class:`SigningCheck` (the adapter
does the cryptography) before accepting (L01.FR.02).  The accepted request is one
job that moves through these phases; each step is reported with a durable
FirmwareStatusNotification carrying the request's id (L01.FR.01, L01.FR.20)::

    SCHEDULED --retrieveDateTime--> DOWNLOADING --Downloaded--> VERIFYING
      --SignatureVerified--> WAITING (installDateTime ahead: InstallScheduled;
      a transaction running: the install waits for it, L01.FR.06)
      --> INSTALLING --InstallRebooting--> REBOOTING --boot--> Installed / InstallationFailed

The runtime does the work: the block gives it :class:`DownloadFirmware`,
:class:`InstallFirmware`, :class:`CancelFirmware` and :class:`RebootForFirmware`
and hears back through :class:`FirmwareProgress`.  Before the reboot the request id
and the version switched to are stored (state ``firmware``); after it, the boot
reason is FirmwareUpdate and, once the BootNotification is Accepted, Installed is
reported if the station runs that version (else InstallationFailed: the release
was rolled back).  A newer UpdateFirmware cancels the job (L01.FR.24) unless the
switch is under way (L01.FR.27).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Protocol

from chargepoint.errors import RemoteProtocolError
from chargepoint.ocpp.blocks.security import SecurityBlock
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.outbox import (
    Block,
    DeliverCommand,
    Handler,
    Outbox,
    StoreState,
    parse_timestamp,
)
from chargepoint.ocpp.queue import MessageKind, QueuedMessage
from chargepoint.ocpp.rpc import Call, JsonObject
from chargepoint.ocpp.station_io import (
    CancelFirmware,
    DownloadFirmware,
    FirmwareProgress,
    InstallFirmware,
    RebootForFirmware,
    StationEvent,
)

logger = logging.getLogger(__name__)

#: when UpdateFirmware leaves them out, the station decides (L01)
DEFAULT_RETRIES = 3
DEFAULT_RETRY_INTERVAL_S = 60
#: longest wait for the CSMS to take InstallRebooting before rebooting anyway
REBOOT_WAIT_S = 30.0
STATE = "firmware"


class SigningCheck(Protocol):
    """The manufacturer root the station trusts for firmware (supplied by the adapter)."""

    def check_signing_certificate(self, pem: str) -> str:
        """UpdateFirmwareStatusEnumType for ``pem``: Accepted (it chains to the root and
        is valid now), InvalidCertificate or RevokedCertificate."""


class Phase(Enum):
    SCHEDULED = "scheduled"  # waiting for retrieveDateTime
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"  # downloaded, the signature being checked
    WAITING = "waiting"  # verified; installDateTime ahead or a transaction running
    INSTALLING = "installing"
    REBOOTING = "rebooting"


@dataclass(frozen=True)
class _Job:
    request_id: int
    location: str
    retries: int
    retry_interval_s: int
    certificate: str
    signature: str
    retrieve_at: float  # monotonic
    install_at: float | None  # monotonic
    phase: Phase = Phase.SCHEDULED
    path: str | None = None
    install_scheduled_sent: bool = False


#: what the runtime may report, and whether it ends the job
_FROM_RUNTIME = {
    "Downloaded": False,
    "DownloadPaused": False,
    "DownloadFailed": True,
    "SignatureVerified": False,
    "InvalidSignature": True,
    "InstallRebooting": False,
    "InstallationFailed": True,
    "InstallVerificationFailed": True,
    "Installed": True,
}


class FirmwareBlock(Block):
    """UpdateFirmware (L01) and FirmwareStatusNotification."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        signing: SigningCheck | None,
        transactions: TransactionsBlock,
        security: SecurityBlock,
        running_version: str | None,
        stored: Mapping[str, Any] | None = None,
    ) -> None:
        self._outbox = outbox
        self._signing = signing
        self._transactions = transactions
        self._security = security
        self._running_version = running_version
        self._job: _Job | None = None
        #: the last status sent and its request id (TriggerMessage)
        self._last: tuple[str, int | None] = ("Idle", None)
        #: (request id, version) of an install that rebooted into a new release
        self._after_reboot: tuple[int, str | None] | None = None
        #: reboot once InstallRebooting is delivered (True), or at this time anyway
        self._reboot_due: float | None = None
        self._reboot_now = False
        if stored and stored.get("status") == "InstallRebooting":
            request_id = int(stored["requestId"])
            self._after_reboot = (request_id, stored.get("version"))
            self._last = ("InstallRebooting", request_id)

    def handlers(self) -> Mapping[str, Handler]:
        return {"UpdateFirmware": self._on_update_firmware}

    # ------------------------------------------------------------- queries
    def firmware_status(self) -> tuple[str, int | None]:
        """F06 TriggerMessage(FirmwareStatusNotification): the status to send and its
        request id; Idle (no id) when no update is going on."""
        status, request_id = self._last
        if self._job is None and self._after_reboot is None:
            return ("Idle", None)
        return (status, request_id)

    def boot_reason(self) -> str | None:
        """FirmwareUpdate for the first boot after an install (B01 BootReasonEnumType)."""
        return "FirmwareUpdate" if self._after_reboot is not None else None

    # ------------------------------------------------------------ UpdateFirmware
    def _on_update_firmware(self, call: Call, now: float, size: int) -> JsonObject:
        payload = call.payload
        firmware = payload["firmware"]
        request_id = int(payload["requestId"])
        certificate = firmware.get("signingCertificate")
        signature = firmware.get("signature")
        if not certificate or not signature:
            # TC_L_18: this station only takes signed firmware (L01), never L02.
            logger.warning("UpdateFirmware %d without signature refused", request_id)
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnsignedFirmware"}}
        verdict = (
            "InvalidCertificate"
            if self._signing is None
            else self._signing.check_signing_certificate(certificate)
        )
        if verdict != "Accepted":
            # L01.FR.02: the certificate is checked before the request is accepted;
            # an unusable one is a security event (A04).
            logger.warning("UpdateFirmware %d: signing certificate %s", request_id, verdict)
            self._security.security_event(
                now, "InvalidFirmwareSigningCertificate", f"UpdateFirmware {request_id}: {verdict}"
            )
            return {"status": verdict}
        try:
            retrieve_at = self._monotonic(firmware["retrieveDateTime"])
            install_text = firmware.get("installDateTime")
            install_at = None if install_text is None else self._monotonic(install_text)
        except RemoteProtocolError as exc:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "InvalidValue", "additionalInfo": str(exc)[:512]},
            }
        status = "Accepted"
        if self._job is not None:
            if self._job.phase in (Phase.INSTALLING, Phase.REBOOTING):
                # L01.FR.27: the switch to the new release cannot be cancelled.
                return {"status": "Rejected", "statusInfo": {"reasonCode": "InstallOngoing"}}
            # L01.FR.24: a newer request cancels the ongoing update.
            logger.info("UpdateFirmware %d cancels %d", request_id, self._job.request_id)
            self._outbox.emit(DeliverCommand(CancelFirmware(self._job.request_id)))
            status = "AcceptedCanceled"
        retries = payload.get("retries")
        interval = payload.get("retryInterval")
        self._job = _Job(
            request_id=request_id,
            location=firmware["location"],
            retries=DEFAULT_RETRIES if retries is None else max(0, int(retries)),
            retry_interval_s=(
                DEFAULT_RETRY_INTERVAL_S if interval is None else max(0, int(interval))
            ),
            certificate=certificate,
            signature=signature,
            retrieve_at=retrieve_at,
            install_at=install_at,
        )
        if now < retrieve_at:
            self._report("DownloadScheduled", request_id)
        else:
            self._advance(now)
        return {"status": status}

    def _monotonic(self, timestamp: str) -> float:
        return parse_timestamp(timestamp) - self._outbox.utc_offset_s

    # ------------------------------------------------------------- progress
    def _advance(self, now: float) -> None:
        """Take the job as far as the clock and the transactions allow."""
        job = self._job
        if job is None:
            return
        if job.phase is Phase.SCHEDULED and now >= job.retrieve_at:
            self._job = replace(job, phase=Phase.DOWNLOADING)
            self._report("Downloading", job.request_id)
            self._outbox.emit(
                DeliverCommand(
                    DownloadFirmware(
                        job.request_id,
                        job.location,
                        job.retries,
                        job.retry_interval_s,
                        job.certificate,
                        job.signature,
                    )
                )
            )
        elif job.phase is Phase.WAITING:
            later = job.install_at is not None and now < job.install_at
            busy = self._transactions.busy(None)
            if later or busy:
                if not job.install_scheduled_sent:
                    # L01.FR.16: installDateTime ahead; L01.FR.06: a transaction runs.
                    self._job = replace(job, install_scheduled_sent=True)
                    self._report("InstallScheduled", job.request_id)
                return
            assert job.path is not None
            self._job = replace(job, phase=Phase.INSTALLING)
            self._report("Installing", job.request_id)
            self._outbox.emit(DeliverCommand(InstallFirmware(job.request_id, job.path)))

    def on_event(self, event: StationEvent, now: float) -> None:
        if not isinstance(event, FirmwareProgress):
            return
        job = self._job
        if job is None or event.request_id != job.request_id:
            logger.debug("firmware progress for request %d ignored", event.request_id)
            return
        ends = _FROM_RUNTIME.get(event.status)
        if ends is None:
            logger.warning("unexpected firmware status from the runtime: %s", event.status)
            return
        if event.detail:
            logger.info("firmware %d: %s (%s)", job.request_id, event.status, event.detail)
        self._report(event.status, job.request_id)
        if event.status == "InvalidSignature":
            # A04/L01: an invalid firmware signature is a security event.
            self._security.security_event(now, "InvalidFirmwareSignature", event.detail)
        if ends:
            self._job = None
        elif event.status == "Downloaded":
            self._job = replace(job, phase=Phase.VERIFYING, path=event.path)
        elif event.status == "SignatureVerified":
            self._job = replace(job, phase=Phase.WAITING)
            self._advance(now)
        elif event.status == "InstallRebooting":
            # L01.FR.15: InstallRebooting goes out (stored, durable) before the reboot;
            # the request survives it in the state store.
            self._job = replace(job, phase=Phase.REBOOTING)
            self._outbox.emit(
                StoreState(
                    STATE,
                    {
                        "requestId": job.request_id,
                        "status": "InstallRebooting",
                        "version": event.version,
                    },
                )
            )
            # Reboot once the CSMS has it (or offline at once; or after REBOOT_WAIT_S).
            self._reboot_due = now + REBOOT_WAIT_S if self._outbox.online else now
            self._reboot_if_due(now)

    def on_queued_result(self, message: QueuedMessage, result: JsonObject, now: float) -> None:
        if (
            self._reboot_due is not None
            and message.action == "FirmwareStatusNotification"
            and message.payload.get("status") == "InstallRebooting"
        ):
            self._reboot_now = True  # acted on in on_clock, once it has left the queue

    def _reboot_if_due(self, now: float) -> None:
        job = self._job
        if self._reboot_due is None or job is None:
            return
        if self._reboot_now or now >= self._reboot_due:
            self._reboot_due, self._reboot_now = None, False
            self._outbox.emit(DeliverCommand(RebootForFirmware(job.request_id)))

    def on_clock(self, now: float) -> None:
        self._reboot_if_due(now)
        if self._job is not None and self._job.phase in (Phase.SCHEDULED, Phase.WAITING):
            self._advance(now)
        if self._after_reboot is not None and self._outbox.accepted:
            self._finish_after_reboot(now)

    def _finish_after_reboot(self, now: float) -> None:
        """L01: after the reboot, once the BootNotification is Accepted, the outcome."""
        assert self._after_reboot is not None
        request_id, version = self._after_reboot
        self._after_reboot = None
        installed = version is not None and version == self._running_version
        self._report("Installed" if installed else "InstallationFailed", request_id)
        self._outbox.emit(StoreState(STATE, {}))
        if installed:
            self._security.security_event(now, "FirmwareUpdated", f"release {version}")
        else:
            logger.error(
                "firmware request %d: running %s, not %s (rolled back)",
                request_id,
                self._running_version,
                version,
            )

    def next_deadline(self) -> float | None:
        job = self._job
        if job is None:
            return None
        if self._reboot_due is not None:
            return self._reboot_due
        if job.phase is Phase.SCHEDULED:
            return job.retrieve_at
        if job.phase is Phase.WAITING and job.install_at is not None:
            return job.install_at
        return None

    def _report(self, status: str, request_id: int) -> None:
        """L01.FR.01: every new state is reported, with the request's id (L01.FR.20)."""
        self._last = (status, request_id)
        logger.info("firmware request %d: %s", request_id, status)
        self._outbox.enqueue(
            "FirmwareStatusNotification",
            {"status": status, "requestId": request_id},
            MessageKind.OTHER,
        )
