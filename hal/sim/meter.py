"""Simulated energy meter at the EVSE output.

The registers are the exact rectangle-rule integral of the plant's power, so a
test can compare energy totals to the last floating-point bit. Only the
displayed voltage may carry measurement noise, because controllers must not
depend on a perfectly clean voltage reading.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Literal

from hal.errors import HalOperationError
from hal.meter import MeterReading
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)

MeterPath = Literal["ac", "dc"]


class SimulatedMeter:
    """Implements :class:`hal.meter.Meter` against a :class:`Plant`."""

    def __init__(
        self,
        plant: Plant,
        path: MeterPath = "ac",
        *,
        voltage_noise_v: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if path not in ("ac", "dc"):
            raise ValueError(f"path must be 'ac' or 'dc', got {path!r}")
        if voltage_noise_v < 0.0:
            raise ValueError("voltage_noise_v must be >= 0")
        self.plant = plant
        self.path: MeterPath = path
        self.voltage_noise_v = voltage_noise_v
        self._rng = random.Random(seed)
        self._import_wh = 0.0
        self._export_wh = 0.0
        self._open = False

    # -- physics ----------------------------------------------------------

    def power_w(self) -> float:
        """Signed power through the meter now (+ to the EV)."""
        return self.plant.ac_power_w if self.path == "ac" else self.plant.dc_power_w

    def integrate(self, dt_s: float) -> None:
        """Add the energy of the present power over ``dt_s`` to the registers."""
        if dt_s < 0.0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        energy_wh = self.power_w() * dt_s / 3600.0
        if energy_wh > 0.0:
            self._import_wh += energy_wh
        elif energy_wh < 0.0:
            self._export_wh -= energy_wh

    @property
    def import_energy_wh(self) -> float:
        return self._import_wh

    @property
    def export_energy_wh(self) -> float:
        return self._export_wh

    def snapshot(self) -> MeterReading:
        """The reading the device would return now (no I/O, no open check)."""
        plant = self.plant
        if self.path == "ac":
            live = plant.contactor_closed
            voltage_v = plant.grid_voltage_v if live else 0.0
            current_a = plant.ac_current_a if live else 0.0
        else:
            voltage_v = plant.dc_voltage_v
            current_a = plant.dc_current_a
        if self.voltage_noise_v > 0.0 and voltage_v != 0.0:
            voltage_v += self._rng.gauss(0.0, self.voltage_noise_v)
        return MeterReading(
            import_energy_wh=self._import_wh,
            export_energy_wh=self._export_wh,
            power_w=self.power_w(),
            voltage_v=voltage_v,
            current_a=current_a,
        )

    # -- hal.meter.Meter --------------------------------------------------

    async def open(self) -> None:
        if not self._open:
            _log.debug("simulated %s meter opened", self.path)
        self._open = True

    async def close(self) -> None:
        """Idempotent."""
        self._open = False

    async def read(self) -> MeterReading:
        """Read the registers now."""
        if not self._open:
            raise HalOperationError("simulated meter is not open")
        await asyncio.sleep(0)  # a real read is I/O; let other tasks run
        return self.snapshot()
