"""Tests of :mod:`shf.solvers.lsmr` (Fong & Saunders LSMR, paper Alg. 6).

All problems are float64 and seeded. Tolerances are stated next to each check; the
recurring ones are:

* ``RTOL_X = 1e-10`` for comparing our iterate with scipy's on well-conditioned problems
  (cond <= ~10). Both codes run the same recurrences in IEEE double; they differ only in
  the rounding of the products and norms (torch's and numpy's BLAS sum in different
  orders), i.e. ~n eps ~ 1e-14 relative per step. On these problems LSMR stops well
  before losing orthogonality, so the differences stay ~1e-13 (observed); 1e-10 leaves
  three orders of margin yet still catches any wrong coefficient (those give O(1e-3) or
  worse).
* Iteration counts are compared exactly: a count could flip only if a stopping quantity
  (test1/test2/test3) landed within ~1e-13 relative of its tolerance at some iteration;
  on these seeded problems the quantities decrease by at least a few percent per
  iteration, so such a coincidence does not occur (and would show up as a deterministic
  failure, not a flaky one, since everything is seeded).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import lsmr as scipy_lsmr
from torch import Tensor

from shf import tensorlist as tl
from shf.solvers.lsmr import LsmrInfo, LsmrStop, lsmr
from shf.solvers.merit import MeritRule

RTOL_X = 1e-10
# Relative agreement of scipy's scalar estimates (normr, normar, norma, conda, normx) on the
# well-conditioned problems: they are scalar recurrences fed by alpha_k, beta_k, which agree
# to ~1e-15; observed differences are <= 1e-13, and 1e-9 leaves ample margin.
RTOL_EST = 1e-9

DTYPE = torch.float64


def _gauss(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, n)), rng.standard_normal(m)


def _with_singular_values(m: int, n: int, s: np.ndarray, seed: int) -> np.ndarray:
    """``U diag(s) V^T`` with random orthogonal ``U``, ``V``."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = np.zeros((m, n))
    k = min(m, n)
    S[:k, :k] = np.diag(s[:k])
    return U @ S @ V.T


def _ours(A: np.ndarray, b: np.ndarray, **kw: Any) -> tuple[np.ndarray, LsmrInfo]:
    x0 = kw.pop("x0", None)
    if x0 is not None:
        kw["x0"] = torch.from_numpy(x0)
    x, info = lsmr(torch.from_numpy(A), torch.from_numpy(b), **kw)
    assert isinstance(x, Tensor)
    return x.numpy(), info


def _rel(a: np.ndarray | float, b: np.ndarray | float) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


# ---------------------------------------------------------------------------------------
# Agreement with scipy.sparse.linalg.lsmr
# ---------------------------------------------------------------------------------------


def _outlier_square(seed: int) -> np.ndarray:
    """30 x 30 with 25 singular values in [1, 2] and 5 outliers 1e-3 ... 1e-5 (cond 2e5).

    Ill-conditioned, yet LSMR meets the tolerances used below before it loses
    orthogonality. (On, e.g., geometrically spaced singular values with cond >= 1e4 the
    iterates of *any* two double-precision LSMR codes drift apart by 1e-5 .. 1e-1 after
    ~15 iterations; scipy against scipy with A perturbed by 1e-15 does the same, so such
    problems cannot be compared tightly.)"""
    s = np.concatenate([np.linspace(1.0, 2.0, 25), np.logspace(-3, -5, 5)])
    return _with_singular_values(30, 30, s, seed)


