"""Data-parallel SHF (shf.curvature.sharded): 2 gloo processes against 1 process, float64.

Both runs see the same seed and data; the 2-process run splits every batch (and the validation
merit) by rows. The sums are the same numbers added in another order, so every decision must be
the same (batch sizes, LSMR iteration counts and stop reasons, steps) and the weights equal to
round-off amplified over 10 HF iterations: 1e-10 relative (float64 round-off is 1e-16; LSMR's
recurrences and 10 nonlinear steps amplify it by at most a few orders of magnitude here).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import dist_cases

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def _rel(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    num = sum(float((x - y).pow(2).sum()) for x, y in zip(a, b)) ** 0.5
    den = sum(float(y.pow(2).sum()) for y in b) ** 0.5
    return num / den


def _spawn(fn, args, tmp_path):
    """``mp.spawn`` of 2 ranks; a rank that died of a signal fails the test with the Python stacks
    its fault handler wrote (``*.fault``), not only the signal's name."""
    try:
        mp.spawn(fn, args=args, nprocs=2, join=True)
    except mp.ProcessExitedException as e:
        stacks = "\n".join(f"{p.name}:\n{p.read_text()}" for p in sorted(tmp_path.glob("*.fault")))
        raise AssertionError(f"{e}\n{stacks}") from None


@pytest.mark.parametrize("case", ["autoencoder", "classifier"])
def test_two_processes_take_the_single_process_decisions_and_weights(case, tmp_path):
    out = tmp_path / "rank0.pt"
    _spawn(dist_cases.worker, (2, str(tmp_path / "init"), case, str(out)), tmp_path)
    two = torch.load(out, weights_only=True)
    one = dist_cases.run(case)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert len(one["decisions"]) == 10
    assert two["decisions"] == one["decisions"]
    # the batch grew and LSMR ran more than one iteration somewhere: the test exercises Alg. 2
    assert one["decisions"][-1][0] > one["decisions"][0][0]
    assert max(d[1] for d in one["decisions"]) > 3
    assert _rel(two["last"], one["last"]) < 1e-10
    assert _rel(two["weights"], one["weights"]) < 1e-10
    assert max(abs(a - b) / abs(b) for a, b in zip(two["val"], one["val"])) < 1e-10


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("case", ["autoencoder", "classifier"])
def test_two_gpus_over_nccl_take_the_single_gpu_decisions_and_weights(case, tmp_path):
    out = tmp_path / "rank0.pt"
    _spawn(dist_cases.worker, (2, str(tmp_path / "init"), case, str(out), "cuda"), tmp_path)
    two = torch.load(out, weights_only=True)
    one = dist_cases.run(case, device="cuda:0")
    assert two["decisions"] == one["decisions"]
    assert _rel(two["last"], one["last"]) < 1e-10


def test_different_data_on_the_ranks_is_refused_on_every_rank(tmp_path):
    out = tmp_path / "msg"
    _spawn(dist_cases.mismatch_worker, (2, str(tmp_path / "init"), str(out)), tmp_path)
    msgs = [(tmp_path / f"msg.{r}").read_text() for r in range(2)]
    assert msgs[0] == msgs[1] and "different data" in msgs[0]


def test_a_rank_that_dies_ends_the_job_with_an_error(tmp_path):
    """Rank 1 exits after joining: rank 0's first collective fails (gloo: the peer closed, or the
    timeout) instead of waiting for ever."""
    out = tmp_path / "error.txt"
    ctx = mp.start_processes(
        dist_cases.dying_worker, args=(2, str(tmp_path / "init"), 20.0, str(out)), nprocs=2, join=False,
        start_method="spawn",
    )  # fmt: skip
    for p in ctx.processes:
        p.join(timeout=90)
    assert all(not p.is_alive() for p in ctx.processes), "a rank is still waiting"
    assert ctx.processes[0].exitcode == 3
    assert out.read_text()


def test_torchrun_shf_train_writes_one_run_and_refuses_another_process_count(tmp_path):
    """``torchrun --standalone --nproc_per_node=2 -m shf train``: rank 0 writes the run directory
    (the summary counts 2 processes, one metrics line per iteration); resuming it on one process
    is refused in one line."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    common = ["--encoder", "784,16,6", "--set", "data.n_train=400", "--set", "data.n_val=100",
              "--set", "data.n_test=100", "--set", "optimizer.n1=50", "--set", "optimizer.curvature_size=30",
              "--set", "run.checkpoint_every=1", "--threads", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "shf",
           "train", *common, "--max-iters", "3", "--out", str(out), "--dist-timeout", "60"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("run directory:") == 1  # rank 0 alone prints the report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["hf_iterations"] == 3
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    r = subprocess.run([sys.executable, "-m", "shf", "train", "--resume", str(out), "--max-iters", "4"],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 2
    assert "written by a run on 2 process(es); this one has 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_rank_that_hangs_fails_the_others_after_the_timeout(tmp_path):
    """Rank 1 hangs outside any collective: rank 0's next collective fails after the group's
    timeout (5 s here), so torchrun can end the job; no rank waits for ever."""
    out = tmp_path / "error.txt"
    ctx = mp.start_processes(
        dist_cases.hanging_worker, args=(2, str(tmp_path / "init"), 5.0, str(out)), nprocs=2, join=False,
        start_method="spawn",
    )  # fmt: skip
    ctx.processes[0].join(timeout=90)
    for p in ctx.processes[1:]:
        p.terminate()  # what torchrun does to the rest once one worker has failed
        p.join(timeout=30)
    assert ctx.processes[0].exitcode == 3
    waited = float(out.read_text().split()[0])
    assert 5.0 <= waited < 60.0


def test_other_commands_refuse_to_run_under_torchrun(monkeypatch, capsys):
    from shf.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["compare", "--methods", "adam", "--budget", "1"]) == 2
    assert "runs on one process: launch it without torchrun" in capsys.readouterr().err


def test_torchrun_into_a_used_directory_fails_on_every_rank_in_one_line(tmp_path):
    """Rank 0 alone checks --out; its refusal reaches every process (no rank left waiting)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("a file of mine")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "shf",
           "train", "--encoder", "784,8,4", "--set", "data.n_train=200", "--set", "data.n_val=50",
           "--set", "data.n_test=50", "--max-iters", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0
    assert r.stderr.count("already holds files") == 2  # the same one-line error from each process
    assert "shf/cli.py" not in r.stderr  # no traceback of ours (torchrun prints its own summary)
    assert (out / "keep.txt").read_text() == "a file of mine"
