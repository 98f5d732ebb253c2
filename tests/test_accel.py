"""B22, the geodesic acceleration (shf.optim.accel): the residuals' second derivative against
``torch.func.hessian``, the acceleration against the damped least-squares problem solved densely
(float64), the refusal test, the settings, and the step it changes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import shf
from shf import tensorlist as tl
from shf.curvature.module import ModuleProblem
from shf.errors import ConfigError
from shf.optim.accel import GeodesicAcceleration, NoAcceleration, make_acceleration
from shf.optim.scaling import DiagonalScaling
from shf.optim.solve import DirectSolver, LsmrSolver, Stops, System, Tolerances
from shf.optim.step import SHFConfig
from shf.solvers.merit import MeritRule
from shf.solvers.operator import TimedOperator

TOL = Tolerances(
    atol=1e-15, merit=MeritRule(ftol=1e-7, miniter=0, recover=10, first_check=1, check_growth=1.25)
)


class Curved(nn.Module):
    """``y = a exp(-b x) + c x^2``-like: nonlinear in two of its three weights (float64)."""

    def __init__(self) -> None:
        super().__init__()
        self.ab = nn.Parameter(torch.tensor([2.0, 0.7], dtype=torch.float64))
        self.c = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ab[0] * torch.exp(-self.ab[1] * x) + self.c * x**2


def _problem(loss: str = "mse") -> tuple[ModuleProblem, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(9, 1, generator=g, dtype=torch.float64) * 3
    Y = torch.rand(9, 1, generator=g, dtype=torch.float64)
    net = Curved()
    prob = ModuleProblem(net, loss, forward_mode="jvp")
    return prob, [p.detach().clone() for p in net.parameters()], X, Y


def test_the_second_derivative_along_d_is_the_hessian_of_each_output_in_d() -> None:
    """``z''[d, d]_i = d^T (d^2 z_i / dw^2) d`` against ``torch.func.hessian`` of the flattened
    output, in float64; exact arithmetic on both sides, so to 1e-12 relative."""
    prob, w, X, Y = _problem()
    A = prob.jacobian(w, X, Y)
    d = [torch.tensor([0.3, -1.1], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64)]

    def flat_output(v: torch.Tensor) -> torch.Tensor:
        return prob.output(tl.unflatten(v, w), X, Y).reshape(-1)

    H = torch.func.hessian(flat_output)(tl.flatten(w))  # (outputs, weights, weights)
    v = tl.flatten(d)
    want = torch.einsum("ijk,j,k->i", H, v, v)
    # in A's range: B^T z'' / sqrt(n), the same map the products apply to J d
    got = A.second_derivative(d)
    want = A.point.bt(want.reshape(got.shape)) * A.scale
    assert float((got - want).abs().max()) <= 1e-12 * float(want.abs().max())
    assert float(want.abs().max()) > 0.05  # the check can fail: the model is curved along d


def test_a_model_linear_in_its_weights_has_no_acceleration() -> None:
    net = nn.Linear(3, 2).double()
    X = torch.randn(5, 3, dtype=torch.float64)
    prob = ModuleProblem(net, "mse", forward_mode="jvp")
    w = [p.detach().clone() for p in net.parameters()]
    A = prob.jacobian(w, X, torch.zeros(5, 2, dtype=torch.float64))
    assert float(A.second_derivative([torch.ones_like(t) for t in w]).abs().max()) == 0.0


@pytest.mark.parametrize("solver", ["direct", "lsmr"])
def test_the_acceleration_solves_the_damped_problem_for_the_second_derivative(solver: str) -> None:
    """``a = argmin ||A a + r_dd||^2 + lambda^2 ||a / c||^2`` (B10's rows ``sqrt(wc) I`` with a zero
    right-hand side): against the dense stacked least-squares problem solved by ``lstsq`` in
    float64, to 1e-9 (LSMR to atol 1e-15 on a 3-column problem)."""
    prob, w, X, Y = _problem()
    A = prob.jacobian(w, X, Y)
    lam, wc = 0.3, 0.05
    c = [torch.tensor([0.5, 2.0], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)]
    system = System(A, TimedOperator(A), -A.residual, lam, DiagonalScaling(c), w, weight_cost=wc)
    inner = DirectSolver(TOL) if solver == "direct" else LsmrSolver(TOL)
    d = inner.solve(system, tl.zeros_like(w), Stops(maxiter=100)).d
    got = GeodesicAcceleration(ratio_max=10.0)(inner, system, d, 100)
    assert got.a is not None and not got.refused
    # the dense problem in a: rows [J; sqrt(wc) I; lambda diag(1/c)], right-hand side [-r_dd; 0; 0]
    eye = torch.eye(3, dtype=torch.float64)
    J = torch.stack([tl.flatten(A.matvec(tl.unflatten(e, w))).reshape(-1) for e in eye], 1)
    r_dd = A.second_derivative(d).reshape(-1)
    M = torch.cat([J, math.sqrt(wc) * eye, lam * torch.diag(1.0 / tl.flatten(c))])
    rhs = torch.cat([-r_dd, torch.zeros(6, dtype=torch.float64)])
    want = torch.linalg.lstsq(M, rhs.unsqueeze(1)).solution.squeeze(1)
    assert float((tl.flatten(got.a) - want).norm()) <= 1e-9 * float(want.norm())
    # the ratio, in the scaled variables a / c and d / c
    ratio = 2 * float(tl.norm(tl.div(got.a, c))) / float(tl.norm(tl.div(d, c)))
    assert got.ratio == pytest.approx(ratio, rel=1e-12)
    refused = GeodesicAcceleration(ratio_max=0.5 * ratio)(inner, system, d, 100)
    assert refused.refused and refused.ratio == pytest.approx(ratio, rel=1e-12)


def test_the_settings_and_the_parts() -> None:
    assert isinstance(make_acceleration("none", 0.75), NoAcceleration)
    assert isinstance(make_acceleration("geodesic", 0.75), GeodesicAcceleration)
    assert NoAcceleration()(LsmrSolver(TOL), None, [], 1).a is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="acceleration"):
        SHFConfig(acceleration="newton")
    with pytest.raises(ConfigError, match="acceleration_max"):
        SHFConfig(acceleration="geodesic", acceleration_max=0.0)
    assert "acceleration_max" in SHFConfig().ignored()
    assert "acceleration_max" not in SHFConfig(acceleration="geodesic").ignored()
    with pytest.raises(ConfigError, match="acceleration_max"):  # a setting the step would ignore
        shf.SHF(nn.Linear(2, 1), "mse", line_search=shf.LineSearch(acceleration_max=0.5))


def test_an_operator_without_second_derivatives_is_refused_in_one_line() -> None:
    class Flat:
        residual = torch.zeros(3)

    system = System(Flat(), None, torch.zeros(3), 1.0, None, [torch.zeros(2)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"second derivative.*Flat.*acceleration to 'none'"):
        GeodesicAcceleration(0.75)(LsmrSolver(TOL), system, [torch.ones(2)], 10)


def test_the_step_is_d_plus_half_a_and_a_refused_step_raises_the_damping() -> None:
    """One HF iteration with ``acceleration = "geodesic"`` takes ``w + d + a/2`` where the plain
    iteration takes ``w + d`` (same state, same direction ``d``); with ``acceleration_max`` below
    the ratio it takes no step and raises ``lambda`` as a rejected step does."""
    prob, w, X, Y = _problem()

    def one(**changes: object) -> tuple[list[torch.Tensor], shf.optim.step.StepInfo]:
        cfg = SHFConfig(preconditioner="none", solver="direct", lambda_min=0.0, curvature_size=None,
                        weight_cost=0.0, roundoff=0.0, **changes)  # type: ignore[arg-type]  # fmt: skip
        state = shf.optim.step.SHFState.initial(cfg, 3)
        return shf.optim.step.shf_step(prob, w, X, state, cfg, Y=Y)

    w_plain, plain = one()
    w_geo, geo = one(acceleration="geodesic", acceleration_max=100.0)
    assert math.isnan(plain.acceleration) and 0.0 < geo.acceleration < 100.0
    d = tl.sub(w_plain, w)
    a = tl.scale(2.0, tl.sub(tl.sub(w_geo, w), d))
    assert plain.step == geo.step == 1.0
    assert 2 * tl.norm(a) / tl.norm(d) == pytest.approx(geo.acceleration, rel=1e-9)
    _, refused = one(acceleration="geodesic", acceleration_max=0.5 * geo.acceleration)
    assert not refused.accepted and refused.lam_next > refused.lam


def test_geodesic_acceleration_solves_bennett5_from_its_near_start() -> None:
    """NIST's Bennett5 from start 2 (``b1 (b2 + x)^(-1/b3)``): without the acceleration (the
    full-batch regime before B23, Nielsen's rule: ``shf-nielsen``) the iterates crawl along a
    curved valley (``rho`` about 0.45 at a constant ``lambda``, steps of 2.7 where ``b1`` must move
    by 1000) and reach 2.1 certified digits in 500 HF iterations; with it (``shf-geodesic``, the
    same regime), all 11 (the check fails without B22). B23's trust region solves it too."""
    from test_benchmark_least_squares import _module

    bench = _module("least_squares")
    L = _module("lsq_problems")
    problem = L.load(None, ["Bennett5"])[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        plain = bench.run(problem, 2, "shf-nielsen", 500, 20)
        geo = bench.run(problem, 2, "shf-geodesic", 500, 20)
    finally:
        torch.set_num_threads(threads)
    assert geo.digits >= 10.0 and plain.digits < 4.0, (geo.digits, plain.digits)
