"""A train / validation / test split of a data set, checked once for what the model needs.

The container itself (:class:`shf.sets.Split`) lives below the loop and the optimizers, which
share it; it is re-exported here, where the loaders make it."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from shf.errors import DataError
from shf.sets import InputSplit, Sets, Split

__all__ = ["InputSplit", "Sets", "Split", "check_array", "make_split"]

def check_array(x: np.ndarray | Tensor, name: str, *, unit_range: bool = True) -> Tensor:
    """Validate one part of a data set and return it as a tensor.

    Raises :class:`DataError` for a non-2-D array, an empty one, NaN/Inf entries, or
    (``unit_range``) values outside ``[0, 1]``, which logistic outputs cannot reach.
    """
    if not isinstance(x, Tensor):
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise DataError(f"{name} must be numeric, got dtype {a.dtype}")
        t = torch.as_tensor(a)
    else:
        t = x
    if t.dim() != 2:
        raise DataError(f"{name} must be a 2-D array (examples x features), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {tuple(t.shape)})")
    if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
        raise DataError(f"{name} must be numeric, got dtype {t.dtype}")
    t = t.to(torch.float64) if not t.is_floating_point() or t.dtype == torch.float16 else t
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        r, c = (int(v) for v in bad.nonzero()[0])
        raise DataError(
            f"{name} contains NaN or Inf ({int(bad.sum())} entries, first at row {r}, column {c})"
        )
    if unit_range:
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{name} has values in [{lo:g}, {hi:g}] but the model's logistic outputs need data in "
                "[0, 1]: scale it first (e.g. divide 0..255 pixels by 255)"
            )
    return t


def make_split(
    train: np.ndarray | Tensor,
    val: np.ndarray | Tensor,
    test: np.ndarray | Tensor,
    name: str = "data",
    *,
    unit_range: bool = True,
) -> Split:
    """Check three arrays and bundle them; widths must agree."""
    tr = check_array(train, f"{name} train", unit_range=unit_range)
    va = check_array(val, f"{name} validation", unit_range=unit_range)
    te = check_array(test, f"{name} test", unit_range=unit_range)
    if not tr.shape[1] == va.shape[1] == te.shape[1]:
        raise DataError(
            f"{name}: train, validation and test widths differ: {tr.shape[1]}, {va.shape[1]}, {te.shape[1]}"
        )
    return Split(tr, va, te, name)
