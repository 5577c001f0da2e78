"""A Modbus RTU energy meter, simulated on a pty, fed by the plant's physics.

The registers are those of a :class:`~hal.meter_modbus.registers.MeterMap`
(SDM630 by default), filled on every request from a
:class:`hal.sim.meter.SimulatedMeter`: its ``snapshot()`` is synchronous, so a
request is answered inside the read callback without waiting on anything.
Whoever steps the physics (``SimWorld``) keeps integrating the energy registers;
this class only serves them.

Per phase: the plant's line-neutral voltage on the installation's phases (0 while
the contactors are open, like the simulated meter), the EV's RMS current
(unsigned, as the meter shows it) on the phases it draws from, and the signed
phase power. Totals come straight from the snapshot so they match it exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hal.meter_modbus.registers import SDM630, MeterMap, Quantity
from hal.meter_modbus.rtu import ExceptionCode, RegisterTable
from hal.modbus_rtu_sim import ModbusExceptionReply, ModbusRtuSlave, SimulatedRtuDevice
from hal.sim.meter import SimulatedMeter

_log = logging.getLogger(__name__)

_PHASES = (
    (Quantity.VOLTAGE_L1_V, Quantity.CURRENT_L1_A, Quantity.POWER_L1_W),
    (Quantity.VOLTAGE_L2_V, Quantity.CURRENT_L2_A, Quantity.POWER_L2_W),
    (Quantity.VOLTAGE_L3_V, Quantity.CURRENT_L3_A, Quantity.POWER_L3_W),
)


class SimulatedModbusMeter(SimulatedRtuDevice):
    """Serves ``meter``'s registers as a Modbus RTU slave on :attr:`port`.

    Build the driver with ``ModbusMeter(sim.port, unit_id=sim.unit_id)``; serve
    with ``await sim.run()`` (until cancelled); ``close()`` is idempotent.
    Fault injection is on :attr:`slave`.
    """

    def __init__(
        self,
        meter: SimulatedMeter,
        *,
        meter_map: MeterMap = SDM630,
        unit_id: int = 1,
        frequency_hz: float = 50.0,
    ) -> None:
        if meter.path != "ac":
            raise ValueError(
                f"{meter_map.model} is an AC meter; the simulated meter is {meter.path}"
            )
        self.meter = meter
        self.meter_map = meter_map
        self.frequency_hz = frequency_hz
        self.slave = ModbusRtuSlave(self, unit_id=unit_id, name=f"simulated {meter_map.model}")

    # -- what the meter shows ---------------------------------------------

    def values(self) -> dict[Quantity, float]:
        """Every quantity the meter would show now, in SI units."""
        snap = self.meter.snapshot()
        plant = self.meter.plant
        live_phases = max(0, min(plant.phases, 3))
        ev_phases = max(0, min(plant.phases, plant.ev_phases, 3))
        values: dict[Quantity, float] = {
            Quantity.POWER_TOTAL_W: snap.power_w,
            Quantity.FREQUENCY_HZ: self.frequency_hz,
            Quantity.IMPORT_ENERGY_WH: snap.import_energy_wh,
            Quantity.EXPORT_ENERGY_WH: snap.export_energy_wh,
        }
        for index, (voltage_q, current_q, power_q) in enumerate(_PHASES):
            voltage_v = snap.voltage_v if index < live_phases else 0.0
            current_a = snap.current_a if index < ev_phases else 0.0
            values[voltage_q] = voltage_v
            values[current_q] = abs(current_a)
            values[power_q] = voltage_v * current_a
        return values

    # -- hal.modbus_rtu_sim.RegisterDevice --------------------------------

    def read_input_registers(self, address: int, count: int) -> Sequence[int]:
        return self._read(RegisterTable.INPUT, address, count)

    def read_holding_registers(self, address: int, count: int) -> Sequence[int]:
        return self._read(RegisterTable.HOLDING, address, count)

    def write_registers(self, address: int, values: Sequence[int]) -> None:
        raise ModbusExceptionReply(ExceptionCode.ILLEGAL_DATA_ADDRESS, "no writable registers")

    def _read(self, table: RegisterTable, address: int, count: int) -> list[int]:
        if table is not self.meter_map.table:
            raise ModbusExceptionReply(
                ExceptionCode.ILLEGAL_DATA_ADDRESS, f"no {table.value} registers"
            )
        image = self.meter_map.encode(self.values())
        missing = [a for a in range(address, address + count) if a not in image]
        if missing:
            raise ModbusExceptionReply(
                ExceptionCode.ILLEGAL_DATA_ADDRESS, f"unmapped register 0x{missing[0]:04X}"
            )
        return [image[a] for a in range(address, address + count)]
