"""Pilot/relay board over a framed serial protocol (docs/pilot-board-protocol.md).

:mod:`.frames` is the sans-I/O codec, :mod:`.driver` the real
:class:`hal.pilot.PilotBoard`, :mod:`.simulated` the board firmware simulated on
the far side of the same wire.
"""

from __future__ import annotations

from hal.pilot_serial.driver import PilotLinkStats, SerialPilotBoard
from hal.pilot_serial.frames import FrameDecoder, encode_frame
from hal.pilot_serial.simulated import BoardTiming, SimulatedPilotBoard, open_pty_pair

__all__ = [
    "BoardTiming",
    "FrameDecoder",
    "PilotLinkStats",
    "SerialPilotBoard",
    "SimulatedPilotBoard",
    "encode_frame",
    "open_pty_pair",
]