SCIPY_CASES: dict[str, dict[str, Any]] = {
    "tall": dict(shape=(60, 20), kw={}, istop=2),
    "tall_tight": dict(shape=(60, 20), kw=dict(atol=1e-8, btol=1e-8), istop=2),
    "wide": dict(shape=(20, 60), kw={}, istop=1),
    "tall_damp0.1": dict(shape=(60, 20), kw=dict(damp=0.1), istop=2),
    "tall_damp1": dict(shape=(60, 20), kw=dict(damp=1.0), istop=2),
    "tall_damp10": dict(shape=(60, 20), kw=dict(damp=10.0), istop=2),
    "wide_damp1": dict(shape=(20, 60), kw=dict(damp=1.0), istop=2),
    "tall_x0": dict(shape=(60, 20), kw=dict(x0=True), istop=2),
    "wide_x0": dict(shape=(20, 60), kw=dict(x0=True), istop=1),
    "tall_x0_damp1": dict(shape=(60, 20), kw=dict(x0=True, damp=1.0), istop=2),
    "wide_x0_damp0.1": dict(shape=(20, 60), kw=dict(x0=True, damp=0.1), istop=2),
    "tall_maxiter5": dict(shape=(60, 20), kw=dict(maxiter=5), istop=7),
    "wide_maxiter3_x0": dict(shape=(20, 60), kw=dict(maxiter=3, x0=True), istop=7),
    "tall_conlim": dict(shape=(60, 20), kw=dict(conlim=1.5), istop=3),
    # Square, cond 2e5 (see _outlier_square), consistent and inconsistent right-hand sides.
    "square_consistent": dict(square="consistent", kw=dict(atol=1e-4, btol=1e-4), istop=1),
    "square_consistent_conlim": dict(square="consistent", kw=dict(conlim=1e3), istop=3),
    "square_consistent_damp0.01": dict(square="consistent", kw=dict(damp=0.01), istop=2),
    "square_lsq": dict(square="random", kw=dict(atol=1e-4, btol=1e-4), istop=2),
    "square_lsq_conlim": dict(square="random", kw=dict(conlim=1e3), istop=3),
    "square_lsq_damp0.1_x0": dict(square="random", kw=dict(damp=0.1, x0=True), istop=2),
}


@pytest.mark.parametrize("name", list(SCIPY_CASES))
def test_matches_scipy(name: str) -> None:
    case = SCIPY_CASES[name]
    kw = dict(case["kw"])
    seed = zlib.crc32(name.encode()) % 1000  # stable per case (hash() is salted)
    if "square" in case:
        A = _outlier_square(seed=1)
        rng = np.random.default_rng(seed)
        b = A @ rng.standard_normal(30) if case["square"] == "consistent" else rng.standard_normal(30)
    else:
        A, b = _gauss(*case["shape"], seed=seed)
    if kw.get("x0") is True:
        kw["x0"] = np.random.default_rng(7).standard_normal(A.shape[1])
    x_ref, istop, itn, normr, normar, norma, conda, normx = scipy_lsmr(A, b, **kw)
    x, info = _ours(A, b, **dict(kw))
    assert istop == case["istop"]  # the case exercises the stop it is meant to
    assert info.istop == istop, (info.stop, istop)
    assert info.iterations == itn
    assert _rel(x, x_ref) < RTOL_X
    for ours, theirs in (
        (info.normr, normr),
        (info.normar, normar),
        (info.norma, norma),
        (info.conda, conda),
        (info.normx, normx),
    ):
        assert abs(ours - theirs) <= RTOL_EST * abs(theirs), (ours, theirs)
    assert len(info.residual_history) == itn == len(info.normar_history)
    assert info.residual_history[-1] == info.normr
    assert info.merit_history == [] and info.best_merit_iteration is None


def test_zero_rhs_gives_zero_like_scipy() -> None:
    A, _ = _gauss(30, 10, seed=4)
    b = np.zeros(30)
    x, info = _ours(A, b)
    assert info.stop is LsmrStop.X0_SOLVES and info.istop == scipy_lsmr(A, b)[1] == 0
    assert info.iterations == 0 and not np.any(x)
    # With x0 and no damping scipy returns x = 0 (a least-squares solution for b = 0).
    x0 = np.random.default_rng(0).standard_normal(10)
    x_ref, istop, itn = scipy_lsmr(A, b, x0=x0)[:3]
    x, info = _ours(A, b, x0=x0)
    assert info.istop == istop == 0 and info.iterations == itn == 0
    assert not np.any(x) and not np.any(x_ref)


def test_zero_rhs_damped_with_x0_solves_damped_problem() -> None:
    # Deliberate deviation from scipy (which returns 0 here): with damp > 0 and x0 != 0,
    # x = 0 does not minimise ||A x||^2 + damp^2 ||x - x0||^2; the minimiser is
    # x = damp^2 (A^T A + damp^2 I)^{-1} x0. cond(A^T A + I) ~ 10, atol = 1e-12, so 1e-9.
    A, _ = _gauss(30, 10, seed=4)
    b = np.zeros(30)
    x0 = np.random.default_rng(0).standard_normal(10)
    x, info = _ours(A, b, x0=x0, damp=1.0, atol=1e-12, btol=1e-12)
    x_star = np.linalg.solve(A.T @ A + np.eye(10), x0)
    assert info.stop in (LsmrStop.LSQ_SOLVED, LsmrStop.LSQ_EPS)
    assert _rel(x, x_star) < 1e-9


