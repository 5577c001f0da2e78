"""Scheduled control mode: the ScheduleTuples the SECC offers ([V2G20-...] 8.3.5.3.x).

Up to three tuples (FACTS.md "Scheduled mode"), each a ChargingSchedule and,
for BPT, a DischargingSchedule, both PowerSchedules with an absolute price
schedule. The EV picks one in PowerDelivery(Start) and sets its own targets
within it; the session then clamps every EV target to the picked tuple.

Offered, from the arbitrated limits at ScheduleExchange time:

1. full power, no discharge (BPT: a zero DischargingSchedule);
2. BPT with discharge allowed: full charge and full discharge power;
3. half charging power (a cheaper tariff in the price schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.numbers import to_rational
from chargepoint.iso15118.secc.settings import SeccSettings
from chargepoint.power.arbitration import PowerLimits

PRICE_ALGORITHM_POWER = "urn:iso:std:iso:15118:-20:PriceAlgorithm:1-Power"


@dataclass(frozen=True, slots=True)
class OfferedTuple:
    tuple_id: int
    charge_power_w: float  # magnitude, constant over the schedule
    discharge_power_w: float  # magnitude; 0: no discharging
    duration_s: int
    time_anchor_s: int

    def limits(self, unix_time_s: float) -> PowerLimits:
        """The tuple as a limit source at ``unix_time_s`` (nothing outside its window)."""
        inside = self.time_anchor_s <= unix_time_s < self.time_anchor_s + self.duration_s
        return PowerLimits(
            max_charge_power_w=self.charge_power_w if inside else 0.0,
            max_discharge_power_w=self.discharge_power_w if inside else 0.0,
            discharge_allowed=inside and self.discharge_power_w > 0.0,
        )


def offer(settings: SeccSettings, limits: PowerLimits, *, bpt: bool, unix_time_s: int
          ) -> list[OfferedTuple]:  # fmt: skip
    charge = limits.max_charge_power_w
    duration = settings.schedule_duration_s
    tuples = [OfferedTuple(1, charge, 0.0, duration, unix_time_s)]
    if bpt and limits.may_discharge:
        tuples.append(OfferedTuple(2, charge, limits.max_discharge_power_w, duration, unix_time_s))
    tuples.append(OfferedTuple(3, charge / 2.0, 0.0, duration, unix_time_s))
    return tuples


def _power_schedule(t: OfferedTuple, power_w: float) -> m.PowerSchedule:
    entry = m.PowerScheduleEntry(duration=t.duration_s, power=to_rational(power_w))
    return m.PowerSchedule(
        time_anchor=t.time_anchor_s,
        power_schedule_entries=m.PowerScheduleEntryList(power_schedule_entry=[entry]),
    )


def _price(
    settings: SeccSettings, t: OfferedTuple, price_per_kwh: float
) -> m.AbsolutePriceSchedule:
    rule = m.PriceRule(energy_fee=to_rational(price_per_kwh), power_range_start=to_rational(0.0))
    return m.AbsolutePriceSchedule(
        time_anchor=t.time_anchor_s,
        price_schedule_id=t.tuple_id,
        currency=settings.currency,
        language="ENG",
        price_algorithm=PRICE_ALGORITHM_POWER,
        price_rule_stacks=m.PriceRuleStackList(
            price_rule_stack=[m.PriceRuleStack(duration=0, price_rule=[rule])]
        ),
    )


def to_message(settings: SeccSettings, tuples: list[OfferedTuple], *, bpt: bool
               ) -> m.Scheduled_SEResControlMode:  # fmt: skip
    out: list[m.ScheduleTuple] = []
    for t in tuples:
        price = settings.energy_price_per_kwh * (0.5 if t.tuple_id == 3 else 1.0)
        charging = m.ChargingSchedule(
            power_schedule=_power_schedule(t, t.charge_power_w),
            absolute_price_schedule=_price(settings, t, price),
        )
        discharging = None
        if bpt:
            # Discharge power from the EV is negative ([V2G20-1034]/[V2G20-1035]).
            discharging = m.ChargingSchedule(
                power_schedule=_power_schedule(t, -t.discharge_power_w)
            )
        out.append(
            m.ScheduleTuple(
                schedule_tuple_id=t.tuple_id,
                charging_schedule=charging,
                discharging_schedule=discharging,
            )
        )
    return m.Scheduled_SEResControlMode(schedule_tuple=out)
