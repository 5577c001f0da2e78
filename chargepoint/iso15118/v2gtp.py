"""V2G Transfer Protocol (V2GTP) framing, sans-I/O.

Implements the "V2G Transfer Protocol" clause of ISO 15118-2 and its
counterpart in ISO 15118-20 (clause "V2GTP"): every V2G message travels with
an 8-byte header::

    +---------+-----------------+--------------+----------------+
    | version | inverse version | payload type | payload length |
    |  0x01   |      0xFE       |  u16, BE     |    u32, BE     |
    +---------+-----------------+--------------+----------------+

This module never touches a socket.  The TCP adapter feeds whatever it reads
into :class:`V2gtpFramer` and acts on the events it gets back; it writes what
:func:`encode_frame` returns in **one** send (some EVCC stacks read one TCP
segment as one message, see FACTS.md "Transport").

Header validation
-----------------
V2GTP follows the generic-header check of DoIP (ISO 13400-2), without the
negative-acknowledge message.  The receiver validates, in this order, and
reacts as follows (ISO 15118-2 "V2G Transfer Protocol" clause, V2GTP header
processing; ISO 15118-20 reuses the same V2GTP header).  Requirement numbers
are deliberately not quoted: they could not be checked against the standard's
text.

=========================  ======================================  =====================
check                      fault                                   outcome
=========================  ======================================  =====================
version == 0x01 and        :attr:`FrameFault.INCORRECT_PATTERN`    close the connection
inverse == 0xFE
payload type supported     :attr:`FrameFault.UNKNOWN_PAYLOAD_TYPE` discard the message
payload length <= maximum  :attr:`FrameFault.MESSAGE_TOO_LARGE`    discard the message
=========================  ======================================  =====================

"Discard" means the receiver skips exactly ``payload length`` bytes and stays
in sync with the stream.  The framer skips without buffering, but a peer that
announces an absurd length (more than ``max_discard_length``) has almost
certainly lost synchronisation; skipping gigabytes would only stall the session
until a timeout fires, so such a header is escalated to "close".

A stream that ends inside a header or payload is reported as
:attr:`FrameFault.TRUNCATED` (close).  After any "close" outcome the framer
stays in an error state: it keeps returning the same error event and refuses
more data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final, Literal

from chargepoint.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_DISCARD_LENGTH",
    "DEFAULT_MAX_PAYLOAD_LENGTH",
    "HEADER_LENGTH",
    "INVERSE_PROTOCOL_VERSION",
    "ISO20_STREAM_PAYLOAD_TYPES",
    "MAX_PAYLOAD_LENGTH_FIELD",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Action",
    "ConnectionClosed",
    "Event",
    "FrameFault",
    "FramerState",
    "NeedData",
    "PayloadType",
    "V2gtpError",
    "V2gtpFramer",
    "V2gtpHeader",
    "V2gtpHeaderError",
    "V2gtpMessage",
    "decode_datagram",
    "encode_frame",
    "parse_header",
]

PROTOCOL_VERSION: Final = 0x01
"""Protocol version field of every V2GTP header (ISO 15118-2/-20 "V2GTP")."""

INVERSE_PROTOCOL_VERSION: Final = 0xFE
"""Bitwise inverse of :data:`PROTOCOL_VERSION`."""

HEADER_LENGTH: Final = 8
"""Size of the V2GTP header in bytes."""

MAX_PAYLOAD_LENGTH_FIELD: Final = 0xFFFF_FFFF
"""Largest value the u32 payload length field can carry."""

DEFAULT_MAX_PAYLOAD_LENGTH: Final = 65_536
"""Default receive limit.  The largest -20 messages (certificate installation,
schedules of 1024 entries, power profiles of 2048 entries) stay well below it;
raise it per connection if a peer needs more."""

DEFAULT_MAX_DISCARD_LENGTH: Final = 1 << 20
"""Oversize or unknown-type messages up to this length are skipped; longer ones
close the connection (see the module docstring)."""

_HEADER: Final = struct.Struct(">BBHI")


class PayloadType(IntEnum):
    """V2GTP payload type identifiers (ISO 15118-2 / -20 "V2GTP" payload type
    table, listed in FACTS.md "Transport").  The payload type tells the receiver
    which EXI grammar decodes the payload."""

    SAP = 0x8001
    """SupportedAppProtocol handshake (and all DIN 70121 / ISO 15118-2 messages)."""
    ISO20_COMMON = 0x8002
    """ISO 15118-20 CommonMessages."""
    ISO20_AC = 0x8003
    """ISO 15118-20 AC messages."""
    ISO20_DC = 0x8004
    """ISO 15118-20 DC messages."""
    ISO20_ACDP = 0x8005
    """ISO 15118-20 ACDP messages (known, not supported here)."""
    ISO20_WPT = 0x8006
    """ISO 15118-20 WPT messages (known, not supported here)."""
    SCHEDULE_RENEGOTIATION = 0x8101
    """-20 side stream: schedule renegotiation (known, not supported here)."""
    METERING_CONFIRMATION = 0x8102
    """-20 side stream: metering confirmation (known, not supported here)."""
    ACDP_SYSTEM_STATUS = 0x8103
    """-20 side stream: ACDP system status (known, not supported here)."""
    PARKING_STATUS = 0x8104
    """-20 side stream: parking status (known, not supported here)."""
    SDP_REQUEST = 0x9000
    """SECC Discovery Protocol request (UDP only)."""
    SDP_RESPONSE = 0x9001
    """SECC Discovery Protocol response (UDP only)."""
    WIRELESS_SDP_REQUEST = 0x9002
    """Wireless SDP request (known, not supported here)."""
    WIRELESS_SDP_RESPONSE = 0x9003
    """Wireless SDP response (known, not supported here)."""


ISO20_STREAM_PAYLOAD_TYPES: Final[frozenset[PayloadType]] = frozenset(
    {
        PayloadType.SAP,
        PayloadType.ISO20_COMMON,
        PayloadType.ISO20_AC,
        PayloadType.ISO20_DC,
    }
)
"""Payload types this controller accepts on the TCP/TLS V2G connection."""


class Action(Enum):
    """What the adapter must do after a header fault (the negative-acknowledge
    outcome of the V2GTP header check, see the module docstring)."""

    DISCARD_MESSAGE = "discard_message"
    """Drop this one message; the connection stays usable."""
    CLOSE_CONNECTION = "close_connection"
    """Close the TCP/TLS connection; the framer accepts no more data."""


class FrameFault(Enum):
    """Reason a frame was rejected, named after the V2GTP/DoIP negative
    acknowledge codes where one applies."""

    INCORRECT_PATTERN = "incorrect_pattern"
    """Version is not 0x01 or inverse version is not 0xFE -> close."""
    UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"
    """Payload type unknown, or known but not supported by this receiver -> discard."""
    MESSAGE_TOO_LARGE = "message_too_large"
    """Payload length above the receiver's maximum -> discard (close beyond
    ``max_discard_length``)."""
    INVALID_PAYLOAD_LENGTH = "invalid_payload_length"
    """Length field does not match the data (datagrams) or the payload type's
    fixed size -> for a stream: close; for a datagram: ignore it."""
    TRUNCATED = "truncated"
    """The stream ended inside a header or payload -> close."""


class FramerState(Enum):
    """Life cycle of a :class:`V2gtpFramer`."""

    OPEN = "open"
    CLOSED = "closed"
    """The peer ended the stream cleanly between two messages."""
    ERROR = "error"
    """A fatal fault was reported; the connection must be closed."""


class NeedData(Enum):
    """Sentinel type of :data:`NEED_DATA`."""

    NEED_DATA = "need_data"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by :meth:`V2gtpFramer.next_event` when more bytes are needed."""