# ---------------------------------------------------------------------------------------
# Diagnostics recomputed from the solution; optimality
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("damp", [0.0, 0.5])
@pytest.mark.parametrize("shape", [(50, 15), (15, 50)])
def test_diagnostics_match_recomputed_values(shape: tuple[int, int], damp: float) -> None:
    m, n = shape
    A, b = _gauss(m, n, seed=11)
    x, info = _ours(A, b, damp=damp, maxiter=8)  # stop early: residuals well above roundoff
    assert info.stop is LsmrStop.MAXITER
    r = b - A @ x
    # rbar = [b; 0] - [A; damp I] x and Abar^T rbar = A^T r - damp^2 x (x0 = None).
    normr = math.sqrt(float(r @ r) + damp**2 * float(x @ x))
    normar = float(np.linalg.norm(A.T @ r - damp**2 * x))
    # The normr/normar recurrences are exact in exact arithmetic (Fong & Saunders §3.4);
    # in double precision, after 8 well-conditioned steps, they agree to ~1e-14 (1e-10 margin).
    assert abs(info.normr - normr) <= 1e-10 * normr
    assert abs(info.normar - normar) <= 1e-10 * normar
    assert info.normx == pytest.approx(float(np.linalg.norm(x)), rel=1e-14)
    # norma is sqrt(sum of alpha_j^2 + beta_j^2 + damp^2 terms) over the steps taken: a lower
    # bound of ||[A; damp I]||_F (Fong & Saunders §3.5) and at least ||A||_2.
    fro = math.sqrt(float(np.sum(A * A)) + n * damp**2)
    assert np.linalg.norm(A, 2) * (1 - 1e-12) <= info.norma <= fro * (1 + 1e-12)
    assert info.conda >= 1.0


@pytest.mark.parametrize("with_x0", [False, True])
@pytest.mark.parametrize("damp", [0.0, 0.3, 3.0])
def test_damped_normal_equations_at_convergence(damp: float, with_x0: bool) -> None:
    A, b = _gauss(40, 12, seed=5)
    x0 = np.random.default_rng(8).standard_normal(12) if with_x0 else None
    x, info = _ours(A, b, damp=damp, x0=x0, atol=1e-12, btol=1e-12)
    assert info.stop in (LsmrStop.LSQ_SOLVED, LsmrStop.LSQ_EPS, LsmrStop.RESIDUAL_SMALL)
    xx0 = np.zeros(12) if x0 is None else x0
    g = A.T @ (b - A @ x) - damp**2 * (x - xx0)
    # atol = 1e-12 bounds ||Abar^T rbar|| by 1e-12 ||Abar|| ||rbar||; ||Abar||, ||rbar|| are
    # O(10) here, so relative to ||A^T b|| ~ 30 a residual below 1e-10 is expected.
    assert np.linalg.norm(g) <= 1e-10 * np.linalg.norm(A.T @ b)


# ---------------------------------------------------------------------------------------
# Every stop reason
# ---------------------------------------------------------------------------------------


def test_stop_x0_solves_when_At_b_is_zero() -> None:
    A = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=DTYPE)
    b = torch.tensor([0.0, 0.0, 1.0], dtype=DTYPE)  # A^T b = 0 exactly
    x, info = lsmr(A, b)
    assert info.stop is LsmrStop.X0_SOLVES and info.iterations == 0
    assert isinstance(x, Tensor) and not bool(x.any())
    # With x0 a solution of the consistent system: r0 = 0, x0 is returned (a copy).
    x0 = torch.tensor([2.0, -1.0], dtype=DTYPE)
    x, info = lsmr(A, A @ x0, x0=x0)
    assert info.stop is LsmrStop.X0_SOLVES and torch.equal(x, x0) and x is not x0
    # Preconditioned: x0 itself is returned, in the original variables (not y0 = x0 / c).
    c = torch.tensor([4.0, 0.25], dtype=DTYPE)
    x, info = lsmr(A, A @ x0, x0=x0, precond=c)
    assert info.stop is LsmrStop.X0_SOLVES and torch.equal(x, x0)


def test_stop_residual_small_on_consistent_square_system() -> None:
    A = _with_singular_values(25, 25, np.linspace(1.0, 3.0, 25), seed=2)
    xt = np.random.default_rng(1).standard_normal(25)
    x, info = _ours(A, A @ xt)
    assert info.stop is LsmrStop.RESIDUAL_SMALL and info.istop == 1
    # btol = atol = 1e-6 and cond = 3: the error is ~1e-6 relative at most.
    assert _rel(x, xt) < 1e-5


