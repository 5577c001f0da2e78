"""SECC-side SLAC matcher on a fake clock: every timer and retry path, and a
hypothesis test over random frame sequences and timer expiries."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chargepoint.errors import LocalProtocolError
from chargepoint.iec61851.cp_state import CpState
from chargepoint.slac import (
    AttenCharInd,
    AttenCharRsp,
    AttenProfileInd,
    MnbcSoundInd,
    SlacMatchCnf,
    SlacMatchReq,
    SlacMessage,
    SlacParmCnf,
    SlacParmReq,
    StartAttenCharInd,
    ValidateCnf,
    ValidateReq,
    nid_from_nmk,
)
from chargepoint.slac.matcher import (
    Action,
    CpChanged,
    Event,
    KeySetResult,
    LinkLost,
    LinkReady,
    LinkStatusResult,
    MatchingFailed,
    MatchingStarted,
    MmeReceived,
    PilotRequest,
    RequestLinkStatus,
    RequestPilot,
    Restart,
    SendMme,
    SetKey,
    SlacMatcher,
    SlacSettings,
    Terminate,
    average_attenuation,
)
from chargepoint.slac.states import MatcherState

HOST = bytes.fromhex("02aabbccdd01")
MODEM = bytes.fromhex("00b052000099")
EV = bytes.fromhex("0a0000000001")
EV2 = bytes.fromhex("0a0000000002")
RUN = bytes.fromhex("1111111111111111")
RUN2 = bytes.fromhex("2222222222222222")
M = TypeVar("M")
PROFILE = tuple(20 + (g % 5) for g in range(58))


class Counting:
    """Deterministic 'random' source: 16 bytes of 01, then 02, ..."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self, n: int) -> bytes:
        return bytes([next(self._n) % 256]) * n


@dataclass
class Harness:
    settings: SlacSettings = field(default_factory=SlacSettings)
    now: float = 100.0
    actions: list[Action] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.m = SlacMatcher(self.settings, host_mac=HOST, random_bytes=Counting())
        self.actions += self.m.start(self.now)

    # -- driving ---------------------------------------------------------------
    def feed(self, event: Event) -> list[Action]:
        out = self.m.handle(event, self.now)
        self.actions += out
        return out

    def rx(self, source: bytes, message: SlacMessage) -> list[Action]:
        return self.feed(MmeReceived(source, message))

    def advance(self, dt: float) -> list[Action]:
        """Move the fake clock, firing every deadline on the way."""
        target = self.now + dt
        out: list[Action] = []
        while (d := self.m.next_deadline()) is not None and d <= target:
            self.now = max(self.now, d)
            out += self.m.handle_timer(self.now)
        self.now = target
        self.actions += out
        return out

    def confirm_key(self, ok: bool = True) -> list[Action]:
        return self.feed(KeySetResult(self.last(SetKey).nmk, ok=ok))

    # -- looking -----------------------------------------------------------------
    def last(self, kind: type) -> Any:
        found = [a for a in self.actions if isinstance(a, kind)]
        assert found, f"no {kind.__name__} in {self.actions}"
        return found[-1]

    def sent(self, kind: type, out: list[Action] | None = None) -> list[SendMme]:
        return [
            a
            for a in (self.actions if out is None else out)
            if isinstance(a, SendMme) and isinstance(a.message, kind)
        ]

    def messages(self, kind: type[M], out: list[Action] | None = None) -> list[M]:
        return [a.message for a in self.sent(kind, out) if isinstance(a.message, kind)]

    def state(self) -> MatcherState:
        """Read through a call: mypy must not narrow it across events."""
        return self.m.state

    # -- a car ----------------------------------------------------------------------
    def parm(self, ev: bytes = EV, run: bytes = RUN) -> list[Action]:
        return self.rx(ev, SlacParmReq(run_id=run))

    def sounding(self, ev: bytes = EV, run: bytes = RUN, profiles: int = 10) -> list[Action]:
        out = self.rx(
            ev, StartAttenCharInd(num_sounds=10, time_out=6, forwarding_sta=ev, run_id=run)
        )
        for i in range(profiles):
            out += self.rx(ev, MnbcSoundInd(count=9 - i, run_id=run))
            out += self.rx(MODEM, AttenProfileInd(pev_mac=ev, aag=PROFILE))
        return out

    def rsp(self, ev: bytes = EV, run: bytes = RUN) -> list[Action]:
        return self.rx(ev, AttenCharRsp(source_address=ev, run_id=run))

    def match_req(self, ev: bytes = EV, run: bytes = RUN) -> list[Action]:
        return self.rx(ev, SlacMatchReq(pev_mac=ev, evse_mac=HOST, run_id=run))

    def link_answer(self, up: bool) -> list[Action]:
        return self.feed(LinkStatusResult(self.last(RequestLinkStatus).token, up))

    def to_matched(self, ev: bytes = EV, run: bytes = RUN) -> None:
        if self.m.state is MatcherState.IDLE:
            self.feed(CpChanged(CpState.B))
        self.parm(ev, run)
        self.sounding(ev, run)
        self.rsp(ev, run)
        self.match_req(ev, run)
        assert self.m.state is MatcherState.MATCHED

    def to_linked(self) -> LinkReady:
        self.confirm_key()
        self.to_matched()
        self.advance(self.settings.link_poll_s)
        self.link_answer(True)
        assert self.m.state is MatcherState.LINKED
        ready: LinkReady = self.last(LinkReady)
        return ready