@dataclass(frozen=True, slots=True)
class V2gtpHeader:
    """A syntactically complete 8-byte header (not yet validated)."""

    version: int
    inverse_version: int
    payload_type: int
    payload_length: int

    def encode(self) -> bytes:
        """Serialise the header; raises :class:`LocalProtocolError` on out-of-range fields."""
        try:
            return _HEADER.pack(
                self.version, self.inverse_version, self.payload_type, self.payload_length
            )
        except struct.error as exc:
            raise LocalProtocolError(f"V2GTP header field out of range: {self!r}") from exc

    @property
    def pattern_ok(self) -> bool:
        """True when version and inverse version are 0x01 / 0xFE."""
        return self.version == PROTOCOL_VERSION and self.inverse_version == INVERSE_PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class V2gtpMessage:
    """Event: one complete, accepted V2GTP message."""

    payload_type: PayloadType
    payload: bytes


@dataclass(frozen=True, slots=True)
class V2gtpError:
    """Event: a frame was rejected.  ``action`` tells the adapter what to do.

    ``header`` holds the raw header bytes seen (fewer than 8 for a truncated
    header); ``payload_type`` / ``payload_length`` are ``None`` when the header
    was incomplete.
    """

    fault: FrameFault
    action: Action
    detail: str
    header: bytes
    payload_type: int | None = None
    payload_length: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Event: the peer ended the stream cleanly, on a message boundary."""


Event = V2gtpMessage | V2gtpError | ConnectionClosed
"""Everything :meth:`V2gtpFramer.next_event` can return besides :data:`NEED_DATA`."""


class V2gtpHeaderError(RemoteProtocolError):
    """A single datagram or header failed V2GTP validation (peer fault)."""

    def __init__(self, error: V2gtpError) -> None:
        self.error = error
        self.fault = error.fault
        self.action = error.action
        super().__init__(f"V2GTP {error.fault.value}: {error.detail}")


def encode_frame(payload_type: PayloadType | int, payload: bytes) -> bytes:
    """Return header and payload as one ``bytes`` object, to be written in a
    single send (FACTS.md "Transport": one message per send).

    Raises :class:`LocalProtocolError` for a payload type that is not a known
    :class:`PayloadType` or a payload longer than the u32 length field.
    """
    try:
        ptype = PayloadType(payload_type)
    except ValueError as exc:
        raise LocalProtocolError(f"unknown V2GTP payload type {payload_type!r}") from exc
    if len(payload) > MAX_PAYLOAD_LENGTH_FIELD:
        raise LocalProtocolError(f"V2GTP payload too long: {len(payload)} bytes")
    return _HEADER.pack(PROTOCOL_VERSION, INVERSE_PROTOCOL_VERSION, ptype, len(payload)) + bytes(
        payload
    )


def parse_header(data: bytes | bytearray | memoryview) -> V2gtpHeader:
    """Unpack the first 8 bytes of ``data`` without validating them.

    Raises :class:`LocalProtocolError` if fewer than 8 bytes are given (callers
    must check the length first).
    """
    if len(data) < HEADER_LENGTH:
        raise LocalProtocolError(f"need {HEADER_LENGTH} bytes for a V2GTP header, got {len(data)}")
    version, inverse, ptype, length = _HEADER.unpack_from(data, 0)
    return V2gtpHeader(version, inverse, ptype, length)


def _is_known_payload_type(value: int) -> bool:
    try:
        PayloadType(value)
    except ValueError:
        return False
    return True


def _check_header(
    header: V2gtpHeader,
    raw: bytes,
    supported: frozenset[PayloadType],
    max_payload_length: int,
    max_discard_length: int,
) -> V2gtpError | None:
    """Apply the V2GTP header checks in the standard's order (module docstring)."""
    if not header.pattern_ok:
        return V2gtpError(
            FrameFault.INCORRECT_PATTERN,
            Action.CLOSE_CONNECTION,
            f"version 0x{header.version:02x} / inverse 0x{header.inverse_version:02x}",
            raw,
            header.payload_type,
            header.payload_length,
        )
    # A frame we cannot take is skipped; past max_discard_length we close instead.
    discard = (
        Action.DISCARD_MESSAGE
        if header.payload_length <= max_discard_length
        else Action.CLOSE_CONNECTION
    )
    if header.payload_type not in supported:
        known = _is_known_payload_type(header.payload_type)
        return V2gtpError(
            FrameFault.UNKNOWN_PAYLOAD_TYPE,
            discard,
            f"payload type 0x{header.payload_type:04x} "
            f"({'known, not supported' if known else 'unknown'}), "
            f"{header.payload_length} bytes",
            raw,
            header.payload_type,
            header.payload_length,
        )
    if header.payload_length > max_payload_length:
        return V2gtpError(
            FrameFault.MESSAGE_TOO_LARGE,
            discard,
            f"payload length {header.payload_length} > limit {max_payload_length}",
            raw,
            header.payload_type,
            header.payload_length,
        )
    return None


