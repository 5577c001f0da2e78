"""Offline operation: nothing the station did while the CSMS was away is lost.

The simulated EV keeps charging while the CSMS is gone, then stops and
unplugs; when the CSMS is back every TransactionEvent arrives, in seqNo order,
the offline ones flagged (OCPP 2.0.1 E04). The second test kills the station
process with SIGKILL in the middle of the transaction and restarts it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app import Station
from chargepoint.config import parse_config
from tests.e2e.conftest import ROOT, Client
from tests.e2e.test_ocpp_station import csms_config, tx_events
from tests.ocpp.csms import Csms
from tests.ocpp.test_client import set_variables

FAST = {
    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"): "1",
    ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0",
    ("OCPPCommCtrlr", "RetryBackOffRepeatTimes"): "0",
    ("SampledDataCtrlr", "TxUpdatedInterval"): "1",
}


def check_delivery(events: list[dict[str, Any]]) -> None:
    """Started .. Ended, one transaction, seqNo 0..n without gaps.

    Delivery is at least once: a message the CSMS got but whose answer the
    station never recorded (killed in between) is sent again, identical, and
    the CSMS recognises it by its seqNo. Anything else under one seqNo is a bug.
    """
    by_seq: dict[int, dict[str, Any]] = {}
    for event in events:
        first = by_seq.setdefault(event["seqNo"], event)
        assert first == event, f"two different events with seqNo {event['seqNo']}"
    order = [e["seqNo"] for e in events]
    assert order == sorted(order), f"out of order: {order}"
    events = [by_seq[n] for n in sorted(by_seq)]
    assert events[0]["eventType"] == "Started" and events[-1]["eventType"] == "Ended"
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1


@pytest.fixture
async def csms() -> AsyncIterator[Csms]:
    async with Csms() as server:
        yield server


async def test_csms_away_mid_transaction(tmp_path: Path, csms: Csms) -> None:
    station = Station(parse_config(csms_config(tmp_path, csms.port), "test"))
    task = asyncio.create_task(station.run())
    try:
        await asyncio.wait_for(station.ready.wait(), 15)
        await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
        assert set(await set_variables(csms, FAST)) == {"Accepted"}
        client = Client(station)
        await client.sim("plug")
        await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
        await csms.until(lambda: tx_events(csms), within_s=10)

        await csms.stop()  # the CSMS goes away
        online = len(tx_events(csms))
        await asyncio.sleep(2.5)  # charging goes on: periodic Updated events queue up
        st = await client.evse()
        assert st["state"] == "charging"
        await client.sim("stop")
        await client.wait_for(lambda s: s["cp"] == "B")
        await client.sim("unplug")
        await client.wait_for(lambda s: s["state"] == "idle")

        await csms.start()  # back on the same port
        await csms.until(lambda: tx_events(csms)[-1]["eventType"] == "Ended", within_s=20)
        events = tx_events(csms)
        check_delivery(events)
        offline = events[online:]
        assert len(offline) >= 2
        assert all(e.get("offline") is True for e in offline if e["eventType"] == "Ended")
        assert any(e.get("offline") is True for e in offline)
    finally:
        station.stop()
        await asyncio.wait_for(task, 15)


async def test_station_killed_mid_transaction_and_restarted(tmp_path: Path, csms: Csms) -> None:
    config = tmp_path / "station.toml"
    config.write_text(csms_config(tmp_path, csms.port))
    sock = tmp_path / "control.sock"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "chargepoint", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def sim(name: str) -> None:
        """Drive the simulated EV exactly as a user does: `chargepoint sim NAME`."""
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "chargepoint", "sim", name, "--socket", str(sock)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    async def wait_socket() -> None:
        end = time.monotonic() + 20
        while not sock.exists():
            assert time.monotonic() < end
            await asyncio.sleep(0.05)

    proc = start()
    try:
        await wait_socket()
        await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 15)
        assert set(await set_variables(csms, FAST)) == {"Accepted"}
        await sim("plug")
        await csms.until(lambda: tx_events(csms), within_s=15)
        await csms.until(lambda: len(tx_events(csms)) >= 2, within_s=15)  # some Updated
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    sock.unlink(missing_ok=True)
    before = tx_events(csms)
    proc = start()  # power back: the transaction that was running must be ended
    try:
        await wait_socket()
        await csms.until(
            lambda: (
                len(tx_events(csms)) > len(before) and tx_events(csms)[-1]["eventType"] == "Ended"
            ),
            within_s=20,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    events = tx_events(csms)
    check_delivery(events)
    ended = events[-1]
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["triggerReason"] == "AbnormalCondition" and ended["offline"] is True
