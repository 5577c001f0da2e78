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
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from chargepoint.errors import RemoteProtocolError
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp import tx_points
from chargepoint.ocpp.authorization import (
    AuthCache,
    AuthorizationResult,
    LocalList,
    decide_locally,
)
from chargepoint.ocpp.backoff import BackOffPolicy, RandomSource, ReconnectBackOff
from chargepoint.ocpp.certificates import (
    CHARGING_STATION_CERTIFICATE,
    CSMS_ROOT,
    ROOT_USES_V21,
    ROOT_USES_V201,
    V2G_CERTIFICATE,
    V2G_CERTIFICATE_CHAIN,
    CertificateHash,
    CertificateStore,
    NoCertificates,
    Outcome,
)
from chargepoint.ocpp.device_model import (
    AttributeType,
    ComponentKey,
    DeviceModel,
    ReportBase,
    ValueKey,
    VariableKey,
)
from chargepoint.ocpp.network import NetworkProfiles
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
from chargepoint.ocpp.station_io import (
    ChargingState,
    ConnectorStatus,
    ConnectorStatusChanged,
    EvseActivity,
    FaultCleared,
    FaultRaised,
    IdToken,
    MeterSample,
    RemoteStart,
    RemoteStop,
    ResetKind,
    ResetRequested,
    SecurityEventOccurred,
    SessionEnded,
    SessionStarted,
    SetAvailability,
    StationCommand,
    StationEvent,
    UnlockConnector,
)
from chargepoint.ocpp.transactions import Transactions, sampled_values

logger = logging.getLogger(__name__)

#: Longest interval the CSMS may set (a week): anything longer is clamped, so that no
#: number from the network reaches the timers unbounded.
MAX_INTERVAL_S = 7 * 86_400
#: Wait before retrying a BootNotification the CSMS did not answer, or answered
#: with interval 0 (B02/B03 leave the choice to the station).
BOOT_RETRY_DEFAULT_S = 60.0


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


@dataclass(frozen=True)
class StoreVariable:
    key: ValueKey
    value: str


