"""Typed outputs of the EVSE controller.

*Commands* must be carried out by the adapter in list order (the order is part
of the safety contract: power stage Off before contactor permission off).
*Notices* report what happened, for logs, OCPP and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.safety.faults import Fault, FaultKind


@dataclass(frozen=True, slots=True)
class SetPilotPwm:
    duty_pct: float


@dataclass(frozen=True, slots=True)
class SetPilotX1:
    pass


@dataclass(frozen=True, slots=True)
class SetPilotF:
    pass


@dataclass(frozen=True, slots=True)
class SetContactorPermission:
    granted: bool


@dataclass(frozen=True, slots=True)
class SwitchPowerStageOff:
    pass


class PowerDirection(Enum):
    EXPORT = "export"  # to the EV
    IMPORT = "import"  # from the EV (V2G)


@dataclass(frozen=True, slots=True)
class SetPowerStage:
    """Operating point for the DC power stage (only after the controller's gate).

    EXPORT: target voltage, current and power limits; IMPORT: lowest voltage and
    current/power magnitudes. All values >= 0.
    """

    direction: PowerDirection
    voltage_v: float
    current_a: float
    power_w: float


@dataclass(frozen=True, slots=True)
class SetIsolationMonitor:
    on: bool


@dataclass(frozen=True, slots=True)
class SetLock:
    """Lock or release the cable in a socket outlet (IEC 61851-1 6.3.1.x locking)."""

    locked: bool


@dataclass(frozen=True, slots=True)
class ClearBoardFaults:
    """Ask the board to clear latched flags whose conditions have gone."""


Command = (
    SetPilotPwm
    | SetPilotX1
    | SetPilotF
    | SetContactorPermission
    | SwitchPowerStageOff
    | SetLock
    | ClearBoardFaults
    | SetPowerStage
    | SetIsolationMonitor
)


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: EvseState
    new: EvseState
    cp_state: CpState


@dataclass(frozen=True, slots=True)
class FaultLatched:
    fault: Fault


@dataclass(frozen=True, slots=True)
class FaultsCleared:
    kinds: tuple[FaultKind, ...]


@dataclass(frozen=True, slots=True)
class OfferedCurrentChanged:
    current_a: float


@dataclass(frozen=True, slots=True)
class ContactorChanged:
    """The mirror contacts moved: the power path to the EV closed or opened."""

    closed: bool


@dataclass(frozen=True, slots=True)
class HlcPowerRefused:
    """The session asked for power the controller may not give now (and why)."""

    reason: str


Notice = (
    StateChanged
    | FaultLatched
    | FaultsCleared
    | OfferedCurrentChanged
    | ContactorChanged
    | HlcPowerRefused
)
Action = Command | Notice
