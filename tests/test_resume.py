"""Runs that never lose work: a run killed (SIGKILL) or interrupted (SIGINT) and resumed ends
with the same weights and metrics (all fields but times) as the uninterrupted run; run
directories are never mixed or silently replaced; failures leave nothing half-made."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shf.cli import main

TINY = [
    "--encoder", "784,24,6", "--dtype", "float64", "--threads", "1", "--max-iters", "24",
    "--set", "data.n_train=600", "--set", "data.n_val=150", "--set", "data.n_test=150",
    "--set", "optimizer.n1=100", "--set", "optimizer.n_max=400", "--set", "optimizer.maxiter1=40",
    "--set", "run.checkpoint_every=2",
    "--set", "run.patience=1000", "--no-progress",
]  # fmt: skip
TIMES = ("time_s", "wall_s", "times", "wall_time_s", "optimizer_time_s", "resumed_from_iteration")


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "shf.cli", "train", *args]


def _run(out: Path) -> None:
    subprocess.run(_cmd(*TINY, "--out", str(out)), check=True, capture_output=True, timeout=300)


def _records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMES} for line in lines]


def _same_run(a: Path, b: Path) -> None:
    assert _records(a) == _records(b)
    wa, wb = (torch.load(p / "weights.pt", weights_only=True)["weights"] for p in (a, b))
    assert all(torch.equal(x, y) for x, y in zip(wa, wb))
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert {k: v for k, v in sa.items() if k not in TIMES} == {k: v for k, v in sb.items() if k not in TIMES}


def _start_and_wait(out: Path, lines: int, *extra: str) -> subprocess.Popen[bytes]:
    """Start a run and return once its metrics file has ``lines`` records (it is still running)."""
    proc = subprocess.Popen(
        _cmd(*TINY, *extra, "--out", str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    metrics = out / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= lines:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(
        f"the run ended or stalled before {lines} records: {proc.communicate()[1][-2000:]!r}"
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    _run(out)
    return out


@pytest.mark.parametrize("kill_after", [5, 14])
def test_sigkill_then_resume_equals_the_uninterrupted_run(
    uninterrupted: Path, tmp_path: Path, kill_after: int
) -> None:
    out = tmp_path / "run"
    proc = _start_and_wait(out, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (out / "summary.json").exists()
    done = subprocess.run(_cmd("--resume", str(out), "--no-progress"), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_run(out, uninterrupted)


def test_sigint_stops_cleanly_with_a_checkpoint_and_resumes(uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start_and_wait(out, 7)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert (
        s["stop_reason"] == "interrupted"
        and (out / "checkpoint.pt").is_file()
        and (out / "weights.pt").is_file()
    )
    assert b"--resume" in err
    done = subprocess.run(_cmd("--resume", str(out), "--no-progress"), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_run(out, uninterrupted)


def test_run_directories_are_never_mixed_or_silently_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", *TINY, "--max-iters", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and (out / "notes.txt").read_text() == "mine"
    # --overwrite replaces shf's own run, never a file shf did not write
    assert main(["train", *TINY, "--max-iters", "1", "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "shf did not write (notes.txt)" in err and (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert main(["train", *TINY, "--max-iters", "1", "--out", str(out)]) == 0
    first = (out / "metrics.jsonl").read_text()
    assert main(["train", *TINY, "--max-iters", "2", "--out", str(out), "--overwrite"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2 != len(first.splitlines())
    (tmp_path / "file").write_text("x")
    assert main(["train", *TINY, "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_run_that_fails_before_training_leaves_no_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--encoder", "100,6", "--out", str(out)]) == 2
    assert "features" in capsys.readouterr().err and not out.exists()
    assert main(["train", *TINY, "--method", "nope", "--out", str(out)]) == 2
    assert not out.exists()


def test_resume_refuses_changes_and_foreign_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--max-iters", "2", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--set", "optimizer.lambda1=3"]) == 2
    assert "optimizer.lambda1" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--max-iters", "3", "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["hf_iterations"] == 3
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    (out / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["train", "--resume", str(out)]) == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_config_name_cannot_leave_the_runs_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "../escape"\n')
    assert main(["train", "--config", str(cfg)]) == 2
    assert "plain name" in capsys.readouterr().err


def test_a_failed_final_write_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shf import runlog

    def full(self: object, *a: object) -> None:
        # what RunDir's atomic writes raise on a full disk (test_runlog checks that they do)
        raise runlog.WriteError(28, "No space left on device", str(tmp_path / "run" / "weights.pt"))

    monkeypatch.setattr(runlog.RunDir, "save_weights", full)
    assert main(["train", *TINY, "--max-iters", "1", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("shf: error: could not write") and "No space left" in err[-1]
    assert not any(p.name.startswith(".") for p in (tmp_path / "run").iterdir())  # no temporary left


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start_and_wait(out, 2, "--max-iters", "100000")  # runs until killed
    try:
        for extra in ([], ["--overwrite"]):
            other = subprocess.run(_cmd(*TINY, "--out", str(out), *extra), capture_output=True, timeout=120)
            assert other.returncode == 2, other.stderr
            assert f"pid {proc.pid}".encode() in other.stderr, other.stderr
        other = subprocess.run(_cmd("--resume", str(out)), capture_output=True, timeout=120)
        assert other.returncode == 2 and f"pid {proc.pid}".encode() in other.stderr, other.stderr
    finally:
        proc.kill()
        proc.wait()
    # The killed writer's lock is stale: resuming takes it over and finishes (a limit below the
    # checkpoint's iteration would shorten the run: refused).
    done_iters = torch.load(out / "checkpoint.pt", weights_only=True)["loop"]["iteration"]
    short = subprocess.run(
        _cmd("--resume", str(out), "--max-iters", str(done_iters - 1)), capture_output=True, timeout=300
    )
    assert short.returncode == 2 and b"would shorten it" in short.stderr, short.stderr
    done = subprocess.run(
        _cmd("--resume", str(out), "--no-progress", "--max-iters", str(done_iters + 2)),
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["hf_iterations"] == done_iters + 2
    assert not (out / ".lock").exists()


def test_run_or_reuse_reuses_resumes_and_refuses(tmp_path: Path) -> None:
    """The engine of shf reproduce and shf compare: a finished run of the same configuration is
    reused, an interrupted one resumed (equal to the uninterrupted run), one of another
    configuration refused with the differing keys (replaced with overwrite)."""
    import regression_runs
    from shf.errors import ConfigError
    from shf.experiments.run import run_or_reuse

    base = ["run.max_iters=8", "run.checkpoint_every=2", "data.n_train=300", "data.n_val=100"]
    base += ["data.n_test=100"]
    cfg = regression_runs.shrunk("default", base)
    whole = run_or_reuse(cfg, tmp_path / "whole")
    assert run_or_reuse(cfg, tmp_path / "whole") == whole  # reused, not rerun
    stopped = {"n": 0}

    def stop_after_5() -> bool:
        stopped["n"] += 1
        return stopped["n"] >= 5

    from shf.experiments.run import run_experiment

    run_experiment(cfg, tmp_path / "cut", should_stop=stop_after_5)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["stop_reason"] == "interrupted"
    resumed = run_or_reuse(cfg, tmp_path / "cut")
    assert resumed["resumed_from_iteration"] == 5
    _same_run(tmp_path / "cut", tmp_path / "whole")
    other = regression_runs.shrunk("default", [*base, "optimizer.lambda1=2.0"])
    with pytest.raises(ConfigError, match=r"optimizer\.lambda1 differ"):
        run_or_reuse(other, tmp_path / "whole")
    assert run_or_reuse(other, tmp_path / "whole", overwrite=True)["hf_iterations"] == 8


# --- --resume for every run shf train can make: every method, with and without time/iteration limits

METHODS = ("shf-lsmr", "shf-cg", "martens-hf", "adam", "sgd")
SMALL = [
    "--encoder", "784,12,4", "--dtype", "float64", "--threads", "1", "--no-progress",
    "--set", "data.n_train=300", "--set", "data.n_val=60", "--set", "data.n_test=60",
    "--set", "optimizer.n1=60", "--set", "optimizer.n_max=200", "--set", "optimizer.maxiter1=10",
    "--set", "hf.maxiter=10", "--set", "first_order.batch_size=50", "--set", "run.patience=1000",
    "--set", "run.checkpoint_every=3",
]  # fmt: skip


def _weights(out: Path) -> list[torch.Tensor]:
    return torch.load(out / "weights.pt", weights_only=True)["weights"]


@pytest.mark.parametrize("method", METHODS)
def test_resume_extends_a_run_without_a_time_limit_exactly(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --max-time (config.json stores ``max_time: null``): the run finished at 4 iterations
    and extended to 7 equals the 7-iteration run, record for record and weight for weight."""
    common = [*SMALL, "--method", method, "--set", "run.max_time=inf"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *common, "--max-iters", "7", "--out", str(whole)]) == 0
    assert main(["train", *common, "--max-iters", "4", "--out", str(part)]) == 0
    assert json.loads((part / "config.json").read_text())["run"]["max_time"] is None
    resume = ["train", "--resume", str(part), "--max-iters", "7", "--no-progress"]
    assert main(resume) == 0, capsys.readouterr().err
    _same_run(part, whole)
    assert json.loads((part / "config.json").read_text())["run"]["max_iters"] == 7  # what it ran to


