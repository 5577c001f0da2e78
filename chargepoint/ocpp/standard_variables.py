"""The components and variables this station declares, as a table (OCPP 2.0.1 Part 2 Appendix 3).

One :class:`Row` per variable, written like the appendix: component, variable,
data type, mutability, default, then the options (instance, unit, limits,
values list, persistence).  Names and enum values are the spec's own strings;
:func:`chargepoint.ocpp.device_model.standard_variables` turns the rows into
:class:`~chargepoint.ocpp.device_model.VariableSpec` and fills in the defaults
marked :class:`Arg`, which depend on the station's settings.

* :data:`STATION_VARIABLES` -- station-wide components, declared once;
* :data:`EVSE_VARIABLES` -- declared for each EVSE (``evse.id`` set);
* :data:`CONNECTOR_VARIABLES` -- declared for each connector of each EVSE.

Defaults are this project's choices; docs/ocpp.md documents them.  Values that
depend on each EVSE's rating (SupplyPhases) come from :func:`rating_values`.
Every variable Appendix 3 marks required for the components declared here is
declared (TC_B_53 reads them through a FullInventory report).  Pure data: this
module imports nothing of the device model, which imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from enum import Enum
from typing import Final, Literal

from chargepoint.ocpp.network import SLOT_VALUES
from chargepoint.ocpp.station_io import EvseRating

#: DataEnumType (OCPP 2.0.1 Part 2 §3)
DataTypeName = Literal[
    "string",
    "decimal",
    "integer",
    "dateTime",
    "boolean",
    "OptionList",
    "SequenceList",
    "MemberList",
]
#: MutabilityEnumType (OCPP 2.0.1 Part 2 §3)
MutabilityName = Literal["ReadOnly", "WriteOnly", "ReadWrite"]

RO: Final = "ReadOnly"
RW: Final = "ReadWrite"
WO: Final = "WriteOnly"


class Arg(Enum):
    """A default that depends on the station's settings (see ``standard_variables``)."""

    #: the station identity (SecurityCtrlr.Identity, ISO15118Ctrlr.SeccId)
    IDENTITY = "identity"
    #: the configured security profile
    SECURITY_PROFILE = "security_profile"
    #: the configured Basic auth password, if any
    BASIC_AUTH_PASSWORD = "basic_auth_password"
    ORGANIZATION_NAME = "organization_name"
    WEBSOCKET_PING_INTERVAL = "websocket_ping_interval_s"
    #: "true" when V2X operation modes are configured, else "false"
    V2X_ENABLED = "v2x_enabled"
    #: the configured V2X operation modes (none: no value)
    V2X_OPERATION_MODES = "v2x_operation_modes"
    #: :data:`V2X_ENERGY_TRANSFER_MODES` when V2X operation modes are configured
    V2X_ENERGY_TRANSFER_MODES = "v2x_energy_transfer_modes"


@dataclass(frozen=True)
class Row:
    """One variable with a single Actual attribute (VariableCharacteristicsType and
    VariableAttributeType).  For strings the limits are lengths."""

    component: str
    variable: str
    data_type: DataTypeName
    mutability: MutabilityName
    default: str | Arg | None
    _: KW_ONLY
    instance: str | None = None
    unit: str | None = None
    min_limit: float | None = None
    #: numbers without one get the device model's MAX_NUMBER
    max_limit: float | None = None
    values: tuple[str, ...] = ()
    persistent: bool = True
    constant: bool = False
    reboot_required: bool = False


#: Measurands this station can sample (OCPP 2.0.1 Part 2 §7 MeasurandEnumType).
SUPPORTED_MEASURANDS = (
    "Energy.Active.Import.Register",
    "Energy.Active.Export.Register",
    "Power.Active.Import",
    "Power.Active.Export",
    "Voltage",
    "Current.Import",
    "Current.Export",
    "SoC",
)
#: TxStartPointValues / TxStopPointValues, most upstream first (OCPP 2.0.1 E01/E06).
TX_POINTS = (
    "ParkingBayOccupancy",
    "EVConnected",
    "Authorized",
    "DataSigned",
    "PowerPathClosed",
    "EnergyTransfer",
)
#: SmartChargingCtrlr limits: profiles installed at most, periods per schedule
#: (also what a composite schedule reports at most) and the highest stack level.
MAX_CHARGING_PROFILES = 64
PERIODS_PER_SCHEDULE = 48
MAX_STACK_LEVEL = 9
#: ConnectorStatusEnumType values, for the AvailabilityState variables
AVAILABILITY = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
#: What a V2X-capable EVSE reports as SupportedEnergyTransferModes.
V2X_ENERGY_TRANSFER_MODES = "AC_BPT,DC_BPT"
#: ConnectorEnumType (OCPP 2.0.1 Part 2 §3)
CONNECTOR_TYPES = (
    "cCCS1",
    "cCCS2",
    "cG105",
    "cTesla",
    "cType1",
    "cType2",
    "s309-1P-16A",
    "s309-1P-32A",
    "s309-3P-16A",
    "s309-3P-32A",
    "sBS1361",
    "sCEE-7-7",
    "sType2",
    "sType3",
    "Other1PhMax16A",
    "Other1PhOver16A",
    "Other3Ph",
    "Pan",
    "wInductive",
    "wResonant",
    "Undetermined",
    "Unknown",
)

