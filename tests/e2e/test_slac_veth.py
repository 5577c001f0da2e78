"""As root: the service in its own network namespace, SLAC over a veth pair with the
real AF_PACKET driver, then the -20 session over the veth's IPv6 link-local addresses.

The charger's namespace runs ``chargepoint run`` (a subprocess under ``ip netns
exec``) with ``plc = { backend = "packet", interface = "plc-evse" }``: its PLC
driver opens an AF_PACKET socket on the veth end, SDP joins ff02::1 there and
the V2G server listens on that end's link-local address. The car's namespace
holds the simulated modem, power line and car SLAC stack (this test process,
AF_PACKET on the other veth end). The simulated ISO 15118-20 car inside the
service finds the charger by SDP multicast on ``plc-evse`` once SLAC has
matched. Skips cleanly without root or iproute2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.adapters.control_socket import request
from hal.plc.simulated import SimulatedPlcLine
from tests.e2e.iso15118_support import V2G_TOML, iso, slac
from tests.netns import Veth, needs_root_and_ip, veth_pair

ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S = 20.0

pytestmark = needs_root_and_ip


@pytest.fixture
def veth() -> Iterator[Veth]:
    with veth_pair("e2e") as pair:
        yield pair


def service_config(tmp: Path, veth: Veth) -> Path:
    """``config/sim-v2g.toml`` with a real (AF_PACKET) PLC link on the veth end."""
    text = V2G_TOML.read_text()
    name = veth.evse_if
    edits = {
        'plc = { backend = "sim" }': f'plc = {{ backend = "packet", interface = "{name}" }}',
        "port = 64109": "port = 0",
        "sdp_port = 15118": "sdp_port = 0",
        '"/tmp/chargepoint-sim-v2g/pki"': f'"{tmp / "pki"}"',
        'state_dir = "/tmp/chargepoint-sim-v2g"': f'state_dir = "{tmp / "state"}"',
        'control_socket = "/tmp/chargepoint-sim-v2g.sock"': f'control_socket = "{tmp / "c.sock"}"',
    }
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp / "station.toml"
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def service_in(veth: Veth, config: Path, log: Path) -> AsyncIterator[Path]:
    """``chargepoint run`` inside the charger's namespace; yields its control socket."""
    sock = config.parent / "c.sock"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", veth.evse_ns, sys.executable, "-m", "chargepoint",
            "run", "--config", str(config),
            cwd=ROOT, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + STEP_TIMEOUT_S
            while True:
                assert proc.returncode is None, tail(log)
                with contextlib.suppress(OSError):
                    answer = await request(sock, {"cmd": "status"})
                    if answer["ok"]:
                        break
                assert loop.time() < end, "the service did not start:\n" + tail(log)
                await asyncio.sleep(0.1)
            yield sock
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    assert proc.returncode == 0, tail(log)


def tail(log: Path) -> str:
    """The end of the service's log, for assertion messages."""
    return log.read_text(errors="replace")[-3000:]


async def evse(sock: Path) -> dict[str, Any]:
    answer = await request(sock, {"cmd": "status"})
    assert answer["ok"], answer
    found: dict[str, Any] = answer["result"]["evse"][0]
    return found


async def sim(sock: Path, name: str, *args: str) -> None:
    answer = await request(sock, {"cmd": "sim", "evse": 1, "name": name, "args": list(args)})
    assert answer["ok"], answer


async def until(sock: Path, what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + STEP_TIMEOUT_S
    st = await evse(sock)
    while not check(st):
        assert loop.time() < end, f"timed out waiting for {what}; last status {st}"
        await asyncio.sleep(0.05)
        st = await evse(sock)
    return st


async def test_service_over_veth_slac_then_v2g_on_link_local_then_unplug(
    veth: Veth, tmp_path: Path
) -> None:
    line = SimulatedPlcLine(veth.ev_socket(), seed=5)  # the car's side of the power line
    line_task = asyncio.create_task(line.run())
    log = tmp_path / "service.log"
    try:
        async with service_in(veth, service_config(tmp_path, veth), log) as sock:
            st = await evse(sock)
            assert slac(st)["interface"] == veth.evse_if and slac(st)["state"] == "idle"
            await sim(sock, "plug")
            line.plug()
            st = await until(sock, "the PLC link", lambda s: slac(s).get("link_ready"))
            nmk = line.modem.nmk
            assert nmk is not None and line.car.joined_nmk == nmk
            assert slac(st)["ev_mac"] == "02:00:5a:fe:c0:01"
            st = await until(
                sock, "the charge loop", lambda s: iso(s).get("state") == "charge_loop"
            )
            assert iso(st)["tls"] is True
            await until(
                sock, "energy", lambda s: (s["meter"] or {}).get("import_energy_wh", 0) > 0.1
            )
            await sim(sock, "stop")
            await until(sock, "the session's end", lambda s: s["car_report"] is not None)
            await sim(sock, "unplug")
            line.unplug()
            st = await until(
                sock, "idle and the link left", lambda s: s["state"] == "idle"
                and slac(s)["state"] == "idle"
            )  # fmt: skip
            assert st["car_report"]["ok"], st["car_report"]
            assert line.modem.nmk not in (None, nmk)  # a fresh key: the car is out
            assert slac(st)["dropped"] == 0
    finally:
        line_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await line_task
    text = log.read_text()
    assert "server on [fe80::" in text and f"%{veth.evse_if}]" in text, text[-3000:]
    assert "PLC link ready on plc-evse" in text
