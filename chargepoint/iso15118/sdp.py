"""SECC Discovery Protocol (SDP): codecs and the responder policy, sans-I/O.

Implements the "SECC Discovery Protocol" clause of ISO 15118-2 as carried over
into ISO 15118-20 (FACTS.md "Transport"):

* The EVCC multicasts an SDP request (V2GTP payload type 0x9000) to ``ff02::1``,
  UDP port 15118, hop limit 1.  Payload, 2 bytes: security, transport protocol.
* The SECC answers unicast to the requester with an SDP response (0x9001).
  Payload, 20 bytes: SECC IPv6 address (16), SECC port (u16 BE), security,
  transport protocol.

Field values: security ``0x00`` = TLS, ``0x10`` = no transport layer security;
transport protocol ``0x00`` = TCP (``0x10`` is reserved for UDP).  Every other
value is reserved and rejected by the decoders.

The socket side lives in :mod:`chargepoint.adapters.sdp_server`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address
from typing import Final

from chargepoint.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from chargepoint.iso15118.v2gtp import (
    PayloadType,
    V2gtpHeaderError,
    decode_datagram,
    encode_frame,
)

__all__ = [
    "SDP_MULTICAST_ADDRESS",
    "SDP_PORT",
    "SDP_REQUEST_LENGTH",
    "SDP_RESPONSE_LENGTH",
    "SdpDecodeError",
    "SdpRequest",
    "SdpResponder",
    "SdpResponse",
    "SeccEndpoint",
    "Security",
    "TransportProtocol",
]

SDP_PORT: Final = 15118
"""UDP port the SECC listens on for SDP requests."""

SDP_MULTICAST_ADDRESS: Final = "ff02::1"
"""Link-local all-nodes group the EVCC sends SDP requests to."""

SDP_REQUEST_LENGTH: Final = 2
"""Payload length of an SDP request."""

SDP_RESPONSE_LENGTH: Final = 20
"""Payload length of an SDP response."""

_REQUEST: Final = struct.Struct(">BB")
_RESPONSE: Final = struct.Struct(">16sHBB")


class Security(IntEnum):
    """SDP "Security" field."""

    TLS = 0x00
    NO_TLS = 0x10


class TransportProtocol(IntEnum):
    """SDP "Transport Protocol" field."""

    TCP = 0x00
    UDP = 0x10
    """Reserved by the standard for UDP; decoded, but never offered by this SECC."""


class SdpDecodeError(RemoteProtocolError):
    """An SDP datagram is malformed (bad V2GTP header, length or field value).

    ``data`` holds the whole offending datagram for logging.
    """

    def __init__(self, message: str, data: bytes) -> None:
        self.data = data
        super().__init__(message)


def _decode_payload(data: bytes, payload_type: PayloadType, length: int) -> bytes:
    try:
        message = decode_datagram(data, (payload_type,))
    except V2gtpHeaderError as exc:
        raise SdpDecodeError(str(exc), bytes(data)) from exc
    if len(message.payload) != length:
        raise SdpDecodeError(
            f"{payload_type.name} payload must be {length} bytes, got {len(message.payload)}",
            bytes(data),
        )
    return message.payload


def _security(value: int, data: bytes) -> Security:
    try:
        return Security(value)
    except ValueError:
        raise SdpDecodeError(f"reserved SDP security value 0x{value:02x}", data) from None


def _transport(value: int, data: bytes) -> TransportProtocol:
    try:
        return TransportProtocol(value)
    except ValueError:
        raise SdpDecodeError(f"reserved SDP transport protocol value 0x{value:02x}", data) from None


@dataclass(frozen=True, slots=True)
class SdpRequest:
    """SDP request ("SECC Discovery Protocol" clause: SDP request message)."""

    security: Security
    transport: TransportProtocol = TransportProtocol.TCP

    def encode(self) -> bytes:
        """V2GTP frame (type 0x9000) carrying this request."""
        return encode_frame(
            PayloadType.SDP_REQUEST, _REQUEST.pack(Security(self.security), self.transport)
        )

    @classmethod
    def decode(cls, data: bytes) -> SdpRequest:
        """Parse a whole datagram; raises :class:`SdpDecodeError` when malformed."""
        payload = _decode_payload(data, PayloadType.SDP_REQUEST, SDP_REQUEST_LENGTH)
        security, transport = _REQUEST.unpack(payload)
        return cls(_security(security, data), _transport(transport, data))


@dataclass(frozen=True, slots=True)
class SdpResponse:
    """SDP response ("SECC Discovery Protocol" clause: SDP response message)."""

    address: IPv6Address
    port: int
    security: Security
    transport: TransportProtocol = TransportProtocol.TCP

    def encode(self) -> bytes:
        """V2GTP frame (type 0x9001) carrying this response.

        Raises :class:`LocalProtocolError` for a port outside 1..65535.
        """
        if not 1 <= self.port <= 0xFFFF:
            raise LocalProtocolError(f"SDP response port out of range: {self.port}")
        payload = _RESPONSE.pack(
            IPv6Address(self.address).packed,
            self.port,
            Security(self.security),
            TransportProtocol(self.transport),
        )
        return encode_frame(PayloadType.SDP_RESPONSE, payload)

    @classmethod
    def decode(cls, data: bytes) -> SdpResponse:
        """Parse a whole datagram; raises :class:`SdpDecodeError` when malformed."""
        payload = _decode_payload(data, PayloadType.SDP_RESPONSE, SDP_RESPONSE_LENGTH)
        address, port, security, transport = _RESPONSE.unpack(payload)
        if port == 0:
            raise SdpDecodeError("SDP response announces port 0", data)
        return cls(
            IPv6Address(address), port, _security(security, data), _transport(transport, data)
        )


@dataclass(frozen=True, slots=True)
class SeccEndpoint:
    """Where the SECC's V2G TCP (or TLS) server listens."""

    address: IPv6Address
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.address, IPv6Address):
            raise ConfigError(
                "SDP endpoint", [("address", f"not an IPv6 address: {self.address!r}")]
            )
        if not 1 <= self.port <= 0xFFFF:
            raise ConfigError("SDP endpoint", [("port", f"out of range 1..65535: {self.port}")])


