"""Chapelle-Erhan's estimator against the exact diagonal of the Gauss-Newton matrix."""

from __future__ import annotations

import pytest
import torch

from reference import dense_jacobian, tiny_problem
from shf import tensorlist as tl
from shf.curvature.mlp import AutoencoderJacobian
from shf.errors import ConfigError
from shf.optim import precond


def test_chapelle_erhan_estimate_is_unbiased():
    """Mean of the estimate over M draws -> diag(J^T J), within 6 standard errors per entry.

    Each entry is a sum of squares of Rademacher combinations; its sample standard
    deviation s over M draws gives a standard error s/sqrt(M). With ~100 entries a
    6-sigma deviation happens with probability < 1e-7, while a wrong estimator (e.g.
    a missing square or a wrong 1/n) is off by O(1) relative and fails.
    """
    net, w, X = tiny_problem((6, 4, 2), 8, seed=7)
    A = AutoencoderJacobian(net, w, X)
    exact = (dense_jacobian(net, w, X) ** 2).sum(dim=0)  # diag(G) = column norms^2
    g = torch.Generator().manual_seed(0)
    M = 4000
    draws = torch.stack([tl.flatten(precond.chapelle_erhan_estimate(A, g)) for _ in range(M)])
    mean, std = draws.mean(0), draws.std(0)
    bound = 6 * std / M**0.5 + 1e-12
    assert torch.all((mean - exact).abs() <= bound), float(((mean - exact).abs() / bound).max())
    # The estimator is not trivially exact: single draws do differ from the mean.
    assert float(std.max()) > 1e-3 * float(exact.max())


def test_chapelle_erhan_inverse_form():
    net, w, X = tiny_problem((6, 4, 2), 8, seed=7)
    A = AutoencoderJacobian(net, w, X)
    est = precond.chapelle_erhan_estimate(A, torch.Generator().manual_seed(3))
    c = precond.chapelle_erhan(A, torch.Generator().manual_seed(3))
    for ci, ei in zip(c, est):
        torch.testing.assert_close(ci, 1.0 / (1.0 + ei.sqrt()), rtol=1e-14, atol=0)
        assert bool((ci > 0).all()) and bool((ci <= 1).all())


def test_martens_fisher_formula():
    net, w, X = tiny_problem((6, 4, 2), 8, seed=8)
    A = AutoencoderJacobian(net, w, X)
    _, sumsq = A.per_example_gradient_stats()
    c = precond.martens_fisher(A, lam=0.5)
    for ci, s in zip(c, sumsq):
        torch.testing.assert_close(ci, (s / 8 + 0.25 + 1e-12) ** (-0.375), rtol=1e-12, atol=0)


def test_compute_dispatch_and_errors():
    net, w, X = tiny_problem((6, 4, 2), 8)
    A = AutoencoderJacobian(net, w, X)
    assert precond.compute("none", A, 1.0) is None
    assert len(precond.compute("martens", A, 1.0) or []) == len(w)
    with pytest.raises(ConfigError, match="unknown preconditioner 'jacobi'"):
        precond.compute("jacobi", A, 1.0)


def test_preconditioned_lsmr_solves_the_scaled_damped_problem():
    """On the network operator, LSMR with precond c returns d = c ∘ y where y solves
    min ||A diag(c) y - b||^2 + lambda^2 ||y||^2 — the same problem plain LSMR solves
    on the explicitly column-scaled operator (NOTES item 2)."""
    from shf.solvers.lsmr import lsmr
    from shf.solvers.operator import ColumnScaled

    net, w, X = tiny_problem((6, 4, 2), 8, seed=9)
    A = AutoencoderJacobian(net, w, X)
    c = precond.chapelle_erhan(A, torch.Generator().manual_seed(1))
    b = -A.residual
    lam = 0.3
    d, _ = lsmr(A, b, damp=lam, precond=c, atol=1e-14, btol=1e-14, maxiter=500)
    y, _ = lsmr(ColumnScaled(A, c), b, damp=lam, atol=1e-14, btol=1e-14, maxiter=500)
    # Both solve a well-conditioned (damped) problem to ~1e-14: agreement to 1e-9 relative.
    torch.testing.assert_close(tl.flatten(d), tl.flatten(tl.mul(c, y)), rtol=1e-9, atol=1e-12)
    # Dense check: normal equations of the scaled problem, (C J^T J C + lam^2 I) y = C J^T b.
    J = dense_jacobian(net, w, X)
    C = torch.diag(tl.flatten(c))
    JC = J @ C
    eye = torch.eye(JC.shape[1], dtype=J.dtype)
    y_ref = torch.linalg.solve(JC.T @ JC + lam**2 * eye, JC.T @ b.reshape(-1))
    torch.testing.assert_close(tl.flatten(d), C @ y_ref, rtol=1e-8, atol=1e-12)
    # ... which differs from the unpreconditioned damped solution (the damping acts on y).
    x_plain = torch.linalg.solve(J.T @ J + lam**2 * torch.eye(J.shape[1], dtype=J.dtype), J.T @ b.reshape(-1))
    assert float((x_plain - tl.flatten(d)).norm()) > 1e-3 * float(x_plain.norm())


