"""`shf compare` on a tiny problem: every method runs, the table and figure are written."""

from __future__ import annotations

import json

import pytest

from shf.cli import main
from shf.experiments.compare import UNCAPPED_ITERS, markdown


def test_compare_tiny(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "shf-lsmr,martens-hf,adam", "--budget", "1.5", "--out", str(out),
            "--encoder", "784,16,6", "--set", "data.n_train=200", "--set", "data.n_val=60",
            "--set", "data.n_test=60", "--set", "optimizer.n1=40", "--set", "run.threads=1",
            "--sweep-fraction", "0.2", "--set", "first_order.batch_size=50",
            "--lrs", "3e-3,1e-2"]  # fmt: skip
    assert main(args) == 0
    rec = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in rec["rows"]] == ["shf-lsmr", "martens-hf", "adam"]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "| method | best val |" in (out / "compare.md").read_text()
    # The default target is the worst final test error, so every method reaches it.
    assert rec["target_test_error"] == max(r["test_error"] for r in rec["rows"])
    assert all(r["time_to_target_s"] is not None for r in rec["rows"])
    assert all(r["peak_rss_mb"] > 50 for r in rec["rows"])  # a Python + torch process
    # A fair Adam: every objective SHF may use, at every rate; the best validation error wins,
    # and the table names the pair
    sweep = rec["lr_sweeps"]["adam"]
    assert [(t["loss"], t["lr"]) for t in sweep] == [
        ("squared", 3e-3), ("squared", 1e-2), ("cross_entropy", 3e-3), ("cross_entropy", 1e-2)
    ]
    best = min(sweep, key=lambda t: t["val_error"])
    adam = rec["rows"][2]
    assert (adam["objective"], adam["lr"]) == (best["loss"], best["lr"])
    assert f"adam (lr {best['lr']:g}, on {best['loss']})" in (out / "compare.md").read_text()
    stored = json.loads((out / "runs" / "adam" / "config.json").read_text())
    assert (stored["model"]["loss"], stored["first_order"]["lr"]) == (best["loss"], best["lr"])
    assert rec["rows"][0]["objective"] == "cross_entropy"  # the default preset's (B9)
    # Martens HF trains on cross-entropy by default; its metrics show CG and backtracking.
    hf = [
        json.loads(line) for line in (out / "runs" / "martens-hf" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all("cg_chosen_iteration" in r for r in hf)


def test_compare_rejects_unknown_method(tmp_path, capsys):
    assert main(["compare", "--methods", "lbfgs", "--out", str(tmp_path)]) == 2
    assert "unknown method 'lbfgs'" in capsys.readouterr().err


def test_markdown_handles_unreached_target():
    rec = {"dataset": "d", "encoder": [4, 2], "seed": 0, "budget_s": 1.0, "target_test_error": 0.1,
           "hf_loss": "squared", "rows": [{"method": "adam", "best_val_error": 1.0, "train_error": 1.0,
           "test_error": 1.0, "train_error_no_half": 2.0, "test_error_no_half": 2.0, "time_to_target_s": None,
           "examples_processed": 10, "peak_rss_mb": None, "iterations": 1, "lr": 0.001}]}  # fmt: skip
    md = markdown(rec)
    assert "| adam (lr 0.001) |" in md and "—" in md


@pytest.mark.parametrize("budget", ["0", "-1"])
def test_compare_budget_must_be_positive(budget, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--budget", budget])


@pytest.mark.slow  # about 30-40 s (several spawned runs); `python -m pytest -m slow`
def test_compare_over_seeds_with_a_target_from_a_method(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "shf-lsmr,adam", "--budget", "1.0", "--out", str(out), "--seeds", "0,1",
            "--target-from", "adam", "--encoder", "784,16,6", "--set", "data.n_train=200",
            "--set", "data.n_val=60", "--set", "data.n_test=60", "--set", "optimizer.n1=40",
            "--sweep-fraction", "0.2", "--set", "first_order.batch_size=50", "--baseline-losses", "squared",
            "--lrs", "1e-3,1e-2"]  # fmt: skip
    assert main(args) == 0
    rec = json.loads((out / "compare.json").read_text())
    adam = next(r for r in rec["rows"] if r["method"] == "adam")
    assert rec["seeds"] == [0, 1] and [s["seed"] for s in adam["seeds"]] == [0, 1]
    assert rec["target_val_error"] == pytest.approx(sum(s["best_val_error"] for s in adam["seeds"]) / 2)
    assert adam["best_val_error"] == pytest.approx(rec["target_val_error"])
    if adam["time_to_target_s"] is not None:
        assert adam["time_to_target_ratio"] == pytest.approx(1.0)
    assert (out / "runs" / "shf-lsmr-seed1" / "summary.json").is_file()
    md = (out / "compare.md").read_text()
    assert "time / adam's" in md and "95% t-interval" in md
    # the goals' ratios pair the seeds: each method's test error over Adam's on the same seed
    shf = next(r for r in rec["rows"] if r["method"] == "shf-lsmr")
    ratios = [a["test_error"] / b["test_error"] for a, b in zip(shf["seeds"], adam["seeds"])]
    assert shf["over_seeds"]["test_ratio"]["mean"] == pytest.approx(sum(ratios) / 2)
    assert shf["over_seeds"]["test_ratio"]["n"] == 2 and "test / adam's" in md
    assert adam["over_seeds"]["test_ratio"]["mean"] == pytest.approx(1.0)
    cfg = json.loads((out / "runs" / "adam-seed0" / "config.json").read_text())
    assert cfg["run"]["threads"] == 1 and cfg["run"]["seed"] == 0 and cfg["data"]["seed"] == 0


@pytest.mark.slow  # about 30-40 s (several spawned runs); `python -m pytest -m slow`
def test_whole_budget_sweep_reuses_the_chosen_rate_and_tuned_overlays(tmp_path, capsys):
    """With --sweep-fraction 1 (the default) the chosen rate's sweep run is seed 0's run (no rerun),
    the rate chosen is the one with the best validation error reached, shf-tuned runs SHF-LSMR
    with the TUNED overlay, and the band figure is written."""
    from shf.optim.hyper import TUNED

    out = tmp_path / "cmp"
    args = ["compare", "--methods", "shf-tuned,adam", "--budget", "1.0", "--out", str(out), "--seeds", "0,1",
            "--target-from", "adam", "--encoder", "784,16,6", "--set", "data.n_train=200",
            "--set", "data.n_val=60", "--set", "data.n_test=60", "--set", "optimizer.n1=40",
            "--lrs", "1e-3,1e-2", "--set", "first_order.batch_size=50", "--set", "run.max_iters=2",
            "--baseline-losses", "squared",
            "--eval-every", "3"]  # fmt: skip
    assert main(args) == 0
    rec = json.loads((out / "compare.json").read_text())
    adam = next(r for r in rec["rows"] if r["method"] == "adam")
    sweep = rec["lr_sweeps"]["adam"]
    best = min(sweep, key=lambda t: t["val_error"])
    assert [t["lr"] for t in sweep] == [1e-3, 1e-2] and adam["lr"] == best["lr"]
    assert adam["seeds"][0]["best_val_error"] == best["val_error"]  # the sweep's run, not a new one
    assert not (out / "runs" / "adam-seed0").exists() and (out / "runs" / "adam-seed1").is_dir()
    cfg = json.loads((out / "runs" / "shf-tuned-seed1" / "config.json").read_text())
    assert all(cfg["optimizer"][k] == v for k, v in TUNED.items())
    assert cfg["model"]["loss"] == "cross_entropy"  # B9: the autoencoder's new objective
    assert json.loads((out / "runs" / "shf-tuned-seed1" / "run.json").read_text())["method"] == "shf-lsmr"
    assert (out / "compare-bands.png").read_bytes()[:4] == b"\x89PNG"
    # The budget, not the configuration's iteration cap (here set to 2), ends every run.
    assert cfg["run"]["max_iters"] == UNCAPPED_ITERS and cfg["run"]["eval_every"] == 3
    assert json.loads((out / "runs" / "adam-seed1" / "summary.json").read_text())["hf_iterations"] > 2


def test_a_key_the_user_sets_wins_over_the_tuned_overlay(tmp_path):
    """`--methods shf-tuned --set optimizer.lambda_min=0.02` runs TUNED with that floor (the overlay
    sets only the keys the user did not), and `--set model.loss=squared` keeps the squared error."""
    from shf.optim.hyper import TUNED

    out = tmp_path / "cmp"
    args = ["compare", "--methods", "shf-tuned", "--budget", "0.5", "--out", str(out),
            "--encoder", "784,16,6",
            "--set", "data.n_train=200", "--set", "data.n_val=60", "--set", "data.n_test=60",
            "--set", "optimizer.n1=40", "--set", "optimizer.lambda_min=0.02", "--set", "model.loss=squared",
            "--set", "run.max_iters=2"]  # fmt: skip
    assert main(args) == 0
    cfg = json.loads((out / "runs" / "shf-tuned" / "config.json").read_text())
    assert cfg["optimizer"]["lambda_min"] == 0.02 != TUNED["lambda_min"]
    assert all(cfg["optimizer"][k] == v for k, v in TUNED.items() if k != "lambda_min")
    assert cfg["model"]["loss"] == "squared"


def test_the_tuned_settings_run_with_the_solver_the_user_names(tmp_path):
    """`--methods shf-tuned --set optimizer.solver=cg` runs CG with the tuned settings (item 5's
    LSMR-against-CG ablation on the defaults), not LSMR under another name."""
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "shf-tuned", "--budget", "0.5", "--out", str(out),
            "--encoder", "784,16,6", "--set", "data.n_train=200", "--set", "data.n_val=60",
            "--set", "data.n_test=60", "--set", "optimizer.n1=40", "--set", "optimizer.solver=cg",
            "--set", "run.max_iters=2"]  # fmt: skip
    assert main(args) == 0
    run = out / "runs" / "shf-tuned"
    assert json.loads((run / "summary.json").read_text())["method"] == "shf-cg"
    assert json.loads((run / "config.json").read_text())["optimizer"]["solver"] == "cg"


def test_one_seed_given_is_the_seed_run(tmp_path):
    """`--seeds 1` alone runs seed 1 (for the first-order sweep and every other method), not the
    configuration's own seed 0."""
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "shf-lsmr,adam", "--budget", "0.5", "--out", str(out), "--seeds", "1",
            "--encoder", "784,16,6", "--set", "data.n_train=200", "--set", "data.n_val=60",
            "--set", "data.n_test=60", "--set", "optimizer.n1=40", "--lrs", "1e-3",
            "--set", "run.max_iters=2", "--baseline-losses", "squared"]  # fmt: skip
    assert main(args) == 0
    for d in (out / "runs" / "shf-lsmr", out / "sweep" / "adam-squared-lr0.001"):
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["run"]["seed"] == 1 and cfg["data"]["seed"] == 1, d
        assert json.loads((d / "summary.json").read_text())["seed"] == 1


def test_time_bands_are_the_best_so_far_over_runs(tmp_path):
    """The band figure's data: the best-so-far step function of each run on a common grid."""
    from shf.plots import _best_so_far

    xs, ys = _best_so_far([{"time_s": 1, "val_error": 3.0}, {"time_s": 2, "val_error": 4.0},
                           {"time_s": 3, "val_error": 1.0}], "val_error")  # fmt: skip
    assert xs == [1.0, 2.0, 3.0] and ys == [3.0, 3.0, 1.0]


def test_time_bands_hold_a_finished_runs_best_so_the_mean_never_rises():
    """A run that stops early (its best the lowest) keeps its final best on the rest of the grid,
    so the mean of best-so-far curves over runs is non-increasing; before a run's first record
    it has no value."""
    import numpy as np

    from shf.plots import _best_on_grid

    early = ([1.0, 2.0], [2.0, 1.0])  # stops at t = 2 with the lower best
    late = ([1.5, 4.0], [5.0, 3.0])
    grid = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    vals = _best_on_grid([early, late], grid)
    assert np.isnan(vals[0, 0]) and np.isnan(vals[1, 0]) and np.isnan(vals[1, 1])
    np.testing.assert_array_equal(vals[0, 1:], [2.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(vals[1, 2:], [5.0, 5.0, 3.0])
    mean = np.nanmean(vals[:, 1:], axis=0)
    assert np.all(np.diff(mean[1:]) <= 0), mean  # from the time both runs have values


def test_report_only_tabulates_finished_runs_and_runs_nothing(tmp_path, capsys):
    """--report-only: the finished runs of the same configuration make the table (a method over the
    seeds it finished); nothing new runs, a missing seed is left out, an empty --out is an error."""
    out = tmp_path / "cmp"
    common = ["compare", "--budget", "1.0", "--out", str(out), "--encoder", "784,16,6",
              "--set", "data.n_train=200", "--set", "data.n_val=60", "--set", "data.n_test=60",
              "--set", "optimizer.n1=40", "--lrs", "1e-3", "--set", "first_order.batch_size=50",
              "--baseline-losses", "squared"]  # fmt: skip
    assert main([*common, "--methods", "adam", "--report-only", "--seeds", "0,1"]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert main([*common, "--methods", "shf-lsmr,adam", "--seeds", "0,1"]) == 0
    before = sorted(p.name for p in (out / "runs").iterdir())
    args = [*common, "--methods", "shf-lsmr,adam", "--seeds", "0,1,2", "--report-only",
            "--target-from", "adam"]
    assert main(args) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == before  # nothing ran
    rec = json.loads((out / "compare.json").read_text())
    assert {r["method"]: [s["seed"] for s in r["seeds"]] for r in rec["rows"]} == {
        "shf-lsmr": [0, 1], "adam": [0, 1]
    }  # fmt: skip


def _one_second_run(tmp_path) -> tuple:
    """A tiny shf-lsmr compare run of 1 s (a checkpoint every iteration): its directory, the
    command's arguments without ``--budget``, and its summary."""
    out = tmp_path / "cmp"
    common = ["compare", "--methods", "shf-lsmr", "--out", str(out), "--encoder", "784,16,6",
              "--set", "data.n_train=200", "--set", "data.n_val=60", "--set", "data.n_test=60",
              "--set", "optimizer.n1=40", "--set", "run.checkpoint_every=1"]  # fmt: skip
    assert main([*common, "--budget", "1.0"]) == 0
    run = out / "runs" / "shf-lsmr"
    return run, common, json.loads((run / "summary.json").read_text())


def test_a_longer_budget_extends_runs_stopped_by_time_and_reuses_the_others(tmp_path, capsys):
    """A compare rerun with a longer budget continues each run that stopped on the old budget from
    its last checkpoint (its earlier iterations kept, not rerun) and reuses a run that stopped
    before the old budget for another reason (here patience)."""
    run, common, first = _one_second_run(tmp_path)
    before = (run / "metrics.jsonl").read_text().splitlines()
    assert first["stop_reason"] == "max_time"
    assert main([*common, "--budget", "2.0"]) == 0
    second = json.loads((run / "summary.json").read_text())
    after = (run / "metrics.jsonl").read_text().splitlines()
    assert second["resumed_from_iteration"] >= first["hf_iterations"] - 1
    assert second["hf_iterations"] > first["hf_iterations"] and second["optimizer_time_s"] > 1.9
    k = second["resumed_from_iteration"]
    assert after[:k] == before[:k]  # the iterations up to the checkpoint are the first run's
    assert json.loads((run / "config.json").read_text())["run"]["max_time"] == 2.0


def test_an_extension_killed_before_its_summary_is_resumed_not_reused(tmp_path):
    """An extension to a longer budget rewrites config.json first; killed before it writes its own
    summary, the directory holds the longer budget's configuration beside the shorter run's summary.
    A rerun must continue the run to the longer budget, not take the old summary as finished."""
    from shf import config as cfgmod
    from shf.experiments.run import is_finished

    run, common, first = _one_second_run(tmp_path)
    stored = json.loads((run / "config.json").read_text())
    stored["run"]["max_time"] = 2.0  # what the killed extension left: the new budget, the old summary
    (run / "config.json").write_text(json.dumps(stored))
    assert not is_finished(first, cfgmod.load("curves", ["run.max_time=2.0"]))
    assert is_finished(first, cfgmod.load("curves", ["run.max_time=1.0"]))
    assert main([*common, "--budget", "2.0"]) == 0
    second = json.loads((run / "summary.json").read_text())
    assert second["optimizer_time_s"] > 1.9 and second["hf_iterations"] > first["hf_iterations"]
    assert second["resumed_from_iteration"] >= first["hf_iterations"] - 1


def test_a_run_from_before_a_new_option_is_the_same_configuration_at_its_default():
    """A stored config.json from before an option existed (here B10's optimizer.weight_cost) is the
    run of that option's default: not a difference at the default, a difference at another value."""
    from shf import config as cfgmod
    from shf.experiments.run import config_differences

    cfg = cfgmod.load("usps", ["run.max_time=900"])
    stored = cfg.to_dict()
    del stored["optimizer"]["weight_cost"]
    assert config_differences(stored, cfg) == []
    with_cost = cfgmod.load("usps", ["run.max_time=900", "optimizer.weight_cost=2e-5"])
    assert config_differences(stored, with_cost) == ["optimizer.weight_cost"]
    assert config_differences(stored, cfgmod.load("usps", ["run.max_time=1800"])) == ["run.max_time"]


def test_keys_a_run_does_not_read_are_no_difference():
    """A run's identity is what it reads: an [optimizer] key that both configurations' parts ignore
    (B24's rule without a weight cost) is no difference; nor is an [optimizer] key for Adam, but for
    the initialisation it shares with SHF (m0, sigma). A run stored without B24's key was made
    before the rules existed, with the constant weight cost."""
    from shf import config as cfgmod
    from shf.experiments.run import config_differences

    paper = cfgmod.load("usps", ["run.max_time=900"])  # the paper's settings: no weight cost
    old = paper.to_dict()
    old["optimizer"]["weight_cost_rule"] = "constant"
    assert paper.optimizer.weight_cost_rule == "per-example-floor"
    assert config_differences(old, paper) == []  # c = 0 by every rule
    tuned = cfgmod.load("default")  # a weight cost: the rule is read
    old = tuned.to_dict()
    old["optimizer"]["weight_cost_rule"] = "constant"
    assert config_differences(old, tuned) == ["optimizer.weight_cost_rule"]
    assert config_differences(old, tuned, "shf-lsmr") == ["optimizer.weight_cost_rule"]
    assert config_differences(old, tuned, "adam") == []
    old["optimizer"]["sigma"] = 1.0
    assert config_differences(old, tuned, "adam") == ["optimizer.sigma"]
    del old["optimizer"]["weight_cost_rule"]  # made before B16's rules: the constant
    constant = cfgmod.load("default", ["optimizer.weight_cost_rule=constant", "optimizer.sigma=1.0"])
    assert config_differences(old, constant, "shf-lsmr") == []


def test_budget_change_reuses_early_stops_and_extends_time_stops(tmp_path):
    from shf import config as cfgmod
    from shf.experiments.run import EXTEND, REUSE, budget_change

    cfg = cfgmod.load("usps", ["run.max_time=1800"])
    stored = {"run": {"max_time": 900.0}}
    diff = ["run.max_time"]
    early = {"stop_reason": "patience", "optimizer_time_s": 726.0}
    assert budget_change(diff, stored, early, cfg, tmp_path) == REUSE
    assert budget_change(diff, stored, {**early, "optimizer_time_s": 1900.0}, cfg, tmp_path) is None
    timed = {"stop_reason": "max_time", "optimizer_time_s": 900.2}
    assert budget_change(diff, stored, timed, cfg, tmp_path) is None  # no checkpoint to continue from
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert budget_change(diff, stored, timed, cfg, tmp_path) == EXTEND
    assert budget_change(diff, {"run": {"max_time": 3600.0}}, timed, cfg, tmp_path) is None  # shorter
    assert budget_change(["optimizer.n1", "run.max_time"], stored, early, cfg, tmp_path) is None
    assert budget_change(diff, stored, {**timed, "stop_reason": "interrupted"}, cfg, tmp_path) is None


def test_an_optimizer_key_for_shf_tuned_alone_is_checked_over_tuned(tmp_path, capsys):
    """Over a paper preset (``lambda_min = 0``), `--methods shf-tuned --set optimizer.curvature_size=60`
    runs TUNED with that curvature batch: the key is validated over TUNED's floor, not refused on the
    preset; the first-order methods keep the preset's [optimizer]. With shf-lsmr also compared the key
    is the paper preset's, and is refused with one line."""
    from shf.optim.hyper import TUNED

    out = tmp_path / "cmp"
    common = ["--config", "curves", "--budget", "0.5", "--encoder", "784,16,6", "--lrs", "1e-3",
              "--set", "data.n_train=200", "--set", "data.n_val=60", "--set", "data.n_test=60",
              "--set", "optimizer.n1=40", "--set", "optimizer.curvature_size=60",
              "--set", "run.max_iters=2", "--baseline-losses", "squared"]  # fmt: skip
    assert main(["compare", "--methods", "shf-tuned,adam", "--out", str(out), *common]) == 0
    cfg = json.loads((out / "runs" / "shf-tuned" / "config.json").read_text())
    assert cfg["optimizer"]["curvature_size"] == 60 and cfg["optimizer"]["n1"] == 40
    assert all(cfg["optimizer"][k] == v for k, v in TUNED.items() if k != "curvature_size")
    adam = json.loads((out / "sweep" / "adam-squared-lr0.001" / "config.json").read_text())
    assert adam["optimizer"]["lambda_min"] == 0 and adam["optimizer"]["curvature_size"] is None
    assert main(["compare", "--methods", "shf-lsmr,shf-tuned", "--out", str(tmp_path / "both"), *common]) == 2
    assert "curvature_size needs lambda_min > 0" in capsys.readouterr().err


def test_a_method_stopped_by_a_signal_is_named_and_called_resumable(tmp_path, monkeypatch):
    """A child ended by SIGTERM says so in one line, under the name the user gave (shf-tuned, which
    runs as shf-lsmr), and that rerunning resumes it."""
    import shf.experiments.compare as cmp
    from shf import config as cfgmod
    from shf.errors import ConfigError

    class Stopped:
        exitcode = -15
        pid = 4_000_000  # above Linux's pid_max: nothing is ever signalled

        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            pass

        def start(self) -> None:
            pass

        def join(self) -> None:
            pass

    class Ctx:
        Process = Stopped

        @staticmethod
        def SimpleQueue() -> None:  # the context's factory of queues
            return None

    monkeypatch.setattr(cmp.mp, "get_context", lambda kind: Ctx())
    with pytest.raises(ConfigError, match=r"shf-tuned was stopped by signal 15; run the same command again"):
        cmp.run_method(cfgmod.load("default"), "shf-lsmr", tmp_path / "r", label="shf-tuned")


def test_sigterm_stops_the_method_with_a_checkpoint_and_the_same_command_resumes_it(tmp_path):
    """`shf compare` sent SIGTERM (or Ctrl-C) mid-run: the method's child stops after its current
    iteration with a checkpoint and an "interrupted" summary, the comparison ends with 143 and a
    one-line message, and the same command continues the run from there to its budget."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "shf.cli", "compare", "--methods", "shf-lsmr", "--budget", "3",
           "--out", str(out), "--encoder", "784,16,6", "--set", "data.n_train=200",
           "--set", "data.n_val=60", "--set", "data.n_test=60", "--set", "optimizer.n1=40",
           "--set", "run.threads=1", "--set", "run.checkpoint_every=1000"]  # fmt: skip
    run = out / "runs" / "shf-lsmr"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert b"method shf-lsmr was interrupted after iteration" in err
    assert b"run the same command again to resume it" in err and b"Traceback" not in err
    s = json.loads((run / "summary.json").read_text())
    # checkpoint_every is larger than the run: the checkpoint is the one the stop wrote.
    assert s["stop_reason"] == "interrupted" and (run / "checkpoint.pt").is_file()
    before = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(before) == s["hf_iterations"] >= 3
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(after) > len(before)
    assert [r["val_error"] for r in after[: len(before)]] == [r["val_error"] for r in before]
    assert json.loads((run / "summary.json").read_text())["stop_reason"] != "interrupted"
    assert (out / "compare.json").is_file()


@pytest.mark.parametrize(
    ("exitcode", "stop_reason", "stale", "message"),
    [
        (143, "interrupted", False, r"shf-tuned was interrupted after iteration 7, with a checkpoint; run"),
        (143, "interrupted", True, r"shf-tuned was interrupted after iteration 7, with a checkpoint; run"),
        (0, "max_time", False, r"shf-tuned finished as the stop arrived; run the same command again"),
        (130, None, False, r"shf-tuned was interrupted at once \(aborted"),
        # aborted while resuming an earlier interrupted run: that run's summary is not this one's
        (130, None, True, r"shf-tuned was interrupted at once \(aborted"),
    ],
)
def test_a_stop_while_a_method_runs_ends_the_comparison_resumably(tmp_path, monkeypatch, exitcode,
                                                                   stop_reason, stale, message):  # fmt: skip
    """SIGTERM reaching the parent while it waits: the child is asked to stop (here a fake that
    writes the summary the real one would), and the comparison ends with 128 + the signal and a
    message that says what was kept, even when the child had just finished. ``stale``: an earlier
    interrupted run's summary (iteration 3) is there before the child starts."""
    import os
    import signal

    import shf.experiments.compare as cmp
    from shf import config as cfgmod
    from shf.errors import InterruptedRunError

    out = tmp_path / "r"
    if stale:
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"stop_reason": "interrupted", "hf_iterations": 3}))

    class Child:
        pid = 4_000_000  # above Linux's pid_max: the forwarded signal reaches nobody

        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            self.exitcode: int | None = None

        def start(self) -> None:
            pass

        def join(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the user stops the comparison meanwhile
            out.mkdir(parents=True, exist_ok=True)
            if stop_reason is not None:
                summary = {"stop_reason": stop_reason, "hf_iterations": 7}
                (out / "summary.json").write_text(json.dumps(summary))
            self.exitcode = exitcode

    class Ctx:
        Process = Child

        @staticmethod
        def SimpleQueue() -> None:  # the context's factory of queues
            return None

    monkeypatch.setattr(cmp.mp, "get_context", lambda kind: Ctx())
    with pytest.raises(InterruptedRunError, match=message) as e:
        cmp.run_method(cfgmod.load("default"), "shf-lsmr", out, label="shf-tuned")
    assert e.value.exit_code == exitcode if exitcode else e.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the parent's handler is removed


def test_a_setting_the_method_refuses_is_one_line_from_the_comparison_not_the_child_s_traceback(
    tmp_path, capsys
):
    """The method's own check runs in the child process; its message reaches the user as the
    comparison's error (exit 2), not as a traceback and a pointer to the run folder."""
    args = ["compare", "--methods", "shf-lsmr", "--budget", "1", "--out", str(tmp_path / "cmp"),
            "--encoder", "784,8,4", "--set", "data.n_train=100", "--set", "data.n_val=40",
            "--set", "data.n_test=40", "--set", "run.threads=1", "--set", "optimizer.solver=cg"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "method shf-lsmr: method shf-lsmr with optimizer.solver = 'cg'" in err
    assert "run method shf-cg" in err
    assert "Traceback" not in err


def test_the_weight_decay_is_swept_at_the_chosen_rate_and_the_best_wins(tmp_path):
    """--weight-decays: after the rates (and objectives), each decay at the chosen rate and objective
    is one more sweep run on the first seed; the best validation error over all of them wins (the
    configuration's decay 0 among them), the chosen run is seed 0's and seed 1 runs its settings."""
    out = tmp_path / "cmp"
    args = ["compare", "--methods", "adam", "--budget", "0.5", "--out", str(out), "--seeds", "0,1",
            "--encoder", "784,16,6", "--set", "data.n_train=200", "--set", "data.n_val=60",
            "--set", "data.n_test=60", "--set", "first_order.batch_size=50", "--lrs", "1e-3,1e-2",
            "--baseline-losses", "squared,cross_entropy", "--weight-decays", "1e-4,3e-1"]  # fmt: skip
    assert main(args) == 0
    rec = json.loads((out / "compare.json").read_text())
    sweep = rec["lr_sweeps"]["adam"]
    rates = sweep[:4]
    assert [t["weight_decay"] for t in rates] == [0.0] * 4
    first = min(rates, key=lambda t: t["val_error"])
    assert [(t["loss"], t["lr"], t["weight_decay"]) for t in sweep[4:]] == [
        (first["loss"], first["lr"], 1e-4), (first["loss"], first["lr"], 3e-1)
    ]
    best = min(sweep, key=lambda t: t["val_error"])
    adam = rec["rows"][0]
    chosen = (best["loss"], best["lr"], best["weight_decay"])
    assert (adam["objective"], adam["lr"], adam["weight_decay"]) == chosen
    assert adam["seeds"][0]["best_val_error"] == best["val_error"]  # the sweep's run, not a new one
    stored = json.loads((out / "runs" / "adam-seed1" / "config.json").read_text())
    fo = stored["first_order"]
    assert (stored["model"]["loss"], fo["lr"], fo["weight_decay"]) == chosen
    run = out / "sweep" / f"adam-{first['loss']}-lr{first['lr']:g}-wd0.3"
    decayed = json.loads((run / "config.json").read_text())
    assert decayed["first_order"]["weight_decay"] == 0.3 and decayed["first_order"]["lr"] == first["lr"]
    assert "weight decay 0.3" in (out / "compare.md").read_text()


def test_weight_decays_must_be_positive_numbers(capsys):
    args = ["compare", "--methods", "adam", "--budget", "1", "--out", "x", "--weight-decays", "1e-4,-1"]
    assert main(args) != 0
    assert "--weight-decays must be positive numbers" in capsys.readouterr().err
