"""A simulated electric vehicle on the far end of the charging cable.

It plays the EV side of IEC 61851-1 basic charging: it reads what the EVSE
drives on the control pilot (``plant.pilot_output`` / ``plant.duty_pct``) and
whether the main contactors are closed, closes S2 (state C, or D when it needs
ventilation), lets its on-board charger draw what the PWM allows, and stops on
its own when asked to or when full. The physics lives in the synchronous
:meth:`SimulatedEv.step`, so tests drive it with explicit time steps.

For DC / bidirectional charging an external ISO 15118 EV stack can use the
hooks :meth:`SimulatedEv.set_hlc_ready` and
:meth:`SimulatedEv.set_dc_contactor`; the battery then carries
``plant.dc_current_a`` whenever the EV's DC contactor is closed. For AC_BPT
:meth:`SimulatedEv.set_hlc_ac_current` sets a signed on-board charger current
(negative: the charger feeds energy back to the grid).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.sim.battery import Battery
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# PWM decoding (EV side, IEC 61851-1 Annex A)
# ---------------------------------------------------------------------------


class PilotMeaning(Enum):
    """What the EV concludes from the pilot signal."""

    NO_PWM = "no_pwm"  # X1, F, or a shorted line: no charging
    INVALID = "invalid"  # duty below 3 %
    DIGITAL = "digital"  # 3-7 %: digital communication required
    CURRENT = "current"  # a basic-charging current is offered
    NOT_ALLOWED = "not_allowed"  # 7-8 % or above 97 %


@dataclass(frozen=True, slots=True)
class PilotOffer:
    meaning: PilotMeaning
    current_a: float  # offered per-phase current; 0 unless meaning is CURRENT


def decode_duty(duty_pct: float) -> PilotOffer:
    """Map a PWM duty cycle to the current it offers, as an EV must read it."""
    if duty_pct < 3.0:
        return PilotOffer(PilotMeaning.INVALID, 0.0)
    if duty_pct <= 7.0:
        return PilotOffer(PilotMeaning.DIGITAL, 0.0)
    if duty_pct < 8.0:
        return PilotOffer(PilotMeaning.NOT_ALLOWED, 0.0)
    if duty_pct < 10.0:
        return PilotOffer(PilotMeaning.CURRENT, 6.0)
    if duty_pct <= 85.0:
        return PilotOffer(PilotMeaning.CURRENT, duty_pct * 0.6)
    if duty_pct <= 96.0:
        return PilotOffer(PilotMeaning.CURRENT, (duty_pct - 64.0) * 2.5)
    if duty_pct <= 97.0:
        return PilotOffer(PilotMeaning.CURRENT, 80.0)
    return PilotOffer(PilotMeaning.NOT_ALLOWED, 0.0)


def decode_pilot(output: PilotOutput, duty_pct: float, *, cp_shorted: bool = False) -> PilotOffer:
    """Decode what the EV sees on the CP line (a shorted line shows no signal)."""
    if cp_shorted or output is not PilotOutput.PWM:
        return PilotOffer(PilotMeaning.NO_PWM, 0.0)
    return decode_duty(duty_pct)


# ---------------------------------------------------------------------------
# The EV
# ---------------------------------------------------------------------------


class EvPhase(Enum):
    """Where the EV is in its charging sequence."""

    UNPLUGGED = "unplugged"  # state A
    CONNECTED = "connected"  # state B, S2 open
    CLOSING_S2 = "closing_s2"  # state B, valid PWM seen, about to close S2
    READY = "ready"  # state C/D, drawing what is allowed once contactors close
    STOPPING = "stopping"  # state C/D, ramping the charger down before opening S2


@dataclass(frozen=True, slots=True)
class EvState:
    """Snapshot of the EV for CLIs and tests."""

    plugged: bool
    phase: EvPhase
    cp_state: CpState
    soc_pct: float
    current_a: float  # AC per phase actually drawn (+ to the EV)
    requested_current_a: float  # what the EV would draw, ignoring the pilot
    offered_current_a: float  # what the pilot currently allows
    wants_energy: bool
    battery_voltage_v: float
    dc_contactor_closed: bool
    diode_fault: bool
    wants_ventilation: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (enums as their values)."""
        data = asdict(self)
        data["phase"] = self.phase.value
        data["cp_state"] = self.cp_state.value
        return data


