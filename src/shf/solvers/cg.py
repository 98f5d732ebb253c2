"""Preconditioned conjugate gradient with Martens' (2010) stopping rule and iterate storage.

Solves ``B x = b`` for a symmetric positive (semi-)definite ``B`` given as a product
``v -> B v`` (in HF: the damped Gauss-Newton matrix), i.e. minimises the quadratic

    phi(x) = 1/2 x^T B x - b^T x.

Martens' relative-progress rule stops at iteration ``i`` when, with the window
``k = max(min_window, ceil(window_ratio * i))``,

    i > k  and  phi_i < 0  and  (phi_i - phi_{i-k}) / phi_i < k * tol,

i.e. the average relative decrease of ``phi`` per iteration over the last ``k``
iterations fell below ``tol`` (Martens 2010 §4.4: ``tol = 5e-4``, window 10% of ``i``
but at least 10). Iterates are kept at ``i = ceil(5 * 1.3^j)`` (and the last one) for
"CG backtracking" (Martens 2010 §4.6): HF then picks the best of them on the objective.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shf import tensorlist as tl
from shf.tensorlist import Vec

__all__ = ["CgInfo", "CgStop", "cg", "storage_schedule"]


class CgStop(str, enum.Enum):
    """Why :func:`cg` stopped."""

    RESIDUAL_ZERO = "residual_zero"
    """``||b - B x|| <= rtol ||b||`` (or ``b = 0``): solved."""
    PROGRESS = "progress"
    """Martens' relative-progress rule on ``phi``."""
    MAXITER = "maxiter"
    """``maxiter`` iterations."""
    NEGATIVE_CURVATURE = "negative_curvature"
    """``p^T B p <= 0``: ``B`` is not positive definite along ``p``; the last iterate is kept."""
    NOT_FINITE = "not_finite"
    """A product or scalar was NaN/Inf; the last finite iterate is returned."""
    CALLBACK = "callback"
    """The callback returned True."""


@dataclass
class CgInfo:
    """What :func:`cg` did.

    Attributes:
        stop: the stop reason.
        iterations: iterations done.
        phi: ``phi(x_i)`` for ``i = 0..iterations`` (quadratic model values).
        stored: ``(i, x_i)`` at the storage schedule and the final iterate (ascending ``i``).
        residual_norm: ``||b - B x||`` of the returned iterate (recurrence value).
    """

    stop: CgStop
    iterations: int
    phi: list[float] = field(default_factory=list)
    stored: list[tuple[int, Vec]] = field(default_factory=list)
    residual_norm: float = math.nan
    elapsed_s: float = 0.0


def storage_schedule(maxiter: int, first: float = 5.0, growth: float = 1.3) -> list[int]:
    """``ceil(first * growth^j)`` for ``j = 0, 1, ...`` up to ``maxiter`` (distinct, increasing)."""
    out: list[int] = []
    g = first
    while math.ceil(g) <= maxiter:
        i = math.ceil(g)
        if not out or i > out[-1]:
            out.append(i)
        g *= growth
    return out


