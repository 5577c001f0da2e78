"""Power arbitration: the effective limits are the minimum over every source.

Sources are named (``hardware``, ``config``, ``ev``, ``operator``, later
``csms`` for smart charging and V2X): each states what it allows, and the
power path may never go beyond any of them, in either direction. A source that
says nothing about a quantity leaves it unbounded (``inf``); the combination
of all sources is what the ISO 15118-20 session offers the car and what it
clamps every set-point to.

Sign convention: positive = energy to the EV, negative = from the EV
(ISO 15118-20 [V2G20-1034]). Limits are magnitudes (>= 0); a discharge limit
given with either sign by a car or a CSMS is normalised with
:func:`discharge_magnitude` at the edge.

Discharging needs two things: a bidirectional service was selected in the
session (``bpt``) and every source allows it (``discharge_allowed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from chargepoint.power.grid_schedule import NO_SCHEDULE, GridSchedule

INF = math.inf
CSMS_SOURCE = "csms"  # the limit the CSMS's composite schedule puts in force now


def discharge_magnitude(value: float) -> float:
    """A discharge limit as a magnitude, whatever sign the sender used.

    Real traffic disagrees on the sign of discharge limits (FACTS.md: some EVs
    send -2990 W, some +2990 W); non-finite values count as "no discharge".
    """
    if not math.isfinite(value):
        return 0.0
    return abs(value)


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """What one source allows (magnitudes; ``inf`` = no limit from this source)."""

    max_charge_power_w: float = INF
    max_charge_current_a: float = INF
    max_discharge_power_w: float = INF
    max_discharge_current_a: float = INF
    max_voltage_v: float = INF
    min_voltage_v: float = 0.0
    discharge_allowed: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_charge_power_w",
            "max_charge_current_a",
            "max_discharge_power_w",
            "max_discharge_current_a",
            "max_voltage_v",
            "min_voltage_v",
        ):
            value = getattr(self, name)
            if math.isnan(value) or value < 0.0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")

    def combine(self, other: PowerLimits) -> PowerLimits:
        """The tighter of the two, quantity by quantity."""
        return PowerLimits(
            max_charge_power_w=min(self.max_charge_power_w, other.max_charge_power_w),
            max_charge_current_a=min(self.max_charge_current_a, other.max_charge_current_a),
            max_discharge_power_w=min(self.max_discharge_power_w, other.max_discharge_power_w),
            max_discharge_current_a=min(
                self.max_discharge_current_a, other.max_discharge_current_a
            ),
            max_voltage_v=min(self.max_voltage_v, other.max_voltage_v),
            min_voltage_v=max(self.min_voltage_v, other.min_voltage_v),
            discharge_allowed=self.discharge_allowed and other.discharge_allowed,
        )

    @property
    def may_discharge(self) -> bool:
        return (
            self.discharge_allowed
            and self.max_discharge_power_w > 0.0
            and self.max_discharge_current_a > 0.0
        )

    def charge_current_at(self, voltage_v: float) -> float:
        """Largest charging current allowed at ``voltage_v`` (current and power limits)."""
        limit = self.max_charge_current_a
        if voltage_v > 0.0:
            limit = min(limit, self.max_charge_power_w / voltage_v)
        return max(0.0, limit)

    def discharge_current_at(self, voltage_v: float) -> float:
        """Largest discharging current magnitude allowed at ``voltage_v`` (0 if not allowed)."""
        if not self.may_discharge:
            return 0.0
        limit = self.max_discharge_current_a
        if voltage_v > 0.0:
            limit = min(limit, self.max_discharge_power_w / voltage_v)
        return max(0.0, limit)

    def clamp_current(self, current_a: float, voltage_v: float) -> float:
        """A signed current within these limits at ``voltage_v``."""
        if not math.isfinite(current_a):
            return 0.0
        if current_a >= 0.0:
            return min(current_a, self.charge_current_at(voltage_v))
        return -min(-current_a, self.discharge_current_at(voltage_v))

    def clamp_power(self, power_w: float) -> float:
        """A signed power within these limits."""
        if not math.isfinite(power_w):
            return 0.0
        if power_w >= 0.0:
            return min(power_w, self.max_charge_power_w)
        if not self.may_discharge:
            return 0.0
        return -min(-power_w, self.max_discharge_power_w)


NO_LIMITS = PowerLimits()
NO_DISCHARGE = PowerLimits(max_discharge_power_w=0.0, max_discharge_current_a=0.0,
                           discharge_allowed=False)  # fmt: skip


@dataclass
class Arbiter:
    """Named limit sources plus an optional operating-point request.

    ``setpoint_w`` is a request (operator, later CSMS V2X), not a limit: in
    Dynamic control mode the SECC drives the EV to it, clamped by the
    effective limits; ``None`` means "as much charging as allowed".
    """

    sources: dict[str, PowerLimits] = field(default_factory=dict)
    setpoint_w: float | None = None
    #: the CSMS's limits ahead (its ``csms`` source is the one in force now)
    grid: GridSchedule = NO_SCHEDULE

    def set_source(self, name: str, limits: PowerLimits | None) -> None:
        if limits is None:
            self.sources.pop(name, None)
        else:
            self.sources[name] = limits

    def set_setpoint(self, power_w: float | None) -> None:
        if power_w is not None and not math.isfinite(power_w):
            raise ValueError(f"setpoint must be finite, got {power_w!r}")
        self.setpoint_w = power_w

    def effective(self, *, bpt: bool, without: tuple[str, ...] = ()) -> PowerLimits:
        """Every source (but those named in ``without``) combined; no discharge at all
        unless a BPT service was selected."""
        limits = NO_LIMITS
        for name, source in self.sources.items():
            if name not in without:
                limits = limits.combine(source)
        if not bpt:
            limits = limits.combine(NO_DISCHARGE)
        return limits

    def target_power_w(self, *, bpt: bool) -> float:
        """The operating point asked for, within the effective limits."""
        limits = self.effective(bpt=bpt)
        wanted = INF if self.setpoint_w is None else self.setpoint_w
        if math.isinf(wanted):
            return limits.max_charge_power_w
        return limits.clamp_power(wanted)


def with_discharge(limits: PowerLimits, allowed: bool) -> PowerLimits:
    return replace(limits, discharge_allowed=limits.discharge_allowed and allowed)
