"""The OCPP charging-station core: connection, registration, RPC and dispatch (sans-I/O).

Theory of operation
-------------------
Inputs are method calls that carry ``now`` (seconds on a monotonic clock):

* :meth:`OcppStation.start`, :meth:`connection_opened`, :meth:`connection_failed`,
  :meth:`connection_lost` -- what happened to the WebSocket;
* :meth:`receive_frame` -- one text message from the CSMS;
* :meth:`station_event` -- something the runtime reports (:mod:`.station_io`);
* :meth:`handle_timer` -- ``now`` reached :meth:`next_deadline`.

Outputs are drained with :meth:`actions`: open or close the connection, send a
frame, persist something, hand a command to the runtime.  The adapter performs
them *in order* -- a queued message is stored before the frame carrying it is
sent.

Two independent state variables decide what may be sent:

================  ========================================================
``link``          OFFLINE -> CONNECTING -> CONNECTED (-> OFFLINE on loss)
``registration``  UNKNOWN -> PENDING / REJECTED / ACCEPTED (BootNotification)
================  ========================================================

============  ==============================================================
registration  what the station may send while CONNECTED
============  ==============================================================
UNKNOWN       BootNotification only (B01)
PENDING       BootNotification when the interval expires, and what the CSMS
              asked for (reports, triggered messages) (B02)
REJECTED      BootNotification when the interval expires, nothing else (B03)
ACCEPTED      everything; BootNotification is not repeated after a reconnect
============  ==============================================================

One CALL is outstanding at a time (OCPP-J Part 4 §4.1.1).  Each send picks, in
order: a due BootNotification, the oldest allowed volatile message (status,
heartbeat, reports, triggered messages), the head of the durable queue.
Every incoming CALL gets exactly one answer; answers go out immediately and
never wait for our own outstanding CALL.

This module keeps the link, the registration (B01-B03), the heartbeat and the
clock (G02), the one outstanding CALL, the send pump and the dispatch table,
plus TriggerMessage (F06), which asks the other blocks for their messages.
Everything else is a functional block (:mod:`chargepoint.ocpp.blocks`) that
sees the core only through :class:`~chargepoint.ocpp.outbox.Outbox`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from chargepoint.errors import LocalProtocolError, RemoteProtocolError
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.backoff import BackOffPolicy, RandomSource, ReconnectBackOff
from chargepoint.ocpp.blocks.authorization_block import AuthorizationBlock
from chargepoint.ocpp.blocks.availability import AvailabilityBlock
from chargepoint.ocpp.blocks.diagnostics import DiagnosticsBlock
from chargepoint.ocpp.blocks.firmware import FirmwareBlock, SigningCheck
from chargepoint.ocpp.blocks.monitoring import MONITORING_STATE, MonitoringBlock
from chargepoint.ocpp.blocks.provisioning import BOOT_STATE, ProvisioningBlock
from chargepoint.ocpp.blocks.security import SecurityBlock
from chargepoint.ocpp.blocks.smart_charging import SmartChargingBlock
from chargepoint.ocpp.blocks.transactions_block import TransactionsBlock
from chargepoint.ocpp.certificates import CertificateStore, NoCertificates
from chargepoint.ocpp.device_model import ComponentKey, DeviceModel, VariableKey
from chargepoint.ocpp.network import NetworkProfiles
from chargepoint.ocpp.outbox import (
    AuthorizationDone,
    Block,
    BlockAction,
    DeliverCommand,
    Handler,
    OnFailure,
    OnResult,
    StoreState,
    StoreVariable,
    format_timestamp,
    parse_timestamp,
)
from chargepoint.ocpp.queue import (
    GaveUp,
    MessageKind,
    MessageQueue,
    QueuedMessage,
    RetryPolicy,
)
from chargepoint.ocpp.rpc import (
    Call,
    CallError,
    CallResult,
    CallResultError,
    ErrorCode,
    Frame,
    JsonObject,
    MalformedFrame,
    ProtocolVersion,
    Send,
    encode_frame,
    parse_frame,
)
from chargepoint.ocpp.standard_variables import rating_values
from chargepoint.ocpp.station_io import EvseRating, IdToken, StationEvent

__all__ = [
    "BOOT_RETRY_DEFAULT_S",
    "MAX_INTERVAL_S",
    "Action",
    "AuthorizationDone",
    "CloseConnection",
    "DeleteQueued",
    "DeliverCommand",
    "Link",
    "OcppStation",
    "OpenConnection",
    "Registration",
    "SchemaProblem",
    "Schemas",
    "SendFrame",
    "StationIdentity",
    "StoreQueued",
    "StoreState",
    "StoreVariable",
    "StoredState",
    "format_timestamp",
    "parse_timestamp",
]

logger = logging.getLogger(__name__)

#: Longest interval the CSMS may set (a week): anything longer is clamped, so that no
#: number from the network reaches the timers unbounded.
MAX_INTERVAL_S = 7 * 86_400
#: Wait before retrying a BootNotification the CSMS did not answer, or answered
#: with interval 0 (B02/B03 leave the choice to the station).
BOOT_RETRY_DEFAULT_S = 60.0
#: NotifyEvent ids (integer >= 0 in the schema; kept within int32 for every CSMS)
EVENT_IDS_STATE = "event_ids"
MAX_EVENT_ID = 2**31 - 1
EVENT_ID_BLOCK = 1000
#: B02.FR.01: while Pending the CSMS may read and set the device model (B05-B08) and
#: trigger messages (F06); everything else is refused (B02.FR.05, SecurityError).
_ALLOWED_WHILE_PENDING = frozenset(
    {"GetVariables", "SetVariables", "GetBaseReport", "GetReport", "TriggerMessage"}
)


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class StationIdentity:
    """What BootNotification reports, and the EVSE layout."""

    vendor_name: str
    model: str
    evse_connectors: Mapping[int, int]
    serial_number: str | None = None
    firmware_version: str | None = None
    boot_reason: str = "PowerUp"
    #: per EVSE, for smart charging (missing: an AC EVSE of :class:`EvseRating`'s defaults)
    evse_ratings: Mapping[int, EvseRating] = field(default_factory=dict)
    #: the manufacturer root for signed firmware (L01); None: UpdateFirmware is
    #: answered InvalidCertificate
    firmware_signing: SigningCheck | None = None


@dataclass(frozen=True)
class SchemaProblem:
    code: ErrorCode
    description: str


class Schemas(Protocol):
    """Message catalogue and JSON-schema validation, supplied by the adapter."""

    def known_actions(self, version: ProtocolVersion) -> frozenset[str]: ...

    def check(
        self,
        version: ProtocolVersion,
        action: str,
        payload: JsonObject,
        *,
        request: bool,
        own: bool = False,
    ) -> SchemaProblem | None:
        """Why ``payload`` breaks the schema, or ``None``; ``own`` marks what we send."""


# ------------------------------------------------------------------- actions
@dataclass(frozen=True)
class OpenConnection:
    """Connect; authenticate with Basic auth when ``basic_auth_password`` is set.

    ``csms_url`` is ``None`` for the configured CSMS (configuration slot 0), else the
    ocppCsmsUrl of the network connection profile in ``configuration_slot`` (B09/B10).
    Security profile 3 connects with the station's client certificate (A00).
    """

    basic_auth_password: str | None
    security_profile: int
    ping_interval_s: int
    csms_url: str | None = None
    configuration_slot: int = 0


@dataclass(frozen=True)
class CloseConnection:
    """Close the WebSocket on purpose; the core already counts the link as down."""

    reason: str


@dataclass(frozen=True)
class SendFrame:
    text: str
    #: for the DEBUG traffic log: "CALL BootNotification", "CALLRESULT GetVariables", ...
    summary: str


@dataclass(frozen=True)
class StoreQueued:
    message: QueuedMessage


@dataclass(frozen=True)
class DeleteQueued:
    seq: int


Action = OpenConnection | CloseConnection | SendFrame | StoreQueued | DeleteQueued | BlockAction


class Link(Enum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class Registration(Enum):
    UNKNOWN = "Unknown"
    PENDING = "Pending"
    REJECTED = "Rejected"
    ACCEPTED = "Accepted"


class _Source(Enum):
    BOOT = "boot"
    VOLATILE = "volatile"
    QUEUE = "queue"


@dataclass(frozen=True)
class _Outgoing:
    """A volatile CALL waiting for its turn."""

    action: str
    payload: JsonObject
    requested_by_csms: bool = False
    on_result: OnResult | None = None
    on_failure: OnFailure | None = None


@dataclass(frozen=True)
class _InFlight:
    unique_id: str
    action: str
    source: _Source
    sent_at: float
    deadline: float
    #: the durable message this CALL carries (source QUEUE)
    message: QueuedMessage | None = None
    on_result: OnResult | None = None
    on_failure: OnFailure | None = None


def _tx_event_summary(message: QueuedMessage) -> str:
    """`` (Started seqNo 0 of transaction …)`` for a TransactionEvent, else ``""``."""
    if message.action != "TransactionEvent":
        return ""
    payload = message.payload
    return (
        f" ({payload['eventType']} seqNo {payload['seqNo']}"
        f" of transaction {payload['transactionInfo']['transactionId']})"
    )


StoredState = Mapping[str, Mapping[str, Any]]
#: A block's current status of a long-running process, as a status notification
#: reports it: (status, requestId), e.g. ("Idle", None) (F06 TriggerMessage).
StatusSource = Callable[[], tuple[str, int | None]]


class _CoreOutbox:
    """The core as its functional blocks see it (:class:`~chargepoint.ocpp.outbox.Outbox`)."""

    def __init__(self, station: OcppStation) -> None:
        self._station = station

    @property
    def model(self) -> DeviceModel:
        return self._station.model

    @property
    def version(self) -> ProtocolVersion:
        return self._station.version

    @property
    def connected(self) -> bool:
        return self._station.link is Link.CONNECTED

    @property
    def accepted(self) -> bool:
        return self._station.registration is Registration.ACCEPTED

    @property
    def online(self) -> bool:
        return self._station._online()

    @property
    def utc_offset_s(self) -> float:
        return self._station.utc_offset_s

    def utc_now(self, now: float) -> str:
        return self._station.utc_now(now)

    def new_id(self) -> str:
        return self._station._new_id()

    def next_event_id(self) -> int:
        return self._station._next_event_id()

    def emit(self, action: BlockAction) -> None:
        self._station._actions.append(action)

    def update(self, component: ComponentKey, variable: VariableKey, value: str) -> None:
        self._station._update(component, variable, value)

    def send(
        self,
        action: str,
        payload: JsonObject,
        *,
        requested_by_csms: bool = False,
        on_result: OnResult | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        self._station._volatile.append(
            _Outgoing(action, payload, requested_by_csms, on_result, on_failure)
        )

    def enqueue(
        self,
        action: str,
        payload: JsonObject,
        kind: MessageKind | None,
        *,
        requested_by_csms: bool = False,
    ) -> None:
        self._station._enqueue(action, payload, kind, requested_by_csms=requested_by_csms)

    def queued(self, *, in_flight: bool = True) -> tuple[QueuedMessage, ...]:
        return self._station._queued(in_flight=in_flight)

    def reconnect(self, reason: str) -> None:
        self._station._reconnect_reason = reason


class OcppStation:
    """Sans-I/O OCPP 2.0.1/2.1 charging station."""

    def __init__(
        self,
        *,
        identity: StationIdentity,
        model: DeviceModel,
        schemas: Schemas,
        rng: RandomSource,
        new_id: Callable[[], str],
        utc_offset_s: float,
        queued: tuple[QueuedMessage, ...] = (),
        stored_state: StoredState | None = None,
        queue_capacity: int = 1000,
        certificates: CertificateStore | None = None,
    ) -> None:
        self.identity = identity
        self.model = model
        self._schemas = schemas
        self._new_id = new_id
        #: UTC epoch seconds = monotonic ``now`` + this; corrected from the CSMS clock.
        self.utc_offset_s = utc_offset_s
        self._backoff = ReconnectBackOff(rng)
        self._queue = MessageQueue(queued, queue_capacity)
        state = stored_state or {}
        self._actions: list[Action] = []
        # NotifyEvent ids: continue after the block reserved by the previous run
        reserved = (state.get(EVENT_IDS_STATE) or {}).get("reserved", 0)
        valid = isinstance(reserved, int) and 0 <= reserved <= MAX_EVENT_ID
        self._event_seq = reserved if valid else 0
        self._event_reserved = self._event_seq
        #: volatile CALLs waiting for their turn (lost with the connection)
        self._volatile: deque[_Outgoing] = deque()
        self._inflight: _InFlight | None = None
        self.link = Link.OFFLINE
        self.registration = Registration.UNKNOWN
        self.version = ProtocolVersion.V201
        self._connect_due: float | None = None
        self._boot_due: float | None = None
        self._last_exchange = 0.0
        #: set when the link must be re-established once our CALL is answered
        self._reconnect_reason: str | None = None
        #: B11/B12: the reason stored by a CSMS Reset (RemoteReset) for this boot
        self._stored_boot_reason: str | None = (state.get(BOOT_STATE) or {}).get("reason")
        self._network = NetworkProfiles(
            configured_profile=model.int_value(dm.SECURITY, dm.SECURITY_PROFILE),
            priority=model.list_value(dm.OCPP_COMM, dm.NETWORK_CONFIGURATION_PRIORITY),
            persisted=state.get("network"),
        )
        # Appendix 3: the SupplyPhases each EVSE's rating gives (not persisted).
        for name, evse_id, connector_id, variable, value in rating_values(
            identity.evse_connectors, identity.evse_ratings
        ):
            component = ComponentKey(name, evse_id=evse_id, connector_id=connector_id)
            self._update(component, VariableKey(variable), value)
        # ------------------------------------------------- functional blocks
        outbox = _CoreOutbox(self)
        evse_connectors = identity.evse_connectors
        self._security = SecurityBlock(outbox, certificates or NoCertificates())
        self._authorization = AuthorizationBlock(
            outbox,
            cache_state=state.get("auth_cache"),
            local_list_state=state.get("local_list"),
        )
        self._transactions = TransactionsBlock(
            outbox,
            evse_connectors=evse_connectors,
            authorization=self._authorization,
            stored=state.get("transactions"),
        )
        self._availability = AvailabilityBlock(
            outbox,
            evse_connectors=evse_connectors,
            transactions=self._transactions,
            stored=state.get("availability"),
        )
        smart_charging = SmartChargingBlock(
            outbox,
            evse_ratings={
                evse: identity.evse_ratings.get(evse, EvseRating()) for evse in evse_connectors
            },
            transactions=self._transactions,
            stored=state.get("charging_profiles"),
        )
        provisioning = ProvisioningBlock(
            outbox,
            evse_connectors=evse_connectors,
            network=self._network,
            security=self._security,
            transactions=self._transactions,
        )
        self._firmware = FirmwareBlock(
            outbox,
            signing=identity.firmware_signing,
            transactions=self._transactions,
            availability=self._availability,
            security=self._security,
            running_version=identity.firmware_version,
            stored=state.get("firmware"),
        )
        self._diagnostics = DiagnosticsBlock(outbox, customers=self._authorization)
        monitoring = MonitoringBlock(
            outbox, transactions=self._transactions, stored=state.get(MONITORING_STATE)
        )
        #: every block, in the order their hooks run
        self._blocks: tuple[Block, ...] = (
            provisioning,
            self._authorization,
            self._availability,
            self._transactions,
            self._security,
            smart_charging,  # after transactions: it reads the transactions they keep
            self._firmware,
            monitoring,  # after the blocks that change variables in their on_clock
            self._diagnostics,  # last: it records the security events queued before it
        )
        # ---------------------------------------------------- dispatch table
        self._handlers: dict[str, Handler] = {
            "TriggerMessage": self._on_trigger_message,
            "DataTransfer": self._on_data_transfer,
        }
        for block in self._blocks:
            for action, handler in block.handlers().items():
                if action in self._handlers:
                    raise LocalProtocolError(f"two handlers for {action}")
                self._handlers[action] = handler
        #: F06: TriggerMessage of a status notification asks the block running that
        #: process for (status, requestId); a message not listed here reports Idle.
        self._status_sources: dict[str, StatusSource] = {
            "FirmwareStatusNotification": self._firmware.firmware_status,
            "LogStatusNotification": self._diagnostics.log_status,
        }

    # ============================================================== outputs
    def actions(self) -> list[Action]:
        """Drain the actions produced so far; perform them in this order."""
        out, self._actions = self._actions, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called next (``None``: only on input)."""
        candidates: list[float] = []
        if self.link is Link.OFFLINE and self._connect_due is not None:
            candidates.append(self._connect_due)
        if self.link is Link.CONNECTED:
            if self._inflight is not None:
                candidates.append(self._inflight.deadline)
            else:
                if self.registration is not Registration.ACCEPTED and self._boot_due is not None:
                    candidates.append(self._boot_due)
                if self.registration is Registration.ACCEPTED:
                    retry_at = self._queue.next_deadline()
                    if retry_at is not None:
                        candidates.append(retry_at)
            heartbeat_at = self._heartbeat_due()
            if heartbeat_at is not None:
                candidates.append(heartbeat_at)
        for block in self._blocks:
            due = block.next_deadline()
            if due is not None:
                candidates.append(due)
        return min(candidates) if candidates else None

    def utc_now(self, now: float) -> str:
        return format_timestamp(now + self.utc_offset_s)

    def _next_event_id(self) -> int:
        """Ids are reserved in blocks in the state file, so a restart never reuses one
        without a write per event."""
        seq = self._event_seq + 1
        if seq > MAX_EVENT_ID:
            seq, self._event_reserved = 1, 0
        self._event_seq = seq
        if seq > self._event_reserved:
            self._event_reserved = min(seq + EVENT_ID_BLOCK, MAX_EVENT_ID)
            self._actions.append(StoreState(EVENT_IDS_STATE, {"reserved": self._event_reserved}))
        return seq

    @property
    def queued_messages(self) -> tuple[QueuedMessage, ...]:
        return self._queue.messages()

    # ======================================================= connection input
    def start(self, now: float) -> None:
        """Power-up: connect right away."""
        self._connect_due = now
        if self._stored_boot_reason is not None:
            self._actions.append(StoreState(BOOT_STATE, {}))  # used by this boot only
        # G03.FR.08 / G04.FR.09: Inoperative set by the CSMS survives the restart.
        self._availability.restore(now)
        self._on_clock(now)
        self.handle_timer(now)

    def connection_opened(self, now: float, version: ProtocolVersion) -> None:
        self.link = Link.CONNECTED
        self.version = version
        self._backoff.reset()
        self._last_exchange = now
        profile = self._network.current()
        before = self.model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        if self._network.connected():
            self._actions.append(StoreState("network", self._network.snapshot()))
        if profile.security_profile != before:
            # A05: the security profile in use changed; SecurityProfile reports it.
            self._update(dm.SECURITY, dm.SECURITY_PROFILE, str(profile.security_profile))
            self._security.security_event(
                now,
                "ReconfigurationOfSecurityParameters",
                f"security profile {before} -> {profile.security_profile} "
                f"(configuration slot {profile.slot})",
            )
        if self.registration is Registration.ACCEPTED:
            # B01: BootNotification once per boot, not after a mere reconnect;
            # report the connector states that changed while offline.
            self._availability.resync_status(now)
        elif self._boot_due is None:
            self._boot_due = now  # B01: BootNotification first
        self._pump(now)

    def connection_failed(self, now: float, reason: str, security_event: str | None = None) -> None:
        """``security_event``: a SecurityEventNotification type to report once
        connected (e.g. InvalidCsmsCertificate, InvalidTLSVersion; A00)."""
        logger.info("connection attempt failed: %s", reason)
        if security_event is not None:
            self.security_event(now, security_event, reason)
        attempts = self.model.int_value(dm.OCPP_COMM, dm.NETWORK_PROFILE_CONNECTION_ATTEMPTS)
        following = self._network.failed(attempts)
        if following is not None:
            # B10/A05: after NetworkProfileConnectionAttempts failures, the next slot.
            logger.warning(
                "moving on to configuration slot %d (security profile %d)",
                following.slot,
                following.security_profile,
            )
        self._go_offline(now)

    def connection_lost(self, now: float, reason: str) -> None:
        logger.info("connection lost: %s", reason)
        self._go_offline(now)

    def _reconnect(self, now: float, reason: str) -> None:
        """Close on purpose and connect again at once, without back-off."""
        logger.info("reconnecting: %s", reason)
        self._actions.append(CloseConnection(reason))
        self._go_offline(now, deliberate=True)

    def _go_offline(self, now: float, *, deliberate: bool = False) -> None:
        """The link is down: keep what must survive, schedule the next attempt."""
        self.link = Link.OFFLINE
        inflight, self._inflight = self._inflight, None
        if inflight is not None and inflight.source is _Source.BOOT:
            self._boot_due = None  # resent first thing on the next connection
        # A queued message in flight stays at the head with its attempt count:
        # losing the connection is not a failure of the CSMS to process it.
        # Volatile CALLs are lost; their senders hear of it (C12/C15: an Authorize
        # is decided without the CSMS).
        failures = [o.on_failure for o in self._volatile if o.on_failure is not None]
        if inflight is not None and inflight.on_failure is not None:
            failures.append(inflight.on_failure)
        self._volatile.clear()
        for on_failure in failures:
            on_failure(now)
        if deliberate:
            self._backoff.reset()
            self._connect_due = now
            return
        delay = self._backoff.next_delay(self._backoff_policy())
        self._connect_due = now + delay
        logger.info("reconnecting in %.1f s", delay)

    def _backoff_policy(self) -> BackOffPolicy:
        m = self.model
        return BackOffPolicy(
            wait_minimum_s=m.int_value(dm.OCPP_COMM, dm.RETRY_WAIT_MINIMUM),
            random_range_s=m.int_value(dm.OCPP_COMM, dm.RETRY_RANDOM_RANGE),
            repeat_times=m.int_value(dm.OCPP_COMM, dm.RETRY_REPEAT_TIMES),
        )

    # ============================================================ timer input
    def handle_timer(self, now: float) -> None:
        self._on_clock(now)
        if self.link is Link.OFFLINE and self._connect_due is not None and now >= self._connect_due:
            self._connect_due = None
            self.link = Link.CONNECTING
            slot = self._network.current()
            password = self.model.value(dm.SECURITY, dm.BASIC_AUTH_PASSWORD)
            self._actions.append(
                OpenConnection(
                    # A00: Basic auth with profiles 1 and 2; profile 3 uses the client cert.
                    basic_auth_password=password if slot.security_profile in (1, 2) else None,
                    security_profile=slot.security_profile,
                    ping_interval_s=self.model.int_value(dm.OCPP_COMM, dm.WEBSOCKET_PING_INTERVAL),
                    csms_url=slot.csms_url,
                    configuration_slot=slot.slot,
                )
            )
            return
        if self.link is not Link.CONNECTED:
            return
        if self._inflight is not None and now >= self._inflight.deadline:
            inflight, self._inflight = self._inflight, None
            logger.warning(
                "no answer to %s %s within MessageTimeout", inflight.action, inflight.unique_id
            )
            self._call_failed(inflight, now)
        heartbeat_at = self._heartbeat_due()
        if heartbeat_at is not None and now >= heartbeat_at:
            self._volatile.append(_Outgoing("Heartbeat", {}))
        for block in self._blocks:
            block.handle_timer(now)
        self._pump(now)

    def _heartbeat_due(self) -> float | None:
        """G02: a Heartbeat after HeartbeatInterval without any OCPP exchange."""
        if self.link is not Link.CONNECTED or self.registration is not Registration.ACCEPTED:
            return None
        if any(o.action == "Heartbeat" for o in self._volatile):
            return None
        if self._inflight is not None and self._inflight.action == "Heartbeat":
            return None
        interval = self.model.int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL)
        return self._last_exchange + interval

    def _on_clock(self, now: float) -> None:
        """Every input: the blocks act on what is due by the (UTC) clock."""
        for block in self._blocks:
            block.on_clock(now)

    # ============================================================ frame input
    def receive_frame(self, now: float, text: str) -> None:
        frame = parse_frame(text, self.version)
        self._last_exchange = now
        match frame:
            case MalformedFrame(reason=reason, reply=reply):
                logger.warning("malformed frame from CSMS (%s): %.200s", reason, text)
                if reply is not None:
                    self._send(reply, f"CALLERROR {reply.error_code}")
            case Call():
                self._handle_call(frame, now, len(text.encode()))
            case CallResult() | CallError():
                self._handle_response(frame, now)
            case Send(action=action):
                logger.debug("<- SEND %s ignored: no SEND action is supported", action)
            case CallResultError(unique_id=unique_id, error_code=code):
                logger.warning("CSMS could not process our CALLRESULT %s: %s", unique_id, code)
        self._on_clock(now)  # e.g. AlignedDataCtrlr.Interval may have been set
        self._pump(now)

    def _handle_call(self, call: Call, now: float, size: int) -> None:
        logger.debug("<- CALL %s %s", call.action, call.unique_id)
        if call.action not in self._schemas.known_actions(self.version):
            # OCPP-J §4.3: NotImplemented = the action is not known by the receiver.
            self._reply_error(call, ErrorCode.NOT_IMPLEMENTED, f"unknown action {call.action}")
            return
        if self._refused_before_accepted(call):
            return
        handler = self._handlers.get(call.action)
        if handler is None:
            # OCPP-J §4.3: NotSupported = the action is known but not supported.
            self._reply_error(call, ErrorCode.NOT_SUPPORTED, f"{call.action} not supported")
            return
        problem = self._schemas.check(self.version, call.action, call.payload, request=True)
        if problem is not None:
            self._reply_error(call, problem.code, problem.description)
            return
        outcome = handler(call, now, size)
        if isinstance(outcome, CallError):
            self._send(outcome, f"CALLERROR {call.action} {outcome.error_code}")
            return
        mistake = self._schemas.check(self.version, call.action, outcome, request=False, own=True)
        if mistake is not None:
            logger.error("our %s response breaks the schema: %s", call.action, mistake.description)
            self._reply_error(call, ErrorCode.INTERNAL_ERROR, "response failed validation")
            return
        self._send(CallResult(call.unique_id, outcome), f"CALLRESULT {call.action}")

    def _refused_before_accepted(self, call: Call) -> bool:
        """B02/B03: what the CSMS may ask before it accepted the station; anything
        else gets its answer here (True)."""
        if self.registration is Registration.REJECTED:
            # B03.FR.08: SecurityError; only TriggerMessage BootNotification passes (the
            # CSMS may have the station retry before the interval, TC_B_31).
            if (
                call.action == "TriggerMessage"
                and call.payload.get("requestedMessage") == "BootNotification"
            ):
                return False
        elif self.registration is Registration.PENDING:
            if call.action in _ALLOWED_WHILE_PENDING:
                return False
            if call.action in ("RequestStartTransaction", "RequestStopTransaction"):
                # B02.FR.05: no remote start or stop before Accepted.
                answer = CallResult(call.unique_id, {"status": "Rejected"})
                self._send(answer, f"CALLRESULT {call.action}")
                return True
        else:
            return False
        status = self.registration.value
        logger.warning("refusing %s while %s", call.action, status)
        self._reply_error(call, ErrorCode.SECURITY_ERROR, f"{call.action} refused while {status}")
        return True

    def _reply_error(self, call: Call, code: ErrorCode, description: str) -> None:
        self._send(
            CallError(call.unique_id, code.value, description[:255]),
            f"CALLERROR {call.action} {code.value}",
        )

    def _handle_response(self, frame: CallResult | CallError, now: float) -> None:
        inflight = self._inflight
        if inflight is None or frame.unique_id != inflight.unique_id:
            logger.warning("ignoring an answer to unknown message id %r", frame.unique_id)
            return
        self._inflight = None
        if isinstance(frame, CallError):
            logger.warning(
                "<- CALLERROR %s %s: %s %s",
                inflight.action,
                frame.unique_id,
                frame.error_code,
                frame.description,
            )
            self._call_failed(inflight, now)
            return
        logger.debug("<- CALLRESULT %s %s", inflight.action, frame.unique_id)
        problem = self._schemas.check(self.version, inflight.action, frame.payload, request=False)
        if problem is not None:
            logger.warning("CSMS answer to %s is invalid: %s", inflight.action, problem.description)
            self._call_failed(inflight, now)
            return
        if inflight.message is not None:
            for block in self._blocks:
                block.on_queued_result(inflight.message, frame.payload, now)
            self._queue.acknowledge(inflight.message.seq)
            self._actions.append(DeleteQueued(inflight.message.seq))
        if inflight.action == "BootNotification":
            self._on_boot_response(frame.payload, inflight, now)
        elif inflight.action == "Heartbeat":
            self._sync_clock(frame.payload["currentTime"], inflight.sent_at, now)
        elif inflight.on_result is not None:
            inflight.on_result(frame.payload, now)

    def _call_failed(self, inflight: _InFlight, now: float) -> None:
        if inflight.source is _Source.BOOT:
            self._boot_due = now + BOOT_RETRY_DEFAULT_S
        elif inflight.message is not None:
            seq = inflight.message.seq
            policy = RetryPolicy(
                attempts=self.model.int_value(dm.OCPP_COMM, dm.MESSAGE_ATTEMPTS_TX),
                interval_s=self.model.int_value(dm.OCPP_COMM, dm.MESSAGE_ATTEMPT_INTERVAL_TX),
            )
            result = self._queue.failed(seq, now, policy)
            if isinstance(result, GaveUp):
                # E13.FR.04: discarded after the last attempt, Started and Ended too, so
                # that a message the CSMS keeps refusing cannot block every later one.
                # Later events keep their seqNo: the gap shows the CSMS what it missed.
                logger.error(
                    "giving up on %s #%d%s after %d attempts",
                    inflight.action,
                    seq,
                    _tx_event_summary(result.message),
                    result.message.attempts,
                )
                self._actions.append(DeleteQueued(seq))
            else:
                self._actions.append(StoreQueued(result.message))
        elif inflight.on_failure is not None:
            inflight.on_failure(now)  # e.g. an Authorize: the offline policy decides
        else:
            logger.warning("dropping %s: the CSMS did not process it", inflight.action)

    # ================================================== registration and clock
    def _boot_payload(self) -> JsonObject:
        station: JsonObject = {
            "model": self.identity.model,
            "vendorName": self.identity.vendor_name,
        }
        if self.identity.serial_number:
            station["serialNumber"] = self.identity.serial_number
        if self.identity.firmware_version:
            station["firmwareVersion"] = self.identity.firmware_version
        # L01: the first boot after a firmware install says so.
        reason = (
            self._firmware.boot_reason() or self._stored_boot_reason or self.identity.boot_reason
        )
        return {"chargingStation": station, "reason": reason}

    def _on_boot_response(self, payload: JsonObject, inflight: _InFlight, now: float) -> None:
        status = Registration(payload["status"])
        interval = int(payload["interval"])
        if not 0 <= interval <= MAX_INTERVAL_S:  # valid JSON, no sane interval (10**400 s)
            clamped = min(max(interval, 0), MAX_INTERVAL_S)
            logger.warning(
                "BootNotification interval %.20s... s out of range; using %d s",
                str(interval),
                clamped,
            )
            interval = clamped
        self._sync_clock(payload["currentTime"], inflight.sent_at, now)
        logger.info("BootNotification %s (interval %d s)", status.value, interval)
        self.registration = status
        if status is Registration.ACCEPTED:
            self._boot_due = None
            if interval > 0:
                # B01: the interval of an Accepted answer is the heartbeat interval.
                self._update(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL, str(interval))
            self._availability.resync_status(now, everything=True)
        else:
            # B02/B03: retry BootNotification after the interval, not earlier.
            self._boot_due = now + (interval if interval > 0 else BOOT_RETRY_DEFAULT_S)

    def _sync_clock(self, current_time: str, sent_at: float, now: float) -> None:
        """Take the CSMS clock, assuming the answer was produced half-way."""
        try:
            csms_epoch = parse_timestamp(current_time)
        except RemoteProtocolError as exc:
            logger.warning("clock not synchronised: %s", exc)
            return
        self.utc_offset_s = csms_epoch - (sent_at + now) / 2

    def _update(self, component: ComponentKey, variable: VariableKey, value: str) -> None:
        persist = self.model.update(component, variable, value)
        if persist is not None:
            self._actions.append(StoreVariable(*persist))

    # ================================================================ sending
    def _send(self, frame: Frame, summary: str) -> None:
        logger.debug("-> %s %s", summary, frame.unique_id)
        self._actions.append(SendFrame(encode_frame(frame), summary))

    def _may_send(self, outgoing: _Outgoing) -> bool:
        if self.registration is Registration.ACCEPTED:
            return True
        # B02: while Pending only what the CSMS asked for.
        return self.registration is Registration.PENDING and outgoing.requested_by_csms

    def _pump(self, now: float) -> None:
        """Send the next CALL if none is outstanding and one may go."""
        if self.link is not Link.CONNECTED or self._inflight is not None:
            return
        if self._reconnect_reason is not None:
            reason, self._reconnect_reason = self._reconnect_reason, None
            self._reconnect(now, reason)
            return
        if (
            self.registration is not Registration.ACCEPTED
            and self._boot_due is not None
            and now >= self._boot_due
        ):
            self._boot_due = None
            self._call("BootNotification", self._boot_payload(), _Source.BOOT, now)
            return
        for outgoing in self._volatile:
            if self._may_send(outgoing):
                self._volatile.remove(outgoing)
                self._call(
                    outgoing.action,
                    outgoing.payload,
                    _Source.VOLATILE,
                    now,
                    on_result=outgoing.on_result,
                    on_failure=outgoing.on_failure,
                )
                return
        if self.registration is Registration.ACCEPTED:
            head = self._queue.ready(now)
            if head is not None:
                self._call(head.action, head.payload, _Source.QUEUE, now, message=head)

    def _call(
        self,
        action: str,
        payload: JsonObject,
        source: _Source,
        now: float,
        *,
        message: QueuedMessage | None = None,
        on_result: OnResult | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        problem = self._schemas.check(self.version, action, payload, request=True, own=True)
        if problem is not None:
            # Our own bug: never put an invalid message on the wire.
            logger.error("not sending invalid %s: %s", action, problem.description)
            if message is not None:
                self._queue.acknowledge(message.seq)
                self._actions.append(DeleteQueued(message.seq))
            if on_failure is not None:
                on_failure(now)
            self._pump(now)
            return
        unique_id = self._new_id()
        timeout = self.model.int_value(dm.OCPP_COMM, dm.MESSAGE_TIMEOUT)
        self._inflight = _InFlight(
            unique_id, action, source, now, now + timeout, message, on_result, on_failure
        )
        self._last_exchange = now
        self._send(Call(unique_id, action, payload), f"CALL {action}")

    def _enqueue(
        self,
        action: str,
        payload: JsonObject,
        kind: MessageKind | None,
        *,
        requested_by_csms: bool = False,
    ) -> None:
        """Queue a message: durable when ``kind`` is given (or QueueAllMessages)."""
        # Answers to CSMS requests (reports, triggered messages) are never made
        # durable: they are meaningless after a reboot and must flow while Pending.
        if (
            kind is None
            and not requested_by_csms
            and self.model.bool_value(dm.OCPP_COMM, dm.QUEUE_ALL_MESSAGES)
        ):
            kind = MessageKind.OTHER
        if kind is None:
            self._volatile.append(_Outgoing(action, payload, requested_by_csms))
            return
        message, dropped = self._queue.push(action, payload, kind)
        for victim in dropped:
            logger.warning("queue full: dropped %s #%d", victim.action, victim.seq)
            self._actions.append(DeleteQueued(victim.seq))
        if self._queue.overflowing:
            logger.error(
                "queue holds %d messages, over its bound, all transaction Started/Ended events",
                len(self._queue),
            )
        self._actions.append(StoreQueued(message))  # written before it is sent

    def _queued(self, *, in_flight: bool) -> tuple[QueuedMessage, ...]:
        messages = self._queue.messages()
        if not in_flight and self._inflight is not None and self._inflight.source is _Source.QUEUE:
            messages = messages[1:]  # the head is on its way
        return messages

    def _online(self) -> bool:
        """Connected and Accepted: station-initiated messages may go out now."""
        return self.link is Link.CONNECTED and self.registration is Registration.ACCEPTED

    # ========================================================= station input
    def station_event(self, now: float, event: StationEvent) -> None:
        for block in self._blocks:
            block.on_event(event, now)
        self._on_clock(now)
        self._pump(now)

    def security_event(self, now: float, kind: str, tech_info: str = "") -> None:
        """A04: queue a SecurityEventNotification (sent once connected and Accepted)."""
        self._security.security_event(now, kind, tech_info)

    def authorize(self, now: float, token: IdToken) -> int:
        """C01: authorize ``token``; the answer comes as :class:`AuthorizationDone`
        with the returned ``ref`` (possibly among the actions of this very call)."""
        ref = self._authorization.authorize(now, token)
        self._pump(now)
        return ref

    # ==================================================== core CALL handlers
    def _on_trigger_message(self, call: Call, now: float, size: int) -> JsonObject:
        """F06: the station's own messages here; the blocks' through their methods."""
        requested = call.payload["requestedMessage"]
        evse = call.payload.get("evse") or {}
        evse_id = evse.get("id")
        if requested == "BootNotification":
            if self.registration is Registration.ACCEPTED:
                # F06: a BootNotification after Accepted is refused.
                return {"status": "Rejected"}
            self._boot_due = now
        elif requested == "Heartbeat":
            self._volatile.append(_Outgoing("Heartbeat", {}, requested_by_csms=True))
        elif requested == "StatusNotification":
            connector_id = evse.get("connectorId")
            if not self._availability.trigger_status_notification(evse_id, connector_id, now):
                return {"status": "Rejected"}
        elif requested == "TransactionEvent":
            # F06 (TC_F_13/TC_F_14): that EVSE's transaction, or every EVSE's one.
            if not self._transactions.trigger_transaction_event(evse_id, now):
                return {"status": "Rejected"}
        elif requested == "MeterValues":
            # F06 (TC_F_11/TC_F_12): that EVSE's latest values, or every EVSE's.
            if not self._transactions.trigger_meter_values(evse_id, now):
                return {"status": "Rejected"}
        elif requested in ("FirmwareStatusNotification", "LogStatusNotification"):
            # F06 (TC_F_18/TC_F_15): Idle while no update / upload runs.
            source = self._status_sources.get(requested)
            status, request_id = source() if source is not None else ("Idle", None)
            payload: JsonObject = {"status": status}
            if request_id is not None:
                payload["requestId"] = request_id
            self._volatile.append(_Outgoing(requested, payload, requested_by_csms=True))
        elif requested in ("SignChargingStationCertificate", "SignV2GCertificate"):
            if not self._security.trigger_signing(requested):
                return {"status": "Rejected"}
        else:
            return {"status": "NotImplemented"}
        # F06: the answer goes out before the triggered message (ordering of actions).
        return {"status": "Accepted"}

    def _on_data_transfer(self, call: Call, now: float, size: int) -> JsonObject:
        # P01: no vendor extensions are implemented.
        return {"status": "UnknownVendorId"}
