"""ISO 15118-20 sessions that end early, end to end: every way ends in the safe state.

The EVSE stops, the car misbehaves (out of sequence, silent, gone) or is
unplugged under load. The service runs whole on simulated hardware with our
simulated car over TLS 1.3 (see ``test_iso15118_sessions``); the power stage
and the pilot board are wrapped to record the order of the safety commands.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chargepoint.iso15118.secc.actions import RequestPower, SendData
from hal.power_stage import PowerMode
from tests.e2e.iso15118_support import (
    OFF_CURRENT_A,
    CommandLog,
    V2gClient,
    assert_safe,
    assert_summary_matches_meter,
    car,
    iso,
    record_commands,
    record_secc,
    running_station,
    v2g_config,
)
from tests.ocpp.csms import Csms

CHARGE_WH = 0.5
CHARGE_LOOP_TIMEOUT_S = 0.5  # [V2G20-1500]: the SECC waits this long after a loop response


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("v2g") / "pki"


@pytest.fixture
async def client(tmp_path: Path, pki_dir: Path) -> AsyncIterator[V2gClient]:
    """A DC_BPT station and our car, charging in the -20 charge loop."""
    async with running_station(v2g_config(tmp_path / "state", pki_dir)) as c:
        await c.plug_until_charge_loop()
        await c.imported_more(CHARGE_WH)
        yield c


def assert_shut_down_in_order(log: CommandLog) -> None:
    """When the contactor permission went off, the last power-stage command was Off and
    the stage had confirmed it (current below threshold); no power was commanded after."""
    whats = log.whats()
    permission_off = log.index("permission off")
    assert permission_off > -1, whats
    stage = [w for w in whats[:permission_off] if w.startswith("stage")]
    assert stage[-2:] == ["stage off", "stage off done"], whats
    step = log.steps[permission_off]
    assert step.module_mode is PowerMode.OFF, step  # the module itself, across the CAN bus
    assert abs(step.dc_current_a) < OFF_CURRENT_A, step  # no current when the contactors open
    later = whats[permission_off:]
    assert "stage export" not in later and "stage import" not in later, later


async def test_evse_initiated_stop_terminates_the_session(client: V2gClient) -> None:
    log = record_commands(client.station)
    secc = record_secc(client.station)
    await client("stop", evse=1)  # the operator
    st = await client.until_session_over()
    # the energy stops at once (0 A; one loop request may have been in flight), before
    # the EV has even seen the notification, and stays stopped
    currents = [a.current_a for _, a in secc.actions if isinstance(a, RequestPower)]
    assert 0.0 in currents[:2] and set(currents[currents.index(0.0) :]) == {0.0}, currents
    report = st["car_report"]
    # EVSENotification Terminate in a loop response: the car stops as the standard says
    assert report["ok"] and report["end_reason"] == "evse_terminate", report["error"]
    messages: list[str] = report["messages"]
    tail = messages[len(messages) - messages[::-1].index("DC_ChargeLoopRes") :]
    assert tail[:3] == ["PowerDeliveryReq", "PowerDeliveryRes", "DC_WeldingDetectionReq"], tail
    assert tail[-2:] == ["SessionStopReq", "SessionStopRes"], tail
    assert iso(st)["last_end"] == "terminated by the EV"
    st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
    assert_safe(client, st)
    assert st["state"] != "charging" and not client.station.runners[1].controller.authorized
    assert_shut_down_in_order(log)


async def test_out_of_sequence_request_fails_the_session_safely(client: V2gClient) -> None:
    log = record_commands(client.station)
    await client.sim("car-fault", "out_of_sequence")
    st = await client.until("the session to fail", lambda s: iso(s)["last_end"] != "")
    assert "FAILED_SequenceError" in iso(st)["last_end"], iso(st)
    st = await client.until_session_over()
    assert st["car_report"]["end_reason"] == "fault_out_of_sequence"
    assert not st["car_report"]["ok"]
    st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
    assert_safe(client, st)
    assert_shut_down_in_order(log)
    assert iso(st)["state"] in ("ended", "idle")


async def test_silent_car_is_timed_out_after_half_a_second(client: V2gClient) -> None:
    log = record_commands(client.station)
    secc = record_secc(client.station)
    loops = car(await client.evse())["loops"]
    await client.until("recorded loops", lambda s: car(s)["loops"] >= loops + 2)
    await client.sim("car-fault", "silent")
    st = await client.until("the session to fail", lambda s: iso(s)["last_end"] != "")
    assert iso(st)["last_end"] == "no request within the charge-loop timeout", iso(st)
    ended_at = secc.ended_at()
    sent = [t for t, a in secc.actions if isinstance(a, SendData)]
    assert ended_at is not None and sent
    waited = ended_at - sent[-1]  # [V2G20-1500]: 0.5 s after the last charge-loop response
    assert CHARGE_LOOP_TIMEOUT_S <= waited < CHARGE_LOOP_TIMEOUT_S + 0.25, waited
    st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
    assert_safe(client, st)
    assert_shut_down_in_order(log)
    st = await client.until_session_over()
    assert st["car_report"]["end_reason"] == "fault_silent"


async def test_car_that_drops_the_connection_leaves_the_evse_safe(client: V2gClient) -> None:
    log = record_commands(client.station)
    await client.sim("car-fault", "disappear")
    st = await client.until("the session to fail", lambda s: iso(s)["last_end"] != "")
    assert "connection" in iso(st)["last_end"], iso(st)
    # the car is gone and has not given up its side yet: the EVSE opens by itself
    st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
    assert car(st)["state"] == "disappeared", car(st)
    assert_safe(client, st)
    assert_shut_down_in_order(log)


async def test_unplug_under_load_switches_power_off_before_the_contactors(
    client: V2gClient,
) -> None:
    log = record_commands(client.station)
    assert client.hw.world.plant.dc_current_a > 1.0  # energy is flowing
    st = await client.unplug_until_summary()
    assert_shut_down_in_order(log)
    assert_safe(client, st)
    assert iso(st)["last_end"] == "EV unplugged (CP A)"
    assert st["last_session"]["end_reason"] == "ev_disconnected"
    assert_summary_matches_meter(st)


# --------------------------------------------------------------------------- with a CSMS


def tx_events(csms: Csms) -> list[dict[str, Any]]:
    return [frame[3] for frame in csms.received("TransactionEvent")]


def soc_values(event: dict[str, Any]) -> list[float]:
    return [
        float(value["value"])
        for meter_value in event.get("meterValue", [])
        for value in meter_value["sampledValue"]
        if value.get("measurand") == "SoC"
    ]


async def test_unplug_ends_the_ocpp_transaction_with_the_ev_soc(
    tmp_path: Path, pki_dir: Path
) -> None:
    async with Csms() as csms:
        config = v2g_config(tmp_path / "state", pki_dir, csms_port=csms.port)
        async with running_station(config) as client:
            await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
            interval = {
                "attributeValue": "1",
                "component": {"name": "SampledDataCtrlr"},
                "variable": {"name": "TxUpdatedInterval"},
            }
            call = json.dumps([2, "sv-1", "SetVariables", {"setVariableData": [interval]}])
            answer = await csms.raw_call(call, "sv-1")
            assert answer[2]["setVariableResult"][0]["attributeStatus"] == "Accepted", answer
            await client.plug_until_charge_loop()
            # the EV's SoC from the -20 session goes into the transaction's meter values
            await csms.until(lambda: any(soc_values(e) for e in tx_events(csms)), within_s=5)
            socs = [v for e in tx_events(csms) for v in soc_values(e)]
            assert all(35.0 <= v <= 45.0 for v in socs), socs  # the car starts at 40 %
            before_unplug = len(tx_events(csms))
            await client.sim("unplug")
            await csms.until(
                lambda: any(e["eventType"] == "Ended" for e in tx_events(csms)), within_s=5
            )
            events = tx_events(csms)
            ended = [i for i, e in enumerate(events) if e["eventType"] == "Ended"]
            assert ended == [len(events) - 1] and ended[0] >= before_unplug
            assert events[-1]["transactionInfo"]["stoppedReason"] == "EVDisconnected"
            assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
            st = await client.until(
                "idle, contactors open",
                lambda s: s["state"] == "idle" and not s["contactor_closed"],
            )
            assert iso(st)["last_end"] == "EV unplugged (CP A)"
            assert_safe(client, st)
