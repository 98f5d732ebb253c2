"""SHF ablation switches: the solver (LSMR, CG), the preconditioner and the batch schedule."""

from __future__ import annotations

import pytest
import torch

from reference import tiny_problem
from shf import tensorlist as tl
from shf.data.curves import generate_curves
from shf.data.split import make_split
from shf.experiments.run import train
from shf.fit import LoopConfig
from shf.models.autoencoder import Autoencoder
from shf.optim.step import SHFConfig, SHFState, shf_step
from shf.solvers.merit import MERIT_NOT_RECOVERED, MeritMonitor


def test_cg_ablation_solves_the_same_problem_as_lsmr():
    """Without the merit and run to tight tolerances, CG and LSMR return the same step."""
    net, w, X = tiny_problem((6, 4, 2), 12, seed=2)
    base = dict(lambda1=0.5, use_merit=False, maxiter1=400, atol=1e-13, n1=12)
    steps = {}
    for solver in ("lsmr", "cg"):
        cfg = SHFConfig(solver=solver, **base)
        state = SHFState.initial(cfg)
        state.d = [0.1 * W for W in w]  # a warm start, to check the damping on y - y0 too
        _, info = shf_step(net, w, X, state, cfg, generator=torch.Generator().manual_seed(0))
        steps[solver] = tl.flatten(state.d) / cfg.gamma1  # d = state.d / gamma
        assert info.solver == solver
        key = "solver_iterations"
        assert key in info.as_dict()
    # Both solve a damped SPD system to ~1e-13: agreement to 1e-7 relative.
    torch.testing.assert_close(steps["cg"], steps["lsmr"], rtol=1e-7, atol=1e-10)


def _data():
    X = generate_curves(400, seed=3)
    return make_split(X[:240], X[240:320], X[320:], "tiny").to(torch.float64)


@pytest.mark.parametrize("precond", ["chapelle-erhan", "martens", "none"])
def test_switches_are_visible_in_metrics(precond):
    net = Autoencoder((784, 24, 6))
    cfg = SHFConfig(n1=40, n_max=200, maxiter1=20, miniter=5, recover=10, preconditioner=precond,
                    solver="cg", batch_schedule="fixed")  # fmt: skip
    res = train(net, _data(), cfg, LoopConfig(max_iters=8), seed=0)
    h = res.history
    assert all(r["n"] == 40 and r["maxiter"] == 20 and r["n_hat"] is None for r in h)
    assert all(r["batch_schedule"] == "fixed" and r["solver"] == "cg" and "solver_iterations" in r for r in h)
    assert res.summary["val_error"] < res.summary["initial_val_error"]


def test_dynamic_schedule_grows_batch():
    net = Autoencoder((784, 24, 6))
    cfg = SHFConfig(n1=20, n_max=240, maxiter1=20, miniter=5, recover=10, theta=0.05)
    res = train(net, _data(), cfg, LoopConfig(max_iters=8), seed=0)
    # theta = 0.05 demands a low-variance gradient: Alg. 2 asks for more data, n grows after i = 5.
    assert res.history[-1]["n"] > 20 and all(r["n_hat"] is not None for r in res.history)


def test_merit_monitor_rules():
    values = {0: 10.0, 5: 5.0, 7: 4.0, 9: 6.0, 12: 6.0, 15: 6.0}

    def merit(x):
        return values[int(x)]

    mon = MeritMonitor(merit, torch.tensor(0.0), ftol=1e-3, miniter=0, recover=5, maxiter=100)
    stops = []
    for k in range(1, 16):
        if mon(k, torch.tensor(float(k))):
            stops.append(k)
            break
    # Checks at 5, 7, 9, 12, 15; best at 7; at 12 not yet past k_min + recover = 12,
    # at 15 > 12 with 6 > 4: not recovered. phi(x0) was read by the stall test at k = 5.
    assert [k for k, _ in mon.history] == [5, 0, 7, 9, 12, 15]  # in the order made
    assert stops == [15] and mon.stop == MERIT_NOT_RECOVERED
    x, k = mon.best(15, torch.tensor(15.0))
    assert k == 7 and float(x) == 7.0


def test_merit_monitor_stalls():
    values = {0: 10.0, 5: 5.0, 7: 4.9999}
    mon = MeritMonitor(
        lambda x: values[int(x)], torch.tensor(0.0), ftol=1e-3, miniter=6, recover=50, maxiter=100
    )
    assert not mon(5, torch.tensor(5.0))  # k = 5 <= miniter
    # (5 - 4.9999)/4.9999 = 2e-5 < (7 - 5) * 1e-3: stalled at a new minimum.
    assert mon(7, torch.tensor(7.0)) and mon.stop == "merit_stalled"


def test_merit_monitor_evaluates_x0_only_when_read():
    """With every check up to miniter, phi(x0) is never read, so it is never evaluated."""
    calls = []

    def merit(x):
        calls.append(float(x))
        return 10.0 - float(x)

    mon = MeritMonitor(merit, torch.tensor(0.0), ftol=1e-3, miniter=50, recover=5, maxiter=100)
    for k in range(1, 10):
        assert not mon(k, torch.tensor(float(k)))
    assert calls == [5.0, 7.0, 9.0] and [k for k, _ in mon.history] == [5, 7, 9]
    x, k = mon.best(9, torch.tensor(9.0))
    assert k == 9 and float(x) == 9.0 and calls == [5.0, 7.0, 9.0]  # the last check is reused


def test_cg_ablation_evaluates_the_merit_at_x0_in_the_original_variables():
    """With a preconditioner c != 1 and a warm start x0 != 0 the merit's k = 0 point is x0
    (not x0 / c), and when every merit is +inf the returned direction is x0."""
    from shf.optim.step import _solve_cg

    net, w, X = tiny_problem((6, 4, 2), 12, seed=3)
    A = net.jacobian(w, X)
    c = [torch.full_like(W, 0.5) for W in w]
    x0 = [torch.full_like(W, 0.1) for W in w]
    seen: list[list[torch.Tensor]] = []

    def merit(d):  # type: ignore[no-untyped-def]
        seen.append([t.clone() for t in d])
        return float(tl.norm(d))

    cfg = SHFConfig(miniter=0, first_check=1, ftol=1.0, n1=12)
    _solve_cg(A, -A.residual, 1.0, c, x0, 5, cfg, merit)
    assert any(all(torch.equal(a, b) for a, b in zip(s, x0)) for s in seen)
    d, *_ = _solve_cg(A, -A.residual, 1.0, c, x0, 5, cfg, lambda d: float("inf"))
    assert all(torch.equal(a, b) for a, b in zip(d, x0))
