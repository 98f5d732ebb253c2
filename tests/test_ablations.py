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
from shf.optim.scaling import DiagonalScaling
from shf.optim.step import SHFConfig, SHFState, shf_step
from shf.solvers.merit import MERIT_NOT_RECOVERED, MeritMonitor


def test_cg_ablation_solves_the_same_problem_as_lsmr():
    """Without the merit and run to tight tolerances, CG and LSMR return the same step."""
    net, w, X = tiny_problem((6, 4, 2), 12, seed=2)
    base = dict(lambda1=0.5, use_merit=False, maxiter1=400, atol=1e-13, n1=12)
    steps = {}
    for solver in ("lsmr", "cg"):
        cfg = SHFConfig.paper(solver=solver, **base)
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


@pytest.mark.parametrize("precond", ["chapelle-erhan", "martens", "column-norms", "none"])
def test_switches_are_visible_in_metrics(precond):
    net = Autoencoder((784, 24, 6))
    cfg = SHFConfig.paper(n1=40, n_max=200, maxiter1=20, miniter=5, recover=10, preconditioner=precond,
                    solver="cg", batch_schedule="fixed")  # fmt: skip
    res = train(net, _data(), cfg, LoopConfig(max_iters=8), seed=0)
    h = res.history
    assert all(r["n"] == 40 and r["maxiter"] == 20 and r["n_hat"] is None for r in h)
    assert all(r["batch_schedule"] == "fixed" and r["solver"] == "cg" and "solver_iterations" in r for r in h)
    assert res.summary["val_error"] < res.summary["initial_val_error"]


def test_dynamic_schedule_grows_batch():
    net = Autoencoder((784, 24, 6))
    cfg = SHFConfig.paper(n1=20, n_max=240, maxiter1=20, miniter=5, recover=10, theta=0.05)
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
    from shf.optim.solve import CgSolver, Stops, System
    from shf.solvers.operator import TimedOperator

    net, w, X = tiny_problem((6, 4, 2), 12, seed=3)
    A = net.jacobian(w, X)
    c = [torch.full_like(W, 0.5) for W in w]
    x0 = [torch.full_like(W, 0.1) for W in w]
    seen: list[list[torch.Tensor]] = []

    def merit(d):  # type: ignore[no-untyped-def]
        seen.append([t.clone() for t in d])
        return float(tl.norm(d))

    solver = CgSolver(SHFConfig.paper(miniter=0, first_check=1, ftol=1.0, n1=12).tolerances())
    system = System(A, TimedOperator(A), -A.residual, 1.0, DiagonalScaling(c), w)
    solver.solve(system, x0, Stops(5, merit))
    assert any(all(torch.equal(a, b) for a, b in zip(s, x0)) for s in seen)
    d = solver.solve(system, x0, Stops(5, lambda d: float("inf"))).d
    assert all(torch.equal(a, b) for a, b in zip(d, x0))


def _normal_residual(net, w, X, lam, c, x0, d):  # type: ignore[no-untyped-def]
    """``||Abar^T rbar||`` of LSMR's scaled problem at the direction ``d``, recomputed:
    ``c ∘ A^T (b - A d) - lam^2 (y - y0)`` with ``y = d / c``, ``y0 = x0 / c``."""
    A = net.jacobian(w, X)
    r = -A.residual - A.matvec(d)
    y, y0 = tl.div(d, c), tl.div(x0, c)
    return tl.norm(tl.axpy(-(lam**2), tl.axpy(-1.0, y0, y), tl.mul(c, A.rmatvec(r))))


