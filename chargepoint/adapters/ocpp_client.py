"""asyncio shell around :class:`chargepoint.ocpp.station.OcppStation`.

This is the only module of the project that imports the ``ocpp`` package, and
it uses it for one thing: the OCA JSON schemas and the action catalogues
(:class:`OcppSchemas`).  OCPP-J framing, dispatch, error codes, gating and
retries live in the sans-I/O core (:mod:`chargepoint.ocpp`), because the
package's ``ChargePoint`` leaves unknown actions unanswered, swaps
NotImplemented/NotSupported, drops malformed frames silently, mangles ~40
OCPP 2.1 property names and deadlocks when a handler sends (see docs/ocpp.md).

TLS contexts, certificate files and keys are the business of
:mod:`.ocpp_security`; this module builds a context per connection attempt and
turns a failed attempt into a sentence an operator understands (and the
SecurityEventNotification it is).  :meth:`OcppClient.authorize` is the
runtime's way to ask whether an idToken may charge.

One event loop, one :class:`asyncio.TaskGroup`: the main loop feeds the core
with inputs from a single inbox (frames, connection results, station events)
or wakes up at the core's next deadline, then performs the core's actions in
order.  The connection task owns the WebSocket's receive side.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import sqlite3
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from ocpp import messages as ocpp_messages
from ocpp.messages import get_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.typing import Subprotocol

from chargepoint.errors import ChargepointError, ConfigError
from chargepoint.ocpp.authorization import AuthorizationResult
from chargepoint.ocpp.certificates import CSMS_ROOT
from chargepoint.ocpp.device_model import (
    TX_CTRLR,
    DeviceModel,
    ValueKey,
    VariableKey,
    standard_variables,
)
from chargepoint.ocpp.queue import QueuedMessage
from chargepoint.ocpp.rpc import ErrorCode, JsonObject, MessageType, ProtocolVersion
from chargepoint.ocpp.station import (
    Action,
    AuthorizationDone,
    CloseConnection,
    DeleteQueued,
    DeliverCommand,
    OcppStation,
    OpenConnection,
    Registration,
    SchemaProblem,
    SendFrame,
    StationIdentity,
    StoreQueued,
    StoreState,
    StoreVariable,
)
from chargepoint.ocpp.station_io import (
    FaultCleared,
    FaultRaised,
    IdToken,
    StationCommand,
    StationEvent,
)

from .ocpp_security import (
    FileCertificateStore,
    TlsFailure,
    client_tls_context,
    describe_tls_failure,
)
from .ocpp_store import OcppStore, StoreWorker

logger = logging.getLogger(__name__)

# What the durable store holds at start: variables, queued messages, core state.
_Saved = tuple[dict[ValueKey, str], tuple[QueuedMessage, ...], dict[str, dict[str, Any]]]


class OcppClientStoppedError(ChargepointError):
    """The OCPP client stopped before it could answer (e.g. a pending authorize())."""


#: jsonschema keyword that failed -> OCPP-J error code (OCPP 2.0.1 Part 4 §4.3).
_SCHEMA_ERROR_CODES = {
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "required": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "minItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorCode.OCCURRENCE_CONSTRAINT_VIOLATION,
    "enum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "maxLength": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "minLength": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    "additionalProperties": ErrorCode.FORMAT_VIOLATION,
}
_PACKAGE_VERSION = {ProtocolVersion.V201: "2.0.1", ProtocolVersion.V21: "2.1"}
_OCPP_PACKAGE = Path(ocpp_messages.__file__).parent


class OcppSchemas:
    """The OCA schemas and action lists, as shipped in the ``ocpp`` package.

    Incoming CALLs are always validated (their CALLERROR codes depend on it).
    Our own messages -- requests we send and the answers we give -- are
    validated too unless ``validate_own`` is false: a safety net against our
    bugs that costs about 0.5 ms per TransactionEvent (bench/ocpp_replay.py).
    CALLRESULTs from the CSMS are always validated.
    """

    def __init__(self, *, validate_own: bool = True) -> None:
        self.validate_own = validate_own

    _ACTIONS: ClassVar[dict[ProtocolVersion, frozenset[str]]] = {}

    def known_actions(self, version: ProtocolVersion) -> frozenset[str]:
        """The actions of ``version``: one ``<Action>Request.json`` schema each.

        Read from the package's schema folder, the same list as its ``Action``
        enum, without importing ``ocpp.v201``/``ocpp.v21`` (their message classes
        cost some 3 MB each and are never used here).
        """
        known = self._ACTIONS.get(version)
        if known is None:
            folder = _OCPP_PACKAGE / f"v{_PACKAGE_VERSION[version].replace('.', '')}" / "schemas"
            suffix = "Request.json"
            known = frozenset(p.name.removesuffix(suffix) for p in folder.glob(f"*{suffix}"))
            if not known:
                raise ChargepointError(f"no OCPP {version.value} schemas in {folder}")
            self._ACTIONS[version] = known
        return known

    def check(
        self,
        version: ProtocolVersion,
        action: str,
        payload: JsonObject,
        *,
        request: bool,
        own: bool = False,
    ) -> SchemaProblem | None:
        if own and not self.validate_own:
            return None
        kind = MessageType.CALL if request else MessageType.CALL_RESULT
        validator: Any = get_validator(kind.value, action, _PACKAGE_VERSION[version])
        error: Any = next(iter(validator.iter_errors(payload)), None)
        if error is None:
            return None
        code = _SCHEMA_ERROR_CODES.get(error.validator, ErrorCode.FORMAT_VIOLATION)
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        return SchemaProblem(code, f"{where}: {error.message}"[:255])


@dataclass(frozen=True)
class OcppClientSettings:
    """Everything the OCPP client needs, given explicitly by the composition root."""

    csms_url: str  # e.g. "ws://csms.example:9000/ocpp"; the identity is appended
    identity: str
    station: StationIdentity
    state_file: Path
    basic_auth_password: str | None = None
    #: 1: Basic auth over ws://; 2: Basic auth over TLS; 3: TLS with a client certificate
    security_profile: int = 1
    #: profiles 2/3: CSMSRootCertificate(s) (PEM) the CSMS server certificate may chain
    #: to, besides those installed with InstallCertificate; with neither, the system
    #: trust store is used.
    csms_root_certificates: Path | None = None
    #: certificates and keys (mode 0700); default: ``ocpp-certs`` beside ``state_file``
    certificate_dir: Path | None = None
    #: profile 3: a factory-installed client certificate (PEM chain) and key, used until
    #: a ChargingStationCertificate is installed through SignCertificate/CertificateSigned
    station_certificate: Path | None = None
    station_private_key: Path | None = None
    subprotocols: tuple[ProtocolVersion, ...] = (ProtocolVersion.V21, ProtocolVersion.V201)
    open_timeout_s: float = 10.0
    #: validate what we send against the OCA schemas (see :class:`OcppSchemas`)
    validate_own_messages: bool = True
    queue_capacity: int = 1000
    v2x_operation_modes: tuple[str, ...] = ()
    #: default of OCPPCommCtrlr.WebSocketPingInterval (the CSMS may change it); 0 = off
    websocket_ping_interval_s: int = 30
    organization_name: str = ""

    def __post_init__(self) -> None:
        problems = []
        # OCPP 2.0.1 Part 4 §3.1.1: identity at most 48 characters, no ':'.
        if not 0 < len(self.identity) <= 48 or ":" in self.identity:
            problems.append(("identity", "1..48 characters without ':'"))
        if not self.csms_url.startswith(("ws://", "wss://")):
            problems.append(("csms_url", "must start with ws:// or wss://"))
        if not self.subprotocols:
            problems.append(("subprotocols", "offer at least one OCPP version"))
        if self.security_profile not in (1, 2, 3):
            problems.append(("security_profile", "security profiles are 1, 2 and 3"))
        # A00: profile 1 is Basic auth over ws://, profiles 2 and 3 use wss://.
        elif self.security_profile == 1 and not self.csms_url.startswith("ws://"):
            problems.append(("csms_url", "security profile 1 uses ws://"))
        elif self.security_profile >= 2 and not self.csms_url.startswith("wss://"):
            problems.append(("csms_url", f"security profile {self.security_profile} needs wss://"))
        if (self.station_certificate is None) != (self.station_private_key is None):
            problems.append(("station_private_key", "give the certificate and its key together"))
        if problems:
            raise ConfigError("ocpp client settings", problems)

    @property
    def url(self) -> str:
        return self.url_for(self.csms_url)

    def url_for(self, csms_url: str) -> str:
        # Part 4 §3.1.1: the identity is the last path segment, percent-encoded.
        return f"{csms_url.rstrip('/')}/{quote(self.identity, safe='')}"

    @property
    def certificates_path(self) -> Path:
        return self.certificate_dir or self.state_file.parent / "ocpp-certs"


# ------------------------------------------------------------ inbox items
@dataclass(frozen=True)
class _Opened:
    ws: ClientConnection
    version: ProtocolVersion


@dataclass(frozen=True)
class _Failed:
    reason: str
    security_event: str | None = None


@dataclass(frozen=True)
class _FrameIn:
    ws: ClientConnection
    text: str


@dataclass(frozen=True)
class _Lost:
    ws: ClientConnection
    reason: str


@dataclass(frozen=True)
class _Stop:
    """The runtime asked :meth:`OcppClient.run` to return."""


@dataclass(frozen=True)
class _Event:
    event: StationEvent


@dataclass(frozen=True)
class _Authorize:
    token: IdToken
    answer: asyncio.Future[AuthorizationResult]


_Input = _Opened | _Failed | _FrameIn | _Lost | _Stop | _Event | _Authorize


@dataclass
class _Connection:
    task: asyncio.Task[None]
    ws: ClientConnection | None = field(default=None)


class OcppClient:
    """The station's OCPP client.

    ``commands`` receives what the CSMS asks the station to do
    (:data:`~chargepoint.ocpp.station_io.StationCommand`); the runtime feeds
    station events with :meth:`submit`.  :meth:`run` runs until :meth:`stop`.
    """

    def __init__(
        self,
        settings: OcppClientSettings,
        commands: asyncio.Queue[StationCommand],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._commands = commands
        self._rng = rng or random.Random()
        self._inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self._connection: _Connection | None = None
        self.station: OcppStation | None = None
        factory = None
        if settings.station_certificate and settings.station_private_key:
            factory = (settings.station_certificate, settings.station_private_key)
        self.certificates = FileCertificateStore(
            settings.certificates_path, factory_credentials=factory
        )
        self._authorizations: dict[int, asyncio.Future[AuthorizationResult]] = {}
        # Back-pressure: at most this many received frames wait to be handled; then the
        # reader stops reading the WebSocket (TCP flow control slows the CSMS down).
        self._frame_slots = asyncio.Semaphore(FRAME_WINDOW)
        self._store_note: str | None = None  # what was wrong with the state file at start
        self._store_failing = False  # the last write to the state file failed

    # ------------------------------------------------------------- runtime API
    def submit(self, event: StationEvent) -> None:
        """Report a station event; never blocks."""
        self._inbox.put_nowait(_Event(event))

    def stop(self) -> None:
        """Ask :meth:`run` to close the connection and return."""
        self._inbox.put_nowait(_Stop())

    async def authorize(self, id_token: IdToken) -> AuthorizationResult:
        """C01: may ``id_token`` charge?  Asks the CSMS when online (Authorize); offline,
        or when the CSMS does not answer within MessageTimeout, the local list, the
        cache and the offline policy decide (C12-C15).  Raises
        :class:`OcppClientStoppedError` if the client stops first."""
        answer: asyncio.Future[AuthorizationResult] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Authorize(id_token, answer))
        return await answer

    def ev_connection_timeout_s(self) -> int | None:
        """TxCtrlr.EVConnectionTimeOut as the CSMS set it (E03; 0: none), or ``None``
        before :meth:`run` has loaded the device model.  Read-only."""
        station = self.station
        if station is None:
            return None
        return station.model.int_value(TX_CTRLR, VariableKey("EVConnectionTimeOut"))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        async with StoreWorker(self.settings.state_file) as store:
            saved = (store.saved["variables"], store.saved["queue"], store.saved["state"])
            self._store_note = store.recovery  # told to the CSMS once it accepted us
            station = self._build_station(saved, time.time() - loop.time())
            self.station = station
            station.start(loop.time())
            async with asyncio.TaskGroup() as group:
                while True:
                    await self._perform(station.actions(), store, group)
                    # Fairness: one input at a time, then let every other task run (the
                    # safety loop shares this event loop): a burst of queued frames
                    # would otherwise be handled back to back without a single yield.
                    await asyncio.sleep(0)
                    item = await self._next_input(station, loop)
                    now = loop.time()
                    match item:
                        case None:
                            station.handle_timer(now)
                        case _Stop():
                            await self._disconnect("service stopping")
                            self._abandon_authorizations()
                            break
                        case _Event(event):
                            station.station_event(now, event)
                        case _Authorize(token, answer):
                            self._authorizations[station.authorize(now, token)] = answer
                        case _Opened(ws, version) if self._connection is not None:
                            self._connection.ws = ws
                            logger.info("connected to %s with %s", self.settings.url, version.value)
                            station.connection_opened(now, version)
                        case _Failed(reason, security_event):
                            self._connection = None
                            station.connection_failed(now, reason, security_event)
                        case _FrameIn(ws, text) if self._current(ws):
                            self._frame_slots.release()
                            logger.debug("<- %s", _loggable(text))
                            station.receive_frame(now, text)
                        case _FrameIn():
                            self._frame_slots.release()  # from a connection already gone
                        case _Lost(ws, reason) if self._current(ws):
                            self._connection = None
                            station.connection_lost(now, reason)
                        case _:
                            logger.debug(
                                "ignoring %s from a closed connection", type(item).__name__
                            )

    # --------------------------------------------------------------- internals
    async def _persist(self, store: StoreWorker, write: Callable[[OcppStore], None]) -> None:
        """One write to the state file. Charging never depends on it: a failing store
        (full file system, an I/O error) is reported once, the messages stay in the
        station's bounded in-memory queue, and the next good write ends the report."""
        station = self.station
        now = asyncio.get_running_loop().time()
        try:
            await store.run(write)
        except sqlite3.Error as exc:
            if not self._store_failing:
                self._store_failing = True
                detail = f"{store.path}: {exc}; OCPP state kept in memory only"
                logger.error("state file: %s", detail)
                if station is not None:
                    station.station_event(now, _state_file_problem(detail))
            return
        if self._store_failing:
            self._store_failing = False
            logger.warning("state file: %s is written again", store.path)
            if station is not None:
                station.station_event(now, FaultCleared(None, STATE_FILE_PROBLEM))

    def _build_station(self, saved: _Saved, utc_offset_s: float) -> OcppStation:
        variables, queued, stored_state = saved
        s = self.settings
        specs = standard_variables(
            identity=s.identity,
            security_profile=s.security_profile,
            basic_auth_password=s.basic_auth_password,
            evse_connectors=s.station.evse_connectors,
            organization_name=s.organization_name,
            v2x_operation_modes=s.v2x_operation_modes,
            websocket_ping_interval_s=s.websocket_ping_interval_s,
            evse_max_power_w={
                evse_id: rating.rated_power_w for evse_id, rating in s.station.evse_ratings.items()
            },
        )
        return OcppStation(
            identity=s.station,
            model=DeviceModel(specs, variables),
            schemas=OcppSchemas(validate_own=s.validate_own_messages),
            rng=self._rng,
            new_id=lambda: str(uuid.uuid4()),
            utc_offset_s=utc_offset_s,
            queued=queued,
            stored_state=stored_state,
            queue_capacity=s.queue_capacity,
            certificates=self.certificates,
        )

    def _abandon_authorizations(self) -> None:
        pending, self._authorizations = self._authorizations, {}
        answers = list(pending.values())
        while not self._inbox.empty():  # asked for after the stop
            item = self._inbox.get_nowait()
            if isinstance(item, _Authorize):
                answers.append(item.answer)
        for answer in answers:
            if not answer.done():
                answer.set_exception(OcppClientStoppedError("OCPP client stopped"))

    def _current(self, ws: ClientConnection) -> bool:
        return self._connection is not None and self._connection.ws is ws

    async def _next_input(
        self, station: OcppStation, loop: asyncio.AbstractEventLoop
    ) -> _Input | None:
        """The next inbox item, or ``None`` when the core's deadline comes first."""
        deadline = station.next_deadline()
        if deadline is None:
            return await self._inbox.get()
        try:
            async with asyncio.timeout_at(deadline):
                return await self._inbox.get()
        except TimeoutError:
            return None

    async def _perform(
        self, actions: list[Action], store: StoreWorker, group: asyncio.TaskGroup
    ) -> None:
        station = self.station
        if (
            self._store_note is not None
            and station is not None
            and station.registration is Registration.ACCEPTED
        ):
            note, self._store_note = self._store_note, None
            station.station_event(asyncio.get_running_loop().time(), _state_file_problem(note))
        for action in actions:
            match action:
                case SendFrame(text, summary):
                    await self._send(text, summary)
                # Durable before anything is sent (the actions come in that order),
                # on the store's own thread so an fsync never stalls the loop.
                case StoreQueued(message):
                    await self._persist(store, partial(OcppStore.save_queued, message=message))
                case DeleteQueued(seq):
                    await self._persist(store, partial(OcppStore.delete_queued, seq=seq))
                case StoreVariable(key, value):
                    await self._persist(
                        store, partial(OcppStore.save_variable, key=key, value=value)
                    )
                case StoreState(name, data):
                    await self._persist(store, partial(OcppStore.save_state, name=name, data=data))
                case DeliverCommand(command):
                    logger.info("command for the station: %s", command)
                    self._commands.put_nowait(command)
                case AuthorizationDone(ref, result):
                    answer = self._authorizations.pop(ref, None)
                    if answer is not None and not answer.done():
                        answer.set_result(result)
                case OpenConnection():
                    task = group.create_task(self._connect(action))
                    self._connection = _Connection(task)
                case CloseConnection(reason):
                    await self._disconnect(reason)

    async def _send(self, text: str, summary: str) -> None:
        ws = self._connection.ws if self._connection is not None else None
        if ws is None:
            logger.warning("cannot send %s: not connected", summary)
            return
        logger.debug("-> %s: %s", summary, _loggable(text))
        try:
            await ws.send(text)
        except ConnectionClosed as exc:
            # The connection task reports the loss; the core then re-queues.
            logger.info("send of %s failed, connection closed: %s", summary, exc)

    async def _disconnect(self, reason: str) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.ws is not None:
            logger.info("closing connection: %s", reason)
            await connection.ws.close(reason=reason[:120])
        connection.task.cancel()

    def _tls_context(self, profile: int) -> ssl.SSLContext:
        """A00: TLS 1.2 or newer; the server certificate must chain to a
        CSMSRootCertificate and match the host name; profile 3 adds the station's
        certificate.  Built on every attempt, so that certificates installed
        meanwhile take effect without a restart."""
        credentials = None
        if profile >= 3:
            credentials = self.certificates.station_credentials()
            if credentials is None:
                logger.error(
                    "security profile 3 without a ChargingStationCertificate: "
                    "the CSMS will refuse the connection"
                )
        return client_tls_context(
            roots_pem=self.certificates.roots_pem(CSMS_ROOT),
            roots_file=self.settings.csms_root_certificates,
            client_credentials=credentials,
        )

    def _handshake_headers(self, action: OpenConnection) -> dict[str, str]:
        if action.basic_auth_password is None:
            return {}
        # A00.FR.2xx: Basic auth, user name = station identity (security profiles 1/2).
        token = f"{self.settings.identity}:{action.basic_auth_password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode("ascii")}

    async def _connect(self, action: OpenConnection) -> None:
        offered = [Subprotocol(v.value) for v in self.settings.subprotocols]
        url = self.settings.url_for(action.csms_url or self.settings.csms_url)
        secure = url.startswith("wss://")
        logger.info(
            "connecting to %s (slot %d, security profile %d) offering %s",
            url,
            action.configuration_slot,
            action.security_profile,
            ", ".join(offered),
        )
        try:
            tls = self._tls_context(action.security_profile) if secure else None
            ws = await connect(
                url,
                ssl=tls,
                subprotocols=offered,
                additional_headers=self._handshake_headers(action),
                ping_interval=action.ping_interval_s or None,
                open_timeout=self.settings.open_timeout_s,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            # ssl.SSLError (e.g. CERTIFICATE_VERIFY_FAILED) is an OSError.
            failure = _diagnose(exc, secure=secure, profile=action.security_profile)
            logger.warning("connecting to %s failed: %s", url, failure.description)
            self._inbox.put_nowait(_Failed(failure.description, failure.security_event))
            return
        version = _selected_version(ws.subprotocol)
        if version is None:
            # Part 4 §3.1.2: the version is what the CSMS selected; never guess it.
            logger.error(
                "CSMS selected no OCPP subprotocol (offered %s, got %r): closing",
                ", ".join(offered),
                ws.subprotocol,
            )
            await ws.close(reason="no OCPP subprotocol selected")
            self._inbox.put_nowait(_Failed("no subprotocol selected"))
            return
        self._inbox.put_nowait(_Opened(ws, version))
        reason = "closed"
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                await self._frame_slots.acquire()  # back-pressure on a flooding CSMS
                self._inbox.put_nowait(_FrameIn(ws, text))
        except ConnectionClosed as exc:
            reason = str(exc)
        self._inbox.put_nowait(_Lost(ws, reason))


def _diagnose(exc: BaseException, *, secure: bool, profile: int) -> TlsFailure:
    """Why a connection attempt failed, in words, and the security event it is (A00)."""
    if secure:
        tls = describe_tls_failure(exc)
        if tls is not None:
            return tls
    if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
        # A00: the CSMS refused our credentials (Basic auth or client certificate).
        what = "the client certificate" if profile >= 3 else "identity / BasicAuthPassword"
        return TlsFailure(
            f"the CSMS refused the station's credentials (HTTP {exc.response.status_code}): "
            f"check {what}",
            "FailedToAuthenticateAtCsms",
        )
    if secure and profile >= 3 and isinstance(exc, InvalidMessage | EOFError):
        # A TLS 1.3 server that rejects the client certificate alerts after the
        # handshake; websockets then only reports that no HTTP response came.
        return TlsFailure(
            "TLS: the CSMS closed the connection before answering the WebSocket "
            "handshake: it probably refused the station's client certificate",
            "FailedToAuthenticateAtCsms",
        )
    return TlsFailure(f"{type(exc).__name__}: {exc}", None)


def _loggable(text: str) -> str:
    """The frame for the DEBUG log, unless it may carry the Basic auth password; a
    frame of any size from the CSMS costs the log at most ``LOG_FRAME_CHARS``."""
    if "BasicAuthPassword" in text:
        return f"({len(text)} characters mentioning BasicAuthPassword, not logged)"
    if len(text) > LOG_FRAME_CHARS:
        return f"{text[:LOG_FRAME_CHARS]}... ({len(text)} characters)"
    return text


def _selected_version(subprotocol: str | None) -> ProtocolVersion | None:
    versions: Mapping[str, ProtocolVersion] = {v.value: v for v in ProtocolVersion}
    return versions.get(subprotocol) if subprotocol is not None else None


STATE_FILE_PROBLEM = "StateFile"
FRAME_WINDOW = 32  # received frames waiting to be handled, at most
LOG_FRAME_CHARS = 2_000


def _state_file_problem(detail: str) -> FaultRaised:
    """A station-level problem for the CSMS (NotifyEvent on ChargingStation.Problem)."""
    return FaultRaised(None, STATE_FILE_PROBLEM, detail)