@dataclass(frozen=True)
class StoreState:
    """Persist a piece of core state (JSON-serialisable) under ``name``."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class DeliverCommand:
    command: StationCommand


@dataclass(frozen=True)
class AuthorizationDone:
    """The answer to :meth:`OcppStation.authorize` number ``ref``."""

    ref: int
    result: AuthorizationResult


Action = (
    OpenConnection
    | CloseConnection
    | SendFrame
    | StoreQueued
    | DeleteQueued
    | StoreVariable
    | StoreState
    | DeliverCommand
    | AuthorizationDone
)


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
    action: str
    payload: JsonObject
    requested_by_csms: bool = False
    #: the authorization this Authorize is for
    ref: int | None = None


@dataclass(frozen=True)
class _PendingAuthorization:
    token: IdToken
    #: F01/F02 with AuthorizeRemoteStart: what to deliver once the token is accepted
    remote_start: RemoteStart | None = None


@dataclass(frozen=True)
class _InFlight:
    unique_id: str
    action: str
    source: _Source
    sent_at: float
    deadline: float
    seq: int | None = None
    ref: int | None = None
    #: the certificate type of a SignCertificate
    certificate_use: str | None = None


@dataclass
class _TxTrack:
    """What the core knows of a running transaction beyond its seqNo (E01/E02/E06)."""

    #: the points (TX_POINTS values) met at some time during the transaction
    met: set[str]
    #: the chargingState last reported (None: not yet)
    state: ChargingState | None
    #: the idToken went out with one of the transaction's events
    token_sent: bool


def _tx_event_summary(message: QueuedMessage) -> str:
    """`` (Started seqNo 0 of transaction …)`` for a TransactionEvent, else ``""``."""
    if message.action != "TransactionEvent":
        return ""
    payload = message.payload
    return (
        f" ({payload['eventType']} seqNo {payload['seqNo']}"
        f" of transaction {payload['transactionInfo']['transactionId']})"
    )


#: Slack for float rounding between monotonic and UTC time at aligned instants.
_ALIGN_SLACK_S = 1e-3
#: At most this many clock-aligned samples (TxEndedInterval) go into one Ended event.
TX_ENDED_ALIGNED_MAX = 500


class _AlignedClock:
    """The next UTC instant that is a multiple of an interval (J01/J02)."""

    def __init__(self) -> None:
        self.due: float | None = None
        self._interval = 0

    def tick(self, utc: float, interval: int) -> float | None:
        """The aligned instant ``utc`` has reached since the last call, if any."""
        if interval <= 0:
            self.due = None
            return None
        due = self.due
        if due is None or interval != self._interval or due - utc > interval:
            # first use, a new Interval, or the clock was set back
            self._interval = interval
            self.due = float((math.floor(utc / interval) + 1) * interval)
            return None
        if utc + _ALIGN_SLACK_S < due:
            return None
        # The latest instant reached (after a forward clock jump, only that one).
        instant = float(math.floor((utc + _ALIGN_SLACK_S) / interval) * interval)
        self.due = instant + interval
        return instant


def format_timestamp(epoch_s: float) -> str:
    """RFC 3339 UTC with millisecond precision and ``Z`` (what strict CSMSs accept)."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp; a missing zone is taken as UTC.

    Raises :class:`RemoteProtocolError` for anything else: the package's schema
    validation does not check ``format: date-time``.
    """
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RemoteProtocolError(f"not an RFC 3339 timestamp: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


StoredState = Mapping[str, Mapping[str, Any]]


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
        self._transactions = Transactions(state.get("transactions"))
        self._actions: list[Action] = []
        self._outbox: deque[_Outgoing] = deque()
        self._inflight: _InFlight | None = None
        self.link = Link.OFFLINE
        self.registration = Registration.UNKNOWN
        self.version = ProtocolVersion.V201
        self._connect_due: float | None = None
        self._boot_due: float | None = None
        self._last_exchange = 0.0
        self._status: dict[tuple[int, int], ConnectorStatus] = {
            (evse, conn): ConnectorStatus.AVAILABLE
            for evse, count in identity.evse_connectors.items()
            for conn in range(1, count + 1)
        }
        self._reported: dict[tuple[int, int], ConnectorStatus] = {}
        self._last_sample: dict[int, MeterSample] = {}
        #: latest EvseActivity per EVSE, and the transactions it drives
        self._activity: dict[int, EvseActivity] = {}
        self._tx_track: dict[int, _TxTrack] = {}
        #: J01/J02: the next clock-aligned instant (UTC epoch s) and its Interval
        self._aligned = _AlignedClock()
        #: AlignedDataCtrlr.TxEndedInterval: samples kept for each transaction's Ended
        self._tx_ended_clock = _AlignedClock()
        self._tx_ended_values: dict[int, list[JsonObject]] = {}
        #: set when the link must be re-established once our CALL is answered
        self._reconnect_reason: str | None = None
        self._event_seq = 0
        self._certs: CertificateStore = certificates or NoCertificates()
        self._auth_cache = AuthCache(state.get("auth_cache"))
        self._local_list = LocalList(state.get("local_list"))
        self._authorizations: dict[int, _PendingAuthorization] = {}
        self._next_ref = 1
        #: certificate use -> (when to ask again, attempts so far) while a CSR is open
        self._signing: dict[str, tuple[float | None, int]] = {}
        self._update(dm.LOCAL_AUTH_LIST, dm.ENTRIES, str(len(self._local_list)))
        self._network = NetworkProfiles(
            configured_profile=model.int_value(dm.SECURITY, dm.SECURITY_PROFILE),
            priority=model.list_value(dm.OCPP_COMM, dm.NETWORK_CONFIGURATION_PRIORITY),
            persisted=state.get("network"),
        )
        self._refresh_certificate_entries()
        self._handlers: dict[str, Callable[[Call, float, int], JsonObject | CallError]] = {
            "GetVariables": self._on_get_variables,
            "SetVariables": self._on_set_variables,
            "GetBaseReport": self._on_get_base_report,
            "Reset": self._on_reset,
            "ChangeAvailability": self._on_change_availability,
            "TriggerMessage": self._on_trigger_message,
            "DataTransfer": self._on_data_transfer,
            "ClearCache": self._on_clear_cache,
            "RequestStartTransaction": self._on_request_start,
            "RequestStopTransaction": self._on_request_stop,
            "UnlockConnector": self._on_unlock_connector,
            "InstallCertificate": self._on_install_certificate,
            "GetInstalledCertificateIds": self._on_get_installed_certificate_ids,
            "DeleteCertificate": self._on_delete_certificate,
            "CertificateSigned": self._on_certificate_signed,
            "SetNetworkProfile": self._on_set_network_profile,
            "SendLocalList": self._on_send_local_list,
            "GetLocalListVersion": self._on_get_local_list_version,
            "GetTransactionStatus": self._on_get_transaction_status,
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
            candidates += [due for due, _ in self._signing.values() if due is not None]
        for clock in (self._aligned, self._tx_ended_clock):
            if clock.due is not None:
                candidates.append(clock.due - self.utc_offset_s)
        return min(candidates) if candidates else None

    def utc_now(self, now: float) -> str:
        return format_timestamp(now + self.utc_offset_s)

    @property
    def queued_messages(self) -> tuple[QueuedMessage, ...]:
        return self._queue.messages()

    # ======================================================= connection input
    def start(self, now: float) -> None:
        """Power-up: connect right away."""
        self._connect_due = now
        self._aligned_tick(now)
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
            self.security_event(
                now,
                "ReconfigurationOfSecurityParameters",
                f"security profile {before} -> {profile.security_profile} "
                f"(configuration slot {profile.slot})",
            )
        if self.registration is Registration.ACCEPTED:
            # B01: BootNotification once per boot, not after a mere reconnect;
            # report the connector states that changed while offline.
            self._resync_status(now)
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
        refs = [o.ref for o in self._outbox if o.ref is not None]
        if inflight is not None and inflight.ref is not None:
            refs.append(inflight.ref)
        self._outbox.clear()
        for ref in refs:
            self._authorize_offline(ref, now)  # C12/C15: decide without the CSMS
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
        self._aligned_tick(now)
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
            self._outbox.append(_Outgoing("Heartbeat", {}))
        self._retry_certificate_signing(now)
        self._pump(now)

    def _heartbeat_due(self) -> float | None:
        """G02: a Heartbeat after HeartbeatInterval without any OCPP exchange."""
        if self.link is not Link.CONNECTED or self.registration is not Registration.ACCEPTED:
            return None
        if any(o.action == "Heartbeat" for o in self._outbox):
            return None
        if self._inflight is not None and self._inflight.action == "Heartbeat":
            return None
        interval = self.model.int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL)
        return self._last_exchange + interval

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
        self._aligned_tick(now)  # AlignedDataCtrlr.Interval may have been set
        self._pump(now)

    def _handle_call(self, call: Call, now: float, size: int) -> None:
        logger.debug("<- CALL %s %s", call.action, call.unique_id)
        if call.action not in self._schemas.known_actions(self.version):
            # OCPP-J §4.3: NotImplemented = the action is not known by the receiver.
            self._reply_error(call, ErrorCode.NOT_IMPLEMENTED, f"unknown action {call.action}")
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
        if inflight.source is _Source.QUEUE and inflight.seq is not None:
            self._cache_from_transaction_event(inflight.seq, frame.payload, now)
            self._queue.acknowledge(inflight.seq)
            self._actions.append(DeleteQueued(inflight.seq))
        if inflight.action == "BootNotification":
            self._on_boot_response(frame.payload, inflight, now)
        elif inflight.action == "Heartbeat":
            self._sync_clock(frame.payload["currentTime"], inflight.sent_at, now)
        elif inflight.action == "Authorize" and inflight.ref is not None:
            self._on_authorize_response(inflight.ref, frame.payload, now)
        elif inflight.action == "SignCertificate" and inflight.certificate_use is not None:
            self._on_sign_certificate_response(inflight.certificate_use, frame.payload, now)

    def _call_failed(self, inflight: _InFlight, now: float) -> None:
        if inflight.source is _Source.BOOT:
            self._boot_due = now + BOOT_RETRY_DEFAULT_S
        elif inflight.source is _Source.QUEUE and inflight.seq is not None:
            policy = RetryPolicy(
                attempts=self.model.int_value(dm.OCPP_COMM, dm.MESSAGE_ATTEMPTS_TX),
                interval_s=self.model.int_value(dm.OCPP_COMM, dm.MESSAGE_ATTEMPT_INTERVAL_TX),
            )
            result = self._queue.failed(inflight.seq, now, policy)
            if isinstance(result, GaveUp):
                # E13.FR.04: discarded after the last attempt, Started and Ended too, so
                # that a message the CSMS keeps refusing cannot block every later one.
                # Later events keep their seqNo: the gap shows the CSMS what it missed.
                logger.error(
                    "giving up on %s #%d%s after %d attempts",
                    inflight.action,
                    inflight.seq,
                    _tx_event_summary(result.message),
                    result.message.attempts,
                )
                self._actions.append(DeleteQueued(inflight.seq))
            else:
                self._actions.append(StoreQueued(result.message))
        elif inflight.ref is not None:
            self._authorize_offline(inflight.ref, now)  # no answer: the offline policy
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
        return {"chargingStation": station, "reason": self.identity.boot_reason}

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
            self._resync_status(now, everything=True)
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
        for outgoing in self._outbox:
            if self._may_send(outgoing):
                self._outbox.remove(outgoing)
                self._call(
                    outgoing.action, outgoing.payload, _Source.VOLATILE, now, ref=outgoing.ref
                )
                return
        if self.registration is Registration.ACCEPTED:
            head = self._queue.ready(now)
            if head is not None:
                self._call(head.action, head.payload, _Source.QUEUE, now, head.seq)

    def _call(
        self,
        action: str,
        payload: JsonObject,
        source: _Source,
        now: float,
        seq: int | None = None,
        *,
        ref: int | None = None,
    ) -> None:
        problem = self._schemas.check(self.version, action, payload, request=True, own=True)
        if problem is not None:
            # Our own bug: never put an invalid message on the wire.
            logger.error("not sending invalid %s: %s", action, problem.description)
            if seq is not None:
                self._queue.acknowledge(seq)
                self._actions.append(DeleteQueued(seq))
            if ref is not None:
                self._authorize_offline(ref, now)
            self._pump(now)
            return
        unique_id = self._new_id()
        timeout = self.model.int_value(dm.OCPP_COMM, dm.MESSAGE_TIMEOUT)
        use = payload.get("certificateType") if action == "SignCertificate" else None
        self._inflight = _InFlight(unique_id, action, source, now, now + timeout, seq, ref, use)
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
            self._outbox.append(_Outgoing(action, payload, requested_by_csms))
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

    # ========================================================= station events
    def station_event(self, now: float, event: StationEvent) -> None:
        match event:
            case ConnectorStatusChanged():
                self._on_connector_status(event, now)
            case SessionStarted():
                self._on_session_started(event, now)
            case MeterSample():
                self._on_meter_sample(event, now)
            case SessionEnded():
                self._on_session_ended(event, now)
            case EvseActivity():
                self._on_activity(event, now)
            case FaultRaised() | FaultCleared():
                self._on_fault(event, now)
            case SecurityEventOccurred(kind=kind, tech_info=tech_info):
                self.security_event(now, kind, tech_info)
        self._aligned_tick(now)
        self._pump(now)

    def _online(self) -> bool:
        """Connected and Accepted: station-initiated messages may go out now."""
        return self.link is Link.CONNECTED and self.registration is Registration.ACCEPTED

    def _offline(self) -> bool:
        """E04: an event while there is no connection to the CSMS is marked offline."""
        return self.link is not Link.CONNECTED

    def _on_connector_status(self, event: ConnectorStatusChanged, now: float) -> None:
        key = (event.evse_id, event.connector_id)
        if key not in self._status:
            logger.error("runtime reported unknown connector %s: ignored", key)
            return
        changed = self._status[key] is not event.status
        self._status[key] = event.status
        connector = ComponentKey(
            "Connector", evse_id=event.evse_id, connector_id=event.connector_id
        )
        self._update(connector, dm.AVAILABILITY_STATE, event.status.value)
        if self._online():
            self._resync_status(now)
            if changed and self.version is ProtocolVersion.V21:
                # OCPP 2.1: StatusNotification is deprecated in favour of device-model
                # events; report the change both ways (Connector.AvailabilityState, Delta).
                self._event_seq += 1
                data: JsonObject = {
                    "eventId": self._event_seq,
                    "timestamp": self.utc_now(now),
                    "trigger": "Delta",
                    "actualValue": event.status.value,
                    "eventNotificationType": "HardWiredNotification",
                    "component": connector.to_json(),
                    "variable": dm.AVAILABILITY_STATE.to_json(),
                }
                self._enqueue(
                    "NotifyEvent",
                    {
                        "generatedAt": self.utc_now(now),
                        "seqNo": 0,
                        "tbc": False,
                        "eventData": [data],
                    },
                    None,
                )

    def _resync_status(self, now: float, *, everything: bool = False) -> None:
        """G01: a StatusNotification per connector whose state the CSMS does not know."""
        for (evse_id, connector_id), status in sorted(self._status.items()):
            if not everything and self._reported.get((evse_id, connector_id)) is status:
                continue
            self._reported[(evse_id, connector_id)] = status
            self._outbox.append(
                _Outgoing(
                    "StatusNotification",
                    {
                        "timestamp": self.utc_now(now),
                        "connectorStatus": status.value,
                        "evseId": evse_id,
                        "connectorId": connector_id,
                    },
                )
            )

    def _measurands(self, variable: VariableKey) -> tuple[str, ...]:
        return self.model.list_value(dm.SAMPLED_DATA, variable)

    def _store_transactions(self) -> None:
        self._actions.append(StoreState("transactions", self._transactions.snapshot()))

    def _on_session_started(self, event: SessionStarted, now: float) -> None:
        if self._transactions.on_evse(event.evse_id) is not None:
            logger.error("runtime started a second session on EVSE %d: ignored", event.evse_id)
            return
        self._last_sample[event.evse_id] = event.meter
        payload = self._transactions.started(
            event,
            transaction_id=self._new_id(),
            timestamp=self.utc_now(now),
            now=now,
            offline=self._offline(),
            measurands=self._measurands(dm.TX_STARTED_MEASURANDS),
        )
        self._tx_track[event.evse_id] = _TxTrack(set(), None, event.id_token is not None)
        self._tx_ended_values.pop(event.evse_id, None)
        self._store_transactions()
        self._enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    def _on_meter_sample(
        self, sample: MeterSample, now: float, trigger: str = "MeterValuePeriodic"
    ) -> None:
        payload = self._transactions.updated(
            sample,
            timestamp=self.utc_now(now),
            now=now,
            offline=self._offline(),
            interval_s=self.model.int_value(dm.SAMPLED_DATA, dm.TX_UPDATED_INTERVAL),
            measurands=self._measurands(dm.TX_UPDATED_MEASURANDS),
            trigger=trigger,
        )
        if payload is not None:
            self._store_transactions()
            self._enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)
        self._last_sample[sample.evse_id] = sample

    def _on_session_ended(self, event: SessionEnded, now: float) -> None:
        payload = self._transactions.ended(
            event,
            timestamp=self.utc_now(now),
            offline=self._offline(),
            measurands=self._measurands(dm.TX_ENDED_MEASURANDS),
            clock_values=self._tx_ended_values.pop(event.evse_id, None),
        )
        self._tx_track.pop(event.evse_id, None)
        if payload is None:
            if not event.interrupted:
                logger.warning("session ended on EVSE %d without a transaction", event.evse_id)
            return
        if event.interrupted:
            logger.warning(
                "EVSE %d: ending transaction left open by the previous run (%s)",
                event.evse_id,
                event.reason.value,
            )
        self._store_transactions()
        self._enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    # ------------------------------------------- TxStartPoint / TxStopPoint
    def _on_activity(self, event: EvseActivity, now: float) -> None:
        """E01/E06: start and end transactions by the configured points; E02:
        report charging-state changes and a late authorization while one runs."""
        if event.evse_id not in self.identity.evse_connectors:
            logger.error("runtime reported activity on unknown EVSE %d: ignored", event.evse_id)
            return
        previous = self._activity.get(event.evse_id)
        self._activity[event.evse_id] = event
        self._last_sample[event.evse_id] = event.meter
        before = tx_points.conditions(previous) if previous is not None else None
        current = tx_points.conditions(event)
        state = tx_points.charging_state(event)
        if self._transactions.on_evse(event.evse_id) is None:
            point = tx_points.start_point(
                self.model.list_value(dm.TX_CTRLR, dm.TX_START_POINT), before, current
            )
            if point is not None:
                self._start_by_point(event, point, state, now)
            return
        track = self._tx_track.get(event.evse_id)
        if track is None:  # a transaction restored from the store
            track = self._tx_track[event.evse_id] = _TxTrack(set(), None, False)
        decision = tx_points.stop_decision(
            self.model.list_value(dm.TX_CTRLR, dm.TX_STOP_POINT),
            track.met,
            before,
            current,
            event,
        )
        if decision is not None:
            logger.info(
                "EVSE %d: transaction ends (%s no longer met: %s)",
                event.evse_id,
                decision.point or "nothing",
                decision.reason.value,
            )
            payload = self._transactions.ended(
                SessionEnded(event.evse_id, decision.reason, event.meter),
                timestamp=self.utc_now(now),
                offline=self._offline(),
                measurands=self._measurands(dm.TX_ENDED_MEASURANDS),
                trigger=decision.trigger,
                charging_state=state if state is not track.state else None,
                clock_values=self._tx_ended_values.pop(event.evse_id, None),
            )
            del self._tx_track[event.evse_id]
            if payload is not None:
                self._store_transactions()
                self._enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)
            return
        track.met |= {p for p, held in current.items() if held}
        newly_authorized = event.authorized and (before is None or not before["Authorized"])
        trigger: str | None = None
        token = None
        remote_start_id = None
        if newly_authorized and not track.token_sent:
            # The idToken goes with the first event after the authorization.
            token = event.id_token
            remote_start_id = event.remote_start_id
            trigger = "RemoteStart" if remote_start_id is not None else "Authorized"
            track.token_sent = token is not None
        changed_state = state if state is not track.state else None
        if trigger is None and changed_state is not None:
            trigger = "ChargingStateChanged"
        if trigger is None:
            return
        track.state = state
        payload = self._transactions.changed(
            event.evse_id,
            trigger=trigger,
            timestamp=self.utc_now(now),
            offline=self._offline(),
            charging_state=changed_state,
            id_token=token,
            remote_start_id=remote_start_id,
        )
        if payload is not None:
            self._store_transactions()
            self._enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)

    def _start_by_point(
        self, event: EvseActivity, point: str, state: ChargingState, now: float
    ) -> None:
        token = event.id_token if event.authorized else None
        remote_start_id = event.remote_start_id if event.authorized else None
        logger.info("EVSE %d: transaction starts (%s)", event.evse_id, point)
        payload = self._transactions.started(
            SessionStarted(event.evse_id, event.connector_id, token, event.meter, remote_start_id),
            transaction_id=self._new_id(),
            timestamp=self.utc_now(now),
            now=now,
            offline=self._offline(),
            measurands=self._measurands(dm.TX_STARTED_MEASURANDS),
            trigger=tx_points.start_trigger(point, event),
            charging_state=state,
        )
        met = {p for p, held in tx_points.conditions(event).items() if held}
        self._tx_track[event.evse_id] = _TxTrack(met, state, token is not None)
        self._tx_ended_values.pop(event.evse_id, None)
        self._store_transactions()
        self._enqueue("TransactionEvent", payload, MessageKind.TX_BOUNDARY)

    # ------------------------------------------------ clock-aligned data (J01/J02)
    def _aligned_tick(self, now: float) -> None:
        """At each clock-aligned instant: aligned meter values (Interval) and the
        samples kept for Ended (TxEndedInterval)."""
        utc = now + self.utc_offset_s
        instant = self._aligned.tick(
            utc, self.model.int_value(dm.ALIGNED_DATA, dm.ALIGNED_INTERVAL)
        )
        if instant is not None:
            self._send_aligned(now, instant)
        instant = self._tx_ended_clock.tick(
            utc, self.model.int_value(dm.ALIGNED_DATA, dm.ALIGNED_TX_ENDED_INTERVAL)
        )
        if instant is not None:
            self._keep_tx_ended_values(instant)

    def _keep_tx_ended_values(self, instant: float) -> None:
        """J02: TxEndedMeasurands at each TxEndedInterval instant of a transaction,
        reported in its Ended event (context Sample.Clock)."""
        measurands = self.model.list_value(dm.ALIGNED_DATA, dm.ALIGNED_TX_ENDED_MEASURANDS)
        for evse_id in sorted(self.identity.evse_connectors):
            sample = self._last_sample.get(evse_id)
            if sample is None or self._transactions.on_evse(evse_id) is None:
                continue
            values = sampled_values(sample, "Sample.Clock", measurands)
            kept = self._tx_ended_values.setdefault(evse_id, [])
            if values and len(kept) < TX_ENDED_ALIGNED_MAX:
                kept.append({"timestamp": format_timestamp(instant), "sampledValue": values})

    def _send_aligned(self, now: float, instant: float) -> None:
        timestamp = format_timestamp(instant)
        measurands = self.model.list_value(dm.ALIGNED_DATA, dm.ALIGNED_MEASURANDS)
        for evse_id in sorted(self.identity.evse_connectors):
            sample = self._last_sample.get(evse_id)
            if sample is None:
                continue
            values = sampled_values(sample, "Sample.Clock", measurands)
            if not values:
                continue
            if self._transactions.on_evse(evse_id) is not None:
                # J02: within a transaction, an Updated event (MeterValueClock).
                payload = self._transactions.updated(
                    sample,
                    timestamp=timestamp,
                    now=now,
                    offline=self._offline(),
                    interval_s=0,
                    measurands=measurands,
                    trigger="MeterValueClock",
                )
                if payload is not None:
                    self._store_transactions()
                    self._enqueue("TransactionEvent", payload, MessageKind.TX_UPDATE)
                continue
            # J01: outside a transaction, MeterValues; not kept while offline
            # unless QueueAllMessages (then it is durable like other messages).
            if self._online() or self.model.bool_value(dm.OCPP_COMM, dm.QUEUE_ALL_MESSAGES):
                self._enqueue(
                    "MeterValues",
                    {
                        "evseId": evse_id,
                        "meterValue": [{"timestamp": timestamp, "sampledValue": values}],
                    },
                    None,
                )

    def _on_fault(self, event: FaultRaised | FaultCleared, now: float) -> None:
        """N07-style alert: NotifyEvent on the Problem variable of the component."""
        component = (
            ComponentKey("ChargingStation")
            if event.evse_id is None
            else ComponentKey("EVSE", evse_id=event.evse_id)
        )
        raised = isinstance(event, FaultRaised)
        self._event_seq += 1
        data: JsonObject = {
            "eventId": self._event_seq,
            "timestamp": self.utc_now(now),
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
        if self._online() or self.model.bool_value(dm.OCPP_COMM, dm.QUEUE_ALL_MESSAGES):
            self._enqueue(
                "NotifyEvent",
                {"generatedAt": self.utc_now(now), "seqNo": 0, "tbc": False, "eventData": [data]},
                None,
            )

    # ======================================================== CALL handlers
    def _too_big(
        self, call: Call, size: int, items_var: VariableKey, bytes_var: VariableKey, items: int
    ) -> CallError | None:
        if items > self.model.int_value(dm.DEVICE_DATA, items_var):
            # B05/B06: more entries than ItemsPerMessage -> OccurrenceConstraintViolation.
            return CallError(
                call.unique_id,
                ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION.value,
                f"more than ItemsPerMessage {items_var.instance} entries",
            )
        if size > self.model.int_value(dm.DEVICE_DATA, bytes_var):
            # B05/B06: message longer than BytesPerMessage -> FormatViolation.
            return CallError(
                call.unique_id,
                ErrorCode.FORMAT_VIOLATION.value,
                f"longer than BytesPerMessage {bytes_var.instance}",
            )
        return None

    def _on_get_variables(self, call: Call, now: float, size: int) -> JsonObject | CallError:
        entries = call.payload["getVariableData"]
        error = self._too_big(
            call,
            size,
            dm.ITEMS_PER_MESSAGE_GET_VARIABLES,
            dm.BYTES_PER_MESSAGE_GET_VARIABLES,
            len(entries),
        )
        if error is not None:
            return error
        self.model.update(dm.CLOCK, dm.DATE_TIME, self.utc_now(now))
        results = []
        for entry in entries:
            attribute = AttributeType(entry.get("attributeType", "Actual"))
            outcome = self.model.get(
                ComponentKey.from_json(entry["component"]),
                VariableKey.from_json(entry["variable"]),
                attribute,
            )
            result: JsonObject = {
                "attributeStatus": outcome.status.value,
                "attributeType": attribute.value,
                "component": entry["component"],
                "variable": entry["variable"],
            }
            if outcome.value is not None:
                result["attributeValue"] = outcome.value
            results.append(result)
        return {"getVariableResult": results}

    def _on_set_variables(self, call: Call, now: float, size: int) -> JsonObject | CallError:
        entries = call.payload["setVariableData"]
        error = self._too_big(
            call,
            size,
            dm.ITEMS_PER_MESSAGE_SET_VARIABLES,
            dm.BYTES_PER_MESSAGE_SET_VARIABLES,
            len(entries),
        )
        if error is not None:
            return error
        results = []
        for entry in entries:
            attribute = AttributeType(entry.get("attributeType", "Actual"))
            outcome = self.model.set(
                ComponentKey.from_json(entry["component"]),
                VariableKey.from_json(entry["variable"]),
                entry["attributeValue"],
                attribute,
            )
            if outcome.persist is not None:
                self._actions.append(StoreVariable(*outcome.persist))
                if outcome.persist[0][:2] == (dm.SECURITY, dm.BASIC_AUTH_PASSWORD):
                    # A01: reconnect with the new password once the answer is out
                    # and our own outstanding CALL, if any, has been answered.
                    self._reconnect_reason = "new BasicAuthPassword"
                    self.security_event(
                        now, "ReconfigurationOfSecurityParameters", "BasicAuthPassword changed"
                    )
            result: JsonObject = {
                "attributeStatus": outcome.status.value,
                "attributeType": attribute.value,
                "component": entry["component"],
                "variable": entry["variable"],
            }
            if outcome.reason_code is not None:
                result["attributeStatusInfo"] = {"reasonCode": outcome.reason_code}
            results.append(result)
        return {"setVariableResult": results}

    def _on_get_base_report(self, call: Call, now: float, size: int) -> JsonObject:
        base = ReportBase(call.payload["reportBase"])
        request_id = call.payload["requestId"]
        self.model.update(dm.CLOCK, dm.DATE_TIME, self.utc_now(now))
        data = self.model.report(base)
        if not data:
            return {"status": "EmptyResultSet"}
        parts = self._report_parts(data)
        generated_at = self.utc_now(now)
        for seq_no, part in enumerate(parts):
            # B07: NotifyReport parts numbered from 0, tbc on all but the last.
            self._enqueue(
                "NotifyReport",
                {
                    "requestId": request_id,
                    "generatedAt": generated_at,
                    "tbc": seq_no < len(parts) - 1,
                    "seqNo": seq_no,
                    "reportData": part,
                },
                None,
                requested_by_csms=True,
            )
        return {"status": "Accepted"}

    def _report_parts(self, data: list[JsonObject]) -> list[list[JsonObject]]:
        """Split reportData so that each NotifyReport holds at most ItemsPerMessage
        entries and stays within BytesPerMessage (DeviceDataCtrlr, instance GetReport)."""
        max_items = max(1, self.model.int_value(dm.DEVICE_DATA, dm.ITEMS_PER_MESSAGE_GET_REPORT))
        max_bytes = self.model.int_value(dm.DEVICE_DATA, dm.BYTES_PER_MESSAGE_GET_REPORT)
        envelope = 200  # frame, ids, requestId, generatedAt, tbc, seqNo
        parts: list[list[JsonObject]] = [[]]
        used = envelope
        for item in data:
            size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
            if parts[-1] and (len(parts[-1]) >= max_items or used + size > max_bytes):
                parts.append([])
                used = envelope
            parts[-1].append(item)
            used += size
        return parts

    def _on_reset(self, call: Call, now: float, size: int) -> JsonObject:
        kind = ResetKind(call.payload["type"])
        evse_id = call.payload.get("evseId")
        if evse_id is not None and evse_id not in self.identity.evse_connectors:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        busy = (
            self._transactions.any_open()
            if evse_id is None
            else self._transactions.on_evse(evse_id) is not None
        )
        self._actions.append(DeliverCommand(ResetRequested(kind, evse_id)))
        # B12: OnIdle with a transaction running is Scheduled; otherwise Accepted.
        return {"status": "Scheduled" if kind is ResetKind.ON_IDLE and busy else "Accepted"}

    def _on_change_availability(self, call: Call, now: float, size: int) -> JsonObject:
        operative = call.payload["operationalStatus"] == "Operative"
        evse = call.payload.get("evse") or {}
        evse_id, connector_id = evse.get("id"), evse.get("connectorId")
        if evse_id is not None and evse_id != 0:
            count = self.identity.evse_connectors.get(evse_id)
            if count is None or (connector_id is not None and not 1 <= connector_id <= count):
                return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        else:
            evse_id = None
        self._actions.append(DeliverCommand(SetAvailability(evse_id, connector_id, operative)))
        busy = (
            self._transactions.any_open()
            if evse_id is None
            else self._transactions.on_evse(evse_id) is not None
        )
        # G03/G04: with a transaction running, the change is Scheduled.
        return {"status": "Scheduled" if busy and not operative else "Accepted"}

    def _on_trigger_message(self, call: Call, now: float, size: int) -> JsonObject:
        requested = call.payload["requestedMessage"]
        evse = call.payload.get("evse") or {}
        evse_id = evse.get("id")
        if requested == "BootNotification":
            if self.registration is Registration.ACCEPTED:
                # F06: a BootNotification after Accepted is refused.
                return {"status": "Rejected"}
            self._boot_due = now
        elif requested == "Heartbeat":
            self._outbox.append(_Outgoing("Heartbeat", {}, requested_by_csms=True))
        elif requested == "StatusNotification":
            keys = [
                k
                for k in sorted(self._status)
                if evse_id is None or (k[0] == evse_id and evse.get("connectorId") in (None, k[1]))
            ]
            if not keys:
                return {"status": "Rejected"}
            for key in keys:
                self._reported[key] = self._status[key]
                self._outbox.append(
                    _Outgoing(
                        "StatusNotification",
                        {
                            "timestamp": self.utc_now(now),
                            "connectorStatus": self._status[key].value,
                            "evseId": key[0],
                            "connectorId": key[1],
                        },
                        requested_by_csms=True,
                    )
                )
        elif requested == "TransactionEvent":
            # F06: an Updated event with triggerReason Trigger for the EVSE's transaction.
            sample = self._last_sample.get(evse_id) if evse_id is not None else None
            if sample is None or self._transactions.on_evse(sample.evse_id) is None:
                return {"status": "Rejected"}
            self._on_meter_sample(sample, now, "Trigger")
        elif requested in ("SignChargingStationCertificate", "SignV2GCertificate"):
            use = (
                CHARGING_STATION_CERTIFICATE
                if requested == "SignChargingStationCertificate"
                else V2G_CERTIFICATE
            )
            if not self._request_certificate(use):
                return {"status": "Rejected"}
            self._signing[use] = (None, 0)
        else:
            return {"status": "NotImplemented"}
        # F06: the answer goes out before the triggered message (ordering of actions).
        return {"status": "Accepted"}

    def _on_data_transfer(self, call: Call, now: float, size: int) -> JsonObject:
        # P01: no vendor extensions are implemented.
        return {"status": "UnknownVendorId"}

    def _on_clear_cache(self, call: Call, now: float, size: int) -> JsonObject:
        # C11: without an enabled authorization cache the request is Rejected.
        if self.model.bool_value(dm.AUTH_CACHE, dm.ENABLED):
            self._auth_cache.clear()
            self._actions.append(StoreState("auth_cache", self._auth_cache.snapshot()))
            return {"status": "Accepted"}
        return {"status": "Rejected"}

    def _on_request_start(self, call: Call, now: float, size: int) -> JsonObject:
        evse_id = call.payload.get("evseId")
        if evse_id is not None and evse_id not in self.identity.evse_connectors:
            return {"status": "Rejected"}
        if self.registration is not Registration.ACCEPTED:
            return {"status": "Rejected"}  # B02: no transactions before Accepted
        token = call.payload["idToken"]
        id_token = IdToken(token["idToken"], token["type"])
        command = RemoteStart(evse_id, id_token, call.payload["remoteStartId"])
        if self.model.bool_value(dm.AUTH, dm.AUTHORIZE_REMOTE_START):
            # F02: authorize the idToken first; the runtime hears of the start only
            # once it is Accepted.  The Authorize goes out after this answer.
            self._start_authorization(now, _PendingAuthorization(id_token, command))
        else:
            self._actions.append(DeliverCommand(command))  # F01
        return {"status": "Accepted"}

    def _on_request_stop(self, call: Call, now: float, size: int) -> JsonObject:
        tx = self._transactions.by_id(call.payload["transactionId"])
        if tx is None:
            return {"status": "Rejected"}  # F03: unknown transaction
        self._actions.append(DeliverCommand(RemoteStop(tx.transaction_id, tx.evse_id)))
        return {"status": "Accepted"}

    def _on_unlock_connector(self, call: Call, now: float, size: int) -> JsonObject:
        key = (call.payload["evseId"], call.payload["connectorId"])
        if key not in self._status:
            return {"status": "UnknownConnector"}
        if self._transactions.on_evse(key[0]) is not None:
            return {"status": "OngoingAuthorizedTransaction"}  # F05
        self._actions.append(DeliverCommand(UnlockConnector(*key)))
        return {"status": "Unlocked"}

    # ================================================ certificates (A02-A03, M)
    def _refresh_certificate_entries(self) -> None:
        self.model.update(dm.SECURITY, dm.CERTIFICATE_ENTRIES, str(len(self._certs.installed())))

    @staticmethod
    def _status_info(outcome: Outcome, code: str) -> JsonObject:
        info: JsonObject = {"reasonCode": code}
        if outcome.reason:
            info["additionalInfo"] = outcome.reason[:512]
        return info

    def _on_install_certificate(self, call: Call, now: float, size: int) -> JsonObject:
        use = call.payload["certificateType"]
        allowed = ROOT_USES_V21 if self.version is ProtocolVersion.V21 else ROOT_USES_V201
        if use not in allowed:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownType"}}
        outcome = self._certs.install_root(use, call.payload["certificate"])
        if outcome.ok:
            self._refresh_certificate_entries()
            return {"status": "Accepted"}
        # M05: Rejected for a certificate that is not acceptable, Failed for storage.
        logger.warning("InstallCertificate %s refused: %s", use, outcome.reason)
        if outcome.failed:
            return {"status": "Failed", "statusInfo": self._status_info(outcome, "StorageFailed")}
        return {
            "status": "Rejected",
            "statusInfo": self._status_info(outcome, "InvalidCertificate"),
        }

    def _on_get_installed_certificate_ids(self, call: Call, now: float, size: int) -> JsonObject:
        wanted = call.payload.get("certificateType")
        known = ROOT_USES_V21 if self.version is ProtocolVersion.V21 else ROOT_USES_V201
        entries = [
            c
            for c in self._certs.installed()
            if (c.use in known or c.use == V2G_CERTIFICATE_CHAIN)
            and (not wanted or c.use in wanted)
        ]
        if not entries:
            return {"status": "NotFound"}  # M03
        return {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": c.use, "certificateHashData": c.hash.to_json()} for c in entries
            ],
        }

    def _on_delete_certificate(self, call: Call, now: float, size: int) -> JsonObject:
        target = CertificateHash.from_json(call.payload["certificateHashData"])
        installed = self._certs.installed()
        entry = next((c for c in installed if c.hash == target), None)
        if entry is None:
            return {"status": "NotFound"}  # M04
        csms_roots = sum(1 for c in installed if c.use == CSMS_ROOT)
        profile = self.model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        if entry.use == CSMS_ROOT and csms_roots == 1 and profile >= 2:
            # M04: deleting the only CSMSRootCertificate would leave a TLS station
            # unable to verify its CSMS, i.e. unable to ever reconnect.
            logger.warning("refusing to delete the last CSMSRootCertificate")
            return {"status": "Failed", "statusInfo": {"reasonCode": "LastCsmsRoot"}}
        outcome = self._certs.delete(target)
        if not outcome.ok:
            return {"status": "Failed", "statusInfo": self._status_info(outcome, "DeleteFailed")}
        self._refresh_certificate_entries()
        return {"status": "Accepted"}

    def _request_certificate(self, use: str) -> bool:
        """A02/A03: a new key pair and a SignCertificate with its CSR."""
        if use == V2G_CERTIFICATE:
            common_name = self.model.value(dm.ISO15118, dm.SECC_ID) or ""
        else:
            common_name = self.model.value(dm.SECURITY, dm.IDENTITY) or ""
        organization = self.model.value(dm.SECURITY, dm.ORGANIZATION_NAME) or ""
        csr = self._certs.create_csr(use, common_name, organization)
        if not csr:
            return False
        self._enqueue(
            "SignCertificate",
            {"csr": csr, "certificateType": use},
            None,
            requested_by_csms=True,
        )
        return True

    def _on_certificate_signed(self, call: Call, now: float, size: int) -> JsonObject:
        use = call.payload.get("certificateType", CHARGING_STATION_CERTIFICATE)
        outcome = self._certs.accept_signed(use, call.payload["certificateChain"])
        if outcome.ok:
            # A02: the new certificate is used from the next connection on.
            self._signing.pop(use, None)
            return {"status": "Accepted"}
        logger.warning("CertificateSigned %s rejected: %s", use, outcome.reason)
        # A02/A03: a rejected certificate is a security event.
        self.security_event(now, "InvalidChargingStationCertificate", outcome.reason)
        return {
            "status": "Rejected",
            "statusInfo": self._status_info(outcome, "InvalidCertificate"),
        }

    # ====================================================== security events
    def security_event(self, now: float, kind: str, tech_info: str = "") -> None:
        """A04: queue a SecurityEventNotification (sent once connected and Accepted).

        An event of the same type that is still waiting is not repeated (a CSMS
        that keeps failing TLS must not fill the queue)."""
        waiting = self._queue.messages()
        if self._inflight is not None and self._inflight.source is _Source.QUEUE:
            waiting = waiting[1:]  # already on its way: a new failure deserves a new event
        if any(
            m.action == "SecurityEventNotification" and m.payload["type"] == kind for m in waiting
        ):
            return
        payload: JsonObject = {"type": kind[:50], "timestamp": self.utc_now(now)}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        self._enqueue("SecurityEventNotification", payload, MessageKind.OTHER)

    # ==================================================== network profiles (B09)
    def _on_set_network_profile(self, call: Call, now: float, size: int) -> JsonObject:
        slot = call.payload["configurationSlot"]
        data = call.payload["connectionData"]
        current = self.model.int_value(dm.SECURITY, dm.SECURITY_PROFILE)
        if data["securityProfile"] == 3 and not self._certs.has_station_certificate():
            # A05: no upgrade to profile 3 without a ChargingStationCertificate.
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NoCertificate"}}
        problem = self._network.set_profile(slot, data, current)
        if problem is not None:
            logger.warning("SetNetworkProfile slot %s refused: %s", slot, problem)
            return {"status": "Rejected", "statusInfo": {"reasonCode": problem}}
        self._actions.append(StoreState("network", self._network.snapshot()))
        logger.info(
            "network profile stored in slot %d: %s, security profile %d",
            slot,
            data["ocppCsmsUrl"],
            data["securityProfile"],
        )
        return {"status": "Accepted"}

    # ======================================================= authorization (C)
    def authorize(self, now: float, token: IdToken) -> int:
        """C01: authorize ``token``; the answer comes as :class:`AuthorizationDone`
        with the returned ``ref`` (possibly among the actions of this very call)."""
        ref = self._start_authorization(now, _PendingAuthorization(token))
        self._pump(now)
        return ref

    def _start_authorization(self, now: float, pending: _PendingAuthorization) -> int:
        ref, self._next_ref = self._next_ref, self._next_ref + 1
        self._authorizations[ref] = pending
        if not self.model.bool_value(dm.AUTH, dm.ENABLED):
            # AuthCtrlr.Enabled = false: no authorization is needed.
            self._resolve(ref, AuthorizationResult("Accepted", "Disabled"))
            return ref
        if not self._online():
            self._authorize_offline(ref, now)
            return ref
        if self.model.bool_value(dm.AUTH, dm.LOCAL_PRE_AUTHORIZE):
            # C13/C14: a token the list or the cache accepts starts at once.
            local = self._local_decision(pending.token, now, accepted_only=True)
            if local is not None:
                self._resolve(ref, local)
                return ref
        payload: JsonObject = {
            "idToken": {"idToken": pending.token.id_token, "type": pending.token.kind}
        }
        self._outbox.append(_Outgoing("Authorize", payload, ref=ref))
        return ref

    def _local_list_enabled(self) -> bool:
        return self.model.bool_value(dm.LOCAL_AUTH_LIST, dm.ENABLED)

    def _cache_enabled(self) -> bool:
        return self.model.bool_value(dm.AUTH_CACHE, dm.ENABLED)

    def _local_decision(
        self, token: IdToken, now: float, *, accepted_only: bool
    ) -> AuthorizationResult | None:
        result = decide_locally(
            token,
            local_list=self._local_list if self._local_list_enabled() else None,
            cache=self._auth_cache if self._cache_enabled() else None,
            utc=now + self.utc_offset_s,
            local_authorize_offline=True,
            offline_tx_for_unknown=False,
        )
        if result.source == "Refused" or (accepted_only and not result.accepted):
            return None
        return result

    def _authorize_offline(self, ref: int, now: float) -> None:
        pending = self._authorizations.get(ref)
        if pending is None:
            return
        result = decide_locally(
            pending.token,
            local_list=self._local_list if self._local_list_enabled() else None,
            cache=self._auth_cache if self._cache_enabled() else None,
            utc=now + self.utc_offset_s,
            local_authorize_offline=self.model.bool_value(dm.AUTH, dm.LOCAL_AUTHORIZE_OFFLINE),
            offline_tx_for_unknown=self.model.bool_value(dm.AUTH, dm.OFFLINE_TX_FOR_UNKNOWN_ID),
        )
        logger.info(
            "authorized %s without the CSMS: %s (%s)",
            pending.token.kind,
            result.status,
            result.source,
        )
        self._resolve(ref, result)

    def _resolve(self, ref: int, result: AuthorizationResult) -> None:
        pending = self._authorizations.pop(ref, None)
        if pending is None:
            return
        if pending.remote_start is None:
            self._actions.append(AuthorizationDone(ref, result))
        elif result.accepted:
            self._actions.append(DeliverCommand(pending.remote_start))
        else:
            logger.warning(
                "remote start %d not carried out: idToken %s (%s)",
                pending.remote_start.remote_start_id,
                result.status,
                result.source,
            )

    def _remember(self, token: IdToken, info: JsonObject, now: float) -> None:
        """C10: keep the CSMS's IdTokenInfo; tokens of the local list are not cached."""
        if not self._cache_enabled() or self._local_list.lookup(token) is not None:
            return
        expiry = None
        if "cacheExpiryDateTime" in info:
            try:
                expiry = parse_timestamp(info["cacheExpiryDateTime"])
            except RemoteProtocolError as exc:
                logger.warning("ignoring cacheExpiryDateTime: %s", exc)
        lifetime = self.model.int_value(dm.AUTH_CACHE, dm.LIFE_TIME)
        self._auth_cache.store(token, info, now + self.utc_offset_s, lifetime, expiry)
        self._actions.append(StoreState("auth_cache", self._auth_cache.snapshot()))

    def _on_authorize_response(self, ref: int, payload: JsonObject, now: float) -> None:
        pending = self._authorizations.get(ref)
        if pending is None:
            return
        info = payload["idTokenInfo"]
        self._remember(pending.token, info, now)
        allowed = tuple(payload.get("allowedEnergyTransfer", ()))
        self._resolve(ref, AuthorizationResult(info["status"], "CSMS", info, allowed))

    def _cache_from_transaction_event(self, seq: int, answer: JsonObject, now: float) -> None:
        """C10: a TransactionEventResponse's idTokenInfo updates the cache too."""
        info = answer.get("idTokenInfo")
        if info is None:
            return
        message = next((m for m in self._queue.messages() if m.seq == seq), None)
        token = message.payload.get("idToken") if message is not None else None
        if token is not None:
            self._remember(IdToken(token["idToken"], token["type"]), info, now)

    def _on_send_local_list(self, call: Call, now: float, size: int) -> JsonObject:
        if not self._local_list_enabled():
            return {"status": "Failed", "statusInfo": {"reasonCode": "Disabled"}}
        entries = call.payload.get("localAuthorizationList", [])
        full = call.payload["updateType"] == "Full"
        status = self._local_list.update(call.payload["versionNumber"], full, entries)
        if status == "Accepted":
            self._actions.append(StoreState("local_list", self._local_list.snapshot()))
            self._update(dm.LOCAL_AUTH_LIST, dm.ENTRIES, str(len(self._local_list)))
        return {"status": status}  # D01

    def _on_get_local_list_version(self, call: Call, now: float, size: int) -> JsonObject:
        return {"versionNumber": self._local_list.version}  # D02

    def _on_get_transaction_status(self, call: Call, now: float, size: int) -> JsonObject:
        # E14: are messages of (this) transaction still queued; is it ongoing.
        transaction_id = call.payload.get("transactionId")
        queued = any(
            m.action == "TransactionEvent"
            and (
                transaction_id is None
                or m.payload["transactionInfo"]["transactionId"] == transaction_id
            )
            for m in self._queue.messages()
        )
        result: JsonObject = {"messagesInQueue": queued}
        if transaction_id is not None:
            result["ongoingIndicator"] = self._transactions.by_id(transaction_id) is not None
        return result

    def _on_sign_certificate_response(self, use: str, payload: JsonObject, now: float) -> None:
        """A02/A03: Accepted means a CertificateSigned will follow; if it does not come
        within CertSigningWaitMinimum (doubled on each attempt), a new CSR goes out,
        at most CertSigningRepeatTimes times."""
        status = payload["status"]
        if status != "Accepted":
            logger.warning("CSMS answered SignCertificate %s for %s", status, use)
            self._signing.pop(use, None)
            return
        _, attempts = self._signing.get(use, (None, 0))
        wait = self.model.int_value(dm.SECURITY, dm.CERT_SIGNING_WAIT_MINIMUM) * 2**attempts
        self._signing[use] = (now + wait, attempts)

    def _retry_certificate_signing(self, now: float) -> None:
        for use, (due, attempts) in list(self._signing.items()):
            if due is None or now < due:
                continue
            if attempts >= self.model.int_value(dm.SECURITY, dm.CERT_SIGNING_REPEAT_TIMES):
                logger.error(
                    "no CertificateSigned for %s after %d CSRs: giving up", use, attempts + 1
                )
                del self._signing[use]
                continue
            logger.warning("no CertificateSigned for %s yet: sending a new CSR", use)
            self._signing[use] = (None, attempts + 1)
            if not self._request_certificate(use):
                del self._signing[use]
