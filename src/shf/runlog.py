"""A run directory: resolved config, environment, metrics (JSON lines), weights, summary."""

from __future__ import annotations

import datetime as _dt
import errno
import glob
import json
import math
import os
import platform
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy
import scipy
import torch

from shf._version import __version__
from shf.errors import ShfError

try:
    import resource  # Unix: the process's peak resident memory
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]


def jsonable(x: Any) -> Any:
    """Replace non-finite floats by ``None`` (strict JSON) recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def environment() -> dict[str, Any]:
    """Versions, threads and machine, for the record."""


    return {
        "shf": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "argv": sys.argv,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss``: KiB on Linux; NaN where
    the platform has no ``resource`` module)."""
    if resource is None:  # pragma: no cover - Windows
        return math.nan
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def default_run_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<name>-<UTC timestamp>`` (a suffix is added if it exists)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    p, k = base, 1
    while p.exists():
        k += 1
        p = base.with_name(f"{base.name}-{k}")
    return p


def _tmp_name(path: Path, pid: int) -> Path:
    """The temporary file through which process ``pid`` writes ``path`` (:func:`_atomic_write`)."""
    return path.with_name(f".{path.name}.tmp-{pid}")


def _tmp_writer(name: str) -> tuple[str, int] | None:
    """``(file, pid)`` when ``name`` is the temporary file of an atomic write of ``file`` by ``pid``."""
    m = re.fullmatch(r"\.(.+)\.tmp-(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else None


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files of atomic writes of ``path`` left by processes that are gone (a
    run killed while it wrote a checkpoint); return them. Those of live processes stay."""
    removed = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        who = _tmp_writer(p.name)
        if who is not None and who[0] == path.name and who[1] != os.getpid() and not _alive(who[1]):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class WriteError(OSError):
    """A file shf writes could not be written (``filename``: the file meant, not a temporary)."""


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through a temporary file in the same directory, flushed and synced, then
    renamed over it: a reader (or a crash) sees the old file or the new one, never half of one.
    Temporary files of earlier writes of ``path`` whose process was killed are removed first."""
    remove_stale_temporaries(path)
    tmp = _tmp_name(path, os.getpid())
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, read-only directory: name the file meant, not the temporary
        if e.filename is None or str(e.filename) == str(tmp):
            raise WriteError(e.errno, e.strerror or str(e), str(path)) from e
        raise WriteError(e.errno, e.strerror or str(e), e.filename) from e
    except Exception as e:  # a writer's own error, e.g. torch.save's "PytorchStreamWriter failed ..."
        raise WriteError(errno.EIO, _first_line(e), str(path)) from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _first_line(e: BaseException) -> str:
    """``e``'s message in one line (the first non-empty one), or its type's name."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
RUN_FILES = frozenset(
    {"config.json", "run.json", "env.json", "metrics.jsonl", "weights.pt", "summary.json", CHECKPOINT, LOCK}
)
"""Every file :class:`RunDir` (and ``shf compare``'s child) writes into a run directory."""


def foreign_entries(path: str | os.PathLike[str]) -> list[str]:
    """The names in directory ``path`` that shf does not write there: anything but
    :data:`RUN_FILES` and the temporary files of their atomic writes."""
    out = []
    for p in Path(path).iterdir():
        who = _tmp_writer(p.name)
        ours = p.name in RUN_FILES or (who is not None and who[0] in RUN_FILES)
        if not ours or not (p.is_file() or p.is_symlink()):
            out.append(p.name)
    return sorted(out)


def clear_run_dir(path: str | os.PathLike[str]) -> None:
    """Remove the files of the shf run in directory ``path``, and nothing else: refused with a
    :class:`ShfError` when ``path`` is the current directory or holds it, is the home or root
    directory, holds anything shf does not write (named in the message), or another process
    writes to it. The directory itself stays (the new run writes into it)."""
    p = Path(path)
    if not p.is_dir():
        return
    here, target = Path.cwd().resolve(), p.resolve()
    if target == here or target in here.parents or target in (Path.home().resolve(), Path(target.anchor)):
        raise ShfError(f"will not clear {path}: it is the current, home or root directory, or holds one")
    holder = lock_holder(p)
    if holder is not None:
        raise ShfError(f"another shf process (pid {holder}) is writing to {path}")
    foreign = foreign_entries(p)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ShfError(
            f"will not clear {path}: it holds files shf did not write ({shown}); "
            "give an empty or new directory"
        )
    for f in p.iterdir():
        f.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of Linux's
    ``/proc/PID/stat``), or None where that cannot be read (no such process, not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ", comm may hold spaces
    return fields[19] if len(fields) > 19 else None


def _runs_shf(pid: int) -> bool | None:
    """Whether process ``pid``'s command line names shf (``shf ...``, ``python -m shf``,
    ``python -m shf.cli``, ``torchrun ... -m shf``); None where it cannot be read (not Linux,
    another user's process)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return any(b"shf" in a for a in argv)


def _lock_text() -> str:
    """What this process writes into ``.lock``: its pid and, on Linux, its start time (a live
    process that merely got the pid of a dead writer is then told apart from the writer)."""
    start = _start_time(os.getpid())
    return f"{os.getpid()} {start}" if start is not None else str(os.getpid())


def _holds(pid: int, start: str | None) -> bool:
    """Whether the process of a lock naming ``pid`` (started at ``start``, if recorded) still
    runs: the pid is alive and, where Linux says, it is the same process (its start time) or,
    for a lock that records no start time, a process of shf. A pid reused by an unrelated
    process (after a crash and a reboot, or a lock file copied from elsewhere) is stale."""
    if pid <= 0 or pid == os.getpid() or not _alive(pid):
        return False
    now = _start_time(pid)
    if now is None:  # not Linux (or unreadable): the pid being alive is all there is to go by
        return True
    if start is not None:
        return start == now
    return _runs_shf(pid) is not False


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid of a live shf process that holds ``path``'s run lock, or None (no lock, or a
    stale one: see :func:`_holds`)."""
    try:
        words = (Path(path) / LOCK).read_text().split()
        pid = int(words[0]) if words else 0
    except (OSError, ValueError):
        return None
    return pid if _holds(pid, words[1] if len(words) > 1 else None) else None


class RunLock:
    """One writer per run directory: ``.lock`` holds the writer's pid (and, on Linux, its start
    time), made atomically (``O_CREAT | O_EXCL``); a lock whose process is gone (killed), or
    whose pid now belongs to another process, is taken over (:func:`lock_holder`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = self.path / LOCK
        self._held = False

    def __enter__(self) -> RunLock:
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self._file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = lock_holder(self.path)
                if holder is not None:
                    raise ShfError(f"another shf process (pid {holder}) is writing to {self.path}") from None
                self._file.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(_lock_text())
            self._held = True
            return self
        raise ShfError(f"could not lock {self.path} (another process keeps taking it)")

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self._file.unlink(missing_ok=True)
            self._held = False


class RunDir:
    """Writes the files of one run; metrics are flushed line by line, every other file is
    written atomically (:func:`_atomic_write`).

    Args:
        path: the directory (made if missing).
        append: continue an existing ``metrics.jsonl`` (a resumed run) instead of starting it anew.
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._metrics: IO[str] | None = None
        self._append = append

    def write_json(self, name: str, obj: Any) -> Path:
        text = (json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n").encode()
        return _atomic_write(self.path / name, lambda f: f.write(text))

    def log_metrics(self, rec: dict[str, Any]) -> None:
        if self._metrics is None:
            self._metrics = (self.path / "metrics.jsonl").open("a" if self._append else "w")
        self._metrics.write(json.dumps(jsonable(rec)) + "\n")
        self._metrics.flush()

    def truncate_metrics(self, records: int) -> None:
        """Keep the first ``records`` lines of ``metrics.jsonl`` (those a checkpoint covers)."""
        p = self.path / "metrics.jsonl"
        lines = p.read_text().splitlines(keepends=True) if p.is_file() else []
        if len(lines) < records:
            raise ShfError(f"{p} has {len(lines)} records but the checkpoint covers {records}")
        text = "".join(lines[:records]).encode()
        _atomic_write(p, lambda f: f.write(text))

    def save_weights(self, weights: list[torch.Tensor], meta: dict[str, Any]) -> Path:
        obj = {"weights": [w.detach().cpu() for w in weights], **meta}
        return _atomic_write(self.path / "weights.pt", lambda f: torch.save(obj, f))

    def save_checkpoint(self, obj: dict[str, Any]) -> Path:
        """``checkpoint.pt``, atomically (a kill during the write leaves the previous one)."""
        return _atomic_write(self.path / CHECKPOINT, lambda f: torch.save(obj, f))

    def load_checkpoint(self) -> dict[str, Any]:
        """The last checkpoint; :class:`ShfError` if there is none or it cannot be read."""
        p = self.path / CHECKPOINT
        if not p.is_file():
            raise ShfError(f"no checkpoint in {self.path} (the run wrote none before it stopped)")
        try:
            # data, never code: tensors and plain types only (a crafted pickle is refused)
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: say so, in one line
            raise ShfError(f"cannot read the checkpoint {p}: {type(e).__name__}: {e}") from None
        if not isinstance(obj, dict) or "loop" not in obj:
            raise ShfError(f"{p} is not an shf checkpoint")
        return obj

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None


class NullRunDir(RunDir):
    """What the ranks other than 0 of a data-parallel run write: nothing (rank 0 writes the run)."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = Path(path)
        self._metrics = None
        self._append = append

    def write_json(self, name: str, obj: Any) -> Path:
        return self.path / name

    def log_metrics(self, rec: dict[str, Any]) -> None:
        pass

    def truncate_metrics(self, records: int) -> None:
        pass

    def save_weights(self, weights: list[torch.Tensor], meta: dict[str, Any]) -> Path:
        return self.path / "weights.pt"

    def save_checkpoint(self, obj: dict[str, Any]) -> Path:
        return self.path / CHECKPOINT


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read ``metrics.jsonl`` of a run directory (or the file itself).

    A last line cut short (a run killed while writing it) is skipped with a warning; any
    other unreadable line is a :class:`ShfError` naming it.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.is_file():
        raise ShfError(f"no metrics file at {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ShfError(f"{p} is not a metrics file (not JSON text: byte {e.start} is not UTF-8)") from None
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    out: list[dict[str, Any]] = []
    for j, (i, line) in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if j == len(lines) - 1:
                warnings.warn(f"{p}: line {i} is cut short (skipped)", stacklevel=2)
                break
            raise ShfError(f"{p}: line {i} is not a JSON record") from None
        if not isinstance(rec, dict):
            raise ShfError(f"{p}: line {i} is not a JSON object")
        out.append(rec)
    return out


def read_json(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    """The JSON object stored in ``path`` (a run's ``config.json``, ``run.json`` or
    ``summary.json``); a :class:`ShfError` naming the file if it cannot be read, is not JSON
    text (cut short, binary, edited by hand) or holds something else than an object."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ShfError(f"the {what} {p} is not JSON text (binary or damaged)") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise ShfError(f"the {what} {p} is not valid JSON ({e.msg}, {where}): damaged?") from None
    if not isinstance(obj, dict):
        raise ShfError(f"the {what} {p} does not hold a JSON object")
    return obj
