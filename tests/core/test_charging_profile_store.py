"""ProfileStore (OCPP 2.0.1 / 2.1 K01, K09, K10), its persistence and the K09 reports."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from chargepoint.smartcharging.store import (
    ProfileStore,
    report_chunks,
    to_ocpp_json,
)
from chargepoint.smartcharging.validation import (
    MAX_RATE,
    ProfileLimits,
    parse_profile,
)
from tests.core.ocpp_schemas import assert_schema_valid

V201 = ProtocolVersion.V201
V21 = ProtocolVersion.V21
BOTH = (V201, V21)
Json = dict[str, Any]


def make(
    profile_id: int,
    purpose: Purpose = Purpose.TX_DEFAULT_PROFILE,
    *,
    evse_id: int = 1,
    stack_level: int = 0,
    transaction_id: str | None = None,
    valid_to_s: float | None = None,
    periods: tuple[SchedulePeriod, ...] = (SchedulePeriod(0, 16.0),),
) -> ChargingProfile:
    return ChargingProfile(
        id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        kind=Kind.RELATIVE,
        schedules=(ChargingSchedule(1, RateUnit.A, periods),),
        evse_id=evse_id,
        valid_to_s=valid_to_s,
        transaction_id=transaction_id,
    )


TXD = Purpose.TX_DEFAULT_PROFILE
TX = Purpose.TX_PROFILE
MAX = Purpose.CHARGING_STATION_MAX_PROFILE
EXT = Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS


def sample() -> ProfileStore:
    return ProfileStore(
        [
            make(1, TXD, evse_id=0, stack_level=0),
            make(2, TXD, evse_id=1, stack_level=1),
            make(3, TX, evse_id=1, stack_level=0, transaction_id="T1"),
            make(4, MAX, evse_id=0, stack_level=0),
            make(5, TXD, evse_id=2, stack_level=0, valid_to_s=1000.0),
            make(6, EXT, evse_id=1, stack_level=0),  # set by a local EMS, not the CSMS
        ]
    )


def ids(profiles: list[ChargingProfile]) -> list[int]:
    return sorted(p.id for p in profiles)


# --------------------------------------------------------------------------- K10


def clear_kwargs(req: Json) -> dict[str, Any]:
    """ClearChargingProfileRequest -> ProfileStore.clear arguments (what the station does)."""
    criteria = req.get("chargingProfileCriteria", {})
    purpose = criteria.get("chargingProfilePurpose")
    return {
        "profile_id": req.get("chargingProfileId"),
        "evse_id": criteria.get("evseId"),
        "purpose": None if purpose is None else Purpose(purpose),
        "stack_level": criteria.get("stackLevel"),
    }


CLEAR_CASES: list[tuple[Json, list[int]]] = [
    ({"chargingProfileId": 2}, [2]),
    ({"chargingProfileId": 99}, []),
    ({"chargingProfileId": 6}, []),  # an external constraint is not the CSMS's to clear
    ({"chargingProfileId": 2, "chargingProfileCriteria": {"evseId": 0}}, [2]),  # id wins
    ({}, [1, 2, 3, 4, 5]),
    ({"chargingProfileCriteria": {}}, [1, 2, 3, 4, 5]),
    ({"chargingProfileCriteria": {"evseId": 1}}, [2, 3]),
    ({"chargingProfileCriteria": {"evseId": 0}}, [1, 4]),
    ({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}, [1, 2, 5]),
    ({"chargingProfileCriteria": {"stackLevel": 0}}, [1, 3, 4, 5]),
    (
        {
            "chargingProfileCriteria": {
                "evseId": 0,
                "chargingProfilePurpose": "ChargingStationMaxProfile",
            }
        },
        [4],
    ),
    ({"chargingProfileCriteria": {"evseId": 1, "stackLevel": 0}}, [3]),
    (
        {
            "chargingProfileCriteria": {
                "chargingProfilePurpose": "TxDefaultProfile",
                "stackLevel": 0,
            }
        },
        [1, 5],
    ),
    (
        {
            "chargingProfileCriteria": {
                "evseId": 1,
                "chargingProfilePurpose": "TxDefaultProfile",
                "stackLevel": 1,
            }
        },
        [2],
    ),
    (
        {"chargingProfileCriteria": {"evseId": 2, "chargingProfilePurpose": "TxProfile"}},
        [],
    ),
    (
        {
            "chargingProfileCriteria": {
                "chargingProfilePurpose": "ChargingStationExternalConstraints"
            }
        },
        [],
    ),
]


@pytest.mark.parametrize(("req", "expected"), CLEAR_CASES, ids=json.dumps)
def test_clear_charging_profile(req: Json, expected: list[int]) -> None:
    for version in BOTH:
        assert_schema_valid(version, "ClearChargingProfileRequest.json", req)
    store = sample()
    before = store.version
    removed = store.clear(**clear_kwargs(req))
    assert ids(removed) == expected
    assert len(store) == 6 - len(expected)
    assert not {p.id for p in store.profiles} & set(expected)
    assert store.version == before + (1 if expected else 0)
    status = "Accepted" if removed else "Unknown"
    for version in BOTH:
        assert_schema_valid(version, "ClearChargingProfileResponse.json", {"status": status})


# --------------------------------------------------------------------------- K09


def matching_kwargs(req: Json) -> dict[str, Any]:
    """GetChargingProfilesRequest -> ProfileStore.matching arguments."""
    criterion = req["chargingProfile"]
    purpose = criterion.get("chargingProfilePurpose")
    return {
        "evse_id": req.get("evseId"),
        "profile_ids": criterion.get("chargingProfileId"),
        "purpose": None if purpose is None else Purpose(purpose),
        "stack_level": criterion.get("stackLevel"),
        "sources": criterion.get("chargingLimitSource"),
    }


GET_CASES: list[tuple[Json, list[int]]] = [
    ({"chargingProfile": {}}, [1, 2, 3, 4, 5, 6]),
    ({"evseId": 0, "chargingProfile": {}}, [1, 4]),
    ({"evseId": 1, "chargingProfile": {}}, [2, 3, 6]),
    ({"chargingProfile": {"chargingProfileId": [2, 4, 99]}}, [2, 4]),
    ({"evseId": 0, "chargingProfile": {"chargingProfileId": [2, 4]}}, [4]),
    ({"chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}}, [1, 2, 5]),
    ({"chargingProfile": {"stackLevel": 1}}, [2]),
    ({"chargingProfile": {"chargingLimitSource": ["CSO"]}}, [1, 2, 3, 4, 5]),
    ({"chargingProfile": {"chargingLimitSource": ["EMS"]}}, []),
    ({"evseId": 1, "chargingProfile": {"chargingLimitSource": ["EMS", "CSO"]}}, [2, 3]),
    (
        {
            "evseId": 1,
            "chargingProfile": {"chargingProfilePurpose": "TxProfile", "stackLevel": 0},
        },
        [3],
    ),
]


@pytest.mark.parametrize(("req", "expected"), GET_CASES, ids=json.dumps)
def test_get_charging_profiles(req: Json, expected: list[int]) -> None:
    full = {"requestId": 1} | req
    for version in BOTH:
        assert_schema_valid(version, "GetChargingProfilesRequest.json", full)
    assert ids(sample().matching(**matching_kwargs(full))) == expected


def test_for_evse_is_own_plus_station_wide() -> None:
    store = sample()
    assert ids(store.for_evse(1)) == [1, 2, 3, 4, 6]
    assert ids(store.for_evse(2)) == [1, 4, 5]
    assert ids(store.for_evse(0)) == [1, 4]


# --------------------------------------------------------------------------- lifecycle


def test_install_replaces_by_id_and_counts_versions() -> None:
    store = ProfileStore()
    assert (len(store), store.version) == (0, 0)
    store.install(make(1, stack_level=0))
    store.install(make(2, stack_level=1))
    store.install(make(1, stack_level=5))  # K01.FR.05
    assert len(store) == 2
    assert store.version == 3
    replaced = store.get(1)
    assert replaced is not None
    assert replaced.stack_level == 5


def test_end_transaction_removes_its_tx_profiles_only() -> None:
    store = sample()
    version = store.version
    assert store.end_transaction("T-unknown") == []
    assert store.version == version
    assert ids(store.end_transaction("T1")) == [3]
    assert store.version == version + 1
    assert store.get(3) is None


def test_expire_removes_profiles_whose_valid_to_passed() -> None:
    store = sample()
    assert store.expire(999.0) == []
    assert ids(store.expire(1000.0)) == [5]  # validTo is exclusive
    assert len(store) == 5


def test_remove_takes_an_external_constraint_too() -> None:
    store = sample()
    removed = store.remove(6)
    assert removed is not None
    assert removed.purpose is EXT
    assert store.remove(6) is None


# --------------------------------------------------------------------------- persistence

_ints = st.integers(min_value=0, max_value=2**31 - 1)
_rates = st.floats(min_value=0.0, max_value=MAX_RATE, allow_nan=False)
# parse_profile times are whole microseconds (datetime), persisted to the microsecond: exact
# while a float resolves a microsecond (before 2242; up to MAX_EPOCH_S within 16 us)
_times = st.integers(min_value=0, max_value=2**33 * 10**6).map(lambda us: us / 10**6)


@st.composite
def periods(draw: st.DrawFn) -> tuple[SchedulePeriod, ...]:
    starts = sorted(draw(st.sets(st.integers(1, 2**31 - 1), max_size=4)))
    return tuple(
        SchedulePeriod(
            start_s=start,
            limit=draw(st.none() | _rates),
            number_phases=draw(st.none() | st.integers(1, 3)),
            phase_to_use=draw(st.none() | st.integers(1, 3)),
            discharge_limit=draw(st.none() | _rates),
            setpoint=draw(st.none() | st.floats(-MAX_RATE, MAX_RATE, allow_nan=False)),
        )
        for start in [0, *starts]
    )


schedules = st.builds(
    ChargingSchedule,
    id=_ints,
    rate_unit=st.sampled_from(RateUnit),
    periods=periods(),
    start_s=st.none() | _times,
    duration_s=st.none() | _ints,
    min_charging_rate=st.none() | _rates,
)
profiles = st.builds(
    ChargingProfile,
    id=_ints,
    stack_level=_ints,
    purpose=st.sampled_from(Purpose),
    kind=st.sampled_from(Kind),
    schedules=st.lists(schedules, min_size=1, max_size=3).map(tuple),
    evse_id=_ints,
    recurrency=st.none() | st.sampled_from(Recurrency),
    valid_from_s=st.none() | _times,
    valid_to_s=st.none() | _times,
    transaction_id=st.none() | st.text(max_size=36),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(profiles, max_size=6, unique_by=lambda p: p.id))
def test_persistence_round_trip(items: list[ChargingProfile]) -> None:
    store = ProfileStore(items)
    text = json.dumps(store.to_json(), allow_nan=False)  # plain JSON values only
    again = ProfileStore.from_json(json.loads(text))
    assert again.profiles == store.profiles
    assert again.version == 0


def test_corrupt_persisted_entries_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = ProfileStore([make(1), make(2, evse_id=0)]).to_json()
    entry = good[0]
    profile = entry["chargingProfile"]
    period = profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]
    bad: list[Any] = [
        None,
        "profile",
        [],
        {"evseId": 1},
        {"evseId": -1, "chargingProfile": profile},
        {"evseId": True, "chargingProfile": profile},
        {"evseId": 1, "chargingProfile": profile | {"id": 10**400}},
        {"evseId": 1, "chargingProfile": profile | {"id": "1"}},
        {"evseId": 1, "chargingProfile": profile | {"chargingProfilePurpose": "Nope"}},
        {"evseId": 1, "chargingProfile": profile | {"chargingProfileKind": ["Relative"]}},
        {"evseId": 1, "chargingProfile": profile | {"validTo": "soon"}},
        {"evseId": 1, "chargingProfile": profile | {"chargingSchedule": []}},
        {"evseId": 1, "chargingProfile": profile | {"chargingSchedule": "abc"}},
        {
            "evseId": 1,
            "chargingProfile": profile
            | {
                "chargingSchedule": [
                    profile["chargingSchedule"][0]
                    | {"chargingSchedulePeriod": [period | {"limit": "16"}]}
                ]
            },
        },
        {
            "evseId": 1,
            "chargingProfile": profile
            | {
                "chargingSchedule": [
                    profile["chargingSchedule"][0]
                    | {"chargingSchedulePeriod": [period | {"startPeriod": 5}]}
                ]
            },
        },
        {
            "evseId": 1,
            "chargingProfile": profile
            | {
                "chargingSchedule": [
                    profile["chargingSchedule"][0]
                    | {"chargingSchedulePeriod": [period | {"dischargeLimit": 3.0}]}
                ]
            },
        },
        {
            "evseId": 1,
            "chargingProfile": profile
            | {
                "chargingSchedule": [
                    profile["chargingSchedule"][0]
                    | {"chargingSchedulePeriod": [period | {"limit": float("nan")}]}
                ]
            },
        },
    ]
    with caplog.at_level(logging.WARNING, logger="chargepoint.smartcharging.store"):
        store = ProfileStore.from_json([*bad, *good, good[0]])  # last one: a duplicate id
    assert ids(list(store.profiles)) == [1, 2]
    assert len(caplog.records) == len(bad) + 1

    with caplog.at_level(logging.WARNING, logger="chargepoint.smartcharging.store"):
        assert len(ProfileStore.from_json({"not": "a list"})) == 0


# --------------------------------------------------------------------------- K09 reports

T0 = 1_750_003_200.0
RICH = [
    make(1, TXD, evse_id=0, stack_level=0),
    ChargingProfile(
        id=2,
        stack_level=3,
        purpose=TX,
        kind=Kind.ABSOLUTE,
        schedules=tuple(
            ChargingSchedule(
                i,
                RateUnit.W,
                (
                    SchedulePeriod(0, 11000.0, number_phases=3),
                    SchedulePeriod(600, 0.0, discharge_limit=7000.0),
                    SchedulePeriod(1200, None, setpoint=-3000.0, discharge_limit=5000.0),
                    SchedulePeriod(1800, 7000.0, number_phases=1, phase_to_use=2),
                ),
                start_s=T0,
                duration_s=3600,
                min_charging_rate=1400.0,
            )
            for i in (1, 2, 3)
        ),
        evse_id=1,
        valid_from_s=T0 - 60.0,
        valid_to_s=T0 + 86_400.5,
        transaction_id="T1",
    ),
    ChargingProfile(
        id=3,
        stack_level=1,
        purpose=Purpose.TX_DEFAULT_PROFILE,
        kind=Kind.RECURRING,
        schedules=(ChargingSchedule(1, RateUnit.A, (SchedulePeriod(0, 10.0),), start_s=T0),),
        evse_id=1,
        recurrency=Recurrency.DAILY,
    ),
    make(4, MAX, evse_id=0),
    make(5, TXD, evse_id=1, stack_level=4),
    make(6, Purpose.PRIORITY_CHARGING, evse_id=2),  # 2.1 only
]


@pytest.mark.parametrize("version", BOTH)
def test_report_chunks_validate_and_group_by_evse(version: ProtocolVersion) -> None:
    chunks = report_chunks(RICH, 2, version)
    expected = [(0, [1, 4]), (1, [2, 3]), (1, [5])] + ([(2, [6])] if version is V21 else [])
    assert [(c.evse_id, [p["id"] for p in c.charging_profiles]) for c in chunks] == expected
    for n, chunk in enumerate(chunks):
        payload = chunk.request(42, tbc=n < len(chunks) - 1)
        assert_schema_valid(version, "ReportChargingProfilesRequest.json", payload)
    assert chunks[-1].request(42, tbc=False)["tbc"] is False


def test_report_chunks_needs_room() -> None:
    with pytest.raises(ValueError, match="max_per_message"):
        report_chunks(RICH, 0, V21)


def test_discharge_is_expressed_per_version() -> None:
    rich = RICH[1]
    p21 = to_ocpp_json(rich, V21)["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert p21[1] == {"startPeriod": 600, "limit": 0.0, "dischargeLimit": -7000.0}
    assert p21[2] == {
        "startPeriod": 1200,
        "dischargeLimit": -5000.0,
        "operationMode": "CentralSetpoint",
        "setpoint": -3000.0,
    }
    p201 = to_ocpp_json(rich, V201)["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert p201[0] == {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3}
    assert p201[1] == {"startPeriod": 600, "limit": -7000.0}  # limit 0: discharge as negative
    assert p201[2] == {"startPeriod": 1200, "limit": -5000.0}  # no set point in 2.0.1
    charging_and_discharging = make(9, periods=(SchedulePeriod(0, 16.0, discharge_limit=8.0),))
    p201 = to_ocpp_json(charging_and_discharging, V201)["chargingSchedule"][0]
    assert p201["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16.0}]
    with pytest.raises(ValueError, match=r"2\.0\.1"):
        to_ocpp_json(RICH[5], V201)


def test_timestamps_are_milliseconds_with_z() -> None:
    data = to_ocpp_json(RICH[1], V21)
    assert data["validFrom"] == "2025-06-15T15:59:00.000Z"
    assert data["validTo"] == "2025-06-16T16:00:00.500Z"
    assert data["chargingSchedule"][0]["startSchedule"] == "2025-06-15T16:00:00.000Z"


@pytest.mark.parametrize("version", BOTH)
def test_reported_profile_reads_back_as_installed(version: ProtocolVersion) -> None:
    """to_ocpp_json says what the CSMS sent: parsing it again gives the same profile."""
    limits = ProfileLimits(
        evse_count=2,
        max_stack_level=8,
        periods_per_schedule=24,
        ac_phase_switching=True,
        operation_modes=frozenset({"CentralSetpoint"}),
    )
    sent = RICH[1] if version is V21 else RICH[2]
    data = to_ocpp_json(sent, version)
    assert_schema_valid(
        version, "SetChargingProfileRequest.json", {"evseId": 1, "chargingProfile": data}
    )
    again = parse_profile(data, 1, version, now_utc_s=T0, limits=limits)
    assert again == sent
