"""Sans-I/O codec for the pilot-board serial protocol.

The wire format is specified in ``docs/pilot-board-protocol.md``. This module
does no I/O and reads no clock, so the real driver, the simulated board and the
tests all share exactly the same code, and it can be fuzzed byte by byte.

Values are kept *raw* in the message dataclasses (``duty_pct_x100`` in
0.01 % steps, ``temperature_c_x10`` in 0.1 degC steps) so that what is on the wire
round-trips exactly; scaled floats are exposed as properties.
"""

from __future__ import annotations

import binascii
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Final

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.pilot import BoardFault, PilotStatus

PROTOCOL_VERSION: Final = 1
DELIMITER: Final = b"\x00"
SYN_FLAG: Final = 0x80  # type-byte bit 7: "my sequence numbers restart here"
TYPE_MASK: Final = 0x7F
HEADER_LEN: Final = 2  # type + seq
CRC_LEN: Final = 2
MIN_PAYLOAD_LEN: Final = HEADER_LEN + CRC_LEN
MAX_PAYLOAD_LEN: Final = 32  # type + seq + body + CRC
MAX_ENCODED_LEN: Final = MAX_PAYLOAD_LEN + 1  # COBS overhead is 1 byte below 254
MAX_FRAME_LEN: Final = MAX_ENCODED_LEN + 1  # with the 0x00 delimiter
DUTY_FULL_X100: Final = 10_000  # 100.00 %
CRC_INIT: Final = 0xFFFF  # CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection
_ERROR_RAW_MAX: Final = 16  # bytes of an offending frame kept in error events

_CP_CODES: Final[tuple[CpState, ...]] = (
    CpState.A,
    CpState.B,
    CpState.C,
    CpState.D,
    CpState.E,
    CpState.F,
)
_OUTPUT_CODES: Final[tuple[PilotOutput, ...]] = (PilotOutput.X1, PilotOutput.PWM, PilotOutput.F)
_KNOWN_FAULT_BITS: Final = sum(flag.value for flag in BoardFault)

# STATUS flag bits
FLAG_PERMISSION: Final = 0x01
FLAG_CONTACTOR_CLOSED: Final = 0x02
FLAG_LOCKED: Final = 0x04
FLAG_COIL_ENERGISED: Final = 0x08


