"""The stopping rules an HF iteration gives its inner solve beyond the solver's own: Alg. 6's
validation merit (with B5's subsample) and B3's forcing test, each a part chosen once.

* :class:`ValidationMerit`: ``phi(d) = f(w + d; X_val)`` (eq. 20), which Alg. 6 watches to stop
  the solve and pick its best iterate; B5 evaluates it on the validation set's first
  ``merit_size`` rows (then ``phi(d)`` is not the validation loss, which the step must know).
* :class:`Forcing` (the paper's: none) and :class:`GradientForcing` (B3): stop when the
  normal equations' residual in the solver's scaled variables falls to
  ``eta_i ||c ∘ g||``, ``eta_i = eta_0 min(1, (||g_i|| / ||g_1||)^p)`` (an inexact-Newton
  forcing term); ``||g_1||``, the first iteration's gradient norm, is its state.

:class:`shf.optim.solve.Stops` puts them together with ``maxiter`` and the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from shf import batch as bt
from shf import tensorlist as tl
from shf.batch import Inputs
from shf.curvature.base import CurvatureModel
from shf.errors import require_choice
from shf.optim.scaling import ColumnScaling

FORCING_RULES = ("none", "gradient")


class MeritAt:
    """``phi(d) = f(w + d; X_m)`` at one iteration's weights ``w``; ``seconds``: the time spent in
    it; ``on_val``: ``X_m`` is the whole validation set (so ``phi(d)`` is its loss at ``w + d``)."""

    def __init__(
        self, model: CurvatureModel, w: list[Tensor], X: Inputs, Y: Tensor | None, on_val: bool
    ) -> None:
        self.model, self.w, self.X, self.Y, self.on_val = model, w, X, Y, on_val
        self.seconds = 0.0

    def __call__(self, d: Any) -> float:
        t = time.perf_counter()
        value = self.model.loss(tl.add(self.w, d), self.X, self.Y)  # type: ignore[arg-type]
        self.seconds += time.perf_counter() - t
        return value


@dataclass(frozen=True)
class ValidationMerit:
    """Alg. 6's merit (``use``; False: no merit, the solver stops on its other tests); ``size``:
    B5's subsample of the validation set's first rows (None: the whole set)."""

    use: bool = True
    size: int | None = None

    def at(
        self, model: CurvatureModel, w: list[Tensor], X_val: Inputs | None, Y_val: Tensor | None
    ) -> MeritAt | None:
        """The merit at ``w`` (None without a merit or a validation set)."""
        if not self.use or X_val is None:
            return None
        if self.size is not None and self.size < bt.rows(X_val):
            # Beyond the paper (docs/deviations.md B5): the merit on a fixed validation subsample
            Ym = None if Y_val is None else Y_val[: self.size]
            return MeritAt(model, w, bt.take(X_val, slice(0, self.size)), Ym, on_val=False)
        # phi(d) := f(w + d; X_val)  (eq. 20)
        return MeritAt(model, w, X_val, Y_val, on_val=True)


class Forcing:
    """The paper's: no forcing test."""

    name: ClassVar[str] = "none"

    def bound(
        self, gradient: Callable[[], list[Tensor]], c: ColumnScaling | None
    ) -> float | None:
        """The bound on the normal equations' residual for this iteration (None: no test);
        ``gradient()``: ``grad f`` (computed only by the rules that read it); ``c``: LSMR's right
        preconditioner (None: none)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """``g1_norm``: the first gradient's norm (None before the first iteration, or unused)."""
        return {"g1_norm": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class GradientForcing(Forcing):
    """B3: ``||Abar^T rbar_k|| <= eta_i ||c ∘ g||`` with ``eta_i = eta_0 min(1, (||g_i||/||g_1||)^p)``."""

    name = "gradient"

    def __init__(self, eta0: float, power: float) -> None:
        self.eta0, self.power = eta0, power
        self.g1_norm: float | None = None

    def bound(
        self, gradient: Callable[[], list[Tensor]], c: ColumnScaling | None
    ) -> float | None:
        # Beyond the paper (docs/deviations.md B3): the forcing test ||Abar^T rbar_k|| <= eta_i ||c ∘ g||
        g = gradient()
        g_norm = tl.norm(g)
        if self.g1_norm is None or not self.g1_norm > 0.0:
            self.g1_norm = g_norm
        # eta_i = eta_0 min(1, (||g_i|| / ||g_1||)^p)
        eta = self.eta0 * min(1.0, (g_norm / self.g1_norm) ** self.power)
        # the normal equations' residual at d = 0 in LSMR's variables z (d = P z): ||P^T g||
        # (||c ∘ g|| for Alg. 3's diagonal P)
        if c is None:
            return float(eta * g_norm)
        return float(eta * tl.norm(c.apply_t(g)))

    def state_dict(self) -> dict[str, Any]:
        return {"g1_norm": self.g1_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g1_norm = state.get("g1_norm")


def make_forcing(rule: str, eta0: float, power: float) -> Forcing:
    """The forcing rule named ``rule`` (one of :data:`FORCING_RULES`)."""
    require_choice("forcing", rule, FORCING_RULES)
    return GradientForcing(eta0, power) if rule == "gradient" else Forcing()
