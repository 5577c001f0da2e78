"""ISO 15118-3 SLAC: the vocabulary the SECC-side matcher speaks.

SLAC (Signal Level Attenuation Characterization) pairs the charger's HomePlug
Green PHY modem with the car's before any IPv6 packet flows. The core owns the
*messages* (this module), the state tables (:mod:`.states`) and the sans-I/O
machine (:mod:`.matcher`); :mod:`hal.plc.mme` turns these messages into
byte-exact Ethernet frames and back, as :mod:`hal.pilot` reports in
:class:`chargepoint.iec61851.cp_state.CpState`.

Field names follow the HomePlug Green PHY / ISO 15118-3 tables (Annex A). Byte
strings are raw wire values: MAC addresses 6 bytes, RunID 8, the 17-byte
SOURCE_ID / RESP_ID / PEV_ID / EVSE_ID fields (zero in practice), NID 7, NMK 16.
AAG (average attenuation per group) values are in dB, one per carrier group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAC_LEN = 6
RUN_ID_LEN = 8
STATION_ID_LEN = 17  # SOURCE_ID, RESP_ID, PEV_ID, EVSE_ID, SenderID
NID_LEN = 7
NMK_LEN = 16
NUM_GROUPS = 58  # HPGP: 58 carrier groups in CM_ATTEN_PROFILE.IND / CM_ATTEN_CHAR.IND

BROADCAST_MAC = b"\xff" * MAC_LEN
ZERO_ID = bytes(STATION_ID_LEN)
APPLICATION_TYPE_PEV_EVSE = 0x00  # ISO 15118-3 Table A.x: "PEV-EVSE association"
SECURITY_TYPE_NONE = 0x00  # no security, hence no CipherSuite fields
RESP_TYPE_HLE = 0x01  # sounds forwarded to the host (FORWARDING_STA)
ATTEN_CHAR_SUCCESS = 0x00  # CM_ATTEN_CHAR.RSP Result


class ValidateResult:
    """CM_VALIDATE Result codes (HPGP)."""

    NOT_READY = 0
    READY = 1
    SUCCESS = 2
    FAILURE = 3
    NOT_REQUIRED = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SlacParmReq:
    """CM_SLAC_PARM.REQ (EV -> broadcast): starts a matching run."""

    run_id: bytes
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class SlacParmCnf:
    """CM_SLAC_PARM.CNF (EVSE -> EV, unicast). ``time_out`` counts 100 ms units."""

    forwarding_sta: bytes  # the EV host MAC
    run_id: bytes
    m_sound_target: bytes = BROADCAST_MAC
    num_sounds: int = 10  # C_EV_match_MNBC
    time_out: int = 6  # TT_EVSE_match_MNBC = 600 ms
    resp_type: int = RESP_TYPE_HLE
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class StartAttenCharInd:
    """CM_START_ATTEN_CHAR.IND (EV -> broadcast, sent 3 times)."""

    num_sounds: int
    time_out: int
    forwarding_sta: bytes
    run_id: bytes
    resp_type: int = RESP_TYPE_HLE
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class MnbcSoundInd:
    """CM_MNBC_SOUND.IND (EV -> broadcast, 10 times); ``count`` = sounds left (9..0)."""

    count: int
    run_id: bytes
    sender_id: bytes = ZERO_ID
    random: bytes = bytes(16)
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class AttenProfileInd:
    """CM_ATTEN_PROFILE.IND (own modem -> host): one sound's attenuation per group."""

    pev_mac: bytes
    aag: tuple[int, ...]  # dB per group, len = NumGroups