def test_stop_lsq_solved_on_inconsistent_tall_system() -> None:
    A, b = _gauss(50, 10, seed=3)
    _, info = _ours(A, b)
    assert info.stop is LsmrStop.LSQ_SOLVED and info.istop == 2
    assert info.normar <= 1e-6 * info.norma * info.normr


def test_stop_ill_conditioned_with_small_conlim() -> None:
    A = _with_singular_values(30, 10, np.logspace(0, -3, 10), seed=3)
    b = np.random.default_rng(5).standard_normal(30)
    _, info = _ours(A, b, conlim=10.0)
    assert info.stop is LsmrStop.ILL_CONDITIONED and info.conda >= 10.0
    assert info.iterations == scipy_lsmr(A, b, conlim=10.0)[2]


def test_stop_maxiter() -> None:
    A, b = _gauss(50, 10, seed=3)
    _, info = _ours(A, b, maxiter=3)
    assert info.stop is LsmrStop.MAXITER and info.iterations == 3


@pytest.mark.parametrize(
    ("m", "consistent", "expected"),
    [(10, True, LsmrStop.RESIDUAL_EPS), (30, False, LsmrStop.LSQ_EPS)],
)
def test_stop_machine_precision(m: int, consistent: bool, expected: LsmrStop) -> None:
    # atol = btol = conlim = 0 switch the user tests off; only the eps versions can stop.
    A = _with_singular_values(m, 10, np.logspace(0, -1, 10), seed=3)
    b = A @ np.ones(10) if consistent else np.random.default_rng(5).standard_normal(m)
    kw: dict[str, Any] = dict(atol=0.0, btol=0.0, conlim=0.0, maxiter=100)
    _, info = _ours(A, b, **kw)
    assert info.stop is expected
    assert info.istop == scipy_lsmr(A, b, **kw)[1]


def test_stop_callback_and_callback_arguments() -> None:
    A, b = _gauss(40, 12, seed=6)
    seen: list[tuple[int, LsmrStop, float]] = []

    def cb(k: int, x: Any, info: LsmrInfo) -> bool:
        seen.append((k, info.stop, info.normr))
        return k == 3

    x, info = lsmr(torch.from_numpy(A), torch.from_numpy(b), callback=cb)
    assert info.stop is LsmrStop.CALLBACK and info.iterations == 3
    assert [s[0] for s in seen] == [1, 2, 3]
    assert all(s[1] is LsmrStop.RUNNING for s in seen)
    assert [s[2] for s in seen] == info.residual_history
    x3, _ = lsmr(torch.from_numpy(A), torch.from_numpy(b), maxiter=3)
    assert torch.equal(x, x3)  # same arithmetic, bit for bit


class _NaNAfter:
    """Dense operator whose ``kind`` product returns NaN from its ``after``-th call on."""

    def __init__(self, A: Tensor, kind: str, after: int) -> None:
        self.A, self.kind, self.after, self.calls = A, kind, after, 0
        self.shape = tuple(A.shape)

    def _maybe_nan(self, kind: str, y: Tensor) -> Tensor:
        if kind == self.kind:
            self.calls += 1
            if self.calls >= self.after:
                return torch.full_like(y, math.nan)
        return y

    def matvec(self, x: Tensor) -> Tensor:
        return self._maybe_nan("matvec", self.A @ x)

    def rmatvec(self, u: Tensor) -> Tensor:
        return self._maybe_nan("rmatvec", self.A.T @ u)


@pytest.mark.parametrize(("kind", "after", "done"), [("matvec", 4, 3), ("rmatvec", 5, 3)])
def test_stop_not_finite_returns_last_finite_iterate(kind: str, after: int, done: int) -> None:
    # Iteration k calls matvec once (call k) and rmatvec once (call k + 1, after the initial
    # A^T u_1), so a NaN from the 4th matvec / 5th rmatvec happens in iteration 4.
    A = torch.from_numpy(_gauss(40, 12, seed=6)[0])
    b = torch.from_numpy(_gauss(40, 12, seed=7)[1])
    x, info = lsmr(_NaNAfter(A, kind, after), b, atol=1e-14, btol=1e-14)
    assert info.stop is LsmrStop.NOT_FINITE and info.iterations == done
    assert isinstance(x, Tensor) and tl.all_finite(x)
    x_ref, info_ref = lsmr(A, b, maxiter=done)
    assert torch.equal(x, x_ref)
    assert info.normr == info_ref.normr and len(info.residual_history) == done


