"""Preconditioned LSMR with merit-based stopping (paper §5, Algorithm 6).

LSMR (Fong & Saunders, 2011) solves the damped least-squares problem

    min_x ||A x - b||^2 + damp^2 ||x - x0||^2                                  (eq. 18, 19)

by applying MINRES to the normal equations ``(A^T A + damp^2 I)(x - x0) = A^T r0``
with ``r0 = b - A x0``; it only needs the products ``x -> A x`` and ``u -> A^T u``.
Its iterate minimises ``||Abar^T rbar_k||`` over ``x0 + K_k(A^T A, A^T r0)`` where
``Abar = [A; damp I]`` and ``rbar_k = [r_k; damp (x0 - x_k)]``, so ``||rbar_k||`` and
``||Abar^T rbar_k||`` both decrease monotonically.

Preconditioning (§4.4, NOTES item 2). With the inverse-preconditioner vector
``c = precond > 0`` (stored like ``x``), LSMR runs on ``Abar = A diag(c)`` in the scaled
variable ``y``, ``x = c ∘ y``, starting from ``y0 = x0 / c``; the damping penalises the
scaled correction, i.e. the problem solved is

    min_y ||A (c ∘ y) - b||^2 + damp^2 ||y - y0||^2,

and the returned vector (and every vector given to ``merit`` and ``callback``) is
``x = c ∘ y`` in the original variables.

Merit stopping (Alg. 6 with NOTES items 4 and 5). Every ``k_next``-th iteration
(``k_next = first_check, ceil(1.25 k_next), ...``) the merit ``phi(x_k)`` (the
validation loss of ``w + x_k`` in the paper, eq. 20) is evaluated; LSMR stops when the
relative progress per iteration falls below ``ftol`` at a new minimum, or when ``phi``
has not come back below its minimum within ``recover`` iterations. The iterate with the
best merit is returned.

Without ``precond`` and ``merit`` this is exactly the Fong-Saunders algorithm as
implemented in ``scipy.sparse.linalg.lsmr`` (same iterates, estimates, stopping tests
and iteration counts up to floating-point rounding in the products and norms).

All scalars of the recurrences are Python floats (IEEE double) whatever the tensor
dtype; vectors are :data:`shf.tensorlist.Vec` (a tensor or a list of tensors) updated
in place, so the loop allocates only what the operator's products allocate.
"""

from __future__ import annotations

import enum
import logging
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from shf import tensorlist as tl
from shf.solvers.merit import MeritMonitor, MeritRule
from shf.solvers.operator import ColumnScaled, LinearOperator, as_operator, range_norm
from shf.tensorlist import Vec

DEFAULT_RULE = MeritRule()
"""Alg. 6's merit rule with :func:`lsmr`'s defaults (Martens' ``ftol`` 1e-5, ``miniter`` 50,
``recover`` 100, checks at 5, ``ceil(1.25 k)``, ...)."""

logger = logging.getLogger(__name__)

__all__ = ["LsmrInfo", "LsmrStop", "lsmr"]


class LsmrStop(str, enum.Enum):
    """Why :func:`lsmr` stopped. Codes 0-7 of ``scipy.sparse.linalg.lsmr`` map 1:1."""

    X0_SOLVES = "x0_solves"
    """``A^T r0 = 0`` (``x0``, or 0 when ``x0`` is None, is a solution) or ``b = 0`` without
    damping (``x = 0`` is a solution). scipy istop 0."""
    RESIDUAL_SMALL = "residual_small"
    """``||r|| <= btol ||b|| + atol ||Abar|| ||x||``: the system looks consistent and is
    solved to the tolerances. scipy istop 1."""
    LSQ_SOLVED = "lsq_solved"
    """``||Abar^T rbar|| <= atol ||Abar|| ||rbar||``: the least-squares problem is solved
    to ``atol`` (the paper's test, Alg. 6). scipy istop 2."""
    ILL_CONDITIONED = "ill_conditioned"
    """The estimate of ``cond(Abar)`` reached ``conlim``. scipy istop 3."""
    RESIDUAL_EPS = "residual_eps"
    """As RESIDUAL_SMALL with ``atol = btol = eps``. scipy istop 4."""
    LSQ_EPS = "lsq_eps"
    """As LSQ_SOLVED with ``atol = eps``. scipy istop 5."""
    COND_EPS = "cond_eps"
    """As ILL_CONDITIONED with ``conlim = 1/eps``. scipy istop 6."""
    MAXITER = "maxiter"
    """``k`` reached ``maxiter``. scipy istop 7."""
    MERIT_STALLED = "merit_stalled"
    """Alg. 6: a new merit minimum with relative progress per iteration below ``ftol``."""
    MERIT_NOT_RECOVERED = "merit_not_recovered"
    """Alg. 6: the merit stayed above its minimum for more than ``recover`` iterations."""
    CALLBACK = "callback"
    """The callback returned True."""
    NOT_FINITE = "not_finite"
    """A product, norm or recurrence scalar became NaN/Inf; the last finite iterate is
    returned."""
    RUNNING = "running"
    """Not a stop reason: the value of ``info.stop`` seen by a callback during the solve."""

    @property
    def scipy_istop(self) -> int | None:
        """The matching ``istop`` of ``scipy.sparse.linalg.lsmr``, or None if scipy has none."""
        return _SCIPY_ISTOP.get(self)


