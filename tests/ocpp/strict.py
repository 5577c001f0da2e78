"""A strict CSMS's view of what the station sent: every CALL and CALLRESULT of ours
against the OCA JSON schema of its action, with formats checked as a strict CSMS
checks them (the ``ocpp`` package checks no formats at all).

Timestamps must be RFC 3339 in UTC with milliseconds and ``Z``
(``2026-12-01T03:04:05.678Z``: what we promise in docs/ocpp.md); URIs must parse.
Used after end-to-end tests: ``assert not strict_violations(csms)``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from chargepoint.ocpp.rpc import ProtocolVersion
from tests.core.ocpp_schemas import schema_path

UTC_MS = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$"
)


@cache
def _checker() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def _date_time(value: object) -> bool:
        return not isinstance(value, str) or UTC_MS.match(value) is not None

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        return (
            not isinstance(value, str)
            or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", value) is not None
        )

    return checker


@cache
def _validator(version: ProtocolVersion, name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(schema_path(version, name).read_text(encoding="utf-8"))
    return jsonschema.Draft6Validator(schema, format_checker=_checker())


def _frames(raw: list[tuple[str, Any]]) -> list[tuple[str, list[Any]]]:
    out = []
    for direction, raw_frame in raw:
        frame = raw_frame
        if isinstance(frame, str | bytes):
            try:
                frame = json.loads(frame)
            except ValueError:
                continue
        if isinstance(frame, list) and len(frame) >= 3:
            out.append((direction, frame))
    return out


def strict_violations(frames: list[tuple[str, Any]], version: ProtocolVersion) -> list[str]:
    """What a strict CSMS finds wrong in the station's frames (``"in"`` = from the
    station), each naming the action, the message id and the offending path."""
    calls_out: dict[str, str] = {}  # the CSMS's CALLs: message id -> action
    problems: list[str] = []
    for direction, frame in _frames(frames):
        kind, message_id = frame[0], frame[1]
        if direction == "out":
            if kind == 2 and len(frame) == 4:
                calls_out[str(message_id)] = str(frame[2])
            continue
        if kind == 2 and len(frame) == 4:
            action, payload, name = str(frame[2]), frame[3], f"{frame[2]}Request.json"
        elif kind == 3 and str(message_id) in calls_out:
            action = calls_out[str(message_id)]
            payload, name = frame[2], f"{action}Response.json"
        else:
            continue
        for error in _validator(version, name).iter_errors(payload):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{action} {message_id}: {where}: {error.message}")
    return problems


def assert_strictly_valid(frames: list[tuple[str, Any]], subprotocol: str | None) -> None:
    """For fixtures: every frame of the station's passes a strict CSMS."""
    version = ProtocolVersion.V21 if subprotocol == "ocpp2.1" else ProtocolVersion.V201
    problems = strict_violations(frames, version)
    assert not problems, "a strict CSMS refuses: " + "; ".join(problems[:5])