def test_column_norms_are_exact_for_one_residual_per_example():
    # the bottleneck network (6 -> 4 -> 1) reconstructs one value per example (its targets Y):
    # with one range entry per example, (a_i^T u_i)^2 = a_i^2 for any sign, so every draw is exact
    from shf.curvature.mlp import MLPJacobian

    class Spec:
        sizes = (6, 4, 1)
        activations = ("logistic", "logistic")
        loss_name = "squared"

        def weight_shapes(self):
            return [(7, 4), (5, 1)]

    g = torch.Generator().manual_seed(2)
    w = [torch.randn(s, generator=g, dtype=torch.float64) for s in Spec().weight_shapes()]
    X = torch.rand(9, 6, generator=g, dtype=torch.float64)
    Y = torch.rand(9, 1, generator=g, dtype=torch.float64)
    A = MLPJacobian(Spec(), w, X, Y)
    J = torch.stack([tl.flatten(A.rmatvec(e.reshape(9, 1))) for e in torch.eye(9, dtype=torch.float64)])
    exact = J.norm(dim=0)  # ||A_:j||, A's rows one per example
    for seed in range(3):
        got = tl.flatten(precond.column_norms(A, torch.Generator().manual_seed(seed)))
        torch.testing.assert_close(got, exact, rtol=1e-12, atol=1e-15)


def _c(part: precond.Scaling, A, lam: float, gen: torch.Generator) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """The part's diagonal scaling's ``c``."""
    P = part(A, lam, gen)
    assert P is not None and P.diagonal
    return P.c


def test_minpack_scaling_keeps_the_largest_column_norm_so_far():
    net, w, X = tiny_problem((6, 4, 2), 8, seed=7)
    s = precond.Scaling("column-norms")
    g = torch.Generator().manual_seed(0)
    first = tl.flatten(precond.column_norms(AutoencoderJacobian(net, w, X), torch.Generator().manual_seed(0)))
    c1 = tl.flatten(_c(s, AutoencoderJacobian(net, w, X), 1.0, g))
    torch.testing.assert_close(c1, 1.0 / first, rtol=1e-14, atol=0)
    # at smaller weights the columns shrink somewhere: D keeps the larger norms of the first iteration
    w2 = [0.3 * W for W in w]
    A2 = AutoencoderJacobian(net, w2, X)
    second = tl.flatten(precond.column_norms(A2, torch.Generator().manual_seed(1)))
    c2 = tl.flatten(_c(s, AutoencoderJacobian(net, w2, X), 1.0, torch.Generator().manual_seed(1)))
    assert bool((second < first).any())
    torch.testing.assert_close(c2, 1.0 / torch.maximum(first, second), rtol=1e-14, atol=0)
    # the state round-trips; a zero column counts as 1
    t = precond.Scaling("column-norms")
    t.load_state_dict(s.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(t.D or [], s.D or []))
    z = precond.Scaling("column-norms")
    zero = [torch.zeros_like(W) for W in w]  # the first layer's columns are then all zero
    A0 = AutoencoderJacobian(net, zero, X)
    norms = tl.flatten(precond.column_norms(A0, torch.Generator().manual_seed(4)))
    cz = tl.flatten(_c(z, AutoencoderJacobian(net, zero, X), 1.0, torch.Generator().manual_seed(4)))
    assert bool((norms == 0).any()) and bool((norms > 0).any())
    assert torch.equal(cz[norms == 0], torch.ones_like(cz[norms == 0]))
    torch.testing.assert_close(cz[norms > 0], 1.0 / norms[norms > 0], rtol=1e-14, atol=0)
    assert precond.Scaling("chapelle-erhan").state_dict() == {"column_norms": None}
    with pytest.raises(ConfigError, match="unknown preconditioner"):
        precond.Scaling("jacobi")
