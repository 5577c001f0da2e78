"""The ISO 15118-20 SECC session: V2GTP bytes and EVSE facts in, responses and power requests out.

Sans-I/O in the style of aioquic and h11: the adapter feeds events with
:meth:`SeccSession.handle` (``now`` is monotonic seconds), calls
:meth:`handle_timer` once :meth:`next_deadline` has passed, and carries out
the returned actions in order. Bytes are framed by
:class:`~chargepoint.iso15118.v2gtp.V2gtpFramer` and decoded by our EXI codec
here, so the adapter only reads and writes sockets.

The session never touches hardware: it asks for power, contactors and the
isolation monitor with typed actions, and the EVSE controller gates them with
the IEC 61851 state and the safety supervisor. Every set-point it asks for is
already within the arbitrated limits (:mod:`chargepoint.power.arbitration`)
combined with the EV's own limits; discharge needs a BPT service and every
source's permission.

Failure policy: a request out of sequence (``FAILED_SequenceError``), for
another session (``FAILED_UnknownSession``), unparseable (``FAILED``), or with
unusable values (``FAILED_WrongChargeParameter``) is answered with its own
response type and the session ends safely: power Off, contactors open,
connection closed. So do timeouts, CP changes outside the sequence
(unplug, C->B in the loop, E/F) and faults.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Machine

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118 import exi
from chargepoint.iso15118.exi.errors import ExiDecodeError, ExiEncodeError
from chargepoint.iso15118.messages import ExiModel
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc import schedules
from chargepoint.iso15118.secc.actions import (
    Action,
    CloseConnection,
    EvReport,
    EvScheduleChosen,
    PowerPhase,
    RequestContactors,
    RequestIsolationMonitor,
    RequestPower,
    SendData,
    SessionEnded,
    SessionNotice,
)
from chargepoint.iso15118.secc.events import (
    ConnectionLost,
    ConnectionOpened,
    CsmsNeedsAnswered,
    DataReceived,
    Event,
    EvseChanged,
    EvseView,
    LimitsChanged,
    StopRequested,
)
from chargepoint.iso15118.secc.needs import CpdMode, ev_needs
from chargepoint.iso15118.secc.numbers import RemoteValueError, from_rational, optional, to_rational
from chargepoint.iso15118.secc.responses import failure
from chargepoint.iso15118.secc.services import (
    Selection,
    discovery_list,
    offered_services,
    parameter_sets,
    select,
)
from chargepoint.iso15118.secc.settings import (
    AC_SERVICES,
    DC_SERVICES,
    NAMESPACE_AC,
    NAMESPACE_DC,
    SeccSettings,
    ServiceId,
)
from chargepoint.iso15118.secc.states import TRANSITIONS, SeccState
from chargepoint.iso15118.v2gtp import (
    Action as FrameAction,
)
from chargepoint.iso15118.v2gtp import (
    ConnectionClosed,
    V2gtpError,
    V2gtpFramer,
    V2gtpMessage,
    encode_frame,
)
from chargepoint.power.arbitration import NO_LIMITS, PowerLimits, discharge_magnitude
from chargepoint.power.grid_schedule import NO_SCHEDULE, GridSchedule

log = logging.getLogger(__name__)

_S = SeccState
_R = m.ResponseCode
_C_OR_D = (CpState.C, CpState.D)
_ZERO_ID = bytes(8)
CONTACTOR_CLOSE_TIMEOUT_S = 3.0  # [V2G20-860]: contactors closed <= 3 s after CP C/D
CONTACTOR_OPEN_TIMEOUT_S = 1.0
ISOLATION_SETTLE_S = 0.2  # an isolation reading counts once the test voltage stood this long
TERMINATE_MAX_DELAY_S = 2  # EVSENotification Terminate: EV must react within this
TERMINATE_GRACE_S = 1.0  # beyond NotificationMaxDelay before the SECC ends the session


def _unbound() -> RuntimeError:
    return RuntimeError("trigger not bound: the transitions Machine binds it")


class _RequestRejected(Exception):  # noqa: N818 - control flow inside the session only
    """Answer the current request with ``code`` and end the session."""

    def __init__(self, code: m.ResponseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EvLimits:
    """What the EV declared in ChargeParameterDiscovery (magnitudes)."""

    max_charge_power_w: float
    max_charge_current_a: float
    max_voltage_v: float
    min_voltage_v: float
    max_discharge_power_w: float
    max_discharge_current_a: float

    def as_limits(self, bpt: bool) -> PowerLimits:
        return PowerLimits(
            max_charge_power_w=self.max_charge_power_w,
            max_charge_current_a=self.max_charge_current_a,
            max_discharge_power_w=self.max_discharge_power_w if bpt else 0.0,
            max_discharge_current_a=self.max_discharge_current_a if bpt else 0.0,
            max_voltage_v=self.max_voltage_v,
            min_voltage_v=self.min_voltage_v,
            discharge_allowed=bpt,
        )


@dataclass
class _Pending:
    """A response we owe once the power path has moved (or the deadline passed)."""

    request: ExiModel
    want_closed: bool
    deadline: float


@dataclass(frozen=True, slots=True)
class _Paused:
    session_id: bytes
    evcc_id: str
    selection: Selection
    namespace: str


class SeccSession:
    """One EVSE's ISO 15118-20 SECC; lives across connections (Pause/resume)."""

    state: SeccState

    def __init__(self, settings: SeccSettings, *, random_bytes: Callable[[int], bytes]) -> None:
        self.settings = settings
        self._random = random_bytes
        self._machine = Machine(
            model=self,
            states=SeccState,
            transitions=TRANSITIONS,
            initial=SeccState.IDLE,
            auto_transitions=False,
            model_override=True,
        )
        self._out: list[Action] = []
        self._view = EvseView()
        self._limits = NO_LIMITS
        self._base: PowerLimits | None = None  # _limits without the CSMS's limit now
        self._grid: GridSchedule = NO_SCHEDULE  # the CSMS's limits ahead
        self._setpoint_w: float | None = None
        self._framer: V2gtpFramer | None = None
        self._unix_time = 0.0
        self._now = 0.0
        self._paused: _Paused | None = None
        self.last_request = ""  # name of the last request decoded (logs, live view)
        self._handler_table = self._handlers()  # built once: not per charge-loop request
        self._reset_session()

    def _reset_session(self) -> None:
        self._session_id: bytes | None = None
        self._evcc_id = ""
        self._namespace = ""
        self._offered: list[ServiceId] = []
        self._selection: Selection | None = None
        self._ev: EvLimits | None = None
        self._tuples: list[schedules.OfferedTuple] = []
        self._tuple: schedules.OfferedTuple | None = None
        self._renegotiating = False
        self._cpd_mode: CpdMode | None = None
        self._exchange_open = False  # a ScheduleExchange (maybe Ongoing) is under way
        self._awaiting_csms_until: float | None = None  # holding Ongoing for the CSMS
        self._grid_at_needs: GridSchedule = NO_SCHEDULE
        self._offered_grid: GridSchedule = NO_SCHEDULE  # what the offered tuples follow
        self._renegotiation_asked_at: float | None = None
        self._evse_renegotiation = False  # the renegotiation under way is ours
        self._standby = False
        self._stop_reason: str | None = None
        self._deadline: float | None = None
        self._deadline_reason = ""
        self._setup_deadline: float | None = None
        self._ongoing_since: float | None = None
        self._auth_notified = False
        self._cable_check_started: float | None = None
        self._test_voltage_v = 0.0
        self._voltage_reached_at: float | None = None
        self._isolation_ok = False
        self._cp_c_seen = False
        self._pending: _Pending | None = None
        self._departure_s: int | None = None
        self._ev_target_soc: int | None = None
        self._last_power: RequestPower | None = None
        self._terminate_by: float | None = None  # EV must have stopped by then

    # -- trigger stubs, bound by Machine from TRANSITIONS (model_override=True) --------
    def connected(self) -> bool:
        raise _unbound()

    def protocol_agreed(self) -> bool:
        raise _unbound()

    def session_created(self) -> bool:
        raise _unbound()

    def session_joined(self) -> bool:
        raise _unbound()

    def auth_setup_done(self) -> bool:
        raise _unbound()

    def authorized(self) -> bool:
        raise _unbound()

    def services_listed(self) -> bool:
        raise _unbound()

    def service_selected(self) -> bool:
        raise _unbound()

    def parameters_agreed(self) -> bool:
        raise _unbound()

    def schedule_agreed_dc(self) -> bool:
        raise _unbound()

    def schedule_agreed_ac(self) -> bool:
        raise _unbound()

    def schedule_renegotiated(self) -> bool:
        raise _unbound()

    def cable_checked(self) -> bool:
        raise _unbound()

    def pre_charged(self) -> bool:
        raise _unbound()

    def power_started(self) -> bool:
        raise _unbound()

    def renegotiate(self) -> bool:
        raise _unbound()

    def power_stopped_dc(self) -> bool:
        raise _unbound()

    def power_stopped_ac(self) -> bool:
        raise _unbound()

    def service_renegotiation(self) -> bool:
        raise _unbound()

    def stopped(self) -> bool:
        raise _unbound()

    def abort(self) -> bool:
        raise _unbound()

    def disconnected(self) -> bool:
        raise _unbound()

    # -- public API ------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A connection is being served (one at a time per EVSE)."""
        return self.state not in (_S.IDLE, _S.ENDED)

    @property
    def selection(self) -> Selection | None:
        return self._selection

    @property
    def session_id(self) -> bytes | None:
        return self._session_id

    @property
    def ev_limits(self) -> EvLimits | None:
        return self._ev

    @property
    def last_power(self) -> RequestPower | None:
        return self._last_power

    def handle(self, event: Event, now: float, unix_time: float | None = None) -> list[Action]:
        """Feed one event. ``unix_time`` (wall clock) stamps response headers."""
        self._out = []
        self._now = now
        if unix_time is not None:
            self._unix_time = unix_time
        match event:
            case ConnectionOpened():
                self._on_connection(event, now)
            case DataReceived(data=data):
                self._on_data(data, now)
            case ConnectionLost(detail=detail):
                self._on_lost(detail or "connection lost", now)
            case EvseChanged(view=view):
                self._on_evse(view, now)
            case LimitsChanged(limits=limits, setpoint_w=setpoint, grid=grid, base=base):
                self._limits = limits
                self._setpoint_w = setpoint
                self._grid = grid
                self._base = base
            case CsmsNeedsAnswered(schedule_coming=coming):
                if not coming or not self._grid.same_from(self._grid_at_needs, self._unix_time):
                    self._awaiting_csms_until = None  # nothing to wait for, or it came
            case StopRequested(reason=reason):
                self._on_stop_requested(reason, now)
        return self._flush()

    def handle_timer(self, now: float) -> list[Action]:
        self._out = []
        self._now = now
        pending = self._pending
        if self._terminate_by is not None and now >= self._terminate_by and self.active:
            self._terminate_by = None
            self._end_failed("the EV did not stop after EVSENotification Terminate", now)
            return self._flush()
        if pending is not None and now >= pending.deadline:
            self._pending = None
            what = "close" if pending.want_closed else "open"
            self._reject_now(
                type(pending.request),
                _R.FAILED_ContactorError,
                f"contactors did not {what} in time",
                now,
            )
        elif self._setup_deadline is not None and now >= self._setup_deadline:
            self._end_failed("communication setup timeout (no session within 20 s)", now)
        elif self._deadline is not None and now >= self._deadline:
            self._end_failed(self._deadline_reason, now)
        return self._flush()

    def next_deadline(self) -> float | None:
        candidates = [self._deadline, self._setup_deadline, self._terminate_by]
        if self._pending is not None:
            candidates.append(self._pending.deadline)
        found = [d for d in candidates if d is not None]
        return min(found) if found else None

    # -- connection ---------------------------------------------------------------------
    def _on_connection(self, event: ConnectionOpened, now: float) -> None:
        if self.active:
            raise RuntimeError("the adapter must refuse a second connection while one is served")
        if self.state is _S.ENDED:
            self.disconnected()
        self._reset_session()
        self._framer = V2gtpFramer()
        self.connected()
        # communication setup: SessionSetup done within 20 s (FACTS.md "Timing")
        self._setup_deadline = now + self.settings.timings.communication_setup_timeout_s
        self._deadline = now + self.settings.timings.sequence_timeout_s
        self._deadline_reason = "sequence timeout (no SupportedAppProtocolReq)"
        self._notice("state", f"connection from {event.peer} ({'TLS' if event.tls else 'TCP'})")

    def _on_lost(self, detail: str, now: float) -> None:
        if self.active:
            self._end_failed(detail, now, close=False)
        if self.state is _S.ENDED:
            self.disconnected()
        self._framer = None

    def _on_data(self, data: bytes, now: float) -> None:
        framer = self._framer
        if framer is None or not self.active:
            return
        framer.receive_data(data)
        for event in framer.events():
            if not self.active:
                return
            match event:
                case V2gtpMessage(payload_type=pt, payload=payload):
                    self._on_payload(int(pt), payload, now)
                case V2gtpError(action=action, detail=detail):
                    if action is FrameAction.CLOSE_CONNECTION:
                        self._end_failed(f"V2GTP: {detail}", now)
                        return
                    log.warning("V2GTP message discarded: %s", detail)
                case ConnectionClosed():
                    self._on_lost("EVCC closed the connection", now)
                    return

    def _on_payload(self, payload_type: int, payload: bytes, now: float) -> None:
        if self._pending is not None:
            # [V2G20-...]: one request at a time; a new one while we owe an answer is a fault
            self._end_failed("request received while a response was still pending", now)
            return
        try:
            message = exi.decode(payload, payload_type)
        except ExiDecodeError as exc:
            log.warning("undecodable %#06x message in %s: %s", payload_type, self.state.name, exc)
            self._reject_now(self._expected_request(), _R.FAILED, f"undecodable: {exc}", now)
            return
        self.last_request = type(message).__name__
        log.debug("EV -> SECC %s", self.last_request)
        try:
            self._dispatch(message, now)
        except _RequestRejected as rejected:
            self._reject_now(type(message), rejected.code, rejected.reason, now)
        except RemoteValueError as exc:
            self._reject_now(type(message), _R.FAILED_WrongChargeParameter, str(exc), now)

    def _dispatch(self, msg: ExiModel, now: float) -> None:
        if isinstance(msg, sap.SupportedAppProtocolReq):
            self._on_sap(msg, now)
            return
        header = getattr(msg, "header", None)
        if not isinstance(header, m.MessageHeader):
            raise _RequestRejected(_R.FAILED_SequenceError, f"{type(msg).__name__} not expected")
        if isinstance(msg, m.SessionSetupReq):
            self._on_session_setup(msg, now)
            return
        if self._session_id is None or header.session_id != self._session_id:
            # [V2G20-...]: a request for another session ends this one
            raise _RequestRejected(_R.FAILED_UnknownSession, "wrong SessionID")
        handler = self._handler_table.get(type(msg))
        if handler is None:
            raise _RequestRejected(_R.FAILED_SequenceError, f"{type(msg).__name__} not supported")
        handler(msg, now)

    def _handlers(self) -> dict[type[ExiModel], Callable[[Any, float], None]]:
        # each handler takes its own request class (the key): Any, as a dict cannot say so
        return {
            m.AuthorizationSetupReq: self._on_auth_setup,
            m.AuthorizationReq: self._on_authorization,
            m.ServiceDiscoveryReq: self._on_service_discovery,
            m.ServiceDetailReq: self._on_service_detail,
            m.ServiceSelectionReq: self._on_service_selection,
            m.DC_ChargeParameterDiscoveryReq: self._on_dc_cpd,
            m.AC_ChargeParameterDiscoveryReq: self._on_ac_cpd,
            m.ScheduleExchangeReq: self._on_schedule_exchange,
            m.DC_CableCheckReq: self._on_cable_check,
            m.DC_PreChargeReq: self._on_pre_charge,
            m.PowerDeliveryReq: self._on_power_delivery,
            m.DC_ChargeLoopReq: self._on_dc_loop,
            m.AC_ChargeLoopReq: self._on_ac_loop,
            m.DC_WeldingDetectionReq: self._on_welding,
            m.SessionStopReq: self._on_session_stop,
        }

    def _expect(self, *states: SeccState) -> None:
        if self.state not in states:
            raise _RequestRejected(
                _R.FAILED_SequenceError, f"not expected in state {self.state.name}"
            )

    def _expect_family(self, dc: bool) -> None:
        if (self._namespace == NAMESPACE_DC) != dc:
            raise _RequestRejected(_R.FAILED_SequenceError, "message of the other -20 namespace")

    # -- handshake ------------------------------------------------------------------------
    def _on_sap(self, req: sap.SupportedAppProtocolReq, now: float) -> None:
        if self.state is not _S.WAIT_SAP:
            raise _RequestRejected(_R.FAILED_SequenceError, "SupportedAppProtocol again")
        offered_ns = set()
        if DC_SERVICES.intersection(self.settings.services):
            offered_ns.add(NAMESPACE_DC)
        if AC_SERVICES.intersection(self.settings.services):
            offered_ns.add(NAMESPACE_AC)
        # the EV's priority decides among what both support (1 = highest)
        candidates = sorted(
            (p for p in req.app_protocol if p.protocol_namespace in offered_ns),
            key=lambda p: p.priority,
        )
        chosen = next((p for p in candidates if p.version_number_major == 1), None)
        if chosen is None:
            self._send(
                sap.SupportedAppProtocolRes(response_code=sap.ResponseCode.Failed_NoNegotiation)
            )
            self._end_failed("no common protocol in SupportedAppProtocolReq", now)
            return
        code = (
            sap.ResponseCode.OK_SuccessfulNegotiation
            if chosen.version_number_minor == 0
            else sap.ResponseCode.OK_SuccessfulNegotiationWithMinorDeviation
        )
        self._namespace = chosen.protocol_namespace
        self._send(sap.SupportedAppProtocolRes(response_code=code, schema_id=chosen.schema_id))
        self.protocol_agreed()
        self._next_request(now)

    def _on_session_setup(self, req: m.SessionSetupReq, now: float) -> None:
        self._expect(_S.WAIT_SESSION_SETUP)
        paused = self._paused
        self._setup_deadline = None
        joined = (
            paused is not None
            and req.header.session_id == paused.session_id
            and req.header.session_id != _ZERO_ID
            and req.evccid == paused.evcc_id  # [V2G20-2545]: only the same EVCC
            and paused.namespace == self._namespace
        )
        self._paused = None
        self._evcc_id = req.evccid
        if joined and paused is not None:
            self._session_id = paused.session_id
            self._selection = paused.selection
            self._offered = offered_services(self.settings, self._namespace == NAMESPACE_DC)
            self._send_response(
                m.SessionSetupRes, _R.OK_OldSessionJoined, evseid=self.settings.evse_id
            )
            self.session_joined()  # [V2G20-2098]: next is ChargeParameterDiscovery
            self._notice("state", f"session {self._session_id.hex()} joined again")
        else:
            self._session_id = self._new_session_id()
            self._send_response(
                m.SessionSetupRes, _R.OK_NewSessionEstablished, evseid=self.settings.evse_id
            )
            self.session_created()
            self._notice("state", f"session {self._session_id.hex()} for EVCC {req.evccid}")
        self._next_request(now)

    def _new_session_id(self) -> bytes:
        while True:
            sid = bytes(self._random(8))
            if len(sid) == 8 and sid != _ZERO_ID:
                return sid

    def _on_auth_setup(self, req: m.AuthorizationSetupReq, now: float) -> None:
        self._expect(_S.AUTH_SETUP)
        # EIM only; Plug & Charge is not offered yet.
        self._send_response(
            m.AuthorizationSetupRes,
            _R.OK,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
        self.auth_setup_done()
        self._next_request(now)

    def _on_authorization(self, req: m.AuthorizationReq, now: float) -> None:
        self._expect(_S.AUTHORIZATION)
        if req.selected_authorization_service is not m.Authorization.EIM:
            raise _RequestRejected(_R.WARNING_AuthorizationSelectionInvalid, "PnC not offered")
        if self._stop_reason is not None:
            raise _RequestRejected(_R.WARNING_EIMAuthorizationFailure, self._stop_reason)
        if self._view.authorized:
            self._ongoing_since = None
            self._send_response(m.AuthorizationRes, _R.OK, evse_processing=m.Processing.Finished)
            self.authorized()
            self._next_request(now)
            return
        if self._ongoing_since is None:
            self._ongoing_since = now
        elif now - self._ongoing_since >= self.settings.timings.ongoing_timeout_s:
            raise _RequestRejected(_R.WARNING_EIMAuthorizationFailure, "no authorisation in time")
        if not self._auth_notified:
            self._auth_notified = True
            self._notice("authorization_needed", "EIM: waiting for an authorisation")
        self._send_response(m.AuthorizationRes, _R.OK, evse_processing=m.Processing.Ongoing)
        self._next_request(now)

    # -- services ----------------------------------------------------------------------
    def _on_service_discovery(self, req: m.ServiceDiscoveryReq, now: float) -> None:
        self._expect(_S.SERVICE_DISCOVERY)
        offered = offered_services(self.settings, self._namespace == NAMESPACE_DC)
        if not offered:
            raise _RequestRejected(_R.FAILED_NoEnergyTransferServiceSelected, "nothing to offer")
        self._offered = offered
        self._send_response(
            m.ServiceDiscoveryRes,
            _R.OK,
            service_renegotiation_supported=self.settings.service_renegotiation,
            energy_transfer_service_list=discovery_list(self.settings, offered),
        )
        self.services_listed()
        self._next_request(now)

    def _on_service_detail(self, req: m.ServiceDetailReq, now: float) -> None:
        self._expect(_S.SERVICE_DETAIL)
        service = next((s for s in self._offered if int(s) == req.service_id), None)
        if service is None:
            raise _RequestRejected(_R.FAILED_ServiceIDInvalid, f"service {req.service_id}")
        self._send_response(
            m.ServiceDetailRes,
            _R.OK,
            service_id=req.service_id,
            service_parameter_list=m.ServiceParameterList(
                parameter_set=parameter_sets(self.settings, service)
            ),
        )
        self._next_request(now)

    def _on_service_selection(self, req: m.ServiceSelectionReq, now: float) -> None:
        self._expect(_S.SERVICE_DETAIL)
        chosen = req.selected_energy_transfer_service
        selection = select(
            self.settings,
            self._offered,
            chosen.service_id,
            chosen.parameter_set_id,
        )
        if selection is None:
            raise _RequestRejected(
                _R.FAILED_ServiceSelectionInvalid,
                f"service {chosen.service_id} / parameter set {chosen.parameter_set_id}",
            )
        self._selection = selection
        self._send_response(m.ServiceSelectionRes, _R.OK)
        self.service_selected()
        self._notice("state", f"service {selection.service.name}, {selection.control_mode}")
        self._next_request(now)

    # -- charge parameters and schedules --------------------------------------------------
    def _on_dc_cpd(self, req: m.DC_ChargeParameterDiscoveryReq, now: float) -> None:
        self._expect(_S.CHARGE_PARAMETER)
        self._expect_family(dc=True)
        sel = self._require_selection()
        bpt_mode = req.bpt_dc_cpd_req_energy_transfer_mode
        mode = bpt_mode if bpt_mode is not None else req.dc_cpd_req_energy_transfer_mode
        if mode is None or (sel.bpt and bpt_mode is None) or (not sel.bpt and bpt_mode is not None):
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "energy transfer mode mismatch")
        ev = EvLimits(
            max_charge_power_w=abs(
                from_rational(mode.ev_maximum_charge_power, "EVMaximumChargePower")
            ),
            max_charge_current_a=abs(
                from_rational(mode.ev_maximum_charge_current, "EVMaximumChargeCurrent")
            ),
            max_voltage_v=abs(from_rational(mode.ev_maximum_voltage, "EVMaximumVoltage")),
            min_voltage_v=abs(from_rational(mode.ev_minimum_voltage, "EVMinimumVoltage")),
            max_discharge_power_w=0.0
            if bpt_mode is None
            else discharge_magnitude(
                from_rational(bpt_mode.ev_maximum_discharge_power, "EVMaximumDischargePower")
            ),
            max_discharge_current_a=0.0
            if bpt_mode is None
            else discharge_magnitude(
                from_rational(bpt_mode.ev_maximum_discharge_current, "EVMaximumDischargeCurrent")
            ),
        )
        s = self.settings
        if ev.max_voltage_v < s.min_voltage_v or ev.min_voltage_v > s.max_voltage_v:
            raise _RequestRejected(
                _R.FAILED_WrongChargeParameter,
                f"EV voltage range {ev.min_voltage_v}-{ev.max_voltage_v} V outside the EVSE's",
            )
        self._ev = ev
        self._cpd_mode = mode
        lim = self._effective()
        r = to_rational
        common = {
            "evse_maximum_charge_power": r(_finite(lim.max_charge_power_w)),
            "evse_minimum_charge_power": r(0.0),
            "evse_maximum_charge_current": r(_finite(lim.max_charge_current_a)),
            "evse_minimum_charge_current": r(s.min_current_a),
            "evse_maximum_voltage": r(min(s.max_voltage_v, _finite(lim.max_voltage_v))),
            "evse_minimum_voltage": r(max(s.min_voltage_v, lim.min_voltage_v)),
        }
        if sel.bpt:
            body = m.BPT_DC_CPDResEnergyTransferMode(
                **common,
                # [V2G20-1034]/[V2G20-1035]: power from the EV is negative
                evse_maximum_discharge_power=r(-_finite(lim.max_discharge_power_w)),
                evse_minimum_discharge_power=r(0.0),
                evse_maximum_discharge_current=r(-_finite(lim.max_discharge_current_a)),
                evse_minimum_discharge_current=r(0.0),
            )
            self._send_response(
                m.DC_ChargeParameterDiscoveryRes, _R.OK, bpt_dc_cpd_res_energy_transfer_mode=body
            )
        else:
            self._send_response(
                m.DC_ChargeParameterDiscoveryRes,
                _R.OK,
                dc_cpd_res_energy_transfer_mode=m.DC_CPDResEnergyTransferMode(**common),
            )
        self.parameters_agreed()
        self._next_request(now)

    def _on_ac_cpd(self, req: m.AC_ChargeParameterDiscoveryReq, now: float) -> None:
        self._expect(_S.CHARGE_PARAMETER)
        self._expect_family(dc=False)
        sel = self._require_selection()
        bpt_mode = req.bpt_ac_cpd_req_energy_transfer_mode
        mode = bpt_mode if bpt_mode is not None else req.ac_cpd_req_energy_transfer_mode
        if mode is None or (sel.bpt and bpt_mode is None) or (not sel.bpt and bpt_mode is not None):
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "energy transfer mode mismatch")
        s = self.settings
        max_power = abs(from_rational(mode.ev_maximum_charge_power, "EVMaximumChargePower"))
        max_discharge = (
            0.0
            if bpt_mode is None
            else discharge_magnitude(
                from_rational(bpt_mode.ev_maximum_discharge_power, "EVMaximumDischargePower")
            )
        )
        self._ev = EvLimits(
            max_charge_power_w=max_power,
            max_charge_current_a=math.inf,
            max_voltage_v=math.inf,
            min_voltage_v=0.0,
            max_discharge_power_w=max_discharge,
            max_discharge_current_a=math.inf,
        )
        self._cpd_mode = mode
        lim = self._effective()
        r = to_rational
        common = {
            "evse_maximum_charge_power": r(_finite(lim.max_charge_power_w)),
            "evse_minimum_charge_power": r(0.0),
            "evse_nominal_frequency": r(s.ac_frequency_hz),
        }
        if sel.bpt:
            body = m.BPT_AC_CPDResEnergyTransferMode(
                **common,
                evse_maximum_discharge_power=r(-_finite(lim.max_discharge_power_w)),
                evse_minimum_discharge_power=r(0.0),
            )
            self._send_response(
                m.AC_ChargeParameterDiscoveryRes, _R.OK, bpt_ac_cpd_res_energy_transfer_mode=body
            )
        else:
            self._send_response(
                m.AC_ChargeParameterDiscoveryRes,
                _R.OK,
                ac_cpd_res_energy_transfer_mode=m.AC_CPDResEnergyTransferMode(**common),
            )
        self.parameters_agreed()
        self._next_request(now)

    def _on_schedule_exchange(self, req: m.ScheduleExchangeReq, now: float) -> None:
        self._expect(_S.SCHEDULE_EXCHANGE)
        sel = self._require_selection()
        dynamic = req.dynamic_se_req_control_mode
        scheduled = req.scheduled_se_req_control_mode
        if (sel.control_mode == "dynamic") != (dynamic is not None):
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "control mode mismatch")
        if not self._exchange_open:
            self._exchange_open = True
            self._report_needs(req, sel, now)
        # OCPP K15: while the CSMS's TxProfile for these needs is on its way the EV
        # repeats the request, answered Ongoing (FACTS.md "Session sequence"); the
        # control-mode element is mandatory either way (XSD choice 1..1)
        waiting = self._awaiting_csms(now)
        processing = m.Processing.Ongoing if waiting else m.Processing.Finished
        if not waiting:
            self._exchange_open = False
            self._evse_renegotiation = False
        if dynamic is not None:
            self._departure_s = dynamic.departure_time
            self._ev_target_soc = dynamic.target_soc
            self._send_response(
                m.ScheduleExchangeRes,
                _R.OK,
                evse_processing=processing,
                dynamic_se_res_control_mode=m.Dynamic_SEResControlMode(),
            )
        else:
            if scheduled is not None:
                self._departure_s = scheduled.departure_time
            base = self._effective(without_csms=True)
            self._tuples = schedules.offer(
                self.settings,
                PowerLimits(
                    max_charge_power_w=_finite(base.max_charge_power_w),
                    max_discharge_power_w=_finite(base.max_discharge_power_w),
                    discharge_allowed=base.may_discharge,
                ),
                bpt=sel.bpt,
                unix_time_s=int(self._unix_time),
                grid=self._grid,
                max_entries=req.maximum_supporting_points,
            )
            self._offered_grid = self._grid
            self._send_response(
                m.ScheduleExchangeRes,
                _R.OK,
                evse_processing=processing,
                scheduled_se_res_control_mode=schedules.to_message(
                    self.settings, self._tuples, bpt=sel.bpt
                ),
            )
        if waiting:
            self._next_request(now)
            return
        if self._renegotiating:
            self._renegotiating = False
            self.schedule_renegotiated()
        elif sel.dc:
            self.schedule_agreed_dc()
        else:
            self.schedule_agreed_ac()
        self._next_request(now)

    def _report_needs(self, req: m.ScheduleExchangeReq, sel: Selection, now: float) -> None:
        """OCPP K15/K17: the EV's needs go to the CSMS once per negotiation (not when we
        asked for the renegotiation ourselves: K16, the CSMS's schedule is known)."""
        if self._cpd_mode is None or self._evse_renegotiation:
            return
        try:
            needs = ev_needs(
                self._cpd_mode, req, dc=sel.dc, bpt=sel.bpt, control_mode=sel.control_mode
            )
        except RemoteValueError as exc:  # an optional report: charging goes on
            self._notice("ev_needs_unusable", str(exc))
            return
        self._emit(needs)
        self._grid_at_needs = self._grid
        # Only an offer of ScheduleTuples needs the CSMS's TxProfile first; in Dynamic
        # mode its limits reach every ChargeLoopRes whenever they come
        wait = self.settings.csms_schedule_wait_s if sel.control_mode == "scheduled" else 0.0
        self._awaiting_csms_until = now + wait if wait > 0.0 else None

    def _awaiting_csms(self, now: float) -> bool:
        until = self._awaiting_csms_until
        if until is None:
            return False
        if now >= until or not self._grid.same_from(self._grid_at_needs, self._unix_time):
            if now >= until:
                self._notice(
                    "csms_schedule_late", "no TxProfile in time; offering the limits known"
                )
            self._awaiting_csms_until = None
            return False
        return True

    # -- DC: cable check and pre-charge -----------------------------------------------------
    def _on_cable_check(self, req: m.DC_CableCheckReq, now: float) -> None:
        self._expect(_S.CABLE_CHECK)
        view = self._view
        s = self.settings
        if self._stop_reason is not None:
            raise _RequestRejected(_R.FAILED, f"EVSE stop: {self._stop_reason}")
        processing = m.Processing.Ongoing
        code = _R.OK
        if view.cp_state not in _C_OR_D:
            pass  # the EV sets C before CableCheck; wait (sequence timer runs)
        elif self._cable_check_started is None:
            self._cable_check_started = now
            self._test_voltage_v = self._cable_check_voltage()
            self._emit(RequestIsolationMonitor(True))
            self._request_power(
                PowerPhase.CABLE_CHECK,
                self._test_voltage_v,
                s.cable_check_current_a,
                self._test_voltage_v * s.cable_check_current_a,
            )
        elif not self._isolation_ok:
            verdict = self._isolation_verdict(now)
            if verdict is not None:
                code = verdict
                if code is _R.OK:
                    self._isolation_ok = True
                    # discharge the output before pre-charge (IEC 61851-23 cable check end)
                    self._request_power(PowerPhase.OFF)
                else:
                    processing = m.Processing.Finished
            elif now - self._cable_check_started > s.timings.cable_check_timeout_s:
                raise _RequestRejected(_R.FAILED, "cable check did not finish in time")
        elif view.present_voltage_v <= s.timings.welding_voltage_v:
            processing = m.Processing.Finished
        if code is not _R.OK:
            self._send_response(m.DC_CableCheckRes, code, evse_processing=processing)
            self._end_failed("cable check failed: isolation fault", now)
            return
        self._send_response(m.DC_CableCheckRes, _R.OK, evse_processing=processing)
        if processing is m.Processing.Finished:
            self.cable_checked()
        self._next_request(now)

    def _cable_check_voltage(self) -> float:
        """IEC 61851-23 test voltage (FACTS.md): min(EV max + 50 V, 500 V, EVSE max) for EVs
        up to 500 V, else min(1.1 x EV max, EVSE max)."""
        ev_max = self._ev.max_voltage_v if self._ev is not None else self.settings.max_voltage_v
        evse_max = self.settings.max_voltage_v
        if ev_max <= 500.0:
            return max(self.settings.min_voltage_v, min(ev_max + 50.0, 500.0, evse_max))
        return min(1.1 * ev_max, evse_max)

    def _isolation_verdict(self, now: float) -> m.ResponseCode | None:
        view = self._view
        s = self.settings
        if view.isolation_device_fault:
            return _R.FAILED
        if view.present_voltage_v < 0.95 * self._test_voltage_v:
            self._voltage_reached_at = None
            return None
        if self._voltage_reached_at is None:
            self._voltage_reached_at = now
        if now - self._voltage_reached_at < ISOLATION_SETTLE_S or view.isolation_ohm is None:
            return None
        if view.isolation_ohm < s.isolation_fault_ohm:  # IEC 61851-23: fault below 100 kohm
            return _R.FAILED
        if view.isolation_ohm < s.isolation_warning_ohm:
            self._notice("warning", f"isolation {view.isolation_ohm:.0f} ohm in the warning band")
        return _R.OK

    def _on_pre_charge(self, req: m.DC_PreChargeReq, now: float) -> None:
        self._expect(_S.PRE_CHARGE)
        if self._stop_reason is not None:
            raise _RequestRejected(_R.FAILED, f"EVSE stop: {self._stop_reason}")
        target = abs(from_rational(req.ev_target_voltage, "EVTargetVoltage"))
        ev = self._ev
        limit = (
            self.settings.max_voltage_v
            if ev is None
            else min(self.settings.max_voltage_v, ev.max_voltage_v)
        )
        if target > limit:
            # Never above what both sides declared; the EV sees the voltage not match
            # and decides (its pre-charge timeout) -- no FAILED for a schema-valid value.
            log.warning("EVTargetVoltage %.1f V above %.1f V: clamped", target, limit)
            target = limit
        if req.ev_processing is m.Processing.Finished:
            # [V2G20-2005]/[V2G20-2006]: only PowerDelivery may follow
            self._send_response(
                m.DC_PreChargeRes, _R.OK, evse_present_voltage=to_rational(self._present_v())
            )
            self.pre_charged()
        else:
            s = self.settings
            self._request_power(
                PowerPhase.PRE_CHARGE,
                target,
                s.pre_charge_current_a,
                target * s.pre_charge_current_a,
            )
            self._send_response(
                m.DC_PreChargeRes, _R.OK, evse_present_voltage=to_rational(self._present_v())
            )
        self._next_request(now)

    # -- power delivery -------------------------------------------------------------------------
    def _on_power_delivery(self, req: m.PowerDeliveryReq, now: float) -> None:
        self._expect(_S.PRE_CHARGE, _S.POWER_DELIVERY, _S.CHARGE_LOOP)
        sel = self._require_selection()
        progress = req.charge_progress
        if progress is m.ChargeProgress.Start:
            self._power_start(req, sel, now)
        elif progress is m.ChargeProgress.Stop:
            self._terminate_by = None
            self._request_power(PowerPhase.OFF)
            self._emit(RequestContactors(False))
            if sel.dc and self._view.contactors_closed:
                self._pending = _Pending(req, False, now + CONTACTOR_OPEN_TIMEOUT_S)
                self._deadline = None
            else:
                self._finish_stop(req, now)
        else:
            self._expect(_S.CHARGE_LOOP)
            if progress is m.ChargeProgress.Standby:
                self._standby = True
                self._request_power(PowerPhase.ENERGY, self._present_v(), 0.0, 0.0)
                self._send_response(m.PowerDeliveryRes, _R.OK)
            else:  # ScheduleRenegotiation: no energy until the schedule is agreed again
                self._renegotiating = True
                self._evse_renegotiation = self._renegotiation_asked_at is not None
                self._renegotiation_asked_at = None
                self._request_power(PowerPhase.ENERGY, self._present_v(), 0.0, 0.0)
                self._send_response(m.PowerDeliveryRes, _R.OK)
                self.renegotiate()
            self._next_request(now)

    def _power_start(self, req: m.PowerDeliveryReq, sel: Selection, now: float) -> None:
        if self.state is _S.CHARGE_LOOP and not self._standby:
            raise _RequestRejected(_R.FAILED_SequenceError, "PowerDelivery(Start) while charging")
        if self._stop_reason is not None:
            raise _RequestRejected(_R.FAILED_PowerDeliveryNotApplied, self._stop_reason)
        if req.bpt_channel_selection is m.ChannelSelection.Discharge and not sel.bpt:
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "discharge without BPT")
        if sel.control_mode == "scheduled":
            profile = req.ev_power_profile
            mode = None if profile is None else profile.scheduled_evppt_control_mode
            chosen = None
            if mode is not None:
                chosen = next(
                    (t for t in self._tuples if t.tuple_id == mode.selected_schedule_tuple_id), None
                )
            # EVProcessing=Ongoing without EVPowerProfile: the EV has not chosen yet and
            # repeats PowerDelivery(Start) (FACTS.md "Session sequence"); judge the final one
            undecided = mode is None and req.ev_processing is not m.Processing.Finished
            if chosen is None and self.state is not _S.CHARGE_LOOP and not undecided:
                raise _RequestRejected(
                    _R.FAILED_ScheduleSelectionInvalid, "no offered ScheduleTuple selected"
                )
            if chosen is not None:
                self._tuple = chosen
                if req.ev_processing is m.Processing.Finished:
                    self._emit(_chosen_schedule(chosen, req.ev_power_profile))
        if req.ev_processing is not m.Processing.Finished:
            self._send_response(m.PowerDeliveryRes, _R.OK)  # the EV repeats when ready
            self._next_request(now)
            return
        self._standby = False
        if self.state is _S.CHARGE_LOOP:
            self._send_response(m.PowerDeliveryRes, _R.OK)
            self.power_started()
            self._next_request(now)
            return
        if sel.dc:
            if self._view.cp_state not in _C_OR_D:
                raise _RequestRejected(_R.FAILED_ContactorError, "CP not in C/D at PowerDelivery")
            # hold the pre-charged voltage, no current, while the contactors close
            self._request_power(PowerPhase.PRE_CHARGE, self._present_v(), 0.0, 0.0)
        self._emit(RequestContactors(True))  # [V2G20-1317]: not before PowerDelivery(Start)
        if sel.dc and not self._view.contactors_closed:
            self._pending = _Pending(req, True, now + CONTACTOR_CLOSE_TIMEOUT_S)
            self._deadline = None
            return
        # AC: the EV goes to C <= 250 ms after our response ([V2G20-847]); the EVSE
        # closes within 3 s of C ([V2G20-860]).
        self._send_response(m.PowerDeliveryRes, _R.OK)
        self.power_started()
        self._cp_c_seen = self._view.cp_state in _C_OR_D
        self._next_request(now)

    def _finish_stop(self, req: ExiModel, now: float) -> None:
        sel = self._require_selection()
        self._send_response(m.PowerDeliveryRes, _R.OK)
        if sel.dc:
            self.power_stopped_dc()
        else:
            self.power_stopped_ac()
        self._next_request(now)

    def _on_pending_resolved(self, pending: _Pending, now: float) -> None:
        self._pending = None
        if pending.want_closed:
            self._send_response(m.PowerDeliveryRes, _R.OK)
            self.power_started()
            self._cp_c_seen = True
            self._next_request(now)
        else:
            self._finish_stop(pending.request, now)

    # -- the charge loop ------------------------------------------------------------------------
    def _on_dc_loop(self, req: m.DC_ChargeLoopReq, now: float) -> None:
        self._expect(_S.CHARGE_LOOP)
        self._expect_family(dc=True)
        sel = self._require_selection()
        ev_v = abs(from_rational(req.ev_present_voltage, "EVPresentVoltage"))
        limits = self._effective()
        ev = self._ev
        if ev is not None:
            limits = limits.combine(ev.as_limits(sel.bpt))
        s = self.settings
        target_power: float | None = None
        dyn = req.bpt_dynamic_dc_cl_req_control_mode or req.dynamic_dc_cl_req_control_mode
        sch = req.bpt_scheduled_dc_cl_req_control_mode or req.scheduled_dc_cl_req_control_mode
        if (sel.control_mode == "dynamic") != (dyn is not None) or (dyn is None) == (sch is None):
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "control mode mismatch")
        if (
            req.bpt_dynamic_dc_cl_req_control_mode or req.bpt_scheduled_dc_cl_req_control_mode
        ) is not None and not sel.bpt:
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "BPT loop without BPT service")
        if dyn is not None:
            limits = limits.combine(self._dynamic_ev_limits(dyn, sel.bpt))
            wanted = self._dynamic_target_power(dyn, limits)
            target_power = wanted
            current = limits.clamp_current(wanted / ev_v if ev_v > 1.0 else 0.0, ev_v)
        else:
            assert sch is not None
            limits = limits.combine(self._scheduled_ev_limits(sch, sel.bpt))
            if self._tuple is not None:
                limits = limits.combine(self._tuple.limits(self._unix_time))
            wanted_a = from_rational(sch.ev_target_current, "EVTargetCurrent")
            current = limits.clamp_current(wanted_a, ev_v)
            if self._setpoint_w is not None and self._setpoint_w >= 0.0 and current > 0.0:
                current = min(current, self._setpoint_w / ev_v if ev_v > 1.0 else 0.0)
        if self._standby or self._stop_reason is not None:
            current = 0.0
        if current >= 0.0:
            voltage = min(s.max_voltage_v, _finite(limits.max_voltage_v, s.max_voltage_v))
        else:
            voltage = max(s.min_voltage_v, limits.min_voltage_v)
        self._request_power(PowerPhase.ENERGY, voltage, current, abs(current) * max(ev_v, 1.0))
        present_v, present_a = self._present_v(), self._view.present_current_a
        res_mode: dict[str, ExiModel] = {}
        r = to_rational
        if dyn is not None:
            common: dict[str, Any] = {
                "evse_maximum_charge_power": r(_finite(limits.max_charge_power_w)),
                "evse_minimum_charge_power": r(0.0),
                "evse_maximum_charge_current": r(_finite(limits.max_charge_current_a)),
                "evse_maximum_voltage": r(min(s.max_voltage_v, _finite(limits.max_voltage_v))),
            }
            if req.bpt_dynamic_dc_cl_req_control_mode is not None:
                res_mode["bpt_dynamic_dc_cl_res_control_mode"] = m.BPT_Dynamic_DC_CLResControlMode(
                    **common,
                    evse_maximum_discharge_power=r(-_finite(limits.max_discharge_power_w)),
                    evse_minimum_discharge_power=r(0.0),
                    evse_maximum_discharge_current=r(-_finite(limits.max_discharge_current_a)),
                    evse_minimum_voltage=r(max(s.min_voltage_v, limits.min_voltage_v)),
                )
            else:
                res_mode["dynamic_dc_cl_res_control_mode"] = m.Dynamic_DC_CLResControlMode(**common)
        elif req.bpt_scheduled_dc_cl_req_control_mode is not None:
            res_mode["bpt_scheduled_dc_cl_res_control_mode"] = m.BPT_Scheduled_DC_CLResControlMode()
        else:
            res_mode["scheduled_dc_cl_res_control_mode"] = m.Scheduled_DC_CLResControlMode()
        charge_cap = limits.charge_current_at(ev_v)
        self._send_response(
            m.DC_ChargeLoopRes,
            _R.OK,
            evse_status=self._loop_status(),
            meter_info=self._meter_info() if req.meter_info_requested else None,
            evse_present_current=r(present_a),
            evse_present_voltage=r(present_v),
            evse_power_limit_achieved=abs(current) * ev_v >= _finite(limits.max_charge_power_w)
            and current > 0.0,
            evse_current_limit_achieved=current > 0.0 and current >= charge_cap,
            evse_voltage_limit_achieved=present_v >= s.max_voltage_v,
            **res_mode,
        )
        self._report(req.display_parameters, ev_v, current, target_power)
        self._next_request(now, charge_loop=True)

    def _dynamic_ev_limits(
        self, dyn: m.BPT_Dynamic_DC_CLReqControlMode | m.Dynamic_DC_CLReqControlMode, bpt: bool
    ) -> PowerLimits:
        discharge_p = discharge_c = 0.0
        if isinstance(dyn, m.BPT_Dynamic_DC_CLReqControlMode) and bpt:
            discharge_p = discharge_magnitude(
                from_rational(dyn.ev_maximum_discharge_power, "EVMaximumDischargePower")
            )
            discharge_c = discharge_magnitude(
                from_rational(dyn.ev_maximum_discharge_current, "EVMaximumDischargeCurrent")
            )
        if dyn.departure_time is not None:
            self._departure_s = dyn.departure_time
        return PowerLimits(
            max_charge_power_w=abs(
                from_rational(dyn.ev_maximum_charge_power, "EVMaximumChargePower")
            ),
            max_charge_current_a=abs(
                from_rational(dyn.ev_maximum_charge_current, "EVMaximumChargeCurrent")
            ),
            max_voltage_v=abs(from_rational(dyn.ev_maximum_voltage, "EVMaximumVoltage")),
            min_voltage_v=abs(from_rational(dyn.ev_minimum_voltage, "EVMinimumVoltage")),
            max_discharge_power_w=discharge_p,
            max_discharge_current_a=discharge_c,
            discharge_allowed=bpt and discharge_p > 0.0,
        )

    def _dynamic_target_power(
        self,
        dyn: m.BPT_Dynamic_DC_CLReqControlMode
        | m.Dynamic_DC_CLReqControlMode
        | m.BPT_Dynamic_AC_CLReqControlMode
        | m.Dynamic_AC_CLReqControlMode,
        limits: PowerLimits,
    ) -> float:
        """Dynamic mode: the SECC sets the operating point within every limit."""
        target_energy = from_rational(dyn.ev_target_energy_request, "EVTargetEnergyRequest")
        min_energy = from_rational(dyn.ev_minimum_energy_request, "EVMinimumEnergyRequest")
        setpoint = self._setpoint_w
        if setpoint is None:
            wanted = _finite(limits.max_charge_power_w) if target_energy > 0.0 else 0.0
        else:
            wanted = setpoint
        if wanted < 0.0 and min_energy > 0.0:
            wanted = 0.0  # below its minimum SoC the EV must not be discharged
        if wanted > 0.0 and target_energy <= 0.0 and setpoint is None:
            wanted = 0.0
        return limits.clamp_power(wanted)

    def _scheduled_ev_limits(
        self, sch: m.BPT_Scheduled_DC_CLReqControlMode | m.Scheduled_DC_CLReqControlMode, bpt: bool
    ) -> PowerLimits:
        def mag(value: m.RationalNumber | None, field: str) -> float:
            v = optional(value, field)
            return math.inf if v is None else abs(v)

        discharge_p = discharge_c = 0.0
        if isinstance(sch, m.BPT_Scheduled_DC_CLReqControlMode) and bpt:
            p = optional(sch.ev_maximum_discharge_power, "EVMaximumDischargePower")
            c = optional(sch.ev_maximum_discharge_current, "EVMaximumDischargeCurrent")
            discharge_p = math.inf if p is None else discharge_magnitude(p)
            discharge_c = math.inf if c is None else discharge_magnitude(c)
        return PowerLimits(
            max_charge_power_w=mag(sch.ev_maximum_charge_power, "EVMaximumChargePower"),
            max_charge_current_a=mag(sch.ev_maximum_charge_current, "EVMaximumChargeCurrent"),
            max_voltage_v=mag(sch.ev_maximum_voltage, "EVMaximumVoltage"),
            max_discharge_power_w=discharge_p,
            max_discharge_current_a=discharge_c,
            discharge_allowed=bpt,
        )

    def _on_ac_loop(self, req: m.AC_ChargeLoopReq, now: float) -> None:
        self._expect(_S.CHARGE_LOOP)
        self._expect_family(dc=False)
        sel = self._require_selection()
        limits = self._effective()
        if self._ev is not None:
            limits = limits.combine(self._ev.as_limits(sel.bpt))
        dyn = req.bpt_dynamic_ac_cl_req_control_mode or req.dynamic_ac_cl_req_control_mode
        sch = req.bpt_scheduled_ac_cl_req_control_mode or req.scheduled_ac_cl_req_control_mode
        if (sel.control_mode == "dynamic") != (dyn is not None) or (dyn is None) == (sch is None):
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "control mode mismatch")
        if (
            req.bpt_dynamic_ac_cl_req_control_mode or req.bpt_scheduled_ac_cl_req_control_mode
        ) is not None and not sel.bpt:
            raise _RequestRejected(_R.FAILED_WrongChargeParameter, "BPT loop without BPT service")
        r = to_rational
        present_p = (
            self._view.present_voltage_v
            * self._view.present_current_a
            * max(1, self.settings.ac_phases)
        )
        res_mode: dict[str, ExiModel] = {}
        target: float
        if dyn is not None:
            discharge = 0.0
            if isinstance(dyn, m.BPT_Dynamic_AC_CLReqControlMode) and sel.bpt:
                discharge = discharge_magnitude(
                    from_rational(dyn.ev_maximum_discharge_power, "EVMaximumDischargePower")
                )
            if dyn.departure_time is not None:
                self._departure_s = dyn.departure_time
            limits = limits.combine(
                PowerLimits(
                    max_charge_power_w=abs(
                        from_rational(dyn.ev_maximum_charge_power, "EVMaximumChargePower")
                    ),
                    max_discharge_power_w=discharge,
                    discharge_allowed=sel.bpt and discharge > 0.0,
                )
            )
            target = self._dynamic_target_power(dyn, limits)
            if self._standby or self._stop_reason is not None:
                target = 0.0
            if isinstance(dyn, m.BPT_Dynamic_AC_CLReqControlMode):
                res_mode["bpt_dynamic_ac_cl_res_control_mode"] = m.BPT_Dynamic_AC_CLResControlMode(
                    evse_target_active_power=r(target), evse_present_active_power=r(present_p)
                )
            else:
                res_mode["dynamic_ac_cl_res_control_mode"] = m.Dynamic_AC_CLResControlMode(
                    evse_target_active_power=r(target), evse_present_active_power=r(present_p)
                )
        else:
            assert sch is not None
            if self._tuple is not None:
                limits = limits.combine(self._tuple.limits(self._unix_time))
            ev_p = from_rational(sch.ev_present_active_power, "EVPresentActivePower")
            target = limits.clamp_power(ev_p)
            if self._standby or self._stop_reason is not None:
                target = 0.0
            if isinstance(sch, m.BPT_Scheduled_AC_CLReqControlMode):
                res_mode["bpt_scheduled_ac_cl_res_control_mode"] = (
                    m.BPT_Scheduled_AC_CLResControlMode(evse_present_active_power=r(present_p))
                )
            else:
                res_mode["scheduled_ac_cl_res_control_mode"] = m.Scheduled_AC_CLResControlMode(
                    evse_present_active_power=r(present_p)
                )
        self._request_power(PowerPhase.ENERGY, 0.0, 0.0, target)
        self._send_response(
            m.AC_ChargeLoopRes,
            _R.OK,
            evse_status=self._loop_status(),
            meter_info=self._meter_info() if req.meter_info_requested else None,
            **res_mode,
        )
        self._report(req.display_parameters, None, None, target)
        self._next_request(now, charge_loop=True)

    def _loop_status(self) -> m.EVSEStatus | None:
        """EVSE-initiated end: EVSENotification Terminate in every loop response until
        the EV sends PowerDelivery(Stop) (within NotificationMaxDelay, else we end it).
        A CSMS schedule that changed since the tuples were offered: ScheduleRenegotiation
        (OCPP K16), until the EV renegotiates or NotificationMaxDelay has passed; the
        CSMS's limit in force is applied to every loop meanwhile anyway."""
        if self._stop_reason is not None:
            if self._terminate_by is None:
                self._terminate_by = self._now + TERMINATE_MAX_DELAY_S + TERMINATE_GRACE_S
            return m.EVSEStatus(
                notification_max_delay=TERMINATE_MAX_DELAY_S,
                evse_notification=m.EvseNotification.Terminate,
            )
        if not self._schedule_outdated():
            self._renegotiation_asked_at = None
            return None
        delay = self.settings.renegotiation_max_delay_s
        asked = self._renegotiation_asked_at
        if asked is None:
            self._renegotiation_asked_at = asked = self._now
            self._notice("schedule_renegotiation", "the CSMS's schedule changed; asking the EV")
        elif self._now - asked > delay + TERMINATE_GRACE_S:
            self._notice("schedule_renegotiation", "the EV did not renegotiate; limits still apply")
            self._offered_grid = self._grid
            self._renegotiation_asked_at = None
            return None
        return m.EVSEStatus(
            notification_max_delay=delay,
            evse_notification=m.EvseNotification.ScheduleRenegotiation,
        )

    def _schedule_outdated(self) -> bool:
        sel = self._selection
        return (
            sel is not None
            and sel.control_mode == "scheduled"
            and self._tuple is not None
            and not self._standby
            and not self._grid.same_from(self._offered_grid, self._unix_time)
        )

    def _meter_info(self) -> m.MeterInfo:
        v = self._view
        return m.MeterInfo(
            meter_id=(v.meter_id or self.settings.meter_id)[:32],
            charged_energy_reading_wh=max(0, int(v.import_energy_wh or 0.0)),
            bpt_discharged_energy_reading_wh=max(0, int(v.export_energy_wh or 0.0)),
        )

    def _report(self, display: m.DisplayParameters | None, ev_v: float | None,
                current: float | None, power: float | None) -> None:  # fmt: skip
        self._emit(
            EvReport(
                soc_pct=None if display is None else display.present_soc,
                ev_voltage_v=ev_v,
                target_current_a=current,
                target_power_w=power,
                departure_time_s=self._departure_s,
                energy_request_wh=None,
            )
        )

    def _on_welding(self, req: m.DC_WeldingDetectionReq, now: float) -> None:
        self._expect(_S.WELDING)
        self._send_response(
            m.DC_WeldingDetectionRes, _R.OK, evse_present_voltage=to_rational(self._present_v())
        )
        self._next_request(now)

    def _on_session_stop(self, req: m.SessionStopReq, now: float) -> None:
        if self.state is _S.CHARGE_LOOP:
            raise _RequestRejected(
                _R.FAILED_SequenceError, "SessionStop without PowerDelivery(Stop)"
            )
        self._expect(*_STOPPABLE_STATES)
        kind = req.charging_session
        self._request_power(PowerPhase.OFF)
        self._emit(RequestContactors(False))
        if kind is m.ChargingSession.ServiceRenegotiation:
            if not self.settings.service_renegotiation:
                raise _RequestRejected(_R.FAILED_NoServiceRenegotiationSupported, "not supported")
            self._emit(RequestIsolationMonitor(False))
            self._send_response(m.SessionStopRes, _R.OK)
            self._selection = None
            self._tuple = None
            self._cable_check_started = None
            self._isolation_ok = False
            self.service_renegotiation()
            self._next_request(now)
            return
        paused = kind is m.ChargingSession.Pause
        if paused and not self.settings.allow_pause:
            raise _RequestRejected(_R.FAILED_PauseNotAllowed, "pause not allowed")
        self._send_response(m.SessionStopRes, _R.OK)
        if paused and self._session_id is not None and self._selection is not None:
            self._paused = _Paused(
                self._session_id, self._evcc_id, self._selection, self._namespace
            )
        self._emit(RequestIsolationMonitor(False))
        self.stopped()
        reason = "paused by the EV" if paused else "terminated by the EV"
        self._deadline = self._setup_deadline = None
        self._emit(SessionEnded(reason, failed=False, paused=paused))
        self._emit(CloseConnection(reason))

    # -- EVSE side --------------------------------------------------------------------------------
    def _on_evse(self, view: EvseView, now: float) -> None:
        old = self._view
        self._view = view
        if not self.active:
            if (
                view.cp_state is CpState.A
                and self._paused is not None
                and old.cp_state is not CpState.A
            ):
                self._paused = None  # unplugged: a paused session cannot be joined again
            return
        cp = view.cp_state
        if cp is CpState.A:
            self._end_failed("EV unplugged (CP A)", now)
            return
        if cp in (CpState.E, CpState.F):
            self._end_failed(f"CP state {cp.value}", now)
            return
        if view.faulted and self.state in _ENERGY_STATES:
            self._end_failed("EVSE fault", now)
            return
        if cp in _C_OR_D:
            self._cp_c_seen = True
        elif (
            cp is CpState.B
            and self._cp_c_seen
            and self.state in (_S.CABLE_CHECK, _S.PRE_CHARGE, _S.CHARGE_LOOP)
            and not self._standby
            and self._pending is None
        ):
            # C -> B outside PowerDelivery(Stop): the EV opened S2 under load
            self._end_failed("CP C -> B during energy transfer", now)
            return
        pending = self._pending
        if pending is not None and view.contactors_closed == pending.want_closed:
            self._on_pending_resolved(pending, now)

    def _on_stop_requested(self, reason: str, now: float) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        if not self.active:
            return
        if self.state in (_S.CHARGE_LOOP,):
            # Dynamic and Scheduled: stop the energy now, tell the EV in the next response
            self._request_power(PowerPhase.ENERGY, self._present_v(), 0.0, 0.0)
        elif self.state in (_S.CABLE_CHECK, _S.PRE_CHARGE, _S.POWER_DELIVERY):
            self._request_power(PowerPhase.OFF)

    # -- helpers --------------------------------------------------------------------------
    def _require_selection(self) -> Selection:
        if self._selection is None:
            raise _RequestRejected(_R.FAILED_NoEnergyTransferServiceSelected, "no service selected")
        return self._selection

    def _effective(self, *, without_csms: bool = False) -> PowerLimits:
        sel = self._selection
        limits = self._base if without_csms and self._base is not None else self._limits
        if sel is None or not sel.bpt:
            limits = limits.combine(PowerLimits(max_discharge_power_w=0.0,
                                                max_discharge_current_a=0.0,
                                                discharge_allowed=False))  # fmt: skip
        return limits

    def _present_v(self) -> float:
        return max(0.0, self._view.present_voltage_v)

    def _request_power(self, phase: PowerPhase, voltage_v: float = 0.0, current_a: float = 0.0,
                       power_w: float = 0.0) -> None:  # fmt: skip
        request = RequestPower(phase, voltage_v, current_a, power_w)
        if request != self._last_power:
            self._last_power = request
            self._emit(request)

    def _header(self) -> m.MessageHeader:
        return m.MessageHeader(
            session_id=self._session_id or _ZERO_ID, time_stamp=max(0, int(self._unix_time))
        )

    def _send_response(self, cls: type[ExiModel], code: m.ResponseCode, **fields: object) -> None:
        self._send(cls(header=self._header(), response_code=code, **fields))

    def _send(self, message: ExiModel) -> None:
        try:
            payload = exi.encode(message)
        except ExiEncodeError as exc:  # a bug of ours: never send invalid EXI
            log.error("cannot encode %s: %s", type(message).__name__, exc)
            raise
        log.debug("SECC -> EV %s", type(message).__name__)
        self._emit(SendData(encode_frame(exi.payload_type_of(message), payload)))

    def _reject_now(self, request_type: type[ExiModel], code: m.ResponseCode, reason: str,
                    now: float) -> None:  # fmt: skip
        log.warning(
            "%s answered %s in %s: %s", request_type.__name__, code.value, self.state.name, reason
        )
        response = failure(request_type, self._header(), code)
        if isinstance(response, m.SessionSetupRes):
            response.evseid = self.settings.evse_id
        if response is not None:
            self._send(response)
        self._end_failed(f"{request_type.__name__}: {code.value} ({reason})", now)

    def _expected_request(self) -> type[ExiModel]:
        dc = self._namespace != NAMESPACE_AC
        return {
            _S.WAIT_SAP: sap.SupportedAppProtocolReq,
            _S.WAIT_SESSION_SETUP: m.SessionSetupReq,
            _S.AUTH_SETUP: m.AuthorizationSetupReq,
            _S.AUTHORIZATION: m.AuthorizationReq,
            _S.SERVICE_DISCOVERY: m.ServiceDiscoveryReq,
            _S.SERVICE_DETAIL: m.ServiceSelectionReq,
            _S.CHARGE_PARAMETER: m.DC_ChargeParameterDiscoveryReq
            if dc
            else m.AC_ChargeParameterDiscoveryReq,
            _S.SCHEDULE_EXCHANGE: m.ScheduleExchangeReq,
            _S.CABLE_CHECK: m.DC_CableCheckReq,
            _S.PRE_CHARGE: m.DC_PreChargeReq,
            _S.POWER_DELIVERY: m.PowerDeliveryReq,
            _S.CHARGE_LOOP: m.DC_ChargeLoopReq if dc else m.AC_ChargeLoopReq,
            _S.WELDING: m.DC_WeldingDetectionReq,
            _S.SESSION_STOP: m.SessionStopReq,
        }.get(self.state, m.SessionStopReq)

    def _next_request(self, now: float, *, charge_loop: bool = False) -> None:
        t = self.settings.timings
        if charge_loop:  # [V2G20-1500]/[V2G20-1502]
            self._deadline = now + t.charge_loop_timeout_s
            self._deadline_reason = "no request within the charge-loop timeout"
        else:
            self._deadline = now + t.sequence_timeout_s
            self._deadline_reason = f"sequence timeout in {self.state.name}"

    def _end_failed(self, reason: str, now: float, *, close: bool = True) -> None:
        """Safe end: power Off, contactors open (the controller orders them), monitor off."""
        if self.state in (_S.IDLE, _S.ENDED):
            return
        log.warning("ISO 15118-20 session ended: %s", reason)
        self._pending = None
        self._deadline = self._setup_deadline = None
        self._paused = None
        self._request_power(PowerPhase.OFF)
        self._emit(RequestContactors(False))
        self._emit(RequestIsolationMonitor(False))
        self.abort()
        self._emit(SessionEnded(reason, failed=True))
        if close:
            self._emit(CloseConnection(reason))

    def _notice(self, kind: str, detail: str) -> None:
        self._emit(SessionNotice(kind, detail))

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out


