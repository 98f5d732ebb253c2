"""Certified digits per NIST run: SHF (and its ablations) against the better of scipy's two methods.

    python docs/results/least-squares/plot.py [docs/results/least-squares/least-squares.json] [OUT.png]

One point per problem and start; on the diagonal SHF reaches as many digits as scipy, above it
more. Made from the benchmark's JSON (``benchmarks/least_squares.py --out``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else HERE / "least-squares.json"
    out = Path(argv[1]) if len(argv) > 1 else src.with_name("digits.png")
    rows = json.loads(src.read_text())
    digits: dict[tuple[str, int], dict[str, float]] = {}
    for r in rows:
        digits.setdefault((r["problem"], r["start"]), {})[r["method"]] = r["digits"]
    shf_methods = [m for m in ("shf", "shf-nielsen", "shf-no-roundoff", "shf-lsmr")
                   if all(m in d for d in digits.values())]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    markers = {"shf": "o", "shf-nielsen": "s", "shf-no-roundoff": "x", "shf-lsmr": "+"}
    labels = {
        "shf": "shf (defaults: B20, B21, B23)", "shf-nielsen": "Nielsen's rule instead of B23",
        "shf-no-roundoff": "without B21", "shf-lsmr": "LSMR instead of B20 (and B23)",
    }
    for m in shf_methods:
        xs = [max(d["scipy-lm"], d["scipy-trf"]) for d in digits.values()]
        ys = [d[m] for d in digits.values()]
        ax.scatter(xs, ys, marker=markers[m], label=labels[m], alpha=0.8 if m == "shf" else 0.5, s=28)
    ax.plot([0, 11.5], [0, 11.5], color="grey", lw=0.8)
    for (name, start), d in digits.items():
        best = max(d["scipy-lm"], d["scipy-trf"])
        if "shf" in d and d["shf"] < best - 1.0:
            ax.annotate(f"{name} ({start})", (best, d["shf"]), fontsize=8, xytext=(-70, 4),
                        textcoords="offset points")
    ax.set_xlabel("certified digits, the better of scipy's LM and TRF")
    ax.set_ylabel("certified digits, SHF")
    ax.set_title("NIST StRD, 27 problems x 2 starts")
    ax.set_xlim(-0.3, 11.5)
    ax.set_ylim(-0.3, 11.5)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
