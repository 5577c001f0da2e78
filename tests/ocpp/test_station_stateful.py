"""Random sessions against the core: the OCPP-J and registration invariants hold throughout."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.station import Link
from chargepoint.ocpp.station_io import (
    ConnectorStatus,
    ConnectorStatusChanged,
    EvseActivity,
    IdToken,
    MeterSample,
    SessionEnded,
    SessionStarted,
    StoppedReason,
)

from .helpers import Harness, boot_result, minimal_result

MESSAGE_TIMEOUT = 30


def meter(evse_id: int, wh: float) -> MeterSample:
    return MeterSample(evse_id, wh, 0, 3000, 230, 13, None)


#: A TransactionEvent as (transactionId, seqNo).
TxKey = tuple[str, int]


def tx_key(frame: list[Any]) -> TxKey | None:
    """The TransactionEvent a CALL frame carries, if it carries one."""
    if frame[2] != "TransactionEvent":
        return None
    return frame[3]["transactionInfo"]["transactionId"], frame[3]["seqNo"]


@dataclass
class Transmission:
    """One CALL the station sent, as the CSMS (the test) sees it."""

    frame: list[Any]
    sent_at: float
    #: how the station's attempt ended: "failed", "delivered" or "interrupted"; None: open
    outcome: str | None = None


class StationSessions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(
            overrides={
                "SampledDataCtrlr.TxUpdatedInterval": "10",
                "OCPPCommCtrlr.RetryBackOffRandomRange": "3",
            }
        )
        self.h.station.start(self.h.now)
        self.h.started = True
        self.outstanding: Transmission | None = None
        self.accepted = False
        #: seqNos the CSMS processed (answered with a CALLRESULT, in time or late), per transaction
        self.acked_seq: dict[str, list[int]] = {}
        #: failed attempts per TransactionEvent, counted as the station must count them (E13):
        #: a CALLERROR or no answer within MessageTimeout; a lost connection does not count
        self.failures: dict[TxKey, int] = {}
        #: TransactionEvents the station got a CALLRESULT for in time (it dequeues them)
        self.delivered: set[TxKey] = set()
        #: eventType of every TransactionEvent built, per transaction, in seqNo order
        self.tx_types: dict[str, list[tuple[int, str]]] = {}
        self.wh = 0.0
        self.frames_seen = 0

    # ------------------------------------------------------------ bookkeeping
    def note_tx_event(self, payload: dict[str, Any]) -> None:
        entry = (payload["seqNo"], payload["eventType"])
        seen = self.tx_types.setdefault(payload["transactionInfo"]["transactionId"], [])
        if entry not in seen:
            seen.append(entry)

    def settle(self, sent: Transmission, outcome: str) -> None:
        """Record how the station's attempt ``sent`` ended (once)."""
        if sent.outcome is not None:
            return
        sent.outcome = outcome
        key = tx_key(sent.frame)
        if key is None:
            return
        if outcome == "failed":
            self.failures[key] = self.failures.get(key, 0) + 1
        elif outcome == "delivered":
            self.delivered.add(key)

    def timed_out(self, sent: Transmission, at: float) -> bool:
        return at >= sent.sent_at + MESSAGE_TIMEOUT

    def take(self, frames: list[Any], incoming_id: str | None = None) -> None:
        answers = [f for f in frames if f[0] in (3, 4)]
        if incoming_id is not None:
            # every incoming CALL: exactly one answer, right away
            assert [f[1] for f in answers] == [incoming_id]
        else:
            assert answers == []
        for message in self.h.station.queued_messages:
            if message.action == "TransactionEvent":
                self.note_tx_event(message.payload)
        timed = self.h.timeline[len(self.h.timeline) - len(frames) :]
        for sent_at, frame in ((t, f) for t, f in timed if f[0] == 2):
            if self.outstanding is not None:
                # one outstanding CALL: a new one only after MessageTimeout
                assert self.timed_out(self.outstanding, sent_at)
                self.settle(self.outstanding, "failed")
            if not self.accepted:
                assert frame[2] == "BootNotification"
            if frame[2] == "TransactionEvent":
                self.note_tx_event(frame[3])
            self.outstanding = Transmission(frame, sent_at)
        if self.outstanding is not None and self.timed_out(self.outstanding, self.h.now):
            self.settle(self.outstanding, "failed")  # no answer within MessageTimeout

    # ------------------------------------------------------------------ rules
    @precondition(lambda self: self.h.station.link is not Link.CONNECTED)
    @rule()
    def connect(self) -> None:
        deadline = self.h.station.next_deadline()
        if self.h.station.link is Link.OFFLINE:
            assert deadline is not None
            self.take(self.h.advance(deadline - self.h.now))
        self.outstanding = None
        self.h.station.connection_opened(self.h.now, self.h.station.version)
        self.take(self.h.drain())

    @precondition(lambda self: self.h.station.link is Link.CONNECTED)
    @rule()
    def lose_connection(self) -> None:
        if self.outstanding is not None:
            # not a failure of the CSMS: the station resends it after reconnect
            self.settle(self.outstanding, "interrupted")
        self.h.station.connection_lost(self.h.now, "test")
        self.outstanding = None
        self.take(self.h.drain())

    @precondition(lambda self: self.h.station.link is Link.CONNECTING)
    @rule()
    def connection_fails(self) -> None:
        self.h.station.connection_failed(self.h.now, "refused")
        self.take(self.h.drain())

    @rule(seconds=st.floats(0, 120))
    def time_passes(self, seconds: float) -> None:
        self.take(self.h.advance(seconds))

    @precondition(
        lambda self: self.outstanding is not None and self.h.station.link is Link.CONNECTED
    )
    @rule(ok=st.booleans(), status=st.sampled_from(["Accepted", "Pending", "Rejected"]))
    def csms_answers(self, ok: bool, status: str) -> None:
        assert self.outstanding is not None
        frame = self.outstanding.frame
        # after MessageTimeout the station has already counted a failure and ignores the answer
        self.settle(self.outstanding, "delivered" if ok else "failed")
        self.outstanding = None
        if not ok:
            self.take(self.h.receive([4, frame[1], "InternalError", "", {}]))
            return
        if frame[2] == "BootNotification":
            payload = boot_result(status, 20)
            self.accepted = self.accepted or status == "Accepted"
        else:
            payload = minimal_result(frame[2])
        key = tx_key(frame)
        if key is not None:
            self.acked_seq.setdefault(key[0], []).append(key[1])
        self.take(self.h.receive([3, frame[1], payload]))

    @precondition(lambda self: self.h.station.link is Link.CONNECTED)
    @rule(kind=st.sampled_from(["get", "unknown", "malformed", "unsupported"]))
    def csms_calls(self, kind: str) -> None:
        frame: Any = {
            "get": [
                2,
                "c1",
                "GetVariables",
                {
                    "getVariableData": [
                        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Nope"}}
                    ]
                },
            ],
            "unknown": [2, "c2", "Teleport", {}],
            "unsupported": [2, "c3", "ReserveNow", {}],
            "malformed": [2, "c4", "Reset"],
        }[kind]
        self.take(self.h.receive(frame), incoming_id=frame[1])

    @rule(evse=st.sampled_from([1, 2]), what=st.sampled_from(["start", "sample", "end", "status"]))
    def station_event(self, evse: int, what: str) -> None:
        self.wh += 10
        event: Any = {
            "start": SessionStarted(evse, 1, IdToken("T"), meter(evse, self.wh)),
            "sample": meter(evse, self.wh),
            "end": SessionEnded(evse, StoppedReason.LOCAL, meter(evse, self.wh)),
            "status": ConnectorStatusChanged(evse, 1, ConnectorStatus.OCCUPIED),
        }[what]
        self.h.station.station_event(self.h.now, event)
        self.take(self.h.drain())

    @rule(
        evse=st.sampled_from([1, 2]),
        flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
        reason=st.none() | st.sampled_from(list(StoppedReason)),
    )
    def evse_activity(
        self, evse: int, flags: tuple[bool, bool, bool, bool], reason: StoppedReason | None
    ) -> None:
        self.wh += 10
        ev, auth, closed, energy = flags
        event = EvseActivity(
            evse,
            1,
            ev_connected=ev,
            authorized=auth,
            power_path_closed=closed,
            energy_transfer=energy,
            meter=meter(evse, self.wh),
            id_token=IdToken("T") if auth else None,
            stopped_reason=reason,
        )
        self.h.station.station_event(self.h.now, event)
        self.take(self.h.drain())

    # ------------------------------------------------------------- invariants
    @invariant()
    def each_transaction_starts_once_and_nothing_follows_its_end(self) -> None:
        for entries in self.tx_types.values():
            types = [t for _, t in sorted(entries)]
            assert types.count("Started") <= 1
            assert "Started" not in types[1:]
            assert "Ended" not in types[:-1]

    @invariant()
    def seq_nos_count_from_zero_without_gaps_or_reuse(self) -> None:
        # E01.FR.07: each event of a transaction takes the next seqNo, from 0; a discarded
        # event does not give its seqNo to a later one
        for entries in self.tx_types.values():
            assert sorted(seq for seq, _ in entries) == list(range(len(entries)))

    @invariant()
    def a_transaction_event_is_discarded_only_after_message_attempts_failures(self) -> None:
        # E13.FR.02-04: retried until MessageAttempts attempts failed, then discarded;
        # never earlier, never kept longer
        attempts = self.h.model.int_value(dm.OCPP_COMM, dm.MESSAGE_ATTEMPTS_TX)
        queued = {
            (m.payload["transactionInfo"]["transactionId"], m.payload["seqNo"])
            for m in self.h.station.queued_messages
            if m.action == "TransactionEvent"
        }
        for tx, entries in self.tx_types.items():
            for seq, _ in entries:
                failures = self.failures.get((tx, seq), 0)
                if (tx, seq) in queued or (tx, seq) in self.delivered:
                    assert failures < attempts
                else:
                    assert failures == attempts

    @invariant()
    def the_csms_can_tell_from_seq_no_what_it_missed(self) -> None:
        # The seqNos the CSMS processed never go back (a retry after a timeout may repeat
        # one), and every one it lacks below the highest was discarded after MessageAttempts
        # failures (E13.FR.04), a Started (seqNo 0) included: the gap is how it knows.
        attempts = self.h.model.int_value(dm.OCPP_COMM, dm.MESSAGE_ATTEMPTS_TX)
        for tx, seqs in self.acked_seq.items():
            assert all(a <= b for a, b in itertools.pairwise(seqs))
            for missing in sorted(set(range(max(seqs))) - set(seqs)):
                assert self.failures.get((tx, missing), 0) == attempts

    @invariant()
    def the_store_mirrors_the_queue(self) -> None:
        assert sorted(self.h.store.queue) == [m.seq for m in self.h.station.queued_messages]


