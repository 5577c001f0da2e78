"""Smart charging in the OCPP core (block K), with a fake clock: the test plays the CSMS.

Every SetChargingProfileRequest here is checked against the OCPP JSON schema by
the core itself (incoming CALLs are validated), and every message the station
sends is validated before it goes out (``OcppSchemas`` validates our own).
"""

from __future__ import annotations

from typing import Any

from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station_io import (
    ChargingLimit,
    IdToken,
    SchedulePeriodW,
    SessionEnded,
    SessionStarted,
    StoppedReason,
)
from tests.ocpp.helpers import FakeStore, Harness, calls
from tests.ocpp.test_station import sample

#: The harness's UTC at now = 1000: 2026-01-01T00:00:00Z; the boot answer says 00:00:10.
MIDNIGHT = "2026-01-01T00:00:00.000Z"


def profile(
    profile_id: int,
    limit: float,
    *,
    purpose: str = "ChargingStationMaxProfile",
    stack_level: int = 0,
    unit: str = "A",
    kind: str = "Absolute",
    periods: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "id": profile_id,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": limit}],
    }
    if kind != "Relative":
        schedule["startSchedule"] = MIDNIGHT
    body: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
    }
    body.update(extra)
    return body


def booted(
    store: FakeStore | None = None, version: ProtocolVersion = ProtocolVersion.V201
) -> Harness:
    h = Harness(store)
    frames = h.connect(version)
    h.answer_all(
        h.reply(
            frames[-1],
            {"currentTime": "2026-01-01T00:00:10.000Z", "interval": 300, "status": "Accepted"},
        )
    )
    h.commands.clear()
    return h


def set_profile(
    h: Harness, evse_id: int, body: dict[str, Any], msg_id: str = "s1"
) -> dict[str, Any]:
    answer = h.receive(
        [2, msg_id, "SetChargingProfile", {"evseId": evse_id, "chargingProfile": body}]
    )
    assert answer[0][:2] == [3, msg_id], answer
    result: dict[str, Any] = answer[0][2]
    return result


def limits(h: Harness) -> dict[int, ChargingLimit]:
    out: dict[int, ChargingLimit] = {}
    for command in h.commands:
        if isinstance(command, ChargingLimit):
            out[command.evse_id] = command
    return out


def test_a_station_max_profile_limits_every_evse_at_once() -> None:
    h = booted()
    assert set_profile(h, 0, profile(1, 10.0)) == {"status": "Accepted"}
    applied = limits(h)
    assert applied[1] == ChargingLimit(
        1,
        current_a=10.0,
        power_w=10.0 * 230 * 3,
        number_phases=None,
        # the schedule ahead, from now (00:00:10Z after the boot answer's clock)
        schedule=(SchedulePeriodW(1767225610, 10.0 * 230 * 3),),
    )
    assert applied[2].current_a == 10.0


def test_no_profile_no_command() -> None:
    h = booted()
    h.advance(3600)
    assert limits(h) == {}


def test_profiles_survive_a_restart() -> None:
    store = FakeStore()
    h = booted(store)
    set_profile(h, 1, profile(7, 16.0, purpose="TxDefaultProfile"))
    assert store.state["charging_profiles"]["profiles"]
    again = Harness(store)
    again.station.start(again.now)
    again.drain()
    assert limits(again)[1].current_a == 16.0
    assert 2 not in limits(again)  # EVSE 2 has no profile: nothing to say


def test_a_txprofile_needs_its_transaction() -> None:
    h = booted()
    answer = set_profile(h, 1, profile(3, 6.0, purpose="TxProfile", transactionId="nope"))
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "TxNotFound"


