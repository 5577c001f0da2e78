"""The SECC session over whole DC sessions, pure and synchronous (fake clock, scripted EV)."""

from __future__ import annotations

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import PowerPhase, RequestIsolationMonitor
from chargepoint.iso15118.secc.events import (
    ConnectionLost,
    ConnectionOpened,
    LimitsChanged,
    StopRequested,
)
from chargepoint.iso15118.secc.settings import ServiceId
from chargepoint.iso15118.secc.states import SeccState
from chargepoint.iso15118.v2gtp import V2gtpFramer
from tests.iso15118.secc.driver import AC_NS, DC_NS, EVCC_ID, HARDWARE, Harness, rn

R = m.ResponseCode


def start_dc_bpt_dynamic(h: Harness) -> None:
    h.handshake()
    h.authorize()
    h.select(6, 2)  # DC_BPT, Dynamic
    cpd = h.dc_cpd()
    assert cpd.response_code is R.OK
    assert cpd.bpt_dc_cpd_res_energy_transfer_mode is not None
    assert h.schedule_dynamic().response_code is R.OK
    cc = h.cable_check()
    assert cc.response_code is R.OK and cc.evse_processing is m.Processing.Finished
    h.pre_charge()
    assert h.session.state is SeccState.POWER_DELIVERY
    out = h.power_delivery(m.ChargeProgress.Start)
    assert h.contactor_requests() == [True]  # asked once the EV sent PowerDelivery(Start)
    assert h.response_in(out) is None  # DC: answered once the contactors are closed
    res = h.response_in(h.set_view(contactors_closed=True))
    assert isinstance(res, m.PowerDeliveryRes) and res.response_code is R.OK
    assert h.session.state is SeccState.CHARGE_LOOP


def test_dc_bpt_dynamic_charge_discharge_stop() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    assert any(isinstance(a, RequestIsolationMonitor) and a.on for a in h.actions)
    res = h.dc_loop_dynamic()
    assert res.response_code is R.OK
    power = h.session.last_power
    assert power is not None and power.phase is PowerPhase.ENERGY
    # charging at the arbitrated maximum: min(30 kW, 100 A, EV 125 A / 50 kW) at 380 V
    assert 0 < power.current_a <= 30_000 / 380 + 1e-9
    assert res.bpt_dynamic_dc_cl_res_control_mode is not None
    assert res.meter_info is not None
    # operator asks for 8 kW discharge: negative current within the EV's 11 kW / 30 A
    h.feed(LimitsChanged(HARDWARE, -8_000.0))
    h.now += 0.1
    h.dc_loop_dynamic()
    power = h.session.last_power
    assert power is not None and -30.0 <= power.current_a < 0
    assert abs(power.current_a * 380 + 8_000) < 1.0
    # stop
    h.now += 0.1
    out = h.power_delivery(m.ChargeProgress.Stop)
    assert h.session.last_power is not None and h.session.last_power.phase is PowerPhase.OFF
    assert h.response_in(out) is None
    res2 = h.response_in(h.set_view(contactors_closed=False))
    assert isinstance(res2, m.PowerDeliveryRes) and res2.response_code is R.OK
    assert h.session.state is SeccState.WELDING
    wd = h.send(m.DC_WeldingDetectionReq(header=h.header(), ev_processing=m.Processing.Ongoing))
    assert isinstance(wd, m.DC_WeldingDetectionRes)
    stop = h.send(m.SessionStopReq(header=h.header(), charging_session=m.ChargingSession.Terminate))
    assert isinstance(stop, m.SessionStopRes) and stop.response_code is R.OK
    assert h.ended is not None and not h.ended.failed
    assert h.closed
    assert h.session.state is SeccState.ENDED


def test_charge_loop_timeout_ends_the_session_safely() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.dc_loop_dynamic()
    assert h.session.next_deadline() == h.now + 0.5  # [V2G20-1500]
    h.tick(0.49)
    assert h.ended is None
    h.tick(0.02)
    assert h.ended is not None and h.ended.failed
    assert h.session.last_power is not None and h.session.last_power.phase is PowerPhase.OFF
    assert h.contactor_requests()[-1] is False


def test_unplug_mid_loop() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.dc_loop_dynamic()
    h.set_view(cp_state=CpState.A)
    assert h.ended is not None and h.ended.failed and "unplugged" in h.ended.reason
    assert h.contactor_requests()[-1] is False
    assert h.session.last_power is not None and h.session.last_power.phase is PowerPhase.OFF


