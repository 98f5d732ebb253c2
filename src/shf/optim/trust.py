"""Moré's (1978) Levenberg-Marquardt parameter for a trust region (beyond the paper, B23).

For the damped least-squares problem of one HF iteration in its scaled variable ``y``
(``d = c ∘ y``, so ``||y|| = ||D d||`` with MINPACK's scaling ``D = 1/c``),

    y(mu) = argmin ||M y - r||^2 + mu ||y||^2,       mu = lambda^2 >= 0,

:func:`lm_parameter` finds ``mu`` with ``||y(mu)||`` within 10% of a radius ``Delta``, or
``mu = 0`` where the Gauss-Newton step ``y(0)`` is already that short (Moré 1978, §5-7;
MINPACK's ``lmpar``). ``phi(mu) = ||y(mu)|| - Delta`` is convex and decreasing for ``mu >= 0``,
so Newton's method on it converges, kept inside bounds ``[l, u]`` that close in:

* ``u = ||M^T r|| / Delta`` (then ``||y(u)|| <= Delta``);
* ``l``: the first Newton step from 0 where ``M`` has full column rank, else 0;
* Newton's method on ``1/Delta - 1/||y(mu)||`` (nearly linear in ``mu``), at most 10 steps
  (MINPACK's).

MINPACK evaluates ``phi`` by one QR factorisation per ``mu``; here one singular value
decomposition ``M = U S V^T`` per HF iteration gives every ``phi`` and ``phi'`` in closed form,

    ||y(mu)||^2 = sum_i (s_i z_i / (s_i^2 + mu))^2,   z = U^T r,

with ``R^T R = M^T M + mu I`` and ``||R^{-T} y||^2 = sum_i s_i^2 z_i^2 / (s_i^2 + mu)^3``, so the choice
costs one factorisation of the ``m x p`` matrix (``M`` is the exact solve's, B20:
the rule is for models with a handful of weights). The step itself is then solved by B20's QR
at the chosen ``mu``; ``mu`` need only be right to the 10% the radius asks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

ACCURACY = 0.1
"""Moré's ``sigma``: ``mu`` is accepted when ``| ||y(mu)|| - Delta | <= 0.1 Delta`` (MINPACK's
``p1``): the radius is a rough bound, so a tenth of it is all the accuracy a step needs."""
NEWTON_STEPS = 10
"""The most evaluations of ``phi`` after ``phi(0)`` (MINPACK's ``iter = 10``)."""
DWARF = torch.finfo(torch.float64).tiny


@dataclass(frozen=True)
class Spectrum:
    """``M``'s singular values ``s`` (those above round-off) and ``z = U^T r`` for them:
    everything ``||y(mu)||`` depends on. Python floats: ``M`` has a handful of columns, and the
    closed forms below are evaluated a dozen times per HF iteration, where a tensor operation's
    fixed cost (tens of microseconds) would be most of the work."""

    s: tuple[float, ...]
    z: tuple[float, ...]
    full_rank: bool

    @classmethod
    def of(cls, M: Tensor, r: Tensor) -> Spectrum:
        """The thin SVD of ``M`` (float64 for the closed forms); singular values at most
        ``max(m, p) eps s_max`` count as zero (numpy's ``matrix_rank`` tolerance, ``eps`` of
        ``M``'s dtype), as :func:`torch.linalg.pinv` drops them in the minimum-norm Gauss-Newton
        step."""
        M64, r64 = M.detach().double(), r.detach().double()
        U, sv, _ = torch.linalg.svd(M64, full_matrices=False)
        s, z = sv.tolist(), (U.T @ r64).tolist()
        tol = max(s, default=0.0) * max(M.shape) * torch.finfo(M.dtype).eps
        keep = [i for i, v in enumerate(s) if v > tol]
        full = len(keep) == len(s) and M.shape[0] >= M.shape[1]
        return cls(tuple(s[i] for i in keep), tuple(z[i] for i in keep), full)

    def norm(self, mu: float) -> float:
        """``||y(mu)|| = sqrt(sum_i (s_i z_i / (s_i^2 + mu))^2)``."""
        return math.sqrt(sum((si * zi / (si * si + mu)) ** 2 for si, zi in zip(self.s, self.z)))

    def gradient_norm(self) -> float:
        """``||M^T r|| = sqrt(sum_i (s_i z_i)^2)``."""
        return math.sqrt(sum((si * zi) ** 2 for si, zi in zip(self.s, self.z)))

    def newton(self, mu: float, norm: float, radius: float) -> float:
        """Moré's correction ``(phi / Delta) / ||R^{-T} y / ||y||||^2``: Newton's step on
        ``1/Delta - 1/||y(mu)||`` (nearly linear in ``mu``, so better than Newton on ``phi``), with
        ``||R^{-T} y||^2 = y^T (M^T M + mu I)^{-1} y = sum_i s_i^2 z_i^2 / (s_i^2 + mu)^3``."""
        q = sum((si * zi) ** 2 / (si * si + mu) ** 3 for si, zi in zip(self.s, self.z))
        if not (norm > 0.0 and q > 0.0):  # no step to correct (y = 0): no correction
            return 0.0
        return (norm - radius) / radius / (q / (norm * norm))


def lm_parameter(
    M: Tensor, r: Tensor, radius: float, mu0: float = 0.0, mu_min: float = 0.0
) -> tuple[float, float]:
    """``(mu, ||y(mu)||)`` with ``||y(mu)||`` within :data:`ACCURACY` of ``radius`` (or ``mu = 0``,
    the Gauss-Newton step, where that is no longer than ``1.1 radius``); ``mu0`` is the last
    iteration's ``mu``, the first guess (Moré 1978, Alg. 5.5; MINPACK's ``lmpar``); ``mu`` is then
    at least ``mu_min`` (a floor, B2). A matrix or right-hand side that is not finite gives
    ``(mu0, nan)``: the step will be refused."""
    if not bool(torch.isfinite(M).all() and torch.isfinite(r).all()):
        return mu0, math.nan
    sp = Spectrum.of(M, r)
    mu, norm = _parameter(sp, radius, mu0)
    return (mu, norm) if mu >= mu_min else (mu_min, sp.norm(mu_min))


def _parameter(sp: Spectrum, radius: float, mu0: float) -> tuple[float, float]:
    """:func:`lm_parameter` on ``M``'s spectrum, without the floor."""
    # phi(0) = ||y(0)|| - Delta: the Gauss-Newton step inside the region (to 10%) is the step
    norm = sp.norm(0.0)
    phi = norm - radius
    if phi <= ACCURACY * radius:
        return 0.0, norm
    # l: the Newton step from 0 on 1/Delta - 1/||y(mu)|| (full column rank), a lower bound
    lower = sp.newton(0.0, norm, radius) if sp.full_rank else 0.0
    # u = ||M^T r|| / Delta: y(u) is no longer than Delta
    g = sp.gradient_norm()
    upper = g / radius if g > 0.0 else DWARF / min(radius, ACCURACY)
    mu = min(max(mu0, lower), upper)
    if mu == 0.0:
        mu = g / norm
    for k in range(NEWTON_STEPS):
        if mu == 0.0:
            mu = max(DWARF, 1e-3 * upper)
        norm = sp.norm(mu)
        phi_prev, phi = phi, norm - radius
        # accept within 10% of Delta; or where phi stops decreasing without a lower bound (round-off)
        done = abs(phi) <= ACCURACY * radius or (lower == 0.0 and phi_prev < 0.0 and phi <= phi_prev)
        if done or k == NEWTON_STEPS - 1:
            break
        # Newton's correction on 1/Delta - 1/||y(mu)||, inside [l, u], which close in on the root
        correction = sp.newton(mu, norm, radius)
        if phi > 0.0:
            lower = max(lower, mu)
        if phi < 0.0:
            upper = min(upper, mu)
        mu = max(lower, mu + correction)
    return mu, norm
