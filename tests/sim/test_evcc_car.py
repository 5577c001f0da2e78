"""The asyncio car against a tiny scripted SECC on loopback, with SDP and the simulated plant.

The fake SECC answers every -20 request plausibly, drives the EVSE side of the
plant (5 % PWM, output contactors, a crude DC output stage) and can be told to
misbehave. The world (SimulatedEv + Battery) is stepped by ``SimWorld.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from ipaddress import IPv6Address
from typing import Any, cast

import pytest

from chargepoint.iec61851.cp_state import CpState, PilotOutput
from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as ap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.sdp import SdpResponder, SeccEndpoint
from chargepoint.iso15118.v2gtp import PayloadType, V2gtpFramer, V2gtpMessage, encode_frame
from hal.sim.battery import Battery
from hal.sim.ev import SimulatedEv
from hal.sim.evcc import CarControls, CarError, CarFault, CarProfile, CarTimeoutError, SimulatedCar
from hal.sim.plant import Plant
from hal.sim.world import SimWorld

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

HOST = "::1"


def rn(value: float) -> m.RationalNumber:
    return m.RationalNumber.from_decimal(Decimal(str(round(value, 1))))


def val(number: m.RationalNumber | None) -> float:
    return 0.0 if number is None else float(number.to_decimal())


def approach(value: float, target: float, step: float) -> float:
    return min(target, value + step) if target > value else max(target, value - step)


class FakeStage:
    """A crude DC output: pre-charges the open cable, pushes current into a connected battery."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.voltage_target_v = 0.0
        self.current_target_a = 0.0
        self.on = False

    def step(self, dt_s: float) -> None:
        p = self.plant
        connected = p.contactor_closed and p.ev_dc_contactor_closed and p.battery_voltage_v > 0
        if connected:
            target = self.current_target_a if self.on else 0.0
            p.dc_current_a = approach(p.dc_current_a, target, 1000.0 * dt_s)
            p.dc_voltage_v = p.battery_voltage_v + 0.01 * p.dc_current_a
        else:
            p.dc_current_a = 0.0
            target_v = self.voltage_target_v if self.on else 0.0
            p.dc_voltage_v = approach(p.dc_voltage_v, target_v, 3000.0 * dt_s)


