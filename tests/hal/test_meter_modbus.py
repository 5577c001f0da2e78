"""The real Modbus RTU meter driver against the simulated SDM630, over RTU framing on a pty."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import os
import select
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pymodbus", reason="needs pymodbus>=3.9,<4 (docs/modbus-devices.md)")

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadInputRegistersRequest, ReadInputRegistersResponse

from hal.errors import HalError, HalInitError, HalOperationError, HalTimeoutError
from hal.meter import Meter
from hal.meter_modbus import (
    SDM630,
    DataType,
    ExceptionCode,
    MeterMap,
    ModbusMeter,
    Quantity,
    RegisterBlock,
    RegisterField,
    RegisterTable,
    WordOrder,
)
from hal.meter_modbus.registers import decode_raw, encode_raw
from hal.meter_modbus.simulated import SimulatedModbusMeter
from hal.sim.meter import SimulatedMeter
from hal.sim.plant import Plant

FAULT_TIMEOUT_S = 0.2  # the drivers' per-attempt timeout here: what a silent device costs


def f32(value: float) -> float:
    """What survives a trip through an IEEE 754 single-precision register pair."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def energy_register_wh(wh: float) -> float:
    """Energy as the SDM630 carries it (float32 kWh), back in Wh."""
    return f32(wh / 1000.0) * 1000.0


@dataclass
class Rig:
    plant: Plant
    meter: SimulatedMeter
    sim: SimulatedModbusMeter
    driver: ModbusMeter


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def make_rig(
    *, sim_map: MeterMap = SDM630, driver_map: MeterMap = SDM630, **driver_kwargs: Any
) -> AsyncIterator[Rig]:
    plant = Plant(contactor_closed=True, ac_current_a=16.0)
    meter = SimulatedMeter(plant)
    sim = SimulatedModbusMeter(meter, meter_map=sim_map)
    task = asyncio.create_task(sim.run())
    kwargs: dict[str, Any] = {"timeout_s": FAULT_TIMEOUT_S, "retries": 0, **driver_kwargs}
    driver = ModbusMeter(sim.port, meter_map=driver_map, unit_id=sim.unit_id, **kwargs)
    try:
        await driver.open()
        yield Rig(plant, meter, sim, driver)
    finally:
        await driver.close()
        await stop(task)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


# -- readings ---------------------------------------------------------------


async def test_the_driver_is_a_meter(rig: Rig) -> None:
    meter: Meter = rig.driver
    assert await meter.read() is not None


async def test_charging_reading_matches_the_plant(rig: Rig) -> None:
    rig.meter.integrate(3600.0 * 2.5)  # 2.5 h at 3 x 230 V x 16 A
    expected = rig.meter.snapshot()

    reading = await rig.driver.read()

    assert expected.import_energy_wh == pytest.approx(27_600.0)
    assert reading.import_energy_wh == energy_register_wh(expected.import_energy_wh)
    assert reading.export_energy_wh == 0.0
    assert reading.power_w == f32(expected.power_w) == 11_040.0
    assert reading.voltage_v == 230.0
    assert reading.current_a == 16.0


async def test_energy_to_the_last_register_bit(rig: Rig) -> None:
    """Energy is a float32 in kWh: the driver must lose nothing beyond that."""
    rig.meter.integrate(12_345.678)
    rig.plant.ac_current_a = -7.3
    rig.meter.integrate(777.7)
    expected = rig.meter.snapshot()

    reading = await rig.driver.read()

    assert reading.import_energy_wh == energy_register_wh(expected.import_energy_wh)
    assert reading.export_energy_wh == energy_register_wh(expected.export_energy_wh)
    # one register step at this size is about 1e-3 Wh
    assert reading.import_energy_wh == pytest.approx(expected.import_energy_wh, abs=2e-3)


async def test_discharge_is_negative_power_and_current_and_counts_export(rig: Rig) -> None:
    rig.plant.ac_current_a = -10.0  # V2G: the EV feeds back
    rig.meter.integrate(1800.0)

    reading = await rig.driver.read()

    assert reading.power_w == -3 * 230.0 * 10.0
    assert reading.current_a == -10.0
    assert reading.voltage_v == 230.0
    assert reading.import_energy_wh == 0.0
    assert reading.export_energy_wh == energy_register_wh(3450.0)
    # the meter itself shows an unsigned current and signed phase power
    assert rig.driver.last_values[Quantity.CURRENT_L1_A] == 10.0
    assert rig.driver.last_values[Quantity.POWER_L1_W] == -2300.0


