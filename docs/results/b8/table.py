"""Best validation error at 10-300 s, HF iterations, steps beyond 1 and the test error of the runs
under $ROOT (default runs/b8): python docs/results/b8/table.py [NAME ...] (default: every run)."""

import json
import math
import os
import sys

ROOT = os.environ.get("ROOT", "runs/b8")
TIMES = [10, 30, 60, 100, 200, 300]


def main() -> None:
    names = sys.argv[1:] or sorted(os.listdir(ROOT))
    print("| run | " + " | ".join(f"{t} s" for t in TIMES) + " | HF iterations | steps > 1 | test |")
    print("|---|" + "---|" * (len(TIMES) + 3))
    for name in names:
        path = os.path.join(ROOT, name, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        rows = [json.loads(line) for line in open(path)]

        def at(t: float) -> float:
            seen = [r["best_val_error"] for r in rows if r["time_s"] <= t]
            return seen[-1] if seen else math.nan

        beyond = sum(1 for r in rows if r.get("step", 0.0) > 1.0)
        summary_path = os.path.join(ROOT, name, "summary.json")
        summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
        cells = " | ".join(f"{at(t):.3f}" for t in TIMES)
        print(f"| {name} | {cells} | {len(rows)} | {beyond} | {summary.get('test_error', math.nan):.3f} |")


if __name__ == "__main__":
    main()
