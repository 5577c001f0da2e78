"""Reset (OCTT TC_B_21, TC_B_22, TC_B_23) with the real service on simulated hardware.

The station runs in this process; when the CSMS resets it, :meth:`Station.run`
returns with ``restart_requested`` (the CLI then exits 75 and systemd starts it
again), and the test starts a new :class:`Station` on the same configuration and
state directory, as systemd would.  Every frame of ours is checked against the
OCA schemas with strict timestamps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargepoint.app import Station
from chargepoint.config import Config, parse_config
from tests.e2e.conftest import Client, stop_station
from tests.e2e.test_ocpp_station import csms_config, tx_events
from tests.ocpp.csms import Csms


async def start(config: Config) -> tuple[Station, asyncio.Task[None]]:
    station = Station(config)
    task = asyncio.create_task(station.run())
    await asyncio.wait_for(station.ready.wait(), 15)
    return station, task


async def restarted(station: Station, task: asyncio.Task[None], within_s: float = 20) -> None:
    """The service stopped by itself, asking systemd for a restart."""
    done, _ = await asyncio.wait({task}, timeout=within_s)
    if not done:
        await stop_station(station, task)
        raise AssertionError("the station did not restart")
    task.result()
    assert station.restart_requested


def boots(csms: Csms) -> list[dict[str, Any]]:
    return [frame[3] for frame in csms.received("BootNotification")]


def position(csms: Csms, predicate: Callable[[Any], bool]) -> int:
    """Index among the station's CALLs of the first one ``predicate`` accepts."""
    return next(i for i, frame in enumerate(csms.received()) if predicate(frame))


def is_ended(frame: Any) -> bool:
    return bool(frame[2] == "TransactionEvent" and frame[3]["eventType"] == "Ended")


def is_reboot(frame: Any) -> bool:
    return bool(frame[2] == "BootNotification" and frame[3]["reason"] == "RemoteReset")


def after_reboot(csms: Csms, action: str) -> list[Any]:
    """The ``action`` CALLs sent after the RemoteReset BootNotification."""
    frames = csms.received()
    reboot = [i for i, f in enumerate(frames) if is_reboot(f)]
    return [f for f in frames[reboot[0] :] if f[2] == action] if reboot else []


async def charging(client: Client, csms: Csms) -> None:
    await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
    await client.sim("plug")
    await client.wait_for(lambda s: s["state"] == "charging" and s["contactor_closed"])
    await csms.until(
        lambda: any(
            e["transactionInfo"].get("chargingState") == "Charging" for e in tx_events(csms)
        ),
        within_s=10,
    )


async def test_tc_b_22_reset_immediate_ends_the_transaction_before_the_reboot(
    tmp_path: Path, csms: Csms
) -> None:
    """TC_B_22: 1. Reset Immediate during a transaction; 2. Accepted; 3. TransactionEvent
    Ended (ResetCommand, EVConnected, ImmediateReset); 4. answered; the station reboots;
    5. BootNotification RemoteReset; 7. the state of every connector."""
    config = parse_config(csms_config(tmp_path, csms.port), "test")
    station, task = await start(config)
    await charging(Client(station), csms)
    answer = await csms.raw_call('[2, "rs", "Reset", {"type": "Immediate"}]', "rs")
    assert answer == [3, "rs", {"status": "Accepted"}]
    await restarted(station, task)

    station, task = await start(config)  # systemd brings the service back
    try:
        await csms.until(lambda: after_reboot(csms, "StatusNotification"), within_s=15)
    finally:
        await stop_station(station, task)
    assert [b["reason"] for b in boots(csms)] == ["PowerUp", "RemoteReset"]
    ended = [e for e in tx_events(csms) if e["eventType"] == "Ended"]
    assert len(ended) == 1  # and none as PowerLoss after the reboot
    assert ended[0]["triggerReason"] == "ResetCommand"
    assert ended[0]["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended[0]["transactionInfo"]["chargingState"] == "EVConnected"
    assert "offline" not in ended[0]
    assert position(csms, is_ended) < position(csms, is_reboot)


async def test_tc_b_21_reset_on_idle_waits_for_the_session_to_end(
    tmp_path: Path, csms: Csms
) -> None:
    """TC_B_21: 1. Reset OnIdle during a transaction; 2. Scheduled; 3.-5. the EV stops and
    leaves (Ended); 7. then the station reboots: BootNotification RemoteReset."""
    config = parse_config(csms_config(tmp_path, csms.port), "test")
    station, task = await start(config)
    client = Client(station)
    await charging(client, csms)
    answer = await csms.raw_call('[2, "rs", "Reset", {"type": "OnIdle"}]', "rs")
    assert answer == [3, "rs", {"status": "Scheduled"}]
    await asyncio.sleep(0.5)
    assert (await client.evse())["state"] == "charging"  # B12.FR.01: the charge goes on
    assert not task.done()
    await client.sim("stop")
    await client.wait_for(lambda s: s["cp"] == "B")
    await client.sim("unplug")
    await restarted(station, task)

    station, task = await start(config)
    try:
        await csms.until(lambda: len(boots(csms)) == 2, within_s=15)
    finally:
        await stop_station(station, task)
    assert boots(csms)[1]["reason"] == "RemoteReset"
    assert position(csms, is_ended) < position(csms, is_reboot)
    ended = [e for e in tx_events(csms) if e["eventType"] == "Ended"]
    assert len(ended) == 1
    assert ended[0]["transactionInfo"]["stoppedReason"] == "EVDisconnected"


async def test_tc_b_23_inoperative_survives_a_reset(tmp_path: Path, csms: Csms) -> None:
    """TC_B_23 / TC_G_18: ChangeAvailability Inoperative for EVSE 1; Reset OnIdle; after
    the reboot (RemoteReset) the connector is reported Unavailable and offers no energy."""
    config = parse_config(csms_config(tmp_path, csms.port), "test")
    station, task = await start(config)
    await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
    answer = await csms.raw_call(
        '[2, "av", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}]',
        "av",
    )
    assert answer == [3, "av", {"status": "Accepted"}]
    answer = await csms.raw_call('[2, "rs", "Reset", {"type": "OnIdle"}]', "rs")
    assert answer == [3, "rs", {"status": "Accepted"}]
    await restarted(station, task)

    station, task = await start(config)
    try:
        await csms.until(lambda: after_reboot(csms, "StatusNotification"), within_s=15)
        first = {}  # the first status reported per EVSE after the reboot
        for frame in after_reboot(csms, "StatusNotification"):
            first.setdefault(frame[3]["evseId"], frame[3]["connectorStatus"])
        assert first == {1: "Unavailable"}
        client = Client(station)
        await client.sim("plug")
        await client.wait_for(lambda s: s["state"] == "connected")
        await asyncio.sleep(0.3)
        assert (await client.evse())["pwm_duty_pct"] is None  # inoperative: no energy
    finally:
        await stop_station(station, task)
