"""One simulated EVSE installation: plant, EV, meter and isolation monitor.

The world owns the order in which the physics is advanced (drivers of the
plant first, then the EV, then the instruments that observe the result) and
translates the external ``chargepoint sim ...`` commands into calls on the
simulated devices.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from hal.sim.ev import SimulatedEv
from hal.sim.isolation import SimulatedIsolationMonitor
from hal.sim.meter import SimulatedMeter
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)

# Isolation resistance that `fault isolation on` puts on the DC path: well
# below the 100 ohm/V fault threshold of IEC 61851-23 for any DC voltage.
ISOLATION_FAULT_OHM = 20_000.0

FAULT_NAMES: tuple[str, ...] = (
    "diode",
    "cp-short",
    "rcd-ac",
    "rcd-dc",
    "over-temperature",
    "weld",
    "board-silent",
    "isolation",
    "imd",
)

COMMAND_NAMES: tuple[str, ...] = (
    "plug",
    "unplug",
    "start",
    "stop",
    "fault",
    "soc",
    "status",
    "hlc",
)


class SimCommandError(ValueError):
    """An external sim command was unknown or had bad arguments."""


class SimWorld:
    """Steps the devices of one EVSE in a fixed order and serves sim commands."""

    def __init__(
        self,
        plant: Plant | None = None,
        *,
        ev: SimulatedEv | None = None,
        meter: SimulatedMeter | None = None,
        isolation: SimulatedIsolationMonitor | None = None,
        max_step_s: float = 0.1,
    ) -> None:
        if plant is None:
            plant = ev.plant if ev is not None else Plant()
        for name, device in (("ev", ev), ("meter", meter), ("isolation", isolation)):
            if device is not None and device.plant is not plant:
                raise ValueError(f"{name} is attached to a different Plant")
        if max_step_s <= 0.0:
            raise ValueError("max_step_s must be > 0")
        self.plant = plant
        self.ev = ev if ev is not None else SimulatedEv(plant)
        self.meter = meter if meter is not None else SimulatedMeter(plant)
        self.isolation = isolation if isolation is not None else SimulatedIsolationMonitor(plant)
        self.max_step_s = max_step_s
        self.time_s = 0.0
        self._drivers: list[Callable[[float], None]] = []
        self._nominal_isolation_ohm = plant.isolation_resistance_ohm
        self._isolation_fault = False

    def add_driver(self, step: Callable[[float], None]) -> None:
        """Step another device (e.g. a power module model) before the EV, so
        the EV and the instruments see what it drives in the same tick."""
        self._drivers.append(step)

    # -- physics ----------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance everything by ``dt_s``: drivers, EV, meter, isolation monitor."""
        if dt_s < 0.0 or math.isnan(dt_s):
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        for driver in self._drivers:
            driver(dt_s)
        self.ev.step(dt_s)
        self.meter.integrate(dt_s)
        self.isolation.step(dt_s)
        self.time_s += dt_s

    def advance(self, duration_s: float) -> None:
        """Step through ``duration_s`` in pieces no longer than ``max_step_s``."""
        remaining_s = duration_s
        while remaining_s > 1e-12:
            dt_s = min(remaining_s, self.max_step_s)
            self.step(dt_s)
            remaining_s -= dt_s

    async def run(self, period_s: float = 0.01) -> None:
        """Step with the event loop's clock until cancelled.

        Uses the measured elapsed time, so a late wake-up does not slow the
        simulated physics down; a long stall is split into ``max_step_s`` steps.
        """
        if period_s <= 0.0:
            raise ValueError("period_s must be > 0")
        loop = asyncio.get_running_loop()
        last_s = loop.time()
        while True:
            await asyncio.sleep(period_s)
            now_s = loop.time()
            self.advance(now_s - last_s)
            last_s = now_s

    # -- external commands ------------------------------------------------

    def sim_command(self, name: str, args: list[str]) -> dict[str, Any]:
        """Run one ``chargepoint sim`` command; return a JSON-able result."""
        if name == "plug":
            # A car plugged in wants to charge unless told otherwise ("plug idle").
            if args not in ([], ["idle"]):
                raise SimCommandError("usage: plug [idle]")
            self.ev.plug()
            if not args:
                self.ev.request_energy()
        elif name == "unplug":
            _no_args(name, args)
            self.ev.unplug()
        elif name == "start":
            _no_args(name, args)
            self.ev.request_energy()
        elif name == "stop":
            _no_args(name, args)
            self.ev.stop()
        elif name == "fault":
            self._fault_command(args)
        elif name == "soc":
            self._soc_command(args)
        elif name == "hlc":
            self._hlc_command(args)
        elif name == "status":
            _no_args(name, args)
        else:
            raise SimCommandError(
                f"unknown sim command {name!r}; expected one of: {', '.join(COMMAND_NAMES)}"
            )
        _log.info("sim command: %s %s", name, " ".join(args))
        return {"command": name, "args": list(args), "status": self.status()}

    def _fault_command(self, args: list[str]) -> None:
        if not args or len(args) > 2:
            raise SimCommandError(f"usage: fault <{'|'.join(FAULT_NAMES)}> [on|off]")
        kind = args[0]
        if kind not in FAULT_NAMES:
            raise SimCommandError(
                f"unknown fault {kind!r}; expected one of: {', '.join(FAULT_NAMES)}"
            )
        switch = args[1] if len(args) == 2 else "on"
        if switch not in ("on", "off"):
            raise SimCommandError(f"fault switch must be 'on' or 'off', got {switch!r}")
        self.set_fault(kind, switch == "on")

    def _soc_command(self, args: list[str]) -> None:
        if len(args) != 1:
            raise SimCommandError("usage: soc <pct>")
        try:
            soc_pct = float(args[0])
        except ValueError:
            raise SimCommandError(f"soc must be a number, got {args[0]!r}") from None
        if not 0.0 <= soc_pct <= 100.0:  # also rejects nan
            raise SimCommandError(f"soc must be within 0..100, got {args[0]}")
        self.ev.battery.soc_pct = soc_pct

    def _hlc_command(self, args: list[str]) -> None:
        """An external ISO 15118 EVCC's hooks on the EV (benchmarks, interop): ``hlc s2 on``
        closes S2 at 5 % PWM, ``hlc contactor on|off`` the EV's DC contactor."""
        usage = "usage: hlc s2|contactor on|off"
        if len(args) != 2 or args[0] not in ("s2", "contactor") or args[1] not in ("on", "off"):
            raise SimCommandError(usage)
        on = args[1] == "on"
        if args[0] == "s2":  # as hal/sim/evcc/car.py does for its session
            self.ev.set_hlc_ready(on)
            if on:
                self.ev.request_energy()
            else:
                self.ev.stop()
        elif on and not self.ev.plugged:
            raise SimCommandError("hlc contactor on: the EV is not plugged in")
        else:
            self.ev.set_dc_contactor(on)

    def set_fault(self, kind: str, on: bool) -> None:
        """Switch one injected fault on or off (names as in :data:`FAULT_NAMES`)."""
        plant = self.plant
        if kind == "diode":
            self.ev.set_diode_fault(on)
        elif kind == "cp-short":
            self.ev.short_cp(on)
        elif kind == "rcd-ac":
            plant.inject_rcd_ac = on
        elif kind == "rcd-dc":
            plant.inject_rcd_dc = on
        elif kind == "over-temperature":
            plant.inject_over_temperature = on
        elif kind == "weld":
            plant.inject_contactor_weld = on
        elif kind == "board-silent":
            plant.inject_board_silent = on
        elif kind == "isolation":
            if on and not self._isolation_fault:
                self._nominal_isolation_ohm = plant.isolation_resistance_ohm
            plant.isolation_resistance_ohm = (
                ISOLATION_FAULT_OHM if on else self._nominal_isolation_ohm
            )
            self._isolation_fault = on
        elif kind == "imd":
            self.isolation.inject_device_fault(on)
        else:
            raise SimCommandError(
                f"unknown fault {kind!r}; expected one of: {', '.join(FAULT_NAMES)}"
            )

    def faults(self) -> dict[str, bool]:
        plant = self.plant
        return {
            "diode": not plant.ev_diode_ok,
            "cp-short": plant.inject_cp_short,
            "rcd-ac": plant.inject_rcd_ac,
            "rcd-dc": plant.inject_rcd_dc,
            "over-temperature": plant.inject_over_temperature,
            "weld": plant.inject_contactor_weld,
            "board-silent": plant.inject_board_silent,
            "isolation": self._isolation_fault,
            "imd": self.isolation.device_fault,
        }

    def status(self) -> dict[str, Any]:
        """Everything a CLI user wants to see, as plain JSON types."""
        plant = self.plant
        imd = self.isolation.latest
        return {
            "time_s": self.time_s,
            "ev": self.ev.state.to_dict(),
            "pilot": {"output": plant.pilot_output.value, "duty_pct": plant.duty_pct},
            "cp_state": plant.ev_cp_state.value,
            "contactor_closed": plant.contactor_closed,
            "locked": plant.locked,
            "ac": {
                "voltage_v": plant.grid_voltage_v,
                "current_a": plant.ac_current_a,
                "power_w": plant.ac_power_w,
            },
            "dc": {
                "voltage_v": plant.dc_voltage_v,
                "current_a": plant.dc_current_a,
                "power_w": plant.dc_power_w,
            },
            "meter": {
                "path": self.meter.path,
                "import_energy_wh": self.meter.import_energy_wh,
                "export_energy_wh": self.meter.export_energy_wh,
            },
            "isolation": {
                "measuring": self.isolation.measuring,
                "resistance_ohm": imd.resistance_ohm,
                "device_fault": imd.device_fault,
                "plant_resistance_ohm": plant.isolation_resistance_ohm,
            },
            "faults": self.faults(),
            "temperature_c": plant.temperature_c,
        }


def _no_args(name: str, args: list[str]) -> None:
    if args:
        raise SimCommandError(f"{name} takes no arguments, got {' '.join(args)!r}")
