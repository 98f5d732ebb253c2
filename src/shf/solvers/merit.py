"""Alg. 6's merit-based stopping rules, once, for any iterative solver (LSMR and CG use it).

The merit ``phi(x_k)`` (the validation loss of ``w + x_k`` in the paper, eq. 20) is
evaluated at ``k = first_check, ceil(1.25 k), ...`` (capped at ``maxiter``):

* stop (``merit_stalled``) if ``k > miniter``, ``phi_k`` is the minimum so far and
  ``(phi_prev - phi_k)/|phi_k| < (k - k_prev) ftol`` (NOTES item 5's reading of the typo);
* stop (``merit_not_recovered``) if ``k > miniter``, ``phi_k > phi_min`` and ``k > k_min + recover``;

and the best-merit iterate is returned (NOTES item 4). ``phi(x0)`` (``f_prev`` at
``k = 0``) is evaluated only when the stall test first reads it (a first check beyond
``miniter``): the same decisions as evaluating it up front, one validation pass fewer per
solve with the paper's settings (docs/deviations.md item 21).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from shf import tensorlist as tl
from shf.tensorlist import Vec

MERIT_STALLED = "merit_stalled"
MERIT_NOT_RECOVERED = "merit_not_recovered"


def relative_progress(f_prev: float, f_k: float) -> float:
    """``(f_prev - f_k) / f_k`` (Alg. 6, with NOTES item 5's ``f_val -> f_k``).

    The denominator is ``|f_k|`` so that the test keeps its meaning (relative decrease)
    for a merit that can be negative; for the paper's merit (a loss, > 0) it is the
    paper's formula. ``f_k = 0`` gives 0 (no progress) or ``+inf``.
    """
    if f_k == 0.0:
        return 0.0 if f_prev == f_k else math.inf
    return (f_prev - f_k) / abs(f_k)


@dataclass(frozen=True)
class MeritRule:
    """Alg. 6's merit rule as one object, handed to LSMR (:func:`shf.lsmr`) and CG
    (:class:`shf.optim.solve.CgSolver`) alike.

    ``ftol``: the stall test, stop at a new minimum ``k > miniter`` when
    ``(f_prev - f_k)/|f_k| < (k - k_prev) ftol``; ``miniter``: both tests are off for
    ``k <= miniter``; ``recover``: stop when the merit has stayed above its minimum for more than
    ``recover`` iterations; ``first_check``, ``check_growth``: the checks at
    ``k = first_check, ceil(check_growth k), ...`` (Alg. 6: 5 and 1.25). The defaults are
    :func:`shf.lsmr`'s (Martens' 1e-5 is looser than the paper's 1e-7; SHF passes its own).
    """

    ftol: float = 1e-5
    miniter: int = 50
    recover: int = 100
    first_check: int = 5
    check_growth: float = 1.25

    def __post_init__(self) -> None:
        for name in ("ftol", "check_growth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.ftol < 0:
            raise ValueError(f"ftol must be >= 0, got {self.ftol}")
        if self.check_growth < 1.0:
            raise ValueError(f"check_growth must be >= 1, got {self.check_growth}")
        for name, low in (("miniter", 0), ("recover", 0), ("first_check", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    def monitor(
        self, merit: Callable[[Vec], float], x0: Vec, maxiter: int, to_x: Callable[[Vec], Vec] | None = None
    ) -> MeritMonitor:
        """The rule applied to one solve: a :class:`MeritMonitor` of ``merit`` from ``x0``, with
        the checks capped at ``maxiter`` (``to_x``: the solver's iterate to the merit's argument)."""
        return MeritMonitor(
            merit, x0, ftol=self.ftol, miniter=self.miniter, recover=self.recover, maxiter=maxiter,
            first_check=self.first_check, check_growth=self.check_growth, to_x=to_x,
        )  # fmt: skip


class MeritMonitor:
    """Evaluates ``merit`` on the check schedule and decides when to stop.

    Use as a solver callback (``monitor(k, iterate, ...) -> stop?``) or call :meth:`check`.

    Args:
        merit: ``x -> phi(x)``; NaN/Inf counts as ``+inf``.
        x0: the starting iterate, in the merit's variables (``phi(x0)`` is ``f_prev`` at
            ``k = 0``, evaluated only if the stall test reads it).
        ftol, miniter, recover, maxiter, first_check, check_growth: Alg. 6's rules (above).
        to_x: maps the solver's iterate to the merit's argument (e.g. ``y -> c ∘ y``);
            when given, it must return a new vector (the best one is kept without a copy).
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
        self.merit, self.to_x = merit, to_x
        self.ftol, self.miniter, self.recover, self.maxiter = ftol, miniter, recover, maxiter
        self.check_growth = check_growth
        self.history: list[tuple[int, float]] = []
        """``(k, phi(x_k))`` of every evaluation in the order made (``k = 0`` when read)."""
        # Alg. 6: f_min = inf, f_prev = phi(x0), k_min = k_prev = 0, x_min = x0, k_next = 5.
        self.f_min = math.inf
        self.f_prev: float | None = None  # phi(x0), evaluated lazily (module docstring)
        self.k_min, self.k_prev, self.k_next = 0, 0, min(first_check, maxiter)
        self.x_min: Vec = tl.clone(x0)
        self._x0 = self.x_min  # x_min is rebound, never modified: this stays phi's x0
        self.stop: str | None = None
        self.last_checked = -1

    def _eval(self, k: int, x: Vec) -> float:
        f = float(self.merit(x))
        f = f if math.isfinite(f) else math.inf  # a NaN/Inf merit is never the best
        self.history.append((k, f))
        return f

    def _keep(self, x: Vec) -> Vec:
        return tl.clone(x) if self.to_x is None else x

    def due(self, k: int) -> bool:
        """Whether iteration ``k`` is a check point."""
        return k == self.k_next

    def check(self, k: int, iterate: Vec) -> str | None:
        """Evaluate the merit at check point ``k``; return the stop reason, if any."""
        x = iterate if self.to_x is None else self.to_x(iterate)
        f = self._eval(k, x)
        self.last_checked = k
        if f < self.f_min:
            self.f_min, self.k_min, self.x_min = f, k, self._keep(x)
        if k > self.miniter and f == self.f_min:
            if self.f_prev is None:  # phi(x0), read for the first time
                self.f_prev = self._eval(0, self._x0)
            # (f_prev - f_k)/f_k < (k - k_prev) ftol  (NOTES item 5)
            if relative_progress(self.f_prev, f) < (k - self.k_prev) * self.ftol:
                self.stop = MERIT_STALLED
        elif k > self.miniter and f > self.f_min and k > self.k_min + self.recover:
            self.stop = MERIT_NOT_RECOVERED
        # Alg. 6 sets k_next = min(ceil(1.25 k_next), maxiter); the max(k_next + 1, .)
        # keeps the schedule strictly increasing for any check_growth >= 1.
        self.k_next = min(max(self.k_next + 1, math.ceil(self.check_growth * self.k_next)), self.maxiter)
        self.k_prev, self.f_prev = k, f
        return self.stop

    def __call__(self, k: int, iterate: Vec, *_: object) -> bool:
        """The solver's callback at iteration ``k``; True means stop."""
        return self.due(k) and self.check(k, iterate) is not None

    def best(self, k_last: int, last: Vec) -> tuple[Vec, int]:
        """The best-merit iterate and its ``k``, evaluating the last iterate ``k_last`` too if it
        was not checked (NOTES item 4). ``x0`` (``k = 0``) when every merit was ``+inf``."""
        if self.last_checked != k_last and k_last > 0:
            x = last if self.to_x is None else self.to_x(last)
            f = self._eval(k_last, x)
            self.last_checked = k_last
            if f < self.f_min:
                self.f_min, self.k_min, self.x_min = f, k_last, self._keep(x)
        if self.f_min == math.inf:
            return self.x_min, 0
        return self.x_min, self.k_min
