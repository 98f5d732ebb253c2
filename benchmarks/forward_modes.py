"""The forward-mode options of the generic path, timed per HF iteration (issue 27, item 2).

    taskset -c 0 python benchmarks/forward_modes.py [--n 200,2000] [--products 5,20,50] [--repeats 3]

For each model and batch size, and each ``ModuleProblem.forward_mode`` that applies (``layers``:
per-layer rules on one recorded forward pass, chains of known layers only; ``jvp``: a forward
pass with every product, switching to a checked ``linearize`` trace after 8 products;
``linearize``: the trace from the first product), the time of what one HF iteration pays for
its products: building the operator (the forward pass) plus ``k`` products ``A d`` and ``k``
products ``A^T u``, for ``k`` LSMR iterations. One thread; modes interleaved; median of the
repeats. Prints a markdown table with each time over the fastest mode's for the same case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from shf.curvature.module import ModuleProblem
from shf.models import RowTransformer, SmallCNN, mlp_classifier
from shf.models.autoencoder import Autoencoder, as_sequential

MODES = ("layers", "jvp", "linearize")


def _models() -> dict[str, tuple[nn.Module, int, str]]:
    torch.manual_seed(0)
    ae = as_sequential(Autoencoder((256, 400, 200, 100, 50, 25)))
    return {
        "USPS autoencoder (nn.Sequential)": (ae, 256, "mse"),
        "MLP classifier 256-128-64-10": (mlp_classifier(256, [128, 64], 10), 256, "cross_entropy"),
        "CNN classifier (SmallCNN)": (SmallCNN(256, 10), 256, "cross_entropy"),
        "transformer classifier (width 32)": (RowTransformer(256, 10, 32), 256, "cross_entropy"),
    }


def _time(problem: ModuleProblem, X: torch.Tensor, Y: torch.Tensor, k: int) -> float:
    w = [p.detach() for p in problem.model.parameters()]
    g = torch.Generator().manual_seed(1)
    d = [torch.randn(t.shape, generator=g) for t in w]
    t0 = time.perf_counter()
    A = problem.jacobian(w, X, Y)
    u = A.residual
    for _ in range(k):
        A.matvec(d)
        A.rmatvec(u)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="200,2000")
    ap.add_argument("--products", default="5,20,50")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sizes = [int(v) for v in a.n.split(",")]
    ks = [int(v) for v in a.products.split(",")]
    head = " | ".join(f"{m} (s, x fastest)" for m in MODES)
    print(f"| model | n | k | {head} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (model, width, loss) in _models().items():
        model.eval()
        for n in sizes:
            g = torch.Generator().manual_seed(0)
            X = torch.rand(n, width, generator=g)
            Y = X if loss == "mse" else torch.randint(0, 10, (n,), generator=g)
            for k in ks:
                modes = ["jvp", "linearize"]
                if ModuleProblem(model, loss).chain_plan is not None:
                    modes.insert(0, "layers")
                problems = {m: ModuleProblem(model, loss, forward_mode=m) for m in modes}
                times: dict[str, list[float]] = {m: [] for m in modes}
                for _ in range(a.repeats + 1):  # the first round warms up
                    for m in modes:
                        times[m].append(_time(problems[m], X, Y, k))
                med = {m: statistics.median(v[1:]) for m, v in times.items()}
                best = min(med.values())
                cells = [f"{med[m]:.3g} ({med[m] / best:.2f})" if m in med else "-" for m in MODES]
                print(f"| {name} | {n} | {k} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
