"""Real :class:`hal.token_reader.TokenReader` driver: an NXP PN532 on a UART (HSU).

The PN532 (Elechouse, Adafruit, many charger OEM boards) answers each command
frame with an ACK frame, then a response frame (``hal.pn532_frames``). The driver
wakes the chip (0x55 0x55 + zeros), sets the SAM to normal mode, reads the
firmware version (IC 0x32 is a PN532) and bounds the passive-activation retries
so that InListPassiveTarget comes back at once when no card is in the field. Then
it polls every ``poll_interval_s`` and reports each card once per presentation.

Errors: no ACK or response in time is :class:`HalTimeoutError` (the running command
is aborted with an ACK frame, UM0701-02 §6.2.1.3); a response with a bad checksum
is asked for again with a NACK frame, once, then :class:`HalOperationError`; an
application error frame is :class:`HalOperationError`. The read path never raises
anything else on line noise.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any

import serial

from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.pn532_frames import (
    ACK_FRAME,
    BRTY_106_TYPE_A,
    NACK_FRAME,
    RF_CFG_MAX_RETRIES,
    TFI_PN532,
    WAKEUP,
    Ack,
    Command,
    ErrorFrame,
    FrameDecoder,
    FrameEvent,
    FrameProblem,
    Information,
    Nack,
    command_frame,
    parse_targets_106a,
)
from hal.token_reader import CardPresented

_log = logging.getLogger(__name__)

_READ_CHUNK = 1024
PN532_IC = 0x32  # GetFirmwareVersion's IC byte for a PN532
SAM_NORMAL_MODE = 0x01  # SAMConfiguration mode: no SAM
PASSIVE_ACTIVATION_RETRIES = 0x02  # 0xFF would make InListPassiveTarget wait forever


@dataclass
class Pn532Stats:
    """Counters for diagnostics and tests (cumulative over the object's life)."""

    frames_tx: int = 0
    responses_rx: int = 0
    frame_problems: int = 0
    nacks_sent: int = 0
    timeouts: int = 0


@dataclass(frozen=True, slots=True)
class Pn532Firmware:
    ic: int
    version: int
    revision: int
    support: int  # bit 0: ISO/IEC 14443 Type A, bit 1: Type B, bit 2: ISO 18092


class Pn532Reader:
    """A PN532 on ``url`` (a tty path, a pty slave or ``socket://host:port``)."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115_200,
        poll_interval_s: float = 0.25,
        ack_timeout_s: float = 0.5,  # the chip ACKs within ms; the event loop may be busy
        response_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.poll_interval_s = poll_interval_s
        self.ack_timeout_s = ack_timeout_s
        self.response_timeout_s = response_timeout_s
        self.stats = Pn532Stats()
        self.firmware: Pn532Firmware | None = None
        self._serial: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = FrameDecoder()
        self._events: deque[FrameEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._link_error: str | None = "not open"
        self._present: bytes | None = None  # the card in the field, already reported

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._serial is not None:
            raise HalInitError(f"{self.url}: already open")
        try:
            port = await asyncio.to_thread(
                serial.serial_for_url, self.url, baudrate=self.baudrate, timeout=0, exclusive=True
            )
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            raise HalInitError(f"{self.url}: cannot open token reader link: {exc}") from exc
        try:
            fd = int(port.fileno())
            os.set_blocking(fd, False)
        except OSError as exc:
            port.close()
            raise HalInitError(f"{self.url}: no pollable file descriptor: {exc}") from exc
        self._serial, self._fd = port, fd
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder()
        self._events.clear()
        self._present = None
        self._link_error = None
        self._loop.add_reader(fd, self._on_readable)
        try:
            await self._configure()
        except (HalOperationError, HalTimeoutError) as exc:
            await self.close()
            raise HalInitError(f"{self.url}: PN532 not answering: {exc}") from exc
        _log.info("%s: PN532 firmware %s ready", self.url, self.firmware)

    async def close(self) -> None:
        port = self._serial
        if port is None:
            return
        self._detach("link closed by host")
        self._serial = None
        await asyncio.to_thread(port.close)

    async def _configure(self) -> None:
        self._write(WAKEUP)
        await self._command(Command.SAM_CONFIGURATION, bytes((SAM_NORMAL_MODE, 0x14, 0x01)))
        data = await self._command(Command.GET_FIRMWARE_VERSION)
        if len(data) != 4 or data[0] != PN532_IC:
            raise HalOperationError(f"not a PN532: firmware answer {data.hex()}")
        self.firmware = Pn532Firmware(data[0], data[1], data[2], data[3])
        # UM0701-02 §7.3.1 CfgItem 5: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
        retries = bytes((RF_CFG_MAX_RETRIES, 0xFF, 0x01, PASSIVE_ACTIVATION_RETRIES))
        await self._command(Command.RF_CONFIGURATION, retries)

    # ------------------------------------------------------------------ cards
    async def read_card(self) -> CardPresented:
        while True:
            uid = await self.poll()
            if uid is None:
                self._present = None
            elif uid != self._present:
                self._present = uid
                return CardPresented(uid)
            await asyncio.sleep(self.poll_interval_s)

    async def poll(self) -> bytes | None:
        """One InListPassiveTarget (106 kbps Type A): the UID in the field, or None."""
        data = await self._command(Command.IN_LIST_PASSIVE_TARGET, bytes((1, BRTY_106_TYPE_A)))
        try:
            targets = parse_targets_106a(data)
        except ValueError as exc:
            self.stats.frame_problems += 1
            raise HalOperationError(f"{self.url}: InListPassiveTarget: {exc}") from exc
        if not targets:
            return None
        await self._command(Command.IN_RELEASE, b"\x00")  # release every target
        return targets[0].uid

    # ------------------------------------------------------------------ frames
    async def _command(self, command: Command, params: bytes = b"") -> bytes:
        """Send one command; its response data (after the response code)."""
        self._events.clear()  # whatever an aborted command left behind
        self._write(command_frame(command, params))
        event = await self._next_event(self.ack_timeout_s, command, "ACK")
        if isinstance(event, ErrorFrame):
            raise HalOperationError(f"{self.url}: PN532 refused {command.name} (error frame)")
        if not isinstance(event, Ack):
            self.stats.frame_problems += 1
            raise HalOperationError(f"{self.url}: {command.name}: expected ACK, got {event}")
        nacked = False
        while True:
            event = await self._next_event(self.response_timeout_s, command, "response")
            match event:
                case Information(tfi=tfi, code=code, data=data) if (
                    tfi == TFI_PN532 and code == command + 1
                ):
                    self.stats.responses_rx += 1
                    return data
                case FrameProblem(detail=detail) if not nacked:
                    self.stats.frame_problems += 1
                    _log.debug("%s: %s in %s response: NACK", self.url, detail, command.name)
                    nacked = True
                    self.stats.nacks_sent += 1
                    self._write(NACK_FRAME)  # UM0701-02 §6.2.1.4: send the response again
                case FrameProblem(detail=detail):
                    self.stats.frame_problems += 1
                    raise HalOperationError(f"{self.url}: {command.name} response: {detail}")
                case ErrorFrame():
                    raise HalOperationError(f"{self.url}: PN532 error frame for {command.name}")
                case Ack() | Nack():
                    continue
                case _:
                    self.stats.frame_problems += 1
                    raise HalOperationError(f"{self.url}: {command.name}: unexpected {event}")

    async def _next_event(self, timeout_s: float, command: Command, what: str) -> FrameEvent:
        loop = self._loop
        end = (loop.time() if loop is not None else 0.0) + timeout_s
        while not self._events:
            if self._link_error is not None or loop is None:
                raise HalOperationError(f"{self.url}: {self._link_error}")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            try:
                async with asyncio.timeout_at(end):
                    await waiter
            except TimeoutError:
                self.stats.timeouts += 1
                if self._link_error is None:
                    self._write(ACK_FRAME)  # abort the command the PN532 may still run
                raise HalTimeoutError(
                    f"{self.url}: no {what} to {command.name} within {timeout_s:g} s"
                ) from None
            finally:
                self._waiter = None
        return self._events.popleft()

    def _write(self, frame: bytes) -> None:
        fd = self._fd
        if fd is None or self._link_error is not None:
            raise HalOperationError(f"{self.url}: cannot send: {self._link_error}")
        try:
            written = os.write(fd, frame)
        except BlockingIOError as exc:
            raise HalOperationError(f"{self.url}: transmit buffer full") from exc
        except OSError as exc:
            self._detach(f"write failed: {exc}")
            raise HalOperationError(f"{self.url}: write failed: {exc}") from exc
        self.stats.frames_tx += 1
        if written != len(frame):
            raise HalOperationError(f"{self.url}: short write ({written}/{len(frame)} bytes)")
        _log.debug("%s: -> %s", self.url, frame.hex())

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
            self._detach("end of file (reader side closed the link)")
            return
        _log.debug("%s: <- %s", self.url, data.hex())
        self._decoder.receive_data(data)
        self._events.extend(self._decoder.events())
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _detach(self, reason: str) -> None:
        if self._link_error is None:
            self._link_error = reason
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._fd = None
        self._wake()
