"""The inner solve of an HF iteration: Alg. 6's damped least-squares problem, with the stopping
tests built in one place.

In the scaled variable ``y`` (``d = c ∘ y``, ``y0 = x0 / c``, ``c`` the preconditioner's inverse)
the problem is ``min ||A C y - b||^2 + lambda^2 ||y - y0||^2`` (eq. 19). :class:`InnerSolver` is
the part an HF iteration calls, chosen once by :func:`make_solver`: :class:`LsmrSolver` (the
paper's; on the stacked damping block when the curvature rows are a subset of the batch, B7),
:class:`CgSolver` (the ablation: CG on the normal equations) or :class:`DirectSolver` (beyond the
paper, B20: the same problem solved exactly by a QR factorisation, for a model with a handful of
weights). The iterative ones stop on the solver's own test (``atol``), ``maxiter``, Alg. 6's
validation merit, B3's forcing test and the deadline (:class:`Stops`); all return a
:class:`SolveResult`.
"""

from __future__ import annotations

import enum
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.curvature.base import JacobianOperator
from shf.errors import ConfigError
from shf.optim.scaling import ColumnScaling
from shf.solvers.cg import cg
from shf.solvers.lsmr import LsmrStop, lsmr
from shf.solvers.merit import MeritRule
from shf.solvers.operator import DampedStack, PreconditionedStack, TimedOperator


class SolveStop(enum.StrEnum):
    """Why the inner solve of an HF iteration ended: the one stop-reason type of an HF iteration's
    solve (``StepInfo.solver_stop``), whichever solver ran. Its values are LSMR's
    (:class:`shf.solvers.lsmr.LsmrStop`: scipy's tests and Alg. 6's merit rule) and CG's
    (:class:`shf.solvers.cg.CgStop`) outcomes, the stops the HF iteration adds through the
    solvers' callbacks (the forcing test, the deadline) and the batch it did not solve on. A
    ``StrEnum``: each member is its string, in the metrics and in comparisons."""

    X0_SOLVES = "x0_solves"  # LSMR: A^T r0 = 0
    RESIDUAL_SMALL = "residual_small"  # LSMR: a consistent system solved (btol, atol)
    LSQ_SOLVED = "lsq_solved"  # LSMR: Alg. 6's atol test
    ILL_CONDITIONED = "ill_conditioned"  # LSMR: conlim
    RESIDUAL_EPS = "residual_eps"  # LSMR: the tests at machine precision
    LSQ_EPS = "lsq_eps"
    COND_EPS = "cond_eps"
    MAXITER = "maxiter"  # both: the cap
    MERIT_STALLED = "merit_stalled"  # both: Alg. 6's merit rule
    MERIT_NOT_RECOVERED = "merit_not_recovered"
    NOT_FINITE = "not_finite"  # both: a product was not finite
    RESIDUAL_ZERO = "residual_zero"  # CG: r = 0
    PROGRESS = "progress"  # CG: Martens' progress rule (off in SHF's CG)
    NEGATIVE_CURVATURE = "negative_curvature"  # CG
    FORCING = "forcing"  # B3's forcing test held
    MAX_TIME = "max_time"  # the step's deadline passed
    NOT_FINITE_BATCH = "not_finite_batch"  # no solve: the batch's loss or residual was not finite
    DIRECT = "direct"  # B20: the problem solved exactly (a QR factorisation), no iterations


MAX_TIME = SolveStop.MAX_TIME
"""The solver's stop reason when the step's deadline passed."""
FORCED = SolveStop.FORCING
"""The solver's stop reason when the forcing test (``SHFConfig.forcing``) held."""
SOLVERS = ("lsmr", "cg", "direct")

Agree = Callable[[bool], bool]
"""The ranks' agreement on a flag (true everywhere when true on one), or None in one process."""


def any_rank(flag: bool, agree: Agree | None) -> bool:
    """``flag`` as the ranks decide it together: with ``agree`` (data-parallel runs,
    :meth:`shf.collectives.Collectives.any`) true on every rank when true on one."""
    return agree(flag) if agree is not None else flag


def past(deadline: float | None, agree: Agree | None) -> bool:
    """Whether ``deadline`` has passed (on any rank's clock, see :func:`any_rank`)."""
    return deadline is not None and any_rank(time.perf_counter() >= deadline, agree)


