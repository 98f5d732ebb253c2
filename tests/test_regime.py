"""The full-batch regime (B17, ``shf.optim.regime``): when it is chosen, what it changes and what
it keeps, and that SHF in it solves a small nonlinear least-squares fit as well as scipy's
Levenberg-Marquardt (MINPACK) does, in float64: the parameters agree to a relative 1e-8 (the
second parameter is 1e-4 and badly scaled, which leaves MINPACK's own gradient at 4e-4 and its
parameters 3e-9 from SHF's), and SHF's sum of squares is not above MINPACK's by more than its
round-off (1e-10 relative, B21's allowance)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

import shf
from shf.errors import ConfigError
from shf.optim.regime import DIRECT_WEIGHTS, FULL_BATCH, choose, full_batch, given_keys
from shf.optim.settings import PRECONDITIONER, Damping, Solver
from shf.optim.step import SHFConfig


def test_auto_chooses_full_batch_when_the_data_fit_in_the_first_batch_or_the_loss_is_a_residual() -> None:
    def pick(regime: str, residual: bool, n: int | None, given: frozenset[str] = frozenset(),
             one_config: bool = False) -> str:  # fmt: skip
        return choose(regime, residual=residual, train_size=n, n1=250, given=set(given),
                      one_config=one_config)  # fmt: skip

    assert pick("auto", False, 200) == "full-batch"
    assert pick("auto", False, 2000) == pick("auto", False, None) == "stochastic"
    assert pick("auto", True, None) == pick("auto", True, 2000) == "full-batch"
    # the user asked for batches smaller than the data; a flat config is never changed by auto
    assert pick("auto", True, 2000, frozenset({"n1"})) == "stochastic"
    assert pick("auto", True, 20, one_config=True) == "stochastic"
    assert pick("full-batch", False, None, one_config=True) == "full-batch"
    with pytest.raises(ConfigError, match="regime must be one of"):
        pick("lm", False, None)


def test_the_full_batch_settings_replace_only_what_the_user_did_not_give() -> None:
    cfg = SHFConfig()
    out = full_batch(cfg, set(), 37)
    for key, value in FULL_BATCH.items():
        assert getattr(out, key) == value, key
    assert (out.n1, out.n_max) == (37, 37)
    # given: kept, and so is a choice that would make a given setting ignored
    given = given_keys([(Damping, Damping(weight_cost=1e-3)), (Solver, Solver(forcing_eta0=0.2))], "martens",
                       PRECONDITIONER)  # fmt: skip
    assert given == {"weight_cost", "forcing_eta0", "preconditioner"}
    cfg = dataclasses.replace(cfg, weight_cost=1e-3, forcing_eta0=0.2, preconditioner="martens")
    out = full_batch(cfg, given, None)
    assert (out.weight_cost, out.forcing, out.preconditioner) == (1e-3, "gradient", "martens")
    assert (out.lambda_min, out.atol, out.n1) == (0.0, 1e-15, cfg.n1)  # the rest changes; N unknown
    # a given curvature subsample needs a damping floor: the floor stays
    out = full_batch(dataclasses.replace(SHFConfig(), curvature_size=50), {"curvature_size"}, None)
    assert out.curvature_size == 50 and out.lambda_min == SHFConfig().lambda_min


class Rise(nn.Module):
    """``y = a (1 - exp(-b x))`` (NIST's Misra1a model), from ``(a, b) = (500, 1e-4)``."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor([500.0, 1e-4], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.p[0] * (1.0 - torch.exp(-self.p[1] * x))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(10.0, 800.0, 14, dtype=torch.float64).unsqueeze(1)
    y = 240.0 * (1.0 - torch.exp(-5.5e-4 * x)) + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x, y


def test_shf_on_a_residual_reaches_scipy_s_levenberg_marquardt_solution() -> None:
    x, y = _data()
    model = Rise()
    opt = shf.SHF(model, lambda out, t: out - t)
    assert opt.regime == "full-batch" and opt.config.weight_cost == 0.0
    for _ in range(60):
        info = opt.step(x, y)
    assert info.regime == "full-batch" and info.per_example in (None, "dense")
    xs, ys = x[:, 0].numpy(), y[:, 0].numpy()
    ref = scipy.optimize.least_squares(
        lambda p: p[0] * (1 - np.exp(-p[1] * xs)) - ys, [500.0, 1e-4], method="lm", xtol=1e-15, ftol=1e-15,
        gtol=1e-15,
    )  # fmt: skip
    got = model.p.detach().numpy()
    np.testing.assert_allclose(got, ref.x, rtol=1e-8)
    rss = float(((model(x).detach() - y) ** 2).sum())
    # scipy's cost is half the sum of squares. Not above it by more than B21's allowance (1e-10
    # relative): the residuals, about 0.1, are differences of data about 240, so each carries
    # about 5e-14 of absolute round-off and the sum of squares about 1e-12 relative
    assert rss <= 2 * ref.cost * (1 + 1e-10)
    # the check can fail: the stochastic defaults (a weight cost, a damping floor, a truncated
    # solve) stop far from it in the same iterations
    other = Rise()
    stochastic = shf.SHF(other, lambda out, t: out - t, regime="stochastic")
    for _ in range(60):
        stochastic.step(x, y)
    assert np.abs(other.p.detach().numpy() / ref.x - 1).max() > 1e-3


def test_a_flat_config_keeps_the_paper_s_settings_and_fit_chooses_by_the_training_set() -> None:
    paper = shf.SHF(Rise(), lambda out, t: out - t, config=shf.PAPER)
    assert paper.regime == "stochastic" and paper.config == shf.PAPER
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X, Y = torch.randn(90, 3, dtype=torch.float64), torch.randn(90, 2, dtype=torch.float64)
    res = shf.fit(net, (X[:60], Y[:60]), (X[60:], Y[60:]), max_iters=3)
    assert res.optimizer.regime == "full-batch" and res.history[-1]["regime"] == "full-batch"
    assert res.history[-1]["n"] == 60  # every example in every step
    big = shf.fit(net, (X[:60], Y[:60]), (X[60:], Y[60:]), max_iters=1, batch=shf.Batch(n1=20, n_max=40))
    assert big.optimizer.regime == "stochastic"


def test_a_damping_below_the_stochastic_floor_is_the_user_s_to_give_in_the_full_batch_regime() -> None:
    """The regime's floor (0) applies before the groups are checked: ``lambda1`` below the
    stochastic defaults' floor (0.05) is accepted for a residual fit, and refused where the
    floor stays (the stochastic regime)."""
    opt = shf.SHF(Rise(), lambda out, t: out - t, damping=shf.Damping(lambda1=1e-3))
    assert (opt.config.lambda1, opt.config.lambda_min) == (1e-3, 0.0)
    with pytest.raises(ConfigError, match="lambda1 must be >= lambda_min"):
        shf.SHF(Rise(), lambda out, t: out - t, damping=shf.Damping(lambda1=1e-3), regime="stochastic")


class ScaledRise(nn.Module):
    """:class:`Rise` with ``a`` stored in units of ``scale``: ``y = (scale q) (1 - exp(-b x))``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.p = nn.Parameter(torch.tensor([500.0 / scale, 1e-4], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * self.p[0]) * (1.0 - torch.exp(-self.p[1] * x))


@pytest.mark.parametrize("rule", ["paper", "trust-region"])
def test_minpack_s_column_scaling_makes_the_iterates_independent_of_the_parameters_units(rule: str) -> None:
    # B18: with D_j = max ||A_:j||, the damping is lambda^2 ||D d||^2 (and B23's radius is on
    # ||D d||), so storing b in other units changes no iterate (to round-off); without a scaling
    # the damping (the radius) mixes the units and the iterates differ. Two heavily damped steps
    # (the paper's rule from lambda1 = 50; the trust region's first radius is ||D w||): where the
    # damping no longer matters, Gauss-Newton's steps are the same in any units with or without a
    # scaling.
    x, y = _data()

    def fit(scale: float, preconditioner: str) -> np.ndarray:
        model = ScaledRise(scale)
        damping = shf.Damping(rule="paper", lambda1=50.0, drop=0.5) if rule == "paper" else None
        opt = shf.SHF(model, lambda out, t: out - t, preconditioner=preconditioner, damping=damping)
        assert opt.config.damping_rule == rule
        for _ in range(2):
            opt.step(x, y)
        p = model.p.detach().numpy().copy()
        return np.array([p[0] * scale, p[1]])

    base, scaled = fit(1.0, "column-norms"), fit(1e4, "column-norms")  # a's column: 0.3 or 3e3
    np.testing.assert_allclose(scaled, base, rtol=1e-9)
    # without it they differ (paper: by 1e-1; the trust region, whose unscaled radius in the two
    # units makes only one of the two first steps Gauss-Newton's: by 4e-6, 4000 times the tolerance)
    assert np.abs(fit(1e4, "none") / fit(1.0, "none") - 1).max() > (1e-2 if rule == "paper" else 1e-6)


def test_the_full_batch_regime_solves_exactly_for_a_handful_of_weights() -> None:
    """B20: at most DIRECT_WEIGHTS weights (16), one process, and no given setting that the exact
    solve would ignore: ``solver = "direct"``; otherwise LSMR to round-off."""
    assert full_batch(SHFConfig(), set(), 14, DIRECT_WEIGHTS).solver == "direct"
    assert full_batch(SHFConfig(), set(), 14, DIRECT_WEIGHTS + 1).solver == "lsmr"
    assert full_batch(SHFConfig(), set(), 14, None).solver == "lsmr"  # not known (data-parallel)
    cfg = dataclasses.replace(SHFConfig(), atol=1e-12)
    assert full_batch(cfg, {"atol"}, 14, 2).solver == "lsmr"  # a given atol is LSMR's: kept
    x, y = _data()
    opt = shf.SHF(Rise(), lambda out, t: out - t)
    assert opt.config.solver == "direct"
    info = opt.step(x, y)
    assert (info.solver, info.solver_stop, info.solver_iterations) == ("direct", "direct", 1)
    kept = shf.SHF(Rise(), lambda out, t: out - t, solver=shf.Solver(atol=1e-14))
    assert kept.config.solver == "lsmr" and kept.step(x, y).solver_stop != "direct"


def test_the_direct_solver_refuses_what_it_cannot_do() -> None:
    net = nn.Sequential(nn.Linear(80, 60), nn.Tanh(), nn.Linear(60, 2)).double()  # 4,982 weights
    with pytest.raises(ConfigError, match="at most 4096 weights, this model trains 4982"):
        shf.SHF(net, solver=shf.Solver(kind="direct"))
    with pytest.raises(ConfigError, match=r"forcing_eta0=0.2\) is ignored by the exact solve"):
        shf.SHF(Rise(), lambda out, t: out - t, solver=shf.Solver(kind="direct", forcing_eta0=0.2))
    with pytest.raises(ConfigError, match=r"kfac preconditioner \(B19\) is LSMR's; with solver 'direct'"):
        SHFConfig(solver="direct", preconditioner="kfac")


def test_a_trust_region_reaches_minpack_s_solution_with_the_exact_solve_it_needs() -> None:
    """B23 given for a residual fit: the regime adds the exact solve it needs, the step records its
    radius, and the fit ends at MINPACK's solution as the default damping does (rtol 1e-8, as
    above). In the stochastic regime (LSMR) it is a one-line refusal."""
    x, y = _data()
    model = Rise()
    opt = shf.SHF(model, lambda out, t: out - t, damping=shf.Damping(rule="trust-region"))
    assert (opt.config.solver, opt.config.damping_rule) == ("direct", "trust-region")
    radii = [opt.step(x, y).radius for _ in range(60)]
    assert all(r > 0.0 for r in radii)
    xs, ys = x[:, 0].numpy(), y[:, 0].numpy()
    ref = scipy.optimize.least_squares(
        lambda p: p[0] * (1 - np.exp(-p[1] * xs)) - ys, [500.0, 1e-4], method="lm", xtol=1e-15, ftol=1e-15,
        gtol=1e-15,
    )  # fmt: skip
    np.testing.assert_allclose(model.p.detach().numpy(), ref.x, rtol=1e-8)
    with pytest.raises(ConfigError, match=r"damping_rule 'trust-region' .* needs solver = 'direct'"):
        shf.SHF(Rise(), lambda out, t: out - t, damping=shf.Damping(rule="trust-region"), regime="stochastic")
    with pytest.raises(ConfigError, match=r"gamma1=0.5\) is ignored by B23's trust region"):
        shf.SHF(Rise(), lambda out, t: out - t, damping=shf.Damping(rule="trust-region"),
                warm_start=shf.WarmStart(gamma1=0.5))  # fmt: skip


def test_the_trust_region_and_its_scaling_come_only_with_the_exact_solve() -> None:
    """B23 with B18's column norms where the regime solves exactly; where a given setting keeps
    LSMR, neither (Nielsen's rule, no preconditioner); a damping rule given by name is kept, and
    so is a preconditioner."""
    def parts(cfg: SHFConfig) -> tuple[str, str, str]:
        return cfg.solver, cfg.damping_rule, cfg.preconditioner

    assert parts(full_batch(SHFConfig(), set(), 14, 2)) == ("direct", "trust-region", "column-norms")
    lsmr = full_batch(dataclasses.replace(SHFConfig(), atol=1e-12), {"atol"}, 14, 2)
    assert (lsmr.solver, lsmr.damping_rule, lsmr.preconditioner) == ("lsmr", "nielsen", "none")
    big = full_batch(SHFConfig(), set(), 14, DIRECT_WEIGHTS + 1)
    assert (big.solver, big.damping_rule, big.preconditioner) == ("lsmr", "nielsen", "none")
    given = full_batch(dataclasses.replace(SHFConfig(), damping_rule="nielsen"), {"damping_rule"}, 14, 2)
    assert (given.solver, given.damping_rule, given.preconditioner) == ("direct", "nielsen", "none")
    martens = dataclasses.replace(SHFConfig(), preconditioner="martens")
    assert parts(full_batch(martens, {"preconditioner"}, 14, 2)) == ("direct", "trust-region", "martens")
    warm = full_batch(dataclasses.replace(SHFConfig(), gamma1=0.5), {"gamma1"}, 14, 2)
    assert (warm.solver, warm.damping_rule, warm.preconditioner) == ("direct", "nielsen", "none")
    # through shf.SHF: the group's "auto" is not given, a rule named is
    assert shf.SHF(Rise(), lambda out, t: out - t).config.damping_rule == "trust-region"
    named = shf.SHF(Rise(), lambda out, t: out - t, damping=shf.Damping(rule="nielsen"))
    assert named.regime == "full-batch" and parts(named.config) == ("direct", "nielsen", "none")
    # the regime before B23 exactly (so its checkpoints load when the damping is named this way)
    auto = shf.SHF(Rise(), lambda out, t: out - t).config
    nielsen = shf.Damping(rule="nielsen")
    before = shf.SHF(Rise(), lambda out, t: out - t, damping=nielsen, preconditioner="none")
    assert before.config == dataclasses.replace(auto, damping_rule="nielsen", preconditioner="none")
    stochastic = shf.SHF(Rise(), lambda out, t: out - t, regime="stochastic")
    assert stochastic.config.damping_rule == "nielsen" == SHFConfig().damping_rule
