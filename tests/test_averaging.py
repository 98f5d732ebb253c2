"""B12, iterate averaging: the loop sees the bias-corrected EMA of the iterates, the method its
own iterates; resumes are exact."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from torch import Tensor

from shf.averaging import Averaged
from shf.data.split import Split
from shf.errors import ConfigError
from shf.fit import LoopConfig, run_loop

F64 = torch.float64


class Walk:
    """A method whose iterates are a fixed random walk; it records the weights it is given and
    reports a (wrong, on purpose) validation error that the average must not inherit."""

    def __init__(self, steps: int = 40) -> None:
        g = torch.Generator().manual_seed(0)
        self.path = [torch.randn(3, generator=g, dtype=F64) for _ in range(steps + 1)]
        self.t = 0
        self.given: list[Tensor] = []

    def init_weights(self) -> list[Tensor]:
        return [self.path[0].clone()]

    def step(self, w: list[Tensor], deadline: float | None = None) -> tuple[list[Tensor], dict[str, Any]]:
        self.given.append(w[0].clone())
        self.t += 1
        return [self.path[self.t].clone()], {"examples": 1, "val_error": -1.0}

    def summary(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])


def _ema(path: list[Tensor], t: int, beta: float) -> Tensor:
    """The definition: sum_s beta^(t-s) w_s / sum_s beta^(t-s) over s = 1..t (w_0 excluded)."""
    weights = [beta ** (t - s) for s in range(1, t + 1)]
    return sum(c * path[s] for c, s in zip(weights, range(1, t + 1))) / sum(weights)  # type: ignore[return-value]


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_the_average_is_the_bias_corrected_ema_and_the_method_keeps_its_iterates(beta: float) -> None:
    inner = Walk()
    avg = Averaged(inner, beta)
    w = avg.init_weights()
    assert torch.equal(w[0], inner.path[0])
    for t in range(1, 21):
        w, info = avg.step(w)
        # float64 recursion against the closed form: agreement to rounding (20 steps, |w| ~ 1).
        torch.testing.assert_close(w[0], _ema(inner.path, t, beta), rtol=0, atol=1e-13)
        assert "val_error" not in info  # the iterate's, so dropped
        # the method was stepped from its own previous iterate, not from the average
        assert torch.equal(inner.given[-1], inner.path[t - 1])
    assert not torch.allclose(w[0], inner.path[20])  # the test would see an average that is not one


def test_the_loop_evaluates_and_keeps_the_average() -> None:
    inner = Walk()
    X = torch.zeros(4, 1, dtype=F64)
    data = Split(X, X, X, "walk")

    def evaluate(w: list[Tensor], Xe: Tensor, Ye: Tensor | None) -> float:
        return float((w[0] - 0.3).square().sum())

    res = run_loop(data, inner, LoopConfig(max_iters=15, patience=100, weight_average=0.8),
                   evaluate=evaluate, no_half=False)  # fmt: skip
    vals = [r["val_error"] for r in res.history]
    want = [evaluate([_ema(inner.path, t, 0.8)], X, None) for t in range(1, 16)]
    assert vals == pytest.approx(want, rel=1e-12)
    best = min(range(15), key=lambda i: vals[i])
    torch.testing.assert_close(res.weights[0], _ema(inner.path, best + 1, 0.8), rtol=0, atol=1e-13)
    assert res.summary["weight_average"] == 0.8


def test_a_resumed_average_continues_bit_for_bit() -> None:
    whole = Averaged(Walk(), 0.9)
    w = whole.init_weights()
    for _ in range(12):
        w, _ = whole.step(w)
    first = Averaged(Walk(), 0.9)
    v = first.init_weights()
    for _ in range(5):
        v, _ = first.step(v)
    state = copy.deepcopy(first.state_dict())
    again = Averaged(Walk(), 0.9)
    again.init_weights()
    again.load_state_dict(state)
    for _ in range(7):
        v, _ = again.step(v)
    assert torch.equal(v[0], w[0])
    with pytest.raises(ConfigError, match="weight average"):
        Averaged(Walk(), 0.5).load_state_dict(state)


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5])
def test_a_decay_outside_the_unit_interval_is_refused(beta: float) -> None:
    with pytest.raises(ConfigError, match="weight_average"):
        LoopConfig(weight_average=beta)
    with pytest.raises(ConfigError, match="decay"):
        Averaged(Walk(), beta)


def test_shf_fit_with_a_weight_average_resumes_and_trains() -> None:
    """Through the real loop and SHF: the averaged run's checkpoint at iteration 4 resumes to the
    same records as the whole run, and the averaged weights are not the last iterate."""
    import regression_runs
    from shf.experiments.methods import build_method
    from shf.experiments.run import build_network, squared_error

    cfg = regression_runs.shrunk("default", ["run.seed=3"])
    data = regression_runs.data()
    loop = LoopConfig(max_iters=8, eval_every=2, weight_average=0.7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = build_network(cfg)
        whole = run_loop(data, build_method("shf-lsmr", net, data, cfg), loop, evaluate=squared_error(net))
        states: dict[int, Any] = {}
        net = build_network(cfg)
        run_loop(data, build_method("shf-lsmr", net, data, cfg), dataclasses.replace(loop, max_iters=5),
                 evaluate=squared_error(net), checkpoint_every=4,
                 checkpoint=lambda s: states.update({s.iteration: copy.deepcopy(s)}))  # fmt: skip
        net = build_network(cfg)
        rest = run_loop(data, build_method("shf-lsmr", net, data, cfg), loop, evaluate=squared_error(net),
                        resume=states[4])  # fmt: skip
        net = build_network(cfg)
        off = dataclasses.replace(loop, weight_average=0.0)
        plain = run_loop(data, build_method("shf-lsmr", net, data, cfg), off, evaluate=squared_error(net))
    finally:
        torch.set_num_threads(threads)

    assert regression_runs.without_times(rest.history) == regression_runs.without_times(whole.history[4:])
    assert all(torch.equal(a, b) for a, b in zip(rest.weights, whole.weights))
    # The same iterations underneath (lambda, batch sizes), other validation errors on top.
    assert [r["lam"] for r in whole.history] == [r["lam"] for r in plain.history]
    assert [r["val_error"] for r in whole.history] != [r["val_error"] for r in plain.history]
