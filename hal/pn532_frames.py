"""NXP PN532 host-interface frames (UM0701-02 §6.2), a pure codec for its HSU (UART) link.

Why our own: the maintained Python library for the chip (Adafruit's CircuitPython
driver) needs Adafruit-Blinka, blocks in ``time.sleep`` polling loops and reports a
torn frame as a bare ``RuntimeError``; the service needs a non-blocking driver on
the event loop and typed errors, and the frame layer is this small.

Wire format (every multi-byte field as on the wire)::

    normal information frame  00 00 FF LEN LCS TFI PD0..PDn DCS 00
    extended information frame 00 00 FF FF FF LENM LENL LCS TFI PD0..PDn DCS 00
    ACK                       00 00 FF 00 FF 00
    NACK                      00 00 FF FF 00 00
    application error frame   00 00 FF 01 FF 7F 81 00

``LEN`` counts TFI and PD bytes; ``LEN + LCS`` and ``TFI + PD0 + ... + PDn + DCS``
are 0 modulo 256. TFI is D4 from the host, D5 from the PN532; the response code is
the command code plus one. :class:`FrameDecoder` takes bytes in any split (one at a
time is fine) and hands out :data:`FrameEvent` values; a bad checksum is a
:class:`FrameProblem`, never an exception, and the decoder resynchronises on the next
start code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

START_CODE = b"\x00\xff"
ACK_FRAME = b"\x00\x00\xff\x00\xff\x00"
NACK_FRAME = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
# HSU wake-up (UM0701-02 §7.2.11 / AN10609): 0x55 0x55 then a long run of zeros.
WAKEUP = b"\x55\x55" + b"\x00" * 14

TFI_HOST = 0xD4  # host -> PN532
TFI_PN532 = 0xD5  # PN532 -> host
_ERROR_TFI = 0x7F  # the one data byte of an application error frame
MAX_NORMAL_LEN = 255  # LEN of a normal frame; longer payloads need an extended frame


class Command(IntEnum):
    """The PN532 commands this driver uses (UM0701-02 §7)."""

    GET_FIRMWARE_VERSION = 0x02
    SAM_CONFIGURATION = 0x14
    RF_CONFIGURATION = 0x32
    IN_LIST_PASSIVE_TARGET = 0x4A
    IN_RELEASE = 0x52


BRTY_106_TYPE_A = 0x00  # InListPassiveTarget BrTy: 106 kbps ISO/IEC 14443 Type A
RF_CFG_MAX_RETRIES = 0x05  # RFConfiguration CfgItem: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation


@dataclass(frozen=True, slots=True)
class Ack:
    """The PN532 took the command (or the host aborts the running one)."""


@dataclass(frozen=True, slots=True)
class Nack:
    """Send the last response again (host -> PN532)."""


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The PN532 found a syntax error in the host's frame."""


@dataclass(frozen=True, slots=True)
class Information:
    """An information frame: ``tfi`` then ``code`` (command or response code) and ``data``."""

    tfi: int
    code: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FrameProblem:
    """A frame that failed its length or data checksum, or is otherwise malformed."""

    detail: str


FrameEvent = Ack | Nack | ErrorFrame | Information | FrameProblem


def encode_information(tfi: int, code: int, data: bytes = b"") -> bytes:
    """One normal (or, past 254 data bytes, extended) information frame."""
    body = bytes((tfi, code)) + data
    dcs = (-sum(body)) & 0xFF
    if len(body) < MAX_NORMAL_LEN:
        length = len(body)
        header = bytes((length, (-length) & 0xFF))
    else:
        high, low = len(body) >> 8, len(body) & 0xFF
        header = bytes((0xFF, 0xFF, high, low, (-(high + low)) & 0xFF))
    return b"\x00" + START_CODE + header + body + bytes((dcs, 0x00))


def command_frame(command: int, params: bytes = b"") -> bytes:
    return encode_information(TFI_HOST, command, params)


def response_frame(command: int, data: bytes = b"") -> bytes:
    """The PN532's answer to ``command`` (response code = command + 1)."""
    return encode_information(TFI_PN532, (command + 1) & 0xFF, data)