class FakeSecc:
    """Scripted -20 SECC: one plausible answer per request; hooks to misbehave."""

    def __init__(self, plant: Plant, stage: FakeStage, services: tuple[int, ...]) -> None:
        self.plant = plant
        self.stage = stage
        self.services = services
        self.discharge_a = 40.0
        self.charge_a = 100.0
        self.ac_power_w = 7_000.0
        self.requests: list[Any] = []
        self.paused: set[bytes] = set()
        self.tamper: Callable[[Any, Any], Any] | None = None  # (request, response) -> response
        self.drop_on: Callable[[Any], bool] | None = None  # close instead of answering
        self.sid = b""
        self.joined_old = False
        self.looping = False
        self._ids = itertools.count(1)
        self._cable_checks = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    def names(self) -> list[str]:
        return [type(r).__name__ for r in self.requests]

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.plant.pilot_output = PilotOutput.PWM
        self.plant.duty_pct = 5.0  # digital communication required

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = V2gtpFramer()
        try:
            while True:
                # [V2G20-1500]: 0.5 s for the next request after a charge-loop response
                timeout = 0.5 if self.looping else 5.0
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    return
                if not data:
                    return
                framer.receive_data(data)
                for event in framer.events():
                    assert isinstance(event, V2gtpMessage)
                    req = exi.decode(event.payload, event.payload_type)
                    self.requests.append(req)
                    if self.drop_on is not None and self.drop_on(req):
                        return
                    res = self.respond(req)
                    if self.tamper is not None:
                        res = self.tamper(req, res)
                    writer.write(encode_frame(PayloadType(event.payload_type), exi.encode(res)))
                await writer.drain()
        finally:
            writer.close()

    # -- answers

    def _ok(self, cls: Any, code: m.ResponseCode = m.ResponseCode.OK, **kw: Any) -> Any:
        header = m.MessageHeader(session_id=self.sid, time_stamp=1_700_000_000)
        return cls(header=header, response_code=code, **kw)

    def respond(self, req: Any) -> Any:
        p, stage = self.plant, self.stage
        if isinstance(req, ap.SupportedAppProtocolReq):
            dc = any(s in (2, 6) for s in self.services)
            wanted = "urn:iso:std:iso:15118:-20:" + ("DC" if dc else "AC")
            proto = next(a for a in req.app_protocol if a.protocol_namespace == wanted)
            return ap.SupportedAppProtocolRes(
                response_code=ap.ResponseCode.OK_SuccessfulNegotiation, schema_id=proto.schema_id
            )
        if isinstance(req, m.SessionSetupReq):
            self.looping = False
            old = req.header.session_id
            if old in self.paused:
                self.sid, code, self.joined_old = old, m.ResponseCode.OK_OldSessionJoined, True
            else:
                self.sid = next(self._ids).to_bytes(8, "big")
                code = m.ResponseCode.OK_NewSessionEstablished
            return self._ok(m.SessionSetupRes, code, evseid="DE*SIM*E1")
        if isinstance(req, m.AuthorizationSetupReq) and self.looping:
            return self._ok(
                m.AuthorizationSetupRes,
                m.ResponseCode.FAILED_SequenceError,
                authorization_services=[m.Authorization.EIM],
                certificate_installation_service=False,
                eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
            )
        if isinstance(req, m.AuthorizationSetupReq):
            return self._ok(
                m.AuthorizationSetupRes,
                authorization_services=[m.Authorization.EIM],
                certificate_installation_service=False,
                eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
            )
        if isinstance(req, m.AuthorizationReq):
            return self._ok(m.AuthorizationRes, evse_processing=m.Processing.Finished)
        if isinstance(req, m.ServiceDiscoveryReq):
            services = [m.Service(service_id=s, free_service=True) for s in self.services]
            return self._ok(
                m.ServiceDiscoveryRes,
                service_renegotiation_supported=False,
                energy_transfer_service_list=m.ServiceList(service=services),
            )
        if isinstance(req, m.ServiceDetailReq):
            return self._ok(
                m.ServiceDetailRes,
                service_id=req.service_id,
                service_parameter_list=m.ServiceParameterList(
                    parameter_set=[_params(req.service_id, 1), _params(req.service_id, 2)]
                ),
            )
        if isinstance(req, m.ServiceSelectionReq):
            return self._ok(m.ServiceSelectionRes)
        if isinstance(req, m.DC_ChargeParameterDiscoveryReq):
            return self._dc_cpd(req)
        if isinstance(req, m.AC_ChargeParameterDiscoveryReq):
            return self._ac_cpd(req)
        if isinstance(req, m.ScheduleExchangeReq):
            if req.dynamic_se_req_control_mode is not None:
                return self._ok(
                    m.ScheduleExchangeRes,
                    evse_processing=m.Processing.Finished,
                    dynamic_se_res_control_mode=m.Dynamic_SEResControlMode(),
                )
            return self._ok(
                m.ScheduleExchangeRes,
                evse_processing=m.Processing.Finished,
                scheduled_se_res_control_mode=m.Scheduled_SEResControlMode(
                    schedule_tuple=[
                        m.ScheduleTuple(schedule_tuple_id=1, charging_schedule=_sched(40_000)),
                        m.ScheduleTuple(
                            schedule_tuple_id=2,
                            charging_schedule=_sched(20_000),
                            discharging_schedule=_sched(-15_000),
                        ),
                    ]
                ),
            )
        if isinstance(req, m.DC_CableCheckReq):
            p.contactor_closed = True
            stage.on, stage.voltage_target_v = True, 500.0
            self._cable_checks += 1
            done = self._cable_checks % 3 == 0
            processing = m.Processing.Finished if done else m.Processing.Ongoing
            return self._ok(m.DC_CableCheckRes, evse_processing=processing)
        if isinstance(req, m.DC_PreChargeReq):
            stage.voltage_target_v = val(req.ev_target_voltage)
            return self._ok(m.DC_PreChargeRes, evse_present_voltage=rn(p.dc_voltage_v))
        if isinstance(req, m.PowerDeliveryReq):
            start = req.charge_progress == m.ChargeProgress.Start
            self.looping = start
            if not any(s in (2, 6) for s in self.services):
                p.contactor_closed = start
            if not start:
                stage.current_target_a, stage.on = 0.0, False
            return self._ok(m.PowerDeliveryRes)
        if isinstance(req, m.DC_ChargeLoopReq):
            self.looping = True
            return self._dc_loop(req)
        if isinstance(req, m.AC_ChargeLoopReq):
            self.looping = True
            return self._ac_loop(req)
        if isinstance(req, m.DC_WeldingDetectionReq):
            p.contactor_closed = False
            return self._ok(m.DC_WeldingDetectionRes, evse_present_voltage=rn(p.dc_voltage_v))
        if isinstance(req, m.SessionStopReq):
            if req.charging_session == m.ChargingSession.Pause:
                self.paused.add(self.sid)
            p.contactor_closed = False
            return self._ok(m.SessionStopRes)
        # anything else arrives out of sequence
        return self._ok(
            m.AuthorizationSetupRes,
            m.ResponseCode.FAILED_SequenceError,
            authorization_services=[m.Authorization.EIM],
            certificate_installation_service=False,
            eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
        )

    def _dc_cpd(self, req: m.DC_ChargeParameterDiscoveryReq) -> Any:
        common = {
            "evse_maximum_charge_power": rn(150_000),
            "evse_minimum_charge_power": rn(0),
            "evse_maximum_charge_current": rn(300),
            "evse_minimum_charge_current": rn(0),
            "evse_maximum_voltage": rn(920),
            "evse_minimum_voltage": rn(150),
        }
        if req.bpt_dc_cpd_req_energy_transfer_mode is None:
            mode = m.DC_CPDResEnergyTransferMode(**common)
            return self._ok(m.DC_ChargeParameterDiscoveryRes, dc_cpd_res_energy_transfer_mode=mode)
        bpt = m.BPT_DC_CPDResEnergyTransferMode(
            **common,
            evse_maximum_discharge_power=rn(30_000),  # positive: the car accepts both signs
            evse_minimum_discharge_power=rn(0),
            evse_maximum_discharge_current=rn(80),
            evse_minimum_discharge_current=rn(0),
        )
        return self._ok(m.DC_ChargeParameterDiscoveryRes, bpt_dc_cpd_res_energy_transfer_mode=bpt)

    def _ac_cpd(self, req: m.AC_ChargeParameterDiscoveryReq) -> Any:
        common = {
            "evse_maximum_charge_power": rn(22_000),
            "evse_minimum_charge_power": rn(0),
            "evse_nominal_frequency": rn(50),
        }
        if req.bpt_ac_cpd_req_energy_transfer_mode is None:
            mode = m.AC_CPDResEnergyTransferMode(**common)
            return self._ok(m.AC_ChargeParameterDiscoveryRes, ac_cpd_res_energy_transfer_mode=mode)
        bpt = m.BPT_AC_CPDResEnergyTransferMode(
            **common, evse_maximum_discharge_power=rn(-11_000), evse_minimum_discharge_power=rn(0)
        )
        return self._ok(m.AC_ChargeParameterDiscoveryRes, bpt_ac_cpd_res_energy_transfer_mode=bpt)

    def _dc_loop(self, req: m.DC_ChargeLoopReq) -> Any:
        p = self.plant
        limits: dict[str, Any] = {
            "evse_maximum_charge_power": rn(150_000),
            "evse_minimum_charge_power": rn(0),
            "evse_maximum_charge_current": rn(300),
            "evse_maximum_voltage": rn(920),
        }
        mode: dict[str, Any]
        if (dyn := req.bpt_dynamic_dc_cl_req_control_mode) is not None:
            discharge_a = abs(val(dyn.ev_maximum_discharge_current))
            if discharge_a > 0:
                self.stage.current_target_a = -min(discharge_a, self.discharge_a)
            else:
                self.stage.current_target_a = min(val(dyn.ev_maximum_charge_current), self.charge_a)
            mode = {
                "bpt_dynamic_dc_cl_res_control_mode": m.BPT_Dynamic_DC_CLResControlMode(
                    **limits,
                    evse_maximum_discharge_power=rn(30_000),
                    evse_minimum_discharge_power=rn(0),
                    evse_maximum_discharge_current=rn(80),
                    evse_minimum_voltage=rn(150),
                )
            }
        elif (dyn2 := req.dynamic_dc_cl_req_control_mode) is not None:
            self.stage.current_target_a = min(val(dyn2.ev_maximum_charge_current), self.charge_a)
            mode = {"dynamic_dc_cl_res_control_mode": m.Dynamic_DC_CLResControlMode(**limits)}
        elif (sch := req.bpt_scheduled_dc_cl_req_control_mode) is not None:
            self.stage.current_target_a = val(sch.ev_target_current)
            mode = {"bpt_scheduled_dc_cl_res_control_mode": m.BPT_Scheduled_DC_CLResControlMode()}
        else:
            sch2 = req.scheduled_dc_cl_req_control_mode
            assert sch2 is not None
            self.stage.current_target_a = val(sch2.ev_target_current)
            mode = {"scheduled_dc_cl_res_control_mode": m.Scheduled_DC_CLResControlMode()}
        return self._ok(
            m.DC_ChargeLoopRes,
            evse_present_current=rn(p.dc_current_a),
            evse_present_voltage=rn(p.dc_voltage_v),
            evse_power_limit_achieved=False,
            evse_current_limit_achieved=False,
            evse_voltage_limit_achieved=False,
            **mode,
        )

    def _ac_loop(self, req: m.AC_ChargeLoopReq) -> Any:
        dyn = req.bpt_dynamic_ac_cl_req_control_mode
        assert dyn is not None
        discharge_w = abs(val(dyn.ev_maximum_discharge_power))
        if discharge_w > 0:
            target = -min(discharge_w, self.ac_power_w)
        else:
            target = min(val(dyn.ev_maximum_charge_power), self.ac_power_w)
        mode = m.BPT_Dynamic_AC_CLResControlMode(evse_target_active_power=rn(target))
        return self._ok(m.AC_ChargeLoopRes, bpt_dynamic_ac_cl_res_control_mode=mode)


