"""The real Modbus RTU IMD driver against the simulated Bender ISOMETER, over RTU framing on a pty.

Time in the insulation physics is stepped by hand (``monitor.step``), so settling
and measurement periods cost no waiting; the driver's own poll period is 10 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("pymodbus", reason="needs pymodbus>=3.9,<4 (docs/modbus-devices.md)")


from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.imd_modbus import ISOCHA425HV, AlarmType, ModbusIsolationMonitor
from hal.imd_modbus.registers import (
    Channel,
    Description,
    DeviceTest,
    Unit,
    Validity,
    decode_ascii,
    decode_channel,
    encode_ascii,
    encode_channel,
)
from hal.imd_modbus.simulated import SimulatedModbusIsolationMonitor
from hal.isolation import IsolationMonitor
from hal.meter_modbus import ExceptionCode
from hal.sim.isolation import SimulatedIsolationMonitor
from hal.sim.plant import Plant

FAULT_TIMEOUT_S = 0.2  # the drivers' per-attempt timeout here: what a silent device costs
POLL_S = 0.01
SETTLING_S = 1.0
PERIOD_S = 0.1


class TickClock:
    """The simulated IMD's clock: each look advances it by 10 ms, so a device test
    lasts a fixed number of polls however busy the machine is."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        self.now_s += 0.01
        return self.now_s


def f32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@dataclass
class Rig:
    plant: Plant
    monitor: SimulatedIsolationMonitor
    sim: SimulatedModbusIsolationMonitor
    driver: ModbusIsolationMonitor

    def settle(self) -> None:
        """Let the simulated IMD settle and publish a measurement."""
        self.monitor.step(SETTLING_S)
        self.monitor.step(PERIOD_S)

    def publish(self) -> None:
        self.monitor.step(PERIOD_S)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def make_rig(
    *, sim_kwargs: dict[str, Any] | None = None, **driver_kwargs: Any
) -> AsyncIterator[Rig]:
    plant = Plant(dc_voltage_v=400.0, isolation_resistance_ohm=1.234e6)
    monitor = SimulatedIsolationMonitor(
        plant, settling_time_s=SETTLING_S, measurement_period_s=PERIOD_S
    )
    sim = SimulatedModbusIsolationMonitor(
        monitor, **{"self_test_duration_s": 0.05, "clock": TickClock(), **(sim_kwargs or {})}
    )
    task = asyncio.create_task(sim.run())
    kwargs: dict[str, Any] = {
        "parity": "N",  # a pty refuses parity settings; the device's default is 8E1
        "timeout_s": FAULT_TIMEOUT_S,
        "retries": 0,
        "poll_period_s": POLL_S,
        "self_test_timeout_s": 2.0,
        **driver_kwargs,
    }
    driver = ModbusIsolationMonitor(sim.port, unit_id=sim.unit_id, **kwargs)
    try:
        await driver.open()
        yield Rig(plant, monitor, sim, driver)
    finally:
        await driver.close()
        await stop(task)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


# -- set-up ------------------------------------------------------------------------


async def test_open_identifies_configures_and_stops_the_device(rig: Rig) -> None:
    monitor: IsolationMonitor = rig.driver
    assert monitor is rig.driver
    assert rig.driver.device_name == "isoCHA425HV"
    assert (rig.sim.prewarning_kohm, rig.sim.alarm_kohm) == (500, 100)
    assert not rig.monitor.measuring
    reading = await rig.driver.read()
    assert reading.resistance_ohm is None
    assert reading.voltage_v == 0.0
    assert not reading.device_fault


async def test_response_values_are_written_in_an_order_the_device_accepts() -> None:
    """The device refuses R2 > R1 at every step: lowering both must write R2 first."""
    async with make_rig(
        sim_kwargs={"prewarning_kohm": 600, "alarm_kohm": 400}, prewarning_kohm=300, alarm_kohm=50
    ) as rig:
        assert (rig.sim.prewarning_kohm, rig.sim.alarm_kohm) == (300, 50)
    async with make_rig(
        sim_kwargs={"prewarning_kohm": 20, "alarm_kohm": 10}, prewarning_kohm=900, alarm_kohm=800
    ) as rig:
        assert (rig.sim.prewarning_kohm, rig.sim.alarm_kohm) == (900, 800)


