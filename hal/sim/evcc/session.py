"""Sans-I/O ISO 15118-20 EVCC session of the simulated car (one TCP/TLS connection).

Theory of operation
-------------------
The car is the client: in each :class:`Phase` it sends one kind of request
(repeated while the SECC answers ``Ongoing`` or while the charge loop runs) and
waits for the matching response. :data:`TRANSITIONS` lists every phase change;
anything else is a bug (``LocalProtocolError``). Requests are built in
:mod:`~hal.sim.evcc.requests`, responses checked in :mod:`~hal.sim.evcc.checks`,
:mod:`~hal.sim.evcc.services` and :mod:`~hal.sim.evcc.schedule`.

Sequence (FACTS.md "Session sequence", EV view)::

    SAP -> SessionSetup -> AuthorizationSetup -> Authorization (EIM, while Ongoing)
        -> ServiceDiscovery -> ServiceDetail (per candidate) -> ServiceSelection
        -> {DC|AC}_ChargeParameterDiscovery -> ScheduleExchange (while Ongoing)
        -> DC: CP C, CableCheck (while Ongoing) -> PreCharge until the EVSE voltage
           matches, then once more with EVProcessing=Finished ([V2G20-2005]/[V2G20-2006])
        -> PowerDelivery(Start) -> DC: close the EV contactor ([V2G20-1317])
                                   AC: CP C within 250 ms ([V2G20-847])
        -> ChargeLoop (every ``loop_interval_s``) -> wind down to 0 power
           (schedule renegotiation, EVSE notice or the car's own: PowerDelivery(
           ScheduleRenegotiation) -> ScheduleExchange (while Ongoing) -> PowerDelivery(
           Start) with a tuple of the new offer -> ChargeLoop; :mod:`~hal.sim.evcc.renegotiation`)
        -> PowerDelivery(Stop) -> DC: open the contactor, WeldingDetection
                                  AC: CP B within 250 ms ([V2G20-848])
        -> SessionStop(Terminate | Pause) -> CP B

A paused session is joined again on a new connection with the old SessionID;
``OK_OldSessionJoined`` continues at ChargeParameterDiscovery ([V2G20-1032],
[V2G20-2098]) with the service selected before.

Inputs: :meth:`~Evcc20Session.start`, :meth:`~Evcc20Session.update` (the car's
own measurements), :meth:`~Evcc20Session.receive_data`,
:meth:`~Evcc20Session.handle_timer`, :meth:`~Evcc20Session.connection_lost`;
``now`` (monotonic seconds) is the only clock. Outputs:
:meth:`~Evcc20Session.data_to_send` (whole V2GTP frames, one send each),
:meth:`~Evcc20Session.actions` (:mod:`~hal.sim.evcc.outcome`),
:meth:`~Evcc20Session.next_deadline`.

Failure: a FAILED* response code, a wrong SessionID, a response of the wrong
type or grammar, an implausible value, a lost connection or a timeout (FACTS.md
"Timing", EVCC side) makes the session queue the safe state (AC power 0, EV
contactor open, CP B) and a :class:`SessionFinished`, log an ERROR naming
message and field, and raise :class:`~hal.sim.evcc.errors.CarError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, Final, NoReturn, cast

from chargepoint.errors import LocalProtocolError
from chargepoint.iso15118 import exi
from chargepoint.iso15118.exi import ExiDecodeError
from chargepoint.iso15118.messages import app_protocol as ap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.v2gtp import Action as FrameAction
from chargepoint.iso15118.v2gtp import (
    ConnectionClosed,
    PayloadType,
    V2gtpError,
    V2gtpFramer,
    V2gtpMessage,
    encode_frame,
)
from hal.sim.evcc import requests as rq
from hal.sim.evcc.bounded import MessageLog
from hal.sim.evcc.checks import (
    EvseLimits,
    ac_cpd_limits,
    check_cable_check_voltage,
    check_present_voltage,
    dc_cpd_limits,
)
from hal.sim.evcc.errors import CarError, CarTimeoutError
from hal.sim.evcc.loop import ChargeLoop, StopIntent
from hal.sim.evcc.numbers import new, rational, value_of
from hal.sim.evcc.outcome import (
    OK_REASONS,
    Action,
    EndReason,
    ResumeInfo,
    SessionFinished,
    SessionResult,
    SetAcPower,
    SetCp,
    SetDcContactor,
)
from hal.sim.evcc.profile import (
    AC_SERVICES,
    BPT_SERVICES,
    DC_SERVICES,
    NAMESPACE_DC,
    SERVICE_IDS,
    SERVICE_NAMES,
    CarControls,
    CarFault,
    CarProfile,
    EvMeasurements,
)
from hal.sim.evcc.renegotiation import Renegotiation
from hal.sim.evcc.schedule import ScheduleTupleInfo, choose_tuple, parse_tuples
from hal.sim.evcc.services import choose_parameter_set, parse_parameter_sets
from hal.sim.evcc.targets import energy_requests, wants_discharge

__all__ = ["STOPPABLE", "TRANSITIONS", "Evcc20Session", "Phase"]

_log = logging.getLogger(__name__)

_CP_POLL_S: Final = 0.02
_NO_SESSION: Final = bytes(8)
_ISO20_TYPES: Final = frozenset({0x8002, 0x8003, 0x8004})


class Phase(Enum):
    """Which request the car sends (or waits to be answered) now."""

    IDLE = "idle"
    SAP = "supported_app_protocol"
    SESSION_SETUP = "session_setup"
    AUTHORIZATION_SETUP = "authorization_setup"
    AUTHORIZATION = "authorization"
    SERVICE_DISCOVERY = "service_discovery"
    SERVICE_DETAIL = "service_detail"
    SERVICE_SELECTION = "service_selection"
    CHARGE_PARAMETER_DISCOVERY = "charge_parameter_discovery"
    SCHEDULE_EXCHANGE = "schedule_exchange"
    CABLE_CHECK = "cable_check"
    PRE_CHARGE = "pre_charge"
    POWER_DELIVERY_START = "power_delivery_start"
    CHARGE_LOOP = "charge_loop"
    # schedule renegotiation from the loop (FACTS.md "Session sequence")
    POWER_DELIVERY_RENEGOTIATE = "power_delivery_renegotiate"
    SCHEDULE_RENEGOTIATION = "schedule_renegotiation"
    POWER_DELIVERY_RESUME = "power_delivery_resume"
    POWER_DELIVERY_STOP = "power_delivery_stop"
    WELDING_DETECTION = "welding_detection"
    SESSION_STOP = "session_stop"
    ENDED = "ended"
    FAILED = "failed"


_P = Phase
TERMINAL: Final = frozenset({_P.ENDED, _P.FAILED})
#: before energy flows the driver's stop/pause goes straight to SessionStop
STOPPABLE: Final = frozenset(
    {
        _P.AUTHORIZATION,
        _P.SERVICE_DISCOVERY,
        _P.SERVICE_DETAIL,
        _P.SERVICE_SELECTION,
        _P.CHARGE_PARAMETER_DISCOVERY,
        _P.SCHEDULE_EXCHANGE,
        _P.CABLE_CHECK,
        _P.PRE_CHARGE,
    }
)
#: every phase change; FAILED is reachable from every non-terminal phase
TRANSITIONS: Final[dict[Phase, frozenset[Phase]]] = {
    _P.IDLE: frozenset({_P.SAP}),
    _P.SAP: frozenset({_P.SESSION_SETUP}),
    # new session, or [V2G20-2098]: a paused session joined again
    _P.SESSION_SETUP: frozenset({_P.AUTHORIZATION_SETUP, _P.CHARGE_PARAMETER_DISCOVERY}),
    _P.AUTHORIZATION_SETUP: frozenset({_P.AUTHORIZATION, _P.SESSION_STOP}),
    _P.AUTHORIZATION: frozenset({_P.SERVICE_DISCOVERY, _P.SESSION_STOP}),
    _P.SERVICE_DISCOVERY: frozenset({_P.SERVICE_DETAIL, _P.SESSION_STOP}),
    _P.SERVICE_DETAIL: frozenset({_P.SERVICE_DETAIL, _P.SERVICE_SELECTION, _P.SESSION_STOP}),
    _P.SERVICE_SELECTION: frozenset({_P.CHARGE_PARAMETER_DISCOVERY, _P.SESSION_STOP}),
    _P.CHARGE_PARAMETER_DISCOVERY: frozenset({_P.SCHEDULE_EXCHANGE, _P.SESSION_STOP}),
    _P.SCHEDULE_EXCHANGE: frozenset({_P.CABLE_CHECK, _P.POWER_DELIVERY_START, _P.SESSION_STOP}),
    _P.CABLE_CHECK: frozenset({_P.PRE_CHARGE, _P.SESSION_STOP}),
    _P.PRE_CHARGE: frozenset({_P.POWER_DELIVERY_START, _P.SESSION_STOP}),
    _P.POWER_DELIVERY_START: frozenset({_P.CHARGE_LOOP}),
    # ENDED straight from the loop: injected faults (silent, disappear, out of sequence)
    _P.CHARGE_LOOP: frozenset({_P.POWER_DELIVERY_STOP, _P.POWER_DELIVERY_RENEGOTIATE, _P.ENDED}),
    _P.POWER_DELIVERY_RENEGOTIATE: frozenset({_P.SCHEDULE_RENEGOTIATION}),
    # GoToPause, an EVSE Terminate/Pause or the driver's stop: end instead of resuming
    _P.SCHEDULE_RENEGOTIATION: frozenset({_P.POWER_DELIVERY_RESUME, _P.POWER_DELIVERY_STOP}),
    _P.POWER_DELIVERY_RESUME: frozenset({_P.CHARGE_LOOP}),
    _P.POWER_DELIVERY_STOP: frozenset({_P.WELDING_DETECTION, _P.SESSION_STOP}),
    _P.WELDING_DETECTION: frozenset({_P.SESSION_STOP}),
    _P.SESSION_STOP: frozenset({_P.ENDED}),
    _P.ENDED: frozenset(),
    _P.FAILED: frozenset(),
}


@dataclass(slots=True)
class _Pending:
    request: str
    expected: type[Any] | None  # None: any -20 response (out-of-sequence probe)
    payload_type: int
    deadline: float
    timeout_s: float

    @property
    def response(self) -> str:
        return self.request[:-3] + "Res"


class Evcc20Session:
    """One EVCC communication session; see the module docstring."""

    def __init__(
        self,
        profile: CarProfile,
        controls: CarControls,
        *,
        resume: ResumeInfo | None = None,
        epoch_offset_s: float = 0.0,
    ) -> None:
        self.profile = profile
        self.controls = controls
        self.resume = resume
        self.epoch_offset_s = epoch_offset_s  # header TimeStamp = now + offset (Unix s)
        self._phase = Phase.IDLE
        self._framer = V2gtpFramer()
        self._out: list[bytes] = []
        self._actions: list[Action] = []
        self._ev: EvMeasurements | None = None
        self._pending: _Pending | None = None
        self._send_at: float | None = None
        self._phase_since = 0.0
        self._started_at = 0.0
        self._session_id = _NO_SESSION
        self._departure: tuple[float | None, float] = (None, 0.0)
        self._offered_protocols: dict[int, str] = {}
        self._candidates: list[str] = []  # offered services still to try, preferred first
        self._tuples: list[ScheduleTupleInfo] = []
        self._reneg = Renegotiation(after_loops=profile.renegotiate_after_loops)
        self._schedule_t0 = 0.0
        self._loop: ChargeLoop | None = None
        self._evse_target_soc: int | None = None
        self._cp_wanted_since: float | None = None
        self._pre_charge_finished = False
        self._welding_requests = 0
        self._stop_intent: StopIntent | None = None  # what SessionStop will say
        self._silent_since: float | None = None
        self._warned: set[str] = set()
        # negotiated / observed (read by the runner and tests)
        self.namespace: str | None = None
        self.evse_id: str | None = None
        self.service: str | None = None
        self.parameter_set_id: int | None = None
        self.mobility_needs_mode = 1
        self.evse_limits = EvseLimits()
        self.schedule: ScheduleTupleInfo | None = None
        self.messages = MessageLog()  # bounded: a charge loop may run for hours
        self.last_request: str | None = None
        self.last_response: str | None = None
        self.evse_present_voltage_v: float | None = None
        self.result: SessionResult | None = None

    # ------------------------------------------------------------------ API

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def finished(self) -> bool:
        return self._phase in TERMINAL

    @property
    def session_id(self) -> bytes:
        return self._session_id

    @property
    def loops(self) -> int:
        """Charge loops answered so far (wind-down loops included)."""
        return 0 if self._loop is None else self._loop.loops

    @property
    def renegotiations(self) -> int:
        """Schedule renegotiations completed (back in the charge loop on the new schedule)."""
        return self._reneg.count

    @property
    def loop(self) -> ChargeLoop | None:
        return self._loop

    @property
    def dc(self) -> bool:
        return self.service in DC_SERVICES

    @property
    def bpt(self) -> bool:
        return self.service in BPT_SERVICES

    def start(self, now: float, ev: EvMeasurements) -> None:
        """Begin on a freshly opened connection: SupportedAppProtocolReq."""
        if self._phase is not Phase.IDLE:
            raise LocalProtocolError("session already started")
        self._ev = ev
        self._started_at = now
        self._departure = (self.controls.departure_in_s, now)
        self._enter(Phase.SAP, now)
        self._guard(now, self._pump)

    def update(self, ev: EvMeasurements) -> None:
        """The latest measurements of the car's own side (battery, inlet, CP)."""
        self._ev = ev

    def data_to_send(self) -> list[bytes]:
        """V2GTP frames to write, each in one send (FACTS.md "Transport")."""
        out, self._out = self._out, []
        return out

    def actions(self) -> list[Action]:
        out = list(self._actions)
        self._actions.clear()  # the charge loop holds a reference to this list
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must run next (``None``: only when data comes)."""
        if self.finished:
            return None
        times: list[float] = []
        if self._pending is not None:
            times.append(self._pending.deadline)
        elif self._send_at is not None:
            times.append(self._send_at)
        if self._silent_since is not None:
            times.append(self._silent_since + self.profile.ongoing_timeout_s)
        if self._cp_wanted_since is not None:
            times.append(self._cp_wanted_since + self.profile.cp_timeout_s)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Fire due timeouts and send the next request when it is due."""
        self._guard(now, self._on_timer)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes read from the connection, split anywhere; ``b""``: the SECC closed it."""
        if self.finished:
            if data:
                _log.warning("EVCC: %d bytes after the session ended ignored", len(data))
            return
        self._framer.receive_data(data)
        for event in self._framer.events():
            if isinstance(event, V2gtpMessage):
                self._guard(now, partial(self._on_message, event))
            elif isinstance(event, V2gtpError):
                if event.action is FrameAction.DISCARD_MESSAGE:
                    _log.warning("EVCC: V2GTP message discarded: %s", event.detail)
                    continue
                self._fail(now, CarError("V2GTP", event.fault.value, event.detail))
            elif isinstance(event, ConnectionClosed):
                self.connection_lost(now, "closed by the SECC")
            if self.finished:
                return
        self._guard(now, self._pump)

    def connection_lost(self, now: float, detail: str = "") -> None:
        """The connection ended (closed, reset, TLS error)."""
        if self.finished:
            return
        if self._silent_since is not None:
            _log.info(
                "EVCC: SECC closed the connection %.2f s after the car went silent",
                now - self._silent_since,
            )
            self._finish(now, EndReason.FAULT_SILENT, ok=False)
            return
        where = self._pending.request if self._pending else self._phase.value
        self._fail(now, CarError("connection", "", f"lost while in {where}: {detail}"))

    def status(self) -> dict[str, Any]:
        """JSON-able snapshot."""
        loop = {} if self._loop is None else self._loop.status()
        return {
            "phase": self._phase.value,
            "session_id": self._session_id.hex().upper(),
            "evse_id": self.evse_id,
            "service": self.service,
            "control_mode": self.profile.control_mode,
            "parameter_set_id": self.parameter_set_id,
            "schedule_tuple_id": None if self.schedule is None else self.schedule.tuple_id,
            "last_request": self.last_request,
            "last_response": self.last_response,
            "evse_present_voltage_v": self.evse_present_voltage_v,
            "loops": self.loops,
            "renegotiations": self.renegotiations,
            **loop,
        }

    # ---------------------------------------------------------- machinery

    def _guard(self, now: float, step: Callable[[float], None]) -> None:
        """Run ``step``; a :class:`CarError` it raises fails the session."""
        if self.finished:
            return
        try:
            step(now)
        except CarError as exc:
            self._fail(now, exc)

    def _enter(self, phase: Phase, now: float) -> None:
        if phase not in TRANSITIONS[self._phase]:
            raise LocalProtocolError(f"no transition {self._phase.value} -> {phase.value}")
        if phase is not self._phase:
            _log.debug("EVCC: %s -> %s", self._phase.value, phase.value)
            self._phase_since = now
        self._phase = phase
        self._send_at = now

    def _repeat(self, now: float) -> None:
        """The same request again after the loop interval (Ongoing, charge loop)."""
        self._send_at = now + self.profile.loop_interval_s

    def _ongoing(
        self, now: float, limit_s: float, msg: str, what: str, field: str = "EVSEProcessing"
    ) -> None:
        """Repeat the request, unless this phase has lasted longer than ``limit_s``."""
        if now - self._phase_since > limit_s:
            raise CarTimeoutError(msg, field, f"{what} for more than {limit_s:g} s")
        self._repeat(now)

    @property
    def _m(self) -> EvMeasurements:
        if self._ev is None:
            raise LocalProtocolError("no measurements given (call update())")
        return self._ev

    def _hdr(self, now: float) -> m.MessageHeader:
        return rq.header(self._session_id, now, self.epoch_offset_s)

    def _departure_s(self, now: float) -> int | None:
        """Seconds to departure; the driver's value counts from when it was set."""
        if self._departure[0] != self.controls.departure_in_s:
            self._departure = (self.controls.departure_in_s, now)
        value, since = self._departure
        if value is None:
            return None
        return max(0, min(0xFFFFFFFF, round(value - (now - since))))

    def _target_soc(self) -> float:
        if self.mobility_needs_mode == 2 and self._evse_target_soc is not None:
            return float(self._evse_target_soc)  # MobilityNeedsMode 2: the SECC decides
        return self.controls.target_soc_pct

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _log.warning(msg, *args)

    def _on_timer(self, now: float) -> None:
        pending = self._pending
        if pending is not None and now >= pending.deadline:
            raise CarTimeoutError(
                pending.response, "", f"no response within {pending.timeout_s:g} s"
            )
        if (
            self._silent_since is not None
            and now >= self._silent_since + self.profile.ongoing_timeout_s
        ):
            raise CarTimeoutError(
                "connection", "", "the SECC kept the connection open after the car went silent"
            )
        self._pump(now)

    def _check_cp(self, now: float) -> None:
        """The car's own CP must follow its S2 within ``cp_timeout_s`` (needs 5 % PWM)."""
        since = self._cp_wanted_since
        if since is None:
            return
        if self._m.cp_closed:
            self._cp_wanted_since = None
        elif now - since >= self.profile.cp_timeout_s:
            raise CarError(
                "CP",
                "",
                f"S2 closed but CP still {self._m.cp_state.value} after "
                f"{self.profile.cp_timeout_s:g} s: the EVSE offers no 5 % PWM",
            )

    # -------------------------------------------------------------- sending

    def _pump(self, now: float) -> None:
        """Build and queue the request of the current phase once it is due."""
        self._check_cp(now)
        if self.finished or self._pending is not None or self._silent_since is not None:
            return
        if self._send_at is None or now < self._send_at:
            return
        self._maybe_stop_early(now)
        if self._phase is Phase.CABLE_CHECK and not self._m.cp_closed:
            self._send_at = now + _CP_POLL_S  # S2 closed before the first CableCheckReq
            return
        if self._phase is Phase.CHARGE_LOOP and (
            self._inject_fault(now)
            or self._leave_loop_if_done(now)
            or self._renegotiate_if_due(now)
        ):
            return
        _BUILDERS[self._phase](self, now)

    def _send(self, now: float, message: Any, expected: type[Any] | None, timeout_s: float) -> None:
        payload = exi.encode(message)
        payload_type = exi.payload_type_of(message)
        name = exi.element_name(message)
        self._out.append(encode_frame(PayloadType(payload_type), payload))
        self._pending = _Pending(name, expected, payload_type, now + timeout_s, timeout_s)
        self._send_at = None
        self.last_request = name
        self.messages.append(name)
        _log.debug("EVCC > %s (%d bytes)", name, len(payload))

    def _maybe_stop_early(self, now: float) -> None:
        if self._phase not in STOPPABLE or self._stop_intent is not None:
            return
        if self._phase is Phase.PRE_CHARGE and self._pre_charge_finished:
            return  # [V2G20-2005]/[V2G20-2006]: only PowerDelivery may follow
        if self.controls.stop:
            self._session_stop(now, EndReason.STOPPED, pause=False)
        elif self.controls.pause:
            self._session_stop(now, EndReason.PAUSED, pause=True)

    def _session_stop(self, now: float, reason: EndReason, *, pause: bool) -> None:
        self._stop_intent = StopIntent(reason, pause, now)
        self._enter(Phase.SESSION_STOP, now)

    def _timeout(self) -> float:
        return self.profile.response_timeout_s

    def _build_sap(self, now: float) -> None:
        req, self._offered_protocols = rq.supported_app_protocol_req(self.profile.services)
        self._send(now, req, ap.SupportedAppProtocolRes, self._timeout())

    def _build_session_setup(self, now: float) -> None:
        if self.resume is not None:
            self._session_id = self.resume.session_id
        req = new(m.SessionSetupReq, header=self._hdr(now), evccid=self.profile.evccid_text)
        self._send(now, req, m.SessionSetupRes, self._timeout())

    def _build_authorization_setup(self, now: float) -> None:
        req = new(m.AuthorizationSetupReq, header=self._hdr(now))
        self._send(now, req, m.AuthorizationSetupRes, self._timeout())

    def _build_authorization(self, now: float) -> None:
        req = new(
            m.AuthorizationReq,
            header=self._hdr(now),
            selected_authorization_service=m.Authorization.EIM,
            eim_a_req_authorization_mode=new(m.EIM_AReqAuthorizationMode),
        )
        self._send(now, req, m.AuthorizationRes, self._timeout())

    def _build_service_discovery(self, now: float) -> None:
        ids = new(m.ServiceIDList, service_id=[SERVICE_IDS[s] for s in self._candidates])
        req = new(m.ServiceDiscoveryReq, header=self._hdr(now), supported_service_i_ds=ids)
        self._send(now, req, m.ServiceDiscoveryRes, self._timeout())

    def _build_service_detail(self, now: float) -> None:
        assert self.service is not None
        service_id = SERVICE_IDS[self.service]
        req = new(m.ServiceDetailReq, header=self._hdr(now), service_id=service_id)
        self._send(now, req, m.ServiceDetailRes, self.profile.service_detail_timeout_s)

    def _build_service_selection(self, now: float) -> None:
        assert self.service is not None
        selected = new(
            m.SelectedService,
            service_id=SERVICE_IDS[self.service],
            parameter_set_id=self.parameter_set_id,
        )
        req = new(
            m.ServiceSelectionReq, header=self._hdr(now), selected_energy_transfer_service=selected
        )
        self._send(now, req, m.ServiceSelectionRes, self._timeout())

    def _build_charge_parameter_discovery(self, now: float) -> None:
        req = rq.charge_parameter_discovery_req(
            self._hdr(now),
            self._m,
            self.profile,
            dc=self.dc,
            bpt=self.bpt,
            target_soc=self._target_soc(),
        )
        expected = m.DC_ChargeParameterDiscoveryRes if self.dc else m.AC_ChargeParameterDiscoveryRes
        self._send(now, req, expected, self._timeout())

    def _build_schedule_exchange(self, now: float) -> None:
        req = rq.schedule_exchange_req(
            self._hdr(now),
            self.profile,
            self.controls,
            energy_requests(self._m, self.controls),
            departure_s=self._departure_s(now),
            target_soc=self._target_soc(),
            bpt=self.bpt,
        )
        self._send(now, req, m.ScheduleExchangeRes, self._timeout())

    def _build_cable_check(self, now: float) -> None:
        self._send(
            now, new(m.DC_CableCheckReq, header=self._hdr(now)), m.DC_CableCheckRes, self._timeout()
        )

    def _build_pre_charge(self, now: float) -> None:
        battery_v = rational(self._m.battery_voltage_v)
        processing = m.Processing.Finished if self._pre_charge_finished else m.Processing.Ongoing
        req = new(
            m.DC_PreChargeReq,
            header=self._hdr(now),
            ev_processing=processing,
            ev_present_voltage=battery_v,
            ev_target_voltage=battery_v,
        )
        self._send(now, req, m.DC_PreChargeRes, self._timeout())

    def _build_power_delivery_start(self, now: float) -> None:
        ev = self._m
        discharge = wants_discharge(self.controls, self.bpt)
        if self.dc:
            cap_w = ev.max_discharge_power_w if discharge else ev.max_charge_power_w
        else:
            cap_w = ev.ac_max_discharge_power_w if discharge else ev.ac_max_charge_power_w
        req = rq.power_delivery_start_req(
            self._hdr(now),
            bpt=self.bpt,
            discharge=discharge,
            schedule=self.schedule,
            cap_w=cap_w,
            departure_s=self._departure_s(now),
        )
        self._send(now, req, m.PowerDeliveryRes, self._timeout())

    def _build_charge_loop(self, now: float) -> None:
        loop = self._loop
        assert loop is not None
        req = loop.request(
            now,
            self._m,
            self._hdr(now),
            departure_s=self._departure_s(now),
            target_soc=self._target_soc(),
        )
        expected = m.DC_ChargeLoopRes if self.dc else m.AC_ChargeLoopRes
        self._send(now, req, expected, self.profile.charge_loop_timeout_s)

    def _build_power_delivery_renegotiate(self, now: float) -> None:
        req = rq.schedule_renegotiation_req(self._hdr(now))
        self._send(now, req, m.PowerDeliveryRes, self._timeout())

    def _build_power_delivery_stop(self, now: float) -> None:
        req = rq.power_delivery_stop_req(self._hdr(now))
        self._send(now, req, m.PowerDeliveryRes, self._timeout())

    def _build_welding_detection(self, now: float) -> None:
        self._welding_requests += 1
        last = self._welding_requests >= self.profile.welding_max_requests
        processing = m.Processing.Finished if last else m.Processing.Ongoing
        req = new(m.DC_WeldingDetectionReq, header=self._hdr(now), ev_processing=processing)
        self._send(now, req, m.DC_WeldingDetectionRes, self._timeout())

    def _build_session_stop(self, now: float) -> None:
        pause = self._stop_intent is not None and self._stop_intent.pause
        kind = m.ChargingSession.Pause if pause else m.ChargingSession.Terminate
        req = new(m.SessionStopReq, header=self._hdr(now), charging_session=kind)
        self._send(now, req, m.SessionStopRes, self._timeout())

    # ------------------------------------------------------ charge-loop end

    def _inject_fault(self, now: float) -> bool:
        fault = self.controls.fault
        if fault is None:
            return False
        self.controls.fault = None  # one-shot
        _log.warning("EVCC: injecting fault %s", fault.value)
        if fault is CarFault.OUT_OF_SEQUENCE:
            req = new(m.AuthorizationSetupReq, header=self._hdr(now))
            self._send(now, req, None, self._timeout())
        elif fault is CarFault.SILENT:
            self._silent_since = now
            self._send_at = None
        else:
            self._finish(now, EndReason.FAULT_DISAPPEAR, ok=False, safe_state=False)
        return True

    def _leave_loop_if_done(self, now: float) -> bool:
        """Wound down: PowerDelivery(Stop)."""
        loop = self._loop
        assert loop is not None
        loop.check_end(now, self._m, self._target_soc())
        stop = loop.wound_down(now, self._m)
        if stop is None:
            return False
        self._stop_intent = stop
        self._enter(Phase.POWER_DELIVERY_STOP, now)
        self._build_power_delivery_stop(now)
        return True

    def _renegotiate_if_due(self, now: float) -> bool:
        """At a loop slot: PowerDelivery(ScheduleRenegotiation) if the SECC or the car
        asked for it and the car is not winding down."""
        loop = self._loop
        assert loop is not None
        who = self._reneg.due(loop.loops, stopping=loop.stop is not None)
        if who is None:
            return False
        self._reneg.begin(who, None if self.schedule is None else self.schedule.tuple_id)
        if not self.dc:
            loop.set_ac_power(0.0)  # no energy until the schedule is agreed again
        self._enter(Phase.POWER_DELIVERY_RENEGOTIATE, now)
        self._build_power_delivery_renegotiate(now)
        return True

    # ------------------------------------------------------------ receiving

    def _on_message(self, msg: V2gtpMessage, now: float) -> None:
        pending = self._pending
        if pending is None:
            raise CarError(
                "V2GTP", "", f"unsolicited message, payload type {msg.payload_type:#06x}"
            )
        probe = pending.expected is None and msg.payload_type in _ISO20_TYPES
        if msg.payload_type != pending.payload_type and not probe:
            raise CarError(
                pending.response,
                "",
                f"came with payload type {msg.payload_type:#06x}, "
                f"expected {pending.payload_type:#06x}",
            )
        try:
            res: Any = exi.decode(msg.payload, msg.payload_type)
        except ExiDecodeError as exc:
            raise CarError(pending.response, "/".join(exc.path), f"undecodable: {exc}") from None
        name = exi.element_name(cast(Any, res))
        self.messages.append(name)
        self.last_response = name
        _log.debug("EVCC < %s", name)
        self._pending = None
        if pending.expected is None:
            self._on_fault_probe(res, name, now)
            return
        if not isinstance(res, pending.expected):
            raise CarError(name, "", f"out of order: {pending.request} answered with {name}")
        if not isinstance(res, ap.SupportedAppProtocolRes):
            self._check_common(res, name)
        _HANDLERS[self._phase](self, res, now)

    def _check_common(self, res: Any, name: str) -> None:
        session_id: bytes = res.header.session_id
        if not isinstance(res, m.SessionSetupRes) and session_id != self._session_id:
            raise CarError(
                name,
                "Header.SessionID",
                f"{session_id.hex().upper()} is not the granted {self._session_id.hex().upper()}",
            )
        code = str(res.response_code)
        if code.startswith("FAILED"):
            raise CarError(name, "ResponseCode", code)
        if code.startswith("WARNING"):
            _log.warning("EVCC: %s.ResponseCode = %s", name, code)

    def _on_fault_probe(self, res: Any, name: str, now: float) -> None:
        code = str(getattr(res, "response_code", None))
        if code != m.ResponseCode.FAILED_SequenceError:
            raise CarError(
                name,
                "ResponseCode",
                f"{code} to an out-of-sequence AuthorizationSetupReq "
                "(expected FAILED_SequenceError)",
            )
        _log.info("EVCC: SECC answered the out-of-sequence request with %s", code)
        self._finish(now, EndReason.FAULT_OUT_OF_SEQUENCE, ok=False)

    def _on_sap(self, res: ap.SupportedAppProtocolRes, now: float) -> None:
        msg = "supportedAppProtocolRes"
        if res.response_code == ap.ResponseCode.Failed_NoNegotiation:
            raise CarError(msg, "ResponseCode", str(res.response_code))
        if res.schema_id is None:
            raise CarError(msg, "SchemaID", "missing in a successful negotiation")
        namespace = self._offered_protocols.get(res.schema_id)
        if namespace is None:
            offered = sorted(self._offered_protocols)
            raise CarError(msg, "SchemaID", f"{res.schema_id} was not offered ({offered})")
        if res.response_code == ap.ResponseCode.OK_SuccessfulNegotiationWithMinorDeviation:
            _log.info("EVCC: %s agreed with a minor deviation", namespace)
        self.namespace = namespace
        family = DC_SERVICES if namespace == NAMESPACE_DC else AC_SERVICES
        self._candidates = [s for s in self.profile.services if s in family]
        self._enter(Phase.SESSION_SETUP, now)

    def _on_session_setup(self, res: m.SessionSetupRes, now: float) -> None:
        msg, code, granted = "SessionSetupRes", res.response_code, res.header.session_id
        self.evse_id = res.evseid
        limit_s = self.profile.communication_setup_timeout_s
        if now - self._started_at > limit_s:
            raise CarTimeoutError(msg, "", f"communication setup took longer than {limit_s:g} s")
        if granted == _NO_SESSION:
            raise CarError(msg, "Header.SessionID", "all zero: no session granted")
        resume = self.resume
        if code == m.ResponseCode.OK_OldSessionJoined:
            if resume is None:
                raise CarError(msg, "ResponseCode", "OK_OldSessionJoined for a new session")
            if granted != resume.session_id:
                raise CarError(
                    msg,
                    "Header.SessionID",
                    f"OK_OldSessionJoined with {granted.hex().upper()}, "
                    f"not the paused {resume.session_id.hex().upper()}",
                )
            self.service = resume.service
            self.parameter_set_id = resume.parameter_set_id
            self.mobility_needs_mode = resume.mobility_needs_mode
            _log.info("EVCC: paused session %s joined again", granted.hex().upper())
            if self.profile.resume_reauthorize:  # for SECCs that want the whole sequence
                self._enter(Phase.AUTHORIZATION_SETUP, now)
            else:  # [V2G20-1032]/[V2G20-2098]: continue at ChargeParameterDiscovery
                self._enter(Phase.CHARGE_PARAMETER_DISCOVERY, now)
            return
        if code != m.ResponseCode.OK_NewSessionEstablished:
            raise CarError(msg, "ResponseCode", f"unexpected {code}")
        if resume is not None:
            _log.warning(
                "EVCC: paused session %s not joined; new session %s",
                resume.session_id.hex().upper(),
                granted.hex().upper(),
            )
            self.resume = None
        self._session_id = granted
        self._enter(Phase.AUTHORIZATION_SETUP, now)

    def _on_authorization_setup(self, res: m.AuthorizationSetupRes, now: float) -> None:
        if m.Authorization.EIM not in res.authorization_services:
            offered = [str(a) for a in res.authorization_services]
            _log.warning("EVCC: SECC offers %s, the car only does EIM", offered)
            self._session_stop(now, EndReason.AUTHORIZATION_REJECTED, pause=False)
        else:
            self._enter(Phase.AUTHORIZATION, now)

    def _on_authorization(self, res: m.AuthorizationRes, now: float) -> None:
        if str(res.response_code).startswith("WARNING"):
            self._session_stop(now, EndReason.AUTHORIZATION_REJECTED, pause=False)
        elif res.evse_processing == m.Processing.Finished:
            self._enter(Phase.SERVICE_DISCOVERY, now)
        else:
            self._ongoing(now, self.profile.ongoing_timeout_s, "AuthorizationRes", "Ongoing")

    def _on_service_discovery(self, res: m.ServiceDiscoveryRes, now: float) -> None:
        offered = [s.service_id for s in res.energy_transfer_service_list.service]
        if len(set(offered)) != len(offered):
            raise CarError(
                "ServiceDiscoveryRes", "EnergyTransferServiceList", f"duplicates in {offered}"
            )
        _log.info("EVCC: SECC offers %s", [SERVICE_NAMES.get(i, str(i)) for i in offered])
        self._candidates = [s for s in self._candidates if SERVICE_IDS[s] in offered]
        if not self._candidates:
            self._session_stop(now, EndReason.NO_COMPATIBLE_SERVICE, pause=False)
            return
        self.service = self._candidates.pop(0)
        self._enter(Phase.SERVICE_DETAIL, now)

    def _on_service_detail(self, res: m.ServiceDetailRes, now: float) -> None:
        assert self.service is not None
        wanted = SERVICE_IDS[self.service]
        if res.service_id != wanted:
            raise CarError("ServiceDetailRes", "ServiceID", f"{res.service_id}, asked for {wanted}")
        sets = parse_parameter_sets(
            res, self.service, strict=self.profile.strict_service_parameters
        )
        chosen = choose_parameter_set(sets, self.profile.control_mode)
        if chosen is None:
            _log.info("EVCC: %s has no %s parameter set", self.service, self.profile.control_mode)
            if self._candidates:
                self.service = self._candidates.pop(0)
                self._enter(Phase.SERVICE_DETAIL, now)
            else:
                self._session_stop(now, EndReason.NO_COMPATIBLE_SERVICE, pause=False)
            return
        self.parameter_set_id = chosen.parameter_set_id
        self.mobility_needs_mode = chosen.mobility_needs_mode
        _log.info(
            "EVCC: selecting %s, parameter set %d (%s)",
            self.service,
            chosen.parameter_set_id,
            self.profile.control_mode,
        )
        self._enter(Phase.SERVICE_SELECTION, now)

    def _on_service_selection(self, res: m.ServiceSelectionRes, now: float) -> None:
        self._enter(Phase.CHARGE_PARAMETER_DISCOVERY, now)

    def _on_charge_parameter_discovery(self, res: Any, now: float) -> None:
        ev = self._m
        if self.dc:
            self.evse_limits = lim = dc_cpd_limits(res, bpt=self.bpt)
            if lim.max_voltage_v < ev.battery_voltage_v or lim.min_voltage_v > ev.max_voltage_v:
                _log.warning(
                    "EVCC: EVSE range %.0f..%.0f V does not fit the battery (%.0f V)",
                    lim.min_voltage_v,
                    lim.max_voltage_v,
                    ev.battery_voltage_v,
                )
                self._session_stop(now, EndReason.INCOMPATIBLE_LIMITS, pause=False)
                return
        else:
            self.evse_limits = ac_cpd_limits(res, bpt=self.bpt)
        self._enter(Phase.SCHEDULE_EXCHANGE, now)

    def _schedule_finished(self, res: m.ScheduleExchangeRes, now: float) -> bool:
        """False (and the request repeated) while the SECC answers Ongoing."""
        if res.evse_processing == m.Processing.Finished:
            return True
        self._ongoing(now, self.profile.ongoing_timeout_s, "ScheduleExchangeRes", "Ongoing")
        return False

    def _take_schedule(self, res: m.ScheduleExchangeRes, now: float) -> None:
        """Dynamic: the mobility needs; Scheduled: check the offer and choose a tuple,
        followed from now on."""
        msg = "ScheduleExchangeRes"
        if self.profile.control_mode == "dynamic":
            dyn = res.dynamic_se_res_control_mode
            if dyn is None:
                raise CarError(msg, "Dynamic_SEResControlMode", "missing in Dynamic mode")
            self._take_mobility_needs(msg, dyn.target_soc, dyn.minimum_soc, dyn.departure_time)
            return
        sched = res.scheduled_se_res_control_mode
        if sched is None:
            raise CarError(msg, "Scheduled_SEResControlMode", "missing in Scheduled mode")
        points = self.profile.max_supporting_points
        self._tuples = parse_tuples(sched, max_points=points, bpt=self.bpt)
        self.schedule = choose_tuple(self._tuples, wants_discharge(self.controls, self.bpt))
        self._schedule_t0 = now

    def _on_schedule_exchange(self, res: m.ScheduleExchangeRes, now: float) -> None:
        if not self._schedule_finished(res, now):
            return
        if res.go_to_pause:
            _log.info("EVCC: the SECC asks to pause (GoToPause)")
            self._session_stop(now, EndReason.EVSE_PAUSE, pause=True)
            return
        self._take_schedule(res, now)
        if self.schedule is not None:
            ids = [t.tuple_id for t in self._tuples]
            _log.info("EVCC: chose ScheduleTuple %d of %s", self.schedule.tuple_id, ids)
        if self.dc:
            self._cp_wanted_since = now
            self._actions.append(SetCp(closed=True))  # S2 closed before CableCheck
            self._enter(Phase.CABLE_CHECK, now)
        else:
            self._enter(Phase.POWER_DELIVERY_START, now)

    def _take_mobility_needs(
        self, msg: str, target: int | None, minimum: int | None, departure: int | None
    ) -> None:
        if target is None and minimum is None and departure is None:
            return
        if self.mobility_needs_mode != 2:
            self._warn_once(
                "mobility", "EVCC: %s carries mobility needs but MobilityNeedsMode is 1", msg
            )
        elif target is not None:
            self._evse_target_soc = target

    def _on_cable_check(self, res: m.DC_CableCheckRes, now: float) -> None:
        check_cable_check_voltage(self._m.inlet_voltage_v, self._m.max_voltage_v)
        if res.evse_processing == m.Processing.Finished:
            self._enter(Phase.PRE_CHARGE, now)
        else:
            limit_s = self.profile.cable_check_timeout_s
            self._ongoing(now, limit_s, "DC_CableCheckRes", "cable check Ongoing")

    def _on_pre_charge(self, res: m.DC_PreChargeRes, now: float) -> None:
        msg, ev = "DC_PreChargeRes", self._m
        present = value_of(res.evse_present_voltage, msg, "EVSEPresentVoltage")
        self.evse_present_voltage_v = present
        check_present_voltage(msg, present, self.evse_limits, ev.max_voltage_v)
        if self._pre_charge_finished:
            self._enter(Phase.POWER_DELIVERY_START, now)
            return
        tol, battery_v = self.profile.pre_charge_tolerance_v, ev.battery_voltage_v
        if abs(present - battery_v) <= tol and abs(ev.inlet_voltage_v - battery_v) <= tol:
            self._pre_charge_finished = True
            self._send_at = now  # once more, with EVProcessing=Finished
        else:
            limit_s = self.profile.pre_charge_timeout_s
            what = (
                f"{present:.0f} V (inlet {ev.inlet_voltage_v:.0f} V), not the battery's "
                f"{battery_v:.0f} V"
            )
            self._ongoing(now, limit_s, msg, what, "EVSEPresentVoltage")

    def _on_power_delivery_start(self, res: m.PowerDeliveryRes, now: float) -> None:
        ev = self._m
        if self.dc:
            if abs(ev.inlet_voltage_v - ev.battery_voltage_v) > self.profile.pre_charge_tolerance_v:
                raise CarError(
                    "PowerDeliveryRes",
                    "inlet voltage",
                    f"{ev.inlet_voltage_v:.0f} V at contactor close, battery "
                    f"{ev.battery_voltage_v:.0f} V: the EVSE dropped the pre-charge voltage",
                )
            self._actions.append(SetDcContactor(closed=True))  # [V2G20-1317]
        else:
            self._cp_wanted_since = now
            self._actions.append(SetCp(closed=True))  # [V2G20-847]: C within 250 ms
        self._loop = ChargeLoop(
            self.profile,
            self.controls,
            dc=self.dc,
            bpt=self.bpt,
            evse_limits=self.evse_limits,
            schedule=self.schedule,
            schedule_t0=self._schedule_t0,
            emit=self._actions.append,
        )
        self._enter(Phase.CHARGE_LOOP, now)
        self._on_evse_status("PowerDeliveryRes", res.evse_status, now)

    def _on_evse_status(self, msg: str, status: m.EVSEStatus | None, now: float) -> None:
        if status is None:
            return
        note, loop = str(status.evse_notification), self._loop
        assert loop is not None
        if note == m.EvseNotification.Terminate:
            loop.begin_stop(now, EndReason.EVSE_TERMINATE, pause=False)
        elif note == m.EvseNotification.Pause:
            loop.begin_stop(now, EndReason.EVSE_PAUSE, pause=True)
        elif note == m.EvseNotification.ScheduleRenegotiation:
            self._on_renegotiation_notice(msg, status.notification_max_delay, now)
        elif note != m.EvseNotification.ExitStandby:
            self._warn_once(
                f"note-{note}", "EVCC: %s: EVSENotification %s not supported; ignored", msg, note
            )

    def _on_renegotiation_notice(self, msg: str, max_delay_s: int, now: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._phase is not Phase.CHARGE_LOOP:
            _log.debug("EVCC: %s: ScheduleRenegotiation while renegotiating; ignored", msg)
        elif loop.stop is not None:
            if "reneg-stopping" not in self._warned:
                self._warned.add("reneg-stopping")
                _log.info(
                    "EVCC: %s: ScheduleRenegotiation ignored: the car is stopping (%s)",
                    msg,
                    loop.stop.reason.value,
                )
        else:
            self._reneg.notice(now, max_delay_s)

    def _on_charge_loop(self, res: Any, now: float) -> None:
        loop = self._loop
        assert loop is not None
        mode = loop.on_response(res, now, self._m)
        self.evse_present_voltage_v = loop.evse_present_voltage_v
        if self.profile.control_mode == "dynamic":
            msg = loop.response_name
            self._take_mobility_needs(msg, mode.target_soc, mode.minimum_soc, mode.departure_time)
        self._on_evse_status(loop.response_name, res.evse_status, now)
        self._repeat(now)
        send_by = self._reneg.send_by
        if send_by is not None and self._send_at is not None:
            # NotificationMaxDelay: the next slot, earlier if the delay is shorter
            self._send_at = max(now, min(self._send_at, send_by))

    def _on_power_delivery_renegotiate(self, res: m.PowerDeliveryRes, now: float) -> None:
        self._on_evse_status("PowerDeliveryRes", res.evse_status, now)  # Terminate/Pause kept
        self._enter(Phase.SCHEDULE_RENEGOTIATION, now)

    def _on_schedule_renegotiation(self, res: m.ScheduleExchangeRes, now: float) -> None:
        if not self._schedule_finished(res, now):
            return
        loop = self._loop
        assert loop is not None
        stop = loop.stop
        if res.go_to_pause:
            stop = StopIntent(EndReason.EVSE_PAUSE, True, now)
        elif stop is None and self.controls.stop:
            stop = StopIntent(EndReason.STOPPED, False, now)
        elif stop is None and self.controls.pause:
            stop = StopIntent(EndReason.PAUSED, True, now)
        if stop is not None:
            # no energy flows while renegotiating: straight to PowerDelivery(Stop)
            self._reneg.abandon(stop.reason.value)
            self._stop_intent = stop
            self._enter(Phase.POWER_DELIVERY_STOP, now)
            return
        self._take_schedule(res, now)
        self._enter(Phase.POWER_DELIVERY_RESUME, now)

    def _on_power_delivery_resume(self, res: m.PowerDeliveryRes, now: float) -> None:
        loop = self._loop
        assert loop is not None
        loop.schedule, loop.schedule_t0 = self.schedule, self._schedule_t0
        tuple_id = None if self.schedule is None else self.schedule.tuple_id
        self._reneg.finish(tuple_id, [t.tuple_id for t in self._tuples])
        self._enter(Phase.CHARGE_LOOP, now)
        self._on_evse_status("PowerDeliveryRes", res.evse_status, now)

    def _on_power_delivery_stop(self, res: m.PowerDeliveryRes, now: float) -> None:
        if self.dc:
            self._actions.append(SetDcContactor(closed=False))
            self._enter(Phase.WELDING_DETECTION, now)
        else:
            self._actions.append(SetCp(closed=False))  # [V2G20-848]: B within 250 ms
            self._cp_wanted_since = None
            self._enter(Phase.SESSION_STOP, now)

    def _on_welding_detection(self, res: m.DC_WeldingDetectionRes, now: float) -> None:
        voltage = value_of(res.evse_present_voltage, "DC_WeldingDetectionRes", "EVSEPresentVoltage")
        self.evse_present_voltage_v = voltage
        if voltage <= self.profile.welding_voltage_v:
            self._enter(Phase.SESSION_STOP, now)
        elif self._welding_requests >= self.profile.welding_max_requests:
            _log.warning(
                "EVCC: EVSE output still %.0f V after %d WeldingDetection requests",
                voltage,
                self._welding_requests,
            )
            self._enter(Phase.SESSION_STOP, now)
        else:
            self._repeat(now)

    def _on_session_stop(self, res: m.SessionStopRes, now: float) -> None:
        intent = self._stop_intent
        assert intent is not None
        self._finish(now, intent.reason, ok=intent.reason in OK_REASONS, pause=intent.pause)

    # ------------------------------------------------------------- endings

    def _safe_state(self) -> None:
        if self._loop is not None:
            self._loop.set_ac_power(0.0)
        elif not self.dc:
            self._actions.append(SetAcPower(0.0))
        self._actions += [SetDcContactor(closed=False), SetCp(closed=False)]
        self._cp_wanted_since = None

    def _close(self, phase: Phase, now: float, result: SessionResult) -> None:
        _log.debug("EVCC: %s -> %s", self._phase.value, phase.value)
        self._phase, self._phase_since = phase, now
        self._pending = None
        self._send_at = None
        self.result = result
        self._actions.append(SessionFinished(result))

    def _finish(
        self,
        now: float,
        reason: EndReason,
        *,
        ok: bool,
        pause: bool = False,
        safe_state: bool = True,
    ) -> None:
        if Phase.ENDED not in TRANSITIONS[self._phase]:
            raise LocalProtocolError(f"no transition {self._phase.value} -> ended")
        if safe_state:
            self._safe_state()
        resume = None
        if pause and self.service is not None and self.parameter_set_id is not None:
            resume = ResumeInfo(
                self._session_id, self.service, self.parameter_set_id, self.mobility_needs_mode
            )
        _log.info("EVCC: session %s ended: %s", self._session_id.hex().upper(), reason.value)
        self._close(Phase.ENDED, now, SessionResult(ok, reason, pause, resume))

    def _fail(self, now: float, error: CarError) -> NoReturn:
        """Queue the safe state, record the result and raise ``error``."""
        if not self.finished:
            _log.error("EVCC: %s", error)
            self._safe_state()
            self._close(Phase.FAILED, now, SessionResult(False, EndReason.ERROR, error=error))
        raise error


_Builder = Callable[[Evcc20Session, float], None]
_BUILDERS: Final[dict[Phase, _Builder]] = {
    _P.SAP: Evcc20Session._build_sap,
    _P.SESSION_SETUP: Evcc20Session._build_session_setup,
    _P.AUTHORIZATION_SETUP: Evcc20Session._build_authorization_setup,
    _P.AUTHORIZATION: Evcc20Session._build_authorization,
    _P.SERVICE_DISCOVERY: Evcc20Session._build_service_discovery,
    _P.SERVICE_DETAIL: Evcc20Session._build_service_detail,
    _P.SERVICE_SELECTION: Evcc20Session._build_service_selection,
    _P.CHARGE_PARAMETER_DISCOVERY: Evcc20Session._build_charge_parameter_discovery,
    _P.SCHEDULE_EXCHANGE: Evcc20Session._build_schedule_exchange,
    _P.CABLE_CHECK: Evcc20Session._build_cable_check,
    _P.PRE_CHARGE: Evcc20Session._build_pre_charge,
    _P.POWER_DELIVERY_START: Evcc20Session._build_power_delivery_start,
    _P.CHARGE_LOOP: Evcc20Session._build_charge_loop,
    _P.POWER_DELIVERY_RENEGOTIATE: Evcc20Session._build_power_delivery_renegotiate,
    _P.SCHEDULE_RENEGOTIATION: Evcc20Session._build_schedule_exchange,
    _P.POWER_DELIVERY_RESUME: Evcc20Session._build_power_delivery_start,
    _P.POWER_DELIVERY_STOP: Evcc20Session._build_power_delivery_stop,
    _P.WELDING_DETECTION: Evcc20Session._build_welding_detection,
    _P.SESSION_STOP: Evcc20Session._build_session_stop,
}
_Handler = Callable[[Evcc20Session, Any, float], None]
_HANDLERS: Final[dict[Phase, _Handler]] = {
    _P.SAP: Evcc20Session._on_sap,
    _P.SESSION_SETUP: Evcc20Session._on_session_setup,
    _P.AUTHORIZATION_SETUP: Evcc20Session._on_authorization_setup,
    _P.AUTHORIZATION: Evcc20Session._on_authorization,
    _P.SERVICE_DISCOVERY: Evcc20Session._on_service_discovery,
    _P.SERVICE_DETAIL: Evcc20Session._on_service_detail,
    _P.SERVICE_SELECTION: Evcc20Session._on_service_selection,
    _P.CHARGE_PARAMETER_DISCOVERY: Evcc20Session._on_charge_parameter_discovery,
    _P.SCHEDULE_EXCHANGE: Evcc20Session._on_schedule_exchange,
    _P.CABLE_CHECK: Evcc20Session._on_cable_check,
    _P.PRE_CHARGE: Evcc20Session._on_pre_charge,
    _P.POWER_DELIVERY_START: Evcc20Session._on_power_delivery_start,
    _P.CHARGE_LOOP: Evcc20Session._on_charge_loop,
    _P.POWER_DELIVERY_RENEGOTIATE: Evcc20Session._on_power_delivery_renegotiate,
    _P.SCHEDULE_RENEGOTIATION: Evcc20Session._on_schedule_renegotiation,
    _P.POWER_DELIVERY_RESUME: Evcc20Session._on_power_delivery_resume,
    _P.POWER_DELIVERY_STOP: Evcc20Session._on_power_delivery_stop,
    _P.WELDING_DETECTION: Evcc20Session._on_welding_detection,
    _P.SESSION_STOP: Evcc20Session._on_session_stop,
}