_SCIPY_ISTOP: dict[LsmrStop, int] = {
    LsmrStop.X0_SOLVES: 0,
    LsmrStop.RESIDUAL_SMALL: 1,
    LsmrStop.LSQ_SOLVED: 2,
    LsmrStop.ILL_CONDITIONED: 3,
    LsmrStop.RESIDUAL_EPS: 4,
    LsmrStop.LSQ_EPS: 5,
    LsmrStop.COND_EPS: 6,
    LsmrStop.MAXITER: 7,
}


@dataclass
class LsmrInfo:
    """Diagnostics of one :func:`lsmr` run.

    The estimates ``normr``, ``normar``, ``norma``, ``conda`` and ``normx`` are those of
    Fong & Saunders (2011) (scipy's), for the *last* iterate ``y_k`` (``k = iterations``)
    of the scaled problem: ``normr ~ ||rbar_k|| = sqrt(||b - Abar y_k||^2 +
    damp^2 ||y_k - y0||^2)``, ``normar ~ ||Abar^T rbar_k||``, ``norma ~ ||[Abar; damp I]||_F``,
    ``conda ~ cond([Abar; damp I])`` and ``normx = ||y_k||`` (the LSMR variable: equal to
    ``||x_k||`` without ``precond``; with it ``x = c ∘ y``). When a merit is given the
    returned vector is the best-merit iterate ``best_merit_iteration``, whose residual
    estimates are ``residual_history[best_merit_iteration - 1]`` etc.
    """

    stop: LsmrStop
    iterations: int
    """Number of completed iterations (the last iterate is ``x_iterations``)."""
    normr: float
    normar: float
    norma: float
    conda: float
    normx: float
    merit_history: list[tuple[int, float]] = field(default_factory=list)
    """``(k, phi(x_k))`` at every merit evaluation in the order made (``k = 0`` appears,
    after the first check, only when the stall rule needed ``phi(x0)``); NaN/Inf merits
    are recorded as ``+inf``."""
    best_merit_iteration: int | None = None
    """``k`` of the returned iterate when a merit was given, else None."""
    residual_history: list[float] = field(default_factory=list)
    """``normr`` after each iteration ``k = 1, ..., iterations``."""
    normar_history: list[float] = field(default_factory=list)
    """``normar`` after each iteration ``k = 1, ..., iterations``."""
    merit_evaluations: int = 0
    elapsed_s: float = 0.0

    @property
    def istop(self) -> int | None:
        """scipy's ``istop`` code for :attr:`stop` (None for the stop reasons scipy lacks)."""
        return self.stop.scipy_istop


Merit = Callable[[Vec], float]
"""``phi(x) -> float``, e.g. the validation loss at ``w + x`` (eq. 20)."""
Callback = Callable[[int, Vec, LsmrInfo], bool | None]
"""``callback(k, x_k, info) -> stop?``; must not modify ``x_k`` (it may be the live iterate)."""


def _sign(a: float) -> float:
    return 1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0)


def _sym_ortho(a: float, b: float) -> tuple[float, float, float]:
    """Plane rotation ``(c, s, r)`` with ``[c s; -s c] [a; b] = [r; 0]``, ``r = ||(a, b)||``
    up to sign, computed without overflow (Choi's SymOrtho, as used by Fong & Saunders)."""
    if b == 0.0:
        return _sign(a), 0.0, abs(a)
    if a == 0.0:
        return 0.0, _sign(b), abs(b)
    if abs(b) > abs(a):
        tau = a / b
        s = _sign(b) / math.sqrt(1.0 + tau * tau)
        return s * tau, s, b / s
    tau = b / a
    c = _sign(a) / math.sqrt(1.0 + tau * tau)
    return c, c * tau, a / c


