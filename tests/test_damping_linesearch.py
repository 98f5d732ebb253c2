"""Levenberg-Marquardt rule, reduction ratio and Armijo backtracking."""

from __future__ import annotations

import math

import pytest
import torch

from shf.errors import ConfigError
from shf.optim.damping import (
    LAMBDA_MAX,
    NU_MAX,
    RADIUS_FACTOR,
    NielsenDamping,
    PaperDamping,
    Trial,
    TrustRegion,
    below_roundoff,
    levenberg_marquardt,
    make_damping,
    nielsen,
    reduction_ratio,
)
from shf.optim.linesearch import ArmijoThenModel, armijo_backtracking, make_step_length
from shf.optim.step import SHFConfig, SHFState


def test_lm_rule():
    assert levenberg_marquardt(2.0, 0.1, 0.5) == 4.0  # rho < 1/4: lambda / drop
    assert levenberg_marquardt(2.0, 0.9, 0.5) == 1.0  # rho > 3/4: drop * lambda
    assert levenberg_marquardt(2.0, 0.5, 0.5) == 2.0  # in between: unchanged
    assert levenberg_marquardt(2.0, 0.25, 0.5) == 2.0  # boundaries are "unchanged"
    assert levenberg_marquardt(2.0, 0.75, 0.5) == 2.0
    assert levenberg_marquardt(2.0, math.nan, 0.5) == 4.0  # NaN rho raises damping
    assert levenberg_marquardt(2.0, -math.inf, 0.5) == 4.0


@pytest.mark.parametrize("drop", [0.0, 1.0, 1.5, -0.2])
def test_lm_rejects_bad_drop(drop):
    with pytest.raises(ConfigError, match=r"drop must be in \(0, 1\)"):
        levenberg_marquardt(1.0, 0.5, drop)


def test_lm_rejects_negative_lambda():
    with pytest.raises(ConfigError, match="lambda must be finite and >= 0"):
        levenberg_marquardt(-1.0, 0.5, 0.9)


def test_reduction_ratio():
    assert reduction_ratio(0.5, 1.0, -1.0) == 0.5
    assert reduction_ratio(math.nan, 1.0, -1.0) == -math.inf
    assert reduction_ratio(0.5, 1.0, 0.0) == -math.inf  # model predicts no decrease


def test_armijo_on_quadratic():
    """f(s) = (s - 0.1)^2 - 0.01, slope f'(0) = -0.2.

    Armijo with alpha = 1/2 holds iff s <= 0.1, so halving from 1 stops at s = 1/16.
    """

    def f(s: float) -> float:
        return (s - 0.1) ** 2 - 0.01

    res = armijo_backtracking(f, f(0.0), -0.2, alpha=0.5)
    assert res.accepted
    # The Armijo condition holds at the accepted step and fails at twice the step.
    assert f(res.step) <= f(0.0) + 0.5 * res.step * -0.2
    assert f(2 * res.step) > f(0.0) + 0.5 * 2 * res.step * -0.2
    assert res.step == 0.0625


def test_armijo_rejects_ascent_and_nan():
    assert not armijo_backtracking(lambda s: 0.0, 1.0, 0.3).accepted
    res = armijo_backtracking(lambda s: math.nan, 1.0, -1.0, max_backtracks=3)
    assert not res.accepted and res.step == 0.0 and res.evaluations == 4


def test_armijo_reuses_f_at_one():
    calls = []

    def f(s: float) -> float:
        calls.append(s)
        return -s

    res = armijo_backtracking(f, 0.0, -1.0, f_at_one=-1.0)
    assert res.accepted and res.step == 1.0 and calls == []


@pytest.mark.parametrize("rho", [1.0, 0.9, 0.6, 0.5, 0.3, 0.01])
def test_nielsen_rule_on_lambda_squared(rho: float) -> None:
    from shf.optim.damping import nielsen

    lam, nu = nielsen(2.0, rho, 8.0)
    factor = max(1 / 3, 1 - (2 * rho - 1) ** 3)
    assert lam**2 == pytest.approx(4.0 * factor, rel=1e-14) and nu == 2.0
    assert 4.0 / 3.0 - 1e-12 <= lam**2 <= 8.0  # within [mu/3, 2 mu]