class SdpResponder:
    """Decides whether and how to answer an SDP request (pure policy).

    Rule ("SECC Discovery Protocol" clause; -20 runs over TLS, plain TCP only
    behind an explicit setting, FACTS.md "Transport"):

    ============================  ===================  ===================
    EV requests                   SECC offers          answer
    ============================  ===================  ===================
    TLS                           TLS (+/- TCP)        TLS endpoint
    TLS                           TCP only (allowed)   TCP endpoint, the EV decides
    no TLS                        TCP (allowed)        TCP endpoint
    no TLS                        TLS only             TLS endpoint
    transport UDP (reserved)      anything             no answer
    ============================  ===================  ===================

    A plain TCP endpoint is only accepted together with ``allow_plain_tcp=True``.
    """

    def __init__(
        self,
        *,
        tls: SeccEndpoint | None = None,
        tcp: SeccEndpoint | None = None,
        allow_plain_tcp: bool = False,
    ) -> None:
        problems: list[tuple[str, str]] = []
        if tcp is not None and not allow_plain_tcp:
            problems.append(("tcp", "plain TCP endpoint given but allow_plain_tcp is not set"))
        if tls is None and tcp is None:
            problems.append(("tls", "no SECC endpoint configured"))
        if problems:
            raise ConfigError("SDP responder", problems)
        self.tls = tls
        self.tcp = tcp

    def decide(self, request: SdpRequest) -> SdpResponse | None:
        """Return the response to send, or ``None`` to stay silent."""
        if request.transport is not TransportProtocol.TCP:
            return None
        if request.security is Security.NO_TLS and self.tcp is not None:
            return SdpResponse(self.tcp.address, self.tcp.port, Security.NO_TLS)
        if self.tls is not None:
            return SdpResponse(self.tls.address, self.tls.port, Security.TLS)
        if self.tcp is not None:
            return SdpResponse(self.tcp.address, self.tcp.port, Security.NO_TLS)
        return None

    def respond(self, datagram: bytes) -> bytes | None:
        """Decode ``datagram``, decide, and return the response frame or ``None``.

        Raises :class:`SdpDecodeError` when the datagram is malformed.
        """
        response = self.decide(SdpRequest.decode(datagram))
        return None if response is None else response.encode()
