"""AC and AC_BPT sessions (pure, synchronous)."""

from __future__ import annotations

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import PowerPhase
from chargepoint.iso15118.secc.events import LimitsChanged
from chargepoint.iso15118.secc.states import SeccState
from chargepoint.power.arbitration import PowerLimits
from tests.iso15118.secc.driver import AC_NS, Harness, rn

R = m.ResponseCode
AC_LIMITS = PowerLimits(max_charge_power_w=22_000.0, max_discharge_power_w=11_000.0)


def start_ac(h: Harness, service: int, parameter_set: int) -> None:
    h.set_view(present_voltage_v=230.0)
    h.handshake(AC_NS)
    h.authorize()
    h.select(service, parameter_set)
    bpt = service == 5
    common = {"ev_maximum_charge_power": rn(11_000), "ev_minimum_charge_power": rn(1_000)}
    if bpt:
        req = m.AC_ChargeParameterDiscoveryReq(
            header=h.header(),
            bpt_ac_cpd_req_energy_transfer_mode=m.BPT_AC_CPDReqEnergyTransferMode(
                **common, ev_maximum_discharge_power=rn(-7_000), ev_minimum_discharge_power=rn(0)
            ),
        )
    else:
        req = m.AC_ChargeParameterDiscoveryReq(
            header=h.header(),
            ac_cpd_req_energy_transfer_mode=m.AC_CPDReqEnergyTransferMode(**common),
        )
    res = h.send(req)
    assert isinstance(res, m.AC_ChargeParameterDiscoveryRes) and res.response_code is R.OK
    sched = h.schedule_dynamic() if parameter_set == 2 else h.schedule_scheduled()
    assert sched.response_code is R.OK
    assert h.session.state is SeccState.POWER_DELIVERY
    tuple_id = 2 if parameter_set == 1 and bpt else (1 if parameter_set == 1 else None)
    out = h.power_delivery(m.ChargeProgress.Start, tuple_id=tuple_id)
    res = h.response_in(out)  # AC: answered at once, the EV goes to C afterwards
    assert isinstance(res, m.PowerDeliveryRes) and res.response_code is R.OK
    assert h.contactor_requests() == [True]
    h.set_view(cp_state=CpState.C, contactors_closed=True)


def ac_dynamic_loop(h: Harness) -> m.AC_ChargeLoopRes:
    res = h.send(
        m.AC_ChargeLoopReq(
            header=h.header(),
            meter_info_requested=False,
            bpt_dynamic_ac_cl_req_control_mode=m.BPT_Dynamic_AC_CLReqControlMode(
                ev_target_energy_request=rn(20_000),
                ev_maximum_energy_request=rn(30_000),
                ev_minimum_energy_request=rn(-5_000),
                ev_maximum_charge_power=rn(11_000),
                ev_minimum_charge_power=rn(0),
                ev_present_active_power=rn(0),
                ev_present_reactive_power=rn(0),
                ev_maximum_discharge_power=rn(7_000),
                ev_minimum_discharge_power=rn(0),
            ),
        )
    )
    assert isinstance(res, m.AC_ChargeLoopRes)
    return res


def test_ac_bpt_dynamic_charge_then_discharge() -> None:
    h = Harness.create(limits=AC_LIMITS)
    start_ac(h, 5, 2)
    res = ac_dynamic_loop(h)
    assert res.response_code is R.OK
    mode = res.bpt_dynamic_ac_cl_res_control_mode
    assert mode is not None
    assert mode.evse_target_active_power.to_decimal() == 11_000  # EV max, within 22 kW
    h.feed(LimitsChanged(AC_LIMITS, -5_000.0))
    h.now += 0.1
    res = ac_dynamic_loop(h)
    mode = res.bpt_dynamic_ac_cl_res_control_mode
    assert mode is not None and mode.evse_target_active_power.to_decimal() == -5_000
    power = h.session.last_power
    assert power is not None and power.phase is PowerPhase.ENERGY and power.power_w == -5_000
    h.feed(LimitsChanged(AC_LIMITS, -50_000.0))  # beyond the EV's 7 kW: clamped
    h.now += 0.1
    res = ac_dynamic_loop(h)
    mode = res.bpt_dynamic_ac_cl_res_control_mode
    assert mode is not None and mode.evse_target_active_power.to_decimal() == -7_000
    out = h.power_delivery(m.ChargeProgress.Stop)
    res2 = h.response_in(out)
    assert isinstance(res2, m.PowerDeliveryRes) and res2.response_code is R.OK
    assert h.session.state is SeccState.SESSION_STOP
    stop = h.send(m.SessionStopReq(header=h.header(), charging_session=m.ChargingSession.Terminate))
    assert isinstance(stop, m.SessionStopRes) and stop.response_code is R.OK


def test_ac_bpt_scheduled() -> None:
    h = Harness.create(limits=AC_LIMITS)
    start_ac(h, 5, 1)
    res = h.send(
        m.AC_ChargeLoopReq(
            header=h.header(),
            meter_info_requested=True,
            bpt_scheduled_ac_cl_req_control_mode=m.BPT_Scheduled_AC_CLReqControlMode(
                ev_present_active_power=rn(-3_000)
            ),
        )
    )
    assert isinstance(res, m.AC_ChargeLoopRes) and res.response_code is R.OK
    assert res.meter_info is not None
    power = h.session.last_power
    assert power is not None and power.power_w == -3_000  # tuple 2 allows discharge


def test_ac_c_to_b_in_the_loop_ends_the_session() -> None:
    h = Harness.create(limits=AC_LIMITS)
    start_ac(h, 5, 2)
    ac_dynamic_loop(h)
    h.set_view(cp_state=CpState.B)
    assert h.ended is not None and h.ended.failed
    assert h.contactor_requests()[-1] is False
