"""Durable outgoing message queue: the pure scheduler (OCPP 2.0.1 Part 2 E, B).

Theory of operation: transaction-related messages (and, with
``OCPPCommCtrlr.QueueAllMessages = true``, all others) go through this queue.
The core pushes a message, gets back the :class:`QueuedMessage` (the adapter
stores it *before* it is sent) and the messages dropped to make room.  Delivery
is strictly in push order: only the head may be in flight.

Retries: when the CSMS does not process the head (no answer within
MessageTimeout, or a CALLERROR), the n-th retry is due MessageAttemptInterval·n
after the failure was noticed -- with a timeout that is
MessageTimeout + MessageAttemptInterval·n after the previous attempt
(E13.FR.02/03, TC_E_41/E_42/E_50/E_51).  After MessageAttempts attempts the
message is discarded, whatever its kind (E13.FR.04: otherwise one message the
CSMS keeps refusing would block all later ones).  Nothing is renumbered: the
seqNo gap tells the CSMS which TransactionEvent it never got.  A connection
loss is not a failure of the CSMS: the message keeps its attempt count and is
resent after reconnect.

Bound (this project's policy): at most ``capacity`` entries.  When full, drop
the oldest message that is not transaction-related; failing that, the oldest
TransactionEvent ``Updated`` (a meter sample: the CSMS sees a seqNo gap).
``Started`` and ``Ended`` events are never dropped -- if only those remain the
queue grows beyond the bound and says so.

Pure: no clock (``now`` is an argument), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any


class MessageKind(Enum):
    """How precious a queued message is (drop order, least precious first)."""

    OTHER = "other"
    TX_UPDATE = "tx_update"  # TransactionEvent Updated
    TX_BOUNDARY = "tx_boundary"  # TransactionEvent Started / Ended: never dropped


@dataclass(frozen=True)
class QueuedMessage:
    seq: int
    action: str
    payload: dict[str, Any]
    kind: MessageKind
    attempts: int = 0
    #: monotonic time before which the message is not (re)sent; not persisted.
    not_before: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """OCPPCommCtrlr.MessageAttempts / MessageAttemptInterval (instance TransactionEvent)."""

    attempts: int
    interval_s: float


@dataclass(frozen=True)
class Retry:
    message: QueuedMessage


@dataclass(frozen=True)
class GaveUp:
    message: QueuedMessage


class MessageQueue:
    def __init__(self, entries: Iterable[QueuedMessage], capacity: int) -> None:
        self._entries = sorted(entries, key=lambda m: m.seq)
        self._capacity = capacity
        self._next_seq = (self._entries[-1].seq + 1) if self._entries else 1
        self.overflowing = False

    def __len__(self) -> int:
        return len(self._entries)

    def messages(self) -> tuple[QueuedMessage, ...]:
        return tuple(self._entries)

    def push(
        self, action: str, payload: dict[str, Any], kind: MessageKind
    ) -> tuple[QueuedMessage, list[QueuedMessage]]:
        """Append a message; returns it and the messages dropped to make room."""
        message = QueuedMessage(self._next_seq, action, payload, kind)
        self._next_seq += 1
        dropped: list[QueuedMessage] = []
        while len(self._entries) >= self._capacity:
            victim = self._victim()
            if victim is None:
                break
            self._entries.remove(victim)
            dropped.append(victim)
        self.overflowing = len(self._entries) >= self._capacity
        self._entries.append(message)
        return message, dropped

    def _victim(self) -> QueuedMessage | None:
        # The head may be in flight: never drop it.
        candidates = self._entries[1:]
        for kind in (MessageKind.OTHER, MessageKind.TX_UPDATE):
            for message in candidates:
                if message.kind is kind:
                    return message
        return None

    def ready(self, now: float) -> QueuedMessage | None:
        """The head, if it may be sent at ``now``."""
        if self._entries and self._entries[0].not_before <= now:
            return self._entries[0]
        return None

    def next_deadline(self) -> float | None:
        """When the head becomes ready (only meaningful while it waits for a retry)."""
        if self._entries and self._entries[0].not_before > 0:
            return self._entries[0].not_before
        return None

    def acknowledge(self, seq: int) -> None:
        """The CSMS processed message ``seq`` (the head)."""
        self._entries = [m for m in self._entries if m.seq != seq]

    def failed(self, seq: int, now: float, policy: RetryPolicy) -> Retry | GaveUp:
        """The CSMS did not process message ``seq`` (timeout or CALLERROR)."""
        index = next(i for i, m in enumerate(self._entries) if m.seq == seq)
        message = self._entries[index]
        attempts = message.attempts + 1
        if attempts >= policy.attempts:
            del self._entries[index]
            return GaveUp(replace(message, attempts=attempts))
        # n-th retry after MessageAttemptInterval * n (TC_E_41).
        updated = replace(message, attempts=attempts, not_before=now + policy.interval_s * attempts)
        self._entries[index] = updated
        return Retry(updated)
