"""Message models, JSON conversion, RationalNumber <-> Decimal, CLI helpers, encode errors."""

from __future__ import annotations

import copy
import json
import pickle
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargepoint.errors import LocalProtocolError, RemoteProtocolError
from chargepoint.iso15118 import exi
from chargepoint.iso15118.exi import ExiDecodeError, ExiEncodeError, _rt
from chargepoint.iso15118.exi.cli import decode_command, encode_command
from chargepoint.iso15118.messages import app_protocol as sap
from chargepoint.iso15118.messages import iso20 as m
from chargepoint.iso15118.messages import xmldsig as ds
from chargepoint.iso15118.messages._base import ExiModel, FieldSpec
from tests.iso15118.exi_support import all_message_classes, fields_of, model_strategy

HDR = m.MessageHeader(session_id=bytes.fromhex("CCEC07A64440C546"), time_stamp=1761652391)


def rn(v: int, e: int = 0) -> m.RationalNumber:
    return m.RationalNumber(exponent=e, value=v)


def dc_loop_res() -> m.DC_ChargeLoopRes:
    return m.DC_ChargeLoopRes(
        header=HDR,
        response_code=m.ResponseCode.OK,
        evse_present_current=rn(-1234, -1),
        evse_present_voltage=rn(4000, -1),
        evse_power_limit_achieved=False,
        evse_current_limit_achieved=False,
        evse_voltage_limit_achieved=True,
        dynamic_dc_cl_res_control_mode=m.Dynamic_DC_CLResControlMode(
            evse_maximum_charge_power=rn(150, 3),
            evse_minimum_charge_power=rn(0),
            evse_maximum_charge_current=rn(300),
            evse_maximum_voltage=rn(1000),
        ),
    )


def test_field_names_and_aliases() -> None:
    res = dc_loop_res()
    assert res.evse_present_current.value == -1234
    assert "EVSEPresentCurrent" in exi.to_json(res)["DC_ChargeLoopRes"]
    fields = [f.name for f in m.DC_ChargeLoopRes.exi_fields]
    # XSD order: base type particles first, then the extension
    assert fields[:5] == ["header", "response_code", "evse_status", "meter_info", "receipt"]
    # snake-case names are accepted as well
    assert (
        m.EVSEStatus(
            notification_max_delay=1, evse_notification=m.EvseNotification.Pause
        ).evse_notification
        is m.EvseNotification.Pause
    )


def test_facets_are_enforced() -> None:
    with pytest.raises(ExiEncodeError):
        m.DisplayParameters(present_soc=101).validate()
    with pytest.raises(ExiEncodeError):
        m.MessageHeader(session_id=b"\x00" * 7, time_stamp=1).validate()
    with pytest.raises(ExiEncodeError):
        m.ServiceIDList(service_id=list(range(17))).validate()
    with pytest.raises(ExiEncodeError):
        m.SessionSetupReq(header=HDR, evccid="x" * 256).validate()
    with pytest.raises(ExiEncodeError):
        sap.AppProtocol(
            protocol_namespace="x",
            version_number_major=1,
            version_number_minor=0,
            schema_id=1,
            priority=21,
        ).validate()


def test_choice_exactly_one() -> None:
    kwargs = {"header": HDR, "meter_info_requested": False, "ev_present_voltage": rn(1)}
    with pytest.raises(ExiEncodeError):
        m.DC_ChargeLoopReq(**kwargs).validate()
    sched = m.Scheduled_DC_CLReqControlMode(ev_target_current=rn(1), ev_target_voltage=rn(2))
    dyn = m.Dynamic_DC_CLReqControlMode(
        ev_target_energy_request=rn(1),
        ev_maximum_energy_request=rn(1),
        ev_minimum_energy_request=rn(1),
        ev_maximum_charge_power=rn(1),
        ev_minimum_charge_power=rn(1),
        ev_maximum_charge_current=rn(1),
        ev_maximum_voltage=rn(1),
        ev_minimum_voltage=rn(1),
    )
    both = m.DC_ChargeLoopReq(
        **kwargs, scheduled_dc_cl_req_control_mode=sched, dynamic_dc_cl_req_control_mode=dyn
    )
    with pytest.raises(ExiEncodeError):
        both.validate()
    # encode enforces the choice too (construction does not validate)
    with pytest.raises(ExiEncodeError, match=r"xs:choice .*: 2 item"):
        exi.encode(both)
    with pytest.raises(ExiEncodeError, match=r"xs:choice .*: 0 item"):
        exi.encode(m.DC_ChargeLoopReq(**kwargs))
    ok = m.DC_ChargeLoopReq(**kwargs, dynamic_dc_cl_req_control_mode=dyn)
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
    r = m.RationalNumber(exponent=e, value=v)
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
        header=HDR,
        response_code="OK",
        authorization_services=["EIM", "PnC"],
        certificate_installation_service=True,
        eim_as_res_authorization_mode=m.EIM_ASResAuthorizationMode(),
    )
    data = exi.encode(msg)
    assert exi.decode(data, exi.COMMON) == msg
    assert exi.to_json(msg)["AuthorizationSetupRes"]["EIM_ASResAuthorizationMode"] == {}


