"""Composite charging schedule (OCPP 2.0.1 / 2.1 use case K08) and the limit in force now.

Theory of operation
-------------------
Every installed profile that concerns the EVSE is turned, for the window asked
for, into *pieces*: ``(start, end, value)`` in absolute epoch seconds, one per
schedule period and occurrence, clipped to the window and to the profile's
validFrom/validTo, the value already converted to the requested unit.  Profiles
are sorted into *sources*, each an ordered list (first covering profile wins):

* ``ChargingStationMaxProfile`` (evse 0), highest stackLevel first;
* ``ChargingStationExternalConstraints`` on evse 0, and separately on the EVSE;
* the transaction level (EVSE > 0 only): ``PriorityCharging`` (2.1, only when
  priority charging is active), then the transaction's ``TxProfile``\\s, then the
  ``TxDefaultProfile``\\s of the EVSE and of evse 0 -- so a TxProfile that covers
  the instant overrules every TxDefaultProfile, and a lower stack level applies
  where a higher one does not cover;
* ``LocalGeneration`` (2.1) on the EVSE and on evse 0, which *adds* to the result.

One sweep over the sorted piece boundaries keeps, per profile, the piece in force
and, per source, the winner; at each boundary the composite is the minimum of the
capping sources plus the local generation.  The cost is O(pieces log pieces): no
per-second loop.  :func:`limit_at` is the same sweep over a window of one instant,
:func:`next_change_s` the earliest piece boundary after the instant.

Readings of the standard (where it leaves room)
-----------------------------------------------
* Only the first ``chargingSchedule`` of a profile is used (more than one exists
  only for ISO 15118 offers, K15.FR.22 / K18.FR.24).
* A source whose winning period has no ``limit`` (2.1 set-point-only periods) or no
  ``dischargeLimit`` says nothing about that quantity and does not limit it.
* evse-0 and EVSE-specific TxDefaultProfiles form one stack ordered by stackLevel:
  K01.FR.52/53 reject a TxDefaultProfile whose stackLevel is already used on evse 0
  resp. on an EVSE, which only matters if they compete in one stack.  Should two
  tie anyway, the EVSE-specific one wins, then the one listed first.
* ``LocalGeneration``: "If a charging profile of chargingProfilePurpose =
  LocalGeneration is active for the EVSE, then this capacity is added on top of the
  calculated composite schedule" (OCPP 2.1 Part 2 §3.6, Smart Charging).  It is
  added to the minimum of the other sources, never to the gap value; it does not
  change the discharge limit.
* ``PriorityCharging`` (2.1) replaces Tx/TxDefault only while priority charging is
  active and a PriorityCharging profile covers the instant.
* ``Dynamic`` (2.1) profiles are evaluated like Absolute ones (startSchedule as set
  by validation / the last UpdateDynamicSchedule).  An Absolute, Recurring or
  Dynamic schedule without a startSchedule covers nothing (validation requires one,
  K01.FR.40).
* evse 0 asks for the grid connection: only the station-level sources (Max,
  external constraints and local generation on evse 0) count; the sum of the
  EVSEs' transaction limits is not included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from chargepoint.ocpp.outbox import format_timestamp
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.power.arbitration import INF, PowerLimits
from chargepoint.smartcharging.model import (
    ChargingProfile,
    ChargingSchedule,
    Kind,
    Purpose,
    RateUnit,
)

__all__ = [
    "DEFAULT_MAX_PERIODS",
    "CompositePeriod",
    "CompositeSchedule",
    "Conversion",
    "Limit",
    "composite_schedule",
    "format_timestamp",
    "limit_at",
    "next_change_s",
    "to_power_limits",
]

#: Used when the caller does not pass ``max_periods`` (SmartChargingCtrlr.PeriodsPerSchedule).
DEFAULT_MAX_PERIODS = 1024


@dataclass(frozen=True, slots=True)
class Conversion:
    """How to convert between A and W: ``W = A * voltage_v * phases``.

    ``voltage_v`` is the nominal phase-to-neutral voltage on AC, the DC voltage on
    DC; ``default_phases`` is used for periods without numberPhases: 3 on AC ("If a
    number of phases is needed, numberPhases=3 will be assumed unless another
    number is given", ChargingSchedulePeriodType), 1 on DC (2.1: numberPhases
    "should be omitted" for DC).
    """

    voltage_v: float = 230.0
    default_phases: int = 3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.voltage_v) and self.voltage_v > 0.0):
            raise ValueError(f"voltage_v must be > 0, got {self.voltage_v!r}")
        if self.default_phases not in (1, 2, 3):
            raise ValueError(f"default_phases must be 1..3, got {self.default_phases!r}")

    def to_unit(
        self, value: float, from_unit: RateUnit, to_unit: RateUnit, phases: int | None = None
    ) -> float:
        """``value`` given in ``from_unit`` with ``phases`` phases, in ``to_unit``."""
        if from_unit is to_unit:
            return value
        watts_per_amp = self.voltage_v * (phases or self.default_phases)
        if to_unit is RateUnit.W:
            return value * watts_per_amp
        return value / watts_per_amp


@dataclass(frozen=True, slots=True)
class Limit:
    """What the profiles allow at one instant, in the unit asked for.

    ``limit`` ``None``: no profile limits charging; ``discharge_limit`` is a
    magnitude, ``None``: no profile limits discharging.
    """

    limit: float | None
    number_phases: int | None = None
    discharge_limit: float | None = None


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """One period of a composite schedule, ``start_s`` relative to the schedule start.

    ``limit`` is ``None`` only in a gap when no ``default_limit`` was given.
    """

    start_s: int
    limit: float | None
    number_phases: int | None = None
    discharge_limit: float | None = None


def _floor_tenth(value: float) -> float:
    """Down to one decimal ("Accepts at most one digit fraction", 2.0.1 limit): never more."""
    return math.floor(value * 10.0 + 1e-6) / 10.0


@dataclass(frozen=True, slots=True)
class CompositeSchedule:
    """CompositeScheduleType: consecutive equal periods merged, the first at 0.

    ``truncated``: there were more periods than ``max_periods``; ``duration_s`` was
    cut to the start of the first period left out.
    """

    evse_id: int
    start_s: float
    duration_s: int
    unit: RateUnit
    periods: tuple[CompositePeriod, ...]
    truncated: bool = False

    def period_at(self, offset_s: float) -> CompositePeriod:
        """The period in force ``offset_s`` seconds after the start (clamped to the first)."""
        found = self.periods[0]
        for period in self.periods:
            if period.start_s > offset_s:
                break
            found = period
        return found

    def to_ocpp_json(self, version: ProtocolVersion) -> dict[str, Any]:
        """``GetCompositeScheduleResponse.schedule`` (CompositeScheduleType) for ``version``.

        Limits are rounded *down* to one decimal, discharge magnitudes too (so the
        reported value is never looser).  2.0.1 has no discharge field (a negative
        ``limit`` would replace the charging limit), so discharge limits are only
        reported in 2.1 (``dischargeLimit`` <= 0).  2.0.1 requires ``limit`` in
        every period: a gap without ``default_limit`` raises :class:`ValueError`;
        2.1 leaves it out.
        """
        periods: list[dict[str, Any]] = []
        for period in self.periods:
            entry: dict[str, Any] = {"startPeriod": period.start_s}
            if period.limit is not None:
                entry["limit"] = _floor_tenth(period.limit)
            elif version is ProtocolVersion.V201:
                raise ValueError("OCPP 2.0.1 needs a limit in every period: pass default_limit")
            if period.number_phases is not None:
                entry["numberPhases"] = period.number_phases
            if version is ProtocolVersion.V21 and period.discharge_limit is not None:
                # OCPP 2.1 ChargingSchedulePeriodType.dischargeLimit: "maximum": 0
                entry["dischargeLimit"] = -_floor_tenth(period.discharge_limit) + 0.0
            periods.append(entry)
        return {
            "evseId": self.evse_id,
            "duration": self.duration_s,
            "scheduleStart": format_timestamp(self.start_s),
            "chargingRateUnit": self.unit.value,
            "chargingSchedulePeriod": periods,
        }


# --------------------------------------------------------------------------- internals

#: (limit, discharge magnitude, numberPhases) of one period, limits in the requested unit
_Value = tuple[float | None, float | None, int | None]
#: (absolute start, absolute end, value); end may be ``inf``
_Piece = tuple[float, float, _Value]


@dataclass(frozen=True, slots=True)
class _Source:
    """Profiles in precedence order: the first one covering an instant is the source's value."""

    members: tuple[ChargingProfile, ...]
    adds: bool = False


