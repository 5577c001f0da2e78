"""OCTT functional block B (and the G availability cases it relies on), sans-I/O.

Reset (B11/B12): the CSMS hears of every transaction's end before the station
goes down, the runtime restarts only then, and the next BootNotification says
RemoteReset.  Inoperative survives the restart (G03.FR.08, G04.FR.09).  Before
Accepted, the CSMS may only do what B02/B03 allow.
"""

from __future__ import annotations

from typing import Any

from chargepoint.ocpp.station import DeliverCommand, StoreQueued, StoreState
from chargepoint.ocpp.station_io import (
    ChargingState,
    ConnectorStatus,
    ConnectorStatusChanged,
    EvseActivity,
    IdToken,
    MeterSample,
    ResetKind,
    ResetRequested,
    SetAvailability,
    StoppedReason,
)

from .helpers import FakeStore, Harness, boot_result, calls

TOKEN = IdToken("04A2B3C4")


def snapshot(
    *,
    evse_id: int = 1,
    ev: bool = True,
    auth: bool = True,
    charging: bool = True,
    reason: StoppedReason | None = None,
    import_wh: float = 1500,
) -> EvseActivity:
    """An EVSE snapshot as the bridge sends it."""
    return EvseActivity(
        evse_id,
        1,
        ev_connected=ev,
        authorized=auth,
        power_path_closed=charging,
        energy_transfer=charging,
        meter=MeterSample(evse_id, import_wh, 0, 7000 if charging else 0, 230, 10),
        id_token=TOKEN if auth else None,
        stopped_reason=reason,
    )


def reset_snapshot(evse_id: int = 1) -> EvseActivity:
    """What the bridge reports for an EVSE it resets: charge stopped, ImmediateReset."""
    return snapshot(
        evse_id=evse_id, auth=False, charging=False, reason=StoppedReason.IMMEDIATE_RESET
    )


def booted(store: FakeStore | None = None, **overrides: str) -> Harness:
    h = Harness(store, overrides={"AlignedDataCtrlr.Interval": "0", **overrides})
    h.answer_all(h.boot(interval=100000))  # no heartbeats in the way
    return h


def charging(h: Harness, evse_id: int = 1) -> str:
    """A transaction runs on ``evse_id`` and the CSMS has every event so far."""
    h.station.station_event(h.now, snapshot(evse_id=evse_id))
    events = [f for f in h.answer_all(h.drain()) if f[0] == 2 and f[2] == "TransactionEvent"]
    started = events[0][3]
    assert started["eventType"] == "Started"
    return str(started["transactionInfo"]["transactionId"])


def reset(h: Harness, kind: str, evse_id: int | None = None, unique_id: str = "r") -> Any:
    payload: dict[str, Any] = {"type": kind}
    if evse_id is not None:
        payload["evseId"] = evse_id
    frames = h.receive([2, unique_id, "Reset", payload])
    assert frames[0][:2] == [3, unique_id]
    return frames[0][2]["status"]


def restart(h: Harness) -> Harness:
    """systemd starts the service again: a new core on the same state file."""
    return Harness(h.store, overrides={"AlignedDataCtrlr.Interval": "0"})


def statuses(frames: list[Any]) -> dict[tuple[int, int], str]:
    return {
        (f[3]["evseId"], f[3]["connectorId"]): f[3]["connectorStatus"]
        for f in calls(frames, "StatusNotification")
    }


