"""Real :class:`hal.isolation.IsolationMonitor` driver for a Bender ISOMETER on Modbus RTU.

Theory of operation (register map: :mod:`hal.imd_modbus.registers`):

* ``open()`` reads the device name (identification), writes the prewarning (R1)
  and alarm (R2) response values in an order the device accepts (it keeps
  R2 <= R1 at every step), reads them back, and puts the device in stop mode,
  so it measures only between ``start()`` and ``stop()``. The response values
  also drive the device's own alarm relays, which is why they are configured.
* ``start()`` / ``stop()`` write the stop-mode register (1 run, 0 stop).
* ``read()`` polls the resistance and voltage channels once per
  ``poll_period_s`` (the device updates them about once a second), so a reader
  in a loop is paced like the device. The resistance is ``None`` while stopped,
  while the device reports no valid value (settling after start, out of range
  "invalid"), during a device test, and on a device fault.
* ``self_test()`` writes the test command, then polls until the channel's test
  bit has come and gone; it passed if no device fault is reported then. A test
  that does not finish within ``self_test_timeout_s`` raises HalTimeoutError.
* ``device_fault`` in a reading is the device's own fault report (alarm type
  "device fault" or a device-error channel code) or a failed self-test, which
  stays reported until a self-test passes.

A value the device flags "true value lower" is reported as shown (it is at the
bottom of the measuring range, far below any response value); "true value
higher" likewise (a lower bound at the top of the range). The voltage is 0.0
when the device has no valid voltage value.

Every operation counts towards :attr:`consecutive_failures` (reset by a good
one), so the service can latch a fault when the IMD stays unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from hal.errors import HalError, HalInitError, HalOperationError, HalTimeoutError
from hal.imd_modbus.registers import (
    CHANNEL_REGISTERS,
    ISOCHA425HV,
    STOP_MODE_RUN,
    STOP_MODE_STOP,
    AlarmType,
    Channel,
    DeviceTest,
    ImdMap,
    Unit,
    decode_ascii,
    decode_channel,
)
from hal.isolation import IsolationReading
from hal.meter_modbus.rtu import (
    LinkStats,
    ModbusRtuLink,
    Parity,
    RegisterTable,
    RtuSettings,
    StopBits,
)

_log = logging.getLogger(__name__)

_T = TypeVar("_T")


class ModbusIsolationMonitor:
    """Implements :class:`hal.isolation.IsolationMonitor` for a Bender ISOMETER."""

    def __init__(
        self,
        port: str,
        *,
        imd_map: ImdMap = ISOCHA425HV,
        unit_id: int = 3,
        baudrate: int = 19200,
        parity: Parity = "E",
        stopbits: StopBits = 1,
        timeout_s: float = 1.0,
        retries: int = 1,
        prewarning_kohm: int = 500,
        alarm_kohm: int = 100,
        poll_period_s: float = 1.0,
        self_test_timeout_s: float = 30.0,
    ) -> None:
        if not 1 <= alarm_kohm <= prewarning_kohm <= imd_map.max_response_kohm:
            raise ValueError(
                f"need 1 <= alarm_kohm ({alarm_kohm}) <= prewarning_kohm ({prewarning_kohm}) "
                f"<= {imd_map.max_response_kohm}"
            )
        if not poll_period_s > 0.0:
            raise ValueError(f"poll_period_s must be > 0, got {poll_period_s}")
        if not self_test_timeout_s > 0.0:
            raise ValueError(f"self_test_timeout_s must be > 0, got {self_test_timeout_s}")
        settings = RtuSettings(
            port=port,
            unit_id=unit_id,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            timeout_s=timeout_s,
            retries=retries,
        )
        self.imd_map = imd_map
        self.prewarning_kohm = prewarning_kohm
        self.alarm_kohm = alarm_kohm
        self.poll_period_s = poll_period_s
        self.self_test_timeout_s = self_test_timeout_s
        self._link = ModbusRtuLink(settings, device=f"{imd_map.model} IMD (unit {unit_id})")
        self.device_name: str | None = None
        self.last_channel: Channel | None = None  # resistance channel of the last read
        self._measuring = False
        self._self_test_failed = False
        self._consecutive_failures = 0
        self._next_poll_s = 0.0

    @property
    def consecutive_failures(self) -> int:
        """Failed operations since the last good one (0 after a good one)."""
        return self._consecutive_failures

    @property
    def stats(self) -> LinkStats:
        return self._link.stats

    @property
    def measuring(self) -> bool:
        """Whether the device was last told to measure."""
        return self._measuring

    @property
    def last_alarm(self) -> int:
        """Alarm type of the resistance channel at the last read (see AlarmType)."""
        return AlarmType.NONE if self.last_channel is None else self.last_channel.alarm

    # -- hal.isolation.IsolationMonitor -----------------------------------

    async def open(self) -> None:
        await self._link.open()
        try:
            await self._identify()
            await self._configure_response_values()
            await self._write(self.imd_map.stop_mode, STOP_MODE_STOP, "stop mode")
        except HalError as exc:
            await self._link.close()
            raise HalInitError(f"{self._link.device}: setup failed: {exc}") from exc
        self._measuring = False
        self._self_test_failed = False
        self._next_poll_s = 0.0

    async def close(self) -> None:
        """Idempotent. Leaves the device as it is (the link may already be gone)."""
        self._measuring = False
        await self._link.close()

    async def start(self) -> None:
        """Start measuring (cable check)."""
        await self._counted(self._write(self.imd_map.stop_mode, STOP_MODE_RUN, "stop mode"))
        self._measuring = True
        _log.info("%s: measuring", self._link.device)

    async def stop(self) -> None:
        self._measuring = False  # whatever the wire says, report no resistance from now on
        await self._counted(self._write(self.imd_map.stop_mode, STOP_MODE_STOP, "stop mode"))
        _log.info("%s: stopped", self._link.device)

    async def self_test(self) -> bool:
        """Run the device self-test; True when it passed."""
        passed = await self._counted(self._run_self_test())
        self._self_test_failed = not passed
        if passed:
            _log.info("%s: self-test passed", self._link.device)
        else:
            _log.warning("%s: self-test failed", self._link.device)
        return passed

    async def read(self) -> IsolationReading:
        """Wait for the next poll period, then read the resistance and voltage channels."""
        self._require_open()
        loop = asyncio.get_running_loop()
        delay_s = self._next_poll_s - loop.time()
        if delay_s > 0.0:
            await asyncio.sleep(delay_s)
        self._next_poll_s = max(loop.time(), self._next_poll_s) + self.poll_period_s
        return await self._counted(self._read_once())

    # -- internals --------------------------------------------------------

    async def _read_once(self) -> IsolationReading:
        m = self.imd_map
        resistance = await self._read_channel(m.resistance_channel, "resistance")
        voltage = await self._read_channel(m.voltage_channel, "voltage")
        self.last_channel = resistance
        device_fault = resistance.device_fault or voltage.device_fault or self._self_test_failed
        resistance_ohm = resistance.measured(Unit.OHM) if self._measuring else None
        voltage_v = voltage.measured(Unit.VOLT)
        return IsolationReading(
            resistance_ohm=None if device_fault else resistance_ohm,
            voltage_v=0.0 if voltage_v is None else voltage_v,
            device_fault=device_fault,
        )

    async def _run_self_test(self) -> bool:
        m = self.imd_map
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self.self_test_timeout_s
        await self._write(m.device_test, m.device_test_command, "start device test")
        seen_running = False
        while True:
            channel = await self._read_channel(m.resistance_channel, "resistance")
            if channel.test is not DeviceTest.NONE:
                seen_running = True
            elif seen_running:
                return not channel.device_fault
            if loop.time() >= deadline_s:
                state = "still running" if seen_running else "never reported as running"
                raise HalTimeoutError(
                    f"{self._link.device}: self-test {state} after {self.self_test_timeout_s:g} s"
                )
            await asyncio.sleep(self.poll_period_s)

    async def _identify(self) -> None:
        m = self.imd_map
        words = await self._link.read_registers(
            RegisterTable.HOLDING,
            m.device_name,
            m.device_name_registers,
            what=f"device name (holding registers {m.device_name}-"
            f"{m.device_name + m.device_name_registers - 1})",
        )
        self.device_name = decode_ascii(words)
        _log.info("%s: device %r", self._link.device, self.device_name)

    async def _configure_response_values(self) -> None:
        m = self.imd_map
        r2_now = await self._read_register(m.alarm_r2_kohm, "alarm value R2")
        # The device refuses R2 > R1 at any moment: raise R1 before R2, lower R2 before R1.
        if self.prewarning_kohm >= r2_now:
            order = (
                (m.prewarning_r1_kohm, self.prewarning_kohm, "prewarning value R1"),
                (m.alarm_r2_kohm, self.alarm_kohm, "alarm value R2"),
            )
        else:
            order = (
                (m.alarm_r2_kohm, self.alarm_kohm, "alarm value R2"),
                (m.prewarning_r1_kohm, self.prewarning_kohm, "prewarning value R1"),
            )
        for register, value, name in order:
            await self._write(register, value, name)
        for register, value, name in order:
            got = await self._read_register(register, name)
            if got != value:
                raise HalOperationError(
                    f"{self._link.device}: {name} reads {got} kohm, wrote {value}"
                )
        _log.info(
            "%s: response values R1 %d kohm, R2 %d kohm",
            self._link.device,
            self.prewarning_kohm,
            self.alarm_kohm,
        )

    async def _read_channel(self, address: int, name: str) -> Channel:
        words = await self._link.read_registers(
            RegisterTable.HOLDING,
            address,
            CHANNEL_REGISTERS,
            what=f"{name} channel (holding registers {address}-{address + CHANNEL_REGISTERS - 1})",
        )
        return decode_channel(words)

    async def _read_register(self, address: int, name: str) -> int:
        (word,) = await self._link.read_registers(
            RegisterTable.HOLDING, address, 1, what=f"{name} (holding register {address})"
        )
        return word

    async def _write(self, address: int, value: int, name: str) -> None:
        await self._link.write_registers(
            address, [value], what=f"{name} (holding register {address} := {value})"
        )

    async def _counted(self, operation: Awaitable[_T]) -> _T:
        try:
            result = await operation
        except HalError:
            self._consecutive_failures += 1
            raise
        self._consecutive_failures = 0
        return result

    def _require_open(self) -> None:
        if not self._link.is_open:
            raise HalOperationError(f"{self._link.device}: not open")
