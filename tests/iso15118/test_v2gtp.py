"""Tests for the sans-I/O V2GTP framer and codec (chargepoint.iso15118.v2gtp)."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepoint.errors import LocalProtocolError, RemoteProtocolError
from chargepoint.iso15118.v2gtp import (
    HEADER_LENGTH,
    ISO20_STREAM_PAYLOAD_TYPES,
    NEED_DATA,
    Action,
    ConnectionClosed,
    Event,
    FrameFault,
    FramerState,
    PayloadType,
    V2gtpError,
    V2gtpFramer,
    V2gtpHeader,
    V2gtpHeaderError,
    V2gtpMessage,
    decode_datagram,
    encode_frame,
    parse_header,
)

STREAM_TYPES = sorted(ISO20_STREAM_PAYLOAD_TYPES)


def raw_frame(version: int, inverse: int, ptype: int, length: int, payload: bytes = b"") -> bytes:
    """A frame with arbitrary (possibly invalid) header fields."""
    return struct.pack(">BBHI", version, inverse, ptype, length) + payload


def feed(framer: V2gtpFramer, chunks: list[bytes], eof: bool = True) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        events.extend(framer.events())
    if eof:
        framer.receive_data(b"")
        events.extend(framer.events())
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- encoding --------------------------------------------------------------------


def test_encode_frame_header_layout() -> None:
    frame = encode_frame(PayloadType.ISO20_DC, b"\x80\x01\x02")
    assert frame == bytes.fromhex("01fe800400000003800102")
    assert parse_header(frame) == V2gtpHeader(1, 0xFE, 0x8004, 3)


def test_encode_frame_sdp_example() -> None:
    assert encode_frame(PayloadType.SDP_REQUEST, b"\x10\x00") == bytes.fromhex(
        "01fe9000000000021000"
    )


def test_encode_frame_accepts_plain_int_of_known_type() -> None:
    assert encode_frame(0x8002, b"") == bytes.fromhex("01fe800200000000")


def test_encode_frame_rejects_unknown_payload_type() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(0x1234, b"")


def test_header_encode_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        V2gtpHeader(1, 0xFE, 0x1_0000, 0).encode()


def test_parse_header_too_short_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        parse_header(b"\x01\xfe\x80")


# --- framer: good streams ----------------------------------------------------------


FRAMES = [
    (PayloadType.SAP, b"\x80\x00\xdb\xab\x93\x71"),
    (PayloadType.ISO20_COMMON, b""),
    (PayloadType.ISO20_DC, bytes(range(256)) * 3),
    (PayloadType.ISO20_AC, b"\x80"),
]


def expected_messages() -> list[Event]:
    return [V2gtpMessage(t, p) for t, p in FRAMES]


def test_one_byte_at_a_time() -> None:
    stream = b"".join(encode_frame(t, p) for t, p in FRAMES)
    framer = V2gtpFramer()
    events = feed(framer, bytewise(stream))
    assert events == [*expected_messages(), ConnectionClosed()]
    assert framer.state is FramerState.CLOSED


def test_all_in_one_read() -> None:
    stream = b"".join(encode_frame(t, p) for t, p in FRAMES)
    events = feed(V2gtpFramer(), [stream])
    assert events == [*expected_messages(), ConnectionClosed()]


def test_need_data_then_message() -> None:
    framer = V2gtpFramer()
    assert framer.next_event() is NEED_DATA
    frame = encode_frame(PayloadType.ISO20_COMMON, b"abc")
    framer.receive_data(frame[:5])
    assert framer.next_event() is NEED_DATA
    framer.receive_data(frame[5:9])
    assert framer.next_event() is NEED_DATA
    framer.receive_data(frame[9:])
    assert framer.next_event() == V2gtpMessage(PayloadType.ISO20_COMMON, b"abc")
    assert framer.next_event() is NEED_DATA


def test_payload_type_is_enum_member() -> None:
    framer = V2gtpFramer()
    framer.receive_data(encode_frame(0x8001, b"x"))
    event = framer.next_event()
    assert isinstance(event, V2gtpMessage)
    assert event.payload_type is PayloadType.SAP


def test_accepts_memoryview_and_bytearray() -> None:
    frame = encode_frame(PayloadType.ISO20_DC, b"xyz")
    framer = V2gtpFramer()
    framer.receive_data(bytearray(frame[:4]))
    framer.receive_data(memoryview(frame)[4:])
    assert list(framer.events()) == [V2gtpMessage(PayloadType.ISO20_DC, b"xyz")]


def test_clean_eof_without_data() -> None:
    framer = V2gtpFramer()
    framer.receive_data(b"")
    assert framer.next_event() == ConnectionClosed()
    assert framer.next_event() == ConnectionClosed()  # sticky
    with pytest.raises(LocalProtocolError):
        framer.receive_data(b"\x01")


def test_payload_at_exact_limit_is_accepted() -> None:
    framer = V2gtpFramer(max_payload_length=10)
    assert feed(framer, [encode_frame(PayloadType.ISO20_AC, b"0123456789")]) == [
        V2gtpMessage(PayloadType.ISO20_AC, b"0123456789"),
        ConnectionClosed(),
    ]


# --- framer: hypothesis ------------------------------------------------------------


frame_st = st.tuples(st.sampled_from(STREAM_TYPES), st.binary(max_size=80))


@st.composite
def split_stream(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=len(data) + 1)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(frame_st, min_size=1, max_size=8), data=st.data())
def test_random_splits_of_concatenated_frames(
    frames: list[tuple[PayloadType, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(t, p) for t, p in frames)
    # b"" means EOF, so empty chunks are never fed mid-stream.
    chunks = [c for c in data.draw(split_stream(stream)) if c]
    events = feed(V2gtpFramer(), chunks)
    assert events == [*(V2gtpMessage(t, p) for t, p in frames), ConnectionClosed()]


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.one_of(
            st.tuples(st.just("ok"), st.sampled_from(STREAM_TYPES), st.binary(max_size=16)),
            st.tuples(
                st.just("unknown"),
                st.sampled_from([0x0000, 0x1234, 0x8005, 0x8101, 0x9000, 0x9001, 0xFFFF]),
                st.binary(max_size=40),
            ),
            st.tuples(
                st.just("oversize"),
                st.sampled_from(STREAM_TYPES),
                st.binary(min_size=17, max_size=60),
            ),
        ),
        min_size=1,
        max_size=8,
    ),
    data=st.data(),
)
def test_discarded_frames_keep_stream_in_sync(
    items: list[tuple[str, int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(raw_frame(1, 0xFE, t, len(p), p) for _, t, p in items)
    chunks = [c for c in data.draw(split_stream(stream)) if c]
    events = feed(V2gtpFramer(max_payload_length=16), chunks)
    expected: list[tuple[str, int, object]] = []
    for kind, ptype, payload in items:
        if kind == "ok":
            expected.append(("msg", ptype, payload))
        elif kind == "unknown":
            expected.append(("discard", ptype, FrameFault.UNKNOWN_PAYLOAD_TYPE))
        else:
            expected.append(("discard", ptype, FrameFault.MESSAGE_TOO_LARGE))
    got: list[tuple[str, int, object]] = []
    for event in events[:-1]:
        if isinstance(event, V2gtpMessage):
            got.append(("msg", event.payload_type, event.payload))
        else:
            assert isinstance(event, V2gtpError)
            assert event.action is Action.DISCARD_MESSAGE
            assert event.payload_type is not None
            got.append(("discard", event.payload_type, event.fault))
    assert got == expected
    assert events[-1] == ConnectionClosed()


# --- framer: header faults ------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "inverse"),
    [(0x02, 0xFE), (0x01, 0xFF), (0x02, 0xFD), (0x00, 0x00), (0xFE, 0x01)],
)
def test_wrong_version_pattern_closes_and_stays_in_error(version: int, inverse: int) -> None:
    framer = V2gtpFramer()
    good = encode_frame(PayloadType.ISO20_DC, b"ok")
    framer.receive_data(good + raw_frame(version, inverse, 0x8002, 2, b"xx") + good)
    assert framer.next_event() == V2gtpMessage(PayloadType.ISO20_DC, b"ok")
    error = framer.next_event()
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.INCORRECT_PATTERN
    assert error.action is Action.CLOSE_CONNECTION
    assert error.header == raw_frame(version, inverse, 0x8002, 2)
    assert framer.state is FramerState.ERROR
    # Sticky: the good frame after the bad header is never delivered.
    assert framer.next_event() is error
    assert list(framer.events()) == [error]
    with pytest.raises(LocalProtocolError):
        framer.receive_data(good)
    with pytest.raises(LocalProtocolError):
        framer.receive_data(b"")


def test_wrong_pattern_detected_before_payload_type_and_length() -> None:
    framer = V2gtpFramer(max_payload_length=4)
    framer.receive_data(raw_frame(0x01, 0x00, 0x1234, 0xFFFF_FFFF))
    event = framer.next_event()
    assert isinstance(event, V2gtpError)
    assert event.fault is FrameFault.INCORRECT_PATTERN


def test_unknown_payload_type_is_discarded_byte_by_byte() -> None:
    bad = raw_frame(1, 0xFE, 0x7777, 5, b"12345")
    good = encode_frame(PayloadType.ISO20_AC, b"after")
    framer = V2gtpFramer()
    events = feed(framer, bytewise(bad + good))
    assert len(events) == 3
    error = events[0]
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.UNKNOWN_PAYLOAD_TYPE
    assert error.action is Action.DISCARD_MESSAGE
    assert (error.payload_type, error.payload_length) == (0x7777, 5)
    assert "unknown" in error.detail
    assert events[1:] == [V2gtpMessage(PayloadType.ISO20_AC, b"after"), ConnectionClosed()]


def test_known_but_unsupported_payload_type_is_discarded() -> None:
    framer = V2gtpFramer()
    framer.receive_data(encode_frame(PayloadType.ISO20_WPT, b"abc"))
    event = framer.next_event()
    assert isinstance(event, V2gtpError)
    assert event.fault is FrameFault.UNKNOWN_PAYLOAD_TYPE
    assert event.action is Action.DISCARD_MESSAGE
    assert "known, not supported" in event.detail
    assert framer.next_event() is NEED_DATA
    assert framer.state is FramerState.OPEN


def test_supported_types_are_configurable() -> None:
    framer = V2gtpFramer(supported_types=[PayloadType.ISO20_WPT])
    framer.receive_data(encode_frame(PayloadType.ISO20_WPT, b"abc"))
    framer.receive_data(encode_frame(PayloadType.ISO20_DC, b"d"))
    events = list(framer.events())
    assert events[0] == V2gtpMessage(PayloadType.ISO20_WPT, b"abc")
    assert isinstance(events[1], V2gtpError)
    assert events[1].fault is FrameFault.UNKNOWN_PAYLOAD_TYPE


def test_oversize_length_is_discarded_and_skipped_exactly() -> None:
    framer = V2gtpFramer(max_payload_length=8)
    oversize = encode_frame(PayloadType.ISO20_DC, b"A" * 9)
    good = encode_frame(PayloadType.ISO20_DC, b"B" * 8)
    # Split inside the oversize payload so that part of the skip happens later.
    framer.receive_data(oversize[:12])
    error = framer.next_event()
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.MESSAGE_TOO_LARGE
    assert error.action is Action.DISCARD_MESSAGE
    assert error.payload_length == 9
    assert framer.next_event() is NEED_DATA
    framer.receive_data(oversize[12:] + good)
    assert framer.next_event() == V2gtpMessage(PayloadType.ISO20_DC, b"B" * 8)


def test_absurd_length_closes_instead_of_skipping() -> None:
    framer = V2gtpFramer(max_payload_length=8, max_discard_length=100)
    framer.receive_data(raw_frame(1, 0xFE, 0x8002, 101))
    error = framer.next_event()
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.MESSAGE_TOO_LARGE
    assert error.action is Action.CLOSE_CONNECTION
    assert framer.state is FramerState.ERROR


def test_huge_unknown_type_closes() -> None:
    framer = V2gtpFramer()
    framer.receive_data(raw_frame(1, 0xFE, 0x4242, 0xFFFF_FFFF))
    error = framer.next_event()
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.UNKNOWN_PAYLOAD_TYPE
    assert error.action is Action.CLOSE_CONNECTION


def test_invalid_configuration() -> None:
    with pytest.raises(LocalProtocolError):
        V2gtpFramer(max_payload_length=-1)
    with pytest.raises(LocalProtocolError):
        V2gtpFramer(max_payload_length=1 << 32)
    with pytest.raises(LocalProtocolError):
        V2gtpFramer(max_discard_length=-1)


# --- framer: truncation at EOF ---------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 4, 7])
def test_eof_inside_header(cut: int) -> None:
    frame = encode_frame(PayloadType.ISO20_COMMON, b"payload")
    framer = V2gtpFramer()
    events = feed(framer, [frame, frame[:cut]])
    assert events[0] == V2gtpMessage(PayloadType.ISO20_COMMON, b"payload")
    error = events[1]
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.TRUNCATED
    assert error.action is Action.CLOSE_CONNECTION
    assert error.header == frame[:cut]
    assert error.payload_type is None
    assert len(events) == 2
    assert framer.state is FramerState.ERROR


@pytest.mark.parametrize("cut", [HEADER_LENGTH, HEADER_LENGTH + 3])
def test_eof_inside_payload(cut: int) -> None:
    frame = encode_frame(PayloadType.ISO20_COMMON, b"payload")
    framer = V2gtpFramer()
    events = feed(framer, bytewise(frame[:cut]))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, V2gtpError)
    assert error.fault is FrameFault.TRUNCATED
    assert (error.payload_type, error.payload_length) == (0x8002, 7)
    assert error.header == frame[:HEADER_LENGTH]


def test_eof_while_skipping_discarded_message() -> None:
    framer = V2gtpFramer()
    events = feed(framer, [raw_frame(1, 0xFE, 0x9999, 10, b"abc")])
    assert [type(e) for e in events] == [V2gtpError, V2gtpError]
    first, second = events
    assert isinstance(first, V2gtpError)
    assert isinstance(second, V2gtpError)
    assert first.action is Action.DISCARD_MESSAGE
    assert second.fault is FrameFault.TRUNCATED
    assert second.action is Action.CLOSE_CONNECTION


def test_zero_length_frame_at_eof_is_complete() -> None:
    assert feed(V2gtpFramer(), [encode_frame(PayloadType.SAP, b"")]) == [
        V2gtpMessage(PayloadType.SAP, b""),
        ConnectionClosed(),
    ]


# --- single datagrams ---------------------------------------------------------------


def test_decode_datagram_ok() -> None:
    msg = decode_datagram(bytes.fromhex("01fe9000000000021000"), [PayloadType.SDP_REQUEST])
    assert msg == V2gtpMessage(PayloadType.SDP_REQUEST, b"\x10\x00")


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"", FrameFault.INVALID_PAYLOAD_LENGTH),
        (bytes.fromhex("01fe9000000000"), FrameFault.INVALID_PAYLOAD_LENGTH),
        (bytes.fromhex("01fe900000000002"), FrameFault.INVALID_PAYLOAD_LENGTH),
        (bytes.fromhex("01fe9000000000021000ff"), FrameFault.INVALID_PAYLOAD_LENGTH),
        (bytes.fromhex("02fd9000000000021000"), FrameFault.INCORRECT_PATTERN),
        (bytes.fromhex("01fe9001000000021000"), FrameFault.UNKNOWN_PAYLOAD_TYPE),
    ],
)
def test_decode_datagram_faults(data: bytes, fault: FrameFault) -> None:
    with pytest.raises(V2gtpHeaderError) as info:
        decode_datagram(data, [PayloadType.SDP_REQUEST])
    assert info.value.fault is fault
    assert isinstance(info.value, RemoteProtocolError)


def test_decode_datagram_length_limit() -> None:
    with pytest.raises(V2gtpHeaderError) as info:
        decode_datagram(
            encode_frame(PayloadType.SAP, b"12345"), [PayloadType.SAP], max_payload_length=4
        )
    assert info.value.fault is FrameFault.MESSAGE_TOO_LARGE
