"""The sans-I/O station core, driven with a fake clock; the test plays the CSMS."""

from __future__ import annotations

import json
from typing import Any

from chargepoint.adapters.ocpp_client import OcppSchemas
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.device_model import ReportBase
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station import (
    CloseConnection,
    Link,
    OpenConnection,
    Registration,
    format_timestamp,
    parse_timestamp,
)
from chargepoint.ocpp.station_io import (
    ConnectorStatus,
    ConnectorStatusChanged,
    FaultRaised,
    IdToken,
    MeterSample,
    RemoteStart,
    ResetKind,
    ResetRequested,
    SecurityEventOccurred,
    SessionEnded,
    SessionStarted,
    SetAvailability,
    StoppedReason,
)

from .helpers import Harness, boot_result, calls, minimal_result


def sample(import_wh: float = 1000, power_w: float = 7000, evse_id: int = 1) -> MeterSample:
    return MeterSample(
        evse_id=evse_id,
        import_wh=import_wh,
        export_wh=5,
        power_w=power_w,
        voltage_v=230,
        current_a=10,
        soc_pct=40,
    )


def start_session(h: Harness, evse_id: int = 1) -> None:
    h.station.station_event(h.now, SessionStarted(evse_id, 1, IdToken("04A2B3C4"), sample()))


