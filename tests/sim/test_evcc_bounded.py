"""The simulated car's records stay bounded: per run, and across runs of one service."""

from __future__ import annotations

import asyncio

from hal.sim.evcc import CarControls
from hal.sim.evcc.bounded import MessageLog, thin
from tests.sim.test_evcc_car import HOST, profile, rig


def test_message_log_keeps_the_first_and_the_last_names() -> None:
    log = MessageLog(head=3, tail=4)
    log.extend(f"m{i}" for i in range(20))
    assert list(log) == ["m0", "m1", "m2", "m16", "m17", "m18", "m19"]
    assert len(log) == 7 and log.dropped == 13
    log.clear()
    assert list(log) == [] and log.dropped == 0


def test_message_log_short_runs_are_complete() -> None:
    log = MessageLog(head=3, tail=4)
    log.extend(["a", "b", "c", "d", "e"])
    assert list(log) == ["a", "b", "c", "d", "e"] and log.dropped == 0


def test_thin_halves_a_full_timeline_and_keeps_its_ends() -> None:
    points = list(range(10))
    assert not thin(points, limit=11)
    assert thin(points, limit=10)
    assert points[0] == 0 and points[-1] == 9 and len(points) == 6
    assert points == [0, 2, 4, 6, 8, 9]


async def test_a_second_run_starts_a_fresh_report() -> None:
    """The service keeps one car per EVSE for every plug-in: nothing carries over."""
    async with rig((2, 6)) as r:
        car = r.car(profile(), CarControls(stop_after_loops=5))
        first = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        await r.settle(0.1)
        r.ev.unplug()
        await r.settle(0.05)
        second = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
    assert first.ok and second.ok
    assert second.sessions == 1
    assert second.messages.count("SessionSetupReq") == 1
    assert second.messages[-1] == first.messages[-1] == "SessionStopRes"
    assert second.timeline[0].t_s < 0.5  # since this run started
    assert car.status()["sessions"] == 1
