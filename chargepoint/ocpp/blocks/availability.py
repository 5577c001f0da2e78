"""Functional block G: connector status, availability, unlocking, faults (sans-I/O).

Theory of operation: the runtime reports each connector's status
(:class:`~chargepoint.ocpp.station_io.ConnectorStatusChanged`); the block keeps
it, mirrors it into Connector.AvailabilityState, and tells the CSMS with a
StatusNotification whenever the CSMS's picture is out of date (G01): on a
change while online, for everything after an Accepted BootNotification, and for
what changed while offline after a reconnect.  OCPP 2.1 also gets a NotifyEvent
(trigger Delta) on Connector.AvailabilityState.  ChangeAvailability and
UnlockConnector become commands for the runtime (G03/G04, F05); faults become
NotifyEvent alerts on the component's Problem variable.

What the CSMS made Inoperative (station, EVSE or connector) is kept per
connector in the state file and survives a reset or power cut (G03.FR.08,
G04.FR.09): at start the runtime is told again, and until it reports back the
block itself reports such a connector Unavailable instead of Available, so the
first StatusNotification after the boot is already right.  Apart from that, a
firmware install waiting for transactions holds every EVSE Unavailable for a
while (L01.FR.07); that hold is not stored and does not touch the CSMS's wish.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.device_model import ComponentKey
from chargepoint.ocpp.outbox import Block, DeliverCommand, Handler, Outbox, StoreState
from chargepoint.ocpp.rpc import Call, JsonObject, ProtocolVersion
from chargepoint.ocpp.station_io import (
    ConnectorStatus,
    ConnectorStatusChanged,
    FaultCleared,
    FaultRaised,
    SetAvailability,
    StationEvent,
    UnlockConnector,
)

logger = logging.getLogger(__name__)

#: State-file entry: the connectors the CSMS set Inoperative.
AVAILABILITY_STATE = "availability"

Connector = tuple[int, int]


class AvailabilityBlock(Block):
    """Connector status (G01), ChangeAvailability (G03/G04), UnlockConnector (F05),
    fault alerts (NotifyEvent)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        evse_connectors: Mapping[int, int],
        transactions: TransactionsBlock,
        stored: Mapping[str, Any] | None = None,
    ) -> None:
        self._outbox = outbox
        self._model = outbox.model
        self._evse_connectors = evse_connectors
        self._transactions = transactions
        self._status: dict[tuple[int, int], ConnectorStatus] = {
            (evse, conn): ConnectorStatus.AVAILABLE
            for evse, count in evse_connectors.items()
            for conn in range(1, count + 1)
        }
        #: what the CSMS was last told, per connector
        self._reported: dict[Connector, ConnectorStatus] = {}
        #: the status last shown in Connector.AvailabilityState, per connector
        self._shown: dict[Connector, ConnectorStatus] = dict(self._status)
        #: connectors the CSMS set Inoperative (persisted)
        self._inoperative: set[Connector] = {
            (int(evse), int(conn))
            for evse, conn in (stored or {}).get("inoperative", [])
            if (int(evse), int(conn)) in self._status
        }
        #: connectors held Unavailable for a pending firmware install (L01.FR.07)
        self._held: set[Connector] = set()

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ChangeAvailability": self._on_change_availability,
            "UnlockConnector": self._on_unlock_connector,
        }

    def on_event(self, event: StationEvent, now: float) -> None:
        match event:
            case ConnectorStatusChanged():
                self._on_connector_status(event, now)
            case FaultRaised() | FaultCleared():
                self._on_fault(event, now)

    # ------------------------------------------------------------ status
    def _on_connector_status(self, event: ConnectorStatusChanged, now: float) -> None:
        key = (event.evse_id, event.connector_id)
        if key not in self._status:
            logger.error("runtime reported unknown connector %s: ignored", key)
            return
        self._status[key] = event.status
        self._publish(now)

    def _effective(self, key: Connector) -> ConnectorStatus:
        """The runtime's status, except that an Inoperative connector the runtime
        still calls Available is Unavailable (G03.FR.08: e.g. right after a boot)."""
        status = self._status[key]
        held = key in self._inoperative or key in self._held
        if held and status is ConnectorStatus.AVAILABLE:
            return ConnectorStatus.UNAVAILABLE
        return status

    def hold_for_firmware(self, now: float) -> None:
        """L01.FR.07: a firmware install waits for transactions: every EVSE goes
        Unavailable, a busy one once its session is over (the runtime schedules it,
        as for G03.FR.05), so no new transaction starts."""
        if self._held:
            return
        self._held = set(self._status)
        self._outbox.emit(DeliverCommand(SetAvailability(None, None, operative=False)))
        self._publish(now)

    def release_firmware_hold(self, now: float) -> None:
        """The install failed or was cancelled: the EVSEs are Available again, except
        those the CSMS set Inoperative (G03.FR.08)."""
        if not self._held:
            return
        self._held = set()
        for evse_id, count in sorted(self._evse_connectors.items()):
            if not any((evse_id, conn) in self._inoperative for conn in range(1, count + 1)):
                self._outbox.emit(DeliverCommand(SetAvailability(evse_id, None, operative=True)))
        self._publish(now)

    def _publish(self, now: float) -> None:
        """Connector.AvailabilityState follows every change; online, the CSMS hears
        of it (G01), with OCPP 2.1 also as a NotifyEvent."""
        changed: list[tuple[ComponentKey, ConnectorStatus]] = []
        for key in sorted(self._status):
            status = self._effective(key)
            if self._shown.get(key) is status:
                continue
            self._shown[key] = status
            connector = ComponentKey("Connector", evse_id=key[0], connector_id=key[1])
            self._outbox.update(connector, dm.AVAILABILITY_STATE, status.value)
            changed.append((connector, status))
        if not self._outbox.online:
            return
        self.resync_status(now)
        if self._outbox.version is not ProtocolVersion.V21:
            return
        for connector, status in changed:
            # OCPP 2.1: StatusNotification is deprecated in favour of device-model
            # events; report the change both ways (Connector.AvailabilityState, Delta).
            data: JsonObject = {
                "eventId": self._outbox.next_event_id(),
                "timestamp": self._outbox.utc_now(now),
                "trigger": "Delta",
                "actualValue": status.value,
                "eventNotificationType": "HardWiredNotification",
                "component": connector.to_json(),
                "variable": dm.AVAILABILITY_STATE.to_json(),
            }
            self._outbox.enqueue(
                "NotifyEvent",
                {
                    "generatedAt": self._outbox.utc_now(now),
                    "seqNo": 0,
                    "tbc": False,
                    "eventData": [data],
                },
                None,
            )

    def restore(self, now: float) -> None:
        """At start: tell the runtime again what the CSMS set Inoperative before the
        restart (G03.FR.08, G04.FR.09), as few commands as cover it."""
        if not self._inoperative:
            return
        if self._inoperative == set(self._status):
            commands = [SetAvailability(None, None, operative=False)]
        else:
            commands = []
            for evse_id, count in sorted(self._evse_connectors.items()):
                keys = {(evse_id, conn) for conn in range(1, count + 1)}
                if keys <= self._inoperative:
                    commands.append(SetAvailability(evse_id, None, operative=False))
                else:
                    commands += [
                        SetAvailability(evse_id, conn, operative=False)
                        for _, conn in sorted(keys & self._inoperative)
                    ]
        logger.info("restoring Inoperative: %s", sorted(self._inoperative))
        for command in commands:
            self._outbox.emit(DeliverCommand(command))
        self._publish(now)

    def resync_status(self, now: float, *, everything: bool = False) -> None:
        """G01: a StatusNotification per connector whose state the CSMS does not know
        (``everything``: per connector, after an Accepted BootNotification)."""
        for evse_id, connector_id in sorted(self._status):
            status = self._effective((evse_id, connector_id))
            if not everything and self._reported.get((evse_id, connector_id)) is status:
                continue
            self._reported[(evse_id, connector_id)] = status
            self._outbox.send(
                "StatusNotification",
                {
                    "timestamp": self._outbox.utc_now(now),
                    "connectorStatus": status.value,
                    "evseId": evse_id,
                    "connectorId": connector_id,
                },
            )

    def trigger_status_notification(
        self, evse_id: int | None, connector_id: int | None, now: float
    ) -> bool:
        """F06 TriggerMessage StatusNotification for the connectors addressed
        (all of them without ``evse_id``); ``False`` when there is none."""
        keys = [
            k
            for k in sorted(self._status)
            if evse_id is None or (k[0] == evse_id and connector_id in (None, k[1]))
        ]
        if not keys:
            return False
        for key in keys:
            self._reported[key] = self._effective(key)
            self._outbox.send(
                "StatusNotification",
                {
                    "timestamp": self._outbox.utc_now(now),
                    "connectorStatus": self._reported[key].value,
                    "evseId": key[0],
                    "connectorId": key[1],
                },
                requested_by_csms=True,
            )
        return True

    # ------------------------------------------------------------- faults
    def _on_fault(self, event: FaultRaised | FaultCleared, now: float) -> None:
        """N07-style alert: NotifyEvent on the Problem variable of the component."""
        component = (
            ComponentKey("ChargingStation")
            if event.evse_id is None
            else ComponentKey("EVSE", evse_id=event.evse_id)
        )
        raised = isinstance(event, FaultRaised)
        data: JsonObject = {
            "eventId": self._outbox.next_event_id(),
            "timestamp": self._outbox.utc_now(now),
            "trigger": "Alerting",
            "actualValue": "true" if raised else "false",
            "techCode": event.code[:50],
            "eventNotificationType": "HardWiredNotification",
            "cleared": not raised,
            "component": component.to_json(),
            "variable": {"name": "Problem"},
        }
        if isinstance(event, FaultRaised):
            data["techInfo"] = event.description[:500]
        if self._outbox.online or self._model.bool_value(dm.OCPP_COMM, dm.QUEUE_ALL_MESSAGES):
            self._outbox.enqueue(
                "NotifyEvent",
                {
                    "generatedAt": self._outbox.utc_now(now),
                    "seqNo": 0,
                    "tbc": False,
                    "eventData": [data],
                },
                None,
            )

    # -------------------------------------------------------- CALL handlers
    def _on_change_availability(self, call: Call, now: float, size: int) -> JsonObject:
        operative = call.payload["operationalStatus"] == "Operative"
        evse = call.payload.get("evse") or {}
        evse_id, connector_id = evse.get("id"), evse.get("connectorId")
        if evse_id is not None and evse_id != 0:
            count = self._evse_connectors.get(evse_id)
            if count is None or (connector_id is not None and not 1 <= connector_id <= count):
                return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        else:
            evse_id = None
        if not (operative and self._held):
            # L01.FR.07: while a firmware install holds the EVSEs, Operative waits for
            # the release (release_firmware_hold).
            self._outbox.emit(DeliverCommand(SetAvailability(evse_id, connector_id, operative)))
        # G03.FR.08 / G04.FR.09: the new state persists (a Scheduled one too: the
        # transaction does not survive a restart, the wish does).
        scope = {
            key
            for key in self._status
            if evse_id is None or (key[0] == evse_id and connector_id in (None, key[1]))
        }
        before = set(self._inoperative)
        if operative:
            self._inoperative -= scope
        else:
            self._inoperative |= scope
        if self._inoperative != before:
            inoperative = [list(key) for key in sorted(self._inoperative)]
            self._outbox.emit(StoreState(AVAILABILITY_STATE, {"inoperative": inoperative}))
        self._publish(now)
        # G03/G04: with a transaction running, the change is Scheduled.
        busy = self._transactions.busy(evse_id)
        return {"status": "Scheduled" if busy and not operative else "Accepted"}

    def _on_unlock_connector(self, call: Call, now: float, size: int) -> JsonObject:
        key = (call.payload["evseId"], call.payload["connectorId"])
        if key not in self._status:
            return {"status": "UnknownConnector"}
        if self._transactions.busy(key[0]):
            return {"status": "OngoingAuthorizedTransaction"}  # F05
        self._outbox.emit(DeliverCommand(UnlockConnector(*key)))
        return {"status": "Unlocked"}