def test_wrong_session_id_fails() -> None:
    h = Harness.create()
    h.handshake()
    h.sid = bytes.fromhex("0102030405060708")
    res = h.send(m.AuthorizationSetupReq(header=h.header()))
    assert isinstance(res, m.AuthorizationSetupRes)
    assert res.response_code is R.FAILED_UnknownSession
    assert h.ended is not None and h.closed


def test_out_of_sequence_fails() -> None:
    h = Harness.create()
    h.handshake()
    res = h.send(m.ServiceDiscoveryReq(header=h.header()))
    assert isinstance(res, m.ServiceDiscoveryRes)
    assert res.response_code is R.FAILED_SequenceError
    assert h.ended is not None and h.ended.failed


def test_garbage_gets_failed() -> None:
    h = Harness.create()
    h.handshake()
    res = h.send_raw(bytes.fromhex("01fe8002000000048000ffff"))
    assert isinstance(res, m.AuthorizationSetupRes)
    assert res.response_code is R.FAILED
    assert h.ended is not None


def test_dc_bpt_scheduled_with_discharge_tuple() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 1)  # DC_BPT, Scheduled
    h.dc_cpd()
    sched = h.schedule_scheduled()
    assert sched.response_code is R.OK
    mode = sched.scheduled_se_res_control_mode
    assert mode is not None
    ids = [t.schedule_tuple_id for t in mode.schedule_tuple]
    assert ids == [1, 2, 3]
    discharge = mode.schedule_tuple[1].discharging_schedule
    assert discharge is not None
    entry = discharge.power_schedule.power_schedule_entries.power_schedule_entry[0]
    assert entry.power.to_decimal() < 0  # power from the EV is negative
    h.cable_check()
    h.pre_charge()
    h.power_delivery(m.ChargeProgress.Start, tuple_id=2, channel=m.ChannelSelection.Discharge)
    res = h.response_in(h.set_view(contactors_closed=True))
    assert isinstance(res, m.PowerDeliveryRes) and res.response_code is R.OK
    res = h.send(
        m.DC_ChargeLoopReq(
            header=h.header(),
            meter_info_requested=False,
            ev_present_voltage=rn(380),
            bpt_scheduled_dc_cl_req_control_mode=m.BPT_Scheduled_DC_CLReqControlMode(
                ev_target_current=rn(-25), ev_target_voltage=rn(380)
            ),
        )
    )
    assert isinstance(res, m.DC_ChargeLoopRes) and res.response_code is R.OK
    power = h.session.last_power
    assert power is not None and power.current_a == -25.0


def test_scheduled_tuple_without_discharge_clamps_to_zero() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 1)
    h.dc_cpd()
    h.schedule_scheduled()
    h.cable_check()
    h.pre_charge()
    h.power_delivery(m.ChargeProgress.Start, tuple_id=1)
    h.set_view(contactors_closed=True)
    h.send(
        m.DC_ChargeLoopReq(
            header=h.header(),
            meter_info_requested=False,
            ev_present_voltage=rn(380),
            bpt_scheduled_dc_cl_req_control_mode=m.BPT_Scheduled_DC_CLReqControlMode(
                ev_target_current=rn(-25), ev_target_voltage=rn(380)
            ),
        )
    )
    power = h.session.last_power
    assert power is not None and power.current_a == 0.0


def test_plain_dc_never_discharges() -> None:
    h = Harness.create(setpoint_w=-10_000.0)
    h.handshake()
    h.authorize()
    h.select(2, 2)  # DC, Dynamic
    cpd = h.dc_cpd(bpt=False)
    assert cpd.dc_cpd_res_energy_transfer_mode is not None
    h.schedule_dynamic()
    h.cable_check()
    h.pre_charge()
    h.power_delivery(m.ChargeProgress.Start)
    h.set_view(contactors_closed=True)
    res = h.dc_loop_dynamic(bpt=False)
    assert res.response_code is R.OK
    power = h.session.last_power
    assert power is not None and power.current_a == 0.0