async def test_single_phase_ev_and_open_contactor(rig: Rig) -> None:
    rig.plant.ev_phases = 1
    reading = await rig.driver.read()
    assert reading.power_w == 230.0 * 16.0
    values = rig.driver.last_values
    assert values[Quantity.CURRENT_L2_A] == values[Quantity.CURRENT_L3_A] == 0.0
    assert values[Quantity.VOLTAGE_L3_V] == 230.0
    assert values[Quantity.FREQUENCY_HZ] == 50.0

    rig.plant.contactor_closed = False
    reading = await rig.driver.read()
    assert (reading.power_w, reading.voltage_v, reading.current_a) == (0.0, 0.0, 0.0)


async def test_reverse_direction_swaps_registers_and_signs() -> None:
    async with make_rig(reverse_direction=True) as rig:
        rig.meter.integrate(3600.0)  # the meter sees 11.04 kWh of import
        reading = await rig.driver.read()
    assert reading.import_energy_wh == 0.0
    assert reading.export_energy_wh == energy_register_wh(11_040.0)
    assert reading.power_w == -11_040.0
    assert reading.current_a == -16.0


# -- a second register map is just data --------------------------------------

LOW_FIRST_METER = MeterMap(
    model="Test meter (low word first, integer energy)",
    source="made up for the tests",
    table=RegisterTable.HOLDING,
    word_order=WordOrder.LOW_FIRST,
    fields=(
        RegisterField(Quantity.VOLTAGE_L1_V, 0x0100, DataType.UINT16, scale=0.1),
        RegisterField(Quantity.CURRENT_L1_A, 0x0101, DataType.INT32, scale=0.001),
        RegisterField(Quantity.POWER_TOTAL_W, 0x0103, DataType.INT32),
        RegisterField(Quantity.IMPORT_ENERGY_WH, 0x0200, DataType.UINT32, scale=10.0),
        RegisterField(Quantity.EXPORT_ENERGY_WH, 0x0202, DataType.UINT32, scale=10.0),
    ),
    blocks=(RegisterBlock("instant", 0x0100, 5), RegisterBlock("energy", 0x0200, 4)),
)


async def test_another_map_with_other_types_and_word_order() -> None:
    async with make_rig(sim_map=LOW_FIRST_METER, driver_map=LOW_FIRST_METER) as rig:
        rig.plant.ac_current_a = -12.5
        rig.meter.integrate(1800.0)
        reading = await rig.driver.read()
        assert rig.driver.stats.requests == 4  # two blocks at open, two now
    assert reading.voltage_v == 230.0
    assert reading.current_a == -12.5  # no per-phase power in this map: signed by the total
    assert reading.power_w == -8625.0
    assert reading.export_energy_wh == 4310.0  # 4312.5 Wh in the register's 10 Wh steps
    assert reading.import_energy_wh == 0.0


def test_value_codec_round_trips_and_word_order() -> None:
    assert encode_raw(DataType.FLOAT32, 1.0, WordOrder.HIGH_FIRST) == [0x3F80, 0x0000]
    assert encode_raw(DataType.FLOAT32, 1.0, WordOrder.LOW_FIRST) == [0x0000, 0x3F80]
    assert encode_raw(DataType.INT32, -2, WordOrder.HIGH_FIRST) == [0xFFFF, 0xFFFE]
    for data_type, value in (
        (DataType.FLOAT32, -1234.5),
        (DataType.INT32, -70_000),
        (DataType.UINT32, 4_000_000_000),
        (DataType.INT16, -5),
        (DataType.UINT16, 65_535),
    ):
        for order in WordOrder:
            words = encode_raw(data_type, value, order)
            assert len(words) == data_type.registers
            assert decode_raw(data_type, words, order) == value
    with pytest.raises(ValueError, match="does not fit"):
        encode_raw(DataType.UINT16, 70_000, WordOrder.HIGH_FIRST)


