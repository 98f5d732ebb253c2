"""Alternatives to the library's PyTorch-eager products, measured against the same ceiling.

    python benchmarks/alternatives.py --archs mnist,curves --sizes 1000,6000

For each case it times, in one process and interleaved over two rounds, the matrix-product
ceiling on the products' shapes (torch and numpy, as ``shf bench kernels``) and these
implementations of one forward-mode plus one reverse-mode product (float32):

* ``eager``: the library (:class:`shf.curvature.mlp.AutoencoderJacobian`);
* ``numpy``: the same products with every matrix product through ``np.matmul``
  (OpenBLAS, which beats MKL on this AMD machine in the ceiling), elementwise work in torch;
* ``compiled``: the products written functionally and given to ``torch.compile``.

and prints GFLOP/s and the ratio to the ceiling. ``--torch-threads 1`` runs the whole
process with one torch thread (what the numpy variant needs to avoid two thread pools
spinning against each other on two cores).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from shf.bench.common import ARCHITECTURES, time_call
from shf.bench.kernels import ceiling_calls, lsmr_iteration_flops, product_shapes
from shf.curvature.mlp import AutoencoderJacobian
from shf.models.autoencoder import Autoencoder, sparse_init


def _npmm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    if out is None:
        out = torch.empty(a.shape[0], b.shape[1], dtype=a.dtype)
    np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    return out


class NumpyProducts(AutoencoderJacobian):
    """Alg. 4 and 5 with OpenBLAS (through numpy) for every matrix product."""

    def matvec(self, d: Any) -> Tensor:
        S, Sp, w = self.S, self.Sp, self.w
        k = len(w)
        F = _npmm(S[0], d[0][:-1]).add_(d[0][-1]).mul_(Sp[0])
        for l in range(1, k):
            Z = _npmm(S[l], d[l][:-1]).add_(d[l][-1]).add_(_npmm(F, w[l][:-1]))
            F = Z.mul_(Sp[l] if l < k - 1 else self._out_scaled)
        return F

    def rmatvec(self, U: Any) -> list[Tensor]:
        w, Sp = self.w, self.Sp
        k = len(w)
        F = U * self._out_scaled
        out: list[Tensor] = [F] * k
        for l in range(k - 1, -1, -1):
            m = self.S[l].shape[1]
            D = F.new_empty((m + 1, F.shape[1]))
            _npmm(self.S[l].T, F, out=D[:m])
            torch.sum(F, 0, out=D[m])
            out[l] = D
            if l > 0:
                F = _npmm(F, w[l][:-1].T).mul_(Sp[l - 1])
        return out


def _fwd(S: list[Tensor], Sp: list[Tensor], w: list[Tensor], d: list[Tensor], top: Tensor) -> Tensor:
    k = len(w)
    F = torch.addmm(d[0][-1], S[0], d[0][:-1]) * Sp[0]
    for l in range(1, k):
        F = (torch.addmm(d[l][-1], S[l], d[l][:-1]) + F @ w[l][:-1]) * (Sp[l] if l < k - 1 else top)
    return F


def _rev(S: list[Tensor], Sp: list[Tensor], w: list[Tensor], U: Tensor, top: Tensor) -> list[Tensor]:
    k = len(w)
    F = U * top
    out: list[Tensor] = [F] * k
    for l in range(k - 1, -1, -1):
        out[l] = torch.cat([S[l].T @ F, F.sum(0, keepdim=True)], 0)
        if l > 0:
            F = (F @ w[l][:-1].T) * Sp[l - 1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="mnist,curves")
    p.add_argument("--sizes", default="1000,6000")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--min-time", type=float, default=1.0)
    a = p.parse_args()
    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    cf = None if a.no_compile else torch.compile(_fwd, dynamic=False)
    cr = None if a.no_compile else torch.compile(_rev, dynamic=False)
    print(f"torch threads {torch.get_num_threads()}")
    for arch in a.archs.split(","):
        for n in [int(v) for v in a.sizes.split(",")]:
            net = Autoencoder(ARCHITECTURES[arch])
            w = sparse_init(net, m0=15, sigma=1.0)
            X = torch.rand(n, net.input_dim)
            d = [torch.randn_like(W) for W in w]
            U = torch.randn_like(X)
            A = AutoencoderJacobian(net, w, X)
            B = NumpyProducts(net, w, X)
            torch.testing.assert_close(B.matvec(d), A.matvec(d), rtol=1e-3, atol=1e-4)
            ceil = ceiling_calls(product_shapes(net, n), torch.float32)
            variants: dict[str, Any] = {
                "ceiling torch": ceil["torch"],
                "ceiling numpy": ceil["numpy"],
                "eager": lambda A=A, d=d, U=U: (A.matvec(d), A.rmatvec(U)),
                "numpy": lambda B=B, d=d, U=U: (B.matvec(d), B.rmatvec(U)),
            }
            compile_s = float("nan")
            if cf is not None and cr is not None:
                t0 = time.perf_counter()
                cf(A.S, A.Sp, A.w, d, A._out_scaled)
                cr(A.S, A.Sp, A.w, U, A._out_scaled)
                compile_s = time.perf_counter() - t0
                variants["compiled"] = lambda A=A, d=d, U=U: (
                    cf(A.S, A.Sp, A.w, d, A._out_scaled),
                    cr(A.S, A.Sp, A.w, U, A._out_scaled),
                )
            best: dict[str, float] = {}
            for _ in range(2):
                for name, fn in variants.items():
                    best[name] = min(best.get(name, float("inf")), time_call(fn, min_time=a.min_time).median)
            flops = lsmr_iteration_flops(net, n)
            ceiling = min(best["ceiling torch"], best["ceiling numpy"])
            parts = [f"{k} {flops / v / 1e9:.0f} GFLOP/s ({ceiling / v:.2f})" for k, v in best.items()]
            print(f"{arch} n={n}: " + "; ".join(parts) + f"; first compile {compile_s:.0f} s", flush=True)


if __name__ == "__main__":
    main()
