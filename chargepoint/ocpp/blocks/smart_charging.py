"""Functional block K: charging profiles and the limits they put on each EVSE (sans-I/O).

Theory of operation: SetChargingProfile installs a profile after every K01 check
(:mod:`chargepoint.smartcharging.validation`) in the :class:`ProfileStore`, which is
persisted as the state ``charging_profiles`` after every change, so profiles
survive restarts and power loss.  ClearChargingProfile (K10), GetChargingProfiles
(K09, answered with ReportChargingProfiles messages) and GetCompositeSchedule
(K08) read the store.

The limit in force on each EVSE is the composite schedule at ``now``
(:func:`chargepoint.smartcharging.composite.limit_at`): whenever it changes (a
profile installed or cleared, a transaction started or ended, a period
boundary, a validity edge) the block emits a :class:`ChargingLimit` command for
the runtime, which applies it to the PWM offer and the ISO 15118 power arbiter.
It sleeps until the next instant the composite may change.  All of this runs on
every input whatever the link: profiles keep applying offline, and a
TxDefaultProfile applies to a transaction started offline (K01, offline
behaviour).  A change of the limit beyond SmartChargingCtrlr.LimitChangeSignificance
during a transaction is reported with a TransactionEvent (ChargingRateChanged).

Each ChargingLimit also carries the composite schedule ahead (W, absolute UTC
starts, :data:`SCHEDULE_HORIZON_S`) for an ISO 15118-20 Scheduled session.  It
is recomputed only when its inputs change (the profiles that concern the EVSE,
Enabled, the EVSE's transaction), never by the clock alone, so a period
boundary changes the limit in force but not the schedule the runtime offered.

An ISO 15118-20 car's charging needs and the schedule it picked go to the CSMS
as NotifyEVChargingNeeds / NotifyEVChargingSchedule (K15-K17; the payloads are
:mod:`.ev_charging_needs`): volatile CALLs, only while online with smart
charging enabled.  The CSMS's answer to the needs goes back to the runtime as
:class:`ChargingNeedsAnswer` ("NotSent" when it could not be asked).

UTC: profiles are in UTC; ``now`` is monotonic, so the block converts with the
core's ``utc_offset_s`` and re-checks at least every :data:`RECHECK_S`, so a
clock correction from the CSMS is followed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.blocks.ev_charging_needs import (
    charging_needs_request,
    charging_schedule_request,
)
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.device_model import ComponentKey, VariableKey
from chargepoint.ocpp.outbox import Block, DeliverCommand, Handler, Outbox, StoreState
from chargepoint.ocpp.rpc import Call, JsonObject
from chargepoint.ocpp.standard_variables import (
    MAX_CHARGING_PROFILES,
    MAX_STACK_LEVEL,
    PERIODS_PER_SCHEDULE,
)
from chargepoint.ocpp.station_io import (
    ChargingLimit,
    ChargingNeedsAnswer,
    EvChargingNeeds,
    EvChargingSchedule,
    EvseRating,
    SchedulePeriodW,
    StationEvent,
)
from chargepoint.smartcharging.composite import (
    Conversion,
    Limit,
    composite_schedule,
    limit_at,
    next_change_s,
)
from chargepoint.smartcharging.model import ChargingProfile, Purpose, RateUnit
from chargepoint.smartcharging.store import ProfileStore, report_chunks
from chargepoint.smartcharging.validation import (
    ProfileLimits,
    ProfileRejected,
    check_install,
    parse_profile,
)

logger = logging.getLogger(__name__)

SMART_CHARGING = ComponentKey("SmartChargingCtrlr")
ENTRIES = VariableKey("Entries", "ChargingProfiles")
LIMIT_CHANGE_SIGNIFICANCE = VariableKey("LimitChangeSignificance")
#: Longest composite schedule computed (a hostile duration of 68 years with a
#: daily profile would otherwise cost seconds); longer requests are answered for
#: this long, as the response's ``duration`` says.
MAX_COMPOSITE_DURATION_S = 31 * 86_400
#: Re-evaluate at least this often (follows clock corrections; cheap).
RECHECK_S = 60.0
#: Profiles per ReportChargingProfilesRequest (K09: split across messages).
PROFILES_PER_REPORT = 16
#: How far ahead ``ChargingLimit.schedule`` reaches (ISO 15118-20 schedules
#: cover at most 24 h).
SCHEDULE_HORIZON_S = 24 * 3600
#: The answer to NotifyEVChargingNeeds when the CSMS could not be asked.
NOT_SENT = "NotSent"

#: What a cached schedule was computed from: (profiles concerning the EVSE,
#: transactionId, transaction start).
_ScheduleInputs = tuple[tuple[ChargingProfile, ...], str | None, float | None]


def _changed_significantly(old: float | None, new: float | None, percent: float) -> bool:
    if old is None or new is None:
        return old is not new
    if old == new:
        return False
    base = max(abs(old), 1e-9)
    return abs(new - old) / base * 100.0 > percent


class SmartChargingBlock(Block):
    """SetChargingProfile (K01), GetCompositeSchedule (K08), GetChargingProfiles (K09),
    ClearChargingProfile (K10), and the limit each EVSE gets from them."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        evse_ratings: Mapping[int, EvseRating],
        transactions: TransactionsBlock,
        stored: Mapping[str, Any] | None,
    ) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._ratings = evse_ratings
        self._transactions = transactions
        self._store = ProfileStore.from_json((stored or {}).get("profiles", []))
        #: per EVSE: (transactionId, its start in UTC epoch s) as last seen
        self._tx: dict[int, tuple[str, float]] = {}
        #: per EVSE: the last limit handed to the runtime (at start: none, which is
        #: what the runtime assumes, so nothing is sent until a profile applies)
        self._applied: dict[int, ChargingLimit] = {
            evse: ChargingLimit(evse, None, None) for evse in evse_ratings
        }
        #: per EVSE: the schedule ahead and what it was computed from
        self._schedules: dict[int, tuple[_ScheduleInputs, tuple[SchedulePeriodW, ...]]] = {}
        self._next_check: float | None = None  # None: nothing due by the clock
        self._dirty = True
        self._was_enabled = self._enabled()
        self._update_entries()

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "SetChargingProfile": self._on_set,
            "ClearChargingProfile": self._on_clear,
            "GetChargingProfiles": self._on_get,
            "GetCompositeSchedule": self._on_composite,
        }

    # ---------------------------------------------------------------- clock and events
    def on_event(self, event: StationEvent, now: float) -> None:
        self._follow_transactions(now)
        if isinstance(event, EvChargingNeeds):
            self._notify_needs(event, now)
        elif isinstance(event, EvChargingSchedule):
            self._notify_schedule(event, now)

    def on_clock(self, now: float) -> None:
        enabled = self._enabled()  # SmartChargingCtrlr.Enabled may be set at any time
        if enabled is not self._was_enabled:
            self._was_enabled = enabled
            self._dirty = True
        if self._dirty or (self._next_check is not None and now >= self._next_check):
            self._apply(now)

    def next_deadline(self) -> float | None:
        return self._next_check

    def _utc(self, now: float) -> float:
        return now + self._outbox.utc_offset_s

    def _follow_transactions(self, now: float) -> None:
        """Transactions that started (Relative profiles start with them; TxDefault
        applies) or ended (their TxProfiles go, K01)."""
        for evse_id in sorted(self._ratings):
            running = self._transactions.transaction_on(evse_id)
            known = self._tx.get(evse_id)
            if known is not None and known[0] != running:
                del self._tx[evse_id]
                if self._store.end_transaction(known[0]):
                    self._persist()
                self._dirty = True
            if running is not None and evse_id not in self._tx:
                self._tx[evse_id] = (running, self._utc(now))
                self._dirty = True
        if self._dirty:
            self._apply(now)

    def _rating(self, evse_id: int) -> EvseRating:
        if evse_id == 0:  # the grid connection: converted as the first EVSE converts
            first = min(self._ratings, default=None)
            return self._ratings[first] if first is not None else EvseRating()
        return self._ratings.get(evse_id, EvseRating())

    @staticmethod
    def _conversion(rating: EvseRating) -> Conversion:
        phases = 1 if rating.dc else rating.phases
        return Conversion(voltage_v=rating.voltage_v, default_phases=phases)

    def _enabled(self) -> bool:
        return self._model.bool_value(SMART_CHARGING, dm.ENABLED)

    # ------------------------------------------------------------------- applying
    def _apply(self, now: float) -> None:
        """Hand every EVSE the limit in force now; sleep until it may change."""
        self._dirty = False
        utc = self._utc(now)
        if self._store.expire(utc):
            self._persist()
        profiles = list(self._store.profiles) if self._enabled() else []
        next_utc: float | None = None
        for evse_id in sorted(self._ratings):
            tx = self._tx.get(evse_id)
            tx_id, tx_start = (tx[0], tx[1]) if tx is not None else (None, None)
            limit = replace(
                self._limit_now(profiles, evse_id, utc, tx_id, tx_start),
                schedule=self._schedule_ahead(profiles, evse_id, utc, tx_id, tx_start),
            )
            previous = self._applied.get(evse_id)
            if limit != previous:
                self._applied[evse_id] = limit
                logger.info("evse %d: charging limit now %s", evse_id, _describe(limit))
                self._outbox.emit(DeliverCommand(limit))
                if tx_id is not None and previous is not None:
                    self._maybe_report_rate(evse_id, previous, limit, now)
            if profiles:
                change = next_change_s(
                    profiles, evse_id, utc, tx_start_s=tx_start, transaction_id=tx_id
                )
                if change is not None and (next_utc is None or change < next_utc):
                    next_utc = change
        if not profiles:
            self._next_check = None  # nothing can change by the clock alone
            return
        recheck = now + RECHECK_S
        if next_utc is not None:
            recheck = min(recheck, max(now, next_utc - self._outbox.utc_offset_s))
        self._next_check = recheck

    def _limit_now(
        self,
        profiles: list[ChargingProfile],
        evse_id: int,
        utc: float,
        tx_id: str | None,
        tx_start: float | None,
    ) -> ChargingLimit:
        rating = self._rating(evse_id)
        conversion = self._conversion(rating)

        def at(unit: RateUnit) -> Limit | None:
            if not profiles:
                return None
            return limit_at(
                profiles,
                evse_id,
                utc,
                unit,
                conversion=conversion,
                tx_start_s=tx_start,
                transaction_id=tx_id,
            )

        watts = at(RateUnit.W)
        amps = None if rating.dc else at(RateUnit.A)
        return ChargingLimit(
            evse_id=evse_id,
            current_a=None if amps is None else amps.limit,
            power_w=None if watts is None else watts.limit,
            discharge_power_w=None if watts is None else watts.discharge_limit,
            number_phases=None if amps is None else amps.number_phases,
        )

    def _schedule_ahead(
        self,
        profiles: list[ChargingProfile],
        evse_id: int,
        utc: float,
        tx_id: str | None,
        tx_start: float | None,
    ) -> tuple[SchedulePeriodW, ...]:
        """The composite schedule from ``utc`` on, in W; the cached one while the
        profiles concerning ``evse_id`` and its transaction are unchanged."""
        inputs: _ScheduleInputs = (
            tuple(p for p in profiles if p.evse_id in (0, evse_id)),
            tx_id,
            tx_start,
        )
        cached = self._schedules.get(evse_id)
        if cached is not None and cached[0] == inputs:
            return cached[1]
        schedule: tuple[SchedulePeriodW, ...] = ()
        if inputs[0]:
            start = math.floor(utc)
            composite = composite_schedule(
                profiles,
                evse_id,
                start,
                SCHEDULE_HORIZON_S,
                RateUnit.W,
                conversion=self._conversion(self._rating(evse_id)),
                tx_start_s=tx_start,
                transaction_id=tx_id,
                max_periods=PERIODS_PER_SCHEDULE,
            )
            periods = composite.periods
            if any(p.limit is not None or p.discharge_limit is not None for p in periods):
                schedule = tuple(
                    SchedulePeriodW(start + p.start_s, p.limit, p.discharge_limit) for p in periods
                )
        self._schedules[evse_id] = (inputs, schedule)
        return schedule

    def _maybe_report_rate(
        self, evse_id: int, old: ChargingLimit, new: ChargingLimit, now: float
    ) -> None:
        raw = self._model.value(SMART_CHARGING, LIMIT_CHANGE_SIGNIFICANCE)
        try:
            percent = float(raw) if raw is not None else 10.0
        except ValueError:
            percent = 10.0
        dc = self._rating(evse_id).dc
        before = old.power_w if dc else old.current_a
        after = new.power_w if dc else new.current_a
        if _changed_significantly(before, after, percent):
            self._transactions.charging_rate_changed(evse_id, now)

    # ------------------------------------------- ISO 15118 charging needs (K15-K17)
    def _why_not_notify(self, evse_id: int) -> str | None:
        if evse_id not in self._ratings:
            return f"unknown EVSE {evse_id}"
        if not self._enabled():
            return "SmartChargingCtrlr.Enabled is false"
        if not self._outbox.online:
            return "the CSMS is not reachable (offline or not accepted)"
        return None

    def _answer_needs(self, evse_id: int, status: str) -> None:
        self._outbox.emit(DeliverCommand(ChargingNeedsAnswer(evse_id, status)))

    def _notify_needs(self, needs: EvChargingNeeds, now: float) -> None:
        """K15.FR.01 / K17: tell the CSMS what the car needs; its answer
        (K15.FR.03-05: Accepted, Rejected, Processing; 2.1 NoChargingProfile)
        goes to the runtime, which decides how long to wait for a profile."""
        evse_id = needs.evse_id
        reason = self._why_not_notify(evse_id)
        if reason is not None:
            logger.info("NotifyEVChargingNeeds for EVSE %d not sent: %s", evse_id, reason)
            self._answer_needs(evse_id, NOT_SENT)
            return
        payload = charging_needs_request(needs, self._outbox.version, self._rating(evse_id))

        def on_result(answer: JsonObject, now: float) -> None:
            status = str(answer["status"])
            info = answer.get("statusInfo") or {}
            logger.info(
                "CSMS answered NotifyEVChargingNeeds for EVSE %d: %s %s",
                evse_id,
                status,
                info.get("reasonCode", ""),
            )
            self._answer_needs(evse_id, status)

        def on_failure(now: float) -> None:
            logger.warning("NotifyEVChargingNeeds for EVSE %d got no answer", evse_id)
            self._answer_needs(evse_id, NOT_SENT)

        self._outbox.send(
            "NotifyEVChargingNeeds", payload, on_result=on_result, on_failure=on_failure
        )

    def _notify_schedule(self, schedule: EvChargingSchedule, now: float) -> None:
        """K15.FR.10 / K17: the schedule the car picked, for the CSMS to check."""
        evse_id = schedule.evse_id
        reason = self._why_not_notify(evse_id)
        if reason is not None:
            logger.info("NotifyEVChargingSchedule for EVSE %d not sent: %s", evse_id, reason)
            return
        payload = charging_schedule_request(schedule, self._outbox.version)
        if payload is None:
            return

        def on_result(answer: JsonObject, now: float) -> None:
            status = answer["status"]
            if status == "Accepted":
                logger.info("CSMS accepted the EV charging schedule on EVSE %d", evse_id)
                return
            # K15/K16: a Rejected schedule is for the CSMS to act on (it may renegotiate)
            info = answer.get("statusInfo") or {}
            logger.warning(
                "CSMS answered NotifyEVChargingSchedule for EVSE %d: %s %s",
                evse_id,
                status,
                info.get("reasonCode", ""),
            )

        self._outbox.send("NotifyEVChargingSchedule", payload, on_result=on_result)

    # ------------------------------------------------------------------ handlers
    def _limits(self) -> ProfileLimits:
        return ProfileLimits(
            evse_count=max(self._ratings, default=0),
            max_stack_level=MAX_STACK_LEVEL,
            periods_per_schedule=PERIODS_PER_SCHEDULE,
        )

    def _active_transactions(self) -> dict[int, str]:
        return {evse: tx[0] for evse, tx in self._tx.items()}

    def _on_set(self, call: Call, now: float, size: int) -> JsonObject:
        """K01: install a profile, or say why not (statusInfo.reasonCode)."""
        self._follow_transactions(now)
        payload = call.payload
        if not self._enabled():
            return {
                "status": "Rejected",
                "statusInfo": {
                    "reasonCode": "NoSupport",
                    "additionalInfo": "SmartChargingCtrlr.Enabled is false",
                },
            }
        try:
            profile = parse_profile(
                payload.get("chargingProfile", {}),
                payload.get("evseId", -1),
                self._outbox.version,
                now_utc_s=self._utc(now),
                limits=self._limits(),
            )
            check_install(
                profile,
                self._store.profiles,
                active_transaction_ids=self._active_transactions(),
                max_entries=MAX_CHARGING_PROFILES,
            )
        except ProfileRejected as exc:
            logger.warning("SetChargingProfile rejected: %s", exc)
            return {"status": "Rejected", "statusInfo": exc.status_info()}
        self._store.install(profile)
        logger.info(
            "charging profile %d installed: %s, stack level %d, EVSE %d",
            profile.id,
            profile.purpose.value,
            profile.stack_level,
            profile.evse_id,
        )
        self._persist()
        self._apply(now)  # applied with the answer (K01: within one second)
        return {"status": "Accepted"}

    def _on_clear(self, call: Call, now: float, size: int) -> JsonObject:
        """K10: by id, or by every criterion given; Unknown when nothing matched."""
        payload = call.payload
        criteria = payload.get("chargingProfileCriteria") or {}
        purpose_text = criteria.get("chargingProfilePurpose")
        try:
            purpose = Purpose(purpose_text) if purpose_text is not None else None
        except ValueError:
            return {"status": "Unknown"}
        removed = self._store.clear(
            profile_id=payload.get("chargingProfileId"),
            evse_id=criteria.get("evseId"),
            purpose=purpose,
            stack_level=criteria.get("stackLevel"),
        )
        if not removed:
            return {"status": "Unknown"}
        logger.info("charging profiles cleared: %s", ", ".join(str(p.id) for p in removed))
        self._persist()
        self._apply(now)
        return {"status": "Accepted"}

    def _on_get(self, call: Call, now: float, size: int) -> JsonObject:
        """K09: Accepted and then ReportChargingProfiles, or NoProfiles."""
        payload = call.payload
        criteria = payload.get("chargingProfile") or {}
        purpose_text = criteria.get("chargingProfilePurpose")
        try:
            purpose = Purpose(purpose_text) if purpose_text is not None else None
        except ValueError:
            return {"status": "NoProfiles"}
        found = self._store.matching(
            evse_id=payload.get("evseId"),
            profile_ids=criteria.get("chargingProfileId"),
            purpose=purpose,
            stack_level=criteria.get("stackLevel"),
            sources=criteria.get("chargingLimitSource"),
        )
        chunks = report_chunks(
            sorted(found, key=lambda p: (p.evse_id, p.id)),
            PROFILES_PER_REPORT,
            self._outbox.version,
        )
        if not chunks:
            return {"status": "NoProfiles"}
        request_id = payload["requestId"]
        for index, chunk in enumerate(chunks):
            self._outbox.send(
                "ReportChargingProfiles",
                chunk.request(request_id, tbc=index < len(chunks) - 1),
                requested_by_csms=True,
            )
        return {"status": "Accepted"}

    def _on_composite(self, call: Call, now: float, size: int) -> JsonObject:
        """K08: the composite schedule of an EVSE (or the grid connection, evseId 0)."""
        payload = call.payload
        evse_id = payload.get("evseId", -1)
        if evse_id != 0 and evse_id not in self._ratings:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "UnknownEvse", "additionalInfo": f"evseId {evse_id}"},
            }
        self._follow_transactions(now)
        rating = self._rating(evse_id)
        unit_text = payload.get("chargingRateUnit")
        unit = (
            RateUnit(unit_text)
            if unit_text in ("A", "W")
            else (RateUnit.W if rating.dc else RateUnit.A)
        )
        duration = max(1, min(int(payload.get("duration", 0)), MAX_COMPOSITE_DURATION_S))
        tx = self._tx.get(evse_id)
        default = self._default_limit(rating, unit)
        schedule = composite_schedule(
            list(self._store.profiles) if self._enabled() else [],
            evse_id,
            math.floor(self._utc(now)),
            duration,
            unit,
            conversion=self._conversion(rating),
            tx_start_s=None if tx is None else tx[1],
            transaction_id=None if tx is None else tx[0],
            default_limit=default,
            max_periods=PERIODS_PER_SCHEDULE,
        )
        return {"status": "Accepted", "schedule": schedule.to_ocpp_json(self._outbox.version)}

    @staticmethod
    def _default_limit(rating: EvseRating, unit: RateUnit) -> float:
        """What the EVSE can do where no profile limits (its rating, in ``unit``)."""
        return rating.max_current_a if unit is RateUnit.A else rating.rated_power_w

    # --------------------------------------------------------------- persistence
    def _persist(self) -> None:
        self._outbox.emit(StoreState("charging_profiles", {"profiles": self._store.to_json()}))
        self._update_entries()

    def _update_entries(self) -> None:
        self._outbox.update(SMART_CHARGING, ENTRIES, str(len(self._store)))


def _describe(limit: ChargingLimit) -> str:
    parts = []
    if limit.current_a is not None:
        parts.append(f"{limit.current_a:g} A")
    if limit.power_w is not None:
        parts.append(f"{limit.power_w:g} W")
    if limit.discharge_power_w is not None:
        parts.append(f"discharge {limit.discharge_power_w:g} W")
    return ", ".join(parts) or "none (no profile applies)"
