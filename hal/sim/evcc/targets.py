"""What the car asks for and allows, computed from its battery model and its driver.

Energy requests ([V2G20] Dynamic/Scheduled control modes, Wh, + to the EV):

* target  = energy to the driver's target SoC
* maximum = energy to 100 % SoC
* minimum = energy to the driver's minimum SoC (negative when already above it)
* V2X maximum / minimum = energy to 100 % / to the BMS reserve SoC (BPT only)

Limits are magnitudes; the session applies the profile's sign for discharge
limits when it puts them on the wire.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hal.sim.evcc.profile import CarControls, CarProfile, EvMeasurements


@dataclass(frozen=True, slots=True)
class EnergyRequests:
    target_wh: float
    maximum_wh: float
    minimum_wh: float
    v2x_maximum_wh: float
    v2x_minimum_wh: float


def energy_requests(ev: EvMeasurements, controls: CarControls) -> EnergyRequests:
    per_pct = ev.capacity_wh / 100.0
    soc = ev.soc_pct
    maximum = (100.0 - soc) * per_pct
    minimum = min(maximum, (controls.min_soc_pct - soc) * per_pct)
    target = min(maximum, max(minimum, (controls.target_soc_pct - soc) * per_pct))
    return EnergyRequests(
        target_wh=target,
        maximum_wh=maximum,
        minimum_wh=minimum,
        v2x_maximum_wh=maximum,
        v2x_minimum_wh=min(maximum, (ev.reserve_soc_pct - soc) * per_pct),
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """What the car allows right now (magnitudes)."""

    charge_power_w: float
    discharge_power_w: float
    charge_current_a: float = 0.0  # DC only
    discharge_current_a: float = 0.0  # DC only


def wants_discharge(controls: CarControls, bpt: bool) -> bool:
    return bpt and controls.discharge


def dc_limits(
    ev: EvMeasurements,
    profile: CarProfile,
    controls: CarControls,
    *,
    bpt: bool,
    winding_down: bool,
) -> Limits:
    if winding_down:
        return Limits(0.0, 0.0, 0.0, 0.0)
    voltage = max(ev.battery_voltage_v, 1.0)
    charge_w = ev.charge_power_limit_w if ev.soc_pct < 100.0 else 0.0
    discharge_w = 0.0
    if wants_discharge(controls, bpt):
        discharge_w = ev.discharge_power_limit_w
        if controls.discharge_power_w is not None:
            discharge_w = min(discharge_w, max(0.0, controls.discharge_power_w))
    return Limits(
        charge_power_w=charge_w,
        discharge_power_w=discharge_w,
        charge_current_a=min(profile.dc_max_charge_current_a, charge_w / voltage),
        discharge_current_a=min(profile.dc_max_discharge_current_a, discharge_w / voltage),
    )


def ac_limits(
    ev: EvMeasurements, controls: CarControls, *, bpt: bool, winding_down: bool
) -> Limits:
    if winding_down:
        return Limits(0.0, 0.0)
    charge_w = min(ev.ac_max_charge_power_w, ev.charge_power_limit_w) if ev.soc_pct < 100 else 0.0
    discharge_w = 0.0
    if wants_discharge(controls, bpt):
        discharge_w = min(ev.ac_max_discharge_power_w, ev.discharge_power_limit_w)
        if controls.discharge_power_w is not None:
            discharge_w = min(discharge_w, max(0.0, controls.discharge_power_w))
    return Limits(charge_power_w=max(0.0, charge_w), discharge_power_w=discharge_w)


class RecentMax:
    """Largest value given within the last ``grace_s`` (and always the latest one).

    The car compares what the charger does with what it allowed *recently*: a
    withdrawn allowance takes a moment to reach the power stage.
    """

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._items: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))
        while len(self._items) > 1 and self._items[0][0] < now - self.grace_s:
            self._items.popleft()

    def value(self, now: float) -> float:
        if not self._items:
            return 0.0
        latest = self._items[-1][1]
        recent = [v for t, v in self._items if t >= now - self.grace_s]
        return max([latest, *recent])
