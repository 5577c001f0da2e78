"""Declarative CAN codec and the power module frame table."""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.errors import HalOperationError
from hal.power_can.codec import (
    MAX_NODE_ID,
    ByteOrder,
    CodecError,
    Frame,
    FrameCatalog,
    FrameLengthError,
    FunctionCode,
    Signal,
    SignalError,
    SignalRangeError,
    UnknownFrameError,
    arbitration_id,
    faults_from_bits,
    faults_to_bits,
    power_module_frames,
    split_arbitration_id,
)
from hal.power_stage import PowerStageFault

DOC = Path(__file__).resolve().parents[2] / "docs" / "power-stage-can.md"
NODE = 3
FRAMES = power_module_frames(NODE)


# -- round trips ------------------------------------------------------------


@st.composite
def physical_values(draw: st.DrawFn, frame: Frame) -> dict[str, float]:
    values: dict[str, float] = {}
    for sig in frame.signals:
        if sig.choices:
            values[sig.name] = float(draw(st.sampled_from([code for code, _ in sig.choices])))
        else:
            values[sig.name] = draw(st.floats(sig.physical_min, sig.physical_max, allow_nan=False))
    return values


@settings(max_examples=150, deadline=None)
@given(data=st.data(), frame=st.sampled_from(list(FRAMES)))
def test_every_frame_round_trips_within_resolution(data: st.DataObject, frame: Frame) -> None:
    values = data.draw(physical_values(frame))
    payload = frame.encode(values)
    assert len(payload) == frame.length
    decoded = frame.decode(payload)
    for sig in frame.signals:
        tolerance = sig.scale / 2 + 1e-9 * max(1.0, abs(values[sig.name]))
        assert abs(decoded[sig.name] - values[sig.name]) <= tolerance, sig.name
    # Decoded values are exact steps, so they survive a second round unchanged.
    assert frame.decode(frame.encode(decoded)) == decoded


@settings(max_examples=100, deadline=None)
@given(data=st.data(), frame=st.sampled_from(list(FRAMES)))
def test_raw_round_trip_is_exact(data: st.DataObject, frame: Frame) -> None:
    raw = {
        sig.name: data.draw(
            st.sampled_from([c for c, _ in sig.choices])
            if sig.choices
            else st.integers(sig.raw_min, sig.raw_max)
        )
        for sig in frame.signals
    }
    assert frame.decode_raw(frame.encode_raw(raw)) == raw


# -- raw versus physical ----------------------------------------------------


def test_status_raw_and_scaled_values_are_kept_apart() -> None:
    status = FRAMES.by_name("STATUS")
    payload = bytes.fromhex("01 B1 0F 88 FF 41 00 00".replace(" ", ""))
    assert status.decode_raw(payload) == {
        "mode": 1,
        "voltage_v": 4017,
        "current_a": -120,
        "temperature_c": 65,
        "faults": 0,
    }
    decoded = status.decode(payload)
    assert decoded == {
        "mode": 1.0,
        "voltage_v": 401.7,
        "current_a": -12.0,
        "temperature_c": 25.0,
        "faults": 0.0,
    }
    assert all(isinstance(v, int) for v in status.decode_raw(payload).values())
    assert all(isinstance(v, float) for v in decoded.values())


def test_golden_vectors_match_the_documented_examples() -> None:
    doc = DOC.read_text(encoding="utf-8")
    vectors: list[tuple[str, dict[str, float], str]] = [
        ("CONTROL", {"mode": 1}, "01"),
        (
            "EXPORT_LIMITS",
            {"target_voltage_v": 420.0, "current_limit_a": 50.0, "power_limit_w": 10_000.0},
            "68 10 F4 01 E8 03",
        ),
        (
            "STATUS",
            {
                "mode": 1,
                "voltage_v": 401.7,
                "current_a": -12.0,
                "temperature_c": 25.0,
                "faults": 0,
            },
            "01 B1 0F 88 FF 41 00 00",
        ),
        ("HOST_HEARTBEAT", {"protocol_version": 1}, "01"),
    ]
    for name, values, hex_text in vectors:
        frame = FRAMES.by_name(name)
        assert frame.encode(values).hex(" ").upper() == hex_text
        assert f"| {name} | 0x{frame.frame_id:03X} | `{hex_text}` |" in doc


