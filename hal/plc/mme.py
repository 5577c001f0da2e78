"""HomePlug AV / Green PHY management-message (MME) codec: sans-I/O, one frame at a time.

Frame layout (offsets from the first byte of the Ethernet frame)::

    0  destination MAC (6)     6  source MAC (6)     12  EtherType 88 E1 (HomePlug AV)
    14 MMV (1): 0x01 HPAV 1.1 / Green PHY (SLAC, SET_KEY, AMP_MAP); 0x00 QCA vendor MMEs
    15 MMTYPE (2, little-endian) = base | mode (REQ 0, CNF 1, IND 2, RSP 3)
    MMV 1:  17 FMI (2): fragmentation (NF_MI/FN_MI nibbles, FMSN); payload from 19
    MMV 0:  17 OUI 00 B0 52 (Qualcomm Atheros);                   payload from 20

Frames we build are zero-padded to the 60-byte Ethernet minimum. The layouts
of every payload are the tables of ISO 15118-3 Annex A / HPGP as quoted in
``docs/slac.md``; SLAC messages are the core's vocabulary
(:mod:`chargepoint.slac`), the host-to-modem messages live here.

Errors::

    decode_frame(frame) -> Mme | Dropped    never raises: a malformed, truncated,
                                            fragmented or foreign frame is a Dropped
                                            with a DropReason the caller counts and logs
    encode_frame(...)   -> bytes            raises MmeEncodeError (a LocalProtocolError
                                            and ValueError) for a field of the wrong
                                            size or range: a bug on our side
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum

from chargepoint.errors import LocalProtocolError
from chargepoint.slac import (
    MAC_LEN,
    NID_LEN,
    NMK_LEN,
    NUM_GROUPS,
    RUN_ID_LEN,
    STATION_ID_LEN,
    AttenCharInd,
    AttenCharRsp,
    AttenProfileInd,
    MnbcSoundInd,
    SlacMatchCnf,
    SlacMatchReq,
    SlacMessage,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
    ValidateCnf,
    ValidateReq,
)

ETHERTYPE_HOMEPLUG_AV = 0x88E1
MMV_HPAV_1_1 = 0x01
MMV_VENDOR = 0x00
QCA_OUI = b"\x00\xb0\x52"
LOCAL_MODEM_MAC = b"\x00\xb0\x52\x00\x00\x01"  # "the local QCA modem", whatever its MAC
MIN_FRAME_LEN = 60  # Ethernet minimum without FCS
ETH_HEADER_LEN = 14
HPAV_HEADER_END = 19  # payload offset, MMV 1
VENDOR_HEADER_END = 20  # payload offset, MMV 0 (after the OUI)
_MMTYPE_END = 17


class MmType(IntEnum):
    """MMTYPE values (base | mode) of every MME this codec knows."""

    CM_SET_KEY_REQ = 0x6008
    CM_SET_KEY_CNF = 0x6009
    CM_AMP_MAP_REQ = 0x601C
    CM_AMP_MAP_CNF = 0x601D
    CM_SLAC_PARM_REQ = 0x6064
    CM_SLAC_PARM_CNF = 0x6065
    CM_START_ATTEN_CHAR_IND = 0x606A
    CM_ATTEN_CHAR_IND = 0x606E
    CM_ATTEN_CHAR_RSP = 0x606F
    CM_MNBC_SOUND_IND = 0x6076
    CM_VALIDATE_REQ = 0x6078
    CM_VALIDATE_CNF = 0x6079
    CM_SLAC_MATCH_REQ = 0x607C
    CM_SLAC_MATCH_CNF = 0x607D
    CM_ATTEN_PROFILE_IND = 0x6086
    VS_SW_VER_REQ = 0xA000
    VS_SW_VER_CNF = 0xA001
    VS_RS_DEV_REQ = 0xA01C
    VS_RS_DEV_CNF = 0xA01D
    VS_HOST_ACTION_IND = 0xA062
    VS_HOST_ACTION_RSP = 0xA063
    VS_PL_LINK_STATUS_REQ = 0xA0B8
    VS_PL_LINK_STATUS_CNF = 0xA0B9


def is_vendor_mmtype(mmtype: int) -> bool:
    return 0xA000 <= mmtype <= 0xBFFF


# ---------------------------------------------------------------------------
# Host <-> own-modem messages (not part of the SLAC exchange with the car)
# ---------------------------------------------------------------------------

KEY_TYPE_NMK = 0x01
PID_HLE_PROTOCOL = 0x04  # "HLE protocol": SLAC
SET_KEY_NONCE = b"\xaa\xaa\xaa\xaa"  # what deployed stacks send (the standard says 0)


class SetKeyResult:
    """CM_SET_KEY.CNF Result: HPGP says 0 = success, QCA firmware answers 1 (HPAV 1.0)."""

    SUCCESS_HPGP = 0x00
    SUCCESS_QCA = 0x01

    @staticmethod
    def ok(result: int) -> bool:
        return result in (SetKeyResult.SUCCESS_HPGP, SetKeyResult.SUCCESS_QCA)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetKeyReq:
    """CM_SET_KEY.REQ (host -> own modem): join / create the AVLN of ``nid`` with ``new_key``."""

    nid: bytes
    new_key: bytes  # the NMK
    key_type: int = KEY_TYPE_NMK
    my_nonce: bytes = SET_KEY_NONCE
    your_nonce: bytes = bytes(4)
    pid: int = PID_HLE_PROTOCOL
    prn: int = 0
    pmn: int = 0
    cco_capability: int = 0
    new_eks: int = 0x01


@dataclass(frozen=True, slots=True, kw_only=True)
class SetKeyCnf:
    """CM_SET_KEY.CNF (own modem -> host)."""

    result: int
    my_nonce: bytes = bytes(4)
    your_nonce: bytes = SET_KEY_NONCE
    pid: int = PID_HLE_PROTOCOL
    prn: int = 0
    pmn: int = 0
    cco_capability: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AmpMapReq:
    """CM_AMP_MAP.REQ: one 4-bit amplitude code per carrier (AMLEN = len(amplitudes))."""

    amplitudes: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AmpMapCnf:
    """CM_AMP_MAP.CNF: ResType 0 = success."""

    result: int = 0


@dataclass(frozen=True, slots=True)
class VsSwVerReq:
    """VS_SW_VER.REQ (QCA): read the modem's firmware version."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VsSwVerCnf:
    """VS_SW_VER.CNF: status 0 = ok; ``device_class`` identifies the chip."""

    status: int
    device_class: int
    version: str