@pytest.mark.parametrize("rho", [0.0, -1.0, float("-inf"), float("nan")])
def test_nielsen_rule_grows_geometrically_on_failure(rho: float) -> None:
    from shf.optim.damping import nielsen

    lam, nu = nielsen(2.0, rho, 2.0)
    assert (lam**2, nu) == pytest.approx((8.0, 4.0))
    lam, nu = nielsen(lam, rho, nu)
    assert (lam**2, nu) == pytest.approx((32.0, 8.0))


@pytest.mark.parametrize("rule", ["paper", "nielsen"])
def test_lambda_stops_at_its_ceiling_when_every_step_fails(rule: str) -> None:
    """A run whose steps all fail (rho <= 0, as on MNIST-t10k without the merit, where lambda
    reached 1.5e37 and lambda^2 overflowed float32) keeps lambda finite: at most LAMBDA_MAX,
    reached after a finite number of failures, and lambda^2 is finite in float32 there."""
    import torch

    from shf.optim.damping import LAMBDA_MAX, nielsen

    lam, nu = 5.0, 2.0
    for _ in range(3000):
        lam, nu = nielsen(lam, -1.0, nu) if rule == "nielsen" else (levenberg_marquardt(lam, -1.0, 0.99), nu)
        assert math.isfinite(lam) and math.isfinite(nu)
    assert lam == LAMBDA_MAX
    assert torch.isfinite(torch.tensor(lam, dtype=torch.float32) ** 2)
    # below the ceiling the rules are unchanged, and a good step brings lambda down again
    assert levenberg_marquardt(2.0, 0.0, 0.5) == 4.0
    assert nielsen(LAMBDA_MAX, 1.0, nu)[0] == pytest.approx(LAMBDA_MAX / math.sqrt(3), rel=1e-14)


def test_damping_parts_are_the_rules_with_their_floor_state_and_failure_growth() -> None:
    paper = make_damping("paper", 0.9, lambda_min=0.5)
    assert isinstance(paper, PaperDamping) and paper.state_dict() == {}
    assert paper.update(1.0, 0.1) == pytest.approx(1.0 / 0.9)  # rho < 1/4: up
    assert paper.update(1.0, 0.9) == pytest.approx(0.9)  # rho > 3/4: down
    assert paper.update(0.52, 0.9) == 0.5  # B2's floor last
    assert paper.update(2.0, 0.9, failed=True) == pytest.approx(2.0 / 0.9)  # undone: at least up
    nl = make_damping("nielsen", 0.9)
    assert isinstance(nl, NielsenDamping)
    lam, nu = 1.0, 2.0
    for rho in (0.9, -1.0, -1.0, 0.5):  # the function's sequence, its nu kept by the part
        want, nu = nielsen(lam, rho, nu)
        assert nl.update(lam, rho) == want and nl.nu == nu
        lam = want
    nl.nu = 8.0
    assert nl.update(1.0, 0.9, failed=True) >= 1.0 / 0.9 and nl.nu == 16.0  # failed: nu doubles
    nl.nu = NU_MAX
    nl.update(1.0, -1.0)
    assert nl.nu == NU_MAX and nl.update(LAMBDA_MAX, -1.0) == LAMBDA_MAX
    other = make_damping("nielsen", 0.9)
    other.load_state_dict(nl.state_dict())
    assert other.state_dict() == {"nu": NU_MAX}
    with pytest.raises(ConfigError, match="damping_rule must be one of"):
        make_damping("lm", 0.9)


def test_a_state_saved_before_the_damping_part_resumes_nielsens_nu() -> None:
    state = SHFState.initial(SHFConfig.paper(damping_rule="nielsen"))
    old = {**state.state_dict(), "nu": 32.0}
    del old["damping"]  # the format before the part: nu at the top level
    state.load_state_dict(old)
    assert state.damping.state_dict() == {"nu": 32.0}


def test_step_length_parts_armijo_and_bs_model_step() -> None:
    # f(s) = (s - 3)^2 along d, slope -6 and curvature 2 at s = 0: the model's minimiser is s* = 3
    def f(s: float) -> float:
        return (s - 3.0) ** 2

    paper = make_step_length("unit", 1e-4, 30, 4.0)
    ls, s_star = paper.search(f, f(0.0), -6.0, 2.0, f(1.0))
    assert (ls.step, ls.accepted, math.isnan(s_star)) == (1.0, True, True)
    b8 = make_step_length("model", 1e-4, 30, 4.0)
    assert isinstance(b8, ArmijoThenModel)
    ls, s_star = b8.search(f, f(0.0), -6.0, 2.0, f(1.0))
    assert (ls.step, ls.f_new, s_star) == (3.0, 0.0, 3.0)  # s* is taken: Armijo holds, f lower
    ls, _ = make_step_length("model", 1e-4, 30, 2.5).search(f, f(0.0), -6.0, 2.0, f(1.0))
    assert ls.step == 2.5  # at most step_max
    ls, s_star = b8.search(lambda s: (s - 3.0) ** 2 + (10.0 if s > 1 else 0.0), 9.0, -6.0, 2.0, 4.0)
    assert (ls.step, s_star) == (1.0, 3.0)  # no lower loss at s*: s = 1 stays
    ls, s_star = b8.search(f, 9.0, 1.0, 2.0, f(1.0))  # not a descent direction: refused, no s*
    assert not ls.accepted and math.isnan(s_star)
    with pytest.raises(ConfigError, match="step_rule must be one of"):
        make_step_length("wolfe", 1e-4, 30, 4.0)


