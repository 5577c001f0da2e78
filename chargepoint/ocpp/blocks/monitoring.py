"""Functional block N, monitoring: variable monitors and the events they raise (sans-I/O).

Theory of operation: the CSMS installs monitors on device-model variables
(SetVariableMonitoring, N04) and removes them (ClearVariableMonitoring, N06,
or SetMonitoringBase, N03); they are persisted in the state file (``monitoring``)
and survive a restart.  The station declares no hard-wired or preconfigured
monitors, so every monitor is a CustomMonitor.

The device model tells the block of every changed value (``DeviceModel.observe``);
the changes are evaluated at the next ``on_clock`` of the same input, so each
event carries the time of the input that caused it:

==========================  ====================================================
UpperThreshold / Lower...   value above / below ``value``: NotifyEvent Alerting;
                            back within: Alerting with ``cleared`` (N07)
Delta                       numbers: moved more than ``value`` since the monitor
                            was set or last reported; other types: any change
                            (N07.FR.18/19): NotifyEvent Delta
Periodic                    every ``value`` seconds from when it was set (N08)
PeriodicClockAligned        at the UTC instants that are multiples of ``value``
==========================  ====================================================

A ``transaction`` monitor only watches while a transaction runs on its
component's EVSE (any EVSE for a station-wide component).  Events with a
severity above MonitoringCtrlr.ActiveMonitoringLevel are not reported (N05);
offline, only those up to OfflineQueuingSeverity are queued (durably), the
others are dropped.  MonitoringCtrlr.Enabled false silences every monitor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.device_model import (
    ComponentKey,
    DataType,
    GetVariableStatus,
    Mutability,
    ReportFilter,
    VariableKey,
    VariableSpec,
)
from chargepoint.ocpp.outbox import Block, Handler, Outbox, StoreState
from chargepoint.ocpp.queue import MessageKind
from chargepoint.ocpp.rpc import Call, CallError, ErrorCode, JsonObject, ProtocolVersion

logger = logging.getLogger(__name__)

#: State-file entry: the custom monitors and the next monitor id.
MONITORING_STATE = "monitoring"
#: At most this many monitors are installed (this project's bound); more: Rejected.
MAX_MONITORS = 100
#: Shortest period of a Periodic / PeriodicClockAligned monitor (s).
MIN_PERIOD_S = 1.0

MONITORING = ComponentKey("MonitoringCtrlr")
_ENABLED = VariableKey("Enabled")
_ACTIVE_BASE = VariableKey("ActiveMonitoringBase")
_ACTIVE_LEVEL = VariableKey("ActiveMonitoringLevel")
_OFFLINE_SEVERITY = VariableKey("OfflineQueuingSeverity")
_ITEMS_SET = VariableKey("ItemsPerMessage", "SetVariableMonitoring")
_BYTES_SET = VariableKey("BytesPerMessage", "SetVariableMonitoring")
_ITEMS_CLEAR = VariableKey("ItemsPerMessage", "ClearVariableMonitoring")
_BYTES_CLEAR = VariableKey("BytesPerMessage", "ClearVariableMonitoring")

_THRESHOLDS = ("UpperThreshold", "LowerThreshold")
_PERIODIC = ("Periodic", "PeriodicClockAligned")
#: MonitorEnumType values this station supports (2.1 TargetDelta* are not).
_SUPPORTED = (*_THRESHOLDS, "Delta", *_PERIODIC)
#: MonitoringCriterionEnumType -> the monitor types it selects (N02)
_CRITERIA = {
    "ThresholdMonitoring": _THRESHOLDS,
    "DeltaMonitoring": ("Delta",),
    "PeriodicMonitoring": _PERIODIC,
}
_NUMERIC = (DataType.INTEGER, DataType.DECIMAL)
#: EventData.actualValue maxLength
_ACTUAL_VALUE_MAX = 2500


@dataclass(frozen=True)
class Monitor:
    """One installed monitor (VariableMonitoringType plus what it watches)."""

    id: int
    component: ComponentKey
    variable: VariableKey
    type: str
    value: float
    severity: int
    transaction: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "component": self.component.to_json(),
            "variable": self.variable.to_json(),
            "type": self.type,
            "value": self.value,
            "severity": self.severity,
            "transaction": self.transaction,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Monitor:
        return cls(
            int(data["id"]),
            ComponentKey.from_json(data["component"]),
            VariableKey.from_json(data["variable"]),
            str(data["type"]),
            float(data["value"]),
            int(data["severity"]),
            bool(data.get("transaction", False)),
        )


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _json_number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


class MonitoringBlock(Block):
    """SetVariableMonitoring (N04), ClearVariableMonitoring (N06), SetMonitoringBase
    (N03), SetMonitoringLevel (N05), GetMonitoringReport (N02), and the NotifyEvents
    of the monitors (N07, N08)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        transactions: TransactionsBlock,
        stored: Mapping[str, Any] | None = None,
    ) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._transactions = transactions
        stored = stored or {}
        self._next_id = int(stored.get("next_id", 1))
        self._monitors: dict[int, Monitor] = {}
        for data in stored.get("monitors", []):
            monitor = Monitor.from_json(data)
            if isinstance(self._model.spec(monitor.component, monitor.variable), VariableSpec):
                self._monitors[monitor.id] = monitor
            else:
                logger.warning("dropping monitor %d: its variable is gone", monitor.id)
        #: (component, variable, new value) changed since the last on_clock
        self._changes: list[tuple[ComponentKey, VariableKey, str]] = []
        #: threshold monitors whose value is beyond their limit
        self._alerting: set[int] = set()
        #: Delta monitors: the value last reported (or when set)
        self._reference: dict[int, str | None] = {}
        #: Periodic: monotonic due time; PeriodicClockAligned: UTC due time
        self._due: dict[int, float] = {}
        #: monitors set (or restored) whose start state is still to be taken
        self._fresh: set[int] = set(self._monitors)
        self._last_now: float | None = None
        self._model.observe(self._on_change)

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "SetVariableMonitoring": self._on_set_variable_monitoring,
            "ClearVariableMonitoring": self._on_clear_variable_monitoring,
            "SetMonitoringBase": self._on_set_monitoring_base,
            "SetMonitoringLevel": self._on_set_monitoring_level,
            "GetMonitoringReport": self._on_get_monitoring_report,
        }

    @property
    def monitors(self) -> tuple[Monitor, ...]:
        return tuple(self._monitors[i] for i in sorted(self._monitors))

    # ---------------------------------------------------------------- N04
    def _too_big(
        self, call: Call, size: int, items_var: VariableKey, bytes_var: VariableKey, items: int
    ) -> CallError | None:
        if items > self._model.int_value(MONITORING, items_var):
            # N04.FR.09 (N06 alike): more entries than ItemsPerMessage.
            return CallError(
                call.unique_id,
                ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION.value,
                f"more than ItemsPerMessage {items_var.instance} entries",
            )
        if size > self._model.int_value(MONITORING, bytes_var):
            # N04 (N06 alike): longer than BytesPerMessage -> FormatViolation.
            return CallError(
                call.unique_id,
                ErrorCode.FORMAT_VIOLATION.value,
                f"longer than BytesPerMessage {bytes_var.instance}",
            )
        return None

    def _on_set_variable_monitoring(
        self, call: Call, now: float, size: int
    ) -> JsonObject | CallError:
        entries = call.payload["setMonitoringData"]
        error = self._too_big(call, size, _ITEMS_SET, _BYTES_SET, len(entries))
        if error is not None:
            return error
        results = [self._set_one(entry, now) for entry in entries]
        self._store()
        return {"setMonitoringResult": results}

    def _set_one(self, entry: Mapping[str, Any], now: float) -> JsonObject:
        result: JsonObject = {
            "type": entry["type"],
            "severity": entry["severity"],
            "component": entry["component"],
            "variable": entry["variable"],
        }
        if "id" in entry:
            result["id"] = entry["id"]
        status, reason = self._check(entry)
        result["status"] = status
        if reason is not None:
            result["statusInfo"] = {"reasonCode": reason}
        if status != "Accepted":
            return result
        monitor_id = entry.get("id")
        if monitor_id is None:
            monitor_id, self._next_id = self._next_id, self._next_id + 1
        monitor = Monitor(
            monitor_id,
            ComponentKey.from_json(entry["component"]),
            VariableKey.from_json(entry["variable"]),
            entry["type"],
            float(entry["value"]),
            entry["severity"],
            bool(entry.get("transaction", False)),
        )
        self._forget(monitor_id)
        self._monitors[monitor_id] = monitor
        # N07.FR.11: a new or replaced monitor starts from the current value.
        self._fresh.add(monitor_id)
        self._last_now = now
        result["id"] = monitor_id
        return result

    def _check(self, entry: Mapping[str, Any]) -> tuple[str, str | None]:
        """The SetMonitoringStatusEnumType of one SetMonitoringData (and a reason)."""
        component = ComponentKey.from_json(entry["component"])
        variable = VariableKey.from_json(entry["variable"])
        kind, value, severity = entry["type"], float(entry["value"]), entry["severity"]
        monitor_id = entry.get("id")
        if monitor_id is not None:
            existing = self._monitors.get(monitor_id)
            if existing is None:
                return "Rejected", "UnknownMonitorId"  # N04.FR.13
            if (existing.component, existing.variable) != (component, variable):
                return "Rejected", "OtherVariable"  # N04.FR.16
        spec = self._model.spec(component, variable)
        if isinstance(spec, GetVariableStatus):
            return spec.value, None  # UnknownComponent / UnknownVariable
        if kind not in _SUPPORTED:
            return "UnsupportedMonitorType", None
        chars = spec.characteristics
        if not chars.supports_monitoring or any(
            a.mutability is Mutability.WRITE_ONLY for a in spec.attributes.values()
        ):
            return "Rejected", "NotMonitorable"
        if kind in _THRESHOLDS and chars.data_type not in _NUMERIC:
            return "UnsupportedMonitorType", None  # a threshold needs a number
        if not 0 <= severity <= 9:
            return "Rejected", "InvalidSeverity"  # severity 0 (Danger) .. 9 (Debug)
        if kind == "Delta" and value < 0:
            return "Rejected", "InvalidValue"  # N04.FR.14
        if kind in _PERIODIC and value < MIN_PERIOD_S:
            return "Rejected", "InvalidValue"
        if kind in _THRESHOLDS and (
            (chars.min_limit is not None and value < chars.min_limit)
            or (chars.max_limit is not None and value > chars.max_limit)
        ):
            return "Rejected", "OutOfRange"  # beyond what the variable can hold
        if monitor_id is None:
            if any(
                (m.component, m.variable, m.type, m.severity)
                == (component, variable, kind, severity)
                for m in self._monitors.values()
            ):
                return "Duplicate", None  # one monitor per type and severity
            if len(self._monitors) >= MAX_MONITORS:
                return "Rejected", "TooManyMonitors"
        return "Accepted", None

    # ---------------------------------------------------------------- N06
    def _on_clear_variable_monitoring(
        self, call: Call, now: float, size: int
    ) -> JsonObject | CallError:
        ids = call.payload["id"]
        error = self._too_big(call, size, _ITEMS_CLEAR, _BYTES_CLEAR, len(ids))
        if error is not None:
            return error
        results = []
        for monitor_id in ids:
            # N06: NotFound for an unknown id (Rejected is for hard-wired ones: none here).
            found = self._monitors.pop(monitor_id, None) is not None
            self._forget(monitor_id)
            results.append({"id": monitor_id, "status": "Accepted" if found else "NotFound"})
        self._store()
        return {"clearMonitoringResult": results}

    # ---------------------------------------------------------------- N03
    def _on_set_monitoring_base(self, call: Call, now: float, size: int) -> JsonObject:
        base = call.payload["monitoringBase"]
        if base != "All" and self._monitors:
            # N03: FactoryDefault and HardWiredOnly remove the custom monitors.
            logger.info(
                "SetMonitoringBase %s: %d custom monitors removed", base, len(self._monitors)
            )
            for monitor_id in list(self._monitors):
                del self._monitors[monitor_id]
                self._forget(monitor_id)
            self._store()
        self._outbox.update(MONITORING, _ACTIVE_BASE, base)
        return {"status": "Accepted"}

    # ---------------------------------------------------------------- N05
    def _on_set_monitoring_level(self, call: Call, now: float, size: int) -> JsonObject:
        severity = call.payload["severity"]
        if not 0 <= severity <= 9:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidSeverity"}}
        self._outbox.update(MONITORING, _ACTIVE_LEVEL, str(severity))
        return {"status": "Accepted"}

    # ---------------------------------------------------------------- N02
    def _on_get_monitoring_report(self, call: Call, now: float, size: int) -> JsonObject:
        criteria = call.payload.get("monitoringCriteria") or list(_CRITERIA)
        kinds = {kind for criterion in criteria for kind in _CRITERIA[criterion]}
        filters = [ReportFilter.from_json(cv) for cv in call.payload.get("componentVariable", [])]
        # N02.FR.11: no criteria and no componentVariable: every monitor.  N02.FR.16: a
        # componentVariable without variable selects every variable of the component.
        selected = [
            m
            for m in self.monitors
            if m.type in kinds
            and (not filters or any(f.matches(m.component, m.variable) for f in filters))
        ]
        if not selected:
            return {"status": "EmptyResultSet"}
        parts = self._report_parts(self._monitoring_data(selected))
        generated_at = self._outbox.utc_now(now)
        for seq_no, part in enumerate(parts):
            # N02: NotifyMonitoringReport parts numbered from 0, tbc on all but the last.
            self._outbox.enqueue(
                "NotifyMonitoringReport",
                {
                    "requestId": call.payload["requestId"],
                    "seqNo": seq_no,
                    "generatedAt": generated_at,
                    "tbc": seq_no < len(parts) - 1,
                    "monitor": part,
                },
                None,
                requested_by_csms=True,
            )
        return {"status": "Accepted"}

    def _monitoring_data(self, monitors: list[Monitor]) -> list[JsonObject]:
        """MonitoringDataType entries: the monitors grouped by component and variable."""
        grouped: dict[tuple[ComponentKey, VariableKey], list[JsonObject]] = {}
        for m in monitors:
            entry: JsonObject = {
                "id": m.id,
                "transaction": m.transaction,
                "value": _json_number(m.value),
                "type": m.type,
                "severity": m.severity,
            }
            if self._outbox.version is ProtocolVersion.V21:
                entry["eventNotificationType"] = "CustomMonitor"
            grouped.setdefault((m.component, m.variable), []).append(entry)
        return [
            {"component": c.to_json(), "variable": v.to_json(), "variableMonitoring": entries}
            for (c, v), entries in grouped.items()
        ]

    def _report_parts(self, data: list[JsonObject]) -> list[list[JsonObject]]:
        return dm.report_parts(self._model, data)

    # ------------------------------------------------------------ N07 / N08
    def _on_change(
        self, component: ComponentKey, variable: VariableKey, old: str | None, new: str
    ) -> None:
        """The device model changed a value: evaluated at the next ``on_clock``."""
        if any(
            m.component == component and m.variable == variable for m in self._monitors.values()
        ):
            self._changes.append((component, variable, new))

    def on_clock(self, now: float) -> None:
        self._last_now = now
        for monitor_id in sorted(self._fresh):
            self._start(monitor_id, now)
        self._fresh.clear()
        changes, self._changes = self._changes, []
        for component, variable, value in changes:
            for monitor in self.monitors:
                if (monitor.component, monitor.variable) == (component, variable):
                    self._evaluate(monitor, value, now)
        utc = now + self._outbox.utc_offset_s
        for monitor in self.monitors:
            due = self._due.get(monitor.id)
            if due is None:
                continue
            aligned = monitor.type == "PeriodicClockAligned"
            clock = utc if aligned else now
            if clock < due:
                continue
            # N08: one event per period reached (only the latest after a clock jump).
            self._due[monitor.id] = due + monitor.value * (
                math.floor((clock - due) / monitor.value) + 1
            )
            if self._watching(monitor):
                current = self._model.value(monitor.component, monitor.variable)
                self._report(monitor, current or "", "Periodic", None, now)

    def next_deadline(self) -> float | None:
        if self._fresh or self._changes:
            return self._last_now  # due at once (a change made during a timer input)
        offset = self._outbox.utc_offset_s
        dues = [
            due - offset if self._monitors[i].type == "PeriodicClockAligned" else due
            for i, due in self._due.items()
        ]
        return min(dues) if dues else None

    def _start(self, monitor_id: int, now: float) -> None:
        """Take a new (or restored) monitor's starting point."""
        monitor = self._monitors.get(monitor_id)
        if monitor is None:
            return
        current = self._model.value(monitor.component, monitor.variable)
        if monitor.type == "Periodic":
            self._due[monitor_id] = now + monitor.value
        elif monitor.type == "PeriodicClockAligned":
            utc = now + self._outbox.utc_offset_s
            self._due[monitor_id] = (math.floor(utc / monitor.value) + 1) * monitor.value
        elif monitor.type == "Delta":
            self._reference[monitor_id] = current
        elif current is not None:
            self._evaluate(monitor, current, now)  # a threshold already passed

    def _evaluate(self, monitor: Monitor, value: str, now: float) -> None:
        if not self._watching(monitor):
            return
        if monitor.type == "Delta":
            reference = self._reference.get(monitor.id)
            spec = self._model.spec(monitor.component, monitor.variable)
            numeric = isinstance(spec, VariableSpec) and spec.characteristics.data_type in _NUMERIC
            new, ref = _number(value), _number(reference)
            if numeric and new is not None and ref is not None:
                moved = abs(new - ref) > monitor.value  # N07.FR.18
            else:
                moved = value != reference  # N07.FR.19: any change of a non-number
            if moved:
                self._reference[monitor.id] = value
                self._report(monitor, value, "Delta", None, now)
            return
        number = _number(value)
        if number is None:
            return
        beyond = (
            number > monitor.value if monitor.type == "UpperThreshold" else number < monitor.value
        )
        if beyond and monitor.id not in self._alerting:
            self._alerting.add(monitor.id)
            self._report(monitor, value, "Alerting", False, now)  # N07
        elif not beyond and monitor.id in self._alerting:
            self._alerting.discard(monitor.id)
            self._report(monitor, value, "Alerting", True, now)  # N07: back to normal

    def _watching(self, monitor: Monitor) -> bool:
        """A ``transaction`` monitor watches only while its EVSE has a transaction."""
        return not monitor.transaction or self._transactions.busy(monitor.component.evse_id)

    def _report(
        self, monitor: Monitor, value: str, trigger: str, cleared: bool | None, now: float
    ) -> None:
        if not self._model.bool_value(MONITORING, _ENABLED):
            return
        if monitor.severity > self._model.int_value(MONITORING, _ACTIVE_LEVEL):
            return  # N05: above the monitoring level
        online = self._outbox.online
        if not online and monitor.severity > self._model.int_value(MONITORING, _OFFLINE_SEVERITY):
            logger.info(
                "offline: monitor %d event (severity %d) dropped", monitor.id, monitor.severity
            )
            return  # N07: offline, only what OfflineQueuingSeverity allows is queued
        data: JsonObject = {
            "eventId": self._outbox.next_event_id(),
            "timestamp": self._outbox.utc_now(now),
            "trigger": trigger,
            "actualValue": self._model.reported(value)[:_ACTUAL_VALUE_MAX],
            "eventNotificationType": "CustomMonitor",
            "component": monitor.component.to_json(),
            "variable": monitor.variable.to_json(),
            "variableMonitoringId": monitor.id,
        }
        if cleared is not None:
            data["cleared"] = cleared
        evse_id = monitor.component.evse_id
        if monitor.transaction and evse_id is not None:
            transaction_id = self._transactions.transaction_on(evse_id)
            if transaction_id is not None:
                data["transactionId"] = transaction_id
        if self._outbox.version is ProtocolVersion.V21:
            data["severity"] = monitor.severity
        payload: JsonObject = {
            "generatedAt": self._outbox.utc_now(now),
            "seqNo": 0,
            "tbc": False,
            "eventData": [data],
        }
        # Offline events wait in the durable queue (they survive a restart).
        self._outbox.enqueue("NotifyEvent", payload, None if online else MessageKind.OTHER)

    # ------------------------------------------------------------ housekeeping
    def _forget(self, monitor_id: int) -> None:
        self._alerting.discard(monitor_id)
        self._reference.pop(monitor_id, None)
        self._due.pop(monitor_id, None)
        self._fresh.discard(monitor_id)

    def _store(self) -> None:
        self._outbox.emit(
            StoreState(
                MONITORING_STATE,
                {"next_id": self._next_id, "monitors": [m.to_json() for m in self.monitors]},
            )
        )
