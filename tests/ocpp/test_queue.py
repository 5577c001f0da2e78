"""The durable queue's pure scheduler: order, retries, bound."""

from __future__ import annotations

from chargepoint.ocpp.queue import GaveUp, MessageKind, MessageQueue, Retry, RetryPolicy

POLICY = RetryPolicy(attempts=3, interval_s=10)


def test_delivery_is_in_push_order_and_head_only() -> None:
    q = MessageQueue((), capacity=10)
    first, _ = q.push("TransactionEvent", {"n": 1}, MessageKind.TX_BOUNDARY)
    q.push("TransactionEvent", {"n": 2}, MessageKind.TX_UPDATE)
    assert q.ready(0) == first
    q.acknowledge(first.seq)
    assert q.ready(0) is not None and q.ready(0).payload == {"n": 2}  # type: ignore[union-attr]


def test_nth_retry_waits_interval_times_n_then_gives_up() -> None:
    q = MessageQueue((), capacity=10)
    m, _ = q.push("TransactionEvent", {}, MessageKind.TX_BOUNDARY)
    first = q.failed(m.seq, now=100, policy=POLICY)
    assert isinstance(first, Retry) and first.message.not_before == 110
    assert q.ready(109) is None and q.ready(110) is not None
    second = q.failed(m.seq, now=140, policy=POLICY)
    assert isinstance(second, Retry) and second.message.not_before == 160
    assert isinstance(q.failed(m.seq, now=200, policy=POLICY), GaveUp)
    assert len(q) == 0


def test_sequence_numbers_continue_after_reload() -> None:
    q = MessageQueue((), capacity=10)
    a, _ = q.push("X", {}, MessageKind.OTHER)
    b, _ = q.push("X", {}, MessageKind.OTHER)
    reloaded = MessageQueue(q.messages()[::-1], capacity=10)
    assert reloaded.ready(0) == a
    c, _ = reloaded.push("X", {}, MessageKind.OTHER)
    assert c.seq == b.seq + 1


def test_full_queue_drops_other_then_updates_never_boundaries() -> None:
    q = MessageQueue((), capacity=4)
    start, _ = q.push("TransactionEvent", {"e": "Started"}, MessageKind.TX_BOUNDARY)
    update, _ = q.push("TransactionEvent", {"e": "Updated"}, MessageKind.TX_UPDATE)
    other, _ = q.push("StatusNotification", {}, MessageKind.OTHER)
    q.push("TransactionEvent", {"e": "Updated"}, MessageKind.TX_UPDATE)
    _, dropped = q.push("TransactionEvent", {"e": "Ended"}, MessageKind.TX_BOUNDARY)
    assert dropped == [other]
    _, dropped = q.push("TransactionEvent", {"e": "Started"}, MessageKind.TX_BOUNDARY)
    assert dropped == [update]
    q.push("TransactionEvent", {"e": "Ended"}, MessageKind.TX_BOUNDARY)
    q.push("TransactionEvent", {"e": "Started"}, MessageKind.TX_BOUNDARY)
    # only boundaries left: the bound gives way, nothing precious is lost
    assert all(m.kind is MessageKind.TX_BOUNDARY for m in q.messages())
    assert len(q) == 5 and q.overflowing
    assert q.messages()[0] == start