def test_a_step_is_judged_at_f_s_round_off_only_below_it() -> None:
    """B21: the model predicts a decrease of at most ``roundoff |f|`` and ``f`` rose by at most
    that much; anything else (a measurable prediction, a rise beyond round-off, a model that
    predicts no decrease, a non-finite value, the paper's 0) goes to ``rho`` as usual."""
    f = 4.6e-13
    assert below_roundoff(f * (1 + 5e-11), f, -1e-24, 1e-10)  # both below 1e-10 |f|
    assert below_roundoff(f * (1 - 1e-12), f, -f * 1e-10, 1e-10)  # at the edge
    assert not below_roundoff(f, f, -f * 2e-10, 1e-10)  # the model predicts a measurable decrease
    assert not below_roundoff(f * (1 + 2e-10), f, -1e-24, 1e-10)  # f rose beyond round-off
    assert not below_roundoff(f, f, 0.0, 1e-10) and not below_roundoff(f, f, 1e-30, 1e-10)
    assert not below_roundoff(math.nan, f, -1e-24, 1e-10) and not below_roundoff(f, f, math.nan, 1e-10)
    assert not below_roundoff(f, f, -1e-30, 0.0)  # the paper's: never
    with pytest.raises(ConfigError, match=r"roundoff must be in \[0, 1e-3\)"):
        SHFConfig(roundoff=-1e-12)
    with pytest.raises(ConfigError, match="roundoff must be"):
        SHFConfig(roundoff=math.inf)


def _trust_region(radius: float, norm: float, undamped: bool = False) -> TrustRegion:
    rule = TrustRegion(0.99)
    rule.radius, rule.norm, rule.first, rule.undamped = radius, norm, False, undamped
    return rule


def test_the_trust_region_starts_at_the_scaled_weights_norm_cut_to_the_first_step() -> None:
    """B23: ``Delta_1 = factor ||w / c||`` (:data:`RADIUS_FACTOR`), then at most the step's length
    until a step is taken; a Gauss-Newton step inside it is taken undamped, one outside damped onto
    it; B2's floor damps the step and records its length."""
    M = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    r = torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64)  # y(0) = (1, 3), ||y(0)|| = sqrt(10)
    rule = TrustRegion(0.99)
    assert rule.choose(5.0, lambda: (M, r), start=10.0 / RADIUS_FACTOR) == 0.0  # Delta = 10 >= sqrt(10)
    assert rule.radius == pytest.approx(math.sqrt(10.0)) and rule.norm == pytest.approx(math.sqrt(10.0))
    assert rule.undamped
    rule.update(0.0, 0.1, trial=Trial(1.0, 0.95, -1.0, accepted=False))  # refused: still the first
    assert rule.first
    rule.update(0.0, 0.9, trial=Trial(1.0, 0.2, -1.0, accepted=True))
    assert not rule.first
    tiny = TrustRegion(0.99)
    lam = tiny.choose(0.0, lambda: (M, r), start=1.0 / RADIUS_FACTOR)  # Delta = 1 < sqrt(10)
    assert lam > 0.0 and abs(tiny.norm - 1.0) <= 0.1 and tiny.radius <= 1.0 and not tiny.undamped
    floored = TrustRegion(0.99, lambda_min=1.0)  # y(1) = (4/5, 3/2)
    assert floored.choose(0.0, lambda: (M, r), start=100.0) == 1.0
    assert floored.norm == pytest.approx(1.7) and floored.undamped


