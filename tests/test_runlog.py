"""Run directories (shf.runlog): checkpoints are data, not code; only shf's own files are ever
removed; temporary files of killed writers do not pile up; atomic writes that fail name the file,
damaged files are one-line errors, and a run lock names only a live shf writer."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
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


def test_a_writer_s_own_error_becomes_an_os_error_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def fails(f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing")

    with pytest.raises(runlog.WriteError, match="PytorchStreamWriter failed writing") as e:
        runlog._atomic_write(target, fails)
    assert e.value.filename == str(target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]

    def full(f: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(runlog.WriteError, match="No space left") as e:
        runlog._atomic_write(target, full)
    assert e.value.filename == str(target) and e.value.errno == 28
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_read_json_names_a_damaged_file(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    for content, what in (
        (b'{"a": ', "not valid JSON"),
        (bytes(range(256)), "not JSON text"),
        (b"[]", "object"),
    ):
        p.write_bytes(content)
        with pytest.raises(ShfError, match=f"{p}.*{what}"):
            runlog.read_json(p)
    p.write_text(json.dumps({"a": 1}))
    assert runlog.read_json(p) == {"a": 1}


def test_read_metrics_of_a_binary_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_bytes(b'{"a": 1}\n\xff\xfe\x00')
    with pytest.raises(ShfError, match="is not a metrics file"):
        runlog.read_metrics(tmp_path)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not shf."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    yield p
    p.kill()
    p.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="Linux's /proc")
def test_lock_of_a_live_unrelated_process_is_stale(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    lock = tmp_path / runlog.LOCK
    lock.write_text(str(sleeper.pid))  # pid only (as locks were written before): its command line decides
    assert runlog.lock_holder(tmp_path) is None
    lock.write_text(f"{sleeper.pid} 12345")  # its pid, but another start time: the pid was reused
    assert runlog.lock_holder(tmp_path) is None
    lock.write_text(f"{sleeper.pid} {runlog._start_time(sleeper.pid)}")  # the writer itself
    assert runlog.lock_holder(tmp_path) == sleeper.pid
    with pytest.raises(ShfError, match=f"another shf process \\(pid {sleeper.pid}\\)"):
        runlog.RunLock(tmp_path).__enter__()
    lock.write_text(str(sleeper.pid))
    with runlog.RunLock(tmp_path):  # a stale lock is taken over
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="Linux's /proc")
def test_lock_of_an_shf_process_without_start_time_holds(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "shf"])
    try:
        time.sleep(0.2)
        (tmp_path / runlog.LOCK).write_text(str(p.pid))
        assert runlog.lock_holder(tmp_path) == p.pid
    finally:
        p.kill()
        p.wait()
    assert runlog.lock_holder(tmp_path) is None  # gone
