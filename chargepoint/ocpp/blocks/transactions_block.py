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
(J01/J02).  Samples for the Ended event are kept at AlignedDataCtrlr.TxEndedInterval
(clock-aligned) and SampledDataCtrlr.TxEndedInterval (from the transaction's
start), both bounded in memory.  An authorization given while no EV is
connected lapses after TxCtrlr.EVConnectionTimeOut (E03): a transaction it
started ends (EVConnectTimeout / Timeout) and the runtime is told to withdraw
it.  A TransactionEventResponse refusing the transaction's idToken deauthorizes it
(E05/E06.FR.04): at once with TxCtrlr.StopTxOnInvalidId, else once
MaxEnergyOnInvalidId Wh more have been delivered (0: never); the runtime gets
:class:`~chargepoint.ocpp.station_io.Deauthorize`.  Every TransactionEvent is
durable (queued before it is sent); the open transactions are persisted so that
seqNo survives a restart.

The payloads and seqNo bookkeeping are :mod:`chargepoint.ocpp.transactions`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp import tx_points
from chargepoint.ocpp.blocks.authorization_block import AuthorizationBlock
from chargepoint.ocpp.device_model import ComponentKey, VariableKey
from chargepoint.ocpp.outbox import (
    Block,
    DeliverCommand,
    Handler,
    Outbox,
    StoreState,
    format_timestamp,
)
from chargepoint.ocpp.queue import MessageKind, QueuedMessage
from chargepoint.ocpp.rpc import Call, JsonObject
from chargepoint.ocpp.station_io import (
    ChargingState,
    Deauthorize,
    EvseActivity,
    IdToken,
    MeterSample,
    RemoteStart,
    RemoteStop,
    SessionEnded,
    SessionStarted,
    StationEvent,
    StoppedReason,
)
from chargepoint.ocpp.transactions import Transactions, sampled_values

logger = logging.getLogger(__name__)