@dataclass(frozen=True)
class Tolerances:
    """The solver's own stopping constants: ``atol`` (LSMR's ``||Abar^T rbar|| / (||Abar|| ||rbar||)``
    test; CG's relative residual), and Alg. 6's merit rule, one :class:`MeritRule` that LSMR and
    CG read alike. No defaults: they are :class:`shf.optim.step.SHFConfig`'s
    (``SHFConfig.tolerances()``)."""

    atol: float
    merit: MeritRule


@dataclass(frozen=True)
class Stops:
    """The tests that end one solve besides the solver's own: ``maxiter``; Alg. 6's merit ``phi(d)``
    (None: none); B3's forcing bound on the normal equations' residual in the scaled variables
    (None: none); the ``deadline`` (a ``time.perf_counter()`` value); ``agree``: the ranks'
    agreement on the time-based stop (data-parallel)."""

    maxiter: int
    merit: Callable[[Any], float] | None = None
    forcing_bound: float | None = None
    deadline: float | None = None
    agree: Agree | None = None


@dataclass
class System:
    """One HF iteration's problem: the curvature rows' operator ``A`` (and ``timed``, the same
    through a timer) with right-hand side ``b``, the damping ``lambda``, LSMR's right
    preconditioner ``c`` (``P``, with Alg. 3's damping scale ``c.c``; None: no preconditioner);
    ``g``, the objective's gradient where it is not ``A``'s own (``-A^T b``): a subset of the
    batch as curvature rows (B7) or B10's weight cost (None: it is);
    ``weight_cost`` and the weights ``w`` (B10's rows ``sqrt(c) I``, right-hand side ``-sqrt(c) w``);
    ``subset``: the curvature rows are a subset of the batch (B7)."""

    A: JacobianOperator
    timed: TimedOperator
    b: Tensor
    lam: float
    c: ColumnScaling | None
    w: list[Tensor]
    g: list[Tensor] | None = None
    weight_cost: float = 0.0
    subset: bool = False


@dataclass(frozen=True)
class SolveResult:
    """What one solve returned: the direction ``d``, the iterations, the named stop reason, the
    merit's evaluations, the iteration of ``d`` (the best merit's, or the last) and ``phi(d)``
    when the merit evaluated ``d`` (None otherwise)."""

    d: list[Tensor]
    iterations: int
    stop: SolveStop
    merit_evaluations: int
    best: int | None
    merit_of_d: float | None = None


