"""Tabulate probe runs (one ``shf train`` run directory each) for the issue-11 ablations.

    python benchmarks/ablation_table.py runs/abl --reference adam > docs/results/ablations/table.md

Per run: best validation error within the run's time (paper scale), test error at it, the
time it was reached, HF iterations, the last lambda and the mean solver iterations per HF
iteration; ``--reference RUN`` adds the time each run needs to reach RUN's best validation
error (empty: not reached) and its ratio to RUN's own time to it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--reference", default=None)
    args = ap.parse_args()
    runs = {}
    for d in sorted(Path(args.root).iterdir()):
        if (d / "metrics.jsonl").is_file() and (d / "summary.json").is_file():
            runs[d.name] = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    ref_best = ref_time = None
    if args.reference in runs:
        m = runs[args.reference]
        best = min(m, key=lambda r: r["val_error"])
        ref_best, ref_time = best["val_error"], best["time_s"]
    head = "| run | best val | test at best val | at s | HF its | last lambda | solver its / HF it |"
    sep = "|---|---|---|---|---|---|---|"
    if ref_best is not None:
        head += f" time to {args.reference}'s best val ({ref_best:.3f}) s | ratio |"
        sep += "---|---|"
    print(head)
    print(sep)
    for name, m in runs.items():
        summary = json.loads((Path(args.root) / name / "summary.json").read_text())
        best = min(m, key=lambda r: r["val_error"])
        its = [r.get("solver_iterations") for r in m if r.get("solver_iterations") is not None]
        mean_its = f"{sum(its) / len(its):.0f}" if its else "-"
        lam = m[-1].get("lam")
        row = (
            f"| {name} | {best['val_error']:.3f} | {summary['test_error']:.3f} | {best['time_s']:.0f} | {len(m)} | "
            f"{lam:.3g} | {mean_its} |" if lam is not None else
            f"| {name} | {best['val_error']:.3f} | {summary['test_error']:.3f} | {best['time_s']:.0f} | {len(m)} | - | - |"
        )  # fmt: skip
        if ref_best is not None:
            t = next((r["time_s"] for r in m if r["val_error"] <= ref_best), None)
            row += f" {t:.0f} | {t / ref_time:.2f} |" if t is not None and ref_time else " - | - |"
        print(row)


if __name__ == "__main__":
    main()
