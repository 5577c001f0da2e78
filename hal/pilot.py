"""Control-pilot / relay board: the resource that owns the CP line, the
contactors, the cable lock and the residual-current device.

The board's microcontroller owns hard electrical safety (it opens the
contactors by itself on RCD trip, lost host keep-alive, CP short, ...). Linux
only *grants permission* to close; the mirror contacts report what really
happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto
from typing import Protocol

from chargepoint.iec61851.cp_state import CpState, PilotOutput


class BoardFault(Flag):
    """Fault flags reported by the board (several can be set at once)."""

    NONE = 0
    RCD_AC = auto()  # residual current, AC part (30 mA class)
    RCD_DC = auto()  # residual DC current >= 6 mA (IEC 62955)
    DIODE = auto()  # EV diode missing: CP negative plateau not at -12 V during PWM
    OVER_TEMPERATURE = auto()  # board or socket temperature above its limit
    CONTACTOR_WELDED = auto()  # mirror contact says closed while coil is off
    CONTACTOR_STUCK_OPEN = auto()  # mirror contact says open while coil is on
    LOCK_FAULT = auto()  # cable lock did not reach the commanded position
    HOST_KEEPALIVE_LOST = auto()  # the board stopped hearing from Linux
    OVER_VOLTAGE = auto()  # supply over-voltage seen by the board
    INTERNAL = auto()  # board self-test or firmware fault


@dataclass(frozen=True, slots=True)
class PilotStatus:
    """One status report from the board."""

    cp_state: CpState
    output: PilotOutput
    duty_pct: float  # PWM duty the board is driving (meaningful when output is PWM)
    pp_ampacity_a: float | None  # cable ampacity from the PP resistor; None: no/tethered cable
    contactor_permission: bool  # permission as the board currently holds it
    contactor_closed: bool  # mirror contacts: True = main contacts closed
    locked: bool
    faults: BoardFault
    temperature_c: float


class PilotBoard(Protocol):
    """Control-pilot / relay board.

    Commands may complete without suspending (a frame is written); they never
    wait for an acknowledgement on the safety path. ``read_status`` returns the
    next status report (the board sends one on every change and as a
    keep-alive at least every 100 ms).
    """

    async def open(self) -> None:
        """Open the link; raise :class:`hal.errors.HalInitError` on failure."""

    async def close(self) -> None:
        """Withdraw contactor permission and close the link. Idempotent."""

    async def read_status(self) -> PilotStatus:
        """Wait for the next status report from the board."""

    async def set_pwm(self, duty_pct: float) -> None:
        """Drive 1 kHz PWM with ``duty_pct`` (0 < duty < 100, 0.01 % steps)."""

    async def set_x1(self) -> None:
        """Drive constant +12 V (no PWM)."""

    async def set_state_f(self) -> None:
        """Drive constant -12 V (EVSE not available)."""

    async def set_contactor_permission(self, granted: bool) -> None:
        """Grant or withdraw permission to close the main contactors."""

    async def set_lock(self, locked: bool) -> None:
        """Lock or unlock the cable (socket outlets only)."""

    async def clear_faults(self) -> None:
        """Ask the board to clear latched faults whose condition has gone."""

    async def send_keepalive(self) -> None:
        """Tell the board that Linux is alive (call at least every 50 ms)."""
