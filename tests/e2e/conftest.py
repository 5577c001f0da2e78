from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chargepoint.adapters.control_socket import request
from chargepoint.app import Station
from chargepoint.config import Config, parse_config
from tests.ocpp.csms import Csms
from tests.ocpp.strict import assert_strictly_valid

ROOT = Path(__file__).resolve().parents[2]
SIM_TOML = ROOT / "config" / "sim.toml"


@pytest.fixture
async def csms() -> AsyncIterator[Csms]:
    """The test CSMS as a strict independent one: after the test, every frame of ours
    must pass the OCA schema of its action with strict timestamps (tests/ocpp/strict.py)."""
    async with Csms() as server:
        yield server
        assert_strictly_valid(server.frames, server.ws.subprotocol if server.ws else None)


def sim_config(tmp_path: Path, **runtime: str) -> Config:
    text = SIM_TOML.read_text()
    text = text.replace('"/tmp/chargepoint-sim.sock"', f'"{tmp_path / "control.sock"}"')
    text = text.replace('"/tmp/chargepoint-sim"', f'"{tmp_path / "state"}"')
    return parse_config(text, str(SIM_TOML))


class Client:
    def __init__(self, station: Station) -> None:
        self.station = station

    async def __call__(self, cmd: str, **kw: Any) -> dict[str, Any]:
        answer = await request(self.station.control_socket, {"cmd": cmd, **kw})
        assert answer["ok"], answer
        result: dict[str, Any] = answer["result"]
        return result

    async def sim(self, name: str, *args: str) -> dict[str, Any]:
        return await self("sim", evse=1, name=name, args=list(args))

    async def evse(self) -> dict[str, Any]:
        status = await self("status")
        evse: dict[str, Any] = status["evse"][0]
        return evse

    async def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 15.0
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        st = await self.evse()
        while not check(st):
            assert loop.time() < end, f"timed out; last status {st}"
            await asyncio.sleep(0.02)
            st = await self.evse()
        return st


def task_frames(task: asyncio.Task[Any]) -> list[str]:
    """Where a task waits: its chain of awaited coroutines, innermost last."""
    out: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return out


@pytest.fixture
async def station(tmp_path: Path) -> AsyncIterator[Station]:
    st = Station(sim_config(tmp_path))
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    yield st
    await stop_station(st, task)


async def stop_station(st: Station, task: asyncio.Task[None], timeout_s: float = 15.0) -> None:
    """Stop the service in order; never hang the run, say what is stuck instead
    (``asyncio.wait_for`` would wait on for a task that ignores its cancellation)."""
    st.stop()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        stuck = [
            f"{t.get_name()}: {' <- '.join(task_frames(t)[::-1])}"
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
        ]
        task.cancel()
        raise AssertionError("the station did not stop:\n" + "\n".join(stuck))
    task.result()


@pytest.fixture
def client(station: Station) -> Client:
    return Client(station)
