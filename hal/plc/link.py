"""The EV communication link: a HomePlug Green PHY modem on the control-pilot wire.

The host talks to its own modem (a QCA7000/7005 on SPI via ``qcaspi``, or a
modem on Ethernet) with management frames (MMEs, EtherType 0x88E1); once
ISO 15118-3 SLAC has matched the car, the modem bridges the car's IPv6 traffic
onto the network interface named by :attr:`PlcLink.interface`, whose link-local
address the SDP responder and the V2G server then use.

Implementations: :class:`hal.plc.driver.PacketPlcLink` (AF_PACKET raw socket on
the interface, needs CAP_NET_RAW; or any datagram socket carrying whole
Ethernet frames) and :mod:`hal.plc.simulated` (a simulated modem and car on the
far side of such a socket).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from hal.plc.mme import DropReason, Message, Mme, SetKeyCnf, VsSwVerCnf


@dataclass
class PlcLinkStats:
    """Cumulative counters for diagnostics and tests."""

    frames_rx: int = 0
    frames_tx: int = 0
    tx_errors: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)
    not_for_us: int = 0  # unicast to another host (a bridged segment, promiscuous mode)
    unsolicited: int = 0  # a valid MME nobody waited for (late CNF, modem indication)
    backlog_overflows: int = 0  # received MMEs dropped because nobody read them


class PlcLink(Protocol):
    """One HomePlug Green PHY modem as seen from the host."""

    @property
    def interface(self) -> str:
        """Network interface name (for the IPv6 link-local address of SDP / V2G)."""

    @property
    def host_mac(self) -> bytes:
        """Our own Ethernet address: the source of every frame we send."""

    @property
    def stats(self) -> PlcLinkStats: ...

    async def open(self) -> None:
        """Open the link; raise :class:`hal.errors.HalInitError` (no such interface,
        no CAP_NET_RAW)."""

    async def close(self) -> None:
        """Release the link. Idempotent."""

    async def send(self, destination: bytes, message: Message) -> None:
        """Send one MME (a :mod:`chargepoint.slac` or :mod:`hal.plc.mme` message) to
        ``destination``; :class:`hal.errors.HalOperationError` if it did not go out."""

    async def receive(self) -> Mme:
        """Wait for the next valid MME that is not an answer to one of our own
        requests (those complete :meth:`set_key` etc.). Malformed and foreign
        frames are dropped and counted in :attr:`stats`."""

    async def set_key(self, nmk: bytes, nid: bytes, *, timeout_s: float = 1.0) -> SetKeyCnf:
        """Put the local modem in the AVLN of ``nid`` keyed with ``nmk`` (CM_SET_KEY).

        Raises :class:`hal.errors.HalTimeoutError` when the modem does not confirm,
        :class:`hal.errors.HalOperationError` when it refuses. Both success codes
        (HPGP 0, QCA 1) are accepted."""

    async def link_status(self, *, timeout_s: float = 0.5) -> bool:
        """True when the modem reports the power-line link up (a peer joined our AVLN)."""

    async def read_version(self, *, timeout_s: float = 1.0) -> VsSwVerCnf:
        """The modem's firmware version (QCA VS_SW_VER)."""

    async def reset_modem(self, *, timeout_s: float = 1.0) -> None:
        """Restart the modem (QCA VS_RS_DEV): it leaves any AVLN."""
