"""OCPP device model: components, variables and their attributes (OCPP 2.0.1 Part 1 §4, Part 2 B).

Theory of operation: a :class:`DeviceModel` is built from a list of
:class:`VariableSpec` (what the station declares, see :func:`standard_variables`)
plus the values persisted earlier (the adapter store loads them).  It answers
the three questions the CSMS can ask:

* :meth:`DeviceModel.get` -- one GetVariableData entry (use case B06);
* :meth:`DeviceModel.set` -- one SetVariableData entry (use case B05), with the
  value check the variable's characteristics demand;
* :meth:`DeviceModel.report` -- the reportData entries of a base report (B07);
  :meth:`DeviceModel.custom_report` those a GetReport selects (B08).

Values are kept as the strings OCPP carries; typed accessors convert on read.
``set`` does not persist anything: it returns whether the new value must be
persisted and the core turns that into an action for the adapter store.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from chargepoint.errors import LocalProtocolError
from chargepoint.ocpp import standard_variables as _table
from chargepoint.ocpp.standard_variables import Arg, Row


class AttributeType(Enum):
    ACTUAL = "Actual"
    TARGET = "Target"
    MIN_SET = "MinSet"
    MAX_SET = "MaxSet"


class Mutability(Enum):
    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


#: Largest value of a numeric variable without its own limit: a 32-bit integer, as
#: CSMSs and OCTT expect; larger values are refused (ValueTooHigh).
MAX_NUMBER = 2**31 - 1


class DataType(Enum):
    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATE_TIME = "dateTime"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    SEQUENCE_LIST = "SequenceList"
    MEMBER_LIST = "MemberList"


class GetVariableStatus(Enum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"


class SetVariableStatus(Enum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_COMPONENT = "UnknownComponent"
    UNKNOWN_VARIABLE = "UnknownVariable"
    NOT_SUPPORTED_ATTRIBUTE_TYPE = "NotSupportedAttributeType"
    REBOOT_REQUIRED = "RebootRequired"


class ReportBase(Enum):
    CONFIGURATION_INVENTORY = "ConfigurationInventory"
    FULL_INVENTORY = "FullInventory"
    SUMMARY_INVENTORY = "SummaryInventory"


class ComponentCriterion(Enum):
    """ComponentCriterionEnumType: which components a GetReport (B08) selects."""

    ACTIVE = "Active"
    AVAILABLE = "Available"
    ENABLED = "Enabled"
    PROBLEM = "Problem"


@dataclass(frozen=True, order=True)
class ComponentKey:
    name: str
    instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        if self.evse_id is not None:
            evse: dict[str, Any] = {"id": self.evse_id}
            if self.connector_id is not None:
                evse["connectorId"] = self.connector_id
            out["evse"] = evse
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComponentKey:
        evse = data.get("evse") or {}
        return cls(data["name"], data.get("instance"), evse.get("id"), evse.get("connectorId"))


@dataclass(frozen=True, order=True)
class VariableKey:
    name: str
    instance: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariableKey:
        return cls(data["name"], data.get("instance"))


@dataclass(frozen=True)
class ReportFilter:
    """One componentVariable entry of a GetReport (B08); a field left out matches
    every value: no evse -> every EVSE (TC_B_56), no variable -> every variable of
    the component (B08.FR.20), no variable instance -> every instance (B08.FR.21)."""

    component: str
    instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    variable: str | None = None
    variable_instance: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportFilter:
        component = data["component"]
        evse = component.get("evse") or {}
        variable = data.get("variable") or {}
        return cls(
            component["name"],
            component.get("instance"),
            evse.get("id"),
            evse.get("connectorId"),
            variable.get("name"),
            variable.get("instance"),
        )

    def matches(self, component: ComponentKey, variable: VariableKey) -> bool:
        wanted = (
            (self.component, component.name),
            (self.instance, component.instance),
            (self.evse_id, component.evse_id),
            (self.connector_id, component.connector_id),
            (self.variable, variable.name),
            (self.variable_instance, variable.instance),
        )
        return all(want is None or want == have for want, have in wanted)


@dataclass(frozen=True)
class Characteristics:
    """VariableCharacteristicsType.  For strings the limits are lengths."""

    data_type: DataType
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: tuple[str, ...] = ()
    #: a monitor (N04) may watch it; the station declares every readable variable so
    supports_monitoring: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataType": self.data_type.value,
            "supportsMonitoring": self.supports_monitoring,
        }
        if self.unit is not None:
            out["unit"] = self.unit
        if self.min_limit is not None:
            out["minLimit"] = self.min_limit
        if self.max_limit is not None:
            out["maxLimit"] = self.max_limit
        if self.values_list:
            out["valuesList"] = ",".join(self.values_list)
        return out


@dataclass(frozen=True)
class AttributeSpec:
    mutability: Mutability
    initial: str | None
    persistent: bool = True
    constant: bool = False


@dataclass(frozen=True)
class VariableSpec:
    component: ComponentKey
    variable: VariableKey
    characteristics: Characteristics
    attributes: Mapping[AttributeType, AttributeSpec]
    reboot_required: bool = False

    def __post_init__(self) -> None:
        for attribute in self.attributes.values():
            if attribute.initial is not None:
                problem = check_value(self.characteristics, attribute.initial)
                if problem is not None:
                    raise LocalProtocolError(
                        f"{self.component.name}.{self.variable.name}: initial value "
                        f"{attribute.initial!r}: {problem}"
                    )


ValueKey = tuple[ComponentKey, VariableKey, AttributeType]
#: Told of every change of an Actual value: (component, variable, old, new).
Observer = Callable[[ComponentKey, VariableKey, str | None, str], None]


@dataclass(frozen=True)
class GetOutcome:
    status: GetVariableStatus
    value: str | None = None


@dataclass(frozen=True)
class SetOutcome:
    status: SetVariableStatus
    reason_code: str | None = None
    #: (key, value) to persist when the set was accepted and the attribute persists.
    persist: tuple[ValueKey, str] | None = None


def _as_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def check_value(chars: Characteristics, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``chars``, or ``None`` if it is.

    The reason is a reasonCode for attributeStatusInfo (OCPP 2.0.1 B05: the
    station rejects a value that does not fit the variable's characteristics).
    """
    number: float | None = None
    match chars.data_type:
        case DataType.INTEGER:
            try:
                number = int(value.strip(), 10)
            except ValueError:
                return "InvalidValue"
        case DataType.DECIMAL:
            number = _as_float(value)
            if number is None:
                return "InvalidValue"
        case DataType.BOOLEAN:
            if value not in ("true", "false"):
                return "InvalidValue"
        case DataType.DATE_TIME:
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return "InvalidValue"
        case DataType.STRING:
            number = None
            if chars.max_limit is not None and len(value) > chars.max_limit:
                return "ValueTooLong"
            if chars.min_limit is not None and len(value) < chars.min_limit:
                return "ValueTooShort"
        case DataType.OPTION_LIST:
            if value not in chars.values_list:
                return "InvalidValue"
        case DataType.SEQUENCE_LIST | DataType.MEMBER_LIST:
            items = value.split(",") if value else []
            if any(item not in chars.values_list for item in items):
                return "InvalidValue"
            if len(set(items)) != len(items):
                return "InvalidValue"
    if number is not None:
        if chars.min_limit is not None and number < chars.min_limit:
            return "ValueTooLow"
        if chars.max_limit is not None and number > chars.max_limit:
            return "ValueTooHigh"
    return None


