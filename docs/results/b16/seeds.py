"""B16 over seeds against the fair tables' defaults and fair Adam (issue 31 item 3).

    python docs/results/b16/seeds.py            # writes docs/results/b16/seeds.md and seeds.json

(and, where they exist, the runs of the defaults since B24 on the fair table's machine kind,
``docs/results/fair/<data set>/b24-s<seed>.json.gz``, as one more arm)

For each data set with B16 runs (``docs/results/b16/<data set>/s<seed>.json.gz``, made by
``seeds.sh``), the per-seed test errors of the defaults and of the fair Adam come from the fair
table (``docs/results/fair/<data set>/compare.json``, the same seeds, initial weights, budget and
machine kind), and where the defaults were run again beside B16 (``docs/results/b16/<data
set>-defaults/``, the same machine and session) those too; the target is the fair table's (Adam's
mean best validation error). Means with 95%
t-intervals; ratios per seed to Adam's on the same seed.
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
FAIR = HERE.parent / "fair"
DATASETS = ("usps", "curves", "mnist-t10k")


def _b16_runs(
    ds: str, target: float, where: Path = HERE, pattern: str = "s*.json.gz"
) -> dict[int, dict[str, Any]]:
    """{seed: {test_error, best_val_error, time_to_target_s, hf_iterations, stop_reason}} of the
    runs archived under ``docs/results/b16/<ds>/`` (``<ds>`` may name the defaults' reruns,
    ``mnist-t10k-defaults``), or under ``where / ds`` as ``pattern`` (the defaults since B24:
    ``docs/results/fair/<ds>/b24-s<seed>.json.gz``)."""
    out: dict[int, dict[str, Any]] = {}
    if not (where / ds).is_dir():
        return out
    for arc in sorted((where / ds).glob(pattern)):
        with tempfile.TemporaryDirectory() as tmp:
            unpack(arc, tmp)
            for summary in Path(tmp).rglob("summary.json"):
                s = json.loads(summary.read_text())
                metrics = read_metrics(summary.parent)
                out[int(s["seed"])] = {
                    "test_error": s["test_error"],
                    "best_val_error": s["val_error"],
                    "time_to_target_s": _time_to(metrics, "val_error", target),
                    "hf_iterations": s["hf_iterations"],
                    "stop_reason": s["stop_reason"],
                    "optimizer_time_s": s["optimizer_time_s"],
                }
    return out


def _fair(ds: str) -> tuple[float, float, dict[str, dict[int, dict[str, Any]]]]:
    d = json.loads((FAIR / ds / "compare.json").read_text())
    per = {r["method"]: {int(x["seed"]): x for x in r["seeds"]} for r in d["rows"]}
    return d["target_val_error"], d["budget_s"], per


def table() -> tuple[str, dict[str, Any]]:
    lines = [
        "| data set | budget | method | test per seed | mean ± 95% | per-seed test / Adam's | "
        "Adam's target reached (time / Adam's) |",
        "|---|---|---|---|---|---|---|",
    ]
    record: dict[str, Any] = {}
    for ds in DATASETS:
        if not (HERE / ds).is_dir():
            continue
        target, budget, fair = _fair(ds)
        b16 = _b16_runs(ds, target)
        if not b16:
            continue
        seeds = sorted(b16)
        adam = fair["adam"]
        arms = {"defaults (fair table)": fair["shf-tuned"], "B16 (per-example)": b16, "fair Adam": adam}
        rerun = _b16_runs(f"{ds}-defaults", target)  # the defaults again, beside B16 (same machine)
        if rerun and set(seeds) <= set(rerun):
            arms = {"defaults (fair table)": fair["shf-tuned"], "defaults (rerun beside B16)": rerun,
                    "B16 (per-example)": b16, "fair Adam": adam}  # fmt: skip
        # the defaults since B24 (B16's c where the model has 100-1,000 weights per example),
        # run again on the fair table's machine kind (AMD EPYC)
        b24 = _b16_runs(ds, target, FAIR, "b24-s*.json.gz")
        if b24 and set(seeds) <= set(b24):
            arms = {**{k: v for k, v in arms.items() if k != "fair Adam"},
                    "defaults since B24 (AMD EPYC)": b24, "fair Adam": adam}  # fmt: skip
        record[ds] = {"target_val_error": target, "budget_s": budget, "seeds": seeds, "arms": {}}
        for name, runs in arms.items():
            tests = [runs[s]["test_error"] for s in seeds]
            ratios = [runs[s]["test_error"] / adam[s]["test_error"] for s in seeds]
            times = [(runs[s]["time_to_target_s"], adam[s]["time_to_target_s"]) for s in seeds]
            reached = sum(t is not None for t, _ in times)
            both = [t / a for t, a in times if t is not None and a]
            cell_t = f"{reached}/{len(seeds)}"
            if both and name != "fair Adam":
                cell_t += " (" + ", ".join(f"{r:.2f}" for r in both) + ")"
            lines.append(
                f"| {ds} | {budget:.0f} s | {name} | {', '.join(f'{t:.4f}' for t in tests)} | "
                f"{mean_ci_text(tests)} | {mean_ci_text(ratios, '.3f')} | {cell_t} |"
            )
            record[ds]["arms"][name] = {
                "test_error": tests, "test_ratio": ratios, "time_ratio_where_both": both, "reached": reached,
            }  # fmt: skip
    return "\n".join(lines) + "\n", record


def main() -> int:
    md, rec = table()
    (HERE / "seeds.md").write_text(md)
    (HERE / "seeds.json").write_text(json.dumps(rec, indent=1) + "\n")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
