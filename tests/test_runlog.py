"""Run directories (shf.runlog): checkpoints are data, not code; only shf's own files are ever
removed; temporary files of killed writers do not pile up."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shf import runlog
from shf.errors import ShfError


class _Payload:
    """A pickle that runs code when it is loaded: it creates the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


def test_a_crafted_checkpoint_is_refused_and_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run = runlog.RunDir(tmp_path / "run")
    # torch.save pickles whatever it is given: a checkpoint that would run code when unpickled
    torch.save({"loop": _Payload(marker)}, run.path / runlog.CHECKPOINT)
    with pytest.raises(ShfError, match="cannot read the checkpoint"):
        run.load_checkpoint()
    assert not marker.exists()
    # the payload is live: unpickled as code, it runs
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_a_real_checkpoint_round_trips_as_data(tmp_path: Path) -> None:
    run = runlog.RunDir(tmp_path)
    obj = {"loop": {"iteration": 3, "w": [torch.ones(2, 3)], "best_val": float("inf"), "method": {}}}
    run.save_checkpoint(obj)
    back = run.load_checkpoint()
    assert back["loop"]["iteration"] == 3 and torch.equal(back["loop"]["w"][0], torch.ones(2, 3))


def test_temporaries_of_killed_writers_are_removed_on_the_next_write(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone
    live = os.getppid()  # a live process other than this one
    run = runlog.RunDir(tmp_path)
    stale = tmp_path / f".{runlog.CHECKPOINT}.tmp-{dead.pid}"
    busy = tmp_path / f".{runlog.CHECKPOINT}.tmp-{live}"
    other = tmp_path / f".weights.pt.tmp-{dead.pid}"  # another file's: left to that file's next write
    for p in (stale, busy, other):
        p.write_bytes(b"half a checkpoint")
    run.save_checkpoint({"loop": {}})
    assert not stale.exists() and busy.exists() and other.exists()
    run.save_weights([torch.zeros(1)], {})
    assert not other.exists()


def _a_run(path: Path) -> Path:
    run = runlog.RunDir(path)
    run.write_json("config.json", {"name": "x"})
    run.log_metrics({"iteration": 1})
    run.close()
    run.save_checkpoint({"loop": {}})
    return path


def test_clear_run_dir_removes_shf_files_and_nothing_else(tmp_path: Path) -> None:
    run = _a_run(tmp_path / "run")
    runlog.clear_run_dir(run)
    assert run.is_dir() and not any(run.iterdir())

    mixed = _a_run(tmp_path / "mixed")
    (mixed / "notes.txt").write_text("mine")
    (mixed / "sub").mkdir()
    with pytest.raises(ShfError, match=r"shf did not write \(notes.txt, sub\)"):
        runlog.clear_run_dir(mixed)
    assert (mixed / "notes.txt").read_text() == "mine" and (mixed / "config.json").is_file()


def test_clear_run_dir_never_clears_the_current_directory_or_one_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _a_run(tmp_path / "run")
    monkeypatch.chdir(run)
    for target in (Path("."), run, tmp_path):
        with pytest.raises(ShfError, match="current, home or root directory"):
            runlog.clear_run_dir(target)
    assert (run / "config.json").is_file()


def test_clear_run_dir_refuses_a_directory_another_process_writes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _a_run(tmp_path / "run")
    monkeypatch.setattr(runlog, "lock_holder", lambda path: 4242)
    with pytest.raises(ShfError, match=r"pid 4242\) is writing to"):
        runlog.clear_run_dir(run)
    assert (run / "config.json").is_file()