@dataclass
class _Variable:
    spec: VariableSpec
    values: dict[AttributeType, str | None] = field(default_factory=dict)


#: Variables a SummaryInventory reports (OCPP 2.0.1 B07: availability and problems).
_SUMMARY_VARIABLES = frozenset({"AvailabilityState", "Available", "Problem", "Tripped"})


class DeviceModel:
    """The station's variables and their current values."""

    def __init__(self, specs: Iterable[VariableSpec], stored: Mapping[ValueKey, str]) -> None:
        self._variables: dict[tuple[ComponentKey, VariableKey], _Variable] = {}
        self._components: set[ComponentKey] = set()
        for spec in specs:
            key = (spec.component, spec.variable)
            if key in self._variables:
                raise LocalProtocolError(f"variable declared twice: {key}")
            values: dict[AttributeType, str | None] = {}
            for attribute, attr_spec in spec.attributes.items():
                saved = stored.get((spec.component, spec.variable, attribute))
                usable = (
                    saved is not None
                    and attr_spec.persistent
                    and not attr_spec.constant
                    and check_value(spec.characteristics, saved) is None
                )
                values[attribute] = saved if usable else attr_spec.initial
            self._variables[key] = _Variable(spec, values)
            self._components.add(spec.component)
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        """Call ``observer`` whenever an Actual value changes, by :meth:`set` or
        :meth:`update` (the monitors of N07 watch the device model this way)."""
        self._observers.append(observer)

    def _changed(self, var: _Variable, attribute: AttributeType, old: str | None, new: str) -> None:
        if attribute is AttributeType.ACTUAL and old != new:
            for observer in self._observers:
                observer(var.spec.component, var.spec.variable, old, new)

    # ----------------------------------------------------------- CSMS access
    def get(
        self,
        component: ComponentKey,
        variable: VariableKey,
        attribute: AttributeType = AttributeType.ACTUAL,
    ) -> GetOutcome:
        """One GetVariableData entry (use case B06)."""
        found = self._lookup(component, variable)
        if isinstance(found, GetVariableStatus):
            return GetOutcome(found)
        attr_spec = found.spec.attributes.get(attribute)
        if attr_spec is None:
            return GetOutcome(GetVariableStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        if attr_spec.mutability is Mutability.WRITE_ONLY:
            # B06: a WriteOnly variable is never read out.
            return GetOutcome(GetVariableStatus.REJECTED)
        return GetOutcome(GetVariableStatus.ACCEPTED, found.values[attribute] or "")

    def set(
        self,
        component: ComponentKey,
        variable: VariableKey,
        value: str,
        attribute: AttributeType = AttributeType.ACTUAL,
    ) -> SetOutcome:
        """One SetVariableData entry (use case B05)."""
        found = self._lookup(component, variable)
        if isinstance(found, GetVariableStatus):
            return SetOutcome(SetVariableStatus(found.value))
        attr_spec = found.spec.attributes.get(attribute)
        if attr_spec is None:
            return SetOutcome(SetVariableStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE)
        if attr_spec.mutability is Mutability.READ_ONLY:
            # B05: a ReadOnly variable is rejected.
            return SetOutcome(SetVariableStatus.REJECTED, "ReadOnly")
        limit = self._size_limit(CONFIGURATION_VALUE_SIZE)
        if limit is not None and len(value) > limit:
            # SetVariableData.attributeValue is limited by ConfigurationValueSize /
            # ValueSize (Appendix 3, DeviceDataCtrlr): longer is Rejected (B05).
            return SetOutcome(SetVariableStatus.REJECTED, "ValueTooLong")
        problem = check_value(found.spec.characteristics, value)
        if problem is not None:
            return SetOutcome(SetVariableStatus.REJECTED, problem)
        old = found.values[attribute]
        found.values[attribute] = value
        self._changed(found, attribute, old, value)
        persist = None
        if attr_spec.persistent:
            persist = ((component, variable, attribute), value)
        status = (
            SetVariableStatus.REBOOT_REQUIRED
            if found.spec.reboot_required
            else SetVariableStatus.ACCEPTED
        )
        return SetOutcome(status, None, persist)

    def report(self, base: ReportBase) -> list[dict[str, Any]]:
        """reportData entries for a base report (use case B07), in a stable order."""
        out: list[dict[str, Any]] = []
        for key in sorted(self._variables, key=_sort_key):
            var = self._variables[key]
            mutabilities = {a.mutability for a in var.spec.attributes.values()}
            if base is ReportBase.CONFIGURATION_INVENTORY and mutabilities == {
                Mutability.READ_ONLY
            }:
                continue
            if (
                base is ReportBase.SUMMARY_INVENTORY
                and var.spec.variable.name not in _SUMMARY_VARIABLES
            ):
                continue
            out.append(self._report_item(var, base is not ReportBase.SUMMARY_INVENTORY))
        return out

    def custom_report(
        self, criteria: Iterable[ComponentCriterion], filters: Iterable[ReportFilter]
    ) -> list[dict[str, Any]]:
        """reportData entries for a GetReport (use case B08), in a stable order: the
        variables that match one of ``filters`` (none: all) *and* whose component
        meets one of ``criteria`` (none: all) -- TC_B_18 combines both."""
        criteria = tuple(criteria)
        filters = tuple(filters)
        out: list[dict[str, Any]] = []
        for key in sorted(self._variables, key=_sort_key):
            component, variable = key
            if filters and not any(f.matches(component, variable) for f in filters):
                continue
            if criteria and not any(self._meets(component, c) for c in criteria):
                continue
            out.append(self._report_item(self._variables[key], True))
        return out

    def _meets(self, component: ComponentKey, criterion: ComponentCriterion) -> bool:
        """B08.FR.07-09: Active / Available / Enabled select a component whose variable
        of that name is true or that has no such variable; B08.FR.10: Problem only
        one whose Problem variable is true."""
        var = self._variables.get((component, VariableKey(criterion.value)))
        is_true = var is not None and var.values.get(AttributeType.ACTUAL) == "true"
        if criterion is ComponentCriterion.PROBLEM:
            return is_true
        return var is None or is_true

    def _report_item(self, var: _Variable, characteristics: bool) -> dict[str, Any]:
        attributes = []
        for attribute, attr_spec in var.spec.attributes.items():
            entry: dict[str, Any] = {
                "type": attribute.value,
                "mutability": attr_spec.mutability.value,
                "persistent": attr_spec.persistent,
                "constant": attr_spec.constant,
            }
            value = var.values[attribute]
            # B07.FR.03 / B08.FR.03: the value of a WriteOnly variable is not reported.
            if attr_spec.mutability is not Mutability.WRITE_ONLY and value is not None:
                entry["value"] = self.reported(value)
            attributes.append(entry)
        item: dict[str, Any] = {
            "component": var.spec.component.to_json(),
            "variable": var.spec.variable.to_json(),
            "variableAttribute": attributes,
        }
        if characteristics:
            item["variableCharacteristics"] = var.spec.characteristics.to_json()
        return item

    def reported(self, value: str) -> str:
        """``value`` cut to DeviceDataCtrlr ReportingValueSize (and ValueSize), the
        limit of GetVariableResult.attributeValue, VariableAttribute.value and
        EventData.actualValue (OCPP 2.0.1 Part 2 Appendix 3, DeviceDataCtrlr)."""
        limit = self._size_limit(REPORTING_VALUE_SIZE)
        return value if limit is None else value[:limit]

    def _size_limit(self, specific: VariableKey) -> int | None:
        """The smaller of DeviceDataCtrlr ``specific`` and ValueSize, those declared."""
        limits = []
        for variable in (specific, VALUE_SIZE):
            var = self._variables.get((DEVICE_DATA, variable))
            raw = None if var is None else var.values.get(AttributeType.ACTUAL)
            if raw is not None and raw.strip().isdigit():
                limits.append(int(raw))
        return min(limits, default=None)

    # -------------------------------------------------------- station access
    def value(
        self,
        component: ComponentKey,
        variable: VariableKey,
        attribute: AttributeType = AttributeType.ACTUAL,
    ) -> str | None:
        """Read a value regardless of mutability (the station reads WriteOnly ones)."""
        var = self._variables.get((component, variable))
        if var is None:
            raise LocalProtocolError(f"undeclared variable {component.name}.{variable.name}")
        return var.values.get(attribute)

    def int_value(self, component: ComponentKey, variable: VariableKey) -> int:
        raw = self.value(component, variable)
        return int(raw) if raw is not None else 0

    def bool_value(self, component: ComponentKey, variable: VariableKey) -> bool:
        return self.value(component, variable) == "true"

    def list_value(self, component: ComponentKey, variable: VariableKey) -> tuple[str, ...]:
        raw = self.value(component, variable)
        return tuple(raw.split(",")) if raw else ()

    def update(
        self,
        component: ComponentKey,
        variable: VariableKey,
        value: str,
        attribute: AttributeType = AttributeType.ACTUAL,
    ) -> tuple[ValueKey, str] | None:
        """The station itself changes a value (e.g. the HeartbeatInterval from a
        BootNotificationResponse).  Returns what to persist, if anything."""
        var = self._variables.get((component, variable))
        if var is None:
            raise LocalProtocolError(f"undeclared variable {component.name}.{variable.name}")
        problem = check_value(var.spec.characteristics, value)
        if problem is not None:
            raise LocalProtocolError(f"{component.name}.{variable.name} = {value!r}: {problem}")
        old = var.values.get(attribute)
        var.values[attribute] = value
        self._changed(var, attribute, old, value)
        attr_spec = var.spec.attributes[attribute]
        return ((component, variable, attribute), value) if attr_spec.persistent else None

    def max_limit(self, component: ComponentKey, variable: VariableKey) -> float | None:
        """The declared maxLimit of a numeric variable (None: none or undeclared)."""
        found = self._variables.get((component, variable))
        return None if found is None else found.spec.characteristics.max_limit

    def spec(
        self, component: ComponentKey, variable: VariableKey
    ) -> VariableSpec | GetVariableStatus:
        """The declaration of a variable, or UnknownComponent / UnknownVariable."""
        found = self._lookup(component, variable)
        return found if isinstance(found, GetVariableStatus) else found.spec

    def _lookup(
        self, component: ComponentKey, variable: VariableKey
    ) -> _Variable | GetVariableStatus:
        var = self._variables.get((component, variable))
        if var is not None:
            return var
        if component not in self._components:
            return GetVariableStatus.UNKNOWN_COMPONENT
        return GetVariableStatus.UNKNOWN_VARIABLE


def _sort_key(key: tuple[ComponentKey, VariableKey]) -> tuple[Any, ...]:
    comp, var = key
    return (
        comp.name,
        comp.instance or "",
        comp.evse_id or 0,
        comp.connector_id or 0,
        var.name,
        var.instance or "",
    )


# ---------------------------------------------------------------------------
# The standard components and variables this station declares: the keys the
# core reads, and the declarations built from the table in standard_variables.
# ---------------------------------------------------------------------------

#: Component keys the core reads; names as in OCPP 2.0.1 Part 2 Appendix 3.
OCPP_COMM = ComponentKey("OCPPCommCtrlr")
TX_CTRLR = ComponentKey("TxCtrlr")
DEVICE_DATA = ComponentKey("DeviceDataCtrlr")
CLOCK = ComponentKey("ClockCtrlr")
SECURITY = ComponentKey("SecurityCtrlr")
SAMPLED_DATA = ComponentKey("SampledDataCtrlr")
ALIGNED_DATA = ComponentKey("AlignedDataCtrlr")
AUTH = ComponentKey("AuthCtrlr")
AUTH_CACHE = ComponentKey("AuthCacheCtrlr")
LOCAL_AUTH_LIST = ComponentKey("LocalAuthListCtrlr")
SMART_CHARGING = ComponentKey("SmartChargingCtrlr")
ISO15118 = ComponentKey("ISO15118Ctrlr")
CHARGING_STATION = ComponentKey("ChargingStation")

RETRY_WAIT_MINIMUM = VariableKey("RetryBackOffWaitMinimum")
RETRY_RANDOM_RANGE = VariableKey("RetryBackOffRandomRange")
RETRY_REPEAT_TIMES = VariableKey("RetryBackOffRepeatTimes")
HEARTBEAT_INTERVAL = VariableKey("HeartbeatInterval")
MESSAGE_TIMEOUT = VariableKey("MessageTimeout", "Default")
MESSAGE_ATTEMPTS_TX = VariableKey("MessageAttempts", "TransactionEvent")
MESSAGE_ATTEMPT_INTERVAL_TX = VariableKey("MessageAttemptInterval", "TransactionEvent")
QUEUE_ALL_MESSAGES = VariableKey("QueueAllMessages")
WEBSOCKET_PING_INTERVAL = VariableKey("WebSocketPingInterval")
ITEMS_PER_MESSAGE_GET_REPORT = VariableKey("ItemsPerMessage", "GetReport")
ITEMS_PER_MESSAGE_GET_VARIABLES = VariableKey("ItemsPerMessage", "GetVariables")
ITEMS_PER_MESSAGE_SET_VARIABLES = VariableKey("ItemsPerMessage", "SetVariables")
BYTES_PER_MESSAGE_GET_REPORT = VariableKey("BytesPerMessage", "GetReport")
BYTES_PER_MESSAGE_GET_VARIABLES = VariableKey("BytesPerMessage", "GetVariables")
BYTES_PER_MESSAGE_SET_VARIABLES = VariableKey("BytesPerMessage", "SetVariables")
CONFIGURATION_VALUE_SIZE = VariableKey("ConfigurationValueSize")
REPORTING_VALUE_SIZE = VariableKey("ReportingValueSize")
VALUE_SIZE = VariableKey("ValueSize")
DATE_TIME = VariableKey("DateTime")
SECURITY_PROFILE = VariableKey("SecurityProfile")
NETWORK_CONFIGURATION_PRIORITY = VariableKey("NetworkConfigurationPriority")
NETWORK_PROFILE_CONNECTION_ATTEMPTS = VariableKey("NetworkProfileConnectionAttempts")
BASIC_AUTH_PASSWORD = VariableKey("BasicAuthPassword")
IDENTITY = VariableKey("Identity")
ORGANIZATION_NAME = VariableKey("OrganizationName")
CERTIFICATE_ENTRIES = VariableKey("CertificateEntries")
CERT_SIGNING_WAIT_MINIMUM = VariableKey("CertSigningWaitMinimum")
CERT_SIGNING_REPEAT_TIMES = VariableKey("CertSigningRepeatTimes")
SECC_ID = VariableKey("SeccId")
TX_UPDATED_MEASURANDS = VariableKey("TxUpdatedMeasurands")
TX_UPDATED_INTERVAL = VariableKey("TxUpdatedInterval")
TX_STARTED_MEASURANDS = VariableKey("TxStartedMeasurands")
TX_ENDED_MEASURANDS = VariableKey("TxEndedMeasurands")
ENABLED = VariableKey("Enabled")
ENTRIES = VariableKey("Entries")
LIFE_TIME = VariableKey("LifeTime")
AUTHORIZE_REMOTE_START = VariableKey("AuthorizeRemoteStart")
LOCAL_AUTHORIZE_OFFLINE = VariableKey("LocalAuthorizeOffline")
LOCAL_PRE_AUTHORIZE = VariableKey("LocalPreAuthorize")
OFFLINE_TX_FOR_UNKNOWN_ID = VariableKey("OfflineTxForUnknownIdEnabled")
AVAILABLE = VariableKey("Available")
AVAILABILITY_STATE = VariableKey("AvailabilityState")
TX_START_POINT = VariableKey("TxStartPoint")
TX_STOP_POINT = VariableKey("TxStopPoint")
ALIGNED_INTERVAL = VariableKey("Interval")
ALIGNED_MEASURANDS = VariableKey("Measurands")
ALIGNED_TX_ENDED_INTERVAL = VariableKey("TxEndedInterval")
ALIGNED_TX_ENDED_MEASURANDS = VariableKey("TxEndedMeasurands")

#: TxStartPointValues / TxStopPointValues, most upstream first (OCPP 2.0.1 E01/E06).
TX_POINTS = _table.TX_POINTS


def standard_variables(
    *,
    identity: str,
    security_profile: int,
    basic_auth_password: str | None,
    evse_connectors: Mapping[int, int],
    organization_name: str = "",
    v2x_operation_modes: tuple[str, ...] = (),
    websocket_ping_interval_s: int = 30,
    evse_max_power_w: Mapping[int, float] | None = None,
) -> list[VariableSpec]:
    """The Core components and variables (OCPP 2.0.1 Part 2 Appendix 3), plus the
    declarations for smart charging, ISO 15118 and OCPP 2.1 V2X: the rows of
    :mod:`chargepoint.ocpp.standard_variables` with the settings filled in.

    ``evse_connectors`` maps each EVSE id to its number of connectors;
    ``evse_max_power_w`` gives EVSE.Power its maxLimit (Appendix 3: the rated power).
    """
    v2x = bool(v2x_operation_modes)
    settings: dict[Arg, str | None] = {
        Arg.IDENTITY: identity,
        Arg.SECURITY_PROFILE: str(security_profile),
        Arg.BASIC_AUTH_PASSWORD: basic_auth_password,
        Arg.ORGANIZATION_NAME: organization_name,
        Arg.WEBSOCKET_PING_INTERVAL: str(websocket_ping_interval_s),
        Arg.V2X_ENABLED: "true" if v2x else "false",
        Arg.V2X_OPERATION_MODES: ",".join(v2x_operation_modes) or None,
        Arg.V2X_ENERGY_TRANSFER_MODES: _table.V2X_ENERGY_TRANSFER_MODES if v2x else None,
    }
    specs = [_spec(row, ComponentKey(row.component), settings) for row in _table.STATION_VARIABLES]
    for evse_id, connectors in sorted(evse_connectors.items()):
        rated = (evse_max_power_w or {}).get(evse_id)
        specs += [
            _spec(
                row,
                ComponentKey(row.component, evse_id=evse_id),
                settings,
                max_limit=rated if row.variable == "Power" else None,
            )
            for row in _table.EVSE_VARIABLES
        ]
        specs += [
            _spec(
                row,
                ComponentKey(row.component, evse_id=evse_id, connector_id=connector_id),
                settings,
            )
            for connector_id in range(1, connectors + 1)
            for row in _table.CONNECTOR_VARIABLES
        ]
    return specs


def _spec(
    row: Row,
    component: ComponentKey,
    settings: Mapping[Arg, str | None],
    *,
    max_limit: float | None = None,
) -> VariableSpec:
    max_limit = row.max_limit if max_limit is None else max_limit
    if max_limit is None and row.data_type in ("integer", "decimal"):
        max_limit = MAX_NUMBER  # no number from the network reaches arithmetic unbounded
    initial = settings[row.default] if isinstance(row.default, Arg) else row.default
    attribute = AttributeSpec(Mutability(row.mutability), initial, row.persistent, row.constant)
    return VariableSpec(
        component,
        VariableKey(row.variable, row.instance),
        Characteristics(
            DataType(row.data_type),
            row.unit,
            row.min_limit,
            max_limit,
            row.values,
            # N04: any variable whose value may be read can be monitored
            supports_monitoring=row.mutability != "WriteOnly",
        ),
        {AttributeType.ACTUAL: attribute},
        row.reboot_required,
    )


def report_parts(model: DeviceModel, data: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split report entries so that each NotifyReport / NotifyMonitoringReport holds at
    most ItemsPerMessage entries and stays within BytesPerMessage (DeviceDataCtrlr,
    instance GetReport)."""
    max_items = max(1, model.int_value(DEVICE_DATA, ITEMS_PER_MESSAGE_GET_REPORT))
    max_bytes = model.int_value(DEVICE_DATA, BYTES_PER_MESSAGE_GET_REPORT)
    envelope = 200  # frame, ids, requestId, generatedAt, tbc, seqNo
    parts: list[list[dict[str, Any]]] = [[]]
    used = envelope
    for item in data:
        size = len(json.dumps(item, separators=(",", ":")).encode()) + 1
        if parts[-1] and (len(parts[-1]) >= max_items or used + size > max_bytes):
            parts.append([])
            used = envelope
        parts[-1].append(item)
        used += size
    return parts
