"""Mirror-contact supervision (issue 12): the pick-up is timed from the moment the
board's coil rule holds, not from the grant, so a remote start, a late energy
request and a stop latch no false contactor_stuck_open, while a contactor that
does not close, or does not open, is still latched."""

from __future__ import annotations

from dataclasses import dataclass, field

from chargepoint.evse.actions import (
    Action,
    FaultLatched,
    SetContactorPermission,
    SetPilotF,
    SetPilotPwm,
    SetPilotX1,
)
from chargepoint.evse.controller import EvseController, EvseSettings
from chargepoint.evse.events import Event, PilotObserved, StartCharging, StopCharging
from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iec61851.evse_state import EvseState
from chargepoint.safety.faults import FaultKind

TICK_S = 0.005  # the board samples every 5 ms
STATUS_S = 0.05  # and reports at least every 50 ms


@dataclass
class Board:
    """The pilot board of docs/pilot-board-protocol.md section 9 with a fake clock:
    coil = permission AND CP C/D AND the output it drives is PWM; the mirror contact
    follows the coil after the pick-up time (a stuck contact never closes, a welded one
    never opens); STATUS every 50 ms, or never while ``reporting`` is off (lost frames)."""

    ctl: EvseController
    pickup_s: float = 0.02
    now: float = 0.0
    output: PilotOutput = PilotOutput.X1
    permission: bool = False
    cp: CpState = CpState.A
    closed: bool = False
    stuck_open: bool = False
    welded: bool = False
    coil_since: float | None = None
    last_status: float = -1.0
    granted_at: float | None = None
    faults: list[FaultKind] = field(default_factory=list)

    @classmethod
    def make(cls, **kw: object) -> Board:
        board = cls(EvseController(EvseSettings(max_current_a=32.0, autostart=False)), **kw)  # type: ignore[arg-type]
        board.apply(board.ctl.start(0.0))
        return board

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            match a:
                case SetPilotPwm():
                    self.output = PilotOutput.PWM
                case SetPilotX1():
                    self.output = PilotOutput.X1
                case SetPilotF():
                    self.output = PilotOutput.F
                case SetContactorPermission(granted=granted):
                    self.permission = granted
                    self.granted_at = self.now if granted else None
                case FaultLatched(fault=fault):
                    self.faults.append(fault.kind)

    def send(self, event: Event) -> None:
        self.apply(self.ctl.handle(event, self.now))

    def run(self, seconds: float, *, reporting: bool = True) -> None:
        end = self.now + seconds - 1e-9
        while self.now < end:
            self.now += TICK_S
            coil = (
                self.permission
                and self.output is PilotOutput.PWM
                and self.cp in (CpState.C, CpState.D)
            )
            if not coil:
                self.coil_since = None
            elif self.coil_since is None:
                self.coil_since = self.now
            picked_up = self.coil_since is not None and self.now - self.coil_since >= self.pickup_s
            self.closed = (picked_up and not self.stuck_open) or (self.welded and self.closed)
            if reporting and self.now - self.last_status >= STATUS_S - 1e-9:
                self.last_status = self.now
                cp = CpState.F if self.output is PilotOutput.F else self.cp
                self.send(PilotObserved(cp, self.output, self.closed))
            deadline = self.ctl.next_deadline()
            if deadline is not None and self.now >= deadline:
                self.apply(self.ctl.handle_timer(self.now))


def remote_start_then_charge(board: Board) -> None:
    """Plugged in idle, RequestStartTransaction, the EV asks ~3 s later, charges 3 s."""
    board.cp = CpState.B
    board.run(0.5)
    assert board.ctl.state is EvseState.CONNECTED and board.output is PilotOutput.X1
    board.send(StartCharging("remote"))
    board.run(3.0)
    assert board.ctl.state is EvseState.READY
    board.cp = CpState.C
    board.run(3.0)
    assert board.ctl.state is EvseState.CHARGING and board.closed


def test_remote_start_late_energy_request_then_remote_stop_latches_nothing() -> None:
    """The issue's sequence: the remote stop withdraws the PWM (IEC 61851-1 A.6 seq
    10.1) and the EV takes 2 s to open S2; the board opens its coil at once although the
    permission is held, which is the board's rule, not a stuck contactor."""
    board = Board.make()
    remote_start_then_charge(board)
    board.send(StopCharging("remote"))
    board.run(2.0)  # the EV ramps down in C1
    assert board.ctl.state is EvseState.STOPPING and not board.closed
    board.cp = CpState.B
    board.run(2.0)
    assert board.ctl.state is EvseState.CONNECTED and not board.permission
    assert board.faults == []


def test_a_lapse_the_host_missed_gives_the_contactor_its_whole_pick_up_time() -> None:
    """Root cause: the close was timed from the grant. The EV bounces S2 (C, B, C) within
    one STATUS period and the host never sees the B (docs/pilot-board-protocol.md
    section 12: newest-wins mailbox): the board drops and re-picks up its slow contactor
    (0.3 s) seconds after the grant; that is no stuck contactor."""
    board = Board.make(pickup_s=0.3)
    remote_start_then_charge(board)
    board.cp = CpState.B
    board.run(0.02, reporting=False)
    board.cp = CpState.C
    board.run(2.0)
    assert board.ctl.state is EvseState.CHARGING and board.closed
    assert board.faults == []


def test_a_board_that_stops_driving_pwm_for_a_moment_is_no_stuck_contactor() -> None:
    """The board's coil follows the output it reports driving; when it reports PWM again
    the slow contactor (0.3 s) picks up anew, seconds after the grant."""
    board = Board.make(pickup_s=0.3)
    remote_start_then_charge(board)
    board.output = PilotOutput.X1  # e.g. the board re-applies its pilot output
    board.run(0.1)
    assert not board.closed
    board.output = PilotOutput.PWM
    board.run(2.0)
    assert board.closed and board.faults == []


def test_a_contactor_that_does_not_close_is_latched_one_second_after_the_coil_rule() -> None:
    board = Board.make(stuck_open=True)
    board.cp = CpState.B
    board.run(0.5)
    board.send(StartCharging("remote"))
    board.run(3.0)
    board.cp = CpState.C
    board.run(0.06)
    granted_at = board.granted_at
    assert board.ctl.state is EvseState.CHARGING and granted_at is not None
    board.run(granted_at + 0.99 - board.now)
    assert board.faults == []
    board.run(0.02)  # IEC 61851-1 A.6 seq 4 within 3 s; our bound: 1 s
    assert board.faults == [FaultKind.CONTACTOR_STUCK_OPEN]
    assert not board.permission and board.output is PilotOutput.F


def test_a_contact_that_falls_open_and_stays_open_is_latched() -> None:
    board = Board.make()
    remote_start_then_charge(board)
    board.stuck_open = True  # the contacts drop out while the coil stays energised
    board.run(0.9)
    assert board.faults == []
    board.run(0.2)
    assert board.faults == [FaultKind.CONTACTOR_STUCK_OPEN]


def test_a_weld_after_the_remote_stop_is_latched() -> None:
    board = Board.make(welded=True)
    remote_start_then_charge(board)
    board.send(StopCharging("remote"))
    board.run(0.5)
    board.cp = CpState.B  # the EV opens S2: permission withdrawn, the contacts stay closed
    board.run(0.2)
    assert board.closed and board.faults == [FaultKind.CONTACTOR_WELDED]