def test_not_finite_at_start_returns_x0() -> None:
    A = torch.from_numpy(_gauss(40, 12, seed=6)[0])
    b = torch.ones(40, dtype=DTYPE)
    x0 = torch.ones(12, dtype=DTYPE)
    x, info = lsmr(_NaNAfter(A, "matvec", 1), b, x0=x0)
    assert info.stop is LsmrStop.NOT_FINITE and info.iterations == 0 and torch.equal(x, x0)


# ---------------------------------------------------------------------------------------
# Merit-based stopping (Alg. 6 with NOTES items 4 and 5)
# ---------------------------------------------------------------------------------------


def _slow_problem() -> tuple[Tensor, Tensor]:
    """Inconsistent, cond 1e4: LSMR needs many iterations, so the merit rules decide."""
    A = _with_singular_values(80, 60, np.logspace(0, -4, 60), seed=9)
    b = np.random.default_rng(10).standard_normal(80)
    return torch.from_numpy(A), torch.from_numpy(b)


def test_merit_schedule_and_final_evaluation() -> None:
    A, b = _slow_problem()
    calls: list[float] = []

    def phi(x: Any) -> float:
        calls.append(tl.norm(x))
        return float(torch.sum((A @ x - b) ** 2))

    _, info = lsmr(A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=30, merit=phi, rule=MeritRule(miniter=1000))
    assert info.stop is LsmrStop.MAXITER
    # k_next: 5, ceil(1.25*5)=7, 9, 12, 15, 19, 24, then min(30, maxiter) = 30. phi(x0) is
    # not evaluated: only the stall test beyond miniter would read it.
    assert [k for k, _ in info.merit_history] == [5, 7, 9, 12, 15, 19, 24, 30]
    assert info.merit_evaluations == len(calls) == 8
    # ||A x_k - b|| decreases monotonically in LSMR, so the best merit is the last one.
    assert info.best_merit_iteration == 30

    # maxiter = 28 caps the last check at 28; maxiter = 27 is not on the schedule, so the
    # final iterate is evaluated after the loop.
    _, info = lsmr(A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=28, merit=phi, rule=MeritRule(miniter=1000))
    assert [k for k, _ in info.merit_history] == [5, 7, 9, 12, 15, 19, 24, 28]
    _, info = lsmr(A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=26, merit=phi, rule=MeritRule(miniter=1000))
    assert [k for k, _ in info.merit_history] == [5, 7, 9, 12, 15, 19, 24, 26]


def test_atol_test_applies_before_miniter_with_merit() -> None:
    # Footnote 1 of the paper: the atol test stops even for k < miniter.
    A, b = (torch.from_numpy(t) for t in _gauss(60, 20, seed=3))
    _, ref = lsmr(A, b)
    _, info = lsmr(A, b, merit=lambda x: float(tl.norm(x)), rule=MeritRule(miniter=50))
    assert info.stop is LsmrStop.LSQ_SOLVED and info.iterations == ref.iterations < 50
    ks = [k for k, _ in info.merit_history]
    assert ks[0] == 5 and ks[-1] == info.iterations  # last iterate evaluated as well


def test_merit_stalled_returns_best_iterate() -> None:
    A, b = _slow_problem()
    iterates: dict[int, Tensor] = {}

    def record(k: int, x: Any, info: LsmrInfo) -> None:
        iterates[k] = x.clone()

    def phi(x: Any) -> float:
        return float(torch.sum((A @ x - b) ** 2))

    x, info = lsmr(
        A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=500, merit=phi, rule=MeritRule(miniter=10, ftol=1e-2),
        callback=record,
    )  # fmt: skip
    assert info.stop is LsmrStop.MERIT_STALLED
    k = info.iterations
    ks = [kk for kk, _ in info.merit_history]
    assert ks[-1] == k > 10 and info.best_merit_iteration == k
    # The rule that fired: a new minimum with (f_prev - f_k)/f_k < (k - k_prev) ftol ...
    (k_prev, f_prev), (_, f_k) = info.merit_history[-2:]
    assert f_k == min(f for kk, f in info.merit_history if kk > 0)
    assert (f_prev - f_k) / f_k < (k - k_prev) * 1e-2
    # ... and it did not fire at the earlier checks beyond miniter.
    for (ka, fa), (kb, fb) in zip(info.merit_history[1:-1], info.merit_history[2:-1]):
        if kb > 10:
            assert (fa - fb) / fb >= (kb - ka) * 1e-2
    assert torch.equal(x, iterates[k])


