"""The whole station on simulated hardware, reporting to a CSMS over OCPP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app import Station
from chargepoint.config import parse_config
from tests.e2e.conftest import SIM_TOML, Client, stop_station
from tests.ocpp.csms import Csms


def csms_config(tmp_path: Path, port: int) -> str:
    text = SIM_TOML.read_text()
    text = text.replace('"/tmp/chargepoint-sim.sock"', f'"{tmp_path / "control.sock"}"')
    text = text.replace('"/tmp/chargepoint-sim"', f'"{tmp_path / "state"}"')
    return text + (
        "\n[csms]\n"
        f'url = "ws://127.0.0.1:{port}/ocpp"\n'
        "security_profile = 1\n"
        'subprotocols = ["ocpp2.0.1"]\n'
        'password = { value = "correct-horse-battery" }\n'
    )


@pytest.fixture
async def station(tmp_path: Path, csms: Csms) -> AsyncIterator[Station]:
    config = parse_config(csms_config(tmp_path, csms.port), "test")
    st = Station(config)
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    yield st
    await stop_station(st, task)


def tx_events(csms: Csms) -> list[dict[str, Any]]:
    return [frame[3] for frame in csms.received("TransactionEvent")]


async def test_session_is_reported_as_a_transaction(station: Station, csms: Csms) -> None:
    await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await csms.until(lambda: tx_events(csms), within_s=10)
    started = tx_events(csms)[0]
    assert started["eventType"] == "Started" and started["seqNo"] == 0
    assert started["evse"] == {"id": 1, "connectorId": 1}
    await csms.until(
        lambda: any(
            e["transactionInfo"].get("chargingState") == "Charging" for e in tx_events(csms)
        ),
        within_s=10,
    )
    await client.sim("stop")
    await client.wait_for(lambda s: s["cp"] == "B")
    await client.sim("unplug")
    await client.wait_for(lambda s: s["state"] == "idle")
    await csms.until(lambda: tx_events(csms)[-1]["eventType"] == "Ended", within_s=10)
    events = tx_events(csms)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
    # E01/E02: started at plug-in (EVConnected + free-vend Authorized), the charging
    # state follows the power path and the energy flow, ended when the EV left.
    states = [e["transactionInfo"].get("chargingState") for e in events]
    assert "Charging" in states
    assert events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"

    def statuses() -> list[str]:
        return [f[3]["connectorStatus"] for f in csms.received("StatusNotification")]

    await csms.until(lambda: statuses()[-1] == "Available", within_s=10)
    assert "Occupied" in statuses()


async def test_remote_stop_ends_charging(station: Station, csms: Csms) -> None:
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await csms.until(lambda: tx_events(csms), within_s=10)
    tx_id = tx_events(csms)[0]["transactionInfo"]["transactionId"]
    answer = await csms.raw_call(
        f'[2, "stop-1", "RequestStopTransaction", {{"transactionId": "{tx_id}"}}]', "stop-1"
    )
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    await client.wait_for(lambda s: not s["permission"] and s["state"] in ("stopping", "connected"))
    await csms.until(lambda: tx_events(csms)[-1]["eventType"] == "Ended", within_s=10)
    ended = tx_events(csms)[-1]
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert ended["triggerReason"] == "RemoteStop"


@pytest.fixture
async def manual_station(tmp_path: Path, csms: Csms) -> AsyncIterator[Station]:
    """A station that waits for authorisation (no free vend)."""
    text = csms_config(tmp_path, csms.port).replace("autostart = true", "autostart = false")
    st = Station(parse_config(text, "test"))
    task = asyncio.create_task(st.run())
    await asyncio.wait_for(st.ready.wait(), 15)
    yield st
    await stop_station(st, task)


async def test_remote_start_offers_energy(manual_station: Station, csms: Csms) -> None:
    client = Client(manual_station)
    await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
    await client.sim("plug")
    st = await client.wait_for(lambda s: s["state"] == "connected")
    await asyncio.sleep(0.3)
    assert (await client.evse())["pwm_duty_pct"] is None  # no authorisation, no PWM
    answer = await csms.raw_call(
        '[2, "start-1", "RequestStartTransaction", '
        '{"evseId": 1, "remoteStartId": 7, "idToken": {"idToken": "TAG-1", "type": "Central"}}]',
        "start-1",
    )
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    st = await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    assert st["pwm_duty_pct"] is not None
    await csms.until(lambda: tx_events(csms), within_s=10)
    first = tx_events(csms)[0]
    assert first["eventType"] == "Started"
    # TxStartPoint EVConnected: the cable started it; the remote start arrives as an update
    await csms.until(
        lambda: any(e["triggerReason"] == "RemoteStart" for e in tx_events(csms)), within_s=10
    )
    authorized = [e for e in tx_events(csms) if e["triggerReason"] == "RemoteStart"]
    assert authorized[0]["idToken"]["idToken"] == "TAG-1"


async def test_change_availability_makes_the_evse_unavailable(station: Station, csms: Csms) -> None:
    client = Client(station)
    await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
    answer = await csms.raw_call(
        '[2, "av-1", "ChangeAvailability", '
        '{"operationalStatus": "Inoperative", "evse": {"id": 1}}]',
        "av-1",
    )
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    await csms.until(
        lambda: csms.received("StatusNotification")[-1][3]["connectorStatus"] == "Unavailable",
        within_s=10,
    )
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "connected")
    await asyncio.sleep(0.3)
    assert (await client.evse())["pwm_duty_pct"] is None  # inoperative: no energy offered
    answer = await csms.raw_call(
        '[2, "av-2", "ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}}]',
        "av-2",
    )
    await client.wait_for(lambda s: s["state"] == "charging")


async def test_reset_immediate_stops_the_service_for_a_restart(
    station: Station, csms: Csms
) -> None:
    await csms.until(lambda: csms.cp is not None and csms.received("StatusNotification"), 10)
    answer = await csms.raw_call('[2, "rs-1", "Reset", {"type": "Immediate"}]', "rs-1")
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    for _ in range(200):
        if station.restart_requested:
            break
        await asyncio.sleep(0.05)
    assert station.restart_requested


async def test_change_availability_during_a_session_is_scheduled(
    station: Station, csms: Csms
) -> None:
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging")
    await csms.until(lambda: tx_events(csms), within_s=10)
    answer = await csms.raw_call(
        '[2, "av-3", "ChangeAvailability", '
        '{"operationalStatus": "Inoperative", "evse": {"id": 1}}]',
        "av-3",
    )
    assert answer[2]["status"] == "Scheduled", answer
    await asyncio.sleep(0.5)
    assert (await client.evse())["state"] == "charging"  # G03.FR.05: the session goes on
    await client.sim("stop")
    await client.wait_for(lambda s: s["cp"] == "B")
    await client.sim("unplug")
    await csms.until(
        lambda: csms.received("StatusNotification")[-1][3]["connectorStatus"] == "Unavailable",
        within_s=10,
    )
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "connected")
    await asyncio.sleep(0.3)
    assert (await client.evse())["pwm_duty_pct"] is None


async def test_evse_reset_stops_that_evse_only(station: Station, csms: Csms) -> None:
    client = Client(station)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging")
    answer = await csms.raw_call('[2, "rs-2", "Reset", {"type": "Immediate", "evseId": 1}]', "rs-2")
    assert answer[0] == 3 and answer[2]["status"] in ("Accepted", "Scheduled"), answer
    await client.wait_for(lambda s: not s["permission"])
    assert not station.restart_requested  # the service itself keeps running
