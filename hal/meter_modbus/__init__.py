"""Energy meters on Modbus RTU: register maps as data, the real driver, the RTU link.

:mod:`.registers` holds the maps (Eastron SDM630 so far) and the value codec,
:mod:`.driver` the real :class:`hal.meter.Meter`, :mod:`.rtu` the Modbus RTU
master link shared with :mod:`hal.imd_modbus`. The simulated meter lives in
:mod:`.simulated` and is imported from there, so that production code that only
needs the driver does not pull in the simulator. Importing this package loads
pymodbus; nothing else in ``hal`` does, so the service only loads it when a
Modbus device is configured. See ``docs/modbus-devices.md``.
"""

from __future__ import annotations

from hal.meter_modbus.driver import ModbusMeter
from hal.meter_modbus.registers import (
    METER_MAPS,
    SDM630,
    DataType,
    MeterMap,
    Quantity,
    RegisterBlock,
    RegisterField,
    WordOrder,
)
from hal.meter_modbus.rtu import (
    ExceptionCode,
    LinkStats,
    ModbusRtuLink,
    RegisterTable,
    RtuSettings,
)

__all__ = [
    "METER_MAPS",
    "SDM630",
    "DataType",
    "ExceptionCode",
    "LinkStats",
    "MeterMap",
    "ModbusMeter",
    "ModbusRtuLink",
    "Quantity",
    "RegisterBlock",
    "RegisterField",
    "RegisterTable",
    "RtuSettings",
    "WordOrder",
]
