"""The fixed cost of an HF iteration on tiny models, with and without this session's cuts.

    taskset -c 1 python benchmarks/overhead.py [--problems Misra1a,MGH09] [--blocks 30]

Issue 31 item 4 asks for the fixed cost per HF iteration on models of a handful of parameters
and for what need not be paid there to go. Three cuts are measured against themselves switched
off, in one process, alternating blocks of ``--iterations`` HF iterations (each block a fresh
``shf.SHF`` on the NIST problem from its near start, after 3 warm-up iterations), so that the
machine's drift falls on both alike:

* the batch check (a forward pass on two rows) only for tensors not checked before, unchanged
  (``SHF._checked_batch``; off: reset before every step);
* ``math_kernels`` doing nothing inside itself (off: its switches at every entry);
* B20's exact solve reading the operator's own matrix (``ModuleJacobian.dense``; off: one
  product per weight).

Prints, per problem, the median (and fastest) block's time per HF iteration with the cuts off
and on, and their ratio; then how long forming ``J`` takes by ``torch.func.jacrev`` (what the
operator uses for at most 256 outputs), ``jacfwd`` and batched autograd, against one forward
pass through ``functional_call``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import shf
from shf.curvature import module as cm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lsq_problems
from least_squares import Parametric


def _cuts(on: bool) -> None:
    """Switch the kernel-nesting and dense-matrix cuts on or off (the batch check: in the loop)."""
    cm.math_kernels = _MATH_KERNELS if on else (lambda rnn: cm._math_switches(rnn))  # type: ignore[assignment]
    cm.ModuleJacobian.dense = _DENSE if on else (lambda self: None)  # type: ignore[method-assign]


_MATH_KERNELS, _DENSE = cm.math_kernels, cm.ModuleJacobian.dense


def hf_iteration(problem: lsq_problems.Problem, blocks: int, iterations: int) -> dict[bool, list[float]]:
    """Seconds per HF iteration of each block, cuts off (False) and on (True)."""
    X, Y = problem.x, problem.y.unsqueeze(1)
    out: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(blocks):
            for on in (False, True):
                _cuts(on)
                model = Parametric(problem, problem.starts[1])
                opt = shf.SHF(model, lambda o, y: o - y)
                for _ in range(3):
                    opt.step(X, Y)
                t0 = time.perf_counter()
                for _ in range(iterations):
                    if not on:
                        opt._checked_batch = None
                    opt.step(X, Y)
                out[on].append((time.perf_counter() - t0) / iterations)
    finally:
        _cuts(True)
    return out


def _best(f: Callable[[], Any], n: int = 100, repeats: int = 5) -> float:
    for _ in range(3):
        f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - t0) / n)
    return min(times)


def jacobians(problem: lsq_problems.Problem) -> dict[str, float]:
    """Seconds to form ``J`` three ways, and one forward pass, at the near start."""
    model = Parametric(problem, problem.starts[1])
    prob = cm.ModuleProblem(model, lambda o, y: o - y)
    w = [p.detach() for p in model.parameters()]
    X, Y = problem.x, problem.y.unsqueeze(1)

    def fn(*ws: torch.Tensor) -> torch.Tensor:
        return prob.output(ws, X, Y)

    def batched() -> Any:
        wr = [t.detach().requires_grad_(True) for t in w]
        with torch.enable_grad():
            z = fn(*wr).reshape(-1)
            eye = torch.eye(z.numel(), dtype=z.dtype)
            return torch.autograd.grad(z, wr, eye, is_grads_batched=True)

    return {
        "forward": _best(lambda: fn(*w)),
        "jacrev": _best(lambda: torch.func.jacrev(fn)(*w)),
        "jacfwd": _best(lambda: torch.func.jacfwd(fn)(*w)),
        "autograd": _best(batched),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", default="Misra1a,MGH09,Thurber,Lanczos3,BoxBOD")
    p.add_argument("--blocks", type=int, default=30)
    p.add_argument("--iterations", type=int, default=10)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    problems = lsq_problems.load(None, a.problems.split(","))
    print("| problem | cuts off, ms per HF iteration (fastest) | cuts on | on / off |")
    print("|---|---|---|---|")
    for problem in problems:
        t = hf_iteration(problem, a.blocks, a.iterations)
        off, on = statistics.median(t[False]), statistics.median(t[True])
        print(f"| {problem.name} | {1e3 * off:.3f} ({1e3 * min(t[False]):.3f}) | {1e3 * on:.3f} "
              f"({1e3 * min(t[True]):.3f}) | {on / off:.3f} |", flush=True)  # fmt: skip
    print("\n| problem | forward ms | jacrev | jacfwd | batched autograd |")
    print("|---|---|---|---|---|")
    for problem in problems:
        j = {k: 1e3 * v for k, v in jacobians(problem).items()}
        cells = " | ".join(f"{j[k]:.3f}" for k in ("forward", "jacrev", "jacfwd", "autograd"))
        print(f"| {problem.name} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