def _scaled_start(c: ColumnScaling | None, x0: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """The diagonal column scaling ``c`` (ones without a preconditioner) and the start
    ``y0 = x0 / c`` in the scaled variable of Alg. 6's problem (NOTES item 2)."""
    ones = _column_scale(c, x0)
    return ones, cast(list[Tensor], tl.div(x0, ones))


def _column_scale(c: ColumnScaling | None, like: list[Tensor]) -> list[Tensor]:
    """The diagonal column scaling ``c`` (ones shaped as ``like`` without a preconditioner)."""
    assert c is None or c.diagonal  # B19 takes LsmrSolver.kronecker
    return c.c if c is not None else [torch.ones_like(t) for t in like]


def _with_weight_cost(s: System) -> tuple[Any, Any]:
    """``(operator, right-hand side)``: ``A`` and ``b``, with B10's rows ``sqrt(c) I`` under ``A``
    and ``-sqrt(c) w`` under ``b`` when there is a weight cost."""
    if s.weight_cost > 0.0:
        # B10: the weight cost's rows sqrt(c) I under A, with right-hand side -sqrt(c) w
        op = DampedStack(s.timed, math.sqrt(s.weight_cost), None)
        return op, op.join(s.b, tl.scale(-math.sqrt(s.weight_cost), s.w))
    return s.timed, s.b


def _stacked_problem(
    system: System, x0: list[Tensor]
) -> tuple[DampedStack, list[Tensor], list[Tensor], list[Tensor]]:
    """B7's problem ``min || [A C; D] y - [b; e] ||`` (:meth:`LsmrSolver.stacked`) as
    ``(operator, right-hand side, c, y0)``."""
    assert system.g is not None
    lam, g = system.lam, system.g
    g_A = system.A.gradient()  # -A_c^T b_c: the curvature rows' data gradient
    ones, y0 = _scaled_start(system.c, x0)
    if system.weight_cost > 0.0:
        # D = sqrt(wc c^2 + lambda^2);  D e = lambda^2 y0 + C (g_A - g)  (g holds wc w, g_A not)
        c2 = cast(list[Tensor], tl.mul(ones, ones))
        D = [torch.sqrt(v.mul_(system.weight_cost).add_(lam * lam)) for v in c2]
        e = tl.div(tl.axpy(lam * lam, y0, tl.mul(ones, tl.sub(g_A, g))), D)
        damp: float | list[Tensor] = D
    else:
        # e = lambda y0 + C (g_A - g) / lambda
        damp = lam
        e = tl.axpy(1.0 / lam, tl.mul(ones, tl.sub(g_A, g)), tl.scale(lam, y0))
    op = DampedStack(system.timed, damp, ones)
    return op, op.join(system.b, e), ones, y0


class InnerSolver(ABC):
    """The inner-solve part of an HF iteration (see the module's docstring)."""

    name: ClassVar[str]

    def __init__(self, tol: Tolerances) -> None:
        self.tol = tol

    @abstractmethod
    def solve(self, system: System, x0: list[Tensor], stops: Stops) -> SolveResult:
        """The direction for ``system`` from ``x0``."""


class LsmrSolver(InnerSolver):
    """Alg. 6: preconditioned LSMR with the validation merit (the paper's); with B7's subset of
    curvature rows, LSMR on the stacked damping block (:meth:`stacked`)."""

    name = "lsmr"

    def solve(self, system: System, x0: list[Tensor], stops: Stops) -> SolveResult:
        if system.c is not None and not system.c.diagonal:
            # B19: P not diagonal, so not Alg. 6's column scaling
            return self.kronecker(system, system.c, x0, stops)
        if system.subset:
            return self.stacked(system, x0, stops)
        t = self.tol
        op, b = _with_weight_cost(system)
        callback, forced = self._callback(stops)
        # Solve (A^T A + lambda^2 I) d = A^T b with LSMR(d, A, b, lambda, c; maxiter, atol, ftol, phi)
        d, info = lsmr(
            op, b, callback=None if (stops.deadline is None and stops.forcing_bound is None) else callback,
            damp=system.lam, x0=x0, precond=None if system.c is None else system.c.c, atol=t.atol,
            btol=0.0,  # Alg. 6 has no consistent-system test; only atol, the merit and maxiter
            conlim=0.0,  # ... and no condition-number stop (0 disables it, as in scipy)
            maxiter=stops.maxiter, merit=stops.merit, rule=t.merit,
        )  # fmt: skip
        return self._outcome(cast(list[Tensor], d), info, forced[0])

    def stacked(self, system: System, x0: list[Tensor], stops: Stops) -> SolveResult:
        """B7: LSMR on ``(C A^T A C + lambda^2 I) y = -C g + lambda^2 y0`` with ``g`` not ``A``'s gradient.

        In the scaled variable ``y`` this is ``min || [A C; lambda I] y - [b; e] ||`` with
        ``e = lambda y0 + C (g_A - g) / lambda``, ``g_A = -A^T b`` the curvature rows' own
        gradient (:class:`DampedStack`). LSMR's iterates are those of MINRES on these normal
        equations, as for Alg. 6's problem; the merit, forcing, deadline and ``maxiter`` rules are
        the same. ``atol``'s test reads ``||rbar||``, which here includes ``e``: it is looser than
        on Alg. 6's problem.

        With B10's weight cost ``wc`` (``g`` then includes ``wc w``) the system is
        ``(C (A^T A + wc I) C + lambda^2 I) y = -C g + lambda^2 y0``: the rows ``sqrt(wc) C y`` with
        right-hand side ``-sqrt(wc) w`` and the damping rows ``lambda y`` make one diagonal block
        ``D y``, ``D = sqrt(wc c^2 + lambda^2)``, with right-hand side
        ``e = (lambda^2 y0 + C (g_A - g)) / D``, ``g_A`` the curvature rows' data gradient
        (the same normal equations, so the same LSMR iterates as the two blocks stacked, with one
        weight-sized part in LSMR's range vectors instead of two: fewer passes over the weights
        per iteration, ``benchmarks/damping_block.py``).
        """
        t = self.tol
        op, rhs, ones, y0 = _stacked_problem(system, x0)
        callback, forced = self._callback(stops)
        merit = stops.merit
        y, info = lsmr(
            op, rhs, callback=callback, damp=0.0, x0=y0, atol=t.atol, btol=0.0, conlim=0.0,
            maxiter=stops.maxiter, merit=None if merit is None else (lambda y: merit(tl.mul(ones, y))),
            rule=t.merit,
        )  # fmt: skip
        return self._outcome(cast(list[Tensor], tl.mul(ones, y)), info, forced[0])

    def kronecker(self, system: System, P: ColumnScaling, x0: list[Tensor], stops: Stops) -> SolveResult:
        """B19: the damped problem of :meth:`stacked` (or of Alg. 6 without B7's subset), in
        ``d = P z`` with ``P`` Kronecker-factored instead of ``d = c ∘ y`` (any
        :class:`ColumnScaling` works; a diagonal one gives :meth:`stacked`'s problem).

        In ``d`` the problem is ``min 1/2 ||A d||^2 + g^T d + wc/2 ||d||^2 + lambda^2/2 ||(d - x0) / c||^2``
        (``g`` the whole batch's gradient, with ``wc w``), the normal equations
        ``(A^T A + D^2) d = -g + (lambda / c)^2 ∘ x0`` with the diagonal ``D = sqrt(wc + (lambda / c)^2)``:
        those of :meth:`stacked` in ``d``. LSMR solves ``min || [A P; D P] z - [b; e] ||`` from
        ``z0 = P^{-1} x0``, ``D e = (lambda / c)^2 ∘ x0 + g_A - g`` (``g_A = -A^T b``), whose normal
        equations are ``P^T`` times those in ``d`` (:class:`PreconditionedStack`). The forcing
        bound and ``atol`` read LSMR's ``||Abar^T rbar||`` in ``z``; the merit reads ``d = P z``.
        """
        t, lam, wc = self.tol, system.lam, system.weight_cost
        g_A = system.A.gradient()  # -A^T b: the curvature rows' data gradient
        if system.g is not None:
            g = system.g  # the whole batch's (B7), with B10's wc w
        else:
            g = cast(list[Tensor], tl.axpy(wc, system.w, g_A)) if wc > 0.0 else g_A
        # (lambda / c)^2 and D = sqrt(wc + (lambda / c)^2)
        lc2 = [(lam / ci) ** 2 for ci in P.c]
        D = [torch.sqrt(v + wc) for v in lc2]
        # D e = (lambda / c)^2 ∘ x0 + g_A - g
        e = tl.div(tl.add(tl.mul(lc2, x0), tl.sub(g_A, g)), D)
        op = PreconditionedStack(system.timed, P, D)
        callback, forced = self._callback(stops)
        merit = stops.merit
        z, info = lsmr(
            op, op.join(system.b, e), callback=callback, damp=0.0, x0=P.inverse(x0), atol=t.atol, btol=0.0,
            conlim=0.0, maxiter=stops.maxiter, merit=None if merit is None else (lambda z: merit(P.apply(z))),
            rule=t.merit,
        )  # fmt: skip
        return self._outcome(P.apply(z), info, forced[0])

    @staticmethod
    def _callback(stops: Stops) -> tuple[Callable[[int, Any, Any], bool], list[bool]]:
        """LSMR's callback: stop on the forcing test (B3: ``||Abar^T rbar_k|| <= bound``, then
        ``forced[0]`` is True) or at the deadline (agreed by the ranks, see :func:`past`)."""
        forced = [False]

        def callback(k: int, x: Any, i: Any) -> bool:
            if stops.forcing_bound is not None and i.normar <= stops.forcing_bound:
                forced[0] = True
                return True
            return past(stops.deadline, stops.agree)

        return callback, forced

    @staticmethod
    def _outcome(d: list[Tensor], info: Any, forced: bool) -> SolveResult:
        """The callback's stop named ``forcing`` or ``max_time``; ``phi(d)`` when the merit
        evaluated the returned ``d`` (its best iterate)."""
        if info.stop is LsmrStop.CALLBACK:
            stop = FORCED if forced else MAX_TIME  # the callbacks: forcing and the deadline
        else:
            stop = SolveStop(info.stop.value)
        best = info.best_merit_iteration
        merit_of_d = None
        if best is not None and info.stop is not LsmrStop.X0_SOLVES:
            # phi(d) for the returned d, which LSMR evaluated: f(w + d; X_val).
            merit_of_d = dict(info.merit_history).get(best)
        k_d = best if best is not None else info.iterations
        return SolveResult(d, info.iterations, stop, len(info.merit_history), k_d, merit_of_d)


class CgSolver(InnerSolver):
    """Ablation: CG on the problem LSMR solves, ``(C A^T A C + lambda^2 I) y = C A^T b + lambda^2 y0``.

    In the scaled variable ``y`` these are the normal equations of Alg. 6's problem. Stops:
    ``||residual|| <= atol ||rhs||`` (CG has no ``||Abar^T rbar||`` estimate; this is the closest
    test), ``maxiter``, and Alg. 6's merit rule (the same :class:`MeritRule` as LSMR's), whose best iterate is
    returned. With B7's subset the right-hand side is ``-C g`` of the whole batch's gradient.
    """

    name = "cg"

    def solve(self, system: System, x0: list[Tensor], stops: Stops) -> SolveResult:
        t, lam = self.tol, system.lam
        if system.c is not None and not system.c.diagonal:
            raise ConfigError("the kfac preconditioner (B19) is LSMR's; with solver 'cg' use a diagonal one")
        A, b = _with_weight_cost(system)
        grad = system.g if system.subset else None
        ones, y0 = _scaled_start(system.c, x0)

        def Bv(y: Any) -> Any:
            # v -> C A^T A C y + lambda^2 y
            return tl.axpy(lam * lam, y, tl.mul(ones, A.rmatvec(A.matvec(tl.mul(ones, y)))))

        # C A^T b = -C g; with ``grad`` (B7) the gradient of another (larger) batch than A's
        rhs = tl.axpy(lam * lam, y0, tl.mul(ones, A.rmatvec(b) if grad is None else tl.scale(-1.0, grad)))
        monitor = None
        if stops.merit is not None:
            # x0 in the merit's variables (d), the iterates mapped there by d = c ∘ y
            monitor = t.merit.monitor(stops.merit, x0, stops.maxiter, to_x=lambda y: tl.mul(ones, y))
        late, forced = [False], [False]

        def callback(k: int, y: Any, info: Any) -> bool:
            if monitor is not None and monitor(k, y, info):
                return True
            # B3: CG's residual is the preconditioned damped normal equations' (LSMR's normar)
            if stops.forcing_bound is not None and info.residual_norm <= stops.forcing_bound:
                forced[0] = True
                return True
            late[0] = past(stops.deadline, stops.agree)
            return late[0]

        y, info = cg(Bv, rhs, x0=y0, maxiter=stops.maxiter, tol=0.0, rtol=t.atol, callback=callback)
        if monitor is not None and monitor.stop is not None:
            stop = SolveStop(monitor.stop)  # Alg. 6's merit rule (through the callback)
        elif forced[0] or late[0]:
            stop = FORCED if forced[0] else MAX_TIME
        else:
            stop = SolveStop(info.stop.value)
        if monitor is not None:
            d, k_best = monitor.best(info.iterations, y)
            return SolveResult(cast(list[Tensor], d), info.iterations, stop, len(monitor.history), k_best)
        return SolveResult(cast(list[Tensor], tl.mul(ones, y)), info.iterations, stop, 0, info.iterations)


DIRECT_MAX_WEIGHTS = 4096
"""The most weights :class:`DirectSolver` takes: it makes one product per weight and factors a
matrix with a column per weight."""


class DirectSolver(InnerSolver):
    """Beyond the paper (docs/deviations.md B20): the HF iteration's damped least-squares problem
    solved exactly, for a model with a handful of weights.

    The problem is Alg. 6's, ``min ||A C y - b||^2 + lambda^2 ||y - y0||^2`` (eq. 19; with B10's
    rows under ``A``), or B7's stacked ``min || [A C; D] y - [b; e] ||`` (:meth:`LsmrSolver.stacked`):
    the same minimiser LSMR iterates toward. Its matrix is formed by one product with each unit
    vector (``p`` products for ``p`` weights; where the model's Jacobian is formed, G16, each is a
    matrix-vector product) and the problem solved by a Householder QR factorisation of the
    stacked matrix (as MINPACK's Levenberg-Marquardt), not by the normal equations: the condition
    number is not squared, so an ill-conditioned fit keeps its digits, where LSMR's ``atol`` test stops at
    ``||Abar^T rbar|| <= atol ||Abar|| ||rbar||`` with round-off in both norms.

    No iterations, so ``maxiter``, ``atol``, B3's forcing test and the deadline do not apply
    (:meth:`shf.optim.step.SHFConfig.ignored`); with the validation merit on, ``phi(d)`` is
    evaluated once, at the solution. One process only; a diagonal preconditioner or none (B19's
    Kronecker-factored one is LSMR's).
    """

    name = "direct"

    def solve(self, system: System, x0: list[Tensor], stops: Stops) -> SolveResult:
        if system.c is not None and not system.c.diagonal:
            raise ConfigError(
                "the kfac preconditioner (B19) is LSMR's; with solver 'direct' use a diagonal one"
            )
        if system.subset:
            # B7: min || [A C; D] y - [b; e] ||, the damping block in the operator
            op, rhs, ones, y0 = _stacked_problem(system, x0)
            M, r = _dense_columns(op, y0, None), tl.flatten(rhs)
        else:
            # eq. (19): min || [A C; lambda I] y - [b; lambda y0] || (B10's rows in A)
            ones, y0 = _scaled_start(system.c, x0)
            M, r = self.matrix(system)
            if system.lam > 0.0:
                lam, eye = system.lam, torch.eye(M.shape[1], dtype=M.dtype, device=M.device)
                M, r = torch.cat([M, lam * eye]), torch.cat([r, lam * tl.flatten(y0)])
        # y <- argmin ||M y - r|| by Householder QR, M = Q R, R y = Q^T r: never the normal equations
        y = _qr_solve(M, r)
        # d = c ∘ y
        d = cast(list[Tensor], tl.mul(ones, tl.unflatten(y, y0)))
        merit_of_d = stops.merit(d) if stops.merit is not None and tl.all_finite(d) else None
        return SolveResult(d, 1, SolveStop.DIRECT, 0 if merit_of_d is None else 1, 1, merit_of_d)

    @staticmethod
    def matrix(system: System) -> tuple[Tensor, Tensor]:
        """``(M, r)``: the undamped problem ``min ||M y - r||`` of eq. (19) in the scaled variable,
        ``M = A C`` (B10's rows ``sqrt(c) C`` under it) and ``r = b`` (``-sqrt(c) w`` under it); not
        for B7's stacked problem, whose damping block is part of its operator."""
        if system.subset:
            raise ConfigError("the dense undamped problem is not defined with curvature rows (B7)")
        base, b = _with_weight_cost(system)
        ones = _column_scale(system.c, system.w)
        # the operator's own matrix where it holds J (G16), else one product per weight
        dense = getattr(system.A, "dense", None) if system.weight_cost == 0.0 else None
        J = dense() if dense is not None else None
        M = _dense_columns(base, ones, ones) if J is None else J * tl.flatten(ones)
        return M, tl.flatten(b)


def _qr_solve(M: Tensor, r: Tensor) -> Tensor:
    """``argmin ||M y - r||`` by Householder QR (``M = Q R``, then ``R y = Q^T r``). Not
    ``torch.linalg.lstsq``: its CPU driver (MKL's ``gelsy``) gave different last bits from one call
    to the next on the same matrix, so runs would not repeat. Without damping, a matrix with fewer
    rows than columns or a singular ``R`` falls back to the minimum-norm solution (SVD). A matrix
    or right-hand side that is not finite (a Jacobian that overflows where the residual does not)
    gives a vector of NaN, which the HF iteration rejects as it rejects any non-finite direction."""
    if not bool(torch.isfinite(M).all() and torch.isfinite(r).all()):
        return torch.full((M.shape[1],), math.nan, dtype=M.dtype, device=M.device)
    if M.shape[0] >= M.shape[1]:
        Q, R = torch.linalg.qr(M)
        y: Tensor = torch.linalg.solve_triangular(R, (Q.T @ r).unsqueeze(1), upper=True).squeeze(1)
        if bool(torch.isfinite(y).all()):
            return y
    pinv: Tensor = torch.linalg.pinv(M)
    return pinv @ r


def _dense_columns(op: Any, like: list[Tensor], scale: list[Tensor] | None) -> Tensor:
    """The matrix of ``y -> op(scale ∘ y)`` (``op(y)`` without ``scale``), one column per weight:
    the product with each unit vector, flattened (B20)."""
    p = sum(t.numel() for t in like)
    eye = torch.eye(p, dtype=like[0].dtype, device=like[0].device)
    cols = []
    for j in range(p):
        e = tl.unflatten(eye[j], like)
        cols.append(tl.flatten(op.matvec(e if scale is None else tl.mul(scale, e))))
    return torch.stack(cols, dim=1)


def make_solver(name: str, tol: Tolerances) -> InnerSolver:
    """The inner solver named ``name`` (one of :data:`SOLVERS`)."""
    solvers: dict[str, type[InnerSolver]] = {"lsmr": LsmrSolver, "cg": CgSolver, "direct": DirectSolver}
    if name not in solvers:
        raise ConfigError(f"solver must be one of {SOLVERS}, got {name!r}")
    return solvers[name](tol)