def _ordered(profiles: Iterable[ChargingProfile], evse_id: int) -> tuple[ChargingProfile, ...]:
    # OCPP 2.0.1 K01 / §3 Smart Charging: within a purpose the higher stackLevel
    # overrules the lower; equal levels (rejected by K01.FR.52/53 and K01.FR.06):
    # the EVSE-specific one first, then the order given (stable sort).
    return tuple(sorted(profiles, key=lambda p: (-p.stack_level, p.evse_id != evse_id)))


def _sources(
    profiles: Sequence[ChargingProfile],
    evse_id: int,
    transaction_id: str | None,
    priority_charging: bool,
) -> list[_Source]:
    """The sources that limit ``evse_id``, in the order the sweep combines them."""
    by: dict[str, list[ChargingProfile]] = {}
    station_or_evse = (0, evse_id)
    for p in profiles:
        if not p.schedules:
            continue
        purpose, on = p.purpose, p.evse_id
        key = ""
        if purpose is Purpose.CHARGING_STATION_MAX_PROFILE:
            # K01.FR.03: a ChargingStationMaxProfile is only installed on evse 0
            key = "max" if on == 0 else ""
        elif purpose is Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS:
            key = "ext0" if on == 0 else ("ext" if on == evse_id else "")
        elif evse_id == 0:
            # K08: evseId 0 is the grid connection: only station-level purposes
            key = "lg" if purpose is Purpose.LOCAL_GENERATION and on == 0 else ""
        elif purpose is Purpose.TX_PROFILE:
            # K01.FR.03/.16: a TxProfile belongs to one transaction on one EVSE
            match = transaction_id is not None and p.transaction_id == transaction_id
            key = "tx" if match and on == evse_id else ""
        elif purpose is Purpose.TX_DEFAULT_PROFILE:
            # TxDefaultProfile on evse 0 applies to every EVSE (SetChargingProfileRequest.evseId)
            key = "txdefault" if on in station_or_evse else ""
        elif purpose is Purpose.PRIORITY_CHARGING:
            key = "priority" if priority_charging and on in station_or_evse else ""
        elif purpose is Purpose.LOCAL_GENERATION:
            key = "lg" if on in station_or_evse else ""
        if key:
            by.setdefault(key, []).append(p)

    sources: list[_Source] = []
    for key in ("max", "ext0", "ext"):
        if key in by:
            sources.append(_Source(_ordered(by[key], evse_id)))
    # Transaction level: 2.1 PriorityCharging replaces Tx/TxDefault while active;
    # 2.0.1 §3 "TxProfile overrules TxDefaultProfile" for its transaction.
    tx_level = (
        _ordered(by.get("priority", ()), evse_id)
        + _ordered(by.get("tx", ()), evse_id)
        + _ordered(by.get("txdefault", ()), evse_id)
    )
    if tx_level:
        sources.append(_Source(tx_level))
    if "lg" in by:
        sources.append(_Source(_ordered(by["lg"], evse_id), adds=True))
    return sources


