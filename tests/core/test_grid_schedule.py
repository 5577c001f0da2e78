"""The CSMS's limits ahead: evaluation, windows, change detection, fitting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepoint.power.grid_schedule import GridSchedule, GridStep, fit_pieces

INF = math.inf


def sched(*steps: tuple[float, float]) -> GridSchedule:
    return GridSchedule(tuple(GridStep(at, power) for at, power in steps))


def test_no_limit_before_the_first_step_and_the_last_step_lasts() -> None:
    g = sched((100, 5_000.0), (200, 7_000.0))
    assert g.charge_at(99.9) == INF
    assert g.charge_at(100) == 5_000.0
    assert g.charge_at(1e9) == 7_000.0
    assert g.discharge_at(150) == INF


def test_window_starts_at_zero_and_merges_equal_neighbours() -> None:
    g = sched((0, 5_000.0), (50, 5_000.0), (100, 9_000.0), (5_000, 1_000.0))
    assert g.window(10, 1_000) == [(0, 5_000.0, INF), (90, 9_000.0, INF)]
    assert sched().window(10, 100) == [(0, INF, INF)]


def test_a_recomputed_but_equal_schedule_is_the_same() -> None:
    first = sched((0, 5_000.0), (100, 9_000.0))
    later = sched((60, 5_000.0), (100, 9_000.0))  # recomputed at t = 60
    assert first.same_from(later, 60)
    assert not first.same_from(later, 30)  # before 60 they differ
    assert not first.same_from(sched((60, 5_000.0), (100, 8_000.0)), 60)


def test_fit_pieces_keeps_the_head_and_the_lowest_tail() -> None:
    pieces = [(i * 10, float(100 - i), INF) for i in range(20)]
    fitted = fit_pieces(pieces, 5)
    assert fitted[:4] == pieces[:4]
    assert fitted[4] == (40, 81.0, INF)
    with pytest.raises(ValueError):
        fit_pieces(pieces, 0)


steps = st.lists(
    st.tuples(st.integers(0, 10_000), st.floats(0, 50_000, allow_nan=False)), max_size=12
).map(lambda items: sched(*sorted(items, key=lambda item: item[0])))


@given(steps, st.integers(0, 12_000), st.integers(1, 5_000))
def test_window_agrees_with_point_evaluation(g: GridSchedule, start: int, duration: int) -> None:
    pieces = g.window(start, duration)
    assert pieces[0][0] == 0
    for offset in range(0, duration, max(1, duration // 97)):
        active = [p for p in pieces if p[0] <= offset][-1]
        assert active[1] == g.charge_at(start + offset)


@given(steps, st.integers(1, 30))
def test_fitting_never_allows_more(g: GridSchedule, limit: int) -> None:
    pieces = g.window(0, 20_000)
    fitted = fit_pieces(pieces, limit)
    assert len(fitted) <= limit
    for offset in range(0, 20_000, 37):
        original = [p for p in pieces if p[0] <= offset][-1][1]
        allowed = [p for p in fitted if p[0] <= offset][-1][1]
        assert allowed <= original