def test_merit_not_recovered_returns_best_iterate() -> None:
    # ||x_k|| increases monotonically in LSMR from x0 = 0 (Fong & Saunders 2011, Thm 3.3.1),
    # so phi(x) = (||x|| - t)^2 with t = ||x_7|| decreases, is smallest at k = 7 among the
    # checks, then increases: the "does not recover" behaviour of §5.
    A, b = _slow_problem()
    iterates: dict[int, Tensor] = {}

    def record(k: int, x: Any, info: LsmrInfo) -> None:
        iterates[k] = x.clone()

    x7, _ = lsmr(A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=7)
    t = tl.norm(x7)

    def phi(x: Any) -> float:
        return (tl.norm(x) - t) ** 2

    x, info = lsmr(
        A, b, atol=0.0, btol=0.0, conlim=0.0, maxiter=500, merit=phi, rule=MeritRule(miniter=10, recover=5),
        callback=record,
    )  # fmt: skip
    assert info.stop is LsmrStop.MERIT_NOT_RECOVERED
    # Checks at 5, 7, 9, 12, 15: k = 12 is not > k_min + recover = 12; k = 15 is.
    assert [k for k, _ in info.merit_history] == [5, 7, 9, 12, 15]
    assert info.iterations == 15 and info.best_merit_iteration == 7
    assert torch.equal(x, iterates[7])  # NOTES item 4: the best iterate, not x_15
    assert torch.equal(x, x7)


def test_nan_merit_counts_as_inf_and_returns_x0() -> None:
    A, b = (torch.from_numpy(t) for t in _gauss(60, 20, seed=3))
    x0 = torch.full((20,), 0.1, dtype=DTYPE)
    x, info = lsmr(A, b, x0=x0, merit=lambda x: math.nan, maxiter=10)
    assert all(f == math.inf for _, f in info.merit_history)
    # Alg. 6 starts from x_min = x0 with f_min = inf; no evaluated iterate beats it.
    assert info.best_merit_iteration == 0 and torch.equal(x, x0) and x is not x0


def test_merit_argument_is_in_original_variables_with_precond() -> None:
    A, b = (torch.from_numpy(t) for t in _gauss(60, 20, seed=3))
    c = torch.from_numpy(np.random.default_rng(1).uniform(0.2, 5.0, 20))
    seen: list[Tensor] = []

    def phi(x: Any) -> float:
        seen.append(x.clone())
        return float(torch.sum((A @ x - b) ** 2))

    x, info = lsmr(A, b, precond=c, merit=phi, maxiter=9)
    x_plain, _ = lsmr(A, b, precond=c, maxiter=9)
    # phi(x_k) with x_k = c ∘ y_k: the last evaluation is at the returned x.
    assert info.merit_history[-1][0] == 9 and info.best_merit_iteration == 9
    assert torch.equal(seen[-1], x) and torch.equal(x, x_plain)


# ---------------------------------------------------------------------------------------
# Preconditioning (NOTES item 2)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("damp", [0.0, 0.7])
@pytest.mark.parametrize("with_x0", [False, True])
def test_preconditioned_solves_scaled_damped_problem(damp: float, with_x0: bool) -> None:
    m, n = 50, 15
    A, b = _gauss(m, n, seed=12)
    c = np.random.default_rng(13).uniform(0.1, 10.0, n)  # cond(A diag(c)) ~ 100
    x0 = np.random.default_rng(14).standard_normal(n) if with_x0 else np.zeros(n)
    y0 = x0 / c
    x, info = lsmr(
        torch.from_numpy(A), torch.from_numpy(b), damp=damp, precond=torch.from_numpy(c),
        x0=torch.from_numpy(x0) if with_x0 else None, atol=1e-12, btol=1e-12, maxiter=200,
    )  # fmt: skip
    assert info.stop in (LsmrStop.LSQ_SOLVED, LsmrStop.LSQ_EPS), info.stop
    assert isinstance(x, Tensor)
    # min ||A diag(c) y - b||^2 + damp^2 ||y - y0||^2 as one stacked least-squares problem.
    Abar = np.vstack([A * c, damp * np.eye(n)])
    bbar = np.concatenate([b, damp * y0])
    y_ref = np.linalg.lstsq(Abar, bbar, rcond=None)[0]
    # cond(Abar) ~ 1e2 and atol = 1e-12: the forward error in y is ~1e-12 relative; 1e-9.
    assert _rel(x.numpy(), c * y_ref) < 1e-9
    assert info.normx == pytest.approx(float(np.linalg.norm(x.numpy() / c)), rel=1e-9)


