"""The curvature sampler (shf.optim.sampler): the whole batch, B7's first rows, B11's growing rows."""

from __future__ import annotations

import math

from shf.optim.sampler import CurvatureRows, FirstRows, GrowingRows, make_sampler


def test_each_sampler_gives_its_rows_and_only_b11_grows_and_keeps_state() -> None:
    whole = make_sampler(None, None, 2.0)
    assert type(whole) is CurvatureRows and whole.rows(100) is None and whole.state_dict() is None
    first = make_sampler(30, None, 2.0)
    assert isinstance(first, FirstRows) and not isinstance(first, GrowingRows)
    assert (first.rows(100), first.rows(30), first.rows(20), first.size) == (30, None, None, 30)
    first.observe(math.inf, 1000)  # B7 alone never grows
    assert first.rows(100) == 30 and first.state_dict() is None
    growing = make_sampler(30, 2, 2.0)
    assert isinstance(growing, GrowingRows)
    for loss in (1.0, 1.0, 1.0):  # one improvement, then two stalls: grows once, to 60
        growing.observe(loss, 1000)
    assert growing.rows(100) == 60 and growing.rows(60) is None
    for _ in range(4):
        growing.observe(1.0, 100)  # at most the cap
    assert growing.size == 100
    again = make_sampler(30, 2, 2.0)
    again.load_state_dict(growing.state_dict())
    assert again.state_dict() == growing.state_dict() and again.rows(1000) == 100
    again.load_state_dict(None)  # a state saved without B11 leaves it as it is
    assert again.size == 100
