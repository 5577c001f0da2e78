"""Simulated pilot/relay board microcontroller, on the far side of the real wire.

It speaks the same framed protocol as the firmware (over a pty pair or a TCP
listener for ``socket://``), so :class:`hal.pilot_serial.driver.SerialPilotBoard`
is exercised exactly as on hardware. It enforces the firmware's guarantees from
``docs/pilot-board-protocol.md`` against the shared :class:`hal.sim.plant.Plant`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tty
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.pilot import BoardFault
from hal.pilot_serial.frames import (
    DUTY_FULL_X100,
    PROTOCOL_VERSION,
    BoardMessage,
    ClearFaults,
    Direction,
    FrameDecoder,
    FramingProblem,
    Info,
    Keepalive,
    SequenceSync,
    SetContactor,
    SetLock,
    SetPilot,
    Status,
    encode_frame,
)
from hal.sim.plant import Plant

_log = logging.getLogger(__name__)

_READ_CHUNK = 4096
_CLOSING_STATES = (CpState.C, CpState.D)
_EV_PRESENT_STATES = (CpState.B, CpState.C, CpState.D)


@dataclass(frozen=True, slots=True)
class BoardTiming:
    """Firmware timing constants (seconds); the defaults are the documented ones."""

    sample_period_s: float = 0.005  # how often the plant is sampled
    status_period_s: float = 0.050  # STATUS at least this often
    keepalive_timeout_s: float = 0.300  # host silence before HOST_KEEPALIVE_LOST
    pickup_s: float = 0.020  # coil on -> main contacts closed
    dropout_s: float = 0.010  # coil off -> main contacts open


DEFAULT_INFO = Info(
    protocol_version=PROTOCOL_VERSION,
    firmware_major=0,
    firmware_minor=1,
    firmware_patch=0,
    hardware_revision=0,
    serial_number=0x5117_0001,
)


def open_pty_pair() -> tuple[int, str]:
    """Create a raw-mode pty; return (non-blocking master fd, slave path).

    The caller owns the master fd. The slave is closed here; open it by path.
    """
    master_fd, slave_fd = os.openpty()
    try:
        tty.setraw(slave_fd)
        slave_path = os.ttyname(slave_fd)
    except OSError:
        os.close(master_fd)
        raise
    finally:
        os.close(slave_fd)
    os.set_blocking(master_fd, False)
    return master_fd, slave_path


class SimulatedPilotBoard:
    """The board firmware, simulated: connect a :class:`SerialPilotBoard` to :attr:`url`.

    ``transport="pty"`` creates a pty pair (``url`` is the slave path);
    ``transport="tcp"`` listens on 127.0.0.1 (``url`` is ``socket://127.0.0.1:PORT``)
    and serves one host at a time, a new connection replacing the old one.
    Both are ready as soon as the constructor returns; :meth:`run` serves them.
    """

    def __init__(
        self,
        plant: Plant,
        *,
        transport: Literal["pty", "tcp"] = "pty",
        tcp_port: int = 0,
        pp_ampacity_a: int = 0,
        timing: BoardTiming | None = None,
        info: Info = DEFAULT_INFO,
    ) -> None:
        self.plant = plant
        self.timing = timing or BoardTiming()
        self.pp_ampacity_a = pp_ampacity_a  # used when the plant codes no cable (tethered)
        self.info = info
        # observability for tests
        self.host_frames_rx = 0
        self.host_frame_errors: Counter[str] = Counter()
        self.frames_tx = 0
        self.frames_dropped = 0  # nobody listening / buffer full
        # transport
        self._master_fd: int | None = None
        self._slave_hold_fd: int | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._link_fd: int | None = None
        if transport == "pty":
            self._master_fd, self.url = open_pty_pair()
            # Holding the slave open keeps the pty alive while the host reopens it.
            try:
                self._slave_hold_fd = os.open(self.url, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                os.close(self._master_fd)
                raise
        else:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", tcp_port))
            listener.listen(1)
            listener.setblocking(False)
            self._listener = listener
            self.url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = FrameDecoder(Direction.HOST_TO_BOARD)
        self._tx_seq = 0
        self._tx_syn = True
        self._tx_need_delimiter = False
        # firmware state
        self._permission = False
        self._coil = False
        self._coil_changed_at = 0.0
        self._coil_timer: asyncio.TimerHandle | None = None
        self._latched = BoardFault.NONE
        self._keepalive_armed = False
        self.max_host_gap_s = 0.0  # the longest host silence seen (keep-alive starvation)
        self._last_host_rx = 0.0
        self._last_sent: Status | None = None
        self._last_sent_at = 0.0
        self._closed = False

    # ------------------------------------------------------------------ public

    @property
    def permission(self) -> bool:
        return self._permission

    @property
    def coil_energised(self) -> bool:
        return self._coil

    @property
    def faults(self) -> BoardFault:
        return self._latched

    async def run(self) -> None:
        """Serve the link and run the firmware loop until cancelled; then close."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        accept_task: asyncio.Task[None] | None = None
        try:
            if self._master_fd is not None:
                self._attach(self._master_fd)
            else:
                accept_task = asyncio.create_task(self._accept_loop())
            period_s = self.timing.sample_period_s
            while True:
                self._step(loop.time())
                await asyncio.sleep(period_s)
        finally:
            if accept_task is not None:
                accept_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await accept_task
            self.close()

    def disconnect(self) -> None:
        """Drop the current TCP connection (the host may reconnect); pty: hang up for good."""
        if self._conn is not None:
            self._drop_link("disconnected by test")
        else:
            self.close()

    def close(self) -> None:
        """Release the pty / sockets. Idempotent; the host sees EOF or EIO."""
        if self._closed:
            return
        self._closed = True
        if self._coil_timer is not None:
            self._coil_timer.cancel()
        if self._conn is not None:
            self._drop_link("board closed")
        if self._link_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._link_fd)
        self._link_fd = None
        for fd in (self._master_fd, self._slave_hold_fd):
            if fd is not None:
                os.close(fd)
        self._master_fd = self._slave_hold_fd = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # ------------------------------------------------------------------ link

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, peer = await loop.sock_accept(self._listener)
            conn.setblocking(False)
            if self._conn is not None:
                self._on_readable()  # take what the old host said before it left
            if self._conn is not None:
                self._drop_link("replaced by a new connection")
            _log.info("simulated pilot board: host connected from %s", peer)
            self._conn = conn
            self._attach(conn.fileno())

    def _attach(self, fd: int) -> None:
        assert self._loop is not None
        self._link_fd = fd
        self._decoder = FrameDecoder(Direction.HOST_TO_BOARD)
        self._tx_syn = True
        self._tx_need_delimiter = False
        self._last_sent = None
        self._loop.add_reader(fd, self._on_readable)
        self._send(self.info)

    def _drop_link(self, reason: str) -> None:
        _log.info("simulated pilot board: link dropped: %s", reason)
        if self._link_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._link_fd)
        self._link_fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _on_readable(self) -> None:
        fd = self._link_fd
        if fd is None or self._loop is None:
            return
        try:
            data = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop_link(f"read failed: {exc}")
            return
        if not data:
            self._drop_link("host closed the connection")
            return
        now = self._loop.time()
        self._decoder.receive_data(data)
        for event in self._decoder.events():
            if isinstance(event, FramingProblem):
                self.host_frame_errors[type(event).__name__] += 1
                _log.debug("simulated pilot board: %s", event.detail)
            elif isinstance(event, SequenceSync):
                if not event.forced:
                    self._send(self.info)
            elif isinstance(event, Status | Info):
                pass  # decoder already refuses board->host types
            else:
                self.host_frames_rx += 1
                if self._keepalive_armed:
                    self.max_host_gap_s = max(self.max_host_gap_s, now - self._last_host_rx)
                self._last_host_rx = now
                self._keepalive_armed = True
                self._apply(event, now)
        self._step(now)

    def _send(self, msg: BoardMessage) -> bool:
        fd = self._link_fd
        if fd is None or self.plant.inject_board_silent:
            return False
        frame = encode_frame(msg, self._tx_seq, syn=self._tx_syn)
        if self._tx_need_delimiter:
            frame = b"\x00" + frame
        self._tx_seq = (self._tx_seq + 1) & 0xFF
        self._tx_syn = False
        try:
            written = os.write(fd, frame)
        except BlockingIOError:
            self.frames_dropped += 1  # a UART would have sent it into the void
            return True
        except OSError as exc:
            self._drop_link(f"write failed: {exc}")
            return False
        self.frames_tx += 1
        self._tx_need_delimiter = written != len(frame)
        return True

    # ------------------------------------------------------------------ firmware

    def _apply(self, msg: object, now: float) -> None:
        plant = self.plant
        if isinstance(msg, Keepalive):
            return
        if isinstance(msg, SetPilot):
            plant.pilot_output = msg.output
            if msg.output is PilotOutput.PWM:
                plant.duty_pct = msg.duty_pct
            else:
                plant.duty_pct = 100.0 if msg.output is PilotOutput.X1 else 0.0
        elif isinstance(msg, SetContactor):
            # A grant is ignored while any fault is set: it must be renewed after clearing.
            self._permission = msg.permission and not self._latched
        elif isinstance(msg, SetLock):
            plant.locked = msg.locked
        elif isinstance(msg, ClearFaults):
            self._update_mirror(now)
            self._latched = self._live_faults(now)
            _log.info("simulated pilot board: faults cleared, still set: %s", self._latched)

    def _measured_cp(self) -> CpState:
        plant = self.plant
        if plant.pilot_output is PilotOutput.F:
            return CpState.F
        if plant.inject_cp_short:
            return CpState.E
        return plant.ev_cp_state

    def _live_faults(self, now: float) -> BoardFault:
        """Fault conditions present right now (what CLEAR_FAULTS cannot clear)."""
        plant = self.plant
        live = BoardFault.NONE
        if plant.inject_rcd_ac:
            live |= BoardFault.RCD_AC
        if plant.inject_rcd_dc:
            live |= BoardFault.RCD_DC
        if plant.inject_over_temperature:
            live |= BoardFault.OVER_TEMPERATURE
        if (
            plant.pilot_output is PilotOutput.PWM
            and not plant.ev_diode_ok
            and self._measured_cp() in _EV_PRESENT_STATES
        ):
            live |= BoardFault.DIODE
        if self._keepalive_armed and now - self._last_host_rx > self.timing.keepalive_timeout_s:
            live |= BoardFault.HOST_KEEPALIVE_LOST
        if (
            not self._coil
            and plant.contactor_closed
            and now - self._coil_changed_at >= self.timing.dropout_s
        ):
            live |= BoardFault.CONTACTOR_WELDED
        return live

    def _latch(self, live: BoardFault) -> None:
        new = live & ~self._latched
        if new:
            self._latched |= new
            if self._permission:
                _log.warning("simulated pilot board: %s -> permission dropped", new)
            else:
                _log.info("simulated pilot board: fault %s", new)
            self._permission = False

    def _update_mirror(self, now: float) -> None:
        """Main contacts follow the coil after the pick-up / drop-out time; a weld holds them."""
        plant = self.plant
        elapsed_s = now - self._coil_changed_at
        if self._coil:
            plant.contactor_closed = plant.contactor_closed or elapsed_s >= self.timing.pickup_s
        else:
            plant.contactor_closed = plant.contactor_closed and (
                plant.inject_contactor_weld or elapsed_s < self.timing.dropout_s
            )

    def _step(self, now: float) -> None:
        """One firmware pass: contacts, faults, coil, then STATUS if changed or due."""
        if self._closed:
            return
        plant = self.plant
        timing = self.timing
        self._update_mirror(now)
        self._latch(self._live_faults(now))
        cp = self._measured_cp()
        coil = (
            self._permission
            and cp in _CLOSING_STATES
            and plant.pilot_output is PilotOutput.PWM
            and not self._latched
        )
        if coil != self._coil:
            self._coil = coil
            self._coil_changed_at = now
            if self._coil_timer is not None:
                self._coil_timer.cancel()
            if self._loop is not None:
                delay_s = timing.pickup_s if coil else timing.dropout_s
                self._coil_timer = self._loop.call_later(delay_s, self._on_coil_timer)

        status = self._status(cp)
        due = now - self._last_sent_at >= timing.status_period_s - timing.sample_period_s
        if (status != self._last_sent or due) and self._send(status):
            self._last_sent = status
            self._last_sent_at = now

    def _on_coil_timer(self) -> None:
        self._coil_timer = None
        if self._loop is not None:
            self._step(self._loop.time())

    def _status(self, cp: CpState) -> Status:
        plant = self.plant
        return Status(
            cp_state=cp,
            output=plant.pilot_output,
            duty_pct_x100=min(max(round(plant.duty_pct * 100), 0), DUTY_FULL_X100),
            pp_ampacity_a=self.plant.pp_ampacity_a or self.pp_ampacity_a,
            permission=self._permission,
            contactor_closed=plant.contactor_closed,
            locked=plant.locked,
            coil_energised=self._coil,
            faults_raw=self._latched.value,
            temperature_c_x10=min(max(round(plant.temperature_c * 10), -0x8000), 0x7FFF),
        )
