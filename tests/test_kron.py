"""B19's Kronecker-factored right preconditioner (shf.optim.kron), in float64.

Its factors are K-FAC's, its products ``P``, ``P^T``, ``P^{-1}`` consistent, and LSMR on ``A P``
solves the same damped problem as LSMR on ``A diag(c)`` (the same minimiser: B19 changes the
path, not the problem). Tolerances: the identities hold to round-off (1e-12 relative, far above
float64's ~1e-16 over products of a few dozen terms); two LSMR runs to ``atol = 1e-14`` on a
problem with condition number below 1e4 agree to 1e-8 relative (their iterates differ, so the
agreement is the solver accuracy times the conditioning, not round-off).
"""

from __future__ import annotations

import math

import pytest
import torch

from reference import random_like, tiny_problem
from shf import tensorlist as tl
from shf.errors import ConfigError
from shf.optim import precond as pc
from shf.optim.kron import KroneckerScaling
from shf.optim.scaling import DiagonalScaling
from shf.optim.solve import LsmrSolver, Stops, System, Tolerances
from shf.solvers.merit import MeritRule
from shf.solvers.operator import TimedOperator

TOL = Tolerances(
    atol=1e-14, merit=MeritRule(ftol=1e-7, miniter=0, recover=10, first_check=1, check_growth=1.25)
)
LAM = 0.4


def _scaling(seed: int = 0, max_side: int = 512, scaled: bool = True):  # type: ignore[no-untyped-def]
    net, w, X = tiny_problem((6, 5, 3), 20, seed=3)
    A = net.jacobian(w, X)
    c = pc.chapelle_erhan(A, torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed + 1)
    return A, w, c, KroneckerScaling.of(A, c, LAM, gen, max_side=max_side, scaled=scaled)


