"""Alg. 2 on hand-computed cases and the growth rule of Alg. 1."""

from __future__ import annotations

import math

import pytest
import torch

from reference import tiny_problem
from shf.curvature.mlp import AutoencoderJacobian
from shf.errors import ConfigError
from shf.optim.batchsize import BatchPolicy, BatchSchedule, batch_cap, predict_batch_size


def test_alg2_hand_computed():
    # Two scalar "per-example gradients" per entry, n = 2:
    # entry 1: g_i = 1, 3 -> mean 2, mean of squares 5, sample var 2/1 * (5 - 4) = 2
    # entry 2: g_i = 0, 2 -> mean 1, mean of squares 2, sample var 2 * (2 - 1) = 2
    # ||Var||_1 = 4, ||grad||^2 = 4 + 1 = 5, N = 10, theta = 0.5:
    # n_hat = ceil(10 * 4 / (4 + 0.25 * 9 * 5)) = ceil(40 / 15.25) = ceil(2.62...) = 3
    grad = [torch.tensor([[2.0, 1.0]], dtype=torch.float64)]
    sumsq = [torch.tensor([[10.0, 4.0]], dtype=torch.float64)]
    st = predict_batch_size(grad, sumsq, n=2, N=10, theta=0.5)
    assert st.var_l1 == pytest.approx(4.0, rel=1e-15)
    assert st.grad_norm_sq == pytest.approx(5.0, rel=1e-15)
    assert st.n_hat == 3


def test_alg2_satisfies_eq14_minimally():
    """n_hat is the smallest size for which eq. (14) holds (squared norm, NOTES 6)."""
    g = torch.Generator().manual_seed(0)
    grad = [torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.1]
    sumsq = [grad[0] ** 2 * 50 + torch.rand(3, 4, generator=g, dtype=torch.float64)]
    n, N, theta = 50, 5000, 0.3
    st = predict_batch_size(grad, sumsq, n, N, theta)

    def eq14(m: int) -> bool:
        return st.var_l1 / m * (N - m) / (N - 1) <= theta**2 * st.grad_norm_sq

    assert eq14(st.n_hat)
    assert not eq14(st.n_hat - 1)


def test_batched_variance_equals_per_example_loop():
    net, w, X = tiny_problem((6, 4, 2), 9, seed=1)
    A = AutoencoderJacobian(net, w, X)
    grad, sumsq = A.per_example_gradient_stats()
    st = predict_batch_size(grad, sumsq, n=9, N=100, theta=0.2)
    # Per-example loop: each example's gradient separately, then the sample variance.
    per = []
    for i in range(9):
        gi, _ = AutoencoderJacobian(net, w, X[i : i + 1]).per_example_gradient_stats()
        per.append(torch.cat([t.reshape(-1) for t in gi]))
    G = torch.stack(per)
    var_l1 = float(G.var(dim=0, unbiased=True).sum())
    assert st.var_l1 == pytest.approx(var_l1, rel=1e-10)
    assert st.grad_norm_sq == pytest.approx(float((G.mean(0) ** 2).sum()), rel=1e-12)


def test_alg2_errors():
    with pytest.raises(ConfigError, match="n >= 2"):
        predict_batch_size([torch.zeros(1)], [torch.zeros(1)], n=1, N=10, theta=0.5)


def test_schedule_rules():
    s = BatchSchedule(n=100, maxiter=50, n_max=1000)
    # i = 1..5: no change, whatever the predictions.
    for f in [1.0, 0.9, 0.8, 0.7, 0.6]:
        assert s.update(f, 5000)[:2] == (100, 50)
    # i = 6: n_avg = 5000 > n -> min(5000, n_max) = 1000; maxiter scales by 10.
    n, maxiter, r_rel = s.update(0.5, 5000)
    assert (n, maxiter) == (1000, 500)
    assert r_rel == pytest.approx((1.0 - 0.5) / 0.5)


def test_schedule_growth_on_stall():
    s = BatchSchedule(n=200, maxiter=150, n_max=250)
    for _ in range(5):
        s.update(1.0, 10)
    # Stalled validation (r_rel = 0 < 0.005) and n_avg = 10 <= n: grow by 1.005.
    n, maxiter, r_rel = s.update(1.0, 10)
    assert r_rel == 0.0
    assert n == math.ceil(1.005 * 200) == 201
    assert maxiter == math.ceil(201 / 200 * 150)
    # Progressing validation: keep n.
    n2, _, _ = s.update(0.5, 10)
    assert n2 == 201


