"""Resident memory of the running service across simulated sessions.

Starts ``chargepoint run`` on the simulated configuration, drives N complete
sessions (plug, charge, EV stops, unplug) through the control socket, and reads
the service's VmRSS from /proc after each session.

    python bench/memory.py [--sessions 100] [--charge-s 0.3]

Target (issue 2): <= 60 MB after 100 sessions and no growth between session
10 and session 100.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chargepoint.adapters.control_socket import request  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def evse(sock: Path) -> dict[str, Any]:
    answer = await request(sock, {"cmd": "status"})
    status: dict[str, Any] = answer["result"]["evse"][0]
    return status


async def wait_for(sock: Path, check: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        st = await evse(sock)
        if check(st):
            return st
        if loop.time() > end:
            raise TimeoutError(f"last status {st}")
        await asyncio.sleep(0.02)


async def sim(sock: Path, name: str) -> None:
    answer = await request(sock, {"cmd": "sim", "evse": 1, "name": name, "args": []})
    assert answer["ok"], answer


async def session(sock: Path, charge_s: float) -> float:
    await sim(sock, "plug")
    await wait_for(sock, lambda s: s["state"] == "charging" and s["contactor_closed"])
    await asyncio.sleep(charge_s)
    await sim(sock, "stop")
    await wait_for(sock, lambda s: s["cp"] == "B" and not s["contactor_closed"])
    await sim(sock, "unplug")
    st = await wait_for(sock, lambda s: s["state"] == "idle" and not s["session_active"])
    energy: float = st["last_session"]["energy_imported_wh"]
    return energy


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="chargepoint-mem-"))
    sock = tmp / "control.sock"
    text = (ROOT / "config" / "sim.toml").read_text()
    text = text.replace('"/tmp/chargepoint-sim.sock"', f'"{sock}"')
    cfg = tmp / "sim.toml"
    cfg.write_text(text)
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the timed part
        [sys.executable, "-m", "chargepoint", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: dict[int, float] = {}
    try:
        for _ in range(400):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        samples[0] = rss_mb(proc.pid)
        total_wh = 0.0
        for n in range(1, args.sessions + 1):
            total_wh += await session(sock, args.charge_s)
            samples[n] = rss_mb(proc.pid)
            if n in (1, 10, 25, 50, 75, 100) or n == args.sessions:
                print(f"after session {n:3d}: RSS {samples[n]:.1f} MB", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    last = args.sessions
    growth = samples[last] - samples[min(10, last)]
    print(f"sessions: {last}, energy delivered in total {total_wh:.1f} Wh")
    print(f"RSS at start {samples[0]:.1f} MB, after 10 {samples[min(10, last)]:.1f} MB, ")
    print(f"after {last}: {samples[last]:.1f} MB; growth 10 -> {last}: {growth:+.2f} MB")
    print(f"target <= 60 MB: {'met' if samples[last] <= 60 else 'NOT met'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--charge-s", type=float, default=0.3)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