class Direction(Enum):
    """Which way a message type travels; a decoder can refuse the other way."""

    HOST_TO_BOARD = "host->board"
    BOARD_TO_HOST = "board->host"


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (check value 0x29B1 for b"123456789")."""
    return binascii.crc_hqx(data, CRC_INIT)


def _check_range(name: str, value: int, low: int = 0, high: int = 0xFF) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name}={value} outside {low}..{high}")


# --------------------------------------------------------------------------- host -> board


@dataclass(frozen=True, slots=True)
class Keepalive:
    """Host is alive; any valid host frame also counts, this one carries nothing else."""

    TYPE: ClassVar[int] = 0x01
    DIRECTION: ClassVar[Direction] = Direction.HOST_TO_BOARD

    def encode_body(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class SetPilot:
    """Select what the board drives onto CP; ``duty_pct_x100`` only matters for PWM."""

    TYPE: ClassVar[int] = 0x02
    DIRECTION: ClassVar[Direction] = Direction.HOST_TO_BOARD

    output: PilotOutput
    duty_pct_x100: int  # 0.01 % steps

    def __post_init__(self) -> None:
        _check_range("duty_pct_x100", self.duty_pct_x100, 0, DUTY_FULL_X100)
        if self.output is PilotOutput.PWM and not 0 < self.duty_pct_x100 < DUTY_FULL_X100:
            raise ValueError(f"PWM duty must be strictly between 0 and 100 %: {self.duty_pct}")

    @classmethod
    def pwm(cls, duty_pct: float) -> SetPilot:
        return cls(PilotOutput.PWM, round(duty_pct * 100))

    @classmethod
    def x1(cls) -> SetPilot:
        return cls(PilotOutput.X1, DUTY_FULL_X100)

    @classmethod
    def state_f(cls) -> SetPilot:
        return cls(PilotOutput.F, 0)

    @property
    def duty_pct(self) -> float:
        return self.duty_pct_x100 / 100

    def encode_body(self) -> bytes:
        return bytes((_OUTPUT_CODES.index(self.output),)) + self.duty_pct_x100.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class SetContactor:
    """Grant or withdraw permission; the board still decides whether to close."""

    TYPE: ClassVar[int] = 0x03
    DIRECTION: ClassVar[Direction] = Direction.HOST_TO_BOARD

    permission: bool

    def encode_body(self) -> bytes:
        return b"\x01" if self.permission else b"\x00"


@dataclass(frozen=True, slots=True)
class SetLock:
    TYPE: ClassVar[int] = 0x04
    DIRECTION: ClassVar[Direction] = Direction.HOST_TO_BOARD

    locked: bool

    def encode_body(self) -> bytes:
        return b"\x01" if self.locked else b"\x00"


@dataclass(frozen=True, slots=True)
class ClearFaults:
    """Clear latched faults whose condition has gone (the board decides which)."""

    TYPE: ClassVar[int] = 0x05
    DIRECTION: ClassVar[Direction] = Direction.HOST_TO_BOARD

    def encode_body(self) -> bytes:
        return b""


# --------------------------------------------------------------------------- board -> host


@dataclass(frozen=True, slots=True)
class Status:
    """The board's periodic / on-change report, in raw wire units."""

    TYPE: ClassVar[int] = 0x41
    DIRECTION: ClassVar[Direction] = Direction.BOARD_TO_HOST

    cp_state: CpState
    output: PilotOutput
    duty_pct_x100: int  # 0.01 % steps, 0..10000
    pp_ampacity_a: int  # 0 = no cable / tethered
    permission: bool  # as the board holds it
    contactor_closed: bool  # mirror contact
    locked: bool
    coil_energised: bool  # what the board drives; differs from the mirror while switching
    faults_raw: int  # u16, bit n == BoardFault value 1 << n
    temperature_c_x10: int  # i16, 0.1 degC steps

    def __post_init__(self) -> None:
        _check_range("duty_pct_x100", self.duty_pct_x100, 0, DUTY_FULL_X100)
        _check_range("pp_ampacity_a", self.pp_ampacity_a)
        _check_range("faults_raw", self.faults_raw, 0, 0xFFFF)
        _check_range("temperature_c_x10", self.temperature_c_x10, -0x8000, 0x7FFF)

    @property
    def duty_pct(self) -> float:
        return self.duty_pct_x100 / 100

    @property
    def temperature_c(self) -> float:
        return self.temperature_c_x10 / 10

    @property
    def faults(self) -> BoardFault:
        """Fault flags; bits this host does not know are reported as INTERNAL, never dropped."""
        known = BoardFault(self.faults_raw & _KNOWN_FAULT_BITS)
        if self.faults_raw & ~_KNOWN_FAULT_BITS:
            known |= BoardFault.INTERNAL
        return known

    def to_pilot_status(self) -> PilotStatus:
        return PilotStatus(
            cp_state=self.cp_state,
            output=self.output,
            duty_pct=self.duty_pct_x100 / 100,
            pp_ampacity_a=float(self.pp_ampacity_a) if self.pp_ampacity_a else None,
            contactor_permission=self.permission,
            contactor_closed=self.contactor_closed,
            locked=self.locked,
            faults=self.faults,
            temperature_c=self.temperature_c_x10 / 10,
        )

    def encode_body(self) -> bytes:
        flags = (
            (FLAG_PERMISSION if self.permission else 0)
            | (FLAG_CONTACTOR_CLOSED if self.contactor_closed else 0)
            | (FLAG_LOCKED if self.locked else 0)
            | (FLAG_COIL_ENERGISED if self.coil_energised else 0)
        )
        return (
            bytes((_CP_CODES.index(self.cp_state), _OUTPUT_CODES.index(self.output)))
            + self.duty_pct_x100.to_bytes(2, "big")
            + bytes((self.pp_ampacity_a, flags))
            + self.faults_raw.to_bytes(2, "big")
            + self.temperature_c_x10.to_bytes(2, "big", signed=True)
        )


