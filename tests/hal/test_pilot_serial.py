"""The real serial driver against the simulated board firmware, over a pty and over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from serial.urlhandler import protocol_socket

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.errors import HalInitError, HalOperationError
from hal.pilot import BoardFault, PilotBoard, PilotStatus
from hal.pilot_serial import SerialPilotBoard, SimulatedPilotBoard, open_pty_pair
from hal.pilot_serial.frames import (
    SYN_FLAG,
    Direction,
    Event,
    FrameDecoder,
    Keepalive,
    SetContactor,
    SetPilot,
    Status,
    cobs_decode,
    encode_frame,
)
from hal.sim.plant import Plant

TIMEOUT_S = 2.0  # generous: the machine is shared; every wait below is event-driven


@pytest.fixture(autouse=True)
def _no_pyserial_close_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyserial's socket:// close() sleeps 0.3 s "for quick reconnects"; our simulated
    board needs no such grace, and it would dominate this module's run time."""
    monkeypatch.setattr(protocol_socket, "time", SimpleNamespace(sleep=lambda _s: None))


class KeepaliveTask:
    """Plays the host supervisor's keep-alive duty (every 20 ms)."""

    def __init__(self, board: SerialPilotBoard) -> None:
        self._board = board
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        with contextlib.suppress(HalOperationError):
            while True:
                await self._board.send_keepalive()
                await asyncio.sleep(0.02)


@dataclass
class Rig:
    plant: Plant
    sim: SimulatedPilotBoard
    sim_task: asyncio.Task[None]
    board: SerialPilotBoard
    keepalive: KeepaliveTask