def test_response_values_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="alarm_kohm"):
        ModbusIsolationMonitor("/dev/null", prewarning_kohm=100, alarm_kohm=200)


# -- measuring ----------------------------------------------------------------------


async def test_start_settle_measure_stop(rig: Rig) -> None:
    await rig.driver.start()
    assert rig.monitor.measuring and rig.sim.stop_mode == 1

    settling = await rig.driver.read()
    assert settling.resistance_ohm is None  # the IMD has no trustworthy value yet
    assert settling.voltage_v == 400.0

    rig.settle()
    reading = await rig.driver.read()
    assert reading.resistance_ohm == f32(1.234e6)
    assert not reading.device_fault
    assert rig.driver.last_alarm == AlarmType.NONE

    await rig.driver.stop()
    assert not rig.monitor.measuring and rig.sim.stop_mode == 0
    stopped = await rig.driver.read()
    assert stopped.resistance_ohm is None
    assert stopped.voltage_v == 0.0


async def test_low_insulation_is_reported_with_the_device_alarm(rig: Rig) -> None:
    await rig.driver.start()
    rig.settle()
    rig.plant.isolation_resistance_ohm = 300e3  # below R1 = 500 kohm
    rig.publish()
    reading = await rig.driver.read()
    assert reading.resistance_ohm == 300e3
    assert rig.driver.last_alarm == AlarmType.PREWARNING

    rig.plant.isolation_resistance_ohm = 20e3  # below R2 = 100 kohm: a fault for the controller
    rig.publish()
    reading = await rig.driver.read()
    assert reading.resistance_ohm == 20e3
    assert not reading.device_fault  # a bad insulation is not a bad IMD
    assert rig.driver.last_alarm == AlarmType.ALARM


async def test_reads_are_paced_by_the_poll_period() -> None:
    async with make_rig(poll_period_s=0.05) as rig:
        loop = asyncio.get_running_loop()
        await rig.driver.read()
        start_s = loop.time()
        await rig.driver.read()
        await rig.driver.read()
        assert loop.time() - start_s >= 0.09


async def test_device_fault_hides_the_resistance(rig: Rig) -> None:
    await rig.driver.start()
    rig.settle()
    rig.monitor.inject_device_fault(True)
    reading = await rig.driver.read()
    assert reading.device_fault
    assert reading.resistance_ohm is None

    rig.monitor.inject_device_fault(False)
    rig.publish()
    reading = await rig.driver.read()
    assert not reading.device_fault
    assert reading.resistance_ohm == f32(1.234e6)


# -- self-test ----------------------------------------------------------------------


async def test_self_test_passes(rig: Rig) -> None:
    await rig.driver.start()
    rig.settle()
    assert await rig.driver.self_test()
    assert rig.sim.self_tests_started == 1
    reading = await rig.driver.read()
    assert not reading.device_fault
    assert reading.resistance_ohm == f32(1.234e6)  # measuring resumes after the test


async def test_failed_self_test_is_a_device_fault_until_a_test_passes(rig: Rig) -> None:
    await rig.driver.start()
    rig.settle()
    rig.monitor.inject_device_fault(True)
    assert not await rig.driver.self_test()

    rig.monitor.inject_device_fault(False)
    rig.publish()
    reading = await rig.driver.read()
    assert reading.device_fault  # the failed test stays reported
    assert reading.resistance_ohm is None

    assert await rig.driver.self_test()
    reading = await rig.driver.read()
    assert not reading.device_fault
    assert reading.resistance_ohm == f32(1.234e6)


async def test_self_test_that_never_ends_times_out() -> None:
    async with make_rig(sim_kwargs={"self_test_duration_s": 60.0}, self_test_timeout_s=0.05) as rig:
        with pytest.raises(HalTimeoutError, match=r"self-test still running after 0\.05 s"):
            await rig.driver.self_test()
        assert rig.driver.consecutive_failures == 1