def test_unit_precond_is_plain_lsmr() -> None:
    A, b = (torch.from_numpy(t) for t in _gauss(60, 20, seed=3))
    x0 = torch.from_numpy(np.random.default_rng(2).standard_normal(20))
    x1, i1 = lsmr(A, b, x0=x0, damp=0.2)
    x2, i2 = lsmr(A, b, x0=x0, damp=0.2, precond=torch.ones(20, dtype=DTYPE))
    # c = 1: c ∘ y and x0 / c are exact, so the two runs do identical arithmetic.
    assert torch.equal(x1, x2) and i1.iterations == i2.iterations and i1.stop is i2.stop


# ---------------------------------------------------------------------------------------
# List-of-tensors vectors (the paper's weight space W)
# ---------------------------------------------------------------------------------------


class _ListOperator:
    """A dense ``(p*q) x n`` matrix acting on a list of matrices, with a matrix range."""

    def __init__(self, A: Tensor, like: list[Tensor], out_shape: tuple[int, int]) -> None:
        self.A, self.like, self.out_shape = A, like, out_shape

    def matvec(self, x: Any) -> Tensor:
        return (self.A @ tl.flatten(x)).reshape(self.out_shape)

    def rmatvec(self, u: Any) -> list[Tensor]:
        return tl.unflatten(self.A.T @ u.reshape(-1), self.like)


@pytest.mark.parametrize("variant", ["plain", "x0_damp_precond_merit"])
def test_list_of_tensors_matches_flat(variant: str) -> None:
    like = [torch.zeros(3, 4, dtype=DTYPE), torch.zeros(2, 5, dtype=DTYPE)]  # n = 22
    A_np, b_np = _gauss(200, 22, seed=15)  # cond ~ 1.8: fast convergence
    A, b = torch.from_numpy(A_np), torch.from_numpy(b_np)
    op = _ListOperator(A, like, (40, 5))
    kw: dict[str, Any] = {}
    kw_list: dict[str, Any] = {}
    if variant != "plain":
        x0 = torch.from_numpy(np.random.default_rng(16).standard_normal(22))
        c = torch.from_numpy(np.random.default_rng(17).uniform(0.8, 1.25, 22))
        kw = dict(x0=x0, precond=c, damp=0.3, merit=lambda x: float(tl.norm(x)), rule=MeritRule(miniter=0))
        kw_list = dict(kw, x0=tl.unflatten(x0, like), precond=tl.unflatten(c, like))
    x_flat, info_flat = lsmr(A, b, maxiter=30, **kw)
    x_list, info_list = lsmr(op, b.reshape(40, 5), maxiter=30, **kw_list)
    # Stopping well before k ~ n = 22, where LSMR (any implementation) loses orthogonality
    # and rounding differences start to grow, keeps the comparison tight.
    assert info_flat.iterations < 15
    assert isinstance(x_list, list) and [t.shape for t in x_list] == [(3, 4), (2, 5)]
    assert info_list.stop is info_flat.stop and info_list.iterations == info_flat.iterations
    # Same recurrences; only the reduction order of the (blocked) norms differs: ~1e-15.
    assert _rel(tl.flatten(x_list).numpy(), tl.flatten(x_flat).numpy()) < 1e-12
    assert info_list.normr == pytest.approx(info_flat.normr, rel=1e-12)
    assert info_list.best_merit_iteration == info_flat.best_merit_iteration


# ---------------------------------------------------------------------------------------
# Inputs are not modified; float32 works
# ---------------------------------------------------------------------------------------


def test_inputs_not_modified_and_float32() -> None:
    A, b = (torch.from_numpy(t).float() for t in _gauss(30, 10, seed=3))
    x0 = torch.ones(10)
    c = torch.full((10,), 2.0)
    saved = [t.clone() for t in (A, b, x0, c)]
    x, info = lsmr(A, b, x0=x0, precond=c, damp=0.1)
    assert isinstance(x, Tensor) and x.dtype == torch.float32
    assert all(torch.equal(s, t) for s, t in zip(saved, (A, b, x0, c)))
    x64, _ = lsmr(A.double(), b.double(), x0=x0.double(), precond=c.double(), damp=0.1)
    # float32 products (eps ~ 6e-8) on a cond ~ 3 problem stopped at atol = 1e-6: ~1e-5.
    assert _rel(x.double().numpy(), x64.numpy()) < 1e-4 and info.stop is LsmrStop.LSQ_SOLVED


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


