"""Energy meter at the EVSE output.

Import register = energy delivered to the EV, export register = energy taken
from the EV (ISO 15118-20 sign convention, [V2G20-1034]); both only increase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MeterReading:
    import_energy_wh: float  # to the EV, monotonic
    export_energy_wh: float  # from the EV, monotonic
    power_w: float  # signed: + to the EV
    voltage_v: float  # RMS line-neutral (AC) or DC voltage
    current_a: float  # signed: + to the EV (AC: per phase)


class Meter(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None:
        """Idempotent."""

    async def read(self) -> MeterReading:
        """Read the registers now."""
