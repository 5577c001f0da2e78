"""TxStartPoint / TxStopPoint (E01/E06), charging state (E02) and clock-aligned
meter values (J01/J02), with the fake clock; the test plays the CSMS."""

from __future__ import annotations

from typing import Any

from chargepoint.ocpp.station_io import (
    ChargingState,
    EvseActivity,
    IdToken,
    MeterSample,
    SessionEnded,
    SessionStarted,
    StoppedReason,
)

from .helpers import Harness, calls

TOKEN = IdToken("04A2B3C4")


def meter(evse_id: int = 1, import_wh: float = 1000) -> MeterSample:
    return MeterSample(evse_id, import_wh, 5, 7000, 230, 10)


def activity(
    *,
    ev: bool = False,
    auth: bool = False,
    closed: bool = False,
    energy: bool = False,
    evse_id: int = 1,
    token: IdToken | None = None,
    reason: StoppedReason | None = None,
    remote_start_id: int | None = None,
    state: ChargingState | None = None,
    import_wh: float = 1000,
) -> EvseActivity:
    return EvseActivity(
        evse_id,
        1,
        ev_connected=ev,
        authorized=auth,
        power_path_closed=closed,
        energy_transfer=energy,
        meter=meter(evse_id, import_wh),
        id_token=token if token is not None else (TOKEN if auth else None),
        stopped_reason=reason,
        remote_start_id=remote_start_id,
        charging_state=state,
    )


def booted(**overrides: str) -> Harness:
    h = Harness(overrides={"AlignedDataCtrlr.Interval": "0", **overrides})
    h.answer_all(h.boot(interval=100000))  # no heartbeats in the way
    return h


def feed(h: Harness, event: EvseActivity) -> list[dict[str, Any]]:
    """Submit ``event``; the TransactionEvent payloads it produced (answered)."""
    h.station.station_event(h.now, event)
    return [f[3] for f in calls(h.answer_all(h.drain()), "TransactionEvent")]


def summary(payload: dict[str, Any]) -> tuple[Any, ...]:
    info = payload["transactionInfo"]
    return (
        payload["eventType"],
        payload["triggerReason"],
        info.get("chargingState"),
        info.get("stoppedReason"),
        payload["seqNo"],
    )


# ------------------------------------------------------------ start/stop points
def test_default_points_cable_first_then_authorization_then_charging() -> None:
    h = booted()
    [started] = feed(h, activity(ev=True))
    assert summary(started) == ("Started", "CablePluggedIn", "EVConnected", None, 0)
    assert "idToken" not in started
    assert started["evse"] == {"id": 1, "connectorId": 1}
    # E02/E03: the idToken goes with the first event after the authorization
    [authorized] = feed(h, activity(ev=True, auth=True))
    assert summary(authorized) == ("Updated", "Authorized", None, None, 1)
    assert authorized["idToken"] == {"idToken": "04A2B3C4", "type": "ISO14443"}
    [closed] = feed(h, activity(ev=True, auth=True, closed=True))
    assert summary(closed) == ("Updated", "ChargingStateChanged", "SuspendedEV", None, 2)
    [charging] = feed(h, activity(ev=True, auth=True, closed=True, energy=True))
    assert summary(charging)[1:3] == ("ChargingStateChanged", "Charging")
    assert feed(h, activity(ev=True, auth=True, closed=True, energy=True, import_wh=2000)) == []
    [suspended] = feed(h, activity(ev=True, auth=True, closed=True))
    assert summary(suspended)[1:3] == ("ChargingStateChanged", "SuspendedEV")
    # E06/E09: unplugging ends it
    [ended] = feed(h, activity(import_wh=3000))
    assert summary(ended) == ("Ended", "EVCommunicationLost", "Idle", "EVDisconnected", 5)
    ids = {p["transactionInfo"]["transactionId"] for p in (started, ended)}
    assert len(ids) == 1


