"""The run directory's files: atomic writes that fail name the file, damaged files are one-line
errors, and a run lock names only a live shf writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shf import runlog
from shf.errors import ShfError


def test_a_writer_s_own_error_becomes_an_os_error_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def fails(f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing")

    with pytest.raises(OSError, match="PytorchStreamWriter failed writing") as e:
        runlog._atomic_write(target, fails)
    assert e.value.filename == str(target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]

    def full(f: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left") as e:
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
