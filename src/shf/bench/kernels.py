"""``shf bench kernels``: the curvature products against the machine's matrix-product ceiling.

One LSMR iteration applies ``A = grad R`` once in forward mode (Alg. 4) and once in
reverse mode (Alg. 5). For an autoencoder with layer sizes ``m_1, ..., m_{k+1}`` and a
batch of ``n`` rows these are, counting ``2 M K N`` flops per ``M x K`` by ``K x N``
product (the bias rows are additions, not counted):

* forward mode: ``X D_1^-`` (``n x m_1 x m_2``), then for ``l >= 2`` both
  ``F_{l-1} W_l^-`` and ``S_{l-1} D_l^-`` (``n x m_l x m_{l+1}`` each);
* reverse mode: ``S_{l-1}^T F_l`` (``m_l x n x m_{l+1}``) for every ``l`` and
  ``F_{l+1} (W_{l+1}^-)^T`` (``n x m_{l+1} x m_l``) for ``l <= k - 1``;

in all ``2 n (4 P - 2 m_1 m_2)`` flops with ``P = sum_l m_l m_{l+1}``.

The *ceiling* is measured in the same run on exactly these shapes and layouts (the
transposed operands as the products see them): the same matrix products, back to back,
into preallocated outputs, with nothing else, in PyTorch and in NumPy; the ceiling is
the faster of the two. ``ratio = gflops / ceiling_gflops``.

The same two products through the generic ``torch.func`` operator for any module
(:mod:`shf.curvature.module`, on the same network, weights and batch) are timed in the
same rounds, in the steady state of a long solve (after the first ``LINEARIZE_AFTER``
forward-mode products, whose time including the trace is ``generic_warmup_s``):
``generic_ratio`` is their time over the hand-written products' (how much the fast path
saves; the goal for the generic path is at most 1.5).

Each case also times, as multiples of one plain forward pass ``X -> S_k`` on the same
batch: the cached forward pass the operator starts with (``S_l`` and ``S'_l``), the
Chapelle-Erhan preconditioner (Alg. 3), the gradient (eq. 6), the batch-size statistics
of Alg. 2 (gradient and per-example squared gradients) and the two products.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from shf.bench.common import ARCHITECTURES, describe_machine, encoder_of, jacobian_problem, machine, time_call
from shf.curvature.mlp import AutoencoderJacobian
from shf.curvature.module import LINEARIZE_AFTER, ModuleProblem
from shf.errors import ConfigError
from shf.models.autoencoder import Autoencoder, forward
from shf.optim.precond import chapelle_erhan
from shf.solvers.lsmr import lsmr

SIZES = (250, 1000, 2500, 6000)
DTYPES = ("float32", "float64")
# LSMR iterations per timed run (plus one): an iteration's time is the median gap between
# consecutive callbacks, so the set-up before the first iteration is not counted.
LSMR_ITERS = 6


@dataclass(frozen=True)
class MatmulShape:
    """One product ``(M x K) @ (K x N)``; ``layout`` says which operand is transposed
    in memory: ``nn`` (neither), ``tn`` (the left one: ``S^T F``), ``nt`` (the right
    one: ``F W^T``)."""

    layout: str
    M: int
    K: int
    N: int

    @property
    def flops(self) -> int:
        return 2 * self.M * self.K * self.N


def product_shapes(net: Autoencoder, n: int) -> list[MatmulShape]:
    """The matrix products of one forward-mode plus one reverse-mode product (Alg. 4, 5)."""
    m = net.sizes
    k = net.n_layers
    shapes: list[MatmulShape] = []
    for l in range(k):  # forward mode: S~_{l-1} D_l, and F_{l-1} W_l^- for l >= 2
        shapes.append(MatmulShape("nn", n, m[l], m[l + 1]))
        if l > 0:
            shapes.append(MatmulShape("nn", n, m[l], m[l + 1]))
    for l in range(k):  # reverse mode: S~_{l-1}^T F_l, and F_{l+1} (W_{l+1}^-)^T
        shapes.append(MatmulShape("tn", m[l], n, m[l + 1]))
        if l > 0:
            shapes.append(MatmulShape("nt", n, m[l + 1], m[l]))
    return shapes


def lsmr_iteration_flops(net: Autoencoder, n: int) -> int:
    """``2 n (4 P - 2 m_1 m_2)``: the matrix-product flops of one LSMR iteration."""
    return sum(s.flops for s in product_shapes(net, n))


def forward_flops(net: Autoencoder, n: int) -> int:
    """``2 n P``: the matrix-product flops of one forward pass."""
    m = net.sizes
    return 2 * n * sum(m[l] * m[l + 1] for l in range(net.n_layers))


def _operands(shape: MatmulShape, dtype: torch.dtype, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    M, K, N = shape.M, shape.K, shape.N
    a = (
        torch.rand(K, M, generator=gen, dtype=dtype).T
        if shape.layout == "tn"
        else torch.rand(M, K, generator=gen, dtype=dtype)
    )
    b = (
        torch.rand(N, K, generator=gen, dtype=dtype).T
        if shape.layout == "nt"
        else torch.rand(K, N, generator=gen, dtype=dtype)
    )
    return a, b, torch.empty(M, N, dtype=dtype)


def ceiling_calls(shapes: Sequence[MatmulShape], dtype: torch.dtype) -> dict[str, Callable[[], None]]:
    """Zero-argument functions that run the matrix products of ``shapes`` back to back
    into preallocated outputs: ``torch`` (``torch.mm(out=)``) and ``numpy``
    (``np.matmul(out=)`` on the same memory)."""
    gen = torch.Generator().manual_seed(0)
    ops = [_operands(s, dtype, gen) for s in shapes]
    np_ops = [(a.numpy(), b.numpy(), o.numpy()) for a, b, o in ops]

    def run_torch() -> None:
        for a, b, o in ops:
            torch.mm(a, b, out=o)

    def run_numpy() -> None:
        for a, b, o in np_ops:
            np.matmul(a, b, out=o)

    return {"torch": run_torch, "numpy": run_numpy}


def _check(archs: Sequence[str], sizes: Sequence[int], dtypes: Sequence[str]) -> None:
    for a in archs:
        encoder_of(a)  # raises ConfigError for an unknown name
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"batch sizes must be positive integers, got {n!r}")
    for d in dtypes:
        if d not in DTYPES:
            raise ConfigError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")


def bench_case(
    arch: str, n: int, dtype: str, *, min_time: float = 0.5, seed: int = 0, generic: bool = True
) -> dict[str, Any]:
    """Time one (architecture, batch size, dtype) case; see the module docstring
    (``generic``: also time the ``torch.func`` products)."""
    _check([arch], [n], [dtype])
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    p = jacobian_problem(arch, n, tdtype, seed)
    net, w, X, A, b, c = p.net, p.w, p.X, p.A, p.b, p.c
    gen = torch.Generator().manual_seed(seed + 2)
    d = [torch.randn(W.shape, generator=gen, dtype=tdtype) for W in w]
    U = torch.randn(X.shape, generator=gen, dtype=tdtype)
    shapes = product_shapes(net, n)
    flops = lsmr_iteration_flops(net, n)

    def products() -> None:
        A.matvec(d)
        A.rmatvec(U)

    G = ModuleProblem(net, "mse").jacobian(w, X) if generic else None
    t_trace = math.nan
    if G is not None:
        # The steady state of a long solve: past the products that jvp makes before the
        # forward mode is traced (the trace's one-off cost is reported apart).
        t0 = time.perf_counter()
        for _ in range(LINEARIZE_AFTER):
            G.matvec(d)
        t_trace = time.perf_counter() - t0

    def generic_products() -> None:
        assert G is not None
        G.matvec(d)
        G.rmatvec(U)

    def lsmr_iteration(min_time: float) -> float:
        # Median wall time between consecutive callbacks of LSMR (iterations 2, 3, ...):
        # one whole iteration, without the set-up of the x0 products.
        stamps: list[float] = []
        steps: list[float] = []
        start = time.perf_counter()
        while not steps or time.perf_counter() - start < min_time:
            stamps.clear()
            _, info = lsmr(
                A, b, damp=1.0, precond=c, atol=0.0, btol=0.0, conlim=0.0, maxiter=LSMR_ITERS + 1,
                callback=lambda k, x, info: stamps.append(time.perf_counter()),
            )  # fmt: skip
            if info.iterations != LSMR_ITERS + 1:  # nothing may stop it early
                raise RuntimeError(f"LSMR stopped early ({info.stop.value}); cannot time an iteration")
            steps += [t1 - t0 for t0, t1 in itertools.pairwise(stamps)]
        return statistics.median(steps)

    # Interleave the ceiling and the products so that a change in the machine's load
    # hits both; each is the best of the two rounds' medians.
    ceil = ceiling_calls(shapes, tdtype)
    rounds: dict[str, list[float]] = {}
    timed = [("torch", ceil["torch"]), ("numpy", ceil["numpy"]), ("products", products)]
    if generic:
        timed.append(("generic_products", generic_products))
    for _ in range(2):
        for name, fn in timed:
            rounds.setdefault(name, []).append(time_call(fn, min_time=min_time).median)
        rounds.setdefault("lsmr_iteration", []).append(lsmr_iteration(min_time))
    best = {k: min(v) for k, v in rounds.items()}
    ceiling_s = min(best["torch"], best["numpy"])

    # The other kernels, as multiples of one plain forward pass.
    gen_pc = torch.Generator().manual_seed(seed + 1)
    others: dict[str, Callable[[], object]] = {
        "forward": lambda: forward(net, w, X),
        "cached_forward": lambda: AutoencoderJacobian(net, w, X),
        "precond": lambda: chapelle_erhan(A, gen_pc),
        "gradient": A.gradient,
        "batch_stats": A.per_example_gradient_stats,
    }
    t_other = {k: time_call(fn, min_time=min_time / 2).median for k, fn in others.items()}
    fwd = t_other["forward"]
    return {
        "arch": arch,
        "encoder": list(net.encoder),
        "n": n,
        "dtype": dtype,
        "flops": flops,
        "products_s": best["products"],
        "gflops": flops / best["products"] / 1e9,
        "ceiling_gflops": flops / ceiling_s / 1e9,
        "ceiling_torch_gflops": flops / best["torch"] / 1e9,
        "ceiling_numpy_gflops": flops / best["numpy"] / 1e9,
        "ratio": ceiling_s / best["products"],
        "generic_products_s": best.get("generic_products"),
        "generic_ratio": best["generic_products"] / best["products"] if generic else None,
        "generic_linearized": G is not None and G.linearized,
        "generic_warmup_s": t_trace,
        "lsmr_iteration_s": best["lsmr_iteration"],
        "lsmr_gflops": flops / best["lsmr_iteration"] / 1e9,
        "lsmr_ratio": ceiling_s / best["lsmr_iteration"],
        "forward_s": fwd,
        "forward_gflops": forward_flops(net, n) / fwd / 1e9,
        "x_forward": {
            "cached_forward": t_other["cached_forward"] / fwd,
            "precond": t_other["precond"] / fwd,
            "gradient": t_other["gradient"] / fwd,
            "batch_stats": t_other["batch_stats"] / fwd,
            "products": best["products"] / fwd,
        },
    }


def bench_kernels(
    archs: Sequence[str] = tuple(ARCHITECTURES),
    sizes: Sequence[int] = SIZES,
    dtypes: Sequence[str] = DTYPES,
    *,
    min_time: float = 0.5,
    progress: Callable[[dict[str, Any]], None] | None = None,
    generic: bool = True,
) -> dict[str, Any]:
    """Run :func:`bench_case` for every combination; ``progress(case)`` after each."""
    _check(archs, sizes, dtypes)
    cases = []
    for arch in archs:
        for n in sizes:
            for dtype in dtypes:
                case = bench_case(arch, n, dtype, min_time=min_time, generic=generic)
                cases.append(case)
                if progress is not None:
                    progress(case)
    return {"machine": machine(), "lsmr_iters_timed": LSMR_ITERS, "cases": cases}


def format_case(c: dict[str, Any]) -> str:
    """One line per case (the CLI's live output)."""
    return (
        f"{c['arch']:>6} n={c['n']:<5d} {c['dtype']}: products {c['gflops']:6.1f} GFLOP/s, "
        f"ceiling {c['ceiling_gflops']:6.1f} (torch {c['ceiling_torch_gflops']:.0f}, numpy "
        f"{c['ceiling_numpy_gflops']:.0f}), ratio {c['ratio']:.2f}; "
        f"LSMR iteration ratio {c['lsmr_ratio']:.2f}"
        + (f"; generic/hand-written {c['generic_ratio']:.2f}" if c.get("generic_ratio") else "")
    )


def markdown(record: dict[str, Any]) -> str:
    """The results table and the kernels-as-forward-passes table."""
    lines = [
        "Machine: " + describe_machine(record["machine"]),
        "",
        "GFLOP/s of one LSMR iteration's products (forward + reverse mode) against the ceiling: the same",
        "matrix products alone, in the same run (best of torch and numpy). `LSMR it.`: a whole",
        "preconditioned LSMR iteration (products, column scaling, vector updates, norms).",
        "",
        "| arch | n | dtype | products GFLOP/s | ceiling (torch / numpy) | ratio | LSMR it. ms "
        "| LSMR it. ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in record["cases"]:
        lines.append(
            f"| {c['arch']} | {c['n']} | {c['dtype']} | {c['gflops']:.1f} | {c['ceiling_gflops']:.1f} "
            f"({c['ceiling_torch_gflops']:.0f} / {c['ceiling_numpy_gflops']:.0f}) | {c['ratio']:.2f} | "
            f"{c['lsmr_iteration_s'] * 1e3:.1f} | {c['lsmr_ratio']:.2f} |"
        )
    lines += [
        "",
        "Cost as multiples of one plain forward pass on the same batch:",
        "",
        "| arch | n | dtype | forward ms | cached forward | preconditioner | gradient | batch stats "
        "| products |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in record["cases"]:
        x = c["x_forward"]
        lines.append(
            f"| {c['arch']} | {c['n']} | {c['dtype']} | {c['forward_s'] * 1e3:.1f} | "
            f"{x['cached_forward']:.2f} | "
            f"{x['precond']:.2f} | {x['gradient']:.2f} | {x['batch_stats']:.2f} | {x['products']:.2f} |"
        )
    gen = [c for c in record["cases"] if c.get("generic_ratio")]
    if gen:
        lines += [
            "",
            "The same products through the generic torch.func operator (any nn.Module), as a multiple of",
            "the hand-written ones' time (goal: at most 1.5):",
            "",
            "| arch | n | dtype | hand-written ms | generic ms | generic / hand-written | forward mode "
            "| first products + trace s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['arch']} | {c['n']} | {c['dtype']} | {c['products_s'] * 1e3:.1f} | "
            f"{c['generic_products_s'] * 1e3:.1f} | {c['generic_ratio']:.2f} | "
            f"{'linearize' if c['generic_linearized'] else 'jvp'} | {c['generic_warmup_s']:.2f} |"
            for c in gen
        ]
    ratios = [c["ratio"] for c in record["cases"]]
    if ratios:
        lines += [
            "",
            f"Products ratio: min {min(ratios):.2f}, geometric mean {_gmean(ratios):.2f}, "
            f"max {max(ratios):.2f}.",
        ]
    return "\n".join(lines) + "\n"


def _gmean(xs: Sequence[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def json_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``--json`` prints: per case ``arch, n, dtype, gflops, ceiling_gflops, ratio`` and more."""
    keys = ("arch", "n", "dtype", "gflops", "ceiling_gflops", "ratio", "ceiling_torch_gflops",
            "ceiling_numpy_gflops", "lsmr_gflops", "lsmr_ratio", "forward_s", "x_forward",
            "generic_ratio")  # fmt: skip
    return [{k: c.get(k) for k in keys} for c in record["cases"]]
