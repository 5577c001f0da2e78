"""Network connection profiles and their order (OCPP 2.0.1 B09, B10, A05), sans-I/O.

Theory of operation: configuration slot 0 is the connection the configuration
file describes; it cannot be overwritten over OCPP.  Slots 1..MAX_SLOT hold
the profiles a CSMS sent with SetNetworkProfile (B09).  At start-up the
station takes OCPPCommCtrlr.NetworkConfigurationPriority (it is RebootRequired)
and tries the slots in that order: after NetworkProfileConnectionAttempts
failed attempts on one slot it moves to the next one, wrapping around (B10).
That is also the A05 fall-back: a CSMS that upgrades the security profile
puts the new slot first, and when the station cannot connect with it, it
falls back to the previous one.

No downgrade (OCPP 2.0.1 A05): once the station has connected with security
profile P through a slot the CSMS gave it, slots with a lower profile are
skipped and SetNetworkProfile with a lower profile is rejected.  The floor is
persisted; only a local intervention (removing the state file) lowers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_SLOT = 3
SLOT_VALUES = tuple(str(i) for i in range(MAX_SLOT + 1))


@dataclass(frozen=True)
class NetworkProfile:
    slot: int
    #: ``None`` for slot 0: the configured URL
    csms_url: str | None
    security_profile: int
    #: the connectionData as the CSMS sent it (slots 1..), for reports and logs
    data: Mapping[str, Any] | None = None


class NetworkProfiles:
    """The slots, the order to try them in, and which one is in use."""

    def __init__(
        self,
        configured_profile: int,
        priority: tuple[str, ...],
        persisted: Mapping[str, Any] | None,
    ) -> None:
        persisted = persisted or {}
        self.floor = int(persisted.get("floor", 0))
        self._slots: dict[int, NetworkProfile] = {0: NetworkProfile(0, None, configured_profile)}
        for key, data in persisted.get("slots", {}).items():
            self._slots[int(key)] = NetworkProfile(
                int(key), data["ocppCsmsUrl"], int(data["securityProfile"]), data
            )
        #: the order fixed at start-up (NetworkConfigurationPriority is RebootRequired)
        order = [int(s) for s in priority if s.isdigit() and int(s) in self._slots]
        self._order = order or [0]
        self._slot = self._order[0]
        self._failures = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "slots": {
                str(slot): dict(p.data or {}) for slot, p in self._slots.items() if slot != 0
            },
        }

    def security_profile_of(self, slot: int) -> int | None:
        """The security profile stored in ``slot`` (None: an empty slot)."""
        found = self._slots.get(slot)
        return None if found is None else found.security_profile

    def usable(self) -> list[NetworkProfile]:
        """The slots in priority order, without those below the floor."""
        usable = [
            self._slots[s] for s in self._order if self._slots[s].security_profile >= self.floor
        ]
        # Never strand the station: without any usable slot keep trying the first one.
        return usable or [self._slots[self._order[0]]]

    def current(self) -> NetworkProfile:
        usable = self.usable()
        return next((p for p in usable if p.slot == self._slot), usable[0])

    def failed(self, attempts_per_slot: int) -> NetworkProfile | None:
        """An attempt failed; returns the next profile when it is time to move on (B10)."""
        self._failures += 1
        usable = self.usable()
        if self._failures < max(1, attempts_per_slot) or len(usable) < 2:
            return None
        self._failures = 0
        position = usable.index(self.current())
        self._slot = usable[(position + 1) % len(usable)].slot
        return self.current()

    def connected(self) -> bool:
        """The current slot works; returns whether the no-downgrade floor rose."""
        self._failures = 0
        profile = self.current()
        if profile.slot != 0 and profile.security_profile > self.floor:
            self.floor = profile.security_profile
            return True
        return False

    def set_profile(self, slot: int, data: Mapping[str, Any], current_profile: int) -> str | None:
        """SetNetworkProfile (B09): store ``data`` in ``slot``, or say why not."""
        if slot == 0:
            return "ReadOnly"  # slot 0 is the configuration file's
        if not 1 <= slot <= MAX_SLOT:
            return "InvalidSlot"
        profile = int(data["securityProfile"])
        if profile not in (1, 2, 3):
            return "InvalidProfile"
        if profile < max(self.floor, current_profile):
            return "NoDowngrade"  # A05: 2.0.1 forbids lowering the security profile
        if data["ocppTransport"] != "JSON":
            return "UnsupportedTransport"
        url = str(data["ocppCsmsUrl"])
        if not url.startswith("ws://" if profile == 1 else "wss://"):
            return "InvalidURL"
        if slot in self._order and self.current().slot == slot:
            return "SlotInUse"
        self._slots[slot] = NetworkProfile(slot, url, profile, dict(data))
        return None
