"""The classifiers with shf's defaults against their presets' settings and the fair Adam (issue 31).

    python docs/results/fair/classify_defaults.py     # writes docs/results/fair/classify-defaults.md

For each classifier, the runs of shf's defaults (``docs/results/fair/<data set>-defaults/runs.json.gz``,
made by ``METHODS=shf-lsmr bash docs/results/fair/run.sh <data set>-defaults``) beside the fair
table's runs of the preset's settings and of the fair Adam (``docs/results/fair/<data set>/compare.json``:
the same data, split, model, budget and seeds). Test cross-entropy at each run's best validation
cross-entropy; means with 95% t-intervals; ratios per seed to Adam's on the same seed; Adam's target
(its mean best validation cross-entropy) and the time each run took to reach it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from shf.experiments.archive import unpack
from shf.experiments.compare import _time_to, mean_ci_text
from shf.runlog import read_metrics

HERE = Path(__file__).resolve().parent
DATASETS = (
    "classify-usps", "classify-t10k", "classify-usps-cnn", "classify-t10k-cnn", "classify-usps-transformer",
)


def _defaults(ds: str, target: float, name: str = "runs.json.gz") -> dict[int, dict[str, Any]]:
    """{seed: test_error, test_accuracy, best_val_error, time_to_target_s, iterations} of the runs
    archived as ``<ds>-defaults/<name>`` (the defaults', or Adam's with a weight decay)."""
    out: dict[int, dict[str, Any]] = {}
    arc = HERE / f"{ds}-defaults" / name
    if not arc.is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        unpack(arc, tmp)
        for summary in Path(tmp).rglob("summary.json"):
            s = json.loads(summary.read_text())
            out[int(s["seed"])] = {
                "test_error": s["test_error"],
                "test_accuracy": s.get("test_accuracy"),
                "best_val_error": s["val_error"],
                "time_to_target_s": _time_to(read_metrics(summary.parent), "val_error", target),
                "iterations": s.get("hf_iterations"),
            }
    return out


def table() -> tuple[str, dict[str, Any]]:
    lines = [
        "| classifier | method | test CE per seed | mean ± 95% | per-seed test / Adam's | per-seed test / "
        "Adam's with weight decay swept | Adam's target reached (time / Adam's) |",
        "|---|---|---|---|---|---|---|",
    ]
    record: dict[str, Any] = {}
    for ds in DATASETS:
        fair = json.loads((HERE / ds / "compare.json").read_text())
        target = fair["target_val_error"]
        per = {r["method"]: {int(x["seed"]): x for x in r["seeds"]} for r in fair["rows"]}
        adam = per["adam"]
        new = _defaults(ds, target)
        seeds = sorted(adam)
        if not new or not set(seeds) <= set(new):
            continue
        arms = {"defaults": new, "preset's settings": per["shf-lsmr"], "fair Adam": adam}
        # Adam with torch.optim's weight decay at its winning rate (first_order.weight_decay), where
        # run: the decay whose seed-0 best validation CE is lowest (0 included) is Adam at its best
        best = ("fair Adam", adam[seeds[0]]["best_val_error"])
        for wd in ("1e-4", "1e-3", "1e-2"):
            runs_wd = _defaults(ds, target, f"adam-wd{wd}.json.gz")
            if set(seeds) <= set(runs_wd):
                arms[f"Adam, weight decay {wd}"] = runs_wd
                if runs_wd[seeds[0]]["best_val_error"] < best[1]:
                    best = (f"Adam, weight decay {wd}", runs_wd[seeds[0]]["best_val_error"])
        top, swept = arms[best[0]], len(arms) > 3  # not swept: no weight decay tried (the CNNs)
        record[ds] = {"target_val_error": target, "seeds": seeds, "adam_at_its_best": best[0], "arms": {}}
        for name, runs in arms.items():
            tests = [runs[s]["test_error"] for s in seeds]
            ratios = [runs[s]["test_error"] / adam[s]["test_error"] for s in seeds]
            ratios_best = [runs[s]["test_error"] / top[s]["test_error"] for s in seeds]
            times = [(runs[s]["time_to_target_s"], adam[s]["time_to_target_s"]) for s in seeds]
            reached = sum(t is not None for t, _ in times)
            both = [t / a for t, a in times if t is not None and a]
            cell = f"{reached}/{len(seeds)}"
            if both and not name.startswith(("fair Adam", "Adam")):
                cell += " (" + ", ".join(f"{r:.2f}" for r in both) + ")"
            per_seed = ", ".join(f"{t:.4f}" for t in tests)
            lines.append(
                f"| {ds} | {name} | {per_seed} | {mean_ci_text(tests)} | "
                f"{mean_ci_text(ratios, '.3f')} | {mean_ci_text(ratios_best, '.3f') if swept else '—'} | "
                f"{cell} |"
            )
            record[ds]["arms"][name] = {
                "test_error": tests, "test_ratio": ratios, "test_ratio_to_adam_at_its_best": ratios_best,
                "time_ratio_where_both": both,
            }  # fmt: skip
    return "\n".join(lines) + "\n", record


def main() -> int:
    md, rec = table()
    (HERE / "classify-defaults.md").write_text(md)
    (HERE / "classify-defaults.json").write_text(json.dumps(rec, indent=1) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
