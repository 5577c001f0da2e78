"""The EVSE controller, driven with a fake clock and a small board model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chargepoint.evse.actions import (
    Action,
    FaultLatched,
    FaultsCleared,
    SetContactorPermission,
    SetLock,
    SetPilotF,
    SetPilotPwm,
    SetPilotX1,
    SwitchPowerStageOff,
)
from chargepoint.evse.controller import EvseController, EvseSettings
from chargepoint.evse.events import (
    ClearFaults,
    Event,
    IsolationObserved,
    PilotObserved,
    SetAvailable,
    SetCurrentLimit,
    StartCharging,
    StopCharging,
    TaskCrashed,
)
from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.safety.faults import FaultKind


@dataclass
class Rig:
    """Controller plus an ideal board that obeys the commands at once."""

    ctl: EvseController
    now: float = 0.0
    output: PilotOutput = PilotOutput.X1
    duty: float | None = None
    permission: bool = False
    closed: bool = False
    locked: bool = False
    cp: CpState = CpState.A
    log: list[Action] = field(default_factory=list)

    @classmethod
    def make(cls, **kw: object) -> Rig:
        settings = EvseSettings(max_current_a=32.0, **kw)  # type: ignore[arg-type]
        rig = cls(EvseController(settings))
        rig.apply(rig.ctl.start(0.0))
        return rig

    def apply(self, actions: list[Action]) -> list[Action]:
        for a in actions:
            match a:
                case SetPilotPwm(duty_pct=d):
                    self.output, self.duty = PilotOutput.PWM, d
                case SetPilotX1():
                    self.output, self.duty = PilotOutput.X1, None
                case SetPilotF():
                    self.output, self.duty = PilotOutput.F, None
                case SetContactorPermission(granted=g):
                    self.permission = g
        self.log.extend(actions)
        return actions

    def report(self, cp: CpState | None = None, **kw: object) -> list[Action]:
        if cp is not None:
            self.cp = cp
        explicit = "closed" in kw  # a test that sets the mirror contact keeps it
        closed = kw.pop("closed", self.closed)
        locked = bool(kw.pop("locked", self.locked))
        measured = CpState.F if self.output is PilotOutput.F else self.cp
        ev = PilotObserved(measured, self.output, bool(closed), locked=locked, **kw)  # type: ignore[arg-type]
        out = self.apply(self.ctl.handle(ev, self.now))
        # the contactor follows the board's coil rule by the next report
        # (docs/pilot-board-protocol.md: permission AND CP C/D AND PWM)
        coil = (
            self.permission and self.output is PilotOutput.PWM and self.cp in (CpState.C, CpState.D)
        )
        self.closed = self.closed if explicit else coil
        return out

    def send(self, event: Event) -> list[Action]:
        return self.apply(self.ctl.handle(event, self.now))

    def advance(self, dt: float, *, keepalive: bool = True, step: float = 0.05) -> None:
        """Advance time like the runtime: timers fire on time, the board keeps reporting."""
        end = self.now + dt
        while self.now < end:
            nxt = min(end, self.now + step)
            deadline = self.ctl.next_deadline()
            if deadline is not None and deadline < nxt:
                nxt = max(deadline, self.now)
            self.now = nxt
            if deadline is not None and self.now >= deadline:
                self.apply(self.ctl.handle_timer(self.now))
            if keepalive:
                self.report()


def test_plug_offer_charge_and_ev_stop() -> None:
    rig = Rig.make()
    rig.report(CpState.A)
    rig.report(CpState.B)
    assert rig.ctl.state is EvseState.READY
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(53.33)
    rig.report(CpState.C)
    assert rig.ctl.state is EvseState.CHARGING and rig.permission
    rig.advance(1.0)
    out = rig.report(CpState.B)  # A.6 seq 8.1: C -> B opens at once
    assert SetContactorPermission(False) in out and not rig.permission
    assert rig.ctl.state is EvseState.READY
    rig.report(CpState.A)
    assert rig.ctl.state is EvseState.IDLE and rig.output is PilotOutput.X1


def test_no_permission_without_pwm_confirmed_by_board() -> None:
    rig = Rig.make(autostart=False)
    rig.report(CpState.B)
    assert rig.ctl.state is EvseState.CONNECTED and rig.output is PilotOutput.X1
    rig.report(CpState.C)  # C1: EV asks, no PWM: nothing
    assert not rig.permission
    rig.send(StartCharging())
    assert rig.output is PilotOutput.PWM
    assert not rig.permission  # the board has not yet confirmed PWM
    rig.report()
    assert rig.permission and rig.ctl.state is EvseState.CHARGING


def test_evse_stop_waits_for_ev_then_forces_off_after_6_s() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.advance(2.0)
    rig.send(StopCharging())
    assert rig.ctl.state is EvseState.STOPPING
    assert rig.output is PilotOutput.X1 and rig.permission  # seq 10.1: EV gets time
    rig.advance(5.9)
    assert rig.permission
    rig.advance(0.2)  # seq 10.2: 6 s after PWM removal
    assert not rig.permission and rig.ctl.state is EvseState.CONNECTED
    rig.report(CpState.B)
    assert rig.output is PilotOutput.X1  # stopped: no new offer until unplug


def test_ev_going_to_b_during_stop_opens_at_once() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.send(StopCharging())
    rig.advance(1.0)
    out = rig.report(CpState.B)
    assert SetContactorPermission(False) in out
    assert rig.ctl.state is EvseState.CONNECTED


def test_pwm_changes_at_most_every_5_s() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    t0 = rig.now
    rig.advance(1.0)
    assert not [a for a in rig.send(SetCurrentLimit(16.0)) if isinstance(a, SetPilotPwm)]
    rig.log.clear()
    rig.advance(5.0)
    changes = [(a, i) for i, a in enumerate(rig.log) if isinstance(a, SetPilotPwm)]
    assert [a.duty_pct for a, _ in changes] == [pytest.approx(26.67)]
    assert rig.now - t0 >= 5.0


def test_limit_below_6_a_withdraws_offer() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.send(SetCurrentLimit(3.0))
    assert rig.ctl.state is EvseState.STOPPING
    rig.report(CpState.B)
    assert not rig.permission
    rig.send(SetCurrentLimit(10.0))
    assert rig.ctl.state is EvseState.READY and rig.duty == pytest.approx(16.67)


def test_a_long_charge_withdrawn_to_c1_is_no_stuck_contactor() -> None:
    """docs/pilot-board-protocol.md: the board opens the coil by itself once the output
    leaves PWM, although the permission is still held in STOPPING (IEC 61851-1 A.6
    seq 10.1); an EV that stays in C until the 6 s force-off is not a board fault."""
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.advance(10.0)  # longer than the contactor close timeout
    rig.send(SetCurrentLimit(3.0))  # e.g. a CSMS limit below 6 A
    assert rig.ctl.state is EvseState.STOPPING and rig.output is PilotOutput.X1
    rig.advance(5.0, step=0.05)  # the board's coil rule: no PWM, no coil
    assert rig.ctl.latched_faults == ()
    rig.advance(1.5)  # seq 10.2: forced off after 6 s
    assert rig.ctl.state is EvseState.CONNECTED and not rig.permission
    assert rig.ctl.latched_faults == ()


def test_state_d_needs_ventilation() -> None:
    rig = Rig.make(ventilation=False)
    rig.report(CpState.B)
    rig.report(CpState.D)
    assert not rig.permission and rig.ctl.state is EvseState.READY
    rig2 = Rig.make(ventilation=True)
    rig2.report(CpState.B)
    rig2.report(CpState.D)
    assert rig2.permission


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"cp": CpState.E}, FaultKind.CP_SHORT),
        ({"faults": frozenset({FaultKind.RCD_DC})}, FaultKind.RCD_DC),
        ({"faults": frozenset({FaultKind.DIODE})}, FaultKind.DIODE),
        ({"temperature_c": 99.0}, FaultKind.OVER_TEMPERATURE),
    ],
)
def test_board_faults_reach_safe_state(event: dict[str, object], kind: FaultKind) -> None:
    rig = Rig.make(has_power_stage=True)
    rig.report(CpState.B)
    rig.report(CpState.C)
    out = rig.report(**event)  # type: ignore[arg-type]
    cmds = [a for a in out if isinstance(a, SwitchPowerStageOff | SetContactorPermission)]
    assert cmds[:2] == [SwitchPowerStageOff(), SetContactorPermission(False)]
    assert any(isinstance(a, FaultLatched) and a.fault.kind is kind for a in out)
    assert rig.ctl.state is EvseState.FAULT and rig.output is PilotOutput.F


def test_fault_latches_until_unplug_after_f_pulse() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.report(faults=frozenset({FaultKind.RCD_AC}))
    rig.report(faults=frozenset())  # condition gone, still latched
    assert rig.ctl.state is EvseState.FAULT
    rig.advance(4.1)  # F pulse >= 4 s, then X1
    assert rig.output is PilotOutput.X1 and rig.ctl.state is EvseState.FAULT
    out = rig.report(CpState.A)
    assert any(isinstance(a, FaultsCleared) for a in out)
    assert rig.ctl.state is EvseState.IDLE


def test_operator_clear_only_when_condition_gone() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.send(IsolationObserved(50_000.0))
    assert rig.ctl.state is EvseState.FAULT
    rig.send(ClearFaults())
    assert rig.ctl.state is EvseState.FAULT
    rig.send(IsolationObserved(5e6))
    rig.send(ClearFaults())
    assert rig.ctl.state is EvseState.FAULT  # not during the F pulse
    rig.advance(4.1)  # the pulse is over; the pending clear goes through (car in B)
    assert rig.ctl.state is not EvseState.FAULT


def test_clear_after_rcd_trip_waits_for_the_f_pulse_and_the_car_leaving_c() -> None:
    """An operator clear 0.6 s after an RCD trip must not re-energise a car still in C."""
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    assert rig.permission
    rig.report(faults=frozenset({FaultKind.RCD_AC}))
    assert not rig.permission and rig.output is PilotOutput.F
    rig.advance(0.5)
    rig.report(faults=frozenset())  # the board's RCD flag has gone
    rig.advance(0.1)
    rig.send(ClearFaults())  # 0.6 s after the trip
    assert rig.ctl.state is EvseState.FAULT and not rig.permission
    rig.advance(4.0)  # the F pulse ends: X1; the car never left C
    assert rig.ctl.state is EvseState.FAULT
    assert not rig.permission and rig.output is PilotOutput.X1
    rig.advance(10.0)
    assert rig.ctl.state is EvseState.FAULT and not rig.permission
    rig.report(CpState.B)  # the car opened S2: now the clear goes through
    assert rig.ctl.state is EvseState.READY and rig.output is PilotOutput.PWM
    assert not rig.permission
    rig.report(CpState.C)  # and it may ask again
    assert rig.permission


def test_welded_contactor_needs_a_service_reset() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.report(CpState.B, closed=True)  # permission withdrawn, mirror contact stays closed
    rig.advance(0.2, keepalive=False)
    rig.report(closed=True)
    (fault,) = rig.ctl.latched_faults
    assert fault.kind is FaultKind.CONTACTOR_WELDED and fault.service_required
    assert "service reset required" in fault.detail
    rig.advance(5.0)  # the contactor opened again (the rig follows permission)
    rig.report(CpState.A)  # unplug: not enough
    rig.send(ClearFaults())  # an operator (or CSMS) clear: not enough
    rig.advance(1.0)
    assert rig.ctl.state is EvseState.FAULT
    rig.send(ClearFaults("technician", service=True))
    assert rig.ctl.state is EvseState.IDLE and rig.ctl.latched_faults == ()


def test_board_internal_fault_needs_a_service_reset() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(faults=frozenset({FaultKind.BOARD_INTERNAL}))
    rig.report(faults=frozenset())
    rig.advance(4.1)
    rig.report(CpState.A)
    assert rig.ctl.state is EvseState.FAULT and rig.ctl.latched_faults[0].service_required
    rig.send(ClearFaults(service=True))
    assert rig.ctl.state is EvseState.IDLE


def test_a_fault_that_keeps_coming_back_needs_a_service_reset() -> None:
    rig = Rig.make()  # fault_repeat_limit 3 within 600 s
    for trip in range(3):
        rig.report(CpState.B)
        rig.report(faults=frozenset({FaultKind.RCD_AC}))
        rig.report(faults=frozenset())
        rig.advance(4.1)
        rig.report(CpState.A)  # unplug clears the first two
        if trip < 2:
            assert rig.ctl.state is EvseState.IDLE
    assert rig.ctl.state is EvseState.FAULT
    (fault,) = rig.ctl.latched_faults
    assert fault.service_required and "3 times within 600 s" in fault.detail
    rig.send(ClearFaults(service=True))
    assert rig.ctl.state is EvseState.IDLE
    rig.report(CpState.B)  # the history was forgotten with the service reset
    rig.report(faults=frozenset({FaultKind.RCD_AC}))
    assert not rig.ctl.latched_faults[0].service_required


def test_faults_spread_out_in_time_are_not_a_repeat() -> None:
    rig = Rig.make()
    for _ in range(4):
        rig.report(CpState.B)
        rig.report(faults=frozenset({FaultKind.RCD_AC}))
        rig.report(faults=frozenset())
        rig.advance(4.1)
        rig.report(CpState.A)
        assert rig.ctl.state is EvseState.IDLE
        rig.advance(300.0, step=0.25)


def test_board_silence_is_a_fault() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.advance(1.0, keepalive=False)
    assert FaultKind.BOARD_KEEPALIVE_LOST in {f.kind for f in rig.ctl.latched_faults}
    assert not rig.permission
    deadline = rig.ctl.next_deadline()
    assert deadline is None or deadline > rig.now


def test_welded_contactor_detected() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.report(CpState.B, closed=True)  # permission withdrawn, contacts stay closed
    rig.now += 0.2
    rig.report(closed=True)
    assert FaultKind.CONTACTOR_WELDED in {f.kind for f in rig.ctl.latched_faults}


def test_task_crash_is_latched() -> None:
    rig = Rig.make()
    rig.report(CpState.B)
    rig.report(CpState.C)
    rig.send(TaskCrashed("ocpp", "boom"))
    assert not rig.permission and rig.ctl.state is EvseState.FAULT


def test_unavailable_means_no_offer() -> None:
    rig = Rig.make()
    rig.send(SetAvailable(False))
    rig.report(CpState.B)
    assert rig.output is PilotOutput.X1
    rig.send(SetAvailable(True))
    assert rig.output is PilotOutput.PWM


def test_socket_is_locked_before_energy_and_released_after() -> None:
    rig = Rig.make(socket_lock=True)
    out = rig.report(CpState.B)
    assert SetLock(True) in out
    rig.report(CpState.C, locked=False)  # lock not confirmed yet: no energy
    assert not rig.permission
    rig.report(CpState.C, locked=True)
    assert rig.permission
    rig.report(CpState.B, locked=True)
    rig.log.clear()
    rig.report(CpState.A, locked=True)
    assert SetLock(False) in rig.log


def test_lock_that_does_not_engage_is_a_fault() -> None:
    rig = Rig.make(socket_lock=True)
    rig.report(CpState.B)
    rig.advance(1.5)  # the board keeps reporting unlocked
    assert FaultKind.LOCK in {f.kind for f in rig.ctl.latched_faults}
    assert not rig.permission


def test_dc_offers_digital_communication_and_no_basic_charging() -> None:
    rig = Rig.make(hlc_only=True)
    rig.report(CpState.B)
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(5.0)
    rig.report(CpState.C)
    rig.advance(2.0)
    assert not rig.permission and rig.ctl.state is EvseState.READY


def test_socket_outlet_without_a_valid_pp_coding_offers_nothing() -> None:
    """IEC 61851-1 Annex B: PP codes the plugged cable; none or invalid -> no current."""
    rig = Rig.make(socket_outlet=True)
    rig.report(CpState.B, pp_ampacity_a=None)
    assert rig.ctl.offered_current_a() == 0.0
    assert rig.output is PilotOutput.X1 and rig.ctl.state is EvseState.CONNECTED
    rig.report(CpState.C, pp_ampacity_a=None)
    assert not rig.permission
    rig.report(CpState.B, pp_ampacity_a=20.0)  # a 20 A cable
    assert rig.ctl.offered_current_a() == 20.0
    assert rig.output is PilotOutput.PWM and rig.duty == pytest.approx(33.33)
    rig.report(CpState.B, pp_ampacity_a=None)  # the coding went (resistor broke): withdraw
    assert rig.output is PilotOutput.X1 and rig.ctl.offered_current_a() == 0.0


def test_socket_outlet_coding_lost_in_the_same_report_as_c_grants_nothing() -> None:
    """Found by the property test: the PP coding goes in the very report in which the EV
    asks for energy (B with 13 A -> C with no coding); the offer is withdrawn first."""
    rig = Rig.make(socket_outlet=True)
    rig.report(CpState.B, pp_ampacity_a=13.0)
    assert rig.output is PilotOutput.PWM
    rig.report(CpState.C, pp_ampacity_a=None)  # IEC 61851-1 Annex B
    assert not rig.permission and rig.ctl.state is not EvseState.CHARGING
    assert rig.output is PilotOutput.X1


def test_tethered_cable_takes_its_rating_from_the_configuration() -> None:
    rig = Rig.make()  # tethered: no PP coding to read
    rig.report(CpState.B, pp_ampacity_a=None)
    assert rig.ctl.offered_current_a() == 32.0 and rig.output is PilotOutput.PWM
