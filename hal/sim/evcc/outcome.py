"""Outputs of the EVCC session: hardware actions and how a session ended."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from hal.sim.evcc.errors import CarError


class EndReason(Enum):
    STOPPED = "stopped"  # controls.stop
    TARGET_REACHED = "target_soc_reached"
    LOOP_LIMIT = "loop_limit"  # controls.stop_after_loops
    SCHEDULE_ENDED = "schedule_ended"
    PAUSED = "paused"  # controls.pause: SessionStop(Pause)
    EVSE_PAUSE = "evse_pause"  # EVSENotification Pause / GoToPause
    EVSE_TERMINATE = "evse_terminate"
    AUTHORIZATION_REJECTED = "authorization_rejected"
    NO_COMPATIBLE_SERVICE = "no_compatible_service"
    INCOMPATIBLE_LIMITS = "incompatible_limits"
    FAULT_OUT_OF_SEQUENCE = "fault_out_of_sequence"
    FAULT_SILENT = "fault_silent"
    FAULT_DISAPPEAR = "fault_disappear"
    ERROR = "error"


#: reasons that count as a successful session
OK_REASONS: Final = frozenset(
    {
        EndReason.STOPPED,
        EndReason.TARGET_REACHED,
        EndReason.LOOP_LIMIT,
        EndReason.SCHEDULE_ENDED,
        EndReason.PAUSED,
        EndReason.EVSE_PAUSE,
        EndReason.EVSE_TERMINATE,
    }
)


@dataclass(frozen=True, slots=True)
class ResumeInfo:
    """What a paused session needs to be joined again on a new connection."""

    session_id: bytes
    service: str
    parameter_set_id: int
    mobility_needs_mode: int = 1


@dataclass(frozen=True, slots=True)
class SessionResult:
    ok: bool
    reason: EndReason
    paused: bool = False
    resume: ResumeInfo | None = None
    error: CarError | None = None


@dataclass(frozen=True, slots=True)
class SetCp:
    """Close (C) or open (B) the EV's S2 switch (``SimulatedEv.set_hlc_ready``)."""

    closed: bool


@dataclass(frozen=True, slots=True)
class SetDcContactor:
    closed: bool


@dataclass(frozen=True, slots=True)
class SetAcPower:
    """Signed AC power the on-board charger should run at (+ to the EV)."""

    power_w: float


@dataclass(frozen=True, slots=True)
class SessionFinished:
    result: SessionResult


Action = SetCp | SetDcContactor | SetAcPower | SessionFinished