def _bad_cases() -> list[tuple[dict[str, Any], str]]:
    A = torch.ones(4, 3, dtype=DTYPE)
    b = torch.ones(4, dtype=DTYPE)
    base: dict[str, Any] = dict(A=A, b=b)
    nan_b = b.clone()
    nan_b[1] = math.nan
    zero_c = torch.ones(3, dtype=DTYPE)
    zero_c[0] = 0.0
    inf_c = torch.ones(3, dtype=DTYPE)
    inf_c[2] = math.inf
    nan_x0 = torch.zeros(3, dtype=DTYPE)
    nan_x0[0] = math.nan
    return [
        (dict(base, damp=-1.0), "damp must be"),
        (dict(base, damp=math.nan), "damp must be"),
        (dict(base, atol=-1e-6), "atol must be"),
        (dict(base, btol=-1.0), "btol must be"),
        (dict(base, conlim=-1.0), "conlim must be"),
        (dict(base, maxiter=0), "maxiter must be an integer >= 1"),
        (dict(base, maxiter=2.5), "maxiter must be an integer"),
        (dict(base, b=torch.ones(5, dtype=DTYPE)), r"b must be a 1-D tensor of length 4"),
        (dict(base, b=torch.ones(4, 1, dtype=DTYPE)), r"b must be a 1-D tensor of length 4"),
        (dict(base, b=nan_b), "b contains NaN"),
        (dict(base, x0=nan_x0), "x0 contains NaN"),
        (dict(base, x0=torch.ones(4, dtype=DTYPE)), "x0 must be a 1-D tensor of length 3"),
        (dict(base, precond=zero_c), "precond .* must have all entries > 0"),
        (dict(base, precond=-torch.ones(3, dtype=DTYPE)), "must have all entries > 0"),
        (dict(base, precond=inf_c), "precond contains NaN or Inf"),
        (dict(base, precond=torch.ones(2, dtype=DTYPE)), "precond must be a 1-D tensor"),
        (dict(base, rule={"ftol": 1e-5}), "rule must be a shf.solvers.merit.MeritRule"),
        (dict(base, b=torch.ones(4, dtype=torch.int64)), "floating-point"),
        (dict(base, b=[1.0, 2.0]), "b must be a torch.Tensor or a non-empty list"),
    ]


@pytest.mark.parametrize(("kwargs", "match"), _bad_cases())
def test_bad_input_raises(kwargs: dict[str, Any], match: str) -> None:
    kw = dict(kwargs)
    A, b = kw.pop("A"), kw.pop("b")
    with pytest.raises(ValueError, match=match):
        lsmr(A, b, **kw)


def test_bad_operator_inputs() -> None:
    like = [torch.zeros(3, 4, dtype=DTYPE), torch.zeros(2, 5, dtype=DTYPE)]
    op = _ListOperator(torch.ones(30, 22, dtype=DTYPE), like, (6, 5))
    b = torch.ones(6, 5, dtype=DTYPE)
    with pytest.raises(ValueError, match="maxiter is required"):
        lsmr(op, b)
    with pytest.raises(ValueError, match="x0 has structure"):
        lsmr(op, b, maxiter=3, x0=[torch.zeros(4, 3, dtype=DTYPE), torch.zeros(2, 5, dtype=DTYPE)])
    with pytest.raises(ValueError, match="same structure"):
        lsmr(op, b, maxiter=3, x0=[t.clone() for t in like], precond=[torch.ones(3, 4)])
    with pytest.raises(TypeError, match="matvec"):
        lsmr(object(), b, maxiter=3)


@pytest.mark.parametrize("ftol", [1e-3, 1e3])
def test_merit_at_x0_is_evaluated_only_when_the_stall_test_reads_it(ftol: float) -> None:
    """Alg. 6's f_prev = phi(x0) matters only at a first check beyond miniter: there it is
    evaluated (lazily) and the stall rule compares against it exactly as written."""
    A, b = _slow_problem()
    x0 = torch.full((A.shape[1],), 0.01, dtype=A.dtype)

    def phi(x: Any) -> float:
        return float(torch.sum((A @ x - b) ** 2))

    _, info = lsmr(A, b, x0=x0, atol=0.0, btol=0.0, conlim=0.0, maxiter=40, merit=phi,
                   rule=MeritRule(miniter=0, ftol=ftol))
    # The first check (k = 5) is beyond miniter = 0 and a new minimum: it needs phi(x0).
    assert [k for k, _ in info.merit_history][:2] == [5, 0]
    f5, f0 = info.merit_history[0][1], info.merit_history[1][1]
    assert f0 == phi(x0)
    stalled = (f0 - f5) / f5 < 5 * ftol
    assert stalled == (ftol == 1e3)  # phi falls by a lot from x0 in 5 iterations, not 5000x
    if stalled:
        assert info.stop is LsmrStop.MERIT_STALLED and info.iterations == 5
    else:
        assert info.iterations > 5
