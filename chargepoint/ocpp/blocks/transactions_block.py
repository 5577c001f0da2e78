"""Functional blocks E, F (remote start/stop) and J: transactions and meter values (sans-I/O).

Theory of operation: transactions start and end in one of two ways --
the runtime says so (:class:`~chargepoint.ocpp.station_io.SessionStarted` /
``SessionEnded``), or it reports each EVSE's state
(:class:`~chargepoint.ocpp.station_io.EvseActivity`) and the block applies
TxStartPoint / TxStopPoint (E01/E06, :mod:`chargepoint.ocpp.tx_points`), and
reports charging-state changes and a late authorization while one runs (E02).
Meter samples give periodic Updated events (TxUpdatedInterval); at each
clock-aligned instant (AlignedDataCtrlr.Interval, UTC) the latest samples go
out as an Updated event within a transaction or as MeterValues outside one
(J01/J02), and TxEndedInterval samples are kept for the Ended event.  Every
TransactionEvent is durable (queued before it is sent); the open transactions
are persisted so that seqNo survives a restart.

The payloads and seqNo bookkeeping are :mod:`chargepoint.ocpp.transactions`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp import tx_points
from chargepoint.ocpp.blocks.authorization_block import AuthorizationBlock
from chargepoint.ocpp.device_model import VariableKey
from chargepoint.ocpp.outbox import (
    Block,
    DeliverCommand,
    Handler,
    Outbox,
    StoreState,
    format_timestamp,
)
from chargepoint.ocpp.queue import MessageKind
from chargepoint.ocpp.rpc import Call, JsonObject
from chargepoint.ocpp.station_io import (
    ChargingState,
    EvseActivity,
    IdToken,
    MeterSample,
    RemoteStart,
    RemoteStop,
    SessionEnded,
    SessionStarted,
    StationEvent,
)
from chargepoint.ocpp.transactions import Transactions, sampled_values

logger = logging.getLogger(__name__)

#: Slack for float rounding between monotonic and UTC time at aligned instants.
_ALIGN_SLACK_S = 1e-3
#: At most this many clock-aligned samples (TxEndedInterval) go into one Ended event.
TX_ENDED_ALIGNED_MAX = 500


class _AlignedClock:
    """The next UTC instant that is a multiple of an interval (J01/J02)."""

    def __init__(self) -> None:
        self.due: float | None = None
        self._interval = 0

    def tick(self, utc: float, interval: int) -> float | None:
        """The aligned instant ``utc`` has reached since the last call, if any."""
        if interval <= 0:
            self.due = None
            return None
        due = self.due
        if due is None or interval != self._interval or due - utc > interval:
            # first use, a new Interval, or the clock was set back
            self._interval = interval
            self.due = float((math.floor(utc / interval) + 1) * interval)
            return None
        if utc + _ALIGN_SLACK_S < due:
            return None
        # The latest instant reached (after a forward clock jump, only that one).
        instant = float(math.floor((utc + _ALIGN_SLACK_S) / interval) * interval)
        self.due = instant + interval
        return instant


@dataclass
class _TxTrack:
    """What the block knows of a running transaction beyond its seqNo (E01/E02/E06)."""

    #: the points (TX_POINTS values) met at some time during the transaction
    met: set[str]
    #: the chargingState last reported (None: not yet)
    state: ChargingState | None
    #: the idToken went out with one of the transaction's events
    token_sent: bool


class TransactionsBlock(Block):
    """TransactionEvent (E), RequestStart/StopTransaction (F01-F03), meter values (J)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        evse_connectors: Mapping[int, int],
        authorization: AuthorizationBlock,
        stored: Mapping[str, Any] | None,
    ) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._evse_connectors = evse_connectors
        self._authorization = authorization
        self._transactions = Transactions(stored)
        self._last_sample: dict[int, MeterSample] = {}
        #: latest EvseActivity per EVSE, and the transactions it drives
        self._activity: dict[int, EvseActivity] = {}
        self._tx_track: dict[int, _TxTrack] = {}
        #: J01/J02: the next clock-aligned instant (UTC epoch s) and its Interval
        self._aligned = _AlignedClock()
        #: AlignedDataCtrlr.TxEndedInterval: samples kept for each transaction's Ended
        self._tx_ended_clock = _AlignedClock()
        self._tx_ended_values: dict[int, list[JsonObject]] = {}

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "RequestStartTransaction": self._on_request_start,
            "RequestStopTransaction": self._on_request_stop,
            "GetTransactionStatus": self._on_get_transaction_status,
        }

    def on_event(self, event: StationEvent, now: float) -> None:
        match event:
            case SessionStarted():
                self._on_session_started(event, now)
            case MeterSample():
                self._on_meter_sample(event, now)
            case SessionEnded():
                self._on_session_ended(event, now)
            case EvseActivity():
                self._on_activity(event, now)

    def busy(self, evse_id: int | None) -> bool:
        """A transaction runs on ``evse_id`` (on any EVSE for ``None``)."""
        if evse_id is None:
            return self._transactions.any_open()
        return self._transactions.on_evse(evse_id) is not None

    def transaction_on(self, evse_id: int) -> str | None:
        """The transactionId running on ``evse_id``, if any."""
        tx = self._transactions.on_evse(evse_id)
        return None if tx is None else tx.transaction_id

    def charging_rate_changed(self, evse_id: int, now: float) -> None:
        """The composite limit moved by more than SmartChargingCtrlr.LimitChangeSignificance:
        an Updated event with triggerReason ChargingRateChanged (TriggerReasonEnumType)."""
        payload = self._transactions.changed(
            evse_id,
            trigger="ChargingRateChanged",
            timestamp=self._outbox.utc_now(now),
            offline=self._offline(),
        )
        if payload is not None:
            self._store_transactions()
            self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)

    def trigger_transaction_event(self, evse_id: int | None, now: float) -> bool:
        """F06 TriggerMessage TransactionEvent: an Updated event with triggerReason
        Trigger for the EVSE's transaction; ``False`` when it has none."""
        sample = self._last_sample.get(evse_id) if evse_id is not None else None
        if sample is None or self._transactions.on_evse(sample.evse_id) is None:
            return False
        self._on_meter_sample(sample, now, "Trigger")
        return True

    # ------------------------------------------------------------- helpers
    def _offline(self) -> bool:
        """E04: an event while there is no connection to the CSMS is marked offline."""
        return not self._outbox.connected

    def _measurands(self, variable: VariableKey) -> tuple[str, ...]:
        return self._model.list_value(dm.SAMPLED_DATA, variable)

    def _store_transactions(self) -> None:
        self._outbox.emit(StoreState("transactions", self._transactions.snapshot()))

    # ------------------------------------------------------ runtime sessions
    def _on_session_started(self, event: SessionStarted, now: float) -> None:
        if self._transactions.on_evse(event.evse_id) is not None:
            logger.error("runtime started a second session on EVSE %d: ignored", event.evse_id)
            return
        self._last_sample[event.evse_id] = event.meter
        payload = self._transactions.started(
            event,
            transaction_id=self._outbox.new_id(),
            timestamp=self._outbox.utc_now(now),
            now=now,
            offline=self._offline(),
            measurands=self._measurands(dm.TX_STARTED_MEASURANDS),
        )
        self._tx_track[event.evse_id] = _TxTrack(set(), None, event.id_token is not None)
        self._tx_ended_values.pop(event.evse_id, None)
        self._store_transactions()
        self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    def _on_meter_sample(
        self, sample: MeterSample, now: float, trigger: str = "MeterValuePeriodic"
    ) -> None:
        payload = self._transactions.updated(
            sample,
            timestamp=self._outbox.utc_now(now),
            now=now,
            offline=self._offline(),
            interval_s=self._model.int_value(dm.SAMPLED_DATA, dm.TX_UPDATED_INTERVAL),
            measurands=self._measurands(dm.TX_UPDATED_MEASURANDS),
            trigger=trigger,
        )
        if payload is not None:
            self._store_transactions()
            self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)
        self._last_sample[sample.evse_id] = sample

    def _on_session_ended(self, event: SessionEnded, now: float) -> None:
        payload = self._transactions.ended(
            event,
            timestamp=self._outbox.utc_now(now),
            offline=self._offline(),
            measurands=self._measurands(dm.TX_ENDED_MEASURANDS),
            clock_values=self._tx_ended_values.pop(event.evse_id, None),
        )
        self._tx_track.pop(event.evse_id, None)
        if payload is None:
            if not event.interrupted:
                logger.warning("session ended on EVSE %d without a transaction", event.evse_id)
            return
        if event.interrupted:
            logger.warning(
                "EVSE %d: ending transaction left open by the previous run (%s)",
                event.evse_id,
                event.reason.value,
            )
        self._store_transactions()
        self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    # ------------------------------------------- TxStartPoint / TxStopPoint
    def _on_activity(self, event: EvseActivity, now: float) -> None:
        """E01/E06: start and end transactions by the configured points; E02:
        report charging-state changes and a late authorization while one runs."""
        if event.evse_id not in self._evse_connectors:
            logger.error("runtime reported activity on unknown EVSE %d: ignored", event.evse_id)
            return
        previous = self._activity.get(event.evse_id)
        self._activity[event.evse_id] = event
        self._last_sample[event.evse_id] = event.meter
        before = tx_points.conditions(previous) if previous is not None else None
        current = tx_points.conditions(event)
        state = tx_points.charging_state(event)
        if self._transactions.on_evse(event.evse_id) is None:
            point = tx_points.start_point(
                self._model.list_value(dm.TX_CTRLR, dm.TX_START_POINT), before, current
            )
            if point is not None:
                self._start_by_point(event, point, state, now)
            return
        track = self._tx_track.get(event.evse_id)
        if track is None:  # a transaction restored from the store
            track = self._tx_track[event.evse_id] = _TxTrack(set(), None, False)
        decision = tx_points.stop_decision(
            self._model.list_value(dm.TX_CTRLR, dm.TX_STOP_POINT),
            track.met,
            before,
            current,
            event,
        )
        if decision is not None:
            logger.info(
                "EVSE %d: transaction ends (%s no longer met: %s)",
                event.evse_id,
                decision.point or "nothing",
                decision.reason.value,
            )
            payload = self._transactions.ended(
                SessionEnded(event.evse_id, decision.reason, event.meter),
                timestamp=self._outbox.utc_now(now),
                offline=self._offline(),
                measurands=self._measurands(dm.TX_ENDED_MEASURANDS),
                trigger=decision.trigger,
                charging_state=state if state is not track.state else None,
                clock_values=self._tx_ended_values.pop(event.evse_id, None),
            )
            del self._tx_track[event.evse_id]
            if payload is not None:
                self._store_transactions()
                self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)
            return
        track.met |= {p for p, held in current.items() if held}
        newly_authorized = event.authorized and (before is None or not before["Authorized"])
        trigger: str | None = None
        token = None
        remote_start_id = None
        if newly_authorized and not track.token_sent:
            # The idToken goes with the first event after the authorization.
            token = event.id_token
            remote_start_id = event.remote_start_id
            trigger = "RemoteStart" if remote_start_id is not None else "Authorized"
            track.token_sent = token is not None
        changed_state = state if state is not track.state else None
        if trigger is None and changed_state is not None:
            trigger = "ChargingStateChanged"
        if trigger is None:
            return
        track.state = state
        payload = self._transactions.changed(
            event.evse_id,
            trigger=trigger,
            timestamp=self._outbox.utc_now(now),
            offline=self._offline(),
            charging_state=changed_state,
            id_token=token,
            remote_start_id=remote_start_id,
        )
        if payload is not None:
            self._store_transactions()
            self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)

    def _start_by_point(
        self, event: EvseActivity, point: str, state: ChargingState, now: float
    ) -> None:
        token = event.id_token if event.authorized else None
        remote_start_id = event.remote_start_id if event.authorized else None
        logger.info("EVSE %d: transaction starts (%s)", event.evse_id, point)
        payload = self._transactions.started(
            SessionStarted(event.evse_id, event.connector_id, token, event.meter, remote_start_id),
            transaction_id=self._outbox.new_id(),
            timestamp=self._outbox.utc_now(now),
            now=now,
            offline=self._offline(),
            measurands=self._measurands(dm.TX_STARTED_MEASURANDS),
            trigger=tx_points.start_trigger(point, event),
            charging_state=state,
        )
        met = {p for p, held in tx_points.conditions(event).items() if held}
        self._tx_track[event.evse_id] = _TxTrack(met, state, token is not None)
        self._tx_ended_values.pop(event.evse_id, None)
        self._store_transactions()
        self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    # ------------------------------------------------ clock-aligned data (J01/J02)
    def on_clock(self, now: float) -> None:
        """At each clock-aligned instant: aligned meter values (Interval) and the
        samples kept for Ended (TxEndedInterval)."""
        utc = now + self._outbox.utc_offset_s
        instant = self._aligned.tick(
            utc, self._model.int_value(dm.ALIGNED_DATA, dm.ALIGNED_INTERVAL)
        )
        if instant is not None:
            self._send_aligned(now, instant)
        instant = self._tx_ended_clock.tick(
            utc, self._model.int_value(dm.ALIGNED_DATA, dm.ALIGNED_TX_ENDED_INTERVAL)
        )
        if instant is not None:
            self._keep_tx_ended_values(instant)

    def next_deadline(self) -> float | None:
        dues = [
            clock.due - self._outbox.utc_offset_s
            for clock in (self._aligned, self._tx_ended_clock)
            if clock.due is not None
        ]
        return min(dues) if dues else None

    def _keep_tx_ended_values(self, instant: float) -> None:
        """J02: TxEndedMeasurands at each TxEndedInterval instant of a transaction,
        reported in its Ended event (context Sample.Clock)."""
        measurands = self._model.list_value(dm.ALIGNED_DATA, dm.ALIGNED_TX_ENDED_MEASURANDS)
        for evse_id in sorted(self._evse_connectors):
            sample = self._last_sample.get(evse_id)
            if sample is None or self._transactions.on_evse(evse_id) is None:
                continue
            values = sampled_values(sample, "Sample.Clock", measurands)
            kept = self._tx_ended_values.setdefault(evse_id, [])
            if values and len(kept) < TX_ENDED_ALIGNED_MAX:
                kept.append({"timestamp": format_timestamp(instant), "sampledValue": values})

    def _send_aligned(self, now: float, instant: float) -> None:
        timestamp = format_timestamp(instant)
        measurands = self._model.list_value(dm.ALIGNED_DATA, dm.ALIGNED_MEASURANDS)
        for evse_id in sorted(self._evse_connectors):
            sample = self._last_sample.get(evse_id)
            if sample is None:
                continue
            values = sampled_values(sample, "Sample.Clock", measurands)
            if not values:
                continue
            if self._transactions.on_evse(evse_id) is not None:
                # J02: within a transaction, an Updated event (MeterValueClock).
                payload = self._transactions.updated(
                    sample,
                    timestamp=timestamp,
                    now=now,
                    offline=self._offline(),
                    interval_s=0,
                    measurands=measurands,
                    trigger="MeterValueClock",
                )
                if payload is not None:
                    self._store_transactions()
                    self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)
                continue
            # J01: outside a transaction, MeterValues; not kept while offline
            # unless QueueAllMessages (then it is durable like other messages).
            if self._outbox.online or self._model.bool_value(dm.OCPP_COMM, dm.QUEUE_ALL_MESSAGES):
                self._outbox.enqueue(
                    "MeterValues",
                    {
                        "evseId": evse_id,
                        "meterValue": [{"timestamp": timestamp, "sampledValue": values}],
                    },
                    None,
                )

    # -------------------------------------------------------- CALL handlers
    def _on_request_start(self, call: Call, now: float, size: int) -> JsonObject:
        evse_id = call.payload.get("evseId")
        if evse_id is not None and evse_id not in self._evse_connectors:
            return {"status": "Rejected"}
        if not self._outbox.accepted:
            return {"status": "Rejected"}  # B02: no transactions before Accepted
        token = call.payload["idToken"]
        id_token = IdToken(token["idToken"], token["type"])
        command = RemoteStart(evse_id, id_token, call.payload["remoteStartId"])
        if self._model.bool_value(dm.AUTH, dm.AUTHORIZE_REMOTE_START):
            # F02: authorize the idToken first; the runtime hears of the start only
            # once it is Accepted.  The Authorize goes out after this answer.
            self._authorization.authorize_remote_start(now, command)
        else:
            self._outbox.emit(DeliverCommand(command))  # F01
        return {"status": "Accepted"}

    def _on_request_stop(self, call: Call, now: float, size: int) -> JsonObject:
        tx = self._transactions.by_id(call.payload["transactionId"])
        if tx is None:
            return {"status": "Rejected"}  # F03: unknown transaction
        self._outbox.emit(DeliverCommand(RemoteStop(tx.transaction_id, tx.evse_id)))
        return {"status": "Accepted"}

    def _on_get_transaction_status(self, call: Call, now: float, size: int) -> JsonObject:
        # E14: are messages of (this) transaction still queued; is it ongoing.
        transaction_id = call.payload.get("transactionId")
        queued = any(
            m.action == "TransactionEvent"
            and (
                transaction_id is None
                or m.payload["transactionInfo"]["transactionId"] == transaction_id
            )
            for m in self._outbox.queued()
        )
        result: JsonObject = {"messagesInQueue": queued}
        if transaction_id is not None:
            result["ongoingIndicator"] = self._transactions.by_id(transaction_id) is not None
        return result