# ------------------------------------------------------------------------ reset
def test_tc_b_20_reset_on_idle_without_transaction() -> None:
    """TC_B_20: 1. Reset OnIdle, no transaction; 2. Accepted; the station reboots;
    3. BootNotification (reason RemoteReset); 5. the state of every connector."""
    h = booted()
    assert reset(h, "OnIdle") == "Accepted"
    assert h.commands == [ResetRequested(ResetKind.ON_IDLE)]
    assert h.store.state["boot"] == {"reason": "RemoteReset"}

    again = restart(h)
    boot = again.connect()[0]
    assert boot[2] == "BootNotification" and boot[3]["reason"] == "RemoteReset"
    after = again.answer_all(again.reply(boot, boot_result()))
    assert statuses(after) == {(1, 1): "Available", (2, 1): "Available"}
    # B01.FR.03: only the boot right after the reset says so; a power cut later is PowerUp
    assert restart(again).connect()[0][3]["reason"] == "PowerUp"


def test_tc_b_21_reset_on_idle_waits_for_the_transaction_and_its_ended_event() -> None:
    """TC_B_21: 1. Reset OnIdle during a transaction; 2. Scheduled; 3.-5. the driver
    stops and leaves (Ended); 7. only then the station reboots (BootNotification)."""
    h = booted()
    charging(h)
    assert reset(h, "OnIdle") == "Scheduled"
    assert h.commands == []  # B12.FR.01: the charge goes on
    h.station.station_event(h.now, snapshot(auth=False, charging=False))
    h.station.station_event(h.now, snapshot(ev=False, auth=False, charging=False))
    ended = [f for f in h.drain() if f[0] == 2 and f[2] == "TransactionEvent"]
    assert ended[-1][3]["eventType"] == "Ended"
    assert h.commands == []  # B12.FR.03: not before the CSMS has the Ended event
    h.answer_all(ended)
    assert h.commands == [ResetRequested(ResetKind.ON_IDLE)]
    again = restart(h)
    assert again.connect()[0][3]["reason"] == "RemoteReset"


def test_tc_b_22_reset_immediate_ends_the_transaction_before_the_reboot() -> None:
    """TC_B_22: 1. Reset Immediate during a transaction; 2. Accepted; 3. TransactionEvent
    Ended, triggerReason ResetCommand, chargingState EVConnected, stoppedReason
    ImmediateReset, no idToken; 4. answered; the station reboots; 5. BootNotification
    RemoteReset; 7. the state of every connector."""
    h = booted()
    tx_id = charging(h)
    assert reset(h, "Immediate") == "Accepted"
    # the runtime is told to stop that EVSE first, not yet to restart
    assert h.commands == [ResetRequested(ResetKind.IMMEDIATE, 1)]
    h.station.station_event(h.now, reset_snapshot())
    frames = h.drain()
    (ended,) = calls(frames, "TransactionEvent")
    payload = ended[3]
    assert payload["eventType"] == "Ended"
    assert payload["triggerReason"] == "ResetCommand"
    assert payload["transactionInfo"] == {
        "transactionId": tx_id,
        "stoppedReason": "ImmediateReset",
        "chargingState": "EVConnected",
    }
    assert "idToken" not in payload
    assert h.commands == [ResetRequested(ResetKind.IMMEDIATE, 1)]
    h.answer_all(frames)
    assert h.commands[-1] == ResetRequested(ResetKind.IMMEDIATE)

    again = restart(h)
    boot = again.connect()[0]
    assert boot[3]["reason"] == "RemoteReset"
    after = again.answer_all(again.reply(boot, boot_result()))
    assert calls(after, "TransactionEvent") == []  # nothing left to end as PowerLoss
    assert set(statuses(after)) == {(1, 1), (2, 1)}


