"""Charging profiles from the CSMS, checked at the edge (OCPP 2.0.1 / 2.1 use case K01), sans-I/O.

:func:`parse_profile` turns one ``ChargingProfileType`` JSON object of a
SetChargingProfileRequest into the frozen :mod:`.model` values, or raises
:class:`ProfileRejected`; :func:`check_install` then checks it against the
profiles already installed and the running transactions.  The caller answers
``Rejected`` with ``statusInfo.reasonCode = exc.reason_code`` (see
:meth:`ProfileRejected.status_info`), or installs the profile in the store.

Nothing here trusts the JSON schema: every field is type- and range-checked
again, so a hostile CSMS cannot get ``10**400``, ``1e308``, ``NaN`` or a
megabyte of periods past it.  A number of the 2.1 features the model cannot
represent is refused rather than silently dropped.

Rules, in the order they are checked
------------------------------------
=====================================================================  ===================
rule                                                                   reasonCode
=====================================================================  ===================
fields: only those of the version's ChargingProfileType (schema,       InvalidValue
  ``additionalProperties: false``); right JSON types; enums known;
  RFC 3339 timestamps between 1970 and 9999
required fields present (schema ``required``)                          MissingParam
evseId 0..evse_count (K01.FR.28)                                       UnknownEvse
id 0..2^31-1 (negative ids are left to external constraints,           ValueOutOfRange
  OCPP 2.1 K11.FR.06 note); every integer 0..2^31-1; limits, setpoints
  and minChargingRate finite with magnitude <= 1e7
stackLevel 0..ProfileStackLevel                                        InvalidStackLevel
ChargingStationExternalConstraints never from the CSMS (K01.FR.22)     InvalidValue
PriorityCharging / LocalGeneration / Dynamic only in 2.1 (2.0.1 enums) InvalidValue
ChargingStationMaxProfile only for evseId 0 (it is station-wide,       InvalidValue
  SetChargingProfileRequest.evseId)
TxProfile not for evseId 0 (K01.FR.16)                                 InvalidValue
TxProfile needs a transactionId (guards K01.FR.03)                     MissingParam
transactionId only in a TxProfile (ChargingProfileType.transactionId), InvalidValue
  at most 36 characters
Dynamic: UpdateDynamicSchedule is not implemented (K01.FR.121)         UnsupportedParam
ChargingStationMaxProfile not Relative (K01.FR.38)                     InvalidProfile
Recurring needs recurrencyKind                                         MissingParam
2.1 maxOfflineDuration / invalidAfterOfflineDuration = true            UnsupportedParam
  (the model has no offline validity)
2.1 dynUpdateInterval / dynUpdateTime only with Dynamic (K01.FR.122)   InvalidProfile
validTo after validFrom, validTo not passed yet                        InvalidProfile
one chargingSchedule; up to 3 only for a TxProfile (ISO 15118 offers,  TooManyElements
  K15.FR.22)
chargingRateUnit in SmartChargingCtrlr.RateUnit (K01.FR.26)            UnsupportedRateUnit
startSchedule present for Absolute / Recurring (K01.FR.40), absent     InvalidSchedule
  for Relative (K01.FR.41)
PriorityCharging schedules have no duration (guards K01.FR.73)         InvalidSchedule
2.1 limitAtSoC (K01.FR.125), useLocalTime (K01.FR.123),                UnsupportedParam
  randomizedDelay (K01.FR.124) are not supported
2.1 randomizedDelay only for TxProfile / TxDefaultProfile (K01.FR.95)  InvalidSchedule
periods: at least one, at most PeriodsPerSchedule                      InvalidSchedule /
                                                                       TooManyElements
first startPeriod 0 (K01.FR.31), startPeriods increasing (K01.FR.35)   InvalidSchedule
2.1 operationMode allowed for the purpose (K01.FR.111..114) and        InvalidOperationMode
  supported (K01.FR.115)
2.1 operationMode other than ChargingOnly / CentralSetpoint            UnsupportedParam
  (the model keeps no mode)
2.1 limit_L2/L3 outside a TxProfile or without limit                   PhaseConflict
  (K01.FR.143/144/146); per-phase values, setpointReactive, V2X curves
  and v2xBaseline otherwise                                            UnsupportedParam
2.1 evseSleep = true (K01.FR.126: only in mode Idle)                   InvalidSchedule
limit present (2.0.1 schema; 2.1 ChargingOnly), setpoint present in    MissingParam
  CentralSetpoint; setpoint only in CentralSetpoint                    InvalidSchedule
negative limit = 2.0.1-style discharge limit, not together with        InvalidSchedule
  dischargeLimit; dischargeLimit <= 0 (2.1 schema)                     ValueOutOfRange
numberPhases 1..3; phaseToUse 1..3 only with numberPhases = 1          ValueOutOfRange /
  (K01.FR.19) and ACPhaseSwitchingSupported (K01.FR.20)                InvalidSchedule
=====================================================================  ===================

:func:`check_install` (the profile is already parsed):

=====================================================================  ===================
the id of an installed ChargingStationExternalConstraints profile      DuplicateProfile
  cannot be replaced by the CSMS (K01.FR.05 precondition and note)
TxProfile: that transaction runs on that EVSE (K01.FR.09, K01.FR.33)   TxNotFound
another id, same stackLevel + transactionId, TxProfile (guards         DuplicateProfile
  K01.FR.39)
another id, same stackLevel + purpose + evseId, overlapping validity   DuplicateProfile
  (guards K01.FR.06)
TxDefaultProfile stackLevel used by another one on evse 0 resp. on an  DuplicateProfile
  EVSE (K01.FR.52/53)
room for one more profile (SmartChargingCtrlr.Entries); a replacement  OutOfStorage
  (same id, K01.FR.05) needs none
=====================================================================  ===================

The reason codes are those of the OCPP 2.0.1 reason-code list plus the 2.1
``InvalidOperationMode`` and ``PhaseConflict`` named by K01.FR.114/115/144.

Readings of the standard
------------------------
* A ``startSchedule``-less Absolute profile is refused (K01.FR.40) rather than
  anchored at its time of receipt: the 2.0.1 field description ("relative to
  start of charging") and the receipt-time reading disagree, so neither is guessed.
* A negative ``limit`` is accepted in 2.1 too: its ChargingSchedulePeriodType
  keeps it "for backwards compatibility with older systems that use a negative
  value to specify a discharging limit".  A ``dischargeLimit`` is a cap, not a
  command, so it is accepted in ChargingOnly periods as well.
* Fields that do not limit power are accepted and not kept: ``customData``,
  ``salesTariff``, 2.1 price schedules and signatures, ``powerTolerance``,
  ``preconditioningRequest``, ``useLocalTime`` / ``invalidAfterOfflineDuration``
  = false, ``randomizedDelay`` = 0, a ``recurrencyKind`` in a non-Recurring profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, NoReturn, TypeVar

from chargepoint.errors import RemoteProtocolError
from chargepoint.ocpp.outbox import format_timestamp as rfc3339_ms
from chargepoint.ocpp.rpc import ProtocolVersion
from chargepoint.smartcharging.model import (
    ChargingProfile,
    ChargingSchedule,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
)

__all__ = [
    "CENTRAL_SETPOINT",
    "CHARGING_ONLY",
    "INT32_MAX",
    "MAX_RATE",
    "MAX_TRANSACTION_ID_LENGTH",
    "ProfileLimits",
    "ProfileRejected",
    "ReasonCode",
    "check_install",
    "epoch_s_from_rfc3339",
    "parse_profile",
    "rfc3339_ms",
    "rfc3339_us",
]

#: Largest id, startPeriod, duration ... (OCPP integers are 32-bit for every CSMS).
INT32_MAX = 2**31 - 1
#: Largest magnitude of a limit, setpoint or minChargingRate (10 MW or 10 MA: no EVSE).
MAX_RATE = 1e7
#: ChargingProfileType.transactionId maxLength.
MAX_TRANSACTION_ID_LENGTH = 36
#: K15.FR.22: an ISO 15118 offer has up to three schedules (schema ``maxItems``).
MAX_SCHEDULES_TX = 3
#: Timestamps accepted: 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z.
MAX_EPOCH_S = 253_402_300_799.999999
#: Longer "timestamps" are not parsed at all.
_MAX_TIMESTAMP_CHARS = 64
#: additionalInfo maxLength of StatusInfoType in 2.0.1 (2.1: 1024).
_MAX_ADDITIONAL_INFO = 512


class ReasonCode(StrEnum):
    """``statusInfo.reasonCode`` of a rejected SetChargingProfile (<= 20 characters)."""

    INVALID_VALUE = "InvalidValue"
    MISSING_PARAM = "MissingParam"
    VALUE_OUT_OF_RANGE = "ValueOutOfRange"
    UNKNOWN_EVSE = "UnknownEvse"
    INVALID_STACK_LEVEL = "InvalidStackLevel"
    INVALID_PROFILE = "InvalidProfile"
    INVALID_SCHEDULE = "InvalidSchedule"
    TOO_MANY_ELEMENTS = "TooManyElements"
    UNSUPPORTED_RATE_UNIT = "UnsupportedRateUnit"
    UNSUPPORTED_PARAM = "UnsupportedParam"
    INVALID_OPERATION_MODE = "InvalidOperationMode"
    PHASE_CONFLICT = "PhaseConflict"
    TX_NOT_FOUND = "TxNotFound"
    DUPLICATE_PROFILE = "DuplicateProfile"
    OUT_OF_STORAGE = "OutOfStorage"


class ProfileRejected(RemoteProtocolError):  # noqa: N818 - named after the status it causes
    """The CSMS sent a charging profile this station must or will not install."""

    def __init__(self, reason_code: str, detail: str) -> None:
        self.reason_code = reason_code
        self.detail = detail
        super().__init__(f"{reason_code}: {detail}")

    def status_info(self) -> dict[str, str]:
        """``statusInfo`` of the SetChargingProfileResponse (valid for 2.0.1 and 2.1)."""
        return {
            "reasonCode": self.reason_code,
            "additionalInfo": self.detail[:_MAX_ADDITIONAL_INFO],
        }


@dataclass(frozen=True, slots=True)
class ProfileLimits:
    """What this station accepts (device model values, read by the caller)."""

    #: number of EVSEs; evseId 1..evse_count exist (K01.FR.28)
    evse_count: int
    #: SmartChargingCtrlr.ProfileStackLevel
    max_stack_level: int
    #: SmartChargingCtrlr.PeriodsPerSchedule
    periods_per_schedule: int
    #: SmartChargingCtrlr.RateUnit (K01.FR.26)
    rate_units: frozenset[RateUnit] = frozenset({RateUnit.A, RateUnit.W})
    #: SmartChargingCtrlr.ACPhaseSwitchingSupported (K01.FR.20)
    ac_phase_switching: bool = False
    #: V2XChargingCtrlr.SupportedOperationModes (2.1, K01.FR.115); ChargingOnly is implied
    operation_modes: frozenset[str] = frozenset({"ChargingOnly"})


# --------------------------------------------------------------------------- timestamps


def epoch_s_from_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp (no zone: UTC); :class:`ValueError` otherwise.

    Same reading as :func:`chargepoint.ocpp.station.parse_timestamp`, kept here so
    that station.py can import this package without an import cycle.  Only
    1970..9999 is accepted, so that every result can be formatted again.
    """
    if len(text) > _MAX_TIMESTAMP_CHARS:
        raise ValueError("timestamp too long")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        epoch_s = moment.timestamp()
    except OverflowError as exc:
        raise ValueError("timestamp out of range") from exc
    if not 0.0 <= epoch_s <= MAX_EPOCH_S:
        raise ValueError("timestamp before 1970 or after 9999")
    return epoch_s


