"""OCTT Get Custom Report (B08) and the value-size limits of DeviceDataCtrlr, sans-I/O.

The test plays the CSMS against the core with a fake clock, on OCPP 2.0.1 and 2.1;
every answer and NotifyReport of the station is checked against the OCA schemas.
"""

from __future__ import annotations

from typing import Any

import pytest

from chargepoint.ocpp import device_model as dm
from chargepoint.ocpp.device_model import (
    AttributeSpec,
    Characteristics,
    ComponentCriterion,
    ComponentKey,
    DataType,
    DeviceModel,
    Mutability,
    ReportFilter,
    VariableKey,
    VariableSpec,
)
from chargepoint.ocpp.rpc import ProtocolVersion
from tests.core.ocpp_schemas import assert_schema_valid

from .helpers import Harness, boot_result, calls

VERSIONS = [ProtocolVersion.V201, ProtocolVersion.V21]
EVSE1_AVAILABILITY = {
    "component": {"name": "EVSE", "evse": {"id": 1}},
    "variable": {"name": "AvailabilityState"},
}


def booted(version: ProtocolVersion, **overrides: str) -> Harness:
    h = Harness(overrides={"AlignedDataCtrlr.Interval": "0", **overrides})
    frames = h.connect(version)
    assert frames[-1][2] == "BootNotification"
    h.answer_all(h.reply(frames[-1], boot_result(interval=100000)))  # no heartbeats
    return h


def get_report(
    h: Harness, version: ProtocolVersion, **request: Any
) -> tuple[Any, list[dict[str, Any]]]:
    """Send GetReport; returns the answer (payload, or the CALLERROR frame) and every
    NotifyReport that followed (each answered), all checked against the schemas."""
    assert_schema_valid(version, "GetReportRequest.json", request)
    frames = h.receive([2, "gr", "GetReport", request])
    answer = frames[0]
    assert answer[1] == "gr"
    if answer[0] == 4:
        return answer, []
    assert_schema_valid(version, "GetReportResponse.json", answer[2])
    reports = [f[3] for f in calls(h.answer_all(frames[1:]), "NotifyReport")]
    for report in reports:
        assert_schema_valid(version, "NotifyReportRequest.json", report)
    return answer[2], reports


def entries(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for report in reports for item in report["reportData"]]


def keys(reports: list[dict[str, Any]]) -> list[tuple[str, int | None, str, str | None]]:
    return [
        (
            item["component"]["name"],
            item["component"].get("evse", {}).get("id"),
            item["variable"]["name"],
            item["variable"].get("instance"),
        )
        for item in entries(reports)
    ]


def actual(item: dict[str, Any]) -> str | None:
    value: str | None = item["variableAttribute"][0].get("value")
    return value


# ------------------------------------------------------------- OCTT TC_B_xx
@pytest.mark.parametrize("version", VERSIONS)
def test_tc_b_16_get_custom_report_with_component_criteria(version: ProtocolVersion) -> None:
    """TC_B_16: 1. GetReport componentCriteria Enabled; 2. Accepted; 3. NotifyReport
    with the requestId: components whose Enabled is true or that have none (B08.FR.09)."""
    h = booted(version)
    frames = h.receive(
        [
            2,
            "s",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "AuthCacheCtrlr"},
                        "variable": {"name": "Enabled"},
                        "attributeValue": "false",
                    }
                ]
            },
        ]
    )
    assert frames[0][2]["setVariableResult"][0]["attributeStatus"] == "Accepted"

    answer, reports = get_report(h, version, requestId=41, componentCriteria=["Enabled"])

    assert answer == {"status": "Accepted"}
    assert reports and {r["requestId"] for r in reports} == {41}  # B08.FR.04
    components = {name for name, *_ in keys(reports)}
    assert "AuthCacheCtrlr" not in components  # Enabled false
    assert {"AuthCtrlr", "LocalAuthListCtrlr", "TxCtrlr", "DeviceDataCtrlr"} <= components