# -- start and the happy path ---------------------------------------------------------


def test_start_keys_the_modem_with_a_fresh_nmk_and_its_nid() -> None:
    h = Harness()
    key = h.last(SetKey)
    assert key.nmk == b"\x01" * 16
    assert key.nid == nid_from_nmk(key.nmk)
    assert h.state() is MatcherState.IDLE
    assert h.m.next_deadline() == pytest.approx(h.now + h.settings.key_timeout_s)


def test_handle_before_start_is_a_local_error() -> None:
    m = SlacMatcher(SlacSettings(), host_mac=HOST, random_bytes=Counting())
    with pytest.raises(LocalProtocolError):
        m.handle(CpChanged(CpState.B), 0.0)
    assert m.handle_timer(0.0) == []
    assert m.next_deadline() is None


def test_full_match_from_cp_b_to_link_ready() -> None:
    h = Harness()
    h.confirm_key()
    plugged_at = h.now
    h.feed(CpChanged(CpState.B))
    assert h.state() is MatcherState.WAITING
    assert h.m.next_deadline() == pytest.approx(plugged_at + 40.0)  # TT_EVSE_SLAC_init

    h.now += 1.5
    out = h.parm()
    cnf = h.sent(SlacParmCnf, out)[0]
    assert cnf.destination == EV  # unicast to the car's host MAC
    assert cnf.message == SlacParmCnf(
        forwarding_sta=EV, run_id=RUN, num_sounds=10, time_out=6, resp_type=1
    )
    assert MatchingStarted(EV, RUN) in out

    h.now += 0.25
    out = h.sounding()
    assert h.sent(AttenCharInd, out)[0].destination == EV
    ind = h.messages(AttenCharInd, out)[0]
    assert ind.num_sounds == 10
    assert ind.aag == PROFILE
    assert ind.run_id == RUN and ind.source_address == EV

    h.now += 0.05
    h.rsp()
    h.now += 0.1
    out = h.match_req()
    match_cnf = h.messages(SlacMatchCnf, out)[0]
    key = h.last(SetKey)
    assert (match_cnf.nmk, match_cnf.nid) == (key.nmk, key.nid)
    assert (match_cnf.pev_mac, match_cnf.evse_mac, match_cnf.run_id) == (EV, HOST, RUN)
    assert h.state() is MatcherState.MATCHED

    out = h.advance(0.1)
    assert [a for a in out if isinstance(a, RequestLinkStatus)]
    h.link_answer(False)
    h.advance(0.1)
    out = h.link_answer(True)
    ready = next(a for a in out if isinstance(a, LinkReady))
    assert (ready.ev_mac, ready.run_id, ready.nid) == (EV, RUN, key.nid)
    assert ready.num_sounds == 10
    assert ready.attenuation_db == pytest.approx(sum(PROFILE) / 58)
    assert ready.match_time_s == pytest.approx(h.now - plugged_at)
    assert h.m.link == ready


