"""The named methods of the experiments (shf.experiments.methods): the autoencoder written as
nn.Sequential (model.path = "sequential", issue 27) trains as the hand-written one does."""

from __future__ import annotations

import pytest
import torch

import regression_runs
from shf import config as cfgmod
from shf.errors import ConfigError
from shf.experiments.methods import AsAutoencoder, build_method
from shf.experiments.run import build_network, squared_error
from shf.fit import LoopConfig, SHFMethod, run_loop
from shf.method import Method
from shf.models.autoencoder import autoencoder_weights, sequential_weights


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_the_sequential_path_trains_as_the_hand_written_one(loss: str) -> None:
    """Same initial weights (bit for bit), same batches, the same products to round-off: in
    float64 the first iterations' errors agree to 1e-7 relative (the products differ by kernel
    round-off, ~1e-15, which LSMR and the line search amplify by far less than 1e8 in 4 steps;
    a wrong scale, weight order or objective moves them by percents)."""
    data = regression_runs.data()
    records = {}
    for path in ("hand-written", "sequential"):
        cfg = regression_runs.shrunk("default", [f"model.loss={loss}", f"model.path={path}"])
        net = build_network(cfg)
        method = build_method("shf-lsmr", net, data, cfg)
        assert isinstance(method, AsAutoencoder if path == "sequential" else SHFMethod)
        assert isinstance(method, Method)
        w0 = method.init_weights()
        res = run_loop(data, build_method("shf-lsmr", build_network(cfg), data, cfg), LoopConfig(max_iters=4),
                       evaluate=squared_error(net))  # fmt: skip
        records[path] = (w0, res)
    (w_hw, r_hw), (w_seq, r_seq) = records["hand-written"], records["sequential"]
    assert all(torch.equal(a, b) for a, b in zip(w_hw, w_seq))
    val_hw = [h["val_error"] for h in r_hw.history]
    val_seq = [h["val_error"] for h in r_seq.history]
    assert len(val_hw) == len(val_seq) == 4 and val_hw[-1] < val_hw[0]
    assert val_seq == pytest.approx(val_hw, rel=1e-7)
    assert [h["n"] for h in r_hw.history] == [h["n"] for h in r_seq.history]
    assert r_seq.weights[0].shape == r_hw.weights[0].shape  # the autoencoder's W_l


def test_the_weights_convert_both_ways_exactly() -> None:
    cfg = regression_runs.shrunk("default", [])
    w = [torch.randn(W.shape, dtype=torch.float64) for W in build_network(cfg).weights]
    assert all(torch.equal(a, b) for a, b in zip(autoencoder_weights(sequential_weights(w)), w))
    with pytest.raises(ValueError, match="pairs"):
        autoencoder_weights(sequential_weights(w)[:-1])


def test_the_path_is_an_autoencoders_choice() -> None:
    with pytest.raises(ConfigError, match=r"model\.path must be one of"):
        cfgmod.load("default", ["model.path=generic"])
    with pytest.raises(ConfigError, match=r"a classifier is an nn\.Module already"):
        cfgmod.load("classify-usps", ["model.path=sequential"])


def test_the_method_names_the_solver_and_a_contrary_setting_is_refused() -> None:
    # shf-cg runs CG whatever the default field says; shf-lsmr with optimizer.solver = cg would
    # silently run LSMR: refused with the method to use
    data = regression_runs.data()
    cg = regression_runs.shrunk("default", ["optimizer.solver=cg"])
    build_method("shf-cg", build_network(cg), data, cg)
    build_method("shf-cg", build_network(cg), data, regression_runs.shrunk("default", []))
    with pytest.raises(ConfigError, match="run method shf-cg instead"):
        build_method("shf-lsmr", build_network(cg), data, cg)