def _params(service_id: int, control_mode: int) -> m.ParameterSet:
    dc = service_id in (2, 6)
    items = [
        ("Connector", 2 if dc else 3),
        ("ControlMode", control_mode),
        ("MobilityNeedsMode", 1),
        ("Pricing", 0),
    ]
    if service_id in (5, 6):
        items += [("BPTChannel", 1), ("GeneratorMode", 1)]
    if not dc:
        items += [("EVSENominalVoltage", 230)]
    return m.ParameterSet(
        parameter_set_id=control_mode,
        parameter=[m.Parameter(name=n, int_value=v) for n, v in items],
    )


def _sched(power_w: float) -> m.ChargingSchedule:
    entry = m.PowerScheduleEntry(duration=86_400, power=rn(power_w))
    return m.ChargingSchedule(
        power_schedule=m.PowerSchedule(
            time_anchor=0,
            power_schedule_entries=m.PowerScheduleEntryList(power_schedule_entry=[entry]),
        )
    )


class _SdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: SdpResponder | None) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.requests += 1
        if self.responder is not None and self.transport is not None:
            reply = self.responder.respond(data)
            if reply is not None:
                self.transport.sendto(reply, addr)


class Rig:
    def __init__(self, services: tuple[int, ...], soc_pct: float = 50.0) -> None:
        self.plant = Plant()
        self.battery = Battery(soc_pct=soc_pct)
        self.ev = SimulatedEv(
            self.plant,
            self.battery,
            s2_close_delay_s=0.05,
            ramp_up_a_per_s=50.0,
            ramp_down_a_per_s=50.0,
        )
        self.world = SimWorld(self.plant, ev=self.ev, max_step_s=0.02)
        self.stage = FakeStage(self.plant)
        self.world.add_driver(self.stage.step)
        self.secc = FakeSecc(self.plant, self.stage, services)
        self.sdp: _SdpProtocol | None = None
        self.sdp_port = 0

    def car(self, profile: CarProfile, controls: CarControls | None = None) -> SimulatedCar:
        return SimulatedCar(self.ev, profile, controls, meter_period_s=0.01)

    async def start_sdp(self, *, answer: bool = True, tls: bool = False) -> None:
        endpoint = SeccEndpoint(IPv6Address(HOST), self.secc.port)
        responder = (
            SdpResponder(tls=endpoint) if tls else SdpResponder(tcp=endpoint, allow_plain_tcp=True)
        )
        loop = asyncio.get_running_loop()
        _transport, proto = await loop.create_datagram_endpoint(
            lambda: _SdpProtocol(responder if answer else None), local_addr=(HOST, 0)
        )
        self.sdp = proto
        assert proto.transport is not None
        self.sdp_port = proto.transport.get_extra_info("sockname")[1]

    async def settle(self, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def rig(services: tuple[int, ...], soc_pct: float = 50.0) -> AsyncIterator[Rig]:
    r = Rig(services, soc_pct)
    await r.secc.start()
    world = asyncio.create_task(r.world.run(period_s=0.005))
    try:
        yield r
    finally:
        world.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await world
        await r.secc.close()
        if r.sdp is not None and r.sdp.transport is not None:
            r.sdp.transport.close()


def profile(**kw: Any) -> CarProfile:
    base: dict[str, Any] = {
        "services": ("DC_BPT", "DC"),
        "tls": False,
        "loop_interval_s": 0.02,
        "sdp_timeout_s": 0.05,
    }
    return CarProfile(**(base | kw))


DC_SEQUENCE = [
    "SupportedAppProtocolReq",
    "SessionSetupReq",
    "AuthorizationSetupReq",
    "AuthorizationReq",
    "ServiceDiscoveryReq",
    "ServiceDetailReq",
    "ServiceSelectionReq",
    "DC_ChargeParameterDiscoveryReq",
    "ScheduleExchangeReq",
    "DC_CableCheckReq",
    "DC_PreChargeReq",
    "PowerDeliveryReq",
    "DC_ChargeLoopReq",
    "PowerDeliveryReq",
    "DC_WeldingDetectionReq",
    "SessionStopReq",
]


async def wait_until(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def collapse(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


# --------------------------------------------------------------------- tests


async def test_dc_bpt_dynamic_charge_over_sdp_and_tcp() -> None:
    async with rig((2, 6)) as r:
        await r.start_sdp()
        car = r.car(profile(), CarControls(stop_after_loops=25))
        cp_seen: set[CpState] = set()

        async def watch() -> None:
            while True:
                cp_seen.add(r.ev.cp_state)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        report = await asyncio.wait_for(car.run(sdp_target=(HOST, r.sdp_port)), 10)
        watcher.cancel()
        await r.settle(0.1)
        assert report.ok, report
        assert report.end_reason == "loop_limit"
        assert report.service == "DC_BPT" and report.sessions == 1
        assert collapse(r.secc.names()) == DC_SEQUENCE
        assert collapse([n for n in report.messages if n.endswith("Req")]) == [
            n.replace("SupportedAppProtocolReq", "supportedAppProtocolReq") for n in DC_SEQUENCE
        ]
        assert report.loops >= 26  # 25, then wind-down loops until the current is 0
        assert CpState.C in cp_seen
        assert r.ev.cp_state is CpState.B  # back to B after SessionStop
        assert not r.plant.ev_dc_contactor_closed
        assert report.energy_charged_wh > 3.0  # ~0.5 s at 40 kW
        assert report.energy_charged_wh == pytest.approx(r.battery.charged_wh, rel=0.15)
        assert report.energy_discharged_wh < 0.5
        assert r.sdp is not None and r.sdp.requests == 1
        assert car.status()["state"] == "done"


async def test_dc_bpt_discharge_pause_and_resume() -> None:
    async with rig((6,)) as r:
        controls = CarControls(discharge=True, stop_after_loops=15)
        car = r.car(profile(services=("DC_BPT",)), controls)

        async def pause_and_resume() -> None:
            await wait_until(lambda: car.status()["loops"] >= 8)
            controls.pause = True
            await wait_until(lambda: car.status()["state"].startswith("paused"))
            assert not r.plant.ev_dc_contactor_closed
            controls.pause = False

        driver = asyncio.create_task(pause_and_resume())
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        await driver
        assert report.ok, report
        assert report.sessions == 2
        assert r.secc.joined_old
        second = r.secc.names()[r.secc.names().index("SessionStopReq") + 1 :]
        assert second[:3] == [
            "SupportedAppProtocolReq",
            "SessionSetupReq",
            "DC_ChargeParameterDiscoveryReq",  # [V2G20-2098]
        ]
        stops = [q for q in r.secc.requests if isinstance(q, m.SessionStopReq)]
        assert [s.charging_session for s in stops] == [
            m.ChargingSession.Pause,
            m.ChargingSession.Terminate,
        ]
        assert report.energy_discharged_wh > 1.0  # ~0.4 s at 16 kW
        assert report.energy_charged_wh < 0.5


async def test_dc_scheduled_charges_within_the_chosen_tuple() -> None:
    async with rig((6,)) as r:
        car = r.car(
            profile(services=("DC_BPT",), control_mode="scheduled"),
            CarControls(stop_after_loops=15),
        )
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        assert report.ok, report
        start = next(q for q in r.secc.requests if isinstance(q, m.PowerDeliveryReq))
        assert start.ev_power_profile is not None
        ppt = start.ev_power_profile.scheduled_evppt_control_mode
        assert ppt is not None and ppt.selected_schedule_tuple_id == 1
        modes = [
            q.bpt_scheduled_dc_cl_req_control_mode
            for q in r.secc.requests
            if isinstance(q, m.DC_ChargeLoopReq)
        ]
        targets = [val(mode.ev_target_current) for mode in modes if mode is not None]
        assert targets[0] == pytest.approx(40_000 / r.battery.open_circuit_voltage_v(), rel=0.05)
        assert targets[-1] == 0.0  # wound down before PowerDelivery(Stop)
        assert report.energy_charged_wh > 2.0


async def test_ac_bpt_dynamic_feeds_back_through_the_onboard_charger() -> None:
    async with rig((5,)) as r:
        controls = CarControls(discharge=True, stop_after_loops=40)
        car = r.car(profile(services=("AC_BPT",)), controls)
        lowest_ac_a = 0.0

        async def watch() -> None:
            nonlocal lowest_ac_a
            while True:
                lowest_ac_a = min(lowest_ac_a, r.plant.ac_current_a)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        watcher.cancel()
        await r.settle(0.1)
        assert report.ok, report
        assert report.service == "AC_BPT"
        assert lowest_ac_a < -5.0  # 7 kW fed back over 3 phases
        assert report.energy_discharged_wh > 1.0
        assert r.ev.cp_state is CpState.B and r.plant.ac_current_a == 0.0
        assert any(p.power_w < 0 for p in report.timeline)


async def test_wrong_session_id_in_the_loop_raises_and_makes_the_car_safe() -> None:
    async with rig((6,)) as r:
        count = 0

        def tamper(req: Any, res: Any) -> Any:
            nonlocal count
            if isinstance(req, m.DC_ChargeLoopReq):
                count += 1
                if count == 5:
                    res.header = m.MessageHeader(session_id=bytes(8), time_stamp=1)
            return res

        r.secc.tamper = tamper
        car = r.car(profile(services=("DC_BPT",)), CarControls(stop_after_loops=50))
        with pytest.raises(CarError) as info:
            await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        err = info.value
        assert (err.message, err.field) == ("DC_ChargeLoopRes", "Header.SessionID")
        assert err.report is not None and not err.report.ok and err.report.loops >= 4
        await r.settle(0.2)
        assert not r.plant.ev_dc_contactor_closed
        assert r.ev.cp_state is CpState.B


async def test_secc_vanishing_mid_loop_is_an_error() -> None:
    async with rig((6,)) as r:
        loops = itertools.count()
        r.secc.drop_on = lambda req: isinstance(req, m.DC_ChargeLoopReq) and next(loops) == 6
        car = r.car(profile(services=("DC_BPT",)), CarControls(stop_after_loops=50))
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port), check=False), 10)
        assert not report.ok and report.error is not None
        assert report.error.message == "connection"
        assert not r.plant.ev_dc_contactor_closed