TestStationSessions = StationSessions.TestCase
TestStationSessions.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)


def check_invariants(state: StationSessions) -> None:
    state.each_transaction_starts_once_and_nothing_follows_its_end()
    state.seq_nos_count_from_zero_without_gaps_or_reuse()
    state.a_transaction_event_is_discarded_only_after_message_attempts_failures()
    state.the_csms_can_tell_from_seq_no_what_it_missed()
    state.the_store_mirrors_the_queue()


def test_regression_started_given_up_after_message_attempts() -> None:
    """Found by hypothesis: the Started event fails three times (a timeout, then two
    CALLERRORs) and is discarded (E13.FR.04); the CSMS then processes the Updated with
    seqNo 1.  The old invariant wanted every transaction's processed seqNos to start at 0,
    which E13.FR.04 does not allow the station to promise."""
    state = StationSessions()
    steps: list[tuple[str, dict[str, Any]]] = [
        ("connect", {}),
        ("csms_answers", {"ok": True, "status": "Accepted"}),
        *[("time_passes", {"seconds": 0.0})] * 3,
        *[("csms_answers", {"ok": False, "status": "Accepted"})] * 2,
        ("station_event", {"evse": 1, "what": "start"}),
        ("time_passes", {"seconds": 90.0}),
        ("csms_answers", {"ok": False, "status": "Accepted"}),
        *[("time_passes", {"seconds": 0.0})] * 3,
        ("station_event", {"evse": 1, "what": "sample"}),
        ("csms_answers", {"ok": False, "status": "Accepted"}),
        ("time_passes", {"seconds": 8.0}),
        ("time_passes", {"seconds": 112.0}),
        *[("csms_answers", {"ok": False, "status": "Accepted"})] * 2,
        ("csms_answers", {"ok": True, "status": "Accepted"}),
    ]
    check_invariants(state)
    for name, arguments in steps:
        getattr(state, name)(**arguments)
        check_invariants(state)
    state.teardown()

    [(tx, entries)] = state.tx_types.items()
    assert sorted(entries) == [(0, "Started"), (1, "Updated")]
    assert state.failures[(tx, 0)] == 3  # MessageAttempts: then discarded
    # the Updated keeps seqNo 1: the CSMS can tell that seqNo 0 never reached it
    assert state.acked_seq == {tx: [1]}
    assert state.h.station.queued_messages == ()
