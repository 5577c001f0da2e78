"""OCTT functional block N (diagnostics) against the sans-I/O core: GetLog and
LogStatusNotification (N01), CustomerInformation (N09/N10), the security-log feed.
The test plays both the CSMS and the runtime that uploads."""

from __future__ import annotations

import json
from typing import Any

from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station_io import (
    IdToken,
    LogUploadProgress,
    RecordSecurityEvent,
    SecurityEventOccurred,
    SessionEnded,
    SessionStarted,
    StoppedReason,
    UploadLog,
)
from tests.core.ocpp_schemas import assert_schema_valid

from .helpers import Harness, calls, minimal_result
from .test_station import sample

TAG = IdToken("04A2B3C4", "ISO14443")
V201 = ProtocolVersion.V201


def online() -> Harness:
    h = Harness()
    answer_all(h, h.boot())
    h.commands.clear()
    return h


def csms_call(h: Harness, action: str, payload: dict[str, Any], uid: str) -> dict[str, Any]:
    """Send a CALL as the CSMS; return its (schema-checked) answer payload.  The
    station's CALLs that follow are answered; they are in ``h.sent``."""
    assert_schema_valid(V201, f"{action}Request.json", payload)
    frames = answer_all(h, h.receive([2, uid, action, payload]))
    [answer] = [f for f in frames if f[0] == 3 and f[1] == uid]
    assert_schema_valid(V201, f"{action}Response.json", answer[2])
    answer_payload: dict[str, Any] = answer[2]
    return answer_payload


def progress(h: Harness, request_id: int, status: str) -> list[Any]:
    """The runtime reports an upload step; returns the station's CALLs (answered)."""
    h.station.station_event(h.now, LogUploadProgress(request_id, status))
    return answer_all(h, h.drain())


def log_statuses(frames: list[Any]) -> list[tuple[str, int | None]]:
    out = []
    for frame in calls(frames, "LogStatusNotification"):
        assert_schema_valid(V201, "LogStatusNotificationRequest.json", frame[3])
        out.append((frame[3]["status"], frame[3].get("requestId")))
    return out


def get_log(log_type: str, request_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "logType": log_type,
        "requestId": request_id,
        "log": {"remoteLocation": "https://logs.example.com/upload/"},
        **extra,
    }


def answer_all(h: Harness, frames: list[Any]) -> list[Any]:
    """Answer every CALL in ``frames`` and what follows (N messages get ``{}``)."""
    seen: list[Any] = []
    pending = list(frames)
    while pending:
        frame = pending.pop(0)
        seen.append(frame)
        if frame[0] == 2:
            empty = frame[2] in ("LogStatusNotification", "NotifyCustomerInformation")
            pending += h.reply(frame, {} if empty else minimal_result(frame[2]))
    return seen


# ----------------------------------------------------------------------- N01
def test_tc_n_25_diagnostics_log_upload_success() -> None:
    """TC_N_25_CS: 1-2 GetLog DiagnosticsLog, answered Accepted with a filename;
    3-4 LogStatusNotification Uploading; 5-6 LogStatusNotification Uploaded, both
    with the request's id; afterwards the upload status is Idle again."""
    h = online()
    answer = csms_call(h, "GetLog", get_log("DiagnosticsLog", 7), "g1")
    assert answer["status"] == "Accepted"
    assert answer["filename"].startswith("CS-001-DiagnosticsLog-")
    assert answer["filename"].endswith(".zip")
    [command] = h.commands
    assert command == UploadLog(
        request_id=7,
        log_type="DiagnosticsLog",
        url="https://logs.example.com/upload/",
        filename=answer["filename"],
        oldest_utc_s=None,
        latest_utc_s=None,
        retries=2,
        retry_interval_s=30,
    )
    assert h.station._diagnostics.log_status() == ("Uploading", 7)
    assert log_statuses(progress(h, 7, "Uploading")) == [("Uploading", 7)]
    assert log_statuses(progress(h, 7, "Uploaded")) == [("Uploaded", 7)]
    assert h.station._diagnostics.log_status() == ("Idle", None)


def test_tc_n_26_upload_failed_after_retries() -> None:
    """TC_N_26_CS: 1-2 GetLog DiagnosticsLog with retries 3 and a retryInterval,
    Accepted; 3-4 Uploading (sent once, however many attempts); 5-6 UploadFailure
    once the retries are spent; the timestamps bound the log."""
    h = online()
    request = get_log("DiagnosticsLog", 8, retries=3, retryInterval=5)
    request["log"] |= {
        "oldestTimestamp": "2026-01-01T00:00:00.000Z",
        "latestTimestamp": "2026-01-01T01:00:00.000Z",
    }
    assert csms_call(h, "GetLog", request, "g1")["status"] == "Accepted"
    [command] = h.commands
    assert isinstance(command, UploadLog)
    assert (command.retries, command.retry_interval_s) == (3, 5)
    assert (command.oldest_utc_s, command.latest_utc_s) == (1767225600.0, 1767229200.0)
    frames: list[Any] = []
    for _ in range(4):  # the first attempt and three retries
        frames += progress(h, 8, "Uploading")
    frames += progress(h, 8, "UploadFailure")
    assert log_statuses(frames) == [("Uploading", 8), ("UploadFailure", 8)]
    assert h.station._diagnostics.log_status() == ("Idle", None)