@dataclass(frozen=True, slots=True, kw_only=True)
class AttenCharInd:
    """CM_ATTEN_CHAR.IND (EVSE -> EV): the averaged attenuation profile."""

    source_address: bytes  # the EV host MAC
    run_id: bytes
    num_sounds: int  # profiles actually averaged
    aag: tuple[int, ...]
    source_id: bytes = ZERO_ID
    resp_id: bytes = ZERO_ID
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class AttenCharRsp:
    """CM_ATTEN_CHAR.RSP (EV -> EVSE)."""

    source_address: bytes
    run_id: bytes
    result: int = ATTEN_CHAR_SUCCESS
    source_id: bytes = ZERO_ID
    resp_id: bytes = ZERO_ID
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateReq:
    """CM_VALIDATE.REQ (EV -> EVSE): optional BCB-toggle validation."""

    signal_type: int = 0
    timer: int = 0
    result: int = ValidateResult.READY


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidateCnf:
    """CM_VALIDATE.CNF (EVSE -> EV)."""

    signal_type: int = 0
    toggle_num: int = 0
    result: int = ValidateResult.NOT_REQUIRED


@dataclass(frozen=True, slots=True, kw_only=True)
class SlacMatchReq:
    """CM_SLAC_MATCH.REQ (EV -> chosen EVSE). ``mvf_length`` is 0x3E on the wire."""

    pev_mac: bytes
    evse_mac: bytes
    run_id: bytes
    pev_id: bytes = ZERO_ID
    evse_id: bytes = ZERO_ID
    mvf_length: int = 0x3E
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class SlacMatchCnf:
    """CM_SLAC_MATCH.CNF (EVSE -> EV): the logical network's NID and NMK."""

    pev_mac: bytes
    evse_mac: bytes
    run_id: bytes
    nid: bytes
    nmk: bytes
    pev_id: bytes = ZERO_ID
    evse_id: bytes = ZERO_ID
    mvf_length: int = 0x56
    application_type: int = APPLICATION_TYPE_PEV_EVSE
    security_type: int = SECURITY_TYPE_NONE


SlacMessage = (
    SlacParmReq
    | SlacParmCnf
    | StartAttenCharInd
    | MnbcSoundInd
    | AttenProfileInd
    | AttenCharInd
    | AttenCharRsp
    | ValidateReq
    | ValidateCnf
    | SlacMatchReq
    | SlacMatchCnf
)


def nid_from_nmk(nmk: bytes, security_level: int = 0) -> bytes:
    """Network identifier of the AVLN keyed with ``nmk`` (HPAV 1.1 4.4.3.1 as deployed).

    SHA-256 of the NMK, rehashed four more times; the first 6 bytes are taken
    as they are, the 7th keeps its upper nibble in its low bits and carries the
    security level (0: simple connect) in bits 4-5; the two MSBs stay 0.
    """
    if len(nmk) != NMK_LEN:
        raise ValueError(f"NMK must be {NMK_LEN} bytes, got {len(nmk)}")
    if not 0 <= security_level <= 3:
        raise ValueError(f"security level must be 0..3, got {security_level}")
    digest = hashlib.sha256(nmk).digest()
    for _ in range(4):
        digest = hashlib.sha256(digest).digest()
    return digest[:6] + bytes([(digest[6] >> 4) | (security_level << 4)])


def format_mac(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff`` for logs and the CLI."""
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """Inverse of :func:`format_mac` (also accepts ``-`` separators)."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != MAC_LEN or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


__all__ = [
    "APPLICATION_TYPE_PEV_EVSE",
    "ATTEN_CHAR_SUCCESS",
    "BROADCAST_MAC",
    "MAC_LEN",
    "NID_LEN",
    "NMK_LEN",
    "NUM_GROUPS",
    "RESP_TYPE_HLE",
    "RUN_ID_LEN",
    "SECURITY_TYPE_NONE",
    "STATION_ID_LEN",
    "ZERO_ID",
    "AttenCharInd",
    "AttenCharRsp",
    "AttenProfileInd",
    "MnbcSoundInd",
    "SlacMatchCnf",
    "SlacMatchReq",
    "SlacMessage",
    "SlacParmCnf",
    "SlacParmReq",
    "StartAttenCharInd",
    "ValidateCnf",
    "ValidateReq",
    "ValidateResult",
    "format_mac",
    "nid_from_nmk",
    "parse_mac",
]
