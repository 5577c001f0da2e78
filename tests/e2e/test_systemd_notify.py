"""sd_notify: READY once the safety loops run, WATCHDOG only while they do."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from chargepoint.adapters.systemd_notify import SystemdNotifier
from chargepoint.app import Station
from tests.e2e.conftest import sim_config


@pytest.fixture
def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


async def test_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # feed every 0.1 s
    station = Station(sim_config(tmp_path))
    task = asyncio.create_task(station.run())
    await asyncio.wait_for(station.ready.wait(), 15)
    await asyncio.sleep(0.5)
    messages = drain(notify_socket)
    assert "READY=1" in messages
    assert messages.count("WATCHDOG=1") >= 2
    station.stop()
    await asyncio.wait_for(task, 15)
    assert "STOPPING=1" in drain(notify_socket)


async def test_watchdog_is_not_fed_when_the_safety_loop_stalls(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "100000"}
    )
    alive = True
    task = asyncio.create_task(notifier.watchdog_loop(lambda: alive))
    await asyncio.sleep(0.2)
    assert "WATCHDOG=1" in drain(notify_socket)
    alive = False
    await asyncio.sleep(0.2)
    assert drain(notify_socket) == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_no_notify_socket_means_silence() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.notify("READY=1")  # a no-op, no error
