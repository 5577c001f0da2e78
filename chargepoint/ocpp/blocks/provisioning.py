"""Functional block B: the device model over OCPP, reports, reset, network profiles (sans-I/O).

Theory of operation: GetVariables / SetVariables (B05/B06) go straight to
:class:`~chargepoint.ocpp.device_model.DeviceModel`, within the
ItemsPerMessage / BytesPerMessage limits of DeviceDataCtrlr; a value the CSMS
sets is persisted, and a new BasicAuthPassword makes the station reconnect
(A01).  GetBaseReport (B07) answers at once and the report follows as
NotifyReport parts, each within the GetReport limits.  Reset (B11/B12) becomes
a command for the runtime; SetNetworkProfile (B09) stores a connection profile
for a later connection (the core uses them, :mod:`chargepoint.ocpp.network`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.blocks.security import SecurityBlock
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.device_model import AttributeType, ComponentKey, ReportBase, VariableKey
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
from chargepoint.ocpp.station_io import ResetKind, ResetRequested

logger = logging.getLogger(__name__)


class ProvisioningBlock(Block):
    """GetVariables (B06), SetVariables (B05), GetBaseReport (B07), Reset (B11/B12),
    SetNetworkProfile (B09)."""

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

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "GetVariables": self._on_get_variables,
            "SetVariables": self._on_set_variables,
            "GetBaseReport": self._on_get_base_report,
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
                result["attributeValue"] = outcome.value
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
        parts = self._report_parts(data)
        generated_at = self._outbox.utc_now(now)
        for seq_no, part in enumerate(parts):
            # B07: NotifyReport parts numbered from 0, tbc on all but the last.
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
        return {"status": "Accepted"}

    def _report_parts(self, data: list[JsonObject]) -> list[list[JsonObject]]:
        """Split reportData so that each NotifyReport holds at most ItemsPerMessage
        entries and stays within BytesPerMessage (DeviceDataCtrlr, instance GetReport)."""
        max_items = max(1, self._model.int_value(dm.DEVICE_DATA, dm.ITEMS_PER_MESSAGE_GET_REPORT))
        max_bytes = self._model.int_value(dm.DEVICE_DATA, dm.BYTES_PER_MESSAGE_GET_REPORT)
        envelope = 200  # frame, ids, requestId, generatedAt, tbc, seqNo
        parts: list[list[JsonObject]] = [[]]
        used = envelope
        for item in data:
            size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
            if parts[-1] and (len(parts[-1]) >= max_items or used + size > max_bytes):
                parts.append([])
                used = envelope
            parts[-1].append(item)
            used += size
        return parts

    # ---------------------------------------------------------------- reset
    def _on_reset(self, call: Call, now: float, size: int) -> JsonObject:
        kind = ResetKind(call.payload["type"])
        evse_id = call.payload.get("evseId")
        if evse_id is not None and evse_id not in self._evse_connectors:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        busy = self._transactions.busy(evse_id)
        self._outbox.emit(DeliverCommand(ResetRequested(kind, evse_id)))
        # B12: OnIdle with a transaction running is Scheduled; otherwise Accepted.
        return {"status": "Scheduled" if kind is ResetKind.ON_IDLE and busy else "Accepted"}

    # ==================================================== network profiles (B09)
    def _on_set_network_profile(self, call: Call, now: float, size: int) -> JsonObject:
        slot = call.payload["configurationSlot"]
        data = call.payload["connectionData"]
        current = self._model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        if data["securityProfile"] == 3 and not self._security.has_station_certificate():
            # A05: no upgrade to profile 3 without a ChargingStationCertificate.
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
