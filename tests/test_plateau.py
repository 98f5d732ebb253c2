"""shf.optim.plateau: B11's growth on a plateau, against its definition step by step."""

from __future__ import annotations

import math

import pytest

from shf.optim.plateau import PlateauGrowth


def test_grows_after_patience_iterations_without_relative_progress() -> None:
    rule = PlateauGrowth(size=10, patience=2, growth=2.0, threshold=0.1)
    # 100 -> best; 95 is not 10% better (stall 1); 91 is not either (stall 2: grow to 20, count
    # restarts); 80 is 20% better than 100 (best); inf is no progress (1); 71.9 < 0.9 * 80 (best).
    sizes = [rule.update(v, cap=1000) for v in (100.0, 95.0, 91.0, 80.0, math.inf, 71.9)]
    assert sizes == [10, 10, 20, 20, 20, 20]
    assert rule.best == 71.9 and rule.since == 0


def test_growth_rounds_up_and_stops_at_the_cap() -> None:
    rule = PlateauGrowth(size=7, patience=1, growth=1.5)
    assert [rule.update(1.0, cap=20) for _ in range(5)] == [7, 11, 17, 20, 20]
    assert rule.since == 1  # at the cap the stall count goes on, nothing grows


def test_nan_never_counts_as_progress() -> None:
    rule = PlateauGrowth(size=4, patience=3)
    assert [rule.update(math.nan, cap=100) for _ in range(3)] == [4, 4, 8]
    assert rule.best == math.inf


@pytest.mark.parametrize("cut", [1, 3, 5])
def test_state_dict_resumes_exactly(cut: int) -> None:
    values = [9.0, 8.0, 8.0, 8.0, 7.0, 7.0, 7.0, 7.0]
    whole = PlateauGrowth(size=3, patience=2)
    expected = [whole.update(v, cap=50) for v in values]
    a = PlateauGrowth(size=3, patience=2)
    got = [a.update(v, cap=50) for v in values[:cut]]
    b = PlateauGrowth(size=999, patience=2)
    b.load_state_dict(a.state_dict())
    got += [b.update(v, cap=50) for v in values[cut:]]
    assert got == expected and expected[-1] > 3