def test_a_txprofile_applies_to_its_transaction_and_goes_with_it() -> None:
    h = booted()
    h.station.station_event(h.now, SessionStarted(1, 1, IdToken("04A2B3C4"), sample()))
    h.answer_all(h.drain())
    tx_id = h.station._transactions.transaction_on(1)
    assert tx_id is not None
    assert (
        set_profile(h, 1, profile(3, 8.0, purpose="TxProfile", transactionId=tx_id))["status"]
        == "Accepted"
    )
    assert limits(h)[1].current_a == 8.0
    h.commands.clear()
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.EV_DISCONNECTED, sample()))
    h.answer_all(h.drain())
    assert limits(h)[1].current_a is None  # the profile ended with the transaction
    get = h.receive([2, "g", "GetChargingProfiles", {"requestId": 1, "chargingProfile": {}}])
    assert get[0][2] == {"status": "NoProfiles"}


def test_the_limit_follows_period_boundaries_online_and_offline() -> None:
    h = booted()
    periods = [
        {"startPeriod": 0, "limit": 32.0},
        {"startPeriod": 3600, "limit": 12.0},
        {"startPeriod": 7200, "limit": 20.0},
    ]
    set_profile(h, 0, profile(1, 0.0, periods=periods))
    assert limits(h)[1].current_a == 32.0
    h.advance(3600 - 10 + 1)  # one second after 01:00 (the clock started at 00:00:10)
    assert limits(h)[1].current_a == 12.0
    h.station.connection_lost(h.now, "CSMS went away")
    h.drain()
    h.commands.clear()
    h.advance(3600)
    assert limits(h)[1].current_a == 20.0  # offline, the profile keeps applying


def test_a_daily_recurring_profile_crosses_midnight() -> None:
    h = booted()
    periods = [{"startPeriod": 0, "limit": 6.0}, {"startPeriod": 6 * 3600, "limit": 32.0}]
    body = profile(
        2,
        0.0,
        purpose="TxDefaultProfile",
        kind="Recurring",
        periods=periods,
        recurrencyKind="Daily",
    )
    set_profile(h, 0, body)
    assert limits(h)[1].current_a == 6.0
    h.advance(6 * 3600)
    assert limits(h)[1].current_a == 32.0
    h.advance(18 * 3600)  # past the next midnight
    assert limits(h)[1].current_a == 6.0


def test_get_composite_schedule_reports_what_is_applied() -> None:
    h = booted()
    periods = [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 3600, "limit": 10.0}]
    set_profile(h, 0, profile(1, 0.0, periods=periods))
    answer = h.receive(
        [2, "c", "GetCompositeSchedule", {"duration": 7200, "evseId": 1, "chargingRateUnit": "A"}]
    )
    result = answer[0][2]
    assert result["status"] == "Accepted"
    schedule = result["schedule"]
    assert schedule["evseId"] == 1 and schedule["chargingRateUnit"] == "A"
    assert schedule["scheduleStart"] == "2026-01-01T00:00:10.000Z"
    assert [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]] == [
        (0, 16.0),
        (3590, 10.0),
    ]
    assert limits(h)[1].current_a == schedule["chargingSchedulePeriod"][0]["limit"]
    watts = h.receive(
        [2, "w", "GetCompositeSchedule", {"duration": 60, "evseId": 1, "chargingRateUnit": "W"}]
    )
    assert watts[0][2]["schedule"]["chargingSchedulePeriod"][0]["limit"] == 16.0 * 230 * 3
    unknown = h.receive([2, "u", "GetCompositeSchedule", {"duration": 60, "evseId": 9}])
    assert unknown[0][2]["status"] == "Rejected"


def test_a_hostile_composite_duration_is_bounded() -> None:
    h = booted()
    body = profile(
        2,
        0.0,
        purpose="TxDefaultProfile",
        kind="Recurring",
        recurrencyKind="Daily",
        periods=[{"startPeriod": 0, "limit": 6.0}, {"startPeriod": 3600, "limit": 7.0}],
    )
    set_profile(h, 0, body)
    answer = h.receive([2, "c", "GetCompositeSchedule", {"duration": 2**31 - 1, "evseId": 1}])
    schedule = answer[0][2]["schedule"]
    assert schedule["duration"] <= 31 * 86400
    assert len(schedule["chargingSchedulePeriod"]) <= 48


