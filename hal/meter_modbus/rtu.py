"""Modbus RTU master link over pymodbus' async serial client, with HAL errors.

One :class:`ModbusRtuLink` is one serial port talking to one unit id. It keeps
pymodbus' framing, CRC and retries, and turns every way a request can fail into
the HAL's error vocabulary, naming the register block that was asked for:

* no byte came back within ``timeout_s`` (after ``retries``)  -> HalTimeoutError
* bytes came back but pymodbus dropped them (bad CRC, torn or
  foreign frame)                                              -> HalOperationError
* the device answered with a Modbus exception response        -> HalOperationError
* the port is gone (adapter unplugged, pty closed)            -> HalOperationError

pymodbus reports a dropped (bad CRC) response only as a missing one, so the link
watches the received bytes through pymodbus' ``trace_packet`` hook to tell the
two apart. Requests are serialised by the link's own lock because the meter or
IMD may be read by one task while another starts or stops it.

Used by both :mod:`hal.meter_modbus` and :mod:`hal.imd_modbus`. The unit id is
put into the request PDU rather than passed to the client's read/write helpers,
because those renamed their keyword (``slave=`` in 3.9, ``device_id=`` from 3.10).
"""

from __future__ import annotations

import asyncio
import logging
import termios
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Literal, cast

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
)

from hal.errors import HalInitError, HalOperationError, HalTimeoutError

_log = logging.getLogger(__name__)

Parity = Literal["N", "E", "O"]
StopBits = Literal[1, 2]

MAX_READ_REGISTERS = 125  # Modbus application protocol v1.1b3, 6.3/6.4
MAX_WRITE_REGISTERS = 123  # ibid., 6.12


class RegisterTable(Enum):
    """Which Modbus table a register lives in (and so which function code reads it)."""

    HOLDING = "holding"  # function code 03 (read), 16 (write)
    INPUT = "input"  # function code 04 (read only)


class ExceptionCode(IntEnum):
    """Modbus exception codes (Modbus application protocol v1.1b3, section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_FAILED = 0x0B


def exception_name(code: int) -> str:
    """Readable name of an exception code, also for codes outside the standard set."""
    try:
        return ExceptionCode(code).name
    except ValueError:
        return f"UNKNOWN_0x{code:02X}"


@dataclass(frozen=True, slots=True)
class RtuSettings:
    """Serial line and addressing of one RTU device; validated when built."""

    port: str
    unit_id: int = 1
    baudrate: int = 9600
    parity: Parity = "N"
    stopbits: StopBits = 1
    timeout_s: float = 0.5  # per attempt
    retries: int = 1  # extra attempts after a timeout or a dropped response

    def __post_init__(self) -> None:
        if not 1 <= self.unit_id <= 247:  # 0 is broadcast, 248..255 reserved
            raise ValueError(f"unit_id must be 1..247, got {self.unit_id}")
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be > 0, got {self.baudrate}")
        if self.parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be 'N', 'E' or 'O', got {self.parity!r}")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits must be 1 or 2, got {self.stopbits}")
        if not self.timeout_s > 0.0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


@dataclass
class LinkStats:
    """Cumulative counters over the link's life (not reset by open), for diagnostics."""

    requests: int = 0
    responses: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    garbled: int = 0  # bytes received but not a frame for us, CRC intact
    exception_responses: int = 0
    link_errors: int = 0


# pyserial raises SerialException (an OSError) or ValueError; a tty refusing a
# setting (a pty refuses parity) raises termios.error, which is not an OSError.
_PORT_ERRORS = (OSError, ValueError, termios.error)

_Execute = Callable[[bool, ModbusPDU], Awaitable[ModbusPDU]]


