"""Armijo backtracking line search (§4, Alg. 1)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of the backtracking: step ``s`` (0 if none accepted) and ``f(w + s d)``."""

    step: float
    f_new: float
    evaluations: int
    accepted: bool


def armijo_backtracking(
    f: Callable[[float], float],
    f0: float,
    slope: float,
    *,
    alpha: float = 1e-4,
    shrink: float = 0.5,
    max_backtracks: int = 30,
    f_at_one: float | None = None,
) -> LineSearchResult:
    """Find ``s = shrink^j`` with ``f(w + s d) <= f(w) + alpha s grad f^T d`` (§4).

    Args:
        f: ``s -> f(w + s d; X)`` on the current mini-batch.
        f0: ``f(w; X)``.
        slope: ``grad f(w; X)^T d = -d^T A^T b``; must be negative for a descent step.
        alpha: the sufficient-decrease constant (paper: ``1e-4``).
        shrink: the factor applied to ``s`` (paper: ``1/2``).
        max_backtracks: the paper's loop has no bound; after this many halvings (or if
            ``d`` is not a descent direction) the step is rejected (``s = 0``) rather
            than looping forever. Deliberate deviation, documented.
        f_at_one: ``f(w + d)`` if already known (Alg. 1 computes it for ``rho``).
    """
    if not (math.isfinite(slope) and slope < 0.0 and math.isfinite(f0)):
        return LineSearchResult(step=0.0, f_new=f0, evaluations=0, accepted=False)
    s = 1.0
    evals = 0
    for j in range(max_backtracks + 1):
        if j == 0 and f_at_one is not None:
            fs = f_at_one
        else:
            fs = f(s)
            evals += 1
        # while f(w + s d) > f(w) - alpha s d^T A^T b: s <- s/2
        if math.isfinite(fs) and fs <= f0 + alpha * s * slope:
            return LineSearchResult(step=s, f_new=fs, evaluations=evals, accepted=True)
        s *= shrink
    return LineSearchResult(step=0.0, f_new=f0, evaluations=evals, accepted=False)
