"""OCPP-J framing: parse never raises, malformed frames map to the right CALLERROR."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepoint.errors import LocalProtocolError
from chargepoint.ocpp.rpc import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    Frame,
    MalformedFrame,
    ProtocolVersion,
    Send,
    encode_frame,
    parse_frame,
)

V201, V21 = ProtocolVersion.V201, ProtocolVersion.V21


@pytest.mark.parametrize(
    ("raw", "code", "unique_id"),
    [
        ("not json", "RpcFrameworkError", "-1"),
        ('[2, "a1", "Reset", {"evseId": ' + "9" * 5000 + "}]", "RpcFrameworkError", "-1"),
        ('{"a": 1}', "RpcFrameworkError", "-1"),
        ("[2]", "RpcFrameworkError", "-1"),
        ('[2, 17, "Reset", {}]', "RpcFrameworkError", "-1"),
        ('[2, "' + "x" * 37 + '", "Reset", {}]', "RpcFrameworkError", "-1"),
        ('[2, "a1", "Reset"]', "RpcFrameworkError", "a1"),
        ('[2, "a1", "Reset", []]', "FormatViolation", "a1"),
        ('[9, "a1", "Reset", {}]', "MessageTypeNotSupported", "a1"),
        ('[6, "a1", "Reset", {}]', "MessageTypeNotSupported", "a1"),  # SEND is 2.1 only
    ],
)
def test_malformed_frames_owe_the_ocpp_j_error(raw: str, code: str, unique_id: str) -> None:
    frame = parse_frame(raw, V201)
    assert isinstance(frame, MalformedFrame)
    assert frame.reply is not None
    assert (frame.reply.error_code, frame.reply.unique_id) == (code, unique_id)


def test_broken_answers_are_never_answered() -> None:
    for raw in ('[3, "a1"]', '[4, "a1", "GenericError"]', '[3, "a1", "x"]'):
        frame = parse_frame(raw, V201)
        assert isinstance(frame, MalformedFrame)
        assert frame.reply is None


def test_the_five_message_types_round_trip() -> None:
    frames: list[Frame] = [
        Call("1", "Heartbeat", {}),
        CallResult("2", {"a": 1}),
        CallError("3", "GenericError", "x", {"k": "v"}),
        Send("4", "NotifyPeriodicEventStream", {}),
        CallResultError("5", "FormatViolation", "y", {}),
    ]
    for frame in frames:
        assert parse_frame(encode_frame(frame), V21) == frame


def test_encoding_is_compact_and_keeps_unicode() -> None:
    assert (
        encode_frame(Call("1", "DataTransfer", {"vendorId": "Ünï"}))
        == '[2,"1","DataTransfer",{"vendorId":"Ünï"}]'
    )


def test_we_never_send_an_overlong_id() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(Call("x" * 37, "Heartbeat", {}))


@given(st.text(max_size=200))
def test_parse_never_raises_on_text(raw: str) -> None:
    parse_frame(raw, V21)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.lists(json_values, max_size=6))
def test_parse_never_raises_on_arrays(items: list[object]) -> None:
    result = parse_frame(json.dumps(items), V21)
    if isinstance(result, MalformedFrame) and result.reply is not None:
        assert 1 <= len(result.reply.unique_id) <= 36
