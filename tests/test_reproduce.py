"""Table 2 aggregation and the reproduce command on a tiny configuration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from shf.cli import main
from shf.errors import ConfigError
from shf.experiments import reproduce as rp


def test_stats_match_scipy_t_interval():
    x = [0.21, 0.25, 0.19, 0.23]
    st = rp.stats(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert st["mean"] == pytest.approx(np.mean(x), rel=1e-14)
    assert st["std"] == pytest.approx(np.std(x, ddof=1), rel=1e-14)
    assert (st["ci95_low"], st["ci95_high"]) == pytest.approx((lo, hi), rel=1e-12)
    one = rp.stats([0.3])
    assert one["mean"] == 0.3 and one["std"] is None and one["ci95_low"] is None


def _fake_run(root, name, seed, train, test):
    d = root / f"{name}-seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(
        json.dumps(
            {
                "name": name,
                "dataset": "USPS (9298)",
                "seed": seed,
                "train_error": train,
                "test_error": test,
                "hf_iterations": 10,
                "optimizer_time_s": 5.0,
                "sizes": {"train": 6762, "val": 845, "test": 1691},
            }
        )
    )
    (d / "config.json").write_text(json.dumps({"run": {"max_time": 900.0}}))
    return d


def test_table_has_paper_numbers_and_intervals(tmp_path):
    dirs = [_fake_run(tmp_path, "usps", s, 1.0 + 0.1 * s, 2.0 + 0.1 * s) for s in range(3)]
    md, rec = rp.table(rp.collect(dirs))
    assert "| USPS: USPS (9298) (6762/845/1691) | 3 | 900 s | 10 |" in md
    assert "0.999 / 1.947" in md and "1.007 / 1.961" in md
    assert rec["usps"]["test_error"]["mean"] == pytest.approx(2.1)
    assert rec["usps"]["seeds"] == [0, 1, 2]
    half = sps.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert rec["usps"]["train_error"]["ci95_high"] == pytest.approx(1.1 + half)


def test_mnist_source_choice():
    assert rp.mnist_source("mnist-t10k") == "mnist-t10k"
    assert rp.mnist_source("auto") in ("mnist", "fashion-mnist", "mnist-t10k")
    with pytest.raises(ConfigError, match="mnist source must be one of"):
        rp.mnist_source("emnist")


def test_reproduce_command_tiny(tmp_path, capsys):
    args = ["reproduce", "table2", "--datasets", "usps", "--seeds", "0,1", "--max-time", "2",
            "--out", str(tmp_path), "--no-progress", "--set", "data.n_train=300", "--set", "run.max_iters=2",
            "--set", "optimizer.n1=50"]  # fmt: skip
    args += ["--set", "data.path=" + json.dumps(str(_usps_file(tmp_path)))]
    assert main(args) == 0
    for f in ("table2.md", "table2.json", "fig2-usps.png", "fig3-usps.png"):
        assert (tmp_path / f).is_file(), f
    rec = json.loads((tmp_path / "table2.json").read_text())
    assert rec["usps"]["seeds"] == [0, 1]
    mtime = (tmp_path / "runs" / "usps-seed0" / "summary.json").stat().st_mtime
    assert main(args) == 0  # finished runs are not run again
    assert (tmp_path / "runs" / "usps-seed0" / "summary.json").stat().st_mtime == mtime
    assert main(["reproduce", "table2", "--out", str(tmp_path), "--report-only"]) == 0
    capsys.readouterr()
    assert main(["reproduce", "table2", "--out", str(tmp_path / "empty"), "--report-only"]) == 2
    assert "no runs under" in capsys.readouterr().err


def _usps_file(tmp_path):
    """A small file in the 9,298-image layout (uint8 pixels, label column 1..10)."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    table = np.concatenate([rng.integers(0, 256, (440, 256)), rng.integers(1, 11, (440, 1))], axis=1)
    p = tmp_path / "usps_small.mat"
    savemat(p, {"usps_all": table.astype(np.uint8)})
    return p
