"""The inner-solve part (shf.optim.solve): the solvers of an HF iteration against the solver
functions they wrap and against the normal equations, in float64, and their named stops."""

from __future__ import annotations

import time

import pytest
import torch

from reference import tiny_problem
from shf import tensorlist as tl
from shf.errors import ConfigError
from shf.optim.scaling import DiagonalScaling
from shf.optim.solve import (
    FORCED,
    MAX_TIME,
    CgSolver,
    DirectSolver,
    LsmrSolver,
    Stops,
    System,
    Tolerances,
    make_solver,
)
from shf.solvers.lsmr import lsmr
from shf.solvers.merit import MeritRule
from shf.solvers.operator import TimedOperator

TOL = Tolerances(
    atol=1e-14, merit=MeritRule(ftol=1e-7, miniter=0, recover=10, first_check=1, check_growth=1.25)
)


def _system(wc: float = 0.0):  # type: ignore[no-untyped-def]
    net, w, X = tiny_problem((6, 4, 2), 12, seed=3)
    A = net.jacobian(w, X)
    c = [torch.full_like(W, 0.7) for W in w]
    return A, System(A, TimedOperator(A), -A.residual, 0.5, DiagonalScaling(c), w, weight_cost=wc), w


def _normal_residual(A, s: System, d) -> float:  # type: ignore[no-untyped-def]
    """``||(A^T A + wc I + lambda^2 C^-2) d - A^T b + wc w||`` at ``x0 = 0``: Alg. 6's problem's
    normal equations in ``d`` (``d = c y``), zero at its solution."""
    assert s.c is not None
    cinv2 = [1.0 / (t * t) for t in s.c.c]
    gauss_newton = tl.add(A.rmatvec(A.matvec(d)), tl.scale(s.weight_cost, d))
    lhs = tl.add(gauss_newton, tl.scale(s.lam**2, tl.mul(cinv2, d)))
    rhs = tl.sub(A.rmatvec(s.b), tl.scale(s.weight_cost, s.w))
    return float(tl.norm(tl.sub(lhs, rhs)))


def test_lsmr_part_is_the_preconditioned_damped_lsmr_and_both_solvers_solve_alg6s_problem() -> None:
    A, s, w = _system()
    x0 = tl.zeros_like(w)
    got = LsmrSolver(TOL).solve(s, x0, Stops(maxiter=200))
    want, info = lsmr(A, s.b, damp=0.5, x0=x0, precond=s.c.c, atol=1e-14, btol=0.0, conlim=0.0, maxiter=200)
    assert all(torch.equal(a, b) for a, b in zip(got.d, want)) and got.iterations == info.iterations
    assert got.stop == info.stop.value and got.merit_evaluations == 0 and got.merit_of_d is None
    for wc in (0.0, 0.3):  # with B10's weight-cost rows too, LSMR and CG reach the same solution
        A, s, w = _system(wc)
        for solver in (LsmrSolver(TOL), CgSolver(TOL)):
            d = solver.solve(s, tl.zeros_like(w), Stops(maxiter=500)).d
            assert _normal_residual(A, s, d) < 1e-9 * (1.0 + float(tl.norm(A.rmatvec(s.b))))


@pytest.mark.parametrize("solver", [LsmrSolver(TOL), CgSolver(TOL)])
def test_the_forcing_test_and_the_deadline_are_named_stops(solver) -> None:  # type: ignore[no-untyped-def]
    _, s, w = _system()
    r = solver.solve(s, tl.zeros_like(w), Stops(maxiter=50, forcing_bound=1e30))
    assert (r.stop, r.iterations) == (FORCED, 1)
    r = solver.solve(s, tl.zeros_like(w), Stops(maxiter=50, deadline=time.perf_counter() - 1.0))
    assert (r.stop, r.iterations) == (MAX_TIME, 1)
    merit = lambda d: float(tl.norm(tl.sub(d, w)))  # noqa: E731
    r = solver.solve(s, tl.zeros_like(w), Stops(maxiter=30, merit=merit))
    assert r.merit_evaluations > 0 and r.best is not None


def test_make_solver_names_the_choices() -> None:
    assert isinstance(make_solver("cg", TOL), CgSolver) and isinstance(make_solver("lsmr", TOL), LsmrSolver)
    with pytest.raises(ConfigError, match="solver must be one of"):
        make_solver("minres", TOL)


