"""Network namespaces and veth pairs for the tests that run as root.

A veth pair between two namespaces the test creates stands in for the power
line: the charger's side in one namespace, the car's in the other, AF_PACKET
raw sockets on both ends. Tests using it are marked :data:`needs_root_and_ip`
and skip cleanly elsewhere.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import pytest

from hal.errors import HalInitError
from hal.plc.driver import open_packet_socket

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000

needs_root_and_ip = pytest.mark.skipif(
    not hasattr(os, "geteuid")
    or os.geteuid() != 0
    or shutil.which("ip") is None
    or not hasattr(socket, "AF_PACKET"),
    reason="needs root, iproute2 and AF_PACKET (network namespaces and veth)",
)


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that joined ``netns``: sockets it opens live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, object] = {}

    def run() -> None:
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns}")
        finally:
            os.close(fd)
        try:
            box["value"] = fn()
        except OSError as exc:  # HalInitError is not an OSError; both surface below
            box["error"] = exc
        except HalInitError as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@dataclass(frozen=True)
class Veth:
    evse_ns: str
    ev_ns: str
    evse_if: str = "plc-evse"
    ev_if: str = "plc-ev"

    def evse_socket(self) -> tuple[socket.socket, bytes]:
        return in_netns(self.evse_ns, lambda: open_packet_socket(self.evse_if))

    def ev_socket(self) -> socket.socket:
        return in_netns(self.ev_ns, lambda: open_packet_socket(self.ev_if))[0]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def veth_pair(tag: str) -> Iterator[Veth]:
    """Two fresh namespaces joined by a veth pair, both ends up. IPv6 link-local
    addresses are usable at once (no duplicate address detection on the pair)."""
    pair = Veth(
        evse_ns=f"cp-{tag}-evse-{os.getpid() % 100000}", ev_ns=f"cp-{tag}-ev-{os.getpid() % 100000}"
    )
    ip("netns", "add", pair.evse_ns)
    try:
        ip("netns", "add", pair.ev_ns)
        ip(
            "link", "add", pair.evse_if, "netns", pair.evse_ns, "type", "veth",
            "peer", "name", pair.ev_if, "netns", pair.ev_ns,
        )  # fmt: skip
        for ns, name in ((pair.evse_ns, pair.evse_if), (pair.ev_ns, pair.ev_if)):
            subprocess.run(
                ["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.accept_dad=0"],
                check=False,
                capture_output=True,
                timeout=10,
            )
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", name, "up")
        yield pair
    finally:
        for ns in (pair.evse_ns, pair.ev_ns):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=10)
