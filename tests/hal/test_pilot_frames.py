"""Pilot-board frame codec: round trips, chunking, and every kind of bad input."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from hal.pilot import BoardFault
from hal.pilot_serial.frames import (
    DUTY_FULL_X100,
    MAX_ENCODED_LEN,
    MAX_FRAME_LEN,
    SYN_FLAG,
    BadCobs,
    BadCrc,
    BadLength,
    ClearFaults,
    Direction,
    Event,
    FieldOutOfRange,
    FrameDecoder,
    FramingProblem,
    Info,
    Keepalive,
    Message,
    OversizeFrame,
    SequenceGap,
    SequenceSync,
    SetContactor,
    SetLock,
    SetPilot,
    StaleFrame,
    Status,
    TruncatedFrame,
    UnknownType,
    cobs_decode,
    cobs_encode,
    crc16,
    encode_frame,
)

# ----------------------------------------------------------------------------- strategies

no_deadline = settings(deadline=None)  # the machine is shared; speed is not under test
u8 = st.integers(0, 0xFF)

set_pilot = st.one_of(
    st.builds(SetPilot, st.just(PilotOutput.PWM), st.integers(1, DUTY_FULL_X100 - 1)),
    st.builds(SetPilot, st.sampled_from([PilotOutput.X1, PilotOutput.F]), st.integers(0, 10_000)),
)
host_messages: st.SearchStrategy[Message] = st.one_of(
    st.just(Keepalive()),
    set_pilot,
    st.builds(SetContactor, st.booleans()),
    st.builds(SetLock, st.booleans()),
    st.just(ClearFaults()),
)
statuses = st.builds(
    Status,
    cp_state=st.sampled_from(CpState),
    output=st.sampled_from(PilotOutput),
    duty_pct_x100=st.integers(0, DUTY_FULL_X100),
    pp_ampacity_a=u8,
    permission=st.booleans(),
    contactor_closed=st.booleans(),
    locked=st.booleans(),
    coil_energised=st.booleans(),
    faults_raw=st.integers(0, 0xFFFF),
    temperature_c_x10=st.integers(-0x8000, 0x7FFF),
)
infos = st.builds(Info, u8, u8, u8, u8, u8, st.integers(0, 0xFFFF_FFFF))
messages: st.SearchStrategy[Message] = st.one_of(host_messages, statuses, infos)


def drain(decoder: FrameDecoder) -> list[Event]:
    return list(decoder.events())


def raw_frame(type_byte: int, seq: int, body: bytes, *, crc_delta: int = 0) -> bytes:
    """A frame built by hand, to say things the typed encoder refuses to say."""
    payload = bytes((type_byte, seq)) + body
    payload += ((crc16(payload) + crc_delta) & 0xFFFF).to_bytes(2, "big")
    return cobs_encode(payload) + b"\x00"


def status(**changes: object) -> Status:
    fields: dict[str, object] = {
        "cp_state": CpState.A,
        "output": PilotOutput.X1,
        "duty_pct_x100": 10_000,
        "pp_ampacity_a": 0,
        "permission": False,
        "contactor_closed": False,
        "locked": False,
        "coil_energised": False,
        "faults_raw": 0,
        "temperature_c_x10": 250,
    }
    fields.update(changes)
    return Status(**fields)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- CRC / COBS


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"123456789") == binascii.crc_hqx(b"123456789", 0xFFFF)


@no_deadline
@given(st.binary(max_size=700))
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


def test_cobs_known_vectors() -> None:
    assert cobs_encode(b"") == b"\x01"
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_decode(b"\x03\x11\x22\x02\x33") == b"\x11\x22\x00\x33"


@pytest.mark.parametrize(
    ("msg", "seq", "syn", "wire_hex"),
    [
        (Keepalive(), 0, True, "02 81 03 35 a6 00"),
        (SetPilot.pwm(16.0), 1, False, "08 02 01 01 06 40 f6 69 00"),
        (SetContactor(True), 2, False, "06 03 02 01 e3 8f 00"),
        (
            status(
                cp_state=CpState.C,
                output=PilotOutput.PWM,
                duty_pct_x100=1600,
                pp_ampacity_a=32,
                permission=True,
                contactor_closed=True,
                locked=True,
                coil_energised=True,
                temperature_c_x10=253,
            ),
            17,
            False,
            "09 41 11 02 01 06 40 20 0f 01 01 04 fd d1 75 00",
        ),
        (
            status(
                cp_state=CpState.B,
                output=PilotOutput.PWM,
                duty_pct_x100=1600,
                faults_raw=BoardFault.RCD_DC.value,
                temperature_c_x10=-50,
            ),
            18,
            False,
            "07 41 12 01 01 06 40 01 01 06 02 ff ce 23 1e 00",
        ),
        (Info(1, 0, 1, 0, 0, 0x5117_0001), 0, True, "02 c2 02 01 02 01 01 03 51 17 04 01 3f dc 00"),
    ],
)
def test_golden_vectors_from_protocol_doc(msg: Message, seq: int, syn: bool, wire_hex: str) -> None:
    """The examples in docs/pilot-board-protocol.md, for firmware authors to test against."""
    assert encode_frame(msg, seq, syn=syn) == bytes.fromhex(wire_hex)


# ----------------------------------------------------------------------------- round trips


@no_deadline
@given(messages, u8)
def test_round_trip(msg: Message, seq: int) -> None:
    frame = encode_frame(msg, seq)
    assert frame.endswith(b"\x00")
    assert frame.count(0) == 1
    assert len(frame) <= MAX_FRAME_LEN
    decoder = FrameDecoder()
    decoder.receive_data(frame)
    assert drain(decoder) == [msg]
    assert decoder.last_seq == seq


@no_deadline
@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_many_frames_any_chunking(msgs: list[Message], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(m, i) for i, m in enumerate(msgs))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    events: list[Event] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoder.receive_data(stream[start:cut])
        events += drain(decoder)
        start = cut
    assert events == msgs


def test_bytes_one_at_a_time() -> None:
    msgs: list[Message] = [SetPilot.pwm(16.0), status(cp_state=CpState.C), Keepalive()]
    stream = b"".join(encode_frame(m, i) for i, m in enumerate(msgs))
    decoder = FrameDecoder()
    seen: list[Event] = []
    for byte in stream:
        decoder.receive_data(bytes((byte,)))
        seen += drain(decoder)
    assert seen == msgs
    assert decoder.buffered_len == 0


def test_several_frames_in_one_chunk() -> None:
    msgs: list[Message] = [SetLock(True), SetContactor(False), ClearFaults(), Keepalive()]
    decoder = FrameDecoder(Direction.HOST_TO_BOARD)
    decoder.receive_data(b"".join(encode_frame(m, 10 + i) for i, m in enumerate(msgs)))
    assert drain(decoder) == msgs


def test_incomplete_frame_waits_for_delimiter() -> None:
    frame = encode_frame(Keepalive(), 0)
    decoder = FrameDecoder()
    decoder.receive_data(frame[:-1])
    assert drain(decoder) == []
    assert decoder.buffered_len == len(frame) - 1
    decoder.receive_data(b"\x00")
    assert drain(decoder) == [Keepalive()]


def test_empty_frames_are_ignored() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x00\x00" + encode_frame(Keepalive(), 0) + b"\x00\x00")
    assert drain(decoder) == [Keepalive()]


# ----------------------------------------------------------------------------- scaling


def test_status_scaling_and_pilot_status() -> None:
    msg = status(
        cp_state=CpState.C,
        output=PilotOutput.PWM,
        duty_pct_x100=1667,
        pp_ampacity_a=32,
        permission=True,
        contactor_closed=True,
        faults_raw=(BoardFault.RCD_DC | BoardFault.DIODE).value,
        temperature_c_x10=-155,
    )
    assert msg.duty_pct == pytest.approx(16.67)
    assert msg.temperature_c == pytest.approx(-15.5)
    pilot = msg.to_pilot_status()
    assert pilot.cp_state is CpState.C
    assert pilot.duty_pct == pytest.approx(16.67)
    assert pilot.pp_ampacity_a == 32.0
    assert pilot.contactor_permission and pilot.contactor_closed
    assert pilot.faults == BoardFault.RCD_DC | BoardFault.DIODE
    assert pilot.temperature_c == pytest.approx(-15.5)
    assert status(pp_ampacity_a=0).to_pilot_status().pp_ampacity_a is None


def test_unknown_fault_bits_become_internal() -> None:
    assert status(faults_raw=0x8001).faults == BoardFault.RCD_AC | BoardFault.INTERNAL


def test_set_pilot_helpers() -> None:
    assert SetPilot.pwm(16.0) == SetPilot(PilotOutput.PWM, 1600)
    assert SetPilot.pwm(5.004).duty_pct_x100 == 500
    assert SetPilot.x1() == SetPilot(PilotOutput.X1, 10_000)
    assert SetPilot.state_f() == SetPilot(PilotOutput.F, 0)


@pytest.mark.parametrize("duty_pct", [0.0, 100.0, -1.0, 150.0])
def test_encoder_refuses_bad_pwm(duty_pct: float) -> None:
    with pytest.raises(ValueError, match="duty"):
        SetPilot.pwm(duty_pct)


def test_encoder_refuses_bad_seq() -> None:
    with pytest.raises(ValueError, match="seq"):
        encode_frame(Keepalive(), 256)


# ----------------------------------------------------------------------------- bad input


def test_corrupted_crc_then_recovers() -> None:
    decoder = FrameDecoder()
    bad = raw_frame(Keepalive.TYPE, 0, b"", crc_delta=1)
    decoder.receive_data(bad + encode_frame(SetLock(True), 1))
    events = drain(decoder)
    assert len(events) == 2
    error = events[0]
    assert isinstance(error, BadCrc)
    assert error.received_crc == (error.computed_crc + 1) & 0xFFFF
    assert "CRC" in error.detail
    assert events[1] == SetLock(True)


def test_flipped_payload_bit_is_caught() -> None:
    payload = bytearray(bytes((SetContactor.TYPE, 0, 1)))
    payload += crc16(bytes(payload)).to_bytes(2, "big")
    payload[2] ^= 0x02  # permission 1 -> 3 on the way
    decoder = FrameDecoder()
    decoder.receive_data(cobs_encode(bytes(payload)) + b"\x00")
    assert [type(e) for e in drain(decoder)] == [BadCrc]


def test_too_short_payload_is_truncated() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(cobs_encode(b"\x01\x00\x05") + b"\x00" + encode_frame(Keepalive(), 1))
    events = drain(decoder)
    assert isinstance(events[0], TruncatedFrame)
    assert events[0].payload_len == 3
    assert events[1] == Keepalive()


@pytest.mark.parametrize("keep", range(1, 14))
def test_cut_frame_gives_one_error_then_recovers(keep: int) -> None:
    """A frame cut short by a line glitch (its tail lost, delimiter seen) is reported once."""
    whole = encode_frame(status(), 0)
    decoder = FrameDecoder()
    decoder.receive_data(whole[:keep] + b"\x00" + encode_frame(status(locked=True), 1))
    events = drain(decoder)
    assert len(events) == 2
    assert isinstance(events[0], BadCobs | BadCrc | TruncatedFrame)
    assert events[1] == status(locked=True)


def test_bad_cobs_detail_names_the_offset() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x05\x11\x22\x00")
    (event,) = drain(decoder)
    assert isinstance(event, BadCobs)
    assert "offset 0" in event.detail
    assert event.raw == b"\x05\x11\x22"


@no_deadline
@given(st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=5))
def test_garbage_between_frames(garbage: list[bytes]) -> None:
    decoder = FrameDecoder()
    msgs = [status(temperature_c_x10=i) for i in range(len(garbage) + 1)]
    stream = encode_frame(msgs[0], 0)
    for i, junk in enumerate(garbage, start=1):
        stream += junk.replace(b"\x00", b"\x55") + b"\x00" + encode_frame(msgs[i], i)
    decoder.receive_data(stream)
    events = drain(decoder)
    assert [e for e in events if isinstance(e, Status)] == msgs
    assert all(isinstance(e, Status | FramingProblem) for e in events)


@no_deadline
@given(st.binary(max_size=400))
def test_fuzz_never_raises_and_resyncs(junk: bytes) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(junk)
    for event in drain(decoder):
        assert isinstance(event, Message | FramingProblem | SequenceSync)
    decoder.receive_data(b"\x00" + encode_frame(SetLock(True), 7, syn=True))
    assert drain(decoder)[-1] == SetLock(True)


def test_oversize_frame_discarded_once() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(b"\x41" * (MAX_ENCODED_LEN + 1))
    decoder.receive_data(b"\x41" * 500)  # still the same runaway frame: no second event
    decoder.receive_data(b"\x00" + encode_frame(Keepalive(), 0))
    events = drain(decoder)
    assert len(events) == 2
    assert isinstance(events[0], OversizeFrame)
    assert events[0].head.startswith(b"\x41\x41")
    assert "longer than" in events[0].detail
    assert events[1] == Keepalive()
    assert decoder.buffered_len == 0


def test_longest_legal_frame_is_accepted() -> None:
    decoder = FrameDecoder()
    junk = bytes(range(1, MAX_ENCODED_LEN + 1))  # exactly at the limit: decoded, not oversize
    decoder.receive_data(junk + b"\x00")
    assert not any(isinstance(e, OversizeFrame) for e in drain(decoder))


def test_unknown_type() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(raw_frame(0x33, 0, b"\x01") + encode_frame(Keepalive(), 1))
    events = drain(decoder)
    assert isinstance(events[0], UnknownType)
    assert events[0].msg_type == 0x33
    assert events[1] == Keepalive()


def test_wrong_direction_is_refused() -> None:
    decoder = FrameDecoder(Direction.BOARD_TO_HOST)
    decoder.receive_data(encode_frame(SetContactor(True), 0) + encode_frame(status(), 1))
    events = drain(decoder)
    assert isinstance(events[0], UnknownType)
    assert "host->board" in events[0].detail
    assert events[1] == status()


def test_bad_length() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(raw_frame(Status.TYPE, 0, b"\x00" * 9) + encode_frame(status(), 1))
    events = drain(decoder)
    assert events[0] == BadLength(msg_type=Status.TYPE, seq=0, body_len=9, expected_len=10)
    assert events[1] == status()


@pytest.mark.parametrize(
    ("type_byte", "body", "field", "value"),
    [
        (SetPilot.TYPE, b"\x03\x00\x10", "output", 3),
        (SetPilot.TYPE, b"\x01\x00\x00", "duty_pct_x100", 0),
        (SetPilot.TYPE, b"\x01\x27\x10", "duty_pct_x100", 10_000),
        (SetPilot.TYPE, b"\x00\x27\x11", "duty_pct_x100", 10_001),
        (SetContactor.TYPE, b"\x02", "permission", 2),
        (SetLock.TYPE, b"\xff", "locked", 255),
        (Status.TYPE, b"\x06" + b"\x00" * 9, "cp_state", 6),
        (Status.TYPE, b"\x00\x03" + b"\x00" * 8, "output", 3),
        (Status.TYPE, b"\x00\x00\xff\xff" + b"\x00" * 6, "duty_pct_x100", 0xFFFF),
    ],
)
def test_field_out_of_range(type_byte: int, body: bytes, field: str, value: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(raw_frame(type_byte, 0, body) + encode_frame(Keepalive(), 1))
    events = drain(decoder)
    assert events[0] == FieldOutOfRange(msg_type=type_byte, seq=0, field=field, value=value)
    assert events[1] == Keepalive()


# ----------------------------------------------------------------------------- sequence numbers


def feed_seqs(decoder: FrameDecoder, seqs: list[int], *, syn_at: int | None = None) -> list[Event]:
    for i, seq in enumerate(seqs):
        decoder.receive_data(encode_frame(status(temperature_c_x10=seq), seq, syn=i == syn_at))
    return drain(decoder)


def temps(events: list[Event]) -> list[int]:
    return [e.temperature_c_x10 for e in events if isinstance(e, Status)]


def test_in_order_and_wrap_have_no_errors() -> None:
    events = feed_seqs(FrameDecoder(), [253, 254, 255, 0, 1])
    assert temps(events) == [253, 254, 255, 0, 1]
    assert len(events) == 5


def test_gap_is_reported_and_frame_kept() -> None:
    events = feed_seqs(FrameDecoder(), [254, 3])
    assert events[0] == status(temperature_c_x10=254)
    assert events[1] == SequenceGap(expected=255, received=3, lost=4)
    assert events[2] == status(temperature_c_x10=3)


def test_duplicates_and_reordered_are_dropped() -> None:
    events = feed_seqs(FrameDecoder(), [0, 1, 2, 2, 1, 3])
    assert temps(events) == [0, 1, 2, 3]
    stale = [e for e in events if isinstance(e, StaleFrame)]
    assert stale == [StaleFrame(expected=3, received=2), StaleFrame(expected=3, received=1)]


def test_syn_restarts_sequence_without_error() -> None:
    decoder = FrameDecoder()
    events = feed_seqs(decoder, [100, 101, 0, 1], syn_at=2)
    assert temps(events) == [100, 101, 0, 1]
    assert SequenceSync(received=0, forced=False) in events
    assert not any(isinstance(e, FramingProblem) for e in events)


def test_peer_restart_without_syn_forces_resync() -> None:
    decoder = FrameDecoder(resync_after_stale=3)
    events = feed_seqs(decoder, [100, 101, 0, 1, 2, 3])
    assert temps(events) == [100, 101, 2, 3]
    assert [type(e) for e in events if not isinstance(e, Status)] == [
        StaleFrame,
        StaleFrame,
        SequenceSync,
    ]
    assert SequenceSync(received=2, forced=True) in events


def test_syn_flag_is_bit_7_of_type() -> None:
    frame = encode_frame(Keepalive(), 5, syn=True)
    assert cobs_decode(frame[:-1])[0] == Keepalive.TYPE | SYN_FLAG


def test_not_in_sync_drops_partial_first_frame_quietly() -> None:
    decoder = FrameDecoder(in_sync=False)
    tail = encode_frame(status(), 0)[5:]  # attached to the line mid-frame
    decoder.receive_data(tail + encode_frame(status(locked=True), 1))
    assert drain(decoder) == [status(locked=True)]


def test_not_in_sync_keeps_a_whole_first_frame() -> None:
    decoder = FrameDecoder(in_sync=False)
    decoder.receive_data(encode_frame(status(), 0) + b"\x07\x01\x00")
    events = drain(decoder)
    assert events[0] == status()
    assert isinstance(events[1], BadCobs)  # after the first delimiter errors count again