def test_authorization_first_starts_with_the_token_and_stop_swipe_ends() -> None:
    h = booted()
    [started] = feed(h, activity(auth=True))
    assert summary(started) == ("Started", "Authorized", "Idle", None, 0)
    assert started["idToken"]["idToken"] == "04A2B3C4"
    [plugged] = feed(h, activity(ev=True, auth=True))
    assert summary(plugged) == ("Updated", "ChargingStateChanged", "EVConnected", None, 1)
    assert "idToken" not in plugged
    feed(h, activity(ev=True, auth=True, closed=True, energy=True))
    # E07: the token presented again -> Authorized no longer met -> StopAuthorized / Local
    [ended] = feed(h, activity(ev=True))
    assert summary(ended)[:4] == ("Ended", "StopAuthorized", "EVConnected", "Local")
    # the cable still being in does not start a new transaction: nothing *occurred*
    assert feed(h, activity(ev=True)) == []
    assert feed(h, activity()) == []
    [again] = feed(h, activity(ev=True))
    assert summary(again) == ("Started", "CablePluggedIn", "EVConnected", None, 0)
    assert again["transactionInfo"]["transactionId"] != started["transactionInfo"]["transactionId"]


def test_deauthorized_and_remote_stop_reasons() -> None:
    h = booted()
    feed(h, activity(ev=True, auth=True))
    [ended] = feed(h, activity(ev=True, reason=StoppedReason.DE_AUTHORIZED))
    assert summary(ended)[:4] == ("Ended", "Deauthorized", None, "DeAuthorized")
    feed(h, activity())
    feed(h, activity(ev=True, auth=True))
    [ended] = feed(h, activity(ev=True, reason=StoppedReason.REMOTE))
    assert summary(ended)[:4] == ("Ended", "RemoteStop", None, "Remote")


def test_remote_start_of_a_running_transaction_reports_remote_start_id() -> None:
    h = booted()
    feed(h, activity(ev=True))
    [update] = feed(h, activity(ev=True, auth=True, remote_start_id=7))
    assert summary(update)[:2] == ("Updated", "RemoteStart")
    assert update["transactionInfo"]["remoteStartId"] == 7
    assert update["idToken"]["idToken"] == "04A2B3C4"


def test_power_path_closed_start_point() -> None:
    h = booted(**{"TxCtrlr.TxStartPoint": "PowerPathClosed"})
    assert feed(h, activity(ev=True)) == []
    assert feed(h, activity(ev=True, auth=True)) == []
    [started] = feed(h, activity(ev=True, auth=True, closed=True))
    assert summary(started) == ("Started", "ChargingStateChanged", "SuspendedEV", None, 0)
    assert started["idToken"]["idToken"] == "04A2B3C4"
    values = started["meterValue"][0]["sampledValue"]
    assert values[0]["context"] == "Transaction.Begin"
    # stop points EVConnected,Authorized: the power path opening only changes the state
    [opened] = feed(h, activity(ev=True, auth=True))
    assert summary(opened) == ("Updated", "ChargingStateChanged", "EVConnected", None, 1)
    assert feed(h, activity(ev=True, auth=True, closed=True))[0]["eventType"] == "Updated"
    [ended] = feed(h, activity())
    assert summary(ended)[:4] == ("Ended", "EVCommunicationLost", "Idle", "EVDisconnected")


def test_energy_transfer_start_and_stop_points() -> None:
    h = booted(
        **{"TxCtrlr.TxStartPoint": "EnergyTransfer", "TxCtrlr.TxStopPoint": "EnergyTransfer"}
    )
    assert feed(h, activity(ev=True, auth=True, closed=True)) == []
    [first] = feed(h, activity(ev=True, auth=True, closed=True, energy=True))
    assert summary(first) == ("Started", "ChargingStateChanged", "Charging", None, 0)
    [ended] = feed(h, activity(ev=True, auth=True, closed=True))
    assert summary(ended) == ("Ended", "ChargingStateChanged", "SuspendedEV", "StoppedByEV", 1)
    [second] = feed(h, activity(ev=True, auth=True, closed=True, energy=True))
    assert summary(second)[:2] == ("Started", "ChargingStateChanged")
    assert second["transactionInfo"]["transactionId"] != first["transactionInfo"]["transactionId"]
    # unplugging while it runs: the most upstream lost condition names the end
    [ended] = feed(h, activity())
    assert summary(ended)[:4] == ("Ended", "EVCommunicationLost", "Idle", "EVDisconnected")