_STOPPABLE_STATES = (
    _S.AUTHORIZATION,
    _S.SERVICE_DISCOVERY,
    _S.SERVICE_DETAIL,
    _S.CHARGE_PARAMETER,
    _S.SCHEDULE_EXCHANGE,
    _S.CABLE_CHECK,
    _S.PRE_CHARGE,
    _S.POWER_DELIVERY,
    _S.WELDING,
    _S.SESSION_STOP,
)
_ENERGY_STATES = (_S.CABLE_CHECK, _S.PRE_CHARGE, _S.POWER_DELIVERY, _S.CHARGE_LOOP)


def _finite(value: float, fallback: float = 0.0) -> float:
    """Limits are ``inf`` when no source bounds them; messages need numbers."""
    return value if math.isfinite(value) else fallback


def _chosen_schedule(
    chosen: schedules.OfferedTuple, profile: m.EVPowerProfile | None
) -> EvScheduleChosen:
    """The EV's own EVPowerProfile if it sent entries, else the tuple it picked."""
    entries = None if profile is None else profile.ev_power_profile_entries
    if profile is not None and entries is not None and entries.ev_power_profile_entry:
        periods: list[tuple[int, float]] = []
        offset = 0
        for entry in entries.ev_power_profile_entry:
            try:
                power = from_rational(entry.power, "EVPowerProfileEntries.Power")
            except RemoteValueError:
                break  # a report only: keep what was usable
            periods.append((offset, power))
            offset += entry.duration
        if periods:
            return EvScheduleChosen(chosen.tuple_id, profile.time_anchor, tuple(periods))
    return EvScheduleChosen(
        chosen.tuple_id,
        chosen.time_anchor_s,
        tuple((p.offset_s, p.charge_power_w) for p in chosen.pieces),
        tuple(p.discharge_power_w for p in chosen.pieces) if chosen.discharges else (),
    )
