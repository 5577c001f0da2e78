"""When the simulated car renegotiates its schedule from the charge loop (pure).

In the charge loop PowerDelivery may interleave with
``ChargeProgress=ScheduleRenegotiation`` (FACTS.md "Session sequence"); the car
then sends ScheduleExchange again (the same request as the first, repeated
while ``Ongoing``), PowerDelivery(Start) naming a ScheduleTuple of the new
offer (Scheduled mode) and resumes the loop. Two things start it:

* the SECC: ``EVSEStatus.EVSENotification = ScheduleRenegotiation`` in a
  response; the car sends its PowerDelivery within ``NotificationMaxDelay``
  seconds: at its next request slot, earlier if the delay is shorter;
* the car itself, once per session, after ``CarProfile.renegotiate_after_loops``
  answered loops (to exercise the SECC's EV-initiated path).

A request that finds the car winding down is dropped: the energy transfer ends
anyway, a new schedule would serve nothing. The session runs the messages;
this records who asked, when it must happen and what it changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

__all__ = ["Initiator", "Renegotiation"]

_log = logging.getLogger(__name__)


class Initiator(Enum):
    EVSE = "EVSE"
    EV = "EV"


def _tuple_text(tuple_id: int | None) -> str:
    return "-" if tuple_id is None else str(tuple_id)


@dataclass(slots=True)
class Renegotiation:
    """Schedule renegotiations of one session (see the module docstring)."""

    after_loops: int | None = None  # the car's own, once; None: never
    count: int = 0  # completed: back in the charge loop on the new schedule
    wanted: Initiator | None = None  # asked for, not started yet
    send_by: float | None = None  # NotificationMaxDelay: PowerDelivery by then
    running: Initiator | None = None
    from_tuple_id: int | None = None
    own_done: bool = False

    def notice(self, now: float, max_delay_s: int) -> float:
        """The SECC asked; returns when PowerDelivery(ScheduleRenegotiation) is due at
        the latest (``NotificationMaxDelay`` after the notice)."""
        latest = now + max(0, max_delay_s)
        self.send_by = latest if self.send_by is None else min(self.send_by, latest)
        if self.wanted is None:
            self.wanted = Initiator.EVSE
        return self.send_by

    def due(self, loops: int, *, stopping: bool) -> Initiator | None:
        """At a request slot of the charge loop: who wants a renegotiation now (None:
        nobody, or the car is winding down and the request is dropped)."""
        own = self.after_loops
        if self.wanted is None and not self.own_done and own is not None and loops >= own:
            self.wanted = Initiator.EV
        wanted, self.wanted, self.send_by = self.wanted, None, None
        if wanted is Initiator.EV:
            self.own_done = True
        if wanted is not None and stopping:
            _log.info(
                "EVCC: schedule renegotiation (%s) dropped: the car is stopping", wanted.value
            )
            return None
        return wanted

    def begin(self, initiator: Initiator, tuple_id: int | None) -> None:
        self.running, self.from_tuple_id = initiator, tuple_id
        _log.debug("EVCC: schedule renegotiation initiated by the %s", initiator.value)

    def abandon(self, reason: str) -> None:
        """Ended after ScheduleExchange instead of resuming (PowerDelivery(Stop))."""
        who = "?" if self.running is None else self.running.value
        self.running = None
        _log.info("EVCC: schedule renegotiation (%s) ends the energy transfer: %s", who, reason)

    def finish(self, tuple_id: int | None, offered: list[int]) -> None:
        """Back in the charge loop: count it and log the one line that says what changed."""
        who = "EVSE" if self.running is None else self.running.value
        self.count += 1
        self.running = None
        if tuple_id is None and self.from_tuple_id is None:
            _log.info("EVCC: schedule renegotiated (initiated by the %s): Dynamic mode", who)
            return
        _log.info(
            "EVCC: schedule renegotiated (initiated by the %s): ScheduleTuple %s -> %s of %s",
            who,
            _tuple_text(self.from_tuple_id),
            _tuple_text(tuple_id),
            offered,
        )
