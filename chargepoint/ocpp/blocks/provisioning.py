"""Functional block B: the device model over OCPP, reports, reset, network profiles (sans-I/O).

Theory of operation: GetVariables / SetVariables (B05/B06) go straight to
:class:`~chargepoint.ocpp.device_model.DeviceModel`, within the
ItemsPerMessage / BytesPerMessage limits of DeviceDataCtrlr; a value the CSMS
sets is persisted, and a new BasicAuthPassword makes the station reconnect
(A01).  GetBaseReport (B07) and GetReport (B08: componentCriteria and / or
componentVariable, both must match) answer at once and the report follows as
NotifyReport parts, each within the GetReport limits.  Reported values are cut
to ReportingValueSize; a SetVariables value beyond ConfigurationValueSize is
Rejected (the device model does both).  SetNetworkProfile (B09)
stores a connection profile for a later connection (the core uses them,
:mod:`chargepoint.ocpp.network`).

Reset (B11/B12) is a small state machine, because the CSMS must hear of every
transaction's end *before* the station goes down, not as a PowerLoss after it:

* EVSE reset: ``ResetRequested(kind, evse)`` at once (the runtime stops that EVSE;
  OnIdle waits for its session to end).
* Station reset, Immediate: ``ResetRequested(Immediate, evse)`` for each EVSE with a
  transaction; the runtime ends it (its next :class:`EvseActivity` carries
  ``stopped_reason`` ImmediateReset, which ends it with trigger ResetCommand) and
  stops charging.  A transaction still open after that snapshot, or after
  MessageTimeout, is ended here.
* Station reset, OnIdle: nothing until no transaction is open.
* Then, with no transaction left, the block waits until no TransactionEvent is
  queued (at most MessageTimeout; not at all while offline: they are durable),
  stores the next boot reason (RemoteReset) and sends ``ResetRequested(kind)``,
  evse None: the runtime restarts at once.  The store writes come first in the
  actions, so the Ended events and the boot reason are on disk before it sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.blocks.security import SecurityBlock
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.device_model import (
    AttributeType,
    ComponentCriterion,
    ComponentKey,
    ReportBase,
    ReportFilter,
    VariableKey,
)
from chargepoint.ocpp.network import NetworkProfiles
from chargepoint.ocpp.outbox import (
    Block,
    DeliverCommand,
    Handler,
    Outbox,
    StoreState,
    StoreVariable,
)
from chargepoint.ocpp.rpc import Call, CallError, ErrorCode, JsonObject
from chargepoint.ocpp.station_io import (
    EvseActivity,
    MeterSample,
    ResetKind,
    ResetRequested,
    SessionEnded,
    SessionStarted,
    StationEvent,
    StoppedReason,
)

logger = logging.getLogger(__name__)

#: State-file entry holding the reason of the next BootNotification (B11/B12).
BOOT_STATE = "boot"
#: BootReasonEnumType after a Reset from the CSMS.
REMOTE_RESET = "RemoteReset"


class ProvisioningBlock(Block):
    """GetVariables (B06), SetVariables (B05), GetBaseReport (B07), GetReport (B08),
    Reset (B11/B12), SetNetworkProfile (B09)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        evse_connectors: Mapping[int, int],
        network: NetworkProfiles,
        security: SecurityBlock,
        transactions: TransactionsBlock,
    ) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._evse_connectors = evse_connectors
        self._network = network
        self._security = security
        self._transactions = transactions
        #: a station reset waiting for the transactions to end and be delivered
        self._reset: ResetKind | None = None
        #: the station-wide reset went to the runtime: it is restarting
        self._restarting = False
        #: when to stop waiting for the queued TransactionEvents (monotonic s)
        self._drain_until: float | None = None
        #: EVSEs whose transaction the runtime was told to end (Immediate), by deadline
        self._ending: dict[int, float] = {}
        #: ... of those, the EVSEs whose reset snapshot has been seen
        self._reset_seen: set[int] = set()
        #: the latest meter reading per EVSE (for an Ended this block must send)
        self._meter: dict[int, MeterSample] = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "GetVariables": self._on_get_variables,
            "SetVariables": self._on_set_variables,
            "GetBaseReport": self._on_get_base_report,
            "GetReport": self._on_get_report,
            "Reset": self._on_reset,
            "SetNetworkProfile": self._on_set_network_profile,
        }

    # ------------------------------------------------------------ variables
    def _too_big(
        self, call: Call, size: int, items_var: VariableKey, bytes_var: VariableKey, items: int
    ) -> CallError | None:
        if items > self._model.int_value(dm.DEVICE_DATA, items_var):
            # B05/B06: more entries than ItemsPerMessage -> OccurrenceConstraintViolation.
            return CallError(
                call.unique_id,
                ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION.value,
                f"more than ItemsPerMessage {items_var.instance} entries",
            )
        if size > self._model.int_value(dm.DEVICE_DATA, bytes_var):
            # B05/B06: message longer than BytesPerMessage -> FormatViolation.
            return CallError(
                call.unique_id,
                ErrorCode.FORMAT_VIOLATION.value,
                f"longer than BytesPerMessage {bytes_var.instance}",
            )
        return None

    def _on_get_variables(self, call: Call, now: float, size: int) -> JsonObject | CallError:
        entries = call.payload["getVariableData"]
        error = self._too_big(
            call,
            size,
            dm.ITEMS_PER_MESSAGE_GET_VARIABLES,
            dm.BYTES_PER_MESSAGE_GET_VARIABLES,
            len(entries),
        )
        if error is not None:
            return error
        self._model.update(dm.CLOCK, dm.DATE_TIME, self._outbox.utc_now(now))
        results = []
        for entry in entries:
            attribute = AttributeType(entry.get("attributeType", "Actual"))
            outcome = self._model.get(
                ComponentKey.from_json(entry["component"]),
                VariableKey.from_json(entry["variable"]),
                attribute,
            )
            result: JsonObject = {
                "attributeStatus": outcome.status.value,
                "attributeType": attribute.value,
                "component": entry["component"],
                "variable": entry["variable"],
            }
            if outcome.value is not None:
                # ReportingValueSize limits GetVariableResult.attributeValue (Appendix 3).
                result["attributeValue"] = self._model.reported(outcome.value)
            results.append(result)
        return {"getVariableResult": results}

    def _on_set_variables(self, call: Call, now: float, size: int) -> JsonObject | CallError:
        entries = call.payload["setVariableData"]
        error = self._too_big(
            call,
            size,
            dm.ITEMS_PER_MESSAGE_SET_VARIABLES,
            dm.BYTES_PER_MESSAGE_SET_VARIABLES,
            len(entries),
        )
        if error is not None:
            return error
        results = []
        for entry in entries:
            attribute = AttributeType(entry.get("attributeType", "Actual"))
            if (
                entry["component"].get("name") == dm.OCPP_COMM.name
                and entry["variable"].get("name") == dm.NETWORK_CONFIGURATION_PRIORITY.name
                and (problem := self._priority_problem(str(entry["attributeValue"])))
            ):
                logger.warning("NetworkConfigurationPriority refused: %s", problem)
                results.append(
                    {
                        "attributeStatus": "Rejected",
                        "attributeType": attribute.value,
                        "component": entry["component"],
                        "variable": entry["variable"],
                        "attributeStatusInfo": {"reasonCode": problem},
                    }
                )
                continue
            outcome = self._model.set(
                ComponentKey.from_json(entry["component"]),
                VariableKey.from_json(entry["variable"]),
                entry["attributeValue"],
                attribute,
            )
            if outcome.persist is not None:
                self._outbox.emit(StoreVariable(*outcome.persist))
                if outcome.persist[0][:2] == (dm.SECURITY, dm.BASIC_AUTH_PASSWORD):
                    # A01: reconnect with the new password once the answer is out
                    # and our own outstanding CALL, if any, has been answered.
                    self._outbox.reconnect("new BasicAuthPassword")
                    self._security.security_event(
                        now, "ReconfigurationOfSecurityParameters", "BasicAuthPassword changed"
                    )
            result: JsonObject = {
                "attributeStatus": outcome.status.value,
                "attributeType": attribute.value,
                "component": entry["component"],
                "variable": entry["variable"],
            }
            if outcome.reason_code is not None:
                result["attributeStatusInfo"] = {"reasonCode": outcome.reason_code}
            results.append(result)
        return {"setVariableResult": results}

    # -------------------------------------------------------------- reports
    def _on_get_base_report(self, call: Call, now: float, size: int) -> JsonObject:
        base = ReportBase(call.payload["reportBase"])
        request_id = call.payload["requestId"]
        self._model.update(dm.CLOCK, dm.DATE_TIME, self._outbox.utc_now(now))
        data = self._model.report(base)
        if not data:
            return {"status": "EmptyResultSet"}
        self._send_report(request_id, data, now)
        return {"status": "Accepted"}

    def _on_get_report(self, call: Call, now: float, size: int) -> JsonObject | CallError:
        filters = call.payload.get("componentVariable") or []
        # B08.FR.17 / B08.FR.18: more componentVariables than ItemsPerMessage, or a
        # request longer than BytesPerMessage (GetReport instances) -> CALLERROR.
        error = self._too_big(
            call,
            size,
            dm.ITEMS_PER_MESSAGE_GET_REPORT,
            dm.BYTES_PER_MESSAGE_GET_REPORT,
            len(filters),
        )
        if error is not None:
            return error
        # Every ComponentCriterionEnumType value is supported (so never NotSupported);
        # anything else failed the schema check before this handler.
        self._model.update(dm.CLOCK, dm.DATE_TIME, self._outbox.utc_now(now))
        data = self._model.custom_report(
            (ComponentCriterion(c) for c in call.payload.get("componentCriteria") or ()),
            (ReportFilter.from_json(f) for f in filters),
        )
        if not data:
            return {"status": "EmptyResultSet"}  # B08.FR.15: no NotifyReport follows
        # B08.FR.01/03/04: Accepted, then NotifyReport parts with the same requestId.
        self._send_report(call.payload["requestId"], data, now)
        return {"status": "Accepted"}

    def _send_report(self, request_id: int, data: list[JsonObject], now: float) -> None:
        parts = self._report_parts(data)
        generated_at = self._outbox.utc_now(now)
        for seq_no, part in enumerate(parts):
            # B07/B08: NotifyReport parts numbered from 0, tbc on all but the last.
            self._outbox.enqueue(
                "NotifyReport",
                {
                    "requestId": request_id,
                    "generatedAt": generated_at,
                    "tbc": seq_no < len(parts) - 1,
                    "seqNo": seq_no,
                    "reportData": part,
                },
                None,
                requested_by_csms=True,
            )

    def _report_parts(self, data: list[JsonObject]) -> list[list[JsonObject]]:
        return dm.report_parts(self._model, data)

    # ---------------------------------------------------------------- reset
    def _on_reset(self, call: Call, now: float, size: int) -> JsonObject:
        kind = ResetKind(call.payload["type"])
        evse_id = call.payload.get("evseId")
        if evse_id is not None and evse_id not in self._evse_connectors:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        busy = self._transactions.busy(evse_id)
        # B12.FR.01: OnIdle with a transaction running is Scheduled; otherwise Accepted.
        answer: JsonObject = {
            "status": "Scheduled" if kind is ResetKind.ON_IDLE and busy else "Accepted"
        }
        if self._restarting:
            return answer  # already going down
        if evse_id is not None:
            if kind is ResetKind.IMMEDIATE and busy:
                self._end_for_reset(evse_id, now)  # B12.FR.08: Ended before the EVSE reset
            self._outbox.emit(DeliverCommand(ResetRequested(kind, evse_id)))
            return answer
        if self._reset is not ResetKind.IMMEDIATE:
            self._reset = kind
        self._drain_until = None
        if kind is ResetKind.IMMEDIATE:
            # B12.FR.04: end every transaction (ResetCommand, ImmediateReset) first.
            for evse in sorted(self._evse_connectors):
                if self._transactions.busy(evse) and evse not in self._ending:
                    self._end_for_reset(evse, now)
                    self._outbox.emit(DeliverCommand(ResetRequested(kind, evse)))
        return answer  # the restart itself follows from on_clock, after this answer

    def _end_for_reset(self, evse_id: int, now: float) -> None:
        timeout = self._model.int_value(dm.OCPP_COMM, dm.MESSAGE_TIMEOUT)
        self._ending[evse_id] = now + timeout
        self._reset_seen.discard(evse_id)

    def on_event(self, event: StationEvent, now: float) -> None:
        match event:
            case MeterSample():
                self._meter[event.evse_id] = event
            case SessionStarted() | EvseActivity():
                self._meter[event.evse_id] = event.meter
                if (
                    isinstance(event, EvseActivity)
                    and event.stopped_reason is StoppedReason.IMMEDIATE_RESET
                    and event.evse_id in self._ending
                ):
                    self._reset_seen.add(event.evse_id)

    def on_clock(self, now: float) -> None:
        """Runs after every input (after the other blocks saw an event): end what
        the runtime left open, then restart once everything is delivered."""
        for evse_id, deadline in sorted(self._ending.items()):
            if not self._transactions.busy(evse_id):
                del self._ending[evse_id]
            elif evse_id in self._reset_seen or now >= deadline:
                # B12.FR.04/08: the runtime's snapshot did not end it (TxStopPoint), or
                # no snapshot came: end it here, triggerReason ResetCommand.
                logger.warning("EVSE %d: ending the transaction for the reset", evse_id)
                meter = self._meter.get(evse_id) or MeterSample(evse_id, 0.0, 0.0, 0.0, 0.0, 0.0)
                self._transactions.on_event(
                    SessionEnded(evse_id, StoppedReason.IMMEDIATE_RESET, meter), now
                )
                del self._ending[evse_id]
        self._reset_seen &= set(self._ending)
        self._settle_reset(now)

    def _settle_reset(self, now: float) -> None:
        kind = self._reset
        if kind is None:
            return
        if self._transactions.busy(None):
            self._drain_until = None
            return  # B12.FR.03: OnIdle waits until no transaction is running
        if self._drain_until is None:
            self._drain_until = now + self._model.int_value(dm.OCPP_COMM, dm.MESSAGE_TIMEOUT)
        undelivered = any(m.action == "TransactionEvent" for m in self._outbox.queued())
        if undelivered and self._outbox.online and now < self._drain_until:
            return  # let the CSMS have the Ended events before the station goes down
        logger.warning("reset (%s) requested by the CSMS: restarting", kind.value)
        self._reset, self._drain_until, self._restarting = None, None, True
        # B11/B12: the BootNotification after the restart says RemoteReset (stored
        # first: the runtime restarts as soon as it sees the command).
        self._outbox.emit(StoreState(BOOT_STATE, {"reason": REMOTE_RESET}))
        self._outbox.emit(DeliverCommand(ResetRequested(kind)))

    def next_deadline(self) -> float | None:
        dues = list(self._ending.values())
        if self._reset is not None and self._drain_until is not None:
            dues.append(self._drain_until)
        return min(dues) if dues else None

    # ==================================================== network profiles (B09)
    def _missing_for_profile(self, profile: int, current: int) -> str | None:
        """A05: what stops an upgrade to ``profile``: TLS needs a CSMSRootCertificate
        (installed, or the one the current TLS connection already uses: TC_A_20),
        profile 3 a ChargingStationCertificate (TC_A_21)."""
        if profile >= 2 and current < 2 and not self._security.has_csms_root():
            return "NoRootCertificate"
        if profile == 3 and not self._security.has_station_certificate():
            return "NoCertificate"
        return None

    def _priority_problem(self, value: str) -> str | None:
        """A05.FR.02/.03/B09: NetworkConfigurationPriority may name only filled slots
        whose profile is possible now and not a downgrade (TC_A_20, TC_A_21, TC_A_22)."""
        current = self._model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        for item in (part.strip() for part in value.split(",")):
            if not item.isdigit():
                continue  # the device model's valuesList check answers this one
            profile = self._network.security_profile_of(int(item))
            if profile is None:
                return "EmptySlot"
            if profile < max(self._network.floor, current):
                return "NoDowngrade"
            missing = self._missing_for_profile(profile, current)
            if missing is not None:
                return missing
        return None

    def _on_set_network_profile(self, call: Call, now: float, size: int) -> JsonObject:
        slot = call.payload["configurationSlot"]
        data = call.payload["connectionData"]
        current = self._model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        if data["securityProfile"] == 3 and not self._security.has_station_certificate():
            # A05: no upgrade to profile 3 without a ChargingStationCertificate; the
            # CSMS root is checked when the slot is put in NetworkConfigurationPriority
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NoCertificate"}}
        problem = self._network.set_profile(slot, data, current)
        if problem is not None:
            logger.warning("SetNetworkProfile slot %s refused: %s", slot, problem)
            return {"status": "Rejected", "statusInfo": {"reasonCode": problem}}
        self._outbox.emit(StoreState("network", self._network.snapshot()))
        logger.info(
            "network profile stored in slot %d: %s, security profile %d",
            slot,
            data["ocppCsmsUrl"],
            data["securityProfile"],
        )
        return {"status": "Accepted"}
