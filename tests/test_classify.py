"""The classification task end to end on a small generated USPS-layout file: shf train and
shf compare with --task classify, and the classifiers' shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from shf.cli import main
from shf.config import ModelConfig
from shf.curvature import chain
from shf.errors import ConfigError
from shf.models import RowTransformer, SmallCNN, mlp_classifier


def _usps_file(path: Path, n: int = 300) -> Path:
    """Ten classes, each a bright 4x4 block at its own place on a noisy 16x16 image."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 10
    img = rng.integers(0, 60, size=(n, 16, 16))
    for i, d in enumerate(y):
        r, c = divmod(int(d), 4)
        img[i, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 180
    table = np.zeros((n, 257), dtype=np.uint8)
    table[:, :256] = img.reshape(n, 256).clip(0, 255)
    table[:, 256] = y + 1
    scipy.io.savemat(path, {"usps_all": table})
    return path


def test_classifier_shapes_and_errors() -> None:
    x = torch.rand(3, 256)
    assert mlp_classifier(256, [16, 8], 10)(x).shape == (3, 10)
    assert SmallCNN(256, 10)(x).shape == (3, 10) and SmallCNN(784, 4)(torch.rand(2, 784)).shape == (2, 4)
    with pytest.raises(ConfigError, match="square"):
        SmallCNN(250, 10)
    # the CNN is a chain of layers: its products are made by the per-layer rules
    cnn = SmallCNN(256, 10)
    assert chain.plan(cnn, [n for n, _ in cnn.named_parameters()]) is not None
    tfm = RowTransformer(256, 10, width=8, layers=2, heads=2)
    assert tfm(x).shape == (3, 10) and len(tfm.encoder.layers) == 2
    with pytest.raises(ConfigError, match="square"):
        RowTransformer(250, 10)
    with pytest.raises(ConfigError, match="multiple of its heads"):
        RowTransformer(256, 10, width=6, heads=4)
    with pytest.raises(ConfigError, match="width once per encoder block"):
        ModelConfig(task="classify", arch="transformer", hidden=[32, 16])
    with pytest.raises(ConfigError, match="positive divisor of the width 32"):
        ModelConfig(task="classify", arch="transformer", hidden=[32], heads=3)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "transformer"])
def test_shf_train_classify_learns_the_task(
    arch: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _usps_file(tmp_path / "usps.mat")
    out = tmp_path / "run"
    small = ["--set", "model.hidden=[16]"] if arch == "transformer" else []
    rc = main([
        "train", "--config", "classify-usps", "--arch", arch, "--data-path", str(data), "--max-iters", "12",
        "--set", "optimizer.n1=50", "--set", "optimizer.n_max=150", "--out", str(out), "--no-progress",
        *small,
    ])  # fmt: skip
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    # Ten well-separated classes: chance is 0.1; measured 1.0 for both after 12 iterations.
    assert s["task"] == "classify" and s["test_accuracy"] >= 0.9 > s["initial_test_accuracy"]
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow  # about 30-40 s (several spawned runs); `python -m pytest -m slow`
def test_compare_classify_tabulates_accuracy(tmp_path: Path) -> None:
    data = _usps_file(tmp_path / "usps.mat")
    out = tmp_path / "cmp"
    rc = main([
        "compare", "--config", "classify-usps", "--data-path", str(data), "--methods", "shf-lsmr,adam",
        "--budget", "1.5", "--set", "optimizer.n1=50", "--set", "optimizer.n_max=150", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0
    rec = json.loads((out / "compare.json").read_text())
    assert rec["task"] == "classify" and [r["method"] for r in rec["rows"]] == ["shf-lsmr", "adam"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rec["rows"])
    assert "test accuracy" in (out / "compare.md").read_text() and (out / "compare.png").is_file()


def test_classify_refuses_unlabelled_data_and_runs_martens_hf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--task", "classify", "--max-iters", "1", "--out", str(tmp_path / "a")]) != 0
    assert "classification needs labels" in capsys.readouterr().err
    data = _usps_file(tmp_path / "usps.mat")
    rc = main([
        "train", "--config", "classify-usps", "--data-path", str(data), "--method", "martens-hf",
        "--max-iters", "3", "--set", "hf.maxiter=20", "--out", str(tmp_path / "b"), "--no-progress",
    ])  # fmt: skip
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert rc == 0 and s["method"] == "martens-hf" and s["val_error"] < s["initial_val_error"]