def decode_datagram(
    data: bytes,
    supported: Iterable[PayloadType],
    *,
    max_payload_length: int = DEFAULT_MAX_PAYLOAD_LENGTH,
) -> V2gtpMessage:
    """Decode one V2GTP message that must fill ``data`` exactly (UDP: SDP).

    Raises :class:`V2gtpHeaderError` on any fault; for a datagram every fault
    simply means "ignore this datagram".
    """
    raw = bytes(data[:HEADER_LENGTH])
    if len(data) < HEADER_LENGTH:
        raise V2gtpHeaderError(
            V2gtpError(
                FrameFault.INVALID_PAYLOAD_LENGTH,
                Action.DISCARD_MESSAGE,
                f"datagram of {len(data)} bytes is shorter than a V2GTP header",
                raw,
            )
        )
    header = parse_header(data)
    error = _check_header(
        header, raw, frozenset(supported), max_payload_length, MAX_PAYLOAD_LENGTH_FIELD
    )
    if error is not None:
        raise V2gtpHeaderError(error)
    if len(data) - HEADER_LENGTH != header.payload_length:
        raise V2gtpHeaderError(
            V2gtpError(
                FrameFault.INVALID_PAYLOAD_LENGTH,
                Action.DISCARD_MESSAGE,
                f"length field {header.payload_length} but {len(data) - HEADER_LENGTH} "
                "payload bytes in datagram",
                raw,
                header.payload_type,
                header.payload_length,
            )
        )
    return V2gtpMessage(PayloadType(header.payload_type), bytes(data[HEADER_LENGTH:]))


