"""Scheduled mode with a CSMS: its schedule ahead becomes the ScheduleTuples, the EV's
needs go out once per negotiation (OCPP K15), ScheduleExchange waits (bounded) for
the TxProfile, and a schedule that changes mid-charge asks the EV to renegotiate (K16).
"""

from __future__ import annotations

from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import EvNeeds, EvScheduleChosen, SessionNotice
from chargepoint.iso15118.secc.events import CsmsNeedsAnswered, LimitsChanged
from chargepoint.iso15118.secc.states import SeccState
from chargepoint.power.arbitration import PowerLimits
from chargepoint.power.grid_schedule import GridSchedule, GridStep
from tests.iso15118.secc.driver import HARDWARE, UNIX, Harness, rn

R = m.ResponseCode


def grid(*steps: tuple[float, float]) -> GridSchedule:
    """Steps as (seconds from the harness's Unix epoch, charge limit W)."""
    return GridSchedule(tuple(GridStep(UNIX + at, power) for at, power in steps))


def limits_with(g: GridSchedule, now_limit_w: float) -> LimitsChanged:
    now = HARDWARE.combine(PowerLimits(max_charge_power_w=now_limit_w))
    return LimitsChanged(now, None, grid=g, base=HARDWARE)


def to_scheduled_exchange(h: Harness) -> None:
    h.handshake()
    h.authorize()
    h.select(2, 1)  # DC, Scheduled
    h.dc_cpd(bpt=False)


def schedule_req(h: Harness) -> m.ScheduleExchangeRes:
    return h.schedule_scheduled()


def charge_entries(res: m.ScheduleExchangeRes, index: int = 0) -> list[tuple[int, float]]:
    mode = res.scheduled_se_res_control_mode
    assert mode is not None
    schedule = mode.schedule_tuple[index].charging_schedule.power_schedule
    return [
        (e.duration, float(e.power.to_decimal()))
        for e in schedule.power_schedule_entries.power_schedule_entry
    ]


def loop(h: Harness) -> m.DC_ChargeLoopRes:
    res = h.send(
        m.DC_ChargeLoopReq(
            header=h.header(),
            meter_info_requested=False,
            ev_present_voltage=rn(380),
            scheduled_dc_cl_req_control_mode=m.Scheduled_DC_CLReqControlMode(
                ev_target_current=rn(60), ev_target_voltage=rn(400)
            ),
        )
    )
    assert isinstance(res, m.DC_ChargeLoopRes) and res.response_code is R.OK
    return res


def charging(h: Harness) -> None:
    h.cable_check()
    h.pre_charge()
    h.power_delivery(m.ChargeProgress.Start, tuple_id=1)
    res = h.response_in(h.set_view(contactors_closed=True))
    assert isinstance(res, m.PowerDeliveryRes) and res.response_code is R.OK


def test_the_csms_schedule_ahead_shapes_every_tuple() -> None:
    h = Harness.create()
    h.feed(limits_with(grid((-60, 11_000.0), (3600, 22_000.0), (7200, 5_000.0)), 11_000.0))
    to_scheduled_exchange(h)
    res = schedule_req(h)
    assert res.evse_processing is m.Processing.Finished
    # hardware 30 kW, CSMS 11 kW now, 22 kW in an hour, 5 kW in two
    assert charge_entries(res) == [(3600, 11_000.0), (3600, 22_000.0), (86_400 - 7200, 5_000.0)]
    assert charge_entries(res, 1) == [(3600, 5_500.0), (3600, 11_000.0), (86_400 - 7200, 2_500.0)]


def test_without_a_csms_schedule_the_hardware_limit_is_offered() -> None:
    h = Harness.create()
    to_scheduled_exchange(h)
    assert charge_entries(schedule_req(h)) == [(86_400, 30_000.0)]


