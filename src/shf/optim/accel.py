"""Geodesic acceleration of the Levenberg-Marquardt step (beyond the paper, docs/deviations.md B22).

Transtrum & Sethna (2012, "Improvements to the Levenberg-Marquardt algorithm for nonlinear
least-squares minimization") add a second-order correction to the damped Gauss-Newton step
``d`` (the "velocity"). Along the curve ``w(t) = w + t d + t^2 a / 2`` that keeps the residuals
on their linear model to second order, the "acceleration" ``a`` solves the same damped problem
as ``d`` with the residuals' second derivative along ``d`` as right-hand side:

    a = argmin ||A a + r_dd||^2 + lambda^2 ||a||^2,   r_dd = B^T z''(w)[d, d] / sqrt(n)

(``z`` the model's output, ``B`` the loss's factor of its Hessian, so ``A = B^T J / sqrt(n)``;
for a least-squares residual ``r_dd`` is the residuals' second directional derivative). The step
is ``d + a / 2``. Where the iterates crawl along a narrow curved valley (NIST's Bennett5), the
linear model's error is mostly that curvature: the corrected step follows the valley, ``rho``
stays near 1 and the damping falls. The step is refused when ``2 ||a|| / ||d|| > ratio_max``
(their ``alpha``, 0.75): there the expansion behind the correction does not hold, and the
damping grows as for ``rho < 0``. Norms are in the solver's scaled variables (``d / c``).

One more product-like pass (forward over forward mode, ``second_derivative`` of the operator)
and one more solve of the same system per HF iteration: cheap where the solve is exact and the
Jacobian is formed (B20, G16), as dear as the direction itself where LSMR iterates.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, cast

from torch import Tensor

from shf import tensorlist as tl
from shf.errors import ConfigError, require_choice
from shf.optim.solve import InnerSolver, Stops, System

ACCELERATIONS = ("none", "geodesic")
"""``optimizer.acceleration``: the paper's step (``none``) or B22's geodesic acceleration."""


@dataclass(frozen=True)
class Accelerated:
    """What the acceleration part gave: ``a`` (None: none computed), ``ratio = 2 ||a|| / ||d||``
    in the solver's scaled variables (NaN: none) and whether the step is refused for it."""

    a: list[Tensor] | None = None
    ratio: float = math.nan
    refused: bool = False


class Acceleration(ABC):
    """The step-correction part of an HF iteration, chosen once by name."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, solver: InnerSolver, system: System, d: list[Tensor], maxiter: int) -> Accelerated:
        """The correction of the direction ``d`` that ``solver`` found for ``system``."""


class NoAcceleration(Acceleration):
    """The paper's step: ``d`` as the solver gave it."""

    name = "none"

    def __call__(self, solver: InnerSolver, system: System, d: list[Tensor], maxiter: int) -> Accelerated:
        return Accelerated()


class GeodesicAcceleration(Acceleration):
    """B22: Transtrum & Sethna's geodesic acceleration (see the module docstring); ``ratio_max``
    is their ``alpha``, the largest ``2 ||a|| / ||d||`` of a step that is taken."""

    name = "geodesic"

    def __init__(self, ratio_max: float) -> None:
        self.ratio_max = ratio_max

    def __call__(self, solver: InnerSolver, system: System, d: list[Tensor], maxiter: int) -> Accelerated:
        second = getattr(system.A, "second_derivative", None)
        if second is None:
            raise ConfigError(
                f"acceleration 'geodesic' needs the residuals' second derivative, which "
                f"{type(system.A).__name__} does not provide; set acceleration to 'none'"
            )
        # r_dd = B^T z''[d, d] / sqrt(n): the residuals' second derivative along d
        r_dd: Tensor = second(d)
        if not tl.all_finite(r_dd):
            return Accelerated(None, math.inf, True)
        # a <- argmin ||A C y + r_dd||^2 + lambda^2 ||y||^2 (B10's rows with a zero right-hand
        # side: the weight cost is quadratic), a = c ∘ y; from 0, no merit, no forcing test
        zeros = cast(list[Tensor], tl.zeros_like(d))
        no_weights = cast(list[Tensor], tl.zeros_like(system.w))
        accel = dataclasses.replace(system, b=r_dd.neg_(), g=None, subset=False, w=no_weights)
        a = solver.solve(accel, zeros, Stops(maxiter, agree=None)).d
        if not tl.all_finite(a):
            return Accelerated(None, math.inf, True)
        # ratio = 2 ||a|| / ||d|| in the scaled variables y = x / c (Transtrum & Sethna's test)
        c = system.c
        diag = c.c if c is not None and c.diagonal else None
        d_norm = tl.norm(d if diag is None else tl.div(d, diag))
        a_norm = tl.norm(a if diag is None else tl.div(a, diag))
        ratio = 2.0 * a_norm / d_norm if d_norm > 0.0 else math.inf
        return Accelerated(a, ratio, not ratio <= self.ratio_max)


def make_acceleration(name: str, ratio_max: float) -> Acceleration:
    """The acceleration part named ``name`` (one of :data:`ACCELERATIONS`)."""
    require_choice("acceleration", name, ACCELERATIONS)
    return GeodesicAcceleration(ratio_max) if name == "geodesic" else NoAcceleration()