def _values(schedule: ChargingSchedule, unit: RateUnit, conversion: Conversion) -> list[_Value]:
    values: list[_Value] = []
    to_unit = conversion.to_unit
    rate_unit = schedule.rate_unit
    for period in schedule.periods:
        phases = period.number_phases
        limit = period.limit
        discharge = period.discharge_limit
        values.append(
            (
                None if limit is None else to_unit(limit, rate_unit, unit, phases),
                None if discharge is None else to_unit(discharge, rate_unit, unit, phases),
                phases,
            )
        )
    return values


def _occurrences(
    profile: ChargingProfile, schedule: ChargingSchedule, anchor_s: float, lo: float, hi: float
) -> list[tuple[float, float]]:
    """Absolute (start, end) of each run of the schedule that may overlap [lo, hi)."""
    duration = math.inf if schedule.duration_s is None else float(schedule.duration_s)
    if profile.kind is Kind.RELATIVE:
        # Relative: the schedule starts with the transaction (2.0.1 ChargingProfileKindEnumType)
        return [(anchor_s, anchor_s + duration)]
    start = schedule.start_s
    if start is None:
        return []
    if profile.kind is not Kind.RECURRING or profile.recurrency is None:
        return [(start, start + duration)]
    # Recurring: repeats every day/week from startSchedule; a run never outlasts its
    # recurrence period, and there is no run before the first startSchedule.
    period = profile.recurrency.period_s
    duration = min(duration, float(period))
    k = max(0, math.floor((lo - start) / period))
    runs: list[tuple[float, float]] = []
    begin = start + k * period
    while begin < hi:
        runs.append((begin, begin + duration))
        k += 1
        begin = start + k * period
    return runs


