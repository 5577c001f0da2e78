"""Property: whatever the EV, the board, the operator and the clock do, energy
only flows when IEC 61851-1 allows it, and every fault reaches the safe state:
CP at F for the whole pulse, and no release before the pulse is over and the
car has left C/D. Socket outlets see PP codings come and go (None included)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from chargepoint.evse.actions import (
    Action,
    FaultLatched,
    FaultsCleared,
    SetContactorPermission,
    SetLock,
    SetPilotF,
    SetPilotPwm,
    SetPilotX1,
    StateChanged,
    SwitchPowerStageOff,
)
from chargepoint.evse.controller import EvseController, EvseSettings
from chargepoint.evse.events import (
    ClearFaults,
    Event,
    IsolationObserved,
    PilotObserved,
    PowerStageObserved,
    SetAvailable,
    SetCurrentLimit,
    StartCharging,
    StopCharging,
    TaskCrashed,
)
from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.safety.faults import FaultKind

BOARD_FAULTS = [
    FaultKind.RCD_AC,
    FaultKind.RCD_DC,
    FaultKind.DIODE,
    FaultKind.OVER_TEMPERATURE,
    FaultKind.LOCK,
    FaultKind.CONTACTOR_WELDED,
]

COMMANDS = (
    SetPilotPwm | SetPilotX1 | SetPilotF | SetContactorPermission | SwitchPowerStageOff | SetLock
)
cp_states = st.sampled_from(list(CpState))
steps = st.one_of(
    st.tuples(
        st.just("cp"),
        cp_states,
        st.frozensets(st.sampled_from(BOARD_FAULTS), max_size=2).filter(lambda f: len(f) == 0)
        | st.frozensets(st.sampled_from(BOARD_FAULTS), max_size=2),
        st.booleans(),  # board output glitch: reports X1 whatever we asked
        st.floats(20.0, 100.0),
        st.none() | st.sampled_from([13.0, 20.0, 32.0, 63.0]),  # PP coding (None: invalid)
    ),
    st.tuples(st.just("time"), st.floats(0.0, 7.0), st.booleans()),
    st.tuples(
        st.just("cmd"),
        st.one_of(
            st.builds(StartCharging),
            st.builds(StopCharging),
            st.builds(SetCurrentLimit, st.floats(0.0, 100.0)),
            st.builds(SetAvailable, st.booleans()),
            st.builds(ClearFaults),
            st.builds(ClearFaults, st.just("technician"), st.just(True)),  # service reset
            st.builds(TaskCrashed, st.just("task"), st.just("boom")),
            st.builds(IsolationObserved, st.none() | st.floats(0.0, 1e7)),
            st.builds(
                PowerStageObserved,
                st.floats(0.0, 1000.0),
                st.floats(-100.0, 100.0),
                st.booleans(),
                st.frozensets(st.just(FaultKind.POWER_STAGE), max_size=1),
            ),
        ),
    ),
)


@dataclass
class World:
    ctl: EvseController
    ventilation: bool
    power_stage: bool
    socket_lock: bool = False
    lock_works: bool = True
    hlc_only: bool = False
    locked: bool = False
    now: float = 0.0
    output: PilotOutput = PilotOutput.X1
    permission: bool = False
    closed: bool = False
    power_on: bool = False
    pwm_off_at: float | None = None
    last_cp: CpState = CpState.A
    last_pp: float | None = None
    last_pwm_set: tuple[float, float] | None = None  # (time, duty)
    fault_since: float | None = None  # when the EVSE entered FAULT (the F pulse began)

    def run(self, actions: list[Action], *, cause: str) -> None:
        faults = [a for a in actions if isinstance(a, FaultLatched)]
        cmds = [a for a in actions if isinstance(a, COMMANDS)]
        if faults:
            # every fault reaches the safe state, power stage first
            perm_offs = [i for i, a in enumerate(cmds) if a == SetContactorPermission(False)]
            assert perm_offs, f"{cause}: fault without permission off: {actions}"
            if self.power_stage:
                ps = [i for i, a in enumerate(cmds) if isinstance(a, SwitchPowerStageOff)]
                assert ps and ps[0] < perm_offs[0], f"{cause}: power stage not off first"
        pulse = self.ctl.settings.safety.fault_pulse_f_s
        for a in actions:
            if isinstance(a, StateChanged) and a.new is EvseState.FAULT:
                self.fault_since = self.now
            elif isinstance(a, StateChanged) and a.old is EvseState.FAULT:
                assert self.fault_since is not None
                assert self.now >= self.fault_since + pulse - 1e-9, f"{cause}: released in F pulse"
                assert self.last_cp not in (CpState.C, CpState.D), f"{cause}: released in C/D"
                assert any(isinstance(x, FaultsCleared) for x in actions) or not faults
                self.fault_since = None
        in_pulse = self.fault_since is not None and self.now < self.fault_since + pulse - 1e-9
        for a in cmds:
            if in_pulse:  # the whole F pulse: nothing else on the CP
                assert not isinstance(a, SetPilotX1 | SetPilotPwm), f"{cause}: F pulse cut short"
            match a:
                case SetPilotPwm(duty_pct=d):
                    if self.output is PilotOutput.PWM and self.last_pwm_set is not None:
                        t, old = self.last_pwm_set
                        assert d == old or self.now - t >= 5.0 - 1e-9, "PWM changed within 5 s"
                    self.output = PilotOutput.PWM
                    self.last_pwm_set = (self.now, d)
                    self.pwm_off_at = None
                case SetPilotX1() | SetPilotF():
                    if self.output is PilotOutput.PWM:
                        self.pwm_off_at = self.now
                    self.output = PilotOutput.X1 if isinstance(a, SetPilotX1) else PilotOutput.F
                case SetContactorPermission(granted=g):
                    if g and not self.permission:
                        self.check_grant()
                    self.permission = g
                case SwitchPowerStageOff():
                    self.power_on = False
                case SetLock(locked=lock):
                    self.locked = lock and self.lock_works
        self.check_invariants(cause)

    def check_grant(self) -> None:
        assert not self.hlc_only, "basic charging granted on an HLC-only (DC) EVSE"
        assert self.ctl.supervisor.may_energize()
        assert self.locked or not self.socket_lock, "energy through an unlocked socket"
        if self.socket_lock:  # a socket outlet: only with a valid PP coding (Annex B)
            assert self.last_pp is not None, "energy through a socket without PP coding"
            assert self.ctl.offered_current_a() <= self.last_pp
        assert self.output is PilotOutput.PWM
        assert self.last_cp is CpState.C or (self.last_cp is CpState.D and self.ventilation)

    def check_invariants(self, cause: str) -> None:
        if self.permission:
            assert self.ctl.supervisor.may_energize(), f"{cause}: permission with fault latched"
            assert self.locked or not self.socket_lock, f"{cause}: permission, cable unlocked"
            state = self.ctl.state
            assert state in (EvseState.CHARGING, EvseState.STOPPING), f"{cause}: {state}"
            if state is EvseState.CHARGING:
                assert self.output is PilotOutput.PWM
                assert self.last_cp is CpState.C or (
                    self.last_cp is CpState.D and self.ventilation
                ), f"{cause}: permission in {self.last_cp}"
            else:  # IEC 61851-1 A.6 seq 10.2: at most 6 s without PWM
                assert self.pwm_off_at is not None and self.now - self.pwm_off_at <= 6.0 + 1e-9
        if self.ctl.latched_faults:
            assert not self.permission and self.ctl.state is EvseState.FAULT
        if self.fault_since is not None and self.now < self.fault_since + (
            self.ctl.settings.safety.fault_pulse_f_s - 1e-9
        ):
            assert self.output is PilotOutput.F, f"{cause}: F pulse not held"

    def advance(self, dt: float, board_alive: bool) -> None:
        end = self.now + dt
        deadline = self.ctl.next_deadline()
        if deadline is not None and deadline <= self.now:  # overdue after a command
            self.run(self.ctl.handle_timer(self.now), cause="timer")
        while True:
            deadline = self.ctl.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.run(self.ctl.handle_timer(self.now), cause="timer")
            nxt = self.ctl.next_deadline()
            assert nxt is None or nxt > self.now, "timer did not move the deadline"
            if board_alive:
                self.report(
                    self.last_cp, frozenset(), glitch=False, temperature_c=25.0, pp=self.last_pp
                )
        self.now = end
        if board_alive:
            self.report(
                self.last_cp, frozenset(), glitch=False, temperature_c=25.0, pp=self.last_pp
            )

    def report(
        self,
        cp: CpState,
        faults: frozenset[FaultKind],
        *,
        glitch: bool,
        temperature_c: float,
        pp: float | None,
    ) -> None:
        self.last_cp = cp
        self.last_pp = pp if cp is not CpState.A else None
        measured = CpState.F if self.output is PilotOutput.F else cp
        output = PilotOutput.X1 if glitch else self.output
        ev = PilotObserved(
            measured, output, self.closed, self.last_pp, temperature_c, faults, locked=self.locked
        )
        self.run(self.ctl.handle(ev, self.now), cause=f"report {ev}")
        self.closed = self.permission  # contactor follows by the next report


@settings(max_examples=300, deadline=None)
@given(
    ventilation=st.booleans(),
    autostart=st.booleans(),
    power_stage=st.booleans(),
    socket_lock=st.booleans(),
    lock_works=st.booleans(),
    hlc_only=st.booleans(),
    script=st.lists(steps, max_size=60),
)
def test_energy_only_when_allowed_and_faults_reach_safe_state(
    ventilation: bool,
    autostart: bool,
    power_stage: bool,
    socket_lock: bool,
    lock_works: bool,
    hlc_only: bool,
    script: list[tuple[object, ...]],
) -> None:
    ctl = EvseController(
        EvseSettings(
            max_current_a=32.0,
            ventilation=ventilation,
            autostart=autostart,
            has_power_stage=power_stage,
            socket_lock=socket_lock,
            socket_outlet=socket_lock,
            hlc_only=hlc_only,
        )
    )
    world = World(ctl, ventilation, power_stage, socket_lock, lock_works, hlc_only)
    world.run(ctl.start(0.0), cause="start")
    for step in script:
        match step:
            case ("cp", CpState() as cp, frozenset() as faults, bool(glitch), float(temp), pp):
                assert pp is None or isinstance(pp, float)
                world.report(cp, faults, glitch=glitch, temperature_c=temp, pp=pp)
            case ("time", float(dt), bool(alive)):
                world.advance(dt, alive)
            case ("cmd", event):
                assert isinstance(event, Event)
                world.run(ctl.handle(event, world.now), cause=f"command {event}")
