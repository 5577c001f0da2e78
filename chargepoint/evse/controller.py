"""Per-EVSE controller: IEC 61851-1 pilot logic gated by the safety supervisor.

Sans-I/O, in the style of aioquic: feed typed events with :meth:`handle`,
call :meth:`handle_timer` when :meth:`next_deadline` has passed, and carry out
the returned commands *in order*. Time only enters as the ``now`` argument
(monotonic seconds).

Safety contract (checked by a property test):

* contactor permission is only *granted* in CHARGING: the EV reports C (or D
  with ventilation configured), the board confirms PWM is on, nothing latched;
* it is held without PWM only in STOPPING, for at most 6 s
  (IEC 61851-1 A.6 seq 10.2);
* any latched fault yields power stage Off, then permission off, then CP F.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from transitions import Machine

from chargepoint.errors import LocalProtocolError
from chargepoint.evse.actions import (
    Action,
    ClearBoardFaults,
    ContactorChanged,
    FaultLatched,
    FaultsCleared,
    HlcPowerRefused,
    OfferedCurrentChanged,
    PowerDirection,
    SetContactorPermission,
    SetIsolationMonitor,
    SetLock,
    SetPilotF,
    SetPilotPwm,
    SetPilotX1,
    SetPowerStage,
    StateChanged,
    SwitchPowerStageOff,
)
from chargepoint.evse.events import (
    ClearFaults,
    Event,
    HlcContactors,
    HlcIsolationMonitor,
    HlcLinkFailed,
    HlcPower,
    HlcSessionEnded,
    HlcWakeUp,
    IsolationObserved,
    MeterObserved,
    PilotObserved,
    PowerStageObserved,
    SetAvailable,
    SetCurrentLimit,
    StartCharging,
    StopCharging,
    TaskCrashed,
)
from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iec61851.duty_cycle import HLC_DUTY_PCT, MIN_BASIC_CURRENT_A, duty_for_current
from chargepoint.iec61851.evse_state import TRANSITIONS, EvseState
from chargepoint.iso15118.secc.actions import PowerPhase
from chargepoint.safety.faults import Fault, FaultKind
from chargepoint.safety.limits import SafetyLimits
from chargepoint.safety.supervisor import SafetySupervisor


class _QuietModelOverride(logging.Filter):
    """transitions warns for every convenience method it does not bind under
    model_override=True; that is exactly what we want, so drop those lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().endswith("due to model override policy.")


logging.getLogger("transitions.core").addFilter(_QuietModelOverride())


@dataclass(frozen=True, slots=True)
class EvseSettings:
    max_current_a: float
    ventilation: bool = False
    autostart: bool = True
    has_power_stage: bool = False
    # The runner waits at most this long for the power stage to confirm Off before it
    # withdraws the contactor permission; the contactor timers start after it.
    power_off_wait_s: float = 0.2
    safety: SafetyLimits = field(default_factory=SafetyLimits)  # thresholds, timeouts
    pwm_min_interval_s: float = 5.0  # IEC 61851-1: basic-charging PWM changes <= 1 per 5 s
    stop_force_off_s: float = 6.0  # IEC 61851-1 A.6 seq 10.2
    socket_lock: bool = False  # a socket outlet: the cable is locked before energy flows
    # A socket outlet: the plugged cable's PP resistor codes its ampacity; no valid
    # coding means no current (IEC 61851-1 Annex B). Tethered: max_current_a is the cable's.
    socket_outlet: bool = False
    # DC: only digital communication (ISO 15118) may start energy; the CP carries 5 %
    # (IEC 61851-1 A.4) and basic charging never closes the contactors.
    hlc_only: bool = False
    lock_timeout_s: float = 1.0
    # ISO 15118 power path (DC power stage), from the configuration and the hardware
    max_voltage_v: float = 1000.0
    max_export_current_a: float = 0.0
    max_import_current_a: float = 0.0
    max_export_power_w: float = 0.0
    max_import_power_w: float = 0.0
    precharge_current_a: float = 2.0  # IEC 61851-23: cable check / pre-charge <= 2 A
    # ISO 15118-3 after a failed or timed-out session: X1 for a while, then 5 % again
    hlc_retries: int = 3
    hlc_x1_pause_s: float = 3.0  # ISO 15118-3: X1 >= 3 s before a new attempt
    basic_fallback: bool = False  # AC: after the retries, offer IEC 61851-1 basic charging


def _unbound() -> RuntimeError:
    return RuntimeError("trigger not bound: the transitions Machine binds it")


