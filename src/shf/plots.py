"""Figures 2 and 3 of the paper from run directories (``metrics.jsonl``).

* Figure 2: training (dotted) and test (solid) error against optimiser time.
* Figure 3: mini-batch size against optimiser time.

Errors are on the paper's scale (1/2 mean squared error per case) unless
``no_half=True``. Runs are overlaid, one colour each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shf.errors import DataError
from shf.runlog import read_metrics


def load_run(path: str | os.PathLike[str]) -> tuple[str, list[dict[str, Any]]]:
    """``(label, metrics)`` of a run directory; the label is its config name, dataset and seed."""
    p = Path(path)
    if not (p / "metrics.jsonl").is_file():
        raise DataError(f"{p} is not a run directory (no metrics.jsonl)")
    metrics = read_metrics(p)
    if not metrics:
        raise DataError(f"{p / 'metrics.jsonl'} is empty")
    label = p.name
    summary = p / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        label = f"{s.get('dataset', s.get('name', p.name))} seed {s.get('seed', '?')}"
    return label, metrics


def _series(metrics: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in metrics:
        v = r.get(key)
        if v is not None:
            xs.append(float(r["time_s"]))
            ys.append(float(v))
    return xs, ys


def _save(fig: Any, out: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG (creating the folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def figure2(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    no_half: bool = False,
    log_y: bool = True,
    ylabel: str | None = None,
) -> Path:
    """Training (dotted) and test (solid) error against time, one colour per run
    (``ylabel``: the axis label, default the paper's squared-error scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = "_no_half" if no_half else ""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        label, metrics = load_run(run)
        if labels is not None and i < len(labels):
            label = labels[i]
        c = colors[i % len(colors)]
        ax.plot(*_series(metrics, "train_error" + suffix), ls=":", color=c, lw=1.5)
        ax.plot(*_series(metrics, "test_error" + suffix), ls="-", color=c, lw=1.5, label=label)
    ax.set_xlabel("optimiser time (s)")
    scale = "mean squared error per case" if no_half else "1/2 mean squared error per case"
    ax.set_ylabel(ylabel or f"error ({scale})")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title or "Training (dotted) and test (solid) error vs time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def figure3(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Mini-batch size against time, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(runs):
        label, metrics = load_run(run)
        if labels is not None and i < len(labels):
            label = labels[i]
        ax.step(*_series(metrics, "n"), where="post", label=label, lw=1.5)
    ax.set_xlabel("optimiser time (s)")
    ax.set_ylabel("mini-batch size n")
    ax.set_title(title or "Mini-batch size vs time")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def time_breakdown(record: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """``shf bench solve``: where an HF iteration's time goes, one stacked bar per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shf.bench.solve import BREAKDOWN

    cases = [c for c in record["cases"] if not c.get("skipped")]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(cases) + 3), 4.5))
    labels = [f"{c['config']}\n{c['phase']}, n={c['n']:.0f}\n{c['per_iteration_s']:.2f} s" for c in cases]
    bottom = [0.0] * len(cases)
    cmap = plt.get_cmap("tab10")
    for i, part in enumerate(BREAKDOWN):
        vals = [max(c["shares"][part], 0.0) * 100 for c in cases]
        ax.bar(labels, vals, bottom=bottom, label=part.replace("_", " "), color=cmap(i % 10))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("% of one HF iteration")
    ax.set_ylim(0, 100)
    ax.set_title("Where an HF iteration's time goes (shf bench solve)")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, out)


def _best_so_far(metrics: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = _series(metrics, key)
    best, out = float("inf"), []
    for y in ys:
        best = min(best, y)
        out.append(best)
    return xs, out


def _best_on_grid(series: Sequence[tuple[list[float], list[float]]], grid: Any) -> Any:
    """The best-so-far step functions ``series`` (``(times, values)`` per run) evaluated at the
    times ``grid``: one row per run, NaN before a run's first record, and after its last record
    the run's final best (a run that stopped, on its budget or its patience, keeps what it
    reached; dropping it would make a mean over runs rise when its best run ends first)."""
    import numpy as np

    vals = np.full((len(series), len(grid)), np.nan)
    for j, (x, y) in enumerate(series):
        idx = np.searchsorted(np.asarray(x), grid, side="right") - 1
        ok = idx >= 0
        vals[j, ok] = np.asarray(y)[idx[ok]]
    return vals


def time_bands(
    runs: dict[str, Sequence[str | os.PathLike[str]]],
    out: str | os.PathLike[str],
    *,
    key: str = "val_error",
    target: float | None = None,
    title: str | None = None,
    ylabel: str | None = None,
    points: int = 200,
) -> Path:
    """The best ``key`` so far against optimiser time, one band per method over its runs (seeds):
    the line is the mean over the runs, the band their minimum to maximum, on a common time
    grid (a run contributes from its first record on and holds its final best after its last;
    before its first record a time has no value). ``target``: a horizontal line (e.g. the
    reference method's best)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, dirs) in enumerate(runs.items()):
        series = [_best_so_far(load_run(d)[1], key) for d in dirs]
        series = [(x, y) for x, y in series if x]
        if not series:
            continue
        t_end = max(x[-1] for x, _ in series)
        t0 = min(x[0] for x, _ in series)
        grid = (
            np.geomspace(max(t0, 1e-3), t_end, points) if t_end > t0 > 0 else np.linspace(t0, t_end, points)
        )
        vals = _best_on_grid(series, grid)
        have = ~np.all(np.isnan(vals), axis=0)
        c = colors[i % len(colors)]
        mean = np.nanmean(vals[:, have], axis=0)
        label = f"{name} ({len(series)} run{'s' * (len(series) > 1)})"
        ax.plot(grid[have], mean, color=c, lw=1.6, label=label)
        if len(series) > 1:
            ax.fill_between(grid[have], np.nanmin(vals[:, have], axis=0), np.nanmax(vals[:, have], axis=0),
                            color=c, alpha=0.2, lw=0)  # fmt: skip
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.4g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser time (s)")
    ax.set_ylabel(ylabel or "best validation error so far (paper's 1/2 scale)")
    ax.set_title(title or "Best validation error so far vs time (mean, band: min to max over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)
