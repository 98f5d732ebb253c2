"""Data checks: shapes, NaN/Inf, values outside [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest

from shf.data.split import check_array, make_split
from shf.errors import DataError


def test_good_split():
    s = make_split(np.zeros((4, 3)), np.ones((2, 3)), np.full((2, 3), 0.5))
    assert s.dim == 3 and s.train.shape == (4, 3)


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros(5), r"must be a 2-D array .* got shape \(5,\)"),
        (np.zeros((0, 4)), "is empty"),
        (np.array([[0.1, np.nan]]), "contains NaN or Inf .* row 0, column 1"),
        (np.array([[0.1], [np.inf]]), "contains NaN or Inf .* row 1, column 0"),
        (np.array([[0.0, 255.0]]), r"values in \[0, 255\] .* need data in \[0, 1\]"),
        (np.array([[-0.5, 0.5]]), r"values in \[-0.5, 0.5\]"),
        (np.array([["a", "b"]]), "must be numeric"),
    ],
)
def test_bad_arrays(arr, match):
    with pytest.raises(DataError, match=match):
        check_array(arr, "X")


def test_width_mismatch():
    with pytest.raises(DataError, match="widths differ: 3, 4, 3"):
        make_split(np.zeros((4, 3)), np.zeros((2, 4)), np.zeros((2, 3)))
