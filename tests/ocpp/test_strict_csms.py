"""The strict CSMS check itself catches what the ``ocpp`` package lets through."""

from __future__ import annotations

from chargepoint.ocpp.rpc import ProtocolVersion
from tests.ocpp.strict import strict_violations

V201 = ProtocolVersion.V201


def heartbeat_answer(current_time: str) -> list[tuple[str, object]]:
    return [("in", [2, "h1", "Heartbeat", {}]), ("out", [3, "h1", {"currentTime": current_time}])]


def status(timestamp: str) -> list[tuple[str, object]]:
    payload = {"timestamp": timestamp, "connectorStatus": "Available", "evseId": 1,
               "connectorId": 1}  # fmt: skip
    return [("in", [2, "1", "StatusNotification", payload])]


def test_a_timestamp_without_milliseconds_or_z_is_refused() -> None:
    assert strict_violations(status("2026-12-01T03:04:05.678Z"), V201) == []
    for bad in (
        "2026-12-01T03:04:05Z",
        "2026-12-01T03:04:05.678+00:00",
        "2026-12-01 03:04:05.678Z",
    ):
        problems = strict_violations(status(bad), V201)
        assert problems and "timestamp" in problems[0], bad


def test_answers_to_the_csms_are_checked_against_the_response_schema() -> None:
    frames = [
        ("out", '[2, "c1", "GetVariables", {"getVariableData": []}]'),
        ("in", [3, "c1", {"getVariableResult": [{"attributeStatus": "Maybe"}]}]),
    ]
    problems = strict_violations(frames, V201)
    assert problems and problems[0].startswith("GetVariables c1")
    # the CSMS's own frames are not ours to judge
    assert strict_violations(heartbeat_answer("yesterday"), V201) == []