# ------------------------------------------------------------- registration
def test_nothing_but_boot_notification_before_accepted() -> None:
    h = Harness()
    frames = h.connect()
    assert [f[2] for f in frames] == ["BootNotification"]
    assert frames[0][3] == {
        "chargingStation": {
            "model": "BiDi-11",
            "vendorName": "OpenV2G",
            "serialNumber": "SN1",
            "firmwareVersion": "0.1.0",
        },
        "reason": "PowerUp",
    }
    h.station.station_event(h.now, ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    start_session(h)
    assert h.drain() == []
    after = h.reply(frames[0], boot_result("Accepted", 120))
    # B01: after Accepted, every connector's state, then the queued transaction event
    after = h.answer_all(after)
    actions = [f[2] for f in calls(after)]
    assert actions == ["StatusNotification", "StatusNotification", "TransactionEvent"]
    assert calls(after)[0][3]["connectorStatus"] == "Occupied"
    # connected (only not yet Accepted): the event is not an offline one (E04)
    assert "offline" not in calls(after, "TransactionEvent")[0][3]


def test_pending_allows_only_what_the_csms_asks_for_and_retries_after_interval() -> None:
    h = Harness()
    boot = h.connect()[0]
    assert h.reply(boot, boot_result("Pending", 30)) == []
    assert h.station.registration is Registration.PENDING
    h.station.station_event(h.now, ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    frames = h.receive(
        [2, "r1", "GetBaseReport", {"requestId": 7, "reportBase": "SummaryInventory"}]
    )
    assert frames[0] == [3, "r1", {"status": "Accepted"}]
    assert [f[2] for f in calls(frames)] == ["NotifyReport"]
    h.answer_all(frames)
    assert h.advance(29.9) == []
    retry = h.advance(0.2)
    assert [f[2] for f in retry] == ["BootNotification"]


def test_rejected_sends_nothing_until_the_interval() -> None:
    h = Harness()
    boot = h.connect()[0]
    h.reply(boot, boot_result("Rejected", 50))
    h.station.station_event(h.now, ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    assert h.advance(49) == []
    assert [f[2] for f in h.advance(2)] == ["BootNotification"]


def test_boot_is_not_repeated_after_a_reconnect() -> None:
    h = Harness()
    h.answer_all(h.boot())
    h.station.connection_lost(h.now, "gone")
    h.station.station_event(h.now, ConnectorStatusChanged(2, 1, ConnectorStatus.FAULTED))
    frames = h.connect()
    # only the connector that changed while offline is reported
    assert [(f[2], f[3]["evseId"]) for f in calls(frames)] == [("StatusNotification", 2)]


def test_boot_without_answer_is_retried() -> None:
    h = Harness()
    h.connect()
    frames = h.advance(30 + 60 + 1)  # MessageTimeout, then the default boot retry
    assert [f[2] for f in calls(frames)] == ["BootNotification"]


# ------------------------------------------------------------ heartbeat/clock
def test_heartbeat_after_interval_of_inactivity_and_clock_sync() -> None:
    h = Harness()
    h.answer_all(h.boot(interval=100))
    assert h.advance(99) == []
    beat = h.advance(1)
    assert [f[2] for f in beat] == ["Heartbeat"]
    h.advance(0.5)
    h.reply(beat[0], {"currentTime": "2030-06-01T12:00:00.000Z"})
    # the CSMS time is taken as of half-way through the exchange
    assert h.station.utc_now(h.now - 0.25) == "2030-06-01T12:00:00.000Z"
    # any other exchange postpones the next heartbeat
    h.advance(60)
    h.receive(
        [
            2,
            "g",
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ]
    )
    assert h.advance(99) == []
    assert [f[2] for f in h.advance(1)] == ["Heartbeat"]


def test_timestamps_are_utc_milliseconds_with_z() -> None:
    assert format_timestamp(1767225600.1234) == "2026-01-01T00:00:00.123Z"
    assert parse_timestamp("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_timestamp("2026-01-01T00:00:00") == 1767225600.0


# ------------------------------------------------------------- device model
def get_var(component: str, variable: str, **extra: Any) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": variable}, **extra}


def test_get_and_set_variables() -> None:
    h = Harness()
    h.answer_all(h.boot())
    result = h.receive(
        [
            2,
            "s",
            "SetVariables",
            {
                "setVariableData": [
                    {"attributeValue": "77", **get_var("OCPPCommCtrlr", "HeartbeatInterval")},
                    {"attributeValue": "x", **get_var("SecurityCtrlr", "Identity")},
                    {"attributeValue": "1", **get_var("Nope", "HeartbeatInterval")},
                    {"attributeValue": "1", **get_var("OCPPCommCtrlr", "Nope")},
                    {
                        "attributeValue": "1",
                        "attributeType": "Target",
                        **get_var("OCPPCommCtrlr", "HeartbeatInterval"),
                    },
                    {"attributeValue": "abc", **get_var("OCPPCommCtrlr", "OfflineThreshold")},
                ]
            },
        ]
    )[0]
    statuses = [r["attributeStatus"] for r in result[2]["setVariableResult"]]
    assert statuses == [
        "Accepted",
        "Rejected",
        "UnknownComponent",
        "UnknownVariable",
        "NotSupportedAttributeType",
        "Rejected",
    ]
    assert result[2]["setVariableResult"][5]["attributeStatusInfo"] == {
        "reasonCode": "InvalidValue"
    }
    assert any(v == "77" for v in h.store.variables.values())
    got = h.receive(
        [
            2,
            "g",
            "GetVariables",
            {
                "getVariableData": [
                    get_var("OCPPCommCtrlr", "HeartbeatInterval"),
                    get_var("SecurityCtrlr", "BasicAuthPassword"),
                    get_var("ClockCtrlr", "DateTime"),
                ]
            },
        ]
    )[0][2]["getVariableResult"]
    assert [(r["attributeStatus"], r.get("attributeValue")) for r in got[:2]] == [
        ("Accepted", "77"),
        ("Rejected", None),
    ]
    assert got[2]["attributeValue"].endswith("Z")


def test_set_variables_survive_a_restart() -> None:
    h = Harness()
    h.answer_all(h.boot())
    h.receive(
        [
            2,
            "s",
            "SetVariables",
            {
                "setVariableData": [
                    {"attributeValue": "45", **get_var("OCPPCommCtrlr", "HeartbeatInterval")}
                ]
            },
        ]
    )
    again = Harness(h.store)
    frames = again.connect()
    after = again.answer_all(again.reply(frames[0], boot_result(interval=0)))
    assert after and again.advance(44) == []
    assert [f[2] for f in again.advance(1)] == ["Heartbeat"]


def test_too_many_items_is_an_occurrence_violation() -> None:
    h = Harness()
    h.answer_all(h.boot())
    entries = [get_var("OCPPCommCtrlr", "HeartbeatInterval")] * 51
    reply = h.receive([2, "g", "GetVariables", {"getVariableData": entries}])[0]
    assert reply[:3] == [4, "g", "OccurrenceConstraintViolation"]


def test_base_report_is_split_by_items_per_message() -> None:
    h = Harness()
    h.answer_all(h.boot())
    frames = h.receive([2, "r", "GetBaseReport", {"requestId": 3, "reportBase": "FullInventory"}])
    assert frames[0] == [3, "r", {"status": "Accepted"}]
    parts = [f for f in h.answer_all(frames) if f[0] == 2]
    total = len(h.model.report(ReportBase.FULL_INVENTORY))
    assert [p[3]["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p[3]["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all(len(p[3]["reportData"]) <= 20 for p in parts)
    assert sum(len(p[3]["reportData"]) for p in parts) == total
    assert {p[3]["requestId"] for p in parts} == {3}


# ---------------------------------------------------------- incoming CALLs
def test_every_call_gets_one_answer() -> None:
    h = Harness()
    h.answer_all(h.boot())
    assert h.receive([2, "a", "FlyToTheMoon", {}])[0][:3] == [4, "a", "NotImplemented"]
    assert h.receive([2, "b", "PublishFirmware", {}])[0][:3] == [4, "b", "NotSupported"]
    assert h.receive([2, "c", "Reset", {"type": "Sometimes"}])[0][:3] == [
        4,
        "c",
        "PropertyConstraintViolation",
    ]
    assert h.receive([2, "d", "Reset", {}])[0][:3] == [4, "d", "OccurrenceConstraintViolation"]
    assert h.receive([2, "e", "Reset", {"type": 5}])[0][:3] == [4, "e", "TypeConstraintViolation"]
    h.station.receive_frame(h.now, "[2, 'x'")
    assert h.drain()[0][:3] == [4, "-1", "RpcFrameworkError"]
    assert h.receive([2, "f", "DataTransfer", {"vendorId": "acme"}])[0] == [
        3,
        "f",
        {"status": "UnknownVendorId"},
    ]
    assert h.receive([2, "g", "ClearCache", {}])[0] == [3, "g", {"status": "Accepted"}]


def test_trigger_message_is_answered_before_the_triggered_message() -> None:
    h = Harness()
    h.answer_all(h.boot())
    frames = h.receive(
        [
            2,
            "t",
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}},
        ]
    )
    assert frames[0] == [3, "t", {"status": "Accepted"}]
    assert frames[1][2] == "StatusNotification" and frames[1][3]["evseId"] == 2
    assert h.receive([2, "u", "TriggerMessage", {"requestedMessage": "BootNotification"}])[0] == [
        3,
        "u",
        {"status": "Rejected"},
    ]


def test_commands_reach_the_runtime() -> None:
    h = Harness()
    h.answer_all(h.boot())
    assert h.receive([2, "r", "Reset", {"type": "Immediate"}])[0] == [
        3,
        "r",
        {"status": "Accepted"},
    ]
    assert h.receive(
        [2, "a", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 2}}]
    )[0] == [3, "a", {"status": "Accepted"}]
    assert h.receive(
        [
            2,
            "s",
            "RequestStartTransaction",
            {"idToken": {"idToken": "T1", "type": "Central"}, "remoteStartId": 9, "evseId": 1},
        ]
    )[0] == [3, "s", {"status": "Accepted"}]
    assert h.commands == [
        ResetRequested(ResetKind.IMMEDIATE),
        SetAvailability(2, None, False),
        RemoteStart(1, IdToken("T1", "Central"), 9),
    ]


def test_on_idle_reset_with_a_transaction_is_scheduled() -> None:
    h = Harness()
    h.answer_all(h.boot())
    start_session(h)
    h.answer_all(h.drain())
    assert h.receive([2, "r", "Reset", {"type": "OnIdle"}])[0] == [3, "r", {"status": "Scheduled"}]


# ------------------------------------------------------------- transactions
def test_transaction_events_seq_no_evse_measurands() -> None:
    h = Harness(overrides={"SampledDataCtrlr.TxUpdatedInterval": "60"})
    h.answer_all(h.boot())
    start_session(h)
    started = h.answer_all(h.drain())[0][3]
    assert (started["eventType"], started["seqNo"], started["triggerReason"]) == (
        "Started",
        0,
        "Authorized",
    )
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert started["idToken"] == {"idToken": "04A2B3C4", "type": "ISO14443"}
    assert "offline" not in started
    h.advance(30)
    h.station.station_event(h.now, sample(1100))
    assert h.drain() == []  # TxUpdatedInterval not reached
    h.advance(30)
    h.station.station_event(h.now, sample(1200, power_w=-5000))
    updated = h.answer_all(h.drain())[0][3]
    assert (updated["eventType"], updated["seqNo"]) == ("Updated", 1)
    assert "evse" not in updated
    values = {v["measurand"]: v["value"] for v in updated["meterValue"][0]["sampledValue"]}
    assert values == {
        "Energy.Active.Import.Register": 1200,
        "Energy.Active.Export.Register": 5,
        "Power.Active.Import": 0,
        "Power.Active.Export": 5000,
        "SoC": 40,
    }
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.EV_DISCONNECTED, sample(1300)))
    ended = h.answer_all(h.drain())[0][3]
    assert (ended["eventType"], ended["seqNo"], ended["transactionInfo"]["stoppedReason"]) == (
        "Ended",
        2,
        "EVDisconnected",
    )
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]


