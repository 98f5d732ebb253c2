"""Martens (2010) HF and the first-order baselines lower the loss on a small problem."""

from __future__ import annotations

import math

import pytest
import torch

from shf.data.curves import generate_curves
from shf.data.split import make_split
from shf.errors import ConfigError
from shf.experiments.methods import first_order_method, sparse_init_of
from shf.experiments.run import squared_error
from shf.fit import LoopConfig, run_loop
from shf.models.autoencoder import Autoencoder
from shf.optim.first_order import FirstOrderConfig
from shf.optim.hf import HFConfig, MartensHF


def _data():
    X = generate_curves(500, seed=5)
    return make_split(X[:300], X[300:400], X[400:], "tiny CURVES").to(torch.float64)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_martens_hf_lowers_validation_error(loss):
    net = Autoencoder((784, 32, 6), linear_code=True, loss_name=loss)
    data = _data()
    cfg = HFConfig(num_chunks=3, maxiter=60, m0=15, sigma=1.0)  # Martens' own initialisation
    method = MartensHF(net, sparse_init_of(net, cfg.m0, cfg.sigma, data), data, cfg)
    res = run_loop(data, method, LoopConfig(max_iters=10), evaluate=squared_error(net))
    s = res.summary
    # Ten HF iterations from lambda = 45 cut the squared reconstruction error to ~0.1x
    # (cross-entropy) and ~0.37x (squared loss) of the initial one (measured); a wrong
    # sign, curvature or damping rule leaves it near 1x.
    assert s["val_error"] < 0.5 * s["initial_val_error"]
    h = res.history
    # CG backtracking picked a stored iterate and CG ran on the cycled chunks.
    assert all(r["cg_chosen_iteration"] <= r["cg_iterations"] for r in h)
    assert {r["n"] for r in h} == {100}
    assert all(r["grad_batch"] == 300 for r in h)
    # Levenberg-Marquardt with factors 3/2 and 2/3.
    for r in h:
        ratio = r["lam_next"] / r["lam"]
        assert ratio == pytest.approx(1.5) or ratio == pytest.approx(2 / 3) or ratio == pytest.approx(1.0)


@pytest.mark.parametrize(("opt", "lr"), [("adam", 1e-2), ("sgd", 0.1)])
def test_first_order_lowers_validation_error(opt, lr):
    net = Autoencoder((784, 32, 6))
    data = _data()
    fo = FirstOrderConfig(optimizer=opt, lr=lr, batch_size=50, m0=15, sigma=1.0)
    method = first_order_method(net, data, fo, 0)
    res = run_loop(data, method, LoopConfig(max_iters=5), evaluate=squared_error(net))
    assert res.summary["val_error"] < 0.7 * res.summary["initial_val_error"]
    assert res.history[0]["updates"] == 6  # one epoch of 300 rows in batches of 50
    assert res.history[-1]["examples"] == 5 * 300


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_first_order_weight_decay_is_the_weight_cost_objective(opt):
    """``weight_decay = c``: the same iterates as the method on the objective ``L + c/2 ||w||^2``
    (SHF's weight cost, B10), which a wrong sign or a decoupled decay would not give."""
    net = Autoencoder((784, 16, 6))
    data = _data()
    c = 0.05

    def run(weight_decay: float, added: float) -> list[torch.Tensor]:
        fo = FirstOrderConfig(opt, lr=1e-2, batch_size=100, m0=15, sigma=1.0, weight_decay=weight_decay)
        method = first_order_method(net, data, fo, 0)
        loss = method.objective
        method.objective = lambda w, X, Y: loss(w, X, Y) + 0.5 * added * sum((W * W).sum() for W in w)
        return run_loop(data, method, LoopConfig(max_iters=2), evaluate=squared_error(net)).weights

    decayed, objective, plain = run(c, 0.0), run(0.0, c), run(0.0, 0.0)
    for a, b in zip(decayed, objective):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert max(float((a - b).abs().max()) for a, b in zip(decayed, plain)) > 1e-6


def test_first_order_divergence_never_writes_nan():
    net = Autoencoder((784, 32, 6))
    data = _data()
    fo = FirstOrderConfig(optimizer="sgd", lr=1e6, batch_size=50, m0=15, sigma=1.0)
    method = first_order_method(net, data, fo, 0)
    res = run_loop(data, method, LoopConfig(max_iters=3), evaluate=squared_error(net))
    assert all(bool(torch.isfinite(W).all()) for W in res.weights)


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        FirstOrderConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="lr must be > 0"):
        FirstOrderConfig(lr=0.0)
    with pytest.raises(ConfigError, match="weight_decay must be >= 0"):
        FirstOrderConfig(weight_decay=-1e-4)
    with pytest.raises(ConfigError, match=r"hf.lm_decrease must be in \(0, 1\)"):
        HFConfig(lm_decrease=1.5)


