"""Real :class:`hal.pilot.PilotBoard` driver over a serial line (or ``socket://``).

The receive path is deliberately short because the safety benchmark times it:
the event loop calls :meth:`SerialPilotBoard._on_readable` when the fd is
readable, which reads, decodes and completes the ``read_status()`` waiter in the
same callback. Commands are one ``os.write`` of one whole frame and never wait
for an answer; the board's next STATUS is the acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import serial

from hal.errors import HalInitError, HalOperationError
from hal.pilot import PilotStatus
from hal.pilot_serial.frames import (
    ClearFaults,
    Direction,
    FrameDecoder,
    FramingProblem,
    HostMessage,
    Info,
    Keepalive,
    SequenceGap,
    SequenceSync,
    SetContactor,
    SetLock,
    SetPilot,
    Status,
    encode_frame,
)

_log = logging.getLogger(__name__)

_READ_CHUNK = 4096


@dataclass
class PilotLinkStats:
    """Counters for diagnostics and tests; cumulative over the object's life (not reset by open)."""

    bytes_rx: int = 0
    statuses_rx: int = 0
    frames_tx: int = 0
    framing_errors: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    frames_lost: int = 0  # summed over sequence gaps
    statuses_dropped: int = 0  # the backlog was full: the oldest unread STATUS was dropped
    tx_errors: int = 0