# -- link faults ----------------------------------------------------------------


async def test_silent_imd_times_out_and_recovers(rig: Rig) -> None:
    rig.sim.slave.silent = True
    with pytest.raises(
        HalTimeoutError, match=r"resistance channel \(holding registers 1000-1003\): no response"
    ):
        await rig.driver.read()
    assert rig.driver.consecutive_failures == 1
    rig.sim.slave.silent = False
    await rig.driver.read()
    assert rig.driver.consecutive_failures == 0


async def test_crc_errors_are_operation_errors_and_counted(rig: Rig) -> None:
    rig.sim.slave.corrupt_crc(2)
    for _ in range(2):
        with pytest.raises(HalOperationError, match="failed the CRC check"):
            await rig.driver.read()
    assert rig.driver.consecutive_failures == 2
    assert rig.driver.stats.crc_errors == 2
    await rig.driver.read()
    assert rig.driver.consecutive_failures == 0


async def test_refused_start_is_reported_and_not_believed(rig: Rig) -> None:
    rig.sim.slave.answer_exception(ExceptionCode.SERVER_DEVICE_BUSY)
    with pytest.raises(
        HalOperationError,
        match=r"stop mode \(holding register 3026 := 1\): "
        r"device answered exception 0x06 SERVER_DEVICE_BUSY",
    ):
        await rig.driver.start()
    assert not rig.driver.measuring
    assert not rig.monitor.measuring
    assert rig.driver.consecutive_failures == 1
    await rig.driver.start()
    assert rig.driver.measuring


async def test_unmapped_register_is_illegal_address_naming_the_register() -> None:
    wrong_map = dataclasses.replace(ISOCHA425HV, voltage_channel=1004)  # a reserved channel
    async with make_rig(imd_map=wrong_map) as rig:
        with pytest.raises(
            HalOperationError,
            match=r"voltage channel \(holding registers 1004-1007\): "
            r"device answered exception 0x02 ILLEGAL_DATA_ADDRESS",
        ):
            await rig.driver.read()


async def test_open_fails_when_the_device_is_silent() -> None:
    monitor = SimulatedIsolationMonitor(Plant())
    sim = SimulatedModbusIsolationMonitor(monitor)
    sim.slave.silent = True
    task = asyncio.create_task(sim.run())
    try:
        driver = ModbusIsolationMonitor(sim.port, parity="N", timeout_s=FAULT_TIMEOUT_S, retries=0)
        with pytest.raises(HalInitError, match=r"setup failed: .*device name .*no response"):
            await driver.open()
        with pytest.raises(HalOperationError, match="not open"):
            await driver.read()
    finally:
        await stop(task)


async def test_close_is_idempotent(rig: Rig) -> None:
    await rig.driver.start()
    await rig.driver.close()
    await rig.driver.close()
    assert not rig.driver.measuring
    with pytest.raises(HalOperationError, match="not open"):
        await rig.driver.read()
    with pytest.raises(HalOperationError, match="not open"):
        await rig.driver.stop()
    rig.sim.close()
    rig.sim.close()


# -- codec ------------------------------------------------------------------------


def test_channel_codec() -> None:
    channel = Channel.make(
        1.5e6,
        Unit.OHM,
        Description.INSULATION_FAULT,
        alarm=AlarmType.ALARM,
        test=DeviceTest.EXTERNAL,
        validity=Validity.TRUE_VALUE_HIGHER,
    )
    words = encode_channel(channel)
    assert words[2] == 0x8582  # AT&T: external test + alarm; R&U: "higher" + ohm
    assert words[3] == 1
    decoded = decode_channel(words)
    assert decoded == channel
    assert decoded.alarm == AlarmType.ALARM and decoded.test is DeviceTest.EXTERNAL
    assert decoded.measured(Unit.OHM) is None  # a test is running
    assert decode_channel(encode_channel(Channel.make(2.0, Unit.OHM, 71))).measured(Unit.OHM) == 2.0
    assert decode_ascii(encode_ascii("isoCHA425HV", 10)) == "isoCHA425HV"
