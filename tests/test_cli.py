"""`shf train` end to end on a tiny configuration, and its error messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shf.cli import main

TINY = [
    "--set", "data.n_train=200", "--set", "data.n_val=60", "--set", "data.n_test=60",
    "--encoder", "784,32,6", "--max-iters", "4", "--no-progress", "--dtype", "float64",
    "--set", "optimizer.n1=40", "--set", "optimizer.maxiter1=20",
]  # fmt: skip


def test_train_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "errors (paper scale" in printed and "test" in printed
    for f in ("config.json", "env.json", "metrics.jsonl", "weights.pt", "summary.json"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    for k in ("train_error", "val_error", "test_error", "train_error_no_half", "val_error_no_half",
              "test_error_no_half", "initial_test_error", "hf_iterations", "wall_time_s"):  # fmt: skip
        assert k in summary, k
    assert summary["hf_iterations"] == 4
    assert summary["test_error_no_half"] == pytest.approx(2 * summary["test_error"])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    rec = json.loads(lines[0])
    for k in ("n", "lam", "gamma", "solver_iterations", "solver_stop", "step", "rho", "val_error", "time_s"):
        assert k in rec, k
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["encoder"] == [784, 32, 6] and cfg["run"]["max_iters"] == 4


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--set", "optimizer.drop=1.5"], r"drop must be in \(0, 1\)"),
        (["--set", "optimizer.lambda1=-2"], "lambda1 must be in"),
        (["--encoder", "256,30"], "the data have 784 features but the network's input layer has 256"),
        (["--set", "optimizer.bogus=1"], r"unknown key\(s\) in \[optimizer\]: bogus"),
        (["--data", "/nonexistent/x.npy"], "data file not found: /nonexistent/x.npy"),
    ],
)
def test_bad_input_gives_clear_error(tmp_path, capsys, args, match):
    import re

    code = main(["train", "--out", str(tmp_path / "r"), *TINY, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_bad_flag_values(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--encoder", "784,x"])
    assert e.value.code == 2
    assert "--encoder must be comma-separated integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--max-time", "-3"])
    assert "expected a positive number" in capsys.readouterr().err


def test_cuda_requested_without_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["train", "--out", str(tmp_path / "r"), *TINY, "--device", "cuda"]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err


def test_train_on_own_csv_with_label_column(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(80, 16))
    path = tmp_path / "mine.csv"
    header = "label," + ",".join(f"p{i}" for i in range(16))
    rows = [f"{i % 10}," + ",".join(map(str, r)) for i, r in enumerate(X)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    args = ["train", "--data", str(path), "--label-column", "label", "--encoder", "16,8,3", "--out", str(out)]
    args += ["--max-iters", "3", "--no-progress", "--set", "optimizer.n1=20", "--set", "optimizer.m0=4"]
    # Without --scale-255 the 0..255 values are refused with a hint.
    assert main(args) == 2
    assert "--scale-255" in capsys.readouterr().err
    assert main([*args, "--scale-255"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sizes"] == {"train": 64, "val": 8, "test": 8}
    assert summary["hf_iterations"] == 3


def test_wrong_width_suggests_encoder(tmp_path, capsys):
    import numpy as np

    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random((40, 10)))
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the data have 10 features but the network's input layer has 784" in err
    assert "--encoder 10," in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "a.npy", "--data-path", "b"], "not both"),
        (["--dataset", "usps", "--scale-255"], "--scale-255 apply to your own file"),
        (["--dataset", "curves", "--fractions", "0.8,0.1,0.1"], "--fractions apply"),
        (["--set", "run.seed=1", "--seed", "2"], "run.seed set both by --set and by a flag"),
        (["--set", "run.seed=-1"], "run.seed must be a non-negative integer"),
        (["--data-path", "/nonexistent/digs3pts_1.mat", "--max-iters", "1"], "CURVES file .* not found"),
    ],
)
def test_conflicting_or_ignored_inputs_are_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


def test_a_preset_s_split_sizes_do_not_leak_onto_another_data_set() -> None:
    from shf import config as cfgmod

    cfg = cfgmod.load("mnist", ["data.dataset=mnist-t10k"])
    assert (cfg.data.n_train, cfg.data.n_val, cfg.data.n_test) == (None, None, None)
    cfg = cfgmod.load("mnist", ["data.dataset=mnist-t10k", "data.n_train=100"])
    assert cfg.data.n_train == 100 and cfg.data.n_val is None
    assert cfgmod.load("mnist").data.n_train == 50000


def test_bad_files_and_lists_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "c.toml"
    binary.write_bytes(bytes(range(256)))
    cases = [
        (["train", "--config", str(binary)], "not a text"),
        (["compare", "--methods", ",", "--out", str(tmp_path / "c")], "names no method"),
        (
            ["train", "--set", "optimizer.sigma=1e300", "--max-iters", "1", "--out", str(tmp_path / "s")],
            "overflow",
        ),
        (["train", "--data", str(tmp_path), "--out", str(tmp_path / "d")], "is a directory"),
        (
            ["train", "--dataset", "mnist-t10k", "--data-path", str(binary), "--out", str(tmp_path / "e")],
            "is a file",
        ),
        (["train", "--out", str(tmp_path / ("x" * 300))], "could not write|File name too long"),
    ]
    for argv, message in cases:
        assert main(argv) != 0, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and re.search(message, err.strip().splitlines()[-1]), (argv, err)


def test_plot_skips_a_metrics_line_cut_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rec = {"iteration": 1, "time_s": 1.0, "n": 10, "val_error": 1.0, "train_error": 1.0, "test_error": 1.0}
    (run / "metrics.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "iteration": 2})[:20])
    with pytest.warns(UserWarning, match="cut short"):
        assert main(["plot", str(run), "--out", str(tmp_path / "fig.png"), "--figure", "2"]) == 0
    (run / "metrics.jsonl").write_text("garbage\n" + json.dumps(rec) + "\n")
    assert main(["plot", str(run), "--out", str(tmp_path / "fig.png"), "--figure", "2"]) == 2
    assert "line 1 is not a JSON record" in capsys.readouterr().err


def test_stand_in_data_sets_run_with_the_default_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dataset usps with the default (CURVES) preset: the preset's sizes and input width
    follow the data set instead of failing."""
    import numpy as np
    import scipy.io

    table = np.zeros((120, 257), dtype=np.uint8)
    table[:, :256] = np.random.default_rng(0).integers(0, 256, size=(120, 256))
    table[:, 256] = np.arange(120) % 10 + 1
    scipy.io.savemat(tmp_path / "usps.mat", {"usps_all": table})
    argv = ["train", "--dataset", "usps", "--data-path", str(tmp_path / "usps.mat"), "--max-iters", "1"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "input follows the data" in capsys.readouterr().err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["encoder"][0] == 256 and cfg["data"]["n_train"] is None


def test_a_first_order_method_s_time_budget_is_not_cut_by_the_preset_s_hf_iteration_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`shf train --method adam` under a time limit: the preset's max_iters (HF iterations) does not
    cap Adam's epochs; an explicit --max-iters still does."""
    base = ["train", "--method", "adam", "--encoder", "784,8,4", "--set", "data.n_train=100",
            "--set", "data.n_val=30", "--set", "data.n_test=30", "--no-progress",
            "--threads", "1"]  # fmt: skip
    assert main([*base, "--max-time", "0.5", "--out", str(tmp_path / "a")]) == 0
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    from shf.experiments.compare import UNCAPPED_ITERS

    assert cfg["run"]["max_iters"] == UNCAPPED_ITERS
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["stop_reason"] in ("max_time", "patience")
    assert main([*base, "--max-time", "50", "--max-iters", "3", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["hf_iterations"] == 3


# Reliability: each bad input or failure below is one line "shf: error: ..." (no traceback).

MINI = [
    "--encoder", "784,8,4", "--set", "data.n_train=200", "--set", "data.n_val=50", "--set", "data.n_test=50",
    "--max-iters", "1", "--no-progress",
]  # fmt: skip


def _one_line_error(code: int, err: str, pattern: str, rc: int = 2) -> None:
    """``err`` is one ``shf: error:`` line matching ``pattern`` and ``code`` is ``rc``."""
    lines = err.strip().splitlines()
    assert code == rc and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert lines[0].startswith("shf: error: ") and re.search(pattern, lines[0]), lines


def test_a_writer_that_fails_mid_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full inside torch.save is a RuntimeError, not an OSError: still one line naming the file."""
    import torch

    def full(obj: object, f: object, *a: object, **k: object) -> None:
        raise RuntimeError(
            "[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0: "
            "file write failed\nmore detail"
        )

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    code = main(["train", *MINI, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "\n".join(err), err
    pattern = r"shf: error: could not write .*\.pt: .*PytorchStreamWriter failed writing file.*"
    assert re.fullmatch(pattern, err[-1])
    assert str(out) in err[-1] and not any(p.name.startswith(".") for p in out.iterdir())


def test_an_os_error_that_is_not_a_write_is_not_called_one(monkeypatch, capsys):
    """Only shf's own writes say "could not write"; another OSError (a read refused) names its file."""
    import shf.cli

    def refused(args):
        raise PermissionError(13, "Permission denied", "/some/run/config.json")

    monkeypatch.setattr(shf.cli, "cmd_train", refused)
    assert main(["train"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "shf: error: could not read or write /some/run/config.json: Permission denied"


@pytest.mark.parametrize(
    "argv",
    [
        ["train", *MINI, "--threads", "100000"],
        ["train", *MINI, "--set", "run.threads=100000"],
        ["train", *MINI, "--threads", "0"],
        ["bench", "kernels", "--threads", "100000", "--archs", "usps", "--sizes", "8", "--no-progress"],
    ],
)
def test_absurd_thread_counts_are_refused(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    code = main(argv)
    cores = os.cpu_count()
    _one_line_error(code, capsys.readouterr().err, rf"threads must be .* this machine has {cores} core")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["train", *MINI, "--seed", str(2**64)], r"run\.seed must be a non-negative integer below 2\*\*63"),
        (["train", *MINI, "--set", "run.seed=99999999999999999999"], r"run\.seed .* below 2\*\*63"),
        (["compare", "--seeds", f"0,{2**70}", "--report-only"], r"--seeds: each seed .* below 2\*\*63"),
        (["compare", "--seed", str(2**63), "--report-only"], r"run\.seed .* below 2\*\*63"),
        (["reproduce", "table2", "--seeds", "1,-1", "--report-only"], r"--seeds: each seed .* got -1"),
        (["reproduce", "table2", "--seeds", ",", "--report-only"], r"--seeds names no seed"),
    ],
)
def test_seeds_out_of_range_are_refused(
    argv: list[str], pattern: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "--out", str(tmp_path / "out")])
    _one_line_error(code, capsys.readouterr().err, pattern)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-iteration run with --threads 1 (copied by the tests that damage it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    argv = ["train", *MINI, "--threads", "1", "--max-iters", "2", "--set", "run.checkpoint_every=1"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def _copy(run: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, to))


@pytest.mark.parametrize(
    ("name", "content"),
    [("config.json", b'{"data": {"dataset": '), ("run.json", bytes(range(256))), ("run.json", b"[1, 2]")],
)
def test_a_damaged_stored_run_is_one_line(
    name: str, content: bytes, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume, and shf compare / reproduce (stored_run), on a run whose JSON files are damaged."""
    from shf import config as cfgmod
    from shf.errors import ShfError
    from shf.experiments.run import stored_run

    run = _copy(finished_run, tmp_path / "run")
    (run / name).write_bytes(content)
    code = main(["train", "--resume", str(run), "--no-progress"])
    _one_line_error(code, capsys.readouterr().err, rf"{re.escape(str(run / name))} (is not|does not)")
    with pytest.raises(ShfError, match=re.escape(str(run / name))):
        stored_run(cfgmod.load("default"), run, "shf-lsmr", overwrite=False)


def test_resume_accepts_settings_equal_to_the_stored_ones(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(finished_run, tmp_path / "run")
    same = ["--threads", "1", "--seed", "0", "--set", "optimizer.lambda1=5.0", "--encoder", "784,8,4"]
    assert main(["train", "--resume", str(run), *same, "--max-iters", "3", "--no-progress"]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads((run / "summary.json").read_text())["hf_iterations"] == 3
    capsys.readouterr()
    changes = ["--threads", "2", "--seed", "0", "--set", "optimizer.drop=0.5"]
    code = main(["train", "--resume", str(run), *changes])
    err = capsys.readouterr().err
    pattern = r"would change its result: optimizer\.drop \(0\.99 -> 0\.5\), run\.threads \(1 -> 2\) \(only"
    _one_line_error(code, err, pattern)
    assert "run.seed" not in err


def test_plot_refuses_a_binary_metrics_file_and_wrong_label_counts(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "metrics.jsonl").write_bytes(bytes(range(128, 256)) * 4)
    code = main(["plot", str(binary), "--out", str(tmp_path)])
    _one_line_error(code, capsys.readouterr().err, r"metrics\.jsonl is not a metrics file")
    two = ["plot", str(finished_run), str(finished_run), "--out", str(tmp_path)]
    for labels in ("a", "a,b,c", ""):
        code = main([*two, "--labels", labels])
        _one_line_error(code, capsys.readouterr().err, r"--labels gives \d labels? for 2 runs")
    assert main([*two, "--labels", "a,b"]) == 0


def test_compare_out_that_is_a_file_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for out in (f, f / "below"):
        code = main(["compare", *MINI[:8], "--methods", "adam", "--budget", "0.2", "--out", str(out)])
        _one_line_error(code, capsys.readouterr().err, r"--out .* is (a file|under .*, which is a file)")
    assert f.read_text() == "x"


def test_data_path_with_an_emoji_and_odd_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-BMP character (an emoji) in a path reaches the loader as itself."""
    import numpy as np

    folder = tmp_path / 'dä "q" \\ 😀'
    folder.mkdir()
    data = folder / "x😀.npy"
    np.save(data, np.random.default_rng(0).random((60, 16)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--encoder", "16,4", "--max-iters", "1", "--no-progress",
                 "--out", str(out)]) == 0, capsys.readouterr().err  # fmt: skip
    assert json.loads((out / "config.json").read_text())["data"]["path"] == str(data)


@pytest.mark.parametrize(
    "text", ["plain", "😀", 'q"uote', "back\\slash", "tab\tnew\nline\r", "\x00\x1f\x7f", "é\u2028\ufeff"]
)
def test_flag_strings_become_toml_strings_that_read_back_as_given(text: str) -> None:
    import tomllib

    from shf.cli import _toml

    assert tomllib.loads(f"v = {_toml(text)}")["v"] == text


def test_lambda1_below_the_damping_floor_names_lambda1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default preset's lambda_min is 0.05: lambda1=0 breaks lambda_min <= lambda1, and the
    message names lambda1 (the key the user set) and says what to do."""
    code = main(["train", *MINI, "--set", "optimizer.lambda1=0", "--out", str(tmp_path / "run")])
    pattern = r"lambda1 = 0 is below lambda_min = 0\.05.*lambda1 must be >="
    _one_line_error(code, capsys.readouterr().err, pattern)


def test_config_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--config", str(tmp_path), "--out", str(tmp_path / "run")])
    _one_line_error(code, capsys.readouterr().err, r"is a directory: give a TOML file or a preset name")


def test_synthetic_data_too_big_for_the_memory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *MINI, "--set", f"data.n_train={10**12}", "--out", str(tmp_path / "run")])
    _one_line_error(code, capsys.readouterr().err, r"1,000,000,000,100 synthetic CURVES images need about .* "
                    r"more than this machine's")  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--arch", "cnn"], r"arch.* applies to task classify"),
        (["--arch", "mlp"], r"--arch applies to --task classify; this run's task is autoencoder"),
        (["--set", 'model.arch="cnn"'], r"model\.arch = 'cnn' .*applies to task classify"),
        (["--config", "classify-usps"], r"--encoder applies to --task autoencoder; this run's task is class"),
    ],
)
def test_flags_the_task_ignores_are_refused(
    argv: list[str], pattern: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *MINI, *argv, "--out", str(tmp_path / "run")])
    _one_line_error(code, capsys.readouterr().err, pattern)


def test_a_lock_of_an_unrelated_live_process_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path("/proc/1/cmdline").is_file() or b"shf" in Path("/proc/1/cmdline").read_bytes():
        pytest.skip("needs Linux's /proc and a pid 1 that is not shf")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("1")  # alive, but init: left by a crash before a reboot
    assert main(["train", *MINI, "--out", str(out), "--overwrite"]) == 0, capsys.readouterr().err
    assert not (out / ".lock").exists() and (out / "summary.json").is_file()
    (out / ".lock").write_text("1")
    capsys.readouterr()
    # the stale lock is taken over: the run (with its final checkpoint) goes on to 2 iterations
    assert main(["train", "--resume", str(out), "--max-iters", "2", "--no-progress"]) == 0
    assert "another shf process" not in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["hf_iterations"] == 2


def test_progress_bar_counts_optimiser_seconds_under_a_time_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """At the defaults (300 s, 2000 iterations) the bar's total is the time limit, not max_iters."""
    from shf.cli import ProgressBar

    rec = {"n": 250, "lam": 1.0, "val_error": 1.0, "train_error": 2.0}
    bar = ProgressBar(2000, 300.0, disable=False)
    assert bar.bar.total == 300.0
    for i, t in enumerate((10.0, 25.5, 31.0), start=1):
        bar({**rec, "iteration": i, "time_s": t})
    assert bar.bar.n == pytest.approx(31.0) and "it=3" in bar.bar.postfix
    bar({**rec, "iteration": 4, "time_s": 400.0})  # past the limit (the last iteration overruns it)
    assert bar.bar.n == pytest.approx(300.0)
    bar.close()
    # The iteration limit is nearer: the bar fills with the iterations.
    bar = ProgressBar(4, 300.0, disable=False)
    bar({**rec, "iteration": 2, "time_s": 1.0})
    assert bar.bar.n == pytest.approx(150.0)
    bar.close()
    bar = ProgressBar(4, float("inf"), disable=False)  # no time limit: iterations
    bar({**rec, "iteration": 1, "time_s": 1.0})
    assert (bar.bar.total, bar.bar.n) == (4, 1)
    bar.close()
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("curves,mnist,usps", ["curves", "mnist", "usps"]),
        (" curves , ,usps ", ["curves", "usps"]),
        ("classify-usps:model.hidden=[32,16],usps", ["classify-usps:model.hidden=[32,16]", "usps"]),
        ("a:run.name='x,y',b", ["a:run.name='x,y'", "b"]),
        ('a:k={p = 1, q = 2},b:k="u,v"', ["a:k={p = 1, q = 2}", 'b:k="u,v"']),
    ],
)
def test_comma_lists_keep_commas_inside_brackets_and_quotes(text: str, items: list[str]) -> None:
    from shf.cli import _words

    assert _words(text) == items
