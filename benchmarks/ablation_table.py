"""Tabulate probe runs (one ``shf train`` run directory each) for the issue-11 ablations.

    python benchmarks/ablation_table.py runs/abl --reference adam > docs/results/ablations/table.md
    python benchmarks/ablation_table.py runs/abl2 --reference adam --at 60,120 --target 0.35

Per run: best validation error within the run's time (paper scale), test error at it, the
time it was reached, HF iterations, the last lambda and the mean solver iterations per HF
iteration; ``--at T1,T2``: the best validation error reached by those times;
``--target E``: the time each run first reaches validation error E; ``--reference RUN``
adds the time each run needs to reach RUN's best validation error (empty: not reached) and
its ratio to RUN's own time to it. ``--runs a,b,c`` keeps those runs, in that order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--reference", default=None)
    ap.add_argument("--at", default="", help="comma-separated times (s): best validation error by then")
    ap.add_argument("--target", type=float, default=None, help="a validation error: time to reach it")
    ap.add_argument("--runs", default=None, help="comma-separated run names to show, in order")
    args = ap.parse_args()
    ats = [float(t) for t in args.at.split(",") if t.strip()]
    runs = {}
    for d in sorted(Path(args.root).iterdir()):
        if (d / "metrics.jsonl").is_file() and (d / "summary.json").is_file():
            runs[d.name] = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    if args.runs:
        runs = {k: runs[k] for k in args.runs.split(",") if k in runs}
    ref_best = ref_time = None
    if args.reference in runs:
        m = runs[args.reference]
        best = min(m, key=lambda r: r["val_error"])
        ref_best, ref_time = best["val_error"], best["time_s"]
    head = "| run | best val | test at best val | at s | HF its | last lambda | solver its / HF it |"
    sep = "|---|---|---|---|---|---|---|"
    for t in ats:
        head += f" best val by {t:g} s |"
        sep += "---|"
    if args.target is not None:
        head += f" time to val {args.target:g} s |"
        sep += "---|"
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
        lam_s = f"{lam:.3g}" if lam is not None else "-"
        row = (
            f"| {name} | {best['val_error']:.3f} | {summary['test_error']:.3f} | {best['time_s']:.0f} | "
            f"{len(m)} | {lam_s} | {mean_its} |"
        )
        for t in ats:
            early = [r["val_error"] for r in m if r["time_s"] <= t]
            row += f" {min(early):.3f} |" if early else " - |"
        if args.target is not None:
            tt = next((r["time_s"] for r in m if r["val_error"] <= args.target), None)
            row += f" {tt:.0f} |" if tt is not None else " - |"
        if ref_best is not None:
            t_ref = next((r["time_s"] for r in m if r["val_error"] <= ref_best), None)
            if t_ref is not None and ref_time:
                row += f" {t_ref:.0f} | {t_ref / ref_time:.2f} |"
            else:
                row += " - | - |"
        print(row)


if __name__ == "__main__":
    main()
