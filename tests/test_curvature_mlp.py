"""Alg. 4 and 5 against autodiff and a dense Jacobian, in float64."""

from __future__ import annotations

import pytest
import torch

from reference import dense_jacobian, random_like, residual_fn, tiny_problem
from shf import tensorlist as tl
from shf.curvature.mlp import AutoencoderJacobian

# Products of a few small matrices in float64: agreement to ~1e-13 relative is what
# rounding allows; 1e-10 leaves room for accumulation order while still catching any
# wrong index, missing S' factor or transposed bias row (those give O(1) errors).
RTOL = 1e-10

CASES = [
    ((5, 3), 4, False),
    ((6, 4, 2), 5, False),
    ((6, 4, 2), 5, True),
    ((7, 5, 4, 3), 3, False),
    ((7, 5, 4, 3), 3, True),
]


@pytest.mark.parametrize(("encoder", "n", "linear_code"), CASES)
def test_forward_mode_matches_jvp_and_dense(encoder, n, linear_code):
    net, w, X = tiny_problem(encoder, n, linear_code=linear_code)
    A = AutoencoderJacobian(net, w, X)
    d = random_like(w, 1)
    Ad = A.matvec(d)
    _, jvp = torch.func.jvp(residual_fn(net, X), tuple(w), tuple(d))
    torch.testing.assert_close(Ad, jvp, rtol=RTOL, atol=0)
    J = dense_jacobian(net, w, X)
    torch.testing.assert_close(Ad.reshape(-1), J @ tl.flatten(d), rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize(("encoder", "n", "linear_code"), CASES)
def test_reverse_mode_matches_vjp_and_dense(encoder, n, linear_code):
    net, w, X = tiny_problem(encoder, n, linear_code=linear_code)
    A = AutoencoderJacobian(net, w, X)
    U = torch.randn(X.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    AtU = A.rmatvec(U)
    _, vjp_fn = torch.func.vjp(residual_fn(net, X), *w)
    for mine, ref in zip(AtU, vjp_fn(U)):
        torch.testing.assert_close(mine, ref, rtol=RTOL, atol=1e-14)
    J = dense_jacobian(net, w, X)
    torch.testing.assert_close(tl.flatten(AtU), J.T @ U.reshape(-1), rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize(("encoder", "n", "linear_code"), CASES)
def test_dot_test(encoder, n, linear_code):
    """Adjoint test <A d, U> = <d, A^T U> to rounding (relative 1e-12)."""
    net, w, X = tiny_problem(encoder, n, linear_code=linear_code, seed=3)
    A = AutoencoderJacobian(net, w, X)
    for s in range(3):
        d = random_like(w, 10 + s)
        U = torch.randn(X.shape, generator=torch.Generator().manual_seed(20 + s), dtype=torch.float64)
        lhs = tl.dot(A.matvec(d), U)
        rhs = tl.dot(d, A.rmatvec(U))
        assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + abs(rhs))


@pytest.mark.parametrize(("encoder", "n", "linear_code"), CASES)
def test_gradient_is_minus_At_b_and_matches_autograd(encoder, n, linear_code):
    net, w, X = tiny_problem(encoder, n, linear_code=linear_code, seed=4)
    A = AutoencoderJacobian(net, w, X)
    b = -A.residual
    At_b = A.rmatvec(b)
    wr = [W.clone().requires_grad_(True) for W in w]
    f = 0.5 * (residual_fn(net, X)(*wr) ** 2).sum()
    grads = torch.autograd.grad(f, wr)
    assert abs(float(f.detach()) - A.loss) <= 1e-14 * abs(A.loss)
    for mine, ref, g in zip(At_b, grads, A.gradient()):
        torch.testing.assert_close(-mine, ref, rtol=RTOL, atol=1e-14)
        torch.testing.assert_close(g, ref, rtol=RTOL, atol=1e-14)


def test_per_example_gradient_stats_match_loop():
    """Batched sum_i (grad f_i)^2 and grad f_S equal a per-example autograd loop."""
    net, w, X = tiny_problem((6, 4, 2), 7, seed=5)
    A = AutoencoderJacobian(net, w, X)
    grad, sumsq = A.per_example_gradient_stats()
    loop_sum = [torch.zeros_like(W) for W in w]
    loop_sq = [torch.zeros_like(W) for W in w]
    for i in range(X.shape[0]):
        wr = [W.clone().requires_grad_(True) for W in w]
        xi = X[i : i + 1]
        fi = 0.5 * ((residual_fn(net, xi)(*wr)) ** 2).sum()  # n=1: R = r_i
        gi = torch.autograd.grad(fi, wr)
        for a, b, g in zip(loop_sum, loop_sq, gi):
            a += g
            b += g * g
    for mine, ref in zip(grad, loop_sum):
        torch.testing.assert_close(mine, ref / X.shape[0], rtol=RTOL, atol=1e-14)
    for mine, ref in zip(sumsq, loop_sq):
        torch.testing.assert_close(mine, ref, rtol=RTOL, atol=1e-14)


def test_shape_errors():
    net, w, X = tiny_problem((6, 4, 2), 5)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 6\)"):
        AutoencoderJacobian(net, w, X[:, :5])
    with pytest.raises(ValueError, match="W_2 must have shape"):
        AutoencoderJacobian(net, [w[0], w[1][:-1], *w[2:]], X)


@pytest.mark.parametrize(("encoder", "n", "linear_code"), CASES)
def test_products_return_new_tensors_despite_the_workspace(encoder, n, linear_code):
    """The products reuse buffers for the hidden F_l, but what they return is the caller's:
    earlier results survive later products bit for bit, and nothing aliases the cache."""
    net, w, X = tiny_problem(encoder, n, linear_code=linear_code)
    A = AutoencoderJacobian(net, w, X)
    d1, d2 = random_like(w, 1), random_like(w, 2)
    U1 = torch.randn(X.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    U2 = torch.randn(X.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a1, r1 = A.matvec(d1), A.rmatvec(U1)
    a1_copy, r1_copy = a1.clone(), [t.clone() for t in r1]
    a2, r2 = A.matvec(d2), A.rmatvec(U2)
    torch.testing.assert_close(a1, a1_copy, rtol=0, atol=0)
    for t, c in zip(r1, r1_copy):
        torch.testing.assert_close(t, c, rtol=0, atol=0)
    cached = [*A.S, *A.Sp, A.residual, *A._workspace()]
    for t in [a1, a2, *r1, *r2]:
        assert all(t.untyped_storage().data_ptr() != c.untyped_storage().data_ptr() for c in cached)
    # A fresh operator gives the same second products (the workspace carries no state).
    B = AutoencoderJacobian(net, w, X)
    torch.testing.assert_close(B.matvec(d2), a2, rtol=0, atol=0)
    for t, c in zip(B.rmatvec(U2), r2):
        torch.testing.assert_close(t, c, rtol=0, atol=0)