async def test_silent_car_is_dropped_by_the_secc() -> None:
    async with rig((6,)) as r:
        controls = CarControls(fault=CarFault.SILENT)
        car = r.car(profile(services=("DC_BPT",)), controls)
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        assert not report.ok and report.end_reason == "fault_silent" and report.error is None
        assert not r.plant.ev_dc_contactor_closed


async def test_disappearing_car_drops_the_connection() -> None:
    async with rig((6,)) as r:
        controls = CarControls(fault=CarFault.DISAPPEAR)
        car = r.car(profile(services=("DC_BPT",), fault_hold_s=0.1), controls)
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        assert report.end_reason == "fault_disappear" and not report.ok
        assert "SessionStopReq" not in r.secc.names()


async def test_out_of_sequence_request_gets_failed_sequence_error() -> None:
    async with rig((6,)) as r:
        controls = CarControls(fault=CarFault.OUT_OF_SEQUENCE)
        car = r.car(profile(services=("DC_BPT",)), controls)
        report = await asyncio.wait_for(car.run(host_port=(HOST, r.secc.port)), 10)
        assert report.end_reason == "fault_out_of_sequence" and report.error is None


async def test_sdp_without_answer_times_out() -> None:
    async with rig((6,)) as r:
        await r.start_sdp(answer=False)
        car = r.car(profile(sdp_max_requests=3, sdp_timeout_s=0.02))
        with pytest.raises(CarTimeoutError, match="3 SDP requests"):
            await asyncio.wait_for(car.run(sdp_target=(HOST, r.sdp_port)), 5)
        assert r.sdp is not None and r.sdp.requests == 3


