"""Bidirectional DC power stage (AC/DC converter module).

Sign convention (ISO 15118-20 [V2G20-1034]): positive current and power flow to
the EV. ``EXPORT`` mode charges the EV, ``IMPORT`` mode takes energy from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, Flag, auto
from typing import Protocol


class PowerMode(Enum):
    OFF = "off"
    EXPORT = "export"  # energy to the EV (charging)
    IMPORT = "import"  # energy from the EV (discharging, V2G)


class PowerStageFault(Flag):
    NONE = 0
    OVER_VOLTAGE = auto()
    OVER_CURRENT = auto()
    OVER_TEMPERATURE = auto()
    INPUT_UNDER_VOLTAGE = auto()  # grid side
    SHORT_CIRCUIT = auto()
    INTERNAL = auto()
    COMMUNICATION = auto()  # module lost our set-points (its own keep-alive)


@dataclass(frozen=True, slots=True)
class PowerStageCapabilities:
    min_voltage_v: float
    max_voltage_v: float
    max_export_current_a: float
    max_export_power_w: float
    max_import_current_a: float  # magnitude; 0 when not bidirectional
    max_import_power_w: float  # magnitude; 0 when not bidirectional
    bidirectional: bool


@dataclass(frozen=True, slots=True)
class PowerStageStatus:
    mode: PowerMode
    voltage_v: float
    current_a: float  # signed: + to the EV, - from the EV
    temperature_c: float
    faults: PowerStageFault

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a


class PowerStage(Protocol):
    async def open(self) -> None:
        """Open the bus and identify the module; HalInitError on failure."""

    async def close(self) -> None:
        """Switch off (best effort) and release the bus. Idempotent."""

    async def capabilities(self) -> PowerStageCapabilities: ...

    async def set_export_limits(self, voltage_v: float, current_a: float, power_w: float) -> None:
        """Target voltage and current/power limits while charging (all >= 0)."""

    async def set_import_limits(self, voltage_v: float, current_a: float, power_w: float) -> None:
        """Discharge: lowest allowed voltage and current/power magnitudes (all >= 0)."""

    async def set_mode(self, mode: PowerMode) -> None:
        """Change mode. ``OFF`` returns only once |current| is below the safe
        threshold; raises :class:`hal.errors.HalTimeoutError` if it is not."""

    async def read_status(self) -> PowerStageStatus:
        """Wait for the next status report from the module."""
