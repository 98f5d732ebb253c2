"""Shared pieces of the benchmarks: a repeat timer, the machine description, output files,
and loading the data with stand-ins when MNIST cannot be loaded offline."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shf.config import ExperimentConfig
from shf.curvature.mlp import AutoencoderJacobian
from shf.data.split import Split
from shf.errors import ConfigError, ShfError
from shf.models.autoencoder import Autoencoder, sparse_init
from shf.runlog import environment, jsonable

log = logging.getLogger(__name__)

ARCHITECTURES: dict[str, tuple[int, ...]] = {
    # The paper's encoders (§6, Table 1); the decoder mirrors each.
    "curves": (784, 400, 200, 100, 50, 25, 6),
    "mnist": (784, 1000, 500, 250, 30),
    "usps": (256, 400, 200, 100, 50, 25),
}


def encoder_of(arch: str | Sequence[int]) -> tuple[int, ...]:
    """The encoder sizes of a named architecture (:data:`ARCHITECTURES`) or of a list of sizes."""
    if isinstance(arch, str):
        if arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
        return ARCHITECTURES[arch]
    return tuple(int(m) for m in arch)


@dataclass(frozen=True)
class JacobianProblem:
    """One curvature operator to benchmark: the network, weights, batch, ``A = grad R``,
    the right-hand side ``b = -R`` and a positive diagonal preconditioner ``c``."""

    net: Autoencoder
    w: list[torch.Tensor]
    X: torch.Tensor
    A: AutoencoderJacobian
    b: torch.Tensor
    c: list[torch.Tensor]


def jacobian_problem(
    arch: str | Sequence[int],
    n: int,
    dtype: torch.dtype,
    seed: int = 0,
    *,
    loss: str = "squared",
    linear_code: bool = False,
) -> JacobianProblem:
    """Sparse-initialised weights (eq. 9, ``m0 = 15``, ``sigma = 1``), ``n`` uniform rows in
    [0, 1] (drawn in float64, so both dtypes see the same numbers) and a preconditioner
    uniform in [0.5, 1], inside the range (0, 1] that Alg. 3 produces."""
    net = Autoencoder(encoder_of(arch), linear_code=linear_code, loss_name=loss)
    gen = torch.Generator().manual_seed(seed)
    w = sparse_init(net, m0=15, sigma=1.0, generator=gen, dtype=dtype)
    X = torch.rand(n, net.input_dim, generator=gen, dtype=torch.float64).to(dtype)
    A = AutoencoderJacobian(net, w, X)
    c = [torch.rand(W.shape, generator=gen, dtype=torch.float64).mul_(0.5).add_(0.5).to(dtype) for W in w]
    return JacobianProblem(net, w, X, A, -A.residual, c)


STAND_INS: dict[str, tuple[str, ...]] = {"mnist": ("fashion-mnist", "mnist-t10k")}
"""Data sets of the same shape tried, in order, when a data set without a ``data.path``
cannot be loaded (MNIST needs a download). ``mnist-t10k`` has 10,000 images: configured
split sizes that do not fit are replaced by its default split
(:data:`shf.data.mnist.T10K_SIZES`)."""


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


def stand_in_attempts(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """``cfg``, then one configuration per stand-in of its data set (:data:`STAND_INS`), in
    the order they are tried. A configuration with an explicit ``data.path`` has none (so
    a stand-in has no path either).

    For ``mnist-t10k`` the configured sizes are kept when they fit in its 10,000 images (an
    unset size counting as its default in :data:`shf.data.mnist.T10K_SIZES`), else all three
    are reset to None (its default split).
    """
    out = [cfg]
    if cfg.data.path is not None:
        return out
    for stand_in in STAND_INS.get(cfg.data.dataset, ()):
        d = dataclasses.replace(cfg.data, dataset=stand_in)
        if stand_in == "mnist-t10k":
            from shf.data.mnist import T10K_SIZES

            wanted = (d.n_train or T10K_SIZES[0], d.n_val or T10K_SIZES[1], d.n_test or T10K_SIZES[2])
            if sum(wanted) > sum(T10K_SIZES):  # e.g. the paper's MNIST sizes: its own split
                d = dataclasses.replace(d, n_train=None, n_val=None, n_test=None)
        out.append(dataclasses.replace(cfg, data=d))
    return out


def load_with_stand_ins(
    cfg: ExperimentConfig,
    *,
    check: Callable[[Split], None] | None = None,
    tried: list[str] | None = None,
) -> tuple[Split, ExperimentConfig, list[str]]:
    """Load the data of the first of :func:`stand_in_attempts` that loads (and passes ``check``).

    Each attempt calls :func:`shf.experiments.run.prepare_data` (looked up when called, so
    tests can replace it) and then ``check(data)`` when given; a :class:`~shf.errors.ShfError`
    or an :class:`OSError` from either moves on to the next attempt.

    Args:
        cfg: the configuration as given.
        check: raises when the loaded data cannot be used (e.g. they do not fit the network).
        tried: the list the failed attempts' errors are appended to (a new one when None);
            a caller that passes one still has them when this raises.

    Returns:
        ``(data, used, tried)``: the data, the configuration they were loaded with (``cfg``
        itself or a stand-in's) and one line per failed attempt, ``"<dataset>: <error>"``
        (the error's first line), in order; empty when ``cfg`` loaded.

    Raises:
        ShfError, OSError: the last attempt's error when no attempt loads.
    """
    from shf.experiments import run

    errors = [] if tried is None else tried
    last: ShfError | OSError | None = None
    for attempt in stand_in_attempts(cfg):
        try:
            data = run.prepare_data(attempt)
            if check is not None:
                check(data)
        except (ShfError, OSError) as e:
            log.info("data set %s not usable: %s", attempt.data.dataset, e)
            errors.append(f"{attempt.data.dataset}: {e}".splitlines()[0])
            last = e
            continue
        return data, attempt, errors
    assert last is not None  # stand_in_attempts is never empty
    raise last
