"""The train / validation / test sets that the fit loop, the optimizers and the experiments share.

Rows are examples. :data:`Split` holds tensors (the data sets of the experiments, made and
checked by :mod:`shf.data`); :data:`InputSplit` may hold dicts of tensors (``shf.fit``'s inputs,
:mod:`shf.batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from torch import Tensor

from shf.batch import Inputs

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