class SimulatedEv:
    """EV state machine plus on-board charger; writes its side of the plant."""

    def __init__(
        self,
        plant: Plant,
        battery: Battery | None = None,
        *,
        onboard_charger_max_current_a: float = 16.0,
        phases: int = 3,
        wants_ventilation: bool = False,
        onboard_charger_efficiency: float = 0.93,
        ramp_up_a_per_s: float = 4.0,
        ramp_down_a_per_s: float = 10.0,
        s2_close_delay_s: float = 0.5,
        target_soc_pct: float = 100.0,
        cable_ampacity_a: int = 32,
    ) -> None:
        if onboard_charger_max_current_a < 0.0:
            raise ValueError("onboard_charger_max_current_a must be >= 0")
        if phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {phases}")
        if not 0.0 < onboard_charger_efficiency <= 1.0:
            raise ValueError("onboard_charger_efficiency must be in (0, 1]")
        if ramp_up_a_per_s <= 0.0 or ramp_down_a_per_s <= 0.0:
            raise ValueError("current ramps must be > 0")
        if s2_close_delay_s < 0.0:
            raise ValueError("s2_close_delay_s must be >= 0")
        if not 0.0 < target_soc_pct <= 100.0:
            raise ValueError("target_soc_pct must be in (0, 100]")
        self.plant = plant
        self.battery = battery if battery is not None else Battery()
        self.onboard_charger_max_current_a = onboard_charger_max_current_a
        self.phases = phases
        self.wants_ventilation = wants_ventilation
        self.onboard_charger_efficiency = onboard_charger_efficiency
        self.ramp_up_a_per_s = ramp_up_a_per_s
        self.ramp_down_a_per_s = ramp_down_a_per_s
        self.s2_close_delay_s = s2_close_delay_s
        self.target_soc_pct = target_soc_pct
        # IEC 61851-1 Table B.2: the PP resistor of a detachable cable (13/20/32/63 A)
        self.cable_ampacity_a = cable_ampacity_a

        self._phase = EvPhase.UNPLUGGED
        self._plugs = 0
        self._wants_energy = False
        self._diode_fault = False
        self._s2_timer_s = 0.0
        self._current_a = 0.0  # AC per phase drawn by the on-board charger
        self._offered_a = 0.0
        self._hlc_ready = False
        self._hlc_ac_current_limit_a = 0.0
        self._dc_contactor_closed = False
        self._write_plant()

    # -- commands ---------------------------------------------------------

    def plug(self) -> None:
        """Connect the cable (state B). Idempotent."""
        if self._phase is EvPhase.UNPLUGGED:
            _log.info("EV plugged in (SoC %.1f %%)", self.battery.soc_pct)
            self._plugs += 1
            self._enter(EvPhase.CONNECTED)
        self._write_plant()

    def unplug(self) -> None:
        """Pull the cable: state A, no current, DC path open. Idempotent."""
        if self._phase is not EvPhase.UNPLUGGED:
            _log.info("EV unplugged (SoC %.1f %%)", self.battery.soc_pct)
        self._enter(EvPhase.UNPLUGGED)
        self._current_a = 0.0
        self._offered_a = 0.0
        self._dc_contactor_closed = False
        self._hlc_ready = False
        self._write_plant()

    def request_energy(self) -> None:
        """The driver (or the EV's schedule) wants to charge."""
        self._wants_energy = True

    def stop(self) -> None:
        """EV-initiated stop: ramp the charger to 0 A, then open S2 (-> B)."""
        self._wants_energy = False

    def set_diode_fault(self, faulty: bool) -> None:
        """Simulate a missing/shorted CP diode (the EVSE must detect it)."""
        self._diode_fault = faulty
        self._write_plant()

    def short_cp(self, shorted: bool) -> None:
        """Short CP to PE; the EVSE then reads state E."""
        self.plant.inject_cp_short = shorted
        self._write_plant()

    def set_hlc_ready(self, ready: bool, *, ac_current_limit_a: float = 0.0) -> None:
        """Hook for an ISO 15118 EV stack: with 5 % PWM the EV closes S2 only
        once its high-level session allows it; AC current then follows
        ``ac_current_limit_a`` instead of the duty cycle."""
        if ac_current_limit_a < 0.0:
            raise ValueError("ac_current_limit_a must be >= 0")
        self._hlc_ready = ready
        self._hlc_ac_current_limit_a = ac_current_limit_a

    def set_hlc_ac_current(self, current_a: float) -> None:
        """Hook for an ISO 15118-20 AC_BPT stack: signed per-phase current the
        on-board charger runs at while the high-level session holds S2 closed
        (+ drawn, - fed back). Replaces ``ac_current_limit_a`` of
        :meth:`set_hlc_ready` (call it after that); the charger rating and the
        battery's charge/discharge limits still apply."""
        if not math.isfinite(current_a):
            raise ValueError(f"current_a must be finite, got {current_a}")
        self._hlc_ac_current_limit_a = current_a

    def set_dc_contactor(self, closed: bool) -> None:
        """Hook for an ISO 15118 EV stack: close/open the EV's DC contactors."""
        if closed and self._phase is EvPhase.UNPLUGGED:
            raise ValueError("cannot close the DC contactor of an unplugged EV")
        self._dc_contactor_closed = closed
        self._write_plant()

    # -- observation ------------------------------------------------------

    @property
    def phase(self) -> EvPhase:
        return self._phase

    @property
    def plugged(self) -> bool:
        return self._phase is not EvPhase.UNPLUGGED

    @property
    def plugs(self) -> int:
        """Plug-ins so far: a watcher that polls sees an unplug and plug-in between two
        of its polls as a changed count."""
        return self._plugs

    @property
    def wants_energy(self) -> bool:
        return self._wants_energy

    @property
    def current_a(self) -> float:
        return self._current_a

    @property
    def state(self) -> EvState:
        return EvState(
            plugged=self.plugged,
            phase=self._phase,
            cp_state=self.cp_state,
            soc_pct=self.battery.soc_pct,
            current_a=self._current_a,
            requested_current_a=self._requested_current_a(),
            offered_current_a=self._offered_a,
            wants_energy=self._wants_energy,
            battery_voltage_v=self.plant.battery_voltage_v,
            dc_contactor_closed=self._dc_contactor_closed,
            diode_fault=self._diode_fault,
            wants_ventilation=self.wants_ventilation,
        )

    @property
    def cp_state(self) -> CpState:
        """The CP state the line shows because of this EV (E when shorted)."""
        if self.plant.inject_cp_short:
            return CpState.E
        if self._phase is EvPhase.UNPLUGGED:
            return CpState.A
        if self._phase in (EvPhase.CONNECTED, EvPhase.CLOSING_S2):
            return CpState.B
        return CpState.D if self.wants_ventilation else CpState.C

    # -- physics ----------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance the EV by ``dt_s`` seconds."""
        if dt_s < 0.0:
            raise ValueError(f"dt_s must be >= 0, got {dt_s}")
        if self._phase is EvPhase.UNPLUGGED:
            self._current_a = 0.0
            self.battery.step(0.0, dt_s)
            self._write_plant()
            return

        if self._wants_energy and self.battery.soc_pct >= self.target_soc_pct:
            _log.info("EV full (SoC %.1f %%), stopping", self.battery.soc_pct)
            self._wants_energy = False

        offer = decode_pilot(
            self.plant.pilot_output, self.plant.duty_pct, cp_shorted=self.plant.inject_cp_short
        )
        self._offered_a = self._offered_current_a(offer)
        may_charge = self._offer_is_valid(offer)

        self._advance_sequence(may_charge, dt_s)
        self._advance_charger(dt_s)

        battery_current_a = self._battery_current_from_ac_a()
        if self._dc_contactor_closed:
            battery_current_a += self.plant.dc_current_a
        self.battery.step(battery_current_a, dt_s)
        self._write_plant()

    def _advance_sequence(self, may_charge: bool, dt_s: float) -> None:
        """The CP sequence: B -> (delay) -> C/D -> ramp down -> B."""
        phase = self._phase
        if phase is EvPhase.CONNECTED:
            if self._wants_energy and may_charge:
                self._s2_timer_s = 0.0
                self._enter(EvPhase.CLOSING_S2)
                self._advance_sequence(may_charge, dt_s)
        elif phase is EvPhase.CLOSING_S2:
            if not (self._wants_energy and may_charge):
                self._enter(EvPhase.CONNECTED)
                return
            self._s2_timer_s += dt_s
            if self._s2_timer_s >= self.s2_close_delay_s:
                self._enter(EvPhase.READY)
        elif phase is EvPhase.READY:
            if not (self._wants_energy and may_charge):
                self._enter(EvPhase.STOPPING)
        elif phase is EvPhase.STOPPING and self._current_a == 0.0:
            self._enter(EvPhase.CONNECTED)

    def _advance_charger(self, dt_s: float) -> None:
        """Ramp the on-board charger towards its target; no supply, no current."""
        if not self.plant.contactor_closed:
            self._current_a = 0.0
            return
        target_a = 0.0
        if self._phase is EvPhase.READY:
            target_a = min(self._offered_a, self._requested_current_a())
            if target_a < 0.0:  # AC_BPT: feeding back (set_hlc_ac_current)
                target_a = max(target_a, -self._feed_back_limit_a())
        if target_a > self._current_a and self._current_a < 0.0:
            # AC_BPT: feeding back less is a ramp down (to 0 A first), not a ramp up
            step_a = self.ramp_down_a_per_s * dt_s
            self._current_a = min(target_a, 0.0, self._current_a + step_a)
        elif target_a > self._current_a:
            self._current_a = min(target_a, self._current_a + self.ramp_up_a_per_s * dt_s)
        else:
            self._current_a = max(target_a, self._current_a - self.ramp_down_a_per_s * dt_s)

    # -- helpers ----------------------------------------------------------

    def _enter(self, phase: EvPhase) -> None:
        if phase is not self._phase:
            _log.debug("EV %s -> %s", self._phase.value, phase.value)
            self._phase = phase

    def _offer_is_valid(self, offer: PilotOffer) -> bool:
        if offer.meaning is PilotMeaning.CURRENT:
            return True
        return offer.meaning is PilotMeaning.DIGITAL and self._hlc_ready

    def _offered_current_a(self, offer: PilotOffer) -> float:
        if offer.meaning is PilotMeaning.DIGITAL and self._hlc_ready:
            return self._hlc_ac_current_limit_a
        return offer.current_a

    def _effective_phases(self) -> int:
        return max(1, min(self.phases, self.plant.phases))

    def _requested_current_a(self) -> float:
        """Per-phase AC current the EV wants: charger rating, capped by the BMS."""
        if not self._wants_energy:
            return 0.0
        ac_power_limit_w = self.battery.charge_power_limit_w() / self.onboard_charger_efficiency
        grid_w_per_a = self.plant.grid_voltage_v * self._effective_phases()
        bms_limit_a = ac_power_limit_w / grid_w_per_a if grid_w_per_a > 0.0 else 0.0
        return min(self.onboard_charger_max_current_a, bms_limit_a)

    def _feed_back_limit_a(self) -> float:
        """Per-phase AC current the charger may feed back: rating and BMS discharge limit."""
        grid_w_per_a = self.plant.grid_voltage_v * self._effective_phases()
        if grid_w_per_a <= 0.0:
            return 0.0
        bms_w = self.battery.discharge_power_limit_w() * self.onboard_charger_efficiency
        return min(self.onboard_charger_max_current_a, bms_w / grid_w_per_a)

    def _battery_current_from_ac_a(self) -> float:
        if self._current_a == 0.0:
            return 0.0
        ac_power_w = self.plant.grid_voltage_v * self._current_a * self._effective_phases()
        eff = self.onboard_charger_efficiency
        # charging: losses come off what reaches the battery; feeding back: on top of it
        battery_w = ac_power_w * eff if ac_power_w > 0.0 else ac_power_w / eff
        return self.battery.current_for_power_a(battery_w)

    def _write_plant(self) -> None:
        plant = self.plant
        plant.ev_cp_state = self.cp_state
        plant.ev_diode_ok = not self._diode_fault
        plant.ac_current_a = self._current_a
        plant.ev_phases = self.phases
        plant.pp_ampacity_a = 0 if self._phase is EvPhase.UNPLUGGED else self.cable_ampacity_a
        plant.ev_dc_contactor_closed = self._dc_contactor_closed
        if self._phase is EvPhase.UNPLUGGED:
            plant.battery_voltage_v = 0.0
        else:
            plant.battery_voltage_v = self.battery.terminal_voltage_v(self.battery.current_a)