def test_forcing_stops_at_the_first_iteration_that_meets_the_forcing_term():
    """B3: the solve stops at the first k with ||Abar^T rbar_k|| <= eta ||c ∘ g||, recomputed here
    in float64 from the products (not LSMR's estimate); one iteration earlier it did not hold."""
    net, w, X = tiny_problem((6, 4, 2), 12, seed=4)
    base = dict(lambda1=0.3, use_merit=False, maxiter1=200, atol=0.0, n1=12, preconditioner="martens")
    cfg = SHFConfig.paper(forcing="gradient", forcing_eta0=0.05, **base)
    state = SHFState.initial(cfg)
    x0 = [0.05 * W for W in w]
    state.d = [t.clone() for t in x0]
    _, info = shf_step(net, w, X, state, cfg, generator=torch.Generator().manual_seed(0))
    assert info.solver_stop == "forcing" and 1 < info.solver_iterations < 200
    k = info.solver_iterations
    A = net.jacobian(w, X)
    from shf.optim import precond as pc

    c = pc.compute("martens", A, cfg.lambda1, torch.Generator().manual_seed(0))
    bound = 0.05 * tl.norm(tl.mul(c, A.gradient()))  # eta_1 = eta_0 at the first iteration
    d_k = tl.scale(1.0 / cfg.gamma1, state.d)
    assert _normal_residual(net, w, X, cfg.lambda1, c, x0, d_k) <= bound * (1 + 1e-8)
    # The same solve capped one iteration earlier has not reached the bound.
    cfg_prev = SHFConfig.paper(**{**base, "maxiter1": k - 1})
    st = SHFState.initial(cfg_prev)
    st.d = [t.clone() for t in x0]
    _, info_prev = shf_step(net, w, X, st, cfg_prev, generator=torch.Generator().manual_seed(0))
    assert info_prev.solver_stop == "maxiter"
    d_prev = tl.scale(1.0 / cfg.gamma1, st.d)
    assert _normal_residual(net, w, X, cfg.lambda1, c, x0, d_prev) > bound


def test_forcing_term_tightens_with_the_gradient():
    """eta_i = eta_0 min(1, (||g_i||/||g_1||)^p): after the gradient norm shrinks, a solve with the
    same operator needs more iterations than the first one did."""
    net, w, X = tiny_problem((6, 4, 2), 12, seed=4)
    cfg = SHFConfig.paper(lambda1=0.3, use_merit=False, maxiter1=200, atol=0.0, n1=12, forcing="gradient",
                    forcing_eta0=0.5, forcing_power=1.0, preconditioner="none")  # fmt: skip
    state = SHFState.initial(cfg)
    _, first = shf_step(net, w, X, state, cfg)
    g1 = state.forcing.state_dict()["g1_norm"]
    assert g1 is not None
    state.d, state.lam = None, cfg.lambda1
    state.forcing.load_state_dict({"g1_norm": 10.0 * g1})  # as if the first gradient had been 10x: eta 0.05
    _, later = shf_step(net, w, X, state, cfg)
    assert first.solver_stop == later.solver_stop == "forcing"
    assert later.solver_iterations > first.solver_iterations


def test_forcing_stops_cg_at_the_same_residual():
    """B3 with CG: CG's residual is the preconditioned damped normal equations' residual, so the
    forcing term stops it where that residual, recomputed here, first falls below the bound."""
    net, w, X = tiny_problem((6, 4, 2), 12, seed=4)
    base = dict(lambda1=0.3, use_merit=False, maxiter1=200, atol=0.0, n1=12, preconditioner="none",
                solver="cg")
    cfg = SHFConfig.paper(forcing="gradient", forcing_eta0=0.05, **base)
    state = SHFState.initial(cfg)
    _, info = shf_step(net, w, X, state, cfg)
    assert info.solver_stop == "forcing" and 1 < info.solver_iterations < 200
    A = net.jacobian(w, X)
    ones = [torch.ones_like(W) for W in w]
    bound = 0.05 * tl.norm(A.gradient())
    d = tl.scale(1.0 / cfg.gamma1, state.d)
    assert _normal_residual(net, w, X, cfg.lambda1, ones, tl.zeros_like(w), d) <= bound * (1 + 1e-8)


