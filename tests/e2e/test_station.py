"""The whole service on simulated hardware, driven through its control socket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chargepoint.adapters.control_socket import request
from chargepoint.app import Station
from chargepoint.evse.actions import Action, StateChanged
from chargepoint.evse.session import SessionSummary
from chargepoint.iec61851.evse_state import EvseState
from tests.e2e.conftest import Client, sim_config


async def test_full_basic_charging_session(client: Client) -> None:
    st = await client.evse()
    assert st["state"] == "idle" and st["cp"] == "A"
    await client.sim("plug")
    st = await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    assert st["pwm_duty_pct"] == pytest.approx(53.33)
    await client.wait_for(lambda s: (s["meter"] or {}).get("power_w", 0) > 1000)
    await client.sim("stop")
    await client.wait_for(lambda s: s["cp"] == "B" and not s["contactor_closed"])
    await client.sim("unplug")
    st = await client.wait_for(lambda s: s["state"] == "idle" and s["last_session"] is not None)
    summary = st["last_session"]
    assert summary["energy_imported_wh"] > 0
    assert summary["meter_end_import_wh"] == pytest.approx(st["meter"]["import_energy_wh"])


@pytest.mark.parametrize("fault", ["rcd-ac", "rcd-dc", "diode", "cp-short", "over-temperature"])
async def test_faults_reach_safe_state_and_clear_after_unplug(client: Client, fault: str) -> None:
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await client.sim("fault", fault, "on")
    st = await client.wait_for(lambda s: s["state"] == "fault")
    assert not st["permission"] and st["faults"]
    st = await client.wait_for(lambda s: s["contactor_closed"] is False)
    await client.sim("fault", fault, "off")
    await client.sim("unplug")
    st = await client.wait_for(lambda s: s["state"] == "idle", timeout_s=20)
    assert st["faults"] == []


async def test_evse_initiated_stop_and_restart(client: Client) -> None:
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging")
    await client("stop", evse=1)
    st = await client.wait_for(lambda s: s["state"] == "connected" and not s["contactor_closed"])
    assert st["pwm_duty_pct"] is None
    await client("start", evse=1)
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])


async def test_bad_control_requests_get_clear_errors(station: Station) -> None:
    answer = await request(station.control_socket, {"cmd": "sim", "evse": 1, "name": "fly"})
    assert not answer["ok"] and "unknown sim command" in answer["error"]
    answer = await request(station.control_socket, {"cmd": "warp"})
    assert not answer["ok"] and "unknown command" in answer["error"]
    answer = await request(station.control_socket, {"cmd": "start", "evse": 9})
    assert not answer["ok"] and "unknown evse" in answer["error"]
    reader, writer = await asyncio.open_unix_connection(station.control_socket)
    writer.write(b"{not json\n")
    await writer.drain()
    assert b"not JSON" in await reader.readline()
    writer.close()


async def test_crashed_task_drives_safe_state_then_stops_the_service(tmp_path: Path) -> None:
    station = Station(sim_config(tmp_path))
    seen: list[Action | SessionSummary] = []

    def fragile(evse_id: int, item: Action | SessionSummary) -> None:
        seen.append(item)
        if isinstance(item, StateChanged) and item.new is EvseState.CHARGING:
            raise RuntimeError("listener bug")

    station.listeners.append(fragile)
    task = asyncio.create_task(station.run())
    await asyncio.wait_for(station.ready.wait(), 15)
    await Client(station).sim("plug")
    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(task, 20)
    assert info.group_contains(RuntimeError, match="listener bug")
    runner = station.runners[1]
    assert not runner.controller.permission_granted
    assert "task_crashed" in {f.kind.value for f in runner.controller.latched_faults}
    plant = station.sim[1].world.plant
    assert not plant.contactor_closed


async def test_cable_ampacity_limits_the_offer(client: Client, station: Station) -> None:
    station.sim[1].world.ev.cable_ampacity_a = 20  # a 20 A cable on a 32 A socket
    await client.sim("plug")
    st = await client.wait_for(lambda s: s["state"] == "charging")
    assert st["offered_current_a"] == pytest.approx(20.0)
    assert st["pwm_duty_pct"] == pytest.approx(33.33)


async def test_lost_board_link_is_a_fault_not_a_crash(client: Client, station: Station) -> None:
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging")
    board = station.sim[1].board
    assert board is not None
    board.disconnect()  # the serial link dies (pty hung up)
    st = await client.wait_for(lambda s: s["state"] == "fault")
    assert "board_keepalive_lost" in {f["kind"] for f in st["faults"]}
    assert not st["permission"]
    await asyncio.sleep(1.5)  # relink attempts keep failing; the service keeps running
    assert (await client.evse())["state"] == "fault"