def test_tc_b_22_offline_the_ended_event_is_stored_before_the_restart() -> None:
    """B12.FR.04 offline: the Ended event cannot be delivered, so the station restarts
    at once, but only after the event and the boot reason are in the state file."""
    h = booted()
    charging(h)
    reset(h, "Immediate")
    h.station.connection_lost(h.now, "gone")
    h.station.station_event(h.now, reset_snapshot())
    actions = h.station.actions()
    kinds = [
        "ended"
        if isinstance(a, StoreQueued) and a.message.payload.get("eventType") == "Ended"
        else "boot"
        if isinstance(a, StoreState) and a.name == "boot"
        else "restart"
        if isinstance(a, DeliverCommand) and a.command == ResetRequested(ResetKind.IMMEDIATE)
        else None
        for a in actions
    ]
    assert [k for k in kinds if k is not None] == ["ended", "boot", "restart"]
    for action in actions:
        h.store.apply(action)
    # after the restart the Ended event goes out, after the RemoteReset boot
    again = restart(h)
    boot = again.connect()[0]
    assert boot[3]["reason"] == "RemoteReset"
    events = calls(again.answer_all(again.reply(boot, boot_result())), "TransactionEvent")
    assert [(e[3]["eventType"], e[3]["triggerReason"]) for e in events] == [
        ("Ended", "ResetCommand")
    ]


def test_tc_b_22_the_reset_ends_a_transaction_its_stop_points_would_keep() -> None:
    """B12.FR.04 with TxStopPoint EVConnected: the runtime's reset snapshot does not
    end the transaction (the cable is still in), so the core ends it itself."""
    h = booted(**{"TxCtrlr.TxStopPoint": "EVConnected"})
    charging(h)
    reset(h, "Immediate")
    h.station.station_event(h.now, reset_snapshot())
    events = [f[3] for f in calls(h.answer_all(h.drain()), "TransactionEvent")]
    assert [e["eventType"] for e in events] == ["Updated", "Ended"]  # EVConnected, then the end
    assert events[-1]["triggerReason"] == "ResetCommand"
    assert events[-1]["transactionInfo"]["stoppedReason"] == "ImmediateReset"


def test_tc_b_22_a_silent_runtime_does_not_hold_the_reset_up() -> None:
    """B12.FR.04: without the runtime's snapshot the transaction is ended after
    MessageTimeout; an unanswered Ended holds the restart for MessageTimeout at most."""
    h = booted(**{"OCPPCommCtrlr.MessageTimeout[Default]": "10"})
    charging(h)
    reset(h, "Immediate")
    frames = h.advance(10.5)
    (ended,) = calls(frames, "TransactionEvent")
    assert ended[3]["triggerReason"] == "ResetCommand"
    assert h.commands == [ResetRequested(ResetKind.IMMEDIATE, 1)]
    h.advance(10.5)  # the CSMS never answers
    assert h.commands[-1] == ResetRequested(ResetKind.IMMEDIATE)


def test_tc_b_27_evse_reset_immediate_ends_its_transaction_only() -> None:
    """TC_B_27: 1. Reset Immediate for one EVSE during a transaction; 2. Accepted;
    3. TransactionEvent Ended (ResetCommand, EVConnected, ImmediateReset); the EVSE
    resets, the station does not reboot."""
    h = booted()
    charging(h, evse_id=1)
    charging(h, evse_id=2)
    assert reset(h, "Immediate", evse_id=1) == "Accepted"
    assert h.commands == [ResetRequested(ResetKind.IMMEDIATE, 1)]
    h.station.station_event(h.now, reset_snapshot(1))
    (ended,) = calls(h.answer_all(h.drain()), "TransactionEvent")
    assert (ended[3]["eventType"], ended[3]["triggerReason"]) == ("Ended", "ResetCommand")
    assert ended[3]["transactionInfo"]["chargingState"] == ChargingState.EV_CONNECTED.value
    assert h.commands == [ResetRequested(ResetKind.IMMEDIATE, 1)]  # no restart
    assert "boot" not in h.store.state
    # the same flags again (the contactor opening) start nothing new
    h.station.station_event(h.now, reset_snapshot(1))
    assert calls(h.drain(), "TransactionEvent") == []


def test_tc_b_26_evse_reset_on_idle_is_scheduled() -> None:
    """TC_B_26: 1. Reset OnIdle for one EVSE during a transaction; 2. Scheduled (the
    runtime resets the EVSE once its session is over)."""
    h = booted()
    charging(h)
    assert reset(h, "OnIdle", evse_id=1) == "Scheduled"
    assert h.commands == [ResetRequested(ResetKind.ON_IDLE, 1)]


