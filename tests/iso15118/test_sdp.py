"""Tests for the SDP codecs / responder policy and the asyncio SDP responder.

Network traffic stays on the IPv6 loopback (::1); nothing is ever sent to a
multicast group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepoint.adapters.sdp_server import (
    _open_socket,
    link_local_address,
    parse_if_inet6,
    responder_for_interface,
    serve_sdp,
)
from chargepoint.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from chargepoint.iso15118.sdp import (
    SDP_PORT,
    SdpDecodeError,
    SdpRequest,
    SdpResponder,
    SdpResponse,
    SeccEndpoint,
    Security,
    TransportProtocol,
)

EXAMPLE_REQUEST = bytes.fromhex("01fe9000000000021000")
EXAMPLE_RESPONSE = bytes.fromhex("01fe900100000014fe80000000000000664d70fffe0103bfd74e1000")
SECC_ADDRESS = IPv6Address("fe80::664d:70ff:fe01:3bf")
TLS_EP = SeccEndpoint(SECC_ADDRESS, 55119)
TCP_EP = SeccEndpoint(SECC_ADDRESS, 55118)


# --- codecs ---------------------------------------------------------------------------


def test_example_request_bytes() -> None:
    request = SdpRequest.decode(EXAMPLE_REQUEST)
    assert request == SdpRequest(Security.NO_TLS, TransportProtocol.TCP)
    assert request.encode() == EXAMPLE_REQUEST


def test_example_response_bytes() -> None:
    response = SdpResponse.decode(EXAMPLE_RESPONSE)
    assert response == SdpResponse(SECC_ADDRESS, 0xD74E, Security.NO_TLS, TransportProtocol.TCP)
    assert response.encode() == EXAMPLE_RESPONSE


def test_tls_request_bytes() -> None:
    assert SdpRequest(Security.TLS).encode() == bytes.fromhex("01fe9000000000020000")


@given(
    security=st.sampled_from(Security),
    transport=st.sampled_from(TransportProtocol),
)
def test_request_round_trip(security: Security, transport: TransportProtocol) -> None:
    request = SdpRequest(security, transport)
    assert SdpRequest.decode(request.encode()) == request


@given(
    address=st.binary(min_size=16, max_size=16).map(IPv6Address),
    port=st.integers(1, 0xFFFF),
    security=st.sampled_from(Security),
    transport=st.sampled_from(TransportProtocol),
)
def test_response_round_trip(
    address: IPv6Address, port: int, security: Security, transport: TransportProtocol
) -> None:
    response = SdpResponse(address, port, security, transport)
    data = response.encode()
    assert len(data) == 28
    assert SdpResponse.decode(data) == response


@pytest.mark.parametrize(
    "data",
    [
        b"",
        EXAMPLE_REQUEST[:9],  # payload shorter than announced
        EXAMPLE_REQUEST + b"\x00",  # trailing byte
        bytes.fromhex("01fe900000000003100000"),  # length 3
        bytes.fromhex("01fe90000000000110"),  # length 1
        bytes.fromhex("01fe9000000000020100"),  # reserved security
        bytes.fromhex("01fe9000000000021001"),  # reserved transport
        bytes.fromhex("02fd9000000000021000"),  # wrong version
        bytes.fromhex("01ff9000000000021000"),  # wrong inverse
        bytes.fromhex("01fe9002000000021000"),  # wireless SDP: not supported
        EXAMPLE_RESPONSE,  # a response is not a request
    ],
)
def test_request_decode_errors(data: bytes) -> None:
    with pytest.raises(SdpDecodeError) as info:
        SdpRequest.decode(data)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.data == data


@pytest.mark.parametrize(
    "data",
    [
        EXAMPLE_RESPONSE[:-1],
        EXAMPLE_RESPONSE + b"\x00",
        EXAMPLE_REQUEST,
        EXAMPLE_RESPONSE[:24] + b"\x00\x00" + EXAMPLE_RESPONSE[26:],  # port 0
        EXAMPLE_RESPONSE[:26] + b"\x20\x00",  # reserved security
        EXAMPLE_RESPONSE[:26] + b"\x10\x11",  # reserved transport
    ],
)
def test_response_decode_errors(data: bytes) -> None:
    with pytest.raises(SdpDecodeError):
        SdpResponse.decode(data)


@pytest.mark.parametrize("port", [0, 0x1_0000, -1])
def test_response_encode_rejects_bad_port(port: int) -> None:
    with pytest.raises(LocalProtocolError):
        SdpResponse(SECC_ADDRESS, port, Security.TLS).encode()


# --- responder policy -------------------------------------------------------------------


def answer(responder: SdpResponder, security: Security) -> tuple[int, Security] | None:
    response = responder.decide(SdpRequest(security))
    return None if response is None else (response.port, response.security)


TLS_ONLY = {"tls": TLS_EP}
TCP_ONLY = {"tcp": TCP_EP, "allow_plain_tcp": True}
BOTH = {"tls": TLS_EP, "tcp": TCP_EP, "allow_plain_tcp": True}


@pytest.mark.parametrize(
    ("config", "requested", "expected"),
    [
        (TLS_ONLY, Security.TLS, (55119, Security.TLS)),
        (TLS_ONLY, Security.NO_TLS, (55119, Security.TLS)),
        (TCP_ONLY, Security.TLS, (55118, Security.NO_TLS)),
        (TCP_ONLY, Security.NO_TLS, (55118, Security.NO_TLS)),
        (BOTH, Security.TLS, (55119, Security.TLS)),
        (BOTH, Security.NO_TLS, (55118, Security.NO_TLS)),
    ],
)
def test_policy_table(
    config: dict[str, object], requested: Security, expected: tuple[int, Security]
) -> None:
    responder = SdpResponder(**config)  # type: ignore[arg-type]
    assert answer(responder, requested) == expected


def test_policy_answers_with_the_secc_address() -> None:
    response = SdpResponder(tls=TLS_EP).decide(SdpRequest(Security.TLS))
    assert response is not None
    assert response.address == SECC_ADDRESS
    assert response.transport is TransportProtocol.TCP


@pytest.mark.parametrize("config", [TLS_ONLY, TCP_ONLY, BOTH])
def test_policy_ignores_udp_requests(config: dict[str, object]) -> None:
    responder = SdpResponder(**config)  # type: ignore[arg-type]
    assert responder.decide(SdpRequest(Security.TLS, TransportProtocol.UDP)) is None
    assert responder.respond(bytes.fromhex("01fe9000000000020010")) is None


def test_plain_tcp_needs_explicit_permission() -> None:
    with pytest.raises(ConfigError):
        SdpResponder(tcp=TCP_EP)
    with pytest.raises(ConfigError):
        SdpResponder(tls=TLS_EP, tcp=TCP_EP)


def test_responder_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError):
        SdpResponder()
    with pytest.raises(ConfigError):
        SdpResponder(allow_plain_tcp=True)


@pytest.mark.parametrize("port", [0, 70000])
def test_endpoint_validation(port: int) -> None:
    with pytest.raises(ConfigError):
        SeccEndpoint(SECC_ADDRESS, port)


def test_endpoint_needs_ipv6() -> None:
    with pytest.raises(ConfigError):
        SeccEndpoint("fe80::1", 1)  # type: ignore[arg-type]


def test_respond_bytes_match_example() -> None:
    responder = SdpResponder(tcp=SeccEndpoint(SECC_ADDRESS, 0xD74E), allow_plain_tcp=True)
    assert responder.respond(EXAMPLE_REQUEST) == EXAMPLE_RESPONSE


def test_respond_raises_on_malformed() -> None:
    with pytest.raises(SdpDecodeError):
        SdpResponder(tls=TLS_EP).respond(b"\x01\xfe\x90\x00garbage")


# --- link-local lookup ------------------------------------------------------------------


IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000000000fffe00aaaa 04 40 20 c0     plc0
fe8000000000000000fc00fffe000001 04 40 20 80     plc0
fd000000000000000000000000000002 04 40 00 82     plc0
fe80000000000000000000fffe00bbbb 05 40 20 80     eth1
"""


