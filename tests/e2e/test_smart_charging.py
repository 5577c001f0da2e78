"""Smart charging end to end: a CSMS's charging profiles reach the real power path.

The whole service runs on simulated hardware (pilot board on a pty, power module
on a CAN bus, our own -20 car over TCP) and reports to the test CSMS, which
sends SetChargingProfile as a CSMS would; the test reads what the hardware does.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from chargepoint.app import Station
from chargepoint.config import parse_config
from tests.e2e.conftest import Client, stop_station
from tests.e2e.iso15118_support import car, car_session, iso, running_station, v2g_config
from tests.e2e.test_ocpp_station import csms_config, tx_events
from tests.ocpp.csms import Csms

#: IEC 61851-1: the EVSE changes the PWM at most once per 5 s and the EV follows a
#: lower offer within 5 s; a little margin for a loaded machine.
PWM_RULE_S = 5.0
EV_FOLLOWS_S = 5.0
MARGIN_S = 3.0


def max_profile(amps: float, profile_id: int = 1) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargingStationMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": 1,
                "startSchedule": "2026-01-01T00:00:00.000Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}],
            }
        ],
    }


async def call(csms: Csms, action: str, payload: dict[str, Any], unique_id: str) -> Any:
    answer = await csms.raw_call(json.dumps([2, unique_id, action, payload]), unique_id)
    assert answer[0] == 3, answer
    return answer[2]


async def start(tmp_path: Path, csms: Csms) -> tuple[Station, asyncio.Task[None]]:
    station = Station(parse_config(csms_config(tmp_path, csms.port), "test"))
    task = asyncio.create_task(station.run())
    await asyncio.wait_for(station.ready.wait(), 15)
    await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
    return station, task


async def test_a_station_max_profile_lowers_the_pwm_and_the_ev_follows(
    tmp_path: Path, csms: Csms
) -> None:
    station, task = await start(tmp_path, csms)
    try:
        client = Client(station)
        await client.sim("plug")
        st = await client.wait_for(
            lambda s: s["state"] == "charging" and (s["meter"] or {}).get("current_a", 0) > 15.0,
            timeout_s=20,
        )
        assert st["offered_current_a"] == 32.0
        sent_at = time.monotonic()
        answer = await call(
            csms, "SetChargingProfile", {"evseId": 0, "chargingProfile": max_profile(10.0)}, "p1"
        )
        assert answer == {"status": "Accepted"}
        st = await client.wait_for(lambda s: s["offered_current_a"] == 10.0, timeout_s=1.0)
        # the duty follows within the 5 s rule (10 A = 16.7 %), the EV within 5 s more
        st = await client.wait_for(
            lambda s: abs(s["pwm_duty_pct"] - 10.0 / 0.6) < 0.1, timeout_s=PWM_RULE_S + MARGIN_S
        )
        st = await client.wait_for(
            lambda s: (s["meter"] or {}).get("current_a", 99.0) <= 10.2,
            timeout_s=EV_FOLLOWS_S + MARGIN_S,
        )
        assert time.monotonic() - sent_at < PWM_RULE_S + EV_FOLLOWS_S + 2 * MARGIN_S
        assert st["state"] == "charging"
        # the transaction reports the change (LimitChangeSignificance 10 %)
        await csms.until(
            lambda: any(e["triggerReason"] == "ChargingRateChanged" for e in tx_events(csms)),
            within_s=5,
        )
        schedule = await call(
            csms,
            "GetCompositeSchedule",
            {"evseId": 1, "duration": 600, "chargingRateUnit": "A"},
            "c1",
        )
        assert schedule["status"] == "Accepted"
        assert schedule["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10.0
        # below 6 A basic charging pauses (no PWM), and resumes when the limit rises
        await call(
            csms, "SetChargingProfile", {"evseId": 0, "chargingProfile": max_profile(4.0)}, "p2"
        )
        await client.wait_for(
            lambda s: s["pwm_duty_pct"] is None and not s["permission"],
            timeout_s=PWM_RULE_S + MARGIN_S,
        )
        await call(csms, "ClearChargingProfile", {"chargingProfileId": 1}, "x1")
        await client.wait_for(
            lambda s: s["offered_current_a"] == 32.0 and s["state"] == "charging",
            timeout_s=PWM_RULE_S + EV_FOLLOWS_S + MARGIN_S,
        )
        await call(
            csms, "SetChargingProfile", {"evseId": 0, "chargingProfile": max_profile(13.0, 2)}, "p3"
        )
    finally:
        await stop_station(station, task)
    # a restart keeps the profile: it applies before any CSMS says anything
    async with Csms() as csms2:
        station, task = await start(tmp_path, csms2)
        try:
            client = Client(station)
            await client.sim("plug")
            st = await client.wait_for(lambda s: s["state"] == "charging", timeout_s=10)
            assert st["offered_current_a"] == 13.0
            schedule = await call(
                csms2, "GetCompositeSchedule", {"evseId": 1, "duration": 60}, "c2"
            )
            assert schedule["schedule"]["chargingSchedulePeriod"][0]["limit"] == 13.0
        finally:
            await stop_station(station, task)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


async def test_a_txprofile_limits_a_dc_session_within_one_charge_loop(
    tmp_path: Path, pki_dir: Path, csms: Csms
) -> None:
    config = v2g_config(tmp_path / "state", pki_dir, service="DC", csms_port=csms.port)
    async with running_station(config) as client:
        await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
        await client.plug_until_charge_loop()
        st = await client.until("more than 10 kW", lambda s: _power_w(s) > 10_000.0)
        await csms.until(lambda: tx_events(csms), within_s=5)
        tx_id = tx_events(csms)[0]["transactionInfo"]["transactionId"]
        profile = {
            "id": 9,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "transactionId": tx_id,
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000.0}],
                }
            ],
        }
        answer = await call(
            csms, "SetChargingProfile", {"evseId": 1, "chargingProfile": profile}, "tx1"
        )
        assert answer == {"status": "Accepted"}
        loops = car(await client.evse())["loops"]
        st = await client.until("asking at most 5 kW", lambda s: _commanded_w(s) <= 5000.0 * 1.02)
        # The next charge loop carries the limit to the power stage (the core tests pin
        # the exact loop); here one more loop of slack for the status poll in between.
        assert car(st)["loops"] <= loops + 2, (car(st)["loops"], loops)
        # the converter then ramps down at its own rate (simulated physics, not timed)
        st = await client.until("delivering at most 5 kW", lambda s: _power_w(s) <= 5000.0 * 1.02)
        assert iso(st)["evse_current_a"] > 0.0
        schedule = await call(
            csms,
            "GetCompositeSchedule",
            {"evseId": 1, "duration": 60, "chargingRateUnit": "W"},
            "c1",
        )
        assert schedule["schedule"]["chargingSchedulePeriod"][0]["limit"] == 5000.0


def _power_w(st: dict[str, Any]) -> float:
    session = iso(st)
    voltage = session.get("evse_voltage_v") or 0.0
    current = session.get("evse_current_a") or 0.0
    return float(voltage) * float(current)


def _commanded_w(st: dict[str, Any]) -> float:
    session = iso(st)
    voltage = session.get("evse_voltage_v") or 0.0
    current = session.get("commanded_current_a") or 0.0
    return float(voltage) * float(current)


def _tx_profile(tx_id: str, watts: float, profile_id: int = 11) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": tx_id,
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": watts}],
            }
        ],
    }


async def test_a_scheduled_session_asks_the_csms_and_follows_its_txprofile(
    tmp_path: Path, pki_dir: Path, csms: Csms
) -> None:
    """K15: the EV's needs reach the CSMS, whose TxProfile shapes the ScheduleTuples
    (ScheduleExchange waits Ongoing for it); the EV's pick is reported; a new
    TxProfile mid-charge makes the EV renegotiate (K16) and the power follows."""
    config = v2g_config(
        tmp_path / "state", pki_dir, service="DC", control_mode="scheduled", csms_port=csms.port
    )
    async with running_station(config) as client:
        await csms.until(lambda: csms.received("StatusNotification"), within_s=10)
        await client.sim("plug")
        await csms.until(lambda: csms.received("NotifyEVChargingNeeds"), within_s=20)
        needs = csms.received("NotifyEVChargingNeeds")[0][3]
        assert needs["evseId"] == 1
        assert needs["chargingNeeds"]["requestedEnergyTransfer"] == "DC"
        assert needs["chargingNeeds"]["dcChargingParameters"]["evMaxVoltage"] > 0
        await csms.until(lambda: tx_events(csms), within_s=5)
        tx_id = tx_events(csms)[0]["transactionInfo"]["transactionId"]
        # the session waits in ScheduleExchange for the profile
        assert iso(await client.evse()).get("state") == "schedule_exchange"
        answer = await call(
            csms,
            "SetChargingProfile",
            {"evseId": 1, "chargingProfile": _tx_profile(tx_id, 7000.0)},
            "p1",
        )
        assert answer == {"status": "Accepted"}
        await client.until("the charge loop", lambda s: iso(s).get("state") == "charge_loop")
        await csms.until(lambda: csms.received("NotifyEVChargingSchedule"), within_s=10)
        chosen = csms.received("NotifyEVChargingSchedule")[0][3]
        periods = chosen["chargingSchedule"]["chargingSchedulePeriod"]
        assert all(p["limit"] <= 7000.0 for p in periods)
        await client.until("delivering about 7 kW", lambda s: 6000.0 < _power_w(s) <= 7000.0 * 1.02)
        # a new TxProfile mid-charge: the EV is asked to renegotiate and picks from it
        answer = await call(
            csms,
            "SetChargingProfile",
            {"evseId": 1, "chargingProfile": _tx_profile(tx_id, 4000.0)},
            "p2",
        )
        assert answer == {"status": "Accepted"}
        st = await client.until(
            "a renegotiated schedule", lambda s: car_session(s).get("renegotiations", 0) >= 1
        )
        st = await client.until("at most 4 kW", lambda s: 0.0 < _power_w(s) <= 4000.0 * 1.02)
        assert iso(st).get("state") == "charge_loop"
        await csms.until(lambda: len(csms.received("NotifyEVChargingSchedule")) >= 2, within_s=10)