def _tensors(x: Vec) -> list[Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _structure(x: Vec) -> object:
    """Shapes of a vector: a tuple for a tensor, a list of tuples for a list of tensors."""
    if isinstance(x, (list, tuple)):
        return [tuple(t.shape) for t in x]
    return tuple(x.shape)


def _is_vec(x: object) -> bool:
    if isinstance(x, Tensor):
        return True
    return isinstance(x, list) and len(x) > 0 and all(isinstance(t, Tensor) for t in x)


def _check_real(name: str, value: float, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < 0.0:
        raise ValueError(f"{name} must be {'>= 0' if allow_inf else 'finite and >= 0'}, got {v}")
    return v


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _validate_vectors(
    op: LinearOperator, b: Vec, x0: Vec | None, precond: Vec | None
) -> tuple[int, int] | None:
    """Check ``b``, ``x0``, ``precond``; return ``(m, n)`` when the operator has a shape."""
    for name, vec in (("b", b), ("x0", x0), ("precond", precond)):
        if vec is None:
            continue
        if not _is_vec(vec):
            raise ValueError(
                f"{name} must be a torch.Tensor or a non-empty list of tensors, got {type(vec).__name__}"
            )
        if not all(t.is_floating_point() for t in _tensors(vec)):
            raise ValueError(f"{name} must have a floating-point dtype")
        if not tl.all_finite(vec):
            raise ValueError(f"{name} contains NaN or Inf entries")
    if precond is not None and not all(bool((t > 0).all()) for t in _tensors(precond)):
        raise ValueError(
            "precond (the inverse preconditioner c, x = c ∘ y) must have all entries > 0; "
            "found a zero or negative entry"
        )
    if x0 is not None and precond is not None and _structure(x0) != _structure(precond):
        raise ValueError(
            f"x0 and precond must have the same structure, got {_structure(x0)} and {_structure(precond)}"
        )
    shape = getattr(op, "shape", None)
    if not (isinstance(shape, tuple) and len(shape) == 2):
        return None
    m, n = int(shape[0]), int(shape[1])
    # An operator with a 2-D shape (a dense matrix) acts on 1-D tensors.
    if not isinstance(b, Tensor) or tuple(b.shape) != (m,):
        raise ValueError(f"b must be a 1-D tensor of length {m} for A of shape {(m, n)}, got {_structure(b)}")
    for name, vec in (("x0", x0), ("precond", precond)):
        if vec is not None and (not isinstance(vec, Tensor) or tuple(vec.shape) != (n,)):
            raise ValueError(
                f"{name} must be a 1-D tensor of length {n} for A of shape {(m, n)}, got {_structure(vec)}"
            )
    return m, n


class _Recurrence:
    """Fong & Saunders' (2011) LSMR recurrence on ``Abar`` with damping ``damp`` (Alg. 6's body):
    the Golub-Kahan bidiagonalization, the rotations, the updates of ``y`` and the estimates of
    ``||rbar_k||``, ``||Abar^T rbar_k||``, ``||Abar||_F`` and ``cond(Abar)``, as in
    ``scipy.sparse.linalg.lsmr`` with the paper's names. Starts from ``u_1, v_1`` (normalised),
    ``alpha_1``, ``beta_1`` and the iterate ``y`` (updated in place); :meth:`step` makes one
    iteration."""

    def __init__(
        self, abar: LinearOperator, damp: float, u: Vec, v: Vec, alpha: float, beta: float, y: Vec
    ) -> None:
        self.abar, self.damp, self.u, self.v, self.alpha, self.beta, self.y = abar, damp, u, v, alpha, beta, y
        # Alg. 6 lines 1-2: alphabar_1 = alpha_1, zetabar_1 = alpha_1 beta_1, rhobar_0 = cbar_0 = 1,
        # sbar_0 = 0, h_1 = v_1, hbar_0 = 0. Alg. 6 writes rho_0 = 0, which would make the k = 1
        # hbar coefficient thetabar_1 rho_1 / (rho_0 rhobar_0) = 0/0; Fong & Saunders (and scipy)
        # use rho_0 = 1, which gives the intended hbar_1 = h_1.
        self.zetabar = alpha * beta
        self.alphabar = alpha
        self.rho = 1.0
        self.rhobar = 1.0
        self.cbar = 1.0
        self.sbar = 0.0
        self.h = tl.clone(v)
        self.hbar = tl.zeros_like(v)
        # Fong & Saunders (2011) §3.4: state of the ||r_k|| estimate.
        self.betadd = beta
        self.betad = 0.0
        self.rhodold = 1.0
        self.tautildeold = 0.0
        self.thetatilde = 0.0
        self.zeta = 0.0
        self.d = 0.0
        # Fong & Saunders (2011) §3.5: ||Abar||_F and cond(Abar) estimates.
        self.norma2 = alpha * alpha
        self.maxrbar = 0.0
        self.minrbar = 1e100
        self.norma = math.sqrt(self.norma2)
        self.conda = 1.0
        self.normr = beta
        self.normar = alpha * beta
        self.normy = tl.norm(y)

    def step(self, k: int) -> bool:
        """Iteration ``k``: ``y_k`` and the estimates; False when a product, a norm or a scalar
        of the recurrence is not finite (then ``y`` is ``y_{k-1}``, unless the overflow was in
        the vector update itself, which ``normy`` then shows)."""
        abar, damp, alpha, beta = self.abar, self.damp, self.alpha, self.beta
        # Alg. 6, Golub-Kahan bidiagonalization: beta_{k+1} u_{k+1} = Abar v_k - alpha_k u_k,
        # accumulated into the product's own (new) result: one pass instead of two.
        self.u = u = tl.axpy_(-alpha, self.u, abar.matvec(self.v))
        beta_new = range_norm(abar, u)
        if not math.isfinite(beta_new):
            return False
        self.beta = beta = beta_new
        if beta > 0.0:
            tl.scale_(u, 1.0 / beta)
            # alpha_{k+1} v_{k+1} = Abar^T u_{k+1} - beta_{k+1} v_k (into the product's result).
            self.v = tl.axpy_(-beta, self.v, abar.rmatvec(u))
            alpha_new = tl.norm(self.v)
            if not math.isfinite(alpha_new):
                return False
            self.alpha = alpha = alpha_new
            if alpha > 0.0:
                tl.scale_(self.v, 1.0 / alpha)
        # (If beta_{k+1} = 0, alpha and v are kept, as in Fong & Saunders' code; then
        # zetabar_{k+1} = 0 below and the least-squares test stops the iteration.)

        try:
            # Alg. 6: rotation Phat_k eliminates damp: alphahat_k = (alphabar_k^2 + damp^2)^1/2.
            chat, shat, alphahat = _sym_ortho(self.alphabar, damp)
            # Alg. 6: rotation P_k: rho_k = (alphahat_k^2 + beta_{k+1}^2)^1/2,
            # theta_{k+1} = s_k alpha_{k+1}, alphabar_{k+1} = c_k alpha_{k+1}.
            rhoold = self.rho
            ck, sk, rho = _sym_ortho(alphahat, beta)
            self.rho = rho
            thetanew = sk * alpha
            self.alphabar = ck * alpha
            # Alg. 6: rotation Pbar_k: thetabar_k = sbar_{k-1} rho_k,
            # rhobar_k = ((cbar_{k-1} rho_k)^2 + theta_{k+1}^2)^1/2.
            rhobarold = self.rhobar
            zetaold = self.zeta
            thetabar = self.sbar * rho
            rhotemp = self.cbar * rho
            self.cbar, self.sbar, self.rhobar = _sym_ortho(self.cbar * rho, thetanew)
            # Alg. 6: zeta_k = cbar_k zetabar_k, zetabar_{k+1} = -sbar_k zetabar_k.
            self.zeta = zeta = self.cbar * self.zetabar
            self.zetabar = -self.sbar * self.zetabar
            # Coefficients of the hbar, x and h updates (Alg. 6, "Update hbar_k, x_k, h_k").
            hbar_coef = -(thetabar * rho / (rhoold * rhobarold))
            x_coef = zeta / (rho * self.rhobar)
            h_coef = -(thetanew / rho)

            # Fong & Saunders (2011) §3.4, estimate of ||rbar_k||: apply Qhat_k, then Q_k
            # to (betadd, 0) ...
            betaacute = chat * self.betadd
            betacheck = -shat * self.betadd
            betahat = ck * betaacute
            self.betadd = -sk * betaacute
            # ... then Qtilde_{k-1}, which turns Rbar_k^T into Rtilde_k.
            thetatildeold = self.thetatilde
            ctildeold, stildeold, rhotildeold = _sym_ortho(self.rhodold, thetabar)
            self.thetatilde = stildeold * self.rhobar
            self.rhodold = ctildeold * self.rhobar
            self.betad = -stildeold * self.betad + ctildeold * betahat
            # tau~_{k-1} and tau._k by forward substitution with Rtilde_k^T.
            self.tautildeold = (zetaold - thetatildeold * self.tautildeold) / rhotildeold
            taud = (zeta - self.thetatilde * self.tautildeold) / self.rhodold
            # ||rbar_k||^2 = sum betacheck_j^2 + (betad_k - taud_k)^2 + betadd_{k+1}^2.
            self.d = self.d + betacheck * betacheck
            normr_new = math.sqrt(self.d + (self.betad - taud) ** 2 + self.betadd * self.betadd)
        except ZeroDivisionError:
            return False
        if not all(math.isfinite(t) for t in (hbar_coef, x_coef, h_coef, normr_new)):
            return False

        # Alg. 6: hbar_k = h_k - thetabar_k rho_k / (rho_{k-1} rhobar_{k-1}) hbar_{k-1},
        # x_k = x_{k-1} + zeta_k / (rho_k rhobar_k) hbar_k,
        # h_{k+1} = v_{k+1} - theta_{k+1} / rho_k h_k.
        tl.xpay_(self.h, hbar_coef, self.hbar)
        tl.axpy_(x_coef, self.hbar, self.y)
        tl.xpay_(self.v, h_coef, self.h)

        self.normr = normr_new
        # Fong & Saunders (2011) §3.5: ||Abar||_F^2 accumulates alpha_k^2 + beta_{k+1}^2.
        self.norma2 = self.norma2 + beta * beta
        self.norma = math.sqrt(self.norma2)
        self.norma2 = self.norma2 + alpha * alpha
        # cond(Abar) ~ max(rhobar_j) / min(rhobar_j) over j < k, with cbar_{k-1} rho_k.
        self.maxrbar = max(self.maxrbar, rhobarold)
        if k > 1:
            self.minrbar = min(self.minrbar, rhobarold)
        den = min(self.minrbar, rhotemp)
        self.conda = max(self.maxrbar, rhotemp) / den if den != 0.0 else math.inf
        # ||Abar^T rbar_k|| = |zetabar_{k+1}| (Fong & Saunders (2011) §2).
        self.normar = abs(self.zetabar)
        self.normy = tl.norm(self.y)
        return True


def _check_callables_and_maxiter(
    op: LinearOperator, b: Vec, x0: Vec | None, precond: Vec | None, merit: object, callback: object,
    maxiter: int | None,
) -> int:  # fmt: skip
    """Check the vectors and the callables; ``maxiter`` (default ``min(m, n)`` for a dense ``A``,
    required for an operator)."""
    if merit is not None and not callable(merit):
        raise ValueError("merit must be callable: x -> float")
    if callback is not None and not callable(callback):
        raise ValueError("callback must be callable: (k, x, info) -> bool | None")
    shape = _validate_vectors(op, b, x0, precond)
    if maxiter is None:
        if shape is None:
            raise ValueError(
                "maxiter is required when A is an operator without a 2-D shape "
                "(for a dense A it defaults to min(m, n))"
            )
        maxiter = max(1, min(shape))
    return _check_int("maxiter", maxiter, 1)


def _start(abar: LinearOperator, b: Vec, x0: Vec | None, c: Vec | None) -> tuple[Vec, Vec, float, float, Vec]:
    """``(u_1, Abar^T u_1, alpha_1, beta_1, y0)``: Alg. 6 line 1, ``r0 = b - Abar y0``,
    ``beta_1 u_1 = r0`` (Fong & Saunders (2011) §2), ``y0 = x0 / c`` (0 without ``x0``); ``v`` is
    ``alpha_1 v_1``, not yet normalised."""
    y: Vec | None
    if x0 is None:
        y = None
        u = tl.clone(b)
    else:
        y = tl.clone(x0) if c is None else tl.div(x0, c)
        u = tl.axpy(-1.0, abar.matvec(y), b)
    beta = range_norm(abar, u)
    # alpha_1 v_1 = Abar^T u_1.
    if math.isfinite(beta) and beta > 0.0:
        tl.scale_(u, 1.0 / beta)
        v = abar.rmatvec(u)
        alpha = tl.norm(v)
    else:
        # u = 0 (or not finite): v = 0, with the domain's structure taken from A^T u.
        v = tl.zeros_like(abar.rmatvec(u)) if y is None else tl.zeros_like(y)
        alpha = 0.0
    for name, vec in (("x0", x0), ("precond", c)):
        if vec is not None and _structure(vec) != _structure(v):
            raise ValueError(f"{name} has structure {_structure(vec)} but A^T u has {_structure(v)}")
    return u, v, alpha, beta, (tl.zeros_like(v) if y is None else y)


def _iterate(
    rec: _Recurrence, maxiter: int, tols: tuple[float, float, float, float], info: LsmrInfo,
    callback: Callback | None, monitor: MeritMonitor | None, to_x: Callable[[Vec], Vec],
) -> tuple[LsmrStop, int]:  # fmt: skip
    """Alg. 6's loop: iterations of the recurrence until a stopping test, the merit rule, the
    callback or ``maxiter`` ends it; ``tols = (||b||, atol, btol, 1/conlim)``. Returns the stop
    reason and the last iteration ``k`` (the histories in ``info`` hold the estimates)."""
    normb, atol, btol, ctol = tols
    k = 0
    user_stop = False
    while k < maxiter:
        k += 1
        if not rec.step(k):
            return LsmrStop.NOT_FINITE, k
        info.residual_history.append(rec.normr)
        info.normar_history.append(rec.normar)
        if not math.isfinite(rec.normy):
            # Overflow in the vector update itself (the scalars were finite).
            return LsmrStop.NOT_FINITE, k

        # Stopping tests of Fong & Saunders (2011) §6 / scipy (Alg. 6's atol test among them)
        stop = _tests(rec.normr, rec.normar, rec.norma, rec.conda, rec.normy, normb, atol, btol, ctol)

        if callback is not None:
            info.iterations = k
            info.normr, info.normar, info.norma, info.conda = rec.normr, rec.normar, rec.norma, rec.conda
            info.normx = rec.normy
            user_stop = bool(callback(k, to_x(rec.y), info))
        if stop is not None:
            return stop, k

        # Alg. 6, merit check at k = k_next (stall and recovery rules).
        if monitor is not None and monitor.due(k):
            merit_stop = monitor.check(k, rec.y)
            info.merit_evaluations = len(monitor.history)
            if merit_stop is not None:
                return LsmrStop(merit_stop), k  # merit_stalled or merit_not_recovered
        if user_stop:
            return LsmrStop.CALLBACK, k
    return LsmrStop.MAXITER, k


def _tests(
    normr: float, normar: float, norma: float, conda: float, normy: float, normb: float,
    atol: float, btol: float, ctol: float,
) -> LsmrStop | None:  # fmt: skip
    """The stopping tests of Fong & Saunders (2011) §6 (scipy's test1..3, t1, rtol) on the
    estimates of iteration ``k``; None: go on. In scipy's priority: the tolerance tests
    (``btol``/``atol`` on a consistent system, ``atol`` on the least-squares problem, the
    paper's test, and ``ctol = 1/conlim``) override the machine-precision ones."""
    if normb > 0.0:
        test1 = normr / normb
        t1 = test1 / (1.0 + norma * normy / normb)
        rtol = btol + atol * norma * normy / normb
    else:
        test1 = t1 = math.inf  # b = 0 (damped, x0 != 0): no consistent-system test
        rtol = 0.0
    test2 = normar / (norma * normr) if norma * normr != 0.0 else math.inf
    test3 = 1.0 / conda
    if test1 <= rtol:
        return LsmrStop.RESIDUAL_SMALL
    if test2 <= atol:
        return LsmrStop.LSQ_SOLVED  # Alg. 6: checked before the merit, any k
    if test3 <= ctol:
        return LsmrStop.ILL_CONDITIONED
    if 1.0 + t1 <= 1.0:
        return LsmrStop.RESIDUAL_EPS
    if 1.0 + test2 <= 1.0:
        return LsmrStop.LSQ_EPS
    if 1.0 + test3 <= 1.0:
        return LsmrStop.COND_EPS
    return None


def lsmr(
    A: object,
    b: Vec,
    *,
    damp: float = 0.0,
    x0: Vec | None = None,
    precond: Vec | None = None,
    atol: float = 1e-6,
    btol: float = 1e-6,
    conlim: float = 1e8,
    maxiter: int | None = None,
    merit: Merit | None = None,
    rule: MeritRule = DEFAULT_RULE,
    callback: Callback | None = None,
) -> tuple[Vec, LsmrInfo]:
    """Solve ``min ||A x - b||^2 + damp^2 ||x - x0||^2`` by (preconditioned) LSMR.

    Args:
        A: a dense 2-D ``torch.Tensor`` or any object with ``matvec(x) = A x`` and
            ``rmatvec(u) = A^T u`` (and optionally ``range_norm(u)``); see
            :mod:`shf.solvers.operator`.
        b: right-hand side in the range of ``A`` (tensor or list of tensors).
        damp: the regularisation ``lambda >= 0`` of eq. (18) (NOTES item 9: the system is
            ``(A^T A + damp^2 I) x = A^T b``). With ``x0`` the damping applies to the
            correction ``x - x0`` (eq. 19, NOTES item 3), with ``precond`` to ``y - y0``.
        x0: initial iterate in the domain (default 0), original variables.
        precond: the inverse preconditioner ``c`` (same structure as ``x``, entries > 0):
            LSMR runs on ``A diag(c)`` in ``y`` with ``x = c ∘ y`` (§4.4, NOTES item 2).
        atol: stop when ``||Abar^T rbar|| <= atol ||Abar|| ||rbar||`` (least-squares
            solved; the paper's test, checked at every iteration, even before
            ``miniter``) or, together with ``btol``, when
            ``||r|| <= btol ||b|| + atol ||Abar|| ||x||`` (consistent system solved).
            Roughly the relative accuracy of ``A``'s entries.
        btol: relative accuracy of ``b`` (the consistent-system test above).
        conlim: stop when the estimate of ``cond(Abar)`` reaches ``conlim``
            (0 disables it; the machine-precision version ``1/eps`` stays active).
        maxiter: iteration limit; default ``min(m, n)`` when ``A`` has a 2-D ``shape``
            (like scipy); required otherwise.
        merit: ``phi(x) -> float`` evaluated at iterations
            ``rule.first_check, ceil(rule.check_growth * first_check), ...`` (capped at
            ``maxiter``) and at the last iterate, and at ``x0`` only if the stall rule needs
            ``f_prev = phi(x0)`` (a first check beyond ``rule.miniter``); NaN/Inf values count
            as ``+inf``. When given, the
            iterate with the lowest merit among the evaluated ``k >= 1`` is returned
            (``x0`` only when every evaluated merit is ``+inf``).
        rule: Alg. 6's merit rule (:class:`shf.solvers.merit.MeritRule`: ``ftol``, ``miniter``,
            ``recover``, ``first_check``, ``check_growth``), the one object CG's merit reads too.
            Unused without ``merit``.
        callback: ``callback(k, x_k, info)`` after each iteration ``k >= 1``, once the
            iterate and the estimates in ``info`` are updated (``info.stop`` is
            ``RUNNING``); returning True stops with ``CALLBACK``. ``x_k`` is the live
            iterate without ``precond`` (do not modify it; clone it to keep it).

    Returns:
        ``(x, info)``: ``x`` in the original variables (a new vector, never ``x0``
        itself) and the diagnostics :class:`LsmrInfo`.

    Raises:
        ValueError: on invalid arguments (negative tolerances, ``maxiter < 1``, shapes
            that do not match a dense ``A``, ``precond`` entries that are not finite and
            positive, NaN/Inf in ``b`` or ``x0``).
    """
    t_start = time.perf_counter()
    op = as_operator(A)
    damp, atol, btol = (
        _check_real(name, value) for name, value in (("damp", damp), ("atol", atol), ("btol", btol))
    )
    conlim = _check_real("conlim", conlim, allow_inf=True)
    if not isinstance(rule, MeritRule):
        raise ValueError(f"rule must be a shf.solvers.merit.MeritRule, got {type(rule).__name__}")
    maxiter = _check_callables_and_maxiter(op, b, x0, precond, merit, callback, maxiter)

    # NOTES item 2: LSMR works with Abar = A diag(c) in the scaled variable y, x = c ∘ y.
    c = precond
    abar: LinearOperator = op if c is None else ColumnScaled(op, c)

    def to_x(y: Vec) -> Vec:
        """Original variables ``x = c ∘ y`` (a new vector when preconditioned)."""
        return y if c is None else tl.mul(c, y)

    def finish(
        stop: LsmrStop, x: Vec, k: int, normr: float, normar: float, norma: float, conda: float, normx: float
    ) -> tuple[Vec, LsmrInfo]:
        info.stop, info.iterations = stop, k
        info.normr, info.normar, info.norma, info.conda, info.normx = normr, normar, norma, conda, normx
        info.elapsed_s = time.perf_counter() - t_start
        logger.debug("lsmr stopped: %s after %d iterations, normr=%.3e normar=%.3e", stop.value, k, normr,
                     normar)  # fmt: skip
        return x, info

    info = LsmrInfo(LsmrStop.RUNNING, 0, math.nan, math.nan, math.nan, math.nan, math.nan)

    # Alg. 6 line 1: r0 = b - Abar y0, beta_1 u_1 = r0, alpha_1 v_1 = Abar^T u_1 (before normalising v)
    normb = range_norm(op, b)
    u, v, alpha, beta, y = _start(abar, b, x0, c)

    # The k = 0 iterate in the original variables (x0 itself, not c ∘ (x0 / c)).
    def x_start() -> Vec:
        return tl.clone(x0) if x0 is not None else tl.zeros_like(v)

    # Alg. 6 line 3: f_min = inf, f_prev = phi(x0), k_min = k_prev = 0, x_min = x0, k_next = 5
    # (the merit rule, solvers/merit.py; phi(x0) is evaluated only if the stall test reads it).
    monitor: MeritMonitor | None = None
    x_min: Vec | None = None
    if merit is not None:
        monitor = rule.monitor(merit, x_start(), maxiter, to_x=None if c is None else to_x)
        info.merit_history = monitor.history
        x_min = monitor.x_min
        info.best_merit_iteration = 0

    normy = tl.norm(y)
    if not (math.isfinite(beta) and math.isfinite(alpha)):
        # A product with x0 or b was not finite: nothing to iterate on.
        x = x_min if x_min is not None else x_start()
        return finish(LsmrStop.NOT_FINITE, x, 0, beta, alpha * beta, alpha, 1.0, normy)
    if alpha > 0.0:
        tl.scale_(v, 1.0 / alpha)

    rec = _Recurrence(abar, damp, u, v, alpha, beta, y)
    norma, conda, normr, normar = rec.norma, rec.conda, rec.normr, rec.normar
    ctol = 1.0 / conlim if conlim > 0.0 else 0.0

    # A^T r0 = 0: x0 solves the (damped) problem.
    if normar == 0.0:
        x = x_min if x_min is not None else (x_start() if c is not None else y)
        return finish(LsmrStop.X0_SOLVES, x, 0, normr, normar, norma, conda, normy)
    if normb == 0.0 and damp == 0.0:
        # b = 0 without damping: x = 0 is a least-squares solution (scipy returns it even
        # with x0). With damp > 0 and x0 != 0, x = 0 is *not* the solution of the damped
        # problem, so we iterate instead (deviation from scipy), with the consistent-system
        # tests (which divide by ||b||) switched off.
        zero = tl.zeros_like(v)
        if merit is not None:
            info.best_merit_iteration = 0
        return finish(LsmrStop.X0_SOLVES, zero, 0, 0.0, 0.0, norma, conda, 0.0)

    stop, k = _iterate(rec, maxiter, (normb, atol, btol, ctol), info, callback, monitor, to_x)
    normr, normar, norma, conda, normy = rec.normr, rec.normar, rec.norma, rec.conda, rec.normy
    assert stop is not None
    # The returned iterate is x_{k_done}: on NOT_FINITE the update of iteration k was
    # not applied (unless the overflow happened in the update itself).
    k_done = k - 1 if stop is LsmrStop.NOT_FINITE and len(info.residual_history) < k else k
    if monitor is None:
        return finish(stop, to_x(y), k_done, normr, normar, norma, conda, normy)

    # NOTES item 4 (deliberate deviation from Alg. 6, which returns x_k): return the
    # iterate with the best merit among those evaluated, evaluating the last one too.
    x_best, info.best_merit_iteration = monitor.best(k_done, y)
    info.merit_evaluations = len(monitor.history)
    return finish(stop, x_best, k_done, normr, normar, norma, conda, normy)
