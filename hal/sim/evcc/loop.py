"""The charge loop of the simulated EVCC (pure): its own targets, what it allows, winding down.

* Dynamic mode: the car reports its limits and energy requests every loop and
  follows the SECC (DC: the EVSE present current; AC: ``EVSETargetActivePower``,
  signed, negative = discharge), clamped to its own limits.
* Scheduled mode: the car sets its own target within the chosen ScheduleTuple
  (DC: ``EVTargetCurrent``, negative to discharge; AC: its on-board charger).
* Every response is checked against what the car allowed within the last
  ``limit_grace_s`` (:class:`~hal.sim.evcc.targets.RecentMax`): discharge
  current or power without a BPT service or without the car's consent, or more
  than it allowed, is a :class:`CarError`.
* Ending (driver stop/pause, target SoC, loop limit, schedule end, EVSE
  notification): the car keeps looping with zero limits until the power is 0
  (or ``wind_down_max_s``), then the session sends PowerDelivery(Stop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chargepoint.iso15118.messages import iso20 as m
from hal.sim.evcc import requests as rq
from hal.sim.evcc.checks import (
    EvseLimits,
    check_inlet_match,
    check_present_voltage,
    check_signed,
    loop_mode,
    updated_limits,
)
from hal.sim.evcc.errors import CarError
from hal.sim.evcc.numbers import optional_value, value_of
from hal.sim.evcc.outcome import Action, EndReason, SetAcPower
from hal.sim.evcc.profile import CarControls, CarProfile, EvMeasurements
from hal.sim.evcc.schedule import ScheduleTupleInfo
from hal.sim.evcc.targets import (
    Limits,
    RecentMax,
    ac_limits,
    dc_limits,
    energy_requests,
    wants_discharge,
)

_log = logging.getLogger(__name__)

_WIND_DOWN_CURRENT_A = 2.0
_WIND_DOWN_POWER_W = 100.0


@dataclass(slots=True)
class StopIntent:
    reason: EndReason
    pause: bool
    since: float
    loops: int = 0  # wind-down loops answered so far
    asked: bool = False  # a wind-down request went out


class ChargeLoop:
    """State of the charge loop of one session (built at PowerDelivery(Start))."""

    def __init__(
        self,
        profile: CarProfile,
        controls: CarControls,
        *,
        dc: bool,
        bpt: bool,
        evse_limits: EvseLimits,
        schedule: ScheduleTupleInfo | None,
        schedule_t0: float,
        emit: Callable[[Action], None],
    ) -> None:
        self.profile = profile
        self.controls = controls
        self.dc = dc
        self.bpt = bpt
        self.evse_limits = evse_limits
        self.schedule = schedule
        self.schedule_t0 = schedule_t0
        self._emit = emit
        self._charge_allow = RecentMax(profile.limit_grace_s)  # A (DC) or W (AC)
        self._discharge_allow = RecentMax(profile.limit_grace_s)
        self.stop: StopIntent | None = None
        self.loops = 0
        self.evse_present_voltage_v: float | None = None
        self.evse_present_current_a: float | None = None
        self.evse_target_power_w: float | None = None
        self.ev_target_current_a: float | None = None
        self.ac_setpoint_w: float | None = None

    @property
    def response_name(self) -> str:
        return "DC_ChargeLoopRes" if self.dc else "AC_ChargeLoopRes"

    def set_ac_power(self, power_w: float) -> None:
        if power_w != self.ac_setpoint_w:
            self.ac_setpoint_w = power_w
            self._emit(SetAcPower(power_w))

    # -- requests

    def request(
        self,
        now: float,
        ev: EvMeasurements,
        hdr: m.MessageHeader,
        *,
        departure_s: int | None,
        target_soc: float,
    ) -> m.DC_ChargeLoopReq | m.AC_ChargeLoopReq:
        winding = self.stop is not None
        if self.stop is not None:
            self.stop.asked = True
        if self.dc:
            lim = dc_limits(ev, self.profile, self.controls, bpt=self.bpt, winding_down=winding)
        else:
            lim = ac_limits(ev, self.controls, bpt=self.bpt, winding_down=winding)
        target_a = self._allow(now, ev, lim, winding)
        inputs = rq.LoopInputs(
            hdr=hdr,
            ev=ev,
            controls=self.controls,
            profile=self.profile,
            bpt=self.bpt,
            limits=lim,
            energy=energy_requests(ev, self.controls),
            winding_down=winding,
            departure_s=departure_s,
            target_soc=target_soc,
            target_current_a=target_a,
        )
        return rq.dc_charge_loop_req(inputs) if self.dc else rq.ac_charge_loop_req(inputs)

    def _allow(self, now: float, ev: EvMeasurements, lim: Limits, winding: bool) -> float:
        """Record what this request allows; set the car's own targets. Returns the DC
        Scheduled target current (0 otherwise)."""
        scheduled_w = self._scheduled_power_w(now, lim)
        if self.dc and scheduled_w is not None:
            evse = self.evse_limits
            target_a = max(
                -min(lim.discharge_current_a, evse.max_discharge_current_a),
                min(
                    scheduled_w / max(ev.battery_voltage_v, 1.0),
                    lim.charge_current_a,
                    evse.max_charge_current_a,
                ),
            )
            self.ev_target_current_a = target_a
            self._charge_allow.add(now, max(0.0, target_a))
            self._discharge_allow.add(now, max(0.0, -target_a))
            return target_a
        if self.dc:
            self._charge_allow.add(now, lim.charge_current_a)
            self._discharge_allow.add(now, lim.discharge_current_a)
            return 0.0
        self._charge_allow.add(now, lim.charge_power_w)
        self._discharge_allow.add(now, lim.discharge_power_w)
        if winding:
            self.set_ac_power(0.0)
        elif scheduled_w is not None:
            self.set_ac_power(scheduled_w)  # Scheduled AC: the car's own target
        return 0.0

    def _scheduled_power_w(self, now: float, lim: Limits) -> float | None:
        """Scheduled mode: the car's power target within the chosen tuple (+ to the EV)."""
        tup = self.schedule
        if tup is None:
            return None
        t = now - self.schedule_t0
        evse = self.evse_limits
        if lim.discharge_power_w > 0 and tup.can_discharge:
            return -min(tup.discharge_power_w(t), lim.discharge_power_w, evse.max_discharge_power_w)
        return min(tup.charge_power_w(t), lim.charge_power_w, evse.max_charge_power_w)

    # -- responses

    def on_response(self, res: Any, now: float, ev: EvMeasurements) -> Any:
        """Check a loop response; returns its control-mode element."""
        dynamic = self.profile.control_mode == "dynamic"
        msg = self.response_name
        mode, xsd = loop_mode(res, msg, dc=self.dc, bpt=self.bpt, dynamic=dynamic)
        if self.dc:
            self._on_dc(res, mode, xsd, now, ev)
        else:
            self._on_ac(mode, xsd, now, ev, dynamic)
        self.loops += 1
        if self.stop is not None and self.stop.asked:
            self.stop.loops += 1
        return mode

    def _on_dc(
        self, res: m.DC_ChargeLoopRes, mode: Any, xsd: str, now: float, ev: EvMeasurements
    ) -> None:
        msg = self.response_name
        voltage = value_of(res.evse_present_voltage, msg, "EVSEPresentVoltage")
        current = value_of(res.evse_present_current, msg, "EVSEPresentCurrent")
        self.evse_limits = updated_limits(self.evse_limits, mode, msg, xsd)
        self.evse_present_voltage_v, self.evse_present_current_a = voltage, current
        check_present_voltage(msg, voltage, self.evse_limits, ev.max_voltage_v)
        tolerance = self.profile.voltage_mismatch_tolerance_v
        check_inlet_match(msg, voltage, ev.inlet_voltage_v, tolerance)
        allowed, allowed_back = self._charge_allow.value(now), self._discharge_allow.value(now)
        check_signed(
            msg, "EVSEPresentCurrent", current, allowed, allowed_back, bpt=self.bpt, unit="A"
        )

    def _on_ac(self, mode: Any, xsd: str, now: float, ev: EvMeasurements, dynamic: bool) -> None:
        msg, field = self.response_name, f"{xsd}.EVSETargetActivePower"
        target = optional_value(mode.evse_target_active_power, msg, field)
        self.evse_target_power_w = target
        if target is not None:
            allowed, allowed_back = self._charge_allow.value(now), self._discharge_allow.value(now)
            check_signed(msg, field, target, allowed, allowed_back, bpt=self.bpt, unit="W")
        if not dynamic:
            return
        if target is None:
            raise CarError(msg, field, "missing in Dynamic mode")
        if self.stop is None:  # Dynamic: the on-board charger follows the EVSE
            lim = ac_limits(ev, self.controls, bpt=self.bpt, winding_down=False)
            self.set_ac_power(max(-lim.discharge_power_w, min(lim.charge_power_w, target)))

    # -- ending

    def check_end(self, now: float, ev: EvMeasurements, target_soc: float) -> None:
        """Start winding down when the driver, the battery or the schedule says so."""
        if self.stop is not None:
            return
        controls, pause = self.controls, False
        reason: EndReason | None = None
        if controls.stop:
            reason = EndReason.STOPPED
        elif controls.pause:
            reason, pause = EndReason.PAUSED, True
        elif controls.stop_after_loops is not None and self.loops >= controls.stop_after_loops:
            reason = EndReason.LOOP_LIMIT
        elif not wants_discharge(controls, self.bpt) and ev.soc_pct >= target_soc:
            reason = EndReason.TARGET_REACHED
        elif self.schedule is not None and now - self.schedule_t0 >= self.schedule.end_s:
            reason = EndReason.SCHEDULE_ENDED
        if reason is not None:
            self.begin_stop(now, reason, pause=pause)

    def begin_stop(self, now: float, reason: EndReason, *, pause: bool) -> None:
        if self.stop is None:
            _log.info("EVCC: ending the charge loop (%s): power to 0 first", reason.value)
            self.stop = StopIntent(reason, pause, now)
            if not self.dc:
                self.set_ac_power(0.0)

    def wound_down(self, now: float, ev: EvMeasurements) -> StopIntent | None:
        """The stop intent once at least one wind-down loop was answered and the power is
        0 (or ``wind_down_max_s`` passed); else None."""
        stop = self.stop
        if stop is None or stop.loops == 0:
            return None
        if self.dc:
            evse_a = self.evse_present_current_a or 0.0
            settled = max(abs(ev.battery_current_a), abs(evse_a)) <= _WIND_DOWN_CURRENT_A
        else:
            settled = abs(ev.ac_power_w) <= _WIND_DOWN_POWER_W
        if not settled and now - stop.since < self.profile.wind_down_max_s:
            return None
        if not settled:
            _log.warning("EVCC: power not at 0 after %.1f s; stopping anyway", now - stop.since)
        return stop

    def status(self) -> dict[str, Any]:
        return {
            "loops": self.loops,
            "evse_present_voltage_v": self.evse_present_voltage_v,
            "evse_present_current_a": self.evse_present_current_a,
            "evse_target_power_w": self.evse_target_power_w,
            "ev_target_current_a": self.ev_target_current_a,
            "ac_setpoint_w": self.ac_setpoint_w,
            "stopping": None if self.stop is None else self.stop.reason.value,
        }