@pytest.mark.parametrize("solver_cls", [LsmrSolver, CgSolver])
def test_lsmr_and_cg_read_one_merit_rule(solver_cls) -> None:  # type: ignore[no-untyped-def]
    # The rule's schedule, not a solver's own constants, decides where the merit is read: the
    # checks at first_check, then at ceil(2 k), capped at maxiter = 6.
    _, s, w = _system()
    history: list[int] = []

    def merit(d) -> float:  # type: ignore[no-untyped-def]
        history.append(len(history))
        return float(tl.norm(tl.sub(d, w)))

    rule = MeritRule(ftol=0.0, miniter=100, recover=100, first_check=2, check_growth=2.0)
    r = solver_cls(Tolerances(atol=0.0, merit=rule)).solve(s, tl.zeros_like(w), Stops(maxiter=6, merit=merit))
    assert r.iterations == 6 and r.merit_evaluations == len(history) == 3  # k = 2, 4, 6
    looser = MeritRule(ftol=0.0, miniter=100, recover=100, first_check=3, check_growth=2.0)
    history.clear()
    r = solver_cls(Tolerances(atol=0.0, merit=looser)).solve(
        s, tl.zeros_like(w), Stops(maxiter=6, merit=merit)
    )
    assert r.iterations == 6 and r.merit_evaluations == len(history) == 2  # k = 3, 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ftol": -1.0}, "ftol must be >= 0"), ({"check_growth": 0.5}, "check_growth must be >= 1"),
     ({"first_check": 0}, "first_check must be an integer >= 1"), ({"miniter": -1}, "miniter must be"),
     ({"recover": 1.5}, "recover must be an integer"), ({"ftol": float("nan")}, "ftol must be a finite")],
)  # fmt: skip
def test_a_bad_merit_rule_is_refused(kwargs, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        MeritRule(**kwargs)


def test_one_stop_reason_type_names_every_outcome_of_either_solver() -> None:
    """SolveStop holds every outcome LSMR and CG can return (their callbacks' stops become
    forcing or max_time), and is a string in the metrics."""
    import json

    from shf.optim.solve import SolveStop
    from shf.solvers.cg import CgStop
    from shf.solvers.lsmr import LsmrStop

    through_callbacks = {"callback", "running"}
    for outcome in [*LsmrStop, *CgStop]:
        if outcome.value not in through_callbacks:
            assert SolveStop(outcome.value) == outcome.value
    assert json.dumps({"solver_stop": SolveStop.FORCING}) == '{"solver_stop": "forcing"}'
    assert f"{SolveStop.MAX_TIME}" == "max_time" and FORCED is SolveStop.FORCING


def _direct_case(wc: float, subset: bool, scaled: bool, warm: bool):  # type: ignore[no-untyped-def]
    """One HF iteration's system of the tiny autoencoder (80 weights), in each of the forms an HF
    iteration builds: B10's weight cost, B7's curvature rows (5 of 12, the gradient of all 12),
    a diagonal preconditioner, a start ``x0`` (the warm start) or 0."""
    net, w, X = tiny_problem((6, 4, 2), 12, seed=3)
    A_all = net.jacobian(w, X)
    A = net.jacobian(w, X[:5]) if subset else A_all
    g = None
    if subset:  # the whole batch's gradient, with B10's wc w
        g = tl.axpy(wc, w, A_all.gradient()) if wc > 0.0 else A_all.gradient()
    gen = torch.Generator().manual_seed(7)
    c_vec = [0.5 + torch.rand(W.shape, generator=gen, dtype=W.dtype) for W in w]
    c = DiagonalScaling(c_vec) if scaled else None
    x0 = [0.1 * torch.randn(W.shape, generator=gen, dtype=W.dtype) for W in w] if warm else tl.zeros_like(w)
    s = System(A, TimedOperator(A), -A.residual, 0.3, c, w, g, wc, subset)
    return A, s, w, x0


def _normal_equations_solution(A, s: System, x0):  # type: ignore[no-untyped-def]
    """The minimiser of the HF iteration's damped problem in ``d``, from its normal equations
    ``(A^T A + wc I + lambda^2 C^-2) d = -g + lambda^2 C^-2 x0`` (``g = -A^T b + wc w``, or the
    whole batch's gradient with B7), formed densely and solved in float64."""
    p = sum(W.numel() for W in s.w)
    eye = torch.eye(p, dtype=torch.float64)
    J = torch.stack([tl.flatten(A.matvec(tl.unflatten(eye[j], s.w))) for j in range(p)], 1)
    cinv2 = 1.0 / tl.flatten(s.c.c) ** 2 if s.c is not None else torch.ones(p, dtype=torch.float64)
    g = tl.flatten(s.g) if s.g is not None else -J.T @ tl.flatten(s.b) + s.weight_cost * tl.flatten(s.w)
    H = J.T @ J + s.weight_cost * eye + s.lam**2 * torch.diag(cinv2)
    return torch.linalg.solve(H, -g + s.lam**2 * cinv2 * tl.flatten(x0)), H


@pytest.mark.parametrize("wc", [0.0, 0.3])
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("warm", [False, True])
def test_the_direct_solve_is_the_minimiser_lsmr_iterates_toward(wc, subset, scaled, warm) -> None:  # type: ignore[no-untyped-def]
    """B20 against the normal equations' solution (a relative 1e-10: the damped Hessian's
    condition number here is at most about 1e3, so float64 round-off of either is below 1e-12),
    and LSMR run to its atol of 1e-14 reaches the same direction (to 1e-7: LSMR's test bounds
    the normal equations' residual, not the error)."""
    A, s, _, x0 = _direct_case(wc, subset, scaled, warm)
    want, H = _normal_equations_solution(A, s, x0)
    assert float(torch.linalg.cond(H)) < 1e4
    r = DirectSolver(TOL).solve(s, x0, Stops(maxiter=1))
    got = tl.flatten(r.d)
    assert float((got - want).norm()) <= 1e-10 * float(want.norm())
    assert (r.stop, r.iterations, r.merit_evaluations, r.merit_of_d) == ("direct", 1, 0, None)
    lsmr_d = tl.flatten(LsmrSolver(TOL).solve(s, x0, Stops(maxiter=2000)).d)
    assert float((lsmr_d - want).norm()) <= 1e-7 * float(want.norm())


class _Matrix:
    """A dense matrix as the operator of a one-tensor weight vector (``[x] -> M x``)."""

    def __init__(self, M: torch.Tensor) -> None:
        self.M = M

    def matvec(self, x):  # type: ignore[no-untyped-def]
        return self.M @ x[0]

    def rmatvec(self, u):  # type: ignore[no-untyped-def]
        return [self.M.T @ u]


def test_the_direct_solve_keeps_the_digits_the_normal_equations_lose() -> None:
    """An undamped, consistent least-squares problem with condition number 1e7: the direct
    solve works on ``A`` itself (QR), so its error is about cond(A) eps = 2e-9 relative (asserted
    below 1e-7); the normal equations' condition number is 1e14, and their Cholesky solution
    is off by about cond(A)^2 eps = 2e-2 (asserted above 1e-5): the test can tell the two apart."""
    g = torch.Generator().manual_seed(0)
    m, p = 40, 8
    U, _ = torch.linalg.qr(torch.randn(m, p, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    M = U @ torch.diag(torch.logspace(0, -7, p, dtype=torch.float64)) @ V.T
    x_true = torch.randn(p, generator=g, dtype=torch.float64)
    op = _Matrix(M)
    w = [torch.zeros(p, dtype=torch.float64)]
    s = System(op, TimedOperator(op), M @ x_true, 0.0, None, w)  # type: ignore[arg-type]
    d = DirectSolver(TOL).solve(s, tl.zeros_like(w), Stops(maxiter=1)).d[0]
    assert float((d - x_true).norm()) <= 1e-7 * float(x_true.norm())
    normal = torch.linalg.solve(M.T @ M, M.T @ (M @ x_true))
    assert float((normal - x_true).norm()) >= 1e-5 * float(x_true.norm())


def test_the_direct_solve_evaluates_the_merit_once_and_refuses_kfac() -> None:
    _, s, _, x0 = _direct_case(0.0, False, True, False)
    seen = []

    def merit(d):  # type: ignore[no-untyped-def]
        seen.append(d)
        return 1.5

    r = DirectSolver(TOL).solve(s, x0, Stops(maxiter=1, merit=merit))
    assert (r.merit_evaluations, r.merit_of_d, len(seen)) == (1, 1.5, 1)
    assert all(torch.equal(a, b) for a, b in zip(seen[0], r.d))
    assert isinstance(make_solver("direct", TOL), DirectSolver)

    class NotDiagonal(DiagonalScaling):
        diagonal = False

    s.c = NotDiagonal(s.c.c)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"kfac preconditioner \(B19\) is LSMR's; with solver 'direct'"):
        DirectSolver(TOL).solve(s, x0, Stops(maxiter=1))


def test_the_direct_solve_repeats_bit_for_bit() -> None:
    """Runs repeat: the same system gives the same direction to the last bit, whatever memory the
    factorisation gets (``torch.linalg.lstsq``'s CPU driver gave 10 different results in 200
    such calls; the QR and triangular solve used give one)."""
    _, s, _, x0 = _direct_case(0.3, True, True, True)
    first = tl.flatten(DirectSolver(TOL).solve(s, x0, Stops(maxiter=1)).d)
    for i in range(50):
        _pad = torch.empty(3 * i + 1, dtype=torch.float64)  # shift the allocations
        assert torch.equal(tl.flatten(DirectSolver(TOL).solve(s, x0, Stops(maxiter=1)).d), first)


def test_the_direct_solve_of_a_non_finite_matrix_is_a_non_finite_direction_not_an_error() -> None:
    """A Jacobian that overflows where the residual does not (NIST's Rat43 with a small ``b4``:
    ``(1 + e^(b2 - b3 x))^(1/b4)``) made the QR's SVD fallback raise from inside the step; the
    direction is now NaN, which the HF iteration rejects (``lambda`` grows) like any other."""
    from shf.optim.solve import _qr_solve

    M = torch.eye(3, dtype=torch.float64)
    M[1, 2] = float("inf")
    y = _qr_solve(M, torch.ones(3, dtype=torch.float64))
    assert y.shape == (3,) and bool(torch.isnan(y).all())
    assert torch.equal(_qr_solve(torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)),
                       torch.ones(2, dtype=torch.float64))  # fmt: skip