class FrameDecoder:
    """Incremental decoder: :meth:`receive_data` then drain :meth:`events`."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._events: list[FrameEvent] = []

    def receive_data(self, data: bytes) -> None:
        self._buf += data
        while self._step():
            pass

    def events(self) -> list[FrameEvent]:
        out, self._events = self._events, []
        return out

    def _step(self) -> bool:
        """Decode one thing from the front of the buffer; False: need more bytes."""
        buf = self._buf
        start = buf.find(START_CODE)
        if start < 0:
            # keep a trailing 0x00: it may be the first half of a start code
            del buf[: len(buf) - 1 if buf.endswith(b"\x00") else len(buf)]
            return False
        del buf[:start]
        if len(buf) < 4:
            return False
        length, lcs = buf[2], buf[3]
        if length == 0x00 and lcs == 0xFF:
            del buf[:4]
            self._events.append(Ack())
            return True
        if length == 0xFF and lcs == 0x00:
            del buf[:4]
            self._events.append(Nack())
            return True
        offset = 4
        if length == 0xFF and lcs == 0xFF:  # extended frame
            if len(buf) < 7:
                return False
            high, low, lcs = buf[4], buf[5], buf[6]
            if (high + low + lcs) & 0xFF:
                return self._drop("extended length checksum mismatch")
            length, offset = (high << 8) | low, 7
        elif (length + lcs) & 0xFF:
            return self._drop(f"length checksum mismatch (LEN {length:#04x}, LCS {lcs:#04x})")
        if length == 0:
            return self._drop("information frame without TFI")
        if len(buf) < offset + length + 1:
            return False
        body = bytes(buf[offset : offset + length])
        dcs = buf[offset + length]
        if (sum(body) + dcs) & 0xFF:
            return self._drop("data checksum mismatch")
        del buf[: offset + length + 1]
        if body == bytes((_ERROR_TFI,)):
            self._events.append(ErrorFrame())
        elif len(body) < 2:
            self._events.append(FrameProblem(f"frame too short: {body.hex()}"))
        else:
            self._events.append(Information(body[0], body[1], body[2:]))
        return True

    def _drop(self, detail: str) -> bool:
        """Skip this start code and look for the next one."""
        del self._buf[:2]
        self._events.append(FrameProblem(detail))
        return True


@dataclass(frozen=True, slots=True)
class TargetA:
    """One ISO/IEC 14443 Type A target from InListPassiveTarget (UM0701-02 §7.3.5)."""

    number: int  # Tg, the PN532's logical number for it
    sens_res: bytes  # ATQA, 2 bytes
    sel_res: int  # SAK
    uid: bytes  # NFCID1: 4, 7 or 10 bytes


def parse_targets_106a(data: bytes) -> list[TargetA]:
    """The targets of an InListPassiveTarget response (BrTy 106 kbps Type A).

    Raises ValueError on a response that does not add up."""
    if not data:
        raise ValueError("empty InListPassiveTarget response")
    count, pos, found = data[0], 1, []
    for _ in range(count):
        if len(data) < pos + 5:
            raise ValueError("truncated target data")
        number, sens_res, sel_res, uid_len = (
            data[pos],
            data[pos + 1 : pos + 3],
            data[pos + 3],
            data[pos + 4],
        )
        pos += 5
        if uid_len not in (4, 7, 10) or len(data) < pos + uid_len:
            raise ValueError(f"bad NFCID1 length {uid_len}")
        uid = data[pos : pos + uid_len]
        pos += uid_len
        if sel_res & 0x20:  # ISO/IEC 14443-4 compliant: an ATS follows (its first byte: length)
            if len(data) <= pos or data[pos] == 0 or len(data) < pos + data[pos]:
                raise ValueError("truncated ATS")
            pos += data[pos]
        found.append(TargetA(number, bytes(sens_res), sel_res, bytes(uid)))
    return found


def encode_target_106a(target: TargetA) -> bytes:
    """One target's data as the PN532 reports it (no ATS: SAK without bit 6)."""
    return (
        bytes((target.number,))
        + target.sens_res
        + bytes((target.sel_res & ~0x20 & 0xFF, len(target.uid)))
        + target.uid
    )