def test_schedule_caps_at_nmax_and_validates():
    s = BatchSchedule(n=10, maxiter=5, n_max=10)
    for _ in range(7):
        n, _, _ = s.update(1.0, 10**6)
    assert n == 10
    with pytest.raises(ConfigError, match="n_max"):
        BatchSchedule(n=10, maxiter=5, n_max=5)


def test_literal_eq13_uses_the_unsquared_norm():
    """B6: batch_test = "paper" puts ||grad f_S||_2 (not squared) in the denominator of Alg. 2."""
    import math

    import torch

    from shf.optim.batchsize import predict_batch_size

    g = [torch.tensor([0.3, -0.1]), torch.tensor([[0.2]])]
    sumsq = [torch.tensor([2.0, 1.5]), torch.tensor([[0.9]])]
    n, N, theta = 10, 1000, 0.4
    var = sum(float(((s / n - t * t).clamp(min=0) * n / (n - 1)).sum()) for t, s in zip(g, sumsq))
    gnorm = math.sqrt(0.3**2 + 0.1**2 + 0.2**2)
    lit = predict_batch_size(g, sumsq, n, N, theta, squared=False)
    sq = predict_batch_size(g, sumsq, n, N, theta)
    assert lit.n_hat == math.ceil(N * var / (var + theta**2 * (N - 1) * gnorm))
    assert sq.n_hat == math.ceil(N * var / (var + theta**2 * (N - 1) * gnorm**2))
    assert lit.n_hat < sq.n_hat  # ||g|| < 1: the literal test asks for a smaller batch


def test_batch_cap_by_hand():
    # min(n_max, N, ceil(fraction N)), floored at min(n1, N); N unknown: n_max (B13)
    assert batch_cap(6000, 250, 8000, 0.3) == 2400
    assert batch_cap(6000, 250, 8001, 0.3) == 2401  # ceil(2400.3)
    assert batch_cap(6000, 250, 8000, None) == 6000
    assert batch_cap(6000, 250, 5000, None) == 5000  # the training set itself
    assert batch_cap(2500, 250, None, 0.3) == 2500
    assert batch_cap(2500, 250, 500, 0.3) == 250  # 150 < n1: n1
    assert batch_cap(2500, 250, 100, 0.3) == 100  # n1 > N: the whole set


def test_the_batch_policy_asks_for_statistics_only_when_they_can_change_a_decision() -> None:
    asked: list[int] = []
    g = [torch.tensor([1.0, 0.0], dtype=torch.float64)]
    stats = lambda: asked.append(1) or (g, [torch.tensor([50.0, 50.0], dtype=torch.float64)])  # noqa: E731

    def policy(**kw):  # type: ignore[no-untyped-def]
        options = {"dynamic": True, "theta": 0.5, "squared": True, "merit_cap": False, "first_check": 5,
                   "maxiter_max": None, **kw}  # fmt: skip
        return BatchPolicy(BatchSchedule(n=10, maxiter=20, n_max=40, window=1), **options)

    p = policy()
    n_hat, r_rel = p.update(1.0, stats, 10, 100, solver_best=7)
    assert asked == [1] and n_hat is not None and r_rel is None  # the first iteration fills the window
    p.schedule.n = 40  # at n_max: Alg. 2 cannot change a decision, it is not computed
    assert p.update(0.9, stats, 40, 100, solver_best=7)[0] is None and asked == [1]
    fixed = policy(dynamic=False)  # the ablation: n and maxiter stay, nothing is computed
    assert fixed.update(1.0, stats, 10, 100, solver_best=7) == (None, None) and asked == [1]
    assert (fixed.schedule.n, fixed.schedule.maxiter) == (10, 20)
    b4 = policy(dynamic=False, merit_cap=True, maxiter_max=9)  # B4: ceil(1.5 k*), bounded
    b4.update(1.0, stats, 10, 100, solver_best=4)
    assert b4.schedule.maxiter == 6
    b4.update(1.0, stats, 10, 100, solver_best=30)
    assert b4.schedule.maxiter == 9
    b4.update(1.0, stats, 10, 100, solver_best=None)  # no usable solve: the bound only
    assert b4.schedule.maxiter == 9
