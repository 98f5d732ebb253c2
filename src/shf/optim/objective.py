"""The objective an HF iteration minimises on its batch: the data loss, plus B10's weight cost.

``f(w; X, Y) = L(w; X, Y) + c/2 ||w||^2`` with ``L`` the model's loss (the paper's ``f``, eq. 6)
and ``c`` the weight cost (B10; 0, the paper's, is none). Its Gauss-Newton curvature is
``A^T A + c I``. :class:`Objective` is the part (chosen once); :meth:`Objective.at` gives the
objective at one iteration's weights and batch (:class:`ObjectiveAt`), which computes the
gradient once, when first asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor

from shf import tensorlist as tl
from shf.batch import Inputs
from shf.curvature.base import CurvatureModel, JacobianOperator
from shf.errors import ConfigError, require_choice

logger = logging.getLogger(__name__)

WEIGHT_COST_RULES = ("constant", "per-example", "per-example-floor")
"""How B10's weight cost ``c`` is set: ``weight_cost`` itself, B16's rule, or B16's rule with
``weight_cost`` as its floor and :data:`B24_MAX_FACTOR` times it as its cap (B24, the default)."""

REFERENCE_WEIGHTS_PER_EXAMPLE = 100.0
"""B16: the weights per training example at which ``c`` is ``weight_cost``."""

B24_MAX_FACTOR = 10.0
"""B24's cap: ``c`` is at most this many times ``weight_cost`` (reached at 1,000 weights per
training example). B16's rule is measured between 42 and 355 weights per example; far above that
(a large model on a few hundred examples) a proportional ``c`` slowed the fit of ``shf train``'s
network on 1,000 and 250 examples (``docs/results/b16/README.md``, "Small training sets")."""


@dataclass(frozen=True)
class Objective:
    """``f = L + c/2 ||w||^2`` with ``c = weight_cost`` (B10; 0: the paper's ``f = L``)."""

    weight_cost: float = 0.0

    def at(
        self, model: CurvatureModel, A: JacobianOperator, w: list[Tensor], X: Inputs, Y: Tensor | None
    ) -> ObjectiveAt:
        """The objective at ``w`` on the batch ``(X, Y)``, whose operator is ``A``."""
        return ObjectiveAt(self.weight_cost, model, A, w, X, Y)


@dataclass(frozen=True)
class WeightsPerExample:
    """Beyond the paper (B16, ``weight_cost_rule = "per-example"``): B10's weight cost in proportion
    to the model's weights per training example, ``c = weight_cost (P / N) / 100`` (``P`` weights,
    ``N`` training examples; ``weight_cost`` is ``c`` at 100 weights per example). The weight cost
    that helped the MNIST-t10k network (5e-4; 355 weights per example) hurt USPS's (62): a model
    with more weights per example has more room to fit its training set and wants more of it."""

    weight_cost: float

    def cost(self, n_weights: int, train_size: int | None) -> float:
        """``c`` for ``n_weights`` weights and ``train_size`` training examples."""
        if train_size is None:
            raise ConfigError(
                "weight_cost_rule = 'per-example' needs the training-set size: give SHF train_size= "
                "(shf.fit and shf train do), or use weight_cost_rule = 'constant'"
            )
        return self.weight_cost * (n_weights / train_size) / REFERENCE_WEIGHTS_PER_EXAMPLE


def make_objective(rule: str, weight_cost: float, n_weights: int, train_size: int | None) -> Objective:
    """The objective with B10's weight cost set by ``rule`` (one of :data:`WEIGHT_COST_RULES`):
    ``"constant"`` (``c = weight_cost``), ``"per-example"`` (:class:`WeightsPerExample`) or
    ``"per-example-floor"`` (beyond the paper, B24, the default: ``c = min(max(weight_cost,
    weight_cost (P / N) / 100), B24_MAX_FACTOR weight_cost)``, B16's rule from 100 to 1,000 weights
    per example, the constant below, the cap above, and the constant where the training-set size is
    not known: ``weight_cost`` is never lowered, and a model with more weights than a hundred per
    example gets more, up to :data:`B24_MAX_FACTOR` times)."""
    require_choice("weight_cost_rule", rule, WEIGHT_COST_RULES)
    if rule == "per-example":
        c = WeightsPerExample(weight_cost).cost(n_weights, train_size)
        logger.info("B16: weight cost %.4g (%d weights, %s training examples)", c, n_weights, train_size)
        return Objective(c)
    if rule == "per-example-floor" and train_size is not None:
        # B24: c = min(max(weight_cost, weight_cost (P / N) / 100), B24_MAX_FACTOR weight_cost)
        c = min(max(weight_cost, WeightsPerExample(weight_cost).cost(n_weights, train_size)),
                B24_MAX_FACTOR * weight_cost)  # fmt: skip
        logger.info("B24: weight cost %.4g (%d weights, %d training examples)", c, n_weights, train_size)
        return Objective(c)
    return Objective(weight_cost)


class ObjectiveAt:
    """``f`` at one iteration's weights ``w`` and batch: ``f0 = f(w)``, ``f(v)``, ``grad f(w)`` and
    the curvature along a direction."""

    def __init__(
        self,
        wc: float,
        model: CurvatureModel,
        A: JacobianOperator,
        w: list[Tensor],
        X: Inputs,
        Y: Tensor | None,
    ) -> None:
        self.wc, self.model, self.A, self.w, self.X, self.Y = wc, model, A, w, X, Y
        self.f0 = A.loss
        if wc > 0.0:
            # Beyond the paper (docs/deviations.md B10): f(w) = L(w) + c/2 ||w||^2
            self.f0 += 0.5 * wc * tl.dot(w, w)
        self._g: list[Tensor] | None = None

    def __call__(self, v: Any) -> float:
        """``f(v; X, Y)`` on the batch: the data's loss, plus B10's weight cost."""
        value = self.model.loss(v, self.X, self.Y)
        return value + 0.5 * self.wc * tl.dot(v, v) if self.wc > 0.0 else value

    def gradient(self) -> list[Tensor]:
        """``grad f(w) = A^T R = -A^T b`` (eq. 6), plus ``c w`` (B10); computed once."""
        if self._g is None:
            g = self.A.gradient()
            self._g = cast(list[Tensor], tl.axpy(self.wc, self.w, g)) if self.wc > 0.0 else g
        return self._g

    def curvature(self, d: list[Tensor], gauss_newton: float) -> float:
        """``d^T (A^T A + c I) d`` from ``gauss_newton = d^T A^T A d``."""
        return gauss_newton + self.wc * tl.dot(d, d) if self.wc > 0.0 else gauss_newton


class QuadraticModel:
    """The undamped quadratic model of ``f`` at ``w`` (NOTES item 10), on the curvature rows ``A``:
    ``q(d) = 1/2 d^T G d + g^T d`` with ``G = A^T A + c I`` (B10's ``c``) and ``g = grad f(w)``;
    ``rho`` compares ``f`` with it (§4.2) and the step length reads its slope and curvature."""

    def __init__(self, objective: ObjectiveAt, A: JacobianOperator) -> None:
        self.objective, self.A = objective, A

    def along(self, d: list[Tensor]) -> tuple[float, float, float]:
        """``(g^T d, d^T G d, q(d))``: the slope (``-d^T A^T b``), the curvature along ``d`` and
        the change the model predicts, ``q(d) = 1/2 d^T G d + g^T d``."""
        g = self.objective.gradient()
        curv = self.objective.curvature(d, self.A.range_norm(self.A.matvec(d)) ** 2)  # d^T A^T A d
        slope = tl.dot(d, g)
        return slope, curv, 0.5 * curv + slope
