"""A run directory: resolved config, environment, metrics (JSON lines), weights, summary."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import IO, Any

import torch


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
    import numpy
    import scipy

    from shf import __version__

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
    """This process's peak resident memory so far, in MiB (``ru_maxrss``: KiB on Linux)."""
    import resource

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


class RunDir:
    """Writes the files of one run; metrics are flushed line by line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._metrics: IO[str] | None = None

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path / name
        p.write_text(json.dumps(jsonable(obj), indent=2, sort_keys=False) + "\n")
        return p

    def log_metrics(self, rec: dict[str, Any]) -> None:
        if self._metrics is None:
            self._metrics = (self.path / "metrics.jsonl").open("w")
        self._metrics.write(json.dumps(jsonable(rec)) + "\n")
        self._metrics.flush()

    def save_weights(self, weights: list[torch.Tensor], meta: dict[str, Any]) -> Path:
        p = self.path / "weights.pt"
        torch.save({"weights": [w.detach().cpu() for w in weights], **meta}, p)
        return p

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read ``metrics.jsonl`` of a run directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
