"""A scripted EV for pure, synchronous SECC session tests (builds requests with our codec)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from chargepoint.iec61851.cp_state import CpState
from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.actions import (
    Action,
    CloseConnection,
    PowerPhase,
    RequestContactors,
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
from chargepoint.iso15118.secc.numbers import to_rational
from chargepoint.iso15118.secc.session import SeccSession
from chargepoint.iso15118.secc.settings import SeccSettings, SeccTimings, ServiceId
from chargepoint.iso15118.v2gtp import V2gtpFramer, V2gtpMessage, encode_frame
from chargepoint.power.arbitration import PowerLimits

DC_NS = "urn:iso:std:iso:15118:-20:DC"
AC_NS = "urn:iso:std:iso:15118:-20:AC"
EVCC_ID = "WMIV1234567890ABCDEX"
UNIX = 1_800_000_000.0


def rn(value: float) -> m.RationalNumber:
    return to_rational(value)


def settings(**kw: Any) -> SeccSettings:
    base: dict[str, Any] = {
        "evse_id": "DE*OPN*E0001*1",
        "services": (ServiceId.DC_BPT, ServiceId.DC, ServiceId.AC_BPT, ServiceId.AC),
        "timings": SeccTimings(),
    }
    base.update(kw)
    return SeccSettings(**base)


HARDWARE = PowerLimits(
    max_charge_power_w=30_000.0,
    max_charge_current_a=100.0,
    max_discharge_power_w=20_000.0,
    max_discharge_current_a=80.0,
    max_voltage_v=920.0,
    min_voltage_v=150.0,
)


@dataclass
class Harness:
    session: SeccSession
    now: float = 0.0
    actions: list[Action] = field(default_factory=list)
    view: EvseView = field(default_factory=lambda: EvseView(cp_state=CpState.B, pwm_on=True,
                                                            authorized=True))  # fmt: skip
    sid: bytes = bytes(8)
    framer: V2gtpFramer = field(default_factory=V2gtpFramer)

    @classmethod
    def create(cls, limits: PowerLimits = HARDWARE, setpoint_w: float | None = None,
               **kw: Any) -> Harness:  # fmt: skip
        counter = iter(range(1, 1_000_000))
        session = SeccSession(
            settings(**kw), random_bytes=lambda n: next(counter).to_bytes(n, "big")
        )
        h = cls(session)
        h.feed(LimitsChanged(limits, setpoint_w))
        h.feed(EvseChanged(h.view))
        h.feed(ConnectionOpened("[::1]:50000", tls=False))
        return h

    def feed(self, event: Any) -> list[Action]:
        out = self.session.handle(event, self.now, UNIX + self.now)
        self.actions += out
        return out

    def set_view(self, **changes: Any) -> list[Action]:
        self.view = replace(self.view, **changes)
        return self.feed(EvseChanged(self.view))

    def tick(self, dt: float) -> list[Action]:
        self.now += dt
        deadline = self.session.next_deadline()
        if deadline is not None and self.now >= deadline:
            out = self.session.handle_timer(self.now)
            self.actions += out
            return out
        return []

    def send(self, message: BaseModel, payload_type: int | None = None) -> BaseModel | None:
        """Send one request; return the decoded response (None if nothing was sent)."""
        pt = payload_type if payload_type is not None else exi.payload_type_of(message)
        return self.send_raw(encode_frame(pt, exi.encode(message, pt)))

    def send_raw(self, data: bytes) -> BaseModel | None:
        out = self.feed(DataReceived(data))
        return self.response_in(out)

    def response_in(self, out: list[Action]) -> BaseModel | None:
        response = None
        for action in out:
            if isinstance(action, SendData):
                self.framer.receive_data(action.data)
                for ev in self.framer.events():
                    assert isinstance(ev, V2gtpMessage)
                    response = exi.decode(ev.payload, int(ev.payload_type))
        return response

    def header(self) -> m.MessageHeader:
        return m.MessageHeader(session_id=self.sid, time_stamp=int(UNIX + self.now))

    @property
    def ended(self) -> SessionEnded | None:
        return next((a for a in self.actions if isinstance(a, SessionEnded)), None)

    @property
    def closed(self) -> bool:
        return any(isinstance(a, CloseConnection) for a in self.actions)

    def powers(self) -> list[RequestPower]:
        return [a for a in self.actions if isinstance(a, RequestPower)]

    def contactor_requests(self) -> list[bool]:
        return [a.closed for a in self.actions if isinstance(a, RequestContactors)]

    # -- scripted EV ------------------------------------------------------------------
    def handshake(self, namespace: str = DC_NS) -> None:
        res = self.send(
            sap.SupportedAppProtocolReq(
                app_protocol=[
                    sap.AppProtocol(
                        protocol_namespace=namespace,
                        version_number_major=1,
                        version_number_minor=0,
                        schema_id=1,
                        priority=1,
                    )
                ]
            )
        )
        assert isinstance(res, sap.SupportedAppProtocolRes), res
        assert res.response_code is sap.ResponseCode.OK_SuccessfulNegotiation
        res = self.send(m.SessionSetupReq(header=self.header(), evccid=EVCC_ID))
        assert isinstance(res, m.SessionSetupRes)
        self.sid = res.header.session_id

    def authorize(self) -> None:
        res = self.send(m.AuthorizationSetupReq(header=self.header()))
        assert isinstance(res, m.AuthorizationSetupRes) and res.response_code is m.ResponseCode.OK
        res = self.send(
            m.AuthorizationReq(
                header=self.header(),
                selected_authorization_service=m.Authorization.EIM,
                eim_a_req_authorization_mode=m.EIM_AReqAuthorizationMode(),
            )
        )
        assert isinstance(res, m.AuthorizationRes), res
        assert res.evse_processing is m.Processing.Finished

    def select(self, service: int, parameter_set: int) -> m.ServiceSelectionRes:
        res = self.send(m.ServiceDiscoveryReq(header=self.header()))
        assert isinstance(res, m.ServiceDiscoveryRes) and res.response_code is m.ResponseCode.OK
        res = self.send(m.ServiceDetailReq(header=self.header(), service_id=service))
        assert isinstance(res, m.ServiceDetailRes) and res.response_code is m.ResponseCode.OK
        res = self.send(
            m.ServiceSelectionReq(
                header=self.header(),
                selected_energy_transfer_service=m.SelectedService(
                    service_id=service, parameter_set_id=parameter_set
                ),
            )
        )
        assert isinstance(res, m.ServiceSelectionRes)
        return res

    def dc_cpd(self, bpt: bool = True) -> m.DC_ChargeParameterDiscoveryRes:
        common: dict[str, Any] = {
            "ev_maximum_charge_power": rn(50_000),
            "ev_minimum_charge_power": rn(0),
            "ev_maximum_charge_current": rn(125),
            "ev_minimum_charge_current": rn(0),
            "ev_maximum_voltage": rn(450),
            "ev_minimum_voltage": rn(300),
        }
        if bpt:
            req = m.DC_ChargeParameterDiscoveryReq(
                header=self.header(),
                bpt_dc_cpd_req_energy_transfer_mode=m.BPT_DC_CPDReqEnergyTransferMode(
                    **common,
                    ev_maximum_discharge_power=rn(-11_000),
                    ev_minimum_discharge_power=rn(0),
                    ev_maximum_discharge_current=rn(-30),
                    ev_minimum_discharge_current=rn(0),
                ),
            )
        else:
            req = m.DC_ChargeParameterDiscoveryReq(
                header=self.header(),
                dc_cpd_req_energy_transfer_mode=m.DC_CPDReqEnergyTransferMode(**common),
            )
        res = self.send(req)
        assert isinstance(res, m.DC_ChargeParameterDiscoveryRes)
        return res

    def schedule_dynamic(self) -> m.ScheduleExchangeRes:
        res = self.send(
            m.ScheduleExchangeReq(
                header=self.header(),
                maximum_supporting_points=1024,
                dynamic_se_req_control_mode=m.Dynamic_SEReqControlMode(
                    departure_time=7200,
                    target_soc=80,
                    ev_target_energy_request=rn(20_000),
                    ev_maximum_energy_request=rn(30_000),
                    ev_minimum_energy_request=rn(-5_000),
                ),
            )
        )
        assert isinstance(res, m.ScheduleExchangeRes)
        return res

    def schedule_scheduled(self) -> m.ScheduleExchangeRes:
        res = self.send(
            m.ScheduleExchangeReq(
                header=self.header(),
                maximum_supporting_points=1024,
                scheduled_se_req_control_mode=m.Scheduled_SEReqControlMode(departure_time=7200),
            )
        )
        assert isinstance(res, m.ScheduleExchangeRes)
        return res

    def cable_check(self, *, isolation_ohm: float = 5e6) -> m.DC_CableCheckRes:
        self.set_view(cp_state=CpState.C)
        for _ in range(200):
            res = self.send(m.DC_CableCheckReq(header=self.header()))
            assert isinstance(res, m.DC_CableCheckRes), res
            if (
                res.evse_processing is m.Processing.Finished
                or res.response_code is not m.ResponseCode.OK
            ):
                return res
            # the power stage follows the request, the isolation monitor settles
            power = self.session.last_power
            voltage = power.voltage_v if power and power.phase is PowerPhase.CABLE_CHECK else 0.0
            self.now += 0.1
            self.set_view(present_voltage_v=voltage, isolation_ohm=isolation_ohm)
        raise AssertionError("cable check never finished")

    def pre_charge(self, battery_v: float = 380.0) -> None:
        for _ in range(50):
            res = self.send(
                m.DC_PreChargeReq(
                    header=self.header(),
                    ev_processing=m.Processing.Ongoing,
                    ev_present_voltage=rn(battery_v),
                    ev_target_voltage=rn(battery_v),
                )
            )
            assert isinstance(res, m.DC_PreChargeRes) and res.response_code is m.ResponseCode.OK
            power = self.session.last_power
            assert power is not None and power.phase is PowerPhase.PRE_CHARGE
            assert power.current_a <= 2.0
            self.now += 0.1
            self.set_view(present_voltage_v=power.voltage_v)
            if abs(power.voltage_v - battery_v) < 1.0:
                break
        res = self.send(
            m.DC_PreChargeReq(
                header=self.header(),
                ev_processing=m.Processing.Finished,
                ev_present_voltage=rn(battery_v),
                ev_target_voltage=rn(battery_v),
            )
        )
        assert isinstance(res, m.DC_PreChargeRes) and res.response_code is m.ResponseCode.OK

    def power_delivery(self, progress: m.ChargeProgress, *, tuple_id: int | None = None,
                       channel: m.ChannelSelection | None = None) -> list[Action]:  # fmt: skip
        profile = None
        if tuple_id is not None:
            profile = m.EVPowerProfile(
                time_anchor=0,
                scheduled_evppt_control_mode=m.Scheduled_EVPPTControlMode(
                    selected_schedule_tuple_id=tuple_id
                ),
                ev_power_profile_entries=m.EVPowerProfileEntryList(
                    ev_power_profile_entry=[m.PowerScheduleEntry(duration=3600, power=rn(10_000))]
                ),
            )
        req = m.PowerDeliveryReq(
            header=self.header(),
            ev_processing=m.Processing.Finished,
            charge_progress=progress,
            ev_power_profile=profile,
            bpt_channel_selection=channel,
        )
        return self.feed(DataReceived(encode_frame(0x8002, exi.encode(req))))

    def dc_loop_dynamic(self, *, ev_v: float = 380.0, bpt: bool = True,
                        target_energy: float = 20_000.0) -> m.DC_ChargeLoopRes:  # fmt: skip
        common: dict[str, Any] = {
            "ev_target_energy_request": rn(target_energy),
            "ev_maximum_energy_request": rn(30_000),
            "ev_minimum_energy_request": rn(-5_000),
            "ev_maximum_charge_power": rn(50_000),
            "ev_minimum_charge_power": rn(0),
            "ev_maximum_charge_current": rn(125),
            "ev_maximum_voltage": rn(450),
            "ev_minimum_voltage": rn(300),
        }
        if bpt:
            mode: dict[str, Any] = {
                "bpt_dynamic_dc_cl_req_control_mode": m.BPT_Dynamic_DC_CLReqControlMode(
                    **common,
                    ev_maximum_discharge_power=rn(11_000),  # the other sign: must be accepted
                    ev_minimum_discharge_power=rn(0),
                    ev_maximum_discharge_current=rn(30),
                )
            }
        else:
            mode = {"dynamic_dc_cl_req_control_mode": m.Dynamic_DC_CLReqControlMode(**common)}
        res = self.send(
            m.DC_ChargeLoopReq(
                header=self.header(),
                display_parameters=m.DisplayParameters(present_soc=55),
                meter_info_requested=True,
                ev_present_voltage=rn(ev_v),
                **mode,
            )
        )
        assert isinstance(res, m.DC_ChargeLoopRes), res
        return res