def test_every_declared_signal_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for frame in FRAMES:
        section = re.search(rf"### \d\.\d {frame.name} \(.*?\n(.*?)(?=\n### |\n## )", doc, re.S)
        assert section is not None, frame.name
        assert f"DLC {frame.length})" in section.group(0), frame.name
        for sig in frame.signals:
            assert f"| `{sig.name}` |" in section.group(1), (frame.name, sig.name)


def test_ids_fold_function_and_node() -> None:
    assert FRAMES.by_name("CONTROL").frame_id == 0x023
    assert FRAMES.by_name("STATUS").frame_id == 0x043
    assert FRAMES.by_name("CAPABILITIES_IMPORT").frame_id == 0x103
    assert arbitration_id(FunctionCode.HOST_HEARTBEAT, 31) == 0x0BF
    assert split_arbitration_id(0x0BF) == (FunctionCode.HOST_HEARTBEAT, 31)
    assert max(f.frame_id for f in power_module_frames(MAX_NODE_ID)) <= 0x7FF
    with pytest.raises(ValueError):
        power_module_frames(MAX_NODE_ID + 1)


def test_fault_bits_round_trip_and_reserved_bits_are_reported() -> None:
    faults = PowerStageFault.OVER_TEMPERATURE | PowerStageFault.COMMUNICATION
    assert faults_to_bits(faults) == 0b100_0100
    assert faults_from_bits(0b100_0100) == (faults, 0)
    assert faults_from_bits(0x8001) == (PowerStageFault.OVER_VOLTAGE, 0x8000)


# -- errors -----------------------------------------------------------------


def test_wrong_length_raises_frame_length_error() -> None:
    status = FRAMES.by_name("STATUS")
    for length in (0, 7, 9):
        with pytest.raises(FrameLengthError) as info:
            status.decode(bytes(length))
        assert info.value.expected == 8
        assert info.value.actual == length
    with pytest.raises(FrameLengthError):
        FRAMES.decode(status.frame_id, b"\x00\x01")


def test_unknown_id_raises_unknown_frame_error() -> None:
    with pytest.raises(UnknownFrameError) as info:
        FRAMES.decode(0x7FF, bytes(8))
    assert info.value.frame_id == 0x7FF
    # The same number as an extended id is a different frame.
    with pytest.raises(UnknownFrameError):
        FRAMES.by_id(0x043, is_extended_id=True)
    assert 0x043 in FRAMES
    assert 0x044 not in FRAMES


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("EXPORT_LIMITS", {"target_voltage_v": -0.1, "current_limit_a": 0, "power_limit_w": 0}),
        ("EXPORT_LIMITS", {"target_voltage_v": 6553.6, "current_limit_a": 0, "power_limit_w": 0}),
        ("EXPORT_LIMITS", {"target_voltage_v": 400, "current_limit_a": 0, "power_limit_w": 1e6}),
        ("EXPORT_LIMITS", {"target_voltage_v": math.nan, "current_limit_a": 0, "power_limit_w": 0}),
        ("IMPORT_LIMITS", {"min_voltage_v": 300, "current_limit_a": math.inf, "power_limit_w": 0}),
        ("CONTROL", {"mode": 3}),
        ("HOST_HEARTBEAT", {"protocol_version": 2}),
    ],
)
def test_out_of_range_values_raise_signal_range_error(name: str, values: dict[str, float]) -> None:
    with pytest.raises(SignalRangeError):
        FRAMES.by_name(name).encode(values)


def test_out_of_range_raw_on_the_wire_raises_on_decode() -> None:
    with pytest.raises(SignalRangeError) as info:
        FRAMES.by_name("STATUS").decode(bytes([7, 0, 0, 0, 0, 0, 0, 0]))
    assert info.value.signal_name == "mode"
    with pytest.raises(SignalRangeError):
        FRAMES.by_name("HOST_HEARTBEAT").decode(b"\x02")


