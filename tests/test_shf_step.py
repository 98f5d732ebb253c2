"""One HF step (Alg. 1): least-squares limit, Armijo, LM rule, NaN rejection."""

from __future__ import annotations

import math

import pytest
import torch

from reference import LinearLSQ, tiny_problem
from shf import tensorlist as tl
from shf.curvature.base import ResidualModel
from shf.errors import ConfigError
from shf.optim.step import SHFConfig, SHFState, shf_step


def _lsq(seed: int = 0) -> tuple[LinearLSQ, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(30, 12, generator=g, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)
    return LinearLSQ(M, y, (3, 4)), [torch.zeros(3, 4, dtype=torch.float64)]


def test_models_satisfy_protocol():
    model, _ = _lsq()
    net, _, _ = tiny_problem((5, 3), 4)
    assert isinstance(model, ResidualModel) and isinstance(net, ResidualModel)


def test_one_step_with_vanishing_damping_reaches_least_squares_solution():
    model, w = _lsq()
    cfg = SHFConfig.paper(lambda1=1e-8, preconditioner="none", use_merit=False, maxiter1=50, atol=1e-14)
    state = SHFState.initial(cfg)
    w1, info = shf_step(model, w, torch.empty(0), state, cfg)
    x_ls = torch.linalg.lstsq(model.M, model.y.unsqueeze(1)).solution.squeeze(1)
    # lambda^2 = 1e-16 perturbs the solution by O(1e-16 cond^2); LSMR to atol 1e-14:
    # agreement to 1e-10 relative is far inside both and far outside any real error.
    torch.testing.assert_close(w1[0].reshape(-1), x_ls, rtol=1e-10, atol=1e-12)
    assert info.accepted and info.step == 1.0
    # On a quadratic the model is exact: rho = 1, so lambda drops (rho > 3/4).
    assert info.rho == pytest.approx(1.0, abs=1e-8)
    assert state.lam == pytest.approx(1e-8 * cfg.drop)
    # The warm start for the next iteration is gamma_1 d, and gamma grows by 1.002.
    torch.testing.assert_close(state.d[0], cfg.gamma1 * w1[0], rtol=1e-12, atol=0)
    assert state.gamma == pytest.approx(cfg.gamma1 * 1.002)


def test_armijo_holds_after_line_search_on_autoencoder():
    net, w, X = tiny_problem((6, 4, 2), 16, seed=3)
    cfg = SHFConfig.paper(lambda1=1e-3, preconditioner="chapelle-erhan", use_merit=False, maxiter1=30, n1=16)
    state = SHFState.initial(cfg)
    A = net.jacobian(w, X)
    f0, g = A.loss, A.gradient()
    w1, info = shf_step(net, w, X, state, cfg, generator=torch.Generator().manual_seed(0))
    d = tl.scale(1.0 / info.step, tl.sub(w1, w)) if info.step > 0 else None
    assert info.accepted and d is not None
    slope = tl.dot(d, g)
    assert slope < 0
    assert net.loss(w1, X) <= f0 + cfg.alpha * info.step * slope
    assert info.loss_new == pytest.approx(net.loss(w1, X), rel=1e-12)


def test_lm_rule_raises_damping_when_model_is_poor():
    """Nearly undamped Gauss-Newton on a saturated net overshoots: rho < 1/4, lambda / drop."""
    net, w, X = tiny_problem((6, 4, 2), 16, seed=4)
    w = [W * 6 for W in w]  # saturated units: the quadratic model is poor far from w
    cfg = SHFConfig.paper(lambda1=1e-6, preconditioner="none", use_merit=False, maxiter1=200, n1=16, drop=0.5)
    state = SHFState.initial(cfg)
    _, info = shf_step(net, w, X, state, cfg)
    assert info.rho < 0.25
    assert state.lam == pytest.approx(2e-6) and info.lam_next == state.lam
    # Armijo still finds a (short) step along the GN direction.
    assert info.accepted and 0 < info.step < 1


def test_lm_rule_lowers_damping_when_model_is_good():
    """Heavily damped step on a mildly nonlinear net: the model is accurate, rho > 3/4."""
    net, w, X = tiny_problem((6, 4, 2), 16, seed=4)
    cfg = SHFConfig.paper(lambda1=10.0, preconditioner="none", use_merit=False, maxiter1=50, n1=16, drop=0.5)
    state = SHFState.initial(cfg)
    _, info = shf_step(net, w, X, state, cfg)
    assert info.rho > 0.75
    assert state.lam == pytest.approx(5.0)


class _NaNModel(LinearLSQ):
    """A model whose loss is NaN away from the current point (as an overflowing net)."""

    def loss(self, w: list[torch.Tensor], X: torch.Tensor, Y: torch.Tensor | None = None) -> float:
        if float(w[0].abs().sum()) > 0:
            return math.nan
        return super().loss(w, X)


def test_nan_loss_rejects_step_and_raises_damping():
    g = torch.Generator().manual_seed(0)
    model = _NaNModel(
        torch.randn(10, 4, generator=g, dtype=torch.float64), torch.ones(10, dtype=torch.float64), (2, 2)
    )
    w = [torch.zeros(2, 2, dtype=torch.float64)]
    cfg = SHFConfig.paper(lambda1=1.0, preconditioner="none", use_merit=False, drop=0.5)
    state = SHFState.initial(cfg)
    w1, info = shf_step(model, w, torch.empty(0), state, cfg)
    assert not info.accepted and info.step == 0.0
    assert torch.equal(w1[0], w[0]) and tl.all_finite(w1)
    assert state.lam == 2.0  # lambda / drop
    assert state.d is None  # the rejected direction is not reused


class _NaNJacobianModel(LinearLSQ):
    def jacobian(self, w, X, Y=None):  # type: ignore[no-untyped-def]
        J = super().jacobian(w, X)
        J.matvec = lambda d: torch.full_like(self.y, math.nan)  # type: ignore[method-assign]
        return J


def test_nan_direction_never_reaches_weights():
    g = torch.Generator().manual_seed(1)
    model = _NaNJacobianModel(
        torch.randn(10, 4, generator=g, dtype=torch.float64), torch.ones(10, dtype=torch.float64), (2, 2)
    )
    w = [torch.ones(2, 2, dtype=torch.float64)]
    cfg = SHFConfig.paper(lambda1=1.0, preconditioner="none", use_merit=False, drop=0.5)
    state = SHFState.initial(cfg)
    w1, info = shf_step(model, w, torch.empty(0), state, cfg)
    assert tl.all_finite(w1) and torch.equal(w1[0], w[0])
    assert state.lam == 2.0 and not info.accepted


class _BlindLoss(LinearLSQ):
    """A loss that does not see overflowing weights (as a saturating output would): 0 there."""

    def loss(self, w: list[torch.Tensor], X: torch.Tensor, Y: torch.Tensor | None = None) -> float:
        return super().loss(w, X) if tl.all_finite(w) else 0.0


def test_overflowing_update_is_refused_and_raises_damping(monkeypatch):
    """The last guard in Alg. 1's update: a step whose losses were finite but whose new weights
    ``w + s d`` are not (an overflow the loss did not see) is refused, the weights stay, lambda
    grows at least as the paper's rule does on a failed step, and d is not reused."""
    model, w = _lsq(3)
    model = _BlindLoss(model.M, model.y, model.shape)
    cfg = SHFConfig.paper(lambda1=1.0, preconditioner="none", use_merit=False, drop=0.5)
    real_axpy = tl.axpy

    def overflowing_axpy(alpha, x, y):  # type: ignore[no-untyped-def]
        out = real_axpy(alpha, x, y)
        # only the update of the weights themselves (y is w) overflows; LSMR's vectors do not
        return [torch.full_like(t, math.inf) for t in out] if y is w else out

    monkeypatch.setattr(tl, "axpy", overflowing_axpy)
    state = SHFState.initial(cfg)
    f0 = model.loss(w, torch.empty(0))
    w1, info = shf_step(model, w, torch.empty(0), state, cfg)
    assert info.rho > 0.75  # the loss fell more than the model: the paper's rule would lower lambda
    assert not info.accepted and info.step == 0.0 and info.loss_new == f0
    assert tl.all_finite(w1) and torch.equal(w1[0], w[0])
    assert state.lam == 2.0 and state.d is None  # lambda / drop, as on a failed step


def _least_squares_step(model: LinearLSQ, w: list[torch.Tensor]) -> list[torch.Tensor]:
    """The undamped Gauss-Newton step from ``w`` (dense): the minimiser of the quadratic model."""
    r = model.M @ w[0].reshape(-1) - model.y
    d = torch.linalg.lstsq(model.M, -r.unsqueeze(1)).solution.squeeze(1)
    return [d.reshape(model.shape)]


@pytest.mark.parametrize(("t", "kept"), [(0.5, True), (1.9, True), (2.1, False), (-0.5, False)])
def test_warm_start_guard_drops_a_start_that_does_not_decrease_the_model(t, kept):
    """B14: along the Gauss-Newton step d*, q(t d*) = (t^2/2 - t) ||M d*||^2 < 0 exactly for
    0 < t < 2, so the guard keeps t = 0.5 and 1.9 and starts from 0 for t = 2.1 and -0.5 (a wrong
    sign or a missing 1/2 in q would move the boundary to t = 1 or t = 0)."""
    model, w = _lsq(2)
    d_star = _least_squares_step(model, w)
    x0 = tl.scale(t, d_star)
    # lambda = 1e3 and 2 iterations: the returned direction stays close to where LSMR started
    kwargs = {"lambda1": 1e3, "preconditioner": "none", "use_merit": False, "maxiter1": 2, "atol": 0.0}
    guarded = SHFConfig.paper(warm_start_guard="model", **kwargs)
    paper = SHFConfig.paper(**kwargs)
    results = {}
    for name, cfg in (("guarded", guarded), ("paper", paper), ("zero", paper)):
        state = SHFState.initial(cfg)
        state.d = None if name == "zero" else tl.clone(x0)
        w1, info = shf_step(model, w, torch.empty(0), state, cfg)
        results[name] = (w1, info)
    w_g, info_g = results["guarded"]
    assert info_g.warm_start is kept
    assert results["paper"][1].warm_start is True and results["zero"][1].warm_start is None
    # kept: exactly the paper's solve; dropped: exactly the solve from 0
    same = results["paper" if kept else "zero"][0]
    assert torch.equal(w_g[0], same[0])
    if not kept:
        # the paper's solve returns (nearly) the bad start, which raises the model; from 0 it falls
        assert results["paper"][1].model_change > 0 > info_g.model_change


@pytest.mark.parametrize("t", [0.5, 3.0])
def test_warm_start_retry_solves_again_from_zero_when_the_direction_raises_the_model(t):
    """B14's ``retry``: a solve from t d* that returns a direction with q(d) >= 0 (t = 3 under
    heavy damping, which keeps LSMR near its start) is redone from 0, and its iterations are
    added; one with q(d) < 0 (t = 0.5) is the paper's solve unchanged."""
    model, w = _lsq(2)
    x0 = tl.scale(t, _least_squares_step(model, w))
    kwargs = {"lambda1": 1e3, "preconditioner": "none", "use_merit": False, "maxiter1": 2, "atol": 0.0}
    out = {}
    for name, guard, start in (("retry", "retry", x0), ("paper", "none", x0), ("zero", "none", None)):
        cfg = SHFConfig.paper(warm_start_guard=guard, **kwargs)
        state = SHFState.initial(cfg)
        state.d = None if start is None else tl.clone(start)
        out[name] = shf_step(model, w, torch.empty(0), state, cfg)
    (w_r, info_r), (w_p, info_p), (w_z, info_z) = out["retry"], out["paper"], out["zero"]
    if t < 2:
        assert info_p.model_change < 0 and info_r.warm_start is True
        assert torch.equal(w_r[0], w_p[0]) and info_r.solver_iterations == info_p.solver_iterations
    else:
        assert info_p.model_change > 0 and info_r.warm_start is False
        assert torch.equal(w_r[0], w_z[0]) and info_r.model_change == info_z.model_change < 0
        assert info_r.solver_iterations == info_p.solver_iterations + info_z.solver_iterations


@pytest.mark.parametrize("t", [0.5, 3.0])
def test_warm_start_reset_keeps_the_step_and_drops_the_next_warm_start(t):
    """B14's ``reset``: the step is exactly the paper's (same weights, rho, damping); only a
    direction with q(d) >= 0 (t = 3, as in the retry test) does not seed the next solve."""
    model, w = _lsq(2)
    x0 = tl.scale(t, _least_squares_step(model, w))
    kwargs = {"lambda1": 1e3, "preconditioner": "none", "use_merit": False, "maxiter1": 2, "atol": 0.0}
    out = {}
    for guard in ("reset", "none"):
        cfg = SHFConfig.paper(warm_start_guard=guard, **kwargs)
        state = SHFState.initial(cfg)
        state.d = tl.clone(x0)
        out[guard] = (*shf_step(model, w, torch.empty(0), state, cfg), state)
    (w_r, info_r, state_r), (w_p, info_p, state_p) = out["reset"], out["none"]
    assert torch.equal(w_r[0], w_p[0]) and state_r.lam == state_p.lam
    assert info_r.rho == pytest.approx(info_p.rho, nan_ok=True)  # NaN where q(d) >= 0
    assert info_r.accepted and info_r.warm_start is True
    if t < 2:
        assert info_p.model_change < 0 and torch.equal(state_r.d[0], state_p.d[0])
    else:
        assert info_p.model_change > 0 and state_r.d is None and state_p.d is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"drop": 1.5}, r"drop must be in \(0, 1\)"),
        ({"drop": 0.0}, r"drop must be in \(0, 1\)"),
        ({"lambda1": -1.0}, "lambda1 must be in"),
        ({"lambda1": math.nan}, "lambda1 must be in"),
        ({"lambda1": 2e10}, r"lambda1 must be in \[0, 1e\+10\]"),
        ({"gamma1": 1.0}, r"gamma1 must be in \[0, 1\)"),
        ({"maxiter1": 0}, "maxiter1 must be a positive integer"),
        ({"atol": -1e-3}, "atol must be >= 0"),
        ({"theta": 0.0}, r"theta must be in \(0, 1\)"),
        ({"n1": 0}, "n1 must be an integer >= 2"),
        ({"n1": 100, "n_max": 50}, r"n_max must be an integer >= n1 \(100\)"),
        ({"m0": 0}, "m0 must be a positive integer"),
        ({"sigma": 0.0}, "sigma must be > 0"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\)"),
        ({"preconditioner": "jacobi"}, "preconditioner must be one of"),
        ({"warm_start_guard": "merit"}, "warm_start_guard must be one of"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SHFConfig.paper(**kwargs)


@pytest.mark.parametrize("forcing", ["gradient", "none"])
def test_the_batch_gradient_is_timed_as_its_own_part(forcing: str) -> None:
    # B3's forcing bound reads grad f before the solve: its backward pass is the part "gradient"
    # (without a forcing test or B7's subset the part is empty: the quadratic model computes it)
    net, w, X = tiny_problem((6, 4, 2), 16, seed=3)
    cfg = SHFConfig.paper(use_merit=False, maxiter1=5, n1=16, forcing=forcing)
    _, info = shf_step(net, w, X, SHFState.initial(cfg), cfg, generator=torch.Generator().manual_seed(0))
    assert "gradient" in info.times
    assert info.times.get("gradient", 0.0) >= 0.0 and info.times["total"] >= info.times.get("gradient", 0.0)
