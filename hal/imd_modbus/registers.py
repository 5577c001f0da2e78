"""Bender ISOMETER register map and measuring-channel codec (sans-I/O).

Sources: Bender "ISOMETER isoCHA425HV" manual (isoCHA425HV_D00404_04_M_XXEN,
10.2023), section 5.3 "Modbus register assignment", and the same chapter of
the isoCHA425 manual (isoCHA425_D00352_01_M_XXEN, 10.2019, chapter 8), which
share the ISOMETER 425 family layout. Everything is a holding register
(read with function code 03, written with 16).

Measured values are *channels* of four registers (chapter 8.1.2):

======  ==============================================================
reg+0   IEEE 754 float, high word first
reg+1
reg+2   high byte: alarm and test type (AT&T), low byte: range and unit (R&U)
reg+3   channel description code (8.2), e.g. 71 insulation resistance
======  ==============================================================

AT&T: bits 0-2 alarm type (0 none, 1 prewarning, 2 device fault, 4 warning,
5 alarm), bit 6 internal test, bit 7 external test. R&U: bits 0-4 unit
(2 ohm, 4 volt), bits 6-7 validity (0 actual value, 1 true value lower,
2 true value higher, 3 invalid).

Parameters and commands used here:

=====  ===  ====================================================  ============
 reg   RW   meaning                                               values
=====  ===  ====================================================  ============
1000   RO   channel 1: insulation resistance R_F                  ohm
1008   RO   channel 3: system voltage U_n                          V
3005   RW   prewarning response value R1                          kohm, >= R2
3007   RW   alarm response value R2                               kohm, <= R1
3026   RW   request stop mode (0 = stop / deactivate, 1 = run)    0, 1
8005   WO   start device test                                     0x5445 "TE"
8006   WO   clear fault memory                                    0x434C "CL"
9800   RO   device name, 10 registers of two ASCII characters
=====  ===  ====================================================  ============

Registers 3026, 8005, 8006 and 9800 are as listed in the isoCHA425HV manual;
the channel layout and 3005/3007 are the family's (isoCHA425, isoEV425) and are
also what the open-source EVerest driver for the isoCHA425HV uses. The manuals
only say that the test bits mark an internal or external test; like EVerest's
driver, this one takes a set test bit as "device test running" and its
clearing as "finished", with a failed test leaving the alarm type at "device
fault". Verify both against a real device before relying on them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

CHANNEL_REGISTERS = 4


class AlarmType(IntEnum):
    NONE = 0b000
    PREWARNING = 0b001
    DEVICE_FAULT = 0b010
    WARNING = 0b100
    ALARM = 0b101


class DeviceTest(IntEnum):
    NONE = 0
    INTERNAL = 1  # bit 6
    EXTERNAL = 2  # bit 7


class Validity(IntEnum):
    ACTUAL = 0
    TRUE_VALUE_LOWER = 1  # the shown value is an upper bound
    TRUE_VALUE_HIGHER = 2  # the shown value is a lower bound
    INVALID = 3


class Unit(IntEnum):
    INVALID = 0
    NONE = 1
    OHM = 2
    AMPERE = 3
    VOLT = 4


class Description(IntEnum):
    """Channel description codes (chapter 8.2) that matter here."""

    INSULATION_FAULT = 1  # resistance below a response value
    INSULATION_RESISTANCE = 71
    VOLTAGE = 76
    UNDERVOLTAGE = 77
    OVERVOLTAGE = 78
    CONNECTION_SYSTEM = 101  # device fault: system connection
    CONNECTION_EARTH = 102  # device fault: earth connection
    DEVICE_ERROR = 115
    DEVICE_ERROR_2 = 129
    NO_MEASURED_VALUE = 1022
    INVALID = 1023


DEVICE_FAULT_DESCRIPTIONS = frozenset(
    {
        Description.CONNECTION_SYSTEM,
        Description.CONNECTION_EARTH,
        Description.DEVICE_ERROR,
        Description.DEVICE_ERROR_2,
    }
)


@dataclass(frozen=True, slots=True)
class Channel:
    """One measuring channel as the registers hold it (raw bytes kept as they are)."""

    value: float
    alarm_test: int  # AT&T byte
    range_unit: int  # R&U byte
    description: int

    @classmethod
    def make(
        cls,
        value: float,
        unit: Unit,
        description: int,
        *,
        alarm: AlarmType = AlarmType.NONE,
        test: DeviceTest = DeviceTest.NONE,
        validity: Validity = Validity.ACTUAL,
    ) -> Channel:
        return cls(
            value=value,
            alarm_test=(int(test) << 6) | int(alarm),
            range_unit=(int(validity) << 6) | int(unit),
            description=description,
        )

    @property
    def alarm(self) -> int:
        """Alarm type bits (compare with :class:`AlarmType`; 3, 6, 7 are reserved)."""
        return self.alarm_test & 0x07

    @property
    def test(self) -> DeviceTest:
        bits = self.alarm_test >> 6
        if bits & 0b10:
            return DeviceTest.EXTERNAL
        return DeviceTest.INTERNAL if bits & 0b01 else DeviceTest.NONE

    @property
    def unit(self) -> int:
        return self.range_unit & 0x1F

    @property
    def validity(self) -> Validity:
        return Validity(self.range_unit >> 6)

    @property
    def device_fault(self) -> bool:
        return self.alarm == AlarmType.DEVICE_FAULT or self.description in DEVICE_FAULT_DESCRIPTIONS

    def measured(self, unit: Unit) -> float | None:
        """The value, if the channel holds a usable measurement in ``unit``."""
        if (
            self.device_fault
            or self.test is not DeviceTest.NONE
            or self.validity is Validity.INVALID
            or self.unit != unit
            or self.description in (Description.NO_MEASURED_VALUE, Description.INVALID)
            or not math.isfinite(self.value)
        ):
            return None
        return self.value


def decode_channel(words: Sequence[int]) -> Channel:
    if len(words) != CHANNEL_REGISTERS:
        raise ValueError(f"a channel is {CHANNEL_REGISTERS} registers, got {len(words)}")
    (value,) = struct.unpack(">f", words[0].to_bytes(2, "big") + words[1].to_bytes(2, "big"))
    return Channel(
        value=float(value),
        alarm_test=words[2] >> 8,
        range_unit=words[2] & 0xFF,
        description=words[3],
    )


def encode_channel(channel: Channel) -> list[int]:
    data = struct.pack(">f", channel.value)
    return [
        int.from_bytes(data[0:2], "big"),
        int.from_bytes(data[2:4], "big"),
        ((channel.alarm_test & 0xFF) << 8) | (channel.range_unit & 0xFF),
        channel.description & 0xFFFF,
    ]


def decode_ascii(words: Sequence[int]) -> str:
    """Two characters per register, high byte first; padding (NUL, space) stripped."""
    data = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words)
    return data.decode("ascii", errors="replace").strip("\x00 ").replace("\n", " ")


def encode_ascii(text: str, registers: int) -> list[int]:
    data = text.encode("ascii")[: 2 * registers].ljust(2 * registers, b"\x00")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@dataclass(frozen=True, slots=True)
class ImdMap:
    """Where an ISOMETER keeps what the driver needs (all holding registers)."""

    model: str
    source: str
    resistance_channel: int
    voltage_channel: int
    prewarning_r1_kohm: int  # register of R1
    alarm_r2_kohm: int  # register of R2
    stop_mode: int  # register: 0 stop, 1 run
    device_test: int  # register the test command goes to
    device_test_command: int
    clear_fault_memory: int
    clear_fault_memory_command: int
    device_name: int
    device_name_registers: int = 10
    max_response_kohm: int = 0xFFFF  # R1/R2 are UINT16 kohm


STOP_MODE_STOP = 0
STOP_MODE_RUN = 1

ISOCHA425HV = ImdMap(
    model="Bender isoCHA425HV",
    source="Bender ISOMETER isoCHA425HV manual D00404_04 (10.2023) 5.3; isoCHA425 D00352_01 ch. 8",
    resistance_channel=1000,
    voltage_channel=1008,
    prewarning_r1_kohm=3005,
    alarm_r2_kohm=3007,
    stop_mode=3026,
    device_test=8005,
    device_test_command=0x5445,  # "TE"
    clear_fault_memory=8006,
    clear_fault_memory_command=0x434C,  # "CL"
    device_name=9800,
)
