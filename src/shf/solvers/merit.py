"""Alg. 6's merit-based stopping rules as a solver callback (used with CG in the ablation).

LSMR implements the same rules inline (:mod:`shf.solvers.lsmr`); this class lets any
iterative solver with a per-iteration callback stop on the validation merit
``phi(x_k)`` checked at ``k = first_check, ceil(1.25 k), ...``:

* stop ("merit_stalled") if ``k > miniter``, ``phi_k`` is the minimum so far and
  ``(phi_prev - phi_k)/|phi_k| < (k - k_prev) ftol``;
* stop ("merit_not_recovered") if ``k > miniter``, ``phi_k > phi_min`` and ``k > k_min + recover``;

and the best-merit iterate is returned (NOTES item 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from shf import tensorlist as tl
from shf.tensorlist import Vec

MERIT_STALLED = "merit_stalled"
MERIT_NOT_RECOVERED = "merit_not_recovered"


class MeritMonitor:
    """Evaluates ``merit`` on the check schedule and decides when to stop.

    Args:
        merit: ``x -> phi(x)``; NaN/Inf counts as ``+inf``.
        x0: the starting iterate (``phi(x0)`` is ``f_prev`` at ``k = 0``, evaluated only
            if the stall test reads it).
        to_x: maps the solver's iterate to the merit's argument (e.g. ``y -> c ∘ y``).
    """

    def __init__(
        self,
        merit: Callable[[Vec], float],
        x0: Vec,
        *,
        ftol: float,
        miniter: int,
        recover: int,
        maxiter: int,
        first_check: int = 5,
        check_growth: float = 1.25,
        to_x: Callable[[Vec], Vec] | None = None,
    ) -> None:
        self.merit, self.to_x = merit, to_x or (lambda v: v)
        self.ftol, self.miniter, self.recover, self.maxiter = ftol, miniter, recover, maxiter
        self.check_growth = check_growth
        x = self.to_x(x0)
        self.history: list[tuple[int, float]] = []
        # Alg. 6: f_min = inf, f_prev = phi(x0), k_min = k_prev = 0, x_min = x0, k_next = 5.
        # As in lsmr (docs/deviations.md item 21), phi(x0) is evaluated only when the stall
        # test reads it (a first check beyond miniter): the same decisions, one pass fewer.
        self.f_min = math.inf
        self.f_prev: float | None = None
        self.k_min, self.k_prev, self.k_next = 0, 0, min(first_check, maxiter)
        self.x_min: Vec = tl.clone(x)
        self._x0 = self.x_min  # x_min is rebound, never modified: this stays phi's x0
        self.stop: str | None = None

    def _eval(self, x: Vec) -> float:
        f = float(self.merit(x))
        return f if math.isfinite(f) else math.inf

    def __call__(self, k: int, iterate: Vec, *_: object) -> bool:
        """The solver's callback at iteration ``k``; True means stop."""
        if k != self.k_next:
            return False
        x = self.to_x(iterate)
        f = self._eval(x)
        self.history.append((k, f))
        if f < self.f_min:
            self.f_min, self.k_min, self.x_min = f, k, tl.clone(x)
        if k > self.miniter and f == self.f_min and f < math.inf:
            if self.f_prev is None:  # phi(x0), read for the first time
                self.f_prev = self._eval(self._x0)
                self.history.insert(0, (0, self.f_prev))  # history stays ordered by k
            # (f_prev - f_k)/f_k < (k - k_prev) ftol  (NOTES item 5)
            if (self.f_prev - f) / abs(f) < (k - self.k_prev) * self.ftol if f != 0 else True:
                self.stop = MERIT_STALLED
        elif k > self.miniter and f > self.f_min and k > self.k_min + self.recover:
            self.stop = MERIT_NOT_RECOVERED
        # k_next <- min(ceil(1.25 k_next), maxiter), strictly increasing
        self.k_next = min(max(self.k_next + 1, math.ceil(self.check_growth * self.k_next)), self.maxiter)
        self.k_prev, self.f_prev = k, f
        return self.stop is not None

    def best(self, k_last: int, last: Vec) -> tuple[Vec, int]:
        """The best-merit iterate (evaluating the last iterate too if it was not checked)."""
        if not self.history or self.history[-1][0] != k_last:
            x = self.to_x(last)
            f = self._eval(x)
            self.history.append((k_last, f))
            if f < self.f_min:
                self.f_min, self.k_min, self.x_min = f, k_last, tl.clone(x)
        if self.f_min == math.inf:
            return self.x_min, 0
        return self.x_min, self.k_min