def test_missing_or_unknown_signal_names_raise() -> None:
    frame = FRAMES.by_name("EXPORT_LIMITS")
    with pytest.raises(SignalError, match="missing"):
        frame.encode({"target_voltage_v": 400.0, "current_limit_a": 10.0})
    with pytest.raises(SignalError, match="unknown"):
        frame.encode(
            {"target_voltage_v": 400, "current_limit_a": 10, "power_limit_w": 0, "volts": 1}
        )
    with pytest.raises(SignalError):
        frame.signal("nope")


def test_errors_are_typed_hal_errors_and_value_errors() -> None:
    assert issubclass(CodecError, HalOperationError)
    for cls in (UnknownFrameError, FrameLengthError, SignalRangeError, SignalError):
        assert issubclass(cls, CodecError)
    assert issubclass(SignalRangeError, ValueError)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=8), st.integers(0, 0x7FF))
def test_decoding_garbage_never_raises_anything_but_codec_errors(
    data: bytes, frame_id: int
) -> None:
    with contextlib.suppress(CodecError):
        FRAMES.decode(frame_id, data)


# -- declarations -----------------------------------------------------------


def test_bit_fields_and_big_endian_layouts() -> None:
    frame = Frame(
        "MIXED",
        0x123,
        5,
        (
            Signal("flag", 0, 0, 1),
            Signal("nibble", 0, 4, 4, signed=True),
            Signal("word_be", 1, 0, 16, byte_order=ByteOrder.BIG_ENDIAN),
            Signal("twelve", 3, 4, 12, scale=0.5, offset=-100.0, unit="V"),
        ),
    )
    raw = {"flag": 1, "nibble": -2, "word_be": 0x1234, "twelve": 0xABC}
    payload = frame.encode_raw(raw)
    assert payload == bytes([0xE1, 0x12, 0x34, 0xC0, 0xAB])
    assert frame.decode_raw(payload) == raw
    assert frame.decode(payload)["twelve"] == 0xABC * 0.5 - 100.0


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 1),
    st.integers(-8, 7),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFF),
)
def test_bit_level_raw_round_trip(flag: int, nibble: int, word: int, twelve: int) -> None:
    frame = Frame(
        "MIXED",
        0x123,
        5,
        (
            Signal("flag", 0, 0, 1),
            Signal("nibble", 0, 4, 4, signed=True),
            Signal("word_be", 1, 0, 16, byte_order=ByteOrder.BIG_ENDIAN),
            Signal("twelve", 3, 4, 12),
        ),
    )
    raw = {"flag": flag, "nibble": nibble, "word_be": word, "twelve": twelve}
    assert frame.decode_raw(frame.encode_raw(raw)) == raw


def test_physical_range_edges_round_to_the_nearest_valid_step() -> None:
    sig = Signal("v", 0, 0, 16, scale=0.1, minimum=0.05, maximum=10.0, unit="V")
    assert sig.raw_min == 1
    assert sig.to_raw(0.05) == 1  # would round to 0, below the minimum
    with pytest.raises(SignalRangeError):
        sig.to_raw(0.0)
    with pytest.raises(SignalRangeError):
        sig.check_raw(0)


@pytest.mark.parametrize(
    "signals",
    [
        (Signal("a", 0, 0, 8), Signal("b", 0, 7, 2)),  # overlap
        (Signal("a", 1, 0, 16),),  # does not fit in 2 bytes
        (Signal("a", 0, 0, 8), Signal("a", 1, 0, 8)),  # duplicate name
    ],
)
def test_bad_frame_declarations_are_rejected(signals: tuple[Signal, ...]) -> None:
    with pytest.raises(ValueError):
        Frame("BAD", 0x100, 2, signals)


def test_bad_signal_and_catalog_declarations_are_rejected() -> None:
    with pytest.raises(ValueError):
        Signal("a", 0, 8, 1)
    with pytest.raises(ValueError):
        Signal("a", 0, 0, 8, scale=0.0)
    with pytest.raises(ValueError):
        Signal("a", 0, 0, 8, minimum=300.0)  # nothing representable
    with pytest.raises(ValueError):
        Frame("BAD", 0x800, 0, ())
    frame = Frame("A", 0x100, 0, ())
    with pytest.raises(ValueError):
        FrameCatalog([frame, Frame("B", 0x100, 0, ())])
