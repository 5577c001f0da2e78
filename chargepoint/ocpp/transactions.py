"""TransactionEvent payloads (OCPP 2.0.1 Part 2 E), sans-I/O.

Theory of operation: one :class:`OpenTransaction` per EVSE with a session in
progress.  Each event gets the next seqNo of its transaction, starting at 0
(E01.FR.07); ``Started`` carries ``evse.id`` and ``evse.connectorId`` (E01: the
first event of a transaction identifies the EVSE) and the idToken.  ``Updated``
events carry periodic meter values (SampledDataCtrlr.TxUpdatedInterval /
TxUpdatedMeasurands) and are produced when a sample arrives at or after the
interval, or with triggerReason MeterValueClock (context ``Sample.Clock``) at
clock-aligned instants (J02); ``changed`` builds the Updated events of a charging-state
change or a late authorization (E02); ``Ended`` carries the stoppedReason and the
TxEndedMeasurands.
Events built while the station is not connected and accepted carry
``offline: true`` (E04).

The open transactions are exported by :meth:`Transactions.snapshot` so that
the adapter can persist them and seqNo keeps increasing across a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from chargepoint.ocpp.station_io import (
    ChargingState,
    IdToken,
    MeterSample,
    SessionEnded,
    SessionStarted,
    StoppedReason,
)


@dataclass(frozen=True)
class OpenTransaction:
    transaction_id: str
    evse_id: int
    connector_id: int
    next_seq_no: int
    last_update_at: float | None = None


#: TriggerReasonEnumType for each stop reason (OCPP 2.0.1 Part 2 §3).
STOP_TRIGGER = {
    StoppedReason.LOCAL: "StopAuthorized",
    StoppedReason.REMOTE: "RemoteStop",
    StoppedReason.EV_DISCONNECTED: "EVCommunicationLost",
    StoppedReason.DE_AUTHORIZED: "Deauthorized",
    StoppedReason.EMERGENCY_STOP: "AbnormalCondition",
    StoppedReason.ENERGY_LIMIT_REACHED: "EnergyLimitReached",
    StoppedReason.GROUND_FAULT: "AbnormalCondition",
    StoppedReason.IMMEDIATE_RESET: "ResetCommand",
    StoppedReason.OTHER: "AbnormalCondition",
    StoppedReason.POWER_LOSS: "AbnormalCondition",
    StoppedReason.SOC_LIMIT_REACHED: "ChargingStateChanged",
    StoppedReason.STOPPED_BY_EV: "ChargingStateChanged",
    StoppedReason.TIME_LIMIT_REACHED: "TimeLimitReached",
    StoppedReason.TIMEOUT: "EVConnectTimeout",
}


def _round(value: float) -> float:
    return round(value, 3)


def sampled_values(
    sample: MeterSample, context: str, measurands: tuple[str, ...]
) -> list[dict[str, Any]]:
    """SampledValueType entries for the configured measurands, units explicit."""
    discharging = sample.power_w < 0
    readings: dict[str, tuple[float, str]] = {
        "Energy.Active.Import.Register": (sample.import_wh, "Wh"),
        "Energy.Active.Export.Register": (sample.export_wh, "Wh"),
        "Power.Active.Import": (0.0 if discharging else sample.power_w, "W"),
        "Power.Active.Export": (-sample.power_w if discharging else 0.0, "W"),
        "Voltage": (sample.voltage_v, "V"),
        "Current.Import": (0.0 if discharging else abs(sample.current_a), "A"),
        "Current.Export": (abs(sample.current_a) if discharging else 0.0, "A"),
    }
    if sample.soc_pct is not None:
        readings["SoC"] = (sample.soc_pct, "Percent")
    out = []
    for measurand in measurands:
        if measurand not in readings:
            continue
        value, unit = readings[measurand]
        entry: dict[str, Any] = {
            "value": _round(value),
            "context": context,
            "measurand": measurand,
            "unitOfMeasure": {"unit": unit},
        }
        if measurand == "SoC":
            entry["location"] = "EV"
        out.append(entry)
    return out


def _id_token_json(token: IdToken) -> dict[str, Any]:
    return {"idToken": token.id_token, "type": token.kind}


class Transactions:
    """The open transactions, keyed by EVSE id."""

    def __init__(self, persisted: Mapping[str, Any] | None) -> None:
        self._open: dict[int, OpenTransaction] = {}
        for item in (persisted or {}).get("open", []):
            # A restart loses the monotonic clock: the next sample sends an update.
            tx = OpenTransaction(
                item["transaction_id"], item["evse_id"], item["connector_id"], item["next_seq_no"]
            )
            self._open[tx.evse_id] = tx

    def snapshot(self) -> dict[str, Any]:
        return {"open": [asdict(replace(tx, last_update_at=None)) for tx in self._open.values()]}

    def on_evse(self, evse_id: int) -> OpenTransaction | None:
        return self._open.get(evse_id)

    def by_id(self, transaction_id: str) -> OpenTransaction | None:
        return next((tx for tx in self._open.values() if tx.transaction_id == transaction_id), None)

    def any_open(self) -> bool:
        return bool(self._open)

    def _next(self, tx: OpenTransaction, now: float | None) -> int:
        self._open[tx.evse_id] = replace(tx, next_seq_no=tx.next_seq_no + 1, last_update_at=now)
        return tx.next_seq_no

    def started(
        self,
        event: SessionStarted,
        *,
        transaction_id: str,
        timestamp: str,
        now: float,
        offline: bool,
        measurands: tuple[str, ...],
        trigger: str | None = None,
        charging_state: ChargingState | None = None,
    ) -> dict[str, Any]:
        """``trigger`` / ``charging_state``: given when a TxStartPoint started it."""
        tx = OpenTransaction(transaction_id, event.evse_id, event.connector_id, 0)
        seq_no = self._next(tx, now)  # E01.FR.07: seqNo starts at 0 per transaction
        if trigger is None:
            if event.remote_start_id is not None:
                trigger = "RemoteStart"
            elif event.id_token is not None:
                trigger = "Authorized"
            else:
                trigger = "CablePluggedIn"
        info: dict[str, Any] = {"transactionId": transaction_id}
        if charging_state is not None:
            info["chargingState"] = charging_state.value
        if event.remote_start_id is not None:
            info["remoteStartId"] = event.remote_start_id
        payload: dict[str, Any] = {
            "eventType": "Started",
            "timestamp": timestamp,
            "triggerReason": trigger,
            "seqNo": seq_no,
            "transactionInfo": info,
            # E01: the first event of the transaction names the EVSE and connector.
            "evse": {"id": event.evse_id, "connectorId": event.connector_id},
        }
        if event.id_token is not None:
            payload["idToken"] = _id_token_json(event.id_token)
        return self._finish(
            payload,
            event.meter,
            timestamp=timestamp,
            context="Transaction.Begin",
            measurands=measurands,
            offline=offline,
        )

    def updated(
        self,
        sample: MeterSample,
        *,
        timestamp: str,
        now: float,
        offline: bool,
        interval_s: int,
        measurands: tuple[str, ...],
        trigger: str = "MeterValuePeriodic",
    ) -> dict[str, Any] | None:
        """An Updated event if ``sample``'s EVSE has a transaction and it is due."""
        tx = self._open.get(sample.evse_id)
        if tx is None:
            return None
        if trigger == "MeterValuePeriodic":
            if interval_s <= 0:
                return None  # TxUpdatedInterval = 0: no periodic samples
            if tx.last_update_at is not None and now < tx.last_update_at + interval_s:
                return None
        # J02: aligned values do not move the periodic timer.
        stamp = tx.last_update_at if trigger == "MeterValueClock" else now
        seq_no = self._next(tx, stamp)
        context = {"Trigger": "Trigger", "MeterValueClock": "Sample.Clock"}.get(
            trigger, "Sample.Periodic"
        )
        payload: dict[str, Any] = {
            "eventType": "Updated",
            "timestamp": timestamp,
            "triggerReason": trigger,
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": tx.transaction_id},
        }
        return self._finish(
            payload,
            sample,
            timestamp=timestamp,
            context=context,
            measurands=measurands,
            offline=offline,
        )

    def changed(
        self,
        evse_id: int,
        *,
        trigger: str,
        timestamp: str,
        offline: bool,
        charging_state: ChargingState | None = None,
        id_token: IdToken | None = None,
        remote_start_id: int | None = None,
    ) -> dict[str, Any] | None:
        """An Updated event without meter values: charging state (E02), a late
        authorization (E02/E03, idToken), a remote start of a running transaction."""
        tx = self._open.get(evse_id)
        if tx is None:
            return None
        seq_no = self._next(tx, tx.last_update_at)
        info: dict[str, Any] = {"transactionId": tx.transaction_id}
        if charging_state is not None:
            info["chargingState"] = charging_state.value
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        payload: dict[str, Any] = {
            "eventType": "Updated",
            "timestamp": timestamp,
            "triggerReason": trigger,
            "seqNo": seq_no,
            "transactionInfo": info,
        }
        if id_token is not None:
            payload["idToken"] = _id_token_json(id_token)
        if offline:
            payload["offline"] = True
        return payload

    def ended(
        self,
        event: SessionEnded,
        *,
        timestamp: str,
        offline: bool,
        measurands: tuple[str, ...],
        trigger: str | None = None,
        charging_state: ChargingState | None = None,
        clock_values: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """``clock_values``: meterValue entries kept at AlignedDataCtrlr.TxEndedInterval."""
        tx = self._open.pop(event.evse_id, None)
        if tx is None:
            return None
        info: dict[str, Any] = {
            "transactionId": tx.transaction_id,
            "stoppedReason": event.reason.value,
        }
        if charging_state is not None:
            info["chargingState"] = charging_state.value
        payload: dict[str, Any] = {
            "eventType": "Ended",
            "timestamp": timestamp,
            "triggerReason": trigger or STOP_TRIGGER[event.reason],
            "seqNo": tx.next_seq_no,
            "transactionInfo": info,
        }
        payload = self._finish(
            payload,
            event.meter,
            timestamp=timestamp,
            context="Transaction.End",
            measurands=measurands,
            offline=offline,
        )
        if clock_values:
            payload["meterValue"] = [*clock_values, *payload.get("meterValue", [])]
        return payload

    @staticmethod
    def _finish(
        payload: dict[str, Any],
        sample: MeterSample,
        *,
        timestamp: str,
        context: str,
        measurands: tuple[str, ...],
        offline: bool,
    ) -> dict[str, Any]:
        values = sampled_values(sample, context, measurands)
        if values:
            payload["meterValue"] = [{"timestamp": timestamp, "sampledValue": values}]
        if offline:
            payload["offline"] = True  # E04: the event happened while offline
        return payload
