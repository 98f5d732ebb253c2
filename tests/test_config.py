"""Configuration files: presets, strict keys and types, overrides."""

from __future__ import annotations

import math

import pytest

from shf import config
from shf.errors import ConfigError


def test_presets_load_with_paper_values():
    assert {"default", "curves"} <= set(config.preset_names())
    c = config.load("curves")
    assert c.model.encoder == [784, 400, 200, 100, 50, 25, 6]
    o = c.optimizer
    assert (o.lambda1, o.drop, o.gamma1, o.maxiter1, o.atol, o.ftol, o.theta, o.m0) == (
        5.0, 0.99, 0.7, 200, 1e-8, 1e-7, 0.5, 20,
    )  # fmt: skip
    assert (o.n1, o.n_max, o.sigma, o.alpha, o.miniter, o.recover) == (250, 2500, 1.5, 1e-4, 50, 100)
    assert (c.data.n_train, c.data.n_test, c.data.n_val) == (20000, 8000, 2000)


def test_overrides_and_types():
    c = config.load(
        "default",
        [
            "optimizer.lambda1=3",
            "run.max_time=inf",
            "model.encoder=[10, 4]",
            "optimizer.preconditioner=none",
            "run.train_eval_size=none",
        ],
    )
    assert c.optimizer.lambda1 == 3.0 and isinstance(c.optimizer.lambda1, float)
    assert math.isinf(c.run.max_time)
    assert c.model.encoder == [10, 4]
    assert c.optimizer.preconditioner == "none"
    assert c.run.train_eval_size is None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optimizer.lambda=3"], r"unknown key\(s\) in \[optimizer\]: lambda; valid keys: .*lambda1"),
        (["optim.lambda1=3"], "unknown section 'optim'"),
        (["optimizer.maxiter1=2.5"], "optimizer.maxiter1 must be an integer, got 2.5"),
        (['optimizer.lambda1="big"'], "optimizer.lambda1 must be a number"),
        (["optimizer.use_merit=1"], "optimizer.use_merit must be true or false"),
        (["model.encoder=[784, 0]"], "model.encoder must list at least two positive sizes"),
        (["optimizer.drop=2"], r"\[optimizer\] drop must be in \(0, 1\)"),
        (["optimizer.lambda1=-1"], r"lambda1 must be in"),
        (["data.n_train=0"], "data.n_train must be a positive integer"),
        (["run.dtype=float16"], "run.dtype must be one of"),
        (["lambda1=3"], "must look like section.key=value"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ConfigError, match=match):
        config.load("default", overrides)


def test_toml_file_and_errors(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('name = "mine"\n[optimizer]\nlambda1 = 1.5\n[bogus]\nx = 1\n')
    with pytest.raises(ConfigError, match=r"unknown section\(s\) bogus"):
        config.load(str(p))
    p.write_text('name = "mine"\n[optimizer]\nlambda1 = 1.5\n')
    assert config.load(str(p)).optimizer.lambda1 == 1.5
    p.write_text("[optimizer\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(str(p))
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        config.load("nope")


def test_round_trip_through_dict():
    c = config.load("curves")
    assert config.from_dict(c.to_dict()) == c


def test_default_preset_is_curves_with_the_tuned_overlay():
    """`shf train` with no arguments runs the paper's CURVES settings with TUNED on top, on the
    cross-entropy objective (B9)."""
    import dataclasses

    from shf import config as cfgmod
    from shf.optim.hyper import TUNED

    default, curves = cfgmod.load("default", []), cfgmod.load("curves", [])
    assert default.optimizer == dataclasses.replace(curves.optimizer, **TUNED)
    assert default.model.encoder == curves.model.encoder and default.data.dataset == "curves"
    assert default.model.loss == "cross_entropy" and curves.model.loss == "squared"


def test_threads_seeds_and_directories(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert config.load("default", ["run.threads=12"]).run.threads == 12
    for bad in ("13", "0", "-1"):
        with pytest.raises(ConfigError, match=r"run\.threads must be an integer between 1 and 12 .* 3 cores"):
            config.load("default", [f"run.threads={bad}"])
    assert config.load("default", [f"run.seed={2**63 - 1}"]).run.seed == 2**63 - 1
    for bad in (str(2**63), "-1", "99999999999999999999"):
        with pytest.raises(ConfigError, match=r"run\.seed must be a non-negative integer below 2\*\*63"):
            config.load("default", [f"run.seed={bad}"])
    with pytest.raises(ConfigError, match="is a directory: give a TOML file or a preset name"):
        config.load(str(tmp_path))
