"""Local control socket: JSON lines over a Unix stream socket.

Used by ``chargepoint sim ...`` (drive the simulated EV), ``chargepoint demo``
and operators. One request per line, one response line each:
``{"cmd": "sim", "evse": 1, "name": "plug", "args": []}`` ->
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": "..."}``.
Bad requests get a clear error and never disturb the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_CLIENTS = 32  # more at once is a leak or an attack: the control plane stays usable
IDLE_TIMEOUT_S = 30.0  # a client silent this long (half-open, forgotten) is closed

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlRequestError(ValueError):
    """A control request was malformed or could not be carried out."""


async def serve_control(path: Path, handler: Handler, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled; removes a stale socket file first and on exit."""
    _prepare(path)
    clients = 0

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal clients
        if clients >= MAX_CLIENTS:
            log.warning("control socket: %d clients connected; refusing one more", clients)
            writer.write(b'{"ok": false, "error": "too many control clients"}\n')
            writer.close()
            return
        clients += 1
        try:
            while True:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    line = await reader.readline()
                if not line:
                    break
                response = await _answer(line, handler)
                writer.write(json.dumps(response).encode() + b"\n")
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    await writer.drain()
        except TimeoutError:
            log.info("control client idle for %.0f s: closed", IDLE_TIMEOUT_S)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("control client dropped: %s", exc)
        finally:
            clients -= 1
            writer.close()

    server = await asyncio.start_unix_server(client, path, limit=MAX_LINE)
    os.chmod(path, 0o660)
    log.info("control socket listening on %s", path)
    try:
        async with server:
            if ready is not None:
                ready.set()
            await server.serve_forever()
    finally:
        _remove(path)


def _prepare(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove(path)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _answer(line: bytes, handler: Handler) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"ok": False, "error": f"not JSON: {exc}"}
    except ValueError as exc:  # e.g. an integer of thousands of digits
        return {"ok": False, "error": f"not acceptable JSON: {exc}"}
    except RecursionError:
        return {"ok": False, "error": "not acceptable JSON: nested too deeply"}
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": "request must be an object with a string 'cmd'"}
    try:
        return {"ok": True, "result": await handler(request)}
    except ControlRequestError as exc:
        return {"ok": False, "error": str(exc)}


async def request(path: Path, message: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """One request/response round trip (client side)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    if not line:
        raise ConnectionError(f"{path}: service closed the connection")
    answer: dict[str, Any] = json.loads(line)
    return answer