@pytest.mark.parametrize("method", METHODS)
def test_resume_extends_a_time_limited_run(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-time alone, and with --max-iters: the extended run goes on from where it stopped."""
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--method", method, "--max-time", "0.2", "--max-iters", "100000",
                 "--out", str(out)]) == 0  # fmt: skip
    first = json.loads((out / "summary.json").read_text())
    assert first["stop_reason"] == "max_time"
    before = _records(out)
    resume = ["train", "--resume", str(out), "--max-time", "0.5", "--no-progress"]
    assert main(resume) == 0, capsys.readouterr().err
    after = json.loads((out / "summary.json").read_text())
    assert after["stop_reason"] == "max_time" and after["hf_iterations"] > first["hf_iterations"]
    # from its end, not from an earlier checkpoint
    assert after["resumed_from_iteration"] == first["hf_iterations"]
    assert _records(out)[: len(before)] == before  # the first part's records are kept as they were
    n = after["hf_iterations"]
    assert main(["train", "--resume", str(out), "--max-iters", str(n + 2), "--max-time", "1000"]) == 0
    assert json.loads((out / "summary.json").read_text())["hf_iterations"] == n + 2


def test_resume_never_shortens_or_redoes_a_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--max-iters", "5", "--out", str(out)]) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    for extra, msg in (
        (["--max-iters", "3"], "give --max-iters above 5"),
        (["--max-iters", "5"], "give --max-iters above 5"),
        ([], "give --max-iters above 5"),
    ):
        capsys.readouterr()
        assert main(["train", "--resume", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0] and "never shortens" in err[0], err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # nothing rewritten
    # a run that stopped on patience has nothing left to do
    pat = tmp_path / "patience"
    assert main(["train", *SMALL, "--set", "run.patience=1", "--max-iters", "50", "--out", str(pat)]) == 0
    if json.loads((pat / "summary.json").read_text())["stop_reason"] == "patience":
        assert main(["train", "--resume", str(pat), "--max-iters", "60"]) == 2
        assert "stopped on patience" in capsys.readouterr().err


@pytest.mark.parametrize("method", METHODS)
def test_resume_a_classifier_run(method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import scipy.io

    table = np.zeros((200, 257), dtype=np.uint8)
    table[:, :256] = np.random.default_rng(0).integers(0, 256, size=(200, 256))
    table[:, 256] = np.arange(200) % 10 + 1
    scipy.io.savemat(tmp_path / "usps.mat", {"usps_all": table})
    common = ["--config", "classify-usps", "--data-path", str(tmp_path / "usps.mat"), "--method", method]
    common += ["--threads", "1", "--no-progress", "--set", "run.checkpoint_every=2"]
    common += ["--set", "run.max_time=inf"]
    common += ["--set", "optimizer.maxiter1=5", "--set", "hf.maxiter=5"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *common, "--max-iters", "4", "--out", str(whole)]) == 0, capsys.readouterr()
    assert main(["train", *common, "--max-iters", "3", "--out", str(part)]) == 0
    resume = ["train", "--resume", str(part), "--max-iters", "4", "--no-progress"]
    assert main(resume) == 0, capsys.readouterr().err
    _same_run(part, whole)


def test_every_preset_and_method_config_survives_config_json(tmp_path: Path) -> None:
    """What --resume, compare and reproduce read back is the configuration that was run, for every
    preset, with and without limits (an infinite max_time is stored as null)."""
    from shf import config as cfgmod
    from shf import runlog
    from shf.experiments.run import config_differences

    for preset in cfgmod.preset_names():
        for limits in ([], ["run.max_time=inf"], ["run.max_time=inf", "run.max_iters=3"], ["run.max_time=7"]):
            cfg = cfgmod.load(preset, limits)
            runlog.RunDir(tmp_path).write_json("config.json", cfg.to_dict())
            stored = json.loads((tmp_path / "config.json").read_text())
            assert cfgmod.from_dict(cfgmod.restore_infinities(stored)) == cfg, (preset, limits)
            assert config_differences(stored, cfg) == []


def test_overwrite_never_clears_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *SMALL, "--max-iters", "1", "--out", str(tmp_path / "run")]) == 0
    monkeypatch.chdir(tmp_path / "run")  # even a directory that holds only a run of shf's
    before = sorted(p.name for p in Path(".").iterdir())
    capsys.readouterr()
    assert main(["train", *SMALL, "--max-iters", "1", "--out", ".", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "will not clear ." in err[0] and "current" in err[0]
    assert sorted(p.name for p in Path(".").iterdir()) == before