# -- averaging and the sound window ------------------------------------------------------


def test_average_rounds_half_up_and_stays_within_1_to_254() -> None:
    sums = [3, 5, 0, 255 * 2, 7] + [0] * 53
    assert average_attenuation(sums, 2, 5) == (2, 3, 1, 254, 4)


def test_window_closes_at_tt_evse_match_mnbc_with_the_real_count() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding(profiles=7)  # three sounds lost
    assert not h.sent(AttenCharInd)
    out = h.advance(0.599)
    assert not h.sent(AttenCharInd, out)
    out = h.advance(0.002)
    ind = h.messages(AttenCharInd, out)[0]
    assert ind.num_sounds == 7
    assert ind.aag == PROFILE


def test_a_car_asking_for_a_longer_window_gets_it_up_to_the_cap() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.rx(EV, StartAttenCharInd(num_sounds=10, time_out=10, forwarding_sta=EV, run_id=RUN))
    assert not h.sent(AttenCharInd, h.advance(0.9))
    assert h.sent(AttenCharInd, h.advance(0.11))


def test_no_profile_at_all_reports_the_worst_attenuation() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding(profiles=0)
    ind = h.messages(AttenCharInd, h.advance(0.6))[0]
    assert ind.num_sounds == 0
    assert ind.aag == (254,) * 58


def test_start_atten_char_copies_do_not_restart_the_window() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    start = StartAttenCharInd(num_sounds=10, time_out=6, forwarding_sta=EV, run_id=RUN)
    h.rx(EV, start)
    h.now += 0.3
    h.rx(EV, start)
    h.rx(EV, start)
    assert h.m.ignored["CM_START_ATTEN_CHAR.IND copy"] == 2
    assert h.sent(AttenCharInd, h.advance(0.31))  # 0.6 s after the first one


def test_profiles_of_another_car_or_outside_the_window_are_ignored() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.rx(MODEM, AttenProfileInd(pev_mac=EV, aag=PROFILE))  # no session yet
    h.parm()
    h.rx(MODEM, AttenProfileInd(pev_mac=EV, aag=PROFILE))  # before START_ATTEN_CHAR
    h.rx(EV, MnbcSoundInd(count=9, run_id=RUN))
    h.rx(EV, StartAttenCharInd(num_sounds=2, time_out=6, forwarding_sta=EV, run_id=RUN))
    h.rx(MODEM, AttenProfileInd(pev_mac=EV2, aag=(200,) * 58))
    h.rx(EV, MnbcSoundInd(count=1, run_id=RUN2))
    h.rx(MODEM, AttenProfileInd(pev_mac=EV, aag=PROFILE))
    h.rx(MODEM, AttenProfileInd(pev_mac=EV, aag=PROFILE))
    ind = h.messages(AttenCharInd)[0]
    assert ind.num_sounds == 2 and ind.aag == PROFILE
    assert h.m.ignored["CM_ATTEN_PROFILE.IND outside a sound window"] == 3


# -- timers and retries ---------------------------------------------------------------------


def test_no_start_atten_char_within_tt_match_sequence_drops_the_session() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.advance(0.401)
    assert h.m.session_count == 0
    h.rx(EV, StartAttenCharInd(num_sounds=10, time_out=6, forwarding_sta=EV, run_id=RUN))
    assert h.m.ignored["CM_START_ATTEN_CHAR.IND for no session"] == 1
    # waiting again for the car's next attempt
    assert h.m.next_deadline() == pytest.approx(h.now - 0.001 + 40.0)