def test_retry_times_exactly() -> None:
    h = Harness(
        overrides={
            "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": "10",
            "OCPPCommCtrlr.HeartbeatInterval": "100000",
        }
    )
    h.answer_all(h.boot())
    start_session(h)
    first = h.drain()
    sent_at = [h.now]
    while len(sent_at) < 3:
        deadline = h.station.next_deadline()
        assert deadline is not None
        if calls(h.advance(deadline - h.now), "TransactionEvent"):
            sent_at.append(h.now)
    # n-th retry MessageTimeout + MessageAttemptInterval * n after the previous attempt
    assert first and [t - sent_at[0] for t in sent_at] == [0, 30 + 10, 30 + 10 + 30 + 20]
    # MessageAttempts = 3: the third failure discards the message
    h.advance(30)
    assert h.station.queued_messages == () and h.store.queue == {}


def test_discarded_started_leaves_a_seq_no_gap_and_the_transaction_goes_on() -> None:
    # E13.FR.04: after MessageAttempts failed attempts even a Started is discarded, so a
    # CSMS that keeps refusing one message cannot hold up all later ones.  Later events
    # keep their own seqNo: the CSMS gets 1 first and can tell that 0 never arrived.
    h = Harness(overrides={"OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": "10"})
    h.answer_all(h.boot(interval=100000))
    start_session(h)
    [event] = h.drain()
    assert (event[3]["eventType"], event[3]["seqNo"]) == ("Started", 0)
    for wait in (10, 20):  # E13.FR.03: MessageAttemptInterval times the attempts so far
        h.receive([4, event[1], "InternalError", "", {}])
        assert h.advance(wait - 0.1) == []
        [event] = calls(h.advance(0.1), "TransactionEvent")
        assert (event[3]["eventType"], event[3]["seqNo"]) == ("Started", 0)
    assert h.receive([4, event[1], "InternalError", "", {}]) == []
    assert h.station.queued_messages == () and h.store.queue == {}
    tx = event[3]["transactionInfo"]["transactionId"]
    [status] = h.receive([2, "s", "GetTransactionStatus", {"transactionId": tx}])
    assert status[2] == {"messagesInQueue": False, "ongoingIndicator": True}
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.LOCAL, sample(2000)))
    [ended] = h.answer_all(h.drain())
    assert ended[3]["transactionInfo"]["transactionId"] == tx
    assert (ended[3]["eventType"], ended[3]["seqNo"]) == ("Ended", 1)
    assert h.station.queued_messages == ()


