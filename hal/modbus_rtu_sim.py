"""A Modbus RTU slave on the master side of a pty, for simulated devices.

The real drivers open :attr:`ModbusRtuSlave.port` (the pty's slave path) exactly
as they would open ``/dev/ttyUSB0``, so every byte goes through pymodbus'
RTU framing and CRC on both ends. This module decodes requests and encodes
responses with pymodbus' own framer and PDU classes; it writes no framing of its
own. What the registers hold comes from a :class:`RegisterDevice` (a simulated
meter or IMD fed by the plant), asked synchronously inside the read callback,
so a response never waits on anything but the event loop.

Frames are delimited as RTU delimits them: by length and CRC within a burst,
and by silence between bursts. Bytes that arrive after more than
``frame_gap_s`` of quiet start a new frame, dropping whatever incomplete
noise came before (pymodbus' decoder alone would swallow the next request
with it). A pty has no baud rate, so the gap is a fixed 20 ms, well above the
3.5 character times of a 9600 baud line.

Requests handled: read holding registers (03), read input registers (04), write
single register (06), write multiple registers (16); anything else pymodbus can
decode gets ILLEGAL_FUNCTION. Requests for other unit ids are ignored as on a
shared RS-485 bus; broadcasts (unit 0) are applied without an answer.

Fault injection, for the drivers' error paths:

* :attr:`ModbusRtuSlave.silent`: swallow requests (the master times out)
* :meth:`ModbusRtuSlave.corrupt_crc`: flip bits in the CRC of the next N responses
* :meth:`ModbusRtuSlave.answer_exception`: answer the next N requests with an
  exception code instead of asking the device

A device signals an exception itself by raising :class:`ModbusExceptionReply`;
reading an address the device does not map gives ILLEGAL_DATA_ADDRESS that way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from hal.pilot_serial.simulated import open_pty_pair

_log = logging.getLogger(__name__)

_READ_CHUNK = 4096
_MAX_BUFFER = 512  # more than two RTU frames of garbage: drop it and hunt afresh
_BROADCAST = 0

# Exception codes used here (Modbus application protocol v1.1b3, section 7).
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03


class ModbusExceptionReply(Exception):  # noqa: N818 - it is a reply, not an error here
    """Raised by a :class:`RegisterDevice` to answer with a Modbus exception code."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"exception 0x{code:02X}{': ' + detail if detail else ''}")
        self.code = code
        self.detail = detail


class RegisterDevice(Protocol):
    """What the slave serves. Called synchronously; raise ModbusExceptionReply to refuse."""

    def read_holding_registers(self, address: int, count: int) -> Sequence[int]: ...

    def read_input_registers(self, address: int, count: int) -> Sequence[int]: ...

    def write_registers(self, address: int, values: Sequence[int]) -> None: ...


@dataclass
class SlaveStats:
    """Counters for tests and diagnostics."""

    requests: int = 0  # decoded requests addressed to us (or broadcast)
    responses: int = 0
    exceptions_sent: int = 0
    ignored_silent: int = 0
    other_units: int = 0
    crc_corrupted: int = 0
    bytes_discarded: int = 0  # bad CRC or garbage from the master
    dropped_tx: int = 0  # the pty buffer was full


