"""The SECC session over whole DC sessions, pure and synchronous (fake clock, scripted EV)."""

from __future__ import annotations

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import PowerPhase, RequestIsolationMonitor
from chargepoint.iso15118.secc.events import LimitsChanged
from chargepoint.iso15118.secc.states import SeccState
from tests.iso15118.secc.driver import HARDWARE, Harness

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
