"""Property test: the SECC session and the EVSE controller together, under random input.

Random request sequences (mostly the right next request with random values,
sometimes any request, the wrong session, garbage bytes), timer expiries, CP
changes, contactor feedback and limit changes. Whatever happens:

* power never goes beyond any limit in either direction, and never from the
  EV unless a BPT service was selected and discharge is allowed;
* the controller grants contactor permission only while the session wants the
  power path closed (PowerDelivery(Start) ... Stop) and CP is in C/D;
* cable check and pre-charge never ask for more than 2 A;
* every path ends in a defined state, and a lost connection leaves the session
  IDLE with the power path open.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from chargepoint.evse.actions import (
    PowerDirection,
    SetContactorPermission,
    SetPilotPwm,
    SetPilotX1,
    SetPowerStage,
    SwitchPowerStageOff,
)
from chargepoint.evse.controller import EvseController, EvseSettings
from chargepoint.evse.events import (
    HlcContactors,
    HlcIsolationMonitor,
    HlcPower,
    HlcSessionEnded,
    PilotObserved,
)
from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import (
    PowerPhase,
    RequestContactors,
    RequestIsolationMonitor,
    RequestPower,
    SessionEnded,
)
from chargepoint.iso15118.secc.events import (
    ConnectionLost,
    ConnectionOpened,
    DataReceived,
    LimitsChanged,
)
from chargepoint.iso15118.secc.states import SeccState
from chargepoint.iso15118.v2gtp import V2gtpFramer, encode_frame
from chargepoint.power.arbitration import PowerLimits
from tests.iso15118.secc.driver import AC_NS, DC_NS, EVCC_ID, HARDWARE, Harness, rn

S = SeccState
EPS = 1e-6

CTL_SETTINGS = EvseSettings(
    max_current_a=100.0,
    has_power_stage=True,
    hlc_only=True,
    max_voltage_v=920.0,
    max_export_current_a=100.0,
    max_import_current_a=80.0,
    max_export_power_w=30_000.0,
    max_import_power_w=20_000.0,
)

values = st.floats(min_value=-60_000, max_value=60_000, allow_nan=False)
positive = st.floats(min_value=0, max_value=60_000, allow_nan=False)
volts = st.floats(min_value=0, max_value=1_000, allow_nan=False)


def rq(draw: st.DrawFn, h: Harness) -> BaseModel:
    """The request a conforming EV would send next, with random values."""
    hdr = h.header()
    ns_dc = h.session._namespace != AC_NS
    state = h.session.state
    sel = h.session.selection
    if state is S.WAIT_SAP:
        ns = draw(st.sampled_from([DC_NS, AC_NS, "urn:foo"]))
        return sap.SupportedAppProtocolReq(
            app_protocol=[
                sap.AppProtocol(
                    protocol_namespace=ns,
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=1,
                    priority=1,
                )
            ]
        )
    if state is S.WAIT_SESSION_SETUP:
        return m.SessionSetupReq(header=hdr, evccid=EVCC_ID)
    if state is S.AUTH_SETUP:
        return m.AuthorizationSetupReq(header=hdr)
    if state is S.AUTHORIZATION:
        return m.AuthorizationReq(
            header=hdr,
            selected_authorization_service=m.Authorization.EIM,
            eim_a_req_authorization_mode=m.EIM_AReqAuthorizationMode(),
        )
    if state is S.SERVICE_DISCOVERY:
        return m.ServiceDiscoveryReq(header=hdr)
    if state is S.SERVICE_DETAIL:
        service = draw(st.sampled_from([6, 2] if ns_dc else [5, 1]))
        if draw(st.booleans()):
            return m.ServiceDetailReq(header=hdr, service_id=service)
        return m.ServiceSelectionReq(
            header=hdr,
            selected_energy_transfer_service=m.SelectedService(
                service_id=service, parameter_set_id=draw(st.sampled_from([1, 2]))
            ),
        )
    if state is S.CHARGE_PARAMETER:
        bpt = sel is not None and sel.bpt
        if ns_dc:
            common: dict[str, Any] = {
                "ev_maximum_charge_power": rn(draw(positive)),
                "ev_minimum_charge_power": rn(0),
                "ev_maximum_charge_current": rn(draw(st.floats(0, 500))),
                "ev_minimum_charge_current": rn(0),
                "ev_maximum_voltage": rn(draw(st.floats(200, 1000))),
                "ev_minimum_voltage": rn(draw(st.floats(0, 300))),
            }
            if bpt:
                return m.DC_ChargeParameterDiscoveryReq(
                    header=hdr,
                    bpt_dc_cpd_req_energy_transfer_mode=m.BPT_DC_CPDReqEnergyTransferMode(
                        **common,
                        ev_maximum_discharge_power=rn(draw(values)),
                        ev_minimum_discharge_power=rn(0),
                        ev_maximum_discharge_current=rn(draw(st.floats(-500, 500))),
                        ev_minimum_discharge_current=rn(0),
                    ),
                )
            return m.DC_ChargeParameterDiscoveryReq(
                header=hdr, dc_cpd_req_energy_transfer_mode=m.DC_CPDReqEnergyTransferMode(**common)
            )
        ac: dict[str, Any] = {
            "ev_maximum_charge_power": rn(draw(positive)),
            "ev_minimum_charge_power": rn(0),
        }
        if bpt:
            return m.AC_ChargeParameterDiscoveryReq(
                header=hdr,
                bpt_ac_cpd_req_energy_transfer_mode=m.BPT_AC_CPDReqEnergyTransferMode(
                    **ac,
                    ev_maximum_discharge_power=rn(draw(values)),
                    ev_minimum_discharge_power=rn(0),
                ),
            )
        return m.AC_ChargeParameterDiscoveryReq(
            header=hdr, ac_cpd_req_energy_transfer_mode=m.AC_CPDReqEnergyTransferMode(**ac)
        )
    if state is S.SCHEDULE_EXCHANGE:
        if sel is not None and sel.control_mode == "dynamic":
            return m.ScheduleExchangeReq(
                header=hdr,
                maximum_supporting_points=1024,
                dynamic_se_req_control_mode=m.Dynamic_SEReqControlMode(
                    departure_time=3600,
                    ev_target_energy_request=rn(draw(values)),
                    ev_maximum_energy_request=rn(30_000),
                    ev_minimum_energy_request=rn(draw(values)),
                ),
            )
        return m.ScheduleExchangeReq(
            header=hdr,
            maximum_supporting_points=12,
            scheduled_se_req_control_mode=m.Scheduled_SEReqControlMode(),
        )
    if state is S.CABLE_CHECK:
        return m.DC_CableCheckReq(header=hdr)
    if state is S.PRE_CHARGE:
        v = rn(draw(volts))
        processing = draw(st.sampled_from(list(m.Processing)))
        return m.DC_PreChargeReq(
            header=hdr, ev_processing=processing, ev_present_voltage=v, ev_target_voltage=v
        )
    if (state in (S.POWER_DELIVERY, S.CHARGE_LOOP) and draw(st.integers(0, 4)) == 0) or (
        state is S.POWER_DELIVERY
    ):
        progress = draw(st.sampled_from(list(m.ChargeProgress)))
        profile = None
        if sel is not None and sel.control_mode == "scheduled":
            profile = m.EVPowerProfile(
                time_anchor=0,
                scheduled_evppt_control_mode=m.Scheduled_EVPPTControlMode(
                    selected_schedule_tuple_id=draw(st.integers(1, 4))
                ),
                ev_power_profile_entries=m.EVPowerProfileEntryList(
                    ev_power_profile_entry=[m.PowerScheduleEntry(duration=60, power=rn(1000))]
                ),
            )
        return m.PowerDeliveryReq(
            header=hdr,
            ev_processing=m.Processing.Finished,
            charge_progress=progress,
            ev_power_profile=profile,
            bpt_channel_selection=draw(st.sampled_from([None, *m.ChannelSelection])),
        )
    if state is S.CHARGE_LOOP:
        return _loop_request(draw, h, hdr, ns_dc)
    if state is S.WELDING and draw(st.booleans()):
        return m.DC_WeldingDetectionReq(header=hdr, ev_processing=m.Processing.Ongoing)
    return m.SessionStopReq(
        header=hdr, charging_session=draw(st.sampled_from(list(m.ChargingSession)))
    )


def _loop_request(draw: st.DrawFn, h: Harness, hdr: m.MessageHeader, ns_dc: bool) -> BaseModel:
    sel = h.session.selection
    dynamic = sel is not None and sel.control_mode == "dynamic"
    bpt = draw(st.booleans()) if sel is None else sel.bpt and draw(st.integers(0, 9)) > 0
    if ns_dc:
        ev_v = rn(draw(st.floats(0, 1000)))
        if dynamic:
            common: dict[str, Any] = {
                "ev_target_energy_request": rn(draw(values)),
                "ev_maximum_energy_request": rn(draw(values)),
                "ev_minimum_energy_request": rn(draw(values)),
                "ev_maximum_charge_power": rn(draw(values)),
                "ev_minimum_charge_power": rn(0),
                "ev_maximum_charge_current": rn(draw(st.floats(-500, 500))),
                "ev_maximum_voltage": rn(draw(volts)),
                "ev_minimum_voltage": rn(draw(volts)),
            }
            mode: dict[str, Any]
            if bpt:
                mode = {
                    "bpt_dynamic_dc_cl_req_control_mode": m.BPT_Dynamic_DC_CLReqControlMode(
                        **common,
                        ev_maximum_discharge_power=rn(draw(values)),
                        ev_minimum_discharge_power=rn(0),
                        ev_maximum_discharge_current=rn(draw(st.floats(-500, 500))),
                    )
                }
            else:
                mode = {"dynamic_dc_cl_req_control_mode": m.Dynamic_DC_CLReqControlMode(**common)}
        else:
            target = {
                "ev_target_current": rn(draw(st.floats(-500, 500))),
                "ev_target_voltage": rn(draw(volts)),
            }
            if bpt:
                mode = {
                    "bpt_scheduled_dc_cl_req_control_mode": m.BPT_Scheduled_DC_CLReqControlMode(
                        **target,
                        ev_maximum_discharge_current=rn(draw(st.floats(-500, 500))),
                    )
                }
            else:
                mode = {
                    "scheduled_dc_cl_req_control_mode": m.Scheduled_DC_CLReqControlMode(**target)
                }
        return m.DC_ChargeLoopReq(
            header=hdr, meter_info_requested=False, ev_present_voltage=ev_v, **mode
        )
    p = rn(draw(values))
    if dynamic:
        dyn: dict[str, Any] = {
            "ev_target_energy_request": rn(draw(values)),
            "ev_maximum_energy_request": rn(draw(values)),
            "ev_minimum_energy_request": rn(draw(values)),
            "ev_maximum_charge_power": rn(draw(values)),
            "ev_minimum_charge_power": rn(0),
            "ev_present_active_power": p,
            "ev_present_reactive_power": rn(0),
        }
        if bpt:
            mode = {
                "bpt_dynamic_ac_cl_req_control_mode": m.BPT_Dynamic_AC_CLReqControlMode(
                    **dyn,
                    ev_maximum_discharge_power=rn(draw(values)),
                    ev_minimum_discharge_power=rn(0),
                )
            }
        else:
            mode = {"dynamic_ac_cl_req_control_mode": m.Dynamic_AC_CLReqControlMode(**dyn)}
    elif bpt:
        mode = {
            "bpt_scheduled_ac_cl_req_control_mode": m.BPT_Scheduled_AC_CLReqControlMode(
                ev_present_active_power=p
            )
        }
    else:
        mode = {
            "scheduled_ac_cl_req_control_mode": m.Scheduled_AC_CLReqControlMode(
                ev_present_active_power=p
            )
        }
    return m.AC_ChargeLoopReq(header=hdr, meter_info_requested=draw(st.booleans()), **mode)


class World:
    """Session + controller + a pilot line and power path that do what they are told."""

    def __init__(self, limits: PowerLimits, setpoint: float | None, discharge_ok: bool) -> None:
        self.h = Harness.create(limits=limits, setpoint_w=setpoint)
        self.limits = limits
        self.ctl = EvseController(CTL_SETTINGS)
        self.cp = CpState.C  # DC: the EV sets C before the cable check
        self.permission = False
        self.pwm = False
        self.voltage = 0.0  # the power stage output follows its set-point
        self.isolation = 5e6
        self.wants_closed = False
        self.discharge_ok = discharge_ok
        self.done = 0
        self.run_ctl(self.ctl.start(0.0))
        self.observe()

    def process(self) -> None:
        """Carry the session's new actions to the controller, then show it the result."""
        while self.done < len(self.h.actions):
            new = self.h.actions[self.done :]
            self.done = len(self.h.actions)
            self.session_actions(new)
            self.observe()

    def observe(self) -> None:
        out = self.ctl.handle(
            PilotObserved(
                cp_state=self.cp,
                output=PilotOutput.PWM if self.pwm else PilotOutput.X1,
                contactor_closed=self.permission,
            ),
            self.h.now,
        )
        self.run_ctl(out)
        self.h.set_view(
            cp_state=self.cp,
            contactors_closed=self.permission,
            pwm_on=self.pwm,
            faulted=bool(self.ctl.latched_faults),
            present_voltage_v=self.voltage,
            isolation_ohm=self.isolation,
        )

    def run_ctl(self, out: list[Any]) -> None:
        for action in out:
            if isinstance(action, SetContactorPermission):
                if action.granted:
                    assert self.wants_closed, "permission without PowerDelivery(Start)"
                    assert self.cp in (CpState.C, CpState.D), "permission outside C/D"
                self.permission = action.granted
            elif isinstance(action, SetPilotPwm):
                self.pwm = True
            elif isinstance(action, SetPilotX1):
                self.pwm = False
            elif isinstance(action, SetPowerStage):
                self.check_power(action)
                self.voltage = action.voltage_v
            elif isinstance(action, SwitchPowerStageOff):
                self.voltage = 0.0

    def check_power(self, action: SetPowerStage) -> None:
        assert action.current_a >= 0 and action.power_w >= 0 and action.voltage_v >= 0
        lim = self.limits
        if action.direction is PowerDirection.EXPORT:
            if not self.permission:
                assert action.current_a <= 2.0 + EPS, "more than 2 A before the power path closed"
                return
            assert action.current_a <= min(lim.max_charge_current_a, 100.0) + EPS
            assert action.power_w <= min(lim.max_charge_power_w, 30_000.0) + EPS
        else:
            sel = self.h.session.selection
            assert sel is not None and sel.bpt, "discharge without a BPT service"
            assert self.discharge_ok, "discharge although a source forbids it"
            assert self.permission, "discharge before PowerDelivery(Start)"
            assert action.current_a <= min(lim.max_discharge_current_a, 80.0) + EPS
            assert action.power_w <= min(lim.max_discharge_power_w, 20_000.0) + EPS

    def session_actions(self, out: list[Any]) -> None:
        for action in out:
            if isinstance(action, RequestPower):
                self.check_request(action)
                self.run_ctl(self.ctl.handle(HlcPower(action.phase, action.voltage_v,
                                                      action.current_a, action.power_w),
                                             self.h.now))  # fmt: skip
            elif isinstance(action, RequestContactors):
                self.wants_closed = action.closed
                self.run_ctl(self.ctl.handle(HlcContactors(action.closed), self.h.now))
            elif isinstance(action, RequestIsolationMonitor):
                self.run_ctl(self.ctl.handle(HlcIsolationMonitor(action.on), self.h.now))
            elif isinstance(action, SessionEnded):
                self.wants_closed = False
                self.run_ctl(self.ctl.handle(HlcSessionEnded(action.failed), self.h.now))

    def check_request(self, action: RequestPower) -> None:
        lim = self.limits
        ev = self.h.session.ev_limits
        sel = self.h.session.selection
        if action.phase in (PowerPhase.CABLE_CHECK, PowerPhase.PRE_CHARGE):
            # test / pre-charge current into an open EV (IEC 61851-23), not energy transfer
            assert 0 <= action.current_a <= 2.0 + EPS
            return
        if action.current_a > 0:
            assert action.current_a <= lim.max_charge_current_a + EPS
            if ev is not None:
                assert action.current_a <= ev.max_charge_current_a + EPS
        if action.power_w > 0:
            assert action.power_w <= lim.max_charge_power_w + EPS
        if action.current_a < 0 or action.power_w < 0:
            assert sel is not None and sel.bpt and self.discharge_ok
            if action.current_a < 0:
                assert -action.current_a <= lim.max_discharge_current_a + EPS
                if ev is not None:
                    assert -action.current_a <= ev.max_discharge_current_a + EPS
            else:
                assert -action.power_w <= lim.max_discharge_power_w + EPS

    def step(self, draw: st.DrawFn) -> None:
        h = self.h
        kind = draw(
            st.sampled_from(["next"] * 24 + ["any", "garbage", "tick", "cp", "cp", "lost", "iso"])
        )
        if kind == "next" and not h.session.active:
            h.sid = bytes(8)
            h.framer = V2gtpFramer()
            h.feed(ConnectionOpened("[::1]:1", tls=False))
        elif kind == "next":
            h.now += 0.05
            res = h.send(rq(draw, h))
            if isinstance(res, m.SessionSetupRes):
                h.sid = res.header.session_id
        elif kind == "any" and h.session.active:
            sid = h.sid
            if draw(st.booleans()):
                h.sid = draw(st.binary(min_size=8, max_size=8))
            h.send(rq(draw, h))
            h.sid = sid
        elif kind == "garbage" and h.session.active:
            pt = draw(st.sampled_from([0x8001, 0x8002, 0x8003, 0x8004]))
            h.feed(DataReceived(encode_frame(pt, draw(st.binary(max_size=40)))))
        elif kind == "tick":
            h.tick(draw(st.sampled_from([0.01, 0.3, 0.6, 3.5, 61.0])))
            self.run_ctl(self.ctl.handle_timer(h.now))
        elif kind == "cp":
            self.cp = draw(st.sampled_from([CpState.A, CpState.B, CpState.C, CpState.C,
                                            CpState.D, CpState.E, CpState.F]))  # fmt: skip
        elif kind == "iso":
            self.isolation = draw(st.sampled_from([5e6, 300e3, 50e3]))
        elif kind == "lost":
            h.feed(ConnectionLost("test"))
        self.observe()
        self.process()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_sessions_stay_within_limits(data: st.DataObject) -> None:
    discharge_ok = data.draw(st.booleans())
    limits = replace(
        HARDWARE,
        max_charge_power_w=data.draw(st.floats(0, 30_000)),
        max_charge_current_a=data.draw(st.floats(0, 100)),
        max_discharge_power_w=data.draw(st.floats(0, 20_000)),
        max_discharge_current_a=data.draw(st.floats(0, 80)),
        discharge_allowed=discharge_ok,
    )
    if not discharge_ok:
        limits = replace(limits, max_discharge_power_w=0.0, max_discharge_current_a=0.0)
    setpoint = data.draw(st.one_of(st.none(), values))
    world = World(limits, setpoint, discharge_ok)
    world.h.set_view(authorized=True)
    deepest = 0
    order = list(SeccState)
    for _ in range(data.draw(st.integers(10, 120))):
        world.step(data.draw)
        deepest = max(deepest, order.index(world.h.session.state) if world.h.session.active else 0)
        if data.draw(st.integers(0, 20)) == 0:
            world.h.feed(LimitsChanged(limits, data.draw(st.one_of(st.none(), values))))
    assert isinstance(world.h.session.state, SeccState)
    event(f"deepest state reached: {order[deepest].name}")
    world.h.feed(ConnectionLost("end of test"))
    world.process()
    assert world.h.session.state is S.IDLE
    assert not world.h.session.active
    assert not world.permission, "the power path stays closed after the connection is gone"


def test_the_random_walk_reaches_the_charge_loop() -> None:
    """Guard for the property test: its walks do get to energy transfer."""
    reached: set[SeccState] = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def walk(data: st.DataObject) -> None:
        world = World(HARDWARE, None, True)
        world.h.set_view(authorized=True)
        for _ in range(80):
            world.step(data.draw)
            reached.add(world.h.session.state)

    walk()
    assert S.CHARGE_LOOP in reached


def test_requests_encode() -> None:
    # the generator's messages are valid for our codec (guards the test itself)
    h = Harness.create()
    msg = m.SessionSetupReq(header=h.header(), evccid=EVCC_ID)
    assert exi.decode(exi.encode(msg), 0x8002) == msg
