"""The sans-I/O EVCC session against canned SECC responses (our EXI codec), fake clock."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from chargepoint.errors import LocalProtocolError
from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as ap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.v2gtp import PayloadType, V2gtpFramer, V2gtpMessage, encode_frame
from hal.sim.evcc import (
    CarControls,
    CarError,
    CarFault,
    CarProfile,
    CarTimeoutError,
    EndReason,
    Evcc20Session,
    EvMeasurements,
    Phase,
    ResumeInfo,
)
from hal.sim.evcc.outcome import SessionFinished, SetAcPower, SetCp, SetDcContactor
from hal.sim.evcc.session import TRANSITIONS

T = TypeVar("T")

SID = bytes.fromhex("0102030405060708")
OTHER_SID = bytes.fromhex("1111111111111111")


def rn(value: float) -> m.RationalNumber:
    return m.RationalNumber.from_decimal(Decimal(str(value)))


def val(number: m.RationalNumber) -> float:
    return float(number.to_decimal())


def hdr(sid: bytes = SID) -> m.MessageHeader:
    return m.MessageHeader(session_id=sid, time_stamp=1_700_000_000)


def measurements(**changes: Any) -> EvMeasurements:
    base = EvMeasurements(
        soc_pct=50.0,
        battery_voltage_v=400.0,
        battery_current_a=0.0,
        inlet_voltage_v=0.0,
        capacity_wh=60_000.0,
        min_voltage_v=324.0,
        max_voltage_v=453.6,
        reserve_soc_pct=20.0,
        charge_power_limit_w=100_000.0,
        discharge_power_limit_w=50_000.0,
        max_charge_power_w=100_000.0,
        max_discharge_power_w=50_000.0,
        cp_state=CpState.B,
        ac_max_charge_power_w=11_000.0,
        ac_max_discharge_power_w=11_000.0,
        ac_min_power_w=4_140.0,
    )
    return replace(base, **changes)


class Harness:
    """Drives one session: decodes what it sends, feeds canned responses."""

    def __init__(
        self,
        profile: CarProfile,
        controls: CarControls | None = None,
        *,
        resume: Any = None,
        ev: EvMeasurements | None = None,
    ) -> None:
        self.controls = controls if controls is not None else CarControls()
        self.session = Evcc20Session(profile, self.controls, resume=resume, epoch_offset_s=1e9)
        self.now = 100.0
        self.ev = ev if ev is not None else measurements()
        self.all_actions: list[Any] = []
        self.session.start(self.now, self.ev)

    def set_ev(self, **changes: Any) -> None:
        self.ev = replace(self.ev, **changes)
        self.session.update(self.ev)

    def sent(self) -> list[Any]:
        out = []
        for frame in self.session.data_to_send():
            framer = V2gtpFramer()
            framer.receive_data(frame)
            (event,) = list(framer.events())
            assert isinstance(event, V2gtpMessage)
            out.append(exi.decode(event.payload, event.payload_type))
        return out

    def request(self) -> Any:
        (req,) = self.sent()
        return req

    def nothing_sent(self) -> None:
        assert self.sent() == []

    def reply(self, res: Any, *, payload_type: int | None = None, bytewise: bool = False) -> None:
        pt = payload_type if payload_type is not None else exi.payload_type_of(res)
        data = encode_frame(PayloadType(pt), exi.encode(res))
        self.session.update(self.ev)
        if bytewise:
            for i in range(len(data)):
                self.session.receive_data(data[i : i + 1], self.now)
        else:
            self.session.receive_data(data, self.now)
        self.all_actions += self.session.actions()

    def advance(self, dt_s: float) -> None:
        self.now += dt_s
        self.session.update(self.ev)
        self.session.handle_timer(self.now)
        self.all_actions += self.session.actions()

    def actions(self) -> list[Any]:
        self.all_actions += self.session.actions()
        out, self.all_actions = self.all_actions, []
        return out


# ----------------------------------------------------------------- canned SECC


def sap_res(schema_id: int = 1) -> ap.SupportedAppProtocolRes:
    return ap.SupportedAppProtocolRes(
        response_code=ap.ResponseCode.OK_SuccessfulNegotiation, schema_id=schema_id
    )


def session_setup_res(
    code: m.ResponseCode = m.ResponseCode.OK_NewSessionEstablished, sid: bytes = SID
) -> m.SessionSetupRes:
    return m.SessionSetupRes(header=hdr(sid), response_code=code, evseid="DE*SIM*E1")


def ok(cls: type[T], sid: bytes = SID, code: m.ResponseCode = m.ResponseCode.OK, **kw: Any) -> T:
    fields: dict[str, Any] = {"header": hdr(sid), "response_code": code, **kw}
    return cls(**fields)


def params(service: str, control_mode: int, set_id: int) -> m.ParameterSet:
    items = [
        ("Connector", 2 if service.startswith("DC") else 3),
        ("ControlMode", control_mode),
        ("MobilityNeedsMode", 1),
        ("Pricing", 0),
    ]
    if service.endswith("BPT"):
        items += [("BPTChannel", 1), ("GeneratorMode", 1)]
    if service.startswith("AC"):
        items += [("EVSENominalVoltage", 230)]
    return m.ParameterSet(
        parameter_set_id=set_id,
        parameter=[m.Parameter(name=n, int_value=v) for n, v in items],
    )


def detail_res(service: str, service_id: int, sets: list[m.ParameterSet] | None = None) -> Any:
    sets = sets or [params(service, 1, 1), params(service, 2, 2)]
    return ok(
        m.ServiceDetailRes,
        service_id=service_id,
        service_parameter_list=m.ServiceParameterList(parameter_set=sets),
    )


def dc_cpd_res(bpt: bool, sid: bytes = SID) -> m.DC_ChargeParameterDiscoveryRes:
    common = {
        "evse_maximum_charge_power": rn(150_000),
        "evse_minimum_charge_power": rn(0),
        "evse_maximum_charge_current": rn(300),
        "evse_minimum_charge_current": rn(0),
        "evse_maximum_voltage": rn(920),
        "evse_minimum_voltage": rn(150),
    }
    if bpt:
        mode = m.BPT_DC_CPDResEnergyTransferMode(
            **common,
            evse_maximum_discharge_power=rn(-50_000),
            evse_minimum_discharge_power=rn(0),
            evse_maximum_discharge_current=rn(-100),
            evse_minimum_discharge_current=rn(0),
        )
        return ok(
            m.DC_ChargeParameterDiscoveryRes, sid=sid, bpt_dc_cpd_res_energy_transfer_mode=mode
        )
    return ok(
        m.DC_ChargeParameterDiscoveryRes,
        dc_cpd_res_energy_transfer_mode=m.DC_CPDResEnergyTransferMode(**common),
    )


def ac_cpd_res(bpt: bool) -> m.AC_ChargeParameterDiscoveryRes:
    common = {
        "evse_maximum_charge_power": rn(22_000),
        "evse_minimum_charge_power": rn(0),
        "evse_nominal_frequency": rn(50),
    }
    if bpt:
        mode = m.BPT_AC_CPDResEnergyTransferMode(
            **common, evse_maximum_discharge_power=rn(11_000), evse_minimum_discharge_power=rn(0)
        )
        return ok(m.AC_ChargeParameterDiscoveryRes, bpt_ac_cpd_res_energy_transfer_mode=mode)
    return ok(
        m.AC_ChargeParameterDiscoveryRes,
        ac_cpd_res_energy_transfer_mode=m.AC_CPDResEnergyTransferMode(**common),
    )


def dynamic_se_res(processing: m.Processing = m.Processing.Finished) -> m.ScheduleExchangeRes:
    return ok(
        m.ScheduleExchangeRes,
        evse_processing=processing,
        dynamic_se_res_control_mode=m.Dynamic_SEResControlMode(),
    )


def schedule(entries: list[tuple[int, float]]) -> m.ChargingSchedule:
    return m.ChargingSchedule(
        power_schedule=m.PowerSchedule(
            time_anchor=0,
            power_schedule_entries=m.PowerScheduleEntryList(
                power_schedule_entry=[
                    m.PowerScheduleEntry(duration=d, power=rn(p)) for d, p in entries
                ]
            ),
        )
    )


def scheduled_se_res(tuples: list[m.ScheduleTuple]) -> m.ScheduleExchangeRes:
    return ok(
        m.ScheduleExchangeRes,
        evse_processing=m.Processing.Finished,
        scheduled_se_res_control_mode=m.Scheduled_SEResControlMode(schedule_tuple=tuples),
    )


def dc_loop_res(
    voltage: float,
    current: float,
    *,
    bpt: bool = True,
    dynamic: bool = True,
    sid: bytes = SID,
    notification: m.EvseNotification | None = None,
) -> m.DC_ChargeLoopRes:
    kw: dict[str, Any] = {}
    limits: dict[str, Any] = {
        "evse_maximum_charge_power": rn(150_000),
        "evse_minimum_charge_power": rn(0),
        "evse_maximum_charge_current": rn(300),
        "evse_maximum_voltage": rn(920),
    }
    if dynamic and bpt:
        kw["bpt_dynamic_dc_cl_res_control_mode"] = m.BPT_Dynamic_DC_CLResControlMode(
            **limits,
            evse_maximum_discharge_power=rn(-50_000),
            evse_minimum_discharge_power=rn(0),
            evse_maximum_discharge_current=rn(-100),
            evse_minimum_voltage=rn(150),
        )
    elif dynamic:
        kw["dynamic_dc_cl_res_control_mode"] = m.Dynamic_DC_CLResControlMode(**limits)
    elif bpt:
        kw["bpt_scheduled_dc_cl_res_control_mode"] = m.BPT_Scheduled_DC_CLResControlMode()
    else:
        kw["scheduled_dc_cl_res_control_mode"] = m.Scheduled_DC_CLResControlMode()
    if notification is not None:
        kw["evse_status"] = m.EVSEStatus(notification_max_delay=0, evse_notification=notification)
    return ok(
        m.DC_ChargeLoopRes,
        sid=sid,
        evse_present_current=rn(current),
        evse_present_voltage=rn(voltage),
        evse_power_limit_achieved=False,
        evse_current_limit_achieved=False,
        evse_voltage_limit_achieved=False,
        **kw,
    )


def ac_loop_res(target_w: float) -> m.AC_ChargeLoopRes:
    mode = m.BPT_Dynamic_AC_CLResControlMode(evse_target_active_power=rn(target_w))
    return ok(m.AC_ChargeLoopRes, bpt_dynamic_ac_cl_res_control_mode=mode)


# ------------------------------------------------------------------- helpers


def dc_profile(**kw: Any) -> CarProfile:
    base: dict[str, Any] = {"services": ("DC_BPT", "DC"), "tls": False, "loop_interval_s": 0.0}
    return CarProfile(**(base | kw))


def through_selection(h: Harness, service: str, service_id: int, offered: list[int]) -> Any:
    """SAP .. ServiceSelection; returns the ServiceSelectionReq."""
    h.request()
    h.reply(sap_res())
    assert isinstance(h.request(), m.SessionSetupReq)
    h.reply(session_setup_res())
    assert isinstance(h.request(), m.AuthorizationSetupReq)
    h.reply(
        ok(
            m.AuthorizationSetupRes,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
    )
    assert isinstance(h.request(), m.AuthorizationReq)
    h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Finished))
    assert isinstance(h.request(), m.ServiceDiscoveryReq)
    services = [m.Service(service_id=i, free_service=True) for i in offered]
    h.reply(
        ok(
            m.ServiceDiscoveryRes,
            service_renegotiation_supported=False,
            energy_transfer_service_list=m.ServiceList(service=services),
        )
    )
    detail = h.request()
    assert isinstance(detail, m.ServiceDetailReq)
    assert detail.service_id == service_id
    h.reply(detail_res(service, service_id))
    selection = h.request()
    assert isinstance(selection, m.ServiceSelectionReq)
    h.reply(ok(m.ServiceSelectionRes))
    return selection


def dc_to_charge_loop(h: Harness, *, bpt: bool = True, dynamic: bool = True) -> Any:
    """From ServiceSelection to the first charge-loop request (returned)."""
    assert isinstance(h.request(), m.DC_ChargeParameterDiscoveryReq)
    h.reply(dc_cpd_res(bpt))
    assert isinstance(h.request(), m.ScheduleExchangeReq)
    if dynamic:
        h.reply(dynamic_se_res())
    else:
        tup = m.ScheduleTuple(schedule_tuple_id=1, charging_schedule=schedule([(3600, 50_000)]))
        h.reply(scheduled_se_res([tup]))
    assert SetCp(closed=True) in h.actions()
    h.set_ev(cp_state=CpState.C)
    h.advance(0.02)
    assert isinstance(h.request(), m.DC_CableCheckReq)
    h.reply(ok(m.DC_CableCheckRes, evse_processing=m.Processing.Finished))
    assert isinstance(h.request(), m.DC_PreChargeReq)
    h.set_ev(inlet_voltage_v=400.0)
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(401)))
    assert h.request().ev_processing == m.Processing.Finished
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(401)))
    assert isinstance(h.request(), m.PowerDeliveryReq)
    h.reply(ok(m.PowerDeliveryRes))
    assert SetDcContactor(closed=True) in h.actions()
    return h.request()


# --------------------------------------------------------------------- tests


def test_transition_table_covers_every_phase() -> None:
    assert set(TRANSITIONS) == set(Phase)
    reachable = {Phase.IDLE} | {p for targets in TRANSITIONS.values() for p in targets}
    assert reachable | {Phase.FAILED} == set(Phase)


def test_dc_bpt_dynamic_session_requests() -> None:
    h = Harness(dc_profile(), CarControls(target_soc_pct=80.0, departure_in_s=3600.0))
    sap = h.sent()[0]
    assert isinstance(sap, ap.SupportedAppProtocolReq)
    assert [p.protocol_namespace for p in sap.app_protocol] == ["urn:iso:std:iso:15118:-20:DC"]
    h.reply(sap_res())
    setup = h.request()
    assert setup.header.session_id == bytes(8)
    assert setup.evccid == "02005E10A1B2"
    h.reply(session_setup_res())
    h.request()
    h.reply(
        ok(
            m.AuthorizationSetupRes,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
    )
    auth = h.request()
    assert auth.selected_authorization_service == m.Authorization.EIM
    assert auth.header.session_id == SID
    h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Ongoing))
    assert isinstance(h.request(), m.AuthorizationReq)  # repeated while Ongoing
    h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Finished))
    disc = h.request()
    assert disc.supported_service_i_ds.service_id == [6, 2]
    h.reply(
        ok(
            m.ServiceDiscoveryRes,
            service_renegotiation_supported=False,
            energy_transfer_service_list=m.ServiceList(
                service=[
                    m.Service(service_id=2, free_service=True),
                    m.Service(service_id=6, free_service=True),
                ]
            ),
        )
    )
    assert h.request().service_id == 6
    h.reply(detail_res("DC_BPT", 6))
    sel = h.request().selected_energy_transfer_service
    assert (sel.service_id, sel.parameter_set_id) == (6, 2)  # set 2 is Dynamic
    h.reply(ok(m.ServiceSelectionRes))
    cpd = h.request()
    mode = cpd.bpt_dc_cpd_req_energy_transfer_mode
    assert val(mode.ev_maximum_discharge_power) == -50_000  # discharge_limit_sign = -1
    assert val(mode.ev_maximum_voltage) == pytest.approx(453.6)
    assert mode.target_soc == 80
    h.reply(dc_cpd_res(bpt=True))
    se = h.request().dynamic_se_req_control_mode
    assert se.departure_time == 3600
    assert val(se.ev_target_energy_request) == pytest.approx(18_000)  # 30 % of 60 kWh
    assert val(se.ev_minimum_v2_x_energy_request) == pytest.approx(-18_000)  # to 20 %
    h.reply(dynamic_se_res())
    assert h.actions() == [SetCp(closed=True)]
    h.advance(0.5)
    h.nothing_sent()  # no CableCheckReq before the car's own CP reads C
    h.set_ev(cp_state=CpState.C)
    h.advance(0.02)
    assert isinstance(h.request(), m.DC_CableCheckReq)
    h.reply(ok(m.DC_CableCheckRes, evse_processing=m.Processing.Ongoing))
    assert isinstance(h.request(), m.DC_CableCheckReq)
    h.set_ev(inlet_voltage_v=500.0)
    h.reply(ok(m.DC_CableCheckRes, evse_processing=m.Processing.Finished))
    pre = h.request()
    assert val(pre.ev_target_voltage) == 400
    assert pre.ev_processing == m.Processing.Ongoing
    h.set_ev(inlet_voltage_v=300.0)
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(300)))
    assert h.request().ev_processing == m.Processing.Ongoing
    h.set_ev(inlet_voltage_v=398.0)
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(398)))
    assert h.request().ev_processing == m.Processing.Finished
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(399)))
    assert h.actions() == []  # the contactor waits for PowerDelivery(Start) [V2G20-1317]
    pd = h.request()
    assert pd.charge_progress == m.ChargeProgress.Start
    assert pd.bpt_channel_selection == m.ChannelSelection.Charge
    assert pd.ev_power_profile.dynamic_evppt_control_mode is not None
    h.reply(ok(m.PowerDeliveryRes))
    assert h.actions() == [SetDcContactor(closed=True)]
    loop = h.request()
    cl = loop.bpt_dynamic_dc_cl_req_control_mode
    assert val(cl.ev_maximum_charge_current) == 250  # min(profile 250 A, 100 kW / 400 V)
    assert val(cl.ev_maximum_discharge_power) == 0  # discharge not requested
    assert loop.display_parameters.present_soc == 50
    h.set_ev(battery_current_a=100.0, inlet_voltage_v=405.0)
    h.controls.discharge = True  # read when the next request is built
    h.reply(dc_loop_res(405, 100))
    cl = h.request().bpt_dynamic_dc_cl_req_control_mode
    assert val(cl.ev_maximum_discharge_power) == -50_000
    assert val(cl.ev_maximum_discharge_current) == -125
    h.controls.stop = True
    h.reply(dc_loop_res(405, -80))  # the charger decides: discharge is allowed now
    wind = h.request().bpt_dynamic_dc_cl_req_control_mode
    assert val(wind.ev_maximum_charge_power) == 0 and val(wind.ev_maximum_discharge_power) == 0
    h.set_ev(battery_current_a=0.0)
    h.reply(dc_loop_res(400, 0))
    stop = h.request()
    assert stop.charge_progress == m.ChargeProgress.Stop
    h.reply(ok(m.PowerDeliveryRes))
    assert h.actions() == [SetDcContactor(closed=False)]
    assert h.request().ev_processing == m.Processing.Ongoing
    h.reply(ok(m.DC_WeldingDetectionRes, evse_present_voltage=rn(350)))
    assert isinstance(h.request(), m.DC_WeldingDetectionReq)
    h.reply(ok(m.DC_WeldingDetectionRes, evse_present_voltage=rn(20)))
    end = h.request()
    assert end.charging_session == m.ChargingSession.Terminate
    h.reply(ok(m.SessionStopRes))
    actions = h.actions()
    assert SetCp(closed=False) in actions
    assert isinstance(actions[-1], SessionFinished)
    result = h.session.result
    assert result is not None and result.ok and result.reason is EndReason.STOPPED
    assert h.session.loops == 3
    assert h.session.phase is Phase.ENDED
    assert h.session.next_deadline() is None


def test_dc_bpt_scheduled_discharge_follows_the_chosen_tuple() -> None:
    controls = CarControls(discharge=True, discharge_power_w=8_000.0)
    h = Harness(dc_profile(control_mode="scheduled", discharge_limit_sign=1), controls)
    sel = through_selection(h, "DC_BPT", 6, [6])
    assert sel.selected_energy_transfer_service.parameter_set_id == 1  # Scheduled
    cpd = h.request().bpt_dc_cpd_req_energy_transfer_mode
    assert val(cpd.ev_maximum_discharge_power) == 50_000  # discharge_limit_sign = +1
    h.reply(dc_cpd_res(bpt=True))
    se = h.request()
    assert se.scheduled_se_req_control_mode is not None
    assert se.maximum_supporting_points == 1024
    h.reply(
        scheduled_se_res(
            [
                m.ScheduleTuple(schedule_tuple_id=7, charging_schedule=schedule([(3600, 40_000)])),
                m.ScheduleTuple(
                    schedule_tuple_id=9,
                    charging_schedule=schedule([(1800, 20_000), (1800, 30_000)]),
                    discharging_schedule=schedule([(1800, -10_000), (1800, -20_000)]),
                ),
            ]
        )
    )
    h.set_ev(cp_state=CpState.C, inlet_voltage_v=400.0)
    h.advance(0.02)
    assert isinstance(h.request(), m.DC_CableCheckReq)
    h.reply(ok(m.DC_CableCheckRes, evse_processing=m.Processing.Finished))
    h.request()
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(400)))
    h.request()
    h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(400)))
    pd = h.request()
    assert pd.bpt_channel_selection == m.ChannelSelection.Discharge
    ppt = pd.ev_power_profile
    assert ppt.scheduled_evppt_control_mode.selected_schedule_tuple_id == 9
    assert (
        ppt.scheduled_evppt_control_mode.power_tolerance_acceptance
        == m.PowerToleranceAcceptance.PowerToleranceConfirmed
    )
    entries = ppt.ev_power_profile_entries.ev_power_profile_entry
    assert [(e.duration, val(e.power)) for e in entries] == [(1800, -10_000), (1800, -20_000)]
    h.reply(ok(m.PowerDeliveryRes))
    cl = h.request().bpt_scheduled_dc_cl_req_control_mode
    # min(schedule 10 kW, driver cap 8 kW, BMS 50 kW) at 400 V = 20 A out of the car
    assert val(cl.ev_target_current) == pytest.approx(-20.0)
    assert val(cl.ev_maximum_discharge_power) == 8_000
    h.set_ev(battery_current_a=-20.0)
    h.controls.discharge = False
    h.reply(dc_loop_res(400, -20, dynamic=False))
    cl = h.request().bpt_scheduled_dc_cl_req_control_mode
    assert val(cl.ev_target_current) == pytest.approx(50.0)  # 20 kW charging slot / 400 V


def test_scheduled_rejects_negative_power_in_a_charging_schedule() -> None:
    h = Harness(dc_profile(control_mode="scheduled"))
    through_selection(h, "DC_BPT", 6, [6])
    h.request()
    h.reply(dc_cpd_res(bpt=True))
    h.request()
    bad = m.ScheduleTuple(schedule_tuple_id=1, charging_schedule=schedule([(60, -5_000)]))
    with pytest.raises(CarError) as info:
        h.reply(scheduled_se_res([bad]))
    assert (
        info.value.field
        == "ScheduleTuple[0].ChargingSchedule.PowerSchedule.PowerScheduleEntry[0].Power"
    )


def test_ac_bpt_dynamic_follows_signed_evse_target() -> None:
    profile = CarProfile(services=("AC_BPT",), tls=False, loop_interval_s=0.0)
    h = Harness(profile, CarControls(discharge=True))
    sap = h.sent()[0]
    assert [p.protocol_namespace for p in sap.app_protocol] == ["urn:iso:std:iso:15118:-20:AC"]
    h.reply(sap_res())
    h.request()
    h.reply(session_setup_res())
    h.request()
    h.reply(
        ok(
            m.AuthorizationSetupRes,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
    )
    h.request()
    h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Finished))
    h.request()
    h.reply(
        ok(
            m.ServiceDiscoveryRes,
            service_renegotiation_supported=False,
            energy_transfer_service_list=m.ServiceList(
                service=[m.Service(service_id=5, free_service=True)]
            ),
        )
    )
    h.request()
    h.reply(detail_res("AC_BPT", 5))
    h.request()
    h.reply(ok(m.ServiceSelectionRes))
    cpd = h.request()
    assert val(cpd.bpt_ac_cpd_req_energy_transfer_mode.ev_maximum_discharge_power) == -11_000
    h.reply(ac_cpd_res(bpt=True))
    h.request()
    h.reply(dynamic_se_res())
    pd = h.request()  # AC: no cable check, no pre-charge
    assert isinstance(pd, m.PowerDeliveryReq)
    assert pd.bpt_channel_selection == m.ChannelSelection.Discharge
    h.reply(ok(m.PowerDeliveryRes))
    assert h.actions() == [SetCp(closed=True)]  # [V2G20-847]
    loop = h.request()
    cl = loop.bpt_dynamic_ac_cl_req_control_mode
    assert val(cl.ev_maximum_discharge_power) == -11_000
    assert val(cl.ev_present_active_power) == 0
    h.set_ev(cp_state=CpState.C, ac_power_w=-7_000.0)  # measured when the next request is built
    h.reply(ac_loop_res(-7_000))
    assert h.actions() == [SetAcPower(-7_000.0)]
    cl = h.request().bpt_dynamic_ac_cl_req_control_mode
    assert val(cl.ev_present_active_power) == -7_000
    with pytest.raises(CarError, match="EVSETargetActivePower"):
        h.reply(ac_loop_res(30_000))  # beyond the car's own 11 kW


def test_ac_evse_target_above_the_car_limit_is_an_error() -> None:
    profile = CarProfile(services=("AC_BPT",), tls=False, loop_interval_s=0.0)
    h = Harness(profile)
    through_selection(h, "AC_BPT", 5, [5])
    h.request()
    h.reply(ac_cpd_res(bpt=True))
    h.request()
    h.reply(dynamic_se_res())
    h.request()
    h.reply(ok(m.PowerDeliveryRes))
    h.set_ev(cp_state=CpState.C)
    h.request()
    with pytest.raises(CarError) as info:
        h.reply(ac_loop_res(-5_000))  # discharge not requested by the driver
    assert info.value.message == "AC_ChargeLoopRes"
    assert info.value.field == "BPT_Dynamic_AC_CLResControlMode.EVSETargetActivePower"
    assert "discharge" in info.value.reason
    actions = h.actions()
    assert SetAcPower(0.0) in actions and SetCp(closed=False) in actions


def test_wrong_session_id_fails_loudly(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    h.request()
    with pytest.raises(CarError) as info:
        h.reply(dc_cpd_res(bpt=True, sid=OTHER_SID))
    assert (info.value.message, info.value.field) == (
        "DC_ChargeParameterDiscoveryRes",
        "Header.SessionID",
    )
    assert any(
        r.levelname == "ERROR" and "Header.SessionID" in r.getMessage() for r in caplog.records
    )
    assert h.session.phase is Phase.FAILED
    actions = h.actions()
    assert SetDcContactor(closed=False) in actions and SetCp(closed=False) in actions
    result = actions[-1].result
    assert not result.ok and result.error is info.value


def test_failed_response_code_ends_the_session() -> None:
    h = Harness(dc_profile())
    h.request()
    h.reply(sap_res())
    h.request()
    with pytest.raises(CarError, match="FAILED_UnknownSession"):
        h.reply(session_setup_res(code=m.ResponseCode.FAILED_UnknownSession))
    with pytest.raises(LocalProtocolError):
        h.session.start(h.now, h.ev)


def test_out_of_order_response_is_rejected() -> None:
    h = Harness(dc_profile())
    h.request()
    h.reply(sap_res())
    h.request()
    h.reply(session_setup_res())
    h.request()
    with pytest.raises(CarError, match="out of order"):
        h.reply(ok(m.ServiceSelectionRes))


def test_response_on_wrong_payload_type_and_undecodable_exi() -> None:
    h = Harness(dc_profile())
    h.request()
    with pytest.raises(CarError, match="payload type"):
        h.reply(sap_res(), payload_type=0x8002)
    h2 = Harness(dc_profile())
    h2.request()
    with pytest.raises(CarError, match="undecodable"):
        h2.session.receive_data(encode_frame(PayloadType.SAP, b"\x80\xff\xff"), h2.now)


def test_unsolicited_message_is_rejected() -> None:
    h = Harness(dc_profile(loop_interval_s=1.0))
    h.request()
    h.reply(sap_res())
    h.request()
    h.reply(session_setup_res())
    h.request()
    h.reply(
        ok(
            m.AuthorizationSetupRes,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
    )
    h.request()
    h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Ongoing))
    h.nothing_sent()  # the next AuthorizationReq is due in 1 s
    with pytest.raises(CarError, match="unsolicited"):
        h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Finished))


def test_discharge_current_without_bpt_is_implausible() -> None:
    h = Harness(dc_profile(services=("DC",)), CarControls(discharge=True))
    through_selection(h, "DC", 2, [2])
    dc_to_charge_loop(h, bpt=False)
    h.set_ev(inlet_voltage_v=400.0)
    with pytest.raises(CarError) as info:
        h.reply(dc_loop_res(400, -30, bpt=False))
    assert info.value.field == "EVSEPresentCurrent"
    assert "no BPT service selected" in info.value.reason


def test_evse_voltage_must_match_the_inlet_and_stay_below_ev_maximum() -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0)
    with pytest.raises(CarError, match=r"measures 400\.0 V at its inlet"):
        h.reply(dc_loop_res(340, 10))
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    h.request()
    h.reply(dc_cpd_res(bpt=True))
    h.request()
    h.reply(dynamic_se_res())
    h.set_ev(cp_state=CpState.C)
    h.advance(0.02)
    h.request()
    h.reply(ok(m.DC_CableCheckRes, evse_processing=m.Processing.Finished))
    h.request()
    with pytest.raises(CarError, match="above the EV maximum"):
        h.reply(ok(m.DC_PreChargeRes, evse_present_voltage=rn(500)))


def test_response_timeouts_use_the_fake_clock() -> None:
    h = Harness(dc_profile())
    h.request()
    assert h.session.next_deadline() == pytest.approx(h.now + 2.0)
    h.advance(1.9)
    with pytest.raises(CarTimeoutError) as info:
        h.advance(0.2)
    assert info.value.message == "supportedAppProtocolRes"
    # charge loop: 0.5 s
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    assert h.session.next_deadline() == pytest.approx(h.now + 0.5)
    with pytest.raises(CarTimeoutError, match="DC_ChargeLoopRes"):
        h.advance(0.6)
    assert SetDcContactor(closed=False) in h.actions()


def test_ongoing_authorization_gives_up_after_60_s() -> None:
    h = Harness(dc_profile(loop_interval_s=1.0))
    h.request()
    h.reply(sap_res())
    h.request()
    h.reply(session_setup_res())
    h.request()
    h.reply(
        ok(
            m.AuthorizationSetupRes,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
    )
    with pytest.raises(CarTimeoutError, match="Ongoing for more than 60 s"):
        for _ in range(70):
            h.request()
            h.advance(0.2)
            h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Ongoing))
            h.advance(1.0)


def test_loop_pacing_follows_loop_interval() -> None:
    h = Harness(dc_profile(loop_interval_s=0.1))
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0)
    h.reply(dc_loop_res(400, 50))
    h.nothing_sent()
    assert h.session.next_deadline() == pytest.approx(h.now + 0.1)
    h.advance(0.05)
    h.nothing_sent()
    h.advance(0.05)
    assert isinstance(h.request(), m.DC_ChargeLoopReq)


def test_responses_fed_one_byte_at_a_time() -> None:
    h = Harness(dc_profile())
    h.request()
    h.reply(sap_res(), bytewise=True)
    h.request()
    h.reply(session_setup_res(), bytewise=True)
    assert isinstance(h.request(), m.AuthorizationSetupReq)


def test_pause_then_resume_with_the_old_session_id() -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0, battery_current_a=50.0)
    h.controls.pause = True
    h.reply(dc_loop_res(400, 50))
    h.request()  # wind-down loop
    h.set_ev(battery_current_a=0.0)
    h.reply(dc_loop_res(400, 0))
    assert h.request().charge_progress == m.ChargeProgress.Stop
    h.reply(ok(m.PowerDeliveryRes))
    h.request()
    h.reply(ok(m.DC_WeldingDetectionRes, evse_present_voltage=rn(10)))
    stop = h.request()
    assert stop.charging_session == m.ChargingSession.Pause
    h.reply(ok(m.SessionStopRes))
    result = h.session.result
    assert result is not None and result.paused and result.reason is EndReason.PAUSED
    assert result.resume is not None and result.resume.session_id == SID
    # next connection
    h.controls.pause = False
    h2 = Harness(dc_profile(), h.controls, resume=result.resume)
    h2.request()
    h2.reply(sap_res())
    setup = h2.request()
    assert setup.header.session_id == SID
    h2.reply(session_setup_res(code=m.ResponseCode.OK_OldSessionJoined))
    cpd = h2.request()  # [V2G20-2098]: straight to ChargeParameterDiscovery
    assert isinstance(cpd, m.DC_ChargeParameterDiscoveryReq)
    assert cpd.bpt_dc_cpd_req_energy_transfer_mode is not None


def test_resume_can_redo_the_authorization_sequence() -> None:
    resume = ResumeInfo(SID, "DC_BPT", 2)
    h = Harness(dc_profile(resume_reauthorize=True), resume=resume)
    h.request()
    h.reply(sap_res())
    h.request()
    h.reply(session_setup_res(code=m.ResponseCode.OK_OldSessionJoined))
    assert isinstance(h.request(), m.AuthorizationSetupReq)


def test_resume_refused_starts_a_new_session() -> None:
    resume = ResumeInfo(OTHER_SID, "DC_BPT", 2)
    h = Harness(dc_profile(), resume=resume)
    h.request()
    h.reply(sap_res())
    assert h.request().header.session_id == OTHER_SID
    h.reply(session_setup_res())
    assert isinstance(h.request(), m.AuthorizationSetupReq)
    with pytest.raises(CarError, match="OldSessionJoined for a new session"):
        h3 = Harness(dc_profile())
        h3.request()
        h3.reply(sap_res())
        h3.request()
        h3.reply(session_setup_res(code=m.ResponseCode.OK_OldSessionJoined))


def test_out_of_sequence_fault_expects_failed_sequence_error() -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0)
    h.controls.fault = CarFault.OUT_OF_SEQUENCE
    h.reply(dc_loop_res(400, 10))
    assert isinstance(h.request(), m.AuthorizationSetupReq)
    h.reply(
        ok(
            m.DC_ChargeLoopRes,
            code=m.ResponseCode.FAILED_SequenceError,
            evse_present_current=rn(0),
            evse_present_voltage=rn(400),
            evse_power_limit_achieved=False,
            evse_current_limit_achieved=False,
            evse_voltage_limit_achieved=False,
            dynamic_dc_cl_res_control_mode=m.Dynamic_DC_CLResControlMode(
                evse_maximum_charge_power=rn(1),
                evse_minimum_charge_power=rn(0),
                evse_maximum_charge_current=rn(1),
                evse_maximum_voltage=rn(1),
            ),
        )
    )
    result = h.session.result
    assert result is not None and result.reason is EndReason.FAULT_OUT_OF_SEQUENCE
    assert result.error is None and not result.ok


def test_silent_fault_ends_when_the_secc_closes() -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0)
    h.controls.fault = CarFault.SILENT
    h.reply(dc_loop_res(400, 10))
    h.advance(0.0)
    h.advance(5.0)
    h.nothing_sent()
    h.session.receive_data(b"", h.now)
    result = h.session.result
    assert result is not None and result.reason is EndReason.FAULT_SILENT


def test_evse_terminate_notification_winds_down() -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0)
    h.reply(dc_loop_res(400, 0, notification=m.EvseNotification.Terminate))
    cl = h.request().bpt_dynamic_dc_cl_req_control_mode
    assert val(cl.ev_maximum_charge_power) == 0
    h.reply(dc_loop_res(400, 0))
    assert h.request().charge_progress == m.ChargeProgress.Stop
    h.reply(ok(m.PowerDeliveryRes))
    h.request()
    h.reply(ok(m.DC_WeldingDetectionRes, evse_present_voltage=rn(0)))
    h.request()
    h.reply(ok(m.SessionStopRes))
    assert h.session.result is not None
    assert h.session.result.reason is EndReason.EVSE_TERMINATE and h.session.result.ok


def test_service_detail_without_control_mode_is_rejected() -> None:
    h = Harness(dc_profile())
    h.request()
    h.reply(sap_res())
    h.request()
    h.reply(session_setup_res())
    h.request()
    h.reply(
        ok(
            m.AuthorizationSetupRes,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )
    )
    h.request()
    h.reply(ok(m.AuthorizationRes, evse_processing=m.Processing.Finished))
    h.request()
    h.reply(
        ok(
            m.ServiceDiscoveryRes,
            service_renegotiation_supported=False,
            energy_transfer_service_list=m.ServiceList(
                service=[m.Service(service_id=6, free_service=True)]
            ),
        )
    )
    h.request()
    bad = m.ParameterSet(parameter_set_id=1, parameter=[m.Parameter(name="Connector", int_value=2)])
    with pytest.raises(CarError) as info:
        h.reply(detail_res("DC_BPT", 6, [bad]))
    assert "ControlMode" in info.value.reason


def test_stop_before_energy_goes_straight_to_session_stop() -> None:
    h = Harness(dc_profile())
    through_selection(h, "DC_BPT", 6, [6])
    assert isinstance(h.request(), m.DC_ChargeParameterDiscoveryReq)
    h.controls.stop = True
    h.reply(dc_cpd_res(bpt=True))
    stop = h.request()
    assert isinstance(stop, m.SessionStopReq)
    assert stop.charging_session == m.ChargingSession.Terminate
    h.reply(ok(m.SessionStopRes))
    assert h.session.result is not None and h.session.result.reason is EndReason.STOPPED


def test_target_soc_reached_ends_the_loop() -> None:
    h = Harness(dc_profile(), CarControls(target_soc_pct=60.0))
    through_selection(h, "DC_BPT", 6, [6])
    dc_to_charge_loop(h)
    h.set_ev(inlet_voltage_v=400.0, soc_pct=60.0)
    h.reply(dc_loop_res(400, 0))
    wind = h.request()
    assert wind.display_parameters.charging_complete is True
    h.reply(dc_loop_res(400, 0))
    assert h.request().charge_progress == m.ChargeProgress.Stop
