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

While the install waits for running transactions, every EVSE is held Unavailable
through :class:`AvailabilityBlock` (L01.FR.07), and released if the install fails
or is cancelled.  The job itself (the request and its phase) is stored at every
step, so a restart that cuts it short is reported, not forgotten (see
:meth:`FirmwareBlock._resume`): a scheduled download still waits; a download,
signature check or wait for the install starts the download again (once, for an
interrupted download: twice is DownloadFailed); an install is InstallationFailed
unless the station already runs a different release (the switch was done: as
after InstallRebooting).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any, Protocol

from chargepoint.errors import LocalProtocolError, RemoteProtocolError
from chargepoint.ocpp.blocks.availability import AvailabilityBlock
from chargepoint.ocpp.blocks.security import SecurityBlock
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.device_model import ComponentKey, VariableKey
from chargepoint.ocpp.outbox import (
    Block,
    DeliverCommand,
    Handler,
    Outbox,
    StoreState,
    parse_timestamp,
)
from chargepoint.ocpp.queue import MessageKind, QueuedMessage
from chargepoint.ocpp.rpc import Call, JsonObject, ProtocolVersion
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
#: A CSMS's retries / retryInterval are clamped here before they reach a loop or a
#: timer (a huge value must not keep the station downloading, or overflow a sleep)
MAX_RETRIES = 10
MAX_RETRY_INTERVAL_S = 3600
#: longest wait for the CSMS to take InstallRebooting before rebooting anyway
REBOOT_WAIT_S = 30.0
#: restarts in the middle of one job's download before it is DownloadFailed
MAX_INTERRUPTED_DOWNLOADS = 1
STATE = "firmware"
#: L01.FR.07: with this ChargingStation variable true, new sessions may start while
#: the install waits (undeclared counts as false)
ALLOW_NEW_SESSIONS = (
    ComponentKey("ChargingStation"),
    VariableKey("AllowNewSessionsPendingFirmwareUpdate"),
)


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
class _Request:
    """What UpdateFirmware asked for, as stored (wall-clock times as the CSMS sent them)."""

    request_id: int
    location: str
    retries: int
    retry_interval_s: int
    certificate: str
    signature: str
    retrieve_date_time: str
    install_date_time: str | None
    #: the release running when the request came (tells a done switch after a restart)
    from_version: str | None


