"""HomePlug AV / Green PHY MME codec: byte-exact frames for every message.

The expected frames are written out by hand from the field tables (offsets
count from the first byte of the Ethernet frame, as in ISO 15118-3 Annex A and
docs/slac.md), never produced by the encoder under test. Each is then decoded,
encoded, fed one frame at a time among foreign traffic, truncated and
corrupted.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepoint.errors import LocalProtocolError
from chargepoint.slac import (
    AttenCharInd,
    AttenCharRsp,
    AttenProfileInd,
    MnbcSoundInd,
    SlacMatchCnf,
    SlacMatchReq,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
    ValidateCnf,
    ValidateReq,
    nid_from_nmk,
)
from hal.plc.mme import (
    AmpMapCnf,
    AmpMapReq,
    Dropped,
    DropReason,
    Message,
    Mme,
    MmeEncodeError,
    MmType,
    SetKeyCnf,
    SetKeyReq,
    SetKeyResult,
    VsHostActionInd,
    VsHostActionRsp,
    VsPlLinkStatusCnf,
    VsPlLinkStatusReq,
    VsRsDevCnf,
    VsRsDevReq,
    VsSwVerCnf,
    VsSwVerReq,
    decode_frame,
    encode_frame,
)

EV = bytes.fromhex("0a1b2c3d4e5f")
EVSE = bytes.fromhex("02aabbccdd01")
BCAST = b"\xff" * 6
MODEM = bytes.fromhex("00b052000001")
MODEM_REAL = bytes.fromhex("00b052123456")
RUN = bytes.fromhex("0102030405060708")
NMK = bytes.fromhex("b59319d7e8157ba001b018669ccee30d")  # HPAV key of "HomePlugAV0123"
NID = bytes.fromhex("026bcba5354e08")
AAG = tuple(range(10, 68))  # 58 groups, distinct values
RND = bytes(range(0xA0, 0xB0))


def frame(length: int, fields: dict[int, bytes]) -> bytes:
    """A zeroed frame of ``length`` bytes with ``fields`` placed at their offsets."""
    buf = bytearray(length)
    for offset, value in fields.items():
        assert offset + len(value) <= length, (offset, value)
        buf[offset : offset + len(value)] = value
    return bytes(buf)


def hpav(dst: bytes, src: bytes, mmtype_le: bytes) -> dict[int, bytes]:
    """Offsets 0..18: MACs, EtherType 88 E1, MMV 01, MMTYPE (LE), FMI 00 00."""
    return {0: dst, 6: src, 12: b"\x88\xe1", 14: b"\x01", 15: mmtype_le, 17: b"\x00\x00"}


def vendor(dst: bytes, src: bytes, mmtype_le: bytes) -> dict[int, bytes]:
    """Offsets 0..19: MACs, EtherType 88 E1, MMV 00, MMTYPE (LE), OUI 00 B0 52."""
    return {0: dst, 6: src, 12: b"\x88\xe1", 14: b"\x00", 15: mmtype_le, 17: b"\x00\xb0\x52"}


# (name, destination, source, message, expected frame)
CASES: list[tuple[str, bytes, bytes, Message, bytes]] = [
    (
        "CM_SLAC_PARM.REQ",
        BCAST,
        EV,
        SlacParmReq(run_id=RUN),
        # 19 APP, 20 SEC, 21-28 RunID; padded to 60
        frame(60, {**hpav(BCAST, EV, b"\x64\x60"), 19: b"\x00", 20: b"\x00", 21: RUN}),
    ),
    (
        "CM_SLAC_PARM.CNF",
        EV,
        EVSE,
        SlacParmCnf(forwarding_sta=EV, run_id=RUN),
        # 19-24 M-SOUND_TARGET FF*6, 25 NUM_SOUNDS 0A, 26 Time_Out 06, 27 RESP_TYPE 01,
        # 28-33 FORWARDING_STA, 34 APP, 35 SEC, 36-43 RunID
        frame(
            60,
            {
                **hpav(EV, EVSE, b"\x65\x60"),
                19: b"\xff" * 6,
                25: b"\x0a",
                26: b"\x06",
                27: b"\x01",
                28: EV,
                34: b"\x00",
                35: b"\x00",
                36: RUN,
            },
        ),
    ),
    (
        "CM_START_ATTEN_CHAR.IND",
        BCAST,
        EV,
        StartAttenCharInd(num_sounds=10, time_out=6, forwarding_sta=EV, run_id=RUN),
        # 19 APP, 20 SEC, 21 NUM_SOUNDS, 22 Time_Out, 23 RESP_TYPE, 24-29 FWD, 30-37 RunID
        frame(
            60,
            {
                **hpav(BCAST, EV, b"\x6a\x60"),
                21: b"\x0a",
                22: b"\x06",
                23: b"\x01",
                24: EV,
                30: RUN,
            },
        ),
    ),
    (
        "CM_MNBC_SOUND.IND",
        BCAST,
        EV,
        MnbcSoundInd(count=7, run_id=RUN, random=RND),
        # 19 APP, 20 SEC, 21-37 SenderID, 38 CNT, 39-46 RunID, 47-54 rsvd, 55-70 RND (71)
        frame(71, {**hpav(BCAST, EV, b"\x76\x60"), 38: b"\x07", 39: RUN, 55: RND}),
    ),
    (
        "CM_ATTEN_PROFILE.IND",
        EVSE,
        MODEM_REAL,
        AttenProfileInd(pev_mac=EV, aag=AAG),
        # 19-24 PEV MAC, 25 NumGroups 58, 26 rsvd, 27-84 AAG (85)
        frame(85, {**hpav(EVSE, MODEM_REAL, b"\x86\x60"), 19: EV, 25: b"\x3a", 27: bytes(AAG)}),
    ),
    (
        "CM_ATTEN_CHAR.IND",
        EV,
        EVSE,
        AttenCharInd(source_address=EV, run_id=RUN, num_sounds=9, aag=AAG),
        # 19 APP, 20 SEC, 21-26 EV MAC, 27-34 RunID, 35-51 SOURCE_ID, 52-68 RESP_ID,
        # 69 NumSounds, 70 NumGroups 58, 71-128 AAG (129)
        frame(
            129,
            {
                **hpav(EV, EVSE, b"\x6e\x60"),
                21: EV,
                27: RUN,
                69: b"\x09",
                70: b"\x3a",
                71: bytes(AAG),
            },
        ),
    ),
    (
        "CM_ATTEN_CHAR.RSP",
        EVSE,
        EV,
        AttenCharRsp(source_address=EV, run_id=RUN),
        # as the IND up to 68, 69 Result 00 (70)
        frame(70, {**hpav(EVSE, EV, b"\x6f\x60"), 21: EV, 27: RUN, 69: b"\x00"}),
    ),
    (
        "CM_VALIDATE.REQ",
        EVSE,
        EV,
        ValidateReq(signal_type=0, timer=5, result=1),
        # 19 SignalType, 20 Timer, 21 Result
        frame(60, {**hpav(EVSE, EV, b"\x78\x60"), 19: b"\x00", 20: b"\x05", 21: b"\x01"}),
    ),
    (
        "CM_VALIDATE.CNF",
        EV,
        EVSE,
        ValidateCnf(signal_type=0, toggle_num=0, result=4),
        # 19 SignalType, 20 ToggleNum, 21 Result 4 = not required
        frame(60, {**hpav(EV, EVSE, b"\x79\x60"), 21: b"\x04"}),
    ),
    (
        "CM_SLAC_MATCH.REQ",
        EVSE,
        EV,
        SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN),
        # 19 APP, 20 SEC, 21-22 MVFLength 3E 00, 23-39 PEV_ID, 40-45 PEV MAC,
        # 46-62 EVSE_ID, 63-68 EVSE MAC, 69-76 RunID, 77-84 rsvd (85)
        frame(85, {**hpav(EVSE, EV, b"\x7c\x60"), 21: b"\x3e\x00", 40: EV, 63: EVSE, 69: RUN}),
    ),
    (
        "CM_SLAC_MATCH.CNF",
        EV,
        EVSE,
        SlacMatchCnf(pev_mac=EV, evse_mac=EVSE, run_id=RUN, nid=NID, nmk=NMK),
        # as the REQ with MVFLength 56 00; 85-91 NID, 92 rsvd, 93-108 NMK (109)
        frame(
            109,
            {
                **hpav(EV, EVSE, b"\x7d\x60"),
                21: b"\x56\x00",
                40: EV,
                63: EVSE,
                69: RUN,
                85: NID,
                93: NMK,
            },
        ),
    ),
    (
        "CM_SET_KEY.REQ",
        MODEM,
        EVSE,
        SetKeyReq(nid=NID, new_key=NMK),
        # 19 KeyType 1, 20-23 MyNonce AA*4, 24-27 YourNonce 0, 28 PID 4, 29-30 PRN 0,
        # 31 PMN 0, 32 CCo 0, 33-39 NID, 40 NewEKS 1, 41-56 NMK
        frame(
            60,
            {
                **hpav(MODEM, EVSE, b"\x08\x60"),
                19: b"\x01",
                20: b"\xaa\xaa\xaa\xaa",
                28: b"\x04",
                33: NID,
                40: b"\x01",
                41: NMK,
            },
        ),
    ),
    (
        "CM_SET_KEY.CNF",
        EVSE,
        MODEM_REAL,
        SetKeyCnf(result=1, my_nonce=b"\x11\x22\x33\x44", your_nonce=b"\xaa" * 4),
        # 19 Result, 20-23 MyNonce, 24-27 YourNonce, 28 PID, 29-30 PRN, 31 PMN, 32 CCo
        frame(
            60,
            {
                **hpav(EVSE, MODEM_REAL, b"\x09\x60"),
                19: b"\x01",
                20: b"\x11\x22\x33\x44",
                24: b"\xaa" * 4,
                28: b"\x04",
            },
        ),
    ),
    (
        "CM_AMP_MAP.REQ",
        EV,
        EVSE,
        AmpMapReq(amplitudes=(1, 2, 3, 4, 5)),
        # 19-20 AMLEN (LE) = 5, then 4 bits per carrier, carrier 0 in the low nibble
        frame(60, {**hpav(EV, EVSE, b"\x1c\x60"), 19: struct.pack("<H", 5), 21: b"\x21\x43\x05"}),
    ),
    (
        "CM_AMP_MAP.CNF",
        EVSE,
        EV,
        AmpMapCnf(result=0),
        frame(60, {**hpav(EVSE, EV, b"\x1d\x60"), 19: b"\x00"}),
    ),
    (
        "VS_SW_VER.REQ",
        MODEM,
        EVSE,
        VsSwVerReq(),
        frame(60, vendor(MODEM, EVSE, b"\x00\xa0")),
    ),
    (
        "VS_SW_VER.CNF",
        EVSE,
        MODEM_REAL,
        VsSwVerCnf(status=0, device_class=0x20, version="QCA7000-1.2"),
        # 20 status, 21 device, 22 length (with the NUL), 23.. ASCII
        frame(
            60,
            {
                **vendor(EVSE, MODEM_REAL, b"\x01\xa0"),
                20: b"\x00",
                21: b"\x20",
                22: b"\x0c",
                23: b"QCA7000-1.2\x00",
            },
        ),
    ),
    (
        "VS_RS_DEV.REQ",
        MODEM,
        EVSE,
        VsRsDevReq(),
        frame(60, vendor(MODEM, EVSE, b"\x1c\xa0")),  # 88 E1 00 1C A0 00 B0 52
    ),
    (
        "VS_RS_DEV.CNF",
        EVSE,
        MODEM_REAL,
        VsRsDevCnf(status=0),
        frame(60, {**vendor(EVSE, MODEM_REAL, b"\x1d\xa0"), 20: b"\x00"}),
    ),
    (
        "VS_HOST_ACTION.IND",
        EVSE,
        MODEM_REAL,
        VsHostActionInd(action=2, major_version=1, minor_version=3),
        frame(60, {**vendor(EVSE, MODEM_REAL, b"\x62\xa0"), 20: b"\x02\x01\x03"}),
    ),
    (
        "VS_HOST_ACTION.RSP",
        MODEM,
        EVSE,
        VsHostActionRsp(status=0),
        frame(60, {**vendor(MODEM, EVSE, b"\x63\xa0"), 20: b"\x00"}),
    ),
    (
        "VS_PL_LINK_STATUS.REQ",
        MODEM,
        EVSE,
        VsPlLinkStatusReq(),
        frame(60, vendor(MODEM, EVSE, b"\xb8\xa0")),
    ),
    (
        "VS_PL_LINK_STATUS.CNF",
        EVSE,
        MODEM_REAL,
        VsPlLinkStatusCnf(status=0, link_status=1),
        frame(60, {**vendor(EVSE, MODEM_REAL, b"\xb9\xa0"), 20: b"\x00", 21: b"\x01"}),
    ),
]
IDS = [c[0] for c in CASES]


def test_every_known_mmtype_has_a_case() -> None:
    seen = {int.from_bytes(c[4][15:17], "little") for c in CASES}
    assert seen == {int(t) for t in MmType}


@pytest.mark.parametrize(("name", "dst", "src", "message", "expected"), CASES, ids=IDS)
def test_encode_is_byte_exact(
    name: str, dst: bytes, src: bytes, message: Message, expected: bytes
) -> None:
    assert encode_frame(dst, src, message) == expected


@pytest.mark.parametrize(("name", "dst", "src", "message", "expected"), CASES, ids=IDS)
def test_decode_gives_the_message(
    name: str, dst: bytes, src: bytes, message: Message, expected: bytes
) -> None:
    decoded = decode_frame(expected)
    assert isinstance(decoded, Mme), decoded
    assert (decoded.destination, decoded.source, decoded.message) == (dst, src, message)
    assert decoded.mmtype.name.replace("_", "") == name.replace("_", "").replace(".", "")


def test_frame_lengths_match_the_tables() -> None:
    lengths = {c[0]: len(c[4]) for c in CASES}
    assert lengths["CM_MNBC_SOUND.IND"] == 71
    assert lengths["CM_ATTEN_PROFILE.IND"] == 85
    assert lengths["CM_ATTEN_CHAR.IND"] == 129
    assert lengths["CM_ATTEN_CHAR.RSP"] == 70
    assert lengths["CM_SLAC_MATCH.REQ"] == 85
    assert lengths["CM_SLAC_MATCH.CNF"] == 109
    assert min(lengths.values()) == 60  # everything padded to the Ethernet minimum


def test_fed_frame_by_frame_among_foreign_traffic() -> None:
    ipv6 = frame(
        86, {0: b"\x33\x33\x00\x00\x00\x01", 6: EV, 12: b"\x86\xdd", 14: b"\x60"}
    )  # an IPv6 packet on the same interface
    arp = frame(60, {0: BCAST, 6: EV, 12: b"\x08\x06"})
    stream: list[bytes] = []
    for case in CASES:
        stream += [case[4], ipv6, arp]
    results = [decode_frame(f) for f in stream]
    mmes = [r for r in results if isinstance(r, Mme)]
    assert [m.message for m in mmes] == [c[3] for c in CASES]
    drops = [r for r in results if isinstance(r, Dropped)]
    assert {d.reason for d in drops} == {DropReason.FOREIGN_ETHERTYPE}
    assert len(drops) == 2 * len(CASES)


def test_padding_and_trailing_bytes_are_ignored() -> None:
    unpadded = frame(29, {**hpav(BCAST, EV, b"\x64\x60"), 21: RUN})
    assert decode_frame(unpadded) == Mme(BCAST, EV, SlacParmReq(run_id=RUN))
    assert decode_frame(unpadded + b"\x55" * 100) == Mme(BCAST, EV, SlacParmReq(run_id=RUN))


# Where each layout ends (payload without padding), from the tables.
LAYOUT_END = {
    "CM_SLAC_PARM.REQ": 29,
    "CM_SLAC_PARM.CNF": 44,
    "CM_START_ATTEN_CHAR.IND": 38,
    "CM_MNBC_SOUND.IND": 71,
    "CM_ATTEN_PROFILE.IND": 85,
    "CM_ATTEN_CHAR.IND": 129,
    "CM_ATTEN_CHAR.RSP": 70,
    "CM_VALIDATE.REQ": 22,
    "CM_VALIDATE.CNF": 22,
    "CM_SLAC_MATCH.REQ": 85,
    "CM_SLAC_MATCH.CNF": 109,
    "CM_SET_KEY.REQ": 57,
    "CM_SET_KEY.CNF": 33,
    "CM_AMP_MAP.REQ": 24,
    "CM_AMP_MAP.CNF": 20,
    "VS_SW_VER.REQ": 20,
    "VS_SW_VER.CNF": 35,
    "VS_RS_DEV.REQ": 20,
    "VS_RS_DEV.CNF": 21,
    "VS_HOST_ACTION.IND": 23,
    "VS_HOST_ACTION.RSP": 21,
    "VS_PL_LINK_STATUS.REQ": 20,
    "VS_PL_LINK_STATUS.CNF": 22,
}


@pytest.mark.parametrize(("name", "dst", "src", "message", "expected"), CASES, ids=IDS)
def test_every_truncation_is_dropped_not_raised(
    name: str, dst: bytes, src: bytes, message: Message, expected: bytes
) -> None:
    end = LAYOUT_END[name]
    for cut in range(len(expected) + 1):
        result = decode_frame(expected[:cut])
        if cut < 17:
            assert isinstance(result, Dropped)
            assert result.reason is DropReason.TOO_SHORT, (cut, result)
        elif cut < end:
            assert isinstance(result, Dropped), (cut, result)
            assert result.reason is DropReason.TRUNCATED, (cut, result)
        else:
            assert isinstance(result, Mme), (cut, result)
            assert result.message == message


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("IPv4", frame(60, {12: b"\x08\x00"}), DropReason.FOREIGN_ETHERTYPE),
        (
            "VLAN-tagged",
            frame(64, {12: b"\x81\x00", 16: b"\x88\xe1"}),
            DropReason.FOREIGN_ETHERTYPE,
        ),
        ("runt", b"\x00" * 10, DropReason.TOO_SHORT),
        ("header only", frame(16, {12: b"\x88\xe1"}), DropReason.TOO_SHORT),
        (
            "unknown MMTYPE",
            frame(60, hpav(EVSE, EV, b"\x00\x00")),
            DropReason.UNKNOWN_MMTYPE,
        ),
        (
            "MMV 2",
            frame(60, {**hpav(BCAST, EV, b"\x64\x60"), 14: b"\x02"}),
            DropReason.UNSUPPORTED_MMV,
        ),
        (
            "SLAC with MMV 0",
            frame(60, {**hpav(BCAST, EV, b"\x64\x60"), 14: b"\x00"}),
            DropReason.UNSUPPORTED_MMV,
        ),
        (
            "fragment 1 of 2",
            frame(60, {**hpav(BCAST, EV, b"\x64\x60"), 17: b"\x10"}),
            DropReason.FRAGMENTED,
        ),
        (
            "another vendor's OUI",
            frame(60, {**vendor(EVSE, MODEM_REAL, b"\x01\xa0"), 17: b"\x00\x1f\x84"}),
            DropReason.FOREIGN_VENDOR,
        ),
        (
            "vendor MME cut in the OUI",
            frame(60, vendor(EVSE, MODEM_REAL, b"\x01\xa0"))[:19],
            DropReason.TRUNCATED,
        ),
        (
            "59 attenuation groups",
            frame(86, {**hpav(EVSE, MODEM_REAL, b"\x86\x60"), 19: EV, 25: b"\x3b"}),
            DropReason.INVALID_FIELD,
        ),
        (
            "NumGroups past the end",
            frame(60, {**hpav(EVSE, MODEM_REAL, b"\x86\x60"), 19: EV, 25: b"\x3a"}),
            DropReason.TRUNCATED,
        ),
    ],
)
def test_foreign_and_malformed_frames(name: str, data: bytes, reason: DropReason) -> None:
    result = decode_frame(data)
    assert isinstance(result, Dropped), result
    assert result.reason is reason
    assert result.detail


def test_fmsn_alone_is_not_a_fragment() -> None:
    data = frame(60, {**hpav(BCAST, EV, b"\x64\x60"), 18: b"\x07", 21: RUN})
    assert decode_frame(data) == Mme(BCAST, EV, SlacParmReq(run_id=RUN))


def test_reserved_bytes_are_ignored_on_decode() -> None:
    data = frame(71, {**hpav(BCAST, EV, b"\x76\x60"), 39: RUN, 47: b"\xee" * 8})
    decoded = decode_frame(data)
    assert isinstance(decoded, Mme)
    assert decoded.message == MnbcSoundInd(count=0, run_id=RUN)


def test_big_endian_mvf_length_is_kept_as_read() -> None:
    # pyslac writes MVFLength big-endian; we read the value and do not reject the frame.
    data = frame(85, {**hpav(EVSE, EV, b"\x7c\x60"), 21: b"\x00\x3e", 40: EV, 63: EVSE, 69: RUN})
    decoded = decode_frame(data)
    assert isinstance(decoded, Mme)
    assert isinstance(decoded.message, SlacMatchReq)
    assert decoded.message.mvf_length == 0x3E00


def test_set_key_results_of_both_conventions_are_success() -> None:
    assert SetKeyResult.ok(0) and SetKeyResult.ok(1)
    assert not SetKeyResult.ok(2)


def test_nid_test_vector() -> None:
    assert nid_from_nmk(NMK) == NID
    assert nid_from_nmk(NMK, security_level=1) == NID[:6] + bytes([NID[6] | 0x10])
    with pytest.raises(ValueError):
        nid_from_nmk(NMK[:15])


@pytest.mark.parametrize(
    "message",
    [
        SlacParmReq(run_id=RUN[:7]),
        SlacParmCnf(forwarding_sta=EV[:5], run_id=RUN),
        MnbcSoundInd(count=256, run_id=RUN),
        AttenProfileInd(pev_mac=EV, aag=(300,)),
        AttenCharInd(source_address=EV, run_id=RUN, num_sounds=1, aag=(1,) * 59),
        SlacMatchCnf(pev_mac=EV, evse_mac=EVSE, run_id=RUN, nid=NID, nmk=NMK[:8]),
        SetKeyReq(nid=NID, new_key=NMK, prn=70000),
        AmpMapReq(amplitudes=(16,)),
    ],
)
def test_encode_rejects_bad_fields_with_a_typed_error(message: Message) -> None:
    with pytest.raises(MmeEncodeError) as info:
        encode_frame(EV, EVSE, message)
    assert isinstance(info.value, LocalProtocolError)


def test_encode_rejects_a_bad_mac() -> None:
    with pytest.raises(MmeEncodeError):
        encode_frame(EV[:5], EVSE, SlacParmReq(run_id=RUN))


@settings(max_examples=300, deadline=None)
@given(
    case=st.sampled_from(CASES),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 140),
)
def test_corrupted_frames_never_raise(
    case: tuple[str, bytes, bytes, Message, bytes], flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(case[4])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    result = decode_frame(bytes(data[:cut]))
    assert isinstance(result, Mme | Dropped)
    if isinstance(result, Mme):  # whatever decodes, re-encodes without error
        encode_frame(result.destination, result.source, result.message)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert isinstance(decode_frame(data), Mme | Dropped)