def test_parse_if_inet6_picks_usable_link_local() -> None:
    # The first plc0 entry is tentative (flag 0x40) and skipped.
    assert parse_if_inet6(IF_INET6, "plc0") == IPv6Address("fe80::fc:ff:fe00:1")
    assert parse_if_inet6(IF_INET6, "eth1") == IPv6Address("fe80::ff:fe00:bbbb")
    assert parse_if_inet6(IF_INET6, "lo") is None
    assert parse_if_inet6(IF_INET6, "nope") is None


def test_link_local_address_from_file(tmp_path: Path) -> None:
    source = tmp_path / "if_inet6"
    source.write_text(IF_INET6, encoding="ascii")
    assert link_local_address("plc0", source=source) == IPv6Address("fe80::fc:ff:fe00:1")
    with pytest.raises(ConfigError):
        link_local_address("lo", source=source)


def test_responder_for_interface(tmp_path: Path) -> None:
    source = tmp_path / "if_inet6"
    source.write_text(IF_INET6, encoding="ascii")
    responder = responder_for_interface("plc0", tls_port=50000, source=source)
    response = responder.decide(SdpRequest(Security.NO_TLS))
    assert response == SdpResponse(IPv6Address("fe80::fc:ff:fe00:1"), 50000, Security.TLS)
    explicit = responder_for_interface(
        "absent0",
        tls_port=None,
        tcp_port=50001,
        allow_plain_tcp=True,
        address=SECC_ADDRESS,
        source=source,
    )
    assert explicit.decide(SdpRequest(Security.NO_TLS)) == SdpResponse(
        SECC_ADDRESS, 50001, Security.NO_TLS
    )
    with pytest.raises(ConfigError):
        responder_for_interface("absent0", tls_port=50000, source=source)
    with pytest.raises(ConfigError):
        responder_for_interface("plc0", tls_port=None, tcp_port=50001, source=source)


