"""The curvature sampler of an HF iteration: which rows of the batch the curvature products use.

The paper computes ``A`` on the whole batch. Beyond the paper, B7 (``curvature_size``) takes the
first rows only, with the gradient still of the whole batch (Byrd, Chin, Neveitt & Nocedal
2011's subsampled curvature), and B11 (``curvature_patience``) grows that subset when the
validation loss stalls (:class:`shf.optim.plateau.PlateauGrowth`). :func:`make_sampler` chooses
the part once; it holds its own state (B11's) and ``state_dict``.
"""

from __future__ import annotations

from typing import Any, cast

from shf.optim.plateau import PlateauGrowth


class CurvatureRows:
    """The paper's: the whole batch."""

    def rows(self, n: int) -> int | None:
        """The curvature rows for a batch of ``n`` (its first ones), or None for the whole batch."""
        return None

    def observe(self, val_loss: float, cap: int) -> None:
        """After an iteration: the validation loss (B11 watches it); ``cap``: the batch's cap."""

    @property
    def size(self) -> int | None:
        """The subset's size (None: the whole batch)."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """The part's state (None: it has none)."""
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict`."""


class FirstRows(CurvatureRows):
    """B7: the batch's first ``size`` rows (the whole batch when it is not larger)."""

    def __init__(self, size: int) -> None:
        self._size = size

    @property
    def size(self) -> int | None:
        return self._size

    def rows(self, n: int) -> int | None:
        size = cast(int, self.size)
        return size if size < n else None


class GrowingRows(FirstRows):
    """B11: B7's first rows, their number grown by ``growth`` after ``patience`` iterations in which
    the validation loss stalled (at most the batch's cap)."""

    def __init__(self, size: int, patience: int, growth: float) -> None:
        super().__init__(size)
        self.plateau = PlateauGrowth(size, patience, growth)

    @property
    def size(self) -> int | None:
        return self.plateau.size

    def observe(self, val_loss: float, cap: int) -> None:
        # Beyond the paper (B11): the next curvature batch, grown after curvature_patience
        # iterations in which the validation loss stalled
        self.plateau.update(val_loss, cap)

    def state_dict(self) -> dict[str, Any] | None:
        return self.plateau.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.plateau.load_state_dict(state)


def make_sampler(size: int | None, patience: int | None, growth: float) -> CurvatureRows:
    """The sampler for ``curvature_size`` (B7; None: the whole batch) and ``curvature_patience``
    (B11; None: the size stays)."""
    if size is None:
        return CurvatureRows()
    if patience is None:
        return FirstRows(size)
    return GrowingRows(size, patience, growth)
