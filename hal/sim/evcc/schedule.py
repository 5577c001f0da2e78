"""Scheduled control mode: the SECC's ScheduleTuples as the car checks and follows them.

The SECC offers 1..3 ScheduleTuples, each a ChargingSchedule and an optional
DischargingSchedule (FACTS.md "Scheduled mode"); the car picks one, names it
in PowerDelivery(Start) and keeps its own targets within it.

Time base: entries are followed from the moment the ScheduleExchangeRes
arrived. ``TimeAnchor`` is not interpreted because peers disagree on its unit
(the public AC_BPT capture carries microseconds); a car that misreads it would
not charge at all, one that ignores it stays within the (usually constant)
limits.

Sign: ChargingSchedule powers must be >= 0 (+ to the EV). Discharging
schedules carry negative powers in the captures; positive ones are accepted as
magnitudes, like the discharge limits (FACTS.md "Sign convention").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chargepoint.iso15118.messages import iso20 as m
from hal.sim.evcc.errors import CarError
from hal.sim.evcc.numbers import value_of

_log = logging.getLogger(__name__)

_MSG = "ScheduleExchangeRes"


@dataclass(frozen=True, slots=True)
class PowerStep:
    start_s: float
    end_s: float
    power_w: float  # magnitude


@dataclass(frozen=True, slots=True)
class ScheduleTupleInfo:
    tuple_id: int
    charging: tuple[PowerStep, ...]
    discharging: tuple[PowerStep, ...] | None

    @property
    def end_s(self) -> float:
        ends = [s.end_s for s in self.charging]
        if self.discharging:
            ends += [s.end_s for s in self.discharging]
        return max(ends)

    def charge_power_w(self, t_s: float) -> float:
        return _at(self.charging, t_s)

    def discharge_power_w(self, t_s: float) -> float:
        return 0.0 if self.discharging is None else _at(self.discharging, t_s)

    @property
    def can_discharge(self) -> bool:
        return self.discharging is not None and any(s.power_w > 0 for s in self.discharging)

    def profile_entries(self, discharge: bool, cap_w: float) -> list[tuple[int, float]]:
        """(duration s, signed power W) for the EVPowerProfile, capped by the car."""
        steps = self.discharging if discharge and self.discharging else self.charging
        sign = -1.0 if discharge and self.discharging else 1.0
        return [(max(0, round(s.end_s - s.start_s)), sign * min(s.power_w, cap_w)) for s in steps]


def _at(steps: tuple[PowerStep, ...], t_s: float) -> float:
    for step in steps:
        if step.start_s <= t_s < step.end_s:
            return step.power_w
    return 0.0


def _steps(
    schedule: m.PowerSchedule, where: str, max_points: int, *, discharging: bool
) -> tuple[PowerStep, ...]:
    entries = schedule.power_schedule_entries.power_schedule_entry
    if len(entries) > max_points:
        raise CarError(
            _MSG,
            f"{where}.PowerScheduleEntries",
            f"{len(entries)} entries, more than MaximumSupportingPoints {max_points}",
        )
    steps: list[PowerStep] = []
    t = 0.0
    for i, entry in enumerate(entries):
        power = value_of(entry.power, _MSG, f"{where}.PowerScheduleEntry[{i}].Power")
        if not discharging and power < 0:
            raise CarError(
                _MSG,
                f"{where}.PowerScheduleEntry[{i}].Power",
                f"{power} W in a ChargingSchedule (must be >= 0, + to the EV)",
            )
        steps.append(PowerStep(t, t + entry.duration, abs(power)))
        t += entry.duration
    if t <= 0:
        raise CarError(_MSG, f"{where}.PowerScheduleEntries", "total duration is 0 s")
    return tuple(steps)


def parse_tuples(
    mode: m.Scheduled_SEResControlMode, *, max_points: int, bpt: bool
) -> list[ScheduleTupleInfo]:
    """Check the offered ScheduleTuples; raise :class:`CarError` on a broken structure."""
    tuples: list[ScheduleTupleInfo] = []
    seen: set[int] = set()
    if not 1 <= len(mode.schedule_tuple) <= 3:
        raise CarError(_MSG, "ScheduleTuple", f"{len(mode.schedule_tuple)} tuples (1..3 allowed)")
    for i, tup in enumerate(mode.schedule_tuple):
        where = f"ScheduleTuple[{i}]"
        if tup.schedule_tuple_id in seen:
            raise CarError(
                _MSG, f"{where}.ScheduleTupleID", f"duplicate ID {tup.schedule_tuple_id}"
            )
        seen.add(tup.schedule_tuple_id)
        charging = _steps(
            tup.charging_schedule.power_schedule,
            f"{where}.ChargingSchedule.PowerSchedule",
            max_points,
            discharging=False,
        )
        discharging = None
        if tup.discharging_schedule is not None:
            if not bpt:
                _log.warning(
                    "ScheduleExchangeRes: tuple %d has a DischargingSchedule but no BPT "
                    "service was selected; ignoring it",
                    tup.schedule_tuple_id,
                )
            else:
                discharging = _steps(
                    tup.discharging_schedule.power_schedule,
                    f"{where}.DischargingSchedule.PowerSchedule",
                    max_points,
                    discharging=True,
                )
        tuples.append(ScheduleTupleInfo(tup.schedule_tuple_id, charging, discharging))
    return tuples


def choose_tuple(tuples: list[ScheduleTupleInfo], want_discharge: bool) -> ScheduleTupleInfo:
    """A tuple with a usable DischargingSchedule when discharge is wanted, else the first
    tuple that allows charging, else the first one."""
    if want_discharge:
        for tup in tuples:
            if tup.can_discharge:
                return tup
    for tup in tuples:
        if any(s.power_w > 0 for s in tup.charging):
            return tup
    return tuples[0]
