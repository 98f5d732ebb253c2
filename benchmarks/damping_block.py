"""B7 + B10's solve: one diagonal damping block against the weight-cost and damping blocks stacked.

    taskset -c 1 python benchmarks/damping_block.py --archs mnist,curves,usps --iters 40

With a subsampled curvature (B7) and a weight cost ``wc`` (B10), the step solves
``(C (A^T A + wc I) C + lambda^2 I) y = h`` by LSMR on a stacked operator. Before, it stacked
the weight cost's rows ``sqrt(wc) C`` and the damping rows ``lambda I`` under ``A C`` (two
weight-sized blocks in LSMR's range vector); now one block ``D = sqrt(wc c^2 + lambda^2)``
(:class:`shf.solvers.operator.DampedStack` with a vector ``damp``) has the same normal
equations. For each architecture this times, in one process and interleaved, ``--iters`` LSMR
iterations (no early stop) of each form on 250 curvature rows, float32, one thread, and
prints the time per LSMR iteration, the part of it in the Jacobian products, and the ratio.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys

import torch

from shf import tensorlist as tl
from shf.bench.common import ARCHITECTURES, time_call
from shf.models.autoencoder import Autoencoder, sparse_init
from shf.optim import precond as pc
from shf.solvers.lsmr import lsmr
from shf.solvers.operator import DampedStack, TimedOperator
from shf.tensorlist import Vec


class TwoBlocks:
    """``[A C; sqrt(wc) C; lambda I]``, range vectors ``[U, *v1, *v2]``: the stacked form."""

    def __init__(self, A: TimedOperator, c: list[torch.Tensor], wc: float, lam: float) -> None:
        self.A, self.c, self.s, self.lam, self.k = A, c, math.sqrt(wc), lam, len(c)

    def matvec(self, y: Vec) -> Vec:
        x = tl.mul(self.c, y)
        return [self.A.matvec(x), *tl.scale(self.s, x), *tl.scale(self.lam, y)]

    def rmatvec(self, u: Vec) -> Vec:
        assert isinstance(u, list)
        out = tl.axpy_(self.s, u[1 : 1 + self.k], self.A.rmatvec(u[0]))
        return tl.axpy_(self.lam, u[1 + self.k :], tl.mul_(out, self.c))

    def range_norm(self, u: Vec) -> float:
        assert isinstance(u, list)
        return math.sqrt(sum(tl.norm(t) ** 2 for t in u))


def measure(arch: str, iters: int, rows: int, wc: float = 1e-4, lam: float = 0.3) -> str:
    """One table row: ``iters`` LSMR iterations of each form, timed interleaved."""
    encoder = ARCHITECTURES[arch]
    g = torch.Generator().manual_seed(0)
    net = Autoencoder(encoder)
    w = sparse_init(net, m0=20, sigma=1.5, generator=g, dtype=torch.float32)
    X = torch.rand(rows, encoder[0], generator=g)
    J = net.jacobian(w, X)
    c = pc.compute("chapelle-erhan", J, lam, g)
    assert c is not None
    y0 = [0.01 * torch.randn(t.shape, generator=g) for t in w]
    h = [torch.randn(t.shape, generator=g) for t in w]  # a right-hand side's damping part
    b = -J.residual
    timed = {"two": TimedOperator(J), "one": TimedOperator(J)}
    D = [torch.sqrt(t * t * wc + lam * lam) for t in c]
    ops: dict[str, object] = {"two": TwoBlocks(timed["two"], c, wc, lam)}
    ops["one"] = DampedStack(timed["one"], D, c)
    rhs = {"two": [b, *tl.scale(-math.sqrt(wc), w), *h], "one": [b, *tl.div(h, D)]}

    def solve(key: str) -> None:
        lsmr(ops[key], rhs[key], x0=y0, atol=0.0, btol=0.0, conlim=0.0, maxiter=iters)

    result = {}
    for key in ("two", "one", "two", "one"):  # interleaved: the second round counts
        timed[key].seconds = 0.0
        t = time_call(functools.partial(solve, key), min_time=2.0)
        calls = t.repeats + 1  # the warm-up call's products are counted too
        result[key] = (1e3 * t.median / iters, 1e3 * timed[key].seconds / calls / iters)
    n = sum(t.numel() for t in w)
    two, one = result["two"], result["one"]
    cells = [arch, f"{n:,}", f"{two[0]:.1f} ({two[1]:.1f})", f"{one[0]:.1f} ({one[1]:.1f})"]
    cells.append(f"{one[0] / two[0]:.2f}")
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="mnist,curves,usps")
    p.add_argument("--iters", type=int, default=40, help="LSMR iterations per solve (default 40)")
    p.add_argument("--rows", type=int, default=250, help="curvature rows (default 250, TUNED's)")
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| arch | weights | two blocks: ms / LSMR it (products) | one block: ms / LSMR it (products) "
          "| one / two |")  # fmt: skip
    print("|---|---|---|---|---|")
    for arch in args.archs.split(","):
        print(measure(arch, args.iters, args.rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