def _pieces(
    profile: ChargingProfile,
    values: Sequence[_Value],
    anchor_s: float,
    lo: float,
    hi: float,
) -> list[_Piece]:
    """The profile's periods inside [lo, hi) and its validity, sorted and disjoint."""
    # 2.0.1 ChargingProfileType.validFrom/validTo: outside them the profile does not apply
    if profile.valid_from_s is not None and profile.valid_from_s > lo:
        lo = profile.valid_from_s
    if profile.valid_to_s is not None and profile.valid_to_s < hi:
        hi = profile.valid_to_s
    if lo >= hi:
        return []
    schedule = profile.schedules[0]
    starts = [p.start_s for p in schedule.periods]
    n = len(starts)
    pieces: list[_Piece] = []
    for run_start, run_end in _occurrences(profile, schedule, anchor_s, lo, hi):
        if run_end <= lo:
            continue
        if run_start >= hi:
            break
        for i in range(n):
            begin = run_start + starts[i]
            if begin >= run_end or begin >= hi:
                break
            # startPeriod also defines the stop time of the previous period
            end = run_start + starts[i + 1] if i + 1 < n else run_end
            end = min(end, run_end, hi)
            if end <= lo:
                continue
            pieces.append((max(begin, lo), end, values[i]))
    return pieces


#: (charge limit, discharge magnitude, phases) of the composite at one instant
_State = tuple[float | None, float | None, int | None]


