"""asyncio UDP responder for the SECC Discovery Protocol.

Listens on UDP port 15118 for SDP requests multicast to ``ff02::1`` on the PLC
interface and answers unicast to the requester with hop limit 1 ("SECC
Discovery Protocol" clause of ISO 15118-2 / -20; FACTS.md "Transport").  What to
answer is decided by the sans-I/O :class:`~chargepoint.iso15118.sdp.SdpResponder`;
the SECC address in its endpoints is normally the interface's link-local
address, see :func:`link_local_address`.

Malformed datagrams are logged at WARNING with their bytes (hex, truncated) and
ignored.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Final, cast

from chargepoint.errors import ConfigError
from chargepoint.iso15118.sdp import (
    SDP_MULTICAST_ADDRESS,
    SDP_PORT,
    SdpDecodeError,
    SdpResponder,
    SeccEndpoint,
)

__all__ = ["link_local_address", "parse_if_inet6", "responder_for_interface", "serve_sdp"]

log = logging.getLogger(__name__)

_LOG_BYTES: Final = 64
"""At most this many bytes of a malformed datagram are logged."""

_IF_INET6: Final = Path("/proc/net/if_inet6")
_SCOPE_LINK: Final = 0x20
_IFA_F_DADFAILED: Final = 0x08
_IFA_F_TENTATIVE: Final = 0x40


def _hex(data: bytes) -> str:
    text = data[:_LOG_BYTES].hex()
    return text + "..." if len(data) > _LOG_BYTES else text


def parse_if_inet6(text: str, interface: str) -> IPv6Address | None:
    """Pick the link-local address of ``interface`` from ``/proc/net/if_inet6`` text.

    Addresses still in duplicate-address detection or that failed it are skipped.
    """
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != interface:
            continue
        address, _index, _prefix, scope, flags, _name = fields
        if int(scope, 16) != _SCOPE_LINK:
            continue
        if int(flags, 16) & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
            continue
        return IPv6Address(bytes.fromhex(address))
    return None


def link_local_address(interface: str, *, source: Path = _IF_INET6) -> IPv6Address:
    """Return the usable link-local IPv6 address of ``interface`` (Linux).

    Raises :class:`ConfigError` if the interface has none (wrong name, link
    down, or duplicate-address detection not finished yet).
    """
    found = parse_if_inet6(source.read_text(encoding="ascii"), interface)
    if found is None:
        raise ConfigError(
            str(source), [("interface", f"no usable link-local address on {interface!r}")]
        )
    return found


def responder_for_interface(
    interface: str,
    *,
    tls_port: int | None,
    tcp_port: int | None = None,
    allow_plain_tcp: bool = False,
    address: IPv6Address | None = None,
    source: Path = _IF_INET6,
) -> SdpResponder:
    """Build the :class:`SdpResponder` for a SECC whose V2G servers listen on
    ``interface``: the SDP response carries ``address`` if given, else the
    interface's link-local address ("SECC Discovery Protocol" clause).

    Raises :class:`ConfigError` (no link-local address, plain TCP without
    ``allow_plain_tcp``, no port at all).
    """
    secc = address if address is not None else link_local_address(interface, source=source)
    return SdpResponder(
        tls=None if tls_port is None else SeccEndpoint(secc, tls_port),
        tcp=None if tcp_port is None else SeccEndpoint(secc, tcp_port),
        allow_plain_tcp=allow_plain_tcp,
    )


class _SdpProtocol(asyncio.DatagramProtocol):
    def __init__(
        self,
        responder: SdpResponder,
        peer_scope: int | None,
        closed: asyncio.Future[None],
        accepting: Callable[[], bool] | None = None,
    ) -> None:
        self._responder = responder
        self._accepting = accepting
        self._peer_scope = peer_scope
        self._closed = closed
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio hands datagram protocols a datagram transport (typed as the base class).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = str(addr[0])
        scope_id = int(addr[3]) if len(addr) > 3 else 0
        if self._peer_scope is not None and scope_id != self._peer_scope:
            # Only link-local peers on our own PLC interface are answered.
            log.debug(
                "SDP: ignoring datagram from %s (scope %d) not on our interface", peer, scope_id
            )
            return
        if self._accepting is not None and not self._accepting():
            # ISO 15118-3: SDP starts after D-LINK_READY; no car of ours is on the link
            log.info("SDP: request from %s not answered: no PLC link yet", peer)
            return
        try:
            reply = self._responder.respond(data)
        except SdpDecodeError as exc:
            log.warning(
                "SDP: malformed datagram from %s ignored: %s; %d bytes: %s",
                peer,
                exc,
                len(data),
                _hex(data),
            )
            return
        if reply is None:
            log.info("SDP: request from %s not answered: %s", peer, _hex(data))
            return
        if self._transport is None:
            return
        log.debug("SDP: answering %s with %s", peer, reply.hex())
        self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("SDP: socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed.done():
            return
        if exc is None:
            self._closed.set_result(None)
        else:
            self._closed.set_exception(exc)


def _open_socket(
    *,
    interface: str | None,
    ifindex: int | None,
    port: int,
    bind_address: str,
    join_multicast: bool,
) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Replies stay on the link: hop limit 1 for unicast and multicast.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        if ifindex is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.bind((bind_address, port, 0, 0))
        if join_multicast:
            assert ifindex is not None
            mreq = socket.inet_pton(socket.AF_INET6, SDP_MULTICAST_ADDRESS) + struct.pack(
                "@I", ifindex
            )
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            log.info("SDP: joined %s on %s", SDP_MULTICAST_ADDRESS, interface)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_sdp(
    responder: SdpResponder,
    *,
    interface: str | None,
    port: int = SDP_PORT,
    bind_address: str = "::",
    join_multicast: bool = True,
    link_local_peers_only: bool = True,
    on_ready: Callable[[int], None] | None = None,
    accepting: Callable[[], bool] | None = None,
) -> None:
    """Answer SDP requests until cancelled.

    ``interface``: the PLC interface; the socket joins ``ff02::1`` on it
    (``IPV6_JOIN_GROUP`` with its index).  ``None`` (tests, loopback) means no
    group membership; ``join_multicast`` then has to be ``False``.

    ``link_local_peers_only``: with an interface, answer only peers whose
    link-local address is scoped to that interface (EVCCs talk link-local on
    the PLC link); datagrams arriving from elsewhere are ignored.

    ``port``: UDP port (15118; 0 for an ephemeral port).  ``on_ready`` is called
    with the bound port once the socket is listening. ``accepting``: requests are
    answered only while it returns True (the PLC link is ready).

    Raises :class:`ConfigError` for an unknown interface or ``join_multicast``
    without an interface, :class:`OSError` if the socket cannot be set up.
    """
    ifindex: int | None = None
    if interface is not None:
        try:
            ifindex = socket.if_nametoindex(interface)
        except OSError as exc:
            raise ConfigError("SDP server", [("interface", f"{interface!r}: {exc}")]) from exc
    elif join_multicast:
        raise ConfigError("SDP server", [("interface", "needed to join the SDP multicast group")])

    sock = _open_socket(
        interface=interface,
        ifindex=ifindex,
        port=port,
        bind_address=bind_address,
        join_multicast=join_multicast,
    )
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    try:
        transport, _protocol = await loop.create_datagram_endpoint(
            lambda: _SdpProtocol(
                responder, ifindex if link_local_peers_only else None, closed, accepting
            ),
            sock=sock,
        )
    except OSError:
        sock.close()
        raise
    try:
        bound_port = int(sock.getsockname()[1])
        log.info("SDP: listening on [%s]:%d (interface %s)", bind_address, bound_port, interface)
        if on_ready is not None:
            on_ready(bound_port)
        await closed
    finally:
        transport.close()
        log.info("SDP: stopped")
