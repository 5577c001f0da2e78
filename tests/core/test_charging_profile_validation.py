"""SetChargingProfile checks (OCPP 2.0.1 / 2.1 K01): parse_profile and check_install.

Every rule test builds a whole SetChargingProfileRequest as the CSMS would send
it, checks that the request is valid against the version's JSON schema (so the
rule is one the schema cannot catch), then expects the documented reasonCode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from chargepoint.errors import RemoteProtocolError
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
from chargepoint.smartcharging.validation import (
    ProfileLimits,
    ProfileRejected,
    ReasonCode,
    check_install,
    parse_profile,
)
from tests.core.ocpp_schemas import assert_schema_valid, schema_errors

V201 = ProtocolVersion.V201
V21 = ProtocolVersion.V21
BOTH = (V201, V21)

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
T0 = "2025-06-15T16:00:00.000Z"
T0_S = 1_750_003_200.0
LIMITS = ProfileLimits(
    evse_count=2,
    max_stack_level=8,
    periods_per_schedule=24,
    operation_modes=frozenset({"ChargingOnly", "CentralSetpoint", "ExternalLimits"}),
)

Json = dict[str, Any]


# --------------------------------------------------------------------------- schemas


# --------------------------------------------------------------------------- builders


def period(start: int = 0, limit: float | None = 16.0, **extra: Any) -> Json:
    out: Json = {"startPeriod": start}
    if limit is not None:
        out["limit"] = limit
    return out | extra


def schedule(*periods: Json, **extra: Any) -> Json:
    return {
        "id": 1,
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": list(periods) or [period()],
    } | extra


def profile(*schedules: Json, **extra: Any) -> Json:
    return {
        "id": 7,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": list(schedules) or [schedule()],
    } | extra


def absolute(*schedules: Json, **extra: Any) -> Json:
    scheds = list(schedules) or [schedule(startSchedule=T0)]
    return profile(*scheds, chargingProfileKind="Absolute") | extra


def tx_profile(*schedules: Json, **extra: Any) -> Json:
    return profile(*schedules, chargingProfilePurpose="TxProfile", transactionId="T-1") | extra


def max_profile(**extra: Any) -> Json:
    return absolute(chargingProfilePurpose="ChargingStationMaxProfile") | extra


def request(charging_profile: Json, evse_id: int = 1) -> Json:
    return {"evseId": evse_id, "chargingProfile": charging_profile}


def parse(req: Json, version: ProtocolVersion, limits: ProfileLimits = LIMITS) -> ChargingProfile:
    return parse_profile(
        req["chargingProfile"], req["evseId"], version, now_utc_s=NOW, limits=limits
    )


def parse_valid(req: Json, version: ProtocolVersion, **kw: Any) -> ChargingProfile:
    assert_schema_valid(version, "SetChargingProfileRequest.json", req)
    return parse(req, version, **kw)


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("version", BOTH)
def test_relative_tx_default_profile_is_read(version: ProtocolVersion) -> None:
    req = request(profile(schedule(period(0, 16), period(600, 10, numberPhases=1))), evse_id=0)
    assert parse_valid(req, version) == ChargingProfile(
        id=7,
        stack_level=1,
        purpose=Purpose.TX_DEFAULT_PROFILE,
        kind=Kind.RELATIVE,
        schedules=(
            ChargingSchedule(
                1,
                RateUnit.A,
                (SchedulePeriod(0, 16.0), SchedulePeriod(600, 10.0, number_phases=1)),
            ),
        ),
        evse_id=0,
    )


@pytest.mark.parametrize("version", BOTH)
def test_absolute_profile_with_validity_and_recurring_profile(version: ProtocolVersion) -> None:
    req = request(
        absolute(
            schedule(period(), startSchedule=T0, duration=3600, minChargingRate=6.0),
            validFrom="2025-06-15T15:00:00Z",
            validTo="2025-06-16T15:00:00+02:00",
        )
    )
    got = parse_valid(req, version)
    assert got.valid_from_s == 1_749_999_600.0
    assert got.valid_to_s == 1_750_078_800.0
    assert got.schedules[0].start_s == T0_S
    assert got.schedules[0].duration_s == 3600
    assert got.schedules[0].min_charging_rate == 6.0

    weekly = request(absolute(chargingProfileKind="Recurring", recurrencyKind="Weekly"))
    assert parse_valid(weekly, version).recurrency is Recurrency.WEEKLY


@pytest.mark.parametrize("version", BOTH)
def test_negative_limit_is_a_discharge_limit(version: ProtocolVersion) -> None:
    got = parse_valid(request(profile(schedule(period(0, -11.5)))), version)
    assert got.schedules[0].periods[0] == SchedulePeriod(0, 0.0, discharge_limit=11.5)


def test_discharge_limit_and_setpoint_of_2_1() -> None:
    periods = [
        period(0, 16, dischargeLimit=-11),
        period(60, None, operationMode="CentralSetpoint", setpoint=-5000.0),
        period(120, 0, dischargeLimit=0),
    ]
    req = request(tx_profile(schedule(*periods, chargingRateUnit="W")))
    got = parse_valid(req, V21).schedules[0].periods
    assert got == (
        SchedulePeriod(0, 16.0, discharge_limit=11.0),
        SchedulePeriod(60, None, setpoint=-5000.0),
        SchedulePeriod(120, 0.0, discharge_limit=0.0),
    )


@pytest.mark.parametrize("version", BOTH)
def test_tx_profile_may_carry_three_schedules(version: ProtocolVersion) -> None:
    scheds = [schedule(id=i) for i in (1, 2, 3)]
    got = parse_valid(request(tx_profile(*scheds)), version)
    assert [s.id for s in got.schedules] == [1, 2, 3]
    assert got.transaction_id == "T-1"


@pytest.mark.parametrize("version", BOTH)
def test_phase_to_use_with_phase_switching(version: ProtocolVersion) -> None:
    req = request(profile(schedule(period(0, 16, numberPhases=1, phaseToUse=2))))
    limits = ProfileLimits(2, 8, 24, ac_phase_switching=True)
    assert parse_valid(req, version, limits=limits).schedules[0].periods[0].phase_to_use == 2


def test_fields_that_do_not_limit_power_are_accepted_2_1() -> None:
    req = request(
        profile(
            schedule(
                period(
                    0,
                    16,
                    preconditioningRequest=True,
                    evseSleep=False,
                    customData={"vendorId": "x"},
                ),
                powerTolerance=5.0,
                useLocalTime=False,
                randomizedDelay=0,
            ),
            invalidAfterOfflineDuration=False,
            priceScheduleSignature="c2ln",
        )
    )
    assert parse_valid(req, V21).schedules[0].periods[0] == SchedulePeriod(0, 16.0)


@pytest.mark.parametrize("version", BOTH)
def test_integral_floats_and_negative_zero(version: ProtocolVersion) -> None:
    req = request(profile(schedule(period(0, -0.0)), stackLevel=2.0, id=3.0))
    got = parse(req, version)
    assert (got.id, got.stack_level) == (3, 2)
    assert isinstance(got.id, int)
    assert str(got.schedules[0].periods[0].limit) == "0.0"


# --------------------------------------------------------------------------- rejections

Case = tuple[str, tuple[ProtocolVersion, ...], Callable[[], Json], ReasonCode, ProfileLimits]

L = LIMITS
RULE_CASES: list[Case] = [
    # (name, versions, request, reasonCode, limits) -- every request is schema-valid
    (
        "K01.FR.22 external constraints from CSMS",
        BOTH,
        lambda: request(absolute(chargingProfilePurpose="ChargingStationExternalConstraints"), 0),
        ReasonCode.INVALID_VALUE,
        L,
    ),
    (
        "K01.FR.28 EVSE does not exist",
        BOTH,
        lambda: request(profile(), 3),
        ReasonCode.UNKNOWN_EVSE,
        L,
    ),
    (
        "stackLevel above ProfileStackLevel",
        BOTH,
        lambda: request(profile(stackLevel=9)),
        ReasonCode.INVALID_STACK_LEVEL,
        L,
    ),
    (
        "max profile only on evse 0",
        BOTH,
        lambda: request(max_profile(), 1),
        ReasonCode.INVALID_VALUE,
        L,
    ),
    (
        "K01.FR.16 TxProfile not on evse 0",
        BOTH,
        lambda: request(tx_profile(), 0),
        ReasonCode.INVALID_VALUE,
        L,
    ),
    (
        "K01.FR.03 TxProfile without transactionId",
        BOTH,
        lambda: request(profile(chargingProfilePurpose="TxProfile")),
        ReasonCode.MISSING_PARAM,
        L,
    ),
    (
        "transactionId outside a TxProfile",
        BOTH,
        lambda: request(profile(transactionId="T-1")),
        ReasonCode.INVALID_VALUE,
        L,
    ),
    (
        "K01.FR.38 max profile Relative",
        BOTH,
        lambda: request(profile(chargingProfilePurpose="ChargingStationMaxProfile"), 0),
        ReasonCode.INVALID_PROFILE,
        L,
    ),
    (
        "Recurring without recurrencyKind",
        BOTH,
        lambda: request(absolute(chargingProfileKind="Recurring")),
        ReasonCode.MISSING_PARAM,
        L,
    ),
    (
        "K01.FR.40 Recurring without startSchedule",
        BOTH,
        lambda: request(profile(chargingProfileKind="Recurring", recurrencyKind="Daily")),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "K01.FR.40 Absolute without startSchedule",
        BOTH,
        lambda: request(profile(chargingProfileKind="Absolute")),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "K01.FR.41 Relative with startSchedule",
        BOTH,
        lambda: request(profile(schedule(startSchedule=T0))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "validTo not after validFrom",
        BOTH,
        lambda: request(profile(validFrom="2025-06-16T00:00:00Z", validTo="2025-06-16T00:00:00Z")),
        ReasonCode.INVALID_PROFILE,
        L,
    ),
    (
        "validTo passed",
        BOTH,
        lambda: request(profile(validTo="2025-06-15T15:06:40Z")),
        ReasonCode.INVALID_PROFILE,
        L,
    ),
    (
        "two schedules outside a TxProfile",
        BOTH,
        lambda: request(profile(schedule(), schedule(id=2))),
        ReasonCode.TOO_MANY_ELEMENTS,
        L,
    ),
    (
        "K01.FR.26 rate unit not supported",
        BOTH,
        lambda: request(profile(schedule(chargingRateUnit="W"))),
        ReasonCode.UNSUPPORTED_RATE_UNIT,
        ProfileLimits(2, 8, 24, rate_units=frozenset({RateUnit.A})),
    ),
    (
        "K01.FR.31 first startPeriod not 0",
        BOTH,
        lambda: request(profile(schedule(period(10)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "K01.FR.35 equal startPeriods",
        BOTH,
        lambda: request(profile(schedule(period(0), period(100), period(100)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "K01.FR.35 decreasing startPeriods",
        BOTH,
        lambda: request(profile(schedule(period(0), period(200), period(100)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "more periods than PeriodsPerSchedule",
        BOTH,
        lambda: request(profile(schedule(*[period(60 * i) for i in range(25)]))),
        ReasonCode.TOO_MANY_ELEMENTS,
        L,
    ),
    (
        "K01.FR.19 phaseToUse without numberPhases 1",
        BOTH,
        lambda: request(profile(schedule(period(0, 16, numberPhases=3, phaseToUse=1)))),
        ReasonCode.INVALID_SCHEDULE,
        ProfileLimits(2, 8, 24, ac_phase_switching=True),
    ),
    (
        "K01.FR.20 phaseToUse without phase switching",
        BOTH,
        lambda: request(profile(schedule(period(0, 16, numberPhases=1, phaseToUse=1)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "numberPhases 0",
        BOTH,
        lambda: request(profile(schedule(period(0, 16, numberPhases=0)))),
        ReasonCode.VALUE_OUT_OF_RANGE,
        L,
    ),
    (
        "limit above 1e7",
        BOTH,
        lambda: request(profile(schedule(period(0, 1e8)))),
        ReasonCode.VALUE_OUT_OF_RANGE,
        L,
    ),
    (
        "limit below -1e7",
        BOTH,
        lambda: request(profile(schedule(period(0, -1e8)))),
        ReasonCode.VALUE_OUT_OF_RANGE,
        L,
    ),
    (
        "minChargingRate above 1e7",
        BOTH,
        lambda: request(profile(schedule(minChargingRate=1e8))),
        ReasonCode.VALUE_OUT_OF_RANGE,
        L,
    ),
    (
        "profile id negative",
        (V21,),
        lambda: request(profile(id=-5)),
        ReasonCode.VALUE_OUT_OF_RANGE,
        L,
    ),
    # 2.1 only
    (
        "K01.FR.121 Dynamic",
        (V21,),
        lambda: request(absolute(chargingProfileKind="Dynamic")),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "maxOfflineDuration",
        (V21,),
        lambda: request(profile(maxOfflineDuration=60)),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "invalidAfterOfflineDuration",
        (V21,),
        lambda: request(profile(invalidAfterOfflineDuration=True)),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "K01.FR.122 dynUpdateInterval without Dynamic",
        (V21,),
        lambda: request(profile(dynUpdateInterval=60)),
        ReasonCode.INVALID_PROFILE,
        L,
    ),
    (
        "K01.FR.125 limitAtSoC",
        (V21,),
        lambda: request(profile(schedule(limitAtSoC={"soc": 80, "limit": 6}))),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "K01.FR.123 useLocalTime",
        (V21,),
        lambda: request(absolute(schedule(startSchedule=T0, useLocalTime=True))),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "K01.FR.95 randomizedDelay in a max profile",
        (V21,),
        lambda: request(
            max_profile(chargingSchedule=[schedule(startSchedule=T0, randomizedDelay=60)]), 0
        ),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "K01.FR.124 randomizedDelay",
        (V21,),
        lambda: request(profile(schedule(randomizedDelay=60))),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "K01.FR.73 PriorityCharging with duration",
        (V21,),
        lambda: request(profile(schedule(duration=600), chargingProfilePurpose="PriorityCharging")),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "K01.FR.111 max profile not ChargingOnly",
        (V21,),
        lambda: request(
            max_profile(
                chargingSchedule=[
                    schedule(
                        period(0, 16, operationMode="CentralSetpoint", setpoint=10),
                        startSchedule=T0,
                    )
                ]
            ),
            0,
        ),
        ReasonCode.INVALID_OPERATION_MODE,
        L,
    ),
    (
        "K01.FR.113 LocalGeneration CentralSetpoint",
        (V21,),
        lambda: request(
            profile(
                schedule(period(0, 16, operationMode="CentralSetpoint", setpoint=1)),
                chargingProfilePurpose="LocalGeneration",
            )
        ),
        ReasonCode.INVALID_OPERATION_MODE,
        L,
    ),
    (
        "K01.FR.115 operationMode not supported",
        (V21,),
        lambda: request(
            profile(schedule(period(0, 16, operationMode="CentralSetpoint", setpoint=1)))
        ),
        ReasonCode.INVALID_OPERATION_MODE,
        ProfileLimits(2, 8, 24),
    ),
    (
        "operationMode the model cannot keep",
        (V21,),
        lambda: request(profile(schedule(period(0, 16, operationMode="ExternalLimits")))),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "K01.FR.144 limit_L2 outside a TxProfile",
        (V21,),
        lambda: request(profile(schedule(period(0, 16, limit_L2=16)))),
        ReasonCode.PHASE_CONFLICT,
        L,
    ),
    (
        "K01.FR.146 limit_L2 without limit",
        (V21,),
        lambda: request(
            tx_profile(
                schedule(period(0, None, operationMode="CentralSetpoint", setpoint=5, limit_L2=16))
            )
        ),
        ReasonCode.PHASE_CONFLICT,
        L,
    ),
    (
        "per-phase limits in a TxProfile",
        (V21,),
        lambda: request(tx_profile(schedule(period(0, 16, limit_L2=16, limit_L3=16)))),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "setpointReactive",
        (V21,),
        lambda: request(
            tx_profile(
                schedule(
                    period(0, 16, operationMode="CentralSetpoint", setpoint=5, setpointReactive=1)
                )
            )
        ),
        ReasonCode.UNSUPPORTED_PARAM,
        L,
    ),
    (
        "K01.FR.126 evseSleep",
        (V21,),
        lambda: request(profile(schedule(period(0, 0, evseSleep=True)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "setpoint in ChargingOnly",
        (V21,),
        lambda: request(profile(schedule(period(0, 16, setpoint=5)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
    (
        "CentralSetpoint without setpoint",
        (V21,),
        lambda: request(profile(schedule(period(0, 16, operationMode="CentralSetpoint")))),
        ReasonCode.MISSING_PARAM,
        L,
    ),
    (
        "ChargingOnly without limit",
        (V21,),
        lambda: request(profile(schedule(period(0, None)))),
        ReasonCode.MISSING_PARAM,
        L,
    ),
    (
        "negative limit and dischargeLimit",
        (V21,),
        lambda: request(profile(schedule(period(0, -5, dischargeLimit=-5)))),
        ReasonCode.INVALID_SCHEDULE,
        L,
    ),
]


@pytest.mark.parametrize(
    ("version", "build", "code", "limits"),
    [
        pytest.param(v, build, code, limits, id=f"{name} [{v.value}]")
        for name, versions, build, code, limits in RULE_CASES
        for v in versions
    ],
)
def test_rule_rejections(
    version: ProtocolVersion,
    build: Callable[[], Json],
    code: ReasonCode,
    limits: ProfileLimits,
) -> None:
    req = build()
    assert_schema_valid(version, "SetChargingProfileRequest.json", req)
    with pytest.raises(ProfileRejected) as caught:
        parse(req, version, limits)
    assert caught.value.reason_code == code, caught.value.detail
    assert isinstance(caught.value, RemoteProtocolError)
    response = {"status": "Rejected", "statusInfo": caught.value.status_info()}
    assert_schema_valid(version, "SetChargingProfileResponse.json", response)


def _set(path: str, value: Any) -> Callable[[], Json]:
    """A valid 2.0.1/2.1 request with one field (dotted path, [i] indexes) replaced."""

    def build() -> Json:
        req = request(absolute(validFrom="2025-06-15T00:00:00Z"))
        req["chargingProfile"]["chargingSchedule"][0]["duration"] = 60
        target: Any = req
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
        return req

    return build


P = "chargingProfile"
S0 = f"{P}.chargingSchedule.0"
P0 = f"{S0}.chargingSchedulePeriod.0"
HUGE = 10**400
HUGER = 10**5000  # beyond Python's int-to-str digit limit
OUT = ReasonCode.VALUE_OUT_OF_RANGE
BAD = ReasonCode.INVALID_VALUE
HOSTILE: list[tuple[str, Any, ReasonCode]] = [
    ("evseId", HUGE, OUT),
    ("evseId", -1, OUT),
    ("evseId", True, BAD),
    (f"{P}.id", HUGE, OUT),
    (f"{P}.id", HUGER, OUT),
    (f"{P}.id", 2**31, OUT),
    (f"{P}.id", -1, OUT),
    (f"{P}.id", 1e308, OUT),
    (f"{P}.id", float("nan"), OUT),
    (f"{P}.id", 1.5, BAD),
    (f"{P}.id", "7", BAD),
    (f"{P}.id", None, BAD),
    (f"{P}.stackLevel", HUGE, ReasonCode.INVALID_STACK_LEVEL),
    (f"{P}.stackLevel", -1, ReasonCode.INVALID_STACK_LEVEL),
    (f"{P}.stackLevel", 1e308, ReasonCode.INVALID_STACK_LEVEL),
    (f"{P}.stackLevel", float("inf"), ReasonCode.INVALID_STACK_LEVEL),
    (f"{P}.chargingProfilePurpose", "Nonsense", BAD),
    (f"{P}.chargingProfilePurpose", ["TxProfile"], BAD),
    (f"{P}.chargingProfileKind", 3, BAD),
    (f"{P}.validFrom", "yesterday", BAD),
    (f"{P}.validFrom", "1969-12-31T23:59:59Z", BAD),
    (f"{P}.validFrom", "9999-12-31T23:59:59-05:00", BAD),
    (f"{P}.validFrom", "2025-06-15T00:00:00Z" + " " * 100, BAD),
    (f"{P}.validFrom", HUGE, BAD),
    (f"{P}.chargingSchedule", {"id": 1}, BAD),
    (f"{P}.chargingSchedule", "abc", BAD),
    (f"{P}.chargingSchedule", [], ReasonCode.INVALID_PROFILE),
    (f"{P}.chargingSchedule.0", 5, BAD),
    (f"{P}.unknownField", 1, BAD),
    (f"{S0}.id", HUGE, OUT),
    (f"{S0}.duration", -1, OUT),
    (f"{S0}.duration", HUGE, OUT),
    (f"{S0}.startSchedule", "2025-13-01T00:00:00Z", BAD),
    (f"{S0}.chargingRateUnit", "kW", BAD),
    (f"{S0}.minChargingRate", float("nan"), OUT),
    (f"{S0}.minChargingRate", -1, OUT),
    (f"{S0}.chargingSchedulePeriod", [], ReasonCode.INVALID_SCHEDULE),
    (
        f"{S0}.chargingSchedulePeriod",
        [{"startPeriod": 0, "limit": 1}] * 100_000,
        ReasonCode.TOO_MANY_ELEMENTS,
    ),
    (f"{S0}.chargingSchedulePeriod.0", [0, 16], BAD),
    (f"{P0}.startPeriod", HUGE, OUT),
    (f"{P0}.startPeriod", -1, OUT),
    (f"{P0}.startPeriod", 1e308, OUT),
    (f"{P0}.limit", HUGE, OUT),
    (f"{P0}.limit", -HUGE, OUT),
    (f"{P0}.limit", HUGER, OUT),
    (f"{P0}.limit", 1e308, OUT),
    (f"{P0}.limit", float("nan"), OUT),
    (f"{P0}.limit", float("inf"), OUT),
    (f"{P0}.limit", float("-inf"), OUT),
    (f"{P0}.limit", "16", BAD),
    (f"{P0}.limit", False, BAD),
    (f"{P0}.numberPhases", 4, OUT),
    (f"{P0}.numberPhases", HUGE, OUT),
    (f"{P0}.phaseToUse", -1, OUT),
]


def _case_id(path: str, value: Any) -> str:
    big = isinstance(value, int) and value.bit_length() > 64
    shown = "huge" if big else str(value)[:20]
    return f"{path}={type(value).__name__}:{shown}"


@pytest.mark.parametrize("version", BOTH)
@pytest.mark.parametrize(
    ("path", "value", "code"),
    [pytest.param(p, v, c, id=_case_id(p, v)) for p, v, c in HOSTILE],
)
def test_hostile_values_are_rejected_cleanly(
    version: ProtocolVersion, path: str, value: Any, code: ReasonCode
) -> None:
    req = _set(path, value)()
    with pytest.raises(ProfileRejected) as caught:
        parse(req, version)
    assert caught.value.reason_code == code, caught.value.detail
    assert len(caught.value.status_info()["additionalInfo"]) <= 512


@pytest.mark.parametrize(
    ("version", "req", "code"),
    [
        (V201, request(profile(chargingProfilePurpose="PriorityCharging")), BAD),
        (V201, request(absolute(chargingProfileKind="Dynamic")), BAD),
        (V201, request(profile(schedule(period(0, 16, dischargeLimit=-1)))), BAD),
        (V201, request(profile(maxOfflineDuration=60)), BAD),
        (V21, request(profile(schedule(period(0, 16, dischargeLimit=5)))), OUT),
        (V21, request(profile(schedule(period(0, 16, operationMode="Turbo")))), BAD),
        (V21, request(profile(schedule(period(0, 16, evseSleep="yes")))), BAD),
        (V201, request(tx_profile(transactionId="x" * 37)), BAD),
        (V201, request(tx_profile(transactionId=123)), BAD),
        (
            V21,
            request(tx_profile(*[schedule(id=i) for i in range(4)])),
            ReasonCode.TOO_MANY_ELEMENTS,
        ),
    ],
)
def test_schema_invalid_requests_are_rejected(
    version: ProtocolVersion, req: Json, code: ReasonCode
) -> None:
    assert schema_errors(version, "SetChargingProfileRequest.json", req)
    with pytest.raises(ProfileRejected) as caught:
        parse(copy.deepcopy(req), version)
    assert caught.value.reason_code == code, caught.value.detail


@pytest.mark.parametrize("payload", [None, [], "profile", 7])
def test_payload_not_an_object(payload: Any) -> None:
    with pytest.raises(ProfileRejected) as caught:
        parse_profile(payload, 1, V21, now_utc_s=NOW, limits=LIMITS)
    assert caught.value.reason_code == ReasonCode.INVALID_VALUE


# --------------------------------------------------------------------------- check_install


def model(
    profile_id: int,
    purpose: Purpose = Purpose.TX_DEFAULT_PROFILE,
    *,
    evse_id: int = 1,
    stack_level: int = 1,
    transaction_id: str | None = None,
    valid: tuple[float | None, float | None] = (None, None),
) -> ChargingProfile:
    if purpose is Purpose.TX_PROFILE and transaction_id is None:
        transaction_id = "T-1"
    return ChargingProfile(
        id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=Kind.RELATIVE,
        schedules=(ChargingSchedule(1, RateUnit.A, (SchedulePeriod(0, 16.0),)),),
        evse_id=evse_id,
        valid_from_s=valid[0],
        valid_to_s=valid[1],
        transaction_id=transaction_id,
    )


TX = Purpose.TX_PROFILE
EXT = Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS
RUNNING = {1: "T-1", 2: "T-2"}
INSTALL_CASES: list[tuple[str, ChargingProfile, list[ChargingProfile], ReasonCode | None]] = [
    ("TxProfile of the running transaction", model(1, TX, evse_id=1), [], None),
    (
        "K01.FR.09 rejected",
        model(1, TX, evse_id=3, transaction_id="T-3"),
        [],
        ReasonCode.TX_NOT_FOUND,
    ),
    (
        "K01.FR.33 other transaction",
        model(1, TX, evse_id=2, transaction_id="T-1"),
        [],
        ReasonCode.TX_NOT_FOUND,
    ),
    ("K01.FR.05 same id replaces", model(1), [model(1)], None),
    (
        "K01.FR.05 external constraint not replaced",
        model(1),
        [model(1, EXT)],
        ReasonCode.DUPLICATE_PROFILE,
    ),
    ("K01.FR.06 same level, purpose, EVSE", model(2), [model(1)], ReasonCode.DUPLICATE_PROFILE),
    ("K01.FR.06 other stack level", model(2, stack_level=2), [model(1)], None),
    ("K01.FR.06 other EVSE", model(2, evse_id=2), [model(1)], None),
    (
        "K01.FR.06 other purpose",
        model(2, Purpose.CHARGING_STATION_MAX_PROFILE, evse_id=0),
        [model(1, evse_id=0)],
        None,
    ),
    (
        "K01.FR.06 validity overlaps",
        model(2, valid=(100.0, 300.0)),
        [model(1, valid=(200.0, None))],
        ReasonCode.DUPLICATE_PROFILE,
    ),
    (
        "K01.FR.06 validity apart",
        model(2, valid=(100.0, 200.0)),
        [model(1, valid=(200.0, 300.0))],
        None,
    ),
    (
        "K01.FR.39 same level and transaction",
        model(2, TX),
        [model(1, TX)],
        ReasonCode.DUPLICATE_PROFILE,
    ),
    (
        "K01.FR.39 other transaction",
        model(2, TX, evse_id=2, transaction_id="T-2"),
        [model(1, TX)],
        None,
    ),
    (
        "K01.FR.52/53 TxDefault evse 0 vs EVSE",
        model(2, evse_id=0),
        [model(1, evse_id=1)],
        ReasonCode.DUPLICATE_PROFILE,
    ),
    (
        "K01.FR.52/53 TxDefault EVSE vs evse 0",
        model(2, evse_id=2),
        [model(1, evse_id=0)],
        ReasonCode.DUPLICATE_PROFILE,
    ),
    (
        "K01.FR.52/53 other stack level",
        model(2, evse_id=0, stack_level=3),
        [model(1, evse_id=1)],
        None,
    ),
    (
        "Entries full",
        model(9, stack_level=5),
        [model(i, stack_level=i, evse_id=2) for i in range(1, 5)],
        ReasonCode.OUT_OF_STORAGE,
    ),
    (
        "Entries full, replacement fits",
        model(4, stack_level=7, evse_id=2),
        [model(i, stack_level=i, evse_id=2) for i in range(1, 5)],
        None,
    ),
]


@pytest.mark.parametrize(
    ("candidate", "existing", "code"),
    [pytest.param(c, e, code, id=name) for name, c, e, code in INSTALL_CASES],
)
def test_check_install(
    candidate: ChargingProfile, existing: list[ChargingProfile], code: ReasonCode | None
) -> None:
    def run() -> None:
        check_install(candidate, existing, active_transaction_ids=RUNNING, max_entries=4)

    if code is None:
        run()
    else:
        with pytest.raises(ProfileRejected) as caught:
            run()
        assert caught.value.reason_code == code, caught.value.detail


def test_check_install_accepts_a_parsed_tx_profile() -> None:
    parsed = parse_valid(request(tx_profile(), evse_id=1), V201)
    check_install(parsed, [], active_transaction_ids={1: "T-1"}, max_entries=1)
    with pytest.raises(ProfileRejected) as caught:
        check_install(parsed, [], active_transaction_ids={}, max_entries=1)
    assert caught.value.reason_code == ReasonCode.TX_NOT_FOUND
