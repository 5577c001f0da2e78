"""SECC Discovery Protocol, EVCC side (asyncio UDP).

The car sends an :class:`~chargepoint.iso15118.sdp.SdpRequest` and waits
``timeout_s`` (250 ms) for an :class:`~chargepoint.iso15118.sdp.SdpResponse`,
repeating up to ``max_requests`` (50) times: the SDP request repetition of
ISO 15118-2 carried over into -20 (FACTS.md "Transport"). On a real link the
request goes to ``ff02::1%<interface>`` port 15118 with hop limit 1; tests use
a unicast loopback target instead. Malformed or non-TCP answers are logged and
ignored; silence after the last request is a :class:`CarTimeoutError`.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from chargepoint.iso15118.sdp import (
    SdpDecodeError,
    SdpRequest,
    SdpResponse,
    Security,
    TransportProtocol,
)
from hal.sim.evcc.errors import CarTimeoutError

_log = logging.getLogger(__name__)


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: asyncio.Queue[SdpResponse] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            response = SdpResponse.decode(data)
        except SdpDecodeError as exc:
            _log.warning("SDP: malformed answer from %s ignored: %s (%s)", addr[0], exc, data.hex())
            return
        if response.transport is not TransportProtocol.TCP:
            _log.warning("SDP: answer from %s offers transport %s; ignored", addr[0], response)
            return
        self.responses.put_nowait(response)


def _socket(
    target: tuple[str, int], interface: str | None
) -> tuple[socket.socket, tuple[object, ...]]:
    """A UDP socket for ``target``; multicast targets go out on ``interface`` with hop limit 1."""
    host, port = target
    family, _type, _proto, _canon, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
    )[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if family == socket.AF_INET6 and host.lower().startswith("ff"):
        if interface is None:
            sock.close()
            raise ValueError("a multicast SDP target needs the interface name")
        index = socket.if_nametoindex(interface)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        addr = (host, port, 0, index)
    return sock, tuple(addr)


async def discover(
    target: tuple[str, int],
    *,
    security: Security,
    interface: str | None = None,
    timeout_s: float = 0.25,
    max_requests: int = 50,
) -> SdpResponse:
    """Ask for the SECC's V2G endpoint; return the first valid SDP response."""
    loop = asyncio.get_running_loop()
    sock, addr = _socket(target, interface)
    transport, collector = await loop.create_datagram_endpoint(_Collector, sock=sock)
    request = SdpRequest(security, TransportProtocol.TCP).encode()
    try:
        for attempt in range(1, max_requests + 1):
            transport.sendto(request, addr)
            _log.debug("SDP: request %d/%d to %s", attempt, max_requests, addr[0])
            try:
                response = await asyncio.wait_for(collector.responses.get(), timeout_s)
            except TimeoutError:
                continue
            _log.info(
                "SDP: SECC at [%s]:%d, security %s",
                response.address,
                response.port,
                response.security.name,
            )
            return response
    finally:
        transport.close()
    raise CarTimeoutError(
        "SdpResponse", "", f"no answer to {max_requests} SDP requests of {timeout_s:g} s"
    )
