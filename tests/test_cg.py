"""Conjugate gradient with Martens' stopping rule and iterate storage."""

from __future__ import annotations

import math

import pytest
import torch

from shf import tensorlist as tl
from shf.solvers.cg import CgStop, cg, storage_schedule


def _spd(n=30, cond=1e3, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    ev = torch.logspace(0, math.log10(cond), n, dtype=torch.float64)
    B = Q @ torch.diag(ev) @ Q.T
    return B, torch.randn(n, generator=g, dtype=torch.float64)


def test_cg_matches_direct_solve():
    B, b = _spd()
    x, info = cg(lambda v: B @ v, b, maxiter=200, tol=0.0, rtol=1e-12)
    # Exact arithmetic needs n = 30 steps; with cond 1e3 and rtol 1e-12 the error bound
    # is cond * rtol = 1e-9 relative.
    torch.testing.assert_close(x, torch.linalg.solve(B, b), rtol=1e-8, atol=0)
    assert info.stop is CgStop.RESIDUAL_ZERO
    assert info.residual_norm <= 1e-12 * float(b.norm()) * 1.01


def test_preconditioned_and_warm_started_cg_matches_direct_solve():
    B, b = _spd(seed=1)
    M = torch.diag(B).clone()
    x0 = torch.ones_like(b)
    x, info = cg(lambda v: B @ v, b, x0=x0, precond=M.rsqrt(), maxiter=200, tol=0.0, rtol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(B, b), rtol=1e-8, atol=0)
    # phi is the quadratic 1/2 x^T B x - b^T x at every iterate and decreases monotonically.
    assert info.phi[0] == pytest.approx(float(0.5 * x0 @ B @ x0 - b @ x0), rel=1e-12)
    assert all(b2 <= a + 1e-12 * abs(a) for a, b2 in zip(info.phi, info.phi[1:]))


def test_lists_of_tensors():
    B, b = _spd(12, seed=2)
    shapes = [torch.zeros(3, 2, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)]

    def Bv(v):
        return tl.unflatten(B @ tl.flatten(v), shapes)

    x, _ = cg(Bv, tl.unflatten(b, shapes), maxiter=50, tol=0.0, rtol=1e-12)
    torch.testing.assert_close(tl.flatten(x), torch.linalg.solve(B, b), rtol=1e-8, atol=0)


def test_storage_schedule_and_stored_iterates():
    assert storage_schedule(40) == [5, 7, 9, 11, 15, 19, 25, 32]
    B, b = _spd(60, cond=1e6, seed=3)
    seen = {}
    _, info = cg(
        lambda v: B @ v, b, maxiter=40, tol=0.0, callback=lambda i, x, phi: seen.update({i: x.clone()})
    )
    assert [i for i, _ in info.stored] == [5, 7, 9, 11, 15, 19, 25, 32, 40]
    for i, x in info.stored:
        assert torch.equal(x, seen[i])
    assert info.stop is CgStop.MAXITER and info.iterations == 40


def test_martens_progress_rule_on_constructed_case():
    """A well-conditioned system: phi converges, its relative progress decays, and the rule
    must fire exactly when (phi_i - phi_{i-k})/phi_i < k tol first holds, k = max(10, ceil(0.1 i))."""
    B, b = _spd(200, cond=1e3, seed=4)
    tol = 5e-4
    _, info = cg(lambda v: B @ v, b, maxiter=200, tol=tol)
    assert info.stop is CgStop.PROGRESS
    phi = info.phi

    def rule(i):
        k = max(10, math.ceil(0.1 * i))
        return i > k and phi[i] < 0 and (phi[i] - phi[i - k]) / phi[i] < k * tol

    assert rule(info.iterations)
    assert not any(rule(i) for i in range(1, info.iterations))


def test_negative_curvature_and_bad_input():
    B = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    x, info = cg(lambda v: B @ v, torch.tensor([0.0, 1.0], dtype=torch.float64), maxiter=5, tol=0.0)
    assert info.stop is CgStop.NEGATIVE_CURVATURE and info.iterations == 0
    assert torch.equal(x, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="maxiter must be >= 1"):
        cg(lambda v: v, torch.ones(2), maxiter=0)
    with pytest.raises(ValueError, match="positive entries"):
        cg(lambda v: v, torch.ones(2), precond=torch.tensor([1.0, 0.0]))


def test_not_finite_product_stops():
    _, info = cg(lambda v: v * math.nan, torch.ones(3, dtype=torch.float64), maxiter=5)
    assert info.stop is CgStop.NOT_FINITE


def test_zero_rhs():
    x, info = cg(lambda v: v, torch.zeros(3, dtype=torch.float64))
    assert info.stop is CgStop.RESIDUAL_ZERO and float(x.abs().sum()) == 0.0


def test_precond_means_a_column_scaling_as_in_lsmr() -> None:
    """precond = c solves in y = x / c: CG on diag(c) B diag(c) with rhs c ∘ b, then x = c ∘ y,
    iterate by iterate (float64 round-off)."""
    B, b = _spd(seed=4)
    c = torch.linspace(0.5, 2.0, b.shape[0], dtype=torch.float64)
    C = torch.diag(c)
    seen: dict[int, torch.Tensor] = {}
    cg(
        lambda v: B @ v,
        b,
        precond=c,
        maxiter=8,
        tol=0.0,
        callback=lambda i, x, info: seen.update({i: x.clone()}),
    )
    scaled: dict[int, torch.Tensor] = {}
    cg(
        lambda v: C @ B @ C @ v,
        c * b,
        maxiter=8,
        tol=0.0,
        callback=lambda i, y, info: scaled.update({i: c * y}),
    )
    for i in range(1, 9):
        torch.testing.assert_close(seen[i], scaled[i], rtol=1e-10, atol=1e-12)


def test_cg_takes_the_operator_type_lsmr_takes() -> None:
    from shf.solvers.operator import DenseOperator

    B, b = _spd(seed=5)
    x, _ = cg(DenseOperator(B), b, maxiter=200, tol=0.0, rtol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(B, b), rtol=1e-8, atol=0)
    with pytest.raises(TypeError, match="matvec"):
        cg(3, b)


def test_cg_stops_cleanly_when_the_residual_underflows() -> None:
    """r^T M^-1 r = 0 after a step (float32 underflow) must stop CG, not divide by it."""
    B = torch.diag(torch.tensor([1.0, 1.0], dtype=torch.float32))
    b = torch.tensor([1e-30, 0.0], dtype=torch.float32)  # r^T r = 1e-60 underflows to 0 in float32
    x, info = cg(lambda v: B @ v, b, maxiter=5, tol=0.0)
    assert info.stop is CgStop.RESIDUAL_ZERO and torch.isfinite(x).all()


def test_a_non_finite_preconditioner_is_refused() -> None:
    """An infinite entry passed the positivity test and turned CG's iterates into NaN."""
    with pytest.raises(ValueError, match="precond must have only positive entries, and finite ones"):
        cg(lambda v: v, torch.ones(2), precond=torch.tensor([1.0, math.inf]))
    with pytest.raises(ValueError, match="and finite ones"):
        cg(lambda v: v, [torch.ones(2)], precond=[torch.tensor([1.0, math.nan])])
