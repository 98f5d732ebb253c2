"""``shf reproduce table2``: SHF-LSMR over several seeds per data set, beside the paper's Table 2.

Each run is one configured experiment (a preset of ``shf/experiments/configs``) with
``run.seed`` and ``run.max_time`` set, written to ``<out>/runs/<dataset>-seed<k>``. A
run whose ``summary.json`` exists is not run again, so an interrupted reproduction
resumes. The table reports, per data set, the mean, standard deviation and 95%
confidence interval (Student t, ``n - 1`` degrees of freedom) over seeds of the train
and test errors at the best-validation iteration, on the paper's scale (1/2 mean
squared error per case), beside the paper's numbers.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shf import config as cfgmod
from shf.errors import ConfigError

# Table 2 of the paper (1/2 scale; train / test at the best validation error, 5 seeds).
PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "curves": {"martens": (0.051, 0.098), "shf": (0.160, 0.214)},
    "mnist": {"martens": (0.910, 1.436), "shf": (0.959, 1.435)},
    "usps": {"martens": (1.007, 1.961), "shf": (0.999, 1.947)},
}
PRESETS = ("curves", "mnist", "usps")
PER_RUN_KEYS = (
    "seed", "train_error", "val_error", "test_error", "initial_test_error", "hf_iterations", "best_iteration",
    "optimizer_time_s", "wall_time_s", "examples_processed", "final_batch_size", "final_lambda",
)  # fmt: skip
MNIST_SOURCES = ("auto", "mnist", "fashion-mnist", "mnist-t10k")

RunHook = Callable[[str, int, cfgmod.ExperimentConfig], Callable[[dict[str, Any]], None] | None]


def mnist_source(choice: str, cache_dir: str | None = None) -> str:
    """The data set the MNIST row runs on: the full MNIST if cached, else a stand-in.

    ``auto`` picks MNIST when its files are in the cache (no download is attempted),
    else Fashion-MNIST when the Debian package is installed, else the MNIST test set.
    """
    if choice not in MNIST_SOURCES:
        raise ConfigError(f"mnist source must be one of {MNIST_SOURCES}, got {choice!r}")
    if choice != "auto":
        return choice
    from shf.data.download import cache_dir as _cache
    from shf.data.mnist import find_idx_file

    if find_idx_file(_cache(cache_dir) / "mnist", "train-images-idx3-ubyte") is not None:
        return "mnist"
    if Path("/usr/share/datasets/fashion-mnist").is_dir():
        return "fashion-mnist"
    return "mnist-t10k"


def t_quantile_975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and 95% CI half-width (t-based) of ``values``."""
    n = len(values)
    mean = statistics.fmean(values) if n else math.nan
    if n >= 2:
        sd = statistics.stdev(values)
        half = t_quantile_975(n - 1) * sd / math.sqrt(n)
        return {"n": n, "mean": mean, "std": sd, "ci95_low": mean - half, "ci95_high": mean + half}
    return {"n": n, "mean": mean, "std": None, "ci95_low": None, "ci95_high": None}


def run_all(
    datasets: Sequence[str],
    seeds: Sequence[int],
    out: str | os.PathLike[str],
    *,
    max_time: float,
    mnist: str = "auto",
    overrides: Sequence[str] = (),
    on_run: RunHook | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Run every (data set, seed) not yet done (resuming interrupted runs from their
    checkpoints; a run directory of another configuration is refused unless ``overwrite``);
    return all run directories."""
    from shf.experiments.run import run_or_reuse

    for ds in datasets:
        if ds not in PRESETS:
            raise ConfigError(f"unknown data set {ds!r} for table 2; choose from {', '.join(PRESETS)}")
    root = Path(out) / "runs"
    dirs: list[Path] = []
    for ds in datasets:
        extra = [f"run.max_time={max_time!r}" if math.isfinite(max_time) else "run.max_time=inf"]
        if ds == "mnist":
            extra.append(f'data.dataset="{mnist_source(mnist)}"')
        for seed in seeds:
            cfg = cfgmod.load(ds, [*overrides, *extra, f"run.seed={seed}", f"data.seed={seed}"])
            d = root / f"{ds}-seed{seed}"
            dirs.append(d)
            hook = on_run(ds, seed, cfg) if on_run is not None else None
            run_or_reuse(cfg, d, on_iteration=hook, overwrite=overwrite)
    return dirs


def collect(run_dirs: Sequence[str | os.PathLike[str]]) -> dict[str, list[dict[str, Any]]]:
    """Summaries of finished runs, grouped by preset name."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in run_dirs:
        p = Path(d) / "summary.json"
        if p.is_file():
            s = json.loads(p.read_text())
            cfg = json.loads((Path(d) / "config.json").read_text())
            s["max_time"] = cfg["run"]["max_time"]
            s["run_dir"] = str(d)
            groups.setdefault(s["name"], []).append(s)
    return groups


def _fmt_stat(st: dict[str, Any]) -> str:
    if st["n"] >= 2:
        return f"{st['mean']:.3f} ± {st['std']:.3f} [{st['ci95_low']:.3f}, {st['ci95_high']:.3f}]"
    return f"{st['mean']:.3f}"


def table(groups: dict[str, list[dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """Markdown table and JSON record of Table 2 from grouped summaries."""
    lines = [
        "| data set (as run) | seeds | time cap / run | HF iterations | train error (ours) | "
        "test error (ours) | paper SHF-LSMR train / test | paper Martens HF train / test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    record: dict[str, Any] = {}
    for name in PRESETS:
        runs = groups.get(name)
        if not runs:
            continue
        tr = stats([r["train_error"] for r in runs])
        te = stats([r["test_error"] for r in runs])
        its = statistics.fmean(r["hf_iterations"] for r in runs)
        cap = runs[0]["max_time"]
        cap_s = f"{cap:.0f} s" if cap is not None and math.isfinite(cap) else "none"
        paper = PAPER_TABLE2[name]
        data_name = runs[0]["dataset"]
        sizes = runs[0].get("sizes", {})
        size_s = f" ({sizes.get('train')}/{sizes.get('val')}/{sizes.get('test')})" if sizes else ""
        lines.append(
            f"| {name.upper()}: {data_name}{size_s} | {len(runs)} | {cap_s} | {its:.0f} | {_fmt_stat(tr)} | "
            f"{_fmt_stat(te)} | {paper['shf'][0]:.3f} / {paper['shf'][1]:.3f} | "
            f"{paper['martens'][0]:.3f} / {paper['martens'][1]:.3f} |"
        )
        record[name] = {
            "dataset": data_name,
            "sizes": sizes,
            "seeds": [r["seed"] for r in runs],
            "max_time_s": cap,
            "train_error": tr,
            "test_error": te,
            "hf_iterations_mean": its,
            "optimizer_time_s": [r["optimizer_time_s"] for r in runs],
            "paper": paper,
            "per_run": [{k: r.get(k) for k in PER_RUN_KEYS} for r in runs],
            "runs": [r["run_dir"] for r in runs],
        }
    notes = (
        "\nErrors: 1/2 mean squared error per case (the paper's scale), train and test at the "
        "best-validation iteration; mean ± sample std [95% CI, Student t] over seeds. "
        "Train error on the whole training set unless the run measured it on a fixed subset "
        "(MNIST: 10,000 rows).\n"
    )
    return "\n".join(lines) + "\n" + notes, record