async def stop_sim(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def make_rig(transport: str) -> AsyncIterator[Rig]:
    plant = Plant()
    sim = SimulatedPilotBoard(plant, transport=transport)  # type: ignore[arg-type]
    sim_task = asyncio.create_task(sim.run())
    board = SerialPilotBoard(sim.url)
    await board.open()
    keepalive = KeepaliveTask(board)
    keepalive.start()
    try:
        yield Rig(plant, sim, sim_task, board, keepalive)
    finally:
        await keepalive.stop()
        await board.close()
        await stop_sim(sim_task)


@pytest.fixture(params=["pty", "tcp"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    async with make_rig(request.param) as r:
        yield r


@pytest.fixture
async def pty_rig() -> AsyncIterator[Rig]:
    async with make_rig("pty") as r:
        yield r


async def wait_status(
    board: SerialPilotBoard, predicate: Callable[[PilotStatus], bool]
) -> PilotStatus:
    async def loop() -> PilotStatus:
        while True:
            status = await board.read_status()
            if predicate(status):
                return status

    return await asyncio.wait_for(loop(), TIMEOUT_S)


async def close_contactor(rig: Rig) -> None:
    await rig.board.set_pwm(16.0)
    await rig.board.set_contactor_permission(True)
    rig.plant.ev_cp_state = CpState.C
    status = await wait_status(rig.board, lambda s: s.contactor_closed)
    assert rig.plant.contactor_closed
    assert status.contactor_permission


# ----------------------------------------------------------------------------- link basics


async def test_status_flows(rig: Rig) -> None:
    first = await asyncio.wait_for(rig.board.read_status(), TIMEOUT_S)
    assert first.cp_state is CpState.A
    assert first.output is PilotOutput.X1
    assert first.temperature_c == pytest.approx(25.0)
    assert first.pp_ampacity_a is None
    await wait_status(rig.board, lambda s: rig.board.board_info is not None)
    assert rig.board.board_info is not None
    assert rig.board.board_info.protocol_version == 1
    for _ in range(3):  # periodic keep-alive STATUS with nothing changing
        await asyncio.wait_for(rig.board.read_status(), TIMEOUT_S)
    assert rig.board.stats.statuses_rx >= 4
    assert rig.board.stats.framing_errors == 0
    assert rig.sim.host_frame_errors == {}


async def test_pilot_commands_reach_plant_and_status(rig: Rig) -> None:
    board, plant = rig.board, rig.plant
    plant.ev_cp_state = CpState.B
    await board.set_pwm(16.0)
    status = await wait_status(board, lambda s: s.output is PilotOutput.PWM)
    assert status.duty_pct == pytest.approx(16.0)
    assert status.cp_state is CpState.B
    assert (plant.pilot_output, plant.duty_pct) == (PilotOutput.PWM, 16.0)

    await board.set_pwm(5.0)
    await wait_status(board, lambda s: s.duty_pct == pytest.approx(5.0))

    await board.set_x1()
    status = await wait_status(board, lambda s: s.output is PilotOutput.X1)
    assert status.duty_pct == pytest.approx(100.0)
    assert (plant.pilot_output, plant.duty_pct) == (PilotOutput.X1, 100.0)

    await board.set_state_f()
    status = await wait_status(board, lambda s: s.output is PilotOutput.F)
    assert status.cp_state is CpState.F  # the board reads its own -12 V
    assert (plant.pilot_output, plant.locked) == (PilotOutput.F, False)

    await board.set_lock(True)
    await wait_status(board, lambda s: s.locked)
    assert plant.locked
    await board.set_lock(False)
    await wait_status(board, lambda s: not s.locked)
    assert not plant.locked


# ----------------------------------------------------------------------------- contactor


async def test_permission_closes_and_withdrawal_opens(rig: Rig) -> None:
    await close_contactor(rig)
    await rig.board.set_contactor_permission(False)
    status = await wait_status(rig.board, lambda s: not s.contactor_closed)
    assert not status.contactor_permission
    assert not rig.plant.contactor_closed
    assert status.faults == BoardFault.NONE


async def test_no_close_without_every_condition(pty_rig: Rig) -> None:
    board, plant = pty_rig.board, pty_rig.plant
    await board.set_contactor_permission(True)
    plant.ev_cp_state = CpState.C
    # permission + C but X1: must stay open; the status carries both facts
    status = await wait_status(board, lambda s: s.contactor_permission and s.cp_state is CpState.C)
    for _ in range(3):
        status = await asyncio.wait_for(board.read_status(), TIMEOUT_S)
        assert not status.contactor_closed
    await board.set_pwm(10.0)
    await wait_status(board, lambda s: s.contactor_closed)


async def test_cp_leaving_c_opens_by_itself(rig: Rig) -> None:
    await close_contactor(rig)
    rig.plant.ev_cp_state = CpState.B
    status = await wait_status(rig.board, lambda s: not s.contactor_closed)
    assert status.cp_state is CpState.B
    assert status.contactor_permission  # still granted: the board decided alone
    # back to C: closes again on the standing permission
    rig.plant.ev_cp_state = CpState.C
    await wait_status(rig.board, lambda s: s.contactor_closed)


async def test_keepalive_loss_opens_and_flags(rig: Rig) -> None:
    await close_contactor(rig)
    await rig.keepalive.stop()
    status = await wait_status(rig.board, lambda s: BoardFault.HOST_KEEPALIVE_LOST in s.faults)
    status = await wait_status(rig.board, lambda s: not s.contactor_closed)
    assert not status.contactor_permission
    assert BoardFault.HOST_KEEPALIVE_LOST in status.faults
    assert not rig.plant.contactor_closed
    # host is back: faults clear, a fresh grant is needed and works
    rig.keepalive.start()
    await rig.board.clear_faults()
    await wait_status(rig.board, lambda s: s.faults == BoardFault.NONE)
    await rig.board.set_contactor_permission(True)
    await wait_status(rig.board, lambda s: s.contactor_closed)


async def test_silent_board_makes_read_status_wait(rig: Rig) -> None:
    await asyncio.wait_for(rig.board.read_status(), TIMEOUT_S)
    rig.plant.inject_board_silent = True
    with pytest.raises(TimeoutError):
        for _ in range(5):  # at most a frame or two already in flight
            await asyncio.wait_for(rig.board.read_status(), 0.2)
    rig.plant.inject_board_silent = False
    await asyncio.wait_for(rig.board.read_status(), TIMEOUT_S)


async def test_board_closing_link_raises(rig: Rig) -> None:
    await asyncio.wait_for(rig.board.read_status(), TIMEOUT_S)
    await stop_sim(rig.sim_task)

    async def read_until_error() -> None:
        while True:  # a STATUS or two may still be in flight
            await rig.board.read_status()

    with pytest.raises(HalOperationError, match=r"end of file|read failed"):
        await asyncio.wait_for(read_until_error(), TIMEOUT_S)
    with pytest.raises(HalOperationError):
        await rig.board.read_status()
    with pytest.raises(HalOperationError):
        await rig.board.set_pwm(10.0)
    await rig.board.close()
    await rig.board.close()  # idempotent


async def test_host_close_fails_pending_read_and_withdraws_permission(rig: Rig) -> None:
    await close_contactor(rig)
    await rig.keepalive.stop()
    pending = asyncio.ensure_future(rig.board.read_status())
    await asyncio.sleep(0)  # let it register as a waiter
    await rig.board.close()
    with pytest.raises(HalOperationError, match="closed"):
        await pending
    await rig.board.close()  # idempotent
    # a new host session on the same line sees the withdrawal (over TCP, pyserial's close
    # lingers 0.3 s, so the board may also have flagged keep-alive loss meanwhile)
    second = SerialPilotBoard(rig.sim.url)
    await second.open()
    try:
        await second.send_keepalive()
        status = await wait_status(second, lambda s: not s.contactor_closed)
        assert not status.contactor_permission
    finally:
        await second.close()


async def test_tcp_host_reconnects_after_board_drops_connection() -> None:
    async with make_rig("tcp") as rig:
        await asyncio.wait_for(rig.board.read_status(), TIMEOUT_S)
        rig.sim.disconnect()
        with pytest.raises(HalOperationError, match="end of file"):
            await wait_status(rig.board, lambda s: False)
        await rig.keepalive.stop()
        await rig.board.close()
        await rig.board.open()
        rig.keepalive.start()
        await rig.board.set_pwm(20.0)
        await wait_status(rig.board, lambda s: s.duty_pct == pytest.approx(20.0))


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("inject", "flag"),
    [
        ("inject_rcd_ac", BoardFault.RCD_AC),
        ("inject_rcd_dc", BoardFault.RCD_DC),
        ("inject_over_temperature", BoardFault.OVER_TEMPERATURE),
    ],
)
async def test_latched_fault_opens_and_clears_only_when_gone(
    pty_rig: Rig, inject: str, flag: BoardFault
) -> None:
    board, plant = pty_rig.board, pty_rig.plant
    await close_contactor(pty_rig)
    setattr(plant, inject, True)
    status = await wait_status(board, lambda s: flag in s.faults and not s.contactor_closed)
    assert not status.contactor_permission
    await board.clear_faults()  # condition still present: stays
    status = await set_lock_marker(board, True)
    assert flag in status.faults
    setattr(plant, inject, False)  # condition gone, but the flag stays latched
    status = await set_lock_marker(board, False)
    assert flag in status.faults
    await board.clear_faults()
    await wait_status(board, lambda s: s.faults == BoardFault.NONE)


async def set_lock_marker(board: SerialPilotBoard, locked: bool) -> PilotStatus:
    """The board handles frames in order: once the lock shows, earlier commands are done."""
    await board.set_lock(locked)
    return await wait_status(board, lambda s: s.locked == locked)


async def test_missing_diode_and_cp_short(pty_rig: Rig) -> None:
    board, plant = pty_rig.board, pty_rig.plant
    plant.ev_cp_state = CpState.B
    plant.ev_diode_ok = False
    await board.set_pwm(16.0)
    await wait_status(board, lambda s: BoardFault.DIODE in s.faults)
    plant.inject_cp_short = True
    await wait_status(board, lambda s: s.cp_state is CpState.E)


async def test_welded_contactor_stays_closed_and_is_flagged(pty_rig: Rig) -> None:
    await close_contactor(pty_rig)
    pty_rig.plant.inject_contactor_weld = True
    await pty_rig.board.set_contactor_permission(False)
    status = await wait_status(pty_rig.board, lambda s: BoardFault.CONTACTOR_WELDED in s.faults)
    assert status.contactor_closed
    assert pty_rig.plant.contactor_closed
    await pty_rig.board.clear_faults()  # still welded: stays
    status = await set_lock_marker(pty_rig.board, True)
    assert BoardFault.CONTACTOR_WELDED in status.faults
    assert status.contactor_closed


# ----------------------------------------------------------------------------- open errors


async def test_open_missing_tty_names_the_port() -> None:
    board: PilotBoard = SerialPilotBoard("/dev/ttyDOES-NOT-EXIST")  # mypy checks the Protocol
    with pytest.raises(HalInitError, match="/dev/ttyDOES-NOT-EXIST"):
        await board.open()
    await board.close()  # never opened: harmless


async def test_open_refused_socket_names_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"socket://127.0.0.1:{port}"
    with pytest.raises(HalInitError, match=url):
        await SerialPilotBoard(url).open()


# ----------------------------------------------------------------------------- wire level


class FakeBoardEnd:
    """The test plays the microcontroller on a bare pty, to see exact bytes."""

    def __init__(self) -> None:
        self.master_fd, self.path = open_pty_pair()
        self.decoder = FrameDecoder(Direction.HOST_TO_BOARD)
        self.raw_reads: list[bytes] = []

    async def read_events(self, count: int) -> list[Event]:
        loop = asyncio.get_running_loop()
        events: list[Event] = []
        readable = asyncio.Event()
        loop.add_reader(self.master_fd, readable.set)
        try:
            while len(events) < count:
                await asyncio.wait_for(readable.wait(), TIMEOUT_S)
                readable.clear()
                with contextlib.suppress(BlockingIOError):
                    data = os.read(self.master_fd, 4096)
                    self.raw_reads.append(data)
                    self.decoder.receive_data(data)
                    events += self.decoder.events()
        finally:
            loop.remove_reader(self.master_fd)
        return events

    def write(self, data: bytes) -> None:
        os.write(self.master_fd, data)

    def close(self) -> None:
        os.close(self.master_fd)


@pytest.fixture
def fake_board() -> Iterator[FakeBoardEnd]:
    end = FakeBoardEnd()
    yield end
    end.close()


def make_status(temperature_c_x10: int = 250) -> Status:
    return Status(
        cp_state=CpState.B,
        output=PilotOutput.PWM,
        duty_pct_x100=1600,
        pp_ampacity_a=20,
        permission=False,
        contactor_closed=False,
        locked=True,
        coil_energised=False,
        faults_raw=0,
        temperature_c_x10=temperature_c_x10,
    )


async def test_commands_are_whole_frames_with_syn_first(fake_board: FakeBoardEnd) -> None:
    board = SerialPilotBoard(fake_board.path)
    await board.open()
    try:
        await board.send_keepalive()
        await board.set_pwm(16.0)
        await board.set_contactor_permission(True)
        events = await fake_board.read_events(4)  # SYN sync event + 3 messages
    finally:
        await board.close()
    assert events[1:] == [Keepalive(), SetPilot.pwm(16.0), SetContactor(True)]
    first = b"".join(fake_board.raw_reads)
    assert first[0] == 0  # leading delimiter flushes any partial frame at the board
    assert cobs_decode(first[1:].split(b"\x00")[0])[0] == Keepalive.TYPE | SYN_FLAG
    assert board.stats.frames_tx == 4  # incl. the permission withdrawal on close
    closing = await fake_board.read_events(1)
    assert closing == [SetContactor(False)]


async def test_driver_counts_and_logs_framing_errors(
    fake_board: FakeBoardEnd, caplog: pytest.LogCaptureFixture
) -> None:
    board = SerialPilotBoard(fake_board.path)
    await board.open()
    try:
        garbage = b"\x07\x01\x02\x00"  # bad COBS
        fake_board.write(encode_frame(make_status(1), 0) + garbage)
        fake_board.write(encode_frame(make_status(2), 1) + encode_frame(make_status(3), 5))
        with caplog.at_level(logging.WARNING, logger="hal.pilot_serial.driver"):
            seen = [await asyncio.wait_for(board.read_status(), TIMEOUT_S)]
            while seen[-1].temperature_c != pytest.approx(0.3):
                seen.append(await asyncio.wait_for(board.read_status(), TIMEOUT_S))
    finally:
        await board.close()
    assert seen[0].cp_state is CpState.B
    assert seen[0].pp_ampacity_a == 20.0
    assert seen[0].locked
    assert board.stats.framing_errors == 2
    assert board.stats.errors_by_kind == {"BadCobs": 1, "SequenceGap": 1}
    assert board.stats.frames_lost == 3
    assert "bad COBS" in caplog.text
    assert "sequence gap" in caplog.text


async def test_unread_statuses_are_all_delivered_in_order(fake_board: FakeBoardEnd) -> None:
    """However the bytes are chunked, a reader sees every STATUS once, in order."""
    board = SerialPilotBoard(fake_board.path)
    await board.open()
    try:
        frames = b"".join(encode_frame(make_status(t), t) for t in range(1, 6))
        fake_board.write(b"\x00" + frames)
        seen = [await asyncio.wait_for(board.read_status(), TIMEOUT_S)]
        while seen[-1].temperature_c != pytest.approx(0.5):
            seen.append(await asyncio.wait_for(board.read_status(), TIMEOUT_S))
    finally:
        await board.close()
    temperatures = [s.temperature_c for s in seen]
    assert temperatures == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert board.stats.statuses_dropped == 0


async def test_reads_cancelled_by_timeouts_lose_no_status(fake_board: FakeBoardEnd) -> None:
    """A caller that reads with short timeouts (as the safety loop does) still gets
    every STATUS: a status arriving as the timeout fires is kept for the next read."""
    board = SerialPilotBoard(fake_board.path)
    await board.open()
    seen: list[float] = []

    async def produce() -> None:
        fake_board.write(b"\x00")
        for t in range(1, 41):
            fake_board.write(encode_frame(make_status(t), t))
            await asyncio.sleep(0.002)

    try:
        producer = asyncio.create_task(produce())
        loop = asyncio.get_running_loop()
        end = loop.time() + TIMEOUT_S
        while len(seen) < 40 and loop.time() < end:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.002):
                    seen.append((await board.read_status()).temperature_c)
        await producer
    finally:
        await board.close()
    assert seen == pytest.approx([t / 10 for t in range(1, 41)])
