"""SECC-side ISO 15118-3 SLAC matcher, sans-I/O.

Feed typed events with :meth:`SlacMatcher.handle` (decoded MMEs from the
modem, control-pilot changes from the IEC 61851 machine, the results of the
key and link-status requests), call :meth:`SlacMatcher.handle_timer` when
:meth:`SlacMatcher.next_deadline` has passed, and carry out the returned
actions in order. Time only enters as ``now`` (monotonic seconds); the NMK
comes from the injected ``random_bytes``.

Theory of operation (ISO 15118-3 clause 9, Annex A; timer names of Table A.1):

* ``start``: the local modem gets a fresh random NMK and its NID (CM_SET_KEY),
  so it is in a logical network (AVLN) nobody else knows.
* CP A -> B/C/D: WAITING; TT_EVSE_SLAC_init runs until a car sends
  CM_SLAC_PARM.REQ. Every car heard (crosstalk included) gets its own session
  keyed by its MAC and RunID: PARM.CNF, then START_ATTEN_CHAR.IND within
  TT_match_sequence, the sounds collected for TT_EVSE_match_MNBC (or until all
  NUM_SOUNDS profiles came), the per-group average sent in
  CM_ATTEN_CHAR.IND [V2G3-A09-19] and resent after TT_match_response up to
  C_EV_match_retry times [V2G3-A09-46]. A repeated PARM.REQ restarts the
  car's session [V2G3-A09-16]; invalid RSP / MATCH.REQ are ignored
  [V2G3-A09-47] [V2G3-A09-98]; CM_VALIDATE.REQ is answered "not required".
* A valid CM_SLAC_MATCH.REQ (our session's RunID, the car's MAC) within
  TT_EVSE_match_session gets CM_SLAC_MATCH.CNF with the NID and NMK: MATCHED.
  The same CNF is resent for a repeated REQ. The NMK leaves the box only here.
* The car's modem joins within TT_match_join; the local modem's link status
  (VS_PL_LINK_STATUS, polled) says so: LINKED and :class:`LinkReady`.
* No PARM.REQ within TT_EVSE_SLAC_init: with ``ef_wakeup`` (AC, 5 %) CP E/F
  for T_step_EF, then 5 % again, C_sequ_retry times; then X1 [V2G3-M06-07]
  [V2G3-M06-09]. Giving up always asks for X1 [V2G3-M06-06].
* CP A, D-LINK_TERMINATE (:class:`Terminate`) or a lost link: the logical
  network is left by keying the local modem afresh [V2G3-M09-17], but only if
  a car was ever given the current key (no SET_KEY on every CP flicker).

Safety property (checked by a hypothesis test): :class:`LinkReady` is only
ever reported for the car MAC and RunID of a session whose MATCH.REQ was
answered with our MATCH.CNF since the car was plugged in.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from transitions import Machine

from chargepoint.errors import LocalProtocolError
from chargepoint.iec61851.cp_state import CpState
from chargepoint.slac import (
    APPLICATION_TYPE_PEV_EVSE,
    ATTEN_CHAR_SUCCESS,
    NMK_LEN,
    NUM_GROUPS,
    SECURITY_TYPE_NONE,
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
    ValidateResult,
    format_mac,
    nid_from_nmk,
)
from chargepoint.slac.states import (
    MATCHER_TRANSITIONS,
    SESSION_TRANSITIONS,
    MatcherState,
    SessionState,
)

_log = logging.getLogger(__name__)


class _QuietModelOverride(logging.Filter):
    """transitions warns for each convenience method it skips under model_override."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().endswith("due to model override policy.")


logging.getLogger("transitions.core").addFilter(_QuietModelOverride())

AAG_MIN_DB = 1  # an all-zero profile went unanswered by one EV
AAG_MAX_DB = 254  # one EV stack drops 0xFF