def test_call_error_counts_as_failure() -> None:
    h = Harness(overrides={"OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]": "10"})
    h.answer_all(h.boot())
    start_session(h)
    event = h.drain()[0]
    h.receive([4, event[1], "InternalError", "db down", {}])
    assert h.advance(9.9) == []
    assert calls(h.advance(0.2), "TransactionEvent")[0][3] == event[3]


def test_queue_survives_restart_and_is_delivered_in_order() -> None:
    h = Harness()
    h.answer_all(h.boot())
    h.station.connection_lost(h.now, "gone")
    start_session(h)
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.LOCAL, sample(2000)))
    start_session(h, evse_id=2)
    h.drain()
    # "kill -9": a new core from what was persisted
    again = Harness(h.store)
    frames = again.connect()
    events = [
        f[3]
        for f in again.answer_all(again.reply(frames[0], boot_result()))
        if f[0] == 2 and f[2] == "TransactionEvent"
    ]
    assert [(e["eventType"], e["seqNo"], e["offline"]) for e in events] == [
        ("Started", 0, True),
        ("Ended", 1, True),
        ("Started", 0, True),
    ]
    # seqNo continues for the transaction still open on EVSE 2
    again.station.station_event(again.now, SessionEnded(2, StoppedReason.LOCAL, sample()))
    assert again.drain()[0][3]["seqNo"] == 1
    assert again.store.queue.keys() == {max(again.store.queue)}