# ---------------------------------------------------------- availability persists
def test_tc_g_18_evse_inoperative_persists_across_reboot() -> None:
    """TC_G_18: 1. ChangeAvailability Inoperative, evse 1; 2. Accepted; 3. the connector
    is reported Unavailable; 5. after a reboot the StatusNotification says Unavailable
    for that EVSE (Available for the other) before the runtime says anything."""
    h = booted()
    frames = h.receive(
        [2, "a", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}]
    )
    assert frames[0] == [3, "a", {"status": "Accepted"}]
    assert statuses(frames) == {(1, 1): "Unavailable"}
    h.answer_all(frames)

    again = restart(h)
    boot = again.connect()[0]
    assert again.commands == [SetAvailability(1, None, operative=False)]
    after = again.answer_all(again.reply(boot, boot_result()))
    assert statuses(after) == {(1, 1): "Unavailable", (2, 1): "Available"}
    # the runtime's own report (the bridge starts with everything Available) changes nothing
    again.station.station_event(again.now, ConnectorStatusChanged(1, 1, ConnectorStatus.AVAILABLE))
    assert calls(again.drain(), "StatusNotification") == []


def test_tc_g_19_connector_inoperative_persists_across_reboot() -> None:
    """TC_G_19: ChangeAvailability Inoperative for evse 2 connector 1; 1.-4. after a reboot
    the StatusNotifications say Unavailable for it and Available for the others."""
    h = booted()
    frames = h.receive(
        [
            2,
            "a",
            "ChangeAvailability",
            {"operationalStatus": "Inoperative", "evse": {"id": 2, "connectorId": 1}},
        ]
    )
    assert frames[0] == [3, "a", {"status": "Accepted"}]
    h.answer_all(frames)
    again = restart(h)
    boot = again.connect()[0]
    after = again.answer_all(again.reply(boot, boot_result()))
    assert statuses(after) == {(1, 1): "Available", (2, 1): "Unavailable"}
    assert again.commands == [SetAvailability(2, None, operative=False)]


def test_tc_g_21_station_inoperative_persists_until_set_operative() -> None:
    """TC_G_21: ChangeAvailability Inoperative for the station; 1.-4. after a reboot every
    connector is Unavailable.  Operative again clears what was stored."""
    h = booted()
    h.answer_all(h.receive([2, "a", "ChangeAvailability", {"operationalStatus": "Inoperative"}]))
    again = restart(h)
    boot = again.connect()[0]
    assert again.commands == [SetAvailability(None, None, operative=False)]
    after = again.answer_all(again.reply(boot, boot_result()))
    assert statuses(after) == {(1, 1): "Unavailable", (2, 1): "Unavailable"}

    answer = again.receive([2, "b", "ChangeAvailability", {"operationalStatus": "Operative"}])
    assert answer[0] == [3, "b", {"status": "Accepted"}]
    third = restart(again)
    boot = third.connect()[0]
    assert third.commands == []
    assert set(statuses(third.answer_all(third.reply(boot, boot_result()))).values()) == {
        "Available"
    }


