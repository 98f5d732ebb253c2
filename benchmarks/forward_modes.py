"""The forward-mode options of the generic path, timed per HF iteration (issue 27, item 2).

    taskset -c 0 python benchmarks/forward_modes.py [--n 200,2000] [--products 5,20,50] [--repeats 3]

For each model and batch size, and each ``ModuleProblem.forward_mode`` that applies (``layers``:
per-layer rules on one recorded forward pass, chains of known layers only; ``jvp``: a forward
pass with every product, switching to a checked ``linearize`` trace after 8 products;
``linearize``: the trace from the first product), the time of what one HF iteration pays for
its products: building the operator (the forward pass) plus ``k`` products ``A d`` and ``k``
products ``A^T u``, for ``k`` LSMR iterations. Two more ways to make ``J d``, measured here and
not in the library (the table says why): ``dual``, forward-mode AD with dual tensors as the
module's parameters (``torch.autograd.forward_ad``; a forward pass per product, as ``jvp``,
without ``torch.func``'s transforms); ``double-backward``, the transpose of the transpose:
``g(u) = J^T u`` is built once per HF iteration as a differentiable graph, and ``J d`` is its
reverse-mode derivative in ``u``, one backward pass of that graph per product. Both are checked
against ``jvp`` before they are timed. One thread; modes interleaved; median of the repeats.
Prints a markdown table with each time over the fastest mode's for the same case.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from shf.curvature.module import ModuleProblem
from shf.models import RowTransformer, SmallCNN, mlp_classifier
from shf.models.autoencoder import Autoencoder, as_sequential

MODES = ("layers", "jvp", "linearize", "dual", "double-backward")


class _Autograd:
    """``A = B^T J / sqrt(n)`` with ``A^T u`` by autograd on one retained forward pass, and
    ``A d`` by dual tensors (``dual``) or by differentiating ``J^T u`` in ``u`` (``double-backward``)."""

    def __init__(self, problem: ModuleProblem, w: Sequence[Tensor], X: Tensor, Y: Tensor, how: str) -> None:
        self.problem, self.X, self.Y, self.how = problem, X, Y, how
        self.w = [t.detach() for t in w]
        wr = [t.requires_grad_(True) for t in (u.clone() for u in self.w)]
        with torch.enable_grad():
            z = problem.output(wr, X, Y)
            self.z, self.wr = z, wr
            if how == "double-backward":
                self.u0 = torch.zeros_like(z, requires_grad=True)
                self.g = torch.autograd.grad(z, wr, self.u0, create_graph=True)
        self.point = problem.loss_fn.at(z.detach(), Y)
        self.scale = 1.0 / math.sqrt(X.shape[0])
        self.residual = self.point.residual * self.scale

    def matvec(self, d: list[Tensor]) -> Tensor:
        if self.how == "dual":
            with forward_ad.dual_level():
                duals = [forward_ad.make_dual(t, dt) for t, dt in zip(self.w, d)]  # type: ignore[no-untyped-call]
                jd = forward_ad.unpack_dual(self.problem.output(duals, self.X, self.Y)).tangent  # type: ignore[no-untyped-call]
        else:
            jd = torch.autograd.grad(self.g, self.u0, d, retain_graph=True)[0]
        return self.point.bt(jd) * self.scale

    def rmatvec(self, U: Tensor) -> tuple[Tensor, ...]:
        return torch.autograd.grad(self.z, self.wr, self.point.b(U) * self.scale, retain_graph=True)


def _models() -> dict[str, tuple[nn.Module, int, str]]:
    torch.manual_seed(0)
    ae = as_sequential(Autoencoder((256, 400, 200, 100, 50, 25)))
    return {
        "USPS autoencoder (nn.Sequential)": (ae, 256, "mse"),
        "MLP classifier 256-128-64-10": (mlp_classifier(256, [128, 64], 10), 256, "cross_entropy"),
        "CNN classifier (SmallCNN)": (SmallCNN(256, 10), 256, "cross_entropy"),
        "transformer classifier (width 32)": (RowTransformer(256, 10, 32), 256, "cross_entropy"),
    }


def _operator(problem: ModuleProblem, mode: str, w: list[Tensor], X: Tensor, Y: Tensor) -> object:
    if mode in ("dual", "double-backward"):
        return _Autograd(problem, w, X, Y, mode)
    return problem.jacobian(w, X, Y)


def _check(model: nn.Module, loss: str, X: Tensor, Y: Tensor, mode: str) -> None:
    """``A d`` and ``A^T u`` of ``mode`` equal ``jvp``'s (float32 round-off: 1e-4 relative)."""
    w = [p.detach() for p in model.parameters()]
    g = torch.Generator().manual_seed(2)
    d = [torch.randn(t.shape, generator=g) for t in w]
    ref = ModuleProblem(model, loss, forward_mode="jvp").jacobian(w, X, Y)
    A = _operator(ModuleProblem(model, loss, forward_mode="jvp"), mode, w, X, Y)
    u = torch.randn(ref.residual.shape, generator=g)
    torch.testing.assert_close(A.matvec(d), ref.matvec(d), rtol=1e-4, atol=1e-5)  # type: ignore[attr-defined]
    for a, b in zip(A.rmatvec(u), ref.rmatvec(u)):  # type: ignore[attr-defined]
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _time(problem: ModuleProblem, mode: str, X: torch.Tensor, Y: torch.Tensor, k: int) -> float:
    w = [p.detach() for p in problem.model.parameters()]
    g = torch.Generator().manual_seed(1)
    d = [torch.randn(t.shape, generator=g) for t in w]
    t0 = time.perf_counter()
    A: Any = _operator(problem, mode, w, X, Y)
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
    print("|---|---:|---:|" + "---:|" * len(MODES))
    for name, (model, width, loss) in _models().items():
        model.eval()
        for n in sizes:
            g = torch.Generator().manual_seed(0)
            X = torch.rand(n, width, generator=g)
            Y = X if loss == "mse" else torch.randint(0, 10, (n,), generator=g)
            for k in ks:
                modes = ["jvp", "linearize", "dual", "double-backward"]
                if ModuleProblem(model, loss).chain_plan is not None:
                    modes.insert(0, "layers")
                for m in ("dual", "double-backward"):
                    _check(model, loss, X[:50], Y[:50], m)
                own = {m: m if m in ("layers", "jvp", "linearize") else "jvp" for m in modes}
                problems = {m: ModuleProblem(model, loss, forward_mode=own[m]) for m in modes}
                times: dict[str, list[float]] = {m: [] for m in modes}
                for _ in range(a.repeats + 1):  # the first round warms up
                    for m in modes:
                        times[m].append(_time(problems[m], m, X, Y, k))
                med = {m: statistics.median(v[1:]) for m, v in times.items()}
                best = min(med.values())
                cells = [f"{med[m]:.3g} ({med[m] / best:.2f})" if m in med else "-" for m in MODES]
                print(f"| {name} | {n} | {k} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