def test_pause_and_resume_with_old_session_joined() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.dc_loop_dynamic()
    h.power_delivery(m.ChargeProgress.Stop)
    h.set_view(contactors_closed=False)
    h.send(m.DC_WeldingDetectionReq(header=h.header(), ev_processing=m.Processing.Finished))
    res = h.send(m.SessionStopReq(header=h.header(), charging_session=m.ChargingSession.Pause))
    assert isinstance(res, m.SessionStopRes) and res.response_code is R.OK
    assert h.ended is not None and h.ended.paused and not h.ended.failed
    old = h.sid
    h.feed(ConnectionLost("EV closed"))
    h.actions.clear()
    h.framer = V2gtpFramer()
    h.feed(ConnectionOpened("[::1]:50001", tls=False))
    h.sid = old
    res = h.send(
        sap.SupportedAppProtocolReq(
            app_protocol=[
                sap.AppProtocol(
                    protocol_namespace=DC_NS,
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=1,
                    priority=1,
                )
            ]
        )
    )
    res = h.send(m.SessionSetupReq(header=h.header(), evccid=EVCC_ID))
    assert isinstance(res, m.SessionSetupRes)
    assert res.response_code is R.OK_OldSessionJoined
    assert res.header.session_id == old
    assert h.session.state is SeccState.CHARGE_PARAMETER  # [V2G20-2098]
    assert h.dc_cpd().response_code is R.OK


def test_resume_from_another_evcc_gets_a_new_session() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.power_delivery(m.ChargeProgress.Stop)
    h.set_view(contactors_closed=False)
    h.send(m.SessionStopReq(header=h.header(), charging_session=m.ChargingSession.Pause))
    old = h.sid
    h.feed(ConnectionLost("EV closed"))
    h.framer = V2gtpFramer()
    h.feed(ConnectionOpened("[::1]:50001", tls=False))
    h.send(
        sap.SupportedAppProtocolReq(
            app_protocol=[
                sap.AppProtocol(
                    protocol_namespace=DC_NS,
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=1,
                    priority=1,
                )
            ]
        )
    )
    res = h.send(m.SessionSetupReq(header=h.header(), evccid="SOMEONE-ELSE"))
    assert isinstance(res, m.SessionSetupRes)
    assert res.response_code is R.OK_NewSessionEstablished  # [V2G20-2545]
    assert res.header.session_id != old


def test_service_renegotiation_goes_back_to_service_discovery() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.power_delivery(m.ChargeProgress.Stop)
    h.set_view(contactors_closed=False)
    res = h.send(
        m.SessionStopReq(header=h.header(), charging_session=m.ChargingSession.ServiceRenegotiation)
    )
    assert isinstance(res, m.SessionStopRes) and res.response_code is R.OK
    assert h.session.state is SeccState.SERVICE_DISCOVERY
    h.select(2, 1)  # now plain DC, Scheduled
    assert h.session.selection is not None and not h.session.selection.bpt


def test_evse_initiated_stop_notifies_terminate() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.dc_loop_dynamic()
    h.feed(StopRequested("operator"))
    power = h.session.last_power
    assert power is not None and power.current_a == 0.0  # energy stops at once
    h.now += 0.1
    res = h.dc_loop_dynamic()
    assert res.evse_status is not None
    assert res.evse_status.evse_notification is m.EvseNotification.Terminate
    assert h.session.last_power is not None and h.session.last_power.current_a == 0.0


def test_cable_check_isolation_fault_fails() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 2)
    h.dc_cpd()
    h.schedule_dynamic()
    res = h.cable_check(isolation_ohm=50_000)
    assert res.response_code is R.FAILED
    assert h.ended is not None and h.ended.failed


def test_cable_check_uses_the_iec_61851_23_test_voltage() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 2)
    h.dc_cpd()  # EV max 450 V
    h.schedule_dynamic()
    h.set_view(cp_state=CpState.C)
    h.send(m.DC_CableCheckReq(header=h.header()))
    power = h.session.last_power
    assert power is not None and power.phase is PowerPhase.CABLE_CHECK
    assert power.voltage_v == 500.0  # min(450 + 50, 500, EVSE max)
    assert power.current_a == 2.0


def test_contactors_not_closing_fails_power_delivery() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 2)
    h.dc_cpd()
    h.schedule_dynamic()
    h.cable_check()
    h.pre_charge()
    h.power_delivery(m.ChargeProgress.Start)
    out = h.tick(3.1)
    res = h.response_in(out)
    assert isinstance(res, m.PowerDeliveryRes)
    assert res.response_code is R.FAILED_ContactorError
    assert h.ended is not None and h.ended.failed