def rfc3339_us(epoch_s: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: gives back the float :func:`epoch_s_from_rfc3339` read.

    Exact while a float resolves a microsecond (before the year 2242), later within 16 us.
    """
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- field readers

_E = TypeVar("_E", bound=Enum)


def _reject(code: ReasonCode, detail: str) -> NoReturn:
    raise ProfileRejected(code, detail)


def _show(value: object) -> str:
    """A short description of a peer value (never the 10**400 digits themselves)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a huge integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _reject(ReasonCode.INVALID_VALUE, f"{where}: not an object")
    return value


def _array(value: object, where: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        _reject(ReasonCode.INVALID_VALUE, f"{where}: not an array")
    return value


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            _reject(ReasonCode.INVALID_VALUE, f"{where}: unknown field {_show(key)}")


def _require(obj: Mapping[str, Any], key: str, where: str) -> object:
    if key not in obj:
        _reject(ReasonCode.MISSING_PARAM, f"{where}.{key} missing")
    return obj[key]


def _integer(
    value: object,
    where: str,
    low: int,
    high: int,
    code: ReasonCode = ReasonCode.VALUE_OUT_OF_RANGE,
) -> int:
    """An integer ``low..high``; an integral JSON float (``5.0``) counts as one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        _reject(ReasonCode.INVALID_VALUE, f"{where}: not an integer: {_show(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            _reject(code, f"{where}: {_show(value)} not finite")
        if not value.is_integer():
            _reject(ReasonCode.INVALID_VALUE, f"{where}: not an integer: {_show(value)}")
    if not low <= value <= high:
        _reject(code, f"{where}: {_show(value)} outside {low}..{high}")
    return int(value)


def _number(value: object, where: str, low: float, high: float) -> float:
    """A finite number ``low..high`` as float (huge integers compared before conversion)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        _reject(ReasonCode.INVALID_VALUE, f"{where}: not a number: {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        _reject(ReasonCode.VALUE_OUT_OF_RANGE, f"{where}: {_show(value)} not finite")
    if not low <= value <= high:
        _reject(ReasonCode.VALUE_OUT_OF_RANGE, f"{where}: {_show(value)} outside {low}..{high}")
    return float(value) + 0.0  # -0.0 -> 0.0


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        _reject(ReasonCode.INVALID_VALUE, f"{where}: not a boolean: {_show(value)}")
    return value


def _string(value: object, where: str, max_length: int) -> str:
    if not isinstance(value, str):
        _reject(ReasonCode.INVALID_VALUE, f"{where}: not a string: {_show(value)}")
    if len(value) > max_length:
        _reject(ReasonCode.INVALID_VALUE, f"{where}: longer than {max_length} characters")
    return value


def _enum(cls: type[_E], value: object, where: str) -> _E:
    if isinstance(value, str):
        for member in cls:
            if member.value == value:
                return member
    _reject(ReasonCode.INVALID_VALUE, f"{where}: unknown value {_show(value)}")


def _timestamp(value: object, where: str) -> float:
    text = _string(value, where, _MAX_TIMESTAMP_CHARS)
    try:
        return epoch_s_from_rfc3339(text)
    except ValueError as exc:
        _reject(ReasonCode.INVALID_VALUE, f"{where}: {exc}: {_show(text)}")


# --------------------------------------------------------------------------- field sets

_PROFILE_201 = frozenset(
    {
        "customData",
        "id",
        "stackLevel",
        "chargingProfilePurpose",
        "chargingProfileKind",
        "recurrencyKind",
        "validFrom",
        "validTo",
        "chargingSchedule",
        "transactionId",
    }
)
_PROFILE_21 = _PROFILE_201 | {
    "maxOfflineDuration",
    "invalidAfterOfflineDuration",
    "dynUpdateInterval",
    "dynUpdateTime",
    "priceScheduleSignature",
}
_SCHEDULE_201 = frozenset(
    {
        "customData",
        "id",
        "startSchedule",
        "duration",
        "chargingRateUnit",
        "chargingSchedulePeriod",
        "minChargingRate",
        "salesTariff",
    }
)
_SCHEDULE_21 = _SCHEDULE_201 | {
    "limitAtSoC",
    "powerTolerance",
    "signatureId",
    "digestValue",
    "useLocalTime",
    "randomizedDelay",
    "absolutePriceSchedule",
    "priceLevelSchedule",
}
_PERIOD_201 = frozenset({"customData", "startPeriod", "limit", "numberPhases", "phaseToUse"})
#: 2.1 period fields the model cannot represent
_PERIOD_21_UNSUPPORTED = frozenset(
    {
        "dischargeLimit_L2",
        "dischargeLimit_L3",
        "setpoint_L2",
        "setpoint_L3",
        "setpointReactive",
        "setpointReactive_L2",
        "setpointReactive_L3",
        "v2xBaseline",
        "v2xFreqWattCurve",
        "v2xSignalWattCurve",
    }
)
_PERIOD_21 = (
    _PERIOD_201
    | _PERIOD_21_UNSUPPORTED
    | {
        "limit_L2",
        "limit_L3",
        "dischargeLimit",
        "setpoint",
        "preconditioningRequest",
        "evseSleep",
        "operationMode",
    }
)

CHARGING_ONLY = "ChargingOnly"
CENTRAL_SETPOINT = "CentralSetpoint"
#: OperationModeEnumType (2.1)
_OPERATION_MODES = frozenset(
    {
        "Idle",
        CHARGING_ONLY,
        CENTRAL_SETPOINT,
        "ExternalSetpoint",
        "ExternalLimits",
        "CentralFrequency",
        "LocalFrequency",
        "LocalLoadBalancing",
    }
)
#: OCPP 2.1 K01.FR.111 / K01.FR.113: modes a purpose allows (purposes not listed: all)
_MODES_BY_PURPOSE: dict[Purpose, frozenset[str]] = {
    Purpose.CHARGING_STATION_MAX_PROFILE: frozenset({CHARGING_ONLY}),
    Purpose.PRIORITY_CHARGING: frozenset({CHARGING_ONLY}),
    Purpose.LOCAL_GENERATION: frozenset({CHARGING_ONLY, "ExternalLimits"}),
}
_V21_ONLY_PURPOSES = frozenset({Purpose.PRIORITY_CHARGING, Purpose.LOCAL_GENERATION})


# --------------------------------------------------------------------------- parse_profile


def parse_profile(
    payload: Mapping[str, Any],
    evse_id: int,
    version: ProtocolVersion,
    *,
    now_utc_s: float,
    limits: ProfileLimits,
) -> ChargingProfile:
    """The ``chargingProfile`` of a SetChargingProfileRequest for ``evse_id``, checked.

    ``now_utc_s`` is the station's UTC time (a validTo before it is refused).
    Raises :class:`ProfileRejected`; never anything else on peer input.
    """
    v21 = version is ProtocolVersion.V21
    where = "chargingProfile"
    profile = _object(payload, where)
    _check_keys(profile, _PROFILE_21 if v21 else _PROFILE_201, where)
    evse = _integer(evse_id, "evseId", 0, INT32_MAX)
    if evse > limits.evse_count:
        # OCPP 2.0.1 K01.FR.28: the EVSE must exist
        _reject(ReasonCode.UNKNOWN_EVSE, f"evseId {evse}: no such EVSE")
    profile_id = _integer(_require(profile, "id", where), f"{where}.id", 0, INT32_MAX)
    stack_level = _integer(
        _require(profile, "stackLevel", where),
        f"{where}.stackLevel",
        0,
        limits.max_stack_level,
        ReasonCode.INVALID_STACK_LEVEL,
    )
    purpose = _enum(
        Purpose,
        _require(profile, "chargingProfilePurpose", where),
        f"{where}.chargingProfilePurpose",
    )
    kind = _enum(
        Kind, _require(profile, "chargingProfileKind", where), f"{where}.chargingProfileKind"
    )

    if purpose is Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS:
        # OCPP 2.0.1 K01.FR.22: only an external system sets this purpose, never the CSMS
        _reject(ReasonCode.INVALID_VALUE, "ChargingStationExternalConstraints is not set by CSMS")
    if not v21 and (purpose in _V21_ONLY_PURPOSES or kind is Kind.DYNAMIC):
        # OCPP 2.0.1 ChargingProfilePurposeEnumType / ChargingProfileKindEnumType
        _reject(ReasonCode.INVALID_VALUE, f"{purpose.value} {kind.value} is OCPP 2.1 only")
    if purpose is Purpose.CHARGING_STATION_MAX_PROFILE and evse != 0:
        # OCPP 2.0.1 SetChargingProfileRequest.evseId: the station maximum is set on evse 0
        _reject(ReasonCode.INVALID_VALUE, "ChargingStationMaxProfile needs evseId 0")
    if purpose is Purpose.TX_PROFILE and evse == 0:
        # OCPP 2.0.1 K01.FR.16: a TxProfile only for an EVSE
        _reject(ReasonCode.INVALID_VALUE, "TxProfile needs evseId > 0")

    transaction_id: str | None = None
    if "transactionId" in profile:
        transaction_id = _string(
            profile["transactionId"], f"{where}.transactionId", MAX_TRANSACTION_ID_LENGTH
        )
        if purpose is not Purpose.TX_PROFILE:
            # OCPP 2.0.1 ChargingProfileType.transactionId: "SHALL only be included" in a TxProfile
            _reject(ReasonCode.INVALID_VALUE, "transactionId only in a TxProfile")
    elif purpose is Purpose.TX_PROFILE:
        # OCPP 2.0.1 K01.FR.03: the CSMS includes the transactionId of a TxProfile
        _reject(ReasonCode.MISSING_PARAM, "TxProfile without transactionId")

    if kind is Kind.DYNAMIC:
        # OCPP 2.1 K01.FR.121: dynamic profiles not supported (no UpdateDynamicSchedule yet)
        _reject(ReasonCode.UNSUPPORTED_PARAM, "Dynamic profiles are not supported")
    if kind is Kind.RELATIVE and purpose is Purpose.CHARGING_STATION_MAX_PROFILE:
        # OCPP 2.0.1 K01.FR.38
        _reject(ReasonCode.INVALID_PROFILE, "ChargingStationMaxProfile cannot be Relative")

    recurrency: Recurrency | None = None
    if kind is Kind.RECURRING:
        # OCPP 2.0.1 K01: a Recurring profile says whether it recurs daily or weekly
        recurrency = _enum(
            Recurrency, _require(profile, "recurrencyKind", where), f"{where}.recurrencyKind"
        )
    elif "recurrencyKind" in profile:
        _enum(Recurrency, profile["recurrencyKind"], f"{where}.recurrencyKind")  # meaningless

    if v21:
        _check_profile_21(profile, where)

    valid_from = _optional_time(profile, "validFrom", where)
    valid_to = _optional_time(profile, "validTo", where)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        _reject(ReasonCode.INVALID_PROFILE, "validTo not after validFrom")
    if valid_to is not None and valid_to <= now_utc_s:
        _reject(ReasonCode.INVALID_PROFILE, "validTo has passed")

    raw_schedules = _array(
        _require(profile, "chargingSchedule", where), f"{where}.chargingSchedule"
    )
    if not raw_schedules:
        _reject(ReasonCode.INVALID_PROFILE, "no chargingSchedule")
    # OCPP 2.0.1 K15.FR.22: several schedules are an ISO 15118 offer, only in a TxProfile
    most = MAX_SCHEDULES_TX if purpose is Purpose.TX_PROFILE else 1
    if len(raw_schedules) > most:
        _reject(
            ReasonCode.TOO_MANY_ELEMENTS, f"more than {most} chargingSchedule for {purpose.value}"
        )
    schedules = tuple(
        _parse_schedule(
            raw,
            f"{where}.chargingSchedule[{i}]",
            v21=v21,
            purpose=purpose,
            kind=kind,
            limits=limits,
        )
        for i, raw in enumerate(raw_schedules)
    )
    return ChargingProfile(
        id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        schedules=schedules,
        evse_id=evse,
        recurrency=recurrency,
        valid_from_s=valid_from,
        valid_to_s=valid_to,
        transaction_id=transaction_id,
    )


def _optional_time(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    return _timestamp(obj[key], f"{where}.{key}") if key in obj else None


def _check_profile_21(profile: Mapping[str, Any], where: str) -> None:
    """2.1 profile fields: refused when the model cannot honour them."""
    if "maxOfflineDuration" in profile:
        _integer(profile["maxOfflineDuration"], f"{where}.maxOfflineDuration", 0, INT32_MAX)
        # OCPP 2.1 K01 (offline validity): the model cannot drop a profile while offline
        _reject(ReasonCode.UNSUPPORTED_PARAM, "maxOfflineDuration is not supported")
    if "invalidAfterOfflineDuration" in profile and _boolean(
        profile["invalidAfterOfflineDuration"], f"{where}.invalidAfterOfflineDuration"
    ):
        _reject(ReasonCode.UNSUPPORTED_PARAM, "invalidAfterOfflineDuration is not supported")
    if "dynUpdateInterval" in profile or "dynUpdateTime" in profile:
        # OCPP 2.1 K01.FR.122 (Dynamic itself is refused before this)
        _reject(ReasonCode.INVALID_PROFILE, "dynUpdateInterval/dynUpdateTime only with Dynamic")


def _parse_schedule(
    raw: object,
    where: str,
    *,
    v21: bool,
    purpose: Purpose,
    kind: Kind,
    limits: ProfileLimits,
) -> ChargingSchedule:
    schedule = _object(raw, where)
    _check_keys(schedule, _SCHEDULE_21 if v21 else _SCHEDULE_201, where)
    schedule_id = _integer(_require(schedule, "id", where), f"{where}.id", 0, INT32_MAX)
    unit = _enum(
        RateUnit, _require(schedule, "chargingRateUnit", where), f"{where}.chargingRateUnit"
    )
    if unit not in limits.rate_units:
        # OCPP 2.0.1 K01.FR.26: only the units of SmartChargingCtrlr.RateUnit
        _reject(ReasonCode.UNSUPPORTED_RATE_UNIT, f"chargingRateUnit {unit.value} not supported")

    start_s: float | None = None
    if "startSchedule" in schedule:
        if kind is Kind.RELATIVE:
            # OCPP 2.0.1 K01.FR.41
            _reject(ReasonCode.INVALID_SCHEDULE, "a Relative profile has no startSchedule")
        start_s = _timestamp(schedule["startSchedule"], f"{where}.startSchedule")
    elif kind in (Kind.ABSOLUTE, Kind.RECURRING):
        # OCPP 2.0.1 K01.FR.40
        _reject(ReasonCode.INVALID_SCHEDULE, f"a {kind.value} profile needs startSchedule")

    duration_s: int | None = None
    if "duration" in schedule:
        duration_s = _integer(schedule["duration"], f"{where}.duration", 0, INT32_MAX)
        if purpose is Purpose.PRIORITY_CHARGING:
            # OCPP 2.1 K01.FR.73 (CSMS) guarded: PriorityCharging lasts until the transaction ends
            _reject(ReasonCode.INVALID_SCHEDULE, "a PriorityCharging schedule has no duration")
    min_rate: float | None = None
    if "minChargingRate" in schedule:
        min_rate = _number(schedule["minChargingRate"], f"{where}.minChargingRate", 0.0, MAX_RATE)
    if v21:
        _check_schedule_21(schedule, where, purpose)

    raw_periods = _array(
        _require(schedule, "chargingSchedulePeriod", where), f"{where}.chargingSchedulePeriod"
    )
    if not raw_periods:
        _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: no chargingSchedulePeriod")
    if len(raw_periods) > limits.periods_per_schedule:
        # SmartChargingCtrlr.PeriodsPerSchedule
        _reject(
            ReasonCode.TOO_MANY_ELEMENTS,
            f"{where}: more than {limits.periods_per_schedule} periods",
        )
    periods: list[SchedulePeriod] = []
    for i, raw_period in enumerate(raw_periods):
        period = _parse_period(
            raw_period, f"{where}.chargingSchedulePeriod[{i}]", v21, purpose, limits
        )
        if i == 0 and period.start_s != 0:
            # OCPP 2.0.1 K01.FR.31
            _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: first startPeriod is not 0")
        if periods and period.start_s <= periods[-1].start_s:
            # OCPP 2.0.1 K01.FR.35
            _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: startPeriod not increasing")
        periods.append(period)
    return ChargingSchedule(
        id=schedule_id,
        rate_unit=unit,
        periods=tuple(periods),
        start_s=start_s,
        duration_s=duration_s,
        min_charging_rate=min_rate,
    )


def _check_schedule_21(schedule: Mapping[str, Any], where: str, purpose: Purpose) -> None:
    if "limitAtSoC" in schedule:
        # OCPP 2.1 K01.FR.125: limitAtSoC not supported
        _reject(ReasonCode.UNSUPPORTED_PARAM, "limitAtSoC is not supported")
    if "useLocalTime" in schedule and _boolean(schedule["useLocalTime"], f"{where}.useLocalTime"):
        # OCPP 2.1 K01.FR.123: useLocalTime not supported
        _reject(ReasonCode.UNSUPPORTED_PARAM, "useLocalTime is not supported")
    if "randomizedDelay" in schedule:
        delay = _integer(schedule["randomizedDelay"], f"{where}.randomizedDelay", 0, INT32_MAX)
        if delay > 0:
            if purpose not in (Purpose.TX_PROFILE, Purpose.TX_DEFAULT_PROFILE):
                # OCPP 2.1 K01.FR.95
                _reject(ReasonCode.INVALID_SCHEDULE, "randomizedDelay only in Tx(Default)Profile")
            # OCPP 2.1 K01.FR.124: randomizedDelay not supported
            _reject(ReasonCode.UNSUPPORTED_PARAM, "randomizedDelay is not supported")


def _parse_period(
    raw: object,
    where: str,
    v21: bool,
    purpose: Purpose,
    limits: ProfileLimits,
) -> SchedulePeriod:
    period = _object(raw, where)
    _check_keys(period, _PERIOD_21 if v21 else _PERIOD_201, where)
    start = _integer(_require(period, "startPeriod", where), f"{where}.startPeriod", 0, INT32_MAX)
    mode = _check_period_21(period, where, purpose, limits) if v21 else CHARGING_ONLY

    limit: float | None = None
    discharge: float | None = None
    if v21 and "dischargeLimit" in period:
        # OCPP 2.1 ChargingSchedulePeriodType.dischargeLimit: "maximum": 0; kept as magnitude
        discharge = abs(_number(period["dischargeLimit"], f"{where}.dischargeLimit", -MAX_RATE, 0))
    if "limit" in period:
        value = _number(period["limit"], f"{where}.limit", -MAX_RATE, MAX_RATE)
        if value < 0.0:
            # 2.0.1-era discharge limit (2.1 ChargingSchedulePeriodType.limit keeps it)
            if discharge is not None:
                _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: negative limit and dischargeLimit")
            limit, discharge = 0.0, -value
        else:
            limit = value
    elif not v21 or mode == CHARGING_ONLY:
        # OCPP 2.0.1 schema "required"; 2.1: limit is required in ChargingOnly
        _reject(ReasonCode.MISSING_PARAM, f"{where}.limit missing")

    setpoint: float | None = None
    if v21 and "setpoint" in period:
        setpoint = _number(period["setpoint"], f"{where}.setpoint", -MAX_RATE, MAX_RATE)
        if mode != CENTRAL_SETPOINT:
            # OCPP 2.1 ChargingSchedulePeriodType.setpoint: only with a set-point operationMode
            _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: setpoint needs CentralSetpoint")
    elif mode == CENTRAL_SETPOINT:
        # OCPP 2.1 Q04: CentralSetpoint periods carry the setpoint
        _reject(ReasonCode.MISSING_PARAM, f"{where}.setpoint missing")

    number_phases: int | None = None
    if "numberPhases" in period:
        number_phases = _integer(period["numberPhases"], f"{where}.numberPhases", 1, 3)
    phase_to_use: int | None = None
    if "phaseToUse" in period:
        phase_to_use = _integer(period["phaseToUse"], f"{where}.phaseToUse", 1, 3)
        if number_phases != 1:
            # OCPP 2.0.1 K01.FR.19
            _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: phaseToUse needs numberPhases 1")
        if not limits.ac_phase_switching:
            # OCPP 2.0.1 K01.FR.20
            _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: phase switching not supported")
    return SchedulePeriod(
        start_s=start,
        limit=limit,
        number_phases=number_phases,
        phase_to_use=phase_to_use,
        discharge_limit=discharge,
        setpoint=setpoint,
    )


def _check_period_21(
    period: Mapping[str, Any], where: str, purpose: Purpose, limits: ProfileLimits
) -> str:
    """The 2.1 fields of a period the model has no place for; returns the operationMode."""
    mode = CHARGING_ONLY
    if "operationMode" in period:
        mode = _string(period["operationMode"], f"{where}.operationMode", 20)
        if mode not in _OPERATION_MODES:
            _reject(ReasonCode.INVALID_VALUE, f"{where}.operationMode: unknown {_show(mode)}")
    allowed = _MODES_BY_PURPOSE.get(purpose)
    if allowed is not None and mode not in allowed:
        # OCPP 2.1 K01.FR.111 / K01.FR.113 / K01.FR.114
        _reject(ReasonCode.INVALID_OPERATION_MODE, f"{mode} not allowed in {purpose.value}")
    if mode != CHARGING_ONLY and mode not in limits.operation_modes:
        # OCPP 2.1 K01.FR.115: not in V2XChargingCtrlr.SupportedOperationModes
        _reject(ReasonCode.INVALID_OPERATION_MODE, f"operationMode {mode} not supported")
    if mode not in (CHARGING_ONLY, CENTRAL_SETPOINT):
        _reject(ReasonCode.UNSUPPORTED_PARAM, f"operationMode {mode} is not implemented")
    for key in ("limit_L2", "limit_L3"):
        if key in period:
            if purpose is not Purpose.TX_PROFILE or "limit" not in period:
                # OCPP 2.1 K01.FR.143 / K01.FR.144 / K01.FR.146
                _reject(ReasonCode.PHASE_CONFLICT, f"{where}.{key} not allowed here")
            _reject(ReasonCode.UNSUPPORTED_PARAM, f"{where}.{key}: per-phase limits unsupported")
    for key in sorted(_PERIOD_21_UNSUPPORTED & period.keys()):
        _reject(ReasonCode.UNSUPPORTED_PARAM, f"{where}.{key} is not supported")
    if "evseSleep" in period and _boolean(period["evseSleep"], f"{where}.evseSleep"):
        # OCPP 2.1 K01.FR.126: evseSleep only in operationMode Idle
        _reject(ReasonCode.INVALID_SCHEDULE, f"{where}: evseSleep is not supported")
    if "preconditioningRequest" in period:
        _boolean(period["preconditioningRequest"], f"{where}.preconditioningRequest")
    return mode


# --------------------------------------------------------------------------- check_install


def _overlap(a: ChargingProfile, b: ChargingProfile) -> bool:
    """Whether the validity periods [validFrom, validTo) of ``a`` and ``b`` overlap."""
    a_from = -math.inf if a.valid_from_s is None else a.valid_from_s
    b_from = -math.inf if b.valid_from_s is None else b.valid_from_s
    a_to = math.inf if a.valid_to_s is None else a.valid_to_s
    b_to = math.inf if b.valid_to_s is None else b.valid_to_s
    return a_from < b_to and b_from < a_to


def check_install(
    profile: ChargingProfile,
    existing: Sequence[ChargingProfile],
    *,
    active_transaction_ids: Mapping[int, str],
    max_entries: int,
) -> None:
    """Whether ``profile`` (from :func:`parse_profile`) may join ``existing``.

    ``active_transaction_ids`` maps each EVSE with a running transaction to its
    transactionId; ``max_entries`` is the most profiles the station keeps.
    Raises :class:`ProfileRejected`.
    """
    replaced = next((p for p in existing if p.id == profile.id), None)
    if replaced is not None and replaced.purpose is Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS:
        # OCPP 2.0.1 K01.FR.05: only profiles that are not external constraints are replaced
        _reject(ReasonCode.DUPLICATE_PROFILE, f"id {profile.id} is an external constraint")

    if profile.purpose is Purpose.TX_PROFILE:
        running = active_transaction_ids.get(profile.evse_id)
        if running is None:
            # OCPP 2.0.1 K01.FR.09: no transaction on the EVSE
            _reject(ReasonCode.TX_NOT_FOUND, f"no transaction on EVSE {profile.evse_id}")
        if running != profile.transaction_id:
            # OCPP 2.0.1 K01.FR.33: transactionId not known on the EVSE
            _reject(ReasonCode.TX_NOT_FOUND, f"transaction not running on EVSE {profile.evse_id}")

    for other in existing:
        if other.id == profile.id or other.purpose is not profile.purpose:
            continue  # same id: replaced (OCPP 2.0.1 K01.FR.05)
        if other.stack_level != profile.stack_level:
            continue
        if profile.purpose is Purpose.TX_PROFILE:
            if other.transaction_id == profile.transaction_id:
                # OCPP 2.0.1 K01.FR.39 (CSMS) guarded
                _reject(
                    ReasonCode.DUPLICATE_PROFILE,
                    f"TxProfile {other.id} has this stackLevel for the transaction",
                )
        elif other.evse_id == profile.evse_id and _overlap(other, profile):
            # OCPP 2.0.1 K01.FR.06 (CSMS) guarded
            _reject(
                ReasonCode.DUPLICATE_PROFILE,
                f"profile {other.id} has this stackLevel and purpose in an overlapping period",
            )
        elif profile.purpose is Purpose.TX_DEFAULT_PROFILE and (
            (profile.evse_id == 0) != (other.evse_id == 0)
        ):
            # OCPP 2.0.1 K01.FR.52/53: a TxDefaultProfile stackLevel is either station-wide
            # (evse 0) or EVSE-specific, never both
            _reject(
                ReasonCode.DUPLICATE_PROFILE,
                f"TxDefaultProfile {other.id} on evse {other.evse_id} has this stackLevel",
            )

    kept = len(existing) - (1 if replaced is not None else 0)
    if kept + 1 > max_entries:
        # SmartChargingCtrlr.Entries: the station keeps at most max_entries profiles
        _reject(ReasonCode.OUT_OF_STORAGE, f"at most {max_entries} charging profiles")
