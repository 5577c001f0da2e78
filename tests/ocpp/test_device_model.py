"""Device model: value checks, Get/Set semantics, base reports."""

from __future__ import annotations

import pytest

from chargepoint.errors import LocalProtocolError
from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.device_model import (
    AttributeSpec,
    AttributeType,
    Characteristics,
    ComponentKey,
    DataType,
    DeviceModel,
    GetVariableStatus,
    Mutability,
    ReportBase,
    SetVariableStatus,
    VariableKey,
    VariableSpec,
    check_value,
)


def model(stored: dict[dm.ValueKey, str] | None = None) -> DeviceModel:
    specs = dm.standard_variables(
        identity="CS-001",
        security_profile=1,
        basic_auth_password="0123456789abcdef",
        evse_connectors={1: 2},
    )
    return DeviceModel(specs, stored or {})


@pytest.mark.parametrize(
    ("data_type", "value", "limits", "values", "problem"),
    [
        (DataType.INTEGER, "12", (0, 20), (), None),
        (DataType.INTEGER, "1.5", (None, None), (), "InvalidValue"),
        (DataType.INTEGER, "-1", (0, None), (), "ValueTooLow"),
        (DataType.INTEGER, "21", (0, 20), (), "ValueTooHigh"),
        (DataType.DECIMAL, "1.5", (0, 2), (), None),
        (DataType.DECIMAL, "nan", (None, None), (), "InvalidValue"),
        (DataType.BOOLEAN, "true", (None, None), (), None),
        (DataType.BOOLEAN, "True", (None, None), (), "InvalidValue"),
        (DataType.DATE_TIME, "2026-01-01T00:00:00.000Z", (None, None), (), None),
        (DataType.DATE_TIME, "yesterday", (None, None), (), "InvalidValue"),
        (DataType.STRING, "abc", (2, 3), (), None),
        (DataType.STRING, "abcd", (2, 3), (), "ValueTooLong"),
        (DataType.STRING, "a", (2, 3), (), "ValueTooShort"),
        (DataType.OPTION_LIST, "B", (None, None), ("A", "B"), None),
        (DataType.OPTION_LIST, "A,B", (None, None), ("A", "B"), "InvalidValue"),
        (DataType.MEMBER_LIST, "B,A", (None, None), ("A", "B"), None),
        (DataType.MEMBER_LIST, "A,A", (None, None), ("A", "B"), "InvalidValue"),
        (DataType.SEQUENCE_LIST, "A,C", (None, None), ("A", "B"), "InvalidValue"),
        (DataType.SEQUENCE_LIST, "", (None, None), ("A", "B"), None),
    ],
)
def test_value_checks(
    data_type: DataType,
    value: str,
    limits: tuple[float | None, ...],
    values: tuple[str, ...],
    problem: str | None,
) -> None:
    chars = Characteristics(data_type, None, limits[0], limits[1], values)
    assert check_value(chars, value) == problem


def test_get_answers_each_status() -> None:
    m = model()
    assert m.get(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL).value == "300"
    assert (
        m.get(ComponentKey("Nope"), dm.HEARTBEAT_INTERVAL).status
        is GetVariableStatus.UNKNOWN_COMPONENT
    )
    assert m.get(dm.OCPP_COMM, VariableKey("Nope")).status is GetVariableStatus.UNKNOWN_VARIABLE
    assert (
        m.get(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL, AttributeType.TARGET).status
        is GetVariableStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
    )
    # B06: WriteOnly variables are never read out.
    assert m.get(dm.SECURITY, dm.BASIC_AUTH_PASSWORD) == dm.GetOutcome(GetVariableStatus.REJECTED)