def test_merit_subsample_is_the_merit_on_the_first_rows():
    """B5: merit_size = m takes the same step as the merit on X_val[:m]; the step's validation
    value is then not the merit's (it is not the whole validation set)."""
    net, w, X = tiny_problem((6, 4, 2), 16, seed=5)
    gv = torch.Generator().manual_seed(1)
    # The first 8 validation rows unlike the rest, so that the subsample's merit decides otherwise.
    Xv = torch.cat([0.05 * torch.rand(8, 6, generator=gv, dtype=torch.float64),
                    torch.rand(22, 6, generator=gv, dtype=torch.float64)])  # fmt: skip
    base = dict(lambda1=0.3, maxiter1=30, miniter=0, ftol=0.0, recover=3, n1=16, atol=0.0, first_check=1,
                check_growth=1.01)  # every iteration checked: the best-merit iterate decides
    out = {}
    for name, cfg, val in (
        ("sub", SHFConfig.paper(merit_size=8, **base), Xv),
        ("ref", SHFConfig.paper(**base), Xv[:8]),
        ("all", SHFConfig.paper(**base), Xv),
    ):
        state = SHFState.initial(cfg)
        w_new, info = shf_step(net, w, X, state, cfg, X_val=val, generator=torch.Generator().manual_seed(0))
        out[name] = (w_new, info)
    (w_sub, i_sub), (w_ref, i_ref), (w_all, i_all) = out["sub"], out["ref"], out["all"]
    assert i_sub.solver_iterations == i_ref.solver_iterations and i_sub.solver_stop == i_ref.solver_stop
    assert all(torch.equal(a, b) for a, b in zip(w_sub, w_ref))
    assert i_sub.val_loss_new is None and i_ref.val_loss_new is not None
    # ... and the subsample changed the decision here (else this test could not fail).
    assert i_all.solver_iterations != i_sub.solver_iterations or not all(
        torch.equal(a, b) for a, b in zip(w_all, w_sub)
    )


def test_merit_maxiter_rule_follows_the_best_merit_iteration():
    """B4: after each step the cap is max(ceil(1.5 k*), first_check), k* the returned iterate's
    solver iteration, bounded by maxiter_max; the batch growth does not scale it."""
    import math

    import shf

    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 8, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 8))
    opt = shf.SHF(net.double(), "mse", train_size=200,
                  solver=shf.Solver(maxiter1=12, use_merit=True, miniter=0, recover=4, ftol=0.0,
                                    first_check=2, check_growth=1.01, maxiter_rule="merit", maxiter_max=17,
                                    atol=0.0),
                  batch=shf.Batch(n1=40, n_max=200, theta=0.01))  # fmt: skip
    caps = []
    for _ in range(8):
        idx = torch.randperm(200, generator=opt.generator)[: opt.batch_size]
        info = opt.step(X[idx], val=X[200:])
        assert info.solver_best is not None and 1 <= info.solver_best <= info.solver_iterations
        assert info.maxiter_next == min(max(math.ceil(1.5 * info.solver_best), 2), 17)
        caps.append(info.maxiter_next)
    assert len(set(caps)) > 1  # the cap moved


def test_maxiter_max_bounds_the_paper_rule():
    import shf

    g = torch.Generator().manual_seed(0)
    X = torch.rand(300, 8, generator=g, dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 8)).double()
    opt = shf.SHF(net, "mse", train_size=200, solver=shf.Solver(maxiter1=10, maxiter_max=14),
                  batch=shf.Batch(n1=20, n_max=200, theta=0.01))  # fmt: skip
    seen = []
    for _ in range(9):
        idx = torch.randperm(200, generator=opt.generator)[: opt.batch_size]
        info = opt.step(X[idx], val=X[200:])
        seen.append((info.n_next, info.maxiter_next))
    assert seen[-1][0] > 40  # the batch grew to more than 14/10 of n1 ...
    assert all(m <= 14 for _, m in seen) and seen[-1][1] == 14  # ... the cap stopped at 14


