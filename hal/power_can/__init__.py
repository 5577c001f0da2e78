"""Bidirectional DC power module on CAN: codec, driver, simulator, slcan gateway.

The protocol is specified in ``docs/power-stage-can.md``. The simulator and the
slcan server are imported from their own modules so that production code that
only needs the driver does not pull them in.
"""

from __future__ import annotations

from hal.power_can.codec import (
    ByteOrder,
    CodecError,
    Frame,
    FrameCatalog,
    FrameLengthError,
    FunctionCode,
    Signal,
    SignalError,
    SignalRangeError,
    UnknownFrameError,
    power_module_frames,
)
from hal.power_can.driver import CanPowerStage

__all__ = [
    "ByteOrder",
    "CanPowerStage",
    "CodecError",
    "Frame",
    "FrameCatalog",
    "FrameLengthError",
    "FunctionCode",
    "Signal",
    "SignalError",
    "SignalRangeError",
    "UnknownFrameError",
    "power_module_frames",
]