def test_tc_n_35_security_log_upload_success() -> None:
    """TC_N_35_CS: 1-2 GetLog SecurityLog, Accepted; 3-4 Uploading; 5-6 Uploaded.
    The security log it uploads is fed with every security event the core queues."""
    h = online()
    h.station.station_event(h.now, SecurityEventOccurred("TamperDetectionActivated", "lid"))
    answer_all(h, h.drain())
    assert h.commands == [
        RecordSecurityEvent("TamperDetectionActivated", "2026-01-01T00:00:10.000Z", "lid")
    ]
    h.commands.clear()
    answer = csms_call(h, "GetLog", get_log("SecurityLog", 9), "g1")
    assert answer["status"] == "Accepted" and "SecurityLog" in answer["filename"]
    [command] = h.commands
    assert isinstance(command, UploadLog) and command.log_type == "SecurityLog"
    frames = progress(h, 9, "Uploading") + progress(h, 9, "Uploaded")
    assert log_statuses(frames) == [("Uploading", 9), ("Uploaded", 9)]


def test_tc_n_36_second_request_cancels_the_running_upload() -> None:
    """TC_N_36_CS (N01.FR.12): 1-2 GetLog, Accepted; 3-4 Uploading; 5-6 a second
    GetLog, AcceptedCanceled; 7-8 LogStatusNotification AcceptedCanceled for the
    first request; 9-12 Uploading and Uploaded for the second.  Late progress of
    the cancelled upload is not reported."""
    h = online()
    csms_call(h, "GetLog", get_log("DiagnosticsLog", 1), "g1")
    progress(h, 1, "Uploading")
    h.commands.clear()
    h.station.receive_frame(h.now, '[2, "g2", "GetLog", ' + _json(get_log("SecurityLog", 2)) + "]")
    frames = answer_all(h, h.drain())
    assert frames[0] == [
        3,
        "g2",
        {"status": "AcceptedCanceled", "filename": frames[0][2]["filename"]},
    ]
    assert log_statuses(frames) == [("AcceptedCanceled", 1)]
    assert [c.request_id for c in h.commands if isinstance(c, UploadLog)] == [2]
    frames = progress(h, 1, "UploadFailure")  # the cancelled one ends late
    frames += progress(h, 2, "Uploading") + progress(h, 2, "Uploaded")
    assert log_statuses(frames) == [("Uploading", 2), ("Uploaded", 2)]


def test_get_log_rejects_what_it_cannot_do() -> None:
    """N01: an unreadable timestamp is Rejected, and nothing is uploaded."""
    h = online()
    request = get_log("DiagnosticsLog", 3)
    request["log"]["oldestTimestamp"] = "yesterday"
    answer = csms_call(h, "GetLog", request, "g1")
    assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "InvalidValue"
    assert h.commands == []


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


# ------------------------------------------------------------------ N09/N10
def cache_tag(h: Harness) -> None:
    """The CSMS accepts TAG once: the authorization cache holds it (C10)."""
    h.station.authorize(h.now, TAG)
    [request] = calls(h.drain(), "Authorize")
    h.reply(request, {"idTokenInfo": {"status": "Accepted"}})
    assert h.store.state["auth_cache"]["entries"]


def customer_information(h: Harness, *, report: bool, clear: bool, **who: Any) -> list[Any]:
    """CustomerInformation for ``who``; returns the NotifyCustomerInformation payloads."""
    payload = {"requestId": 42, "report": report, "clear": clear, **who}
    before = len(h.sent)
    assert csms_call(h, "CustomerInformation", payload, "ci")["status"] == "Accepted"
    notes = [f[3] for f in calls(h.sent[before:], "NotifyCustomerInformation")]
    for note in notes:
        assert_schema_valid(V201, "NotifyCustomerInformationRequest.json", note)
        assert note["requestId"] == 42
    assert [n["seqNo"] for n in notes] == list(range(len(notes)))
    assert [n["tbc"] for n in notes] == [True] * (len(notes) - 1) + [False]
    return notes


TOKEN = {"idToken": {"idToken": "04A2B3C4", "type": "ISO14443"}}


def test_tc_n_27_report_customer_information_with_data() -> None:
    """TC_N_27_CS: 1-2 CustomerInformation report true for a cached idToken,
    Accepted; 3-4 NotifyCustomerInformation whose data is not empty."""
    h = online()
    cache_tag(h)
    [note] = customer_information(h, report=True, clear=False, **TOKEN)
    assert "authorization cache: ISO14443:04A2B3C4 status Accepted" in note["data"]
    assert h.store.state["auth_cache"]["entries"]  # a report clears nothing