def test_atten_char_ind_is_resent_twice_then_the_session_ends() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    assert len(h.sent(AttenCharInd)) == 1
    h.advance(0.2)
    h.advance(0.2)
    sent = h.sent(AttenCharInd)
    assert len(sent) == 3  # C_EV_match_retry = 2 resends [V2G3-A09-46]
    assert sent[0] == sent[1] == sent[2]
    h.advance(0.2)
    assert len(h.sent(AttenCharInd)) == 3
    assert h.m.session_count == 0


@pytest.mark.parametrize(
    "rsp",
    [
        AttenCharRsp(source_address=EV, run_id=RUN2),
        AttenCharRsp(source_address=EV2, run_id=RUN),
        AttenCharRsp(source_address=EV, run_id=RUN, result=1),
        AttenCharRsp(source_address=EV, run_id=RUN, application_type=1),
    ],
)
def test_invalid_atten_char_rsp_is_ignored(rsp: AttenCharRsp) -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    h.rx(EV, rsp)  # [V2G3-A09-47]
    assert h.m.ignored["invalid or unexpected CM_ATTEN_CHAR.RSP"] == 1
    h.advance(0.2)
    assert len(h.sent(AttenCharInd)) == 2  # still waiting: resent


def test_no_match_request_within_tt_evse_match_session_ends_the_session() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    h.rsp()
    h.advance(9.99)
    assert h.m.session_count == 1
    h.advance(0.02)
    assert h.m.session_count == 0
    h.match_req()
    assert not h.sent(SlacMatchCnf)


@pytest.mark.parametrize(
    ("source", "match_request"),
    [
        (EV, SlacMatchReq(pev_mac=EV, evse_mac=HOST, run_id=RUN2)),
        (EV, SlacMatchReq(pev_mac=EV2, evse_mac=HOST, run_id=RUN)),
        (EV2, SlacMatchReq(pev_mac=EV, evse_mac=HOST, run_id=RUN)),
        (EV, SlacMatchReq(pev_mac=EV, evse_mac=HOST, run_id=RUN, security_type=1)),
    ],
)
def test_invalid_match_request_is_ignored(source: bytes, match_request: SlacMatchReq) -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    h.rsp()
    h.rx(source, match_request)  # [V2G3-A09-98]
    assert not h.sent(SlacMatchCnf)
    assert h.state() is MatcherState.WAITING
    h.match_req()  # the right one still works
    assert h.state() is MatcherState.MATCHED


def test_match_request_is_accepted_when_the_rsp_was_lost() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    h.match_req()
    assert h.state() is MatcherState.MATCHED


def test_a_repeated_match_request_gets_the_same_confirmation() -> None:
    h = Harness()
    h.to_linked()
    first = h.sent(SlacMatchCnf)[0]
    h.match_req()
    h.match_req(run=RUN2)  # another run: not answered
    sent = h.sent(SlacMatchCnf)
    assert sent == [first, first]


def test_repeated_parm_req_restarts_the_session() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    out = h.parm(run=RUN2)  # [V2G3-A09-16]
    assert h.messages(SlacParmCnf, out)[0].run_id == RUN2
    assert MatchingStarted(EV, RUN2) in out
    h.rx(EV, StartAttenCharInd(num_sounds=10, time_out=6, forwarding_sta=EV, run_id=RUN))
    assert h.m.ignored["CM_START_ATTEN_CHAR.IND for no session"] == 1
    # a duplicate with the same RunID is answered again, without a new notice
    out = h.parm(run=RUN2)
    assert h.sent(SlacParmCnf, out) and not [a for a in out if isinstance(a, MatchingStarted)]


def test_validate_is_answered_not_required() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.rx(EV, ValidateReq())  # outside AWAIT_MATCH: ignored
    h.sounding()
    h.rsp()
    out = h.rx(EV, ValidateReq(timer=3))
    assert h.sent(ValidateCnf, out)[0].message == ValidateCnf(result=4)


def test_parm_req_with_security_or_from_a_group_address_is_ignored() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.rx(EV, SlacParmReq(run_id=RUN, security_type=1))
    h.rx(b"\x01" + EV[1:], SlacParmReq(run_id=RUN))
    assert not h.sent(SlacParmCnf)