@pytest.mark.parametrize("preset", ["default", "curves", "usps"])
def test_every_method_starts_from_shf_s_initial_weights_for_a_seed(preset, tmp_path):
    """One seed, one starting point: Adam, SGD, Martens HF and SHF-LSMR/CG (the paper's draw, eq. 9,
    with the [optimizer] section's m0 and sigma) begin at identical weights; another seed moves
    them all; a baseline given its own m0/sigma starts elsewhere."""
    from shf import config as cfgmod
    from shf.experiments.methods import METHODS, build_method
    from shf.experiments.run import build_network

    data = _data().to(torch.float32, torch.device("cpu"))
    sets = ["data.dataset=\"curves\"", "model.encoder=[784, 32, 6]"]

    def starts(seed: int, extra: tuple[str, ...] = ()) -> dict[str, list[torch.Tensor]]:
        cfg = cfgmod.load(preset, [*sets, f"run.seed={seed}", *extra])
        return {m: build_method(m, build_network(cfg), data, cfg).init_weights() for m in METHODS}

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    w = starts(3)
    assert all(same(w[m], w["shf-lsmr"]) for m in METHODS), preset
    assert not same(starts(4)["adam"], w["adam"])
    own = starts(3, ("first_order.m0=15", "first_order.sigma=1.0", "hf.m0=15", "hf.sigma=1.0"))
    assert not same(own["adam"], w["shf-lsmr"]) and not same(own["martens-hf"], w["shf-lsmr"])
    assert same(own["shf-lsmr"], w["shf-lsmr"])


def _tiny_hf(cfg: HFConfig, zero_column: bool = False) -> tuple[MartensHF, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(90, 12, generator=g, dtype=torch.float64)
    if zero_column:
        X[:, 3] = 0.0  # the first layer's weights from input 3 have zero gradients on every example
    data = make_split(X[:60], X[60:75], X[75:], "tiny")
    net = Autoencoder((12, 6, 3))
    method = MartensHF(net, sparse_init_of(net, 4, 1.0, data), data, cfg)
    return method, method.init_weights()


def test_martens_hf_lambda_has_the_damping_ceiling() -> None:
    """hf.lambda1 = 1e300 used to end in cg's "precond must have only positive entries"."""
    from shf.optim.damping import LAMBDA_MAX

    ceiling = r"hf.lambda1 must be in \[0, 1e\+10\] \(the damping's ceiling\), got 1e\+300"
    with pytest.raises(ConfigError, match=ceiling):
        HFConfig(lambda1=1e300)
    HFConfig(lambda1=LAMBDA_MAX)
    # Every step fails (the objective at any trial point is not finite): lambda grows by 3/2 up to
    # the ceiling, not past it (on to an overflow), and the weights stay as they were.
    method, w = _tiny_hf(HFConfig(lambda1=LAMBDA_MAX / 1.2, num_chunks=1, maxiter=5))
    method._objective = lambda w, X, Y: math.inf  # type: ignore[method-assign]
    for _ in range(3):
        w_new, rec = method.step(w)
        assert not rec["accepted"] and all(torch.equal(a, b) for a, b in zip(w, w_new))
    assert method.lam == LAMBDA_MAX


def test_martens_hf_refuses_a_non_finite_preconditioner() -> None:
    """lambda = weight_cost = 0 and a weight with zero gradients made M = 0, c = inf: NaN in CG, silently."""
    method, w = _tiny_hf(HFConfig(lambda1=0.0, weight_cost=0.0, num_chunks=1, maxiter=5), zero_column=True)
    refused = r"Martens' preconditioner .* is not finite and positive at lambda = 0, hf.weight_cost = 0 "
    with pytest.raises(ConfigError, match=refused):
        method.step(w)
    method, w = _tiny_hf(HFConfig(lambda1=0.0, num_chunks=1, maxiter=5), zero_column=True)  # weight cost 2e-5
    w_new, _ = method.step(w)
    assert all(bool(torch.isfinite(t).all()) for t in w_new)


def test_martens_hf_lambda_stops_decreasing_at_its_floor() -> None:
    """H10: with no weight cost, lambda shrinking past float32's range made the preconditioner of a
    weight with zero gradients infinite (H9's error in a healthy run); it stops at LAMBDA_FLOOR."""
    from shf.optim.hf import LAMBDA_FLOOR

    cfg = HFConfig(lambda1=1.2e-30, weight_cost=0.0, num_chunks=1, maxiter=5)
    method, w = _tiny_hf(cfg, zero_column=True)
    w, rec = method.step(w)  # a success (rho > 3/4) on this problem: 2/3 of 1.2e-30 is below the floor
    assert rec["accepted"] and rec["rho"] > 0.75
    assert method.lam == LAMBDA_FLOOR and all(bool(torch.isfinite(t).all()) for t in w)
