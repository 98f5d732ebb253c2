"""Fault injection: bad values inside a run never reach the weights and never stop the run.

(Killed, interrupted and concurrent runs, corrupt checkpoints and failed writes are in
tests/test_resume.py; a non-finite direction in tests/test_shf_step.py.)
"""

from __future__ import annotations

import pytest
import torch

import regression_runs
from shf.data.split import Split
from shf.experiments.methods import build_method
from shf.experiments.run import build_network, squared_error
from shf.fit import LoopConfig, run_loop


@pytest.mark.parametrize("method", ["shf-lsmr", "shf-cg", "martens-hf", "adam"])
def test_nan_in_the_training_batches_never_reaches_the_weights(method: str) -> None:
    cfg = regression_runs.shrunk("default", [])
    clean = regression_runs.data()
    train = clean.train.clone()
    train[::3, 5] = float("nan")  # every batch of 40 rows holds some (injected after the data checks)
    data = Split(train, clean.val, clean.test, "NaN-injected")
    net = build_network(cfg)
    res = run_loop(
        data, build_method(method, net, data, cfg), LoopConfig(max_iters=4), evaluate=squared_error(net)
    )
    assert res.summary["hf_iterations"] == 4  # the run went on
    assert all(bool(torch.isfinite(w).all()) for w in res.weights)
    assert all(r.get("accepted") in (False, None) for r in res.history)
    assert res.summary["val_error"] == res.summary["initial_val_error"]  # nothing moved


def test_shf_skips_a_nan_batch_and_trains_on_the_next() -> None:
    from torch import nn

    import shf

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    X, y = torch.randn(200, 4, dtype=torch.float64), torch.randint(0, 2, (200,))
    opt = shf.SHF(model, "cross_entropy", batch=shf.Batch(n1=50, n_max=100), damping=shf.Damping(lambda1=1.0))
    bad = X[:50].clone()
    bad[0, 0] = float("inf")
    info = opt.step(bad, y[:50], val=(X[150:], y[150:]))
    assert not info.accepted and info.solver_stop == "not_finite_batch" and opt.lam == 1.0
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    info = opt.step(X[50:100], y[50:100], val=(X[150:], y[150:]))
    assert info.accepted
