"""Battery model: voltage curve, BMS limits and energy bookkeeping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.sim.battery import Battery, cell_ocv_v

socs = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@given(a=socs, b=socs)
def test_ocv_is_monotonic_in_soc(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    battery = Battery()
    assert battery.open_circuit_voltage_v(lo) <= battery.open_circuit_voltage_v(hi)
    if hi - lo > 1e-6:  # strictly increasing, beyond float resolution
        assert cell_ocv_v(lo) < cell_ocv_v(hi)


@given(soc=socs)
def test_ocv_is_bounded_and_believable_for_400_v(soc: float) -> None:
    battery = Battery(soc_pct=soc)
    ocv = battery.open_circuit_voltage_v()
    assert battery.min_voltage_v <= ocv <= battery.max_voltage_v
    assert 300.0 <= ocv <= 460.0


def test_nominal_voltage_near_400_v() -> None:
    assert 390.0 <= Battery(soc_pct=50.0).open_circuit_voltage_v() <= 410.0


def test_curve_is_steeper_near_empty_and_full_than_in_the_middle() -> None:
    b = Battery()

    def slope(lo: float, hi: float) -> float:
        return (b.open_circuit_voltage_v(hi) - b.open_circuit_voltage_v(lo)) / (hi - lo)

    middle = slope(40.0, 60.0)
    assert slope(0.0, 5.0) > 3 * middle
    assert slope(95.0, 100.0) > 1.5 * middle


def test_terminal_voltage_rises_when_charging_and_sags_when_discharging() -> None:
    b = Battery(soc_pct=50.0, internal_resistance_ohm=0.1)
    ocv = b.open_circuit_voltage_v()
    assert b.terminal_voltage_v(100.0) == pytest.approx(ocv + 10.0)
    assert b.terminal_voltage_v(-100.0) == pytest.approx(ocv - 10.0)
    assert b.terminal_voltage_v(0.0) == ocv


@given(power_w=st.floats(min_value=-50_000.0, max_value=150_000.0), soc=socs)
def test_current_for_power_round_trips(power_w: float, soc: float) -> None:
    b = Battery(soc_pct=soc)
    current_a = b.current_for_power_a(power_w)
    assert b.terminal_voltage_v(current_a) * current_a == pytest.approx(power_w, abs=1e-6)


def test_charge_limit_tapers_above_80_pct_and_is_zero_when_full() -> None:
    b = Battery(max_charge_power_w=100_000.0)
    b.soc_pct = 50.0
    assert b.charge_power_limit_w() == 100_000.0
    b.soc_pct = 80.0
    assert b.charge_power_limit_w() == 100_000.0
    b.soc_pct = 90.0
    assert b.charge_power_limit_w() == pytest.approx(50_000.0)
    b.soc_pct = 99.99
    assert 0.0 < b.charge_power_limit_w() <= 2_000.0
    b.soc_pct = 100.0
    assert b.charge_power_limit_w() == 0.0


@given(a=socs, b=socs)
def test_charge_limit_never_rises_and_discharge_limit_never_falls_with_soc(
    a: float, b: float
) -> None:
    lo, hi = sorted((a, b))
    bat_lo, bat_hi = Battery(soc_pct=lo), Battery(soc_pct=hi)
    assert bat_lo.charge_power_limit_w() >= bat_hi.charge_power_limit_w()
    assert bat_lo.discharge_power_limit_w() <= bat_hi.discharge_power_limit_w()


def test_discharge_limit_drops_to_zero_at_min_soc() -> None:
    b = Battery(max_discharge_power_w=20_000.0, min_soc_pct=20.0, discharge_taper_width_pct=10.0)
    b.soc_pct = 60.0
    assert b.discharge_power_limit_w() == 20_000.0
    b.soc_pct = 25.0
    assert b.discharge_power_limit_w() == pytest.approx(10_000.0)
    b.soc_pct = 20.0
    assert b.discharge_power_limit_w() == 0.0
    b.soc_pct = 5.0
    assert b.discharge_power_limit_w() == 0.0


def test_charging_raises_soc_by_the_stored_energy() -> None:
    b = Battery(capacity_wh=60_000.0, soc_pct=50.0)
    ocv = b.open_circuit_voltage_v()
    for _ in range(3600):
        b.step(10.0, 1.0)
    expected_wh = 30_000.0 + ocv * 10.0  # roughly: OCV barely moves over 6 %
    assert b.stored_energy_wh == pytest.approx(expected_wh, rel=5e-3)
    assert b.soc_pct > 50.0


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=-200.0, max_value=200.0),
            st.floats(min_value=0.0, max_value=10.0),
        ),
        max_size=50,
    )
)
def test_energy_balance_holds(steps: list[tuple[float, float]]) -> None:
    b = Battery(capacity_wh=60_000.0, soc_pct=50.0, charge_efficiency=0.97)
    start_wh = b.stored_energy_wh
    for current_a, dt_s in steps:
        b.step(current_a, dt_s)
    net_in_wh = b.charged_wh - b.discharged_wh - b.losses_wh
    assert b.stored_energy_wh - start_wh == pytest.approx(net_in_wh, abs=1e-6)
    assert 0.0 <= b.soc_pct <= 100.0


def test_losses_are_positive_while_charging_and_discharging() -> None:
    b = Battery(soc_pct=50.0, charge_efficiency=0.95)
    b.step(100.0, 60.0)
    after_charge = b.losses_wh
    assert after_charge > 0.0
    b.step(-100.0, 60.0)
    assert b.losses_wh > after_charge


def test_soc_is_clamped_at_full() -> None:
    b = Battery(capacity_wh=1_000.0, soc_pct=99.9)
    b.step(100.0, 3600.0)
    assert b.soc_pct == 100.0
    assert b.is_full


@pytest.mark.parametrize("soc", [-0.1, 100.1, math.nan])
def test_rejects_soc_out_of_range(soc: float) -> None:
    with pytest.raises(ValueError):
        Battery(soc_pct=soc)


def test_rejects_negative_dt() -> None:
    with pytest.raises(ValueError):
        Battery().step(1.0, -0.1)
