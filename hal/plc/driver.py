"""Real :class:`hal.plc.link.PlcLink` driver: whole Ethernet frames on a datagram socket.

On the charger the socket is an ``AF_PACKET`` raw socket bound to the PLC
interface (e.g. ``eth1`` of the ``qcaspi`` driver) for EtherType 0x88E1; it
needs ``CAP_NET_RAW``. For tests and the simulator the same class runs over any
socket that carries one whole frame per datagram (a ``socketpair`` or UDP on
127.0.0.1): :meth:`PacketPlcLink.over_socket`.

The event loop calls :meth:`PacketPlcLink._on_readable` when the socket is
readable; it decodes every waiting frame, completes the waiter of a request to
the modem (CM_SET_KEY, VS_SW_VER, VS_RS_DEV, VS_PL_LINK_STATUS) or queues the
MME for :meth:`receive`. Sending is one ``send`` of one frame and never waits.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import deque
from typing import get_args

from chargepoint.slac import SlacMessage
from hal.errors import HalInitError, HalOperationError, HalTimeoutError
from hal.plc.link import PlcLinkStats
from hal.plc.mme import (
    ETHERTYPE_HOMEPLUG_AV,
    LOCAL_MODEM_MAC,
    Dropped,
    Message,
    Mme,
    SetKeyCnf,
    SetKeyReq,
    SetKeyResult,
    VsPlLinkStatusCnf,
    VsPlLinkStatusReq,
    VsRsDevCnf,
    VsRsDevReq,
    VsSwVerCnf,
    VsSwVerReq,
    decode_frame,
    encode_frame,
    message_name,
)

_log = logging.getLogger(__name__)

MAX_FRAME = 1518  # an Ethernet frame without FCS, the most one MME datagram carries
PACKET_OUTGOING = 4  # linux/if_packet.h: a frame we sent, looped back to a packet tap
_READ_BURST = 64  # frames per readable callback before yielding to the loop
_SLAC_TYPES: tuple[type, ...] = get_args(SlacMessage)


def open_packet_socket(interface: str) -> tuple[socket.socket, bytes]:
    """A non-blocking AF_PACKET socket on ``interface`` for HomePlug AV frames, and the
    interface's MAC. Raises :class:`HalInitError` with one clear line on failure."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE_HOMEPLUG_AV))
    except PermissionError as exc:
        raise HalInitError(
            f"{interface}: raw sockets need CAP_NET_RAW (run as root or grant the "
            f"capability): {exc.strerror}"
        ) from exc
    except OSError as exc:
        raise HalInitError(f"{interface}: cannot create a packet socket: {exc}") from exc
    try:
        sock.bind((interface, ETHERTYPE_HOMEPLUG_AV))
        sock.setblocking(False)
        address = sock.getsockname()
    except OSError as exc:
        sock.close()
        reason = "no such interface" if exc.errno == errno.ENODEV else exc.strerror
        raise HalInitError(f"{interface}: {reason}") from exc
    mac = bytes(address[4])
    if len(mac) != 6:
        sock.close()
        raise HalInitError(f"{interface}: not an Ethernet interface")
    return sock, mac