def test_the_trust_region_moves_its_radius_as_minpack_does() -> None:
    """``rho >= 3/4`` (or a Gauss-Newton step with ``rho > 1/4``): ``Delta = 2 ||y||`` and
    ``lambda^2`` halved; ``rho <= 1/4``: ``Delta = t min(Delta, 10 ||y||)``, ``lambda^2 / t``, with
    ``t = 1/2`` when ``f`` fell, the parabola's ``t`` (in [1/10, 1/2]) when it rose, 1/10 when it
    rose a hundredfold or the step failed; in between nothing moves. ``||y||`` is the step solved
    (the trial's), else the length the choice predicted."""
    good = _trust_region(4.0, 3.0)
    assert good.update(2.0, 0.8, trial=Trial(1.0, 0.2, -1.0)) == pytest.approx(2.0 / math.sqrt(2.0))
    assert good.radius == 6.0
    measured = _trust_region(4.0, 3.0)  # the solved step's length, not the predicted one
    measured.update(2.0, 0.8, trial=Trial(1.0, 0.2, -1.0, True, 2.5))
    assert measured.radius == 5.0
    undamped = _trust_region(4.0, 3.0, undamped=True)
    assert undamped.update(0.0, 0.5) == 0.0 and undamped.radius == 6.0  # lambda = 0 grows too
    middle = _trust_region(4.0, 3.0)
    assert middle.update(2.0, 0.5) == 2.0 and middle.radius == 4.0
    poor = _trust_region(4.0, 0.2)  # f fell, rho small: t = 1/2, Delta = 0.5 min(4, 2)
    assert poor.update(2.0, 0.1, trial=Trial(1.0, 0.9, -1.0)) == pytest.approx(2.0 * math.sqrt(2.0))
    assert poor.radius == pytest.approx(1.0)
    # f rose: t = (1/2) s / (s + a/2), s = g^T d / (2 f) = -0.5, a = 1 - f_new/f = -0.5: t = 1/3
    rose = _trust_region(4.0, 3.0)
    rose.update(2.0, -1.0, trial=Trial(1.0, 1.5, -1.0))
    assert rose.radius == pytest.approx(4.0 / 3.0)
    uphill = _trust_region(4.0, 3.0)  # no descent slope to fit a parabola to: t = 1/2
    uphill.update(2.0, -1.0, trial=Trial(1.0, 1.5, 0.5))
    assert uphill.radius == pytest.approx(2.0)
    for trial in (Trial(1.0, 200.0, -1.0), Trial(1.0, math.inf, -1.0), Trial(1.0, 20.0, -1e-9)):
        far = _trust_region(4.0, 3.0)  # t at least 1/10
        assert far.update(2.0, -5.0, trial=trial) == pytest.approx(2.0 * math.sqrt(10.0))
        assert far.radius == pytest.approx(0.4)
    undone = _trust_region(4.0, 3.0)
    undone.update(2.0, 0.9, failed=True)
    assert undone.radius == pytest.approx(0.4)
    zero = _trust_region(4.0, 0.0, undamped=True)  # a zero step: its rho is -inf, f unchanged
    zero.update(0.0, -math.inf, trial=Trial(1.0, 1.0, 0.0, False, 0.0))
    assert zero.radius == pytest.approx(2.0)  # shrinks (t = 1/2) from Delta, not to 0
    still = _trust_region(4.0, 0.0, undamped=True)  # at a stationary point: rho = 1 by B21
    still.update(0.0, 1.0, trial=Trial(1.0, 1.0, 0.0, True, 0.0))
    assert still.radius == 4.0


def test_the_trust_region_saves_its_radius() -> None:
    rule = _trust_region(4.0, 3.0)
    other = make_damping("trust-region", 0.99)
    other.load_state_dict(rule.state_dict())
    assert (other.radius, other.norm, other.first, other.undamped) == (4.0, 3.0, False, False)


def test_the_trust_region_needs_the_exact_solve_and_ignores_the_warm_start() -> None:
    with pytest.raises(ConfigError, match="needs solver = 'direct'"):
        SHFConfig(damping_rule="trust-region")
    cfg = SHFConfig(damping_rule="trust-region", solver="direct", curvature_size=None, lambda_min=0.0)
    assert {"drop", "gamma1", "warm_start_guard", "max_backtracks"} <= set(cfg.ignored())
    assert SHFState.initial(cfg).step_length.max_backtracks == 0
    with pytest.raises(ConfigError, match="does not take B22's geodesic acceleration"):
        SHFConfig(damping_rule="trust-region", solver="direct", curvature_size=None, lambda_min=0.0,
                  acceleration="geodesic")  # fmt: skip