class ModbusRtuLink:
    """A Modbus RTU master for one unit id on one serial port."""

    def __init__(self, settings: RtuSettings, *, device: str) -> None:
        self.settings = settings
        self.device = device  # for messages: "Eastron SDM630-Modbus meter (unit 1)"
        self.stats = LinkStats()
        self._client: AsyncModbusSerialClient | None = None
        self._lock: asyncio.Lock | None = None
        self._rx_bytes = b""
        self._port_lost = False

    @property
    def is_open(self) -> bool:
        return self._client is not None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._client is not None:
            raise HalInitError(f"{self._where()}: already open")
        s = self.settings
        # Built here, not in __init__: pymodbus creates asyncio objects on construction.
        client = AsyncModbusSerialClient(
            s.port,
            framer=FramerType.RTU,
            baudrate=s.baudrate,
            bytesize=8,
            parity=s.parity,
            stopbits=s.stopbits,
            timeout=s.timeout_s,
            retries=s.retries,
            reconnect_delay=0,  # no background reconnect task; _ensure_connected does it
            name=s.port,
            trace_packet=self._trace_packet,
        )
        try:
            connected = await client.connect()
        except _PORT_ERRORS as exc:  # pymodbus lets configuration errors through
            client.close()
            raise HalInitError(f"{self._where()}: cannot configure serial port: {exc}") from exc
        if not connected:
            client.close()
            raise HalInitError(f"{self._where()}: cannot open serial port")
        self._client = client
        self._lock = asyncio.Lock()
        _log.info(
            "%s: open (%d baud, parity %s, %d stop bits, timeout %.3f s, %d retries)",
            self._where(),
            s.baudrate,
            s.parity,
            s.stopbits,
            s.timeout_s,
            s.retries,
        )

    async def close(self) -> None:
        """Idempotent."""
        client, self._client = self._client, None
        if client is None:
            return
        client.close()
        _log.info("%s: closed", self._where())

    # ------------------------------------------------------------------ requests

    async def read_registers(
        self, table: RegisterTable, address: int, count: int, *, what: str
    ) -> list[int]:
        """Read ``count`` registers from ``table``; exactly ``count`` values or an error."""
        _check_span(address, count, MAX_READ_REGISTERS)
        request: ModbusPDU
        expected: type[ModbusPDU]
        if table is RegisterTable.INPUT:
            request = ReadInputRegistersRequest(
                address=address, count=count, dev_id=self.settings.unit_id
            )
            expected = ReadInputRegistersResponse
        else:
            request = ReadHoldingRegistersRequest(
                address=address, count=count, dev_id=self.settings.unit_id
            )
            expected = ReadHoldingRegistersResponse
        response = await self._request(request, expected, what)
        registers = list(response.registers)
        if len(registers) != count:
            raise HalOperationError(
                f"{self._where()}: {what}: asked for {count} registers, got {len(registers)}"
            )
        return registers

    async def write_registers(self, address: int, values: Sequence[int], *, what: str) -> None:
        """Write holding registers with function code 16 (also for a single register)."""
        _check_span(address, len(values), MAX_WRITE_REGISTERS)
        for value in values:
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"register value out of range: {value}")
        request = WriteMultipleRegistersRequest(
            address=address, registers=list(values), dev_id=self.settings.unit_id
        )
        response = await self._request(request, WriteMultipleRegistersResponse, what)
        if response.address != address or response.count != len(values):
            raise HalOperationError(
                f"{self._where()}: {what}: write echoed address {response.address} "
                f"count {response.count}, sent {address} count {len(values)}"
            )

    # ------------------------------------------------------------------ internals

    async def _request(self, request: ModbusPDU, expected: type[ModbusPDU], what: str) -> ModbusPDU:
        lock = self._lock
        if lock is None:
            raise HalOperationError(f"{self._where()}: {what}: link not open")
        async with lock:
            client = await self._ensure_connected(what)
            execute = cast(_Execute, client.execute)  # execute() is unannotated in pymodbus
            self.stats.requests += 1
            self._rx_bytes = b""
            _log.debug("%s: -> %s (%s)", self._where(), type(request).__name__, what)
            try:
                response = await execute(False, request)
            except ModbusIOException as exc:
                _reraise_cancellation(exc)
                raise self._no_response(what) from exc
            except ModbusException as exc:  # ConnectionException and the like
                _reraise_cancellation(exc)
                self.stats.link_errors += 1
                raise HalOperationError(f"{self._where()}: {what}: {exc}") from exc
            if isinstance(response, ExceptionResponse) or response.isError():
                self.stats.exception_responses += 1
                code = response.exception_code
                raise HalOperationError(
                    f"{self._where()}: {what}: device answered exception "
                    f"0x{code:02X} {exception_name(code)}"
                )
            if not isinstance(response, expected):
                self.stats.garbled += 1
                raise HalOperationError(
                    f"{self._where()}: {what}: unexpected {type(response).__name__}"
                )
            self.stats.responses += 1
            _log.debug("%s: <- %s", self._where(), type(response).__name__)
            return response

    async def _ensure_connected(self, what: str) -> AsyncModbusSerialClient:
        """Reopen the port if it was lost (adapter replugged); never in the background."""
        client = self._client
        if client is None:
            raise HalOperationError(f"{self._where()}: {what}: link not open")
        if not client.connected:
            if not self._port_lost:
                _log.warning("%s: serial port lost, reopening it on every request", self._where())
            self._port_lost = True
            try:
                connected = await client.connect()
            except _PORT_ERRORS as exc:
                self.stats.link_errors += 1
                raise HalOperationError(f"{self._where()}: {what}: {exc}") from exc
            if not connected:
                self.stats.link_errors += 1
                raise HalOperationError(f"{self._where()}: {what}: serial port unavailable")
            _log.info("%s: serial port reopened", self._where())
            self._port_lost = False
        return client

    def _no_response(self, what: str) -> HalTimeoutError | HalOperationError:
        """pymodbus saw no acceptable answer: silence, or bytes it had to drop."""
        data = self._rx_bytes
        attempts = self.settings.retries + 1
        if not data:
            self.stats.timeouts += 1
            return HalTimeoutError(
                f"{self._where()}: {what}: no response within {self.settings.timeout_s:g} s "
                f"({attempts} attempt{'s' if attempts > 1 else ''})"
            )
        if len(data) >= 4 and not FramerRTU.check_CRC(data[:-2], int.from_bytes(data[-2:], "big")):
            self.stats.crc_errors += 1
            return HalOperationError(
                f"{self._where()}: {what}: response failed the CRC check ({len(data)} bytes)"
            )
        self.stats.garbled += 1
        return HalOperationError(
            f"{self._where()}: {what}: unusable response ({len(data)} bytes: {data.hex()})"
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hook: remember what arrived since the last send (the whole buffer)."""
        if sending:
            self._rx_bytes = b""
        else:
            self._rx_bytes = bytes(data)
        return data

    def _where(self) -> str:
        return f"{self.device} on {self.settings.port}"


def _check_span(address: int, count: int, max_count: int) -> None:
    if not 0 <= address <= 0xFFFF:
        raise ValueError(f"register address out of range: {address}")
    if not 1 <= count <= max_count:
        raise ValueError(f"register count must be 1..{max_count}, got {count}")
    if address + count > 0x10000:
        raise ValueError(f"registers {address}+{count} run past 0xFFFF")


def _reraise_cancellation(exc: BaseException) -> None:
    """pymodbus before 3.12 turns a cancelled request into ModbusIOException: undo that."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
