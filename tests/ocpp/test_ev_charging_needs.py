"""ISO 15118 charging needs and schedules through the OCPP core (K15-K17), and the
schedule ahead that ChargingLimit carries; fake clock, the test plays the CSMS.

Every payload the station sends is checked against the OCA schema of its version
here, on top of the core's own check (which would refuse to send it).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest

from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station_io import (
    ChargingLimit,
    ChargingNeedsAnswer,
    EvChargingNeeds,
    EvChargingSchedule,
    EvSchedulePeriod,
    IdToken,
    SchedulePeriodW,
    SessionEnded,
    SessionStarted,
    StationEvent,
    StoppedReason,
)
from tests.core.ocpp_schemas import assert_schema_valid
from tests.ocpp.helpers import Harness, calls
from tests.ocpp.test_smart_charging import booted, limits, profile, set_profile
from tests.ocpp.test_station import sample

V201, V21 = ProtocolVersion.V201, ProtocolVersion.V21
BOTH = pytest.mark.parametrize("version", [V201, V21], ids=["2.0.1", "2.1"])
#: 2026-01-01T00:00:00Z, the harness's UTC at start; the boot answer sets 00:00:10Z
MIDNIGHT_UTC = 1767225600.0
EIGHT_AM = MIDNIGHT_UTC + 8 * 3600


def dc_needs(**changes: Any) -> EvChargingNeeds:
    fields: dict[str, Any] = {
        "evse_id": 1,
        "dc": True,
        "bpt": False,
        "control_mode": "scheduled",
        "departure_time_utc_s": EIGHT_AM,
        "target_energy_wh": 40000.4,
        "min_energy_wh": -5000.0,
        "max_energy_wh": 60000.0,
        "target_soc_pct": 80,
        "present_soc_pct": 35,
        "max_charge_power_w": 150000.0,
        "min_charge_power_w": 0.0,
        "max_charge_current_a": 300.7,
        "min_charge_current_a": 0.0,
        "max_voltage_v": 900.0,
        "min_voltage_v": 150.0,
        "max_schedule_tuples": 3,
    }
    fields.update(changes)
    return EvChargingNeeds(**fields)


def ac_needs(**changes: Any) -> EvChargingNeeds:
    fields: dict[str, Any] = {
        "evse_id": 1,
        "dc": False,
        "bpt": False,
        "control_mode": "dynamic",
        "target_energy_wh": 20000.0,
        "max_charge_power_w": 11000.0,
        "min_charge_power_w": 4140.0,
        "phases": 3,
    }
    fields.update(changes)
    return EvChargingNeeds(**fields)


def tell(h: Harness, event: StationEvent) -> list[Any]:
    h.station.station_event(h.now, event)
    return h.drain()


def sent_needs(h: Harness, event: EvChargingNeeds, version: ProtocolVersion) -> list[Any]:
    """The NotifyEVChargingNeeds CALL ``event`` caused, checked against the schema."""
    (call,) = calls(tell(h, event), "NotifyEVChargingNeeds")
    payload = call[3]
    json.dumps(payload, allow_nan=False)  # no NaN or Infinity on the wire
    assert_schema_valid(version, "NotifyEVChargingNeedsRequest.json", payload)
    return list(call)


def answers(h: Harness) -> list[ChargingNeedsAnswer]:
    return [c for c in h.commands if isinstance(c, ChargingNeedsAnswer)]


def disable_smart_charging(h: Harness) -> None:
    variable = {
        "component": {"name": "SmartChargingCtrlr"},
        "variable": {"name": "Enabled"},
        "attributeValue": "false",
    }
    answer = h.receive([2, "v", "SetVariables", {"setVariableData": [variable]}])
    assert answer[0][2]["setVariableResult"][0]["attributeStatus"] == "Accepted"


# ----------------------------------------------------------- NotifyEVChargingNeeds
def test_dc_needs_in_201_are_whole_numbers_rounded_inwards() -> None:
    h = booted()
    call = sent_needs(h, dc_needs(), V201)
    assert call[3] == {
        "evseId": 1,
        "maxScheduleTuples": 3,
        "chargingNeeds": {
            "requestedEnergyTransfer": "DC",
            "departureTime": "2026-01-01T08:00:00.000Z",
            "dcChargingParameters": {
                "evMaxCurrent": 300,  # 300.7 A: down, never more than the car said
                "evMaxVoltage": 900,
                "evMaxPower": 150000,
                "energyAmount": 40000,
                "stateOfCharge": 35,
                "fullSoC": 80,
            },
        },
    }
    assert all(type(v) is int for v in call[3]["chargingNeeds"]["dcChargingParameters"].values())
    assert answers(h) == []  # nothing until the CSMS answers
    h.reply(call, {"status": "Accepted"})
    assert answers(h) == [ChargingNeedsAnswer(1, "Accepted")]


def test_ac_needs_in_201_derive_currents_from_the_car_powers() -> None:
    h = booted()
    call = sent_needs(
        h, ac_needs(phases=1, max_charge_power_w=7360.0, min_charge_power_w=1400.0), V201
    )
    assert call[3]["chargingNeeds"] == {
        "requestedEnergyTransfer": "AC_single_phase",
        "acChargingParameters": {
            "energyAmount": 20000,
            "evMinCurrent": 7,  # 1400 W / 230 V = 6.09 A: up, the car needs at least that
            "evMaxCurrent": 32,  # 7360 W / 230 V
            "evMaxVoltage": 230,  # the car gave none: the EVSE's nominal voltage
        },
    }


def test_ac_needs_without_any_maximum_leave_the_ac_parameters_out() -> None:
    h = booted()
    call = sent_needs(h, ac_needs(max_charge_power_w=None, phases=None), V201)
    assert call[3]["chargingNeeds"] == {"requestedEnergyTransfer": "AC_three_phase"}


def test_ac_needs_without_energy_or_minimum_use_zero() -> None:
    h = booted()
    needs = ac_needs(target_energy_wh=None, min_charge_power_w=None, max_charge_current_a=16.0)
    call = sent_needs(h, needs, V201)
    assert call[3]["chargingNeeds"]["acChargingParameters"] == {
        "energyAmount": 0,
        "evMinCurrent": 0,
        "evMaxCurrent": 16,
        "evMaxVoltage": 230,
    }


def test_dc_bpt_needs_in_21_carry_the_v2x_parameters() -> None:
    h = booted(version=V21)
    needs = dc_needs(
        bpt=True,
        control_mode="dynamic",
        max_discharge_power_w=11000.0,
        min_discharge_power_w=0.0,
        max_discharge_current_a=25.55,
        min_discharge_current_a=0.05,
    )
    call = sent_needs(h, needs, V21)
    charging = call[3]["chargingNeeds"]
    assert charging["requestedEnergyTransfer"] == "DC_BPT"
    assert charging["controlMode"] == "DynamicControl"
    assert charging["dcChargingParameters"]["evMaxCurrent"] == 300.7  # 2.1: decimals
    assert charging["v2xChargingParameters"] == {
        "minChargePower": 0.0,
        "maxChargePower": 150000.0,
        "minChargeCurrent": 0.0,
        "maxChargeCurrent": 300.7,
        "minVoltage": 150.0,
        "maxVoltage": 900.0,
        "evTargetEnergyRequest": 40000.4,
        "evMinEnergyRequest": -5000.0,  # may be negative (above the minimum SoC)
        "evMaxEnergyRequest": 60000.0,
        "targetSoC": 80,
        "minDischargePower": 0.0,
        "maxDischargePower": 11000.0,
        "minDischargeCurrent": 0.1,  # up
        "maxDischargeCurrent": 25.5,  # down
    }
    h.reply(call, {"status": "NoChargingProfile"})
    assert answers(h) == [ChargingNeedsAnswer(1, "NoChargingProfile")]


def test_ac_bpt_needs_in_21() -> None:
    h = booted(version=V21)
    call = sent_needs(h, ac_needs(bpt=True, max_discharge_power_w=7000.0), V21)
    charging = call[3]["chargingNeeds"]
    assert charging["requestedEnergyTransfer"] == "AC_BPT"
    assert charging["controlMode"] == "DynamicControl"
    assert charging["acChargingParameters"] == {
        "energyAmount": 20000.0,
        "evMinCurrent": 6.0,  # 4140 W / (230 V x 3)
        "evMaxCurrent": 15.9,  # 11000 W / 690 V = 15.94 A, down
        "evMaxVoltage": 230.0,
    }
    assert charging["v2xChargingParameters"]["maxDischargePower"] == 7000.0


def test_a_21_session_without_bpt_asks_in_the_201_modes() -> None:
    h = booted(version=V21)
    call = sent_needs(h, dc_needs(max_discharge_power_w=9000.0), V21)
    charging = call[3]["chargingNeeds"]
    assert charging["requestedEnergyTransfer"] == "DC"
    assert "maxDischargePower" not in charging["v2xChargingParameters"]


HOSTILE: dict[str, Any] = {
    "departure_time_utc_s": 1e300,
    "target_energy_wh": math.nan,
    "min_energy_wh": -math.inf,
    "max_energy_wh": 1e300,
    "target_soc_pct": 150,
    "present_soc_pct": -3,
    "max_charge_power_w": math.inf,
    "min_charge_power_w": -1.0,
    "max_charge_current_a": math.nan,
    "min_charge_current_a": 1e300,
    "max_voltage_v": -400.0,
    "min_voltage_v": math.nan,
    "max_discharge_power_w": -5.0,
    "min_discharge_power_w": math.inf,
    "max_discharge_current_a": 10**400,
    "min_discharge_current_a": math.nan,
    "phases": 7,
    "max_schedule_tuples": -1,
}


@BOTH
@pytest.mark.parametrize("dc", [True, False], ids=["DC", "AC"])
@pytest.mark.parametrize("bpt", [True, False], ids=["bpt", "charge"])
def test_hostile_numbers_never_make_an_invalid_payload(
    version: ProtocolVersion, dc: bool, bpt: bool, caplog: pytest.LogCaptureFixture
) -> None:
    h = booted(version=version)
    needs = dc_needs(dc=dc, bpt=bpt, control_mode="warp", **HOSTILE)
    with caplog.at_level(logging.WARNING):
        call = sent_needs(h, needs, version)
    charging = call[3]["chargingNeeds"]
    assert "departureTime" not in charging and "maxScheduleTuples" not in call[3]
    assert "dcChargingParameters" not in charging  # neither a maximum current nor voltage
    if not dc:  # AC: no usable maximum current or power either
        assert "acChargingParameters" not in charging
    assert "controlMode" not in charging
    assert charging.get("v2xChargingParameters", {}) == {}
    assert "ignoring unusable values" in caplog.text
    assert "evMaxCurrent=nan" in caplog.text  # named as the CSMS would know it


@BOTH
def test_huge_but_finite_values_are_dropped_and_the_rest_kept(version: ProtocolVersion) -> None:
    h = booted(version=version)
    call = sent_needs(h, dc_needs(max_charge_power_w=1e300, target_soc_pct=100), version)
    params = call[3]["chargingNeeds"]["dcChargingParameters"]
    assert "evMaxPower" not in params
    assert params["fullSoC"] == 100


@pytest.mark.parametrize(
    ("version", "status"),
    [(V201, "Accepted"), (V201, "Rejected"), (V201, "Processing"), (V21, "NoChargingProfile")],
)
def test_the_csms_answer_reaches_the_runtime(version: ProtocolVersion, status: str) -> None:
    h = booted(version=version)
    call = sent_needs(h, dc_needs(), version)
    h.reply(call, {"status": status, "statusInfo": {"reasonCode": "Whatever"}})
    assert answers(h) == [ChargingNeedsAnswer(1, status)]


def test_a_callerror_is_not_sent() -> None:
    h = booted()
    call = sent_needs(h, dc_needs(), V201)
    h.receive([4, call[1], "InternalError", "no", {}])
    assert answers(h) == [ChargingNeedsAnswer(1, "NotSent")]


def test_an_invalid_answer_is_not_sent() -> None:
    h = booted()
    call = sent_needs(h, dc_needs(), V201)
    h.reply(call, {"status": "NoChargingProfile"})  # a 2.1 value under 2.0.1
    assert answers(h) == [ChargingNeedsAnswer(1, "NotSent")]


def test_no_answer_within_the_message_timeout_is_not_sent() -> None:
    h = booted()
    sent_needs(h, dc_needs(), V201)
    h.advance(29)
    assert answers(h) == []
    h.advance(2)  # MessageTimeout 30 s
    assert answers(h) == [ChargingNeedsAnswer(1, "NotSent")]


def test_a_lost_connection_is_not_sent() -> None:
    h = booted()
    sent_needs(h, dc_needs(), V201)
    tell(h, dc_needs(evse_id=2))  # waits behind the first one
    h.station.connection_lost(h.now, "gone")
    h.drain()
    assert sorted(a.evse_id for a in answers(h)) == [1, 2]
    assert {a.status for a in answers(h)} == {"NotSent"}


def test_offline_the_needs_are_not_sent_nor_queued() -> None:
    h = booted()
    h.station.connection_lost(h.now, "gone")
    h.drain()
    assert calls(tell(h, dc_needs()), "NotifyEVChargingNeeds") == []
    assert answers(h) == [ChargingNeedsAnswer(1, "NotSent")]
    reconnected = h.answer_all(h.connect())
    assert calls(reconnected, "NotifyEVChargingNeeds") == []
    assert not any(m.action == "NotifyEVChargingNeeds" for m in h.station.queued_messages)


def test_before_the_boot_is_accepted_the_needs_are_not_sent() -> None:
    h = Harness()
    h.connect()
    assert calls(tell(h, dc_needs()), "NotifyEVChargingNeeds") == []
    assert answers(h) == [ChargingNeedsAnswer(1, "NotSent")]


def test_with_smart_charging_disabled_the_needs_are_not_sent() -> None:
    h = booted()
    disable_smart_charging(h)
    assert calls(tell(h, dc_needs()), "NotifyEVChargingNeeds") == []
    assert answers(h) == [ChargingNeedsAnswer(1, "NotSent")]


def test_needs_for_an_unknown_evse_are_not_sent() -> None:
    h = booted()
    assert calls(tell(h, dc_needs(evse_id=9)), "NotifyEVChargingNeeds") == []
    assert answers(h) == [ChargingNeedsAnswer(9, "NotSent")]


# -------------------------------------------------------- NotifyEVChargingSchedule
def ev_schedule(**changes: Any) -> EvChargingSchedule:
    fields: dict[str, Any] = {
        "evse_id": 1,
        "time_base_utc_s": MIDNIGHT_UTC + 60.25,
        "tuple_id": 2,
        "periods": (
            EvSchedulePeriod(0, 11000.05, 5000.0),
            EvSchedulePeriod(1800, 7000.0),
        ),
    }
    fields.update(changes)
    return EvChargingSchedule(**fields)


def sent_schedule(h: Harness, event: EvChargingSchedule, version: ProtocolVersion) -> list[Any]:
    (call,) = calls(tell(h, event), "NotifyEVChargingSchedule")
    json.dumps(call[3], allow_nan=False)
    assert_schema_valid(version, "NotifyEVChargingScheduleRequest.json", call[3])
    return list(call)


def test_the_schedule_the_ev_picked_in_201() -> None:
    h = booted()
    call = sent_schedule(h, ev_schedule(), V201)
    assert call[3] == {
        "timeBase": "2026-01-01T00:01:00.250Z",
        "evseId": 1,
        "chargingSchedule": {
            "id": 2,
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 11000.0},  # no discharge field in 2.0.1
                {"startPeriod": 1800, "limit": 7000.0},
            ],
        },
    }
    h.reply(call, {"status": "Accepted"})
    assert answers(h) == []  # the runtime hears nothing about this one


def test_the_schedule_the_ev_picked_in_21_with_discharge() -> None:
    h = booted(version=V21)
    call = sent_schedule(h, ev_schedule(), V21)
    assert call[3]["selectedChargingScheduleId"] == 2
    assert call[3]["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 11000.0, "dischargeLimit": -5000.0},
        {"startPeriod": 1800, "limit": 7000.0},
    ]


def test_a_rejected_schedule_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    h = booted()
    call = sent_schedule(h, ev_schedule(), V201)
    with caplog.at_level(logging.WARNING):
        frames = h.reply(call, {"status": "Rejected", "statusInfo": {"reasonCode": "OutOfLimits"}})
    assert frames == [] and h.commands == []
    assert "Rejected OutOfLimits" in caplog.text


@BOTH
def test_unusable_ev_periods_are_left_out(version: ProtocolVersion) -> None:
    h = booted(version=version)
    periods = (
        EvSchedulePeriod(0, 7000.0, math.nan),
        EvSchedulePeriod(600, math.nan),
        EvSchedulePeriod(900, 5000.0),
        EvSchedulePeriod(300, 5000.0),  # out of order
        EvSchedulePeriod(1000, -1.0),
        EvSchedulePeriod(1200, 1e300, 1e300),
        EvSchedulePeriod(1500, 3000.0, -20.0),
    )
    call = sent_schedule(h, ev_schedule(periods=periods), version)
    assert call[3]["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 7000.0},
        {"startPeriod": 900, "limit": 5000.0},
        {"startPeriod": 1500, "limit": 3000.0},
    ]


@BOTH
def test_a_schedule_with_nothing_usable_is_not_sent(version: ProtocolVersion) -> None:
    h = booted(version=version)
    nothing = ev_schedule(periods=(EvSchedulePeriod(0, math.inf),))
    assert calls(tell(h, nothing), "NotifyEVChargingSchedule") == []
    no_time = ev_schedule(time_base_utc_s=math.nan)
    assert calls(tell(h, no_time), "NotifyEVChargingSchedule") == []
    bad_id = ev_schedule(tuple_id=-4)
    assert calls(tell(h, bad_id), "NotifyEVChargingSchedule") == []


def test_offline_the_schedule_is_not_sent_nor_queued() -> None:
    h = booted()
    h.station.connection_lost(h.now, "gone")
    h.drain()
    tell(h, ev_schedule())
    assert calls(h.answer_all(h.connect()), "NotifyEVChargingSchedule") == []


# ----------------------------------------------------- ChargingLimit.schedule (W)
def start_transaction(h: Harness, evse_id: int = 1) -> str:
    """Start one and return its transactionId, as the CSMS learns it."""
    frames = h.answer_all(tell(h, SessionStarted(evse_id, 1, IdToken("04A2B3C4"), sample())))
    started = [f[3] for f in calls(frames, "TransactionEvent") if f[3]["eventType"] == "Started"]
    tx_id: str = started[0]["transactionInfo"]["transactionId"]
    return tx_id


def test_an_absolute_profile_gives_the_schedule_ahead_in_watts() -> None:
    h = booted()
    periods = [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 3600, "limit": 10.0}]
    set_profile(h, 1, profile(1, 0.0, purpose="TxDefaultProfile", periods=periods))
    applied = limits(h)[1]
    now_utc = MIDNIGHT_UTC + 10  # the boot answer's clock
    assert applied.schedule == (
        SchedulePeriodW(now_utc, 16.0 * 230 * 3),
        SchedulePeriodW(MIDNIGHT_UTC + 3600, 10.0 * 230 * 3),
    )
    assert 2 not in limits(h)  # EVSE 2 has no profile


def test_a_clock_only_recheck_keeps_the_schedule() -> None:
    h = booted()
    periods = [{"startPeriod": 0, "limit": 16.0}, {"startPeriod": 3600, "limit": 10.0}]
    set_profile(h, 1, profile(1, 0.0, purpose="TxDefaultProfile", periods=periods))
    before = limits(h)[1]
    h.commands.clear()
    h.advance(3600)  # past the period boundary, with every 60 s recheck on the way
    after = limits(h)[1]
    assert after.current_a == 10.0  # the limit in force followed the clock
    assert after.schedule == before.schedule  # the schedule offered did not
    assert len([c for c in h.commands if isinstance(c, ChargingLimit)]) == 1


def test_a_new_profile_changes_the_schedule() -> None:
    h = booted()
    set_profile(h, 1, profile(1, 16.0, purpose="TxDefaultProfile"))
    before = limits(h)[1].schedule
    h.advance(600)
    set_profile(h, 0, profile(2, 8.0), "s2")  # a station maximum under it
    after = limits(h)[1].schedule
    assert after != before
    assert after == (SchedulePeriodW(MIDNIGHT_UTC + 610, 8.0 * 230 * 3),)


def test_a_profile_of_another_evse_leaves_the_schedule_alone() -> None:
    h = booted()
    set_profile(h, 1, profile(1, 16.0, purpose="TxDefaultProfile"))
    h.advance(600)
    h.commands.clear()
    set_profile(h, 2, profile(2, 8.0, purpose="TxDefaultProfile"), "s2")
    assert set(limits(h)) == {2}


def test_a_relative_txprofile_starts_with_its_transaction() -> None:
    h = booted()
    h.advance(50)
    tx_id = start_transaction(h)
    tx_start = MIDNIGHT_UTC + 60
    h.advance(300)
    periods = [{"startPeriod": 0, "limit": 11000.0}, {"startPeriod": 1800, "limit": 5000.0}]
    body = profile(
        3, 0.0, purpose="TxProfile", kind="Relative", unit="W", periods=periods, transactionId=tx_id
    )
    assert set_profile(h, 1, body)["status"] == "Accepted"
    applied = limits(h)[1]
    assert applied.power_w == 11000.0
    assert applied.schedule == (
        SchedulePeriodW(tx_start + 300, 11000.0),
        SchedulePeriodW(tx_start + 1800, 5000.0),
    )
    h.commands.clear()
    h.answer_all(tell(h, SessionEnded(1, StoppedReason.EV_DISCONNECTED, sample())))
    assert limits(h)[1].schedule == ()  # the TxProfile went with its transaction


def test_gaps_and_discharge_in_the_schedule_21() -> None:
    h = booted(version=V21)
    body = profile(
        5,
        0.0,
        purpose="TxDefaultProfile",
        unit="W",
        periods=[{"startPeriod": 0, "limit": 11000.0, "dischargeLimit": -5000.0}],
        validTo="2026-01-01T02:00:00.000Z",
    )
    set_profile(h, 1, body)
    assert limits(h)[1].schedule == (
        SchedulePeriodW(MIDNIGHT_UTC + 10, 11000.0, 5000.0),
        SchedulePeriodW(MIDNIGHT_UTC + 7200, None, None),  # no profile limits from then on
    )


def test_disabling_smart_charging_empties_the_schedule() -> None:
    h = booted()
    set_profile(h, 1, profile(1, 16.0, purpose="TxDefaultProfile"))
    assert limits(h)[1].schedule
    disable_smart_charging(h)
    assert limits(h)[1] == ChargingLimit(1, None, None)
