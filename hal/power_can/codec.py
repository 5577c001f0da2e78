"""Declarative CAN frame codec, plus the frame table of our power module protocol.

Frames are declared the way a datasheet lists them: each signal has a start
byte and bit, a length in bits, signedness, scale and offset, a unit and a
valid range. Declaring instead of hand-packing bytes keeps the code and
``docs/power-stage-can.md`` easy to compare line by line, and lets one set of
tests cover every frame.

Raw values (the integers on the wire) and physical values (``raw * scale +
offset``) are kept apart: :meth:`Frame.decode_raw` / :meth:`Frame.encode_raw`
work on integers, :meth:`Frame.decode` / :meth:`Frame.encode` on floats.

The codec does not import python-can, so it can be used (and tested) without a
bus. Every problem with a frame raises a :class:`CodecError` subclass, never a
bare ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Literal

from hal.errors import HalOperationError
from hal.power_stage import PowerMode, PowerStageFault

_log = logging.getLogger(__name__)

MAX_STANDARD_ID = 0x7FF
MAX_EXTENDED_ID = 0x1FFF_FFFF
MAX_CLASSIC_DLC = 8
_MAX_SIGNAL_BITS = 64
# Slack when comparing floats to a declared range: a value that is a millionth
# of a resolution step outside is a rounding artefact, not a range violation.
_RANGE_SLACK = 1e-6


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class CodecError(HalOperationError):
    """A frame could not be encoded or decoded."""


class UnknownFrameError(CodecError):
    """No frame with this arbitration id is declared."""

    def __init__(self, frame_id: int, *, is_extended_id: bool = False) -> None:
        self.frame_id = frame_id
        self.is_extended_id = is_extended_id
        width = 8 if is_extended_id else 3
        super().__init__(f"unknown frame id 0x{frame_id:0{width}X}")


class FrameLengthError(CodecError):
    """The payload length (DLC) differs from the declaration."""

    def __init__(self, frame: Frame, length: int) -> None:
        self.frame_name = frame.name
        self.expected = frame.length
        self.actual = length
        super().__init__(
            f"{frame.name} (0x{frame.frame_id:03X}): expected {frame.length} data bytes, "
            f"got {length}"
        )


class SignalError(CodecError, ValueError):
    """A signal name is unknown or a required signal is missing."""


class SignalRangeError(CodecError, ValueError):
    """A value is not finite, outside the declared range, or not a declared choice."""

    def __init__(self, signal: Signal, value: float, reason: str) -> None:
        self.signal_name = signal.name
        self.value = value
        super().__init__(f"signal {signal.name}: {value!r} {reason}")


# ---------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------


class ByteOrder(Enum):
    """How a signal's bytes are combined into one integer.

    ``LITTLE_ENDIAN`` (Intel): the signal starts at bit ``start_bit`` of byte
    ``start_byte`` and continues into the following, more significant bytes.
    ``BIG_ENDIAN`` (Motorola): the bytes from ``start_byte`` on are read most
    significant first and ``start_bit`` counts from the LSB of the last byte, so
    a byte-aligned 16-bit value has its high byte at ``start_byte``.
    """

    LITTLE_ENDIAN = "little"
    BIG_ENDIAN = "big"


@dataclass(frozen=True, slots=True)
class Signal:
    """One field of a frame, as a datasheet row.

    ``minimum`` / ``maximum`` are physical values; ``None`` means "whatever the
    raw width can represent". ``choices`` lists the only valid raw codes of an
    enumeration, with their datasheet names.
    """

    name: str
    start_byte: int
    start_bit: int
    length_bits: int
    signed: bool = False
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    byte_order: ByteOrder = ByteOrder.LITTLE_ENDIAN
    choices: tuple[tuple[int, str], ...] = ()
    description: str = ""
    _raw_lo: int = field(init=False, repr=False, compare=False)
    _raw_hi: int = field(init=False, repr=False, compare=False)
    _value_lo: float = field(init=False, repr=False, compare=False)
    _value_hi: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("signal name must not be empty")
        if not 1 <= self.length_bits <= _MAX_SIGNAL_BITS:
            raise ValueError(f"{self.name}: length_bits must be 1..{_MAX_SIGNAL_BITS}")
        if not 0 <= self.start_bit <= 7:
            raise ValueError(f"{self.name}: start_bit must be 0..7")
        if self.start_byte < 0:
            raise ValueError(f"{self.name}: start_byte must be >= 0")
        if not math.isfinite(self.scale) or self.scale <= 0.0:
            raise ValueError(f"{self.name}: scale must be finite and > 0")
        if not math.isfinite(self.offset):
            raise ValueError(f"{self.name}: offset must be finite")
        if self.signed:
            rep_lo, rep_hi = -(1 << (self.length_bits - 1)), (1 << (self.length_bits - 1)) - 1
        else:
            rep_lo, rep_hi = 0, (1 << self.length_bits) - 1
        lo, hi = rep_lo, rep_hi
        if self.minimum is not None:
            lo = max(lo, math.ceil((self.minimum - self.offset) / self.scale - _RANGE_SLACK))
        if self.maximum is not None:
            hi = min(hi, math.floor((self.maximum - self.offset) / self.scale + _RANGE_SLACK))
        if lo > hi:
            raise ValueError(f"{self.name}: declared range holds no representable value")
        for code, _label in self.choices:
            if not lo <= code <= hi:
                raise ValueError(f"{self.name}: choice {code} outside the raw range {lo}..{hi}")
        object.__setattr__(self, "_raw_lo", lo)
        object.__setattr__(self, "_raw_hi", hi)
        # Physical values accepted by to_raw: the declared range, cut to what
        # the width can represent (then rounded to the nearest valid step).
        value_lo = self.to_physical(rep_lo)
        value_hi = self.to_physical(rep_hi)
        if self.minimum is not None:
            value_lo = max(value_lo, self.minimum)
        if self.maximum is not None:
            value_hi = min(value_hi, self.maximum)
        object.__setattr__(self, "_value_lo", value_lo)
        object.__setattr__(self, "_value_hi", value_hi)

    # -- ranges -----------------------------------------------------------

    @property
    def raw_min(self) -> int:
        """Smallest valid raw value (declared range within what the width holds)."""
        return self._raw_lo

    @property
    def raw_max(self) -> int:
        return self._raw_hi

    @property
    def physical_min(self) -> float:
        """Smallest physical value a valid raw value decodes to."""
        return self.to_physical(self._raw_lo)

    @property
    def physical_max(self) -> float:
        return self.to_physical(self._raw_hi)

    @property
    def span_bytes(self) -> int:
        """Number of bytes the signal touches, from ``start_byte`` on."""
        return (self.start_bit + self.length_bits + 7) // 8

    def choice_name(self, raw: int) -> str | None:
        for code, label in self.choices:
            if code == raw:
                return label
        return None

    # -- scaling ----------------------------------------------------------

    def to_physical(self, raw: int) -> float:
        # Rounding hides binary noise (0.1 * 4019 -> 401.90000000000003) far
        # below any resolution a CAN signal can carry.
        return round(raw * self.scale + self.offset, 9)

    def to_raw(self, value: float) -> int:
        """Physical -> raw, rounding to the nearest step; range-checked."""
        if not math.isfinite(value):
            raise SignalRangeError(self, value, "is not a finite number")
        slack = self.scale * _RANGE_SLACK
        if value < self._value_lo - slack or value > self._value_hi + slack:
            raise SignalRangeError(
                self,
                value,
                f"outside {self._value_lo:g}..{self._value_hi:g} {self.unit}".rstrip(),
            )
        raw = round((value - self.offset) / self.scale)
        # A value inside the range can round half a step past an edge that is
        # not a multiple of the scale; the nearest valid step is the edge.
        raw = min(max(raw, self._raw_lo), self._raw_hi)
        self.check_raw(raw)
        return raw

    def check_raw(self, raw: int) -> None:
        if not self._raw_lo <= raw <= self._raw_hi:
            raise SignalRangeError(self, raw, f"raw value outside {self._raw_lo}..{self._raw_hi}")
        if self.choices and self.choice_name(raw) is None:
            valid = ", ".join(str(code) for code, _ in self.choices)
            raise SignalRangeError(self, raw, f"is not a declared choice ({valid})")

    # -- bit layout -------------------------------------------------------

    def _order(self) -> Literal["little", "big"]:
        return "little" if self.byte_order is ByteOrder.LITTLE_ENDIAN else "big"

    def frame_bits(self) -> frozenset[int]:
        """Absolute bit positions (``byte * 8 + bit``) the signal occupies."""
        bits: set[int] = set()
        span = self.span_bytes
        for i in range(self.length_bits):
            pos = self.start_bit + i
            if self.byte_order is ByteOrder.LITTLE_ENDIAN:
                byte = self.start_byte + pos // 8
            else:
                byte = self.start_byte + span - 1 - pos // 8
            bits.add(byte * 8 + pos % 8)
        return frozenset(bits)

    def extract(self, data: bytes | bytearray) -> int:
        """Read the raw value (two's complement resolved) from a payload."""
        chunk = data[self.start_byte : self.start_byte + self.span_bytes]
        word = int.from_bytes(chunk, self._order())
        raw = (word >> self.start_bit) & ((1 << self.length_bits) - 1)
        if self.signed and raw >= 1 << (self.length_bits - 1):
            raw -= 1 << self.length_bits
        return raw

    def insert(self, buffer: bytearray, raw: int) -> None:
        """Write a raw value into a payload, leaving the other bits alone."""
        mask = ((1 << self.length_bits) - 1) << self.start_bit
        end = self.start_byte + self.span_bytes
        order = self._order()
        word = int.from_bytes(buffer[self.start_byte : end], order)
        word = (word & ~mask) | ((raw << self.start_bit) & mask)
        buffer[self.start_byte : end] = word.to_bytes(self.span_bytes, order)


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame declaration: id, exact payload length and its signals.

    Bits not covered by a signal are reserved: sent as 0, ignored on receipt.
    """

    name: str
    frame_id: int
    length: int
    signals: tuple[Signal, ...]
    is_extended_id: bool = False
    description: str = ""
    _by_name: dict[str, Signal] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        id_max = MAX_EXTENDED_ID if self.is_extended_id else MAX_STANDARD_ID
        if not 0 <= self.frame_id <= id_max:
            raise ValueError(f"{self.name}: frame id 0x{self.frame_id:X} out of range")
        if not 0 <= self.length <= MAX_CLASSIC_DLC:
            raise ValueError(f"{self.name}: length must be 0..{MAX_CLASSIC_DLC} bytes")
        by_name: dict[str, Signal] = {}
        used: set[int] = set()
        for sig in self.signals:
            if sig.name in by_name:
                raise ValueError(f"{self.name}: duplicate signal {sig.name}")
            if sig.start_byte + sig.span_bytes > self.length:
                raise ValueError(f"{self.name}: signal {sig.name} does not fit in the payload")
            bits = sig.frame_bits()
            if used & bits:
                raise ValueError(f"{self.name}: signal {sig.name} overlaps another signal")
            used |= bits
            by_name[sig.name] = sig
        object.__setattr__(self, "_by_name", by_name)

    def signal(self, name: str) -> Signal:
        try:
            return self._by_name[name]
        except KeyError:
            raise SignalError(f"{self.name} has no signal {name!r}") from None

    def check_length(self, data: bytes | bytearray) -> None:
        if len(data) != self.length:
            raise FrameLengthError(self, len(data))

    # -- raw --------------------------------------------------------------

    def encode_raw(self, raw_values: Mapping[str, int]) -> bytes:
        self._check_names(raw_values)
        buffer = bytearray(self.length)
        for sig in self.signals:
            raw = raw_values[sig.name]
            sig.check_raw(raw)
            sig.insert(buffer, raw)
        return bytes(buffer)

    def decode_raw(self, data: bytes | bytearray) -> dict[str, int]:
        """Payload -> raw integers; checks the length and each declared range."""
        self.check_length(data)
        result: dict[str, int] = {}
        for sig in self.signals:
            raw = sig.extract(data)
            sig.check_raw(raw)
            result[sig.name] = raw
        return result

    # -- physical ---------------------------------------------------------

    def encode(self, values: Mapping[str, float]) -> bytes:
        self._check_names(values)
        return self.encode_raw({sig.name: sig.to_raw(values[sig.name]) for sig in self.signals})

    def decode(self, data: bytes | bytearray) -> dict[str, float]:
        raw = self.decode_raw(data)
        return {sig.name: sig.to_physical(raw[sig.name]) for sig in self.signals}

    def _check_names(self, values: Mapping[str, object]) -> None:
        unknown = sorted(set(values) - set(self._by_name))
        missing = [sig.name for sig in self.signals if sig.name not in values]
        if unknown or missing:
            raise SignalError(f"{self.name}: unknown signals {unknown}, missing signals {missing}")


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    frame: Frame
    values: dict[str, float]


class FrameCatalog:
    """A set of frame declarations, looked up by name or arbitration id."""

    def __init__(self, frames: Iterable[Frame]) -> None:
        self._by_id: dict[tuple[int, bool], Frame] = {}
        self._by_name: dict[str, Frame] = {}
        for frame in frames:
            key = (frame.frame_id, frame.is_extended_id)
            if key in self._by_id:
                raise ValueError(f"frame id 0x{frame.frame_id:X} declared twice")
            if frame.name in self._by_name:
                raise ValueError(f"frame name {frame.name} declared twice")
            self._by_id[key] = frame
            self._by_name[frame.name] = frame

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, frame_id: object) -> bool:
        return (frame_id, False) in self._by_id

    def by_name(self, name: str) -> Frame:
        try:
            return self._by_name[name]
        except KeyError:
            raise CodecError(f"no frame named {name!r}") from None

    def by_id(self, frame_id: int, *, is_extended_id: bool = False) -> Frame:
        try:
            return self._by_id[(frame_id, is_extended_id)]
        except KeyError:
            raise UnknownFrameError(frame_id, is_extended_id=is_extended_id) from None

    def decode(
        self, frame_id: int, data: bytes | bytearray, *, is_extended_id: bool = False
    ) -> DecodedFrame:
        frame = self.by_id(frame_id, is_extended_id=is_extended_id)
        return DecodedFrame(frame, frame.decode(data))

    def decode_raw(
        self, frame_id: int, data: bytes | bytearray, *, is_extended_id: bool = False
    ) -> dict[str, int]:
        return self.by_id(frame_id, is_extended_id=is_extended_id).decode_raw(data)


# ---------------------------------------------------------------------------
# Power module protocol (docs/power-stage-can.md)
# ---------------------------------------------------------------------------

PROTOCOL_VERSION = 1
NODE_ID_BITS = 5
MAX_NODE_ID = (1 << NODE_ID_BITS) - 1


class FunctionCode(IntEnum):
    """Upper six bits of the 11-bit id; lower value wins arbitration."""

    CONTROL = 0x01
    STATUS = 0x02
    EXPORT_LIMITS = 0x03
    IMPORT_LIMITS = 0x04
    HOST_HEARTBEAT = 0x05
    CAPABILITIES_REQUEST = 0x06
    CAPABILITIES_EXPORT = 0x07
    CAPABILITIES_IMPORT = 0x08


HOST_TO_MODULE: frozenset[FunctionCode] = frozenset(
    {
        FunctionCode.CONTROL,
        FunctionCode.EXPORT_LIMITS,
        FunctionCode.IMPORT_LIMITS,
        FunctionCode.HOST_HEARTBEAT,
        FunctionCode.CAPABILITIES_REQUEST,
    }
)
MODULE_TO_HOST: frozenset[FunctionCode] = frozenset(FunctionCode) - HOST_TO_MODULE

MODE_CODES: dict[PowerMode, int] = {PowerMode.OFF: 0, PowerMode.EXPORT: 1, PowerMode.IMPORT: 2}
MODES_BY_CODE: dict[int, PowerMode] = {code: mode for mode, code in MODE_CODES.items()}

FAULT_BITS: dict[PowerStageFault, int] = {
    PowerStageFault.OVER_VOLTAGE: 0,
    PowerStageFault.OVER_CURRENT: 1,
    PowerStageFault.OVER_TEMPERATURE: 2,
    PowerStageFault.INPUT_UNDER_VOLTAGE: 3,
    PowerStageFault.SHORT_CIRCUIT: 4,
    PowerStageFault.INTERNAL: 5,
    PowerStageFault.COMMUNICATION: 6,
}
_KNOWN_FAULT_MASK = sum(1 << bit for bit in FAULT_BITS.values())


def arbitration_id(function: FunctionCode, node_id: int) -> int:
    check_node_id(node_id)
    return (int(function) << NODE_ID_BITS) | node_id


def split_arbitration_id(frame_id: int) -> tuple[int, int]:
    """11-bit id -> (function code, node id); the code may be undeclared."""
    return frame_id >> NODE_ID_BITS, frame_id & MAX_NODE_ID


def check_node_id(node_id: int) -> None:
    if not 0 <= node_id <= MAX_NODE_ID:
        raise ValueError(f"node_id must be 0..{MAX_NODE_ID}, got {node_id}")


def faults_to_bits(faults: PowerStageFault) -> int:
    return sum(1 << bit for flag, bit in FAULT_BITS.items() if flag in faults)


def faults_from_bits(bits: int) -> tuple[PowerStageFault, int]:
    """Fault bits -> (known faults, leftover reserved bits that were set)."""
    faults = PowerStageFault.NONE
    for flag, bit in FAULT_BITS.items():
        if bits & (1 << bit):
            faults |= flag
    return faults, bits & ~_KNOWN_FAULT_MASK


def _voltage(name: str, start_byte: int, description: str) -> Signal:
    return Signal(name, start_byte, 0, 16, scale=0.1, unit="V", description=description)


def _current_magnitude(name: str, start_byte: int, description: str) -> Signal:
    return Signal(name, start_byte, 0, 16, scale=0.1, unit="A", description=description)


def _power_magnitude(name: str, start_byte: int, description: str) -> Signal:
    return Signal(name, start_byte, 0, 16, scale=10.0, unit="W", description=description)


def _mode_signal() -> Signal:
    return Signal(
        "mode",
        0,
        0,
        8,
        choices=((0, "OFF"), (1, "EXPORT"), (2, "IMPORT")),
        description="0 off, 1 export (to the EV), 2 import (from the EV)",
    )


def power_module_frames(node_id: int) -> FrameCatalog:
    """The frame table of one module, with ``node_id`` folded into every id."""

    def fid(function: FunctionCode) -> int:
        return arbitration_id(function, node_id)

    return FrameCatalog(
        [
            Frame(
                "CONTROL",
                fid(FunctionCode.CONTROL),
                1,
                (_mode_signal(),),
                description="host -> module: requested operating mode",
            ),
            Frame(
                "STATUS",
                fid(FunctionCode.STATUS),
                8,
                (
                    _mode_signal(),
                    _voltage("voltage_v", 1, "measured output voltage"),
                    Signal(
                        "current_a",
                        3,
                        0,
                        16,
                        signed=True,
                        scale=0.1,
                        unit="A",
                        description="measured output current, + to the EV",
                    ),
                    Signal(
                        "temperature_c",
                        5,
                        0,
                        8,
                        offset=-40.0,
                        unit="degC",
                        description="hottest internal sensor",
                    ),
                    Signal("faults", 6, 0, 16, description="fault bits, see fault table"),
                ),
                description="module -> host: cyclic and on change",
            ),
            Frame(
                "EXPORT_LIMITS",
                fid(FunctionCode.EXPORT_LIMITS),
                6,
                (
                    _voltage("target_voltage_v", 0, "output voltage set-point"),
                    _current_magnitude("current_limit_a", 2, "output current limit"),
                    _power_magnitude("power_limit_w", 4, "output power limit"),
                ),
                description="host -> module: set-points for EXPORT mode",
            ),
            Frame(
                "IMPORT_LIMITS",
                fid(FunctionCode.IMPORT_LIMITS),
                6,
                (
                    _voltage("min_voltage_v", 0, "lowest voltage the module may pull the EV to"),
                    _current_magnitude("current_limit_a", 2, "discharge current magnitude"),
                    _power_magnitude("power_limit_w", 4, "discharge power magnitude"),
                ),
                description="host -> module: set-points for IMPORT mode",
            ),
            Frame(
                "HOST_HEARTBEAT",
                fid(FunctionCode.HOST_HEARTBEAT),
                1,
                (
                    Signal(
                        "protocol_version",
                        0,
                        0,
                        8,
                        minimum=PROTOCOL_VERSION,
                        maximum=PROTOCOL_VERSION,
                        description="protocol version the host speaks",
                    ),
                ),
                description="host -> module: keep-alive",
            ),
            Frame(
                "CAPABILITIES_REQUEST",
                fid(FunctionCode.CAPABILITIES_REQUEST),
                0,
                (),
                description="host -> module: ask for both CAPABILITIES frames",
            ),
            Frame(
                "CAPABILITIES_EXPORT",
                fid(FunctionCode.CAPABILITIES_EXPORT),
                8,
                (
                    _voltage("min_voltage_v", 0, "lowest regulated output voltage"),
                    _voltage("max_voltage_v", 2, "highest output voltage"),
                    _current_magnitude("max_current_a", 4, "highest export current"),
                    _power_magnitude("max_power_w", 6, "highest export power"),
                ),
                description="module -> host: reply to CAPABILITIES_REQUEST, part 1",
            ),
            Frame(
                "CAPABILITIES_IMPORT",
                fid(FunctionCode.CAPABILITIES_IMPORT),
                6,
                (
                    _current_magnitude("max_current_a", 0, "highest import current magnitude"),
                    _power_magnitude("max_power_w", 2, "highest import power magnitude"),
                    Signal("bidirectional", 4, 0, 1, description="1: IMPORT mode supported"),
                    Signal("protocol_version", 5, 0, 8, description="protocol version of module"),
                ),
                description="module -> host: reply to CAPABILITIES_REQUEST, part 2",
            ),
        ]
    )
