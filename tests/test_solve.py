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
from shf.optim.solve import FORCED, MAX_TIME, CgSolver, LsmrSolver, Stops, System, Tolerances, make_solver
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
    with pytest.raises(ConfigError, match="solver must be 'lsmr' or 'cg'"):
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
