"""Malformed input never escapes as anything but ExiDecodeError."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargepoint.errors import RemoteProtocolError
from chargepoint.iso15118 import exi
from chargepoint.iso15118.exi import ExiDecodeError
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.messages._base import ExiModel
from tests.iso15118.exi_support import all_message_classes, model_strategy

PTS = [0x8001, 0x8002, 0x8003, 0x8004]
CLASSES = all_message_classes()


def check_decode(payload: bytes, pt: int) -> None:
    try:
        model = exi.decode(payload, pt)
    except ExiDecodeError as exc:
        assert isinstance(exc, RemoteProtocolError)
        assert exc.bit_offset >= 0
        return
    # whatever decodes is a valid, re-encodable message
    again = exi.decode(exi.encode(model, pt), pt)
    assert again == model


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=120), pt=st.sampled_from(PTS))
def test_random_bytes(payload: bytes, pt: int) -> None:
    check_decode(payload, pt)
    check_decode(b"\x80" + payload, pt)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, int]:
    cls = draw(st.sampled_from(CLASSES))
    msg: ExiModel = draw(model_strategy(cls, list_cap=2))
    pt = exi.payload_type_of(msg)
    data = bytearray(exi.encode(msg))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "byte"]))
        if kind == "flip" and data:
            bit = draw(st.integers(8, len(data) * 8 - 1)) if len(data) > 1 else 0
            data[bit // 8] ^= 0x80 >> (bit % 8)
        elif kind == "truncate" and data:
            del data[draw(st.integers(1, len(data))) :]
        elif kind == "insert":
            pos = draw(st.integers(1, max(1, len(data))))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] = draw(st.integers(0, 255))
    return bytes(data), draw(st.sampled_from([pt, pt, *PTS]))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=mutated())
def test_mutated_messages(case: tuple[bytes, int]) -> None:
    check_decode(*case)


@pytest.mark.parametrize(
    ("payload", "pt", "fragment"),
    [
        (b"", 0x8002, "header"),
        (b"\x81", 0x8002, "header"),
        (b"\x80", 0x8002, "bit"),
        (b"\x80\x00", 0x9999, "payload type"),
        (bytes.fromhex("808c0400000000000000000a5dd82c8062"), 0x8002, "SessionSetupReq"),
    ],
)
def test_typed_errors(payload: bytes, pt: int, fragment: str) -> None:
    with pytest.raises(ExiDecodeError) as info:
        exi.decode(payload, pt)
    assert fragment in str(info.value)


def test_error_names_path_and_offset() -> None:
    # SessionSetupReq with EVCCID truncated: path and bit offset are reported
    data = bytes.fromhex("808c0400000000000000000a5dd82c80620b2ba6a4ab189919")
    with pytest.raises(ExiDecodeError) as info:
        exi.decode(data, 0x8002)
    err = info.value
    assert err.path[0] == "SessionSetupReq"
    assert err.path[-1] == "EVCCID"
    assert err.bit_offset > 0


def test_huge_lengths_are_rejected_cheaply() -> None:
    # EVCCID length announced as ~2**63 characters
    head = bytes.fromhex("808c0400000000000000000a5dd82c806200")
    data = head + b"\xff" * 9 + b"\x7f" + b"\x00" * 4
    with pytest.raises(ExiDecodeError):
        exi.decode(data, 0x8002)


def test_oversize_array_is_rejected() -> None:
    """After maxOccurs items the grammar has no production for another item."""
    hdr = m.MessageHeader(session_id=b"\x00" * 8, time_stamp=1)
    msg = m.ServiceDiscoveryReq(
        header=hdr, supported_service_i_ds=m.ServiceIDList(service_id=list(range(16)))
    )
    data = exi.encode(msg)
    model, end = exi.decode_ex(data, 0x8002)
    assert model == msg
    # bit end-2 is the 1-bit EE of ServiceIDList (state after 16 items: [EE] + escape);
    # a 17th item could only be signalled through the escape -> rejected
    bits = bytearray(data)
    pos = end - 2
    bits[pos // 8] |= 0x80 >> (pos % 8)
    with pytest.raises(ExiDecodeError, match="undeclared"):
        exi.decode(bytes(bits), 0x8002)
    with pytest.raises(exi.ExiEncodeError):
        exi.encode(
            m.ServiceDiscoveryReq(
                header=hdr,
                supported_service_i_ds=m.ServiceIDList(service_id=list(range(17))),
            )
        )


def test_long_integer_fails_fast() -> None:
    """A TimeStamp with ~100k continuation octets is rejected at once (no quadratic work)."""
    hdr0 = m.MessageHeader(session_id=b"\x00" * 8, time_stamp=0)
    hdr1 = m.MessageHeader(session_id=b"\x00" * 8, time_stamp=1)
    b0 = "".join(f"{x:08b}" for x in exi.encode(m.SessionSetupReq(header=hdr0, evccid="A")))
    b1 = "".join(f"{x:08b}" for x in exi.encode(m.SessionSetupReq(header=hdr1, evccid="A")))
    k = next(i for i, (x, y) in enumerate(zip(b0, b1, strict=True)) if x != y) - 7
    bits = b0[:k] + "1" * 8 * 100_000 + b0[k:]
    bits += "0" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big")
    t0 = time.perf_counter()
    with pytest.raises(ExiDecodeError, match="too long"):
        exi.decode(data, 0x8002)
    assert time.perf_counter() - t0 < 1.0
