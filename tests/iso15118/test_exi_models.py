"""Message models, JSON conversion, RationalNumber <-> Decimal, CLI helpers, encode errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chargepoint.errors import LocalProtocolError, RemoteProtocolError
from chargepoint.iso15118 import exi
from chargepoint.iso15118.exi import ExiDecodeError, ExiEncodeError, _rt
from chargepoint.iso15118.exi.cli import decode_command, encode_command
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m

HDR = m.MessageHeader(SessionID=bytes.fromhex("CCEC07A64440C546"), TimeStamp=1761652391)


def rn(v: int, e: int = 0) -> m.RationalNumber:
    return m.RationalNumber(Exponent=e, Value=v)


def dc_loop_res() -> m.DC_ChargeLoopRes:
    return m.DC_ChargeLoopRes(
        Header=HDR,
        ResponseCode=m.ResponseCode.OK,
        EVSEPresentCurrent=rn(-1234, -1),
        EVSEPresentVoltage=rn(4000, -1),
        EVSEPowerLimitAchieved=False,
        EVSECurrentLimitAchieved=False,
        EVSEVoltageLimitAchieved=True,
        Dynamic_DC_CLResControlMode=m.Dynamic_DC_CLResControlMode(
            EVSEMaximumChargePower=rn(150, 3),
            EVSEMinimumChargePower=rn(0),
            EVSEMaximumChargeCurrent=rn(300),
            EVSEMaximumVoltage=rn(1000),
        ),
    )


def test_field_names_and_aliases() -> None:
    res = dc_loop_res()
    assert res.evse_present_current.value == -1234
    assert "EVSEPresentCurrent" in res.model_dump(by_alias=True)
    fields = list(m.DC_ChargeLoopRes.model_fields)
    # XSD order: base type particles first, then the extension
    assert fields[:5] == ["header", "response_code", "evse_status", "meter_info", "receipt"]
    # snake-case names are accepted as well
    assert (
        m.EVSEStatus(notification_max_delay=1, evse_notification="Pause").evse_notification
        is m.EvseNotification.Pause
    )


def test_facets_are_enforced() -> None:
    with pytest.raises(ValidationError):
        m.DisplayParameters(PresentSOC=101)
    with pytest.raises(ValidationError):
        m.MessageHeader(SessionID=b"\x00" * 7, TimeStamp=1)
    with pytest.raises(ValidationError):
        m.ServiceIDList(ServiceID=list(range(17)))
    with pytest.raises(ValidationError):
        m.SessionSetupReq(Header=HDR, EVCCID="x" * 256)
    with pytest.raises(ValidationError):
        sap.AppProtocol(
            ProtocolNamespace="x",
            VersionNumberMajor=1,
            VersionNumberMinor=0,
            SchemaID=1,
            Priority=21,
        )


def test_choice_exactly_one() -> None:
    kwargs = {"Header": HDR, "MeterInfoRequested": False, "EVPresentVoltage": rn(1)}
    with pytest.raises(ValidationError):
        m.DC_ChargeLoopReq(**kwargs)
    sched = m.Scheduled_DC_CLReqControlMode(EVTargetCurrent=rn(1), EVTargetVoltage=rn(2))
    dyn = m.Dynamic_DC_CLReqControlMode(
        EVTargetEnergyRequest=rn(1),
        EVMaximumEnergyRequest=rn(1),
        EVMinimumEnergyRequest=rn(1),
        EVMaximumChargePower=rn(1),
        EVMinimumChargePower=rn(1),
        EVMaximumChargeCurrent=rn(1),
        EVMaximumVoltage=rn(1),
        EVMinimumVoltage=rn(1),
    )
    with pytest.raises(ValidationError):
        m.DC_ChargeLoopReq(
            **kwargs, Scheduled_DC_CLReqControlMode=sched, Dynamic_DC_CLReqControlMode=dyn
        )
    ok = m.DC_ChargeLoopReq(**kwargs, Dynamic_DC_CLReqControlMode=dyn)
    assert exi.decode(exi.encode(ok), exi.DC) == ok


@pytest.mark.parametrize(
    ("text", "value", "exponent"),
    [
        ("400", 400, 0),
        ("400.0", 400, 0),
        ("-0.001", -1, -3),
        ("12.345", 12345, -3),
        ("1000000", 10000, 2),
        ("0", 0, 0),
        ("-32768", -32768, 0),
    ],
)
def test_rational_from_decimal(text: str, value: int, exponent: int) -> None:
    r = m.RationalNumber.from_decimal(Decimal(text))
    assert (r.value, r.exponent) == (value, exponent)
    assert r.to_decimal() == Decimal(text)


@pytest.mark.parametrize("text", ["123456789", "1e200", "1e-140", "NaN", "Infinity", "0.123456"])
def test_rational_not_representable(text: str) -> None:
    with pytest.raises(ValueError, match=r"representable|finite"):
        m.RationalNumber.from_decimal(Decimal(text))


@given(v=st.integers(-32768, 32767), e=st.integers(-128, 127))
def test_rational_decimal_lossless(v: int, e: int) -> None:
    r = m.RationalNumber(Exponent=e, Value=v)
    d = r.to_decimal()
    back = m.RationalNumber.from_decimal(d)
    assert back.to_decimal() == d


def test_json_conventions() -> None:
    res = dc_loop_res()
    j = exi.to_json(res)
    body = j["DC_ChargeLoopRes"]
    assert body["Header"]["SessionID"] == "ccec07a64440c546"
    assert body["EVSEPresentCurrent"] == {"Exponent": -1, "Value": -1234}
    assert body["EVSEVoltageLimitAchieved"] is True
    assert body["ResponseCode"] == "OK"
    assert "EVSEStatus" not in body
    json.dumps(j)
    assert exi.from_json(j, exi.DC) == res
    # upper-case hex and 0/1 booleans (dissector conventions) are accepted too
    body["Header"]["SessionID"] = "CCEC07A64440C546"
    body["EVSEVoltageLimitAchieved"] = 1
    assert exi.from_json(j, exi.DC) == res


def test_from_json_errors() -> None:
    with pytest.raises(ExiEncodeError):
        exi.from_json({"DC_ChargeLoopRes": {}}, exi.DC)
    with pytest.raises(ExiEncodeError):
        exi.from_json({"Nope": {}}, exi.DC)
    with pytest.raises(ExiEncodeError):
        exi.from_json({"DC_ChargeLoopRes": {}}, exi.AC)


def test_empty_element_and_header_only_messages() -> None:
    msg = m.AuthorizationSetupRes(
        Header=HDR,
        ResponseCode="OK",
        AuthorizationServices=["EIM", "PnC"],
        CertificateInstallationService=True,
        EIM_ASResAuthorizationMode=m.EIM_ASResAuthorizationMode(),
    )
    data = exi.encode(msg)
    assert exi.decode(data, exi.COMMON) == msg
    assert exi.to_json(msg)["AuthorizationSetupRes"]["EIM_ASResAuthorizationMode"] == {}


def test_empty_string_round_trip() -> None:
    msg = m.SessionSetupRes(Header=HDR, ResponseCode="OK_NewSessionEstablished", EVSEID="")
    assert exi.decode(exi.encode(msg), exi.COMMON) == msg


def test_encode_errors_are_local_protocol_errors() -> None:
    res = dc_loop_res()
    res.evse_present_current = m.RationalNumber.model_construct(exponent=0, value=40000)
    with pytest.raises(ExiEncodeError) as info:
        exi.encode(res)
    assert isinstance(info.value, LocalProtocolError)
    with pytest.raises(ExiEncodeError):
        exi.encode(m.RationalNumber(Exponent=0, Value=1))  # not a global element
    bad = m.DisplayParameters.model_construct(present_soc=120)
    req = m.DC_ChargeLoopReq.model_construct(
        header=HDR,
        display_parameters=bad,
        meter_info_requested=False,
        ev_present_voltage=rn(1),
        scheduled_dc_cl_req_control_mode=m.Scheduled_DC_CLReqControlMode(
            EVTargetCurrent=rn(1), EVTargetVoltage=rn(2)
        ),
    )
    with pytest.raises(ExiEncodeError):
        exi.encode(req)


def test_decode_error_is_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        exi.decode(b"\x80", exi.DC)


def test_decoded_models_are_complete_pydantic_models() -> None:
    res = dc_loop_res()
    back = exi.decode(exi.encode(res), exi.DC)
    assert isinstance(back, m.DC_ChargeLoopRes)
    assert back == res
    assert back.model_fields_set == res.model_fields_set
    assert back.model_dump() == res.model_dump()
    assert repr(back) == repr(res)
    back.evse_present_voltage = rn(1)  # still mutable like any model
    assert back != res


def test_cli_decode_encode() -> None:
    data = exi.encode(dc_loop_res())
    out = json.loads(decode_command(data.hex(), None))
    assert out["payload_type"] == "0x8004"
    assert out["namespace"] == "urn:iso:std:iso:15118:-20:DC"
    assert "DC_ChargeLoopRes" in out["message"]
    assert encode_command(json.dumps(out)) == data.hex()
    assert encode_command(json.dumps(out["message"])) == data.hex()
    # with a V2GTP header and an explicit payload type
    framed = bytes.fromhex("01fe8004") + len(data).to_bytes(4, "big") + data
    assert json.loads(decode_command(framed.hex(), None))["payload_type"] == "0x8004"
    assert json.loads(decode_command(data.hex(), 0x8004))["message"] == out["message"]
    sap_res = exi.encode(
        sap.SupportedAppProtocolRes(ResponseCode="OK_SuccessfulNegotiation", SchemaID=1)
    )
    assert json.loads(decode_command(sap_res.hex(), None))["payload_type"] == "0x8001"


def test_cli_errors() -> None:
    with pytest.raises(ExiDecodeError):
        decode_command("zz", None)
    with pytest.raises(ExiDecodeError):
        decode_command("81", None)
    with pytest.raises(ExiEncodeError):
        encode_command("{")
    with pytest.raises(ExiEncodeError):
        encode_command('{"Unknown": {}}')


def test_w3c_default_string_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """With unbounded value partitions (W3C default) repeated strings become table hits."""
    msg = m.ServiceDetailRes(
        Header=HDR,
        ResponseCode="OK",
        ServiceID=2,
        ServiceParameterList=m.ServiceParameterList(
            ParameterSet=[
                m.ParameterSet(
                    ParameterSetID=k,
                    Parameter=[
                        m.Parameter(Name="Connector", intValue=1),
                        m.Parameter(Name="ControlMode", finiteString="Connector"),
                    ],
                )
                for k in range(3)
            ]
        ),
    )
    iso = exi.encode(msg)
    monkeypatch.setattr(_rt, "VALUE_PARTITION_CAPACITY", None)
    w3c = exi.encode(msg)
    assert len(w3c) < len(iso)
    assert exi.decode(w3c, exi.COMMON) == msg
    monkeypatch.undo()
    assert exi.decode(iso, exi.COMMON) == msg
