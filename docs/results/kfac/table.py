"""B19 against the defaults on shf train's task: best validation error by time, test error.

    python docs/results/kfac/table.py                # reads docs/results/kfac/runs.json.gz
    python docs/results/kfac/table.py probes.json.gz # another archive of this folder

Rows per seed and arm (``<arm>-s<seed>``): the defaults (``base``, the runs of docs/results/b8/)
and B19's variants (see the README); the best validation error so far at 10-300 s of optimiser
time (the paper's 1/2 scale) and the test error at the best validation error.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

from shf.experiments.archive import unpack
from shf.runlog import read_metrics

HERE = Path(__file__).resolve().parent
TIMES = (10, 20, 40, 60, 100, 200, 300)


def main(argv: list[str]) -> int:
    rows = []
    archive = HERE / (argv[0] if argv else "runs.json.gz")
    with tempfile.TemporaryDirectory() as tmp:
        unpack(archive, tmp)
        runs = {p.parent.name: p.parent for p in Path(tmp).rglob("summary.json")}
        for name in sorted(runs, key=lambda s: (s.rsplit("-s", 1)[1], s)):
            metrics = read_metrics(runs[name])
            summary = json.loads((runs[name] / "summary.json").read_text())
            best = [min((r["val_error"] for r in metrics if r["time_s"] <= t), default=math.nan)
                    for t in TIMES]
            rows.append((name, best, summary["test_error"], summary["hf_iterations"]))
    print("| run | " + " | ".join(f"{t} s" for t in TIMES) + " | test | HF iterations |")
    print("|---|" + "---|" * (len(TIMES) + 2))
    for name, best, test, its in rows:
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in best) + f" | {test:.4f} | {its} |")
    arms = sorted({n.rsplit("-s", 1)[0] for n, _, _, _ in rows})
    print()
    for arm in arms:
        tests = {n.rsplit("-s", 1)[1]: t for n, _, t, _ in rows if n.rsplit("-s", 1)[0] == arm}
        mean = statistics.fmean(tests.values())
        print(f"- {arm}: mean test {mean:.4f} over seeds {', '.join(sorted(tests))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
