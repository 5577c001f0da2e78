"""Simulated IMD: settling after start, None while stopped, device faults."""

from __future__ import annotations

import asyncio

import pytest

from hal.errors import HalOperationError
from hal.isolation import IsolationMonitor
from hal.sim.isolation import SimulatedIsolationMonitor
from hal.sim.plant import Plant


def run(imd: SimulatedIsolationMonitor, seconds: float, dt_s: float = 0.01) -> None:
    for _ in range(round(seconds / dt_s)):
        imd.step(dt_s)


def test_no_value_while_stopped() -> None:
    imd = SimulatedIsolationMonitor(Plant())
    run(imd, 3.0)
    assert imd.sequence > 0
    assert imd.latest.resistance_ohm is None
    assert not imd.latest.device_fault


def test_settles_before_reporting() -> None:
    plant = Plant(isolation_resistance_ohm=2.0e6, dc_voltage_v=500.0)
    imd = SimulatedIsolationMonitor(plant, settling_time_s=1.0, measurement_period_s=0.1)
    imd.begin_measuring()
    run(imd, 0.9)
    assert imd.latest.resistance_ohm is None
    run(imd, 0.2)
    assert imd.latest.resistance_ohm == 2.0e6
    assert imd.latest.voltage_v == 500.0


def test_settling_time_is_settable_and_restarts_after_stop() -> None:
    plant = Plant()
    imd = SimulatedIsolationMonitor(plant, settling_time_s=0.3, measurement_period_s=0.05)
    imd.begin_measuring()
    run(imd, 0.4)
    assert imd.latest.resistance_ohm == plant.isolation_resistance_ohm
    imd.end_measuring()
    run(imd, 0.1)
    assert imd.latest.resistance_ohm is None
    imd.begin_measuring()
    run(imd, 0.2)
    assert imd.latest.resistance_ohm is None
    run(imd, 0.2)
    assert imd.latest.resistance_ohm is not None


def test_follows_plant_resistance() -> None:
    plant = Plant()
    imd = SimulatedIsolationMonitor(plant, settling_time_s=0.0)
    imd.begin_measuring()
    run(imd, 0.2)
    plant.isolation_resistance_ohm = 30_000.0
    run(imd, 0.2)
    assert imd.latest.resistance_ohm == 30_000.0


def test_device_fault_hides_resistance() -> None:
    imd = SimulatedIsolationMonitor(Plant(), settling_time_s=0.0)
    imd.begin_measuring()
    imd.inject_device_fault(True)
    run(imd, 0.5)
    assert imd.latest.device_fault
    assert imd.latest.resistance_ohm is None


async def test_self_test_passes_unless_device_fault() -> None:
    imd = SimulatedIsolationMonitor(Plant())
    monitor: IsolationMonitor = imd
    await monitor.open()
    assert await monitor.self_test()
    imd.inject_device_fault(True)
    assert not await monitor.self_test()
    imd.inject_device_fault(False)
    assert await monitor.self_test()


async def test_read_waits_for_the_next_measurement() -> None:
    plant = Plant(isolation_resistance_ohm=1.0e6)
    imd = SimulatedIsolationMonitor(plant, settling_time_s=0.0, measurement_period_s=0.1)
    await imd.open()
    await imd.start()
    task = asyncio.create_task(imd.read())
    await asyncio.sleep(0)
    imd.step(0.05)
    await asyncio.sleep(0)
    assert not task.done()
    imd.step(0.05)
    reading = await asyncio.wait_for(task, timeout=1.0)
    assert reading.resistance_ohm == 1.0e6


async def test_start_stop_and_close() -> None:
    imd = SimulatedIsolationMonitor(Plant())
    with pytest.raises(HalOperationError):
        await imd.start()
    with pytest.raises(HalOperationError):
        await imd.read()
    await imd.open()
    await imd.start()
    assert imd.measuring
    await imd.stop()
    assert not imd.measuring
    await imd.start()
    await imd.close()
    await imd.close()
    assert not imd.measuring


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SimulatedIsolationMonitor(Plant(), measurement_period_s=0.0)
    with pytest.raises(ValueError):
        SimulatedIsolationMonitor(Plant()).step(-0.1)


async def test_cancelled_read_does_not_break_later_reads() -> None:
    imd = SimulatedIsolationMonitor(Plant(), settling_time_s=0.0, measurement_period_s=0.1)
    await imd.open()
    first = asyncio.create_task(imd.read())
    await asyncio.sleep(0)
    first.cancel()
    second = asyncio.create_task(imd.read())
    await asyncio.sleep(0)
    imd.step(0.1)
    reading = await asyncio.wait_for(second, timeout=1.0)
    assert reading.resistance_ohm is None  # not started: no value
    assert first.cancelled()
