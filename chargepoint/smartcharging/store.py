"""Installed charging profiles (OCPP 2.0.1 / 2.1 use cases K01, K09, K10), sans-I/O.

:class:`ProfileStore` keeps the profiles :mod:`.validation` accepted, in memory;
the caller persists :meth:`ProfileStore.to_json` after every change (watch
:attr:`ProfileStore.version`) and rebuilds the store with
:meth:`ProfileStore.from_json` at start.  It answers:

* SetChargingProfile (K01): :meth:`~ProfileStore.install` replaces a profile with
  the same id (K01.FR.05);
* ClearChargingProfile (K10): :meth:`~ProfileStore.clear`, by id or by criteria;
* GetChargingProfiles (K09): :meth:`~ProfileStore.matching`, then
  :func:`report_chunks` splits the result into ReportChargingProfilesRequests;
* the composite schedule (K08): :meth:`~ProfileStore.for_evse`;
* housekeeping: :meth:`~ProfileStore.end_transaction` (TxProfiles live as long as
  their transaction, K01) and :meth:`~ProfileStore.expire` (validTo passed).

:func:`to_ocpp_json` writes a profile back as ``ChargingProfileType`` JSON for a
protocol version: the discharge limit, a magnitude in the model, becomes a 2.1
``dischargeLimit`` <= 0, or in 2.0.1 a negative ``limit`` where the charging
limit is 0 (2.0.1 cannot say both).

Persisted form: a list of ``{"evseId": n, "chargingProfile": {...}}`` with the 2.1
field names, timestamps to the microsecond (lossless for every time
:func:`.validation.parse_profile` returns before the year 2242).  Entries that cannot be read are
skipped with a log line: a damaged file costs profiles, never the start-up.

Readings of the standard
------------------------
* ``ChargingStationExternalConstraints`` profiles (installed locally, K11/K12) are
  not cleared by ClearChargingProfile (the CSMS cannot replace them either,
  K01.FR.05 note); :meth:`~ProfileStore.remove` removes them locally.
* ClearChargingProfile with an id ignores the criteria (K10.FR.02: the CSMS sends
  one or the other).
* GetChargingProfiles: every criterion given must match (K09.FR.03 calls them
  "filter values of equal importance").  The model records no limit source:
  profiles other than external constraints are the CSO's, external constraints
  match no ``chargingLimitSource`` filter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

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
    CENTRAL_SETPOINT,
    MAX_RATE,
    epoch_s_from_rfc3339,
    rfc3339_ms,
    rfc3339_us,
)

__all__ = [
    "CSO",
    "ProfileStore",
    "ReportChunk",
    "report_chunks",
    "to_ocpp_json",
]

_log = logging.getLogger(__name__)

#: ChargingLimitSourceEnumType of profiles set by the CSMS.
CSO = "CSO"

_T = TypeVar("_T")


class ProfileStore:
    """Installed charging profiles by id; sans-I/O, the caller persists :meth:`to_json`."""

    def __init__(self, profiles: Iterable[ChargingProfile] = ()) -> None:
        self._profiles: dict[int, ChargingProfile] = {}
        for profile in profiles:
            self._profiles[profile.id] = profile
        self._version = 0

    @property
    def version(self) -> int:
        """Bumped on every change: recompute the composite schedule and persist when it moves."""
        return self._version

    @property
    def profiles(self) -> tuple[ChargingProfile, ...]:
        """Every installed profile (for :func:`.validation.check_install`)."""
        return tuple(self._profiles.values())

    def __len__(self) -> int:
        return len(self._profiles)

    def get(self, profile_id: int) -> ChargingProfile | None:
        return self._profiles.get(profile_id)

    def install(self, profile: ChargingProfile) -> None:
        """Add ``profile``; one with the same id is replaced (OCPP 2.0.1 K01.FR.05)."""
        self._profiles.pop(profile.id, None)
        self._profiles[profile.id] = profile
        self._version += 1

    def remove(self, profile_id: int) -> ChargingProfile | None:
        """Remove one profile whatever its purpose (local use, e.g. external limit cleared)."""
        return next(iter(self._remove_where(lambda p: p.id == profile_id)), None)

    def clear(
        self,
        *,
        profile_id: int | None = None,
        evse_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> list[ChargingProfile]:
        """ClearChargingProfile (K10): what was removed; empty means status ``Unknown``.

        With ``profile_id`` only that profile goes (K10.FR.02: id or criteria);
        otherwise every criterion given must match, and none given clears all.
        External constraints are never cleared by the CSMS (see module docstring).
        """

        def chosen(p: ChargingProfile) -> bool:
            if p.purpose is Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS:
                return False
            if profile_id is not None:
                return p.id == profile_id
            return (
                (evse_id is None or p.evse_id == evse_id)
                and (purpose is None or p.purpose is purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        return self._remove_where(chosen)

    def matching(
        self,
        *,
        evse_id: int | None = None,
        profile_ids: Collection[int] | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
        sources: Collection[str] | None = None,
    ) -> list[ChargingProfile]:
        """GetChargingProfiles (K09): the profiles every given criterion selects.

        ``evse_id`` ``None``: all EVSEs; 0: the station-wide profiles only; n: the
        ones installed for EVSE n.  ``sources``: only ``"CSO"`` is known here.
        """

        def chosen(p: ChargingProfile) -> bool:
            if sources is not None and (
                CSO not in sources or p.purpose is Purpose.CHARGING_STATION_EXTERNAL_CONSTRAINTS
            ):
                return False
            return (
                (evse_id is None or p.evse_id == evse_id)
                and (profile_ids is None or p.id in profile_ids)
                and (purpose is None or p.purpose is purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        return [p for p in self._profiles.values() if chosen(p)]

    def for_evse(self, evse_id: int) -> list[ChargingProfile]:
        """The profiles that concern ``evse_id``: its own and the station-wide (evse 0) ones."""
        return [p for p in self._profiles.values() if p.evse_id in (0, evse_id)]

    def end_transaction(self, transaction_id: str) -> list[ChargingProfile]:
        """Remove the TxProfiles of a finished transaction (OCPP 2.0.1 K01: they end with it)."""
        return self._remove_where(
            lambda p: p.purpose is Purpose.TX_PROFILE and p.transaction_id == transaction_id
        )

    def expire(self, now_utc_s: float) -> list[ChargingProfile]:
        """Remove the profiles whose validTo has passed (validTo is exclusive)."""
        return self._remove_where(lambda p: p.valid_to_s is not None and p.valid_to_s <= now_utc_s)

    def _remove_where(self, chosen: Callable[[ChargingProfile], bool]) -> list[ChargingProfile]:
        removed = [p for p in self._profiles.values() if chosen(p)]
        for profile in removed:
            del self._profiles[profile.id]
        if removed:
            self._version += 1
        return removed

    # ----------------------------------------------------------------------- persistence

    def to_json(self) -> list[dict[str, Any]]:
        """Plain JSON values, for the caller to persist."""
        return [
            {"evseId": p.evse_id, "chargingProfile": _profile_json(p, full=True, fmt=rfc3339_us)}
            for p in self._profiles.values()
        ]

    @classmethod
    def from_json(cls, data: object) -> ProfileStore:
        """The store :meth:`to_json` described; unreadable entries are logged and skipped."""
        store = cls()
        if not isinstance(data, list):
            _log.warning("persisted charging profiles: not a list (%s), none loaded", type(data))
            return store
        for index, entry in enumerate(data):
            try:
                profile = _decode_entry(entry)
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                _log.warning("persisted charging profile #%d skipped: %.200s", index, exc)
                continue
            if profile.id in store._profiles:
                _log.warning(
                    "persisted charging profile #%d skipped: id %d twice", index, profile.id
                )
                continue
            store._profiles[profile.id] = profile
        return store


# --------------------------------------------------------------------------- OCPP JSON


def to_ocpp_json(profile: ChargingProfile, version: ProtocolVersion) -> dict[str, Any]:
    """``ChargingProfileType`` JSON of ``profile`` for ``version``, timestamps to the ms.

    2.0.1: ``limit`` is required, so a discharge limit becomes a negative ``limit``
    only where the charging limit is 0 or absent (else it is left out), a period without a
    charging limit says ``limit`` = :data:`.validation.MAX_RATE` ("no limit") and
    set points are left out.  Raises :class:`ValueError` for a 2.1-only purpose
    or kind under 2.0.1.
    """
    if version is ProtocolVersion.V201 and (
        profile.purpose in (Purpose.PRIORITY_CHARGING, Purpose.LOCAL_GENERATION)
        or profile.kind is Kind.DYNAMIC
    ):
        raise ValueError(f"profile {profile.id}: {profile.purpose.value} not in OCPP 2.0.1")
    return _profile_json(profile, full=version is ProtocolVersion.V21, fmt=rfc3339_ms)


def _profile_json(
    profile: ChargingProfile, *, full: bool, fmt: Callable[[float], str]
) -> dict[str, Any]:
    """``full``: 2.1 (lossless for the model), else 2.0.1."""
    out: dict[str, Any] = {
        "id": profile.id,
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": profile.purpose.value,
        "chargingProfileKind": profile.kind.value,
    }
    if profile.recurrency is not None:
        out["recurrencyKind"] = profile.recurrency.value
    if profile.valid_from_s is not None:
        out["validFrom"] = fmt(profile.valid_from_s)
    if profile.valid_to_s is not None:
        out["validTo"] = fmt(profile.valid_to_s)
    if profile.transaction_id is not None:
        out["transactionId"] = profile.transaction_id
    out["chargingSchedule"] = [_schedule_json(s, full=full, fmt=fmt) for s in profile.schedules]
    return out


def _schedule_json(
    schedule: ChargingSchedule, *, full: bool, fmt: Callable[[float], str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": schedule.id}
    if schedule.start_s is not None:
        out["startSchedule"] = fmt(schedule.start_s)
    if schedule.duration_s is not None:
        out["duration"] = schedule.duration_s
    out["chargingRateUnit"] = schedule.rate_unit.value
    out["chargingSchedulePeriod"] = [_period_json(p, full=full) for p in schedule.periods]
    if schedule.min_charging_rate is not None:
        out["minChargingRate"] = schedule.min_charging_rate
    return out


def _period_json(period: SchedulePeriod, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"startPeriod": period.start_s}
    discharge = period.discharge_limit
    if full:
        if period.limit is not None:
            out["limit"] = period.limit
        if discharge is not None:
            # OCPP 2.1 ChargingSchedulePeriodType.dischargeLimit: <= 0
            out["dischargeLimit"] = 0.0 - discharge
        if period.setpoint is not None:
            # validation accepts a setpoint only in CentralSetpoint periods
            out["operationMode"] = CENTRAL_SETPOINT
            out["setpoint"] = period.setpoint
    elif discharge and not period.limit:
        # 2.0.1-era discharge: a negative limit (only where the charging limit is 0)
        out["limit"] = 0.0 - discharge
    else:
        out["limit"] = MAX_RATE if period.limit is None else period.limit
    if period.number_phases is not None:
        out["numberPhases"] = period.number_phases
    if period.phase_to_use is not None:
        out["phaseToUse"] = period.phase_to_use
    return out


@dataclass(frozen=True, slots=True)
class ReportChunk:
    """The chargingProfile array of one ReportChargingProfilesRequest (one EVSE)."""

    evse_id: int
    charging_profiles: tuple[dict[str, Any], ...]

    def request(
        self, request_id: int, *, tbc: bool, charging_limit_source: str = CSO
    ) -> dict[str, Any]:
        """The ReportChargingProfilesRequest payload (K09)."""
        return {
            "requestId": request_id,
            "chargingLimitSource": charging_limit_source,
            "evseId": self.evse_id,
            "chargingProfile": list(self.charging_profiles),
            "tbc": tbc,
        }


def report_chunks(
    profiles: Iterable[ChargingProfile], max_per_message: int, version: ProtocolVersion
) -> list[ReportChunk]:
    """ReportChargingProfilesRequest contents: one EVSE per message, at most ``max_per_message``.

    The caller sets ``tbc`` on every message but the last (K09).  Profiles that
    ``version`` cannot express are left out (and logged).
    """
    if max_per_message < 1:
        raise ValueError(f"max_per_message must be >= 1, got {max_per_message}")
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for profile in profiles:
        try:
            data = to_ocpp_json(profile, version)
        except ValueError as exc:
            _log.warning("charging profile %d not reported: %s", profile.id, exc)
            continue
        by_evse.setdefault(profile.evse_id, []).append(data)
    chunks: list[ReportChunk] = []
    for evse_id, items in by_evse.items():
        for start in range(0, len(items), max_per_message):
            chunks.append(ReportChunk(evse_id, tuple(items[start : start + max_per_message])))
    return chunks


# --------------------------------------------------------------------------- decoding


def _obj(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"not an object: {type(value).__name__}")
    return value


def _int(value: object, low: int = 0, high: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError("integer out of range")
    return value


def _float(value: object, low: float = 0.0, high: float = MAX_RATE) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {type(value).__name__}")
    if not (low <= value <= high) or not math.isfinite(value):
        raise ValueError("number out of range")
    return float(value) + 0.0


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {type(value).__name__}")
    return value


def _time(value: object) -> float:
    return epoch_s_from_rfc3339(_str(value))


def _opt(obj: Mapping[str, Any], key: str, read: Callable[[object], _T]) -> _T | None:
    return read(obj[key]) if key in obj else None


def _decode_entry(entry: object) -> ChargingProfile:
    data = _obj(entry)
    evse_id = _int(data["evseId"])
    profile = _obj(data["chargingProfile"])
    schedules = tuple(_decode_schedule(s) for s in profile["chargingSchedule"])
    if not schedules:
        raise ValueError("no chargingSchedule")
    return ChargingProfile(
        id=_int(profile["id"]),
        stack_level=_int(profile["stackLevel"]),
        purpose=Purpose(profile["chargingProfilePurpose"]),
        kind=Kind(profile["chargingProfileKind"]),
        schedules=schedules,
        evse_id=evse_id,
        recurrency=_opt(profile, "recurrencyKind", Recurrency),
        valid_from_s=_opt(profile, "validFrom", _time),
        valid_to_s=_opt(profile, "validTo", _time),
        transaction_id=_opt(profile, "transactionId", _str),
    )


def _decode_schedule(value: object) -> ChargingSchedule:
    schedule = _obj(value)
    periods = tuple(_decode_period(p) for p in schedule["chargingSchedulePeriod"])
    if not periods or periods[0].start_s != 0:
        raise ValueError("periods must start at 0")
    if any(b.start_s <= a.start_s for a, b in pairwise(periods)):
        raise ValueError("startPeriod not increasing")
    return ChargingSchedule(
        id=_int(schedule["id"]),
        rate_unit=RateUnit(schedule["chargingRateUnit"]),
        periods=periods,
        start_s=_opt(schedule, "startSchedule", _time),
        duration_s=_opt(schedule, "duration", _int),
        min_charging_rate=_opt(schedule, "minChargingRate", _float),
    )


def _decode_period(value: object) -> SchedulePeriod:
    period = _obj(value)
    discharge = _opt(period, "dischargeLimit", lambda v: _float(v, -MAX_RATE, 0.0))
    return SchedulePeriod(
        start_s=_int(period["startPeriod"]),
        limit=_opt(period, "limit", _float),
        number_phases=_opt(period, "numberPhases", lambda v: _int(v, 1, 3)),
        phase_to_use=_opt(period, "phaseToUse", lambda v: _int(v, 1, 3)),
        discharge_limit=None if discharge is None else abs(discharge),
        setpoint=_opt(period, "setpoint", lambda v: _float(v, -MAX_RATE, MAX_RATE)),
    )
