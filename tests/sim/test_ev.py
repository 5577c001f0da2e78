"""Simulated EV: IEC 61851-1 EV-side behaviour, driven with explicit time steps.

The tests play the EVSE by writing ``pilot_output`` / ``duty_pct`` /
``contactor_closed`` on the plant directly.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iec61851.duty_cycle import current_for_duty, duty_for_current
from hal.sim.battery import Battery
from hal.sim.ev import EvPhase, PilotMeaning, SimulatedEv, decode_duty, decode_pilot
from hal.sim.plant import Plant

DT_S = 0.01


def run(ev: SimulatedEv, seconds: float, dt_s: float = DT_S) -> None:
    for _ in range(round(seconds / dt_s)):
        ev.step(dt_s)


def cp(plant: Plant) -> CpState:
    """Read the CP state through a call so mypy does not narrow it between steps."""
    return plant.ev_cp_state


def pwm(plant: Plant, duty_pct: float) -> None:
    plant.pilot_output = PilotOutput.PWM
    plant.duty_pct = duty_pct


def make_ev(**kwargs: object) -> tuple[Plant, SimulatedEv]:
    plant = Plant()
    ev = SimulatedEv(plant, Battery(soc_pct=50.0), **kwargs)  # type: ignore[arg-type]
    return plant, ev


def charging_ev(duty_pct: float = 25.0, **kwargs: object) -> tuple[Plant, SimulatedEv]:
    """An EV in state C drawing current at ``duty_pct``."""
    plant, ev = make_ev(**kwargs)
    ev.plug()
    ev.request_energy()
    pwm(plant, duty_pct)
    run(ev, 1.0)
    assert cp(plant) is CpState.C
    plant.contactor_closed = True
    run(ev, 8.0)
    return plant, ev


# -- duty decoding -----------------------------------------------------------


@pytest.mark.parametrize(
    ("duty_pct", "meaning", "current_a"),
    [
        (0.0, PilotMeaning.INVALID, 0.0),
        (2.9, PilotMeaning.INVALID, 0.0),
        (3.0, PilotMeaning.DIGITAL, 0.0),
        (5.0, PilotMeaning.DIGITAL, 0.0),
        (7.0, PilotMeaning.DIGITAL, 0.0),
        (7.5, PilotMeaning.NOT_ALLOWED, 0.0),
        (8.0, PilotMeaning.CURRENT, 6.0),
        (9.5, PilotMeaning.CURRENT, 6.0),
        (10.0, PilotMeaning.CURRENT, 6.0),
        (16.0, PilotMeaning.CURRENT, 9.6),
        (25.0, PilotMeaning.CURRENT, 15.0),
        (53.3, PilotMeaning.CURRENT, 31.98),
        (85.0, PilotMeaning.CURRENT, 51.0),
        (90.0, PilotMeaning.CURRENT, 65.0),
        (96.0, PilotMeaning.CURRENT, 80.0),
        (96.5, PilotMeaning.CURRENT, 80.0),
        (97.0, PilotMeaning.CURRENT, 80.0),
        (97.5, PilotMeaning.NOT_ALLOWED, 0.0),
        (100.0, PilotMeaning.NOT_ALLOWED, 0.0),
    ],
)
def test_decode_duty(duty_pct: float, meaning: PilotMeaning, current_a: float) -> None:
    offer = decode_duty(duty_pct)
    assert offer.meaning is meaning
    assert offer.current_a == pytest.approx(current_a)


@given(
    a=st.floats(min_value=8.0, max_value=97.0),
    b=st.floats(min_value=8.0, max_value=97.0),
)
def test_offered_current_is_monotonic_and_bounded(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 6.0 <= decode_duty(lo).current_a <= decode_duty(hi).current_a <= 80.0


@given(current_a=st.floats(min_value=6.0, max_value=80.0))
def test_ev_reads_back_what_the_evse_offers(current_a: float) -> None:
    offer = decode_duty(duty_for_current(current_a))
    assert offer.meaning is PilotMeaning.CURRENT
    assert offer.current_a <= current_a + 0.03  # duty has 0.01 % steps
    if not 51.0 < current_a < 52.5:  # the table cannot express 51-52.5 A (jump at 85 %)
        assert offer.current_a == pytest.approx(current_a, abs=0.03)


@given(duty_pct=st.floats(min_value=0.0, max_value=100.0))
def test_ev_and_evse_tables_agree(duty_pct: float) -> None:
    evse_view = current_for_duty(duty_pct)
    offer = decode_duty(duty_pct)
    if evse_view is None:
        assert offer.meaning is not PilotMeaning.CURRENT
    else:
        assert offer.current_a == pytest.approx(evse_view)


def test_x1_f_and_short_offer_nothing() -> None:
    assert decode_pilot(PilotOutput.X1, 25.0).meaning is PilotMeaning.NO_PWM
    assert decode_pilot(PilotOutput.F, 25.0).meaning is PilotMeaning.NO_PWM
    assert decode_pilot(PilotOutput.PWM, 25.0, cp_shorted=True).meaning is PilotMeaning.NO_PWM


# -- plug / state B / state C ------------------------------------------------------


def test_unplugged_is_state_a_and_plug_gives_b() -> None:
    plant, ev = make_ev()
    assert cp(plant) is CpState.A
    assert plant.battery_voltage_v == 0.0
    ev.plug()
    assert cp(plant) is CpState.B
    assert plant.battery_voltage_v == pytest.approx(ev.battery.open_circuit_voltage_v())


def test_stays_in_b_without_energy_request_even_with_pwm() -> None:
    plant, ev = make_ev()
    ev.plug()
    pwm(plant, 25.0)
    run(ev, 3.0)
    assert cp(plant) is CpState.B


def test_stays_in_b_with_x1() -> None:
    plant, ev = make_ev()
    ev.plug()
    ev.request_energy()
    run(ev, 3.0)
    assert plant.pilot_output is PilotOutput.X1
    assert cp(plant) is CpState.B


@pytest.mark.parametrize("duty_pct", [1.0, 5.0, 7.5, 98.0])
def test_goes_to_c_only_with_a_valid_current_pwm(duty_pct: float) -> None:
    plant, ev = make_ev()
    ev.plug()
    ev.request_energy()
    pwm(plant, duty_pct)
    plant.contactor_closed = True  # even a careless EVSE must not make it draw
    run(ev, 5.0)
    assert cp(plant) is CpState.B
    assert plant.ac_current_a == 0.0


def test_goes_to_c_within_a_second_of_valid_pwm() -> None:
    plant, ev = make_ev(s2_close_delay_s=0.5)
    ev.plug()
    ev.request_energy()
    pwm(plant, 25.0)
    run(ev, 0.4)
    assert cp(plant) is CpState.B
    run(ev, 0.2)
    assert cp(plant) is CpState.C
    assert ev.phase is EvPhase.READY


def test_needs_ventilation_gives_state_d() -> None:
    plant, ev = make_ev(wants_ventilation=True)
    ev.plug()
    ev.request_energy()
    pwm(plant, 25.0)
    run(ev, 1.0)
    assert cp(plant) is CpState.D


# -- current ---------------------------------------------------------------------


def test_no_current_before_contactor_closes() -> None:
    plant, ev = make_ev()
    ev.plug()
    ev.request_energy()
    pwm(plant, 25.0)
    run(ev, 3.0)
    assert cp(plant) is CpState.C
    assert plant.ac_current_a == 0.0


def test_current_ramps_up_to_pwm_limit() -> None:
    plant, ev = make_ev(onboard_charger_max_current_a=32.0, ramp_up_a_per_s=4.0)
    ev.plug()
    ev.request_energy()
    pwm(plant, 25.0)  # 15 A
    run(ev, 1.0)
    plant.contactor_closed = True
    run(ev, 1.0)
    assert 3.0 < plant.ac_current_a < 5.0  # still ramping
    run(ev, 4.0)
    assert plant.ac_current_a == pytest.approx(15.0)
    assert ev.state.offered_current_a == pytest.approx(15.0)


def test_current_limited_by_onboard_charger() -> None:
    plant, _ev = charging_ev(50.0, onboard_charger_max_current_a=16.0)  # PWM offers 30 A
    assert plant.ac_current_a == pytest.approx(16.0)


def test_current_limited_by_battery_near_full() -> None:
    plant = Plant()
    battery = Battery(soc_pct=99.0, max_charge_power_w=10_000.0)  # ~500 W left at 99 %
    ev = SimulatedEv(plant, battery, onboard_charger_max_current_a=32.0)
    ev.plug()
    ev.request_energy()
    pwm(plant, 50.0)
    run(ev, 1.0)
    plant.contactor_closed = True
    run(ev, 5.0)
    expected_a = battery.charge_power_limit_w() / 0.93 / (230.0 * 3)
    assert plant.ac_current_a == pytest.approx(expected_a, rel=0.05)
    assert plant.ac_current_a < 1.0


@pytest.mark.parametrize(("new_duty_pct", "new_current_a"), [(10.0, 6.0), (20.0, 12.0)])
def test_follows_pwm_changes_within_5_s(new_duty_pct: float, new_current_a: float) -> None:
    plant, ev = charging_ev(26.7)  # 16 A
    assert plant.ac_current_a == pytest.approx(16.0, abs=0.05)
    pwm(plant, new_duty_pct)
    run(ev, 5.0)
    assert plant.ac_current_a == pytest.approx(new_current_a)
    pwm(plant, 26.7)
    run(ev, 5.0)
    assert plant.ac_current_a == pytest.approx(16.0, abs=0.05)


def test_soc_rises_while_charging() -> None:
    _plant, ev = charging_ev(26.7)
    before = ev.battery.soc_pct
    run(ev, 60.0, dt_s=0.1)
    assert ev.battery.soc_pct > before


def test_contactor_opening_cuts_current_at_once() -> None:
    plant, ev = charging_ev()
    plant.contactor_closed = False
    ev.step(DT_S)
    assert plant.ac_current_a == 0.0
    assert cp(plant) is CpState.C  # PWM still valid: EV stays ready


# -- stopping -------------------------------------------------------------------


def test_x1_stops_charging_and_returns_to_b() -> None:
    plant, ev = charging_ev()
    plant.pilot_output = PilotOutput.X1
    seen_c_with_zero = False
    for _ in range(500):
        ev.step(DT_S)
        if cp(plant) is CpState.C and plant.ac_current_a == 0.0:
            seen_c_with_zero = True
        if cp(plant) is CpState.B:
            break
    assert seen_c_with_zero  # current reached zero before S2 opened
    assert cp(plant) is CpState.B
    assert plant.ac_current_a == 0.0


def test_switching_to_5_pct_without_hlc_stops_basic_charging() -> None:
    plant, ev = charging_ev()
    pwm(plant, 5.0)
    run(ev, 5.0)
    assert plant.ac_current_a == 0.0
    assert cp(plant) is CpState.B


def test_ev_initiated_stop_ramps_down_then_opens_s2() -> None:
    plant, ev = charging_ev(26.7, ramp_down_a_per_s=10.0)
    ev.stop()
    currents: list[float] = []
    states: list[CpState] = []
    for _ in range(500):
        ev.step(DT_S)
        currents.append(plant.ac_current_a)
        states.append(cp(plant))
    first_b = states.index(CpState.B)
    assert 1.0 <= first_b * DT_S <= 2.5  # 16 A at 10 A/s
    assert currents[first_b - 1] == 0.0
    assert all(b <= a for a, b in pairs(currents[:first_b]))
    assert set(states[first_b:]) == {CpState.B}
    assert not ev.wants_energy


def pairs(values: list[float]) -> list[tuple[float, float]]:
    return list(itertools.pairwise(values))


def test_restarts_after_stop_when_energy_requested_again() -> None:
    plant, ev = charging_ev()
    ev.stop()
    run(ev, 3.0)
    assert cp(plant) is CpState.B
    ev.request_energy()
    run(ev, 1.0)
    assert cp(plant) is CpState.C


def test_stops_by_itself_when_full() -> None:
    plant = Plant()
    battery = Battery(capacity_wh=500.0, soc_pct=99.0, max_charge_power_w=11_000.0)
    ev = SimulatedEv(plant, battery)
    ev.plug()
    ev.request_energy()
    pwm(plant, 26.7)
    plant.contactor_closed = True
    for _ in range(6000):
        ev.step(0.1)
        if ev.phase is EvPhase.CONNECTED and not ev.wants_energy:
            break
    assert battery.is_full
    assert cp(plant) is CpState.B
    assert plant.ac_current_a == 0.0


def test_target_soc_stops_early() -> None:
    plant, ev = charging_ev(26.7, target_soc_pct=50.01)
    run(ev, 120.0, dt_s=0.1)
    assert not ev.wants_energy
    assert cp(plant) is CpState.B
    assert ev.battery.soc_pct < 51.0


# -- unplug / faults ------------------------------------------------------------------


def test_unplug_while_charging_gives_a_and_zero_current() -> None:
    plant, ev = charging_ev()
    assert plant.ac_current_a > 0.0
    ev.unplug()
    assert cp(plant) is CpState.A
    assert plant.ac_current_a == 0.0
    assert plant.battery_voltage_v == 0.0
    run(ev, 1.0)
    assert cp(plant) is CpState.A
    assert plant.ac_current_a == 0.0


def test_diode_fault_is_visible_on_the_plant() -> None:
    plant, ev = make_ev()
    ev.plug()
    ev.set_diode_fault(True)
    assert plant.ev_diode_ok is False
    ev.set_diode_fault(False)
    assert plant.ev_diode_ok is True


def test_cp_short_shows_e_and_stops_current() -> None:
    plant, ev = charging_ev()
    ev.short_cp(True)
    assert plant.inject_cp_short
    assert cp(plant) is CpState.E
    run(ev, 5.0)
    assert plant.ac_current_a == 0.0
    assert cp(plant) is CpState.E
    ev.short_cp(False)
    run(ev, 0.01)
    assert cp(plant) is CpState.B
    run(ev, 1.0)
    assert cp(plant) is CpState.C


def test_state_summary_is_json_friendly() -> None:
    _plant, ev = charging_ev()
    data = ev.state.to_dict()
    assert data["plugged"] is True
    assert data["cp_state"] == "C"
    assert data["phase"] == "ready"
    assert data["current_a"] == pytest.approx(15.0)
    assert data["requested_current_a"] == pytest.approx(16.0)


# -- DC / BPT hooks -------------------------------------------------------------------


def test_hlc_ready_lets_ev_close_s2_at_5_pct() -> None:
    plant, ev = make_ev()
    ev.plug()
    ev.request_energy()
    pwm(plant, 5.0)
    run(ev, 2.0)
    assert cp(plant) is CpState.B
    ev.set_hlc_ready(True)
    run(ev, 1.0)
    assert cp(plant) is CpState.C


def test_dc_current_charges_and_discharges_the_battery() -> None:
    plant, ev = make_ev()
    ev.plug()
    ev.set_dc_contactor(True)
    assert plant.ev_dc_contactor_closed
    ocv = ev.battery.open_circuit_voltage_v()
    start = ev.battery.soc_pct
    plant.dc_current_a = 100.0
    run(ev, 60.0, dt_s=0.1)
    assert ev.battery.soc_pct > start
    assert plant.battery_voltage_v > ev.battery.open_circuit_voltage_v() >= ocv
    peak = ev.battery.soc_pct
    plant.dc_current_a = -100.0
    run(ev, 60.0, dt_s=0.1)
    assert ev.battery.soc_pct < peak
    assert plant.battery_voltage_v < ev.battery.open_circuit_voltage_v()


def test_dc_current_ignored_while_ev_contactor_open() -> None:
    plant, ev = make_ev()
    ev.plug()
    plant.dc_current_a = 100.0
    start = ev.battery.soc_pct
    run(ev, 10.0, dt_s=0.1)
    assert ev.battery.soc_pct == start


def test_unplugged_ev_cannot_close_dc_contactor_and_unplug_opens_it() -> None:
    plant, ev = make_ev()
    with pytest.raises(ValueError):
        ev.set_dc_contactor(True)
    ev.plug()
    ev.set_dc_contactor(True)
    ev.unplug()
    assert not plant.ev_dc_contactor_closed


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        SimulatedEv(Plant(), phases=4)
    with pytest.raises(ValueError):
        SimulatedEv(Plant(), ramp_up_a_per_s=0.0)
    with pytest.raises(ValueError):
        SimulatedEv(Plant()).step(-1.0)