class ModbusRtuSlave:
    """One RTU slave (one unit id) on a fresh pty; serve it with :meth:`run`.

    The pty exists as soon as the constructor returns, so the driver can be
    built with :attr:`port` before the slave runs.
    """

    def __init__(
        self,
        device: RegisterDevice,
        *,
        unit_id: int = 1,
        name: str = "slave",
        frame_gap_s: float = 0.020,
    ) -> None:
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit_id must be 1..247, got {unit_id}")
        if not frame_gap_s > 0.0:
            raise ValueError(f"frame_gap_s must be > 0, got {frame_gap_s}")
        self.frame_gap_s = frame_gap_s
        self.device = device
        self.unit_id = unit_id
        self.name = name
        self.stats = SlaveStats()
        self.silent = False
        self._bad_crc_left = 0
        self._exception_left = 0
        self._exception_code = 0
        self._master_fd: int | None
        self._master_fd, self.port = open_pty_pair()
        # Holding the slave side open keeps the pty alive while the driver reopens it.
        try:
            self._hold_fd: int | None = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            os.close(self._master_fd)
            raise
        self._framer = FramerRTU(DecodePDU(True))
        self._buffer = b""
        self._last_rx_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False

    # ------------------------------------------------------------------ fault injection

    def corrupt_crc(self, responses: int = 1) -> None:
        """Send the next ``responses`` answers with a wrong CRC."""
        if responses < 0:
            raise ValueError("responses must be >= 0")
        self._bad_crc_left = responses

    def answer_exception(self, code: int, responses: int = 1) -> None:
        """Answer the next ``responses`` requests with exception ``code``."""
        if not 1 <= code <= 0xFF or responses < 0:
            raise ValueError(f"bad exception injection: code {code}, responses {responses}")
        self._exception_code = code
        self._exception_left = responses

    def clear_faults(self) -> None:
        self.silent = False
        self._bad_crc_left = 0
        self._exception_left = 0

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Serve requests until cancelled; then close."""
        if self._master_fd is None:
            raise RuntimeError(f"{self.name}: closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        loop.add_reader(self._master_fd, self._on_readable)
        self._reading = True
        _log.debug("%s: serving unit %d on %s", self.name, self.unit_id, self.port)
        try:
            await loop.create_future()  # nothing to do but answer; wait to be cancelled
        finally:
            self.close()

    def close(self) -> None:
        """Release the pty. Idempotent; the driver then sees its port fail."""
        if self._reading and self._loop is not None and self._master_fd is not None:
            self._loop.remove_reader(self._master_fd)
        self._reading = False
        for fd in (self._master_fd, self._hold_fd):
            if fd is not None:
                os.close(fd)
        self._master_fd = self._hold_fd = None

    # ------------------------------------------------------------------ link

    def _on_readable(self) -> None:
        fd = self._master_fd
        if fd is None:
            return
        try:
            data = os.read(fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO while no one has the slave side open: keep waiting
            _log.debug("%s: read failed: %s", self.name, exc)
            return
        loop = self._loop
        self.receive_data(data, loop.time() if loop is not None else 0.0)

    def receive_data(self, data: bytes, now_s: float) -> None:
        """Feed bytes from the master received at ``now_s``; answer every complete request."""
        if self._buffer and now_s - self._last_rx_s > self.frame_gap_s:
            self.stats.bytes_discarded += len(self._buffer)
            self._buffer = b""
        self._last_rx_s = now_s
        self._buffer += data
        while self._buffer:
            used, unit, _tid, frame = self._framer.decode(self._buffer)
            if used == 0:
                if len(self._buffer) > _MAX_BUFFER:
                    self.stats.bytes_discarded += len(self._buffer)
                    self._buffer = b""
                return
            if not frame:  # pymodbus consumed bytes it could not use (bad CRC)
                self.stats.bytes_discarded += used
                self._buffer = self._buffer[used:]
                continue
            self._buffer = self._buffer[used:]
            self._handle_frame(unit, frame)

    def _handle_frame(self, unit: int, frame: bytes) -> None:
        if unit not in (self.unit_id, _BROADCAST):
            self.stats.other_units += 1
            return
        self.stats.requests += 1
        function_code = frame[0]
        request = self._framer.decoder.decode(frame)
        if self.silent:
            self.stats.ignored_silent += 1
            _log.debug("%s: silent, ignoring function %d", self.name, function_code)
            return
        if request is None:  # pymodbus knows the function code but refused the body
            response: ModbusPDU = ExceptionResponse(function_code, ILLEGAL_DATA_VALUE)
        elif self._exception_left > 0:
            self._exception_left -= 1
            response = ExceptionResponse(function_code, self._exception_code)
        else:
            response = self._serve(request)
        if unit == _BROADCAST:
            return
        self._send(response)

    def _serve(self, request: ModbusPDU) -> ModbusPDU:
        """Ask the device; turn its answer (or refusal) into a response PDU."""
        fc = request.function_code
        _log.debug("%s: <- %s", self.name, type(request).__name__)
        try:
            if isinstance(request, ReadInputRegistersRequest):
                values = self._checked(
                    self.device.read_input_registers(request.address, request.count), request.count
                )
                return ReadInputRegistersResponse(registers=values)
            if isinstance(request, ReadHoldingRegistersRequest):
                values = self._checked(
                    self.device.read_holding_registers(request.address, request.count),
                    request.count,
                )
                return ReadHoldingRegistersResponse(registers=values)
            if isinstance(request, WriteSingleRegisterRequest):
                self.device.write_registers(request.address, list(request.registers))
                return WriteSingleRegisterResponse(
                    address=request.address, registers=list(request.registers)
                )
            if isinstance(request, WriteMultipleRegistersRequest):
                if not request.registers or len(request.registers) != request.count:
                    raise ModbusExceptionReply(ILLEGAL_DATA_VALUE, "byte count mismatch")
                self.device.write_registers(request.address, list(request.registers))
                return WriteMultipleRegistersResponse(address=request.address, count=request.count)
        except ModbusExceptionReply as reply:
            _log.debug("%s: refusing %s: %s", self.name, type(request).__name__, reply)
            return ExceptionResponse(fc, reply.code)
        return ExceptionResponse(fc, ILLEGAL_FUNCTION)

    @staticmethod
    def _checked(values: Sequence[int], count: int) -> list[int]:
        words = list(values)
        if len(words) != count or any(not 0 <= w <= 0xFFFF for w in words):
            raise ValueError(f"device returned {words!r} for {count} registers")
        return words

    def _send(self, response: ModbusPDU) -> None:
        fd = self._master_fd
        if fd is None:
            return
        response.dev_id = self.unit_id
        response.transaction_id = 0
        if isinstance(response, ExceptionResponse):
            self.stats.exceptions_sent += 1
        frame = self._framer.buildFrame(response)
        if self._bad_crc_left > 0:
            self._bad_crc_left -= 1
            self.stats.crc_corrupted += 1
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        _log.debug("%s: -> %s", self.name, type(response).__name__)
        try:
            os.write(fd, frame)
        except BlockingIOError:
            self.stats.dropped_tx += 1
            return
        except OSError as exc:
            _log.debug("%s: write failed: %s", self.name, exc)
            self.stats.dropped_tx += 1
            return
        self.stats.responses += 1


class SimulatedRtuDevice:
    """Base of a simulated Modbus device: its :class:`ModbusRtuSlave` on a pty, and
    what the composition root needs of it (the port to open, run, close)."""

    slave: ModbusRtuSlave

    @property
    def port(self) -> str:
        """The serial port the driver opens (a pty slave path)."""
        return self.slave.port

    @property
    def unit_id(self) -> int:
        return self.slave.unit_id

    async def run(self) -> None:
        """Answer requests until cancelled; then close."""
        await self.slave.run()

    def close(self) -> None:
        """Idempotent."""
        self.slave.close()
