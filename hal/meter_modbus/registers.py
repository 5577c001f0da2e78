"""Energy meter register maps, declared as data, and their value codec.

A :class:`MeterMap` says where each quantity lives, how it is encoded and how
it scales to SI units, and which contiguous blocks the driver reads (a block
must cover only documented registers: meters differ in what they answer for the
gaps). Adding a meter is adding one :class:`MeterMap`; the driver and the
simulated device both work from the map.

Values are big-endian within each 16-bit register (Modbus application protocol
v1.1b3, 4.2); the order of the registers of a 32-bit value is the map's
``word_order``. Raw register values and scaled SI values are kept apart:
:func:`decode_raw` / :func:`encode_raw` deal in the device's units, the map's
``scale`` turns them into ours (``si = raw * scale``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from hal.meter_modbus.rtu import MAX_READ_REGISTERS, RegisterTable


class WordOrder(Enum):
    HIGH_FIRST = "high-first"  # "ABCD": most significant register at the lower address
    LOW_FIRST = "low-first"  # "CDAB"


class DataType(Enum):
    FLOAT32 = "float32"  # IEEE 754 single precision
    INT32 = "int32"
    UINT32 = "uint32"
    INT16 = "int16"
    UINT16 = "uint16"

    @property
    def registers(self) -> int:
        return 1 if self in (DataType.INT16, DataType.UINT16) else 2


_STRUCT = {
    DataType.FLOAT32: ">f",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
}


class Quantity(Enum):
    """What a register holds, in the SI unit its name ends with (after scaling)."""

    VOLTAGE_L1_V = "voltage_l1_v"  # line-neutral RMS
    VOLTAGE_L2_V = "voltage_l2_v"
    VOLTAGE_L3_V = "voltage_l3_v"
    CURRENT_L1_A = "current_l1_a"  # RMS; meters report it unsigned
    CURRENT_L2_A = "current_l2_a"
    CURRENT_L3_A = "current_l3_a"
    POWER_L1_W = "power_l1_w"  # active power, + import
    POWER_L2_W = "power_l2_w"
    POWER_L3_W = "power_l3_w"
    POWER_TOTAL_W = "power_total_w"  # + import
    FREQUENCY_HZ = "frequency_hz"
    IMPORT_ENERGY_WH = "import_energy_wh"  # total, monotonic
    EXPORT_ENERGY_WH = "export_energy_wh"  # total, monotonic


# What hal.meter.MeterReading is built from; POWER_L1_W (sign of the L1 current)
# falls back to POWER_TOTAL_W when a map has no per-phase power.
REQUIRED_QUANTITIES = frozenset(
    {
        Quantity.VOLTAGE_L1_V,
        Quantity.CURRENT_L1_A,
        Quantity.POWER_TOTAL_W,
        Quantity.IMPORT_ENERGY_WH,
        Quantity.EXPORT_ENERGY_WH,
    }
)


@dataclass(frozen=True, slots=True)
class RegisterField:
    quantity: Quantity
    address: int  # 0-based protocol address (register 30001 is address 0)
    data_type: DataType = DataType.FLOAT32
    scale: float = 1.0  # SI value = raw value * scale

    @property
    def registers(self) -> int:
        return self.data_type.registers

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.registers


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """Registers read with one request; named in error messages."""

    name: str
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count

    def covers(self, field: RegisterField) -> bool:
        return self.address <= field.address and field.end <= self.end

    def describe(self, table: RegisterTable) -> str:
        return f"{self.name} ({table.value} registers 0x{self.address:04X}-0x{self.end - 1:04X})"


@dataclass(frozen=True, slots=True)
class MeterMap:
    model: str
    source: str  # the manual the addresses come from
    table: RegisterTable
    word_order: WordOrder
    fields: tuple[RegisterField, ...]
    blocks: tuple[RegisterBlock, ...]
    max_registers_per_read: int = MAX_READ_REGISTERS

    def __post_init__(self) -> None:
        if not 1 <= self.max_registers_per_read <= MAX_READ_REGISTERS:
            raise ValueError(f"{self.model}: max_registers_per_read out of range")
        seen: set[Quantity] = set()
        used: set[int] = set()
        for f in self.fields:
            if f.quantity in seen:
                raise ValueError(f"{self.model}: {f.quantity.name} mapped twice")
            seen.add(f.quantity)
            span = set(range(f.address, f.end))
            if span & used:
                raise ValueError(f"{self.model}: {f.quantity.name} overlaps another field")
            used |= span
            if f.address < 0 or f.end > 0x10000:
                raise ValueError(f"{self.model}: {f.quantity.name} address out of range")
            if sum(block.covers(f) for block in self.blocks) != 1:
                raise ValueError(f"{self.model}: {f.quantity.name} must lie in exactly one block")
            if not (math.isfinite(f.scale) and f.scale != 0.0):
                raise ValueError(f"{self.model}: {f.quantity.name} has a bad scale")
        missing = REQUIRED_QUANTITIES - seen
        if missing:
            names = ", ".join(sorted(q.name for q in missing))
            raise ValueError(f"{self.model}: map lacks {names}")
        for block in self.blocks:
            if not 1 <= block.count <= self.max_registers_per_read:
                raise ValueError(
                    f"{self.model}: block {block.name!r} reads {block.count} registers"
                )
            if not any(block.covers(f) for f in self.fields):
                raise ValueError(f"{self.model}: block {block.name!r} holds no field")

    def field(self, quantity: Quantity) -> RegisterField | None:
        return next((f for f in self.fields if f.quantity is quantity), None)

    def fields_in(self, block: RegisterBlock) -> tuple[RegisterField, ...]:
        return tuple(f for f in self.fields if block.covers(f))

    def decode_block(self, block: RegisterBlock, registers: Sequence[int]) -> dict[Quantity, float]:
        """Scaled values of the fields in ``block`` from its ``registers``."""
        if len(registers) != block.count:
            raise ValueError(
                f"{block.name}: expected {block.count} registers, got {len(registers)}"
            )
        values: dict[Quantity, float] = {}
        for f in self.fields_in(block):
            offset = f.address - block.address
            raw = decode_raw(f.data_type, registers[offset : offset + f.registers], self.word_order)
            values[f.quantity] = raw * f.scale
        return values

    def encode(self, values: Mapping[Quantity, float]) -> dict[int, int]:
        """Register image (address -> word) of ``values`` in SI units; for simulators."""
        image: dict[int, int] = {}
        for f in self.fields:
            if f.quantity not in values:
                continue
            words = encode_raw(f.data_type, values[f.quantity] / f.scale, self.word_order)
            for i, word in enumerate(words):
                image[f.address + i] = word
        return image


def decode_raw(data_type: DataType, words: Sequence[int], order: WordOrder) -> float:
    """The device's raw number in ``words`` (one or two registers)."""
    if len(words) != data_type.registers:
        raise ValueError(
            f"{data_type.value} takes {data_type.registers} registers, got {len(words)}"
        )
    ordered = list(words) if order is WordOrder.HIGH_FIRST else list(reversed(words))
    data = b"".join(w.to_bytes(2, "big") for w in ordered)
    return float(struct.unpack(_STRUCT[data_type], data)[0])