# --- asyncio responder on ::1 -------------------------------------------------------------


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6_loopback = pytest.mark.skipif(
    not _ipv6_loopback_available(), reason="IPv6 loopback (::1) unavailable"
)


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("::1", 0))
    yield sock
    sock.close()


@contextlib.asynccontextmanager
async def running_server(
    responder: SdpResponder,
    *,
    interface: str | None,
    join_multicast: bool,
    link_local_peers_only: bool = True,
) -> AsyncIterator[int]:
    """Run serve_sdp on ::1 with an ephemeral port; yield the port; cancel on exit."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()
    task = asyncio.create_task(
        serve_sdp(
            responder,
            interface=interface,
            port=0,
            bind_address="::1",
            join_multicast=join_multicast,
            link_local_peers_only=link_local_peers_only,
            on_ready=ready.set_result,
        )
    )
    waiters: set[asyncio.Future[Any]] = {task, ready}
    try:
        done, _ = await asyncio.wait(waiters, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises the setup error
        assert ready.done(), "SDP server did not start"
        yield ready.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def exchange(client: socket.socket, port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(client, data, ("::1", port))
    reply, addr = await asyncio.wait_for(loop.sock_recvfrom(client, 4096), 5.0)
    assert addr[1] == port
    return reply


@needs_ipv6_loopback
async def test_server_answers_unicast_request(client: socket.socket) -> None:
    responder = SdpResponder(tls=TLS_EP, tcp=TCP_EP, allow_plain_tcp=True)
    async with running_server(responder, interface=None, join_multicast=False) as port:
        assert port not in (0, SDP_PORT)
        reply = await exchange(client, port, EXAMPLE_REQUEST)
        assert SdpResponse.decode(reply) == SdpResponse(SECC_ADDRESS, 55118, Security.NO_TLS)
        reply = await exchange(client, port, SdpRequest(Security.TLS).encode())
        assert SdpResponse.decode(reply) == SdpResponse(SECC_ADDRESS, 55119, Security.TLS)


@needs_ipv6_loopback
async def test_server_ignores_malformed_and_keeps_serving(
    client: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    responder = SdpResponder(tls=TLS_EP)
    garbage = b"\x02\xfd" + b"\xab" * 200
    with caplog.at_level(logging.WARNING, logger="chargepoint.adapters.sdp_server"):
        async with running_server(responder, interface=None, join_multicast=False) as port:
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(client, garbage, ("::1", port))
            # The next valid request is answered; the garbage was not.
            reply = await exchange(client, port, EXAMPLE_REQUEST)
            assert SdpResponse.decode(reply).security is Security.TLS
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "02fd" + "ab" * 62 + "..." in message
    assert "ab" * 63 not in message  # truncated


@needs_ipv6_loopback
async def test_server_joins_group_on_loopback_interface(client: socket.socket) -> None:
    """Multicast set-up path: join ff02::1 on ``lo``; the request is still sent unicast."""
    try:
        sock = _open_socket(
            interface="lo",
            ifindex=socket.if_nametoindex("lo"),
            port=0,
            bind_address="::1",
            join_multicast=True,
        )
    except OSError as exc:
        pytest.skip(f"cannot join ff02::1 on lo: {exc}")
    with sock:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 1
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == 1
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF) == (
            socket.if_nametoindex("lo")
        )
    responder = SdpResponder(tls=TLS_EP)
    async with running_server(
        responder, interface="lo", join_multicast=True, link_local_peers_only=False
    ) as port:
        reply = await exchange(client, port, EXAMPLE_REQUEST)
        assert SdpResponse.decode(reply).port == 55119


@needs_ipv6_loopback
async def test_server_ignores_peers_off_the_interface(client: socket.socket) -> None:
    # ::1 is not a link-local peer scoped to lo, so it is not answered.
    responder = SdpResponder(tls=TLS_EP)
    async with running_server(responder, interface="lo", join_multicast=False) as port:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(client, EXAMPLE_REQUEST, ("::1", port))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recvfrom(client, 4096), 0.3)


async def test_server_config_errors() -> None:
    responder = SdpResponder(tls=TLS_EP)
    with pytest.raises(ConfigError):
        await serve_sdp(responder, interface=None, join_multicast=True)
    with pytest.raises(ConfigError):
        await serve_sdp(responder, interface="no-such-if0", join_multicast=False)
