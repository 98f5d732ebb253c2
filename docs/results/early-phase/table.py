"""Best validation error at 5-100 s, HF iterations and test error of the ``shf train`` runs under
$ROOT (default runs/early-phase): ``python docs/results/early-phase/table.py NAME...``."""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

ROOT = os.environ.get("ROOT", "runs/early-phase")
TIMES = [5, 10, 20, 40, 60, 100]


def best_at(rows: list[dict[str, Any]], t: float) -> float:
    """The best validation error so far at ``t`` seconds of optimiser time (NaN: none yet)."""
    seen = [r["best_val_error"] for r in rows if r["time_s"] <= t]
    return seen[-1] if seen else math.nan


def main() -> None:
    print("variant      " + " ".join(f"{t:>7}" for t in TIMES) + "   iters  best_test")
    for name in sys.argv[1:]:
        path = f"{ROOT}/{name}/metrics.jsonl"
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rows = [json.loads(line) for line in f]
        summary: dict[str, Any] = {}
        if os.path.exists(f"{ROOT}/{name}/summary.json"):
            with open(f"{ROOT}/{name}/summary.json") as f:
                summary = json.load(f)
        cells = " ".join(f"{best_at(rows, t):7.3f}" for t in TIMES)
        print(f"{name:12s} {cells}  {len(rows):5d}  {summary.get('test_error', math.nan):.3f}")


if __name__ == "__main__":
    main()
