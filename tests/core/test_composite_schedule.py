"""Composite charging schedule (OCPP 2.0.1 / 2.1 K08) and the limit in force now.

Hand-written cases for each rule, then a property test that compares
``composite_schedule`` / ``limit_at`` / ``next_change_s`` with a brute-force
reference written here from the definitions (it shares nothing with
``composite.py`` but the model): every 60 s of the window, each profile's period
is looked up directly, the highest stack level per purpose wins, TxProfile over
TxDefaultProfile, and the minimum over purposes is taken after unit conversion.
All generated times are multiples of 60 s, so every boundary is on that grid.

The property test runs 300 examples by default (a few seconds); set
``COMPOSITE_EXAMPLES=5000`` (or more) in the environment for a long run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import ocpp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station import format_timestamp as station_format
from chargepoint.power.arbitration import INF
from chargepoint.smartcharging.composite import (
    CompositeSchedule,
    Conversion,
    Limit,
    composite_schedule,
    format_timestamp,
    limit_at,
    next_change_s,
    to_power_limits,
)
from chargepoint.smartcharging.model import (
    DAY_S,
    WEEK_S,
    ChargingProfile,
    ChargingSchedule,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)

#: Monday 2024-01-01T00:00:00Z: a midnight and the start of an ISO week
MONDAY = 1_704_067_200.0
HOUR = 3600
AC = Conversion(voltage_v=230.0, default_phases=3)
A, W = RateUnit.A, RateUnit.W
MAX = Purpose.CHARGING_STATION_MAX_PROFILE
EXT = Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS
TXD = Purpose.TX_DEFAULT_PROFILE
TX = Purpose.TX_PROFILE

_ids = iter(range(1, 1_000_000))


def profile(
    purpose: Purpose,
    periods: Sequence[tuple[int, float | None]] | Sequence[SchedulePeriod],
    *,
    stack: int = 0,
    evse: int = 1,
    kind: Kind = Kind.ABSOLUTE,
    start: float | None = MONDAY,
    duration: int | None = None,
    unit: RateUnit = A,
    recurrency: Recurrency | None = None,
    valid_from: float | None = None,
    valid_to: float | None = None,
    transaction_id: str | None = None,
    phases: int | None = None,
) -> ChargingProfile:
    built = tuple(
        p if isinstance(p, SchedulePeriod) else SchedulePeriod(p[0], p[1], phases) for p in periods
    )
    if kind is Kind.RELATIVE:
        start = None
    if kind is Kind.RECURRING and recurrency is None:
        recurrency = Recurrency.DAILY
    if purpose is TX and transaction_id is None:
        transaction_id = "tx-1"
    return ChargingProfile(
        id=next(_ids),
        stack_level=stack,
        purpose=purpose,
        kind=kind,
        schedules=(ChargingSchedule(1, unit, built, start, duration),),
        evse_id=evse,
        recurrency=recurrency,
        valid_from_s=valid_from,
        valid_to_s=valid_to,
        transaction_id=transaction_id,
    )


def limits(schedule: CompositeSchedule) -> list[tuple[int, float | None]]:
    return [(p.start_s, p.limit) for p in schedule.periods]


def compose(
    profiles: Sequence[ChargingProfile],
    start: float,
    duration: int,
    unit: RateUnit = A,
    evse: int = 1,
    **kwargs: object,
) -> CompositeSchedule:
    kwargs.setdefault("conversion", AC)
    kwargs.setdefault("transaction_id", "tx-1")
    return composite_schedule(profiles, evse, start, duration, unit, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rules


def test_higher_stack_level_wins_where_it_covers_and_the_lower_one_applies_elsewhere() -> None:
    # OCPP 2.0.1 §3 stacking: stackLevel 1 (08:00-10:00, 10 A) over stackLevel 0 (16 A)
    base = profile(TXD, [(0, 16.0)], stack=0)
    peak = profile(TXD, [(0, 10.0)], stack=1, start=MONDAY + 8 * HOUR, duration=2 * HOUR)
    result = compose([peak, base], MONDAY + 7 * HOUR, 4 * HOUR)
    assert limits(result) == [(0, 16.0), (HOUR, 10.0), (3 * HOUR, 16.0)]
    assert not result.truncated and result.duration_s == 4 * HOUR


def test_stack_level_periods_and_duration_like_the_octt_stacking_case() -> None:
    # stackLevel 0: 6/8/10 A at 0/100/200 s for 400 s; stackLevel 1: 12/14 A for 150 s
    low = profile(TXD, [(0, 6.0), (100, 8.0), (200, 10.0)], stack=0, duration=400)
    high = profile(TXD, [(0, 12.0), (100, 14.0)], stack=1, duration=150)
    result = compose([low, high], MONDAY, 500, default_limit=32.0)
    assert limits(result) == [(0, 12.0), (100, 14.0), (150, 8.0), (200, 10.0), (400, 32.0)]


def test_tx_default_is_capped_by_the_station_maximum() -> None:
    # composite = min(ChargingStationMaxProfile, TxDefaultProfile), Max given in W (3 phases)
    station = profile(MAX, [(0, 16 * 230.0 * 3)], evse=0, unit=W)
    default = profile(TXD, [(0, 32.0), (2 * HOUR, 10.0)], evse=0)
    in_amps = compose([station, default], MONDAY, 4 * HOUR)
    assert limits(in_amps) == [(0, 16.0), (2 * HOUR, 10.0)]
    in_watts = compose([station, default], MONDAY, 4 * HOUR, unit=W)
    assert limits(in_watts) == [(0, 11_040.0), (2 * HOUR, 6_900.0)]


def test_a_gap_carries_the_default_limit_or_nothing() -> None:
    short = profile(TXD, [(0, 16.0)], duration=HOUR)
    filled = compose([short], MONDAY, 2 * HOUR, default_limit=32.0)
    assert limits(filled) == [(0, 16.0), (HOUR, 32.0)]
    open_gap = compose([short], MONDAY, 2 * HOUR)
    assert limits(open_gap) == [(0, 16.0), (HOUR, None)]
    with pytest.raises(ValueError, match="default_limit"):
        open_gap.to_ocpp_json(ProtocolVersion.V201)
    periods = open_gap.to_ocpp_json(ProtocolVersion.V21)["chargingSchedulePeriod"]
    assert periods == [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": HOUR}]
    assert limits(compose([], MONDAY, 60, default_limit=32.0)) == [(0, 32.0)]


def test_daily_recurrence_across_midnight() -> None:
    # every day 22:00-02:00 6 A over an all-day 32 A, first run two days ago
    night = profile(
        TXD,
        [(0, 6.0)],
        stack=1,
        kind=Kind.RECURRING,
        start=MONDAY - 2 * DAY_S - 2 * HOUR,
        duration=4 * HOUR,
    )
    base = profile(TXD, [(0, 32.0)], kind=Kind.RECURRING, start=MONDAY - 5 * DAY_S)
    result = compose([night, base], MONDAY - 3 * HOUR, 6 * HOUR)
    assert limits(result) == [(0, 32.0), (HOUR, 6.0), (5 * HOUR, 32.0)]


def test_recurring_run_without_duration_lasts_until_the_next_one() -> None:
    # daily from 06:00: 10 A until 12:00, then 20 A until the next day's 06:00
    daily = profile(
        TXD, [(0, 10.0), (6 * HOUR, 20.0)], kind=Kind.RECURRING, start=MONDAY + 6 * HOUR
    )
    result = compose([daily], MONDAY + DAY_S + 5 * HOUR, 8 * HOUR)
    assert limits(result) == [(0, 20.0), (HOUR, 10.0), (7 * HOUR, 20.0)]


def test_a_recurring_run_longer_than_its_period_is_cut_at_the_next_run() -> None:
    # daily from 00:00 for 25 h: 6 A for the first two hours of each run, then 10 A
    daily = profile(
        TXD, [(0, 6.0), (2 * HOUR, 10.0)], kind=Kind.RECURRING, start=MONDAY - DAY_S,
        duration=25 * HOUR,
    )  # fmt: skip
    result = compose([daily], MONDAY - HOUR, 4 * HOUR, default_limit=32.0)
    assert limits(result) == [(0, 10.0), (HOUR, 6.0), (3 * HOUR, 10.0)]


def test_a_recurring_profile_does_not_cover_the_time_before_its_first_start() -> None:
    daily = profile(TXD, [(0, 10.0)], kind=Kind.RECURRING, start=MONDAY + 2 * HOUR)
    result = compose([daily], MONDAY, 4 * HOUR, default_limit=32.0)
    assert limits(result) == [(0, 32.0), (2 * HOUR, 10.0)]


def test_weekly_recurrence_across_the_week_boundary() -> None:
    # every week Sunday 23:00 to Monday 01:00: 8 A; a weekly 16 A base from a Monday
    sunday_night = profile(
        TXD,
        [(0, 8.0), (HOUR, 9.0)],
        stack=2,
        kind=Kind.RECURRING,
        recurrency=Recurrency.WEEKLY,
        start=MONDAY - HOUR - 2 * WEEK_S,
        duration=2 * HOUR,
    )
    base = profile(
        TXD,
        [(0, 16.0), (3 * DAY_S, 12.0)],
        kind=Kind.RECURRING,
        recurrency=Recurrency.WEEKLY,
        start=MONDAY - 4 * WEEK_S,
    )
    # from Sunday 22:00 (Thursday's 12 A in force) to Monday 03:00
    result = compose([sunday_night, base], MONDAY - 2 * HOUR, 5 * HOUR)
    assert limits(result) == [(0, 12.0), (HOUR, 8.0), (2 * HOUR, 9.0), (3 * HOUR, 16.0)]


def test_relative_profiles_start_with_the_transaction() -> None:
    relative = profile(TX, [(0, 6.0), (600, 12.0)], kind=Kind.RELATIVE, duration=1800)
    # the transaction started 5 minutes before the request
    result = compose([relative], MONDAY, HOUR, tx_start_s=MONDAY - 300, default_limit=32.0)
    assert limits(result) == [(0, 6.0), (300, 12.0), (1500, 32.0)]
    # without a transaction the schedule starts with the request
    unanchored = compose([relative], MONDAY, HOUR, transaction_id=None, default_limit=32.0)
    assert limits(unanchored) == [(0, 32.0)]
    txd = profile(TXD, [(0, 6.0), (600, 12.0)], kind=Kind.RELATIVE, duration=1800)
    assert limits(compose([txd], MONDAY, HOUR, default_limit=32.0)) == [
        (0, 6.0),
        (600, 12.0),
        (1800, 32.0),
    ]


def test_tx_profile_overrules_tx_default_for_its_transaction_only() -> None:
    # 2.0.1 §3: TxProfile overrules TxDefaultProfile, whatever the stack levels
    default = profile(TXD, [(0, 10.0)], stack=5, evse=0)
    tx = profile(TX, [(0, 20.0)], stack=0, start=MONDAY + HOUR, duration=HOUR)
    other = profile(TX, [(0, 2.0)], stack=1, transaction_id="tx-2")
    result = compose([default, tx, other], MONDAY, 3 * HOUR)
    assert limits(result) == [(0, 10.0), (HOUR, 20.0), (2 * HOUR, 10.0)]
    no_tx = compose([default, tx, other], MONDAY, 3 * HOUR, transaction_id=None)
    assert limits(no_tx) == [(0, 10.0)]


def test_evse_specific_and_station_wide_tx_default_stack_by_level() -> None:
    station = profile(TXD, [(0, 10.0)], stack=1, evse=0, start=MONDAY + HOUR, duration=HOUR)
    evse = profile(TXD, [(0, 20.0)], stack=0, evse=1)
    other_evse = profile(TXD, [(0, 1.0)], stack=3, evse=2)
    result = compose([station, evse, other_evse], MONDAY, 3 * HOUR)
    assert limits(result) == [(0, 20.0), (HOUR, 10.0), (2 * HOUR, 20.0)]


def test_validity_limits_the_profile() -> None:
    bounded = profile(
        TXD, [(0, 10.0)], stack=1, valid_from=MONDAY + HOUR, valid_to=MONDAY + 2 * HOUR
    )
    base = profile(TXD, [(0, 16.0)])
    result = compose([bounded, base], MONDAY, 3 * HOUR)
    assert limits(result) == [(0, 16.0), (HOUR, 10.0), (2 * HOUR, 16.0)]


def test_external_constraints_on_the_station_and_on_the_evse_both_cap() -> None:
    station = profile(EXT, [(0, 20.0), (HOUR, 30.0)], evse=0)
    evse = profile(EXT, [(0, 25.0)], evse=1, start=MONDAY + 30 * 60)
    result = compose([station, evse], MONDAY, 2 * HOUR, default_limit=32.0)
    assert limits(result) == [(0, 20.0), (HOUR, 25.0)]


def test_evse_zero_counts_only_station_level_purposes() -> None:
    station = profile(MAX, [(0, 40.0)], evse=0)
    external = profile(EXT, [(0, 30.0)], evse=0, start=MONDAY + HOUR)
    default = profile(TXD, [(0, 10.0)], evse=0)
    evse_limit = profile(EXT, [(0, 5.0)], evse=1)
    result = compose([station, external, default, evse_limit], MONDAY, 2 * HOUR, evse=0)
    assert result.evse_id == 0
    assert limits(result) == [(0, 40.0), (HOUR, 30.0)]


def test_units_are_converted_per_period_with_its_own_phases() -> None:
    one_phase = profile(MAX, [(0, 3680.0)], evse=0, unit=W, phases=1)
    result = compose([one_phase], MONDAY, 60)
    assert result.periods[0].limit == pytest.approx(16.0)
    # K01.FR.140 (2.1): the lowest numberPhases of the applicable periods
    assert result.periods[0].number_phases == 1
    three = profile(TXD, [(0, 32.0)], phases=3)
    mixed = compose([one_phase, three], MONDAY, 60, unit=W)
    assert limits(mixed) == [(0, 3680.0)]
    assert mixed.periods[0].number_phases == 1
    dc = Conversion(voltage_v=400.0, default_phases=1)
    assert compose([profile(TXD, [(0, 100.0)])], MONDAY, 60, unit=W, conversion=dc).periods[
        0
    ].limit == pytest.approx(40_000.0)
    assert AC.to_unit(11_040.0, W, A) == pytest.approx(16.0)
    assert AC.to_unit(16.0, A, W, 1) == pytest.approx(3680.0)
    with pytest.raises(ValueError):
        Conversion(voltage_v=0.0)


def test_discharge_limits_take_the_smallest_magnitude_and_silence_does_not_limit() -> None:
    station = profile(MAX, [SchedulePeriod(0, 11_000.0, discharge_limit=7000.0)], evse=0, unit=W)
    tx = profile(
        TX,
        [
            SchedulePeriod(0, 5000.0, discharge_limit=3000.0),
            SchedulePeriod(600, 5000.0),
        ],
        unit=W,
    )
    result = compose([station, tx], MONDAY, 1200, unit=W)
    assert [(p.start_s, p.limit, p.discharge_limit) for p in result.periods] == [
        (0, 5000.0, 3000.0),
        (600, 5000.0, 7000.0),
    ]
    doc = result.to_ocpp_json(ProtocolVersion.V21)
    assert [p["dischargeLimit"] for p in doc["chargingSchedulePeriod"]] == [-3000.0, -7000.0]
    assert all(
        "dischargeLimit" not in p
        for p in result.to_ocpp_json(ProtocolVersion.V201)["chargingSchedulePeriod"]
    )


def test_a_set_point_only_period_wins_its_stack_but_limits_nothing() -> None:
    setpoint = profile(TX, [SchedulePeriod(0, None, setpoint=-2000.0)], stack=1)
    default = profile(TXD, [(0, 10.0)])
    assert limits(compose([setpoint, default], MONDAY, 60, default_limit=32.0)) == [(0, 32.0)]


def test_local_generation_adds_on_top_of_the_composite() -> None:
    # OCPP 2.1 §3.6: LocalGeneration capacity "is added on top of the calculated
    # composite schedule"
    station = profile(MAX, [(0, 5000.0)], evse=0, unit=W)
    default = profile(TXD, [(0, 16.0)], evse=0)
    solar = profile(
        Purpose.LOCAL_GENERATION, [(0, 2000.0), (HOUR, 0.0)], evse=0, unit=W, duration=2 * HOUR
    )
    result = compose([station, default, solar], MONDAY, 3 * HOUR, unit=W, default_limit=22_000.0)
    assert limits(result) == [(0, 7000.0), (HOUR, 5000.0)]
    grid = compose([station, default, solar], MONDAY, 3 * HOUR, unit=W, evse=0)
    assert limits(grid) == [(0, 7000.0), (HOUR, 5000.0)]
    # nothing to add to: the gap keeps the default
    alone = compose([solar], MONDAY, 60, unit=W, default_limit=22_000.0)
    assert limits(alone) == [(0, 22_000.0)]


def test_priority_charging_replaces_tx_limits_only_when_active() -> None:
    station = profile(MAX, [(0, 32.0)], evse=0)
    tx = profile(TX, [(0, 6.0)])
    priority = profile(Purpose.PRIORITY_CHARGING, [(0, 24.0)], duration=HOUR)
    both = [station, tx, priority]
    assert limits(compose(both, MONDAY, 2 * HOUR)) == [(0, 6.0)]
    active = compose(both, MONDAY, 2 * HOUR, priority_charging=True)
    assert limits(active) == [(0, 24.0), (HOUR, 6.0)]


def test_equal_consecutive_periods_are_merged_and_max_periods_truncates() -> None:
    steps = profile(TXD, [(i * 60, float(6 + i % 3)) for i in range(30)])
    result = compose([steps], MONDAY, 1800, max_periods=10)
    assert result.truncated and len(result.periods) == 10
    assert result.duration_s == 600
    same = profile(TXD, [(0, 10.0), (60, 10.0), (120, 12.0)])
    assert limits(compose([same], MONDAY, 300)) == [(0, 10.0), (120, 12.0)]
    # a gap filled with a default equal to the limit before it is the same period
    short = profile(TXD, [(0, 32.0)], duration=HOUR)
    assert limits(compose([short], MONDAY, 2 * HOUR, default_limit=32.0)) == [(0, 32.0)]


def test_fractional_start_rounds_boundaries_to_whole_seconds() -> None:
    steps = profile(TXD, [(0, 10.0), (100, 12.0)])
    result = compose([steps], MONDAY + 0.4, 300)
    assert limits(result) == [(0, 10.0), (100, 12.0)]
    result = compose([steps], MONDAY + 0.6, 300)
    assert limits(result) == [(0, 10.0), (99, 12.0)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        compose([], MONDAY, 0)
    with pytest.raises(ValueError):
        compose([], MONDAY, 60, max_periods=0)


# --------------------------------------------------------------------------- OCPP JSON


def _schema(version: str) -> dict[str, object]:
    path = Path(ocpp.__file__).parent / version / "schemas" / "GetCompositeScheduleResponse.json"
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


@pytest.mark.parametrize(
    ("version", "folder"), [(ProtocolVersion.V201, "v201"), (ProtocolVersion.V21, "v21")]
)
def test_json_matches_the_get_composite_schedule_response_schema(
    version: ProtocolVersion, folder: str
) -> None:
    station = profile(MAX, [SchedulePeriod(0, 11_000.0, 3, discharge_limit=4000.0)], evse=0, unit=W)
    tx = profile(TX, [(0, 15.94), (600, 32.0)], phases=1)
    result = compose([station, tx], MONDAY + 0.25, 1200, default_limit=32.0)
    doc = result.to_ocpp_json(version)
    schema = _schema(folder)
    jsonschema.validators.validator_for(schema)(schema).validate(
        {"status": "Accepted", "schedule": doc}
    )
    assert doc["evseId"] == 1 and doc["duration"] == 1200 and doc["chargingRateUnit"] == "A"
    assert doc["scheduleStart"] == "2024-01-01T00:00:00.250Z"
    first = doc["chargingSchedulePeriod"][0]
    # rounded down to one decimal, never up
    assert first["startPeriod"] == 0 and first["limit"] == 15.9 and first["numberPhases"] == 1


def test_timestamp_format_matches_the_station() -> None:
    for epoch in (MONDAY, MONDAY + 0.999, MONDAY + 12.3456, 0.0):
        assert format_timestamp(epoch) == station_format(epoch)


# --------------------------------------------------------------------------- limit now


def test_limit_at_and_next_change_follow_the_schedule() -> None:
    station = profile(MAX, [(0, 11_040.0)], evse=0, unit=W)
    default = profile(
        TXD, [(0, 32.0), (4 * HOUR, 10.0)], kind=Kind.RECURRING, start=MONDAY - DAY_S - HOUR
    )
    bounded = profile(TXD, [(0, 6.0)], stack=1, valid_from=MONDAY + 30 * 60, duration=DAY_S)
    profiles = [station, default, bounded]
    assert limit_at(profiles, 1, MONDAY, A, conversion=AC) == Limit(16.0, None, None)
    assert next_change_s(profiles, 1, MONDAY) == MONDAY + 30 * 60
    assert limit_at(profiles, 1, MONDAY + 30 * 60, A, conversion=AC) == Limit(6.0)
    assert next_change_s(profiles, 1, MONDAY + 30 * 60) == MONDAY + 3 * HOUR
    assert next_change_s(profiles, 1, MONDAY + 3 * HOUR) == MONDAY + 23 * HOUR
    assert limit_at(profiles, 1, MONDAY + DAY_S, A, conversion=AC) == Limit(16.0)
    assert limit_at([], 1, MONDAY, A, conversion=AC) is None
    assert next_change_s([], 1, MONDAY) is None
    assert next_change_s([profile(TXD, [(0, 6.0)])], 1, MONDAY + HOUR) is None


def test_next_change_finds_a_recurring_profile_starting_later() -> None:
    later = profile(TXD, [(0, 6.0)], kind=Kind.RECURRING, recurrency=Recurrency.WEEKLY,
                    start=MONDAY + 3 * WEEK_S + 60)  # fmt: skip
    assert next_change_s([later], 1, MONDAY) == MONDAY + 3 * WEEK_S + 60
    valid_later = profile(TXD, [(0, 6.0)], kind=Kind.RECURRING, start=MONDAY - DAY_S,
                          valid_from=MONDAY + 10 * DAY_S + 5)  # fmt: skip
    assert next_change_s([valid_later], 1, MONDAY) == MONDAY + 10 * DAY_S + 5


def test_power_limits_for_the_arbiter() -> None:
    amps = to_power_limits(Limit(16.0, 3, 10.0), A)
    assert amps.max_charge_current_a == 16.0 and amps.max_discharge_current_a == 10.0
    assert amps.max_charge_power_w == INF
    watts = to_power_limits(Limit(None, None, 3000.0), W)
    assert watts.max_charge_power_w == INF and watts.max_discharge_power_w == 3000.0
    assert to_power_limits(None, W).max_charge_power_w == INF


# --------------------------------------------------------------------------- reference

Value = tuple[float | None, float | None, int | None]


def ref_period(p: ChargingProfile, t: float, anchor: float) -> SchedulePeriod | None:
    """The period of ``p`` in force at ``t``, straight from the definitions."""
    if p.valid_from_s is not None and t < p.valid_from_s:
        return None
    if p.valid_to_s is not None and t >= p.valid_to_s:
        return None
    sch = p.schedules[0]
    length = math.inf if sch.duration_s is None else sch.duration_s
    if p.kind is Kind.RELATIVE:
        began = anchor
    elif p.kind is Kind.RECURRING:
        assert sch.start_s is not None and p.recurrency is not None
        every = DAY_S if p.recurrency is Recurrency.DAILY else WEEK_S
        if t < sch.start_s:
            return None
        began = sch.start_s + ((t - sch.start_s) // every) * every
        length = min(length, every)
    else:
        assert sch.start_s is not None
        began = sch.start_s
    elapsed = t - began
    if not 0 <= elapsed < length:
        return None
    found = None
    for per in sch.periods:
        if per.start_s <= elapsed:
            found = per
    return found


def ref_convert(value: float, given: RateUnit, wanted: RateUnit, phases: int | None) -> float:
    n = 3 if phases is None else phases
    if given == wanted:
        return value
    return value * 230.0 * n if wanted == W else value / (230.0 * n)


def ref_value(
    profiles: Sequence[ChargingProfile],
    evse: int,
    t: float,
    unit: RateUnit,
    anchor: float,
    transaction_id: str | None,
) -> Value:
    def top(candidates: list[ChargingProfile]) -> tuple[ChargingProfile, SchedulePeriod] | None:
        best: tuple[ChargingProfile, SchedulePeriod] | None = None
        for p in candidates:
            per = ref_period(p, t, anchor)
            if per is not None and (best is None or p.stack_level > best[0].stack_level):
                best = (p, per)
        return best

    def of(purpose: Purpose, evses: tuple[int, ...]) -> list[ChargingProfile]:
        return [p for p in profiles if p.purpose == purpose and p.evse_id in evses]

    winners = [top(of(MAX, (0,))), top(of(EXT, (0,)))]
    if evse != 0:
        winners.append(top(of(EXT, (evse,))))
        txs = [p for p in of(TX, (evse,)) if transaction_id and p.transaction_id == transaction_id]
        winners.append(top(txs) or top(of(TXD, (0, evse))))
    charge: list[float] = []
    discharge: list[float] = []
    phases: list[int] = []
    for won in winners:
        if won is None:
            continue
        p, per = won
        u = p.schedules[0].rate_unit
        if per.limit is not None:
            charge.append(ref_convert(per.limit, u, unit, per.number_phases))
        if per.discharge_limit is not None:
            discharge.append(ref_convert(per.discharge_limit, u, unit, per.number_phases))
        if per.number_phases is not None:
            phases.append(per.number_phases)
    return (
        min(charge) if charge else None,
        min(discharge) if discharge else None,
        min(phases) if phases else None,
    )


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def same(a: Value, b: Value) -> bool:
    return close(a[0], b[0]) and close(a[1], b[1]) and a[2] == b[2]


# --------------------------------------------------------------------------- generators

BASES = (MONDAY, MONDAY + 3 * DAY_S)  # a week boundary and a plain midnight
POOLS = ("max", "ext0", "ext1", "txd0", "txd1", "tx", "tx_other")


def minutes(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi).map(lambda m: 60 * m)


@st.composite
def periods_of(draw: st.DrawFn, unit: RateUnit) -> tuple[SchedulePeriod, ...]:
    count = draw(st.integers(1, 5))
    offsets = sorted(draw(st.sets(minutes(1, 240), min_size=count - 1, max_size=count - 1)))
    out = []
    for start in [0, *offsets]:
        if unit == A:
            limit: float | None = float(draw(st.integers(0, 64)))
        else:
            limit = 500.0 * draw(st.integers(0, 44))
        if draw(st.integers(0, 9)) == 0:
            limit = None
        discharge = draw(st.one_of(st.none(), st.sampled_from([0.0, 1000.0, 16.0, 4600.0])))
        phases = draw(st.sampled_from([1, 3, None]))
        out.append(SchedulePeriod(start, limit, phases, discharge_limit=discharge))
    return tuple(out)


@dataclass(frozen=True)
class Scenario:
    profiles: tuple[ChargingProfile, ...]
    evse: int
    unit: RateUnit
    start: float
    duration: int
    tx_start: float | None
    transaction_id: str | None
    default_limit: float | None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    base = draw(st.sampled_from(BASES))
    stacks = {pool: iter(draw(st.permutations(range(8)))) for pool in POOLS}
    profiles = []
    for n in range(draw(st.integers(1, 8))):
        pool = draw(st.sampled_from(POOLS))
        purpose, evse = {
            "max": (MAX, 0),
            "ext0": (EXT, 0),
            "ext1": (EXT, 1),
            "txd0": (TXD, 0),
            "txd1": (TXD, 1),
            "tx": (TX, 1),
            "tx_other": (TX, 1),
        }[pool]
        kinds = ["abs", "daily", "weekly"] + ([] if purpose == MAX else ["rel"])
        kind = draw(st.sampled_from(kinds))
        unit = draw(st.sampled_from([A, W]))
        if kind == "abs":
            start: float | None = base + draw(minutes(-600, 600))
        elif kind == "daily":
            start = base + draw(minutes(-240, 240)) - DAY_S * draw(st.integers(0, 3))
        elif kind == "weekly":
            start = base + draw(minutes(-240, 240)) - WEEK_S * draw(st.integers(0, 2))
        else:
            start = None
        # recurring runs longer than their period must be cut at the next run
        longer = st.sampled_from([DAY_S - 60, DAY_S, DAY_S + HOUR, WEEK_S, WEEK_S + HOUR])
        durations = [st.none(), minutes(1, 300), longer]
        if kind in ("daily", "weekly"):
            durations.append(longer)
        duration = draw(st.one_of(durations))
        valid_from = draw(st.one_of(st.none(), minutes(-300, 300).map(lambda m: base + m)))
        valid_to = draw(st.one_of(st.none(), minutes(-300, 300).map(lambda m: base + m)))
        profiles.append(
            ChargingProfile(
                id=n + 1,
                stack_level=next(stacks["txd0" if pool == "txd1" else pool]),
                purpose=purpose,
                kind={
                    "abs": Kind.ABSOLUTE,
                    "daily": Kind.RECURRING,
                    "weekly": Kind.RECURRING,
                    "rel": Kind.RELATIVE,
                }[kind],
                schedules=(ChargingSchedule(n, unit, draw(periods_of(unit)), start, duration),),
                evse_id=evse,
                recurrency={"daily": Recurrency.DAILY, "weekly": Recurrency.WEEKLY}.get(kind),
                valid_from_s=valid_from,
                valid_to_s=valid_to,
                transaction_id={"tx": "tx-1", "tx_other": "tx-2"}.get(pool),
            )
        )
    return Scenario(
        profiles=tuple(profiles),
        evse=draw(st.sampled_from([0, 1])),
        unit=draw(st.sampled_from([A, W])),
        start=base + draw(minutes(-180, 180)),
        duration=draw(minutes(1, 180)),
        tx_start=draw(st.one_of(st.none(), minutes(-300, 300).map(lambda m: base + m))),
        transaction_id=draw(st.sampled_from(["tx-1", None])),
        default_limit=draw(st.sampled_from([None, 32.0, 22_000.0])),
    )


EXAMPLES = int(os.environ.get("COMPOSITE_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenarios())
def test_composite_matches_a_brute_force_reference(case: Scenario) -> None:
    profiles, evse, unit, start = case.profiles, case.evse, case.unit, case.start
    duration, tx_start, transaction_id = case.duration, case.tx_start, case.transaction_id
    default = case.default_limit

    result = composite_schedule(
        profiles,
        evse,
        start,
        duration,
        unit,
        conversion=AC,
        tx_start_s=tx_start,
        transaction_id=transaction_id,
        default_limit=default,
    )
    assert not result.truncated and result.duration_s == duration
    assert result.periods[0].start_s == 0
    starts = [p.start_s for p in result.periods]
    assert starts == sorted(set(starts)) and all(s % 60 == 0 for s in starts)
    # limit_at / next_change_s anchor Relative profiles at the instant asked about
    # when there is no transaction: they are given the schedule's anchor here
    anchor = start if tx_start is None else tx_start

    previous: Value | None = None
    for offset in range(0, duration, 60):
        t = start + offset
        expected = ref_value(profiles, evse, t, unit, anchor, transaction_id)
        period = result.period_at(offset)
        filled = expected[0] if expected[0] is not None else default
        got = (period.limit, period.discharge_limit, period.number_phases)
        assert same(got, (filled, expected[1], expected[2])), (offset, got, expected)
        # a period starts exactly where the reference changes (merged otherwise)
        if offset in starts and offset:
            assert previous is not None and not same(previous, (filled, *expected[1:]))
        previous = (filled, expected[1], expected[2])
        if offset in starts or offset % 600 == 0:
            now = limit_at(
                profiles, evse, t, unit, conversion=AC, tx_start_s=anchor,
                transaction_id=transaction_id,
            )  # fmt: skip
            if expected[0] is None and expected[1] is None:
                assert now is None
            else:
                assert now is not None
                assert same((now.limit, now.discharge_limit, now.number_phases), expected)

    # nothing changes before next_change_s (which is a real boundary, on the grid)
    change = next_change_s(profiles, evse, start, tx_start_s=anchor, transaction_id=transaction_id)
    first = ref_value(profiles, evse, start, unit, anchor, transaction_id)
    end = start + duration if change is None else min(change, start + duration)
    if change is not None:
        assert change > start and (change - start) % 60 == 0
    for t in range(int(start), int(end), 60):
        assert same(ref_value(profiles, evse, t, unit, anchor, transaction_id), first)
