"""The objective part (shf.optim.objective): f = L + c/2 ||w||^2 (B10), float64."""

from __future__ import annotations

import pytest
import torch

from reference import tiny_problem
from shf import tensorlist as tl
from shf.optim.objective import Objective, QuadraticModel


@pytest.mark.parametrize("c", [0.0, 0.3])
def test_value_gradient_and_curvature_of_the_loss_with_a_weight_cost(c: float) -> None:
    net, w, X = tiny_problem((6, 4, 2), 10, seed=1)
    A = net.jacobian(w, X)
    f = Objective(c).at(net, A, w, X, None)
    assert f.f0 == pytest.approx(A.loss + 0.5 * c * tl.dot(w, w), rel=1e-14)
    assert f(w) == pytest.approx(f.f0, rel=1e-12)
    g = torch.Generator().manual_seed(2)
    d = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in w]
    # central differences of f along d: error O(eps^2 f''') ~ 1e-10 at eps = 1e-5, round-off
    # ~1e-16 f / eps ~ 1e-11; a missing c w in the gradient is an error of c w.d ~ 0.1
    eps = 1e-5
    fd = (f(tl.axpy(eps, d, w)) - f(tl.axpy(-eps, d, w))) / (2 * eps)
    assert tl.dot(f.gradient(), d) == pytest.approx(fd, rel=1e-7, abs=1e-9)
    assert f.gradient() is f.gradient()  # computed once
    gn = A.range_norm(A.matvec(d)) ** 2
    assert f.curvature(d, gn) == pytest.approx(gn + c * tl.dot(d, d), rel=1e-14)
    # the undamped model along d: q(d) = 1/2 d^T (A^T A + c I) d + g^T d, from its terms computed here
    slope, curv, change = QuadraticModel(f, A).along(d)
    assert (slope, curv) == pytest.approx((tl.dot(f.gradient(), d), gn + c * tl.dot(d, d)), rel=1e-12)
    assert change == pytest.approx(0.5 * curv + slope, rel=1e-14)