def test_nothing_is_answered_without_a_car_plugged_in() -> None:
    h = Harness()
    h.parm()
    h.rx(EV, SlacParmCnf(forwarding_sta=EV, run_id=RUN))  # another EVSE's answer
    assert not h.sent(SlacParmCnf)
    assert h.m.ignored["CM_SLAC_PARM.REQ in idle"] == 1


# -- crosstalk --------------------------------------------------------------------------------


def test_every_car_heard_is_answered_and_the_one_that_picks_us_wins() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm(EV, RUN)
    h.parm(EV2, RUN2)
    assert {a.destination for a in h.sent(SlacParmCnf)} == {EV, EV2}
    h.sounding(EV, RUN)
    h.sounding(EV2, RUN2)
    assert {a.destination for a in h.sent(AttenCharInd)} == {EV, EV2}
    h.rsp(EV, RUN)
    h.rsp(EV2, RUN2)
    h.match_req(EV2, RUN2)
    assert h.state() is MatcherState.MATCHED
    assert h.m.session_count == 1
    h.parm(EV, RUN)  # the other car, still trying: not while matched
    assert h.m.ignored["CM_SLAC_PARM.REQ from another car while matched"] == 1
    h.match_req(EV, RUN)
    assert [a.destination for a in h.sent(SlacMatchCnf)] == [EV2]


def test_too_many_cars_at_once_are_not_all_tracked() -> None:
    h = Harness(SlacSettings(max_sessions=2))
    h.feed(CpChanged(CpState.B))
    for i in range(3):
        h.parm(bytes([0x0A, 0, 0, 0, 1, i]), RUN)
    assert h.m.session_count == 2


# -- joining and the link ---------------------------------------------------------------------


def test_join_timeout_lets_the_car_retry_then_gives_up_with_x1() -> None:
    h = Harness()
    h.confirm_key()
    for attempt in range(3):
        h.to_matched()
        out = h.advance(12.0)
        failed = [a for a in out if isinstance(a, MatchingFailed)]
        assert failed and failed[0].final is (attempt == 2)
    assert h.state() is MatcherState.FAILED
    assert RequestPilot(PilotRequest.X1) in h.actions
    assert not [a for a in h.actions if isinstance(a, LinkReady)]


def test_stale_or_unasked_link_status_answers_are_ignored() -> None:
    h = Harness()
    h.confirm_key()
    h.to_matched()
    h.feed(LinkStatusResult(0, True))  # nothing asked yet
    h.feed(LinkStatusResult(999, True))
    assert h.state() is MatcherState.MATCHED
    h.advance(0.1)
    token = h.last(RequestLinkStatus).token
    h.advance(0.1)  # asked again: the first answer is stale
    h.feed(LinkStatusResult(token, True))
    assert h.state() is MatcherState.MATCHED
    h.link_answer(True)
    assert h.state() is MatcherState.LINKED


def test_a_link_down_three_times_in_a_row_is_lost_and_left() -> None:
    h = Harness()
    h.to_linked()
    key_before = h.last(SetKey)
    for up in (False, False, True, False, False):
        h.advance(1.0)
        h.link_answer(up)
    assert h.state() is MatcherState.LINKED  # the "up" reset the count
    h.advance(1.0)
    out = h.link_answer(False)
    assert LinkLost("power-line link down") in out
    new_key = h.last(SetKey)
    assert new_key != key_before  # left the AVLN [V2G3-M09-17]
    assert h.state() is MatcherState.WAITING


def test_the_matched_car_restarting_ends_the_link_and_starts_over() -> None:
    h = Harness()
    h.to_linked()
    out = h.parm(run=RUN2)
    assert LinkLost("the car restarted matching") in out
    assert h.state() is MatcherState.WAITING
    assert h.sent(SlacParmCnf, out)


def test_modems_without_link_status_are_ready_at_the_confirmation() -> None:
    h = Harness(SlacSettings(confirm_join=False))
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    h.rsp()
    out = h.match_req()
    assert [a for a in out if isinstance(a, LinkReady)]
    assert h.state() is MatcherState.LINKED
    assert h.m.next_deadline() is None