@dataclass(frozen=True)
class _Job:
    request: _Request
    retrieve_at: float  # monotonic
    install_at: float | None  # monotonic
    phase: Phase = Phase.SCHEDULED
    path: str | None = None
    install_scheduled_sent: bool = False
    #: downloads a restart cut short so far
    interrupted: int = 0

    @property
    def request_id(self) -> int:
        return self.request.request_id


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
        availability: AvailabilityBlock,
        security: SecurityBlock,
        running_version: str | None,
        stored: Mapping[str, Any] | None = None,
    ) -> None:
        self._outbox = outbox
        self._signing = signing
        self._transactions = transactions
        self._availability = availability
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
        #: the phase a restart interrupted, acted on at the first clock input
        self._interrupted: Phase | None = None
        #: EVSEs are held Unavailable for the install (L01.FR.07)
        self._holding = False
        if stored:
            self._load(stored)

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
            # TC_L_18: this station takes signed firmware only (L01); the unsigned
            # update of L02 would install code nobody vouched for.
            logger.warning("UpdateFirmware %d without signature refused", request_id)
            return {
                "status": "Rejected",
                "statusInfo": {
                    "reasonCode": "UnsignedFirmware",
                    "additionalInfo": "signed firmware only: signingCertificate and "
                    "signature are required",
                },
            }
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
        retries = payload.get("retries")
        interval = payload.get("retryInterval")
        request = _Request(
            request_id=request_id,
            location=firmware["location"],
            retries=DEFAULT_RETRIES if retries is None else max(0, min(int(retries), MAX_RETRIES)),
            retry_interval_s=(
                DEFAULT_RETRY_INTERVAL_S
                if interval is None
                else max(0, min(int(interval), MAX_RETRY_INTERVAL_S))
            ),
            certificate=certificate,
            signature=signature,
            retrieve_date_time=firmware["retrieveDateTime"],
            install_date_time=firmware.get("installDateTime"),
            from_version=self._running_version,
        )
        try:
            job = self._job_for(request)
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
            self._release(now)
            status = "AcceptedCanceled"
        self._job = job
        if now < job.retrieve_at:
            self._report("DownloadScheduled", request_id)
            self._set(job)
        else:
            self._advance(now)
        return {"status": status}

    def _job_for(self, request: _Request) -> _Job:
        """A new job for ``request``; raises RemoteProtocolError for a bad timestamp."""
        install = request.install_date_time
        return _Job(
            request=request,
            retrieve_at=self._monotonic(request.retrieve_date_time),
            install_at=None if install is None else self._monotonic(install),
        )

    def _monotonic(self, timestamp: str) -> float:
        return parse_timestamp(timestamp) - self._outbox.utc_offset_s

    # ------------------------------------------------------------- progress
    def _advance(self, now: float) -> None:
        """Take the job as far as the clock and the transactions allow."""
        job = self._job
        if job is None:
            return
        if job.phase is Phase.SCHEDULED and now >= job.retrieve_at:
            request = job.request
            self._report("Downloading", job.request_id)
            self._set(replace(job, phase=Phase.DOWNLOADING))
            self._outbox.emit(
                DeliverCommand(
                    DownloadFirmware(
                        request.request_id,
                        request.location,
                        request.retries,
                        request.retry_interval_s,
                        request.certificate,
                        request.signature,
                    )
                )
            )
        elif job.phase is Phase.WAITING:
            later = job.install_at is not None and now < job.install_at
            busy = self._transactions.busy(None)
            if not later and busy:
                self._hold(now)  # L01.FR.07
            if later or busy:
                if not job.install_scheduled_sent:
                    # L01.FR.16: installDateTime ahead; L01.FR.06: a transaction runs.
                    self._report("InstallScheduled", job.request_id)
                    self._set(replace(job, install_scheduled_sent=True))
                return
            assert job.path is not None
            self._report("Installing", job.request_id)
            self._set(replace(job, phase=Phase.INSTALLING))
            self._outbox.emit(DeliverCommand(InstallFirmware(job.request_id, job.path)))

    def _hold(self, now: float) -> None:
        """L01.FR.07: while the install waits for transactions, no new one starts."""
        if self._holding or self._new_sessions_allowed():
            return
        self._holding = True
        self._availability.hold_for_firmware(now)

    def _new_sessions_allowed(self) -> bool:
        try:
            return self._outbox.model.bool_value(*ALLOW_NEW_SESSIONS)
        except LocalProtocolError:
            return False  # L01.FR.07: "false or does not exist"

    def _release(self, now: float) -> None:
        """The install failed or was cancelled: the EVSEs are available again."""
        if self._holding:
            self._holding = False
            self._availability.release_firmware_hold(now)

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
            self._set(None)
            self._release(now)
        elif event.status == "Downloaded":
            self._set(replace(job, phase=Phase.VERIFYING, path=event.path))
        elif event.status == "SignatureVerified":
            self._set(replace(job, phase=Phase.WAITING))
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
        if self._interrupted is not None and self._outbox.accepted:
            self._resume(now)
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
        if installed:
            self._report("Installed", request_id)
        else:
            self._report(
                "InstallationFailed",
                request_id,
                reason=("RolledBack", f"running {self._running_version}, not {version}"),
            )
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

    # ------------------------------------------------------ across a restart
    def _set(self, job: _Job | None) -> None:
        """The job (None: no job) is kept and stored, so a restart finds it."""
        self._job = job
        if job is None:
            self._outbox.emit(StoreState(STATE, {}))
            return
        self._outbox.emit(
            StoreState(
                STATE,
                {
                    "requestId": job.request_id,
                    "status": self._last[0],
                    "phase": job.phase.value,
                    "request": asdict(job.request),
                    "interrupted": job.interrupted,
                },
            )
        )

    def _load(self, stored: Mapping[str, Any]) -> None:
        """The job a restart found in the state store (see :meth:`_resume`)."""
        request_id = int(stored["requestId"])
        if stored.get("status") == "InstallRebooting" and "request" not in stored:
            self._after_reboot = (request_id, stored.get("version"))
            self._last = ("InstallRebooting", request_id)
            return
        try:
            request = _Request(**stored["request"])
            request = replace(  # the state file is data too: bounded like a CSMS request
                request,
                retries=max(0, min(int(request.retries), MAX_RETRIES)),
                retry_interval_s=max(0, min(int(request.retry_interval_s), MAX_RETRY_INTERVAL_S)),
            )
            job = replace(
                self._job_for(request),
                phase=Phase(stored["phase"]),
                interrupted=int(stored.get("interrupted", 0)),
            )
        except (KeyError, TypeError, ValueError, RemoteProtocolError) as exc:
            logger.error("stored firmware job %d unreadable, dropped: %s", request_id, exc)
            return
        self._job = job
        self._last = (str(stored.get("status", "Idle")), request_id)
        if job.phase is Phase.INSTALLING and self._running_version != request.from_version:
            # The switch was done, the restart came before InstallRebooting was
            # stored: the release running now tells the outcome, as after a reboot.
            self._job = None
            self._after_reboot = (request_id, self._running_version)
        elif job.phase is not Phase.SCHEDULED:
            self._interrupted = job.phase

    def _resume(self, now: float) -> None:
        """L01 after a restart cut the job short: a download (or its check) starts
        again, once; a verified file is fetched and checked again rather than trusted
        after the restart; an install that did not switch failed."""
        phase, self._interrupted = self._interrupted, None
        job = self._job
        if job is None or phase is None:
            return
        logger.warning("firmware request %d: cut short by a restart (%s)", job.request_id, phase)
        if phase is Phase.INSTALLING:
            self._report(
                "InstallationFailed",
                job.request_id,
                reason=("Interrupted", "the station restarted during the install"),
            )
            self._set(None)
            return
        interrupted = job.interrupted + (phase is not Phase.WAITING)
        if interrupted > MAX_INTERRUPTED_DOWNLOADS:
            self._report(
                "DownloadFailed",
                job.request_id,
                reason=("Interrupted", "the station restarted during the download again"),
            )
            self._set(None)
            return
        self._set(
            replace(
                job,
                phase=Phase.SCHEDULED,
                retrieve_at=min(job.retrieve_at, now),
                path=None,
                install_scheduled_sent=False,
                interrupted=interrupted,
            )
        )
        self._advance(now)

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

    def _report(
        self, status: str, request_id: int, *, reason: tuple[str, str] | None = None
    ) -> None:
        """L01.FR.01: every new state is reported, with the request's id (L01.FR.20);
        OCPP 2.1 also says why it failed (statusInfo)."""
        self._last = (status, request_id)
        logger.info("firmware request %d: %s", request_id, status)
        payload: JsonObject = {"status": status, "requestId": request_id}
        if reason is not None and self._outbox.version is ProtocolVersion.V21:
            payload["statusInfo"] = {"reasonCode": reason[0], "additionalInfo": reason[1]}
        self._outbox.enqueue("FirmwareStatusNotification", payload, MessageKind.OTHER)