def test_tc_g_18_a_scheduled_inoperative_survives_a_power_cut() -> None:
    """G03.FR.08: Inoperative during a transaction is Scheduled; a power cut before the
    session ends still brings the EVSE up Unavailable."""
    h = booted()
    charging(h)
    frames = h.receive(
        [2, "a", "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}]
    )
    assert frames[0] == [3, "a", {"status": "Scheduled"}]
    again = restart(h)
    boot = again.connect()[0]
    again.answer_all(again.reply(boot, boot_result()))
    assert again.commands == [SetAvailability(1, None, operative=False)]


def test_tc_b_23_unavailable_persists_reset() -> None:
    """TC_B_23: the station is Unavailable; 1. Reset OnIdle; 2. Accepted; the station
    reboots; 3. BootNotification RemoteReset; 5. every connector Unavailable."""
    h = booted()
    h.answer_all(h.receive([2, "a", "ChangeAvailability", {"operationalStatus": "Inoperative"}]))
    assert reset(h, "OnIdle") == "Accepted"
    again = restart(h)
    boot = again.connect()[0]
    assert boot[3]["reason"] == "RemoteReset"
    after = again.answer_all(again.reply(boot, boot_result()))
    assert statuses(after) == {(1, 1): "Unavailable", (2, 1): "Unavailable"}


# ---------------------------------------------------------------- before Accepted
def test_tc_b_30_rejected_station_answers_security_error() -> None:
    """TC_B_30: 1. BootNotification; 2. Rejected; 3. GetBaseReport FullInventory;
    4. CALLERROR SecurityError (B03.FR.08).  A TriggerMessage BootNotification still
    passes (TC_B_31: the CSMS may have the station retry before the interval)."""
    h = Harness()
    boot = h.connect()[0]
    h.reply(boot, boot_result("Rejected", 300))
    frames = h.receive([2, "g", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}])
    assert frames == [[4, "g", "SecurityError", frames[0][3], {}]]
    for unique_id, action, payload in (
        (
            "v",
            "GetVariables",
            {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                    }
                ]
            },
        ),
        ("t", "TriggerMessage", {"requestedMessage": "StatusNotification"}),
        ("r", "Reset", {"type": "Immediate"}),
        ("u", "UpdateFirmware", {}),
    ):
        assert h.receive([2, unique_id, action, payload])[0][:3] == [4, unique_id, "SecurityError"]
    assert h.commands == []
    frames = h.receive([2, "b", "TriggerMessage", {"requestedMessage": "BootNotification"}])
    assert frames[0] == [3, "b", {"status": "Accepted"}]
    assert [f[2] for f in calls(frames)] == ["BootNotification"]


def test_tc_b_30_pending_station_answers_only_what_b02_allows() -> None:
    """B02.FR.01: while Pending the CSMS may get and set variables, ask for reports and
    trigger messages; B02.FR.05: remote start and stop are Rejected; anything else is
    refused with SecurityError."""
    h = Harness()
    boot = h.connect()[0]
    h.reply(boot, boot_result("Pending", 300))
    get = h.receive(
        [
            2,
            "v",
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
    assert get[0][0] == 3
    report = h.receive(
        [2, "g", "GetBaseReport", {"requestId": 1, "reportBase": "SummaryInventory"}]
    )
    assert report[0] == [3, "g", {"status": "Accepted"}]
    h.answer_all(report)
    start = {"idToken": {"idToken": "T1", "type": "Central"}, "remoteStartId": 1}
    assert h.receive([2, "s", "RequestStartTransaction", start])[0] == [
        3,
        "s",
        {"status": "Rejected"},
    ]
    assert h.receive([2, "p", "RequestStopTransaction", {"transactionId": "x"}])[0] == [
        3,
        "p",
        {"status": "Rejected"},
    ]
    for unique_id, action, payload in (
        ("r", "Reset", {"type": "Immediate"}),
        ("a", "ChangeAvailability", {"operationalStatus": "Inoperative"}),
        ("c", "ClearCache", {}),
    ):
        assert h.receive([2, unique_id, action, payload])[0][:3] == [4, unique_id, "SecurityError"]
    assert h.commands == []
    # once Accepted, everything is answered again
    retry = h.advance(300.5)
    assert [f[2] for f in calls(retry)] == ["BootNotification"]
    h.answer_all(h.reply(calls(retry)[0], boot_result()))
    assert h.receive([2, "c2", "ClearCache", {}])[0] == [3, "c2", {"status": "Accepted"}]