class V2gtpFramer:
    """Incremental V2GTP decoder for one byte stream (TCP or TLS), sans-I/O.

    Usage, in the style of h11::

        framer = V2gtpFramer()
        framer.receive_data(chunk)      # b"" signals end of stream
        for event in framer.events():
            ...                         # V2gtpMessage / V2gtpError / ConnectionClosed

    Data may arrive split anywhere (one byte at a time, several messages per
    read).  Header checks and their outcomes follow the module docstring.
    """

    def __init__(
        self,
        *,
        max_payload_length: int = DEFAULT_MAX_PAYLOAD_LENGTH,
        supported_types: Iterable[PayloadType] = ISO20_STREAM_PAYLOAD_TYPES,
        max_discard_length: int = DEFAULT_MAX_DISCARD_LENGTH,
    ) -> None:
        if not 0 <= max_payload_length <= MAX_PAYLOAD_LENGTH_FIELD:
            raise LocalProtocolError(f"max_payload_length out of range: {max_payload_length}")
        if max_discard_length < 0:
            raise LocalProtocolError(f"max_discard_length out of range: {max_discard_length}")
        self.max_payload_length = max_payload_length
        self.max_discard_length = max_discard_length
        self.supported_types: frozenset[PayloadType] = frozenset(supported_types)
        self._buf = bytearray()
        self._header: V2gtpHeader | None = None  # header of the message being read
        self._skip = 0  # payload bytes still to drop for a discarded message
        self._eof = False
        self._state = FramerState.OPEN
        self._terminal: V2gtpError | ConnectionClosed | None = None

    @property
    def state(self) -> FramerState:
        """Current life-cycle state."""
        return self._state

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the stream; ``b""`` means the peer closed it.

        Raises :class:`LocalProtocolError` when called after end of stream or
        after a fatal error (the adapter should have closed the connection).
        """
        if self._state is FramerState.ERROR:
            raise LocalProtocolError("V2GTP framer is in error state; close the connection")
        if self._eof:
            raise LocalProtocolError("V2GTP framer already received end of stream")
        if not data:
            self._eof = True
            return
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = memoryview(data)[dropped:]
        self._buf += data

    def next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        """Return the next event, or :data:`NEED_DATA` if more bytes are needed.

        Terminal events (:class:`ConnectionClosed`, a :class:`V2gtpError` with
        :attr:`Action.CLOSE_CONNECTION`) are returned again on every later call.
        """
        if self._terminal is not None:
            return self._terminal
        if self._skip:
            if self._eof:
                return self._fail(
                    FrameFault.TRUNCATED,
                    f"stream ended with {self._skip} bytes of a discarded message unread",
                    b"",
                )
            return NEED_DATA
        if self._header is None:
            if len(self._buf) < HEADER_LENGTH:
                if not self._eof:
                    return NEED_DATA
                if not self._buf:
                    self._state = FramerState.CLOSED
                    self._terminal = ConnectionClosed()
                    return self._terminal
                return self._fail(
                    FrameFault.TRUNCATED,
                    f"stream ended inside a header ({len(self._buf)} of {HEADER_LENGTH} bytes)",
                    bytes(self._buf),
                )
            raw = bytes(self._buf[:HEADER_LENGTH])
            del self._buf[:HEADER_LENGTH]
            header = parse_header(raw)
            error = _check_header(
                header,
                raw,
                self.supported_types,
                self.max_payload_length,
                self.max_discard_length,
            )
            if error is not None:
                return self._reject(error)
            self._header = header
        length = self._header.payload_length
        if len(self._buf) < length:
            if not self._eof:
                return NEED_DATA
            return self._fail(
                FrameFault.TRUNCATED,
                f"stream ended inside a payload ({len(self._buf)} of {length} bytes)",
                self._header.encode(),
                self._header,
            )
        payload = bytes(self._buf[:length])
        del self._buf[:length]
        message = V2gtpMessage(PayloadType(self._header.payload_type), payload)
        self._header = None
        return message

    def events(self) -> Iterator[Event]:
        """Yield events until more data is needed or a terminal event was yielded."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event
            if event is self._terminal:
                return

    def _reject(self, error: V2gtpError) -> V2gtpError:
        if error.action is Action.CLOSE_CONNECTION:
            return self._enter_error(error)
        # Discard: drop what is buffered of the payload, skip the rest as it arrives.
        length = error.payload_length or 0
        dropped = min(length, len(self._buf))
        del self._buf[:dropped]
        self._skip = length - dropped
        return error

    def _fail(
        self, fault: FrameFault, detail: str, raw: bytes, header: V2gtpHeader | None = None
    ) -> V2gtpError:
        return self._enter_error(
            V2gtpError(
                fault,
                Action.CLOSE_CONNECTION,
                detail,
                raw,
                None if header is None else header.payload_type,
                None if header is None else header.payload_length,
            )
        )

    def _enter_error(self, error: V2gtpError) -> V2gtpError:
        self._state = FramerState.ERROR
        self._terminal = error
        self._buf.clear()
        self._skip = 0
        return error
