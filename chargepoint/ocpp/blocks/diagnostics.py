"""Functional block N: log upload, customer information, the security log feed (sans-I/O).

Theory of operation
-------------------
*GetLog* (N01).  The block checks the request and hands an
:class:`~chargepoint.ocpp.station_io.UploadLog` to the runtime, which collects the
log, uploads it (with the retries asked for) and reports each step back as
:class:`~chargepoint.ocpp.station_io.LogUploadProgress`.  Every new status goes
to the CSMS as a LogStatusNotification with the request's id.  One upload runs
at a time: a GetLog while one runs is answered AcceptedCanceled, the old
request's LogStatusNotification says AcceptedCanceled, and the new upload
replaces it (the runtime drops the old one when the new UploadLog arrives).

=============  =====================================  ==========================
state          input                                  what happens
=============  =====================================  ==========================
idle           GetLog                                 Accepted, UploadLog
uploading      GetLog                                 AcceptedCanceled, old one
                                                      AcceptedCanceled, UploadLog
uploading      LogUploadProgress(same id, Uploading)  LogStatusNotification once
uploading      LogUploadProgress(same id, final)      LogStatusNotification, idle
any            LogUploadProgress(other id)            ignored (a cancelled upload)
=============  =====================================  ==========================

*CustomerInformation* (N09/N10).  For an idToken the station holds an
authorization-cache entry, a local-list entry and the TransactionEvents still
queued for the CSMS that name it; it holds nothing for a customerIdentifier or
a customer certificate.  ``report`` sends that as NotifyCustomerInformation
(512-character parts, ``tbc`` on all but the last); ``clear`` removes the cache
entry.  The local list is the CSMS's own (SendLocalList) and queued
TransactionEvents are owed to the CSMS, so neither is cleared; the reply says so.

*Security log*.  Every security event (A04; all of them pass through
:meth:`SecurityBlock.security_event`) is handed to the runtime as
:class:`~chargepoint.ocpp.station_io.RecordSecurityEvent` for the station's own
security log, which GetLog(SecurityLog) uploads from here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from chargepoint.errors import RemoteProtocolError
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.outbox import Block, DeliverCommand, Handler, Outbox, parse_timestamp
from chargepoint.ocpp.rpc import Call, JsonObject
from chargepoint.ocpp.station_io import (
    IdToken,
    LogUploadProgress,
    StationEvent,
    UploadLog,
)

logger = logging.getLogger(__name__)

#: LogEnumType values this station can upload (2.1 adds DataCollectorLog: not kept).
LOG_TYPES = ("DiagnosticsLog", "SecurityLog")
#: UploadLogStatusEnumType values that end an upload.
FINAL_STATUSES = frozenset(
    {"Uploaded", "UploadFailure", "BadMessage", "PermissionDenied", "NotSupportedOperation"}
)
#: Without ``retries`` / ``retryInterval`` in the GetLog, the station decides (N01).
DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL_S = 30
#: NotifyCustomerInformationRequest.data is at most this long.
DATA_CHARS = 512


class CustomerRecords(Protocol):
    """What the authorization block keeps about an idToken (N09/N10)."""

    def customer_records(self, token: IdToken, utc: float) -> list[str]:
        """One line per record held for ``token`` (cache, local list)."""

    def forget_customer(self, token: IdToken) -> list[str]:
        """Remove what may be removed; one line per record removed."""


@dataclass
class _Upload:
    request_id: int
    #: the last status sent to the CSMS (None: none yet)
    status: str | None = None


class DiagnosticsBlock(Block):
    """GetLog / LogStatusNotification (N01), CustomerInformation (N09/N10)."""

    def __init__(self, outbox: Outbox, *, customers: CustomerRecords) -> None:
        self._outbox = outbox
        self._customers = customers
        self._upload: _Upload | None = None

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "GetLog": self._on_get_log,
            "CustomerInformation": self._on_customer_information,
        }

    # ================================================================ GetLog
    def log_status(self) -> tuple[str, int | None]:
        """F06 TriggerMessage(LogStatusNotification): ``("Uploading", requestId)``
        while an upload runs, else ``("Idle", None)`` (N01)."""
        if self._upload is None:
            return "Idle", None
        return "Uploading", self._upload.request_id

    def _on_get_log(self, call: Call, now: float, size: int) -> JsonObject:
        payload = call.payload
        log_type = payload["logType"]
        request_id = payload["requestId"]
        if log_type not in LOG_TYPES:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnsupportedParam"}}
        log = payload["log"]
        try:
            oldest = _utc(log.get("oldestTimestamp"))
            latest = _utc(log.get("latestTimestamp"))
        except RemoteProtocolError as exc:
            logger.warning("GetLog %d rejected: %s", request_id, exc)
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "InvalidValue", "additionalInfo": str(exc)[:512]},
            }
        retries = payload.get("retries", DEFAULT_RETRIES)
        interval = payload.get("retryInterval", DEFAULT_RETRY_INTERVAL_S)
        filename = self._filename(log_type, now)
        status = "Accepted"
        previous = self._upload
        if previous is not None:
            # N01.FR.12: a new request cancels the upload in progress.
            status = "AcceptedCanceled"
            logger.info(
                "GetLog %d cancels the upload of request %d", request_id, previous.request_id
            )
            self._notify("AcceptedCanceled", previous.request_id)
        self._upload = _Upload(request_id)
        self._outbox.emit(
            DeliverCommand(
                UploadLog(
                    request_id=request_id,
                    log_type=log_type,
                    url=log["remoteLocation"],
                    filename=filename,
                    oldest_utc_s=oldest,
                    latest_utc_s=latest,
                    retries=max(0, min(retries, 10)),
                    retry_interval_s=max(0, min(interval, 3600)),
                )
            )
        )
        return {"status": status, "filename": filename}

    def _filename(self, log_type: str, now: float) -> str:
        stamp = self._outbox.utc_now(now)[:19].replace("-", "").replace(":", "")
        identity = self._outbox.model.value(dm.SECURITY, dm.IDENTITY) or "station"
        return f"{identity}-{log_type}-{stamp}Z.zip"[:255]

    def _notify(self, status: str, request_id: int | None) -> None:
        payload: JsonObject = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        self._outbox.enqueue("LogStatusNotification", payload, None)

    def on_event(self, event: StationEvent, now: float) -> None:
        if not isinstance(event, LogUploadProgress):
            return
        upload = self._upload
        if upload is None or upload.request_id != event.request_id:
            return  # a cancelled or forgotten upload
        if event.status != upload.status:
            # N01: Uploading once, then how it ended, each with the request's id.
            upload.status = event.status
            self._notify(event.status, upload.request_id)
        if event.status in FINAL_STATUSES:
            self._upload = None

    # =================================================== CustomerInformation
    def _on_customer_information(self, call: Call, now: float, size: int) -> JsonObject:
        payload = call.payload
        given = [
            k for k in ("idToken", "customerIdentifier", "customerCertificate") if k in payload
        ]
        report, clear = payload["report"], payload["clear"]
        if len(given) != 1 or not (report or clear):
            # N09/N10: exactly one way to name the customer, and something to do.
            return {
                "status": "Invalid",
                "statusInfo": {
                    "reasonCode": "InvalidValue",
                    "additionalInfo": "give one of idToken, customerIdentifier, "
                    "customerCertificate and report and/or clear",
                },
            }
        lines = self._customer_lines(payload, now, report=report, clear=clear)
        self._send_customer_data(payload["requestId"], lines, now)
        return {"status": "Accepted"}

    def _customer_lines(
        self, payload: JsonObject, now: float, *, report: bool, clear: bool
    ) -> list[str]:
        token_data = payload.get("idToken")
        if token_data is None:
            # Neither customer identifiers nor customer certificates are stored here.
            what = "customerIdentifier" if "customerIdentifier" in payload else "certificate"
            return [f"No data held for this {what}."]
        token = IdToken(token_data["idToken"], token_data["type"])
        held = self._customers.customer_records(token, now + self._outbox.utc_offset_s)
        held += self._queued_transactions(token)
        if not held:
            return [f"No data held for idToken {token.kind}:{token.id_token}."]
        lines = list(held) if report else []
        if clear:
            removed = self._customers.forget_customer(token)
            lines += [f"Cleared: {line}" for line in removed]
            kept = len(held) - len(removed)
            if kept:
                # N10: the local list is the CSMS's; queued events are owed to it.
                lines.append(
                    f"Not cleared ({kept}): local list entries (managed by the CSMS "
                    "with SendLocalList) and TransactionEvents not yet delivered."
                )
        return lines

    def _queued_transactions(self, token: IdToken) -> list[str]:
        found = []
        for message in self._outbox.queued():
            if message.action != "TransactionEvent":
                continue
            named = message.payload.get("idToken") or {}
            if named.get("idToken") == token.id_token and named.get("type") == token.kind:
                tx = message.payload["transactionInfo"]["transactionId"]
                found.append(
                    f"TransactionEvent {message.payload['eventType']} of transaction {tx}"
                    " waiting to be sent"
                )
        return found

    def _send_customer_data(self, request_id: int, lines: list[str], now: float) -> None:
        """N09/N10: NotifyCustomerInformation parts, ``tbc`` until the last."""
        text = "\n".join(lines)
        parts = [text[i : i + DATA_CHARS] for i in range(0, len(text), DATA_CHARS)] or [""]
        generated = self._outbox.utc_now(now)
        for seq, part in enumerate(parts):
            self._outbox.enqueue(
                "NotifyCustomerInformation",
                {
                    "data": part,
                    "tbc": seq < len(parts) - 1,
                    "seqNo": seq,
                    "generatedAt": generated,
                    "requestId": request_id,
                },
                None,
                requested_by_csms=True,
            )


def _utc(text: str | None) -> float | None:
    return None if text is None else parse_timestamp(text)