def test_set_answers_each_status_and_says_what_to_persist() -> None:
    m = model()
    ok = m.set(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL, "60")
    assert ok.status is SetVariableStatus.ACCEPTED
    assert ok.persist == ((dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL, AttributeType.ACTUAL), "60")
    assert m.int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL) == 60
    read_only = m.set(dm.SECURITY, dm.IDENTITY, "other")
    assert (read_only.status, read_only.persist) == (SetVariableStatus.REJECTED, None)
    bad = m.set(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL, "0")
    assert (bad.status, bad.reason_code) == (SetVariableStatus.REJECTED, "ValueTooLow")
    assert m.int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL) == 60
    assert m.set(dm.SECURITY, dm.BASIC_AUTH_PASSWORD, "short").status is SetVariableStatus.REJECTED
    assert m.set(dm.SECURITY, dm.BASIC_AUTH_PASSWORD, "x" * 20).status is SetVariableStatus.ACCEPTED
    assert (
        m.set(ComponentKey("Nope"), dm.ENABLED, "true").status
        is SetVariableStatus.UNKNOWN_COMPONENT
    )


def test_reboot_required_variables_keep_the_new_value() -> None:
    chars = Characteristics(DataType.INTEGER)
    spec = VariableSpec(
        ComponentKey("X"),
        VariableKey("Y"),
        chars,
        {AttributeType.ACTUAL: AttributeSpec(Mutability.READ_WRITE, "1")},
        reboot_required=True,
    )
    m = DeviceModel([spec], {})
    assert (
        m.set(ComponentKey("X"), VariableKey("Y"), "2").status is SetVariableStatus.REBOOT_REQUIRED
    )
    assert m.value(ComponentKey("X"), VariableKey("Y")) == "2"


def test_persisted_values_override_defaults_unless_invalid_or_constant() -> None:
    key = (dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL, AttributeType.ACTUAL)
    const = (dm.DEVICE_DATA, dm.ITEMS_PER_MESSAGE_GET_REPORT, AttributeType.ACTUAL)
    assert model({key: "42"}).int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL) == 42
    assert model({key: "-3"}).int_value(dm.OCPP_COMM, dm.HEARTBEAT_INTERVAL) == 300
    assert model({const: "1"}).int_value(dm.DEVICE_DATA, dm.ITEMS_PER_MESSAGE_GET_REPORT) == 20


def test_mandatory_core_components_are_declared() -> None:
    names = {item["component"]["name"] for item in model().report(ReportBase.FULL_INVENTORY)}
    assert {
        "OCPPCommCtrlr",
        "TxCtrlr",
        "DeviceDataCtrlr",
        "ClockCtrlr",
        "SecurityCtrlr",
        "SampledDataCtrlr",
        "AlignedDataCtrlr",
        "AuthCtrlr",
        "SmartChargingCtrlr",
        "ISO15118Ctrlr",
        "V2XChargingCtrlr",
    } <= names


def test_reports_hide_write_only_values_and_filter_by_base() -> None:
    m = model()
    full = m.report(ReportBase.FULL_INVENTORY)
    password = next(i for i in full if i["variable"]["name"] == "BasicAuthPassword")
    assert "value" not in password["variableAttribute"][0]
    assert password["variableAttribute"][0]["mutability"] == "WriteOnly"
    config = m.report(ReportBase.CONFIGURATION_INVENTORY)
    assert 0 < len(config) < len(full)
    assert all(any(a["mutability"] != "ReadOnly" for a in i["variableAttribute"]) for i in config)
    summary = m.report(ReportBase.SUMMARY_INVENTORY)
    assert {i["variable"]["name"] for i in summary} <= {"AvailabilityState", "Available"}
    assert any(
        i["component"] == {"name": "Connector", "evse": {"id": 1, "connectorId": 2}}
        for i in summary
    )


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        VariableSpec(
            ComponentKey("X"),
            VariableKey("Y"),
            Characteristics(DataType.BOOLEAN),
            {AttributeType.ACTUAL: AttributeSpec(Mutability.READ_WRITE, "yes")},
        )
    with pytest.raises(LocalProtocolError):
        model().value(ComponentKey("X"), VariableKey("Y"))
