"""Fault vocabulary of the safety supervisor."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FaultKind(Enum):
    CP_SHORT = "cp_short"  # CP state E: CP shorted to PE or no supply (IEC 61851-1 A.2)
    EV_ERROR = "ev_error"  # CP state F read while we drive X1/PWM
    DIODE = "diode"  # EV diode missing (IEC 61851-1 A.2.3)
    RCD_AC = "rcd_ac"
    RCD_DC = "rcd_dc"  # IEC 62955 6 mA DC residual current
    ISOLATION = "isolation"  # IEC 61851-23 6.3.1.105: below 100 ohm/V class limit
    OVER_VOLTAGE = "over_voltage"
    OVER_TEMPERATURE = "over_temperature"
    CONTACTOR_WELDED = "contactor_welded"
    CONTACTOR_STUCK_OPEN = "contactor_stuck_open"
    LOCK = "lock"
    BOARD_KEEPALIVE_LOST = "board_keepalive_lost"
    BOARD_INTERNAL = "board_internal"
    POWER_STAGE = "power_stage"
    POWER_STAGE_KEEPALIVE_LOST = "power_stage_keepalive_lost"
    TASK_CRASHED = "task_crashed"
    METER = "meter"  # the meter stopped answering: no energy without metering


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    detail: str
    since: float  # monotonic seconds
    service_required: bool = False  # only a service reset releases it (not a replug)
