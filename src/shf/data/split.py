"""A train / validation / test split of a data set, checked once for what the model needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

from shf.batch import Inputs
from shf.errors import DataError

X = TypeVar("X", bound=Inputs, covariant=True)
"""What a split's inputs are: tensors (:data:`Split`, the data sets of the experiments), or, for
``shf.fit``, tensors or dicts of tensors (:data:`InputSplit`; :mod:`shf.batch`)."""


@dataclass(frozen=True)
class Sets(Generic[X]):
    """Rows are examples; all three parts have the same number of columns.

    ``train_targets``/``val_targets``/``test_targets`` are the targets of a supervised
    task (labels for classification); ``None`` for an autoencoder, whose targets are
    its inputs.
    """

    train: X
    val: X
    test: X
    name: str = "data"
    train_targets: Tensor | None = None
    val_targets: Tensor | None = None
    test_targets: Tensor | None = None

    @property
    def dim(self: Split) -> int:
        """Number of features ``m_1``."""
        return int(self.train.shape[1])

    def to(self: Split, dtype: torch.dtype, device: torch.device | str = "cpu") -> Split:
        """The same split as ``dtype`` on ``device`` (integer targets keep their dtype)."""

        def move(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return t.to(dtype=dtype, device=device) if t.is_floating_point() else t.to(device=device)

        return Split(
            self.train.to(dtype=dtype, device=device),
            self.val.to(dtype=dtype, device=device),
            self.test.to(dtype=dtype, device=device),
            self.name,
            move(self.train_targets),
            move(self.val_targets),
            move(self.test_targets),
        )

    @property
    def supervised(self) -> bool:
        """True when the split has targets other than its inputs."""
        return self.train_targets is not None


Split = Sets[Tensor]
"""A split of tensors (every data set of the experiments)."""
InputSplit = Sets[Inputs]
"""A split whose inputs may be dicts of tensors (``shf.fit``)."""


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
