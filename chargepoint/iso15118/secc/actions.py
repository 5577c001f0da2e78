"""Typed outputs of the SECC session.

The session never touches hardware: power requests go to the EVSE
controller, which gates them with the IEC 61851 state and the safety
supervisor before anything reaches the power stage or the contactors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class SendData:
    """Write these bytes (one whole V2GTP message, in one send: FACTS.md "Transport")."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseConnection:
    reason: str


class PowerPhase(Enum):
    """Why the session asks for power; the controller gates each differently."""

    OFF = "off"
    CABLE_CHECK = "cable_check"  # isolation test voltage, <= 2 A (IEC 61851-23)
    PRE_CHARGE = "pre_charge"  # match the EV battery voltage, <= 2 A
    ENERGY = "energy"  # charge loop: contactors closed


@dataclass(frozen=True, slots=True)
class RequestPower:
    """Operating point for the power path, already within the arbitrated limits.

    DC: ``current_a`` is signed (+ to the EV). In export (``current_a >= 0``)
    ``voltage_v`` is the target voltage; in import it is the lowest voltage the
    EV battery may be pulled to. ``power_w`` is a magnitude limit.
    AC: ``power_w`` is the signed target active power; voltage/current are 0.
    """

    phase: PowerPhase
    voltage_v: float = 0.0
    current_a: float = 0.0
    power_w: float = 0.0


@dataclass(frozen=True, slots=True)
class RequestContactors:
    """PowerDelivery(Start) asks for the power path to close, Stop for it to open.

    Closing needs CP in C/D with 5 % PWM and nothing latched ([V2G20-1317]:
    not before PowerDelivery(Start)); opening always comes after the power
    stage is Off (the controller orders it).
    """

    closed: bool


@dataclass(frozen=True, slots=True)
class RequestIsolationMonitor:
    on: bool


@dataclass(frozen=True, slots=True)
class SessionNotice:
    """Something worth a log line, the CLI or OCPP (message exchanged, phase changed)."""

    kind: str  # "message", "state", "ended", "authorization_needed", "ev", "warning"
    detail: str


@dataclass(frozen=True, slots=True)
class EvReport:
    """What the EV reported in the loop (for OCPP meter values and the live line)."""

    soc_pct: int | None
    ev_voltage_v: float | None
    target_current_a: float | None
    target_power_w: float | None
    departure_time_s: int | None
    energy_request_wh: float | None


@dataclass(frozen=True, slots=True)
class EvNeeds:
    """The EV's charging needs, once per schedule negotiation (for OCPP K15/K17
    NotifyEVChargingNeeds).  Magnitudes; ``None`` where the EV did not say."""

    dc: bool
    bpt: bool
    control_mode: str  # "scheduled" | "dynamic"
    departure_time_s: int | None  # seconds from now
    target_energy_wh: float | None
    min_energy_wh: float | None
    max_energy_wh: float | None
    target_soc_pct: int | None
    max_charge_power_w: float | None
    min_charge_power_w: float | None
    max_charge_current_a: float | None
    min_charge_current_a: float | None
    max_voltage_v: float | None
    min_voltage_v: float | None
    max_discharge_power_w: float | None
    min_discharge_power_w: float | None
    max_discharge_current_a: float | None
    min_discharge_current_a: float | None
    max_schedule_tuples: int


@dataclass(frozen=True, slots=True)
class EvScheduleChosen:
    """The schedule the EV set out in PowerDelivery(Start) (OCPP K15/K16
    NotifyEVChargingSchedule): its EVPowerProfile entries if it sent them, else the
    picked tuple's.  ``periods``: (offset_s from the time anchor, signed power W)."""

    tuple_id: int
    time_anchor_s: int  # Unix time
    periods: tuple[tuple[int, float], ...]
    discharge_limits_w: tuple[float, ...] = ()  # per period, magnitudes (BPT tuples)


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: str
    failed: bool  # True: a FAILED response, a timeout, a fault or a lost connection
    paused: bool = False


Action = (
    SendData
    | CloseConnection
    | RequestPower
    | RequestContactors
    | RequestIsolationMonitor
    | SessionNotice
    | EvReport
    | EvNeeds
    | EvScheduleChosen
    | SessionEnded
)
