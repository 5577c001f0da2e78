"""NotifyEvent ids: one sequence for every block, never reused after a restart."""

from __future__ import annotations

from typing import Any

from chargepoint.ocpp.station_io import FaultRaised

from .helpers import FakeStore, Harness, calls


def event_ids(h: Harness) -> list[int]:
    return [e["eventId"] for f in calls(h.sent, "NotifyEvent") for e in f[3]["eventData"]]


def fault(h: Harness, code: str) -> list[Any]:
    h.station.station_event(h.now, FaultRaised(1, code, "test"))
    return h.answer_all(h.drain())


def test_event_ids_rise_and_continue_after_a_restart() -> None:
    store = FakeStore()
    h = Harness(store)
    h.answer_all(h.boot())
    fault(h, "rcd")
    fault(h, "over_current")
    first = event_ids(h)
    assert first == sorted(set(first)) and first
    assert store.state["event_ids"]["reserved"] >= first[-1]
    # the next run starts beyond the block the previous one reserved
    again = Harness(store)
    again.answer_all(again.boot())
    fault(again, "rcd")
    assert min(event_ids(again)) > max(first)