# -- unplug, terminate, restart -----------------------------------------------------------------


def test_unplug_when_linked_reports_the_loss_and_leaves() -> None:
    h = Harness()
    h.to_linked()
    keys = len([a for a in h.actions if isinstance(a, SetKey)])
    out = h.feed(CpChanged(CpState.A))
    assert LinkLost("unplugged") in out
    assert len([a for a in h.actions if isinstance(a, SetKey)]) == keys + 1
    assert h.state() is MatcherState.IDLE
    assert h.m.session_count == 0


def test_cp_flicker_without_a_match_does_not_rekey() -> None:
    h = Harness()
    h.confirm_key()
    for _ in range(3):
        h.feed(CpChanged(CpState.B))
        h.parm()
        h.feed(CpChanged(CpState.A))
    assert len([a for a in h.actions if isinstance(a, SetKey)]) == 1


def test_cp_e_and_f_do_not_stop_matching() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.feed(CpChanged(CpState.E))
    h.feed(CpChanged(CpState.F))
    h.feed(CpChanged(CpState.C))
    h.sounding()
    h.rsp()
    h.match_req()
    assert h.state() is MatcherState.MATCHED


def test_terminate_leaves_and_restart_waits_again() -> None:
    h = Harness()
    h.to_linked()
    out = h.feed(Terminate())
    assert LinkLost("terminated") in out
    assert h.state() is MatcherState.LEFT
    h.parm()
    assert h.m.ignored["CM_SLAC_PARM.REQ in left"] == 1
    h.feed(Restart())
    assert h.state() is MatcherState.WAITING
    assert h.m.next_deadline() is not None
    h.feed(Terminate())
    h.feed(Terminate())  # idempotent
    assert h.state() is MatcherState.LEFT


# -- wake-up and giving up ------------------------------------------------------------------------


def test_no_parm_req_with_ef_wakeup_steps_e_f_twice_then_x1() -> None:
    h = Harness(SlacSettings(ef_wakeup=True))
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    pilots: list[PilotRequest] = []
    for _ in range(2):
        out = h.advance(40.0)
        pilots += [a.request for a in out if isinstance(a, RequestPilot)]
        assert h.state() is MatcherState.EF_STEP
        h.feed(CpChanged(CpState.F))  # our own F: ignored
        out = h.advance(3.8)
        assert not [a for a in out if isinstance(a, RequestPilot)]
        out = h.advance(0.3)  # T_step_EF
        pilots += [a.request for a in out if isinstance(a, RequestPilot)]
        assert h.state() is MatcherState.WAITING
    out = h.advance(40.0)
    pilots += [a.request for a in out if isinstance(a, RequestPilot)]
    assert pilots == [
        PilotRequest.STATE_F,
        PilotRequest.RESUME,
        PilotRequest.STATE_F,
        PilotRequest.RESUME,
        PilotRequest.X1,
    ]  # [V2G3-M06-07]: C_sequ_retry = 2, then X1
    assert h.state() is MatcherState.FAILED
    failed = h.last(MatchingFailed)
    assert failed.final and "TT_EVSE_SLAC_init" in failed.reason


def test_a_car_woken_by_the_e_f_step_is_matched() -> None:
    h = Harness(SlacSettings(ef_wakeup=True))
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.advance(44.0)
    assert h.state() is MatcherState.WAITING
    h.to_matched()


def test_no_parm_req_without_wakeup_gives_up_with_x1() -> None:
    h = Harness()
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    out = h.advance(40.0)
    assert RequestPilot(PilotRequest.X1) in out
    assert h.state() is MatcherState.FAILED
    h.feed(CpChanged(CpState.A))
    assert h.state() is MatcherState.IDLE


def test_unplug_during_the_e_f_step_releases_the_pilot() -> None:
    h = Harness(SlacSettings(ef_wakeup=True))
    h.confirm_key()
    h.feed(CpChanged(CpState.B))
    h.advance(40.0)
    out = h.feed(CpChanged(CpState.A))
    assert RequestPilot(PilotRequest.RESUME) in out
    assert h.state() is MatcherState.IDLE