@pytest.mark.parametrize("version", VERSIONS)
def test_tc_b_17_get_custom_report_with_component_variable(version: ProtocolVersion) -> None:
    """TC_B_17: 1. GetReport componentVariable EVSE #1 AvailabilityState; 2. Accepted;
    3. NotifyReport with exactly that variable and its value."""
    h = booted(version)

    answer, reports = get_report(h, version, requestId=42, componentVariable=[EVSE1_AVAILABILITY])

    assert answer == {"status": "Accepted"}
    assert len(reports) == 1
    report = reports[0]
    assert (report["requestId"], report["seqNo"], report["tbc"]) == (42, 0, False)
    assert report["generatedAt"].endswith("Z")
    (item,) = report["reportData"]
    assert item["component"] == {"name": "EVSE", "evse": {"id": 1}}
    assert item["variable"] == {"name": "AvailabilityState"}
    assert actual(item) == "Available"


@pytest.mark.parametrize("version", VERSIONS)
def test_tc_b_18_get_custom_report_with_criteria_and_component_variable(
    version: ProtocolVersion,
) -> None:
    """TC_B_18: 1. GetReport Available + EVSE #1 AvailabilityState; 2. Accepted;
    3. NotifyReport with it; 4. GetReport Problem + the same; 5. EmptyResultSet and no
    NotifyReport (B08.FR.15): both filters must match."""
    h = booted(version)

    answer, reports = get_report(
        h,
        version,
        requestId=43,
        componentCriteria=["Available"],
        componentVariable=[EVSE1_AVAILABILITY],
    )
    assert answer == {"status": "Accepted"}
    assert keys(reports) == [("EVSE", 1, "AvailabilityState", None)]

    answer, reports = get_report(
        h,
        version,
        requestId=44,
        componentCriteria=["Problem"],
        componentVariable=[EVSE1_AVAILABILITY],
    )
    assert answer == {"status": "EmptyResultSet"}
    assert reports == []


@pytest.mark.parametrize("version", VERSIONS)
def test_tc_b_54_get_custom_report_without_variable_instance(version: ProtocolVersion) -> None:
    """TC_B_54: 1. GetReport DeviceDataCtrlr ItemsPerMessage, no instance; 2. Accepted;
    3. NotifyReport with every instance (B08.FR.21)."""
    h = booted(version, **{"DeviceDataCtrlr.ItemsPerMessage[GetReport]": "4"})
    request = {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}}

    answer, reports = get_report(h, version, requestId=54, componentVariable=[request])

    assert answer == {"status": "Accepted"}
    assert keys(reports) == [
        ("DeviceDataCtrlr", None, "ItemsPerMessage", "GetReport"),
        ("DeviceDataCtrlr", None, "ItemsPerMessage", "GetVariables"),
        ("DeviceDataCtrlr", None, "ItemsPerMessage", "SetVariables"),
    ]
    assert [actual(item) for item in entries(reports)] == ["4", "50", "50"]


@pytest.mark.parametrize("version", VERSIONS)
def test_tc_b_55_get_custom_report_with_variable_instance(version: ProtocolVersion) -> None:
    """TC_B_55: 1. GetReport DeviceDataCtrlr ItemsPerMessage instance GetReport;
    2. Accepted; 3. NotifyReport with that one instance."""
    h = booted(version)
    request = {
        "component": {"name": "DeviceDataCtrlr"},
        "variable": {"name": "ItemsPerMessage", "instance": "GetReport"},
    }

    answer, reports = get_report(h, version, requestId=55, componentVariable=[request])

    assert answer == {"status": "Accepted"}
    assert keys(reports) == [("DeviceDataCtrlr", None, "ItemsPerMessage", "GetReport")]


@pytest.mark.parametrize("version", VERSIONS)
def test_tc_b_56_get_custom_report_without_evse_id(version: ProtocolVersion) -> None:
    """TC_B_56: 1. GetReport EVSE AvailabilityState without evse; 2. Accepted;
    3. NotifyReport with the AvailabilityState of every EVSE."""
    h = booted(version)
    request = {"component": {"name": "EVSE"}, "variable": {"name": "AvailabilityState"}}

    answer, reports = get_report(h, version, requestId=56, componentVariable=[request])

    assert answer == {"status": "Accepted"}
    assert keys(reports) == [
        ("EVSE", 1, "AvailabilityState", None),
        ("EVSE", 2, "AvailabilityState", None),
    ]


