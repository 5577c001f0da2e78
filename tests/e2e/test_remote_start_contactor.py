"""Issue 12: a remote start, a late energy request and a remote stop latch no fault.

The whole service on simulated hardware with a test CSMS (OCPP 2.0.1); the
station waits for authorisation (no free vend), so the remote start is what
offers energy. Every frame of ours is checked against the OCA schemas.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app import Station
from chargepoint.config import parse_config
from tests.e2e.conftest import Client, stop_station
from tests.e2e.test_ocpp_station import csms_config
from tests.ocpp.csms import Csms


@pytest.fixture
async def station(tmp_path: Path, csms: Csms) -> AsyncIterator[Station]:
    text = csms_config(tmp_path, csms.port).replace("autostart = true", "autostart = false")
    st = Station(parse_config(text, "test"))
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    yield st
    await stop_station(st, task)


def tx_events(csms: Csms) -> list[dict[str, Any]]:
    return [frame[3] for frame in csms.received("TransactionEvent")]


def connector_statuses(csms: Csms) -> list[str]:
    return [frame[3]["connectorStatus"] for frame in csms.received("StatusNotification")]


async def watch_faults(client: Client, seen: list[dict[str, Any]]) -> None:
    """Collect every fault the EVSE shows while the scenario runs."""
    while True:
        seen.extend(f for f in (await client.evse())["faults"] if f not in seen)
        await asyncio.sleep(0.02)


async def test_remote_start_late_energy_request_remote_stop_latches_no_fault(
    station: Station, csms: Csms
) -> None:
    """Steps (issue 12, as found while driving OCTT TC_F_01/TC_F_03-style remote start):
    1. the EV is plugged in and does not ask for energy; no authorisation, no PWM;
    2. the CSMS sends RequestStartTransaction: Accepted, the PWM offer starts;
    3. about 3 s later the EV asks for energy (state C): the contactor closes;
    4. it charges for a few seconds;
    5. the CSMS sends RequestStopTransaction: Accepted;
    6. the contactor opens, no fault is latched, the connector never reports Faulted,
       and the transaction ends with stoppedReason Remote."""
    client = Client(station)
    await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
    faults: list[dict[str, Any]] = []
    watcher = asyncio.create_task(watch_faults(client, faults))
    try:
        await client.sim("plug", "idle")
        await client.wait_for(lambda s: s["state"] == "connected")
        await asyncio.sleep(0.3)
        assert (await client.evse())["pwm_duty_pct"] is None

        answer = await csms.raw_call(
            '[2, "start-1", "RequestStartTransaction", {"evseId": 1, "remoteStartId": 12, '
            '"idToken": {"idToken": "TAG-12", "type": "Central"}}]',
            "start-1",
        )
        assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
        await client.wait_for(lambda s: s["state"] == "ready")
        await asyncio.sleep(3.0)
        await client.sim("start")
        await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
        await csms.until(
            lambda: any(
                e["transactionInfo"].get("chargingState") == "Charging" for e in tx_events(csms)
            ),
            within_s=10,
        )
        await asyncio.sleep(3.0)
        assert (await client.evse())["contactor_closed"]

        tx_id = tx_events(csms)[0]["transactionInfo"]["transactionId"]
        answer = await csms.raw_call(
            f'[2, "stop-1", "RequestStopTransaction", {{"transactionId": "{tx_id}"}}]', "stop-1"
        )
        assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
        await client.wait_for(
            lambda s: s["state"] == "connected" and not s["permission"] and s["cp"] == "B"
        )
        await csms.until(lambda: tx_events(csms)[-1]["eventType"] == "Ended", within_s=10)
        await asyncio.sleep(1.5)  # longer than every contactor timeout
    finally:
        watcher.cancel()
    st = await client.evse()
    assert faults == [] and st["faults"] == []
    assert st["state"] == "connected" and not st["contactor_closed"]
    ended = tx_events(csms)[-1]
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert "Faulted" not in connector_statuses(csms)
