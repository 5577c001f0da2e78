"""SimWorld: step order, asyncio runner and external command dispatch."""

from __future__ import annotations

import asyncio
import json

import pytest

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.sim.ev import SimulatedEv
from hal.sim.meter import SimulatedMeter
from hal.sim.plant import Plant
from hal.sim.world import ISOLATION_FAULT_OHM, SimCommandError, SimWorld


def test_defaults_share_one_plant() -> None:
    world = SimWorld()
    assert world.ev.plant is world.plant
    assert world.meter.plant is world.plant
    assert world.isolation.plant is world.plant


def test_rejects_devices_on_another_plant() -> None:
    with pytest.raises(ValueError, match="meter"):
        SimWorld(Plant(), meter=SimulatedMeter(Plant()))


def test_plant_taken_from_given_ev() -> None:
    ev = SimulatedEv(Plant())
    assert SimWorld(ev=ev).plant is ev.plant


def test_charging_session_meters_what_the_ev_draws() -> None:
    world = SimWorld()
    plant = world.plant
    world.sim_command("plug", [])
    world.sim_command("start", [])
    plant.pilot_output = PilotOutput.PWM
    plant.duty_pct = 26.7
    world.advance(1.0)
    assert plant.ev_cp_state is CpState.C
    plant.contactor_closed = True
    expected_wh = 0.0
    for _ in range(1000):
        world.step(0.01)
        expected_wh += plant.ac_power_w * 0.01 / 3600.0
    assert world.meter.import_energy_wh == pytest.approx(expected_wh, rel=1e-12)
    assert world.meter.export_energy_wh == 0.0
    assert world.time_s == pytest.approx(11.0)


def test_drivers_run_before_the_ev() -> None:
    world = SimWorld()
    world.ev.plug()
    world.ev.set_dc_contactor(True)
    seen: list[float] = []

    def power_module(dt_s: float) -> None:
        world.plant.dc_voltage_v = world.plant.battery_voltage_v
        world.plant.dc_current_a = 50.0
        seen.append(dt_s)

    world.add_driver(power_module)
    world.step(1.0)
    assert seen == [1.0]
    assert world.ev.battery.current_a == 50.0


def test_advance_splits_long_durations() -> None:
    world = SimWorld(max_step_s=0.1)
    steps: list[float] = []
    world.add_driver(steps.append)
    world.advance(0.35)
    assert len(steps) == 4
    assert sum(steps) == pytest.approx(0.35)


async def test_run_steps_with_loop_time_until_cancelled() -> None:
    world = SimWorld()
    task = asyncio.create_task(world.run(period_s=0.005))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0.03 <= world.time_s <= 0.5


# -- commands -------------------------------------------------------------------------


def test_plug_start_stop_unplug() -> None:
    world = SimWorld()
    result = world.sim_command("plug", [])
    assert result["command"] == "plug"
    assert result["status"]["ev"]["plugged"] is True
    assert world.plant.ev_cp_state is CpState.B
    world.sim_command("start", [])
    assert world.ev.wants_energy
    world.sim_command("stop", [])
    assert not world.ev.wants_energy
    world.sim_command("unplug", [])
    assert world.plant.ev_cp_state is CpState.A


def test_status_is_json_serialisable() -> None:
    world = SimWorld()
    world.sim_command("plug", [])
    world.advance(0.5)
    status = world.sim_command("status", [])["status"]
    text = json.dumps(status)
    assert json.loads(text)["ev"]["cp_state"] == "B"
    assert status["faults"] == dict.fromkeys(status["faults"], False)


def test_soc_command_sets_battery() -> None:
    world = SimWorld()
    result = world.sim_command("soc", ["81.5"])
    assert world.ev.battery.soc_pct == 81.5
    assert result["status"]["ev"]["soc_pct"] == 81.5


@pytest.mark.parametrize(
    ("kind", "flag"),
    [
        ("cp-short", "inject_cp_short"),
        ("rcd-ac", "inject_rcd_ac"),
        ("rcd-dc", "inject_rcd_dc"),
        ("over-temperature", "inject_over_temperature"),
        ("weld", "inject_contactor_weld"),
        ("board-silent", "inject_board_silent"),
    ],
)
def test_fault_flags_toggle(kind: str, flag: str) -> None:
    world = SimWorld()
    result = world.sim_command("fault", [kind])
    assert getattr(world.plant, flag) is True
    assert result["status"]["faults"][kind] is True
    world.sim_command("fault", [kind, "off"])
    assert getattr(world.plant, flag) is False
    world.sim_command("fault", [kind, "on"])
    assert getattr(world.plant, flag) is True


def test_diode_fault() -> None:
    world = SimWorld()
    world.sim_command("plug", [])
    world.sim_command("fault", ["diode", "on"])
    assert world.plant.ev_diode_ok is False
    world.sim_command("fault", ["diode", "off"])
    assert world.plant.ev_diode_ok is True


def test_isolation_fault_lowers_resistance_and_restores_it() -> None:
    world = SimWorld(Plant(isolation_resistance_ohm=3.0e6))
    world.sim_command("fault", ["isolation"])
    world.sim_command("fault", ["isolation", "on"])  # twice: still restores 3 MOhm
    assert world.plant.isolation_resistance_ohm == ISOLATION_FAULT_OHM
    world.sim_command("fault", ["isolation", "off"])
    assert world.plant.isolation_resistance_ohm == 3.0e6


def test_imd_device_fault() -> None:
    world = SimWorld()
    world.sim_command("fault", ["imd"])
    assert world.isolation.device_fault
    world.sim_command("fault", ["imd", "off"])
    assert not world.isolation.device_fault


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("fly", [], "unknown sim command 'fly'"),
        ("plug", ["now"], r"usage: plug \[idle\]"),
        ("status", ["x"], "status takes no arguments"),
        ("fault", [], "usage: fault"),
        ("fault", ["diode", "on", "x"], "usage: fault"),
        ("fault", ["meteor"], "unknown fault 'meteor'"),
        ("fault", ["diode", "maybe"], "'on' or 'off'"),
        ("soc", [], "usage: soc"),
        ("soc", ["half"], "soc must be a number"),
        ("soc", ["101"], "within 0..100"),
        ("soc", ["-1"], "within 0..100"),
        ("soc", ["nan"], "within 0..100"),
    ],
)
def test_bad_commands_raise_clear_value_errors(name: str, args: list[str], message: str) -> None:
    world = SimWorld()
    with pytest.raises(SimCommandError, match=message) as excinfo:
        world.sim_command(name, args)
    assert isinstance(excinfo.value, ValueError)
