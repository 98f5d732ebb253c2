"""SHF on NIST's nonlinear regression problems, against scipy's least_squares and torch's L-BFGS.

    taskset -c 0 python benchmarks/least_squares.py [--problems Misra1a,MGH09] [--out DIR]

Each of the 27 NIST StRD problems (``benchmarks/lsq_problems.py``), from both of NIST's starting
points, in float64 on one thread, by:

* ``scipy-lm``: ``scipy.optimize.least_squares(method="lm")`` (MINPACK's Levenberg-Marquardt)
  with the exact Jacobian (``torch.func.jacrev``), ``xtol = ftol = gtol = 1e-15``;
* ``scipy-trf``: the same with ``method="trf"``;
* ``lbfgs``: ``torch.optim.LBFGS`` (strong Wolfe line search, history 100) on ``1/2 ||r||^2``
  until it stops moving or ``--max-iters`` iterations;
* ``shf``: ``shf.SHF`` with its defaults on the residual (the whole data every step, no
  validation set), which choose the full-batch regime (B17: a plain, well-damped LM), form the
  2-9 parameters' Jacobian (G16), solve each step's damped problem exactly (B20, QR), choose the
  damping for a trust region on the step scaled by MINPACK's column norms (B23 with B18) and take
  the last Gauss-Newton steps at ``f``'s round-off (B21), ``--max-iters`` HF iterations (refused
  steps count) or ``--patience`` without a lower loss; the answer is the final iterate
  (``--answer best``: the iterate of the lowest sum of squares);
* ``shf-stochastic``: the same with ``regime="stochastic"``: the defaults made for mini-batches
  (weight cost, damping floor, forcing term, Chapelle-Erhan), what ``shf`` ran before B17;
* on request: ``shf-lsmr`` (the regime with LSMR to round-off instead of the exact solve),
  ``shf-no-roundoff`` (without B21), ``shf-nielsen`` (the regime before B23: Nielsen's rule on
  ``lambda``, no scaling), ``shf-trust-region`` (B23 without B18's scaling), ``shf-martens`` (with
  Martens' preconditioner), ``shf-column-norms``, ``shf-geodesic`` and ``shf-geodesic-0.25`` (the
  regime before B23 with B22's geodesic acceleration); ``--radius-factor`` sets B23's first radius
  (``shf.optim.damping.RADIUS_FACTOR``, an ablation).

Prints, per problem and start, the certified digits reached (NIST's LRE: the fewest correct
significant digits over the parameters, and of the residual sum of squares) and the seconds;
then, per method, the problems solved to at least 4 and 6 digits and the median time. Writes
``least-squares.md`` and ``least-squares.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn

import shf
from shf.optim import damping

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lsq_problems
from lsq_problems import Problem, lre

METHODS = ("scipy-lm", "scipy-trf", "lbfgs", "shf", "shf-stochastic")
VARIANTS: dict[str, dict[str, Any]] = {
    "shf": {}, "shf-stochastic": {"regime": "stochastic"}, "shf-martens": {"preconditioner": "martens"},
    "shf-column-norms": {"preconditioner": "column-norms"}, "shf-lsmr": {"solver": shf.Solver(atol=1e-15)},
    "shf-no-roundoff": {"damping": shf.Damping(roundoff=1e-300)},
    "shf-nielsen": {"damping": shf.Damping(rule="nielsen")},
    "shf-trust-region": {"preconditioner": "none"},
    "shf-geodesic": {
        "damping": shf.Damping(rule="nielsen"), "line_search": shf.LineSearch(acceleration="geodesic"),
    },
    "shf-geodesic-0.25": {
        "damping": shf.Damping(rule="nielsen"),
        "line_search": shf.LineSearch(acceleration="geodesic", acceleration_max=0.25),
    },
}
"""SHF's settings per method (not run by default: ``shf-martens``, the full-batch regime with
Martens' diagonal preconditioner, a scaling of the damping like MINPACK's; ``shf-column-norms``,
with MINPACK's own scaling, B18 (the regime's choice with the exact solve since B23); ``shf-lsmr``,
the regime's LSMR to round-off instead of B20's exact solve (and so Nielsen's rule: B23's trust
region needs the exact solve), kept by giving its ``atol``; ``shf-no-roundoff``, without B21's
judgement of steps at ``f``'s round-off: a given ``roundoff`` of 1e-300, which never holds, since 0
is the default and a default cannot be told from a setting not given; ``shf-nielsen``, the regime
before B23 (Nielsen's rule given by name, so no scaling either); ``shf-trust-region``, B23's trust
region without B18's scaling (on ``||d||``); ``shf-geodesic`` and ``shf-geodesic-0.25``, the
regime before B23 with B22's geodesic acceleration, steps refused above ``2 ||a|| / ||d||`` = 0.75
(Transtrum & Sethna's) and 0.25)."""


ANSWERS = ("last", "best")
"""SHF's answer: ``last``, the final iterate (unless its sum of squares is above the lowest seen by
more than :data:`LAST_RSS_SLACK`, relative), or ``best``, the iterate of the lowest sum of squares."""
LAST_RSS_SLACK = 1e-8


@dataclass
class Outcome:
    """One method on one problem from one start."""

    problem: str
    difficulty: str
    start: int
    method: str
    digits: float  # LRE of the parameters (fewest over them)
    rss_digits: float  # LRE of the residual sum of squares
    seconds: float
    iterations: int
    note: str = ""


class Parametric(nn.Module):
    """The problem's model as a module: one parameter vector ``b``; ``forward(x)`` is ``(n, 1)``."""

    def __init__(self, problem: Problem, b0: Tensor) -> None:
        super().__init__()
        self.problem = problem
        self.b = nn.Parameter(b0.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.problem.model(self.b, x).unsqueeze(1)


def _scipy(problem: Problem, b0: Tensor, method: str) -> tuple[Tensor, int, str]:
    def fun(b: np.ndarray) -> np.ndarray:
        return problem.residual(torch.from_numpy(b)).numpy()

    def jac(b: np.ndarray) -> np.ndarray:
        jac_b: np.ndarray = torch.func.jacrev(problem.residual)(torch.from_numpy(b)).numpy()
        return jac_b

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = scipy.optimize.least_squares(fun, b0.numpy(), jac=jac, method=method, xtol=1e-15, ftol=1e-15,
                                           gtol=1e-15, max_nfev=10_000)  # fmt: skip
    return torch.from_numpy(res.x), int(res.nfev), str(res.status)


def _lbfgs(problem: Problem, b0: Tensor, max_iters: int) -> tuple[Tensor, int, str]:
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [b], lr=1.0, max_iter=max_iters, max_eval=2 * max_iters, history_size=100, tolerance_grad=0.0,
        tolerance_change=0.0, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        r = problem.residual(b)
        f = 0.5 * (r @ r)
        f.backward()  # type: ignore[no-untyped-call]
        return f

    opt.step(closure)  # type: ignore[no-untyped-call]
    return b.detach(), int(opt.state[b]["n_iter"]), ""


def _shf(
    problem: Problem, b0: Tensor, method: str, max_iters: int, patience: int, answer: str
) -> tuple[Tensor, int, str]:
    model = Parametric(problem, b0)
    opt = shf.SHF(model, lambda out, y: out - y, **VARIANTS[method])  # type: ignore[arg-type]
    X, Y = problem.x, problem.y.unsqueeze(1)
    best, best_b, since, iterations = math.inf, b0.clone(), 0, 0
    while iterations < max_iters and since < patience:
        opt.step(X, Y)
        iterations += 1
        f = problem.rss(model.b.detach())
        if not math.isfinite(f):
            break
        best, best_b, since = (f, model.b.detach().clone(), 0) if f < best else (best, best_b, since + 1)
    last = model.b.detach().clone()
    f_last = problem.rss(last)
    if answer == "last" and math.isfinite(f_last) and f_last <= best * (1.0 + LAST_RSS_SLACK):
        # the weights the optimiser ends with, as scipy and L-BFGS return theirs (among iterates
        # whose sums of squares agree to round-off, the smallest sum picks at random)
        return last, iterations, opt.regime
    return best_b, iterations, opt.regime


def run(
    problem: Problem, start: int, method: str, max_iters: int, patience: int, answer: str = "last"
) -> Outcome:
    b0 = problem.starts[start - 1]
    t0 = time.perf_counter()
    note = ""
    try:
        if method.startswith("scipy-"):
            b, iters, note = _scipy(problem, b0, method.removeprefix("scipy-"))
        elif method == "lbfgs":
            b, iters, note = _lbfgs(problem, b0, max_iters)
        else:
            b, iters, note = _shf(problem, b0, method, max_iters, patience, answer)
    except Exception as e:  # a method that fails on a problem scores 0 digits there
        b, iters = torch.full_like(b0, math.nan), 0
        note = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    seconds = time.perf_counter() - t0
    rss = problem.rss(b) if bool(torch.isfinite(b).all()) else math.nan
    return Outcome(problem.name, problem.difficulty, start, method, lre(b, problem.certified),
                   lre(rss, problem.certified_rss), seconds, iters, note)  # fmt: skip


def _table(outcomes: list[Outcome], methods: list[str]) -> list[str]:
    lines = ["| problem | start | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    keys = dict.fromkeys((o.problem, o.start) for o in outcomes)
    by = {(o.problem, o.start, o.method): o for o in outcomes}
    for name, start in keys:
        cells = []
        for m in methods:
            o = by.get((name, start, m))
            cells.append("" if o is None else f"{o.digits:.1f} ({o.seconds:.2g} s)")
        lines.append(f"| {name} | {start} | " + " | ".join(cells) + " |")
    lines += ["", "| method | runs | >= 4 digits | >= 6 digits | mean digits | median s |"]
    lines += ["|---|---|---|---|---|---|"]
    for m in methods:
        got = [o for o in outcomes if o.method == m]
        if got:
            four = sum(o.digits >= 4 for o in got)
            six = sum(o.digits >= 6 for o in got)
            mean = statistics.fmean(o.digits for o in got)
            med = statistics.median(o.seconds for o in got)
            lines.append(f"| {m} | {len(got)} | {four} | {six} | {mean:.2f} | {med:.3g} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", default=None, help="comma-separated names (default: all 27)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--starts", default="1,2")
    p.add_argument("--max-iters", type=int, default=2000, help="L-BFGS iterations, SHF's HF iterations")
    p.add_argument("--patience", type=int, default=20, help="SHF: HF iterations without a lower loss")
    p.add_argument("--nist-dir", type=Path, default=None, help="a folder of .dat files, not the archive")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--answer", choices=ANSWERS, default="last",
                   help="SHF's answer: its final iterate (default) or the lowest sum of squares seen")
    p.add_argument("--radius-factor", type=float, default=None,
                   help="B23's first radius over ||D w|| (an ablation; default: RADIUS_FACTOR)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.radius_factor is not None:
        damping.RADIUS_FACTOR = a.radius_factor
    problems = lsq_problems.load(a.nist_dir, a.problems.split(",") if a.problems else None)
    methods = a.methods.split(",")
    outcomes = []
    for problem in problems:
        for start in (int(s) for s in a.starts.split(",")):
            for m in methods:
                o = run(problem, start, m, a.max_iters, a.patience, a.answer)
                outcomes.append(o)
                line = f"{o.problem:9s} start {o.start} {o.method:13s} digits {o.digits:4.1f}"
                line += f" rss {o.rss_digits:4.1f}"
                print(f"{line} {o.seconds:7.3f} s {o.iterations:5d} it {o.note}", flush=True)
    text = "\n".join(_table(outcomes, methods)) + "\n"
    print()
    print(text)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "least-squares.md").write_text(text)
        (a.out / "least-squares.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
