"""Cross-entropy objective (Martens 2010): gradient and Gauss-Newton products vs autograd."""

from __future__ import annotations

import pytest
import torch

from reference import cross_entropy_fn, random_like, tiny_problem
from shf import tensorlist as tl
from shf.curvature.mlp import AutoencoderJacobian
from shf.errors import ConfigError
from shf.models.autoencoder import Autoencoder


def _ce_problem(seed=0, linear_code=False):
    net, w, X = tiny_problem((6, 4, 2), 7, linear_code=linear_code, seed=seed)
    return Autoencoder(net.encoder, linear_code=linear_code, loss_name="cross_entropy"), w, X


@pytest.mark.parametrize("linear_code", [False, True])
def test_ce_loss_and_gradient_match_autograd(linear_code):
    net, w, X = _ce_problem(1, linear_code)
    f, _ = cross_entropy_fn(net, X)
    wr = [W.clone().requires_grad_(True) for W in w]
    val = f(*wr)
    grads = torch.autograd.grad(val, wr)
    A = AutoencoderJacobian(net, w, X)
    assert A.loss == pytest.approx(float(val.detach()), rel=1e-13)
    assert net.loss(w, X) == pytest.approx(float(val.detach()), rel=1e-13)
    for g, ref in zip(A.gradient(), grads):
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-14)
    # A^T R equals the gradient too (no output unit is saturated here).
    for g, ref in zip(A.rmatvec(A.residual), grads):
        torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-13)


def test_ce_gauss_newton_product():
    """A^T A v = J_z^T diag(s(1-s)) J_z v / n, the GGN of cross-entropy on logistic outputs."""
    net, w, X = _ce_problem(2)
    _, logits = cross_entropy_fn(net, X)
    v = random_like(w, 3)
    Z, Jv = torch.func.jvp(logits, tuple(w), tuple(v))
    S = torch.sigmoid(Z)
    _, vjp = torch.func.vjp(logits, *w)
    ref = vjp(S * (1 - S) * Jv / X.shape[0])
    A = AutoencoderJacobian(net, w, X)
    GV = A.rmatvec(A.matvec(v))
    for a, b in zip(GV, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    # dot test still holds
    U = torch.randn(X.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    lhs, rhs = tl.dot(A.matvec(v), U), tl.dot(v, A.rmatvec(U))
    assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + abs(rhs))


def test_ce_per_example_stats_match_loop():
    net, w, X = _ce_problem(5)
    grad, sumsq = AutoencoderJacobian(net, w, X).per_example_gradient_stats()
    f, _ = cross_entropy_fn(net, X)
    sq = [torch.zeros_like(W) for W in w]
    for i in range(X.shape[0]):
        fi, _ = cross_entropy_fn(net, X[i : i + 1])
        wr = [W.clone().requires_grad_(True) for W in w]
        gi = torch.autograd.grad(fi(*wr), wr)
        for a, g in zip(sq, gi):
            a += g * g
    wr = [W.clone().requires_grad_(True) for W in w]
    full = torch.autograd.grad(f(*wr), wr)
    for a, b in zip(grad, full):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    for a, b in zip(sumsq, sq):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_unknown_loss():
    with pytest.raises(ConfigError, match="loss must be one of"):
        Autoencoder((6, 2), loss_name="hinge")
