"""Before/after table and figure from two ``shf bench kernels --out`` results.

    python benchmarks/compare_kernels.py BEFORE/kernels.json AFTER/kernels.json --out docs/results/bench

Writes ``kernels-compare.md`` (ratio to the ceiling per case, before and after, for the
products and for a whole LSMR iteration) and ``kernels-compare.png``. Each run's ratios
are against the ceiling measured in that run, so the two runs need not share a machine
state; the ratios, not the GFLOP/s, are what compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _key(c: dict[str, Any]) -> tuple[str, int, str]:
    return (c["arch"], c["n"], c["dtype"])


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    b = {_key(c): c for c in before["cases"]}
    lines = [
        "| arch | n | dtype | products ratio before | after | LSMR iteration ratio before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in after["cases"]:
        o = b.get(_key(c))
        if o is None:
            continue
        lines.append(
            f"| {c['arch']} | {c['n']} | {c['dtype']} | {o['ratio']:.2f} | **{c['ratio']:.2f}** | "
            f"{o['lsmr_ratio']:.2f} | **{c['lsmr_ratio']:.2f}** |"
        )
    return "\n".join(lines) + "\n"


def figure(before: dict[str, Any], after: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = {_key(c): c for c in before["cases"]}
    dtypes = sorted({c["dtype"] for c in after["cases"]})
    fig, axes = plt.subplots(len(dtypes), 1, figsize=(11, 3.6 * len(dtypes)), squeeze=False)
    for ax, dt in zip(axes[:, 0], dtypes):
        cases = [c for c in after["cases"] if c["dtype"] == dt and _key(c) in b]
        x = range(len(cases))
        bars = [
            ("before, whole LSMR iteration", b, "lsmr_ratio"),
            ("after, whole LSMR iteration", None, "lsmr_ratio"),
            ("after, products alone", None, "ratio"),
        ]
        for off, (label, rec, key) in enumerate(bars):
            vals = [(rec[_key(c)] if rec is not None else c)[key] for c in cases]
            ax.bar([i + (off - 1) * 0.27 for i in x], vals, width=0.27, label=label)
        ax.axhline(0.8, color="k", lw=0.8, ls="--")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xticks(list(x), [f"{c['arch']}\nn={c['n']}" for c in cases], fontsize=8)
        ax.set_ylabel("ratio to ceiling")
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{dt}: throughput / matrix-product ceiling on the same shapes (dashed: 0.8 target)")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--out", default=".")
    a = p.parse_args()
    before = json.loads(Path(a.before).read_text())
    after = json.loads(Path(a.after).read_text())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels-compare.md").write_text(table(before, after))
    figure(before, after, out / "kernels-compare.png")
    print(table(before, after))


if __name__ == "__main__":
    main()