# ------------------------------------------------------- B08 requirements
def test_component_without_variable_reports_all_its_variables() -> None:
    """B08.FR.20: a componentVariable without variable selects every variable of the
    component; an EVSE-bound component only those of that EVSE."""
    version = ProtocolVersion.V201
    h = booted(version)

    _, reports = get_report(
        h,
        version,
        requestId=1,
        componentVariable=[
            {"component": {"name": "DeviceDataCtrlr"}},
            {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 1}}},
        ],
    )

    found = keys(reports)
    assert {v for c, _, v, _ in found if c == "DeviceDataCtrlr"} == {
        "BytesPerMessage",
        "ConfigurationValueSize",
        "ItemsPerMessage",
        "ReportingValueSize",
        "ValueSize",
    }
    connectors = [
        item["component"] for item in entries(reports) if item["component"]["name"] == "Connector"
    ]
    assert connectors and all(c["evse"] == {"id": 2, "connectorId": 1} for c in connectors)


def test_no_filter_reports_everything_and_unknown_components_nothing() -> None:
    """B08: no criteria and no componentVariable select the whole device model (as a
    FullInventory); a component the station lacks gives EmptyResultSet (B08.FR.15)."""
    version = ProtocolVersion.V201
    h = booted(version)

    _, everything = get_report(h, version, requestId=2)
    frames = h.receive([2, "b", "GetBaseReport", {"requestId": 3, "reportBase": "FullInventory"}])
    full = [f[3] for f in calls(h.answer_all(frames[1:]), "NotifyReport")]
    assert keys(everything) == keys(full)
    assert [r["seqNo"] for r in everything] == list(range(len(everything)))
    assert [r["tbc"] for r in everything] == [True] * (len(everything) - 1) + [False]

    answer, reports = get_report(
        h, version, requestId=4, componentVariable=[{"component": {"name": "NoSuchCtrlr"}}]
    )
    assert answer == {"status": "EmptyResultSet"} and reports == []


def test_write_only_values_are_not_reported() -> None:
    """B08.FR.03: the value of a WriteOnly variable (BasicAuthPassword) is left out."""
    version = ProtocolVersion.V201
    h = booted(version)
    request = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}

    _, reports = get_report(h, version, requestId=5, componentVariable=[request])

    (item,) = entries(reports)
    assert item["variableAttribute"][0]["mutability"] == "WriteOnly"
    assert "value" not in item["variableAttribute"][0]


def test_more_component_variables_than_items_per_message_is_refused() -> None:
    """B08.FR.17: more componentVariable entries than ItemsPerMessage GetReport ->
    CALLERROR OccurrenceConstraintViolation, and no report."""
    version = ProtocolVersion.V201
    h = booted(version, **{"DeviceDataCtrlr.ItemsPerMessage[GetReport]": "2"})
    requested = [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "StopTxOnInvalidId"}},
        {"component": {"name": "AlignedDataCtrlr"}, "variable": {"name": "Measurands"}},
        EVSE1_AVAILABILITY,
    ]

    answer, reports = get_report(h, version, requestId=6, componentVariable=requested)

    assert answer[0] == 4 and answer[2] == "OccurrenceConstraintViolation"
    assert reports == []


def test_request_longer_than_bytes_per_message_is_refused() -> None:
    """B08.FR.18: a GetReport longer than BytesPerMessage GetReport -> CALLERROR
    FormatViolation."""
    version = ProtocolVersion.V201
    h = booted(version, **{"DeviceDataCtrlr.BytesPerMessage[GetReport]": "60"})

    answer, reports = get_report(h, version, requestId=7, componentCriteria=["Available"])

    assert answer[0] == 4 and answer[2] == "FormatViolation"
    assert reports == []


def test_large_custom_report_is_split_by_items_per_message() -> None:
    """B08: the report is sent in NotifyReport parts of at most ItemsPerMessage
    GetReport entries, seqNo from 0, tbc on all but the last."""
    version = ProtocolVersion.V21
    h = booted(version, **{"DeviceDataCtrlr.ItemsPerMessage[GetReport]": "3"})

    answer, reports = get_report(
        h, version, requestId=8, componentVariable=[{"component": {"name": "DeviceDataCtrlr"}}]
    )

    assert answer == {"status": "Accepted"}
    assert [len(r["reportData"]) for r in reports] == [3, 3, 3]
    assert [(r["seqNo"], r["tbc"]) for r in reports] == [(0, True), (1, True), (2, False)]
    assert {r["generatedAt"] for r in reports} == {reports[0]["generatedAt"]}


