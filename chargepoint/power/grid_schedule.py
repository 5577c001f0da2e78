"""The CSMS's limits ahead in time, as an ISO 15118-20 Scheduled session needs them.

The arbiter's ``csms`` source holds the limit in force *now*; a Scheduled
session also offers the car the limits *ahead* (ScheduleTuples), so the car
can plan its charge instead of meeting a cut-off.  A :class:`GridSchedule` is
that future, as absolute UTC steps in W, from the smart-charging block's
composite schedule.  Sans-I/O: plain values, evaluated at the session's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf


@dataclass(frozen=True, slots=True)
class GridStep:
    """From ``start_utc_s`` (to the next step's start) at most ``charge_power_w``
    to the EV and ``discharge_power_w`` from it (magnitudes; ``inf``: no limit)."""

    start_utc_s: float
    charge_power_w: float = INF
    discharge_power_w: float = INF


@dataclass(frozen=True, slots=True)
class GridSchedule:
    """Steps in ascending start order; before the first step there is no limit."""

    steps: tuple[GridStep, ...] = ()

    def at(self, utc_s: float) -> GridStep | None:
        """The step in force at ``utc_s`` (``None`` before the first one)."""
        found = None
        for step in self.steps:
            if step.start_utc_s > utc_s:
                break
            found = step
        return found

    def charge_at(self, utc_s: float) -> float:
        step = self.at(utc_s)
        return INF if step is None else step.charge_power_w

    def discharge_at(self, utc_s: float) -> float:
        step = self.at(utc_s)
        return INF if step is None else step.discharge_power_w

    def window(self, start_utc_s: float, duration_s: int) -> list[tuple[int, float, float]]:
        """``(offset_s, charge_w, discharge_w)`` pieces covering ``duration_s`` from
        ``start_utc_s``, equal neighbours merged; the first piece starts at 0."""
        end = start_utc_s + duration_s
        edges = [start_utc_s] + [
            s.start_utc_s for s in self.steps if start_utc_s < s.start_utc_s < end
        ]
        pieces: list[tuple[int, float, float]] = []
        for edge in edges:
            offset = math.floor(edge - start_utc_s)
            value = (self.charge_at(edge), self.discharge_at(edge))
            if pieces and (pieces[-1][1], pieces[-1][2]) == value:
                continue
            if pieces and pieces[-1][0] == offset:
                pieces[-1] = (offset, *value)
                continue
            pieces.append((offset, *value))
        return pieces

    def same_from(self, other: GridSchedule, utc_s: float) -> bool:
        """Whether both give the same limits at every instant from ``utc_s`` on
        (a schedule recomputed later but unchanged is not a change)."""
        instants = {utc_s}
        instants.update(s.start_utc_s for s in self.steps if s.start_utc_s > utc_s)
        instants.update(s.start_utc_s for s in other.steps if s.start_utc_s > utc_s)
        return all(
            self.charge_at(t) == other.charge_at(t)
            and self.discharge_at(t) == other.discharge_at(t)
            for t in instants
        )


NO_SCHEDULE = GridSchedule()


def fit_pieces(
    pieces: list[tuple[int, float, float]], max_pieces: int
) -> list[tuple[int, float, float]]:
    """At most ``max_pieces``: the tail beyond the limit becomes one piece with the
    lowest limits of what it replaces (never more than the CSMS allows)."""
    if max_pieces < 1:
        raise ValueError("max_pieces must be at least 1")
    if len(pieces) <= max_pieces:
        return pieces
    head = pieces[: max_pieces - 1]
    tail = pieces[max_pieces - 1 :]
    merged = (tail[0][0], min(p[1] for p in tail), min(p[2] for p in tail))
    return [*head, merged]
