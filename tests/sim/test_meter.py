"""Simulated meter: registers are the integral of power, split by sign."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.errors import HalOperationError
from hal.meter import Meter
from hal.sim.meter import SimulatedMeter
from hal.sim.plant import Plant

profile = st.lists(
    st.tuples(
        st.floats(min_value=-32.0, max_value=32.0, allow_nan=False),
        st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
    ),
    max_size=60,
)


@given(steps=profile)
def test_ac_registers_equal_the_integral_of_power(steps: list[tuple[float, float]]) -> None:
    plant = Plant(contactor_closed=True)
    meter = SimulatedMeter(plant, "ac")
    imports: list[float] = []
    exports: list[float] = []
    for current_a, dt_s in steps:
        plant.ac_current_a = current_a
        power_w = 230.0 * current_a * 3
        (imports if power_w > 0 else exports).append(abs(power_w) * dt_s / 3600.0)
        meter.integrate(dt_s)
    assert meter.import_energy_wh == pytest.approx(math.fsum(imports), rel=1e-9, abs=1e-9)
    assert meter.export_energy_wh == pytest.approx(math.fsum(exports), rel=1e-9, abs=1e-9)


@given(steps=profile)
def test_dc_registers_equal_the_integral_of_power(steps: list[tuple[float, float]]) -> None:
    plant = Plant(dc_voltage_v=400.0)
    meter = SimulatedMeter(plant, "dc")
    imports: list[float] = []
    exports: list[float] = []
    for current_a, dt_s in steps:
        plant.dc_current_a = current_a * 4
        power_w = 400.0 * current_a * 4
        (imports if power_w > 0 else exports).append(abs(power_w) * dt_s / 3600.0)
        meter.integrate(dt_s)
    assert meter.import_energy_wh == pytest.approx(math.fsum(imports), rel=1e-9, abs=1e-9)
    assert meter.export_energy_wh == pytest.approx(math.fsum(exports), rel=1e-9, abs=1e-9)


def test_one_hour_at_11_kw_is_11_kwh() -> None:
    plant = Plant(contactor_closed=True, ac_current_a=16.0)
    meter = SimulatedMeter(plant)
    for _ in range(3600):
        meter.integrate(1.0)
    assert meter.import_energy_wh == pytest.approx(230.0 * 16.0 * 3)
    assert meter.export_energy_wh == 0.0


def test_no_energy_while_contactor_open() -> None:
    plant = Plant(contactor_closed=False, ac_current_a=16.0)
    meter = SimulatedMeter(plant)
    meter.integrate(100.0)
    assert meter.import_energy_wh == 0.0


async def test_read_reports_registers_and_signed_values() -> None:
    plant = Plant(dc_voltage_v=400.0, dc_current_a=-50.0)
    meter = SimulatedMeter(plant, "dc")
    m: Meter = meter
    await m.open()
    meter.integrate(36.0)
    reading = await m.read()
    assert reading.export_energy_wh == pytest.approx(200.0)
    assert reading.import_energy_wh == 0.0
    assert reading.power_w == pytest.approx(-20_000.0)
    assert reading.current_a == -50.0
    assert reading.voltage_v == 400.0


async def test_voltage_noise_leaves_registers_exact() -> None:
    plant = Plant(contactor_closed=True, ac_current_a=10.0)
    meter = SimulatedMeter(plant, voltage_noise_v=0.5, seed=1)
    await meter.open()
    meter.integrate(3600.0)
    readings = [await meter.read() for _ in range(20)]
    voltages = {r.voltage_v for r in readings}
    assert len(voltages) > 1
    assert all(abs(v - 230.0) < 5.0 for v in voltages)
    assert {r.import_energy_wh for r in readings} == {230.0 * 10.0 * 3}


async def test_open_close_idempotent_and_read_needs_open() -> None:
    meter = SimulatedMeter(Plant())
    with pytest.raises(HalOperationError):
        await meter.read()
    await meter.open()
    await meter.open()
    await meter.read()
    await meter.close()
    await meter.close()
    with pytest.raises(HalOperationError):
        await meter.read()


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SimulatedMeter(Plant(), "xx")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SimulatedMeter(Plant()).integrate(-1.0)


def test_single_phase_ev_on_three_phase_supply_is_metered_on_one_phase() -> None:
    from hal.sim.ev import SimulatedEv  # noqa: PLC0415
    from hal.sim.plant import Plant  # noqa: PLC0415

    plant = Plant(phases=3)
    ev = SimulatedEv(plant, phases=1)
    ev.plug()
    ev.step(0.0)
    plant.contactor_closed = True
    plant.ac_current_a = 10.0
    assert plant.ac_power_w == pytest.approx(230.0 * 10.0 * 1)
