"""Simulated PN532 card reader on the far side of a pty, speaking PN532 HSU frames.

:class:`hal.pn532.Pn532Reader` drives it exactly as it drives the chip: each
command frame is answered with an ACK frame and a response frame, a NACK gets
the last response again, a frame the firmware cannot parse gets the application
error frame. :meth:`SimulatedPn532.tap` holds a card in the field for a moment,
as a driver's tap does. Tests can corrupt or withhold answers
(:attr:`corrupt_responses`, :attr:`silent`).
"""

from __future__ import annotations

import asyncio
import logging
import os

from hal.pilot_serial.simulated import open_pty_pair
from hal.pn532_frames import (
    ACK_FRAME,
    ERROR_FRAME,
    TFI_HOST,
    Command,
    FrameDecoder,
    FrameProblem,
    Information,
    Nack,
    TargetA,
    encode_target_106a,
    response_frame,
)

_log = logging.getLogger(__name__)

_READ_CHUNK = 1024
FIRMWARE = bytes((0x32, 0x01, 0x06, 0x07))  # PN532 v1.6, Type A, Type B, ISO 18092
TAP_S = 0.8  # a card held over the reader this long: longer than a few polls
UID_SIZES = (4, 7, 10)  # ISO/IEC 14443-3 single, double, triple size


class SimulatedPn532:
    """Connect a :class:`~hal.pn532.Pn532Reader` to :attr:`url` (a pty slave path)."""

    def __init__(self) -> None:
        self._master_fd: int | None
        self._master_fd, self.url = open_pty_pair()
        try:  # holding the slave open keeps the pty alive while the host reopens it
            self._slave_hold_fd: int | None = os.open(
                self.url, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK
            )
        except OSError:
            os.close(self._master_fd)
            raise
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = FrameDecoder()
        self._last_response: bytes | None = None
        self._card: bytes | None = None
        self._card_until = 0.0
        # observability and fault injection for tests
        self.commands_rx: list[int] = []
        self.frame_problems = 0
        self.corrupt_responses = 0  # this many next responses go out with a bad DCS
        self.silent = False  # answer nothing (a reader that hangs)

    # ------------------------------------------------------------------ the field
    def tap(self, uid: bytes, hold_s: float = TAP_S) -> None:
        """A card with ``uid`` enters the field for ``hold_s`` seconds."""
        if len(uid) not in UID_SIZES:
            raise ValueError(f"an ISO 14443 UID has 4, 7 or 10 bytes, got {len(uid)}")
        now = self._loop.time() if self._loop is not None else 0.0
        self._card, self._card_until = uid, now + hold_s

    def card_in_field(self) -> bytes | None:
        if self._card is None or self._loop is None:
            return self._card
        if self._loop.time() >= self._card_until:
            self._card = None
        return self._card

    # ------------------------------------------------------------------ link
    async def run(self) -> None:
        """Serve the pty until cancelled; then close it."""
        self._loop = asyncio.get_running_loop()
        assert self._master_fd is not None
        self._loop.add_reader(self._master_fd, self._on_readable)
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        """Idempotent; the host sees EIO."""
        if self._master_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._master_fd)
        for fd in (self._master_fd, self._slave_hold_fd):
            if fd is not None:
                os.close(fd)
        self._master_fd = self._slave_hold_fd = None

    def _on_readable(self) -> None:
        fd = self._master_fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the host closed the slave: wait for it to reopen
            return
        self._decoder.receive_data(data)
        for event in self._decoder.events():
            if isinstance(event, FrameProblem):
                self.frame_problems += 1
                self._send(ERROR_FRAME)
            elif isinstance(event, Nack):
                if self._last_response is not None:
                    self._send_response(self._last_response)
            elif isinstance(event, Information) and event.tfi == TFI_HOST:
                self.commands_rx.append(event.code)
                self._answer(event.code, event.data)

    def _answer(self, code: int, params: bytes) -> None:
        data = self._respond(code, params)
        if data is None:
            self._send(ERROR_FRAME)  # a command this firmware does not know
            return
        self._send(ACK_FRAME)
        self._last_response = response_frame(code, data)
        self._send_response(self._last_response)

    def _send_response(self, frame: bytes) -> None:
        if self.corrupt_responses > 0:
            self.corrupt_responses -= 1
            frame = frame[:-2] + bytes(((frame[-2] + 1) & 0xFF,)) + frame[-1:]
        self._send(frame)

    def _respond(self, code: int, params: bytes) -> bytes | None:
        match code:
            case Command.GET_FIRMWARE_VERSION:
                return FIRMWARE
            case Command.SAM_CONFIGURATION | Command.RF_CONFIGURATION:
                return b""
            case Command.IN_RELEASE:
                return b"\x00"  # status: success
            case Command.IN_LIST_PASSIVE_TARGET:
                uid = self.card_in_field()
                if uid is None:
                    return b"\x00"
                sens_res = b"\x00\x04" if len(uid) == 4 else b"\x00\x44"
                return b"\x01" + encode_target_106a(TargetA(1, sens_res, 0x08, uid))
        return None

    def _send(self, frame: bytes) -> None:
        fd = self._master_fd
        if fd is None or self.silent:
            return
        try:
            os.write(fd, frame)
        except OSError as exc:  # buffer full or host gone: a UART sends into the void
            _log.debug("simulated PN532: frame lost: %s", exc)