def test_map_validation() -> None:
    with pytest.raises(ValueError, match="exactly one block"):
        dataclasses.replace(SDM630, blocks=SDM630.blocks[:2])
    with pytest.raises(ValueError, match="lacks EXPORT_ENERGY_WH"):
        dataclasses.replace(
            SDM630,
            fields=tuple(f for f in SDM630.fields if f.quantity is not Quantity.EXPORT_ENERGY_WH),
        )
    with pytest.raises(ValueError, match="overlaps"):
        dataclasses.replace(
            SDM630, fields=(*SDM630.fields[:-1], RegisterField(Quantity.EXPORT_ENERGY_WH, 0x0049))
        )
    with pytest.raises(ValueError, match="reads 90 registers"):
        dataclasses.replace(SDM630, blocks=(RegisterBlock("all", 0, 90),))


# -- faults and recovery ---------------------------------------------------------


async def test_silent_meter_times_out_and_recovers(rig: Rig) -> None:
    rig.sim.slave.silent = True
    with pytest.raises(
        HalTimeoutError, match=r"phase voltage, current, power \(input registers 0x0000-0x0011\)"
    ):
        await rig.driver.read()
    with pytest.raises(HalTimeoutError, match=r"no response within 0\.2 s"):
        await rig.driver.read()
    assert rig.driver.consecutive_failures == 2
    assert rig.driver.stats.timeouts == 2

    rig.sim.slave.silent = False
    await rig.driver.read()
    assert rig.driver.consecutive_failures == 0


async def test_crc_errors_are_operation_errors_and_counted(rig: Rig) -> None:
    rig.sim.slave.corrupt_crc(3)
    for n in range(1, 4):
        with pytest.raises(HalOperationError, match="failed the CRC check") as info:
            await rig.driver.read()
        assert not isinstance(info.value, HalTimeoutError)
        assert rig.driver.consecutive_failures == n
    assert rig.driver.stats.crc_errors == 3
    assert rig.sim.slave.stats.crc_corrupted == 3

    reading = await rig.driver.read()
    assert reading.power_w == 11_040.0
    assert rig.driver.consecutive_failures == 0


async def test_a_retry_hides_one_bad_crc() -> None:
    async with make_rig(retries=1) as rig:
        rig.sim.slave.corrupt_crc(1)
        reading = await rig.driver.read()
        assert reading.voltage_v == 230.0
        assert rig.sim.slave.stats.crc_corrupted == 1
        assert rig.driver.consecutive_failures == 0
        assert rig.driver.stats.crc_errors == 0


async def test_exception_response_names_the_block_and_code(rig: Rig) -> None:
    rig.sim.slave.answer_exception(ExceptionCode.SERVER_DEVICE_BUSY)
    with pytest.raises(
        HalOperationError,
        match=r"phase voltage, current, power \(input registers 0x0000-0x0011\): "
        r"device answered exception 0x06 SERVER_DEVICE_BUSY",
    ):
        await rig.driver.read()
    assert rig.driver.consecutive_failures == 1
    await rig.driver.read()
    assert rig.driver.consecutive_failures == 0


async def test_unmapped_register_is_illegal_address_naming_the_register(rig: Rig) -> None:
    """A meter without a frequency register refuses the block that asks for it."""
    rig.sim.meter_map = dataclasses.replace(
        SDM630,
        fields=tuple(f for f in SDM630.fields if f.quantity is not Quantity.FREQUENCY_HZ),
        blocks=(*SDM630.blocks[:2], RegisterBlock("energy", 0x0048, 4)),
    )
    with pytest.raises(
        HalOperationError,
        match=r"frequency and energy \(input registers 0x0046-0x004B\): "
        r"device answered exception 0x02 ILLEGAL_DATA_ADDRESS",
    ):
        await rig.driver.read()
    assert rig.driver.consecutive_failures == 1


async def test_cancelled_read_stays_cancelled_and_the_link_recovers(rig: Rig) -> None:
    rig.sim.slave.silent = True
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(rig.driver.read(), timeout=FAULT_TIMEOUT_S / 4)
    rig.sim.slave.silent = False
    assert (await rig.driver.read()).voltage_v == 230.0


# -- open / close ------------------------------------------------------------------


