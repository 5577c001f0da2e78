"""Scheduled control mode: the ScheduleTuples the SECC offers (ISO 15118-20 8.3.5.3).

Up to three tuples (FACTS.md "Scheduled mode"), each a ChargingSchedule and,
for BPT, a DischargingSchedule, both PowerSchedules with an absolute price
schedule. The EV picks one in PowerDelivery(Start) and sets its own targets
within it; the session then clamps every EV target to the picked tuple.

Offered at ScheduleExchange time, each over ``schedule_duration_s``:

1. full power, no discharge (BPT: a zero DischargingSchedule);
2. BPT with discharge allowed: full charge and full discharge power;
3. half charging power (a cheaper tariff in the price schedule).

"Full" is the hardware's limit now, stepped down wherever the CSMS's
schedule ahead (:class:`GridSchedule`, OCPP K15: the composite schedule
becomes the offer) allows less, in at most as many entries as the EV can
take (MaximumSupportingPoints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.numbers import to_rational
from chargepoint.iso15118.secc.settings import SeccSettings
from chargepoint.power.arbitration import PowerLimits
from chargepoint.power.grid_schedule import NO_SCHEDULE, GridSchedule, fit_pieces

PRICE_ALGORITHM_POWER = "urn:iso:std:iso:15118:-20:PriceAlgorithm:1-Power"
MAX_ENTRIES = 1024  # PowerScheduleEntryList: at most 1024 entries (XSD)
MIN_SUPPORTING_POINTS = 12  # MaximumSupportingPoints is 12..1024 (XSD)


@dataclass(frozen=True, slots=True)
class Piece:
    """From ``offset_s`` after the time anchor: power magnitudes (finite)."""

    offset_s: int
    charge_power_w: float
    discharge_power_w: float


@dataclass(frozen=True, slots=True)
class OfferedTuple:
    tuple_id: int
    pieces: tuple[Piece, ...]  # first at offset 0
    duration_s: int
    time_anchor_s: int

    def piece_at(self, unix_time_s: float) -> Piece | None:
        offset = unix_time_s - self.time_anchor_s
        if not 0 <= offset < self.duration_s:
            return None
        found = self.pieces[0]
        for piece in self.pieces:
            if piece.offset_s > offset:
                break
            found = piece
        return found

    def limits(self, unix_time_s: float) -> PowerLimits:
        """The tuple as a limit source at ``unix_time_s`` (nothing outside its window)."""
        piece = self.piece_at(unix_time_s)
        if piece is None:
            return PowerLimits(max_charge_power_w=0.0, max_discharge_power_w=0.0,
                               discharge_allowed=False)  # fmt: skip
        return PowerLimits(
            max_charge_power_w=piece.charge_power_w,
            max_discharge_power_w=piece.discharge_power_w,
            discharge_allowed=piece.discharge_power_w > 0.0,
        )

    @property
    def discharges(self) -> bool:
        return any(p.discharge_power_w > 0.0 for p in self.pieces)


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value > 0.0 else 0.0


def offer(
    settings: SeccSettings,
    limits: PowerLimits,
    *,
    bpt: bool,
    unix_time_s: int,
    grid: GridSchedule = NO_SCHEDULE,
    max_entries: int = MAX_ENTRIES,
) -> list[OfferedTuple]:
    """The tuples for ``limits`` (the hardware's, without the CSMS's limit in force
    now) shaped by ``grid`` (the CSMS's limits ahead)."""
    duration = settings.schedule_duration_s
    entries = max(MIN_SUPPORTING_POINTS, min(max_entries, MAX_ENTRIES))
    base_charge = limits.max_charge_power_w
    base_discharge = limits.max_discharge_power_w if limits.may_discharge else 0.0
    window = grid.window(unix_time_s, duration) or [(0, math.inf, math.inf)]
    shaped = fit_pieces(
        [(off, min(base_charge, c), min(base_discharge, d)) for off, c, d in window], entries
    )

    def build(tuple_id: int, charge_share: float, discharge: bool) -> OfferedTuple:
        pieces: list[Piece] = []
        for off, charge, dis in shaped:
            piece = Piece(off, _finite(charge) * charge_share, _finite(dis) if discharge else 0.0)
            if pieces and (pieces[-1].charge_power_w, pieces[-1].discharge_power_w) == (
                piece.charge_power_w,
                piece.discharge_power_w,
            ):
                continue
            pieces.append(piece)
        return OfferedTuple(tuple_id, tuple(pieces), duration, unix_time_s)

    tuples = [build(1, 1.0, False)]
    if bpt and limits.may_discharge:
        tuples.append(build(2, 1.0, True))
    tuples.append(build(3, 0.5, False))
    return tuples


def _power_schedule(t: OfferedTuple, sign: float, discharge: bool) -> m.PowerSchedule:
    entries: list[m.PowerScheduleEntry] = []
    for i, piece in enumerate(t.pieces):
        end = t.pieces[i + 1].offset_s if i + 1 < len(t.pieces) else t.duration_s
        power = piece.discharge_power_w if discharge else piece.charge_power_w
        entries.append(m.PowerScheduleEntry(duration=end - piece.offset_s,
                                            power=to_rational(sign * power)))  # fmt: skip
    return m.PowerSchedule(
        time_anchor=t.time_anchor_s,
        power_schedule_entries=m.PowerScheduleEntryList(power_schedule_entry=entries),
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
            power_schedule=_power_schedule(t, 1.0, discharge=False),
            absolute_price_schedule=_price(settings, t, price),
        )
        discharging = None
        if bpt:
            # Discharge power from the EV is negative ([V2G20-1034]/[V2G20-1035]).
            discharging = m.ChargingSchedule(
                power_schedule=_power_schedule(t, -1.0, discharge=True)
            )
        out.append(
            m.ScheduleTuple(
                schedule_tuple_id=t.tuple_id,
                charging_schedule=charging,
                discharging_schedule=discharging,
            )
        )
    return m.Scheduled_SEResControlMode(schedule_tuple=out)
