"""Cross-check against EXIficient (Java) built from the official -20 XSDs.

One oracle subprocess (one JVM) per test run: every message - hand-built BPT
Scheduled/Dynamic variants, maximum-length lists and hypothesis-generated
messages of every global element - is encoded by us, decoded by EXIficient,
compared element by element with our model and re-encoded by EXIficient, which
must reproduce our bytes exactly. Our decoder must return the original model.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.messages import xmldsig as ds
from chargepoint.iso15118.messages._base import ExiModel
from tests.iso15118.exi_support import (
    all_message_classes,
    field_strategy,
    fields_of,
    lexical,
    lexical_equal,
    model_strategy,
    oracle_available,
    run_oracle,
)

_skip = oracle_available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_skip is not None, reason=_skip or "")]

SID = bytes.fromhex("CCEC07A64440C546")


def rn(v: int, e: int = 0) -> m.RationalNumber:
    return m.RationalNumber(exponent=e, value=v)


def hdr(signed: bool = False) -> m.MessageHeader:
    sig = None
    if signed:
        sig = ds.Signature(
            id="sig1",
            signed_info=ds.SignedInfo(
                canonicalization_method=ds.CanonicalizationMethod(
                    algorithm="http://www.w3.org/TR/canonical-exi/"
                ),
                signature_method=ds.SignatureMethod(
                    algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
                ),
                reference=[
                    ds.Reference(
                        uri="#id1",
                        transforms=ds.Transforms(
                            transform=[
                                ds.Transform(algorithm="http://www.w3.org/TR/canonical-exi/")
                            ]
                        ),
                        digest_method=ds.DigestMethod(
                            algorithm="http://www.w3.org/2001/04/xmlenc#sha512"
                        ),
                        digest_value=bytes(range(64)),
                    )
                ],
            ),
            signature_value=ds.SignatureValue(value=bytes(range(132))),
            key_info=ds.KeyInfo(
                key_name=["key-1"],
                x509_data=[
                    ds.X509Data(
                        x509_issuer_serial=[
                            ds.X509IssuerSerial(
                                x509_issuer_name="CN=Test", x509_serial_number=2**70
                            )
                        ]
                    )
                ],
            ),
        )
    return m.MessageHeader(session_id=SID, time_stamp=1761652391, signature=sig)


def entries(n: int, three_phase: bool = False) -> list[m.PowerScheduleEntry]:
    return [
        m.PowerScheduleEntry(
            duration=60 + i,
            power=rn(i % 30000 - 15000, -1),
            power_l2=rn(i) if three_phase else None,
            power_l3=rn(-i) if three_phase else None,
        )
        for i in range(n)
    ]


def handmade() -> list[ExiModel]:
    dyn_req = m.BPT_Dynamic_DC_CLReqControlMode(
        departure_time=7200,
        ev_target_energy_request=rn(40, 3),
        ev_maximum_energy_request=rn(6000, 1),
        ev_minimum_energy_request=rn(-20000),
        ev_maximum_charge_power=rn(300, 3),
        ev_minimum_charge_power=rn(100),
        ev_maximum_charge_current=rn(300),
        ev_maximum_voltage=rn(1000),
        ev_minimum_voltage=rn(10),
        ev_maximum_discharge_power=rn(-300, 3),
        ev_minimum_discharge_power=rn(-100),
        ev_maximum_discharge_current=rn(-300),
        ev_maximum_v2_x_energy_request=rn(5000),
        ev_minimum_v2_x_energy_request=rn(0),
    )
    out: list[ExiModel] = [
        m.DC_ChargeLoopReq(
            header=hdr(),
            meter_info_requested=True,
            ev_present_voltage=rn(4000, -1),
            bpt_dynamic_dc_cl_req_control_mode=dyn_req,
        ),
        m.DC_ChargeLoopReq(
            header=hdr(),
            meter_info_requested=False,
            ev_present_voltage=rn(400),
            bpt_scheduled_dc_cl_req_control_mode=m.BPT_Scheduled_DC_CLReqControlMode(
                ev_target_current=rn(100),
                ev_target_voltage=rn(400),
                ev_maximum_discharge_power=rn(-50, 3),
            ),
        ),
        m.DC_ChargeLoopRes(
            header=hdr(),
            response_code="OK",
            evse_present_current=rn(-1234, -1),
            evse_present_voltage=rn(4000, -1),
            evse_power_limit_achieved=False,
            evse_current_limit_achieved=True,
            evse_voltage_limit_achieved=False,
            evse_status=m.EVSEStatus(notification_max_delay=60, evse_notification="Pause"),
            meter_info=m.MeterInfo(
                meter_id="M1",
                charged_energy_reading_wh=2**40,
                bpt_discharged_energy_reading_wh=5,
                meter_signature=bytes(64),
                meter_status=-3,
                meter_timestamp=2**63,
            ),
            bpt_dynamic_dc_cl_res_control_mode=m.BPT_Dynamic_DC_CLResControlMode(
                departure_time=1,
                minimum_soc=0,
                target_soc=100,
                ack_max_delay=65535,
                evse_maximum_charge_power=rn(150, 3),
                evse_minimum_charge_power=rn(0),
                evse_maximum_charge_current=rn(300),
                evse_maximum_voltage=rn(1000),
                evse_maximum_discharge_power=rn(-150, 3),
                evse_minimum_discharge_power=rn(0),
                evse_maximum_discharge_current=rn(-300),
                evse_minimum_voltage=rn(200),
            ),
        ),
        m.DC_ChargeLoopRes(
            header=hdr(),
            response_code="FAILED_WrongChargeParameter",
            evse_present_current=rn(1),
            evse_present_voltage=rn(2),
            evse_power_limit_achieved=True,
            evse_current_limit_achieved=True,
            evse_voltage_limit_achieved=True,
            bpt_scheduled_dc_cl_res_control_mode=m.BPT_Scheduled_DC_CLResControlMode(),
        ),
        m.AC_ChargeLoopRes(
            header=hdr(),
            response_code="OK",
            bpt_dynamic_ac_cl_res_control_mode=m.BPT_Dynamic_AC_CLResControlMode(
                evse_target_active_power=rn(-7, 3)
            ),
        ),
        m.PowerDeliveryReq(
            header=hdr(),
            ev_processing="Finished",
            charge_progress="Start",
            ev_power_profile=m.EVPowerProfile(
                time_anchor=0,
                dynamic_evppt_control_mode=m.Dynamic_EVPPTControlMode(),
                ev_power_profile_entries=m.EVPowerProfileEntryList(
                    ev_power_profile_entry=entries(2048)
                ),
            ),
            bpt_channel_selection="Discharge",
        ),
        m.PowerDeliveryReq(
            header=hdr(),
            ev_processing="Ongoing",
            charge_progress="Start",
            ev_power_profile=m.EVPowerProfile(
                time_anchor=5,
                scheduled_evppt_control_mode=m.Scheduled_EVPPTControlMode(
                    selected_schedule_tuple_id=3
                ),
                ev_power_profile_entries=m.EVPowerProfileEntryList(
                    ev_power_profile_entry=entries(2047)
                ),
            ),
        ),
        m.ScheduleExchangeRes(
            header=hdr(),
            response_code="OK",
            evse_processing="Finished",
            scheduled_se_res_control_mode=m.Scheduled_SEResControlMode(
                schedule_tuple=[
                    m.ScheduleTuple(
                        schedule_tuple_id=i + 1,
                        charging_schedule=m.ChargingSchedule(
                            power_schedule=m.PowerSchedule(
                                time_anchor=1,
                                power_schedule_entries=m.PowerScheduleEntryList(
                                    power_schedule_entry=entries(1024 - i, three_phase=i == 1)
                                ),
                            )
                        ),
                        discharging_schedule=m.ChargingSchedule(
                            power_schedule=m.PowerSchedule(
                                time_anchor=2,
                                power_schedule_entries=m.PowerScheduleEntryList(
                                    power_schedule_entry=entries(10)
                                ),
                            ),
                            price_level_schedule=m.PriceLevelSchedule(
                                id="pls1",
                                time_anchor=0,
                                price_schedule_id=1,
                                number_of_price_levels=4,
                                price_level_schedule_entries=m.PriceLevelScheduleEntryList(
                                    price_level_schedule_entry=[
                                        m.PriceLevelScheduleEntry(duration=k, price_level=k % 4)
                                        for k in range(1024)
                                    ]
                                ),
                            ),
                        ),
                    )
                    for i in range(3)
                ]
            ),
        ),
        m.ScheduleExchangeReq(
            header=hdr(signed=True),
            maximum_supporting_points=1024,
            dynamic_se_req_control_mode=m.Dynamic_SEReqControlMode(
                departure_time=7200,
                ev_target_energy_request=rn(1),
                ev_maximum_energy_request=rn(2),
                ev_minimum_energy_request=rn(-3),
            ),
        ),
        m.ServiceDetailRes(
            header=hdr(),
            response_code="OK",
            service_id=6,
            service_parameter_list=m.ServiceParameterList(
                parameter_set=[
                    m.ParameterSet(
                        parameter_set_id=s,
                        parameter=[m.Parameter(name=f"P{k % 5}", int_value=k) for k in range(32)],
                    )
                    for s in range(32)
                ]
            ),
        ),
        sap.SupportedAppProtocolReq(
            app_protocol=[
                sap.AppProtocol(
                    protocol_namespace="urn:iso:std:iso:15118:-20:DC",
                    version_number_major=1,
                    version_number_minor=0,
                    schema_id=k,
                    priority=k + 1,
                )
                for k in range(20)
            ]
        ),
        sap.SupportedAppProtocolRes(response_code="Failed_NoNegotiation"),
    ]
    return out


def _variants(data: st.DataObject, cls: type[ExiModel], count: int) -> list[ExiModel]:
    """``count`` random instances plus one per alternative of every top-level choice."""
    out = [data.draw(model_strategy(cls)) for _ in range(count)]
    specs = {f.name: f for f in cls.exi_fields}
    for names, _lo, _hi in cls.exi_choices:
        for name in names:
            base = data.draw(model_strategy(cls))
            info = specs[name]
            value = data.draw(field_strategy(info, 3))
            upd: dict[str, Any] = dict.fromkeys(names)
            upd[name] = value if value != [] else None
            if upd[name] is None:
                continue
            out.append(cls(**{**fields_of(base), **upd}).validate())
    return out


def check(messages: list[ExiModel]) -> None:
    items = []
    for msg in messages:
        items.append((exi.payload_type_of(msg), exi.encode(msg)))
    results = run_oracle(items)
    problems = []
    for msg, (pt, data), res in zip(messages, items, results, strict=True):
        name = type(msg).__name__
        if exi.decode(data, pt) != msg:
            problems.append(f"{name}: our decode differs")
        if "error" in res:
            problems.append(f"{name}: oracle error {res['error'][:300]} for {data.hex()}")
            continue
        if res["reencoded"] != data.hex():
            problems.append(f"{name}: bytes differ\n ours {data.hex()}\n java {res['reencoded']}")
        ours = {exi.element_name(msg, pt): lexical(msg)}
        if not lexical_equal(ours, res["xml_tree"]):
            problems.append(f"{name}: content differs\n ours {ours}\n java {res['xml_tree']}")
    assert not problems, "\n".join(problems[:20])


def collect_generated(per_class: int = 2) -> list[ExiModel]:
    """Hypothesis-drawn messages of every global element (all choice alternatives)."""
    collected: list[ExiModel] = []
    for cls in all_message_classes():
        _collector(cls, collected, per_class)()
    return collected


def _collector(cls: type[ExiModel], collected: list[ExiModel], per_class: int) -> Any:
    @settings(
        max_examples=1,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        collected.extend(_variants(data, cls, per_class))

    return collect


def test_against_exificient() -> None:
    # EXI_ORACLE_EXAMPLES scales the hypothesis part (default 2 per global element)
    check(handmade() + collect_generated(int(os.environ.get("EXI_ORACLE_EXAMPLES", "2"))))
