"""Reconnect back-off (OCPP 2.0.1 Part 4 §5.3, TC_B_57_CS)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepoint.errors import LocalProtocolError
from chargepoint.ocpp.backoff import BackOffPolicy, ReconnectBackOff

from .helpers import Harness


class FixedRandom:
    """Returns the upper bound times ``fraction``."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def test_tc_b_57_attempt_times_follow_the_rule_exactly() -> None:
    # TC_B_57_CS: RepeatTimes = 2, RandomRange = 0.
    h = Harness(
        overrides={
            "OCPPCommCtrlr.RetryBackOffWaitMinimum": "5",
            "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
            "OCPPCommCtrlr.RetryBackOffRepeatTimes": "2",
        }
    )
    h.connect()
    h.station.connection_lost(h.now, "CSMS went away")
    lost_at = h.now
    for _ in range(5):
        h.advance(h.station.next_deadline() - h.now)  # type: ignore[operator]
        h.station.connection_failed(h.now, "refused")
    assert [t - lost_at for t in h.opens[1:]] == [5, 15, 35, 55, 75]


def test_back_off_resets_after_a_successful_connection() -> None:
    h = Harness(
        overrides={
            "OCPPCommCtrlr.RetryBackOffWaitMinimum": "4",
            "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
        }
    )
    h.boot()
    h.station.connection_lost(h.now, "gone")
    h.advance(4)
    h.station.connection_failed(h.now, "refused")
    h.connect()  # second attempt succeeds, 8 s later
    assert h.opens[-1] - h.opens[-2] == 8
    h.station.connection_lost(h.now, "gone again")
    assert h.station.next_deadline() == h.now + 4


def test_first_attempt_of_a_fresh_start_is_immediate() -> None:
    h = Harness()
    h.station.start(h.now)
    h.drain()
    assert h.opens == [h.now]


@given(
    minimum=st.integers(0, 100),
    spread=st.integers(0, 100),
    repeat=st.integers(0, 6),
    seed=st.integers(0, 2**32),
)
def test_every_delay_is_the_doubled_base_plus_a_bounded_random_part(
    minimum: int, spread: int, repeat: int, seed: int
) -> None:
    policy = BackOffPolicy(minimum, spread, repeat)
    backoff = ReconnectBackOff(random.Random(seed))
    for attempt in range(repeat + 4):
        base = minimum * 2 ** min(attempt, repeat)
        delay = backoff.next_delay(policy)
        assert base <= delay <= base + spread


def test_random_part_is_fresh_each_time_but_not_doubled() -> None:
    backoff = ReconnectBackOff(FixedRandom(1.0))
    policy = BackOffPolicy(10, 3, 2)
    assert [backoff.next_delay(policy) for _ in range(4)] == [13, 23, 43, 43]


def test_negative_settings_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        BackOffPolicy(-1, 0, 0)