def cg(
    A: object,
    b: Vec,
    *,
    x0: Vec | None = None,
    precond: Vec | None = None,
    maxiter: int = 250,
    tol: float = 5e-4,
    min_window: int = 10,
    window_ratio: float = 0.1,
    rtol: float = 0.0,
    miniter: int = 1,
    store_first: float = 5.0,
    store_growth: float = 1.3,
    callback: Callable[[int, Vec, CgInfo], bool | None] | None = None,
) -> tuple[Vec, CgInfo]:
    """Preconditioned CG on ``B x = b`` from ``x0`` with Martens' stopping rule.

    Args:
        A: the symmetric positive definite ``B``: an operator with ``matvec`` (as
            :func:`shf.lsmr` takes, :mod:`shf.solvers.operator`) or a function ``v -> B v``.
        b: right-hand side (tensor or list of tensors).
        x0: starting point (default 0); Martens warm-starts with 0.95 of the last solution.
        precond: the inverse preconditioner ``c`` (same structure as ``b``, finite entries > 0),
            with the meaning it has for :func:`shf.lsmr`: the variable is scaled, ``x = c ∘ y``,
            so CG runs on ``diag(c) B diag(c)``; as classical preconditioned CG that is
            ``M^{-1} = diag(c ∘ c)`` applied to the residuals.
        maxiter: iteration cap (Martens: 250).
        tol: Martens' relative-progress tolerance per iteration (5e-4); 0 disables the rule.
        min_window, window_ratio: the window ``k = max(min_window, ceil(window_ratio i))``.
        rtol: stop when ``||r|| <= rtol ||b||`` (0: only on an exactly zero residual).
        miniter: the progress rule is not applied before this iteration.
        store_first, store_growth: iterates kept at ``ceil(store_first store_growth^j)``.
        callback: ``callback(i, x_i, info)`` after iteration ``i`` (``info.phi[-1]`` is the
            quadratic at ``x_i``; the same signature as :func:`shf.lsmr`'s); returning True
            stops the solver. ``x_i`` is the live iterate: do not modify it.

    Returns:
        ``(x, info)``: the last iterate and a :class:`CgInfo` with the stored iterates.
    """
    if maxiter < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    if tol < 0 or rtol < 0:
        raise ValueError(f"tol and rtol must be >= 0, got {tol}, {rtol}")
    parts = (precond if isinstance(precond, list) else [precond]) if precond is not None else []
    if not all(bool((t > 0).all()) and tl.all_finite(t) for t in parts):
        raise ValueError("precond must have only positive entries, and finite ones")
    matvec = getattr(A, "matvec", None)
    Bv: Callable[[Vec], Vec] = matvec if callable(matvec) else A  # type: ignore[assignment]
    if not callable(Bv):
        raise TypeError(f"A must have a matvec method or be a function v -> B v, got {type(A).__name__}")
    minv = None if precond is None else tl.mul(precond, precond)  # M^{-1} = c ∘ c
    t0 = time.perf_counter()
    schedule = set(storage_schedule(maxiter, store_first, store_growth))
    x = tl.zeros_like(b) if x0 is None else tl.clone(x0)
    # r = b - B x0 ; y = M^{-1} r ; p = y
    r = tl.sub(b, Bv(x)) if x0 is not None else tl.clone(b)
    y = tl.mul(minv, r) if minv is not None else r
    p = tl.clone(y)
    ry = tl.dot(r, y)
    norm_b = tl.norm(b)
    # phi(x) = 1/2 x^T B x - b^T x = -1/2 (b + r)^T x  (since B x = b - r)
    phi0 = -0.5 * tl.dot(tl.add(b, r), x)
    info = CgInfo(stop=CgStop.MAXITER, iterations=0, phi=[phi0])
    rnorm = tl.norm(r)
    if not math.isfinite(rnorm) or not math.isfinite(phi0):
        info.stop = CgStop.NOT_FINITE
        info.stored.append((0, tl.clone(x)))
        info.elapsed_s = time.perf_counter() - t0
        return x, info
    if rnorm <= rtol * norm_b or rnorm == 0.0:
        info.stop = CgStop.RESIDUAL_ZERO
        info.residual_norm = rnorm
        info.stored.append((0, tl.clone(x)))
        info.elapsed_s = time.perf_counter() - t0
        return x, info

    i = 0
    for i in range(1, maxiter + 1):
        if ry == 0.0:
            # r^T M^-1 r underflowed to 0 (a residual below what the dtype resolves): no new
            # direction can be formed, and x is as good as CG gets.
            info.stop, i = CgStop.RESIDUAL_ZERO, i - 1
            break
        Bp = Bv(p)
        pBp = tl.dot(p, Bp)
        if not math.isfinite(pBp):
            info.stop, i = CgStop.NOT_FINITE, i - 1
            break
        if pBp <= 0.0:
            info.stop, i = CgStop.NEGATIVE_CURVATURE, i - 1
            break
        # alpha = r^T y / p^T B p ; x <- x + alpha p ; r <- r - alpha B p
        alpha = ry / pBp
        tl.axpy_(alpha, p, x)
        tl.axpy_(-alpha, Bp, r)
        # y = M^{-1} r ; beta = r_new^T y_new / r^T y ; p <- y + beta p
        y = tl.mul(minv, r) if minv is not None else r
        ry_new = tl.dot(r, y)
        beta = ry_new / ry
        ry = ry_new
        p = tl.axpy(1.0, y, tl.scale_(p, beta))
        phi_i = -0.5 * tl.dot(tl.add(b, r), x)
        info.phi.append(phi_i)
        info.iterations = i
        rnorm = math.sqrt(max(tl.dot(r, r), 0.0))
        info.residual_norm = rnorm  # the live value, for the callback
        if i in schedule:
            info.stored.append((i, tl.clone(x)))
        if not math.isfinite(phi_i):
            info.stop = CgStop.NOT_FINITE
            break
        if callback is not None and callback(i, x, info):
            info.stop = CgStop.CALLBACK
            break
        if rnorm <= rtol * norm_b or rnorm == 0.0:
            info.stop = CgStop.RESIDUAL_ZERO
            break
        # Martens' rule: k = max(10, 0.1 i); stop if i > k, phi_i < 0 and
        # (phi_i - phi_{i-k}) / phi_i < k tol.
        k = max(min_window, math.ceil(window_ratio * i))
        if tol > 0 and i >= miniter and i > k and phi_i < 0 and (phi_i - info.phi[i - k]) / phi_i < k * tol:
            info.stop = CgStop.PROGRESS
            break
    info.iterations = i
    if not info.stored or info.stored[-1][0] != i:
        info.stored.append((i, tl.clone(x)))
    info.residual_norm = rnorm
    info.elapsed_s = time.perf_counter() - t0
    return x, info
