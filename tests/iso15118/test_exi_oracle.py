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
from pydantic import BaseModel

from chargepoint.iso15118 import exi
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.messages import xmldsig as ds
from tests.iso15118.exi_support import (
    _strategy,
    all_message_classes,
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
    return m.RationalNumber(Exponent=e, Value=v)


def hdr(signed: bool = False) -> m.MessageHeader:
    sig = None
    if signed:
        sig = ds.Signature(
            Id="sig1",
            SignedInfo=ds.SignedInfo(
                CanonicalizationMethod=ds.CanonicalizationMethod(
                    Algorithm="http://www.w3.org/TR/canonical-exi/"
                ),
                SignatureMethod=ds.SignatureMethod(
                    Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
                ),
                Reference=[
                    ds.Reference(
                        URI="#id1",
                        Transforms=ds.Transforms(
                            Transform=[
                                ds.Transform(Algorithm="http://www.w3.org/TR/canonical-exi/")
                            ]
                        ),
                        DigestMethod=ds.DigestMethod(
                            Algorithm="http://www.w3.org/2001/04/xmlenc#sha512"
                        ),
                        DigestValue=bytes(range(64)),
                    )
                ],
            ),
            SignatureValue=ds.SignatureValue(value=bytes(range(132))),
            KeyInfo=ds.KeyInfo(
                KeyName=["key-1"],
                X509Data=[
                    ds.X509Data(
                        X509IssuerSerial=[
                            ds.X509IssuerSerial(X509IssuerName="CN=Test", X509SerialNumber=2**70)
                        ]
                    )
                ],
            ),
        )
    return m.MessageHeader(SessionID=SID, TimeStamp=1761652391, Signature=sig)


def entries(n: int, three_phase: bool = False) -> list[m.PowerScheduleEntry]:
    return [
        m.PowerScheduleEntry(
            Duration=60 + i,
            Power=rn(i % 30000 - 15000, -1),
            Power_L2=rn(i) if three_phase else None,
            Power_L3=rn(-i) if three_phase else None,
        )
        for i in range(n)
    ]


def handmade() -> list[BaseModel]:
    dyn_req = m.BPT_Dynamic_DC_CLReqControlMode(
        DepartureTime=7200,
        EVTargetEnergyRequest=rn(40, 3),
        EVMaximumEnergyRequest=rn(6000, 1),
        EVMinimumEnergyRequest=rn(-20000),
        EVMaximumChargePower=rn(300, 3),
        EVMinimumChargePower=rn(100),
        EVMaximumChargeCurrent=rn(300),
        EVMaximumVoltage=rn(1000),
        EVMinimumVoltage=rn(10),
        EVMaximumDischargePower=rn(-300, 3),
        EVMinimumDischargePower=rn(-100),
        EVMaximumDischargeCurrent=rn(-300),
        EVMaximumV2XEnergyRequest=rn(5000),
        EVMinimumV2XEnergyRequest=rn(0),
    )
    out: list[BaseModel] = [
        m.DC_ChargeLoopReq(
            Header=hdr(),
            MeterInfoRequested=True,
            EVPresentVoltage=rn(4000, -1),
            BPT_Dynamic_DC_CLReqControlMode=dyn_req,
        ),
        m.DC_ChargeLoopReq(
            Header=hdr(),
            MeterInfoRequested=False,
            EVPresentVoltage=rn(400),
            BPT_Scheduled_DC_CLReqControlMode=m.BPT_Scheduled_DC_CLReqControlMode(
                EVTargetCurrent=rn(100), EVTargetVoltage=rn(400), EVMaximumDischargePower=rn(-50, 3)
            ),
        ),
        m.DC_ChargeLoopRes(
            Header=hdr(),
            ResponseCode="OK",
            EVSEPresentCurrent=rn(-1234, -1),
            EVSEPresentVoltage=rn(4000, -1),
            EVSEPowerLimitAchieved=False,
            EVSECurrentLimitAchieved=True,
            EVSEVoltageLimitAchieved=False,
            EVSEStatus=m.EVSEStatus(NotificationMaxDelay=60, EVSENotification="Pause"),
            MeterInfo=m.MeterInfo(
                MeterID="M1",
                ChargedEnergyReadingWh=2**40,
                BPT_DischargedEnergyReadingWh=5,
                MeterSignature=bytes(64),
                MeterStatus=-3,
                MeterTimestamp=2**63,
            ),
            BPT_Dynamic_DC_CLResControlMode=m.BPT_Dynamic_DC_CLResControlMode(
                DepartureTime=1,
                MinimumSOC=0,
                TargetSOC=100,
                AckMaxDelay=65535,
                EVSEMaximumChargePower=rn(150, 3),
                EVSEMinimumChargePower=rn(0),
                EVSEMaximumChargeCurrent=rn(300),
                EVSEMaximumVoltage=rn(1000),
                EVSEMaximumDischargePower=rn(-150, 3),
                EVSEMinimumDischargePower=rn(0),
                EVSEMaximumDischargeCurrent=rn(-300),
                EVSEMinimumVoltage=rn(200),
            ),
        ),
        m.DC_ChargeLoopRes(
            Header=hdr(),
            ResponseCode="FAILED_WrongChargeParameter",
            EVSEPresentCurrent=rn(1),
            EVSEPresentVoltage=rn(2),
            EVSEPowerLimitAchieved=True,
            EVSECurrentLimitAchieved=True,
            EVSEVoltageLimitAchieved=True,
            BPT_Scheduled_DC_CLResControlMode=m.BPT_Scheduled_DC_CLResControlMode(),
        ),
        m.AC_ChargeLoopRes(
            Header=hdr(),
            ResponseCode="OK",
            BPT_Dynamic_AC_CLResControlMode=m.BPT_Dynamic_AC_CLResControlMode(
                EVSETargetActivePower=rn(-7, 3)
            ),
        ),
        m.PowerDeliveryReq(
            Header=hdr(),
            EVProcessing="Finished",
            ChargeProgress="Start",
            EVPowerProfile=m.EVPowerProfile(
                TimeAnchor=0,
                Dynamic_EVPPTControlMode=m.Dynamic_EVPPTControlMode(),
                EVPowerProfileEntries=m.EVPowerProfileEntryList(EVPowerProfileEntry=entries(2048)),
            ),
            BPT_ChannelSelection="Discharge",
        ),
        m.PowerDeliveryReq(
            Header=hdr(),
            EVProcessing="Ongoing",
            ChargeProgress="Start",
            EVPowerProfile=m.EVPowerProfile(
                TimeAnchor=5,
                Scheduled_EVPPTControlMode=m.Scheduled_EVPPTControlMode(SelectedScheduleTupleID=3),
                EVPowerProfileEntries=m.EVPowerProfileEntryList(EVPowerProfileEntry=entries(2047)),
            ),
        ),
        m.ScheduleExchangeRes(
            Header=hdr(),
            ResponseCode="OK",
            EVSEProcessing="Finished",
            Scheduled_SEResControlMode=m.Scheduled_SEResControlMode(
                ScheduleTuple=[
                    m.ScheduleTuple(
                        ScheduleTupleID=i + 1,
                        ChargingSchedule=m.ChargingSchedule(
                            PowerSchedule=m.PowerSchedule(
                                TimeAnchor=1,
                                PowerScheduleEntries=m.PowerScheduleEntryList(
                                    PowerScheduleEntry=entries(1024 - i, three_phase=i == 1)
                                ),
                            )
                        ),
                        DischargingSchedule=m.ChargingSchedule(
                            PowerSchedule=m.PowerSchedule(
                                TimeAnchor=2,
                                PowerScheduleEntries=m.PowerScheduleEntryList(
                                    PowerScheduleEntry=entries(10)
                                ),
                            ),
                            PriceLevelSchedule=m.PriceLevelSchedule(
                                Id="pls1",
                                TimeAnchor=0,
                                PriceScheduleID=1,
                                NumberOfPriceLevels=4,
                                PriceLevelScheduleEntries=m.PriceLevelScheduleEntryList(
                                    PriceLevelScheduleEntry=[
                                        m.PriceLevelScheduleEntry(Duration=k, PriceLevel=k % 4)
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
            Header=hdr(signed=True),
            MaximumSupportingPoints=1024,
            Dynamic_SEReqControlMode=m.Dynamic_SEReqControlMode(
                DepartureTime=7200,
                EVTargetEnergyRequest=rn(1),
                EVMaximumEnergyRequest=rn(2),
                EVMinimumEnergyRequest=rn(-3),
            ),
        ),
        m.ServiceDetailRes(
            Header=hdr(),
            ResponseCode="OK",
            ServiceID=6,
            ServiceParameterList=m.ServiceParameterList(
                ParameterSet=[
                    m.ParameterSet(
                        ParameterSetID=s,
                        Parameter=[m.Parameter(Name=f"P{k % 5}", intValue=k) for k in range(32)],
                    )
                    for s in range(32)
                ]
            ),
        ),
        sap.SupportedAppProtocolReq(
            AppProtocol=[
                sap.AppProtocol(
                    ProtocolNamespace="urn:iso:std:iso:15118:-20:DC",
                    VersionNumberMajor=1,
                    VersionNumberMinor=0,
                    SchemaID=k,
                    Priority=k + 1,
                )
                for k in range(20)
            ]
        ),
        sap.SupportedAppProtocolRes(ResponseCode="Failed_NoNegotiation"),
    ]
    return out


def _variants(data: st.DataObject, cls: type[BaseModel], count: int) -> list[BaseModel]:
    """``count`` random instances plus one per alternative of every top-level choice."""
    out = [data.draw(model_strategy(cls)) for _ in range(count)]
    for names, _lo, _hi in getattr(cls, "_exi_choices", ()):
        for name in names:
            base = data.draw(model_strategy(cls))
            info = cls.model_fields[name]
            value = data.draw(_strategy(info.annotation, list(info.metadata), 3))
            upd: dict[str, Any] = dict.fromkeys(names)
            upd[name] = value if value != [] else None
            if upd[name] is None:
                continue
            out.append(cls.model_validate({**base.model_dump(exclude_none=True), **upd}))
    return out


def check(messages: list[BaseModel]) -> None:
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


def collect_generated(per_class: int = 2) -> list[BaseModel]:
    """Hypothesis-drawn messages of every global element (all choice alternatives)."""
    collected: list[BaseModel] = []
    for cls in all_message_classes():
        _collector(cls, collected, per_class)()
    return collected


def _collector(cls: type[BaseModel], collected: list[BaseModel], per_class: int) -> Any:
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
