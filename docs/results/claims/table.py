"""The tables of issue 31 item 5's claims from the arms ``run.sh`` archived.

    python docs/results/claims/table.py usps      # writes docs/results/claims/<data set>/tables.md

One table per claim: for each arm, the test error per seed (at the best validation error), the
mean with its 95% t-interval, the per-seed ratio to the claim's reference arm on the same seed
(the same initial weights and data), the mean best validation error and HF iterations (first-order
epochs for Adam). An arm with no finished run is left out; a claim with fewer than two arms too.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from shf.experiments.archive import unpack
from shf.experiments.compare import mean_ci_text

HERE = Path(__file__).resolve().parent

#: claim: (title, the reference arm, the arms in order)
CLAIMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "solver": ("LSMR against CG on the same damped, preconditioned system", "defaults", ("defaults", "cg")),
    "paper-solver": (
        "the paper's settings with LSMR (SHF-LSMR) against CG (SHF-CG), run side by side",
        "paper-lsmr", ("paper-lsmr", "paper-cg"),
    ),
    "merit": (
        "the validation merit inside the solver off (the defaults, B15) and on",
        "defaults", ("defaults", "merit"),
    ),
    "noise": (
        "the defaults run twice: the run-to-run noise of a timed run",
        "defaults", ("defaults", "defaults-rerun"),
    ),
    "batch": ("dynamic (Alg. 1 and 2) against a fixed batch", "defaults", ("defaults", "fixed")),
    "precond": (
        "Chapelle-Erhan (Alg. 3) against Martens' preconditioner against none",
        "defaults", ("defaults", "martens-pc", "no-pc"),
    ),
    "methods": (
        "the paper's settings against the defaults against Martens HF against the fair Adam",
        "adam", ("paper", "defaults", "martens-hf", "adam"),
    ),
}


def arm_runs(ds: str, arm: str) -> dict[int, dict[str, Any]]:
    """{seed: summary} of the arm's finished runs."""
    arc = HERE / ds / f"{arm}.json.gz"
    if not arc.is_file():
        return {}
    out: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        unpack(arc, tmp)
        for f in Path(tmp).rglob("summary.json"):
            s = json.loads(f.read_text())
            if s.get("stop_reason") != "interrupted":
                out[int(s["seed"])] = s
    return out


def tables(ds: str) -> str:
    parts = [f"# Item 5's claims on {ds}\n", "Made by `python docs/results/claims/table.py " + ds + "`.\n"]
    for claim, (title, ref, arms) in CLAIMS.items():
        runs = {a: arm_runs(ds, a) for a in arms}
        runs = {a: r for a, r in runs.items() if r}
        if len(runs) < 2 or ref not in runs:
            continue
        seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
        if not seeds:
            continue
        parts.append(f"## {claim}: {title}\n")
        parts.append(f"Seeds {', '.join(map(str, seeds))}; ratios per seed to `{ref}`.\n")
        parts.append(
            "| arm | test per seed | mean ± 95% | per-seed test / reference "
            "| best val (mean) | iterations (mean) |"
        )
        parts.append("|---|---|---|---|---|---|")
        for a, r in runs.items():
            tests = [r[s]["test_error"] for s in seeds]
            ratios = [r[s]["test_error"] / runs[ref][s]["test_error"] for s in seeds]
            val = statistics.fmean(r[s]["val_error"] for s in seeds)
            its = statistics.fmean(r[s]["hf_iterations"] for s in seeds)
            parts.append(
                f"| {a} | {', '.join(f'{t:.4f}' for t in tests)} | {mean_ci_text(tests)} | "
                f"{mean_ci_text(ratios, '.3f')} | {val:.4f} | {its:.0f} |"
            )
        parts.append("")
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    ds = argv[0] if argv else "usps"
    md = tables(ds)
    (HERE / ds).mkdir(exist_ok=True)
    (HERE / ds / "tables.md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