def _sweep(
    sources: Sequence[_Source],
    pieces_of: Sequence[Sequence[list[_Piece]]],
    lo: float,
    hi: float,
) -> list[tuple[float, _State]]:
    """The composite at ``lo`` and at every instant in (lo, hi) where it changes."""
    events: list[tuple[float, int, _Value | None]] = []
    first_slot: list[int] = []
    slot = 0
    for member_pieces in pieces_of:
        first_slot.append(slot)
        for pieces in member_pieces:
            previous_end = -math.inf
            for begin, end, value in pieces:
                if previous_end != begin and previous_end > -math.inf:
                    events.append((previous_end, slot, None))
                events.append((begin, slot, value))
                previous_end = end
            if -math.inf < previous_end < hi:
                events.append((previous_end, slot, None))
            slot += 1
    first_slot.append(slot)
    events.sort(key=itemgetter(0))

    current: list[_Value | None] = [None] * slot
    source_of = [0] * slot
    for s in range(len(sources)):
        for member in range(first_slot[s], first_slot[s + 1]):
            source_of[member] = s
    winner: list[_Value | None] = [None] * len(sources)
    adds = [source.adds for source in sources]
    dirty: set[int] = set()

    out: list[tuple[float, _State]] = []
    n_events = len(events)
    i = 0
    instant = lo
    while True:
        while i < n_events and events[i][0] <= instant:
            _, member, new = events[i]
            current[member] = new
            dirty.add(source_of[member])
            i += 1
        for s in dirty:
            found: _Value | None = None
            for member in range(first_slot[s], first_slot[s + 1]):
                found = current[member]
                if found is not None:
                    break
            winner[s] = found
        dirty.clear()

        charge: float | None = None
        discharge: float | None = None
        phases: int | None = None
        extra = 0.0
        for s, won in enumerate(winner):
            if won is None:
                continue
            limit, dis, ph = won
            if adds[s]:
                extra += limit or 0.0
            elif limit is not None and (charge is None or limit < charge):
                charge = limit
            if not adds[s] and dis is not None and (discharge is None or dis < discharge):
                discharge = dis
            # 2.1 K01.FR.140: the lowest numberPhases of all applicable periods
            if ph is not None and (phases is None or ph < phases):
                phases = ph
        if charge is not None and extra:
            charge += extra
        state = (charge, discharge, phases)
        if not out or out[-1][1] != state:
            out.append((instant, state))
        if i >= n_events:
            break
        instant = events[i][0]
        if instant >= hi:
            break
    return out


def _compute(
    profiles: Sequence[ChargingProfile],
    evse_id: int,
    lo: float,
    hi: float,
    *,
    unit: RateUnit,
    conversion: Conversion,
    anchor_s: float,
    transaction_id: str | None,
    priority_charging: bool,
) -> list[tuple[float, _State]]:
    sources = _sources(profiles, evse_id, transaction_id, priority_charging)
    pieces_of = [
        [
            _pieces(p, _values(p.schedules[0], unit, conversion), anchor_s, lo, hi)
            for p in source.members
        ]
        for source in sources
    ]
    return _sweep(sources, pieces_of, lo, hi)


# --------------------------------------------------------------------------- public API


def composite_schedule(
    profiles: Sequence[ChargingProfile],
    evse_id: int,
    start_s: float,
    duration_s: int,
    unit: RateUnit,
    *,
    conversion: Conversion,
    tx_start_s: float | None = None,
    transaction_id: str | None = None,
    default_limit: float | None = None,
    max_periods: int = DEFAULT_MAX_PERIODS,
    priority_charging: bool = False,
) -> CompositeSchedule:
    """The composite schedule of ``evse_id`` over [start_s, start_s + duration_s).

    OCPP 2.0.1 K08.FR.02: the station calculates the schedule from the time of the
    request up to ``duration``; K08.FR.04 (2.1 wording): it combines the profiles of
    every purpose as in §3 Smart Charging.  Periods start at whole seconds (offsets
    rounded to the nearest second; of two boundaries in the same second the later
    one's value is kept).  ``default_limit`` (in ``unit``; the EVSE's own maximum is
    a good choice) fills gaps where no profile limits charging, since 2.0.1 requires
    a limit in every period.  ``tx_start_s`` anchors Relative profiles (``None``: at
    ``start_s``); TxProfiles apply only to ``transaction_id``.
    """
    if duration_s < 1:
        raise ValueError(f"duration_s must be >= 1, got {duration_s!r}")
    if max_periods < 1:
        raise ValueError(f"max_periods must be >= 1, got {max_periods!r}")
    anchor = start_s if tx_start_s is None else tx_start_s
    changes = _compute(
        profiles,
        evse_id,
        start_s,
        start_s + duration_s,
        unit=unit,
        conversion=conversion,
        anchor_s=anchor,
        transaction_id=transaction_id,
        priority_charging=priority_charging,
    )
    periods: list[CompositePeriod] = []
    for instant, (charge, discharge, phases) in changes:
        offset = math.floor(instant - start_s + 0.5)
        if offset >= duration_s:
            break
        limit = default_limit if charge is None else charge
        period = CompositePeriod(offset, limit, phases, discharge)
        if periods and periods[-1].start_s == offset:
            periods.pop()
        if periods and _same(periods[-1], period):
            continue
        periods.append(period)
    truncated = len(periods) > max_periods
    duration = duration_s
    if truncated:
        duration = periods[max_periods].start_s
        periods = periods[:max_periods]
    return CompositeSchedule(evse_id, start_s, duration, unit, tuple(periods), truncated)