def test_stop_point_never_met_does_not_end_and_station_can_state_suspended_evse() -> None:
    h = booted(**{"TxCtrlr.TxStartPoint": "EVConnected", "TxCtrlr.TxStopPoint": "Authorized"})
    feed(h, activity(ev=True))
    [held] = feed(h, activity(ev=True, state=ChargingState.SUSPENDED_EVSE))
    assert summary(held)[1:3] == ("ChargingStateChanged", "SuspendedEVSE")
    # nothing is left of the session: it ends even though Authorized was never met
    [ended] = feed(h, activity())
    assert summary(ended)[:4] == ("Ended", "EVCommunicationLost", "Idle", "EVDisconnected")


def test_session_events_still_work_and_mix_with_activity() -> None:
    h = booted()
    h.station.station_event(h.now, SessionStarted(1, 1, TOKEN, meter()))
    [started] = [f[3] for f in calls(h.answer_all(h.drain()), "TransactionEvent")]
    assert summary(started)[:2] == ("Started", "Authorized")
    # an activity on the same EVSE does not start a second transaction
    [update] = feed(h, activity(ev=True, auth=True))
    assert summary(update)[:3] == ("Updated", "ChargingStateChanged", "EVConnected")
    h.station.station_event(h.now, SessionEnded(1, StoppedReason.EV_DISCONNECTED, meter()))
    [ended] = [f[3] for f in calls(h.answer_all(h.drain()), "TransactionEvent")]
    assert summary(ended)[:2] == ("Ended", "EVCommunicationLost")


def test_unknown_evse_activity_is_ignored() -> None:
    h = booted()
    assert feed(h, activity(ev=True, evse_id=9)) == []


# --------------------------------------------------------- device model (B05)
def set_variable(h: Harness, variable: str, value: str, component: str = "TxCtrlr") -> Any:
    frames = h.receive(
        [
            2,
            "sv",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": value,
                        "component": {"name": component},
                        "variable": {"name": variable},
                    }
                ]
            },
        ]
    )
    return frames[0][2]["setVariableResult"][0]


def test_set_tx_start_point_rejects_unknown_members_and_applies_good_ones() -> None:
    h = booted()
    bad = set_variable(h, "TxStartPoint", "EVConnected,Plugged")
    assert bad["attributeStatus"] == "Rejected"
    assert bad["attributeStatusInfo"] == {"reasonCode": "InvalidValue"}
    assert set_variable(h, "TxStopPoint", "Authorized,Authorized")["attributeStatus"] == "Rejected"
    assert set_variable(h, "TxStartPoint", "PowerPathClosed")["attributeStatus"] == "Accepted"
    assert set_variable(h, "TxStopPoint", "EnergyTransfer")["attributeStatus"] == "Accepted"
    assert feed(h, activity(ev=True, auth=True)) == []
    [started] = feed(h, activity(ev=True, auth=True, closed=True, energy=True))
    assert started["eventType"] == "Started"
    [ended] = feed(h, activity(ev=True, auth=True, closed=True))
    assert ended["eventType"] == "Ended"


