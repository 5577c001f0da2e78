"""Safety supervisor: latches faults from every source and gates energy flow.

Theory of operation: each fault *source* (the pilot board's report, the power
stage's report, the isolation monitor, timers, crashed tasks) reports the set
of fault conditions it currently sees. Any condition that appears is latched as
a :class:`Fault`. While anything is latched, :meth:`may_energize` is False and
the controller keeps the safe state: power stage Off, then contactor
permission withdrawn (IEC 61851-23 6.3.1.x shutdown order; FACTS).

A latched fault is released by :meth:`try_clear` only once its condition has
gone from every source; *when* that may be asked (the full F pulse over, the
car out of C/D) is the controller's rule. Two kinds of fault need more than an
operator's clear or an unplug, an explicit **service reset**:

* faults that say the hardware itself is broken (:data:`SERVICE_ONLY`: a welded
  contactor, a pilot board reporting an internal error);
* any fault latched ``repeat_limit`` times within ``repeat_window_s``: a fault
  that keeps coming back is a defect, not an incident.

Pure and synchronous: no I/O, no clock; ``now`` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from chargepoint.safety.faults import Fault, FaultKind

# Hardware that reports itself broken is not cleared by a replug or a remote clear.
SERVICE_ONLY = frozenset({FaultKind.CONTACTOR_WELDED, FaultKind.BOARD_INTERNAL})
SERVICE_NOTE = "service reset required"


class SafetySupervisor:
    def __init__(self, *, repeat_limit: int = 3, repeat_window_s: float = 600.0) -> None:
        if repeat_limit < 1 or repeat_window_s <= 0.0:
            raise ValueError("repeat_limit must be >= 1 and repeat_window_s > 0")
        self.repeat_limit = repeat_limit
        self.repeat_window_s = repeat_window_s
        self._conditions: dict[str, frozenset[FaultKind]] = {}
        self._latched: dict[FaultKind, Fault] = {}
        self._history: dict[FaultKind, deque[float]] = {}

    @property
    def latched(self) -> Mapping[FaultKind, Fault]:
        return self._latched

    def may_energize(self) -> bool:
        return not self._latched

    def needs_service(self) -> bool:
        """Whether a latched fault waits for a service reset."""
        return any(f.service_required for f in self._latched.values())

    def condition_active(self, kind: FaultKind) -> bool:
        return any(kind in kinds for kinds in self._conditions.values())

    def condition_active_from(self, source: str) -> bool:
        return bool(self._conditions.get(source))

    def source_reports(self, source: str, kind: FaultKind) -> bool:
        """Whether ``source`` currently reports condition ``kind``."""
        return kind in self._conditions.get(source, ())

    def report(
        self,
        source: str,
        active: Iterable[FaultKind],
        now: float,
        details: Mapping[FaultKind, str] | None = None,
    ) -> list[Fault]:
        """Replace ``source``'s current condition set; return newly latched faults."""
        kinds = frozenset(active)
        self._conditions[source] = kinds
        new: list[Fault] = []
        for kind in sorted(kinds, key=lambda k: k.value):
            if kind not in self._latched:
                detail = (details or {}).get(kind, f"reported by {source}")
                new.append(self._latch(kind, detail, now))
        return new

    def raise_fault(self, kind: FaultKind, detail: str, now: float) -> Fault | None:
        """Latch a one-shot fault (no lasting condition); None if already latched."""
        if kind in self._latched:
            return None
        return self._latch(kind, detail, now)

    def try_clear(self, *, service_reset: bool = False) -> list[FaultKind]:
        """Release latched faults whose conditions have gone; return what was released.

        Faults that need a service reset stay unless ``service_reset``; a service
        reset also forgets their repeat history."""
        cleared = [
            kind
            for kind, fault in self._latched.items()
            if not self.condition_active(kind) and (service_reset or not fault.service_required)
        ]
        for kind in cleared:
            if self._latched[kind].service_required:
                self._history.pop(kind, None)
            del self._latched[kind]
        return cleared

    def _latch(self, kind: FaultKind, detail: str, now: float) -> Fault:
        history = self._history.setdefault(kind, deque())
        history.append(now)
        while history and history[0] < now - self.repeat_window_s:
            history.popleft()
        repeated = len(history) >= self.repeat_limit
        service = kind in SERVICE_ONLY or repeated
        if repeated and kind not in SERVICE_ONLY:
            detail = f"{detail}; {len(history)} times within {self.repeat_window_s:g} s"
        if service:
            detail = f"{detail} ({SERVICE_NOTE})"
        fault = Fault(kind, detail, now, service_required=service)
        self._latched[kind] = fault
        return fault