_ENERGY = "Energy.Active.Import.Register,Energy.Active.Export.Register"
_TX_UPDATED = (
    "Energy.Active.Import.Register,Energy.Active.Export.Register,"
    "Power.Active.Import,Power.Active.Export,SoC"
)
_TIME_SOURCES = (
    "Heartbeat",
    "NTP",
    "GPS",
    "RealTimeClock",
    "MobileNetwork",
    "RadioTimeTransmitter",
)
_AUTH_CACHE_POLICIES = ("LRU", "LFU", "FIFO", "CUSTOM")
_V2X_OPERATION_MODES = (
    "ChargingOnly",
    "CentralSetpoint",
    "ExternalSetpoint",
    "ExternalLimits",
    "CentralFrequency",
    "LocalFrequency",
    "LocalLoadBalancing",
    "Idle",
)
_ENERGY_TRANSFER_MODES = (
    "AC_single_phase",
    "AC_two_phase",
    "AC_three_phase",
    "DC",
    "AC_BPT",
    "AC_BPT_DER",
    "AC_DER",
    "DC_BPT",
    "DC_ACDP",
    "DC_ACDP_BPT",
    "WPT",
)

_COMM = "OCPPCommCtrlr"
_TX = "TxCtrlr"
_DEVICE_DATA = "DeviceDataCtrlr"
_SAMPLED = "SampledDataCtrlr"
_ALIGNED = "AlignedDataCtrlr"
_MONITORING = "MonitoringCtrlr"
#: MonitoringBaseEnumType (OCPP 2.0.1 Part 2 §3), the values of ActiveMonitoringBase
MONITORING_BASES = ("All", "FactoryDefault", "HardWiredOnly")
_MEASURANDS = SUPPORTED_MEASURANDS

