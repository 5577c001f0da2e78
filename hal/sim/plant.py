"""The shared physics of a simulated installation.

One :class:`Plant` per EVSE. It is a plain mutable record: each simulated device
writes the quantities it physically controls and reads the others. Everything
runs on one event loop, so no locking is needed. Who writes what:

* simulated pilot board: ``pilot_output``, ``duty_pct``, ``contactor_closed``, ``locked``
* simulated EV: ``ev_cp_state``, ``ev_diode_ok``, ``pp_ampacity_a``, ``ac_current_a`` (what its
  on-board charger draws) and ``ev_phases``, ``battery_voltage_v``,
  ``ev_dc_contactor_closed``
* simulated DC power module: ``dc_voltage_v``, ``dc_current_a``
* fault injection (tests, ``chargepoint sim fault``): the ``inject_*`` fields
"""

from __future__ import annotations

from dataclasses import dataclass

from chargepoint.iec61851.cp_state import CpState, PilotOutput


@dataclass
class Plant:
    # grid / installation
    grid_voltage_v: float = 230.0  # line-neutral RMS
    phases: int = 3
    # CP line, EVSE side
    pilot_output: PilotOutput = PilotOutput.X1
    duty_pct: float = 100.0
    # CP line, EV side
    ev_cp_state: CpState = CpState.A
    ev_diode_ok: bool = True
    # the plugged cable's ampacity as its PP resistor codes it (0: none / tethered)
    pp_ampacity_a: int = 0
    # main contactors (AC) / DC output contactors, as the board drives them
    contactor_closed: bool = False
    locked: bool = False
    # AC path: current per phase drawn (+) or fed back (-) by the EV, on how many phases
    ac_current_a: float = 0.0
    ev_phases: int = 3
    # DC path
    dc_voltage_v: float = 0.0  # at the EVSE output
    dc_current_a: float = 0.0  # + to the EV
    battery_voltage_v: float = 0.0  # EV battery terminal voltage (0: not plugged)
    ev_dc_contactor_closed: bool = False
    # insulation of the DC path (ohm), as an ideal IMD would measure it
    isolation_resistance_ohm: float = 5.0e6
    # fault injection
    inject_cp_short: bool = False  # CP shorted to PE -> state E
    inject_rcd_ac: bool = False
    inject_rcd_dc: bool = False
    inject_over_temperature: bool = False
    inject_contactor_weld: bool = False
    inject_board_silent: bool = False  # board stops sending (keep-alive loss)
    temperature_c: float = 25.0

    @property
    def ac_power_w(self) -> float:
        """Active power to the EV on the AC path (0 unless contactors are closed)."""
        if not self.contactor_closed:
            return 0.0
        return self.grid_voltage_v * self.ac_current_a * min(self.phases, self.ev_phases)

    @property
    def dc_power_w(self) -> float:
        return self.dc_voltage_v * self.dc_current_a
