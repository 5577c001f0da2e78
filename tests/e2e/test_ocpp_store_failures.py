"""Charging never depends on the OCPP state file (issue 10 item 2).

A corrupt state file is moved aside (kept for forensics) and a fresh one is
used; a full file system (a tmpfs the test mounts, as root) makes writes fail.
Either way a simulated session charges from plug to unplug, the service stays
up, and the CSMS hears about it as a ChargingStation problem (NotifyEvent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app import Station
from chargepoint.config import parse_config
from tests.e2e.conftest import Client
from tests.e2e.test_ocpp_station import csms_config
from tests.ocpp.csms import Csms


@contextlib.asynccontextmanager
async def station_with_csms(tmp_path: Path, csms: Csms) -> AsyncIterator[Station]:
    station = Station(parse_config(csms_config(tmp_path, csms.port), "test"))
    task = asyncio.create_task(station.run())
    try:
        await asyncio.wait_for(station.ready.wait(), 15)
        yield station
        assert not task.done(), "the service stopped"
    finally:
        station.stop()
        await asyncio.wait({task}, timeout=15)
    task.result()


def problems(csms: Csms, code: str) -> list[dict[str, Any]]:
    found = []
    for frame in csms.received("NotifyEvent"):
        for data in frame[3]["eventData"]:
            if data.get("techCode") == code:
                found.append(data)
    return found


async def charge_once(station: Station, csms: Csms) -> None:
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await client.wait_for(lambda s: (s["meter"] or {}).get("import_energy_wh", 0) > 0.01)
    await client.sim("unplug")
    await client.wait_for(lambda s: s["state"] == "idle" and s["last_session"] is not None)
    await csms.until(
        lambda: any(f[3]["eventType"] == "Ended" for f in csms.received("TransactionEvent")),
        within_s=10,
    )


async def test_a_corrupt_state_file_is_moved_aside_and_charging_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    garbage = b"SQLite format 3\x00" + os.urandom(3000)  # a header, then rubbish pages
    (state / "ocpp.sqlite3").write_bytes(garbage)
    async with Csms() as csms, station_with_csms(tmp_path, csms) as station:
        await charge_once(station, csms)
        await csms.until(lambda: problems(csms, "StateFile"), within_s=10)
    (problem,) = problems(csms, "StateFile")
    assert "corrupt" in problem["techInfo"] and "moved aside" in problem["techInfo"]
    (aside,) = state.glob("ocpp.sqlite3.corrupt-*")
    assert aside.read_bytes() == garbage  # kept for forensics
    assert (state / "ocpp.sqlite3").read_bytes()[:16] == b"SQLite format 3\x00"


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tiny tmpfs as the state directory (root only; skipped elsewhere)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(state)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


async def test_a_full_file_system_mid_service_does_not_stop_charging(full_tmpfs: Path) -> None:
    tmp_path = full_tmpfs.parent
    async with Csms() as csms, station_with_csms(tmp_path, csms) as station:
        await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
        filler = fill(full_tmpfs)  # now every write to the state file fails
        await charge_once(station, csms)
        await csms.until(lambda: problems(csms, "StateFile"), within_s=10)
        assert "OCPP state kept in memory" in problems(csms, "StateFile")[0]["techInfo"]
        filler.unlink()  # space again: the next write ends the problem
        await charge_once(station, csms)
        await csms.until(
            lambda: any(p.get("cleared") for p in problems(csms, "StateFile")), within_s=10
        )


async def test_a_full_file_system_at_start_keeps_state_in_memory(full_tmpfs: Path) -> None:
    fill(full_tmpfs)
    tmp_path = full_tmpfs.parent
    async with Csms() as csms, station_with_csms(tmp_path, csms) as station:
        await charge_once(station, csms)
        await csms.until(lambda: problems(csms, "StateFile"), within_s=10)