# -- the local modem's key ------------------------------------------------------------


def test_set_key_is_retried_then_reported() -> None:
    h = Harness()
    first = h.last(SetKey)
    h.advance(2.0)
    h.confirm_key(ok=False)
    keys = [a for a in h.actions if isinstance(a, SetKey)]
    assert keys == [first, first, first]  # the same key, key_retries = 2
    h.advance(2.0)
    failed = h.last(MatchingFailed)
    assert not failed.final and "did not take the key" in failed.reason
    assert not h.m.key_confirmed
    # the next plug-in tries a fresh key
    h.feed(CpChanged(CpState.B))
    assert h.last(SetKey) != first


def test_a_key_failure_while_a_car_waits_gives_up() -> None:
    h = Harness(SlacSettings(key_retries=0))
    h.feed(CpChanged(CpState.B))
    h.confirm_key(ok=False)
    assert h.state() is MatcherState.FAILED


def test_match_request_before_the_key_is_confirmed_is_answered_after() -> None:
    h = Harness()
    h.feed(CpChanged(CpState.B))
    h.parm()
    h.sounding()
    h.rsp()
    h.match_req()
    assert not h.sent(SlacMatchCnf)
    h.feed(KeySetResult(b"\xee" * 16, ok=True))  # stale: another key
    assert not h.sent(SlacMatchCnf)
    out = h.confirm_key()
    assert h.sent(SlacMatchCnf, out)
    assert h.state() is MatcherState.MATCHED


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        SlacSettings(match_response_s=0)
    with pytest.raises(ValueError):
        SlacSettings(num_sounds=0)
    with pytest.raises(ValueError):
        SlacSettings(atten_char_retries=-1)
    with pytest.raises(ValueError):
        SlacSettings(link_down_count=0)
    with pytest.raises(ValueError):
        SlacSettings(aag_without_sounds_db=255)


def test_a_short_random_source_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        SlacMatcher(SlacSettings(), host_mac=HOST, random_bytes=lambda n: b"\x00").start(0.0)


# -- property: never link-ready without a completed match ------------------------------------------

MACS = [EV, EV2]
RUNS = [RUN, RUN2]