@dataclass(frozen=True, slots=True)
class SlacSettings:
    """Timers (seconds) and counters; defaults are ISO 15118-3 Table A.1 values."""

    slac_init_s: float = 40.0  # TT_EVSE_SLAC_init: 20-50 s; some VWs need >= 30 s
    match_sequence_s: float = 0.4  # TT_match_sequence
    match_response_s: float = 0.2  # TT_match_response
    match_mnbc_s: float = 0.6  # TT_EVSE_match_MNBC (Time_Out 6 in PARM.CNF)
    sound_window_max_s: float = 1.0  # when the car asks for more (its TT_EV_atten_results 1.2 s)
    atten_char_retries: int = 2  # C_EV_match_retry: resends, 3 frames in all
    match_session_s: float = 10.0  # TT_EVSE_match_session
    match_join_s: float = 12.0  # TT_match_join
    max_join_failures: int = 3  # C_conn_max_match
    num_sounds: int = 10  # C_EV_match_MNBC, announced in PARM.CNF
    # E/F wake-up: AC with 5 % PWM only [V2G3-M06-07]
    ef_wakeup: bool = False
    step_ef_s: float = 4.0  # T_step_EF (>= 4 s)
    sequ_retry: int = 2  # C_sequ_retry
    # local modem
    key_timeout_s: float = 2.0  # no CM_SET_KEY result at all: retry
    key_retries: int = 2
    confirm_join: bool = True  # False: modems without VS_PL_LINK_STATUS: ready at MATCH.CNF
    link_poll_s: float = 0.1  # while waiting for the join
    link_monitor_s: float = 1.0  # once linked
    link_down_count: int = 3  # consecutive "down" answers = link lost (debounce)
    max_sessions: int = 8  # cars heard at once
    aag_without_sounds_db: int = AAG_MAX_DB  # no profile came: claim the worst, not the best

    def __post_init__(self) -> None:
        for name in (
            "slac_init_s",
            "match_sequence_s",
            "match_response_s",
            "match_mnbc_s",
            "sound_window_max_s",
            "match_session_s",
            "match_join_s",
            "step_ef_s",
            "key_timeout_s",
            "link_poll_s",
            "link_monitor_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 1 <= self.num_sounds <= 255:
            raise ValueError("num_sounds must be 1..255")
        if not AAG_MIN_DB <= self.aag_without_sounds_db <= AAG_MAX_DB:
            raise ValueError(f"aag_without_sounds_db must be {AAG_MIN_DB}..{AAG_MAX_DB}")
        if min(self.atten_char_retries, self.key_retries, self.sequ_retry) < 0:
            raise ValueError("retry counts must be >= 0")
        if min(self.max_join_failures, self.link_down_count, self.max_sessions) < 1:
            raise ValueError("max_join_failures, link_down_count, max_sessions must be >= 1")


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpChanged:
    """The measured control-pilot state (from the IEC 61851 machine)."""

    state: CpState


@dataclass(frozen=True, slots=True)
class MmeReceived:
    """A decoded SLAC MME; ``source`` is the frame's source MAC."""

    source: bytes
    message: SlacMessage


@dataclass(frozen=True, slots=True)
class KeySetResult:
    """Outcome of a :class:`SetKey` action (``ok=False`` also for a timeout)."""

    nmk: bytes
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LinkStatusResult:
    """Answer to :class:`RequestLinkStatus` ``token`` (``up=False`` also for no answer)."""

    token: int
    up: bool


@dataclass(frozen=True, slots=True)
class Terminate:
    """D-LINK_TERMINATE: leave the logical network (the car stays plugged in)."""


@dataclass(frozen=True, slots=True)
class Restart:
    """The EVSE offers 5 % again after FAILED or LEFT: matching may start anew."""


Event = CpChanged | MmeReceived | KeySetResult | LinkStatusResult | Terminate | Restart

# -- actions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMme:
    """Send ``message`` to ``destination`` (the car's host MAC)."""

    destination: bytes
    message: SlacMessage


@dataclass(frozen=True, slots=True)
class SetKey:
    """Key the local modem (CM_SET_KEY.REQ); answer with :class:`KeySetResult`."""

    nmk: bytes
    nid: bytes


@dataclass(frozen=True, slots=True)
class RequestLinkStatus:
    """Ask the local modem whether a peer joined; answer with :class:`LinkStatusResult`."""

    token: int


class PilotRequest(Enum):
    STATE_F = "state_f"  # E/F step: drive F for T_step_EF (the matcher times it)
    RESUME = "resume"  # back to what the EVSE controller drives (5 %)
    X1 = "x1"  # give up on high-level communication for now


@dataclass(frozen=True, slots=True)
class RequestPilot:
    request: PilotRequest


@dataclass(frozen=True, slots=True)
class SlacStateChanged:
    state: MatcherState


@dataclass(frozen=True, slots=True)
class MatchingStarted:
    ev_mac: bytes
    run_id: bytes


@dataclass(frozen=True, slots=True)
class LinkReady:
    """D-LINK_READY: the car joined; IPv6 on the PLC interface may start (SDP, V2G)."""

    ev_mac: bytes
    run_id: bytes
    nid: bytes
    attenuation_db: float | None  # mean of the AAG we reported; None: no sound heard
    num_sounds: int
    match_time_s: float  # CP B -> link ready


@dataclass(frozen=True, slots=True)
class LinkLost:
    reason: str


@dataclass(frozen=True, slots=True)
class AttemptDropped:
    """One car's run ended unmatched (it may be crosstalk: no failure of ours yet)."""

    ev_mac: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class MatchingFailed:
    reason: str
    final: bool  # True: gave up (FAILED, X1 requested); False: waiting for the car to retry


Command = SendMme | SetKey | RequestLinkStatus | RequestPilot
Notice = SlacStateChanged | MatchingStarted | AttemptDropped | LinkReady | LinkLost | MatchingFailed
Action = Command | Notice


def _unbound() -> RuntimeError:
    return RuntimeError("trigger not bound: the transitions Machine binds it")


class _Key(Enum):
    NONE = "none"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class _Session:
    """One car heard: its MAC, RunID and where its matching run stands."""

    state: SessionState

    def __init__(self, ev_mac: bytes, run_id: bytes) -> None:
        Machine(
            model=self,
            states=SessionState,
            transitions=SESSION_TRANSITIONS,
            initial=SessionState.PARM_CONFIRMED,
            auto_transitions=False,
            model_override=True,
        )
        self.ev_mac = ev_mac
        self.run_id = run_id
        self.deadline: float | None = None
        self.expected_sounds = 0
        self.sounds = 0  # CM_MNBC_SOUND.IND seen (informational)
        self.profiles = 0  # CM_ATTEN_PROFILE.IND summed
        self.groups = 0
        self.sums = [0] * NUM_GROUPS
        self.report_ind: AttenCharInd | None = None
        self.reports_sent = 0
        self.attenuation_db: float | None = None
        self.confirmation: SlacMatchCnf | None = None

    # -- trigger stubs, bound by Machine from SESSION_TRANSITIONS --
    def start_sounding(self) -> bool:
        raise _unbound()

    def report(self) -> bool:
        raise _unbound()

    def acknowledged(self) -> bool:
        raise _unbound()

    def match(self) -> bool:
        raise _unbound()


def _slac_types_ok(application_type: int, security_type: int) -> bool:
    return application_type == APPLICATION_TYPE_PEV_EVSE and security_type == SECURITY_TYPE_NONE


def average_attenuation(sums: list[int], profiles: int, groups: int) -> tuple[int, ...]:
    """Per-group average over ``profiles`` sounds [V2G3-A09-19], rounded half up,
    kept within 1..254 dB (some EVs reject 0 or 0xFF)."""
    return tuple(
        min(AAG_MAX_DB, max(AAG_MIN_DB, (2 * total + profiles) // (2 * profiles)))
        for total in sums[:groups]
    )


class SlacMatcher:
    """SECC-side SLAC for one connector and its modem."""

    state: MatcherState

    def __init__(
        self,
        settings: SlacSettings,
        *,
        host_mac: bytes,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.settings = settings
        self.host_mac = host_mac
        self._random_bytes = random_bytes
        Machine(
            model=self,
            states=MatcherState,
            transitions=MATCHER_TRANSITIONS,
            initial=MatcherState.IDLE,
            auto_transitions=False,
            model_override=True,
        )
        self.ignored: Counter[str] = Counter()  # frames ignored, by reason
        self._out: list[Action] = []
        self._started = False
        self._plugged_at: float | None = None
        self._sessions: dict[bytes, _Session] = {}
        self._matched: _Session | None = None
        self._init_deadline: float | None = None
        self._ef_until: float | None = None
        self._wakeups = 0
        self._join_deadline: float | None = None
        self._join_failures = 0
        self._poll_at: float | None = None
        self._poll_token = 0
        self._poll_outstanding: int | None = None
        self._downs = 0
        self._nmk = b""
        self._nid = b""
        self._key = _Key.NONE
        self._key_deadline: float | None = None
        self._key_attempts = 0
        self._key_used = False  # a MATCH.CNF disclosed the current NMK
        self._deferred: tuple[_Session, SlacMatchReq] | None = None
        self._link: LinkReady | None = None

    # -- trigger stubs, bound by Machine from MATCHER_TRANSITIONS --
    def plugged(self) -> bool:
        raise _unbound()

    def unplugged(self) -> bool:
        raise _unbound()

    def wake_up(self) -> bool:
        raise _unbound()

    def wake_up_done(self) -> bool:
        raise _unbound()

    def confirm_match(self) -> bool:
        raise _unbound()

    def join(self) -> bool:
        raise _unbound()

    def join_timeout(self) -> bool:
        raise _unbound()

    def rematch(self) -> bool:
        raise _unbound()

    def link_lost(self) -> bool:
        raise _unbound()

    def give_up(self) -> bool:
        raise _unbound()

    def terminate(self) -> bool:
        raise _unbound()

    def restart(self) -> bool:
        raise _unbound()

    # -- public API ----------------------------------------------------------
    @property
    def nid(self) -> bytes:
        """NID of the logical network the local modem was (last) asked to form."""
        return self._nid

    @property
    def key_confirmed(self) -> bool:
        return self._key is _Key.CONFIRMED

    @property
    def link(self) -> LinkReady | None:
        """The current link while LINKED, else None."""
        return self._link if self.state is MatcherState.LINKED else None

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def start(self, now: float) -> list[Action]:
        """Key the local modem with a fresh NMK; call once before anything else."""
        self._out = []
        self._started = True
        self._rekey(now)
        return self._flush()

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event; raises LocalProtocolError before :meth:`start`."""
        if not self._started:
            raise LocalProtocolError("SlacMatcher.handle() before start()")
        self._out = []
        match event:
            case CpChanged(state=cp):
                self._on_cp(cp, now)
            case MmeReceived(source=source, message=message):
                self._on_mme(source, message, now)
            case KeySetResult():
                self._on_key_result(event, now)
            case LinkStatusResult():
                self._on_link_status(event, now)
            case Terminate():
                self._on_terminate(now)
            case Restart():
                self._on_restart(now)
        return self._flush()

    def handle_timer(self, now: float) -> list[Action]:
        self._out = []
        if not self._started:
            return []
        s = self.settings
        key_deadline = self._key_deadline
        if self._key is _Key.PENDING and key_deadline is not None and now >= key_deadline:
            self._key_failed(now, "no CM_SET_KEY.CNF")
        for session in list(self._sessions.values()):
            if (
                self._sessions.get(session.ev_mac) is session  # not dropped meanwhile
                and session.deadline is not None
                and now >= session.deadline
            ):
                self._session_timer(session, now)
        if (
            self.state is MatcherState.WAITING
            and self._init_deadline is not None
            and now >= self._init_deadline
        ):
            self._init_expired(now)
        ef_until = self._ef_until
        if self.state is MatcherState.EF_STEP and ef_until is not None and now >= ef_until:
            self._ef_until = None
            self._out.append(RequestPilot(PilotRequest.RESUME))
            self._go(self.wake_up_done)
            self._init_deadline = now + s.slac_init_s  # [V2G3-M06-07]: timer restarts
        if (
            self.state is MatcherState.MATCHED
            and self._join_deadline is not None
            and now >= self._join_deadline
        ):
            self._join_expired(now)
        if (
            self.state in (MatcherState.MATCHED, MatcherState.LINKED)
            and self._poll_at is not None
            and now >= self._poll_at
        ):
            self._poll_token += 1
            self._poll_outstanding = self._poll_token
            self._out.append(RequestLinkStatus(self._poll_token))
            interval = s.link_poll_s if self.state is MatcherState.MATCHED else s.link_monitor_s
            self._poll_at = now + interval
        return self._flush()

    def next_deadline(self) -> float | None:
        if not self._started:
            return None
        deadlines = [s.deadline for s in self._sessions.values() if s.deadline is not None]
        if self._key is _Key.PENDING and self._key_deadline is not None:
            deadlines.append(self._key_deadline)
        state = self.state
        if state is MatcherState.WAITING and self._init_deadline is not None:
            deadlines.append(self._init_deadline)
        if state is MatcherState.EF_STEP and self._ef_until is not None:
            deadlines.append(self._ef_until)
        if state is MatcherState.MATCHED and self._join_deadline is not None:
            deadlines.append(self._join_deadline)
        if state in (MatcherState.MATCHED, MatcherState.LINKED) and self._poll_at is not None:
            deadlines.append(self._poll_at)
        return min(deadlines) if deadlines else None

    # -- plumbing --------------------------------------------------------------
    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _go(self, trigger: Callable[[], bool]) -> None:
        before = self.state
        trigger()
        if self.state is not before:
            _log.info("SLAC %s -> %s", before.value, self.state.value)
            self._out.append(SlacStateChanged(self.state))

    def _send(self, destination: bytes, message: SlacMessage) -> None:
        _log.debug("tx %s to %s", type(message).__name__, format_mac(destination))
        self._out.append(SendMme(destination, message))

    def _ignore(self, reason: str, source: bytes) -> None:
        self.ignored[reason] += 1
        _log.debug("ignored from %s: %s", format_mac(source), reason)

    # -- key management ----------------------------------------------------------
    def _rekey(self, now: float) -> None:
        nmk = self._random_bytes(NMK_LEN)
        if len(nmk) != NMK_LEN:
            raise LocalProtocolError(f"random source gave {len(nmk)} bytes, not {NMK_LEN}")
        self._nmk = nmk
        self._nid = nid_from_nmk(nmk)
        self._key = _Key.PENDING
        self._key_attempts = 1
        self._key_deadline = now + self.settings.key_timeout_s
        self._key_used = False
        self._deferred = None
        _log.info("keying the local modem: new AVLN, NID %s", self._nid.hex())
        self._out.append(SetKey(self._nmk, self._nid))

    def _on_key_result(self, event: KeySetResult, now: float) -> None:
        if self._key is not _Key.PENDING or event.nmk != self._nmk:
            _log.debug("stale key result ignored")
            return
        if not event.ok:
            self._key_failed(now, event.detail or "refused")
            return
        self._key = _Key.CONFIRMED
        self._key_deadline = None
        _log.info("local modem keyed (NID %s)", self._nid.hex())
        deferred, self._deferred = self._deferred, None
        if deferred is not None and self.state is MatcherState.WAITING:
            session, request = deferred
            if self._sessions.get(session.ev_mac) is session and session.state in (
                SessionState.AWAIT_ATTEN_RSP,
                SessionState.AWAIT_MATCH,
            ):
                self._confirm_match(session, request, now)

    def _key_failed(self, now: float, detail: str) -> None:
        if self._key_attempts <= self.settings.key_retries:
            self._key_attempts += 1
            self._key_deadline = now + self.settings.key_timeout_s
            _log.warning("CM_SET_KEY failed (%s); retrying", detail)
            self._out.append(SetKey(self._nmk, self._nid))
            return
        self._key = _Key.FAILED
        self._key_deadline = None
        self._deferred = None
        reason = f"the local modem did not take the key: {detail}"
        _log.error("SLAC: %s", reason)
        if self.state is MatcherState.WAITING:
            self._give_up(now, reason)
        else:
            self._out.append(MatchingFailed(reason, final=False))

    # -- control pilot -----------------------------------------------------------
    def _on_cp(self, cp: CpState, now: float) -> None:
        if cp in (CpState.B, CpState.C, CpState.D):
            if self.state is MatcherState.IDLE:
                self._plugged_at = now
                self._wakeups = 0
                self._join_failures = 0
                self._go(self.plugged)
                self._init_deadline = now + self.settings.slac_init_s
                if self._key in (_Key.NONE, _Key.FAILED):
                    self._rekey(now)
        elif cp is CpState.A:
            if self.state is not MatcherState.IDLE:
                if self.state is MatcherState.EF_STEP:
                    self._out.append(RequestPilot(PilotRequest.RESUME))
                self._leave(now, "unplugged")
                self._go(self.unplugged)
        else:
            # E/F: our own E/F step, an EIM blip or a fault the EVSE controller handles;
            # matching lives while the car is plugged in.
            _log.debug("CP %s ignored by SLAC in %s", cp.value, self.state.value)

    def _leave(self, now: float, reason: str) -> None:
        """End everything for this car; leave the AVLN if a car got our key [V2G3-M09-17]."""
        if self.state is MatcherState.LINKED:
            self._out.append(LinkLost(reason))
        self._sessions.clear()
        self._matched = None
        self._link = None
        self._deferred = None
        self._init_deadline = None
        self._ef_until = None
        self._join_deadline = None
        self._poll_at = None
        self._poll_outstanding = None
        if self._key_used or self._key is _Key.FAILED:
            self._rekey(now)

    def _on_terminate(self, now: float) -> None:
        if self.state in (MatcherState.IDLE, MatcherState.FAILED, MatcherState.LEFT):
            return
        if self.state is MatcherState.EF_STEP:
            self._out.append(RequestPilot(PilotRequest.RESUME))
        self._leave(now, "terminated")
        self._go(self.terminate)

    def _on_restart(self, now: float) -> None:
        if self.state not in (MatcherState.FAILED, MatcherState.LEFT):
            return
        self._wakeups = 0
        self._join_failures = 0
        self._go(self.restart)
        self._init_deadline = now + self.settings.slac_init_s
        if self._key in (_Key.NONE, _Key.FAILED):
            self._rekey(now)

    def _init_expired(self, now: float) -> None:
        self._init_deadline = None
        s = self.settings
        if s.ef_wakeup and self._wakeups < s.sequ_retry:
            # [V2G3-M06-07] / [V2G3-M06-09]: E/F for T_step_EF to retrigger the car
            self._wakeups += 1
            self._go(self.wake_up)
            self._ef_until = now + s.step_ef_s
            self._out.append(RequestPilot(PilotRequest.STATE_F))
            return
        self._give_up(now, "no CM_SLAC_PARM.REQ within TT_EVSE_SLAC_init")

    def _give_up(self, now: float, reason: str) -> None:
        self._sessions.clear()
        self._matched = None
        self._deferred = None
        self._init_deadline = None
        self._join_deadline = None
        self._poll_at = None
        self._poll_outstanding = None
        if self._key_used:
            self._rekey(now)  # a car may still hold the key: leave [V2G3-M09-17]
        self._go(self.give_up)
        self._out.append(MatchingFailed(reason, final=True))
        self._out.append(RequestPilot(PilotRequest.X1))  # [V2G3-M06-06] [V2G3-M06-07]

    # -- frames ---------------------------------------------------------------------
    def _on_mme(self, source: bytes, message: SlacMessage, now: float) -> None:
        _log.debug("rx %s from %s", type(message).__name__, format_mac(source))
        match message:
            case SlacParmReq():
                self._on_parm_req(source, message, now)
            case StartAttenCharInd():
                self._on_start_atten(source, message, now)
            case MnbcSoundInd():
                session = self._sessions.get(source)
                if session is None or session.state is not SessionState.SOUNDING:
                    self._ignore("CM_MNBC_SOUND.IND outside a sound window", source)
                elif message.run_id != session.run_id:
                    self._ignore("CM_MNBC_SOUND.IND of another RunID", source)
                else:
                    session.sounds += 1
            case AttenProfileInd():
                self._on_profile(source, message, now)
            case AttenCharRsp():
                self._on_atten_rsp(source, message, now)
            case ValidateReq():
                self._on_validate(source, message)
            case SlacMatchReq():
                self._on_match_req(source, message, now)
            case _:
                self._ignore(f"{type(message).__name__} is not for an EVSE", source)

    def _on_parm_req(self, source: bytes, msg: SlacParmReq, now: float) -> None:
        if not _slac_types_ok(msg.application_type, msg.security_type):
            self._ignore("CM_SLAC_PARM.REQ with APPLICATION/SECURITY_TYPE != 0", source)
            return
        if source[0] & 0x01:
            self._ignore("CM_SLAC_PARM.REQ from a group address", source)
            return
        if self.state in (MatcherState.MATCHED, MatcherState.LINKED):
            matched = self._matched
            if matched is None or source != matched.ev_mac:
                self._ignore("CM_SLAC_PARM.REQ from another car while matched", source)
                return
            # the matched car starts over [V2G3-A09-16]
            if self.state is MatcherState.LINKED:
                self._out.append(LinkLost("the car restarted matching"))
            self._matched = None
            self._link = None
            self._join_deadline = None
            self._poll_at = None
            self._poll_outstanding = None
            self._sessions.clear()
            self._go(self.rematch)
        if self.state is not MatcherState.WAITING:
            self._ignore(f"CM_SLAC_PARM.REQ in {self.state.value}", source)
            return
        previous = self._sessions.get(source)
        if previous is None and len(self._sessions) >= self.settings.max_sessions:
            self._ignore("CM_SLAC_PARM.REQ: too many cars at once", source)
            return
        if self._deferred is not None and self._deferred[0] is previous:
            self._deferred = None
        session = _Session(source, msg.run_id)  # a repeated REQ restarts it [V2G3-A09-16]
        session.deadline = now + self.settings.match_sequence_s
        self._sessions[source] = session
        self._init_deadline = None
        self._send(
            source,
            SlacParmCnf(
                forwarding_sta=source,
                run_id=msg.run_id,
                num_sounds=self.settings.num_sounds,
                time_out=max(1, round(self.settings.match_mnbc_s * 10)),
            ),
        )
        if previous is None or previous.run_id != msg.run_id:
            _log.info("SLAC: car %s started matching", format_mac(source))
            self._out.append(MatchingStarted(source, msg.run_id))

    def _on_start_atten(self, source: bytes, msg: StartAttenCharInd, now: float) -> None:
        session = self._sessions.get(source)
        if session is None or msg.run_id != session.run_id:
            self._ignore("CM_START_ATTEN_CHAR.IND for no session", source)
            return
        if session.state is SessionState.SOUNDING:
            self._ignore("CM_START_ATTEN_CHAR.IND copy", source)  # copies 2 and 3
            return
        if session.state is not SessionState.PARM_CONFIRMED:
            self._ignore("CM_START_ATTEN_CHAR.IND late", source)
            return
        if not _slac_types_ok(msg.application_type, msg.security_type):
            self._ignore("CM_START_ATTEN_CHAR.IND with APPLICATION/SECURITY_TYPE != 0", source)
            return
        s = self.settings
        session.expected_sounds = msg.num_sounds or s.num_sounds
        # The car's Time_Out (100 ms units) wins over ours within bounds: a charger
        # that insisted on 6 dropped a car that sent 10.
        window_s = min(max(msg.time_out * 0.1, s.match_mnbc_s), s.sound_window_max_s)
        session.deadline = now + window_s
        session.start_sounding()

    def _on_profile(self, source: bytes, msg: AttenProfileInd, now: float) -> None:
        session = self._sessions.get(msg.pev_mac)
        if session is None or session.state is not SessionState.SOUNDING:
            self._ignore("CM_ATTEN_PROFILE.IND outside a sound window", source)
            return
        groups = msg.aag[:NUM_GROUPS]
        if not groups:
            self._ignore("CM_ATTEN_PROFILE.IND without groups", source)
            return
        session.groups = max(session.groups, len(groups))
        for i, value in enumerate(groups):
            session.sums[i] += value
        session.profiles += 1
        if session.profiles >= session.expected_sounds:
            self._report(session, now)

    def _report(self, session: _Session, now: float) -> None:
        """Average and send CM_ATTEN_CHAR.IND [V2G3-A09-19] with the real sound count."""
        n = session.profiles
        if n:
            aag = average_attenuation(session.sums, n, session.groups)
            session.attenuation_db = sum(aag) / len(aag)
        else:
            aag = (self.settings.aag_without_sounds_db,) * NUM_GROUPS
            session.attenuation_db = None
        session.report_ind = AttenCharInd(
            source_address=session.ev_mac, run_id=session.run_id, num_sounds=n, aag=aag
        )
        session.reports_sent = 1
        session.deadline = now + self.settings.match_response_s
        session.report()
        _log.info(
            "SLAC: car %s: %d/%d sounds, mean attenuation %s dB",
            format_mac(session.ev_mac),
            n,
            session.expected_sounds,
            "-" if session.attenuation_db is None else f"{session.attenuation_db:.1f}",
        )
        self._send(session.ev_mac, session.report_ind)

    def _on_atten_rsp(self, source: bytes, msg: AttenCharRsp, now: float) -> None:
        session = self._sessions.get(source)
        if (
            session is None
            or session.state is not SessionState.AWAIT_ATTEN_RSP
            or msg.run_id != session.run_id
            or msg.source_address != session.ev_mac
            or not _slac_types_ok(msg.application_type, msg.security_type)
            or msg.result != ATTEN_CHAR_SUCCESS
        ):
            self._ignore("invalid or unexpected CM_ATTEN_CHAR.RSP", source)  # [V2G3-A09-47]
            return
        session.acknowledged()
        session.deadline = now + self.settings.match_session_s

    def _on_validate(self, source: bytes, msg: ValidateReq) -> None:
        session = self._sessions.get(source)
        if session is None or session.state is not SessionState.AWAIT_MATCH:
            self._ignore("CM_VALIDATE.REQ outside a session", source)
            return
        # We never run the BCB-toggle validation: "not required" lets the car go
        # straight to CM_SLAC_MATCH.REQ.
        self._send(
            source, ValidateCnf(signal_type=msg.signal_type, result=ValidateResult.NOT_REQUIRED)
        )

    def _on_match_req(self, source: bytes, msg: SlacMatchReq, now: float) -> None:
        valid_fields = _slac_types_ok(msg.application_type, msg.security_type) and (
            msg.pev_mac == source
        )
        matched = self._matched
        if self.state in (MatcherState.MATCHED, MatcherState.LINKED):
            if (
                valid_fields
                and matched is not None
                and matched.ev_mac == source
                and matched.run_id == msg.run_id
                and matched.confirmation is not None
            ):
                self._send(source, matched.confirmation)  # the same CNF again
            else:
                self._ignore("CM_SLAC_MATCH.REQ while matched to another run", source)
            return
        session = self._sessions.get(source)
        if (
            self.state is not MatcherState.WAITING
            or session is None
            or session.state not in (SessionState.AWAIT_ATTEN_RSP, SessionState.AWAIT_MATCH)
            or not valid_fields
            or msg.run_id != session.run_id
        ):
            self._ignore("invalid CM_SLAC_MATCH.REQ", source)  # [V2G3-A09-98]
            return
        if msg.evse_mac != self.host_mac:
            _log.debug("CM_SLAC_MATCH.REQ names EVSE MAC %s", format_mac(msg.evse_mac))
        if self._key is not _Key.CONFIRMED:
            # The CNF carries the NMK: only once the local modem has it.
            self._deferred = (session, msg)
            self._ignore("CM_SLAC_MATCH.REQ deferred: local modem not keyed yet", source)
            return
        self._confirm_match(session, msg, now)

    def _confirm_match(self, session: _Session, request: SlacMatchReq, now: float) -> None:
        cnf = SlacMatchCnf(
            pev_mac=session.ev_mac,
            evse_mac=self.host_mac,
            run_id=session.run_id,
            nid=self._nid,
            nmk=self._nmk,
            pev_id=request.pev_id,
            evse_id=request.evse_id,
        )
        session.confirmation = cnf
        session.deadline = None
        session.match()
        self._matched = session
        self._sessions = {session.ev_mac: session}  # one car per connector from here on
        self._key_used = True
        self._send(session.ev_mac, cnf)
        self._go(self.confirm_match)
        _log.info("SLAC: matched car %s", format_mac(session.ev_mac))
        if not self.settings.confirm_join:
            self._linked(now)
            return
        self._join_deadline = now + self.settings.match_join_s
        self._poll_at = now + self.settings.link_poll_s
        self._poll_outstanding = None

    def _session_timer(self, session: _Session, now: float) -> None:
        s = self.settings
        match session.state:
            case SessionState.PARM_CONFIRMED:
                self._drop(session, now, "no CM_START_ATTEN_CHAR.IND within TT_match_sequence")
            case SessionState.SOUNDING:
                self._report(session, now)  # window closed: report what came
            case SessionState.AWAIT_ATTEN_RSP:
                if session.reports_sent <= s.atten_char_retries and session.report_ind:
                    session.reports_sent += 1  # [V2G3-A09-46]
                    session.deadline = now + s.match_response_s
                    self._send(session.ev_mac, session.report_ind)
                else:
                    self._drop(session, now, "no CM_ATTEN_CHAR.RSP")
            case SessionState.AWAIT_MATCH:
                self._drop(session, now, "no CM_SLAC_MATCH.REQ within TT_EVSE_match_session")
            case SessionState.MATCHED:
                session.deadline = None

    def _drop(self, session: _Session, now: float, reason: str) -> None:
        """End one car's run; it may be crosstalk, so this alone is no failure."""
        _log.info("SLAC: car %s: %s", format_mac(session.ev_mac), reason)
        if self._sessions.get(session.ev_mac) is session:
            del self._sessions[session.ev_mac]
            self._out.append(AttemptDropped(session.ev_mac, reason))
        if self._deferred is not None and self._deferred[0] is session:
            self._deferred = None
        if not self._sessions and self.state is MatcherState.WAITING:
            self._init_deadline = now + self.settings.slac_init_s

    # -- joining and the link ------------------------------------------------------------
    def _linked(self, now: float) -> None:
        session = self._matched
        if session is None:  # pragma: no cover - guarded by the callers
            return
        self._join_deadline = None
        self._downs = 0
        self._poll_outstanding = None
        self._poll_at = now + self.settings.link_monitor_s if self.settings.confirm_join else None
        self._go(self.join)
        self._link = LinkReady(
            ev_mac=session.ev_mac,
            run_id=session.run_id,
            nid=self._nid,
            attenuation_db=session.attenuation_db,
            num_sounds=session.profiles,
            match_time_s=now - (self._plugged_at if self._plugged_at is not None else now),
        )
        _log.info("SLAC: link ready with %s", format_mac(session.ev_mac))
        self._out.append(self._link)

    def _on_link_status(self, event: LinkStatusResult, now: float) -> None:
        if event.token != self._poll_outstanding:
            return  # stale: asked before the state changed
        self._poll_outstanding = None
        if self.state is MatcherState.MATCHED:
            if event.up:
                self._linked(now)
        elif self.state is MatcherState.LINKED:
            if event.up:
                self._downs = 0
                return
            self._downs += 1
            if self._downs >= self.settings.link_down_count:
                self._leave(now, "power-line link down")
                self._go(self.link_lost)
                self._init_deadline = now + self.settings.slac_init_s

    def _join_expired(self, now: float) -> None:
        self._join_failures += 1
        reason = "the car did not join within TT_match_join"
        self._matched = None
        self._sessions.clear()
        self._join_deadline = None
        self._poll_at = None
        self._poll_outstanding = None
        if self._join_failures >= self.settings.max_join_failures:
            self._give_up(now, reason)
            return
        self._go(self.join_timeout)
        self._out.append(MatchingFailed(reason, final=False))
        self._init_deadline = now + self.settings.slac_init_s