def _same(a: CompositePeriod, b: CompositePeriod) -> bool:
    return (
        a.limit == b.limit
        and a.number_phases == b.number_phases
        and a.discharge_limit == b.discharge_limit
    )


def limit_at(
    profiles: Sequence[ChargingProfile],
    evse_id: int,
    instant_s: float,
    unit: RateUnit,
    *,
    conversion: Conversion,
    tx_start_s: float | None = None,
    transaction_id: str | None = None,
    priority_charging: bool = False,
) -> Limit | None:
    """The limit the profiles set at ``instant_s`` (``None``: they set none).

    The same computation as :func:`composite_schedule` (without gap filling),
    over a window of one instant.
    """
    anchor = instant_s if tx_start_s is None else tx_start_s
    changes = _compute(
        profiles,
        evse_id,
        instant_s,
        math.nextafter(instant_s, math.inf),
        unit=unit,
        conversion=conversion,
        anchor_s=anchor,
        transaction_id=transaction_id,
        priority_charging=priority_charging,
    )
    charge, discharge, phases = changes[0][1]
    if charge is None and discharge is None:
        return None
    return Limit(charge, phases, discharge)


def next_change_s(
    profiles: Sequence[ChargingProfile],
    evse_id: int,
    instant_s: float,
    *,
    tx_start_s: float | None = None,
    transaction_id: str | None = None,
    priority_charging: bool = False,
) -> float | None:
    """The first instant after ``instant_s`` when the composite limit may change.

    The earliest start or end, after ``instant_s``, of a period of any profile that
    concerns the EVSE (period boundaries, schedule ends, recurrences, validFrom /
    validTo); ``None`` if there is none.  The composite is constant until then; the
    caller evaluates :func:`limit_at` again at that instant (a "change" may leave
    the value as it was).
    """
    anchor = instant_s if tx_start_s is None else tx_start_s
    best = math.inf
    for source in _sources(profiles, evse_id, transaction_id, priority_charging):
        for profile in source.members:
            lo = instant_s
            hi = math.inf
            schedule = profile.schedules[0]
            if profile.kind is Kind.RECURRING and profile.recurrency is not None:
                # every run starts a period: one recurrence after the later of
                # now, validFrom and the first run holds the next boundary
                for edge in (profile.valid_from_s, schedule.start_s):
                    if edge is not None and edge > lo:
                        lo = edge
                hi = lo + profile.recurrency.period_s + 1.0
            # values do not matter for boundaries: any unit will do
            values = [(None, None, None)] * len(schedule.periods)
            for begin, end, _ in _pieces(profile, values, anchor, lo, hi):
                if instant_s < begin < best:
                    best = begin
                if instant_s < end < best and end < hi:
                    best = end
                if begin > best:
                    break
    # clip artefacts at ``lo`` are excluded by ``> instant_s`` unless lo > instant,
    # where lo is a real edge (validFrom or the first startSchedule)
    return None if best == math.inf else best


def to_power_limits(limit: Limit | None, unit: RateUnit) -> PowerLimits:
    """The ``csms`` source for :class:`chargepoint.power.arbitration.Arbiter`.

    ``A`` limits become current limits, ``W`` limits power limits; quantities the
    profiles do not limit stay unbounded.
    """
    if limit is None:
        return PowerLimits()
    charge = INF if limit.limit is None else max(0.0, limit.limit)
    discharge = INF if limit.discharge_limit is None else max(0.0, limit.discharge_limit)
    if unit is RateUnit.A:
        return PowerLimits(max_charge_current_a=charge, max_discharge_current_a=discharge)
    return PowerLimits(max_charge_power_w=charge, max_discharge_power_w=discharge)
