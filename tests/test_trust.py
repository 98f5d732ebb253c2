"""Moré's Levenberg-Marquardt parameter for a trust region (B23), against direct solves in float64."""

from __future__ import annotations

import math

import pytest
import torch

from shf.optim.trust import ACCURACY, Spectrum, lm_parameter


def _damped(M: torch.Tensor, r: torch.Tensor, mu: float) -> torch.Tensor:
    """The reference ``argmin ||M y - r||^2 + mu ||y||^2``: ``lstsq`` of the stacked problem."""
    p = M.shape[1]
    A = torch.cat([M, math.sqrt(mu) * torch.eye(p, dtype=M.dtype)])
    b = torch.cat([r, torch.zeros(p, dtype=r.dtype)])
    return torch.linalg.lstsq(A, b.unsqueeze(1), driver="gelsd").solution.squeeze(1)


def _problem(m: int, p: int, seed: int, cond: float = 1e3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, p, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -math.log10(cond), p, dtype=torch.float64)
    return U @ torch.diag(s) @ V.T, torch.randn(m, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(5))
def test_the_norm_in_closed_form_is_the_damped_solutions(seed):
    """``||y(mu)||`` from the SVD equals the norm of the stacked problem's least-squares solution
    (to 1e-10 relative: both are backward stable on a matrix of condition 1e3)."""
    M, r = _problem(12, 4, seed)
    sp = Spectrum.of(M, r)
    for mu in (0.0, 1e-4, 1e-2, 1.0, 10.0):
        ref = float(torch.linalg.vector_norm(_damped(M, r, mu) if mu > 0 else torch.linalg.pinv(M) @ r))
        assert sp.norm(mu) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.85])
def test_the_parameter_puts_the_step_on_the_radius(seed, fraction):
    """For a radius inside the Gauss-Newton step's length, ``mu > 0`` and ``||y(mu)||`` (solved
    directly) is within Moré's 10% of the radius; the norm returned is that solution's."""
    M, r = _problem(15, 5, seed)
    gn = float(torch.linalg.vector_norm(torch.linalg.pinv(M) @ r))
    radius = fraction * gn
    mu, norm = lm_parameter(M, r, radius)
    assert mu > 0.0
    y = _damped(M, r, mu)
    assert float(torch.linalg.vector_norm(y)) == pytest.approx(norm, rel=1e-9)
    assert abs(norm - radius) <= ACCURACY * radius


@pytest.mark.parametrize("mu0", [0.0, 1e-8, 1.0, 1e6])
def test_any_first_guess_ends_on_the_radius(mu0):
    """The bounds keep Newton's iteration safe from any first guess (the last step's ``mu``)."""
    M, r = _problem(20, 6, 11, cond=1e6)
    gn = float(torch.linalg.vector_norm(torch.linalg.pinv(M) @ r))
    mu, norm = lm_parameter(M, r, 0.05 * gn, mu0)
    assert abs(norm - 0.05 * gn) <= ACCURACY * 0.05 * gn
    assert mu > 0.0


def test_a_short_gauss_newton_step_is_taken_undamped():
    """``||y(0)|| <= 1.1 Delta``: ``mu = 0`` and the Gauss-Newton step's norm."""
    M, r = _problem(10, 3, 2)
    gn = float(torch.linalg.vector_norm(torch.linalg.pinv(M) @ r))
    assert lm_parameter(M, r, gn / 1.05) == (0.0, pytest.approx(gn, rel=1e-12))
    assert lm_parameter(M, r, 10 * gn)[0] == 0.0
    # just outside the 10% the radius allows: damped
    assert lm_parameter(M, r, gn / 1.2)[0] > 0.0


def test_a_rank_deficient_matrix_still_reaches_the_radius():
    """A zero column (a weight the residuals do not see): no lower bound from the Gauss-Newton
    step, which is the minimum-norm one; the damped steps are still placed on the radius."""
    M, r = _problem(10, 4, 3)
    M[:, 2] = 0.0
    sp = Spectrum.of(M, r)
    assert not sp.full_rank
    gn = sp.norm(0.0)
    assert gn == pytest.approx(float(torch.linalg.vector_norm(torch.linalg.pinv(M) @ r)), rel=1e-10)
    mu, norm = lm_parameter(M, r, 0.2 * gn)
    assert mu > 0.0 and abs(norm - 0.2 * gn) <= ACCURACY * 0.2 * gn


def test_the_floor_holds_and_reports_its_norm():
    M, r = _problem(10, 3, 4)
    mu, norm = lm_parameter(M, r, 1e6, mu_min=0.25)  # undamped inside the radius, then the floor
    assert mu == 0.25
    assert norm == pytest.approx(float(torch.linalg.vector_norm(_damped(M, r, 0.25))), rel=1e-10)


def test_a_matrix_that_is_not_finite_gives_no_step():
    M, r = _problem(6, 2, 5)
    M[0, 0] = math.inf
    mu, norm = lm_parameter(M, r, 1.0)
    assert mu == 0.0 and math.isnan(norm)
