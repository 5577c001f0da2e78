"""Safety supervisor: latches faults from every source and gates energy flow.

Theory of operation: each fault *source* (the pilot board's report, the power
stage's report, the isolation monitor, timers, crashed tasks) reports the set
of fault conditions it currently sees. Any condition that appears is latched as
a :class:`Fault`. A latched fault stays until (a) its condition has gone from
every source *and* (b) someone asks to clear it (the EV was unplugged, or an
operator reset). While anything is latched, :meth:`may_energize` is False and
the controller keeps the safe state: power stage Off, then contactor
permission withdrawn (IEC 61851-23 6.3.1.x shutdown order; FACTS).

Pure and synchronous: no I/O, no clock; ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chargepoint.safety.faults import Fault, FaultKind

# One-shot faults have no lasting condition: they latch and wait for a clear.
ONE_SHOT = "one-shot"


class SafetySupervisor:
    def __init__(self) -> None:
        self._conditions: dict[str, frozenset[FaultKind]] = {}
        self._latched: dict[FaultKind, Fault] = {}

    @property
    def latched(self) -> Mapping[FaultKind, Fault]:
        return self._latched

    def may_energize(self) -> bool:
        return not self._latched

    def condition_active(self, kind: FaultKind) -> bool:
        return any(kind in kinds for src, kinds in self._conditions.items() if src != ONE_SHOT)

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
                fault = Fault(kind, detail, now)
                self._latched[kind] = fault
                new.append(fault)
        return new

    def raise_fault(self, kind: FaultKind, detail: str, now: float) -> Fault | None:
        """Latch a one-shot fault (no lasting condition); None if already latched."""
        if kind in self._latched:
            return None
        fault = Fault(kind, detail, now)
        self._latched[kind] = fault
        return fault

    def try_clear(self, *, include_one_shot: bool) -> list[FaultKind]:
        """Clear latched faults whose conditions have gone; return what was cleared.

        One-shot faults (task crash, contactor feedback mismatch) are cleared only
        when ``include_one_shot`` (an operator reset or an unplug)."""
        cleared = [
            kind
            for kind in self._latched
            if not self.condition_active(kind)
            and (include_one_shot or self._is_condition_based(kind))
        ]
        for kind in cleared:
            del self._latched[kind]
        return cleared

    def _is_condition_based(self, kind: FaultKind) -> bool:
        return kind not in (
            FaultKind.TASK_CRASHED,
            FaultKind.CONTACTOR_WELDED,
            FaultKind.CONTACTOR_STUCK_OPEN,
        )