@dataclass(frozen=True, slots=True)
class Info:
    """Identification, sent after power-up, on a new connection and on a host SYN."""

    TYPE: ClassVar[int] = 0x42
    DIRECTION: ClassVar[Direction] = Direction.BOARD_TO_HOST

    protocol_version: int
    firmware_major: int
    firmware_minor: int
    firmware_patch: int
    hardware_revision: int
    serial_number: int  # u32

    def __post_init__(self) -> None:
        for name in (
            "protocol_version",
            "firmware_major",
            "firmware_minor",
            "firmware_patch",
            "hardware_revision",
        ):
            _check_range(name, getattr(self, name))
        _check_range("serial_number", self.serial_number, 0, 0xFFFF_FFFF)

    def encode_body(self) -> bytes:
        return bytes(
            (
                self.protocol_version,
                self.firmware_major,
                self.firmware_minor,
                self.firmware_patch,
                self.hardware_revision,
            )
        ) + self.serial_number.to_bytes(4, "big")


HostMessage = Keepalive | SetPilot | SetContactor | SetLock | ClearFaults
BoardMessage = Status | Info
Message = HostMessage | BoardMessage


# --------------------------------------------------------------------------- decode events


@dataclass(frozen=True, slots=True)
class FramingProblem:
    """Base of everything that went wrong with one frame; the decoder carries on."""

    @property
    def detail(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class BadCobs(FramingProblem):
    raw: bytes  # start of the encoded frame
    reason: str

    @property
    def detail(self) -> str:
        return f"bad COBS ({self.reason}): {self.raw.hex(' ')}"


@dataclass(frozen=True, slots=True)
class TruncatedFrame(FramingProblem):
    raw: bytes
    payload_len: int

    @property
    def detail(self) -> str:
        return (
            f"truncated frame: {self.payload_len} payload bytes < {MIN_PAYLOAD_LEN}: "
            f"{self.raw.hex(' ')}"
        )


@dataclass(frozen=True, slots=True)
class BadCrc(FramingProblem):
    raw: bytes
    received_crc: int
    computed_crc: int

    @property
    def detail(self) -> str:
        return (
            f"bad CRC: received 0x{self.received_crc:04x}, computed 0x{self.computed_crc:04x}: "
            f"{self.raw.hex(' ')}"
        )


@dataclass(frozen=True, slots=True)
class OversizeFrame(FramingProblem):
    head: bytes  # first bytes of what was discarded
    limit: int

    @property
    def detail(self) -> str:
        return (
            f"frame longer than {self.limit} encoded bytes, discarded up to next delimiter: "
            f"{self.head.hex(' ')}..."
        )


@dataclass(frozen=True, slots=True)
class UnknownType(FramingProblem):
    msg_type: int
    seq: int
    reason: str

    @property
    def detail(self) -> str:
        return f"unknown message type 0x{self.msg_type:02x} (seq {self.seq}): {self.reason}"


@dataclass(frozen=True, slots=True)
class BadLength(FramingProblem):
    msg_type: int
    seq: int
    body_len: int
    expected_len: int

    @property
    def detail(self) -> str:
        return (
            f"message type 0x{self.msg_type:02x} (seq {self.seq}) has a {self.body_len}-byte "
            f"body, expected {self.expected_len}"
        )


@dataclass(frozen=True, slots=True)
class FieldOutOfRange(FramingProblem):
    msg_type: int
    seq: int
    field: str
    value: int

    @property
    def detail(self) -> str:
        return (
            f"message type 0x{self.msg_type:02x} (seq {self.seq}): field {self.field}="
            f"{self.value} out of range"
        )


@dataclass(frozen=True, slots=True)
class SequenceGap(FramingProblem):
    """Frames were lost; the frame that revealed it is still delivered."""

    expected: int
    received: int
    lost: int

    @property
    def detail(self) -> str:
        return f"sequence gap: expected {self.expected}, got {self.received} ({self.lost} lost)"


@dataclass(frozen=True, slots=True)
class StaleFrame(FramingProblem):
    """Duplicate or older than the last accepted frame: dropped."""

    expected: int
    received: int

    @property
    def detail(self) -> str:
        return f"stale/duplicate frame dropped: expected seq {self.expected}, got {self.received}"


@dataclass(frozen=True, slots=True)
class SequenceSync:
    """The peer restarted its sequence numbers (SYN flag), or the decoder forced a
    resync after a run of stale frames (``forced``: worth a warning)."""

    received: int
    forced: bool


Event = Message | FramingProblem | SequenceSync


# --------------------------------------------------------------------------- COBS


class CobsDecodeError(ValueError):
    """Encoded bytes are not valid COBS."""


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data`` (no delimiter appended); the result contains no 0x00."""
    out = bytearray()
    for segment in data.split(b"\x00"):
        block = segment
        while len(block) >= 0xFE:
            out.append(0xFF)
            out += block[:0xFE]
            block = block[0xFE:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raise :class:`CobsDecodeError` on malformed input."""
    out = bytearray()
    index = 0
    length = len(encoded)
    while index < length:
        code = encoded[index]
        if code == 0:
            raise CobsDecodeError(f"zero byte at offset {index}")
        end = index + code
        if end > length:
            raise CobsDecodeError(
                f"code 0x{code:02x} at offset {index} runs {end - length} byte(s) past the end"
            )
        block = encoded[index + 1 : end]
        if 0 in block:
            raise CobsDecodeError(f"zero byte inside block at offset {index}")
        out += block
        index = end
        if code != 0xFF and index < length:
            out.append(0)
    return bytes(out)


def encode_frame(msg: Message, seq: int, *, syn: bool = False) -> bytes:
    """One complete wire frame: COBS(type|SYN, seq, body, CRC-16 BE) + 0x00."""
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq {seq} is not a u8")
    payload = bytes((msg.TYPE | (SYN_FLAG if syn else 0), seq)) + msg.encode_body()
    payload += crc16(payload).to_bytes(2, "big")
    return cobs_encode(payload) + DELIMITER


# --------------------------------------------------------------------------- body parsers


@dataclass(frozen=True, slots=True)
class _OutOfRange:
    field: str
    value: int


_ParseResult = Message | _OutOfRange


def _parse_bool(body: bytes, name: str, make: Callable[[bool], Message]) -> _ParseResult:
    if body[0] > 1:
        return _OutOfRange(name, body[0])
    return make(body[0] == 1)


def _parse_keepalive(body: bytes) -> _ParseResult:
    return Keepalive()


def _parse_clear_faults(body: bytes) -> _ParseResult:
    return ClearFaults()


def _parse_set_pilot(body: bytes) -> _ParseResult:
    if body[0] >= len(_OUTPUT_CODES):
        return _OutOfRange("output", body[0])
    output = _OUTPUT_CODES[body[0]]
    duty = int.from_bytes(body[1:3], "big")
    if duty > DUTY_FULL_X100 or (output is PilotOutput.PWM and duty in (0, DUTY_FULL_X100)):
        return _OutOfRange("duty_pct_x100", duty)
    return SetPilot(output, duty)


def _parse_set_contactor(body: bytes) -> _ParseResult:
    return _parse_bool(body, "permission", lambda on: SetContactor(permission=on))


def _parse_set_lock(body: bytes) -> _ParseResult:
    return _parse_bool(body, "locked", lambda on: SetLock(locked=on))


def _parse_status(body: bytes) -> _ParseResult:
    if body[0] >= len(_CP_CODES):
        return _OutOfRange("cp_state", body[0])
    if body[1] >= len(_OUTPUT_CODES):
        return _OutOfRange("output", body[1])
    duty = int.from_bytes(body[2:4], "big")
    if duty > DUTY_FULL_X100:
        return _OutOfRange("duty_pct_x100", duty)
    flags = body[5]
    return Status(
        cp_state=_CP_CODES[body[0]],
        output=_OUTPUT_CODES[body[1]],
        duty_pct_x100=duty,
        pp_ampacity_a=body[4],
        permission=bool(flags & FLAG_PERMISSION),
        contactor_closed=bool(flags & FLAG_CONTACTOR_CLOSED),
        locked=bool(flags & FLAG_LOCKED),
        coil_energised=bool(flags & FLAG_COIL_ENERGISED),
        faults_raw=int.from_bytes(body[6:8], "big"),
        temperature_c_x10=int.from_bytes(body[8:10], "big", signed=True),
    )


def _parse_info(body: bytes) -> _ParseResult:
    return Info(
        protocol_version=body[0],
        firmware_major=body[1],
        firmware_minor=body[2],
        firmware_patch=body[3],
        hardware_revision=body[4],
        serial_number=int.from_bytes(body[5:9], "big"),
    )


@dataclass(frozen=True, slots=True)
class _Spec:
    direction: Direction
    body_len: int
    parse: Callable[[bytes], _ParseResult]


_SPECS: Final[dict[int, _Spec]] = {
    Keepalive.TYPE: _Spec(Direction.HOST_TO_BOARD, 0, _parse_keepalive),
    SetPilot.TYPE: _Spec(Direction.HOST_TO_BOARD, 3, _parse_set_pilot),
    SetContactor.TYPE: _Spec(Direction.HOST_TO_BOARD, 1, _parse_set_contactor),
    SetLock.TYPE: _Spec(Direction.HOST_TO_BOARD, 1, _parse_set_lock),
    ClearFaults.TYPE: _Spec(Direction.HOST_TO_BOARD, 0, _parse_clear_faults),
    Status.TYPE: _Spec(Direction.BOARD_TO_HOST, 10, _parse_status),
    Info.TYPE: _Spec(Direction.BOARD_TO_HOST, 9, _parse_info),
}


# --------------------------------------------------------------------------- decoder


def _ignore(event: Event) -> None:
    del event


class FrameDecoder:
    """Incremental decoder: feed any byte chunks, collect messages and error events.

    Never raises on input. Every problem becomes one typed event and decoding
    resumes at the next 0x00 delimiter. Sequence numbers: a frame ``d`` ahead
    of the last accepted one (mod 256) with ``1 <= d < 128`` is accepted (``d > 1``
    also yields :class:`SequenceGap`); anything else is stale and dropped, unless
    it carries the SYN flag, or ``resync_after_stale`` stale frames arrive in a
    row (the peer evidently restarted without SYN).

    ``in_sync=False`` is for attaching to a line that may be mid-frame: whatever
    precedes the first delimiter is decoded if it is a whole valid frame and
    otherwise discarded without an error event.
    """

    def __init__(
        self,
        expect: Direction | None = None,
        *,
        in_sync: bool = True,
        resync_after_stale: int = 3,
    ) -> None:
        if resync_after_stale < 1:
            raise ValueError("resync_after_stale must be >= 1")
        self._expect = expect
        self._resync_after_stale = resync_after_stale
        self._buf = bytearray()
        self._discarding = False
        self._quiet = not in_sync  # no error events until the first delimiter
        self._events: deque[Event] = deque()
        self._rx_seq: int | None = None
        self._stale_run = 0

    @property
    def last_seq(self) -> int | None:
        """Sequence number of the last accepted frame (None before the first)."""
        return self._rx_seq

    @property
    def buffered_len(self) -> int:
        """Bytes of an incomplete frame held back waiting for its delimiter."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._append(data, start, len(data))
                return
            self._append(data, start, end)
            if not self._discarding and self._buf:
                self._process(bytes(self._buf))
            self._buf.clear()
            self._discarding = False
            self._quiet = False
            start = end + 1

    def events(self) -> Iterator[Event]:
        """Drain pending events, oldest first."""
        while self._events:
            yield self._events.popleft()

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def _append(self, data: bytes, start: int, end: int) -> None:
        if self._discarding or start == end:
            return
        if len(self._buf) + (end - start) > MAX_ENCODED_LEN:
            head = bytes(self._buf[:_ERROR_RAW_MAX])
            head += data[start : start + _ERROR_RAW_MAX - len(head)]
            if not self._quiet:
                self._events.append(OversizeFrame(head=head, limit=MAX_ENCODED_LEN))
            self._buf.clear()
            self._discarding = True
            return
        self._buf += data[start:end]

    def _process(self, encoded: bytes) -> None:
        emit = self._events.append
        # Before the first delimiter a broken frame is expected, not worth an event.
        emit_broken = self._events.append if not self._quiet else _ignore
        raw = encoded[:_ERROR_RAW_MAX]
        try:
            payload = cobs_decode(encoded)
        except CobsDecodeError as exc:
            emit_broken(BadCobs(raw=raw, reason=str(exc)))
            return
        if len(payload) < MIN_PAYLOAD_LEN:
            emit_broken(TruncatedFrame(raw=raw, payload_len=len(payload)))
            return
        received_crc = (payload[-2] << 8) | payload[-1]
        computed_crc = crc16(payload[:-CRC_LEN])
        if received_crc != computed_crc:
            emit_broken(BadCrc(raw=raw, received_crc=received_crc, computed_crc=computed_crc))
            return
        type_byte = payload[0]
        seq = payload[1]
        if not self._accept_seq(seq, syn=bool(type_byte & SYN_FLAG)):
            return
        msg_type = type_byte & TYPE_MASK
        spec = _SPECS.get(msg_type)
        if spec is None:
            emit(UnknownType(msg_type=msg_type, seq=seq, reason="not defined"))
            return
        if self._expect is not None and spec.direction is not self._expect:
            emit(UnknownType(msg_type=msg_type, seq=seq, reason=f"{spec.direction.value} only"))
            return
        body = payload[HEADER_LEN:-CRC_LEN]
        if len(body) != spec.body_len:
            emit(
                BadLength(
                    msg_type=msg_type, seq=seq, body_len=len(body), expected_len=spec.body_len
                )
            )
            return
        result = spec.parse(body)
        if isinstance(result, _OutOfRange):
            emit(
                FieldOutOfRange(msg_type=msg_type, seq=seq, field=result.field, value=result.value)
            )
            return
        emit(result)

    def _accept_seq(self, seq: int, *, syn: bool) -> bool:
        last = self._rx_seq
        if syn or last is None:
            if syn:
                self._events.append(SequenceSync(received=seq, forced=False))
            self._rx_seq = seq
            self._stale_run = 0
            return True
        delta = (seq - last) & 0xFF
        expected = (last + 1) & 0xFF
        if 1 <= delta < 0x80:
            if delta > 1:
                self._events.append(SequenceGap(expected=expected, received=seq, lost=delta - 1))
            self._rx_seq = seq
            self._stale_run = 0
            return True
        self._stale_run += 1
        if self._stale_run >= self._resync_after_stale:
            self._events.append(SequenceSync(received=seq, forced=True))
            self._rx_seq = seq
            self._stale_run = 0
            return True
        self._events.append(StaleFrame(expected=expected, received=seq))
        return False