def test_the_offer_fits_the_evs_maximum_supporting_points() -> None:
    h = Harness.create()
    steps = tuple((i * 60.0, 1_000.0 + 100.0 * (i % 2)) for i in range(40))
    h.feed(limits_with(grid(*steps), 1_000.0))
    to_scheduled_exchange(h)
    res = h.send(
        m.ScheduleExchangeReq(
            header=h.header(),
            maximum_supporting_points=12,
            scheduled_se_req_control_mode=m.Scheduled_SEReqControlMode(departure_time=7200),
        )
    )
    assert isinstance(res, m.ScheduleExchangeRes)
    entries = charge_entries(res)
    assert len(entries) <= 12
    assert entries[-1][1] == 1_000.0  # the tail takes the lowest limit it replaces
    assert sum(d for d, _ in entries) == 86_400


def test_needs_go_out_once_and_the_exchange_waits_for_the_txprofile() -> None:
    h = Harness.create(csms_schedule_wait_s=20.0)
    to_scheduled_exchange(h)
    res = schedule_req(h)
    assert res.evse_processing is m.Processing.Ongoing
    needs = [a for a in h.actions if isinstance(a, EvNeeds)]
    assert len(needs) == 1
    assert needs[0].dc and needs[0].control_mode == "scheduled"
    assert needs[0].departure_time_s == 7200 and needs[0].max_voltage_v is not None
    h.feed(CsmsNeedsAnswered(schedule_coming=True))
    h.now += 1.0
    assert schedule_req(h).evse_processing is m.Processing.Ongoing
    assert len([a for a in h.actions if isinstance(a, EvNeeds)]) == 1  # not per repeat
    # the TxProfile arrives: the next repeat gets the tuples shaped by it
    h.feed(limits_with(grid((0, 7_000.0)), 7_000.0))
    h.now += 1.0
    res = schedule_req(h)
    assert res.evse_processing is m.Processing.Finished
    assert charge_entries(res)[0][1] == 7_000.0


def test_a_rejection_ends_the_wait() -> None:
    h = Harness.create(csms_schedule_wait_s=20.0)
    to_scheduled_exchange(h)
    assert schedule_req(h).evse_processing is m.Processing.Ongoing
    h.feed(CsmsNeedsAnswered(schedule_coming=False))
    assert schedule_req(h).evse_processing is m.Processing.Finished


def test_the_wait_is_bounded() -> None:
    h = Harness.create(csms_schedule_wait_s=5.0)
    to_scheduled_exchange(h)
    assert schedule_req(h).evse_processing is m.Processing.Ongoing
    h.feed(CsmsNeedsAnswered(schedule_coming=True))
    h.now += 5.0
    assert schedule_req(h).evse_processing is m.Processing.Finished
    notices = [a.kind for a in h.actions if isinstance(a, SessionNotice)]
    assert "csms_schedule_late" in notices


def test_no_wait_without_a_csms() -> None:
    h = Harness.create()
    to_scheduled_exchange(h)
    assert schedule_req(h).evse_processing is m.Processing.Finished
    assert len([a for a in h.actions if isinstance(a, EvNeeds)]) == 1


def test_the_chosen_schedule_is_reported() -> None:
    h = Harness.create()
    to_scheduled_exchange(h)
    schedule_req(h)
    charging(h)
    chosen = [a for a in h.actions if isinstance(a, EvScheduleChosen)]
    assert len(chosen) == 1
    # the harness's EV sends its own EVPowerProfile entries: those are reported
    assert chosen[0].tuple_id == 1 and chosen[0].periods == ((0, 10_000.0),)


