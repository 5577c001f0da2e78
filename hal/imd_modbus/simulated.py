"""A Bender ISOMETER simulated on a pty, fed by the plant's insulation resistance.

It serves the :data:`~hal.imd_modbus.registers.ISOCHA425HV` map as a Modbus RTU
slave and takes its physics from a :class:`hal.sim.isolation.SimulatedIsolationMonitor`
(stepped by ``SimWorld``): the stop-mode register starts and stops that
monitor's measurement, so its settling time applies, and the resistance channel
shows the monitor's latest published value once it has settled. The alarm type
of the channel follows the response values R1/R2 like the device's, and the
monitor's injected device fault shows as alarm type "device fault" with channel
code 115 (device error).

A device test (``"TE"`` written to 8005) sets the channels' external-test bit
for ``self_test_duration_s`` of ``clock`` time; afterwards the bit clears. It
fails, in that it leaves the device fault showing, exactly when the monitor has
an injected device fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from hal.imd_modbus.registers import (
    ISOCHA425HV,
    STOP_MODE_RUN,
    STOP_MODE_STOP,
    AlarmType,
    Channel,
    Description,
    DeviceTest,
    ImdMap,
    Unit,
    Validity,
    encode_ascii,
    encode_channel,
)
from hal.meter_modbus.rtu import ExceptionCode
from hal.modbus_rtu_sim import ModbusExceptionReply, ModbusRtuSlave, SimulatedRtuDevice
from hal.sim.isolation import SimulatedIsolationMonitor

_log = logging.getLogger(__name__)


class SimulatedModbusIsolationMonitor(SimulatedRtuDevice):
    """Serves ``monitor`` as an ISOMETER on :attr:`port`.

    Build the driver with ``ModbusIsolationMonitor(sim.port, unit_id=sim.unit_id)``;
    serve with ``await sim.run()`` (until cancelled); ``close()`` is idempotent.
    Link fault injection is on :attr:`slave`, device faults on the monitor.
    """

    def __init__(
        self,
        monitor: SimulatedIsolationMonitor,
        *,
        imd_map: ImdMap = ISOCHA425HV,
        unit_id: int = 3,
        device_name: str = "isoCHA425HV",
        self_test_duration_s: float = 2.0,
        prewarning_kohm: int = 600,
        alarm_kohm: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= alarm_kohm <= prewarning_kohm <= imd_map.max_response_kohm:
            raise ValueError("need 1 <= alarm_kohm <= prewarning_kohm")
        if self_test_duration_s < 0.0:
            raise ValueError("self_test_duration_s must be >= 0")
        self.monitor = monitor
        self.imd_map = imd_map
        self.device_name = device_name
        self.self_test_duration_s = self_test_duration_s
        self.prewarning_kohm = prewarning_kohm
        self.alarm_kohm = alarm_kohm
        self.clock = clock
        self.self_tests_started = 0
        self.fault_memory_clears = 0
        self._test_until_s: float | None = None
        self.slave = ModbusRtuSlave(self, unit_id=unit_id, name=f"simulated {imd_map.model}")

    # -- device state -----------------------------------------------------

    @property
    def stop_mode(self) -> int:
        return STOP_MODE_RUN if self.monitor.measuring else STOP_MODE_STOP

    @property
    def self_test_running(self) -> bool:
        return self._test_until_s is not None and self.clock() < self._test_until_s

    def resistance_channel(self) -> Channel:
        test = DeviceTest.EXTERNAL if self.self_test_running else DeviceTest.NONE
        monitor = self.monitor
        if monitor.device_fault:
            return Channel.make(
                0.0,
                Unit.OHM,
                Description.DEVICE_ERROR,
                alarm=AlarmType.DEVICE_FAULT,
                test=test,
                validity=Validity.INVALID,
            )
        resistance_ohm = monitor.latest.resistance_ohm if monitor.settled else None
        if resistance_ohm is None:
            return Channel.make(
                0.0, Unit.OHM, Description.NO_MEASURED_VALUE, test=test, validity=Validity.INVALID
            )
        if resistance_ohm < self.alarm_kohm * 1000.0:
            alarm = AlarmType.ALARM
        elif resistance_ohm < self.prewarning_kohm * 1000.0:
            alarm = AlarmType.PREWARNING
        else:
            alarm = AlarmType.NONE
        description = (
            Description.INSULATION_RESISTANCE
            if alarm is AlarmType.NONE
            else Description.INSULATION_FAULT
        )
        return Channel.make(resistance_ohm, Unit.OHM, description, alarm=alarm, test=test)

    def voltage_channel(self) -> Channel:
        test = DeviceTest.EXTERNAL if self.self_test_running else DeviceTest.NONE
        if not self.monitor.measuring:
            return Channel.make(
                0.0, Unit.VOLT, Description.NO_MEASURED_VALUE, test=test, validity=Validity.INVALID
            )
        return Channel.make(
            self.monitor.plant.dc_voltage_v, Unit.VOLT, Description.VOLTAGE, test=test
        )

    def _image(self) -> dict[int, int]:
        m = self.imd_map
        image: dict[int, int] = {}
        for base, channel in (
            (m.resistance_channel, self.resistance_channel()),
            (m.voltage_channel, self.voltage_channel()),
        ):
            for offset, word in enumerate(encode_channel(channel)):
                image[base + offset] = word
        image[m.prewarning_r1_kohm] = self.prewarning_kohm
        image[m.alarm_r2_kohm] = self.alarm_kohm
        image[m.stop_mode] = self.stop_mode
        for offset, word in enumerate(encode_ascii(self.device_name, m.device_name_registers)):
            image[m.device_name + offset] = word
        return image

    # -- hal.modbus_rtu_sim.RegisterDevice --------------------------------

    def read_holding_registers(self, address: int, count: int) -> Sequence[int]:
        image = self._image()
        words: list[int] = []
        for a in range(address, address + count):
            if a not in image:
                raise ModbusExceptionReply(
                    ExceptionCode.ILLEGAL_DATA_ADDRESS, f"register {a} not readable"
                )
            words.append(image[a])
        return words

    def read_input_registers(self, address: int, count: int) -> Sequence[int]:
        raise ModbusExceptionReply(ExceptionCode.ILLEGAL_FUNCTION, "holding registers only")

    def write_registers(self, address: int, values: Sequence[int]) -> None:
        m = self.imd_map
        writes = dict(zip(range(address, address + len(values)), values, strict=True))
        writable = {
            m.prewarning_r1_kohm,
            m.alarm_r2_kohm,
            m.stop_mode,
            m.device_test,
            m.clear_fault_memory,
        }
        for a in writes:
            if a not in writable:
                raise ModbusExceptionReply(ExceptionCode.ILLEGAL_DATA_ADDRESS, f"register {a}")
        r1 = writes.get(m.prewarning_r1_kohm, self.prewarning_kohm)
        r2 = writes.get(m.alarm_r2_kohm, self.alarm_kohm)
        if not 1 <= r2 <= r1:
            raise ModbusExceptionReply(ExceptionCode.ILLEGAL_DATA_VALUE, f"R1 {r1} < R2 {r2}")
        stop = writes.get(m.stop_mode, self.stop_mode)
        if stop not in (STOP_MODE_STOP, STOP_MODE_RUN):
            raise ModbusExceptionReply(ExceptionCode.ILLEGAL_DATA_VALUE, f"stop mode {stop}")
        if writes.get(m.device_test, m.device_test_command) != m.device_test_command:
            raise ModbusExceptionReply(ExceptionCode.ILLEGAL_DATA_VALUE, "device test command")
        clear = writes.get(m.clear_fault_memory, m.clear_fault_memory_command)
        if clear != m.clear_fault_memory_command:
            raise ModbusExceptionReply(ExceptionCode.ILLEGAL_DATA_VALUE, "clear command")
        # All checked: apply.
        self.prewarning_kohm, self.alarm_kohm = r1, r2
        if m.stop_mode in writes:
            if stop == STOP_MODE_RUN:
                self.monitor.begin_measuring()
            else:
                self.monitor.end_measuring()
        if m.device_test in writes:
            self.self_tests_started += 1
            self._test_until_s = self.clock() + self.self_test_duration_s
            _log.info("simulated IMD: device test for %.2f s", self.self_test_duration_s)
        if m.clear_fault_memory in writes:
            self.fault_memory_clears += 1
