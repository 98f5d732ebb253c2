"""Growth on a plateau (beyond the paper, B11): a size that grows when a watched loss stalls.

B7 (``curvature_size``) computes the curvature products on the first rows of the batch only
(Byrd, Chin, Neveitt & Nocedal 2011's subsampled curvature). A small curvature batch makes the
early iterations cheap, while a large one gives better steps once progress is limited by the
curvature's sampling noise (``docs/results/goal``: 1000 rows beat 250 on USPS late in a run and
lost early). :class:`PlateauGrowth` starts small and grows when the validation loss stalls:

    if  f_i < (1 - threshold) * best:   best <- f_i,  since <- 0
    else:                               since <- since + 1
    if  since >= patience:              size <- min(ceil(growth * size), cap),  since <- 0

which is ``torch.optim.lr_scheduler.ReduceLROnPlateau``'s rule (mode ``min``, relative
threshold) growing a size instead of shrinking a learning rate. ``f_i`` is the validation
loss Alg. 2 already computes at every iteration (the whole validation set), so the rule costs
nothing. A non-finite ``f_i`` counts as no improvement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

THRESHOLD = 1e-4
"""The relative improvement that counts as progress (``ReduceLROnPlateau``'s default)."""


@dataclass
class PlateauGrowth:
    """A size that grows by ``growth`` after ``patience`` iterations without progress.

    Attributes:
        size: the current size (the curvature batch's rows).
        patience: iterations without a relative improvement of ``threshold`` before growing.
        growth: the factor (> 1); the new size is ``ceil(growth * size)``, at most the cap.
        threshold: the relative improvement on the best value that counts as progress.
        best: the best value seen (``inf`` before the first).
        since: iterations since the last progress or growth.
    """

    size: int
    patience: int
    growth: float = 2.0
    threshold: float = THRESHOLD
    best: float = math.inf
    since: int = 0

    def update(self, value: float, cap: int) -> int:
        """Record this iteration's ``value``; return the size for the next one (at most ``cap``)."""
        if math.isfinite(value) and value < (1.0 - self.threshold) * self.best:
            self.best, self.since = value, 0
        else:
            self.since += 1
        if self.since >= self.patience and self.size < cap:
            self.size, self.since = min(math.ceil(self.growth * self.size), cap), 0
        return self.size

    def state_dict(self) -> dict[str, Any]:
        """What resumes the rule exactly."""
        return {"size": self.size, "best": self.best, "since": self.since}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.size, self.best, self.since = int(s["size"]), float(s["best"]), int(s["since"])