def test_session_stop_in_the_loop_is_a_sequence_error() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    res = h.send(m.SessionStopReq(header=h.header(), charging_session=m.ChargingSession.Terminate))
    assert isinstance(res, m.SessionStopRes) and res.response_code is R.FAILED_SequenceError
    assert h.contactor_requests()[-1] is False


def test_communication_setup_timeout() -> None:
    h = Harness.create()
    h.tick(19.9)
    assert h.ended is None
    h.tick(0.2)
    assert h.ended is not None and "setup" in h.ended.reason


def test_sequence_timeout() -> None:
    h = Harness.create()
    h.handshake()
    h.tick(59.9)
    assert h.ended is None
    h.tick(0.2)
    assert h.ended is not None and "sequence" in h.ended.reason


def test_authorization_waits_for_the_evse() -> None:
    h = Harness.create()
    h.set_view(authorized=False)
    h.handshake()
    h.send(m.AuthorizationSetupReq(header=h.header()))
    req = m.AuthorizationReq(
        header=h.header(),
        selected_authorization_service=m.Authorization.EIM,
        eim_a_req_authorization_mode=m.EIM_AReqAuthorizationMode(),
    )
    res = h.send(req)
    assert isinstance(res, m.AuthorizationRes) and res.evse_processing is m.Processing.Ongoing
    h.set_view(authorized=True)
    res = h.send(req)
    assert isinstance(res, m.AuthorizationRes) and res.evse_processing is m.Processing.Finished


def test_no_common_protocol() -> None:
    h = Harness.create(services=(ServiceId.AC,))
    res = h.send(
        sap.SupportedAppProtocolReq(
            app_protocol=[
                sap.AppProtocol(
                    protocol_namespace=DC_NS,
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=7,
                    priority=1,
                )
            ]
        )
    )
    assert isinstance(res, sap.SupportedAppProtocolRes)
    assert res.response_code is sap.ResponseCode.Failed_NoNegotiation
    assert h.ended is not None


def test_protocol_follows_the_ev_priority() -> None:
    h = Harness.create()
    res = h.send(
        sap.SupportedAppProtocolReq(
            app_protocol=[
                sap.AppProtocol(
                    protocol_namespace=DC_NS,
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=1,
                    priority=2,
                ),
                sap.AppProtocol(
                    protocol_namespace=AC_NS,
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=2,
                    priority=1,
                ),
            ]
        )
    )
    assert isinstance(res, sap.SupportedAppProtocolRes)
    assert res.schema_id == 2


def test_ev_ignoring_terminate_is_ended_safely() -> None:
    h = Harness.create()
    start_dc_bpt_dynamic(h)
    h.dc_loop_dynamic()
    h.feed(StopRequested("operator"))
    for _ in range(12):  # the EV keeps looping as if nothing happened
        h.now += 0.4
        h.tick(0.0)
        if h.ended is not None:
            break
        h.dc_loop_dynamic()
    assert h.ended is not None and h.ended.failed and "Terminate" in h.ended.reason
    assert h.contactor_requests()[-1] is False


def test_scheduled_power_delivery_ongoing_without_profile_then_finished() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 1)
    h.dc_cpd()
    h.schedule_scheduled()
    h.cable_check()
    h.pre_charge()
    undecided = m.PowerDeliveryReq(
        header=h.header(),
        ev_processing=m.Processing.Ongoing,
        charge_progress=m.ChargeProgress.Start,
    )
    res = h.send(undecided)
    assert isinstance(res, m.PowerDeliveryRes) and res.response_code is R.OK
    assert h.contactor_requests() == []  # nothing closes while the EV is undecided
    h.power_delivery(m.ChargeProgress.Start, tuple_id=1)
    res = h.response_in(h.set_view(contactors_closed=True))
    assert isinstance(res, m.PowerDeliveryRes) and res.response_code is R.OK
    assert h.session.state is SeccState.CHARGE_LOOP


def test_scheduled_power_delivery_finished_without_a_tuple_fails() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 1)
    h.dc_cpd()
    h.schedule_scheduled()
    h.cable_check()
    h.pre_charge()
    out = h.power_delivery(m.ChargeProgress.Start)  # Finished, no EVPowerProfile
    res = h.response_in(out)
    assert isinstance(res, m.PowerDeliveryRes)
    assert res.response_code is R.FAILED_ScheduleSelectionInvalid
