"""``chargepoint demo``: the service on simulated hardware and one full session.

The demo drives the simulated EV through the service's real control socket,
exactly as ``chargepoint sim`` would, and reads state back the same way.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from chargepoint.adapters.control_socket import request
from chargepoint.app import Station
from chargepoint.config import Config

STEP_TIMEOUT_S = 15.0
ENERGY_TOLERANCE_WH = 1e-6


class DemoError(RuntimeError):
    """The simulated session did not go as a charging session must."""


async def run_demo(
    config: Config, *, charge_s: float, out: TextIO, evse_id: int | None = None
) -> int:
    evse = evse_id if evse_id is not None else config.evse[0].id
    with tempfile.TemporaryDirectory(prefix="chargepoint-demo-") as tmp:
        station = Station(config, control_socket=Path(tmp) / "control.sock")
        return await run_with_station(
            station, lambda: _session(station.control_socket, evse, charge_s, out), out
        )


async def run_with_station(
    station: Station, session: Callable[[], Awaitable[int]], out: TextIO
) -> int:
    """Run the service, then ``session`` against it once it is ready; stop it in order.

    A :class:`DemoError` is reported on ``out`` and gives exit code 1.
    """
    failures: list[DemoError] = []
    code = 1
    try:
        async with asyncio.TaskGroup() as tg:
            service = tg.create_task(station.run())
            try:
                await asyncio.wait_for(station.ready.wait(), STEP_TIMEOUT_S)
                code = await session()
            finally:
                station.stop()
            await service
    except* DemoError as group:
        failures += [e for e in group.exceptions if isinstance(e, DemoError)]
    for failure in failures:
        print(f"demo failed: {failure}", file=out)
    return 1 if failures else code


class DemoControl:
    """What a demo does with the running service: sim commands and status of one
    EVSE over the control socket, and waiting for a condition (or failing)."""

    def __init__(self, sock: Path, evse: int, step_timeout_s: float = STEP_TIMEOUT_S) -> None:
        self.sock = sock
        self.evse = evse
        self.step_timeout_s = step_timeout_s

    async def sim(self, name: str, *args: str) -> None:
        message = {"cmd": "sim", "evse": self.evse, "name": name, "args": list(args)}
        answer = await request(self.sock, message)
        if not answer["ok"]:
            raise DemoError(f"sim {name}: {answer['error']}")

    async def status(self) -> dict[str, Any]:
        answer = await request(self.sock, {"cmd": "status"})
        found: dict[str, Any] = next(e for e in answer["result"]["evse"] if e["id"] == self.evse)
        return found

    async def wait_for(self, what: str, check: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.step_timeout_s
        st = await self.status()
        while not check(st):
            if loop.time() > end:
                raise DemoError(f"timed out waiting for {what}; last status {st}")
            await asyncio.sleep(0.05)
            st = await self.status()
        return st


async def _session(sock: Path, evse: int, charge_s: float, out: TextIO) -> int:
    control = DemoControl(sock, evse)
    sim, status, wait_for = control.sim, control.status, control.wait_for

    print(f"EVSE {evse}: plugging in the simulated EV", file=out)
    await sim("plug")
    await wait_for("charging", lambda s: s["state"] == "charging" and s["contactor_closed"])
    print(f"EVSE {evse}: contactor closed, charging for {charge_s:g} s", file=out)
    print(_header(), file=out)
    loop = asyncio.get_running_loop()
    end = loop.time() + charge_s
    while (now := loop.time()) < end:
        print(_line(await status()), file=out, flush=True)
        await asyncio.sleep(min(1.0, max(0.0, end - now)))
    print(_line(await status()), file=out)
    print(f"EVSE {evse}: the EV stops charging", file=out)
    await sim("stop")
    await wait_for("EV back in state B", lambda s: s["cp"] == "B" and not s["permission"])
    print(f"EVSE {evse}: unplugging", file=out)
    await sim("unplug")
    st = await wait_for(
        "the session summary",
        lambda s: (
            s["state"] == "idle" and s["last_session"] is not None and not s["session_active"]
        ),
    )
    return _summary(st, out)


def _header() -> str:
    return (
        f"{'state':<10} {'CP':<3} {'duty %':>7} {'I/phase A':>9} {'U V':>7} "
        f"{'P kW':>7} {'E Wh':>9} {'SoC %':>6}"
    )


def _line(st: dict[str, Any]) -> str:
    meter = st["meter"] or {}
    ev = st["ev"] or {}
    duty = st["pwm_duty_pct"]
    return (
        f"{st['state']:<10} {st['cp'] or '-':<3} {duty if duty is not None else '-':>7} "
        f"{meter.get('current_a', 0.0):>9.2f} {meter.get('voltage_v', 0.0):>7.1f} "
        f"{meter.get('power_w', 0.0) / 1000:>7.2f} {meter.get('import_energy_wh', 0.0):>9.2f} "
        f"{ev.get('soc_pct', float('nan')):>6.2f}"
    )


def _summary(st: dict[str, Any], out: TextIO) -> int:
    s = st["last_session"]
    register = st["meter"]["import_energy_wh"]
    print("\nsession summary", file=out)
    print(f"  session            #{s['number']} ({s['end_reason']})", file=out)
    print(
        f"  duration           {s['duration_s']:.1f} s (charging {s['charging_s']:.1f} s)", file=out
    )
    print(f"  energy delivered   {s['energy_imported_wh']:.3f} Wh", file=out)
    print(f"  energy returned    {s['energy_exported_wh']:.3f} Wh", file=out)
    print(
        f"  meter import       {s['meter_start_import_wh']:.3f} -> "
        f"{s['meter_end_import_wh']:.3f} Wh"
        f" (register now {register:.3f} Wh)",
        file=out,
    )
    if s["energy_imported_wh"] <= 0.0:
        raise DemoError("no energy was delivered")
    if abs(s["meter_end_import_wh"] - register) > ENERGY_TOLERANCE_WH:
        raise DemoError("session energy does not match the meter's import register")
    print("  OK: summary matches the meter's import register", file=out)
    return 0