@pytest.mark.parametrize("scaled", [False, True])
def test_the_factors_are_k_fac_s_and_the_products_agree(scaled: bool) -> None:
    A, w, c, P = _scaling(scaled=scaled)
    n = A.n
    # Abar + pi sqrt(gamma) I = L_a L_a^T with Abar = S~^T S~ / n, sqrt(gamma_l) = lambda rms(1/c_l)
    # and pi = sqrt(mean eigenvalue of Abar / that of Gbar); Gbar = F^T F / n for the same probe
    U = torch.randn(tuple(A.residual.shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for l, (S, F, La, Lg) in enumerate(zip(A.S, A.backprop(U), P.La, P.Lg)):
        St = torch.cat([S, torch.ones(n, 1, dtype=S.dtype)], dim=1)
        root_gamma = LAM * math.sqrt(float(torch.mean(1.0 / c[l] ** 2)))
        if scaled:  # the factors of A C_k, C_k = diag(r) ⊗ diag(s), damped by lambda
            logc = torch.log(c[l])
            m = float(logc.mean())
            r, s = torch.exp(logc.mean(dim=1) - m / 2), torch.exp(logc.mean(dim=0) - m / 2)
            torch.testing.assert_close(P.r[l], r, rtol=1e-12, atol=0.0)
            torch.testing.assert_close(P.s[l], s, rtol=1e-12, atol=0.0)
            St, F, root_gamma = St * r, F * s, LAM
        Abar, Gbar = St.T @ St / n, F.T @ F / n
        pi = math.sqrt((float(Abar.trace()) / Abar.shape[0]) / (float(Gbar.trace()) / Gbar.shape[0]))
        want_a = Abar + pi * root_gamma * torch.eye(Abar.shape[0], dtype=S.dtype)
        want_g = Gbar + root_gamma / pi * torch.eye(Gbar.shape[0], dtype=S.dtype)
        torch.testing.assert_close(La @ La.T, want_a, rtol=1e-12, atol=0.0)
        torch.testing.assert_close(Lg @ Lg.T, want_g, rtol=1e-12, atol=0.0)
    z, v = random_like(w, 1), random_like(w, 2)
    # P^{-1} P z = z;  <P z, v> = <z, P^T v> (the adjoint test)
    for a, b in zip(P.inverse(P.apply(z)), z):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    lhs, rhs = tl.dot(P.apply(z), v), tl.dot(z, P.apply_t(v))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    # P P^T V = C_k (Abar' + delta)^{-1} (C_k V) (Gbar' + delta)^{-1}  (C_k = 1 unscaled)
    for l, (V, PPV, La, Lg) in enumerate(zip(v, P.apply(P.apply_t(v)), P.La, P.Lg)):
        rs = P.r[l].unsqueeze(1) * P.s[l].unsqueeze(0) if scaled else torch.ones_like(V)
        want = rs * (torch.linalg.solve(La @ La.T, rs * V) @ torch.linalg.inv(Lg @ Lg.T))
        torch.testing.assert_close(PPV, want, rtol=1e-10, atol=1e-12)
    assert P.finite()


def test_a_side_wider_than_max_side_is_diagonal_and_the_products_still_agree() -> None:
    A, w, c, P = _scaling(max_side=5, scaled=False)  # the 6- and 7-wide sides diagonal, the others full
    assert [t.dim() for t in P.La] == [1 if W.shape[0] > 5 else 2 for W in w] == [1, 1, 2, 1]
    assert [t.dim() for t in P.Lg] == [1 if W.shape[1] > 5 else 2 for W in w] == [2, 2, 2, 1]
    n = A.n
    U = torch.randn(tuple(A.residual.shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    F = A.backprop(U)[0]
    St = torch.cat([A.S[0], torch.ones(n, 1, dtype=A.S[0].dtype)], dim=1)
    root_gamma = LAM * math.sqrt(float(torch.mean(1.0 / c[0] ** 2)))
    pi = math.sqrt(float((St * St).sum() / St.shape[1]) / float((F * F).sum() / F.shape[1]))
    want = (St * St).sum(dim=0) / n + pi * root_gamma
    torch.testing.assert_close(P.La[0] ** 2, want, rtol=1e-12, atol=0.0)
    z, v = random_like(w, 1), random_like(w, 2)
    for a, b in zip(P.inverse(P.apply(z)), z):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    lhs, rhs = tl.dot(P.apply(z), v), tl.dot(z, P.apply_t(v))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize(("max_side", "scaled"), [(512, True), (5, True), (512, False)])
@pytest.mark.parametrize(("subset", "wc"), [(False, 0.0), (False, 0.05), (True, 0.05)])
def test_lsmr_on_a_p_solves_the_diagonal_preconditioner_s_problem(
    subset: bool, wc: float, max_side: int, scaled: bool
) -> None:
    A, w, c, P = _scaling(max_side=max_side, scaled=scaled)
    x0 = tl.scale(0.1, random_like(w, 5))
    # B7's case: the gradient is another batch's (here a perturbed one), with B10's wc w
    g = tl.axpy(wc, w, tl.add(A.gradient(), tl.scale(0.3, random_like(w, 6)))) if subset else None
    base = System(A, TimedOperator(A), -A.residual, LAM, DiagonalScaling(c), w, g, wc, subset)
    kron = System(A, TimedOperator(A), -A.residual, LAM, P, w, g, wc, subset)
    if not subset:  # Alg. 6's problem is damped about x0 in y; B7's stacked one too
        g_all = tl.axpy(wc, w, A.gradient())
        base = System(A, TimedOperator(A), -A.residual, LAM, DiagonalScaling(c), w, g_all, wc, True)
    d_diag = LsmrSolver(TOL).solve(base, x0, Stops(maxiter=2000)).d
    got = LsmrSolver(TOL).solve(kron, x0, Stops(maxiter=2000))
    scale = float(tl.norm(d_diag))
    assert float(tl.norm(tl.sub(got.d, d_diag))) <= 1e-8 * scale
    # and not by accident: a different damping gives another minimiser
    other = System(A, TimedOperator(A), -A.residual, 2 * LAM, P, w, g, wc, subset)
    d_other = LsmrSolver(TOL).solve(other, x0, Stops(maxiter=2000)).d
    assert float(tl.norm(tl.sub(d_other, d_diag))) > 1e-3 * scale


def test_a_rank_one_c_is_reproduced_by_the_scaling() -> None:
    # c = r s^T exactly: C_k is c, so P's scaling is Chapelle-Erhan's diagonal itself
    A, w, _, _ = _scaling()
    g = torch.Generator().manual_seed(7)
    c1 = [torch.rand(W.shape[0], 1, generator=g, dtype=W.dtype).add_(0.1)
          * torch.rand(1, W.shape[1], generator=g, dtype=W.dtype).add_(0.1) for W in w]  # fmt: skip
    P = KroneckerScaling.of(A, c1, LAM, torch.Generator().manual_seed(1))
    assert P.r is not None and P.s is not None
    for l, C in enumerate(c1):
        torch.testing.assert_close(P.r[l].unsqueeze(1) * P.s[l].unsqueeze(0), C, rtol=1e-12, atol=0.0)


def test_kfac_needs_the_layers_and_lsmr() -> None:
    class Opaque:
        residual = torch.zeros(3, 2)

    with pytest.raises(ConfigError, match=r"kfac preconditioner .* needs the layers"):
        KroneckerScaling.of(Opaque(), [torch.ones(2)], 0.5)  # type: ignore[arg-type]
    from shf.optim.step import SHFConfig

    with pytest.raises(ConfigError, match="kfac"):
        SHFConfig(preconditioner="kfac", solver="cg")