async def test_open_fails_when_the_meter_does_not_answer() -> None:
    meter = SimulatedMeter(Plant())
    sim = SimulatedModbusMeter(meter)
    task = asyncio.create_task(sim.run())
    try:
        driver = ModbusMeter(sim.port, unit_id=2, timeout_s=FAULT_TIMEOUT_S, retries=0)
        with pytest.raises(HalInitError, match="did not answer its first read"):
            await driver.open()
        assert sim.slave.stats.other_units == 1
        await driver.close()  # nothing open: still fine
    finally:
        await stop(task)


async def test_open_fails_on_a_missing_port() -> None:
    with pytest.raises(HalInitError, match="cannot open serial port"):
        await ModbusMeter("/dev/does-not-exist-modbus", timeout_s=FAULT_TIMEOUT_S).open()


async def test_close_is_idempotent_and_reads_after_close_fail(rig: Rig) -> None:
    await rig.driver.close()
    await rig.driver.close()
    with pytest.raises(HalOperationError, match="not open"):
        await rig.driver.read()
    rig.sim.close()
    rig.sim.close()


async def test_vanished_port_fails_reads(rig: Rig) -> None:
    rig.sim.close()  # the pty is gone, as if the USB adapter was pulled
    for _ in range(2):
        # A timeout or a port error; every request tries to reopen the port (and
        # may find another test's pty under the same name: that one is silent).
        with pytest.raises(HalError):
            await rig.driver.read()
    assert rig.driver.consecutive_failures == 2


# -- the simulated slave's framing, byte by byte ----------------------------------


def read_reply(fd: int, framer: FramerRTU) -> bytes:
    """Collect one whole RTU frame from the pty (it hands bytes over asynchronously)."""
    data = b""
    deadline_s = time.monotonic() + 2.0
    while time.monotonic() < deadline_s:
        select.select([fd], [], [], 0.1)
        with contextlib.suppress(BlockingIOError):
            data += os.read(fd, 256)
        if data and framer.decode(data)[0]:
            return data
    raise AssertionError(f"no whole reply, got {data.hex()}")


async def test_slave_drops_noise_at_a_gap_and_reassembles_a_request_byte_by_byte() -> None:
    sim = SimulatedModbusMeter(SimulatedMeter(Plant(contactor_closed=True, ac_current_a=16.0)))
    client_side = os.open(sim.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        framer = FramerRTU(DecodePDU(False))
        request = framer.buildFrame(ReadInputRegistersRequest(address=0x0034, count=2, dev_id=1))
        sim.slave.receive_data(b"\x07\x99\x01", 10.0)  # line noise, then silence
        for byte in request:  # a UART handing the request over one byte at a time
            assert sim.slave.stats.responses == 0
            sim.slave.receive_data(bytes([byte]), 10.5)
        assert sim.slave.stats.responses == 1
        assert sim.slave.stats.bytes_discarded == 3
        answer = read_reply(client_side, framer)
        used, unit, _tid, pdu_bytes = framer.decode(answer)
        assert (used, unit) == (len(answer), 1)
        pdu = framer.decoder.decode(pdu_bytes)
        assert isinstance(pdu, ReadInputRegistersResponse)
        assert decode_raw(DataType.FLOAT32, pdu.registers, WordOrder.HIGH_FIRST) == 11_040.0
    finally:
        os.close(client_side)
        sim.close()


# -- pymodbus stays behind the Modbus packages ---------------------------------------

REPO = Path(__file__).parents[2]
MAY_IMPORT_PYMODBUS = ("hal/meter_modbus/", "hal/imd_modbus/", "hal/modbus_rtu_sim")


def test_only_the_modbus_modules_import_pymodbus() -> None:
    for path in sorted([*(REPO / "hal").rglob("*.py"), *(REPO / "chargepoint").rglob("*.py")]):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(MAY_IMPORT_PYMODBUS):
            continue
        text = path.read_text()
        if "pymodbus" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "pymodbus" for n in names), (
                f"{relative} imports pymodbus"
            )


def test_the_service_does_not_load_pymodbus_by_itself() -> None:
    """Only a configured Modbus device may pull pymodbus in: the composition root imports lazily."""
    probe = (
        "import sys, hal, hal.meter, hal.isolation, hal.sim.world;"
        "import chargepoint.app, chargepoint.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pymodbus'"
        " or m.startswith(('hal.meter_modbus', 'hal.imd_modbus', 'hal.modbus_rtu_sim'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
