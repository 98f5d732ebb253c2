"""Larger least-squares problems: SHF against torch's L-BFGS at equal time, and scipy's TRF.

    taskset -c 0 python benchmarks/least_squares_large.py [--n 2000] [--seconds 10] [--out DIR]

Four scalable Moré-Garbow-Hillstrom problems (``benchmarks/mgh_problems.py``) with ``n``
parameters and about ``n`` residuals, from the paper's starting point, float64, one thread:

* ``shf``: ``shf.SHF(model, residual)`` with the defaults (the full-batch regime, B17;
  matrix-free products: ``n`` is far above G16's 16), one step per HF iteration on all the
  residuals, until ``--seconds``;
* ``lbfgs``: ``torch.optim.LBFGS`` (strong Wolfe, history 100) on ``1/2 ||f||^2``, 20 iterations
  per call, until ``--seconds``;
* ``scipy-trf``: ``scipy.optimize.least_squares(method="trf", tr_solver="lsmr")`` with the
  Jacobian as a matrix-free ``LinearOperator`` (torch's ``jvp`` and ``vjp``), ``xtol = ftol =
  gtol = 1e-15``, at most 100 evaluations: the reference, run to its own stop.

Prints the digits of the zero residual (``-log10 ||f||``) and, where ``x*`` is known, the
certified digits of ``x``, at a quarter, half and all of the time; writes
``least-squares-large.md`` and ``.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse.linalg
import torch
from torch import Tensor, nn

import shf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mgh_problems
from lsq_problems import lre
from mgh_problems import MghProblem


@dataclass
class Trace:
    """One method on one problem: (seconds, residual digits, x digits or None) over time."""

    problem: str
    n: int
    method: str
    points: list[tuple[float, float, float | None]] = field(default_factory=list)
    iterations: int = 0

    def at(self, t: float) -> tuple[float, float | None]:
        """The digits reached by time ``t`` (the last point at or before it)."""
        best: tuple[float, float | None] = (0.0, None)
        for s, d, x in self.points:
            if s <= t:
                best = (d, x)
        return best


def _digits(problem: MghProblem, x: Tensor) -> tuple[float, float | None]:
    xd = None if problem.solution is None else lre(x, problem.solution)
    return problem.zero_digits(x), xd


class Vector(nn.Module):
    """``x`` as a module: ``forward(rows)`` is ``f(x)`` at the residuals ``rows`` (an ``(m, 1)``
    column of their indices as floats), one residual per example."""

    def __init__(self, problem: MghProblem) -> None:
        super().__init__()
        self.problem = problem
        self.x = nn.Parameter(problem.x0.clone())

    def forward(self, rows: Tensor) -> Tensor:
        return self.problem.residual(self.x)[rows[:, 0].long()].unsqueeze(1)


def run_shf(problem: MghProblem, seconds: float) -> Trace:
    model = Vector(problem)
    opt = shf.SHF(model, lambda out, y: out - y)
    m = problem.residual(problem.x0).shape[0]
    rows = torch.arange(m, dtype=torch.float64).unsqueeze(1)
    zero = torch.zeros(m, 1, dtype=torch.float64)
    trace = Trace(problem.name, problem.n, "shf")
    t0 = time.perf_counter()
    trace.points.append((0.0, *_digits(problem, model.x.detach())))
    while time.perf_counter() - t0 < seconds:
        opt.step(rows, zero)
        trace.iterations += 1
        trace.points.append((time.perf_counter() - t0, *_digits(problem, model.x.detach())))
    return trace


def run_lbfgs(problem: MghProblem, seconds: float) -> Trace:
    x = problem.x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=20, history_size=100, tolerance_grad=0.0,
                            tolerance_change=0.0, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        r = problem.residual(x)
        f = 0.5 * (r @ r)
        f.backward()  # type: ignore[no-untyped-call]
        return f

    trace = Trace(problem.name, problem.n, "lbfgs")
    t0 = time.perf_counter()
    trace.points.append((0.0, *_digits(problem, x.detach())))
    while time.perf_counter() - t0 < seconds:
        opt.step(closure)  # type: ignore[no-untyped-call]
        trace.points.append((time.perf_counter() - t0, *_digits(problem, x.detach())))
    trace.iterations = int(opt.state[x]["n_iter"])
    return trace


def run_scipy(problem: MghProblem) -> Trace:
    def fun(v: np.ndarray) -> np.ndarray:
        return problem.residual(torch.from_numpy(v)).numpy()

    def jac(v: np.ndarray) -> scipy.sparse.linalg.LinearOperator:
        x = torch.from_numpy(v.copy())
        m = fun(v).shape[0]
        vjp = torch.func.vjp(problem.residual, x)[1]

        def matvec(d: np.ndarray) -> np.ndarray:
            tangent = (torch.from_numpy(np.ravel(d).copy()),)
            jd: np.ndarray = torch.func.jvp(problem.residual, (x,), tangent)[1].numpy()
            return jd

        def rmatvec(u: np.ndarray) -> np.ndarray:
            ju: np.ndarray = vjp(torch.from_numpy(np.ravel(u).copy()))[0].numpy()
            return ju

        shape = (m, x.shape[0])
        return scipy.sparse.linalg.LinearOperator(shape, dtype=np.float64, matvec=matvec, rmatvec=rmatvec)

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.optimize.least_squares(fun, problem.x0.numpy(), jac=jac, method="trf", tr_solver="lsmr",
                                           xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=100)  # fmt: skip
    trace = Trace(problem.name, problem.n, "scipy-trf", iterations=int(res.nfev))
    trace.points.append((time.perf_counter() - t0, *_digits(problem, torch.from_numpy(res.x))))
    return trace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=10.0, help="the time of shf and of L-BFGS")
    p.add_argument("--problems", default=",".join(mgh_problems.FUNCTIONS))
    p.add_argument("--scipy", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    traces: list[Trace] = []
    for name in a.problems.split(","):
        problem = mgh_problems.problem(name, a.n)
        traces += [run_shf(problem, a.seconds), run_lbfgs(problem, a.seconds)]
        if a.scipy:
            traces.append(run_scipy(problem))
    T = a.seconds
    lines = [
        f"n = {a.n}; digits of the zero residual (-log10 ||f||), and of x where x* is known, at a quarter, "
        f"half and all of {T:g} s (scipy: at its own stop, its time in the last column)",
        "",
        "| problem | method | ||f|| digits at T/4, T/2, T | x digits at T/4, T/2, T | iterations | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for tr in traces:
        if tr.method == "scipy-trf":
            s, d, x = tr.points[-1]
            cells = (f"{d:.1f}", "" if x is None else f"{x:.1f}", f"{s:.2f}")
        else:
            got = [tr.at(f * T) for f in (0.25, 0.5, 1.0)]
            xs = "" if got[-1][1] is None else ", ".join(f"{x:.1f}" for _, x in got if x is not None)
            cells = (", ".join(f"{d:.1f}" for d, _ in got), xs, f"{T:g}")
        row = f"| {tr.problem} | {tr.method} | {cells[0]} | {cells[1]} | {tr.iterations} | {cells[2]} |"
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "least-squares-large.md").write_text(text)
        (a.out / "least-squares-large.json").write_text(json.dumps([asdict(t) for t in traces]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
