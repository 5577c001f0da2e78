"""What the OCPP core lends its functional blocks (sans-I/O).

The station core (:mod:`chargepoint.ocpp.station`) owns the connection, the
registration, the one outstanding CALL and the send pump.  Each functional
block (:mod:`chargepoint.ocpp.blocks`) owns the state of one part of the
protocol and talks to the core only through :class:`Outbox`:

* send a CALL (:meth:`Outbox.send`), volatile, optionally with callbacks for
  its answer and for its failure (CALLERROR, timeout, connection lost, invalid);
* queue a message (:meth:`Outbox.enqueue`), durable when it has a
  :class:`~chargepoint.ocpp.queue.MessageKind` (or with QueueAllMessages);
* emit an action for the adapter (:class:`BlockAction`), in order;
* read the device model, the protocol version, the link state and the clock.

The core in turn drives each :class:`Block` through a few hooks, all with
``now`` (monotonic seconds) as an argument; a block overrides the ones it needs:

================================  ===============================================
``handlers()``                    the CALLs it answers (merged into the dispatch table)
``on_event(event, now)``          every :class:`~.station_io.StationEvent`
``on_clock(now)``                 every input (start, timer, frame, event), whatever
                                  the link: act on what is due by the clock
``handle_timer(now)``             a timer input while connected, after the core's
                                  own timeouts and heartbeat, before the send pump
``next_deadline()``               when ``on_clock`` / ``handle_timer`` must run next
``on_queued_result(m, r, now)``   the CSMS answered the durable message ``m``
================================  ===============================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from chargepoint.errors import RemoteProtocolError
from chargepoint.ocpp.authorization import AuthorizationResult
from chargepoint.ocpp.device_model import ComponentKey, DeviceModel, ValueKey, VariableKey
from chargepoint.ocpp.queue import MessageKind, QueuedMessage
from chargepoint.ocpp.rpc import Call, CallError, JsonObject, ProtocolVersion
from chargepoint.ocpp.station_io import StationCommand, StationEvent

#: A CALL handler: (the CALL, now, its size in bytes) -> the CALLRESULT payload or a
#: CALLERROR.  The core validates both ways and sends the answer.
Handler = Callable[[Call, float, int], JsonObject | CallError]
#: The CSMS answered a CALL: (CALLRESULT payload, now).
OnResult = Callable[[JsonObject, float], None]
#: A CALL will not be answered (CALLERROR, timeout, connection lost, invalid): (now).
OnFailure = Callable[[float], None]


# ------------------------------------------------------------ block actions
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


#: The actions a block may emit (the core adds the connection and queue ones).
BlockAction = StoreVariable | StoreState | DeliverCommand | AuthorizationDone


# --------------------------------------------------------------- timestamps
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


# ------------------------------------------------------------------ outbox
class Outbox(Protocol):
    """The part of the core a functional block may use."""

    @property
    def model(self) -> DeviceModel:
        """The device model (blocks read it; :meth:`update` changes a value)."""

    @property
    def version(self) -> ProtocolVersion:
        """The OCPP version of the current (or last) connection."""

    @property
    def connected(self) -> bool:
        """The WebSocket is up (E04: events built otherwise are ``offline``)."""

    @property
    def accepted(self) -> bool:
        """The CSMS accepted the BootNotification (B01)."""

    @property
    def online(self) -> bool:
        """Connected and Accepted: station-initiated messages may go out now."""

    @property
    def utc_offset_s(self) -> float:
        """UTC epoch seconds = monotonic ``now`` + this (corrected from the CSMS clock)."""

    def utc_now(self, now: float) -> str:
        """``now`` as an OCPP timestamp."""

    def new_id(self) -> str:
        """A fresh unique identifier (transaction ids)."""

    def next_event_id(self) -> int:
        """The next NotifyEvent eventId: one sequence for every block, continued
        across restarts (a CSMS tells events apart by it)."""

    def emit(self, action: BlockAction) -> None:
        """Hand an action to the adapter, after those emitted before it."""

    def update(self, component: ComponentKey, variable: VariableKey, value: str) -> None:
        """The station changes a variable; persisted if the variable is persistent."""

    def send(
        self,
        action: str,
        payload: JsonObject,
        *,
        requested_by_csms: bool = False,
        on_result: OnResult | None = None,
        on_failure: OnFailure | None = None,
    ) -> None:
        """A volatile CALL: sent once allowed (B02: while Pending only when
        ``requested_by_csms``), forgotten when the connection is lost."""

    def enqueue(
        self,
        action: str,
        payload: JsonObject,
        kind: MessageKind | None,
        *,
        requested_by_csms: bool = False,
    ) -> None:
        """A message that is durable when ``kind`` is given (or QueueAllMessages and
        not ``requested_by_csms``), else as :meth:`send`."""

    def queued(self, *, in_flight: bool = True) -> tuple[QueuedMessage, ...]:
        """The durable queue, oldest first; ``in_flight=False`` leaves out the
        message that is on its way."""

    def reconnect(self, reason: str) -> None:
        """Close and reconnect once the current answer is out and our own
        outstanding CALL, if any, has been answered."""


class Block:
    """A functional block: the base class supplies hooks that do nothing."""

    def handlers(self) -> Mapping[str, Handler]:
        return {}

    def on_event(self, event: StationEvent, now: float) -> None:
        """Every station event (a block ignores those of other blocks)."""

    def on_clock(self, now: float) -> None:
        """Every input, whatever the link state: act on what is due by the clock."""

    def handle_timer(self, now: float) -> None:
        """A timer input while connected, before the send pump."""

    def next_deadline(self) -> float | None:
        """When ``on_clock`` / ``handle_timer`` must run next (monotonic seconds)."""
        return None

    def on_queued_result(self, message: QueuedMessage, result: JsonObject, now: float) -> None:
        """The CSMS answered the durable ``message`` with ``result`` (before it leaves
        the queue)."""
