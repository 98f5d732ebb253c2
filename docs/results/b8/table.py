"""Best validation error at 10-300 s, HF iterations, steps beyond 1 and the test error of the runs
under $ROOT (default runs/b8): python docs/results/b8/table.py [NAME ...] (default: every run)."""

import json
import math
import os
import sys
from typing import Any

ROOT = os.environ.get("ROOT", "runs/b8")
TIMES = [10, 30, 60, 100, 200, 300]


def best_at(rows: list[dict[str, Any]], t: float) -> float:
    """The best validation error so far at ``t`` seconds of optimiser time (NaN: none yet)."""
    seen = [r["best_val_error"] for r in rows if r["time_s"] <= t]
    return seen[-1] if seen else math.nan


def main() -> None:
    names = sys.argv[1:] or sorted(os.listdir(ROOT))
    print("| run | " + " | ".join(f"{t} s" for t in TIMES) + " | HF iterations | steps > 1 | test |")
    print("|---|" + "---|" * (len(TIMES) + 3))
    for name in names:
        path = os.path.join(ROOT, name, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = [json.loads(line) for line in f]

        beyond = sum(1 for r in rows if r.get("step", 0.0) > 1.0)
        summary_path = os.path.join(ROOT, name, "summary.json")
        summary = {}
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        cells = " | ".join(f"{best_at(rows, t):.3f}" for t in TIMES)
        print(f"| {name} | {cells} | {len(rows)} | {beyond} | {summary.get('test_error', math.nan):.3f} |")


if __name__ == "__main__":
    main()
