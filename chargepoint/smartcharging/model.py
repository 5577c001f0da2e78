"""Charging profiles as the station keeps them (OCPP 2.0.1 / 2.1 block K), sans-I/O.

The CSMS sends ``ChargingProfileType`` JSON; :mod:`.validation` turns it into these
frozen values once, at the edge, so that the store and the composite-schedule
computation never touch JSON.  Times are UTC epoch seconds (floats); durations and
period starts are whole seconds, as OCPP gives them.

Sign convention (ISO 15118-20 [V2G20-1034], house rule): ``limit`` is what may flow
*to* the EV (>= 0); ``discharge_limit`` is what may flow *from* the EV, stored as a
magnitude (>= 0) whatever sign the CSMS used (2.1 sends it <= 0; a 2.0.1-era CSMS
expresses discharge as a negative ``limit``, which :mod:`.validation` moves here).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DAY_S = 86_400
WEEK_S = 7 * DAY_S


class Purpose(Enum):
    """ChargingProfilePurposeEnumType."""

    CHARGING_STATION_EXTERNAL_CONSTRAINTS = "ChargingStationExternalConstraints"
    CHARGING_STATION_MAX_PROFILE = "ChargingStationMaxProfile"
    TX_DEFAULT_PROFILE = "TxDefaultProfile"
    TX_PROFILE = "TxProfile"
    #: OCPP 2.1 only
    PRIORITY_CHARGING = "PriorityCharging"
    #: OCPP 2.1 only
    LOCAL_GENERATION = "LocalGeneration"


class Kind(Enum):
    """ChargingProfileKindEnumType (``Dynamic`` is OCPP 2.1 only)."""

    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"
    DYNAMIC = "Dynamic"


class Recurrency(Enum):
    """RecurrencyKindEnumType."""

    DAILY = "Daily"
    WEEKLY = "Weekly"

    @property
    def period_s(self) -> int:
        return DAY_S if self is Recurrency.DAILY else WEEK_S


class RateUnit(Enum):
    """ChargingRateUnitEnumType."""

    A = "A"
    W = "W"


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """ChargingSchedulePeriodType: from ``start_s`` (relative to the schedule start) on.

    ``limit`` is ``None`` only in 2.1 periods that set no charging limit (a
    set-point-only period); ``number_phases`` ``None`` means "as the station
    defaults" (3 on AC).
    """

    start_s: int
    limit: float | None
    number_phases: int | None = None
    phase_to_use: int | None = None
    #: magnitude of the allowed discharge (2.1 ``dischargeLimit``, or a negative
    #: 2.0.1 ``limit``); ``None``: the profile says nothing about discharging
    discharge_limit: float | None = None
    #: 2.1 ``setpoint`` (signed: negative = from the EV); ``None``: none given
    setpoint: float | None = None


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    """ChargingScheduleType: periods sorted by ``start_s``, the first one at 0."""

    id: int
    rate_unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    #: absolute start (epoch s); required for Absolute (else: when received) and Recurring
    start_s: float | None = None
    #: ``None``: the last period lasts for ever (or until the next recurrence)
    duration_s: int | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """ChargingProfileType plus the EVSE it was installed for (0 = the whole station)."""

    id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedules: tuple[ChargingSchedule, ...]
    evse_id: int
    recurrency: Recurrency | None = None
    valid_from_s: float | None = None
    valid_to_s: float | None = None
    transaction_id: str | None = None

    def valid_at(self, instant_s: float) -> bool:
        """Inside validFrom/validTo (validTo exclusive)."""
        if self.valid_from_s is not None and instant_s < self.valid_from_s:
            return False
        return not (self.valid_to_s is not None and instant_s >= self.valid_to_s)