class SerialPilotBoard:
    """Pilot/relay board on ``url`` (a tty path, pty slave path or ``socket://host:port``).

    ``read_status`` is meant for one consumer and has queue semantics: every
    STATUS is handed out once, in order, and a read cancelled by its caller's
    timeout never loses one (the reader is only woken; it takes the status from
    the backlog itself). The backlog is bounded (``BACKLOG`` reports, 3 s at the
    board's 50 ms period); past that the oldest is dropped and counted in
    ``stats.statuses_dropped``.
    """

    BACKLOG = 64

    def __init__(self, url: str, *, baudrate: int = 115_200, exclusive: bool = True) -> None:
        self.url = url
        self.baudrate = baudrate
        self.exclusive = exclusive
        self.stats = PilotLinkStats()
        self.board_info: Info | None = None
        self.last_status: PilotStatus | None = None
        self._serial: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = FrameDecoder(Direction.BOARD_TO_HOST, in_sync=False)
        self._tx_seq = 0
        self._tx_syn = True
        self._tx_need_delimiter = True
        self._waiters: list[asyncio.Future[None]] = []
        self._backlog: deque[PilotStatus] = deque()
        self._link_error: str | None = "not open"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._serial is not None:
            raise HalInitError(f"{self.url}: already open")
        try:
            port = await asyncio.to_thread(
                serial.serial_for_url,
                self.url,
                baudrate=self.baudrate,
                timeout=0,
                write_timeout=0,
                exclusive=self.exclusive,
            )
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            raise HalInitError(f"{self.url}: cannot open pilot board link: {exc}") from exc
        try:
            fd = int(port.fileno())
            os.set_blocking(fd, False)
        except OSError as exc:
            port.close()
            raise HalInitError(f"{self.url}: no pollable file descriptor: {exc}") from exc
        self._serial = port
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder(Direction.BOARD_TO_HOST, in_sync=False)
        self._tx_seq = 0
        self._tx_syn = True
        self._tx_need_delimiter = True
        self._backlog.clear()
        self._link_error = None
        self._loop.add_reader(fd, self._on_readable)
        _log.info("%s: pilot board link open", self.url)

    async def close(self) -> None:
        port = self._serial
        if port is None:
            return
        if self._link_error is None:
            try:
                self._send(SetContactor(permission=False))
            except HalOperationError as exc:
                _log.warning("%s: could not withdraw permission on close: %s", self.url, exc)
        self._detach("link closed by host", unexpected=False)
        self._serial = None
        # pyserial's socket:// close() sleeps; keep the loop responsive meanwhile.
        await asyncio.to_thread(port.close)
        _log.info("%s: pilot board link closed", self.url)

    # ------------------------------------------------------------------ status

    async def read_status(self) -> PilotStatus:
        while True:
            if self._backlog:
                return self._backlog.popleft()
            if self._link_error is not None or self._loop is None:
                raise HalOperationError(f"{self.url}: {self._link_error}")
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    # ------------------------------------------------------------------ commands

    async def set_pwm(self, duty_pct: float) -> None:
        self._send(SetPilot.pwm(duty_pct))

    async def set_x1(self) -> None:
        self._send(SetPilot.x1())

    async def set_state_f(self) -> None:
        self._send(SetPilot.state_f())

    async def set_contactor_permission(self, granted: bool) -> None:
        self._send(SetContactor(permission=granted))

    async def set_lock(self, locked: bool) -> None:
        self._send(SetLock(locked=locked))

    async def clear_faults(self) -> None:
        self._send(ClearFaults())

    async def send_keepalive(self) -> None:
        self._send(Keepalive())

    # ------------------------------------------------------------------ internals

    def _send(self, msg: HostMessage) -> None:
        """Write one whole frame with one syscall; raise HalOperationError if it did not go."""
        fd = self._fd
        if fd is None or self._link_error is not None:
            raise HalOperationError(f"{self.url}: cannot send {msg!r}: {self._link_error}")
        frame = encode_frame(msg, self._tx_seq, syn=self._tx_syn)
        if self._tx_need_delimiter:
            frame = b"\x00" + frame  # flush whatever partial frame the board may hold
        try:
            written = os.write(fd, frame)
        except BlockingIOError as exc:
            self.stats.tx_errors += 1
            raise HalOperationError(f"{self.url}: transmit buffer full, {msg!r} not sent") from exc
        except OSError as exc:
            self.stats.tx_errors += 1
            self._detach(f"write failed: {exc}")
            raise HalOperationError(f"{self.url}: write failed: {exc}") from exc
        self._tx_seq = (self._tx_seq + 1) & 0xFF
        self._tx_syn = False
        self.stats.frames_tx += 1
        if written != len(frame):
            # The board will discard the torn frame; make sure the next one starts clean.
            self._tx_need_delimiter = True
            self.stats.tx_errors += 1
            raise HalOperationError(
                f"{self.url}: short write ({written}/{len(frame)} bytes) of {msg!r}"
            )
        self._tx_need_delimiter = False

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: pty master gone; ECONNRESET: socket peer gone
            self._detach(f"read failed: {exc}")
            return
        if not data:
            self._detach("end of file (board side closed the link)")
            return
        self.stats.bytes_rx += len(data)
        decoder = self._decoder
        decoder.receive_data(data)
        for event in decoder.events():
            if type(event) is Status:
                self._deliver(event.to_pilot_status())
            else:
                self._on_other_event(event)

    def _deliver(self, status: PilotStatus) -> None:
        self.stats.statuses_rx += 1
        self.last_status = status
        if len(self._backlog) >= self.BACKLOG:
            self._backlog.popleft()
            self.stats.statuses_dropped += 1
        self._backlog.append(status)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _on_other_event(self, event: object) -> None:
        if isinstance(event, FramingProblem):
            self.stats.framing_errors += 1
            self.stats.errors_by_kind[type(event).__name__] += 1
            if isinstance(event, SequenceGap):
                self.stats.frames_lost += event.lost
            _log.warning("%s: %s", self.url, event.detail)
        elif isinstance(event, SequenceSync):
            if event.forced:
                _log.warning("%s: board sequence resynchronised at %d", self.url, event.received)
            else:
                _log.debug("%s: board restarted its sequence at %d", self.url, event.received)
        elif isinstance(event, Info):
            self.board_info = event
            _log.info(
                "%s: board protocol %d firmware %d.%d.%d hw rev %d serial %d",
                self.url,
                event.protocol_version,
                event.firmware_major,
                event.firmware_minor,
                event.firmware_patch,
                event.hardware_revision,
                event.serial_number,
            )

    def _detach(self, reason: str, *, unexpected: bool = True) -> None:
        """Stop reading and fail every waiter; the port object is closed by close()."""
        if self._link_error is None:
            self._link_error = reason
            if unexpected:
                _log.error("%s: pilot board link lost: %s", self.url, reason)
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._fd = None
        self._backlog.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(HalOperationError(f"{self.url}: {reason}"))
        self._waiters.clear()