def encode_raw(data_type: DataType, raw: float, order: WordOrder) -> list[int]:
    """Registers holding ``raw`` (rounded for integer types); ValueError if it does not fit."""
    value: float | int = raw if data_type is DataType.FLOAT32 else round(raw)
    try:
        data = struct.pack(_STRUCT[data_type], value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{raw!r} does not fit {data_type.value}") from exc
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if order is WordOrder.HIGH_FIRST else list(reversed(words))


def _float_fields(*pairs: tuple[Quantity, int]) -> tuple[RegisterField, ...]:
    return tuple(RegisterField(q, address) for q, address in pairs)


# Eastron SDM630-Modbus (V2 / MID V2), three-phase, direct connected.
# Source: Eastron "SDM630Modbus Smart Meter Modbus Protocol Implementation" V1.8,
# input registers (function code 04), every parameter an IEEE 754 float in two
# registers, high word first; register 3xxxx N is protocol address N - 30001.
# At most 40 parameters (80 registers) per request.
#   30001/03/05 phase 1/2/3 line-neutral volts   0x0000 0x0002 0x0004
#   30007/09/11 phase 1/2/3 current (A)          0x0006 0x0008 0x000A
#   30013/15/17 phase 1/2/3 active power (W)     0x000C 0x000E 0x0010
#   30053 total system power (W)                 0x0034
#   30071 frequency of supply voltages (Hz)      0x0046
#   30073 total import active energy (kWh)       0x0048
#   30075 total export active energy (kWh)       0x004A
# Import is energy from the supply terminals to the load terminals. Active power
# reads negative while energy flows back (export); the protocol document's notes
# only say so for the power factor ("positive: forward current, negative:
# reverse"), so confirm on the real meter during a discharge.
SDM630 = MeterMap(
    model="Eastron SDM630-Modbus",
    source="Eastron SDM630Modbus Smart Meter Modbus Protocol Implementation V1.8, input registers",
    table=RegisterTable.INPUT,
    word_order=WordOrder.HIGH_FIRST,
    fields=(
        *_float_fields(
            (Quantity.VOLTAGE_L1_V, 0x0000),
            (Quantity.VOLTAGE_L2_V, 0x0002),
            (Quantity.VOLTAGE_L3_V, 0x0004),
            (Quantity.CURRENT_L1_A, 0x0006),
            (Quantity.CURRENT_L2_A, 0x0008),
            (Quantity.CURRENT_L3_A, 0x000A),
            (Quantity.POWER_L1_W, 0x000C),
            (Quantity.POWER_L2_W, 0x000E),
            (Quantity.POWER_L3_W, 0x0010),
            (Quantity.POWER_TOTAL_W, 0x0034),
            (Quantity.FREQUENCY_HZ, 0x0046),
        ),
        RegisterField(Quantity.IMPORT_ENERGY_WH, 0x0048, scale=1000.0),  # kWh -> Wh
        RegisterField(Quantity.EXPORT_ENERGY_WH, 0x004A, scale=1000.0),
    ),
    blocks=(
        RegisterBlock("phase voltage, current, power", 0x0000, 18),
        RegisterBlock("total power", 0x0034, 2),
        RegisterBlock("frequency and energy", 0x0046, 6),
    ),
    max_registers_per_read=80,
)

METER_MAPS: Mapping[str, MeterMap] = {"sdm630": SDM630}
