"""Would a Kronecker-factored start save LSMR iterations? One HF iteration's system, offline.

    python benchmarks/kfac_start.py RUN_DIR [--iters 40] [--seed 0] [--probes 1]

Issue 31 item 3 (the rate): the products run at the matrix-product ceiling, so SHF can only
gain time with more progress per LSMR iteration. Applying a Kronecker-factored (K-FAC-like)
preconditioner inside LSMR costs about ``2 (in + out)`` flops per weight and iteration, two to
three times the products at 250 curvature rows; applying it once per HF iteration, as the solve's
start, costs a fraction of one product. This script measures what such a start is worth on the
system the defaults solve at the state of a run's checkpoint (the hand-written autoencoder):

* the batch: ``n`` rows drawn from the training set (the run's batch size), the curvature on its
  first ``curvature_size`` rows (B7), the run's ``lambda``, weight cost and Chapelle-Erhan's ``c``;
* the damped model ``Q(d) = 1/2 ||A d||^2 + wc/2 ||d||^2 + lambda^2/2 ||d / c||^2 + g^T d``, which
  the solve minimises over ``d = c ∘ y`` (B7's stacked problem with B10's rows), and the undamped
  ``q(d)`` (no ``lambda`` term), which ``rho`` reads;
* LSMR from 0 (the defaults' start after a reset) and LSMR from the K-FAC step ``d_K``: per layer
  ``(Abar ⊗ Gbar + gamma I) d_K = -g``, ``Abar = S~^T S~ / n`` of the layer's augmented inputs,
  ``Gbar = F^T F / n`` of the output gradients of Gaussian output vectors (``--probes`` draws),
  ``gamma`` the layer's mean of ``wc + lambda^2 / c^2`` times a factor chosen from a grid by
  ``Q`` (one product each), then scaled to the minimiser of ``Q`` along it.

* LSMR on the same damped problem right-preconditioned by B19's ``P`` (``shf.optim.kron``, its
  ``delta``; sides wider than ``--max-side`` diagonal).

Prints ``Q`` and ``q`` after ``k`` LSMR iterations from each start and with each preconditioner,
the seconds per LSMR iteration of each (timed without the model evaluations), and the iteration
at which the zero start first reaches the K-FAC start's ``Q`` at ``k = 0``. One thread; writes
``kfac_start_seed<seed>.json`` into the run directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from shf import config as cfgmod
from shf import tensorlist as tl
from shf.curvature.mlp import MLPJacobian
from shf.experiments.run import build_network, prepare_data
from shf.optim.kron import MAX_SIDE, KroneckerScaling
from shf.optim.precond import chapelle_erhan
from shf.solvers.lsmr import lsmr
from shf.solvers.operator import DampedStack, PreconditionedStack


def _kfac_step(
    A: MLPJacobian, g: list[Tensor], gamma: list[float], probes: int, gen: torch.Generator
) -> list[Tensor]:
    """Per layer ``-(Abar ⊗ Gbar + gamma_l I)^{-1} g_l`` by the factors' eigendecompositions."""
    n = A.n
    grams: list[Tensor] = [torch.zeros(W.shape[1], W.shape[1], dtype=torch.float64) for W in A.w]
    for _ in range(probes):
        U = torch.randn(A.residual.shape, generator=gen, dtype=A.residual.dtype)
        for l, F in enumerate(A.backprop(U)):
            F64 = F.double()
            grams[l] += F64.T @ F64 / (n * probes)
    out = []
    for l, (S, G) in enumerate(zip(A.S, g)):
        St = torch.cat([S, torch.ones(n, 1, dtype=S.dtype)], dim=1).double()
        la, qa = torch.linalg.eigh(St.T @ St / n)
        lg, qg = torch.linalg.eigh(grams[l])
        V = qa.T @ (-G.double()) @ qg
        V /= la.clamp(min=0).unsqueeze(1) * lg.clamp(min=0).unsqueeze(0) + gamma[l]
        out.append((qa @ V @ qg.T).to(G.dtype))
    return out