# ---------------------------------------------------- clock-aligned values (J01/J02)
def test_aligned_values_at_exact_clock_instants_with_and_without_transaction() -> None:
    h = Harness()  # AlignedDataCtrlr.Interval default 900 s
    # the CSMS clock: UTC 00:00:10 at monotonic 1000; no heartbeats in the way
    h.answer_all(h.boot(interval=100000))
    feed(h, activity(ev=True, import_wh=1234))
    h.station.station_event(h.now, meter(2, 555))  # EVSE 2: no transaction
    h.answer_all(h.drain())
    sent_before = len(h.timeline)
    frames = h.advance(889.9)
    assert calls(frames, "TransactionEvent") == calls(frames, "MeterValues") == []
    frames = h.advance(0.2)
    when = [t for t, f in h.timeline[sent_before:] if f[0] == 2]
    assert when and when[0] == 1890.0  # exactly 00:15:00 UTC
    seen = h.answer_all(frames)
    [tx] = [f[3] for f in calls(seen, "TransactionEvent")]
    assert (tx["eventType"], tx["triggerReason"], tx["timestamp"]) == (
        "Updated",
        "MeterValueClock",
        "2026-01-01T00:15:00.000Z",
    )
    [values] = tx["meterValue"]
    assert values["timestamp"] == "2026-01-01T00:15:00.000Z"
    assert {v["context"] for v in values["sampledValue"]} == {"Sample.Clock"}
    assert {v["measurand"]: v["value"] for v in values["sampledValue"]} == {
        "Energy.Active.Import.Register": 1234,
        "Energy.Active.Export.Register": 5,
    }
    [mv] = [f[3] for f in calls(seen, "MeterValues")]
    assert mv["evseId"] == 2
    assert mv["meterValue"][0]["timestamp"] == "2026-01-01T00:15:00.000Z"
    assert mv["meterValue"][0]["sampledValue"][0] == {
        "value": 555,
        "context": "Sample.Clock",
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": "Wh"},
    }
    # the next instant, 15 minutes later
    sent_before = len(h.timeline)
    h.answer_all(h.advance(900))
    stamps = [f[3].get("timestamp") for _, f in h.timeline[sent_before:] if f[0] == 2]
    assert "2026-01-01T00:30:00.000Z" in stamps


def test_aligned_interval_zero_is_off_and_set_variables_reschedules() -> None:
    h = booted()  # Interval 0
    feed(h, activity(ev=True))
    assert h.station.next_deadline() == h.now + 100000  # the heartbeat only
    assert h.advance(3600) == []
    # now = UTC 01:00:10; Interval 300 -> the next instant is 01:05:00
    status = set_variable(h, "Interval", "300", component="AlignedDataCtrlr")
    assert status["attributeStatus"] == "Accepted"
    assert h.station.next_deadline() == h.now + 290
    frames = h.answer_all(h.advance(290))
    [tx] = [f[3] for f in calls(frames, "TransactionEvent")]
    assert (tx["triggerReason"], tx["timestamp"]) == ("MeterValueClock", "2026-01-01T01:05:00.000Z")


def test_aligned_meter_values_outside_a_transaction_are_not_kept_offline() -> None:
    h = Harness()
    h.answer_all(h.boot(interval=100000))
    h.station.station_event(h.now, meter(1))
    h.station.connection_lost(h.now, "gone")
    h.drain()
    h.advance(890)
    assert h.station.queued_messages == ()


def test_tx_ended_interval_samples_go_into_the_ended_event() -> None:
    h = booted(**{"AlignedDataCtrlr.TxEndedInterval": "300"})  # UTC 00:00:10 now
    feed(h, activity(ev=True, import_wh=1000))
    h.station.station_event(h.now, meter(1, 1100))
    assert h.advance(600) == []  # nothing sent on the way (Interval 0)
    [ended] = feed(h, activity(import_wh=1300))
    entries = ended["meterValue"]
    assert [(e["timestamp"], e["sampledValue"][0]["context"]) for e in entries] == [
        ("2026-01-01T00:05:00.000Z", "Sample.Clock"),
        ("2026-01-01T00:10:00.000Z", "Sample.Clock"),
        (ended["timestamp"], "Transaction.End"),
    ]
    assert entries[0]["sampledValue"][0]["value"] == 1100
    # a new transaction starts with no kept samples
    assert feed(h, activity(ev=True))[0]["eventType"] == "Started"
    h.advance(100)
    [ended] = feed(h, activity())
    assert [e["sampledValue"][0]["context"] for e in ended["meterValue"]] == ["Transaction.End"]