def test_a_changed_schedule_asks_the_ev_to_renegotiate() -> None:
    h = Harness.create()
    h.feed(limits_with(grid((0, 20_000.0)), 20_000.0))
    to_scheduled_exchange(h)
    schedule_req(h)
    charging(h)
    assert loop(h).evse_status is None
    # the same schedule recomputed later is no change
    h.feed(limits_with(grid((0, 20_000.0)), 20_000.0))
    assert loop(h).evse_status is None
    # a new TxProfile: 8 kW from now on; the limit applies at once, the EV is asked
    h.now += 1.0
    h.feed(limits_with(grid((1, 8_000.0)), 8_000.0))
    res = loop(h)
    assert res.evse_status is not None
    assert res.evse_status.evse_notification is m.EvseNotification.ScheduleRenegotiation
    power = h.session.last_power
    assert power is not None and power.current_a * 380 <= 8_000.0 + 1.0
    # the EV renegotiates: no needs again (K16: ours), the new offer has 8 kW
    needs_before = len([a for a in h.actions if isinstance(a, EvNeeds)])
    h.power_delivery(m.ChargeProgress.ScheduleRenegotiation)
    assert h.session.state is SeccState.SCHEDULE_EXCHANGE
    res2 = schedule_req(h)
    assert charge_entries(res2)[0][1] == 8_000.0
    assert len([a for a in h.actions if isinstance(a, EvNeeds)]) == needs_before
    h.power_delivery(m.ChargeProgress.Start, tuple_id=1)
    assert h.session.state is SeccState.CHARGE_LOOP
    assert loop(h).evse_status is None


def test_an_ev_that_does_not_renegotiate_is_left_alone_after_the_delay() -> None:
    h = Harness.create(renegotiation_max_delay_s=2)
    h.feed(limits_with(grid((0, 20_000.0)), 20_000.0))
    to_scheduled_exchange(h)
    schedule_req(h)
    charging(h)
    h.feed(limits_with(grid((0, 6_000.0)), 6_000.0))
    assert loop(h).evse_status is not None
    h.now += 3.5
    res = loop(h)
    assert res.evse_status is None  # given up; the 6 kW limit still holds
    power = h.session.last_power
    assert power is not None and power.current_a * 380 <= 6_000.0 + 1.0
    assert not h.closed


def test_dynamic_mode_never_asks_for_renegotiation() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(6, 2)
    h.dc_cpd()
    h.schedule_dynamic()
    h.cable_check()
    h.pre_charge()
    h.power_delivery(m.ChargeProgress.Start)
    h.set_view(contactors_closed=True)
    h.feed(limits_with(grid((0, 6_000.0)), 6_000.0))
    res = h.dc_loop_dynamic()
    assert res.evse_status is None


def test_hostile_optional_numbers_do_not_stop_the_session() -> None:
    h = Harness.create()
    h.handshake()
    h.authorize()
    h.select(2, 1)
    res = h.send(
        m.DC_ChargeParameterDiscoveryReq(
            header=h.header(),
            dc_cpd_req_energy_transfer_mode=m.DC_CPDReqEnergyTransferMode(
                ev_maximum_charge_power=rn(50_000),
                ev_minimum_charge_power=m.RationalNumber(exponent=127, value=32767),
                ev_maximum_charge_current=rn(125),
                ev_minimum_charge_current=rn(0),
                ev_maximum_voltage=rn(450),
                ev_minimum_voltage=rn(300),
            ),
        )
    )
    assert isinstance(res, m.DC_ChargeParameterDiscoveryRes) and res.response_code is R.OK
    assert schedule_req(h).evse_processing is m.Processing.Finished
    assert not [a for a in h.actions if isinstance(a, EvNeeds)]
    assert "ev_needs_unusable" in [a.kind for a in h.actions if isinstance(a, SessionNotice)]


def test_dynamic_mode_reports_needs_without_waiting() -> None:
    h = Harness.create(csms_schedule_wait_s=20.0)
    h.handshake()
    h.authorize()
    h.select(6, 2)
    h.dc_cpd()
    assert h.schedule_dynamic().evse_processing is m.Processing.Finished
    needs = [a for a in h.actions if isinstance(a, EvNeeds)]
    assert len(needs) == 1 and needs[0].bpt and needs[0].control_mode == "dynamic"
    assert needs[0].target_energy_wh == 20_000 and needs[0].max_discharge_power_w is not None
