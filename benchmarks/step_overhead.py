"""Single-process cost of the data-parallel hooks: time ``shf.fit`` iterations of one source tree.

    PYTHONPATH=<tree>/src python benchmarks/step_overhead.py        # prints seconds per HF iteration

Run it alternately on the tree before and after a change, one thread, on an otherwise idle core
(``taskset -c 1``), and compare the medians: the USPS autoencoder (256-400-200-100-50-25) at a
fixed batch of 2000 random rows, 30 LSMR iterations per HF iteration (no early stop), with a
time limit (so the deadline checks run) and the validation merit.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import shf
from shf.optim.step import SHFConfig


def main() -> int:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(4000, 256, generator=g)
    net = shf.models.Autoencoder((256, 400, 200, 100, 50, 25), generator=torch.Generator().manual_seed(1))
    cfg = SHFConfig.paper(n1=2000, n_max=2000, maxiter1=30, atol=0.0, ftol=0.0, miniter=10**6, recover=10**6,
                    batch_schedule="fixed")  # fmt: skip
    per_it = []
    for _ in range(3):
        t = time.perf_counter()
        res = shf.fit(net, X[:3000], X[3000:], config=cfg, max_iters=6, patience=100, max_time=1e6)
        per_it.append((time.perf_counter() - t) / len(res.history))
    print(f"{statistics.median(per_it):.4f} s per HF iteration ({', '.join(f'{x:.4f}' for x in per_it)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
