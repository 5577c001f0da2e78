"""Insulation monitoring device (IMD) for the DC output (IEC 61557-8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IsolationReading:
    resistance_ohm: float | None  # None: not measuring (stopped, or settling)
    voltage_v: float  # DC voltage seen by the IMD
    device_fault: bool  # self-test failed or device error


class IsolationMonitor(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None:
        """Idempotent."""

    async def start(self) -> None:
        """Start measuring (cable check)."""

    async def stop(self) -> None: ...

    async def self_test(self) -> bool:
        """Run the device self-test; True when it passed."""

    async def read(self) -> IsolationReading:
        """Wait for the next measurement."""