# fmt: off
STATION_VARIABLES: tuple[Row, ...] = (
    Row(_COMM, "RetryBackOffWaitMinimum", "integer", RW, "10", unit="s", min_limit=0),
    Row(_COMM, "RetryBackOffRandomRange", "integer", RW, "10", unit="s", min_limit=0),
    Row(_COMM, "RetryBackOffRepeatTimes", "integer", RW, "5", min_limit=0),
    Row(_COMM, "HeartbeatInterval", "integer", RW, "300", unit="s", min_limit=1),
    Row(_COMM, "MessageTimeout", "integer", RW, "30", instance="Default", unit="s", min_limit=1),
    Row(_COMM, "MessageAttempts", "integer", RW, "3", instance="TransactionEvent", min_limit=1),
    Row(_COMM, "MessageAttemptInterval", "integer", RW, "60",
        instance="TransactionEvent", unit="s", min_limit=0),
    # B10: the new connection order is used after the next reboot.
    Row(_COMM, "NetworkConfigurationPriority", "SequenceList", RW, "0",
        values=SLOT_VALUES, reboot_required=True),
    Row(_COMM, "NetworkProfileConnectionAttempts", "integer", RW, "3", min_limit=1),
    Row(_COMM, "OfflineThreshold", "integer", RW, "60", unit="s", min_limit=0),
    Row(_COMM, "ResetRetries", "integer", RW, "2", min_limit=0),
    Row(_COMM, "QueueAllMessages", "boolean", RW, "false"),
    Row(_COMM, "WebSocketPingInterval", "integer", RW, Arg.WEBSOCKET_PING_INTERVAL,
        unit="s", min_limit=0),
    # Log uploads over HTTP(S); firmware is downloaded over HTTPS only (L01 security)
    Row(_COMM, "FileTransferProtocols", "MemberList", RO, "HTTP,HTTPS",
        values=("HTTP", "HTTPS"), constant=True),
    # The controller releases the cable lock when the EV is unplugged (state A).
    Row(_COMM, "UnlockOnEVSideDisconnect", "boolean", RO, "true", constant=True),
    # E01/E06: when a transaction started by EvseActivity starts and ends.  The
    # spec's own example value for both is "EVConnected,Authorized".
    Row(_TX, "TxStartPoint", "MemberList", RW, "EVConnected,Authorized", values=TX_POINTS),
    Row(_TX, "TxStopPoint", "MemberList", RW, "EVConnected,Authorized", values=TX_POINTS),
    Row(_TX, "EVConnectionTimeOut", "integer", RW, "60", unit="s", min_limit=0),
    Row(_TX, "StopTxOnEVSideDisconnect", "boolean", RO, "true"),
    Row(_TX, "StopTxOnInvalidId", "boolean", RW, "true"),
    # E05: Wh still delivered after the CSMS refused the idToken (StopTxOnInvalidId
    # false); 0 = no limit (TC_C_26 keeps charging with 0).
    Row(_TX, "MaxEnergyOnInvalidId", "integer", RW, "0", unit="Wh", min_limit=0),
    Row(_DEVICE_DATA, "ItemsPerMessage", "integer", RO, "20", instance="GetReport", constant=True),
    Row(_DEVICE_DATA, "ItemsPerMessage", "integer", RO, "50",
        instance="GetVariables", constant=True),
    Row(_DEVICE_DATA, "ItemsPerMessage", "integer", RO, "50",
        instance="SetVariables", constant=True),
    Row(_DEVICE_DATA, "BytesPerMessage", "integer", RO, "32000",
        instance="GetReport", constant=True),
    Row(_DEVICE_DATA, "BytesPerMessage", "integer", RO, "32000",
        instance="GetVariables", constant=True),
    Row(_DEVICE_DATA, "BytesPerMessage", "integer", RO, "32000",
        instance="SetVariables", constant=True),
    # Longest SetVariables value accepted (the schema's 1000) and longest value
    # reported before it is cut (the schema's 2500); ValueSize bounds both.
    Row(_DEVICE_DATA, "ConfigurationValueSize", "integer", RO, "1000", min_limit=1,
        max_limit=1000, constant=True),
    Row(_DEVICE_DATA, "ReportingValueSize", "integer", RO, "2500", min_limit=1,
        max_limit=2500, constant=True),
    Row(_DEVICE_DATA, "ValueSize", "integer", RO, "2500", min_limit=1, max_limit=2500,
        constant=True),
    Row("ClockCtrlr", "DateTime", "dateTime", RO, None, persistent=False),
    Row("ClockCtrlr", "TimeSource", "SequenceList", RW, "Heartbeat", values=_TIME_SOURCES),
    # SecurityProfile changes only through SetNetworkProfile (A05), not here; it
    # reports the profile of the connection in use (the configured one at start-up).
    Row("SecurityCtrlr", "SecurityProfile", "integer", RO, Arg.SECURITY_PROFILE,
        min_limit=0, max_limit=3, persistent=False),
    # A00/A01: 16..40 characters, write-only.
    Row("SecurityCtrlr", "BasicAuthPassword", "string", WO, Arg.BASIC_AUTH_PASSWORD,
        min_limit=16, max_limit=40),
    Row("SecurityCtrlr", "Identity", "string", RO, Arg.IDENTITY, max_limit=48),
    Row("SecurityCtrlr", "OrganizationName", "string", RW, Arg.ORGANIZATION_NAME, max_limit=64),
    Row("SecurityCtrlr", "CertificateEntries", "integer", RO, "0", persistent=False),
    # A02/A03: waiting for CertificateSigned, then asking again.
    Row("SecurityCtrlr", "CertSigningWaitMinimum", "integer", RW, "60", unit="s", min_limit=1),
    Row("SecurityCtrlr", "CertSigningRepeatTimes", "integer", RW, "3", min_limit=0),
    Row(_SAMPLED, "TxUpdatedMeasurands", "MemberList", RW, _TX_UPDATED, values=_MEASURANDS),
    Row(_SAMPLED, "TxUpdatedInterval", "integer", RW, "60", unit="s", min_limit=0),
    Row(_SAMPLED, "TxStartedMeasurands", "MemberList", RW, _ENERGY, values=_MEASURANDS),
    Row(_SAMPLED, "TxEndedMeasurands", "MemberList", RW, _ENERGY, values=_MEASURANDS),
    Row(_SAMPLED, "TxEndedInterval", "integer", RW, "0", unit="s", min_limit=0),
    # J01/J02: clock-aligned meter values every quarter hour (0 = off).
    Row(_ALIGNED, "Interval", "integer", RW, "900", unit="s", min_limit=0),
    Row(_ALIGNED, "Measurands", "MemberList", RW, _ENERGY, values=_MEASURANDS),
    Row(_ALIGNED, "TxEndedInterval", "integer", RW, "0", unit="s", min_limit=0),
    Row(_ALIGNED, "TxEndedMeasurands", "MemberList", RW, _ENERGY, values=_MEASURANDS),
    Row("AuthCtrlr", "Enabled", "boolean", RW, "true"),
    Row("AuthCtrlr", "AuthorizeRemoteStart", "boolean", RW, "false"),
    Row("AuthCtrlr", "LocalAuthorizeOffline", "boolean", RW, "true"),
    Row("AuthCtrlr", "LocalPreAuthorize", "boolean", RW, "false"),
    Row("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "boolean", RW, "false"),
    # C10-C12: the authorization cache (LRU, at most 1000 entries).
    Row("AuthCacheCtrlr", "Available", "boolean", RO, "true", constant=True),
    Row("AuthCacheCtrlr", "Enabled", "boolean", RW, "true"),
    Row("AuthCacheCtrlr", "LifeTime", "integer", RW, "86400", unit="s", min_limit=1),
    Row("AuthCacheCtrlr", "Policy", "OptionList", RO, "LRU",
        values=_AUTH_CACHE_POLICIES, constant=True),
    # D01/D02: the local authorization list.
    Row("LocalAuthListCtrlr", "Available", "boolean", RO, "true", constant=True),
    Row("LocalAuthListCtrlr", "Enabled", "boolean", RW, "true"),
    Row("LocalAuthListCtrlr", "Entries", "integer", RO, "0", persistent=False),
    # What the CSMS may put in one SendLocalList (D01: it splits larger lists).
    Row("LocalAuthListCtrlr", "ItemsPerMessage", "integer", RO, "100", constant=True),
    Row("LocalAuthListCtrlr", "BytesPerMessage", "integer", RO, "32000", constant=True),
    # N02-N08: variable monitoring (blocks/monitoring.py).  No hard-wired or
    # preconfigured monitors: All and FactoryDefault differ only in that
    # FactoryDefault (like HardWiredOnly) removes the custom monitors (N03).
    Row(_MONITORING, "Available", "boolean", RO, "true", constant=True),
    Row(_MONITORING, "Enabled", "boolean", RW, "true"),
    Row(_MONITORING, "ActiveMonitoringBase", "OptionList", RO, "All", values=MONITORING_BASES),
    # N05: events with a severity above this level are not reported (0 Danger .. 9 Debug).
    Row(_MONITORING, "ActiveMonitoringLevel", "integer", RO, "9", min_limit=0, max_limit=9),
    # N07: offline, only events with a severity up to this one are queued (4: Error).
    Row(_MONITORING, "OfflineQueuingSeverity", "integer", RW, "4", min_limit=0, max_limit=9),
    Row(_MONITORING, "ItemsPerMessage", "integer", RO, "20",
        instance="SetVariableMonitoring", constant=True),
    Row(_MONITORING, "ItemsPerMessage", "integer", RO, "20",
        instance="ClearVariableMonitoring", constant=True),
    Row(_MONITORING, "BytesPerMessage", "integer", RO, "8000",
        instance="SetVariableMonitoring", constant=True),
    Row(_MONITORING, "BytesPerMessage", "integer", RO, "8000",
        instance="ClearVariableMonitoring", constant=True),
    # Declared for the coming smart-charging / ISO 15118 / V2X work.
    # K: smart charging (OCPP 2.0.1 Part 2 Appendix 3, SmartChargingCtrlr)
    Row("SmartChargingCtrlr", "Available", "boolean", RO, "true", constant=True),
    Row("SmartChargingCtrlr", "Enabled", "boolean", RW, "true"),
    Row(
        "SmartChargingCtrlr",
        "Entries",
        "integer",
        RO,
        "0",
        instance="ChargingProfiles",
        max_limit=MAX_CHARGING_PROFILES,
        persistent=False,
    ),
    # percent: a composite limit that moves by more than this during a transaction is
    # reported (TransactionEvent, TriggerReasonEnumType ChargingRateChanged)
    Row("SmartChargingCtrlr", "LimitChangeSignificance", "decimal", RW, "10", min_limit=0,
        max_limit=100),
    Row("SmartChargingCtrlr", "PeriodsPerSchedule", "integer", RO, str(PERIODS_PER_SCHEDULE),
        constant=True),
    Row("SmartChargingCtrlr", "ProfileStackLevel", "integer", RO, str(MAX_STACK_LEVEL),
        constant=True),
    Row("SmartChargingCtrlr", "RateUnit", "MemberList", RO, "A,W", values=("A", "W"),
        constant=True),
    Row("SmartChargingCtrlr", "ExternalControlSignalsEnabled", "boolean", RO, "false"),
    Row("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", "boolean", RO, "false"),
    Row("SmartChargingCtrlr", "Phases3to1", "boolean", RO, "false", constant=True),
    Row("ISO15118Ctrlr", "PnCEnabled", "boolean", RO, "false"),
    Row("ISO15118Ctrlr", "ContractValidationOffline", "boolean", RW, "true"),
    Row("ISO15118Ctrlr", "SeccId", "string", RO, Arg.IDENTITY, max_limit=48),
    Row("ChargingStation", "Available", "boolean", RO, "true", persistent=False),
    Row("ChargingStation", "AvailabilityState", "OptionList", RO, "Available",
        values=AVAILABILITY, persistent=False),
    # AC phases of the grid connection (see rating_values)
    Row("ChargingStation", "SupplyPhases", "integer", RO, "3", min_limit=0, max_limit=3,
        persistent=False),
)

EVSE_VARIABLES: tuple[Row, ...] = (
    Row("EVSE", "Available", "boolean", RO, "true", persistent=False),
    Row("EVSE", "AvailabilityState", "OptionList", RO, "Available",
        values=AVAILABILITY, persistent=False),
    # The power flowing now (W, negative: discharging), from the meter samples.
    Row("EVSE", "Power", "decimal", RO, "0", unit="W", persistent=False),
    # AC phases the EVSE uses (0: DC), from its rating (see rating_values).
    Row("EVSE", "SupplyPhases", "integer", RO, "3", min_limit=0, max_limit=3,
        persistent=False),
    Row("V2XChargingCtrlr", "Enabled", "boolean", RO, Arg.V2X_ENABLED),
    Row("V2XChargingCtrlr", "SupportedOperationModes", "MemberList", RO, Arg.V2X_OPERATION_MODES,
        values=_V2X_OPERATION_MODES),
    Row("V2XChargingCtrlr", "SupportedEnergyTransferModes", "MemberList", RO,
        Arg.V2X_ENERGY_TRANSFER_MODES, values=_ENERGY_TRANSFER_MODES),
)

CONNECTOR_VARIABLES: tuple[Row, ...] = (
    Row("Connector", "Available", "boolean", RO, "true", persistent=False),
    Row("Connector", "AvailabilityState", "OptionList", RO, "Available",
        values=AVAILABILITY, persistent=False),
    # ConnectorEnumType: the configured connector type (EvseRating), else Unknown.
    Row("Connector", "ConnectorType", "OptionList", RO, "Unknown", values=CONNECTOR_TYPES,
        persistent=False),
    Row("Connector", "SupplyPhases", "integer", RO, "3", min_limit=0, max_limit=3,
        persistent=False),
)
# fmt: on


#: (component, evse id, connector id, variable, value) of a rating-derived value
RatingValue = tuple[str, int | None, int | None, str, str]


def rating_values(
    evse_connectors: Mapping[int, int], ratings: Mapping[int, EvseRating]
) -> list[RatingValue]:
    """The SupplyPhases values each EVSE's rating gives (Appendix 3: AC phases, 0 for
    DC; the station's is the most any AC EVSE uses, 3 when all are DC) and each
    connector's configured ConnectorType."""
    out: list[RatingValue] = []
    ac_phases = []
    for evse_id, connectors in sorted(evse_connectors.items()):
        rating = ratings.get(evse_id, EvseRating())
        phases = 0 if rating.dc else rating.phases
        if not rating.dc:
            ac_phases.append(phases)
        out.append(("EVSE", evse_id, None, "SupplyPhases", str(phases)))
        out += [
            ("Connector", evse_id, connector_id, "SupplyPhases", str(phases))
            for connector_id in range(1, connectors + 1)
        ]
        out += [
            ("Connector", evse_id, connector_id, "ConnectorType", kind)
            for connector_id, kind in enumerate(rating.connector_types[:connectors], start=1)
            if kind in CONNECTOR_TYPES  # anything else stays Unknown (OptionList)
        ]
    out.append(("ChargingStation", None, None, "SupplyPhases", str(max(ac_phases, default=3))))
    return out