def test_problem_and_active_criteria_follow_the_component_variables() -> None:
    """B08.FR.07/B08.FR.10: Active selects components whose Active is true or that have
    none; Problem only those whose Problem is true; several criteria: any of them."""
    station = ComponentKey("ChargingStation")
    fan = ComponentKey("Fan")
    other = ComponentKey("Other")

    def boolean(component: ComponentKey, name: str, value: str) -> VariableSpec:
        attribute = AttributeSpec(Mutability.READ_ONLY, value)
        return VariableSpec(
            component,
            VariableKey(name),
            Characteristics(DataType.BOOLEAN),
            {dm.AttributeType.ACTUAL: attribute},
        )

    model = DeviceModel(
        [
            boolean(station, "Problem", "true"),
            boolean(station, "Active", "false"),
            boolean(fan, "Problem", "false"),
            boolean(fan, "Active", "true"),
            boolean(other, "Available", "true"),
        ],
        {},
    )

    def components(*criteria: ComponentCriterion) -> set[str]:
        return {item["component"]["name"] for item in model.custom_report(criteria, ())}

    assert components(ComponentCriterion.PROBLEM) == {"ChargingStation"}
    assert components(ComponentCriterion.ACTIVE) == {"Fan", "Other"}
    assert components(ComponentCriterion.ACTIVE, ComponentCriterion.PROBLEM) == {
        "ChargingStation",
        "Fan",
        "Other",
    }
    only_fan = ReportFilter("Fan", variable="Problem")
    assert model.custom_report([ComponentCriterion.PROBLEM], [only_fan]) == []


# -------------------------------------------------------- value-size limits
@pytest.mark.parametrize("version", VERSIONS)
def test_reporting_value_size_cuts_reported_values(version: ProtocolVersion) -> None:
    """ReportingValueSize (DeviceDataCtrlr) limits GetVariableResult.attributeValue and
    VariableAttribute.value: longer values are cut, never refused."""
    h = booted(version, **{"DeviceDataCtrlr.ReportingValueSize": "10"})
    measurands = {
        "component": {"name": "SampledDataCtrlr"},
        "variable": {"name": "TxUpdatedMeasurands"},
    }
    full = h.model.value(dm.SAMPLED_DATA, dm.TX_UPDATED_MEASURANDS)
    assert full is not None and len(full) > 10

    frames = h.receive([2, "g", "GetVariables", {"getVariableData": [measurands]}])
    assert_schema_valid(version, "GetVariablesResponse.json", frames[0][2])
    assert frames[0][2]["getVariableResult"][0]["attributeValue"] == full[:10]

    _, reports = get_report(h, version, requestId=9, componentVariable=[measurands])
    assert [actual(item) for item in entries(reports)] == [full[:10]]

    frames = h.receive([2, "b", "GetBaseReport", {"requestId": 10, "reportBase": "FullInventory"}])
    base = entries([f[3] for f in calls(h.answer_all(frames[1:]), "NotifyReport")])
    assert max(len(actual(item) or "") for item in base) == 10


@pytest.mark.parametrize("version", VERSIONS)
def test_configuration_value_size_refuses_longer_set_values(version: ProtocolVersion) -> None:
    """ConfigurationValueSize (and ValueSize, the smaller wins) limits
    SetVariableData.attributeValue: a longer value is Rejected (B05), a fitting one set."""
    h = booted(
        version,
        **{"DeviceDataCtrlr.ConfigurationValueSize": "8", "DeviceDataCtrlr.ValueSize": "6"},
    )

    def set_name(value: str) -> dict[str, Any]:
        data = {
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "OrganizationName"},
            "attributeValue": value,
        }
        frames = h.receive([2, "s", "SetVariables", {"setVariableData": [data]}])
        assert_schema_valid(version, "SetVariablesResponse.json", frames[0][2])
        result: dict[str, Any] = frames[0][2]["setVariableResult"][0]
        return result

    refused = set_name("Example")  # 7 characters: within 8, beyond ValueSize 6
    assert refused["attributeStatus"] == "Rejected"
    assert refused["attributeStatusInfo"] == {"reasonCode": "ValueTooLong"}
    assert h.model.value(dm.SECURITY, dm.ORGANIZATION_NAME) == ""

    assert set_name("Exampl")["attributeStatus"] == "Accepted"
    assert h.model.value(dm.SECURITY, dm.ORGANIZATION_NAME) == "Exampl"