@pytest.mark.parametrize("solver", ["lsmr", "cg"])
def test_subsampled_curvature_solves_the_big_batch_gradient_system(solver):
    """B7: with curvature_size = m the step solves (C G_m C + lam^2 I) y = -C g + lam^2 y0, G_m the
    Gauss-Newton matrix of the first m rows and g the whole batch's gradient: checked against a
    dense float64 solve of that system (autograd Jacobian), with a warm start and a preconditioner."""
    from reference import dense_jacobian
    from shf.optim import precond as pc

    net, w, X = tiny_problem((5, 3, 2), 14, seed=6)
    m, lam = 6, 0.7
    cfg = SHFConfig.paper(lambda1=lam, lambda_min=0.1, use_merit=False, maxiter1=300, atol=0.0, n1=14,
                    curvature_size=m, preconditioner="martens", solver=solver)  # fmt: skip
    state = SHFState.initial(cfg)
    x0 = [0.05 * W for W in w]
    state.d = [t.clone() for t in x0]
    _, info = shf_step(net, w, X, state, cfg, generator=torch.Generator().manual_seed(0))
    d = tl.flatten(state.d) / cfg.gamma1
    J = dense_jacobian(net, w, X[:m])  # A_m, rows scaled by 1/sqrt(m)
    g = tl.flatten(net.jacobian(w, X).gradient())
    c = tl.flatten(pc.compute("martens", net.jacobian(w, X[:m]), lam, torch.Generator().manual_seed(0)))
    JC = J * c
    y0 = tl.flatten(x0) / c
    y = torch.linalg.solve(JC.T @ JC + lam**2 * torch.eye(len(c), dtype=torch.float64), -c * g + lam**2 * y0)
    # 300 Krylov iterations on a 29-unknown SPD system: converged to rounding (1e-8 relative).
    torch.testing.assert_close(d, c * y, rtol=1e-8, atol=1e-10)
    # ... and it is not the full batch's system (else this test could not tell them apart).
    J_all = dense_jacobian(net, w, X) * c
    y_all = torch.linalg.solve(J_all.T @ J_all + lam**2 * torch.eye(len(c), dtype=torch.float64),
                               -c * g + lam**2 * y0)  # fmt: skip
    assert float((c * y_all - d).norm()) > 1e-3 * float(d.norm())
    assert info.n == 14


def test_subsampled_curvature_needs_a_damping_floor():
    from shf.errors import ConfigError

    with pytest.raises(ConfigError, match="curvature_size needs lambda_min"):
        SHFConfig.paper(curvature_size=10)