def _kfac_preconditioned(
    A: MLPJacobian, g: list[Tensor], g_A: list[Tensor], wc: float, lam: float, c: list[Tensor],
    Q: Any, a: argparse.Namespace, gen_seed: int,
) -> tuple[list[tuple[float, float]], float]:
    """(Q, q) after k LSMR iterations on B19's problem (``shf.optim.kron``: the damped problem in
    ``d = P z``, ``x0 = 0``), and the seconds per iteration (products and ``P``, ``P^T``)."""
    P = KroneckerScaling.of(
        A, c, lam, torch.Generator().manual_seed(gen_seed), max_side=a.max_side, scaled=not a.unscaled
    )
    D = [torch.sqrt(wc + (lam / ci) ** 2) for ci in c]
    op = PreconditionedStack(A, P, D)
    # normal equations P^T (A^T A + D^2) P z = -P^T g: [b; e] with D e = g_A - g
    rhs = op.join(-A.residual, tl.div(tl.sub(g_A, g), D))
    got = [(0.0, 0.0)]

    def cb(k: int, z: Any, info: Any) -> bool:
        d = P.apply(z)
        got.append((Q(d), Q(d, damped=False)))
        return False

    lsmr(op, rhs, damp=0.0, atol=0.0, btol=0.0, conlim=0.0, maxiter=a.iters, callback=cb)
    t0 = time.perf_counter()  # timed again without the model evaluations
    lsmr(op, rhs, damp=0.0, atol=0.0, btol=0.0, conlim=0.0, maxiter=a.iters)
    return got, (time.perf_counter() - t0) / a.iters


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probes", type=int, default=1)
    p.add_argument("--max-side", type=int, default=MAX_SIDE, help="B19: wider sides diagonal")
    p.add_argument("--unscaled", action="store_true", help="B19's first version: the factors of A itself")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    ck: dict[str, Any] = torch.load(Path(a.run_dir) / "checkpoint.pt", weights_only=True, map_location="cpu")
    cfg = cfgmod.from_dict(ck["config"])
    shf_state = ck["loop"]["method"]["opt"]["shf"]
    opt = shf_state["config"]
    lam, wc = float(shf_state["lam"]), float(opt["weight_cost"])
    data = prepare_data(cfg)
    net = build_network(cfg)
    w = [t.detach().clone() for t in ck["loop"]["w"]]
    gen = torch.Generator().manual_seed(a.seed)
    n = int(shf_state["schedule"]["n"])
    X = data.train[torch.randperm(data.train.shape[0], generator=gen)[:n]]
    n_c = min(n, int(opt["curvature_size"] or n))
    full = MLPJacobian(net, w, X)
    g = cast(list[Tensor], tl.axpy(wc, w, full.gradient()))  # the batch's gradient with B10's weight cost
    A = MLPJacobian(net, w, X[:n_c])
    c = chapelle_erhan(A, gen)
    g_A = A.gradient()

    def Q(d: Any, damped: bool = True) -> float:
        Ad = A.matvec(d)
        assert isinstance(Ad, Tensor)
        v = 0.5 * float(Ad.double().pow(2).sum()) + 0.5 * wc * tl.dot(d, d) + tl.dot(g, d)
        if damped:
            v += 0.5 * lam * lam * (lambda v: tl.dot(v, v))(tl.div(d, c))
        return v

    # B7 + B10: (C (A^T A + wc I) C + lambda^2 I) y = -C g, as min ||[A C; D] y - [b; e]||
    D = [torch.sqrt(ci * ci * wc + lam * lam) for ci in c]
    e = tl.div(tl.mul(c, tl.sub(g_A, g)), D)
    op = DampedStack(A, D, c)
    rhs = op.join(-A.residual, e)

    def run(y0: list[Tensor] | None) -> list[tuple[float, float]]:
        """(Q, q) of d = c ∘ y after k = 0..iters LSMR iterations started at y0 (damping about 0)."""
        r = rhs if y0 is None else tl.sub(rhs, op.matvec(y0))
        start = [torch.zeros_like(t) for t in w] if y0 is None else y0
        got = [(Q(tl.mul(c, start)), Q(tl.mul(c, start), damped=False))]

        def cb(k: int, y: Any, info: Any) -> bool:
            d = tl.mul(c, tl.add(start, y))
            got.append((Q(d), Q(d, damped=False)))
            return False

        lsmr(op, r, damp=0.0, atol=0.0, btol=0.0, conlim=0.0, maxiter=a.iters, callback=cb)
        return got

    zero = run(None)
    t0 = time.perf_counter()  # LSMR alone, without the model evaluations
    lsmr(op, rhs, damp=0.0, atol=0.0, btol=0.0, conlim=0.0, maxiter=a.iters)
    t_zero = time.perf_counter() - t0
    base = [float(torch.mean(wc + lam * lam / (ci.double() ** 2))) for ci in c]
    best: tuple[float, float, list[Tensor]] | None = None
    t0 = time.perf_counter()
    for factor in (0.01, 0.1, 1.0, 10.0):
        dK = _kfac_step(A, g, [factor * b for b in base], a.probes, torch.Generator().manual_seed(a.seed + 1))
        # the minimiser of Q along d_K: alpha = -g^T d / (d^T H d), H the damped model's matrix
        curv = 2.0 * (Q(dK) - tl.dot(g, dK))
        alpha = -tl.dot(g, dK) / curv if curv > 0 else 0.0
        dK = cast(list[Tensor], tl.scale(alpha, dK))
        qK = Q(dK)
        if best is None or qK < best[0]:
            best = (qK, factor, dK)
    t_kfac = time.perf_counter() - t0
    assert best is not None
    kfac = run(cast(list[Tensor], tl.div(best[2], c)))
    pre, t_pre = _kfac_preconditioned(A, g, g_A, wc, lam, c, Q, a, gen_seed=a.seed + 1)
    reach = next((k for k, (qz, _) in enumerate(zero) if qz <= kfac[0][0]), None)
    rec = {
        "run_dir": str(a.run_dir), "iteration": int(ck["loop"]["iteration"]), "n": n, "curvature_rows": n_c,
        "lambda": lam, "weight_cost": wc, "gamma_factor": best[1], "kfac_seconds_4_candidates": t_kfac,
        "lsmr_seconds_per_iteration": t_zero / a.iters,
        "zero_start": zero, "kfac_start": kfac, "zero_start_reaches_kfac_Q_at": reach,
    }  # fmt: skip
    print(f"state: {a.run_dir}, iteration {rec['iteration']}, n = {n} ({n_c} curvature rows), "
          f"lambda {lam:.3g}, "
          f"wc {wc:g}; K-FAC gamma factor {best[1]:g}; {t_kfac:.2f} s for 4 candidate K-FAC steps, "
          f"{t_zero / a.iters * 1000:.1f} ms per LSMR iteration (diagonal)")  # fmt: skip
    print(f"K-FAC preconditioned LSMR: {t_pre * 1000:.1f} ms per iteration")
    print("| k | Q, start 0 | Q, K-FAC start | Q, K-FAC preconditioned | q, start 0 | q, K-FAC start |")
    print("|---|---|---|---|---|---|")
    for k in sorted({0, 1, 2, 3, 5, 8, 10, 15, 20, 30, 40, a.iters} & set(range(len(zero)))):
        print(f"| {k} | {zero[k][0]:.5g} | {kfac[k][0]:.5g} | {pre[k][0]:.5g} | {zero[k][1]:.5g} | "
              f"{kfac[k][1]:.5g} |")  # fmt: skip
    rec["kfac_preconditioned"] = pre
    rec["kfac_preconditioned_seconds_per_iteration"] = t_pre
    print(f"\nthe zero start reaches the K-FAC start's Q at k = {reach}")
    out = Path(a.run_dir) / f"kfac_start_seed{a.seed}.json"
    out.write_text(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
