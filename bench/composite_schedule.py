#!/usr/bin/env python3
"""Composite schedule (OCPP K08) cost: 20 profiles x 24 periods over a 24 h window.

    python bench/composite_schedule.py [--runs 200]

The profiles mix every purpose that limits an EVSE (ChargingStationMaxProfile,
external constraints on evse 0 and on the EVSE, TxDefaultProfiles on evse 0 and on
the EVSE, TxProfiles of the running transaction, one of them Relative), stack
levels 0..6, Absolute, daily and weekly Recurring kinds, both units, 1 and 3
phases, validity limits.  Every profile has all 24 periods inside the window and
their boundaries are staggered (1 h and 55 min steps, minute offsets), so the
computation sees 480 profile periods; the minimum over the sources hides most of
them (66 composite periods).  Prints the median time of one ``composite_schedule``
call, of one ``limit_at`` and of one ``next_change_s``, in ms, with the target
(1 ms for the schedule) and the ratio target / measured.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargepoint.smartcharging.composite import (
    CompositeSchedule,
    Conversion,
    Limit,
    composite_schedule,
    limit_at,
    next_change_s,
)
from chargepoint.smartcharging.model import (
    DAY_S,
    ChargingProfile,
    ChargingSchedule,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)

#: Monday 2024-01-01T00:00:00Z
MIDNIGHT = 1_704_067_200.0
TX_ID = "tx-1"
TARGET_MS = 1.0

# (purpose, evse, kind, recurrency, unit, stack level)
LAYOUT = [
    (Purpose.CHARGING_STATION_MAX_PROFILE, 0, Kind.RECURRING, Recurrency.DAILY, RateUnit.W, 0),
    (Purpose.CHARGING_STATION_MAX_PROFILE, 0, Kind.ABSOLUTE, None, RateUnit.W, 1),
    (Purpose.CHARGING_STATION_MAX_PROFILE, 0, Kind.RECURRING, Recurrency.WEEKLY, RateUnit.A, 2),
    (Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS, 0, Kind.ABSOLUTE, None, RateUnit.W, 0),
    (Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS, 0, Kind.RECURRING, Recurrency.DAILY,
     RateUnit.A, 1),
    (Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS, 1, Kind.ABSOLUTE, None, RateUnit.A, 0),
    (Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS, 1, Kind.RECURRING, Recurrency.DAILY,
     RateUnit.W, 1),
    (Purpose.TX_DEFAULT_PROFILE, 0, Kind.RECURRING, Recurrency.DAILY, RateUnit.A, 0),
    (Purpose.TX_DEFAULT_PROFILE, 0, Kind.RECURRING, Recurrency.WEEKLY, RateUnit.W, 2),
    (Purpose.TX_DEFAULT_PROFILE, 0, Kind.ABSOLUTE, None, RateUnit.A, 4),
    (Purpose.TX_DEFAULT_PROFILE, 1, Kind.RECURRING, Recurrency.DAILY, RateUnit.W, 1),
    (Purpose.TX_DEFAULT_PROFILE, 1, Kind.ABSOLUTE, None, RateUnit.A, 3),
    (Purpose.TX_DEFAULT_PROFILE, 1, Kind.RECURRING, Recurrency.WEEKLY, RateUnit.A, 5),
    (Purpose.TX_PROFILE, 1, Kind.ABSOLUTE, None, RateUnit.A, 0),
    (Purpose.TX_PROFILE, 1, Kind.RELATIVE, None, RateUnit.W, 1),
    (Purpose.TX_PROFILE, 1, Kind.ABSOLUTE, None, RateUnit.W, 2),
    (Purpose.TX_PROFILE, 1, Kind.RECURRING, Recurrency.DAILY, RateUnit.A, 3),
    (Purpose.TX_PROFILE, 1, Kind.ABSOLUTE, None, RateUnit.A, 4),
    (Purpose.TX_DEFAULT_PROFILE, 1, Kind.ABSOLUTE, None, RateUnit.W, 6),
    (Purpose.CHARGING_STATION_MAX_PROFILE, 0, Kind.ABSOLUTE, None, RateUnit.A, 3),
]  # fmt: skip


def profiles() -> list[ChargingProfile]:
    out = []
    for n, (purpose, evse, kind, recurrency, unit, stack) in enumerate(LAYOUT):
        step = 3600 if n % 2 == 0 else 3300  # staggered boundaries
        offset = 60 * (7 * n % 59)
        periods = tuple(
            SchedulePeriod(
                start_s=i * step,
                limit=(6 + (n + i) % 26) if unit is RateUnit.A else 4000.0 + 500 * ((n * i) % 19),
                number_phases=(1, 3, None)[(n + i) % 3],
                discharge_limit=None if (n + i) % 4 else 2000.0,
            )
            for i in range(24)
        )
        # every profile has its 24 periods inside the 24 h window (recurring ones
        # were first started days or weeks ago)
        if kind is Kind.RELATIVE:
            start = None
        elif kind is Kind.RECURRING and recurrency is Recurrency.WEEKLY:
            start = MIDNIGHT - 2 * 7 * DAY_S + offset
        elif kind is Kind.RECURRING:
            start = MIDNIGHT - 3 * DAY_S + offset
        else:
            start = MIDNIGHT + offset
        schedule = ChargingSchedule(
            id=n,
            rate_unit=unit,
            periods=periods,
            start_s=start,
            duration_s=None if n % 3 else 24 * step - 600,
        )
        out.append(
            ChargingProfile(
                id=n + 1,
                stack_level=stack,
                purpose=purpose,
                kind=kind,
                schedules=(schedule,),
                evse_id=evse,
                recurrency=recurrency,
                valid_from_s=MIDNIGHT - 30 * DAY_S if n % 5 else MIDNIGHT + 7200 + 60 * n,
                valid_to_s=None if n % 7 else MIDNIGHT + 23 * 3600 + 60 * n,
                transaction_id=TX_ID if purpose is Purpose.TX_PROFILE else None,
            )
        )
    return out


def median_ms(fn: Callable[[], object], runs: int) -> float:
    perf = time.perf_counter
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        t0 = perf()
        fn()
        times.append(perf() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=200)
    ns = ap.parse_args()
    profs = profiles()
    conv = Conversion(voltage_v=230.0, default_phases=3)
    start = MIDNIGHT
    tx_start = start - 900.0

    def schedule() -> CompositeSchedule:
        return composite_schedule(
            profs, 1, start, DAY_S, RateUnit.W, conversion=conv, tx_start_s=tx_start,
            transaction_id=TX_ID, default_limit=22_000.0,
        )  # fmt: skip

    def now() -> Limit | None:
        return limit_at(
            profs, 1, start + 5000.0, RateUnit.W, conversion=conv, tx_start_s=tx_start,
            transaction_id=TX_ID,
        )  # fmt: skip

    def upcoming() -> float | None:
        return next_change_s(profs, 1, start + 5000.0, tx_start_s=tx_start, transaction_id=TX_ID)

    result = schedule()
    gc.collect()
    ms = median_ms(schedule, ns.runs)
    now_ms = median_ms(now, ns.runs)
    next_ms = median_ms(upcoming, ns.runs)
    print(
        f"chargepoint.smartcharging.composite  ({ns.runs} runs, CPython {sys.version.split()[0]})"
    )
    print(
        f"  {len(profs)} profiles x 24 periods, 24 h window -> {len(result.periods)} "
        f"composite periods"
    )
    print(f"  composite_schedule : {ms:8.3f} ms median (target <= {TARGET_MS:.0f} ms)")
    print(f"  ratio target / ours: {TARGET_MS / ms:.2f}x")
    print(f"  limit_at           : {now_ms:8.3f} ms median")
    print(f"  next_change_s      : {next_ms:8.3f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
