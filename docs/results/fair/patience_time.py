"""One patience in seconds for every method (issue 31): the MLP classifiers, SHF's defaults against
Adam with its rate swept and with a weight decay, all with ``run.patience_time = 60`` and the
iteration/epoch patience off (``run.patience = 1000000``).

    python docs/results/fair/patience_time.py     # writes docs/results/fair/patience-time.md/.json

The runs (120 s, seeds 0-2, one thread; commands in docs/results/fair/README.md) are archived as
``docs/results/fair/<data set>-defaults/pt60.json.gz`` (SHF's defaults), ``adam-pt60.json.gz``
(Adam, its rate swept on seed 0, then seeds 1-2 at the winner) and ``adam-wd<wd>-pt60.json.gz``
(Adam at that rate with the weight decay that won the earlier sweep; the transformer has no
such arm yet). Adam at its best is the arm
with the lower seed-0 best validation CE; its mean best validation CE is the target. Test CE at
each run's best validation CE; per-seed ratios to Adam at its best on the same seed; means with
95% t-intervals.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from shf.experiments.archive import unpack
from shf.experiments.compare import _time_to, mean_ci_text
from shf.runlog import read_metrics

HERE = Path(__file__).resolve().parent
# the weight decay of Adam's second arm (None: not run)
DATASETS: dict[str, str | None] = {
    "classify-usps": "1e-4", "classify-t10k": "1e-3", "classify-usps-transformer": None,
}


def _runs(arc: Path) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """{seed: (summary, metrics)} of the runs an archive holds: where it holds a rate sweep, seed 0's
    run is the one at the rate the other seeds ran."""
    with tempfile.TemporaryDirectory() as tmp:
        unpack(arc, tmp)
        found = [(json.loads(p.read_text()), p.parent) for p in Path(tmp).rglob("summary.json")]
        later = {s.get("lr") for s, _ in found if int(s["seed"]) != 0}
        swept = sum(int(s["seed"]) == 0 for s, _ in found) > 1
        return {
            int(s["seed"]): (s, read_metrics(d))
            for s, d in found
            if not (int(s["seed"]) == 0 and swept and s.get("lr") not in later)  # a rate not chosen
        }


def table() -> tuple[str, dict[str, Any]]:
    lines = [
        "| classifier | method | test CE per seed | mean ± 95% | per-seed test / Adam at its best's | "
        "stops (patience / budget) | time to Adam's target / Adam's |",
        "|---|---|---|---|---|---|---|",
    ]
    record: dict[str, Any] = {}
    for ds, wd in DATASETS.items():
        arcs = {
            "defaults": HERE / f"{ds}-defaults" / "pt60.json.gz",
            "Adam, rate swept": HERE / f"{ds}-defaults" / "adam-pt60.json.gz",
        }
        if wd is not None:
            arcs[f"Adam, weight decay {wd}"] = HERE / f"{ds}-defaults" / f"adam-wd{wd}-pt60.json.gz"
        if not all(a.is_file() for a in arcs.values()):
            continue
        arms = {name: _runs(a) for name, a in arcs.items()}
        seeds = sorted(arms["defaults"])
        if not all(set(seeds) <= set(r) for r in arms.values()):
            continue
        adams = [n for n in arms if n.startswith("Adam")]
        best = min(adams, key=lambda n: arms[n][seeds[0]][0]["val_error"])
        target = statistics.fmean(arms[best][s][0]["val_error"] for s in seeds)
        times_of = {n: [_time_to(runs[s][1], "val_error", target) for s in seeds] for n, runs in arms.items()}
        ref, ref_t = [arms[best][s][0] for s in seeds], times_of[best]
        record[ds] = {"adam_at_its_best": best, "target_val_error": target, "seeds": seeds, "arms": {}}
        for name, runs in arms.items():
            sums, times = [runs[s][0] for s in seeds], times_of[name]
            tests = [x["test_error"] for x in sums]
            ratios = [x["test_error"] / r["test_error"] for x, r in zip(sums, ref)]
            both = [t / a for t, a in zip(times, ref_t) if t is not None and a]
            stops = ", ".join(
                f"{x['stop_reason'].replace('max_time', 'budget')} {x['optimizer_time_s']:.0f} s"
                for x in sums
            )
            reached = f"{sum(t is not None for t in times)}/{len(seeds)}"
            shown = name != best and both
            cell = reached + (" (" + ", ".join(f"{r:.2f}" for r in both) + ")" if shown else "")
            label = name + (" (at its best)" if name == best else "")
            lines.append(
                f"| {ds} | {label} | {', '.join(f'{t:.4f}' for t in tests)} | {mean_ci_text(tests)} | "
                f"{mean_ci_text(ratios, '.3f')} | {stops} | {cell} |"
            )
            record[ds]["arms"][name] = {
                "test_error": tests, "test_ratio": ratios, "lr": [x.get("lr") for x in sums],
                "stop_reason": [x["stop_reason"] for x in sums],
                "optimizer_time_s": [x["optimizer_time_s"] for x in sums], "time_ratio_where_both": both,
            }  # fmt: skip
    return "\n".join(lines) + "\n", record


def main() -> int:
    md, rec = table()
    (HERE / "patience-time.md").write_text(md)
    (HERE / "patience-time.json").write_text(json.dumps(rec, indent=1) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
