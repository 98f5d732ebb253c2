"""A map-style ``torch.utils.data.Dataset`` as a source of rows: training data that need not fit
in memory.

Alg. 1 draws ``n`` training examples without replacement per HF iteration. :class:`DatasetRows`
reads just those examples from a dataset (``dataset[i]`` for each index, optionally through a
``DataLoader`` with worker processes) and stacks them into the batch tensors an SHF step takes.
Each item is a tensor of inputs (the model reconstructs it: an autoencoder), a dict of input
tensors, or a pair ``(inputs, target)``; items are stacked as ``torch.utils.data.default_collate``
stacks them.

:func:`tensors` reads a whole dataset into tensors, for the sets that are read at every
iteration (the validation set, which Alg. 1 and Alg. 6's merit evaluate many times per HF
iteration) or once (the test set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from shf import batch as bt
from shf.batch import Inputs
from shf.errors import DataError

READ_CHUNK = 4096
"""Items stacked at once when a whole dataset is read (:func:`tensors`)."""


def is_dataset(data: object) -> bool:
    """Whether ``data`` is a map-style dataset (has ``__getitem__`` and ``__len__``, not a tensor,
    tuple or list)."""
    if isinstance(data, Tensor | tuple | list):
        return False
    return isinstance(data, Dataset) and hasattr(data, "__len__")


def _pair(batch: Any, what: str) -> tuple[Inputs, Tensor | None]:
    """A collated batch as ``(X, Y)``: inputs (``Y = None``) or a pair (inputs, targets); the inputs
    are a tensor or a dict of tensors (:mod:`shf.batch`)."""
    if bt.is_inputs(batch):
        return batch, None
    if (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and bt.is_inputs(batch[0])
        and isinstance(batch[1], Tensor)
    ):
        return batch[0], batch[1]
    kind = type(batch).__name__
    if isinstance(batch, (tuple, list)):
        kind = f"{len(batch)}-item {kind}"
    raise DataError(
        f"{what}: each item must be inputs (a tensor or a dict of tensors) or a pair (inputs, target) "
        "of them (a target may be a number), "
        f"the items stack to a {kind}"
    )


class DatasetRows:
    """Rows of a map-style dataset, read on demand.

    Args:
        dataset: the dataset (``len(dataset)`` examples; ``dataset[i]`` an input tensor or an
            ``(input, target)`` pair).
        what: its name in error messages.
        workers: ``DataLoader`` worker processes that read the items (0: this process). Workers
            start for every batch, so they pay off only when reading an item is slow (files,
            decoding) against the HF iteration.
        dtype, device: of the floating-point tensors returned (integer targets keep their dtype).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        what: str = "train",
        *,
        workers: int = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not is_dataset(dataset):
            raise DataError(
                f"{what} must be a map-style torch.utils.data.Dataset, got {type(dataset).__name__}"
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise DataError(f"workers must be an integer >= 0, got {workers!r}")
        self.dataset = dataset
        self.what = what
        self.workers = workers
        self.dtype = dtype
        self.device = device
        n = len(dataset)  # type: ignore[arg-type]
        if n < 2:
            raise DataError(f"{what} needs at least 2 examples, got {n}")
        self.n = n

    def __len__(self) -> int:
        return self.n

    def take(self, idx: Tensor | Sequence[int]) -> tuple[Inputs, Tensor | None]:
        """The examples at ``idx`` stacked, in that order: ``(X, Y)`` (``Y = None``: inputs only)."""
        rows = [int(i) for i in idx]
        if self.workers > 0:
            loader = DataLoader(Subset(self.dataset, rows), batch_size=len(rows), num_workers=self.workers)
            batch = next(iter(loader))
        else:
            try:
                batch = default_collate([self.dataset[i] for i in rows])
            except (TypeError, RuntimeError) as e:
                raise DataError(f"{self.what}: the items could not be stacked into a batch ({e})") from None
        X, Y = _pair(batch, self.what)
        bt.rows(X, f"{self.what} inputs")  # every tensor of a dict stacked to one row per item
        return bt.apply(self._cast, X), None if Y is None else self._cast(Y)

    def _cast(self, t: Tensor) -> Tensor:
        dtype = self.dtype if (self.dtype is not None and t.is_floating_point()) else None
        return t.to(dtype=dtype, device=self.device)


def tensors(
    dataset: Dataset[Any],
    what: str = "data",
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Inputs, Tensor | None]:
    """The whole dataset as ``(X, Y)`` tensors (``Y = None`` for inputs-only items; ``X`` a dict of
    tensors for dict items), read in chunks of :data:`READ_CHUNK` items."""
    rows = DatasetRows(dataset, what, dtype=dtype, device=device)
    parts = [rows.take(range(s, min(s + READ_CHUNK, rows.n))) for s in range(0, rows.n, READ_CHUNK)]
    X = _cat([p[0] for p in parts])
    ys = [p[1] for p in parts]
    Y = None if any(y is None for y in ys) else torch.cat([y for y in ys if y is not None])
    return X, Y


def _cat(parts: list[Inputs]) -> Inputs:
    """Chunks of inputs joined along the rows (a dict key by key)."""
    if isinstance(parts[0], Tensor):
        return torch.cat(cast(list[Tensor], parts))
    first = parts[0]
    return {k: _cat([cast(Mapping[str, Any], p)[k] for p in parts]) for k in first}
