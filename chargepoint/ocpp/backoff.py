"""Reconnect back-off of a charging station (OCPP 2.0.1 Part 4 §5.3; 2.1 Part 4 §5.4).

Theory of operation: after the connection is lost (or an attempt fails) the
station waits ``RetryBackOffWaitMinimum`` plus a random part in
``[0, RetryBackOffRandomRange]`` before the first attempt.  After every failed
attempt the previous back-off is doubled, at most ``RetryBackOffRepeatTimes``
times, and a fresh random part is added each time.  Once the doublings are used
up, the station keeps that last back-off (still with a fresh random part).

The base (without the random part) is what gets doubled: the random part only
spreads stations apart, it must not compound.  With ``RandomRange = 0`` this is
exactly the schedule TC_B_57_CS checks.

Pure: no clock, no I/O; the random source is injected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chargepoint.errors import LocalProtocolError


class RandomSource(Protocol):
    """What the back-off needs from a random generator (``random.Random`` fits)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class BackOffPolicy:
    """The three OCPPCommCtrlr.RetryBackOff* variables, in seconds."""

    wait_minimum_s: float
    random_range_s: float
    repeat_times: int

    def __post_init__(self) -> None:
        if self.wait_minimum_s < 0 or self.random_range_s < 0 or self.repeat_times < 0:
            raise LocalProtocolError(f"negative back-off setting in {self}")


class ReconnectBackOff:
    """Yields the delay before each reconnect attempt."""

    def __init__(self, rng: RandomSource) -> None:
        self._rng = rng
        self._base_s: float | None = None
        self._doublings = 0

    def reset(self) -> None:
        """Forget the history: call once a connection has been established."""
        self._base_s = None
        self._doublings = 0

    def next_delay(self, policy: BackOffPolicy) -> float:
        """Delay before the next attempt; each call counts as one more failure."""
        if self._base_s is None:
            # Part 4 §5.3: first attempt after WaitMinimum + random(0..RandomRange).
            self._base_s = policy.wait_minimum_s
        elif self._doublings < policy.repeat_times:
            # Part 4 §5.3: double the previous back-off, at most RepeatTimes times.
            self._base_s *= 2
            self._doublings += 1
        # else Part 4 §5.3: keep the last back-off.
        return self._base_s + self._rng.uniform(0.0, policy.random_range_s)