def test_faults_are_notified() -> None:
    h = Harness()
    h.answer_all(h.boot())
    h.station.station_event(h.now, FaultRaised(1, "GF", "ground fault"))
    event = h.drain()[0]
    assert event[2] == "NotifyEvent"
    assert event[3]["eventData"][0]["component"] == {"name": "EVSE", "evse": {"id": 1}}


def test_minimal_results_are_valid() -> None:
    # guard for the helpers themselves: what the fake CSMS answers passes the schemas
    for action in (
        "Heartbeat",
        "TransactionEvent",
        "StatusNotification",
        "NotifyReport",
        "BootNotification",
        "NotifyEvent",
    ):
        assert (
            OcppSchemas().check(ProtocolVersion.V201, action, minimal_result(action), request=False)
            is None
        )


def test_a_malformed_csms_clock_does_not_stop_the_station() -> None:
    h = Harness()
    boot = h.connect()[0]
    offset = h.station.utc_offset_s
    after = h.reply(boot, {"currentTime": "soon", "interval": 300, "status": "Accepted"})
    assert h.station.utc_offset_s == offset
    assert [f[2] for f in calls(h.answer_all(after))] == ["StatusNotification"] * 2


def test_reports_flow_while_pending_even_with_queue_all_messages() -> None:
    h = Harness(overrides={"OCPPCommCtrlr.QueueAllMessages": "true"})
    h.reply(h.connect()[0], boot_result("Pending", 300))
    frames = h.receive(
        [2, "r", "GetBaseReport", {"requestId": 1, "reportBase": "SummaryInventory"}]
    )
    assert [f[2] for f in calls(frames)] == ["NotifyReport"]
    assert h.store.queue == {}


def test_everything_we_send_is_valid_ocpp_21_too(caplog: Any) -> None:
    h = Harness(overrides={"SampledDataCtrlr.TxUpdatedInterval": "1"})
    frames = h.connect(ProtocolVersion.V21)
    h.answer_all(h.reply(frames[0], boot_result()))
    start_session(h)
    h.answer_all(h.drain())
    h.advance(2)
    h.station.station_event(h.now, sample(1500, power_w=-3000))
    h.station.station_event(h.now, FaultRaised(None, "OVT", "over temperature"))
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.REMOTE, sample(1600)))
    sent = h.answer_all(h.drain())
    sent += h.answer_all(
        h.receive([2, "r", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}])
    )
    sent += h.receive(
        [
            2,
            "g",
            "GetVariables",
            {"getVariableData": [get_var("SecurityCtrlr", "BasicAuthPassword")]},
        ]
    )
    assert "invalid" not in caplog.text and "breaks the schema" not in caplog.text
    assert {f[2] for f in calls(sent)} == {"TransactionEvent", "NotifyEvent", "NotifyReport"}
    assert all(f[0] == 3 for f in sent if f[1] in ("r", "g"))


def test_new_password_reconnects_after_the_answer() -> None:
    h = Harness()
    h.answer_all(h.boot())
    h.station.receive_frame(
        h.now,
        json.dumps(
            [
                2,
                "p",
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "attributeValue": "fedcba9876543210",
                            **get_var("SecurityCtrlr", "BasicAuthPassword"),
                        }
                    ]
                },
            ]
        ),
    )
    actions = h.station.actions()
    kinds = [type(a).__name__ for a in actions]
    assert kinds.index("SendFrame") < kinds.index("CloseConnection")
    h.station.handle_timer(h.now)  # at once, no back-off
    reopen = [a for a in h.station.actions() if isinstance(a, OpenConnection)]
    assert [a.basic_auth_password for a in reopen] == ["fedcba9876543210"]


