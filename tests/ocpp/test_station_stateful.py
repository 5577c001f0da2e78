"""Random sessions against the core: the OCPP-J and registration invariants hold throughout."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
        self.outstanding: tuple[list[Any], float] | None = None
        self.accepted = False
        self.acked_seq: dict[str, list[int]] = {}
        #: eventType of every TransactionEvent built, per transaction, in seqNo order
        self.tx_types: dict[str, list[tuple[int, str]]] = {}
        self.wh = 0.0
        self.frames_seen = 0

    # ------------------------------------------------------------ bookkeeping
    def take(self, frames: list[Any], incoming_id: str | None = None) -> None:
        answers = [f for f in frames if f[0] in (3, 4)]
        if incoming_id is not None:
            # every incoming CALL: exactly one answer, right away
            assert [f[1] for f in answers] == [incoming_id]
        else:
            assert answers == []
        for message in self.h.station.queued_messages:
            if message.action == "TransactionEvent":
                p = message.payload
                entry = (p["seqNo"], p["eventType"])
                seen = self.tx_types.setdefault(p["transactionInfo"]["transactionId"], [])
                if entry not in seen:
                    seen.append(entry)
        timed = self.h.timeline[len(self.h.timeline) - len(frames) :]
        for sent_at, frame in ((t, f) for t, f in timed if f[0] == 2):
            if self.outstanding is not None:
                # one outstanding CALL: a new one only after MessageTimeout
                assert sent_at >= self.outstanding[1] + MESSAGE_TIMEOUT
            if not self.accepted:
                assert frame[2] == "BootNotification"
            self.outstanding = (frame, sent_at)

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
        frame = self.outstanding[0]
        self.outstanding = None
        if not ok:
            self.take(self.h.receive([4, frame[1], "InternalError", "", {}]))
            return
        if frame[2] == "BootNotification":
            payload = boot_result(status, 20)
            self.accepted = self.accepted or status == "Accepted"
        else:
            payload = minimal_result(frame[2])
        if frame[2] == "TransactionEvent":
            tx = frame[3]["transactionInfo"]["transactionId"]
            self.acked_seq.setdefault(tx, []).append(frame[3]["seqNo"])
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
            "unsupported": [2, "c3", "SetChargingProfile", {}],
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
    def seq_no_per_transaction_starts_at_zero_and_never_goes_back(self) -> None:
        for seqs in self.acked_seq.values():
            assert seqs[0] == 0
            assert all(a <= b for a, b in itertools.pairwise(seqs))

    @invariant()
    def the_store_mirrors_the_queue(self) -> None:
        assert sorted(self.h.store.queue) == [m.seq for m in self.h.station.queued_messages]


TestStationSessions = StationSessions.TestCase
TestStationSessions.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