def test_tc_n_28_report_customer_information_without_data() -> None:
    """TC_N_28_CS: 1-2 report true for an idToken the station does not know,
    Accepted; 3-4 one NotifyCustomerInformation (tbc not true) saying no data."""
    h = online()
    [note] = customer_information(h, report=True, clear=False, **TOKEN)
    assert note["data"].startswith("No data held for idToken")


def test_tc_n_32_clear_customer_information_without_report() -> None:
    """TC_N_32_CS: 1-2 CustomerInformation report false, clear true, idToken,
    Accepted; 3-4 one NotifyCustomerInformation saying the data is cleared; the
    cache entry is gone (persisted), so offline the token is no longer known."""
    h = online()
    cache_tag(h)
    [note] = customer_information(h, report=False, clear=True, **TOKEN)
    assert note["data"] == "Cleared: authorization cache: ISO14443:04A2B3C4"
    assert h.store.state["auth_cache"]["entries"] == []
    h.station.connection_lost(h.now, "gone")
    h.station.authorize(h.now, TAG)
    done = [a for a in h.station.actions() if type(a).__name__ == "AuthorizationDone"]
    assert done[0].result.source == "Refused"


def test_tc_n_31_clear_and_report_without_data() -> None:
    """TC_N_31_CS: clear and report for an unknown idToken: Accepted and a
    message that no data is found."""
    h = online()
    [note] = customer_information(h, report=True, clear=True, **TOKEN)
    assert note["data"].startswith("No data held")


def test_clear_keeps_the_local_list_and_says_so() -> None:
    """N10 (TC_N_62_CS purpose: everything except the local list): a token on the
    local list and in the cache; clear and report removes the cache entry only."""
    h = online()
    cache_tag(h)
    csms_call(
        h,
        "SendLocalList",
        {
            "versionNumber": 1,
            "updateType": "Full",
            "localAuthorizationList": [{**TOKEN, "idTokenInfo": {"status": "Blocked"}}],
        },
        "sl",
    )
    notes = customer_information(h, report=True, clear=True, **TOKEN)
    text = "".join(n["data"] for n in notes)
    assert "local authorization list: ISO14443:04A2B3C4 status Blocked" in text
    assert "Cleared: authorization cache" in text
    assert "Not cleared (1): local list entries" in text


def test_customer_identifier_and_certificate_hold_no_data_and_bad_requests_are_invalid() -> None:
    """N09: the station stores no customerIdentifier or customer certificate;
    a request naming two customers, or asking for nothing, is Invalid."""
    h = online()
    [note] = customer_information(
        h, report=True, clear=False, customerIdentifier="OpenChargeAlliance"
    )
    assert note["data"] == "No data held for this customerIdentifier."
    payload = {"requestId": 1, "report": True, "clear": False, **TOKEN}
    payload["customerIdentifier"] = "x"
    assert csms_call(h, "CustomerInformation", payload, "c2")["status"] == "Invalid"
    payload = {"requestId": 1, "report": False, "clear": False, **TOKEN}
    assert csms_call(h, "CustomerInformation", payload, "c3")["status"] == "Invalid"


def test_long_reports_are_split_into_parts() -> None:
    """N09: data is at most 512 characters; a longer report continues in further
    NotifyCustomerInformation messages with tbc.  TransactionEvents still queued
    for the CSMS that name the idToken are part of what the station holds."""
    h = online()
    h.station.connection_lost(h.now, "gone")
    for _ in range(8):
        h.station.station_event(h.now, SessionStarted(1, 1, TAG, sample()))
        h.station.station_event(h.now, SessionEnded(1, StoppedReason.LOCAL, sample()))
    h.drain()
    waiting = h.connect()  # the first TransactionEvent is on its way, unanswered
    payload = {"requestId": 42, "report": True, "clear": True, **TOKEN}
    frames = h.receive([2, "ci", "CustomerInformation", payload])
    frames = answer_all(h, waiting + frames)
    assert [3, "ci", {"status": "Accepted"}] in frames
    notes = [f[3] for f in calls(frames, "NotifyCustomerInformation")]
    assert len(notes) >= 2 and all(len(n["data"]) <= 512 for n in notes)
    assert [n["tbc"] for n in notes] == [True] * (len(notes) - 1) + [False]
    text = "".join(n["data"] for n in notes)
    assert text.count("TransactionEvent Started of transaction") == 8
    assert "Not cleared (8)" in text


def test_every_security_event_reaches_the_security_log_even_when_not_queued_again() -> None:
    """A04/N01: the queue keeps one waiting event per type (a CSMS that keeps failing
    TLS must not fill it), but the station's security log records every one."""
    h = Harness()
    h.station.start(h.now)
    h.started = True
    h.drain()
    for _ in range(3):
        h.station.security_event(h.now, "InvalidCsmsCertificate", "unknown CA")
        h.drain()
    logged = [c for c in h.commands if isinstance(c, RecordSecurityEvent)]
    assert [c.kind for c in logged] == ["InvalidCsmsCertificate"] * 3
    queued = [m for m in h.station.queued_messages if m.action == "SecurityEventNotification"]
    assert len(queued) == 1