#: Slack for float rounding between monotonic and UTC time at aligned instants.
_ALIGN_SLACK_S = 1e-3
#: At most this many clock-aligned samples (TxEndedInterval) go into one Ended event.
TX_ENDED_ALIGNED_MAX = 500
#: At most this many SampledDataCtrlr.TxEndedInterval samples are kept per transaction
#: (even, so that thinning keeps the newest): when full, every second one is dropped
#: and the interval doubles, so a long transaction stays covered end to end.
TX_ENDED_SAMPLED_MAX = 500
#: TxCtrlr.EVConnectionTimeOut and SampledDataCtrlr.TxEndedInterval
_EV_CONNECTION_TIMEOUT = VariableKey("EVConnectionTimeOut")
#: TxCtrlr.StopTxOnInvalidId / MaxEnergyOnInvalidId (E05)
_STOP_TX_ON_INVALID_ID = VariableKey("StopTxOnInvalidId")
_MAX_ENERGY_ON_INVALID_ID = VariableKey("MaxEnergyOnInvalidId")
_SAMPLED_TX_ENDED_INTERVAL = VariableKey("TxEndedInterval")
_POWER = VariableKey("Power")


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
class _TxEndedSamples:
    """SampledDataCtrlr.TxEndedInterval samples of one transaction (J02), every
    ``interval * stride`` seconds from its start."""

    due: float | None
    interval: int
    stride: int = 1
    values: list[JsonObject] = field(default_factory=list)

    def restart(self, now: float, interval: int) -> None:
        self.interval = interval
        self.due = now + interval * self.stride if interval > 0 else None

    def take(self, instant: float, values: list[JsonObject]) -> None:
        """Keep ``values`` sampled at ``instant`` (UTC epoch s); thin out when full."""
        self.values.append({"timestamp": format_timestamp(instant), "sampledValue": values})
        if len(self.values) > TX_ENDED_SAMPLED_MAX:
            # Entries 0, 2, 4, ... are evenly spaced and the newest is among them.
            self.values = self.values[::2]
            self.stride *= 2


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
        #: SampledDataCtrlr.TxEndedInterval: samples kept for each transaction's Ended
        self._tx_ended_samples: dict[int, _TxEndedSamples] = {}
        #: E03: when the authorization given on an EVSE without an EV lapses
        self._connect_deadline: dict[int, float] = {}
        #: EVSEs whose authorization lapsed (E03) or the CSMS withdrew (E05) while
        #: the runtime still reports it, and the stop reason to report
        self._withdrawn: dict[int, StoppedReason] = {}
        #: E05, StopTxOnInvalidId false: the import register (Wh) at which the
        #: transaction on the EVSE is deauthorized (MaxEnergyOnInvalidId reached)
        self._invalid_energy_until: dict[int, float] = {}
        #: the EVSE.Power value last reported, per EVSE
        self._power: dict[int, str] = {}

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
                self._check_invalid_energy(event, now)
            case SessionEnded():
                self._on_session_ended(event, now)
            case EvseActivity():
                self._on_activity(event, now)
                self._check_invalid_energy(event.meter, now)

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
        Trigger for the EVSE's transaction, or for every EVSE with one when
        ``evse_id`` is None; ``False`` when there is none."""
        targets = sorted(self._evse_connectors) if evse_id is None else [evse_id]
        sent = False
        for evse in targets:
            tx = self._transactions.on_evse(evse)
            sample = self._last_sample.get(evse)
            if tx is None or sample is None:
                continue
            payload = self._transactions.updated(
                sample,
                timestamp=self._outbox.utc_now(now),
                now=now,
                offline=self._offline(),
                interval_s=0,
                measurands=self._measurands(dm.TX_UPDATED_MEASURANDS),
                trigger="Trigger",
            )
            if payload is None:
                continue
            # F06 (TC_F_13, TC_F_14): the current chargingState, and the EVSE so that
            # the events for all EVSEs can be told apart.
            state = self._charging_state_now(evse, sample)
            payload["transactionInfo"]["chargingState"] = state.value
            payload["evse"] = {"id": evse, "connectorId": tx.connector_id}
            track = self._tx_track.get(evse)
            if track is not None:
                track.state = state
            self._store_transactions()
            self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)
            sent = True
        return sent

    def trigger_meter_values(self, evse_id: int | None, now: float) -> bool:
        """F06 TriggerMessage MeterValues: the latest AlignedDataCtrlr.Measurands of
        the EVSE (of every EVSE for ``None``), context Trigger; ``False`` when no
        EVSE has a reading yet."""
        targets = sorted(self._evse_connectors) if evse_id is None else [evse_id]
        measurands = self._model.list_value(dm.ALIGNED_DATA, dm.ALIGNED_MEASURANDS)
        sent = False
        for evse in targets:
            sample = self._last_sample.get(evse)
            if sample is None:
                continue
            reading: JsonObject = {
                "timestamp": self._outbox.utc_now(now),
                "sampledValue": sampled_values(sample, "Trigger", measurands)
                # MeterValues needs at least one value: the register if none is configured
                or sampled_values(sample, "Trigger", ("Energy.Active.Import.Register",)),
            }
            self._outbox.send(
                "MeterValues", {"evseId": evse, "meterValue": [reading]}, requested_by_csms=True
            )
            sent = True
        return sent

    def _charging_state_now(self, evse_id: int, sample: MeterSample) -> ChargingState:
        """The chargingState right now: from the EVSE's flags, else the last one
        reported, else from the meter (runtime-driven sessions)."""
        activity = self._activity.get(evse_id)
        if activity is not None:
            return tx_points.charging_state(activity)
        track = self._tx_track.get(evse_id)
        if track is not None and track.state is not None:
            return track.state
        return ChargingState.CHARGING if sample.power_w != 0 else ChargingState.EV_CONNECTED

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
        self._begin_tx_ended_samples(event.evse_id, now)
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
        self._report_power(sample)

    def _report_power(self, sample: MeterSample) -> None:
        """EVSE.Power (Appendix 3): the power flowing now, whole watts."""
        if not math.isfinite(sample.power_w):
            return
        component = ComponentKey("EVSE", evse_id=sample.evse_id)
        power = sample.power_w
        rated = self._model.max_limit(component, _POWER)
        if rated is not None and power > rated:
            power = rated  # a meter reading above the rating must not break the model
        value = str(round(power))
        if sample.evse_id in self._evse_connectors and value != self._power.get(sample.evse_id):
            self._power[sample.evse_id] = value
            self._outbox.update(component, _POWER, value)

    def _on_session_ended(self, event: SessionEnded, now: float) -> None:
        payload = self._transactions.ended(
            event,
            timestamp=self._outbox.utc_now(now),
            offline=self._offline(),
            measurands=self._measurands(dm.TX_ENDED_MEASURANDS),
            clock_values=self._ended_values(event.evse_id),
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
        event = self._mask_withdrawn(event)
        self._watch_ev_connection(event, now)
        previous = self._activity.get(event.evse_id)
        self._activity[event.evse_id] = event
        self._last_sample[event.evse_id] = event.meter
        self._report_power(event.meter)
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
                clock_values=self._ended_values(event.evse_id),
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
        lost_authorization = before is not None and before["Authorized"] and not event.authorized
        if lost_authorization and event.stopped_reason is StoppedReason.DE_AUTHORIZED:
            # E05: deauthorized, the transaction goes on (TxStopPoint without Authorized)
            trigger = "Deauthorized"
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
        self._begin_tx_ended_samples(event.evse_id, now)
        self._store_transactions()
        self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    # ------------------------------------------------ clock-aligned data (J01/J02)
    def on_clock(self, now: float) -> None:
        """At each clock-aligned instant: aligned meter values (Interval) and the
        samples kept for Ended (TxEndedInterval); the TxEndedInterval samples from
        the start of each transaction; lapsed authorizations (EVConnectionTimeOut)."""
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
        self._sample_for_ended(now)
        for evse_id, deadline in sorted(self._connect_deadline.items()):
            if now >= deadline:
                self._authorization_lapsed(evse_id, now)

    def on_queued_result(self, message: QueuedMessage, result: JsonObject, now: float) -> None:
        """E05 / E06.FR.04 / C12: the CSMS refused the idToken of a running transaction."""
        info = result.get("idTokenInfo")
        if message.action != "TransactionEvent" or info is None or info["status"] == "Accepted":
            return
        tx = self._transactions.by_id(message.payload["transactionInfo"]["transactionId"])
        if tx is None or tx.evse_id in self._withdrawn:
            return  # already over, or already deauthorized
        logger.warning(
            "EVSE %d: the CSMS answered %s for the idToken of transaction %s",
            tx.evse_id,
            info["status"],
            tx.transaction_id,
        )
        if self._model.bool_value(dm.TX_CTRLR, _STOP_TX_ON_INVALID_ID):
            self._deauthorize(tx.evse_id, now)  # E05: StopTxOnInvalidId true
            return
        max_wh = self._model.int_value(dm.TX_CTRLR, _MAX_ENERGY_ON_INVALID_ID)
        sample = self._last_sample.get(tx.evse_id)
        if max_wh > 0 and sample is not None and tx.evse_id not in self._invalid_energy_until:
            # E05: energy may still flow until MaxEnergyOnInvalidId has been delivered.
            self._invalid_energy_until[tx.evse_id] = sample.import_wh + max_wh

    def _check_invalid_energy(self, sample: MeterSample, now: float) -> None:
        until = self._invalid_energy_until.get(sample.evse_id)
        if until is None:
            return
        if self._transactions.on_evse(sample.evse_id) is None:
            del self._invalid_energy_until[sample.evse_id]  # the transaction is over
        elif sample.import_wh >= until:
            logger.warning("EVSE %d: MaxEnergyOnInvalidId delivered", sample.evse_id)
            del self._invalid_energy_until[sample.evse_id]
            self._deauthorize(sample.evse_id, now)

    def _deauthorize(self, evse_id: int, now: float) -> None:
        """E05: withdraw the authorization of the transaction on ``evse_id``: the
        runtime stops the charge; the last snapshot is re-read without the
        authorization, so TxStopPoint Authorized ends the transaction (Deauthorized,
        DeAuthorized; E06.FR.04) and otherwise an Updated event says Deauthorized."""
        tx = self._transactions.on_evse(evse_id)
        if tx is None:
            return
        self._outbox.emit(DeliverCommand(Deauthorize(evse_id, tx.transaction_id)))
        activity = self._activity.get(evse_id)
        if activity is not None:  # (a runtime-driven session ends by SessionEnded)
            self._withdrawn[evse_id] = StoppedReason.DE_AUTHORIZED
            self._on_activity(activity, now)

    def next_deadline(self) -> float | None:
        dues = [
            clock.due - self._outbox.utc_offset_s
            for clock in (self._aligned, self._tx_ended_clock)
            if clock.due is not None
        ]
        dues += [s.due for s in self._tx_ended_samples.values() if s.due is not None]
        dues += self._connect_deadline.values()
        return min(dues) if dues else None

    # ------------------------------------ SampledDataCtrlr.TxEndedInterval (J02)
    def _begin_tx_ended_samples(self, evse_id: int, now: float) -> None:
        self._tx_ended_values.pop(evse_id, None)
        samples = _TxEndedSamples(None, 0)
        samples.restart(now, self._model.int_value(dm.SAMPLED_DATA, _SAMPLED_TX_ENDED_INTERVAL))
        self._tx_ended_samples[evse_id] = samples

    def _sample_for_ended(self, now: float) -> None:
        """J02: TxEndedMeasurands every SampledDataCtrlr.TxEndedInterval seconds from
        the start of the transaction, context Sample.Periodic, for its Ended event.
        A new interval applies from now on; after a long gap only the latest
        instant is sampled."""
        interval = self._model.int_value(dm.SAMPLED_DATA, _SAMPLED_TX_ENDED_INTERVAL)
        measurands = self._measurands(dm.TX_ENDED_MEASURANDS)
        for evse_id, samples in self._tx_ended_samples.items():
            if interval != samples.interval:
                samples.restart(now, interval)
                continue
            if samples.due is None or now < samples.due:
                continue
            period = interval * samples.stride
            instant = samples.due + math.floor((now - samples.due) / period) * period
            samples.due = instant + period
            sample = self._last_sample.get(evse_id)
            if sample is None:
                continue
            values = sampled_values(sample, "Sample.Periodic", measurands)
            if values:
                samples.take(instant + self._outbox.utc_offset_s, values)
                samples.due = instant + interval * samples.stride  # the stride may double

    def _ended_values(self, evse_id: int) -> list[JsonObject]:
        """The samples kept for the Ended event of the transaction on ``evse_id``
        (both TxEndedIntervals), oldest first; forgets them."""
        samples = self._tx_ended_samples.pop(evse_id, None)
        kept = [
            *self._tx_ended_values.pop(evse_id, []),
            *(samples.values if samples is not None else []),
        ]
        # The timestamps share one fixed-width format: text order is time order.
        return sorted(kept, key=lambda entry: str(entry["timestamp"]))

    # ---------------------------------------- TxCtrlr.EVConnectionTimeOut (E03)
    def _watch_ev_connection(self, event: EvseActivity, now: float) -> None:
        """E03.FR.05: an authorization given while no EV is connected lapses after
        EVConnectionTimeOut (0: never); connecting or losing it stops the clock."""
        if not event.authorized or event.ev_connected:
            self._connect_deadline.pop(event.evse_id, None)
            return
        timeout = self._model.int_value(dm.TX_CTRLR, _EV_CONNECTION_TIMEOUT)
        if event.evse_id not in self._connect_deadline and timeout > 0:
            self._connect_deadline[event.evse_id] = now + timeout

    def _mask_withdrawn(self, event: EvseActivity) -> EvseActivity:
        """After a lapsed (E03) or deauthorized (E05) authorization the runtime may
        still report it until our command reaches it: it counts as withdrawn until
        the runtime says so."""
        reason = self._withdrawn.get(event.evse_id)
        if reason is None:
            return event
        if not event.authorized:
            del self._withdrawn[event.evse_id]
            return event
        return replace(
            event, authorized=False, id_token=None, remote_start_id=None, stopped_reason=reason
        )

    def _authorization_lapsed(self, evse_id: int, now: float) -> None:
        """E03.FR.05: no EV within EVConnectionTimeOut: end the transaction the
        authorization started (triggerReason EVConnectTimeout, stoppedReason
        Timeout) and have the runtime withdraw the authorization."""
        del self._connect_deadline[evse_id]
        self._withdrawn[evse_id] = StoppedReason.TIMEOUT
        logger.info("EVSE %d: no EV within EVConnectionTimeOut: authorization withdrawn", evse_id)
        activity = self._activity.get(evse_id)
        if activity is not None:
            self._activity[evse_id] = replace(
                activity, authorized=False, id_token=None, remote_start_id=None
            )
        tx = self._transactions.on_evse(evse_id)
        meter = self._last_sample.get(evse_id)
        if tx is not None and meter is not None:
            payload = self._transactions.ended(
                SessionEnded(evse_id, StoppedReason.TIMEOUT, meter),
                timestamp=self._outbox.utc_now(now),
                offline=self._offline(),
                measurands=self._measurands(dm.TX_ENDED_MEASURANDS),
                trigger="EVConnectTimeout",
                clock_values=self._ended_values(evse_id),
            )
            self._tx_track.pop(evse_id, None)
            if payload is not None:
                self._store_transactions()
                self._outbox.enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)
        # The runtime withdraws the authorization as for a RequestStopTransaction.
        transaction_id = tx.transaction_id if tx is not None else ""
        self._outbox.emit(DeliverCommand(RemoteStop(transaction_id, evse_id)))

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