steps = st.one_of(
    st.tuples(st.just("cp"), st.sampled_from([CpState.A, CpState.B, CpState.C, CpState.F])),
    st.tuples(st.just("parm"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("start"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("profile"), st.integers(0, 1)),
    st.tuples(st.just("rsp"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("match"), st.integers(0, 1), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("validate"), st.integers(0, 1)),
    st.tuples(st.just("handshake"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("key"), st.booleans(), st.booleans()),
    st.tuples(st.just("link"), st.booleans(), st.booleans()),
    st.tuples(st.just("advance"), st.sampled_from([0.05, 0.1, 0.21, 0.45, 0.7, 1.1, 13.0, 45.0])),
    st.tuples(st.just("terminate")),
    st.tuples(st.just("restart")),
    # weight the paths that lead somewhere
    st.tuples(st.just("almost"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("almost"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("handshake"), st.integers(0, 1), st.just(0)),
    st.tuples(st.just("link"), st.just(True), st.just(True)),
    st.tuples(st.just("advance"), st.just(0.1)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from([[], [("key", True, True), ("cp", CpState.B)]]),
    script=st.lists(steps, max_size=60),
    cfg=st.sampled_from(
        [SlacSettings(), SlacSettings(ef_wakeup=True), SlacSettings(confirm_join=False)]
    ),
)
def test_never_link_ready_without_a_completed_match(
    prefix: list[tuple[Any, ...]], script: list[tuple[Any, ...]], cfg: SlacSettings
) -> None:
    h = Harness(cfg)
    # Oracle: since the last CP A, which (car, RunID) had a PARM.REQ and then a valid
    # MATCH.REQ fed, and which key the modem confirmed.
    parm_seen: set[tuple[bytes, bytes]] = set()
    match_seen: set[tuple[bytes, bytes]] = set()
    confirmed: set[bytes] = set()

    def check(out: list[Action]) -> None:
        for action in out:
            if isinstance(action, SendMme) and isinstance(action.message, SlacMatchCnf):
                cnf = action.message
                assert (action.destination, cnf.run_id) in match_seen
                assert cnf.nmk in confirmed  # the NMK leaves only once the modem has it
                assert cnf.nid == nid_from_nmk(cnf.nmk)
            if isinstance(action, LinkReady):
                event("link ready")
                assert (action.ev_mac, action.run_id) in match_seen, action
                assert (action.ev_mac, action.run_id) in parm_seen
                assert h.state() is MatcherState.LINKED
        assert isinstance(h.m.state, MatcherState)
        event(f"state {h.m.state.value}")
        deadline = h.m.next_deadline()
        assert deadline is None or deadline >= h.now - 60.0

    for step in prefix + script:
        kind = step[0]
        out: list[Action] = []
        if kind == "cp":
            out = h.feed(CpChanged(step[1]))
            if step[1] is CpState.A:
                parm_seen.clear()
                match_seen.clear()
        elif kind == "parm":
            ev, run = MACS[step[1]], RUNS[step[2]]
            out = h.parm(ev, run)
            parm_seen.add((ev, run))
            match_seen -= {(e, r) for e, r in match_seen if e == ev}
        elif kind == "start":
            ev, run = MACS[step[1]], RUNS[step[2]]
            out = h.rx(
                ev, StartAttenCharInd(num_sounds=3, time_out=6, forwarding_sta=ev, run_id=run)
            )
        elif kind == "profile":
            out = h.rx(MODEM, AttenProfileInd(pev_mac=MACS[step[1]], aag=PROFILE))
        elif kind == "rsp":
            out = h.rsp(MACS[step[1]], RUNS[step[2]])
        elif kind == "match":
            src, pev, run = MACS[step[1]], MACS[step[2]], RUNS[step[3]]
            out = h.rx(src, SlacMatchReq(pev_mac=pev, evse_mac=HOST, run_id=run))
            if src == pev and (src, run) in parm_seen:
                match_seen.add((src, run))
        elif kind == "validate":
            out = h.rx(MACS[step[1]], ValidateReq())
        elif kind == "handshake":
            ev, run = MACS[step[1]], RUNS[step[2]]
            out = h.parm(ev, run)
            parm_seen.add((ev, run))
            match_seen -= {(e, r) for e, r in match_seen if e == ev}
            out += h.sounding(ev, run)
            out += h.rsp(ev, run)
            out += h.match_req(ev, run)
            match_seen.add((ev, run))
        elif kind == "almost":  # everything up to the car's MATCH.REQ
            ev, run = MACS[step[1]], RUNS[step[2]]
            out = h.parm(ev, run)
            parm_seen.add((ev, run))
            match_seen -= {(e, r) for e, r in match_seen if e == ev}
            out += h.sounding(ev, run)
            out += h.rsp(ev, run)
        elif kind == "key":
            keys = [a for a in h.actions if isinstance(a, SetKey)]
            nmk = keys[-1].nmk if step[2] else b"\xfe" * 16
            if step[1] and nmk == keys[-1].nmk:
                confirmed.add(nmk)
            out = h.feed(KeySetResult(nmk, ok=bool(step[1])))
        elif kind == "link":
            asked = [a for a in h.actions if isinstance(a, RequestLinkStatus)]
            token = asked[-1].token if asked and step[2] else 12345
            out = h.feed(LinkStatusResult(token, bool(step[1])))
        elif kind == "advance":
            out = h.advance(step[1])
        elif kind == "terminate":
            out = h.feed(Terminate())
        elif kind == "restart":
            out = h.feed(Restart())
        check(out)
    # unplugged and left alone, it always ends idle
    check(h.feed(CpChanged(CpState.A)))
    h.advance(100.0)
    assert h.state() is MatcherState.IDLE
    assert h.m.session_count == 0