def test_empty_string_round_trip() -> None:
    msg = m.SessionSetupRes(header=HDR, response_code="OK_NewSessionEstablished", evseid="")
    assert exi.decode(exi.encode(msg), exi.COMMON) == msg


def test_encode_errors_are_local_protocol_errors() -> None:
    res = dc_loop_res()
    res.evse_present_current = m.RationalNumber(exponent=0, value=40000)
    with pytest.raises(ExiEncodeError) as info:
        exi.encode(res)
    assert isinstance(info.value, LocalProtocolError)
    with pytest.raises(ExiEncodeError):
        exi.encode(m.RationalNumber(exponent=0, value=1))  # not a global element
    bad = m.DisplayParameters(present_soc=120)
    req = m.DC_ChargeLoopReq(
        header=HDR,
        display_parameters=bad,
        meter_info_requested=False,
        ev_present_voltage=rn(1),
        scheduled_dc_cl_req_control_mode=m.Scheduled_DC_CLReqControlMode(
            ev_target_current=rn(1), ev_target_voltage=rn(2)
        ),
    )
    with pytest.raises(ExiEncodeError):
        exi.encode(req)


def test_decode_error_is_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        exi.decode(b"\x80", exi.DC)


def test_decoded_models_are_complete_models() -> None:
    res = dc_loop_res()
    back = exi.decode(exi.encode(res), exi.DC)
    assert isinstance(back, m.DC_ChargeLoopRes)
    assert back == res
    assert exi.to_json(back) == exi.to_json(res)
    assert fields_of(back) == fields_of(res)
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
        sap.SupportedAppProtocolRes(response_code="OK_SuccessfulNegotiation", schema_id=1)
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
        header=HDR,
        response_code="OK",
        service_id=2,
        service_parameter_list=m.ServiceParameterList(
            parameter_set=[
                m.ParameterSet(
                    parameter_set_id=k,
                    parameter=[
                        m.Parameter(name="Connector", int_value=1),
                        m.Parameter(name="ControlMode", finite_string="Connector"),
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


def bpt_dynamic_res_mode() -> m.BPT_Dynamic_DC_CLResControlMode:
    return m.BPT_Dynamic_DC_CLResControlMode(
        evse_maximum_charge_power=rn(150, 3),
        evse_minimum_charge_power=rn(0),
        evse_maximum_charge_current=rn(300),
        evse_maximum_voltage=rn(1000),
        evse_maximum_discharge_power=rn(-150, 3),
        evse_minimum_discharge_power=rn(0),
        evse_maximum_discharge_current=rn(-300),
        evse_minimum_voltage=rn(200),
    )


BROKEN = [
    # (field, bad value, what the error says: field path and reason)
    ("header", None, "DC_ChargeLoopRes.header: field required"),
    ("response_code", "NOPE", "DC_ChargeLoopRes.response_code: 'NOPE' is not a ResponseCode"),
    ("evse_power_limit_achieved", "yes", "evse_power_limit_achieved: expected a boolean"),
    ("evse_present_current", rn(40000), "evse_present_current.value: 40000 is outside"),
    # a look-alike (the BPT variant has every field of the plain one) is not encoded as it
    (
        "dynamic_dc_cl_res_control_mode",
        bpt_dynamic_res_mode(),
        "expected Dynamic_DC_CLResControlMode, got BPT_Dynamic_DC_CLResControlMode",
    ),
    ("scheduled_dc_cl_res_control_mode", m.Scheduled_DC_CLResControlMode(), "xs:choice"),
    (
        "header",
        m.MessageHeader(session_id=b"\x00" * 7, time_stamp=1),
        "DC_ChargeLoopRes.header.session_id: length 7",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), BROKEN)
def test_construction_does_not_validate_encode_and_validate_do(
    field: str, value: object, message: str
) -> None:
    res = dc_loop_res()
    setattr(res, field, value)  # construction and assignment store anything
    assert getattr(res, field) is value
    with pytest.raises(ExiEncodeError) as info:
        exi.encode(res)
    assert message in str(info.value)
    with pytest.raises(ExiEncodeError) as info:
        res.validate()
    assert message in str(info.value)
    assert dc_loop_res().validate() == dc_loop_res()


def test_encode_rejects_malformed_lists() -> None:
    for ids in ([], (1, 2), "ab"):
        ids_list = m.ServiceIDList(service_id=ids)
        msg = m.ServiceDiscoveryReq(header=HDR, supported_service_i_ds=ids_list)
        with pytest.raises(ExiEncodeError, match=r"service_i_ds\.service_id"):
            exi.encode(msg)
        with pytest.raises(ExiEncodeError, match=r"service_i_ds\.service_id"):
            msg.validate()
    sig = m.SessionSetupReq(header=HDR, evccid="")
    sig.evccid = 0  # falsy, but not the empty string
    with pytest.raises(ExiEncodeError):
        exi.encode(sig)


def test_from_json_names_the_offending_field() -> None:
    good = exi.to_json(dc_loop_res())
    cases = [
        (("Header", "SessionID"), "00", "DC_ChargeLoopRes.Header.SessionID: length 1"),
        (("Header", "SessionID"), "zz", "DC_ChargeLoopRes.Header.SessionID: expected a hex"),
        (("Header", "Nope"), 1, "DC_ChargeLoopRes.Header.Nope: unknown field"),
        (("ResponseCode",), "NOPE", "DC_ChargeLoopRes.ResponseCode: 'NOPE'"),
        (("EVSEPresentCurrent", "Value"), 32768, "EVSEPresentCurrent.Value: 32768 is outside"),
        (("EVSEPowerLimitAchieved",), 2, "EVSEPowerLimitAchieved: expected a boolean"),
        (("Scheduled_DC_CLResControlMode",), {}, "DC_ChargeLoopRes: xs:choice"),
    ]
    for keys, value, fragment in cases:
        doc = json.loads(json.dumps(good))
        node = doc["DC_ChargeLoopRes"]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        with pytest.raises(ExiEncodeError) as info:
            exi.from_json(doc, exi.DC)
        assert fragment in str(info.value), (fragment, str(info.value))
    # snake_case keys are accepted as well, like the XSD names
    body = good["DC_ChargeLoopRes"]
    body["response_code"] = body.pop("ResponseCode")
    assert exi.from_json(good, exi.DC) == dc_loop_res()


def test_field_metadata_is_data() -> None:
    session_id, time_stamp, signature = m.MessageHeader.exi_fields
    assert session_id == FieldSpec(
        "session_id", "SessionID", "bytes", bytes, min_length=8, max_length=8
    )
    assert (time_stamp.kind, time_stamp.ge, time_stamp.le) == ("int", 0, 2**64 - 1)
    assert (signature.py_type, signature.optional) == (ds.Signature, True)
    ids = m.ServiceIDList.exi_fields[0]
    assert (ids.is_list, ids.min_items, ids.max_items) == (True, 1, 16)
    assert m.AuthorizationReq.exi_choices == (
        (("eim_a_req_authorization_mode", "pn_c_a_req_authorization_mode"), 1, 1),
    )


def test_models_are_slotted_and_readable() -> None:
    for mod in (m, ds, sap):
        for cls in vars(mod).values():
            if isinstance(cls, type) and issubclass(cls, ExiModel) and cls is not ExiModel:
                obj = cls.__new__(cls)
                assert not hasattr(obj, "__dict__"), cls  # no per-instance dict anywhere
                assert cls.__slots__ == tuple(f.name for f in cls.exi_fields)
    res = dc_loop_res()
    text = repr(res)
    assert text.startswith("DC_ChargeLoopRes(header=MessageHeader(session_id=b'")
    assert "evse_present_current=RationalNumber(exponent=-1, value=-1234)" in text
    assert "evse_status" not in text  # None fields are left out
    with pytest.raises(TypeError):
        hash(res)
    assert copy.deepcopy(res) == res
    assert pickle.loads(pickle.dumps(res)) == res
    with pytest.raises(TypeError):
        m.MessageHeader(SessionID=b"\x00" * 8, TimeStamp=1)  # XSD names: from_json only


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_json_round_trip_of_every_global_element(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(all_message_classes()))
    msg = data.draw(model_strategy(cls, list_cap=2))
    pt = exi.payload_type_of(msg)
    text = json.dumps(exi.to_json(msg))
    assert exi.from_json(json.loads(text), pt) == msg