@dataclass(frozen=True, slots=True)
class VsRsDevReq:
    """VS_RS_DEV.REQ (QCA): reset the modem (it leaves the AVLN and restarts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VsRsDevCnf:
    status: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VsHostActionInd:
    """VS_HOST_ACTION.IND (QCA modem -> host): the modem asks the host for an action."""

    action: int
    major_version: int = 0
    minor_version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VsHostActionRsp:
    status: int = 0


@dataclass(frozen=True, slots=True)
class VsPlLinkStatusReq:
    """VS_PL_LINK_STATUS.REQ (QCA): is the power-line link up (a peer in our AVLN)?"""


@dataclass(frozen=True, slots=True, kw_only=True)
class VsPlLinkStatusCnf:
    status: int = 0
    link_status: int = 0  # 1 = link up

    @property
    def link_up(self) -> bool:
        return self.status == 0 and self.link_status == 1


ModemMessage = (
    SetKeyReq
    | SetKeyCnf
    | AmpMapReq
    | AmpMapCnf
    | VsSwVerReq
    | VsSwVerCnf
    | VsRsDevReq
    | VsRsDevCnf
    | VsHostActionInd
    | VsHostActionRsp
    | VsPlLinkStatusReq
    | VsPlLinkStatusCnf
)
Message = SlacMessage | ModemMessage


@dataclass(frozen=True, slots=True)
class Mme:
    """One decoded frame."""

    destination: bytes
    source: bytes
    message: Message
    mmv: int = MMV_HPAV_1_1

    @property
    def mmtype(self) -> MmType:
        return _MMTYPE_OF[type(self.message)]


class DropReason(Enum):
    """Why a received frame was not handed on (counted by the driver, logged at DEBUG)."""

    TOO_SHORT = "too short for an MME header"
    FOREIGN_ETHERTYPE = "not a HomePlug AV frame"
    UNSUPPORTED_MMV = "unsupported MMV"
    FRAGMENTED = "fragmented MME"
    UNKNOWN_MMTYPE = "unknown MMTYPE"
    FOREIGN_VENDOR = "vendor MME of another OUI"
    TRUNCATED = "payload shorter than its layout"
    INVALID_FIELD = "field out of range"


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason
    detail: str
    mmtype: int | None = None


class MmeEncodeError(LocalProtocolError, ValueError):
    """A message field has the wrong size or is out of range (our bug, not the peer's)."""


# ---------------------------------------------------------------------------
# Payload layouts: struct formats (little-endian) in the order of the tables
# ---------------------------------------------------------------------------

_PARM_REQ = struct.Struct("<BB8s")  # APP, SEC, RunID
_PARM_CNF = struct.Struct("<6sBBB6sBB8s")  # M-SOUND_TARGET .. RunID
_START_ATTEN = struct.Struct("<BBBBB6s8s")  # APP, SEC, NUM_SOUNDS, Time_Out, RESP_TYPE, FWD, RunID
_MNBC = struct.Struct("<BB17sB8s8s16s")  # APP, SEC, SenderID, CNT, RunID, rsvd, RND
_PROFILE_HEAD = struct.Struct("<6sBB")  # PEV MAC, NumGroups, rsvd
_CHAR_HEAD = struct.Struct("<BB6s8s17s17s")  # APP, SEC, SOURCE_ADDRESS, RunID, SOURCE_ID, RESP_ID
_CHAR_IND_TAIL = struct.Struct("<BB")  # NumSounds, NumGroups
_VALIDATE = struct.Struct("<BBB")
_MATCH_REQ = struct.Struct("<BBH17s6s17s6s8s8s")  # .. RunID, rsvd
_MATCH_CNF_TAIL = struct.Struct("<7sB16s")  # NID, rsvd, NMK
_SET_KEY_REQ = struct.Struct("<B4s4sBHBB7sB16s")
_SET_KEY_CNF = struct.Struct("<B4s4sBHBB")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")


def _byte(name: str, value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise MmeEncodeError(f"{name} must be 0..255, got {value}")
    return value


def _fixed(name: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise MmeEncodeError(f"{name} must be {length} bytes, got {len(value)}")
    return value


def _groups(aag: tuple[int, ...]) -> bytes:
    if len(aag) > NUM_GROUPS:
        raise MmeEncodeError(f"at most {NUM_GROUPS} attenuation groups, got {len(aag)}")
    for value in aag:
        _byte("AAG", value)
    return bytes(aag)


def _encode_payload(msg: Message) -> bytes:
    match msg:
        case SlacParmReq():
            return _PARM_REQ.pack(
                _byte("APPLICATION_TYPE", msg.application_type),
                _byte("SECURITY_TYPE", msg.security_type),
                _fixed("RunID", msg.run_id, RUN_ID_LEN),
            )
        case SlacParmCnf():
            return _PARM_CNF.pack(
                _fixed("M-SOUND_TARGET", msg.m_sound_target, MAC_LEN),
                _byte("NUM_SOUNDS", msg.num_sounds),
                _byte("Time_Out", msg.time_out),
                _byte("RESP_TYPE", msg.resp_type),
                _fixed("FORWARDING_STA", msg.forwarding_sta, MAC_LEN),
                _byte("APPLICATION_TYPE", msg.application_type),
                _byte("SECURITY_TYPE", msg.security_type),
                _fixed("RunID", msg.run_id, RUN_ID_LEN),
            )
        case StartAttenCharInd():
            return _START_ATTEN.pack(
                _byte("APPLICATION_TYPE", msg.application_type),
                _byte("SECURITY_TYPE", msg.security_type),
                _byte("NUM_SOUNDS", msg.num_sounds),
                _byte("Time_Out", msg.time_out),
                _byte("RESP_TYPE", msg.resp_type),
                _fixed("FORWARDING_STA", msg.forwarding_sta, MAC_LEN),
                _fixed("RunID", msg.run_id, RUN_ID_LEN),
            )
        case MnbcSoundInd():
            return _MNBC.pack(
                _byte("APPLICATION_TYPE", msg.application_type),
                _byte("SECURITY_TYPE", msg.security_type),
                _fixed("SenderID", msg.sender_id, STATION_ID_LEN),
                _byte("CNT", msg.count),
                _fixed("RunID", msg.run_id, RUN_ID_LEN),
                bytes(8),
                _fixed("RND", msg.random, 16),
            )
        case AttenProfileInd():
            return _PROFILE_HEAD.pack(
                _fixed("PEV MAC", msg.pev_mac, MAC_LEN), len(msg.aag), 0
            ) + _groups(msg.aag)
        case AttenCharInd():
            return (
                _char_head(msg)
                + _CHAR_IND_TAIL.pack(_byte("NumSounds", msg.num_sounds), len(msg.aag))
                + _groups(msg.aag)
            )
        case AttenCharRsp():
            return _char_head(msg) + _U8.pack(_byte("Result", msg.result))
        case ValidateReq():
            return _VALIDATE.pack(
                _byte("SignalType", msg.signal_type),
                _byte("Timer", msg.timer),
                _byte("Result", msg.result),
            )
        case ValidateCnf():
            return _VALIDATE.pack(
                _byte("SignalType", msg.signal_type),
                _byte("ToggleNum", msg.toggle_num),
                _byte("Result", msg.result),
            )
        case SlacMatchReq() | SlacMatchCnf():
            return _encode_match(msg)
        case SetKeyReq() | SetKeyCnf() | AmpMapReq() | AmpMapCnf():
            return _encode_modem_hpav(msg)
        case _:
            return _encode_vendor(msg)


def _char_head(msg: AttenCharInd | AttenCharRsp) -> bytes:
    return _CHAR_HEAD.pack(
        _byte("APPLICATION_TYPE", msg.application_type),
        _byte("SECURITY_TYPE", msg.security_type),
        _fixed("SOURCE_ADDRESS", msg.source_address, MAC_LEN),
        _fixed("RunID", msg.run_id, RUN_ID_LEN),
        _fixed("SOURCE_ID", msg.source_id, STATION_ID_LEN),
        _fixed("RESP_ID", msg.resp_id, STATION_ID_LEN),
    )


def _encode_match(msg: SlacMatchReq | SlacMatchCnf) -> bytes:
    if not 0 <= msg.mvf_length <= 0xFFFF:
        raise MmeEncodeError(f"MVFLength must be 0..65535, got {msg.mvf_length}")
    head = _MATCH_REQ.pack(
        _byte("APPLICATION_TYPE", msg.application_type),
        _byte("SECURITY_TYPE", msg.security_type),
        msg.mvf_length,
        _fixed("PEV_ID", msg.pev_id, STATION_ID_LEN),
        _fixed("PEV MAC", msg.pev_mac, MAC_LEN),
        _fixed("EVSE_ID", msg.evse_id, STATION_ID_LEN),
        _fixed("EVSE MAC", msg.evse_mac, MAC_LEN),
        _fixed("RunID", msg.run_id, RUN_ID_LEN),
        bytes(8),
    )
    if isinstance(msg, SlacMatchReq):
        return head
    return head + _MATCH_CNF_TAIL.pack(
        _fixed("NID", msg.nid, NID_LEN), 0, _fixed("NMK", msg.nmk, NMK_LEN)
    )


def _encode_modem_hpav(msg: SetKeyReq | SetKeyCnf | AmpMapReq | AmpMapCnf) -> bytes:
    match msg:
        case SetKeyReq():
            return _SET_KEY_REQ.pack(
                _byte("KeyType", msg.key_type),
                _fixed("MyNonce", msg.my_nonce, 4),
                _fixed("YourNonce", msg.your_nonce, 4),
                _byte("PID", msg.pid),
                _u16("PRN", msg.prn),
                _byte("PMN", msg.pmn),
                _byte("CCo Capability", msg.cco_capability),
                _fixed("NID", msg.nid, NID_LEN),
                _byte("NewEKS", msg.new_eks),
                _fixed("NewKey", msg.new_key, NMK_LEN),
            )
        case SetKeyCnf():
            return _SET_KEY_CNF.pack(
                _byte("Result", msg.result),
                _fixed("MyNonce", msg.my_nonce, 4),
                _fixed("YourNonce", msg.your_nonce, 4),
                _byte("PID", msg.pid),
                _u16("PRN", msg.prn),
                _byte("PMN", msg.pmn),
                _byte("CCo Capability", msg.cco_capability),
            )
        case AmpMapReq():
            codes = msg.amplitudes
            if len(codes) > 0xFFFF or any(not 0 <= c <= 0xF for c in codes):
                raise MmeEncodeError("AMP_MAP: at most 65535 carriers, 4-bit codes")
            packed = bytearray((len(codes) + 1) // 2)
            for i, code in enumerate(codes):  # carrier 2k in the low nibble of byte k
                packed[i // 2] |= code << (4 * (i % 2))
            return _U16.pack(len(codes)) + bytes(packed)
        case AmpMapCnf():
            return _U8.pack(_byte("ResType", msg.result))


def _u16(name: str, value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise MmeEncodeError(f"{name} must be 0..65535, got {value}")
    return value


def _encode_vendor(msg: Message) -> bytes:
    match msg:
        case VsSwVerReq() | VsRsDevReq() | VsPlLinkStatusReq():
            return b""
        case VsSwVerCnf():
            text = msg.version.encode("ascii", "replace") + b"\x00"
            return (
                _U8.pack(_byte("MSTATUS", msg.status))
                + _U8.pack(_byte("MDEVICE_CLASS", msg.device_class))
                + _U8.pack(_byte("MVERLENGTH", len(text)))
                + text
            )
        case VsRsDevCnf() | VsHostActionRsp():
            return _U8.pack(_byte("MSTATUS", msg.status))
        case VsHostActionInd():
            return bytes(
                (
                    _byte("MACTION", msg.action),
                    _byte("MAJOR_VERSION", msg.major_version),
                    _byte("MINOR_VERSION", msg.minor_version),
                )
            )
        case VsPlLinkStatusCnf():
            return bytes((_byte("MSTATUS", msg.status), _byte("LINKSTATUS", msg.link_status)))
    raise MmeEncodeError(f"cannot encode {type(msg).__name__}")


def encode_frame(destination: bytes, source: bytes, message: Message) -> bytes:
    """The whole Ethernet frame carrying ``message``, padded to 60 bytes."""
    mmtype = _MMTYPE_OF.get(type(message))
    if mmtype is None:
        raise MmeEncodeError(f"not an MME: {type(message).__name__}")
    head = (
        _fixed("destination MAC", destination, MAC_LEN)
        + _fixed("source MAC", source, MAC_LEN)
        + ETHERTYPE_HOMEPLUG_AV.to_bytes(2, "big")
    )
    if is_vendor_mmtype(mmtype):
        head += bytes([MMV_VENDOR]) + _U16.pack(mmtype) + QCA_OUI
    else:
        head += bytes([MMV_HPAV_1_1]) + _U16.pack(mmtype) + b"\x00\x00"  # unfragmented
    frame = head + _encode_payload(message)
    return frame.ljust(MIN_FRAME_LEN, b"\x00")


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


class _Short(Exception):  # noqa: N818 - internal control flow, never escapes
    pass


class _Invalid(Exception):  # noqa: N818
    pass


class _Reader:
    """Bounds-checked cursor over a payload."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise _Short(f"needs {end} payload bytes, has {len(self._data)}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def groups(self, count: int) -> tuple[int, ...]:
        if count > NUM_GROUPS:
            raise _Invalid(f"NumGroups {count} > {NUM_GROUPS}")
        return tuple(self.take(count))


def _d_parm_req(r: _Reader) -> Message:
    app, sec = r.u8(), r.u8()
    return SlacParmReq(application_type=app, security_type=sec, run_id=r.take(RUN_ID_LEN))


def _d_parm_cnf(r: _Reader) -> Message:
    target, sounds, time_out, resp = r.take(MAC_LEN), r.u8(), r.u8(), r.u8()
    fwd, app, sec = r.take(MAC_LEN), r.u8(), r.u8()
    return SlacParmCnf(
        m_sound_target=target,
        num_sounds=sounds,
        time_out=time_out,
        resp_type=resp,
        forwarding_sta=fwd,
        application_type=app,
        security_type=sec,
        run_id=r.take(RUN_ID_LEN),
    )


def _d_start_atten(r: _Reader) -> Message:
    app, sec, sounds, time_out, resp = r.u8(), r.u8(), r.u8(), r.u8(), r.u8()
    return StartAttenCharInd(
        application_type=app,
        security_type=sec,
        num_sounds=sounds,
        time_out=time_out,
        resp_type=resp,
        forwarding_sta=r.take(MAC_LEN),
        run_id=r.take(RUN_ID_LEN),
    )


def _d_mnbc(r: _Reader) -> Message:
    app, sec, sender, count, run_id = r.u8(), r.u8(), r.take(17), r.u8(), r.take(RUN_ID_LEN)
    r.take(8)  # reserved
    return MnbcSoundInd(
        application_type=app,
        security_type=sec,
        sender_id=sender,
        count=count,
        run_id=run_id,
        random=r.take(16),
    )


def _d_profile(r: _Reader) -> Message:
    pev_mac, count = r.take(MAC_LEN), r.u8()
    r.take(1)  # reserved
    return AttenProfileInd(pev_mac=pev_mac, aag=r.groups(count))


def _d_char_head(r: _Reader) -> tuple[int, int, bytes, bytes, bytes, bytes]:
    return (r.u8(), r.u8(), r.take(MAC_LEN), r.take(RUN_ID_LEN), r.take(17), r.take(17))


def _d_char_ind(r: _Reader) -> Message:
    app, sec, address, run_id, source_id, resp_id = _d_char_head(r)
    sounds, count = r.u8(), r.u8()
    return AttenCharInd(
        application_type=app,
        security_type=sec,
        source_address=address,
        run_id=run_id,
        source_id=source_id,
        resp_id=resp_id,
        num_sounds=sounds,
        aag=r.groups(count),
    )


def _d_char_rsp(r: _Reader) -> Message:
    app, sec, address, run_id, source_id, resp_id = _d_char_head(r)
    return AttenCharRsp(
        application_type=app,
        security_type=sec,
        source_address=address,
        run_id=run_id,
        source_id=source_id,
        resp_id=resp_id,
        result=r.u8(),
    )


def _d_validate_req(r: _Reader) -> Message:
    return ValidateReq(signal_type=r.u8(), timer=r.u8(), result=r.u8())


def _d_validate_cnf(r: _Reader) -> Message:
    return ValidateCnf(signal_type=r.u8(), toggle_num=r.u8(), result=r.u8())


def _d_match_head(r: _Reader) -> tuple[int, int, int, bytes, bytes, bytes, bytes, bytes]:
    fields = (r.u8(), r.u8(), r.u16(), r.take(17), r.take(6), r.take(17), r.take(6), r.take(8))
    r.take(8)  # reserved
    return fields


def _d_match_req(r: _Reader) -> Message:
    app, sec, mvf, pev_id, pev_mac, evse_id, evse_mac, run_id = _d_match_head(r)
    return SlacMatchReq(
        application_type=app,
        security_type=sec,
        mvf_length=mvf,
        pev_id=pev_id,
        pev_mac=pev_mac,
        evse_id=evse_id,
        evse_mac=evse_mac,
        run_id=run_id,
    )


def _d_match_cnf(r: _Reader) -> Message:
    app, sec, mvf, pev_id, pev_mac, evse_id, evse_mac, run_id = _d_match_head(r)
    nid = r.take(NID_LEN)
    r.take(1)  # reserved
    return SlacMatchCnf(
        application_type=app,
        security_type=sec,
        mvf_length=mvf,
        pev_id=pev_id,
        pev_mac=pev_mac,
        evse_id=evse_id,
        evse_mac=evse_mac,
        run_id=run_id,
        nid=nid,
        nmk=r.take(NMK_LEN),
    )


def _d_set_key_req(r: _Reader) -> Message:
    key_type, my_nonce, your_nonce, pid = r.u8(), r.take(4), r.take(4), r.u8()
    prn, pmn, cco, nid, eks = r.u16(), r.u8(), r.u8(), r.take(NID_LEN), r.u8()
    return SetKeyReq(
        key_type=key_type,
        my_nonce=my_nonce,
        your_nonce=your_nonce,
        pid=pid,
        prn=prn,
        pmn=pmn,
        cco_capability=cco,
        nid=nid,
        new_eks=eks,
        new_key=r.take(NMK_LEN),
    )


def _d_set_key_cnf(r: _Reader) -> Message:
    result, my_nonce, your_nonce, pid = r.u8(), r.take(4), r.take(4), r.u8()
    return SetKeyCnf(
        result=result,
        my_nonce=my_nonce,
        your_nonce=your_nonce,
        pid=pid,
        prn=r.u16(),
        pmn=r.u8(),
        cco_capability=r.u8(),
    )


def _d_amp_map_req(r: _Reader) -> Message:
    count = r.u16()
    packed = r.take((count + 1) // 2)
    codes = tuple((packed[i // 2] >> (4 * (i % 2))) & 0xF for i in range(count))
    return AmpMapReq(amplitudes=codes)


def _d_sw_ver_cnf(r: _Reader) -> Message:
    status, device, length = r.u8(), r.u8(), r.u8()
    text = r.take(length).split(b"\x00", 1)[0]
    return VsSwVerCnf(status=status, device_class=device, version=text.decode("ascii", "replace"))


def _d_host_action_ind(r: _Reader) -> Message:
    return VsHostActionInd(action=r.u8(), major_version=r.u8(), minor_version=r.u8())


def _d_link_status_cnf(r: _Reader) -> Message:
    return VsPlLinkStatusCnf(status=r.u8(), link_status=r.u8())


_DECODERS: dict[int, Callable[[_Reader], Message]] = {
    MmType.CM_SLAC_PARM_REQ: _d_parm_req,
    MmType.CM_SLAC_PARM_CNF: _d_parm_cnf,
    MmType.CM_START_ATTEN_CHAR_IND: _d_start_atten,
    MmType.CM_MNBC_SOUND_IND: _d_mnbc,
    MmType.CM_ATTEN_PROFILE_IND: _d_profile,
    MmType.CM_ATTEN_CHAR_IND: _d_char_ind,
    MmType.CM_ATTEN_CHAR_RSP: _d_char_rsp,
    MmType.CM_VALIDATE_REQ: _d_validate_req,
    MmType.CM_VALIDATE_CNF: _d_validate_cnf,
    MmType.CM_SLAC_MATCH_REQ: _d_match_req,
    MmType.CM_SLAC_MATCH_CNF: _d_match_cnf,
    MmType.CM_SET_KEY_REQ: _d_set_key_req,
    MmType.CM_SET_KEY_CNF: _d_set_key_cnf,
    MmType.CM_AMP_MAP_REQ: _d_amp_map_req,
    MmType.CM_AMP_MAP_CNF: lambda r: AmpMapCnf(result=r.u8()),
    MmType.VS_SW_VER_REQ: lambda r: VsSwVerReq(),
    MmType.VS_SW_VER_CNF: _d_sw_ver_cnf,
    MmType.VS_RS_DEV_REQ: lambda r: VsRsDevReq(),
    MmType.VS_RS_DEV_CNF: lambda r: VsRsDevCnf(status=r.u8()),
    MmType.VS_HOST_ACTION_IND: _d_host_action_ind,
    MmType.VS_HOST_ACTION_RSP: lambda r: VsHostActionRsp(status=r.u8()),
    MmType.VS_PL_LINK_STATUS_REQ: lambda r: VsPlLinkStatusReq(),
    MmType.VS_PL_LINK_STATUS_CNF: _d_link_status_cnf,
}

_MMTYPE_OF: dict[type, MmType] = {
    SlacParmReq: MmType.CM_SLAC_PARM_REQ,
    SlacParmCnf: MmType.CM_SLAC_PARM_CNF,
    StartAttenCharInd: MmType.CM_START_ATTEN_CHAR_IND,
    MnbcSoundInd: MmType.CM_MNBC_SOUND_IND,
    AttenProfileInd: MmType.CM_ATTEN_PROFILE_IND,
    AttenCharInd: MmType.CM_ATTEN_CHAR_IND,
    AttenCharRsp: MmType.CM_ATTEN_CHAR_RSP,
    ValidateReq: MmType.CM_VALIDATE_REQ,
    ValidateCnf: MmType.CM_VALIDATE_CNF,
    SlacMatchReq: MmType.CM_SLAC_MATCH_REQ,
    SlacMatchCnf: MmType.CM_SLAC_MATCH_CNF,
    SetKeyReq: MmType.CM_SET_KEY_REQ,
    SetKeyCnf: MmType.CM_SET_KEY_CNF,
    AmpMapReq: MmType.CM_AMP_MAP_REQ,
    AmpMapCnf: MmType.CM_AMP_MAP_CNF,
    VsSwVerReq: MmType.VS_SW_VER_REQ,
    VsSwVerCnf: MmType.VS_SW_VER_CNF,
    VsRsDevReq: MmType.VS_RS_DEV_REQ,
    VsRsDevCnf: MmType.VS_RS_DEV_CNF,
    VsHostActionInd: MmType.VS_HOST_ACTION_IND,
    VsHostActionRsp: MmType.VS_HOST_ACTION_RSP,
    VsPlLinkStatusReq: MmType.VS_PL_LINK_STATUS_REQ,
    VsPlLinkStatusCnf: MmType.VS_PL_LINK_STATUS_CNF,
}


def decode_frame(frame: bytes) -> Mme | Dropped:
    """Decode one whole Ethernet frame; never raises.

    Trailing bytes (Ethernet padding) are ignored. A frame is dropped when it
    is not HomePlug AV, its MMV/MMTYPE is not one we know, it is a fragment of a
    larger MME (no SLAC or QCA MME we use needs more than one frame), a vendor
    MME carries another OUI, or its payload is shorter than its layout.
    """
    if len(frame) < ETH_HEADER_LEN:
        return Dropped(DropReason.TOO_SHORT, f"{len(frame)} bytes")
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype != ETHERTYPE_HOMEPLUG_AV:
        return Dropped(DropReason.FOREIGN_ETHERTYPE, f"EtherType 0x{ethertype:04X}")
    if len(frame) < _MMTYPE_END:
        return Dropped(DropReason.TOO_SHORT, f"{len(frame)} bytes")
    mmv = frame[14]
    mmtype = int.from_bytes(frame[15:17], "little")
    decoder = _DECODERS.get(mmtype)
    if decoder is None:
        return Dropped(DropReason.UNKNOWN_MMTYPE, f"MMTYPE 0x{mmtype:04X}", mmtype)
    if mmv == MMV_VENDOR and is_vendor_mmtype(mmtype):
        if len(frame) < VENDOR_HEADER_END:
            return Dropped(DropReason.TRUNCATED, "no room for the OUI", mmtype)
        oui = frame[17:20]
        if oui != QCA_OUI:
            return Dropped(DropReason.FOREIGN_VENDOR, f"OUI {oui.hex()}", mmtype)
        payload = frame[VENDOR_HEADER_END:]
    elif mmv == MMV_HPAV_1_1:
        if len(frame) < HPAV_HEADER_END:
            return Dropped(DropReason.TRUNCATED, "no room for the FMI", mmtype)
        if frame[17] != 0:  # NF_MI / FN_MI: part of a multi-frame MME
            return Dropped(DropReason.FRAGMENTED, f"FMI 0x{frame[17]:02X}", mmtype)
        if is_vendor_mmtype(mmtype):
            if len(frame) < HPAV_HEADER_END + 3 or frame[19:22] != QCA_OUI:
                return Dropped(DropReason.FOREIGN_VENDOR, "MMV 1 vendor MME", mmtype)
            payload = frame[HPAV_HEADER_END + 3 :]
        else:
            payload = frame[HPAV_HEADER_END:]
    else:
        return Dropped(DropReason.UNSUPPORTED_MMV, f"MMV 0x{mmv:02X}", mmtype)
    try:
        message = decoder(_Reader(payload))
    except _Short as exc:
        return Dropped(DropReason.TRUNCATED, f"{MmType(mmtype).name}: {exc}", mmtype)
    except _Invalid as exc:
        return Dropped(DropReason.INVALID_FIELD, f"{MmType(mmtype).name}: {exc}", mmtype)
    return Mme(destination=frame[0:6], source=frame[6:12], message=message, mmv=mmv)


def message_name(message: Message) -> str:
    """``CM_SLAC_PARM_REQ`` etc., for logs."""
    return _MMTYPE_OF[type(message)].name


__all__ = [
    "ETHERTYPE_HOMEPLUG_AV",
    "LOCAL_MODEM_MAC",
    "MIN_FRAME_LEN",
    "MMV_HPAV_1_1",
    "MMV_VENDOR",
    "QCA_OUI",
    "AmpMapCnf",
    "AmpMapReq",
    "DropReason",
    "Dropped",
    "Message",
    "MmType",
    "Mme",
    "MmeEncodeError",
    "ModemMessage",
    "SetKeyCnf",
    "SetKeyReq",
    "SetKeyResult",
    "VsHostActionInd",
    "VsHostActionRsp",
    "VsPlLinkStatusCnf",
    "VsPlLinkStatusReq",
    "VsRsDevCnf",
    "VsRsDevReq",
    "VsSwVerCnf",
    "VsSwVerReq",
    "decode_frame",
    "encode_frame",
    "is_vendor_mmtype",
    "message_name",
]
