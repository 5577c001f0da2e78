"""SQLite persistence for the OCPP client: device-model values, the durable
message queue and small pieces of core state.

One file, opened in WAL mode with ``synchronous=FULL``: every write below is
its own committed transaction, so once a method returns the data survives a
``kill -9`` or a power cut (as far as the storage honours fsync).  The store
does only what the core tells it; it never decides anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from chargepoint.ocpp.device_model import AttributeType, ComponentKey, ValueKey, VariableKey
from chargepoint.ocpp.queue import MessageKind, QueuedMessage

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS variable (
    key   TEXT PRIMARY KEY,   -- canonical JSON of (component, variable, attribute)
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    seq      INTEGER PRIMARY KEY,
    action   TEXT NOT NULL,
    payload  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
"""


def _encode_key(key: ValueKey) -> str:
    component, variable, attribute = key
    return json.dumps(
        [
            component.name,
            component.instance,
            component.evse_id,
            component.connector_id,
            variable.name,
            variable.instance,
            attribute.value,
        ],
        separators=(",", ":"),
    )


def _decode_key(text: str) -> ValueKey:
    name, instance, evse_id, connector_id, var_name, var_instance, attribute = json.loads(text)
    return (
        ComponentKey(name, instance, evse_id, connector_id),
        VariableKey(var_name, var_instance),
        AttributeType(attribute),
    )


T = TypeVar("T")


class OcppStore:
    """The OCPP client's state file.  Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | None) -> None:
        """``path`` None: in memory (the file could not be used; nothing survives)."""
        self.path = path
        if path is not None:
            # It holds secrets (the basic-auth password a CSMS may set): owner only,
            # whatever the umask; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
        # isolation_level=None: autocommit; each statement below is one transaction.
        self._db = sqlite3.connect(":memory:" if path is None else path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Idempotent."""
        self._db.close()

    def __enter__(self) -> OcppStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------- variables
    def load_variables(self) -> dict[ValueKey, str]:
        rows = self._db.execute("SELECT key, value FROM variable").fetchall()
        return {_decode_key(key): value for key, value in rows}

    def save_variable(self, key: ValueKey, value: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO variable (key, value) VALUES (?, ?)", (_encode_key(key), value)
        )

    # --------------------------------------------------------------- queue
    def load_queue(self) -> tuple[QueuedMessage, ...]:
        rows = self._db.execute(
            "SELECT seq, action, payload, kind, attempts FROM queue ORDER BY seq"
        ).fetchall()
        return tuple(
            QueuedMessage(seq, action, json.loads(payload), MessageKind(kind), attempts)
            for seq, action, payload, kind, attempts in rows
        )

    def save_queued(self, message: QueuedMessage) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO queue (seq, action, payload, kind, attempts) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                message.seq,
                message.action,
                json.dumps(message.payload, separators=(",", ":")),
                message.kind.value,
                message.attempts,
            ),
        )

    def delete_queued(self, seq: int) -> None:
        self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,))

    # --------------------------------------------------------------- state
    def load_state(self) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT name, data FROM state").fetchall()
        return {name: json.loads(data) for name, data in rows}

    def save_state(self, name: str, data: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO state (name, data) VALUES (?, ?)",
            (name, json.dumps(data, separators=(",", ":"), sort_keys=True)),
        )


def open_or_recover(path: Path) -> tuple[OcppStore, dict[str, Any], str | None]:
    """The store at ``path`` with everything it holds, whatever state the file is in.

    Charging never depends on it: a corrupt file (truncated, garbage header or
    pages) is moved aside as ``<name>.corrupt-<UTC time>`` for forensics and a fresh
    one is started; a file that cannot be written at all (full file system,
    read-only) gives an in-memory store. The third value says what happened (for
    the log and the CSMS), or None.
    """
    try:
        store = OcppStore(path)
        return store, _load_all(store), None
    except OSError as exc:  # the file cannot even be created (full, read-only, gone)
        note = f"{path}: cannot be used ({exc}); OCPP state kept in memory only"
        logger.error("%s", note)
        store = OcppStore(None)
        return store, _load_all(store), note
    except sqlite3.DatabaseError as exc:  # also "database or disk is full" (OperationalError)
        if isinstance(exc, sqlite3.OperationalError) or not path.exists():
            note = f"{path}: cannot be used ({exc}); OCPP state kept in memory only"
            logger.error("%s", note)
            store = OcppStore(None)
            return store, _load_all(store), note
        aside = path.with_name(
            f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        )
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.rename(aside.with_name(aside.name + suffix))
        note = f"{path}: corrupt ({exc}); moved aside to {aside.name}, starting afresh"
        logger.error("%s", note)
    try:
        store = OcppStore(path)
        return store, _load_all(store), note
    except (sqlite3.DatabaseError, OSError) as exc:
        note = f"{note}; the new file cannot be used either ({exc}): in memory only"
        logger.error("%s", note)
        store = OcppStore(None)
        return store, _load_all(store), note


def _load_all(store: OcppStore) -> dict[str, Any]:
    return {
        "variables": store.load_variables(),
        "queue": store.load_queue(),
        "state": store.load_state(),
    }


class StoreWorker:
    """Runs every :class:`OcppStore` call on one dedicated thread.

    The store commits with ``synchronous=FULL`` (an fsync per transaction
    message); on an SD card that takes tens of milliseconds. Doing it on the
    event loop would stall the safety loop that shares it, so the connection
    lives on its own thread, and calls keep their order (one worker).
    Use ``async with StoreWorker(path) as worker: await worker.run(fn)``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocpp-store")
        self._store: OcppStore | None = None
        self.saved: dict[str, Any] = {}  # what the store held at start
        self.recovery: str | None = None  # what was wrong with the file at start, if anything

    async def __aenter__(self) -> StoreWorker:
        self._store, self.saved, self.recovery = await self._submit(
            lambda: open_or_recover(self.path)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        store, self._store = self._store, None
        if store is not None:
            await self._submit(store.close)
        self._executor.shutdown(wait=True)

    async def run(self, fn: Callable[[OcppStore], T]) -> T:
        """Call ``fn(store)`` on the store's thread and wait for it (order kept)."""
        store = self._store
        if store is None:
            raise RuntimeError("store worker is not open")
        return await self._submit(lambda: fn(store))

    async def _submit(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)
