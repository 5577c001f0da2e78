"""Typed inputs of the EVSE controller. Adapters build them from HAL reports
and from operator/CSMS commands; the controller never sees hardware types."""

from __future__ import annotations

from dataclasses import dataclass, field

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iso15118.secc.actions import PowerPhase
from chargepoint.safety.faults import FaultKind


@dataclass(frozen=True, slots=True)
class PilotObserved:
    """One status report of the pilot/relay board."""

    cp_state: CpState
    output: PilotOutput  # what the board says it drives
    contactor_closed: bool  # mirror contacts
    pp_ampacity_a: float | None = None
    temperature_c: float = 25.0
    faults: frozenset[FaultKind] = frozenset()  # conditions the board reports
    detail: str = ""
    locked: bool = False  # cable lock feedback (socket outlets)


@dataclass(frozen=True, slots=True)
class PowerStageObserved:
    voltage_v: float
    current_a: float  # + to the EV
    on: bool
    faults: frozenset[FaultKind] = frozenset()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class IsolationObserved:
    resistance_ohm: float | None  # None: not measuring
    device_fault: bool = False


@dataclass(frozen=True, slots=True)
class MeterObserved:
    """The meter answers again (``ok``) or has failed persistently: a billing-relevant
    unit delivers no energy it cannot meter."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TaskCrashed:
    task: str
    detail: str


@dataclass(frozen=True, slots=True)
class StartCharging:
    """Authorisation to offer energy (free vend, local or remote start)."""

    reason: str = "authorized"


@dataclass(frozen=True, slots=True)
class StopCharging:
    """Ask the EV to stop (EVSE-initiated stop, IEC 61851-1 A.6 seq 10)."""

    reason: str = "local"


@dataclass(frozen=True, slots=True)
class SetCurrentLimit:
    """Upper limit on the offered current (smart charging, operator)."""

    current_a: float


@dataclass(frozen=True, slots=True)
class SetAvailable:
    available: bool


@dataclass(frozen=True, slots=True)
class ClearFaults:
    """Operator reset: clear latched faults whose conditions have gone, once the F
    pulse is over and the car has left C/D. ``service``: a technician's service
    reset, which also releases faults that say the hardware is broken or repeats."""

    requested_by: str = field(default="operator")
    service: bool = False


@dataclass(frozen=True, slots=True)
class HlcPower:
    """The ISO 15118 session asks for an operating point (already arbitrated).

    The controller gates it: cable check and pre-charge only with PWM on, CP in
    C/D and nothing latched, at no more than the pre-charge current; energy only
    with contactor permission granted. ``current_a`` is signed (+ to the EV).
    """

    phase: PowerPhase
    voltage_v: float = 0.0
    current_a: float = 0.0
    power_w: float = 0.0


@dataclass(frozen=True, slots=True)
class HlcContactors:
    """PowerDelivery(Start) / (Stop): the session wants the power path closed / open."""

    closed: bool


@dataclass(frozen=True, slots=True)
class HlcIsolationMonitor:
    on: bool


@dataclass(frozen=True, slots=True)
class HlcSessionEnded:
    """The ISO 15118 session is over (normally or not): power path back to safe."""

    failed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HlcWakeUp:
    """ISO 15118-3 E/F step: no car asked for SLAC while 5 % was offered; drive F for
    ``duration_s`` (T_step_EF), then 5 % again [V2G3-M06-07]."""

    duration_s: float


@dataclass(frozen=True, slots=True)
class HlcLinkFailed:
    """SLAC gave up on this plug-in (its X1 request): one failed HLC attempt."""

    reason: str = ""


Event = (
    PilotObserved
    | PowerStageObserved
    | IsolationObserved
    | TaskCrashed
    | MeterObserved
    | StartCharging
    | StopCharging
    | SetCurrentLimit
    | SetAvailable
    | ClearFaults
    | HlcPower
    | HlcContactors
    | HlcIsolationMonitor
    | HlcSessionEnded
    | HlcWakeUp
    | HlcLinkFailed
)
