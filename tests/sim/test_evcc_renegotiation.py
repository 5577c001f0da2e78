"""Schedule renegotiation from the charge loop: our car against our real SECC core.

Both sans-I/O sessions run back to back, synchronously, on one fake clock, with
a minimal plant between them (the DC output follows the SECC's power request at
once, contactors and CP follow their commands). Until the SECC sends
``EVSENotification=ScheduleRenegotiation`` itself, the rig adds it to the SECC's
charge-loop responses on their way to the car (decode, set ``EVSEStatus``,
encode again); everything else the car sees is the SECC's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import (
    PowerPhase,
    RequestContactors,
    RequestIsolationMonitor,
    RequestPower,
    SendData,
    SessionEnded,
)
from chargepoint.iso15118.secc.events import (
    ConnectionOpened,
    DataReceived,
    EvseChanged,
    EvseView,
    LimitsChanged,
)
from chargepoint.iso15118.secc.session import SeccSession
from chargepoint.iso15118.secc.states import SeccState
from chargepoint.iso15118.v2gtp import PayloadType, V2gtpFramer, V2gtpMessage, encode_frame
from chargepoint.power.arbitration import PowerLimits
from hal.sim.evcc import CarControls, CarProfile, EndReason, Evcc20Session, EvMeasurements, Phase
from hal.sim.evcc.outcome import SetAcPower, SetCp, SetDcContactor
from hal.sim.evcc.renegotiation import Initiator, Renegotiation
from tests.iso15118.secc.driver import HARDWARE, UNIX, settings

BATTERY_V = 400.0
R = m.ResponseCode
Mutate = Callable[[Any], None]


def measurements(**changes: Any) -> EvMeasurements:
    base = EvMeasurements(
        soc_pct=50.0,
        battery_voltage_v=BATTERY_V,
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
    )
    return replace(base, **changes)


def decode(frame: bytes) -> Any:
    framer = V2gtpFramer()
    framer.receive_data(frame)
    (event,) = list(framer.events())
    assert isinstance(event, V2gtpMessage)
    return exi.decode(event.payload, event.payload_type)


class Rig:
    """Our car and our SECC back to back (see the module docstring)."""

    def __init__(
        self, profile: CarProfile, controls: CarControls | None = None, **secc: Any
    ) -> None:
        self.now = 0.0
        counter = iter(range(1, 1_000_000))
        self.secc = SeccSession(
            settings(**secc), random_bytes=lambda n: next(counter).to_bytes(n, "big")
        )
        self.view = EvseView(cp_state=CpState.B, pwm_on=True, authorized=True)
        self.controls = controls if controls is not None else CarControls()
        self.car = Evcc20Session(profile, self.controls, epoch_offset_s=UNIX)
        self.ev_contactor = False
        self.ac_power_w = 0.0
        self.mutate: Mutate | None = None  # rewrites SECC responses on their way to the car
        self.requests: list[Any] = []  # what the car sent, decoded
        self.sent_at: list[float] = []  # when (fake clock), one per request
        self.responses: list[Any] = []  # what the car received, decoded
        self.secc_ended: list[SessionEnded] = []
        self.ac_powers: list[tuple[Phase, float]] = []  # the car's on-board charger setpoints
        self._to_car: list[bytes] = []
        self.limits(HARDWARE)
        self._to_secc(EvseChanged(self.view))
        self._to_secc(ConnectionOpened("[::1]:50000", tls=False))
        self.car.start(self.now, self.measure())
        self.settle()

    # -- plant
    def measure(self) -> EvMeasurements:
        live = self.ev_contactor and self.view.contactors_closed
        inlet = BATTERY_V if self.ev_contactor else self.view.present_voltage_v
        return measurements(
            inlet_voltage_v=inlet,
            battery_current_a=self.view.present_current_a if live else 0.0,
            cp_state=self.view.cp_state,
            ac_power_w=self.ac_power_w,
        )

    def _power(self, req: RequestPower) -> None:
        closed = self.view.contactors_closed and self.ev_contactor
        voltage, current = req.voltage_v, 0.0
        if req.phase is PowerPhase.OFF:
            voltage = BATTERY_V if closed else 0.0
        elif req.phase is PowerPhase.ENERGY:
            voltage, current = BATTERY_V, req.current_a
        self.view = replace(self.view, present_voltage_v=voltage, present_current_a=current)

    # -- wiring
    def limits(self, limits: PowerLimits) -> None:
        self._to_secc(LimitsChanged(limits))

    def _to_secc(self, first: Any) -> None:
        queue = [first]
        while queue:
            event = queue.pop(0)
            before = self.view
            for action in self.secc.handle(event, self.now, UNIX + self.now):
                self._secc_action(action)
            if self.view != before:
                queue.append(EvseChanged(self.view))

    def _secc_action(self, action: Any) -> None:
        if isinstance(action, SendData):
            res = decode(action.data)
            if self.mutate is not None:
                self.mutate(res)
            self.responses.append(res)
            pt = exi.payload_type_of(res)
            self._to_car.append(encode_frame(PayloadType(pt), exi.encode(res)))
        elif isinstance(action, RequestPower):
            self._power(action)
        elif isinstance(action, RequestContactors):
            self.view = replace(self.view, contactors_closed=action.closed)
            if not action.closed:  # the output discharges behind the open contactors
                self.view = replace(self.view, present_voltage_v=0.0, present_current_a=0.0)
        elif isinstance(action, RequestIsolationMonitor):
            self.view = replace(self.view, isolation_ohm=5e6 if action.on else None)
        elif isinstance(action, SessionEnded):
            self.secc_ended.append(action)

    def _car_action(self, action: Any) -> None:
        if isinstance(action, SetCp):
            self.view = replace(self.view, cp_state=CpState.C if action.closed else CpState.B)
            self._to_secc(EvseChanged(self.view))
        elif isinstance(action, SetDcContactor):
            self.ev_contactor = action.closed
        elif isinstance(action, SetAcPower):
            self.ac_power_w = action.power_w
            self.ac_powers.append((self.car.phase, action.power_w))

    def settle(self) -> None:
        """Exchange everything due at ``now``."""
        busy = True
        while busy:
            busy = False
            for action in self.car.actions():
                busy = True
                self._car_action(action)
            for frame in self.car.data_to_send():
                busy = True
                self.requests.append(decode(frame))
                self.sent_at.append(self.now)
                self._to_secc(DataReceived(frame))
            frames, self._to_car = self._to_car, []
            for frame in frames:
                busy = True
                self.car.update(self.measure())
                self.car.receive_data(frame, self.now)

    def step(self) -> None:
        """Advance the clock to the next deadline of either side and fire it."""
        times = [t for t in (self.car.next_deadline(), self.secc.next_deadline()) if t is not None]
        assert times, "both sides wait for each other"
        self.now = max(self.now, min(times))
        self.car.update(self.measure())
        self.car.handle_timer(self.now)
        due = self.secc.next_deadline()
        if due is not None and self.now >= due:
            for action in self.secc.handle_timer(self.now):
                self._secc_action(action)
        self.settle()

    def run_until(self, done: Callable[[], bool], max_steps: int = 5_000) -> None:
        for _ in range(max_steps):
            if done():
                return
            assert not self.car.finished, self.car.result
            self.step()
        raise AssertionError(f"not reached; car in {self.car.phase.value}")

    def run_to_end(self) -> None:
        self.run_until(lambda: self.car.finished)

    # -- what happened
    def loop_responses(self) -> int:
        return sum(isinstance(r, m.DC_ChargeLoopRes | m.AC_ChargeLoopRes) for r in self.responses)

    def power_deliveries(self) -> list[m.PowerDeliveryReq]:
        return [r for r in self.requests if isinstance(r, m.PowerDeliveryReq)]

    def sequence(self) -> list[str]:
        """Request names, PowerDelivery with its ChargeProgress, runs collapsed."""
        names: list[str] = []
        for req in self.requests:
            name = exi.element_name(req)
            if isinstance(req, m.PowerDeliveryReq):
                name = f"PowerDeliveryReq({req.charge_progress})"
            if not names or names[-1] != name:
                names.append(name)
        return names


def notice_at(rig: Rig, loop: int, max_delay_s: int = 5) -> Mutate:
    """Add EVSENotification=ScheduleRenegotiation to the ``loop``-th loop response."""

    def mutate(res: Any) -> None:
        if isinstance(res, m.DC_ChargeLoopRes | m.AC_ChargeLoopRes) and (
            rig.loop_responses() == loop - 1
        ):
            res.evse_status = m.EVSEStatus(
                notification_max_delay=max_delay_s,
                evse_notification=m.EvseNotification.ScheduleRenegotiation,
            )

    return mutate


def car_profile(**kw: Any) -> CarProfile:
    base: dict[str, Any] = {"services": ("DC",), "control_mode": "scheduled", "tls": False}
    return CarProfile(**(base | kw))


LOWER = replace(HARDWARE, max_charge_power_w=10_000.0)

RENEGOTIATION = [
    "PowerDeliveryReq(ScheduleRenegotiation)",
    "ScheduleExchangeReq",
    "PowerDeliveryReq(Start)",
]


def test_dc_scheduled_evse_renegotiation_follows_the_new_offer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hal.sim.evcc")
    rig = Rig(car_profile(), CarControls(stop_after_loops=20))
    rig.run_until(lambda: rig.loop_responses() >= 3)
    loop = rig.car.loop
    assert loop is not None and loop.ev_target_current_a == pytest.approx(30_000 / BATTERY_V)
    session_id = rig.car.session_id
    # the operator lowers the station's power; the SECC asks the car to renegotiate
    rig.limits(LOWER)
    rig.mutate = notice_at(rig, 5)
    rig.run_until(lambda: rig.car.renegotiations == 1)
    assert rig.car.phase is Phase.CHARGE_LOOP
    assert rig.secc.state is SeccState.CHARGE_LOOP
    schedule = rig.car.schedule
    assert schedule is not None and schedule.charge_power_w(0.0) == 10_000.0  # the new offer
    restart = rig.power_deliveries()[-1]
    assert restart.charge_progress is m.ChargeProgress.Start
    profile = restart.ev_power_profile
    assert profile is not None and profile.scheduled_evppt_control_mode is not None
    assert profile.scheduled_evppt_control_mode.selected_schedule_tuple_id == schedule.tuple_id
    entries = profile.ev_power_profile_entries.ev_power_profile_entry
    assert max(float(e.power.to_decimal()) for e in entries) <= 10_000.0
    # the loop resumes on the new tuple
    loops_before = loop.loops
    rig.run_until(lambda: loop.loops >= loops_before + 2)
    assert rig.car.loop is loop  # same loop, same session
    assert loop.ev_target_current_a == pytest.approx(10_000 / BATTERY_V)
    rig.run_to_end()
    result = rig.car.result
    assert result is not None and result.ok and result.reason is EndReason.LOOP_LIMIT
    assert rig.car.session_id == session_id
    assert [e.failed for e in rig.secc_ended] == [False]
    seq = rig.sequence()
    start = seq.index(RENEGOTIATION[0])
    assert seq[start - 1 : start + 4] == ["DC_ChargeLoopReq", *RENEGOTIATION, "DC_ChargeLoopReq"]
    assert seq.count(RENEGOTIATION[0]) == 1
    status = rig.car.status()
    assert status["renegotiations"] == 1 and status["loops"] >= 20  # + wind-down loops
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("hal.sim.evcc") and r.levelno >= logging.INFO
        if "renegotiat" in r.getMessage()
    ]
    assert lines == [
        "EVCC: schedule renegotiated (initiated by the EVSE): ScheduleTuple 1 -> 1 of [1, 3]"
    ]


def renegotiation_sent_at(rig: Rig) -> tuple[float, float]:
    """(time of the loop request before it, time of PowerDelivery(ScheduleRenegotiation))."""
    i = next(
        i
        for i, r in enumerate(rig.requests)
        if isinstance(r, m.PowerDeliveryReq)
        and r.charge_progress is m.ChargeProgress.ScheduleRenegotiation
    )
    assert isinstance(rig.requests[i - 1], m.DC_ChargeLoopReq)
    return rig.sent_at[i - 1], rig.sent_at[i]


@pytest.mark.parametrize(("max_delay_s", "after_s"), [(0, 0.0), (5, 0.3)])
def test_renegotiation_is_sent_within_notification_max_delay(
    max_delay_s: int, after_s: float
) -> None:
    rig = Rig(car_profile(loop_interval_s=0.3), CarControls(stop_after_loops=6))
    rig.mutate = notice_at(rig, 2, max_delay_s=max_delay_s)
    rig.run_to_end()
    assert rig.car.result is not None and rig.car.result.ok
    assert rig.car.renegotiations == 1
    # the notice came in the answer to the loop request (answered at once): PowerDelivery
    # at the next slot, or at once when NotificationMaxDelay is shorter
    loop_at, sent_at = renegotiation_sent_at(rig)
    assert sent_at - loop_at == pytest.approx(after_s)


def test_dc_bpt_dynamic_renegotiation_resumes_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hal.sim.evcc")
    profile = car_profile(services=("DC_BPT",), control_mode="dynamic")
    rig = Rig(profile, CarControls(stop_after_loops=12))
    rig.mutate = notice_at(rig, 4)
    rig.run_to_end()
    result = rig.car.result
    assert result is not None and result.ok and result.reason is EndReason.LOOP_LIMIT
    assert rig.car.renegotiations == 1 and rig.car.schedule is None
    exchanges = [r for r in rig.requests if isinstance(r, m.ScheduleExchangeReq)]
    assert len(exchanges) == 2
    assert all(x.dynamic_se_req_control_mode is not None for x in exchanges)
    restart = rig.power_deliveries()[-2]  # the last one is Stop
    assert restart.charge_progress is m.ChargeProgress.Start
    assert restart.ev_power_profile is not None
    assert restart.ev_power_profile.dynamic_evppt_control_mode is not None
    seq = rig.sequence()
    start = seq.index(RENEGOTIATION[0])
    assert seq[start : start + 4] == [*RENEGOTIATION, "DC_ChargeLoopReq"]
    assert [e.failed for e in rig.secc_ended] == [False]
    assert any(
        "renegotiated (initiated by the EVSE): Dynamic mode" in r.getMessage()
        for r in caplog.records
    )


def test_notice_while_stopping_is_ignored() -> None:
    controls = CarControls()
    rig = Rig(car_profile(), controls)
    rig.run_until(lambda: rig.loop_responses() >= 3)

    def while_stopping(res: Any) -> None:
        loop = rig.car.loop
        if isinstance(res, m.DC_ChargeLoopRes) and loop is not None and loop.stop is not None:
            res.evse_status = m.EVSEStatus(
                notification_max_delay=5,
                evse_notification=m.EvseNotification.ScheduleRenegotiation,
            )

    rig.mutate = while_stopping
    controls.stop = True
    rig.run_to_end()
    result = rig.car.result
    assert result is not None and result.ok and result.reason is EndReason.STOPPED
    assert any(
        isinstance(r, m.DC_ChargeLoopRes) and r.evse_status is not None for r in rig.responses
    )
    progress = [p.charge_progress for p in rig.power_deliveries()]
    assert progress == [m.ChargeProgress.Start, m.ChargeProgress.Stop]
    assert rig.car.renegotiations == 0


def test_ev_initiated_renegotiation_uses_the_secc_path() -> None:
    rig = Rig(car_profile(renegotiate_after_loops=4), CarControls(stop_after_loops=12))
    rig.run_to_end()
    result = rig.car.result
    assert result is not None and result.ok and result.reason is EndReason.LOOP_LIMIT
    assert rig.car.renegotiations == 1  # once, not every 4 loops
    assert rig.sequence().count(RENEGOTIATION[0]) == 1
    assert [e.failed for e in rig.secc_ended] == [False]
    # after 4 loop responses, none of which carried a notice
    loop_responses = [r for r in rig.responses if isinstance(r, m.DC_ChargeLoopRes)]
    assert all(r.evse_status is None for r in loop_responses)
    i = rig.sequence().index(RENEGOTIATION[0])
    assert rig.sequence()[i - 1 : i + 4] == ["DC_ChargeLoopReq", *RENEGOTIATION, "DC_ChargeLoopReq"]
    first = next(i for i, r in enumerate(rig.requests) if isinstance(r, m.DC_ChargeLoopReq))
    reneg = next(
        i
        for i, r in enumerate(rig.requests)
        if isinstance(r, m.PowerDeliveryReq)
        and r.charge_progress is m.ChargeProgress.ScheduleRenegotiation
    )
    assert reneg - first == 4
    # the SECC answered each step of its EV-initiated path with OK and a fresh offer
    offers = [r for r in rig.responses if isinstance(r, m.ScheduleExchangeRes)]
    assert len(offers) == 2 and all(o.scheduled_se_res_control_mode is not None for o in offers)
    assert all(str(r.response_code).startswith("OK") for r in rig.responses)


def test_driver_stop_during_renegotiation_ends_without_resuming() -> None:
    controls = CarControls()
    rig = Rig(car_profile(), controls)
    notice = notice_at(rig, 3)

    def stop_mid_renegotiation(res: Any) -> None:
        notice(res)
        if isinstance(res, m.PowerDeliveryRes) and (
            rig.car.phase is Phase.POWER_DELIVERY_RENEGOTIATE
        ):
            controls.stop = True  # the driver, before the car sends ScheduleExchangeReq

    rig.mutate = stop_mid_renegotiation
    rig.run_to_end()
    result = rig.car.result
    assert result is not None and result.ok and result.reason is EndReason.STOPPED
    progress = [p.charge_progress for p in rig.power_deliveries()]
    assert progress == [
        m.ChargeProgress.Start,
        m.ChargeProgress.ScheduleRenegotiation,
        m.ChargeProgress.Stop,
    ]
    assert rig.car.renegotiations == 0
    assert [e.failed for e in rig.secc_ended] == [False]


def test_renegotiation_request_is_dropped_once_the_car_stops() -> None:
    reneg = Renegotiation(after_loops=None)
    assert reneg.notice(10.0, 2) == 12.0
    assert reneg.notice(10.5, 0) == 10.5  # a later, shorter delay wins
    assert reneg.due(5, stopping=True) is None
    assert reneg.wanted is None and reneg.send_by is None
    own = Renegotiation(after_loops=3)
    assert own.due(2, stopping=False) is None
    assert own.due(3, stopping=False) is Initiator.EV
    assert own.due(9, stopping=False) is None  # once per session


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_profile_rejects_a_bad_renegotiate_after_loops(value: Any) -> None:
    with pytest.raises(ValueError, match="renegotiate_after_loops"):
        CarProfile(renegotiate_after_loops=value)


def test_ac_scheduled_renegotiation_holds_the_charger_at_zero_meanwhile() -> None:
    profile = car_profile(services=("AC",))
    rig = Rig(profile, CarControls(stop_after_loops=12))
    rig.run_until(lambda: rig.loop_responses() >= 2)
    rig.limits(replace(HARDWARE, max_charge_power_w=5_500.0))
    rig.mutate = notice_at(rig, 4)
    rig.run_to_end()
    result = rig.car.result
    assert result is not None and result.ok and result.reason is EndReason.LOOP_LIMIT
    assert rig.car.renegotiations == 1
    seq = rig.sequence()
    i = seq.index(RENEGOTIATION[0])
    assert seq[i - 1 : i + 4] == ["AC_ChargeLoopReq", *RENEGOTIATION, "AC_ChargeLoopReq"]
    # 11 kW (the car's maximum) before, 0 while renegotiating, the new offer's 5.5 kW after
    i = rig.ac_powers.index((Phase.POWER_DELIVERY_RENEGOTIATE, 0.0))
    assert rig.ac_powers[i - 1] == (Phase.CHARGE_LOOP, 11_000.0)
    assert rig.ac_powers[i + 1] == (Phase.CHARGE_LOOP, 5_500.0)
    assert [e.failed for e in rig.secc_ended] == [False]
