"""ISO 15118-20 service renegotiation end to end, with a scripted EVCC.

Our simulated car (``hal.sim.evcc``) never sends SessionStop(ServiceRenegotiation),
so this test plays the EV itself: a short script that speaks -20 over the
service's real mutual-TLS 1.3 server and drives the simulated EV's hooks (S2,
DC contactor) the way the car does. It charges under DC_BPT, stops the power
(PowerDelivery Stop, welding detection), renegotiates, selects plain DC and
ends with SessionStop(Terminate), all in one session.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from chargepoint.adapters.iso15118_setup import car_tls
from chargepoint.adapters.v2g_pki import load_test_pki
from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.secc.numbers import from_rational, to_rational
from chargepoint.iso15118.v2gtp import V2gtpFramer, V2gtpMessage, encode_frame
from hal.sim.evcc.services import choose_parameter_set, parse_parameter_sets
from tests.e2e.iso15118_support import (
    V2gClient,
    assert_safe,
    iso,
    running_station,
    v2g_config,
)

DC_NS = "urn:iso:std:iso:15118:-20:DC"
EVCC_ID = "02005E10A1B2"
LOOP_S = 0.1  # well inside the SECC's 0.5 s charge-loop timeout
R = m.ResponseCode


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("v2g") / "pki"


class ScriptedEvcc:
    """One request, one response, over a real connection (our codec, V2GTP framing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = V2gtpFramer()
        self.session_id = bytes(8)

    def header(self) -> m.MessageHeader:
        return m.MessageHeader(session_id=self.session_id, time_stamp=int(time.time()))

    async def call(self, request: Any) -> Any:
        self.writer.write(encode_frame(exi.payload_type_of(request), exi.encode(request)))
        await self.writer.drain()
        async with asyncio.timeout(2.0):  # EVCC response timeout (FACTS.md "Timing")
            while True:
                data = await self.reader.read(65_536)
                assert data, f"the SECC closed the connection after {type(request).__name__}"
                self.framer.receive_data(data)
                for event in self.framer.events():
                    assert isinstance(event, V2gtpMessage), event
                    response: Any = exi.decode(event.payload, int(event.payload_type))
                    if not isinstance(response, sap.SupportedAppProtocolRes):
                        assert response.header.session_id == self.session_id or isinstance(
                            response, m.SessionSetupRes
                        )
                        assert str(response.response_code).startswith("OK"), response
                    return response

    async def select(self, service_id: int, name: str) -> None:
        """ServiceDiscovery -> ServiceDetail -> ServiceSelection (Dynamic)."""
        found = await self.call(m.ServiceDiscoveryReq(header=self.header()))
        assert found.service_renegotiation_supported
        offered = [s.service_id for s in found.energy_transfer_service_list.service]
        assert service_id in offered, offered
        detail = await self.call(m.ServiceDetailReq(header=self.header(), service_id=service_id))
        chosen = choose_parameter_set(parse_parameter_sets(detail, name, strict=True), "dynamic")
        assert chosen is not None
        selected = m.SelectedService(
            service_id=service_id, parameter_set_id=chosen.parameter_set_id
        )
        await self.call(
            m.ServiceSelectionReq(header=self.header(), selected_energy_transfer_service=selected)
        )


def ev_limits() -> dict[str, Any]:
    return {
        "ev_maximum_charge_power": to_rational(30_000),
        "ev_minimum_charge_power": to_rational(0),
        "ev_maximum_charge_current": to_rational(75),
        "ev_minimum_charge_current": to_rational(0),
        "ev_maximum_voltage": to_rational(450),
        "ev_minimum_voltage": to_rational(300),
    }


def bpt_discharge_limits() -> dict[str, Any]:
    return {
        "ev_maximum_discharge_power": to_rational(-11_000),
        "ev_minimum_discharge_power": to_rational(0),
        "ev_maximum_discharge_current": to_rational(-25),
        "ev_minimum_discharge_current": to_rational(0),
    }


async def schedule_dynamic(ev: ScriptedEvcc) -> None:
    await ev.call(
        m.ScheduleExchangeReq(
            header=ev.header(),
            maximum_supporting_points=1024,
            dynamic_se_req_control_mode=m.Dynamic_SEReqControlMode(
                departure_time=7200,
                ev_target_energy_request=to_rational(20_000),
                ev_maximum_energy_request=to_rational(30_000),
                ev_minimum_energy_request=to_rational(-5_000),
            ),
        )
    )


async def charge_under_dc_bpt(ev: ScriptedEvcc, client: V2gClient) -> None:
    """DC_BPT from ChargeParameterDiscovery to welding detection, with energy flowing."""
    sim_ev, plant = client.hw.world.ev, client.hw.world.plant
    res = await ev.call(
        m.DC_ChargeParameterDiscoveryReq(
            header=ev.header(),
            bpt_dc_cpd_req_energy_transfer_mode=m.BPT_DC_CPDReqEnergyTransferMode(
                **ev_limits(), **bpt_discharge_limits()
            ),
        )
    )
    assert res.bpt_dc_cpd_res_energy_transfer_mode is not None
    await schedule_dynamic(ev)
    sim_ev.set_hlc_ready(True)  # S2 closed: CP C on 5 % PWM
    await client.until("CP C", lambda s: s["cp"] == "C")
    for _ in range(100):  # the cable check takes a few seconds at most
        res = await ev.call(m.DC_CableCheckReq(header=ev.header()))
        if res.evse_processing == m.Processing.Finished:
            break
        await asyncio.sleep(LOOP_S)
    battery_v = to_rational(plant.battery_voltage_v)
    while True:
        res = await ev.call(
            m.DC_PreChargeReq(
                header=ev.header(),
                ev_processing=m.Processing.Ongoing,
                ev_present_voltage=battery_v,
                ev_target_voltage=battery_v,
            )
        )
        present = from_rational(res.evse_present_voltage, "EVSEPresentVoltage")
        if abs(present - plant.battery_voltage_v) < 10.0:
            break
        await asyncio.sleep(LOOP_S)
    await ev.call(
        m.DC_PreChargeReq(
            header=ev.header(),
            ev_processing=m.Processing.Finished,
            ev_present_voltage=battery_v,
            ev_target_voltage=battery_v,
        )
    )
    await ev.call(
        m.PowerDeliveryReq(
            header=ev.header(),
            ev_processing=m.Processing.Finished,
            charge_progress=m.ChargeProgress.Start,
        )
    )
    sim_ev.set_dc_contactor(True)  # [V2G20-1317]: after PowerDelivery(Start)
    start_wh = client.registers()[0]
    loop = m.BPT_Dynamic_DC_CLReqControlMode(
        ev_target_energy_request=to_rational(20_000),
        ev_maximum_energy_request=to_rational(30_000),
        ev_minimum_energy_request=to_rational(-5_000),
        **{k: v for k, v in ev_limits().items() if "minimum_charge_current" not in k},
        **{k: v for k, v in bpt_discharge_limits().items() if "minimum_discharge_current" not in k},
    )
    while client.registers()[0] < start_wh + 0.2:
        await ev.call(
            m.DC_ChargeLoopReq(
                header=ev.header(),
                meter_info_requested=False,
                ev_present_voltage=to_rational(plant.battery_voltage_v),
                bpt_dynamic_dc_cl_req_control_mode=loop,
            )
        )
        await asyncio.sleep(LOOP_S)
    await ev.call(
        m.PowerDeliveryReq(
            header=ev.header(),
            ev_processing=m.Processing.Finished,
            charge_progress=m.ChargeProgress.Stop,
        )
    )
    sim_ev.set_dc_contactor(False)
    for _ in range(20):
        res = await ev.call(
            m.DC_WeldingDetectionReq(header=ev.header(), ev_processing=m.Processing.Ongoing)
        )
        if from_rational(res.evse_present_voltage, "EVSEPresentVoltage") < 60.0:
            break
        await asyncio.sleep(LOOP_S)


async def test_service_renegotiation_after_charging_selects_another_service(
    tmp_path: Path, pki_dir: Path
) -> None:
    config = v2g_config(tmp_path / "state", pki_dir, simulated_car=False)
    async with running_station(config) as client:
        await client.plug_until_link()  # an EV that waits for its ISO 15118 stack (S2 open)
        st = await client.until("5 % PWM", lambda s: s["pwm_duty_pct"] == 5.0)
        context = car_tls(load_test_pki(pki_dir))
        reader, writer = await asyncio.open_connection(
            "::1", iso(st)["port"], ssl=context, server_hostname="::1"
        )
        ev = ScriptedEvcc(reader, writer)
        try:
            protocol = sap.AppProtocol(
                protocol_namespace=DC_NS,
                version_number_major=1,
                version_number_minor=0,
                schema_id=1,
                priority=1,
            )
            await ev.call(sap.SupportedAppProtocolReq(app_protocol=[protocol]))
            setup = await ev.call(m.SessionSetupReq(header=ev.header(), evccid=EVCC_ID))
            assert setup.response_code == R.OK_NewSessionEstablished
            ev.session_id = setup.header.session_id
            await ev.call(m.AuthorizationSetupReq(header=ev.header()))
            eim = m.EIM_AReqAuthorizationMode()
            while True:
                auth = await ev.call(
                    m.AuthorizationReq(
                        header=ev.header(),
                        selected_authorization_service=m.Authorization.EIM,
                        eim_a_req_authorization_mode=eim,
                    )
                )
                if auth.evse_processing == m.Processing.Finished:
                    break
                await asyncio.sleep(LOOP_S)
            await ev.select(6, "DC_BPT")
            assert iso(await client.evse())["service"] == "DC_BPT"
            imported_before = client.registers()[0]
            await charge_under_dc_bpt(ev, client)
            assert client.registers()[0] > imported_before  # energy flowed under DC_BPT
            st = await client.until("contactors open", lambda s: s["contactor_closed"] is False)
            assert_safe(client, st)

            await ev.call(
                m.SessionStopReq(
                    header=ev.header(), charging_session=m.ChargingSession.ServiceRenegotiation
                )
            )
            st = await client.evse()
            assert iso(st)["state"] == "service_discovery" and iso(st)["last_end"] == ""
            await ev.select(2, "DC")
            assert iso(await client.evse())["service"] == "DC"
            res = await ev.call(
                m.DC_ChargeParameterDiscoveryReq(
                    header=ev.header(),
                    dc_cpd_req_energy_transfer_mode=m.DC_CPDReqEnergyTransferMode(**ev_limits()),
                )
            )
            # plain DC now: the SECC's limits come without a discharge part
            assert res.dc_cpd_res_energy_transfer_mode is not None
            assert res.bpt_dc_cpd_res_energy_transfer_mode is None
            await schedule_dynamic(ev)
            await ev.call(
                m.SessionStopReq(header=ev.header(), charging_session=m.ChargingSession.Terminate)
            )
            client.hw.world.ev.set_hlc_ready(False)
            st = await client.until("the session end", lambda s: iso(s)["last_end"] != "")
            assert iso(st)["last_end"] == "terminated by the EV"
            assert iso(st)["sessions"] == 1  # one session, renegotiated inside
            assert client.station.v2g[1].session.session_id == ev.session_id
            assert await reader.read(100) == b""  # the SECC closed the connection
            assert_safe(client, st)
        finally:
            writer.close()
