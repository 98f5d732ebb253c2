"""Armijo backtracking line search (§4, Alg. 1), and the step-length parts of an HF iteration.

:func:`armijo_backtracking` is the paper's search; :class:`StepLength` is the part an HF iteration
calls once, chosen once by :func:`make_step_length`: :class:`Armijo` (the paper's) or
:class:`ArmijoThenModel` (B8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from shf.errors import require_choice


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


STEP_RULES = ("unit", "model")


@dataclass(frozen=True)
class StepLength:
    """The step-length part: ``s`` for the direction ``d`` (the paper's Armijo backtracking).

    ``alpha``: the sufficient-decrease constant; ``max_backtracks``: halvings before the step
    is refused (a safeguard, the paper's loop has no bound).
    """

    alpha: float = 1e-4
    max_backtracks: int = 30

    def search(
        self, f: Callable[[float], float], f0: float, slope: float, curvature: float, f_at_one: float
    ) -> tuple[LineSearchResult, float]:
        """``(result, s*)``: the step for ``f(s) = f(w + s d)`` with ``f(0) = f0``, ``f(1) = f_at_one``,
        ``slope = grad f^T d`` and ``curvature = d^T G d`` of the undamped model; ``s*`` is the
        model's minimiser along ``d`` where the rule computes it (else NaN)."""
        # Backtracking: s <- 1; while f(w + s d) > f(w) - alpha s d^T A^T b: s <- s/2
        ls = armijo_backtracking(
            f, f0, slope, alpha=self.alpha, max_backtracks=self.max_backtracks, f_at_one=f_at_one
        )
        return ls, math.nan


@dataclass(frozen=True)
class ArmijoThenModel(StepLength):
    """Beyond the paper (docs/deviations.md B8): after Armijo accepts ``s = 1``, the undamped
    model's minimiser along ``d``, ``s* = -g^T d / d^T G d`` (at most ``step_max``), is taken when
    it is above 1, Armijo holds there and the batch loss is lower than at ``s = 1``."""

    step_max: float = 4.0

    def search(
        self, f: Callable[[float], float], f0: float, slope: float, curvature: float, f_at_one: float
    ) -> tuple[LineSearchResult, float]:
        ls, _ = super().search(f, f0, slope, curvature, f_at_one)
        if not (math.isfinite(slope) and slope < 0.0):
            return ls, math.nan
        model_step = -slope / curvature if curvature > 0.0 else math.inf
        if ls.accepted and ls.step == 1.0 and model_step > 1.0:
            s_try = min(model_step, self.step_max)
            f_try = f(s_try)
            if math.isfinite(f_try) and f_try <= f0 + self.alpha * s_try * slope and f_try < ls.f_new:
                ls = LineSearchResult(step=s_try, f_new=f_try, evaluations=ls.evaluations + 1, accepted=True)
        return ls, model_step


def make_step_length(rule: str, alpha: float, max_backtracks: int, step_max: float) -> StepLength:
    """The step-length part named ``rule`` (one of :data:`STEP_RULES`)."""
    require_choice("step_rule", rule, STEP_RULES)
    if rule == "model":
        return ArmijoThenModel(alpha, max_backtracks, step_max)
    return StepLength(alpha, max_backtracks)