class PacketPlcLink:
    """A HomePlug Green PHY modem reached through ``interface``.

    ``receive`` has queue semantics for one consumer; the backlog is bounded
    (``BACKLOG`` MMEs) and overflow drops the oldest, counted in
    ``stats.backlog_overflows``. One request of each kind to the modem may be in
    flight at a time; concurrent callers queue behind a lock.
    """

    BACKLOG = 256

    def __init__(
        self,
        interface: str,
        *,
        modem_mac: bytes = LOCAL_MODEM_MAC,
        sock: socket.socket | None = None,
        host_mac: bytes | None = None,
    ) -> None:
        self._interface = interface
        self.modem_mac = modem_mac
        self._sock = sock
        self._host_mac = host_mac or b""
        self._stats = PlcLinkStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog: deque[Mme] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._pending: dict[type, asyncio.Future[Message]] = {}
        self._locks: dict[type, asyncio.Lock] = {}
        self._error: str | None = "not open"
        self._reading = False

    @classmethod
    def over_socket(
        cls,
        sock: socket.socket,
        *,
        interface: str,
        host_mac: bytes,
        modem_mac: bytes = LOCAL_MODEM_MAC,
    ) -> PacketPlcLink:
        """The same driver over a datagram socket carrying whole Ethernet frames."""
        return cls(interface, modem_mac=modem_mac, sock=sock, host_mac=host_mac)

    # -- properties ---------------------------------------------------------------
    @property
    def interface(self) -> str:
        return self._interface

    @property
    def host_mac(self) -> bytes:
        return self._host_mac

    @property
    def stats(self) -> PlcLinkStats:
        return self._stats

    # -- lifecycle ------------------------------------------------------------------
    async def open(self) -> None:
        if self._reading:
            raise HalInitError(f"{self._interface}: already open")
        if self._sock is None:
            self._sock, mac = open_packet_socket(self._interface)
            self._host_mac = self._host_mac or mac
        else:
            self._sock.setblocking(False)
            if not self._host_mac and self._sock.family == getattr(socket, "AF_PACKET", -1):
                self._host_mac = bytes(self._sock.getsockname()[4])
        if len(self._host_mac) != 6:
            raise HalInitError(f"{self._interface}: no host MAC address")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._reading = True
        self._error = None
        _log.info("%s: PLC link open (host %s)", self._interface, self._host_mac.hex(":"))

    async def close(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self._detach("link closed", unexpected=False)
        self._sock = None
        sock.close()
        _log.info("%s: PLC link closed", self._interface)

    # -- frames -----------------------------------------------------------------------
    async def send(self, destination: bytes, message: Message) -> None:
        self._send_frame(encode_frame(destination, self._host_mac, message), message)

    async def receive(self) -> Mme:
        while True:
            if self._backlog:
                return self._backlog.popleft()
            if self._error is not None or self._loop is None:
                raise HalOperationError(f"{self._interface}: {self._error}")
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    # -- requests to the local modem ------------------------------------------------------
    async def set_key(self, nmk: bytes, nid: bytes, *, timeout_s: float = 1.0) -> SetKeyCnf:
        answer = await self._request(SetKeyReq(nid=nid, new_key=nmk), SetKeyCnf, timeout_s)
        assert isinstance(answer, SetKeyCnf)
        if not SetKeyResult.ok(answer.result):
            raise HalOperationError(
                f"{self._interface}: modem refused CM_SET_KEY (result {answer.result})"
            )
        return answer

    async def link_status(self, *, timeout_s: float = 0.5) -> bool:
        answer = await self._request(VsPlLinkStatusReq(), VsPlLinkStatusCnf, timeout_s)
        assert isinstance(answer, VsPlLinkStatusCnf)
        return answer.link_up

    async def read_version(self, *, timeout_s: float = 1.0) -> VsSwVerCnf:
        answer = await self._request(VsSwVerReq(), VsSwVerCnf, timeout_s)
        assert isinstance(answer, VsSwVerCnf)
        if answer.status != 0:
            raise HalOperationError(f"{self._interface}: VS_SW_VER status {answer.status}")
        return answer

    async def reset_modem(self, *, timeout_s: float = 1.0) -> None:
        answer = await self._request(VsRsDevReq(), VsRsDevCnf, timeout_s)
        assert isinstance(answer, VsRsDevCnf)
        if answer.status != 0:
            raise HalOperationError(f"{self._interface}: VS_RS_DEV status {answer.status}")

    async def _request(self, request: Message, answer: type, timeout_s: float) -> Message:
        lock = self._locks.setdefault(answer, asyncio.Lock())
        async with lock:
            if self._loop is None or self._error is not None:
                raise HalOperationError(f"{self._interface}: {self._error}")
            future: asyncio.Future[Message] = self._loop.create_future()
            self._pending[answer] = future
            try:
                self._send_frame(encode_frame(self.modem_mac, self._host_mac, request), request)
                async with asyncio.timeout(timeout_s):
                    return await future
            except TimeoutError as exc:
                raise HalTimeoutError(
                    f"{self._interface}: no {answer.__name__} within {timeout_s:.3g} s"
                ) from exc
            finally:
                if self._pending.get(answer) is future:
                    del self._pending[answer]

    # -- internals ---------------------------------------------------------------------------
    def _send_frame(self, frame: bytes, message: Message) -> None:
        sock = self._sock
        if sock is None or self._error is not None:
            raise HalOperationError(f"{self._interface}: cannot send: {self._error}")
        try:
            sock.send(frame)
        except BlockingIOError as exc:
            self._stats.tx_errors += 1
            raise HalOperationError(
                f"{self._interface}: transmit queue full, {message_name(message)} not sent"
            ) from exc
        except OSError as exc:
            self._stats.tx_errors += 1
            raise HalOperationError(f"{self._interface}: send failed: {exc.strerror}") from exc
        self._stats.frames_tx += 1
        _log.debug("%s: tx %s", self._interface, message_name(message))

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(_READ_BURST):
            try:
                frame, address = sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ENETDOWN, the peer socket gone, ...
                self._detach(f"receive failed: {exc.strerror}")
                return
            if not frame:  # a datagram pipe whose far side shut down
                self._detach("the far side of the frame pipe closed")
                return
            if isinstance(address, tuple) and len(address) > 2 and address[2] == PACKET_OUTGOING:
                continue  # our own frame, seen by a tap
            self._on_frame(frame)

    def _on_frame(self, frame: bytes) -> None:
        self._stats.frames_rx += 1
        decoded = decode_frame(frame)
        if isinstance(decoded, Dropped):
            self._stats.dropped[decoded.reason] += 1
            _log.debug("%s: dropped frame: %s", self._interface, decoded.detail)
            return
        destination = decoded.destination
        if destination != self._host_mac and not destination[0] & 0x01:
            self._stats.not_for_us += 1
            return
        future = self._pending.get(type(decoded.message))
        if future is not None and not future.done():
            future.set_result(decoded.message)
            return
        if not isinstance(decoded.message, _SLAC_TYPES):
            self._stats.unsolicited += 1
            _log.info("%s: unsolicited %s", self._interface, message_name(decoded.message))
            return
        _log.debug("%s: rx %s", self._interface, message_name(decoded.message))
        if len(self._backlog) >= self.BACKLOG:
            self._backlog.popleft()
            self._stats.backlog_overflows += 1
        self._backlog.append(decoded)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _detach(self, reason: str, *, unexpected: bool = True) -> None:
        if self._error is None and unexpected:
            _log.warning("%s: %s", self._interface, reason)
        self._error = reason
        if self._reading and self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._reading = False
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HalOperationError(f"{self._interface}: {reason}"))