async def test_sdp_plain_tcp_answer_refused_when_tls_is_required() -> None:
    async with rig((6,)) as r:
        await r.start_sdp()
        car = r.car(profile(tls=True))
        with pytest.raises(CarError) as info:
            await asyncio.wait_for(car.run(sdp_target=(HOST, r.sdp_port)), 5)
        assert (info.value.message, info.value.field) == ("SdpResponse", "Security")
        assert r.secc.requests == []


async def test_run_needs_exactly_one_target() -> None:
    async with rig((6,)) as r:
        car = r.car(profile())
        with pytest.raises(ValueError, match="exactly one"):
            await car.run()


def test_simulated_ev_feeds_back_with_a_signed_ac_current() -> None:
    """The SimulatedEv hook the car uses for AC_BPT: negative current discharges the
    battery, limited by the charger rating, with the losses on the battery side."""
    plant = Plant(contactor_closed=True, pilot_output=PilotOutput.PWM, duty_pct=5.0)
    battery = Battery(soc_pct=60.0)
    ev = SimulatedEv(plant, battery, s2_close_delay_s=0.0, ramp_down_a_per_s=100.0)
    ev.plug()
    ev.request_energy()
    ev.set_hlc_ready(True)
    ev.set_hlc_ac_current(-30.0)  # beyond the 16 A rating
    for _ in range(100):
        ev.step(0.01)
    assert ev.current_a == pytest.approx(-16.0)
    assert plant.ac_current_a == pytest.approx(-16.0)
    assert ev.cp_state is CpState.C
    grid_w = 230.0 * 16.0 * 3
    battery_w = -battery.current_a * plant.battery_voltage_v
    assert battery_w == pytest.approx(grid_w / ev.onboard_charger_efficiency, rel=0.01)
    with pytest.raises(ValueError):
        ev.set_hlc_ac_current(float("nan"))
