"""The objective part (shf.optim.objective): f = L + c/2 ||w||^2 (B10), float64."""

from __future__ import annotations

import copy

import pytest
import torch

from reference import tiny_problem
from shf import tensorlist as tl
from shf.errors import ConfigError
from shf.optim.objective import Objective, QuadraticModel, make_objective
from shf.optim.step import SHFConfig


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


def _classifier() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(80, 5, generator=g, dtype=torch.float64)
    return net, X, torch.randint(0, 3, (80,), generator=g)


def test_b16_sets_the_weight_cost_by_the_weights_per_training_example() -> None:
    """c = weight_cost (P / N) / 100: the rule's formula, the cost SHF builds from its model and
    train_size, and the run it gives: identical, bit for bit, to the constant rule at that c."""
    import shf
    from shf.optim.objective import WeightsPerExample, make_objective

    assert WeightsPerExample(1e-4).cost(355_000, 1_000) == pytest.approx(3.55e-4, rel=1e-15)
    assert make_objective("constant", 1e-4, 35_500, 1_000).weight_cost == 1e-4
    net, X, y = _classifier()
    P = sum(p.numel() for p in net.parameters())  # 75 weights

    def run(rule: str, wc: float) -> list[torch.Tensor]:
        model = copy.deepcopy(net)
        damping = shf.Damping(weight_cost=wc, weight_cost_rule=rule)
        opt = shf.SHF(
            model, "cross_entropy", train_size=60, seed=3, damping=damping, batch=shf.Batch(n1=30, n_max=60)
        )
        for _ in range(3):
            opt.step(X[:30], y[:30], val=(X[60:], y[60:]))
        if rule == "per-example":
            assert opt.hf_state.objective.weight_cost == pytest.approx(wc * P / 60 / 100, rel=1e-15)
        return [p.detach().clone() for p in model.parameters()]

    per_example = run("per-example", 0.2)
    assert all(torch.equal(a, b) for a, b in zip(per_example, run("constant", 0.2 * (P / 60) / 100)))
    # ... and not the constant rule at weight_cost itself (else this test could not fail)
    assert not all(torch.equal(a, b) for a, b in zip(per_example, run("constant", 0.2)))


def test_b16_needs_the_training_set_size_and_a_weight_cost() -> None:
    import shf
    from shf.errors import ConfigError

    net, _, _ = _classifier()
    with pytest.raises(ConfigError, match="'per-example' needs the training-set size: give SHF train_size="):
        shf.SHF(net, "cross_entropy", damping=shf.Damping(weight_cost_rule="per-example"))
    with pytest.raises(
        ConfigError, match=r"weight_cost_rule='per-example'\) is ignored by the objective without"
    ):
        shf.SHF(
            net,
            "cross_entropy",
            train_size=60,
            damping=shf.Damping(weight_cost=0.0, weight_cost_rule="per-example"),
        )
    with pytest.raises(ConfigError, match="weight_cost_rule must be one of"):
        shf.SHF(net, "cross_entropy", train_size=60, damping=shf.Damping(weight_cost_rule="per-weight"))


def test_b16_resumes_with_the_training_set_size_it_was_saved_with() -> None:
    import shf

    net, _, _ = _classifier()
    kw = {"damping": shf.Damping(weight_cost_rule="per-example"), "batch": shf.Batch(n1=30, n_max=60)}
    opt = shf.SHF(net, "cross_entropy", train_size=60, **kw)
    other = shf.SHF(net, "cross_entropy", train_size=6000, **kw)
    assert other.hf_state.objective.weight_cost != opt.hf_state.objective.weight_cost
    other.load_state_dict(opt.state_dict())
    assert other.hf_state.objective.weight_cost == opt.hf_state.objective.weight_cost


def test_b24_is_b16_above_a_hundred_weights_per_example_and_the_constant_below() -> None:
    """B24 (``"per-example-floor"``): ``c = max(weight_cost, weight_cost (P / N) / 100)``; the
    constant where the training-set size is not known (so it can be a default for any user)."""
    above = make_objective("per-example-floor", 1e-4, 35_500, 100)  # 355 weights per example
    assert above.weight_cost == pytest.approx(3.55e-4, rel=1e-15)
    assert make_objective("per-example-floor", 1e-4, 6_200, 100).weight_cost == 1e-4  # 62 per example
    assert make_objective("per-example-floor", 1e-4, 6_200, None).weight_cost == 1e-4
    assert make_objective("per-example", 1e-4, 6_200, 100).weight_cost == pytest.approx(6.2e-5, rel=1e-15)
    # the cap: at most B24_MAX_FACTOR (10) times weight_cost, from 1,000 weights per example on
    floor = "per-example-floor"
    assert make_objective(floor, 1e-4, 99_900, 100).weight_cost == pytest.approx(9.99e-4, rel=1e-15)
    assert make_objective(floor, 1e-4, 400_000, 100).weight_cost == pytest.approx(1e-3, rel=1e-15)
    assert make_objective("per-example", 1e-4, 400_000, 100).weight_cost == pytest.approx(4e-3, rel=1e-15)


def test_b24_is_the_default_and_a_run_from_before_keeps_the_constant() -> None:
    """B24 is the defaults' rule (``SHFConfig()``, ``shf.Damping()``); the paper has no weight
    cost (``c = 0`` by any rule); a stored run without the key, made before the rules existed,
    keeps ``"constant"``."""
    import shf
    from shf import config as cfgmod

    assert SHFConfig().weight_cost_rule == shf.Damping().weight_cost_rule == "per-example-floor"
    assert make_objective(shf.PAPER.weight_cost_rule, shf.PAPER.weight_cost, 10**6, 10).weight_cost == 0.0
    stored = cfgmod.restore_infinities({"optimizer": {"weight_cost": 1e-4}})
    assert stored["optimizer"]["weight_cost_rule"] == "constant"
    # a checkpoint without the key resumes under the constant rule, and is refused by the default
    net, _, _ = _classifier()
    constant = {"damping": shf.Damping(weight_cost_rule="constant"), "batch": shf.Batch(n1=30, n_max=60)}
    state = shf.SHF(net, "cross_entropy", train_size=60, **constant).state_dict()
    del state["shf"]["config"]["weight_cost_rule"]
    shf.SHF(net, "cross_entropy", train_size=60, **constant).load_state_dict(state)
    with pytest.raises(ConfigError, match=r"other hyper-parameters \(weight_cost_rule\)"):
        shf.SHF(net, "cross_entropy", train_size=60, batch=shf.Batch(n1=30, n_max=60)).load_state_dict(state)
    # by default a model of 714 weights on 2 training examples (357 per example) gets 3.57 times
    # the weight cost, and on 20 examples (35.7 per example) the weight cost itself
    net = torch.nn.Linear(50, 14).double()
    for n, c in ((2, 3.57e-4), (20, 1e-4)):
        opt = shf.SHF(net, "cross_entropy", train_size=n, regime="stochastic", batch=shf.Batch(n1=2, n_max=2))
        assert opt.hf_state.objective.weight_cost == pytest.approx(c, rel=1e-12)
