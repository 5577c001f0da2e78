"""The PN532 frame codec, and the real driver against the simulated PN532 over a pty."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.pn532 import Pn532Reader
from hal.pn532_frames import (
    ACK_FRAME,
    ERROR_FRAME,
    NACK_FRAME,
    Ack,
    Command,
    ErrorFrame,
    FrameDecoder,
    FrameProblem,
    Information,
    Nack,
    TargetA,
    command_frame,
    encode_information,
    encode_target_106a,
    parse_targets_106a,
    response_frame,
)
from hal.sim.token_reader import SimulatedPn532
from hal.token_reader import CardPresented, TokenReader

UID4 = bytes.fromhex("04A2B3C4")
UID7 = bytes.fromhex("04112233445566")


# ------------------------------------------------------------------ codec
def test_command_frame_is_laid_out_as_in_the_user_manual() -> None:
    # UM0701-02 §7.2.2 example: GetFirmwareVersion = 00 00 FF 02 FE D4 02 2A 00
    assert command_frame(Command.GET_FIRMWARE_VERSION) == bytes.fromhex("0000ff02fed4022a00")


def test_decoder_fed_one_byte_at_a_time() -> None:
    stream = (
        b"\x55\x55\x00\x00"  # wake-up noise before the first frame
        + ACK_FRAME
        + response_frame(Command.GET_FIRMWARE_VERSION, bytes.fromhex("32010607"))
        + NACK_FRAME
        + ERROR_FRAME
    )
    decoder = FrameDecoder()
    events = []
    for byte in stream:
        decoder.receive_data(bytes((byte,)))
        events.extend(decoder.events())
    assert events == [
        Ack(),
        Information(0xD5, 0x03, bytes.fromhex("32010607")),
        Nack(),
        ErrorFrame(),
    ]


def test_bad_checksums_are_problems_and_the_decoder_resynchronises() -> None:
    good = response_frame(Command.IN_RELEASE, b"\x00")
    bad_dcs = good[:-2] + bytes(((good[-2] + 1) & 0xFF,)) + good[-1:]
    bad_lcs = good[:4] + bytes(((good[4] + 1) & 0xFF,)) + good[5:]
    decoder = FrameDecoder()
    decoder.receive_data(bad_dcs + bad_lcs + good)
    events = decoder.events()
    assert [type(e) for e in events] == [FrameProblem, FrameProblem, Information]
    assert "data checksum" in str(events[0]) and "length checksum" in str(events[1])


def test_extended_frame_round_trip() -> None:
    payload = bytes(range(256)) * 2
    decoder = FrameDecoder()
    decoder.receive_data(encode_information(0xD5, 0x41, payload))
    assert decoder.events() == [Information(0xD5, 0x41, payload)]


def test_target_data_round_trip_and_truncation() -> None:
    target = TargetA(1, b"\x00\x44", 0x00, UID7)
    data = b"\x01" + encode_target_106a(target)
    assert parse_targets_106a(data) == [target]
    assert parse_targets_106a(b"\x00") == []
    with pytest.raises(ValueError, match="NFCID1"):
        parse_targets_106a(data[:-1])


# ------------------------------------------------------------------ driver over a pty
@pytest.fixture
async def sim() -> AsyncIterator[SimulatedPn532]:
    device = SimulatedPn532()
    task = asyncio.create_task(device.run())
    await asyncio.sleep(0)
    yield device
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def reader(sim: SimulatedPn532) -> AsyncIterator[Pn532Reader]:
    drv = Pn532Reader(sim.url, poll_interval_s=0.02, response_timeout_s=0.3)
    await drv.open()
    yield drv
    await drv.close()


async def test_open_configures_the_chip(sim: SimulatedPn532, reader: Pn532Reader) -> None:
    as_protocol: TokenReader = reader  # the driver is a TokenReader (mypy checks)
    assert as_protocol is reader
    assert reader.firmware is not None and reader.firmware.ic == 0x32
    assert sim.commands_rx == [
        Command.SAM_CONFIGURATION,
        Command.GET_FIRMWARE_VERSION,
        Command.RF_CONFIGURATION,
    ]


async def test_a_tap_is_reported_once_per_presentation(
    sim: SimulatedPn532, reader: Pn532Reader
) -> None:
    assert await reader.poll() is None
    sim.tap(UID4, hold_s=0.3)
    card = await asyncio.wait_for(reader.read_card(), 2)
    assert card == CardPresented(UID4) and card.id_token == "04A2B3C4"
    # held on: not reported again; a second tap after it left is
    second = asyncio.create_task(reader.read_card())
    await asyncio.sleep(0.15)
    assert not second.done()
    await asyncio.sleep(0.3)  # the card left the field
    sim.tap(UID7)
    assert (await asyncio.wait_for(second, 2)).id_token == "04112233445566"


async def test_a_bad_checksum_is_asked_again_then_an_error(
    sim: SimulatedPn532, reader: Pn532Reader
) -> None:
    sim.corrupt_responses = 1
    assert await reader.poll() is None  # NACK, the PN532 repeats its response
    assert reader.stats.nacks_sent == 1
    sim.corrupt_responses = 2
    with pytest.raises(HalOperationError, match="checksum"):
        await reader.poll()
    sim.corrupt_responses = 0
    assert await reader.poll() is None  # the link goes on


async def test_a_silent_reader_times_out(sim: SimulatedPn532, reader: Pn532Reader) -> None:
    sim.silent = True
    with pytest.raises(HalTimeoutError, match="ACK"):
        await reader.poll()
    sim.silent = False
    assert await reader.poll() is None


async def test_open_fails_cleanly_without_a_pn532(sim: SimulatedPn532) -> None:
    sim.silent = True
    drv = Pn532Reader(sim.url, ack_timeout_s=0.05)
    with pytest.raises(HalInitError, match="not answering"):
        await drv.open()
    await drv.close()  # idempotent
    with pytest.raises(HalInitError, match="cannot open"):
        await Pn532Reader("/nonexistent/tty").open()


async def test_the_link_going_away_is_an_operation_error(
    sim: SimulatedPn532, reader: Pn532Reader
) -> None:
    sim.close()
    with pytest.raises(HalOperationError):
        await reader.poll()
