"""The control socket under abuse (issue 10): absurd numbers, deep JSON, idle and
excess connections get a clear answer or a close, and never a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from chargepoint.adapters import control_socket
from chargepoint.app import Station
from tests.e2e.conftest import Client


async def raw(sock: Path, line: bytes) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(sock, limit=control_socket.MAX_LINE)
    try:
        writer.write(line + b"\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 5.0)
    finally:
        writer.close()
    assert answer, "no answer"
    result: dict[str, object] = json.loads(answer)
    return result


@pytest.mark.parametrize(
    "line",
    [
        b'{"cmd": "limit", "current_a": ' + b"9" * 4000 + b"}",
        b'{"cmd": "limit", "current_a": ' + b"9" * 5000 + b"}",  # beyond int parsing limits
        b'{"cmd": "limit", "current_a": NaN}',
        b'{"cmd": "limit", "current_a": -1}',
        b'{"cmd": "limit", "current_a": true}',
        b"[" * 30_000 + b"]" * 30_000,
        b'{"cmd": "stop", "evse": ' + b"1" * 4000 + b"}",
    ],
)
async def test_absurd_requests_get_a_clear_error(
    station: Station, line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = Client(station)
    await client.sim("plug")
    before = (await client.wait_for(lambda s: s["state"] == "charging"))["offered_current_a"]
    assert before > 6.0
    answer = await raw(station.control_socket, line)
    assert answer["ok"] is False and isinstance(answer["error"], str), answer
    st = await client.evse()
    assert st["offered_current_a"] == before  # the limit did not change
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere


async def test_idle_and_excess_clients_do_not_lock_out_the_control_plane(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control_socket, "IDLE_TIMEOUT_S", 0.5)
    idle = [
        await asyncio.open_unix_connection(station.control_socket)
        for _ in range(control_socket.MAX_CLIENTS)
    ]
    answer = await raw(station.control_socket, b'{"cmd": "status"}')
    assert answer == {"ok": False, "error": "too many control clients"}
    await asyncio.sleep(1.0)  # the idle ones are closed
    for reader, writer in idle:
        assert await asyncio.wait_for(reader.read(), 2.0) == b""
        writer.close()
    answer = await raw(station.control_socket, b'{"cmd": "status"}')
    assert answer["ok"] is True
