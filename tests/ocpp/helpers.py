"""A fake-clock harness around the sans-I/O core: the test plays the CSMS."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

from chargepoint.adapters.ocpp_client import OcppSchemas
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.certificates import CertificateStore
from chargepoint.ocpp.device_model import DeviceModel, ValueKey
from chargepoint.ocpp.queue import QueuedMessage
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.ocpp.station import (
    Action,
    DeleteQueued,
    DeliverCommand,
    Link,
    OcppStation,
    OpenConnection,
    SendFrame,
    StationIdentity,
    StoreQueued,
    StoreState,
    StoreVariable,
)
from chargepoint.ocpp.station_io import StationCommand

IDENTITY = StationIdentity(
    vendor_name="OpenV2G",
    model="BiDi-11",
    serial_number="SN1",
    firmware_version="0.1.0",
    evse_connectors={1: 1, 2: 1},
)
PASSWORD = "0123456789abcdef"
#: 2026-01-01T00:00:00Z minus a monotonic origin of 1000 s
UTC_OFFSET = 1767225600.0 - 1000.0


class FakeStore:
    """Performs the persistence actions like the adapter store, in memory."""

    def __init__(self) -> None:
        self.variables: dict[ValueKey, str] = {}
        self.queue: dict[int, QueuedMessage] = {}
        self.state: dict[str, dict[str, Any]] = {}

    def apply(self, action: Action) -> None:
        match action:
            case StoreQueued(message):
                self.queue[message.seq] = message
            case DeleteQueued(seq):
                self.queue.pop(seq, None)
            case StoreVariable(key, value):
                self.variables[key] = value
            case StoreState(name, data):
                self.state[name] = json.loads(json.dumps(data))


class Harness:
    """Drives an :class:`OcppStation` with a fake clock."""

    def __init__(
        self,
        store: FakeStore | None = None,
        *,
        seed: int = 1,
        overrides: dict[str, str] | None = None,
        capacity: int = 1000,
        certificates: CertificateStore | None = None,
    ) -> None:
        self.now = 1000.0
        self.store = store or FakeStore()
        ids = itertools.count(1)
        specs = dm.standard_variables(
            identity="CS-001",
            security_profile=1,
            basic_auth_password=PASSWORD,
            evse_connectors=IDENTITY.evse_connectors,
        )
        self.model = DeviceModel(specs, self.store.variables)
        for name, value in (overrides or {}).items():
            component, _, variable = name.partition(".")
            var_name, _, instance = variable.partition("[")
            key = dm.VariableKey(var_name, instance.rstrip("]") or None)
            self.model.update(dm.ComponentKey(component), key, value)
        self.station = OcppStation(
            identity=IDENTITY,
            model=self.model,
            schemas=OcppSchemas(),
            rng=random.Random(seed),
            new_id=lambda: f"id-{next(ids)}",
            utc_offset_s=UTC_OFFSET,
            queued=tuple(sorted(self.store.queue.values(), key=lambda m: m.seq)),
            stored_state=self.store.state,
            queue_capacity=capacity,
            certificates=certificates,
        )
        self.sent: list[Any] = []
        #: (time sent, frame) for every frame the station sent
        self.timeline: list[tuple[float, Any]] = []
        self.opens: list[float] = []
        self.other: list[Action] = []
        self.started = False
        self.commands: list[StationCommand] = []

    # ---------------------------------------------------------------- plumbing
    def drain(self) -> list[Any]:
        """Perform pending actions; returns the frames sent since the last drain."""
        frames = []
        for action in self.station.actions():
            self.store.apply(action)
            if isinstance(action, SendFrame):
                frames.append(json.loads(action.text))
                self.timeline.append((self.now, frames[-1]))
            elif isinstance(action, DeliverCommand):
                self.commands.append(action.command)
            elif isinstance(action, OpenConnection):
                self.opens.append(self.now)
                self.other.append(action)
            elif not isinstance(action, StoreQueued | DeleteQueued | StoreVariable | StoreState):
                self.other.append(action)
        self.sent += frames
        return frames

    def advance(self, seconds: float) -> list[Any]:
        """Move the clock, firing every deadline on the way."""
        end = self.now + seconds
        frames = self.drain()
        while True:
            deadline = self.station.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.station.handle_timer(self.now)
            frames += self.drain()
        self.now = end
        return frames

    def connect(self, version: ProtocolVersion = ProtocolVersion.V201) -> list[Any]:
        """Start (first time) or wait for the next attempt, then let it succeed."""
        if not self.started:
            self.started = True
            self.station.start(self.now)
        self.drain()
        if self.station.link is not Link.CONNECTING:
            deadline = self.station.next_deadline()
            assert deadline is not None
            self.advance(deadline - self.now)
        assert self.station.link is Link.CONNECTING
        self.station.connection_opened(self.now, version)
        return self.drain()

    def receive(self, frame: list[Any]) -> list[Any]:
        self.station.receive_frame(self.now, json.dumps(frame))
        return self.drain()

    def reply(self, call: list[Any], payload: dict[str, Any]) -> list[Any]:
        assert call[0] == 2
        return self.receive([3, call[1], payload])

    def boot(self, status: str = "Accepted", interval: int = 300) -> list[Any]:
        """Connect and answer the BootNotification; returns what followed."""
        frames = self.connect()
        assert frames[-1][2] == "BootNotification"
        return self.reply(frames[-1], boot_result(status, interval))

    def answer_all(self, frames: list[Any]) -> list[Any]:
        """Answer every CALL in ``frames`` (and what they trigger) with a minimal result."""
        seen: list[Any] = []
        pending = list(frames)
        while pending:
            frame = pending.pop(0)
            seen.append(frame)
            if frame[0] == 2:
                pending += self.reply(frame, minimal_result(frame[2]))
        return seen


def boot_result(status: str = "Accepted", interval: int = 300) -> dict[str, Any]:
    return {"currentTime": "2026-01-01T00:00:10.000Z", "interval": interval, "status": status}


def minimal_result(action: str) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {
        "Heartbeat": {"currentTime": "2026-01-01T00:00:10.000Z"},
        "TransactionEvent": {},
        "StatusNotification": {},
        "NotifyReport": {},
        "NotifyEvent": {},
        "ReportChargingProfiles": {},
        "MeterValues": {},
        "SecurityEventNotification": {},
        "SignCertificate": {"status": "Accepted"},
        "Authorize": {"idTokenInfo": {"status": "Accepted"}},
        "BootNotification": boot_result(),
    }
    return results[action]


def calls(frames: list[Any], action: str | None = None) -> list[Any]:
    return [f for f in frames if f[0] == 2 and (action is None or f[2] == action)]
