"""LSMR's right preconditioner as one interface (shf.optim.scaling), in float64: the diagonal
scaling's products, and LSMR's generic path (``d = P z``, B19's) with ``P = diag(c)`` against
Alg. 6's own column scaling, iterate for iterate."""

from __future__ import annotations

import pytest
import torch

from reference import random_like, tiny_problem
from shf import tensorlist as tl
from shf.errors import ConfigError
from shf.optim import precond as pc
from shf.optim.scaling import DiagonalScaling, diagonal
from shf.optim.solve import CgSolver, LsmrSolver, Stops, System, Tolerances
from shf.optim.stops import GradientForcing
from shf.solvers.merit import MeritRule
from shf.solvers.operator import TimedOperator

TOL = Tolerances(
    atol=1e-14, merit=MeritRule(ftol=1e-7, miniter=0, recover=10, first_check=1, check_growth=1.25)
)
LAM = 0.4


def _problem():  # type: ignore[no-untyped-def]
    net, w, X = tiny_problem((6, 5, 3), 20, seed=3)
    A = net.jacobian(w, X)
    return A, w, pc.chapelle_erhan(A, torch.Generator().manual_seed(0))


def test_the_diagonal_scaling_is_diag_c_and_its_own_adjoint_and_inverse() -> None:
    _, w, c = _problem()
    P = DiagonalScaling(c)
    z, v = random_like(w, 1), random_like(w, 2)
    assert P.diagonal and P.c is c and diagonal(None) is None
    assert all(torch.equal(a, ci * zi) for a, ci, zi in zip(P.apply(z), c, z))
    # adjoint: <P z, v> = <z, P^T v> (to rounding, |.| about 1 for these sizes)
    assert abs(tl.dot(P.apply(z), v) - tl.dot(z, P.apply_t(v))) <= 1e-12
    torch.testing.assert_close(P.inverse(P.apply(z)), z, rtol=1e-14, atol=0.0)
    assert P.finite()
    c_bad = [t.clone() for t in c]
    c_bad[1][0, 0] = float("nan")
    assert not DiagonalScaling(c_bad).finite()


@pytest.mark.parametrize(("subset", "wc"), [(False, 0.0), (False, 0.05), (True, 0.0), (True, 0.05)])
def test_lsmr_s_generic_path_with_diag_c_gives_alg6_s_iterates(subset: bool, wc: float) -> None:
    # In exact arithmetic LSMR on [A C; (D/c) C] z from z0 = x0 / c (the generic path) and on
    # [A C; D] y from y0 = x0 / c (Alg. 6's column scaling, B7's stacked block) are the same
    # problem with the same start, so every iterate agrees; float64 rounding over 6 iterations
    # stays far below 1e-9 of the direction's norm.
    A, w, c = _problem()
    x0 = tl.scale(0.1, random_like(w, 5))
    g = tl.axpy(wc, w, tl.add(A.gradient(), tl.scale(0.3, random_like(w, 6)))) if subset else None
    s = System(A, TimedOperator(A), -A.residual, LAM, DiagonalScaling(c), w, g, wc, subset)
    for k in (1, 3, 6):
        want = LsmrSolver(TOL).solve(s, x0, Stops(maxiter=k))
        got = LsmrSolver(TOL).kronecker(s, DiagonalScaling(c), x0, Stops(maxiter=k))
        assert got.iterations == want.iterations == k
        scale = float(tl.norm(want.d))
        assert float(tl.norm(tl.sub(got.d, want.d))) <= 1e-9 * scale
    # and not by accident: another c gives another iterate
    other = LsmrSolver(TOL).kronecker(s, DiagonalScaling(tl.scale(2.0, c)), x0, Stops(maxiter=3))
    want = LsmrSolver(TOL).solve(s, x0, Stops(maxiter=3))
    assert float(tl.norm(tl.sub(other.d, want.d))) > 1e-3 * float(tl.norm(want.d))


def test_the_forcing_bound_reads_p_transpose_g() -> None:
    _, w, c = _problem()
    g = random_like(w, 3)
    bound = GradientForcing(0.5, 0.5).bound(lambda: g, DiagonalScaling(c))
    assert bound == pytest.approx(0.5 * float(tl.norm(tl.mul(c, g))), rel=1e-12)


def test_cg_refuses_a_scaling_that_is_not_diagonal() -> None:
    A, w, c = _problem()

    class NotDiagonal(DiagonalScaling):
        diagonal = False

    s = System(A, TimedOperator(A), -A.residual, LAM, NotDiagonal(c), w)
    with pytest.raises(ConfigError, match="kfac"):
        CgSolver(TOL).solve(s, tl.zeros_like(w), Stops(maxiter=3))