class EvseController:
    """IEC 61851-1 state machine for one EVSE plus its safety gate."""

    state: EvseState

    def __init__(self, settings: EvseSettings) -> None:
        self.settings = settings
        self.supervisor = SafetySupervisor(
            repeat_limit=settings.safety.fault_repeat_limit,
            repeat_window_s=settings.safety.fault_repeat_window_s,
        )
        self._machine = Machine(
            model=self,
            states=EvseState,
            transitions=TRANSITIONS,
            initial=EvseState.IDLE,
            auto_transitions=False,
            model_override=True,
        )
        self._out: list[Action] = []
        self._started = False
        # what we commanded
        self._permission = False
        self._permission_changed_at = 0.0
        # since when the board's coil rule holds (permission, CP C/D, PWM): the mirror
        # contact's pick-up is timed from here, not from the grant
        self._close_expected_since: float | None = None
        self._pwm_duty: float | None = None  # None: X1 or F
        self._pwm_changed_at: float | None = None
        self._pending_duty: float | None = None
        self._output_f_until: float | None = None
        self._x1 = False  # True once X1 has been commanded and not replaced
        # what we observed
        self._last: PilotObserved | None = None
        self._contactor_closed = False
        self._board_seen_at = 0.0
        self._power_stage_seen_at: float | None = None
        # policy inputs
        self._available = True
        self._authorized = False
        self._stopped_by_evse = False
        self._limit_a = settings.max_current_a
        self._stop_deadline: float | None = None
        self._lock_requested_at: float | None = None  # locking, not yet confirmed
        self._lock_wanted = False
        self._clear_requested = False  # operator asked; retry as board flags clear
        self._service_requested = False  # a service reset asked (see SafetySupervisor)
        self._board_clear_sent_at: float | None = None
        self._hlc_contactors = False  # the ISO 15118 session asked for the power path
        self._stage_on = False  # a non-Off operating point was commanded
        self._hlc_failures = 0  # failed sessions since the EV was plugged in
        self._hlc_pause_until: float | None = None  # X1 pause before the next attempt
        self._basic_mode = False  # AC fallback: basic charging after failed sessions
        self._hlc_stop_deadline: float | None = None  # EVSE stop: the EV must have stopped
        self._wake_until: float | None = None  # ISO 15118-3 E/F step: F until then, then 5 %

    # -- trigger stubs, bound by Machine from TRANSITIONS (model_override=True) --
    def ev_plugged(self) -> bool:
        raise _unbound()

    def ev_unplugged(self) -> bool:
        raise _unbound()

    def offer(self) -> bool:
        raise _unbound()

    def ev_requests(self) -> bool:
        raise _unbound()

    def ev_pauses(self) -> bool:
        raise _unbound()

    def withdraw(self) -> bool:
        raise _unbound()

    def ev_stopped(self) -> bool:
        raise _unbound()

    def stop_timeout(self) -> bool:
        raise _unbound()

    def fault(self) -> bool:
        raise _unbound()

    def recover(self) -> bool:
        raise _unbound()

    def hlc_stop(self) -> bool:
        raise _unbound()

    # -- public API --------------------------------------------------------
    @property
    def permission_granted(self) -> bool:
        return self._permission

    @property
    def authorized(self) -> bool:
        """Energy may be offered to this EV: free vend, or an authorisation arrived."""
        return (self.settings.autostart or self._authorized) and not self._stopped_by_evse

    @property
    def pwm_duty_pct(self) -> float | None:
        return self._pwm_duty

    @property
    def latched_faults(self) -> tuple[Fault, ...]:
        return tuple(self.supervisor.latched.values())

    def offered_current_a(self) -> float:
        limit = min(self.settings.max_current_a, self._limit_a)
        pp = self._last.pp_ampacity_a if self._last is not None else None
        if pp is not None:
            limit = min(limit, pp)
        elif self.settings.socket_outlet:
            return 0.0  # IEC 61851-1 Annex B: no cable, or an invalid PP resistor
        return limit

    def start(self, now: float) -> list[Action]:
        """Initial commands: everything off, CP at X1; the board must report soon."""
        self._started = True
        self._board_seen_at = now
        self._permission_changed_at = now
        if self.settings.has_power_stage:
            self._power_stage_seen_at = now
        self._out = []
        self._safe_off(now, force=True)
        self._set_x1(now)
        return self._flush(now)

    def shutdown(self, now: float) -> list[Action]:
        """Orderly stop of the service: power off, permission off, CP at F."""
        self._out = []
        self._safe_off(now, force=True)
        self._set_f(now, until=None)
        return self._flush(now)

    def handle(self, event: Event, now: float) -> list[Action]:
        self._out = []
        match event:
            case PilotObserved():
                self._on_pilot(event, now)
            case PowerStageObserved():
                self._on_power_stage(event, now)
            case IsolationObserved():
                self._on_isolation(event, now)
            case MeterObserved(ok=ok, detail=detail):
                kinds = set() if ok else {FaultKind.METER}
                self._latch_many("meter", kinds, now, {FaultKind.METER: f"meter: {detail}"})
            case TaskCrashed(task=task, detail=detail):
                self._latch_one_shot(FaultKind.TASK_CRASHED, f"task {task} crashed: {detail}", now)
            case StartCharging():
                self._authorized = True
                self._stopped_by_evse = False
                self._maybe_offer(now)
            case StopCharging():
                self._authorized = False
                self._stopped_by_evse = True
                if self._hlc_offer() and self.state in (EvseState.READY, EvseState.CHARGING):
                    # ISO 15118: the session stops the EV (EVSENotification Terminate) and
                    # 5 % PWM stays; the power path is forced open if the EV has not
                    # stopped in time (the same bound as IEC 61851-1 A.6 seq 10.2).
                    self._hlc_stop_deadline = now + self.settings.stop_force_off_s
                else:
                    self._withdraw(now)
            case SetAvailable(available=available):
                self._available = available
                if available:
                    self._maybe_offer(now)
                else:
                    self._withdraw(now)
            case SetCurrentLimit(current_a=current_a):
                self._limit_a = max(0.0, current_a)
                self._update_offer(now)
            case ClearFaults(service=service):
                self._clear_requested = True
                self._service_requested = self._service_requested or service
                self._ask_board_to_clear(now)
                self._try_clear(now)
            case HlcContactors(closed=closed):
                self._on_hlc_contactors(closed, now)
            case HlcPower():
                self._on_hlc_power(event, now)
            case HlcIsolationMonitor(on=on):
                self._out.append(SetIsolationMonitor(on))
            case HlcSessionEnded(failed=failed):
                self._on_hlc_contactors(False, now)
                if self._stage_on:
                    self._stage_off()
                if failed:
                    self._on_hlc_failure(now)
            case HlcWakeUp(duration_s=duration_s):
                self._on_wake_up(duration_s, now)
            case HlcLinkFailed():
                self._wake_until = None
                self._on_hlc_failure(now)  # ISO 15118-3 X1 request: like a failed session
        return self._flush(now)

    def handle_timer(self, now: float) -> list[Action]:
        self._out = []
        s = self.settings
        sup = self.supervisor
        if (
            self._started
            and now >= self._board_seen_at + s.safety.board_status_timeout_s
            and not sup.source_reports("board-timer", FaultKind.BOARD_KEEPALIVE_LOST)
        ):
            self._latch(
                "board-timer",
                {FaultKind.BOARD_KEEPALIVE_LOST},
                now,
                f"no pilot board status for {now - self._board_seen_at:.3f} s",
            )
        if (
            self._power_stage_seen_at is not None
            and now >= self._power_stage_seen_at + s.safety.power_stage_status_timeout_s
            and not sup.source_reports("power-stage-timer", FaultKind.POWER_STAGE_KEEPALIVE_LOST)
        ):
            self._latch(
                "power-stage-timer",
                {FaultKind.POWER_STAGE_KEEPALIVE_LOST},
                now,
                f"no power stage status for {now - self._power_stage_seen_at:.3f} s",
            )
        self._check_contactor_feedback(now)
        locking = self._lock_requested_at
        if locking is not None and now >= locking + s.lock_timeout_s:
            self._lock_requested_at = None
            self._latch_one_shot(
                FaultKind.LOCK, f"cable not locked {now - locking:.3f} s after the command", now
            )
        if (
            self.state is EvseState.STOPPING
            and self._stop_deadline is not None
            and now >= self._stop_deadline
        ):
            self._go(self.stop_timeout, now)  # A.6 seq 10.2: force off after 6 s
        if self._pending_duty is not None and self._pwm_may_change(now):
            self._set_pwm(self._pending_duty, now)
        if self._output_f_until is not None and now >= self._output_f_until:
            self._set_x1(now)  # end of the F pulse: X1 lets us see an unplug
        if self._hlc_stop_deadline is not None and now >= self._hlc_stop_deadline:
            self._hlc_stop_deadline = None
            self._hlc_contactors = False  # not again in this session
            if self.state is EvseState.CHARGING:
                self._go(self.hlc_stop, now)  # the EV ignored the stop: power off, then open
        if self._wake_until is not None and now >= self._wake_until:
            self._wake_until = None
            if self.state is EvseState.READY and self._should_offer():
                self._set_pwm(self._duty(), now)  # end of the E/F step: 5 % again
            elif self.state is not EvseState.FAULT:
                self._set_x1(now)
        pause = self._hlc_pause_until
        if pause is not None and math.isfinite(pause) and now >= pause:
            self._hlc_pause_until = None
            self._maybe_offer(now)  # 5 % again: the EV starts a new session
        return self._flush(now)

    def next_deadline(self) -> float | None:
        if not self._started:
            return None
        s = self.settings
        latched = self.supervisor.latched
        deadlines: list[float] = []
        sup = self.supervisor
        if not sup.source_reports("board-timer", FaultKind.BOARD_KEEPALIVE_LOST):
            deadlines.append(self._board_seen_at + s.safety.board_status_timeout_s)
        if self._power_stage_seen_at is not None and not sup.source_reports(
            "power-stage-timer", FaultKind.POWER_STAGE_KEEPALIVE_LOST
        ):
            deadlines.append(self._power_stage_seen_at + s.safety.power_stage_status_timeout_s)
        since = self._close_expected_since
        if since is not None:
            if not self._contactor_closed and FaultKind.CONTACTOR_STUCK_OPEN not in latched:
                deadlines.append(since + s.safety.contactor_close_timeout_s)
        elif (
            not self._permission
            and self._contactor_closed
            and FaultKind.CONTACTOR_WELDED not in latched
        ):
            deadlines.append(self._permission_changed_at + s.safety.contactor_open_timeout_s)
        if self.state is EvseState.STOPPING and self._stop_deadline is not None:
            deadlines.append(self._stop_deadline)
        if self._lock_requested_at is not None:
            deadlines.append(self._lock_requested_at + s.lock_timeout_s)
        if self._pending_duty is not None and self._pwm_changed_at is not None:
            deadlines.append(self._pwm_changed_at + s.pwm_min_interval_s)
        if self._output_f_until is not None:
            deadlines.append(self._output_f_until)
        if self._hlc_pause_until is not None and math.isfinite(self._hlc_pause_until):
            deadlines.append(self._hlc_pause_until)
        if self._hlc_stop_deadline is not None:
            deadlines.append(self._hlc_stop_deadline)
        if self._wake_until is not None:
            deadlines.append(self._wake_until)
        return min(deadlines) if deadlines else None

    # -- event handlers ------------------------------------------------------
    def _on_pilot(self, report: PilotObserved, now: float) -> None:
        s = self.settings
        pp_changed = self._last is not None and self._last.pp_ampacity_a != report.pp_ampacity_a
        self._last = report
        self._board_seen_at = now
        if report.contactor_closed != self._contactor_closed:
            self._out.append(ContactorChanged(report.contactor_closed))
            if not report.contactor_closed and self._close_expected_since is not None:
                # Fell open while the coil rule held as far as we saw: a lapse we missed
                # (a lost STATUS, the newest-wins mailbox of docs/pilot-board-protocol.md
                # section 12) makes the board pick up again; it gets the whole pick-up time.
                self._close_expected_since = now
        self._contactor_closed = report.contactor_closed
        self.supervisor.report("board-timer", (), now)
        kinds = set(report.faults)
        details = dict.fromkeys(kinds, report.detail or "reported by the pilot board")
        if report.cp_state is CpState.E:
            kinds.add(FaultKind.CP_SHORT)  # IEC 61851-1 A.2: CP shorted to PE / no supply
            details[FaultKind.CP_SHORT] = "CP state E"
        if report.cp_state is CpState.F and report.output is not PilotOutput.F:
            kinds.add(FaultKind.EV_ERROR)
            details[FaultKind.EV_ERROR] = "CP state F while driving X1/PWM"
        if report.temperature_c > s.safety.over_temperature_c:
            kinds.add(FaultKind.OVER_TEMPERATURE)
            details[FaultKind.OVER_TEMPERATURE] = (
                f"board temperature {report.temperature_c:.1f} C > "
                f"{s.safety.over_temperature_c:.1f} C"
            )
        self._latch_many("board", kinds, now, details)
        self._check_contactor_feedback(now)
        if report.locked and self._lock_wanted:
            self._lock_requested_at = None  # confirmed
        if pp_changed and self.state in (EvseState.READY, EvseState.CHARGING):
            # another cable, or its coding went: offer anew before the CP state is
            # followed, so a C in the same report never meets a stale offer (Annex B)
            self._update_offer(now)
        self._follow_cp(report, now)

    def _on_power_stage(self, report: PowerStageObserved, now: float) -> None:
        self._power_stage_seen_at = now
        self.supervisor.report("power-stage-timer", (), now)
        kinds = set(report.faults)
        details = dict.fromkeys(kinds, report.detail or "reported by the power stage")
        limit = self.settings.safety.over_voltage_v
        if limit is not None and report.voltage_v > limit:
            kinds.add(FaultKind.OVER_VOLTAGE)
            details[FaultKind.OVER_VOLTAGE] = f"output {report.voltage_v:.1f} V > {limit:.1f} V"
        self._latch_many("power-stage", kinds, now, details)

    def _on_isolation(self, reading: IsolationObserved, now: float) -> None:
        kinds: set[FaultKind] = set()
        details: dict[FaultKind, str] = {}
        threshold = self.settings.safety.isolation_fault_ohm
        if reading.device_fault:
            kinds.add(FaultKind.ISOLATION)
            details[FaultKind.ISOLATION] = "isolation monitor device fault"
        elif reading.resistance_ohm is not None and reading.resistance_ohm < threshold:
            kinds.add(FaultKind.ISOLATION)  # IEC 61851-23 6.3.1.105
            details[FaultKind.ISOLATION] = (
                f"isolation {reading.resistance_ohm:.0f} ohm < {threshold:.0f} ohm"
            )
        self._latch_many("isolation", kinds, now, details)

    # -- ISO 15118 requests (gated here: the session never touches hardware) ---------
    def _on_hlc_contactors(self, closed: bool, now: float) -> None:
        self._hlc_contactors = closed
        if not closed:
            self._hlc_stop_deadline = None
        if closed:
            if self._last is not None:
                self._follow_cp(self._last, now)  # [V2G20-860]: close <= 3 s after C/D
        elif self.state is EvseState.CHARGING:
            self._go(self.hlc_stop, now)  # power stage Off, then permission off

    def _on_hlc_power(self, request: HlcPower, now: float) -> None:
        s = self.settings
        if request.phase is PowerPhase.OFF:
            if self._stage_on:
                self._stage_off()
            return
        refused = self._hlc_power_refusal(request)
        if refused is not None:
            self._out.append(HlcPowerRefused(refused))
            if self._stage_on:
                self._stage_off()
            return
        voltage = min(max(0.0, request.voltage_v), s.max_voltage_v)
        current = request.current_a
        if request.phase is not PowerPhase.ENERGY:
            current = min(max(0.0, current), s.precharge_current_a)  # IEC 61851-23
            power = min(max(0.0, request.power_w), voltage * current)
            self._stage_on = True
            self._out.append(SetPowerStage(PowerDirection.EXPORT, voltage, current, power))
        elif current >= 0.0:
            current = min(current, s.max_export_current_a)
            power = min(max(0.0, request.power_w), s.max_export_power_w)
            self._stage_on = True
            self._out.append(SetPowerStage(PowerDirection.EXPORT, voltage, current, power))
        else:
            current = min(-current, s.max_import_current_a)
            power = min(abs(request.power_w), s.max_import_power_w)
            self._stage_on = True
            self._out.append(SetPowerStage(PowerDirection.IMPORT, voltage, current, power))

    def _on_hlc_failure(self, now: float) -> None:
        """ISO 15118-3: a failed session is retried after an X1 pause; AC may fall back
        to basic charging once the retries are used up; DC never does (IEC 61851-23)."""
        if self.state not in (EvseState.READY, EvseState.CHARGING, EvseState.STOPPING):
            return
        s = self.settings
        self._hlc_failures += 1
        if self._hlc_failures <= s.hlc_retries:
            self._hlc_pause_until = now + s.hlc_x1_pause_s
            self._withdraw(now)  # X1: the EV restarts its communication afterwards
        elif s.basic_fallback and not self._basic_mode:
            self._basic_mode = True
            self._update_offer(now)  # basic PWM (duty from current) replaces 5 %
        else:
            self._hlc_pause_until = math.inf  # no more attempts until the EV is unplugged
            self._withdraw(now)

    def _on_wake_up(self, duration_s: float, now: float) -> None:
        """E/F step [V2G3-M06-07]: only while 5 % invites a car that has not answered."""
        if (
            self._hlc_offer()
            and self.state is EvseState.READY
            and self._pwm_duty is not None
            and not self._hlc_contactors
            and self._wake_until is None
        ):
            self._wake_until = now + max(0.0, duration_s)
            self._set_f(now, until=None)

    def _hlc_power_refusal(self, request: HlcPower) -> str | None:
        if not self.settings.has_power_stage:
            return None if request.phase is PowerPhase.ENERGY else "no DC power stage"
        if not self.supervisor.may_energize():
            return "a fault is latched"
        cp = self._last.cp_state if self._last is not None else CpState.A
        if cp not in (CpState.C, CpState.D):
            return f"CP is {cp.value}, not C/D"
        if request.phase is PowerPhase.ENERGY:
            if self.state is not EvseState.CHARGING or not self._permission:
                return "energy before PowerDelivery(Start) closed the power path"
            if request.current_a < 0.0 and self.settings.max_import_current_a <= 0.0:
                return "discharge requested but the power stage cannot import"
            return None
        if self.state is not EvseState.READY or self._pwm_duty is None:
            return f"cable check / pre-charge needs 5 % PWM (state {self.state.name})"
        return None

    def _stage_off(self) -> None:
        self._stage_on = False
        if self.settings.has_power_stage:
            self._out.append(SwitchPowerStageOff())

    # -- CP following ----------------------------------------------------------
    def _follow_cp(self, report: PilotObserved, now: float) -> None:
        cp = report.cp_state
        if self.state is EvseState.FAULT:
            if cp is CpState.A and self._output_f_until is None:
                self._ask_board_to_clear(now)  # unplugged: clear what has gone
            if self._clear_requested or cp is CpState.A:
                self._try_clear(now)
            return
        if cp is CpState.A:
            self._wake_until = None
            self._hlc_contactors = False
            self._hlc_stop_deadline = None
            self._hlc_failures = 0
            self._hlc_pause_until = None
            self._basic_mode = False
            if self.state is not EvseState.IDLE:
                self._authorized = False
                self._stopped_by_evse = False
                self._go(self.ev_unplugged, now)
            return
        if cp in (CpState.E, CpState.F):
            return  # handled as faults
        if self.state is EvseState.IDLE:
            self._go(self.ev_plugged, now)
        ready = cp is CpState.C or (cp is CpState.D and self.settings.ventilation)
        if cp is CpState.B or (cp is CpState.D and not self.settings.ventilation):
            if self.state is EvseState.CHARGING:
                self._go(self.ev_pauses, now)  # A.6 seq 8.1 (or D without ventilation)
            elif self.state is EvseState.STOPPING:
                self._go(self.ev_stopped, now)
        elif (
            ready
            and self.state is EvseState.READY
            and report.output is PilotOutput.PWM
            and self._pwm_duty is not None
            and (report.locked or not self.settings.socket_lock)
            and (not self.settings.hlc_only or self._hlc_contactors or self._basic_mode)
            and (self._hlc_offer() or self.offered_current_a() >= MIN_BASIC_CURRENT_A)
            and self.supervisor.may_energize()
        ):
            self._go(self.ev_requests, now)  # A.6 seq 4: close within 3 s
        if self.state is EvseState.CONNECTED:
            self._maybe_offer(now)

    # -- policy ----------------------------------------------------------------
    def _hlc_offer(self) -> bool:
        """5 % PWM is an invitation to talk, not an energy offer: ISO 15118 sessions start
        on B and wait for the authorisation themselves (EIM Ongoing)."""
        return self.settings.hlc_only and not self._basic_mode

    def _should_offer(self) -> bool:
        hlc = self._hlc_offer()
        return (
            self._available
            and (hlc or self.settings.autostart or self._authorized)
            and (hlc or not self._stopped_by_evse)
            and self.supervisor.may_energize()
            and self.offered_current_a() >= MIN_BASIC_CURRENT_A
        )

    def _maybe_offer(self, now: float) -> None:
        pause = self._hlc_pause_until
        if pause is not None and now < pause:
            return  # ISO 15118-3: X1 before the next attempt (inf: no more attempts)
        if self.state is EvseState.CONNECTED and self._should_offer():
            self._go(self.offer, now)
            if self._last is not None:
                self._follow_cp(self._last, now)

    def _withdraw(self, now: float) -> None:
        if self.state in (EvseState.READY, EvseState.CHARGING):
            self._go(self.withdraw, now)

    def _update_offer(self, now: float) -> None:
        if self._wake_until is not None and self.state is EvseState.READY:
            return  # the E/F step ends on its own timer, then the duty is set anew
        if self.state in (EvseState.READY, EvseState.CHARGING):
            if not self._hlc_offer() and self.offered_current_a() < MIN_BASIC_CURRENT_A:
                # IEC 61851-1 Table A.8: no PWM below 6 A; an ISO 15118 session (5 %)
                # gets its limits through the power arbiter instead
                self._go(self.withdraw, now)
                return
            duty = self._duty()
            if duty == self._pwm_duty:
                self._pending_duty = None
            elif self._pwm_may_change(now):
                self._set_pwm(duty, now)
            else:
                self._pending_duty = duty
        else:
            self._maybe_offer(now)

    # -- transitions and their commands -----------------------------------------
    def _go(self, trigger: Callable[[], bool], now: float) -> None:
        old = self.state
        trigger()
        new = self.state
        if old in (EvseState.CHARGING, EvseState.STOPPING) and new is not EvseState.STOPPING:
            self._safe_off(now)
        match new:
            case EvseState.IDLE:
                self._set_x1(now)
                self._lock(False, now)
            case EvseState.CONNECTED:
                self._set_x1(now)
                self._lock(False, now)  # stopped: the user may take the cable
            case EvseState.READY:
                self._lock(True, now)
                if self._pwm_duty is None:
                    self._set_pwm(self._duty(), now)
            case EvseState.CHARGING:
                self._grant(now)
            case EvseState.STOPPING:
                self._set_x1(now)  # A.6 seq 10.1: PWM off asks the EV to stop
                self._stop_deadline = now + self.settings.stop_force_off_s
            case EvseState.FAULT:
                self._hlc_contactors = False
                self._safe_off(now, force=True)
                self._set_f(now, until=now + self.settings.safety.fault_pulse_f_s)
                self._lock(False, now)  # de-energised first (the commands above)
        cp = self._last.cp_state if self._last is not None else CpState.A
        self._out.append(StateChanged(old, new, cp))

    def _duty(self) -> float:
        if self._hlc_offer():
            return HLC_DUTY_PCT  # IEC 61851-1 A.4: digital communication required
        return duty_for_current(self.offered_current_a())

    def _lock(self, locked: bool, now: float) -> None:
        if not self.settings.socket_lock or locked == self._lock_wanted:
            return
        self._lock_wanted = locked
        self._lock_requested_at = now if locked else None
        self._out.append(SetLock(locked))

    def _grant(self, now: float) -> None:
        # The gate: the only place permission is granted.
        if not self.supervisor.may_energize() or self._pwm_duty is None:
            raise LocalProtocolError("refusing contactor permission: fault latched or no PWM")
        self._permission = True
        self._permission_changed_at = now
        self._out.append(SetContactorPermission(True))

    def _safe_off(self, now: float, *, force: bool = False) -> None:
        """Power stage Off first, then contactor permission off."""
        self._stage_on = False
        delay = 0.0
        if self.settings.has_power_stage:
            self._out.append(SwitchPowerStageOff())
            delay = self.settings.power_off_wait_s  # permission-off goes out after it
        if self._permission or force:
            if self._permission:
                self._permission_changed_at = now + delay
            self._permission = False
            self._out.append(SetContactorPermission(False))
        self._stop_deadline = None

    def _set_pwm(self, duty_pct: float, now: float) -> None:
        self._x1 = False
        self._pwm_duty = duty_pct
        self._pwm_changed_at = now
        self._pending_duty = None
        self._output_f_until = None
        self._out.append(SetPilotPwm(duty_pct))
        self._out.append(OfferedCurrentChanged(self.offered_current_a()))

    def _set_x1(self, now: float) -> None:
        if self._pwm_duty is None and self._output_f_until is None and self._x1:
            return  # already at X1
        self._x1 = True
        self._pwm_duty = None
        self._pending_duty = None
        self._output_f_until = None
        self._out.append(SetPilotX1())

    def _set_f(self, now: float, until: float | None) -> None:
        self._x1 = False
        self._pwm_duty = None
        self._pending_duty = None
        self._output_f_until = until
        self._out.append(SetPilotF())

    def _pwm_may_change(self, now: float) -> bool:
        last = self._pwm_changed_at
        return last is None or now - last >= self.settings.pwm_min_interval_s

    # -- faults ------------------------------------------------------------------
    def _latch(self, source: str, kinds: Iterable[FaultKind], now: float, detail: str) -> None:
        kinds = set(kinds)
        self._latch_many(source, kinds, now, dict.fromkeys(kinds, detail))

    def _latch_many(
        self, source: str, kinds: set[FaultKind], now: float, details: dict[FaultKind, str]
    ) -> None:
        new = self.supervisor.report(source, kinds, now, details)
        self._enter_fault(new, now)

    def _latch_one_shot(self, kind: FaultKind, detail: str, now: float) -> None:
        fault = self.supervisor.raise_fault(kind, detail, now)
        self._enter_fault([fault] if fault else [], now)

    def _enter_fault(self, new: list[Fault], now: float) -> None:
        if not new:
            return
        self._out.extend(FaultLatched(f) for f in new)
        self._wake_until = None
        if self.state is not EvseState.FAULT:
            self._go(self.fault, now)
        else:
            self._safe_off(now, force=True)  # belt and braces: re-assert the safe state

    def _board_closes(self) -> bool:
        """docs/pilot-board-protocol.md section 9: the board's coil needs permission AND
        CP C/D AND PWM, as we command it and as the board reports driving it. Permission
        held with X1 (STOPPING, IEC 61851-1 A.6 seq 10.1) or CP B leaves the contacts
        open by design, which is no stuck contactor."""
        last = self._last
        return (
            self._permission
            and self._pwm_duty is not None
            and last is not None
            and last.output is PilotOutput.PWM
            and last.cp_state in (CpState.C, CpState.D)
        )

    def _track_close_expected(self, now: float) -> None:
        """Start the pick-up clock when the board's coil rule starts to hold, and stop it
        when the rule lapses: a rule that lapses and holds again (permission kept through
        a stop, a paused output) gives the contactor its whole pick-up time afresh."""
        if not self._board_closes():
            self._close_expected_since = None
        elif self._close_expected_since is None:
            self._close_expected_since = now

    def _check_contactor_feedback(self, now: float) -> None:
        s = self.settings
        self._track_close_expected(now)
        since = self._close_expected_since
        elapsed = now - self._permission_changed_at
        opening_late = now >= self._permission_changed_at + s.safety.contactor_open_timeout_s
        if (
            since is not None
            and not self._contactor_closed
            and now >= since + s.safety.contactor_close_timeout_s
        ):
            # IEC 61851-1 A.6 seq 4: closed within 3 s of C; our bound is tighter
            self._latch_one_shot(
                FaultKind.CONTACTOR_STUCK_OPEN,
                f"mirror contact still open {now - since:.3f} s after the board's coil rule "
                "held (permission, CP C/D, PWM)",
                now,
            )
        elif not self._permission and self._contactor_closed and opening_late:
            self._latch_one_shot(
                FaultKind.CONTACTOR_WELDED,
                f"mirror contact still closed {elapsed:.3f} s after permission withdrawn",
                now,
            )

    def _ask_board_to_clear(self, now: float) -> None:
        """The board latches its own flags; ask it (at most once a second)."""
        if not self.supervisor.condition_active_from("board"):
            return
        last = self._board_clear_sent_at
        if last is None or now - last >= 1.0:
            self._board_clear_sent_at = now
            self._out.append(ClearBoardFaults())

    def _try_clear(self, now: float) -> None:
        """Release what may be released, for an operator's clear, a service reset or an
        unplug alike: never during the F pulse, never while the car is in C/D."""
        if self.state is EvseState.FAULT:
            if self._output_f_until is not None:
                return  # the whole F pulse first (>= 4 s, ISO 15118-3 / IEC 61851-1 A.2)
            cp = self._last.cp_state if self._last is not None else CpState.A
            if cp in (CpState.C, CpState.D):
                return  # the car still asks for energy: it leaves C/D (or is unplugged) first
        cleared = self.supervisor.try_clear(service_reset=self._service_requested)
        if cleared:
            self._out.append(FaultsCleared(tuple(cleared)))
        if not self.supervisor.needs_service():
            self._service_requested = False
        if self.state is EvseState.FAULT and self.supervisor.may_energize():
            self._clear_requested = False
            self._service_requested = False
            self._go(self.recover, now)
            if self._last is not None:
                self._follow_cp(self._last, now)

    def _flush(self, now: float) -> list[Action]:
        self._track_close_expected(now)  # what this batch commands is what the board does
        out, self._out = self._out, []
        return out