def test_password_reconnect_waits_for_our_outstanding_call() -> None:
    h = Harness()
    frames = h.boot()  # the first StatusNotification is now outstanding
    h.receive(
        [
            2,
            "p",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "fedcba9876543210",
                        **get_var("SecurityCtrlr", "BasicAuthPassword"),
                    }
                ]
            },
        ]
    )
    before = h.station.link
    h.station.receive_frame(h.now, json.dumps([3, frames[0][1], {}]))
    assert any(isinstance(a, CloseConnection) for a in h.station.actions())
    assert (before, h.station.link) == (Link.CONNECTED, Link.OFFLINE)


def test_base_report_parts_also_respect_bytes_per_message() -> None:
    h = Harness()
    h.answer_all(h.boot())
    h.model.update(dm.DEVICE_DATA, dm.BYTES_PER_MESSAGE_GET_REPORT, "1500")
    frames = h.receive([2, "r", "GetBaseReport", {"requestId": 4, "reportBase": "FullInventory"}])
    parts = [f for f in h.answer_all(frames) if f[0] == 2]
    assert len(parts) > len(h.model.report(ReportBase.FULL_INVENTORY)) // 20 + 1
    assert all(len(json.dumps(p, separators=(",", ":")).encode()) <= 1500 for p in parts)


def test_network_priority_needs_a_reboot() -> None:
    h = Harness()
    h.answer_all(h.boot())
    reply = h.receive(
        [
            2,
            "n",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "0",
                        **get_var("OCPPCommCtrlr", "NetworkConfigurationPriority"),
                    }
                ]
            },
        ]
    )[0]
    assert reply[2]["setVariableResult"][0]["attributeStatus"] == "RebootRequired"


def test_ocpp_21_also_reports_connector_changes_as_notify_event() -> None:
    h = Harness()
    frames = h.connect(ProtocolVersion.V21)
    h.answer_all(h.reply(frames[-1], boot_result()))
    h.station.station_event(h.now, ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    frames = h.answer_all(h.drain())
    assert [f[2] for f in calls(frames)] == ["StatusNotification", "NotifyEvent"]
    [data] = calls(frames, "NotifyEvent")[0][3]["eventData"]
    assert (data["trigger"], data["actualValue"]) == ("Delta", "Occupied")
    assert data["component"] == {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}
    assert data["variable"] == {"name": "AvailabilityState"}
    # 2.0.1: StatusNotification only
    h201 = Harness()
    h201.answer_all(h201.boot())
    h201.station.station_event(h201.now, ConnectorStatusChanged(1, 1, ConnectorStatus.OCCUPIED))
    assert [f[2] for f in calls(h201.answer_all(h201.drain()))] == ["StatusNotification"]


def test_runtime_security_events_are_sent_durably() -> None:
    h = Harness()
    h.station.start(h.now)
    h.started = True
    h.station.station_event(h.now, SecurityEventOccurred("TamperDetectionActivated", "lid"))
    h.drain()
    assert [m.action for m in h.store.queue.values()] == ["SecurityEventNotification"]
    frames = h.answer_all(h.boot())
    [event] = calls(frames, "SecurityEventNotification")
    assert (event[3]["type"], event[3]["techInfo"]) == ("TamperDetectionActivated", "lid")


# -- numbers from the CSMS are bounded before they reach a timer (issue 10) ------------


def test_an_absurd_boot_interval_is_clamped_and_does_not_crash() -> None:
    h = Harness()
    boot = h.connect()[0]
    h.reply(boot, boot_result("Accepted", 10**400))  # valid under the schema
    assert h.station.registration is Registration.ACCEPTED
    assert h.station.model.int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL) == 7 * 86_400
    h.answer_all(h.drain())
    h.advance(10.0)  # the timers run; nothing overflows
    pending = Harness()
    pending.reply(pending.connect()[0], boot_result("Rejected", 10**400))
    assert pending.advance(60.0) == []  # clamped to a week, not retried at once


def test_an_absurd_heartbeat_interval_is_refused() -> None:
    h = Harness()
    h.reply(h.connect()[0], boot_result())
    h.answer_all(h.drain())
    frames = h.receive(
        [
            2,
            "sv",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                        "attributeValue": "9" * 400,
                    }
                ]
            },
        ]
    )
    (result,) = frames[0][2]["setVariableResult"]
    assert result["attributeStatus"] == "Rejected"
    assert result["attributeStatusInfo"]["reasonCode"] == "ValueTooHigh"
    h.advance(400.0)  # heartbeats still scheduled: nothing crashed
