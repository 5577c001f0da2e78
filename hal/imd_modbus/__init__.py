"""Insulation monitoring devices (IMD) on Modbus RTU: Bender ISOMETER map and driver.

:mod:`.registers` is the register map and the measuring-channel codec,
:mod:`.driver` the real :class:`hal.isolation.IsolationMonitor`. The simulated
device lives in :mod:`.simulated` and is imported from there. Importing this
package loads pymodbus (through the RTU link in :mod:`hal.meter_modbus.rtu`).
See ``docs/modbus-devices.md``.
"""

from __future__ import annotations

from hal.imd_modbus.driver import ModbusIsolationMonitor
from hal.imd_modbus.registers import (
    ISOCHA425HV,
    AlarmType,
    Channel,
    Description,
    DeviceTest,
    ImdMap,
    Unit,
    Validity,
)

__all__ = [
    "ISOCHA425HV",
    "AlarmType",
    "Channel",
    "Description",
    "DeviceTest",
    "ImdMap",
    "ModbusIsolationMonitor",
    "Unit",
    "Validity",
]