def test_clear_by_id_and_by_criteria() -> None:
    h = booted()
    set_profile(h, 0, profile(1, 10.0))
    set_profile(h, 1, profile(2, 8.0, purpose="TxDefaultProfile", stack_level=1), "s2")
    assert limits(h)[1].current_a == 8.0
    assert h.receive([2, "x", "ClearChargingProfile", {"chargingProfileId": 99}])[0][2] == {
        "status": "Unknown"
    }
    cleared = h.receive(
        [
            2,
            "y",
            "ClearChargingProfile",
            {"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}},
        ]
    )
    assert cleared[0][2] == {"status": "Accepted"}
    assert limits(h)[1].current_a == 10.0
    assert h.receive([2, "z", "ClearChargingProfile", {"chargingProfileId": 1}])[0][2] == {
        "status": "Accepted"
    }
    assert limits(h)[1].current_a is None


def test_get_charging_profiles_reports_them() -> None:
    h = booted()
    set_profile(h, 0, profile(1, 10.0))
    set_profile(h, 1, profile(2, 8.0, purpose="TxDefaultProfile"), "s2")
    frames = h.receive([2, "g", "GetChargingProfiles", {"requestId": 42, "chargingProfile": {}}])
    assert frames[0][2] == {"status": "Accepted"}
    reports = calls(h.answer_all(frames[1:]), "ReportChargingProfiles")
    assert {r[3]["evseId"] for r in reports} == {0, 1}
    assert all(r[3]["requestId"] == 42 for r in reports)
    assert [r[3]["tbc"] for r in reports][-1] is False
    ids = sorted(p["id"] for r in reports for p in r[3]["chargingProfile"])
    assert ids == [1, 2]


def test_disabled_smart_charging_rejects_profiles() -> None:
    h = booted()
    answer = h.receive(
        [
            2,
            "v",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "SmartChargingCtrlr"},
                        "variable": {"name": "Enabled"},
                        "attributeValue": "false",
                    }
                ]
            },
        ]
    )
    assert answer[0][2]["setVariableResult"][0]["attributeStatus"] == "Accepted"
    result = set_profile(h, 0, profile(1, 10.0))
    assert result["status"] == "Rejected"


def test_a_significant_change_during_a_transaction_is_reported() -> None:
    h = booted()
    h.station.station_event(h.now, SessionStarted(1, 1, IdToken("04A2B3C4"), sample()))
    h.answer_all(h.drain())
    frames = h.receive(
        [2, "s", "SetChargingProfile", {"evseId": 0, "chargingProfile": profile(1, 16.0)}]
    )
    frames += h.answer_all(frames[1:])
    frames = h.receive(
        [2, "t", "SetChargingProfile", {"evseId": 0, "chargingProfile": profile(1, 8.0)}]
    )
    sent = h.answer_all(frames[1:])
    events = [
        f for f in calls(sent, "TransactionEvent") if f[3]["triggerReason"] == "ChargingRateChanged"
    ]
    assert len(events) == 1
    # a change below LimitChangeSignificance (10 %) is not reported
    frames = h.receive(
        [2, "u", "SetChargingProfile", {"evseId": 0, "chargingProfile": profile(1, 7.6)}]
    )
    sent = h.answer_all(frames[1:])
    assert not [
        f for f in calls(sent, "TransactionEvent") if f[3]["triggerReason"] == "ChargingRateChanged"
    ]


def test_v21_discharge_limits_reach_the_runtime() -> None:
    h = booted(version=ProtocolVersion.V21)
    periods = [{"startPeriod": 0, "limit": 11000.0, "dischargeLimit": -5000.0}]
    assert (
        set_profile(h, 1, profile(5, 0.0, purpose="TxDefaultProfile", unit="W", periods=periods))[
            "status"
        ]
        == "Accepted"
    )
    applied = limits(h)[1]
    assert applied.power_w == 11000.0
    assert applied.discharge_power_w == 5000.0