@pytest.mark.parametrize("solver", ["lsmr", "cg"])
@pytest.mark.parametrize("m", [None, 6])
def test_weight_cost_solves_the_regularised_system(solver, m):
    """B10: with weight_cost = c the step solves (C (G + c I) C + lam^2 I) y = -C (g + c w) + lam^2 y0
    (G the Gauss-Newton matrix of the curvature rows: all of them, or B7's first m), checked against
    a dense float64 solve; the batch loss, the model change and the accepted loss are those of
    f = L + c/2 ||w||^2."""
    from reference import dense_jacobian
    from shf.optim import precond as pc

    net, w, X = tiny_problem((5, 3, 2), 14, seed=6)
    lam, wc = 0.7, 0.3
    rows = X if m is None else X[:m]
    cfg = SHFConfig.paper(lambda1=lam, lambda_min=0.1, use_merit=False, maxiter1=300, atol=0.0, n1=14,
                    curvature_size=m, preconditioner="martens", solver=solver, weight_cost=wc)  # fmt: skip
    state = SHFState.initial(cfg)
    x0 = [0.05 * W for W in w]
    state.d = [t.clone() for t in x0]
    w_new, info = shf_step(net, w, X, state, cfg, generator=torch.Generator().manual_seed(0))
    d = tl.flatten(state.d) / cfg.gamma1
    J = dense_jacobian(net, w, rows)
    wf = tl.flatten(w)
    g = tl.flatten(net.jacobian(w, X).gradient()) + wc * wf  # grad f = grad L + c w
    c = tl.flatten(pc.compute("martens", net.jacobian(w, rows), lam, torch.Generator().manual_seed(0)))
    JC, eye = J * c, torch.eye(len(c), dtype=torch.float64)
    y0 = tl.flatten(x0) / c
    y = torch.linalg.solve(JC.T @ JC + wc * torch.diag(c * c) + lam**2 * eye, -c * g + lam**2 * y0)
    # 300 Krylov iterations on a 29-unknown SPD system: converged to rounding (1e-8 relative).
    torch.testing.assert_close(d, c * y, rtol=1e-8, atol=1e-10)
    # ... and it is not the system without the weight cost (else this test could not tell).
    g0 = g - wc * wf
    y_plain = torch.linalg.solve(JC.T @ JC + lam**2 * eye, -c * g0 + lam**2 * y0)
    assert float((c * y_plain - d).norm()) > 1e-2 * float(d.norm())
    # f(w) = L(w) + c/2 ||w||^2 on the batch, and q(d) = 1/2 d^T (G + c I) d + g^T d
    assert info.loss == pytest.approx(net.loss(w, X) + 0.5 * wc * float(wf @ wf), rel=1e-12)
    q = 0.5 * (float((J @ d).square().sum()) + wc * float(d @ d)) + float(g @ d)
    assert info.model_change == pytest.approx(q, rel=1e-9)
    wn = tl.flatten(w_new)
    assert info.accepted
    assert info.loss_new == pytest.approx(net.loss(w_new, X) + 0.5 * wc * float(wn @ wn), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_weight_cost_with_subsampled_curvature_takes_the_stacked_problems_lsmr_iterates(k):
    """B7 + B10 solve one diagonal damping block ``D = sqrt(wc c^2 + lambda^2)`` instead of the rows
    ``sqrt(wc) C`` and ``lambda I`` stacked under ``A_m C``: the same normal equations, so in exact
    arithmetic the same LSMR iterate after every iteration, not only at convergence. Checked after
    k = 1, 2, 4 iterations against scipy's LSMR on the dense float64 stack of the three blocks
    (rhs ``[b_m; -sqrt(wc) w; lambda y0 + C (g_m - g) / lambda]``, from ``y0``); 1e-9 relative
    leaves room for the rounding of a few dozen float64 operations, far below the change that
    one iteration makes (asserted)."""
    import numpy as np
    from scipy.sparse.linalg import lsmr as scipy_lsmr

    from reference import dense_jacobian
    from shf.optim import precond as pc

    net, w, X = tiny_problem((5, 3, 2), 14, seed=6)
    m, lam, wc = 6, 0.2, 0.3
    cfg = SHFConfig.paper(lambda1=lam, lambda_min=0.1, use_merit=False, maxiter1=k, atol=0.0, n1=14,
                    curvature_size=m, preconditioner="martens", weight_cost=wc)  # fmt: skip
    state = SHFState.initial(cfg)
    x0 = [0.05 * W for W in w]
    state.d = [t.clone() for t in x0]
    _, info = shf_step(net, w, X, state, cfg, generator=torch.Generator().manual_seed(0))
    assert info.solver_iterations == k
    d = tl.flatten(state.d) / cfg.gamma1
    Jm = net.jacobian(w, X[:m])
    J = dense_jacobian(net, w, X[:m])
    c = tl.flatten(pc.compute("martens", Jm, lam, torch.Generator().manual_seed(0)))
    g_m, g = tl.flatten(Jm.gradient()), tl.flatten(net.jacobian(w, X).gradient())
    wf, y0 = tl.flatten(w), tl.flatten(x0) / c
    eye = torch.eye(len(c), dtype=torch.float64)
    stack = torch.cat([J * c, wc**0.5 * torch.diag(c), lam * eye]).numpy()
    rhs = torch.cat([-Jm.residual.reshape(-1), -(wc**0.5) * wf, lam * y0 + c * (g_m - g) / lam]).numpy()

    def iterate(iters: int) -> torch.Tensor:
        if iters == 0:
            return c * y0
        y = scipy_lsmr(stack, rhs, damp=0.0, atol=0.0, btol=0.0, conlim=0.0, maxiter=iters, x0=y0.numpy())[0]
        return c * torch.from_numpy(np.asarray(y))

    torch.testing.assert_close(d, iterate(k), rtol=1e-9, atol=1e-12)
    assert float((iterate(k - 1) - d).norm()) > 1e-5 * float(d.norm())


def test_weight_cost_must_be_a_finite_non_negative_number():
    from shf.errors import ConfigError

    for bad in (-1e-5, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="weight_cost must be >= 0"):
            SHFConfig.paper(weight_cost=bad)


def test_model_step_extends_a_short_truncated_direction():
    """B8: s* = -g^T d / ||A d||^2 (recomputed from a dense float64 Jacobian) is tried when > 1;
    it is taken (capped at step_max) only with Armijo's decrease and a lower batch loss than s = 1."""
    from reference import dense_jacobian

    net, w, X = tiny_problem((6, 4, 2), 20, seed=3)
    base = dict(lambda1=0.01, use_merit=False, maxiter1=1, atol=0.0, n1=20, preconditioner="none")
    cfg = SHFConfig.paper(step_rule="model", step_max=3.0, **base)
    state = SHFState.initial(cfg)
    _, info = shf_step(net, w, X, state, cfg)
    d = tl.flatten(state.d) / cfg.gamma1
    J = dense_jacobian(net, w, X)
    g = tl.flatten(net.jacobian(w, X).gradient())
    s_star = float(-(g @ d) / ((J @ d) @ (J @ d)))
    assert info.model_step == pytest.approx(s_star, rel=1e-10)
    assert s_star > 1.1  # one LSMR iteration: short along its own direction
    assert info.step == pytest.approx(min(s_star, 3.0), rel=1e-12)
    f = lambda s: net.loss(tl.axpy(s, tl.unflatten(d, w), w), X)  # noqa: E731
    assert info.loss_new == pytest.approx(f(info.step), rel=1e-12) and f(info.step) < f(1.0)
    assert f(info.step) <= info.loss + 1e-4 * info.step * float(g @ d)
    # The paper's rule takes s = 1 on the same direction.
    st = SHFState.initial(SHFConfig.paper(**base))
    _, unit = shf_step(net, w, X, st, SHFConfig.paper(**base))
    assert unit.step == 1.0 and info.loss_new < unit.loss_new


def test_model_step_is_refused_when_the_loss_does_not_agree():
    """B8: when f(w + s* d) is not below f(w + d) the paper's s = 1 stays (seed 8: s* = 1.08 but the
    batch loss rises beyond s = 1)."""
    net, w, X = tiny_problem((6, 4, 2), 20, seed=8)
    cfg = SHFConfig.paper(lambda1=0.01, use_merit=False, maxiter1=1, atol=0.0, n1=20, preconditioner="none",
                    step_rule="model")  # fmt: skip
    state = SHFState.initial(cfg)
    _, info = shf_step(net, w, X, state, cfg)
    d = tl.scale(1.0 / cfg.gamma1, state.d)
    f = lambda s: net.loss(tl.axpy(s, d, w), X)  # noqa: E731
    assert info.model_step > 1.0 and info.step == 1.0
    assert f(min(info.model_step, cfg.step_max)) >= f(1.0)
