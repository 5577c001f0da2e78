"""Authorization cache, local authorization list and the offline policy (OCPP 2.0.1
C01, C10-C15, D01, D02), sans-I/O.

Theory of operation: :class:`AuthCache` remembers the IdTokenInfo the CSMS
gave for a token (C10), for AuthCacheCtrlr.LifeTime or until its
cacheExpiryDateTime, whichever comes first; when full, the least recently
used entry goes (AuthCacheCtrlr.Policy = LRU).  :class:`LocalList` is what the
CSMS installed with SendLocalList (D01), with its version (D02).

:func:`decide_locally` is the policy for a token the CSMS cannot be asked
about (offline, or the Authorize timed out):

1. the local list, then the cache, when AuthCtrlr.LocalAuthorizeOffline
   allows it (C12, C13): their status is the answer;
2. an unknown token is Accepted when AuthCtrlr.OfflineTxForUnknownIdEnabled
   (C15), otherwise it is refused with status ``Unknown``.

Times are UTC epoch seconds; the core converts from its monotonic clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargepoint.ocpp.station_io import IdToken

#: Entries the authorization cache holds at most (this project's choice).
CACHE_CAPACITY = 1000


@dataclass(frozen=True)
class AuthorizationResult:
    """What :meth:`OcppClient.authorize` answers.

    ``status`` is an AuthorizationStatusEnumType value (Accepted, Blocked,
    Expired, Invalid, NoCredit, NotAllowedTypeEVSE, NotAtThisLocation,
    NotAtThisTime, Unknown).  ``source`` tells where the decision came from:
    ``CSMS``, ``LocalList``, ``Cache``, ``OfflineUnknown`` (C15),
    ``Disabled`` (AuthCtrlr.Enabled is false) or ``Refused`` (offline and
    nothing allowed it).
    """

    status: str
    source: str
    id_token_info: Mapping[str, Any] | None = None
    #: OCPP 2.1 AuthorizeResponse.allowedEnergyTransfer (empty: charging only)
    allowed_energy_transfer: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.status == "Accepted"


def token_key(token: IdToken) -> str:
    return f"{token.kind}:{token.id_token}"


def _key_of(data: Mapping[str, Any]) -> str:
    return f"{data['type']}:{data['idToken']}"


class AuthCache:
    """C10: IdTokenInfo per token, least recently used first."""

    def __init__(self, persisted: Mapping[str, Any] | None) -> None:
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for key, entry in (persisted or {}).get("entries", []):
            self._entries[key] = dict(entry)

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> dict[str, Any]:
        return {"entries": [[k, v] for k, v in self._entries.items()]}

    def store(
        self,
        token: IdToken,
        info: Mapping[str, Any],
        utc: float,
        lifetime_s: int,
        expiry_utc: float | None = None,
    ) -> None:
        """``expiry_utc``: the parsed cacheExpiryDateTime, if the CSMS gave one."""
        expires = utc + lifetime_s
        if expiry_utc is not None:
            expires = min(expires, expiry_utc)
        key = token_key(token)
        self._entries.pop(key, None)
        self._entries[key] = {"info": dict(info), "expires": expires}
        while len(self._entries) > CACHE_CAPACITY:
            self._entries.popitem(last=False)

    def lookup(self, token: IdToken, utc: float) -> Mapping[str, Any] | None:
        key = token_key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if utc >= entry["expires"]:
            del self._entries[key]  # C10: an expired entry is as good as none
            return None
        self._entries.move_to_end(key)
        info: Mapping[str, Any] = entry["info"]
        return info

    def clear(self) -> None:
        self._entries.clear()

    def peek(self, token: IdToken, utc: float) -> Mapping[str, Any] | None:
        """The entry for ``token`` (its info and ``expires``), unexpired, without
        touching its place in the LRU order (N09: a report is not a use)."""
        entry = self._entries.get(token_key(token))
        return entry if entry is not None and utc < entry["expires"] else None

    def remove(self, token: IdToken) -> bool:
        """N10: forget ``token``; whether there was an entry."""
        return self._entries.pop(token_key(token), None) is not None


class LocalList:
    """D01/D02: the local authorization list and its version."""

    def __init__(self, persisted: Mapping[str, Any] | None) -> None:
        persisted = persisted or {}
        self.version = int(persisted.get("version", 0))
        self._entries: dict[str, dict[str, Any]] = dict(persisted.get("entries", {}))

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> dict[str, Any]:
        return {"version": self.version, "entries": self._entries}

    def lookup(self, token: IdToken) -> Mapping[str, Any] | None:
        return self._entries.get(token_key(token))

    def update(self, version: int, full: bool, entries: list[Mapping[str, Any]]) -> str:
        """SendLocalList; returns the SendLocalListStatusEnumType value."""
        if version <= 0:
            return "Failed"
        if not full and version <= self.version:
            return "VersionMismatch"  # D01: a differential update must be newer
        new = {} if full else dict(self._entries)
        for item in entries:
            key = _key_of(item["idToken"])
            if "idTokenInfo" in item:
                new[key] = dict(item["idTokenInfo"])
            elif full:
                return "Failed"  # D01: a full list entry carries its IdTokenInfo
            else:
                new.pop(key, None)  # D01: differential without info removes the entry
        self._entries = new
        self.version = version
        return "Accepted"


def decide_locally(
    token: IdToken,
    *,
    local_list: LocalList | None,
    cache: AuthCache | None,
    utc: float,
    local_authorize_offline: bool,
    offline_tx_for_unknown: bool,
) -> AuthorizationResult:
    """The offline policy (C12, C13, C15); ``None`` for a disabled list or cache."""
    if local_authorize_offline:
        if local_list is not None:
            info = local_list.lookup(token)
            if info is not None:
                return AuthorizationResult(info["status"], "LocalList", info)
        if cache is not None:
            info = cache.lookup(token, utc)
            if info is not None:
                return AuthorizationResult(info["status"], "Cache", info)
    if offline_tx_for_unknown:
        return AuthorizationResult("Accepted", "OfflineUnknown")
    return AuthorizationResult("Unknown", "Refused")
