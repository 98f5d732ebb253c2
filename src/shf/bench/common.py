"""Shared pieces of the benchmarks: a repeat timer, the machine description, output files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shf.runlog import environment, jsonable

ARCHITECTURES: dict[str, tuple[int, ...]] = {
    # The paper's encoders (§6, Table 1); the decoder mirrors each.
    "curves": (784, 400, 200, 100, 50, 25, 6),
    "mnist": (784, 1000, 500, 250, 30),
    "usps": (256, 400, 200, 100, 50, 25),
}


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeats`` timed calls (after warm-up calls)."""

    median: float
    best: float
    repeats: int

    def as_dict(self) -> dict[str, float]:
        return {"median_s": self.median, "best_s": self.best, "repeats": self.repeats}


def time_call(
    fn: Callable[[], object], *, min_time: float = 0.5, min_repeats: int = 3, warmup: int = 1
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``min_repeats`` calls and
    at least ``min_time`` seconds of calls. Reports the median (the figure quoted) and
    the best call; on a shared machine the median is robust to a stray slow call.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return Timing(statistics.median(samples), min(samples), len(samples))


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine and library description stored with every benchmark result."""
    import numpy

    env = environment()
    env.pop("argv", None)
    env["cpu_model"] = cpu_model()
    env["mkl"] = bool(torch.backends.mkl.is_available())  # type: ignore[no-untyped-call]
    env["numpy_blas"] = _numpy_blas(numpy)
    try:
        env["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        env["cpu_affinity"] = None
    return env


def _numpy_blas(numpy: Any) -> str:
    try:
        cfg = numpy.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode; the name is for the record only
        return "unknown"


def describe_machine(m: dict[str, Any]) -> str:
    """One line for a markdown summary."""
    return (
        f"{m.get('cpu_model')}, {m.get('cpu_affinity') or m.get('cpu_count')} cores usable, "
        f"{m.get('torch_threads')} torch threads; torch {m.get('torch')} (MKL: {m.get('mkl')}), "
        f"numpy {m.get('numpy')} ({m.get('numpy_blas')}), Python {m.get('python')}, {m.get('platform')}"
    )


def write_outputs(
    out: str | os.PathLike[str], stem: str, record: dict[str, Any], markdown: str
) -> list[Path]:
    """Write ``<out>/<stem>.json`` and ``<out>/<stem>.md``; return the paths."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    pj = root / f"{stem}.json"
    pj.write_text(json.dumps(jsonable(record), indent=2) + "\n")
    pm = root / f"{stem}.md"
    pm.write_text(markdown)
    return [pj, pm]
