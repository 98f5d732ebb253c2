"""The stopping rules given to the inner solve (shf.optim.stops): Alg. 6's merit with B5's
subsample, and B3's forcing test, float64."""

from __future__ import annotations

import pytest
import torch

from reference import tiny_problem
from shf import tensorlist as tl
from shf.errors import ConfigError
from shf.optim.scaling import DiagonalScaling
from shf.optim.stops import Forcing, GradientForcing, ValidationMerit, make_forcing


def test_the_merit_is_the_loss_at_w_plus_d_on_the_validation_set_or_its_first_rows() -> None:
    net, w, X = tiny_problem((6, 4, 2), 20, seed=2)
    d = [0.1 * torch.ones_like(t) for t in w]
    assert ValidationMerit(use=False).at(net, w, X, None) is None
    assert ValidationMerit().at(net, w, None, None) is None
    whole = ValidationMerit().at(net, w, X, None)
    assert whole is not None and whole.on_val
    assert whole(d) == net.loss(tl.add(w, d), X) and whole.seconds > 0.0
    sub = ValidationMerit(size=8).at(net, w, X, None)
    assert sub is not None and not sub.on_val  # B5: not the validation loss
    assert sub(d) == net.loss(tl.add(w, d), X[:8])
    same = ValidationMerit(size=20).at(net, w, X, None)  # not smaller than the set: the set
    assert same is not None and same.on_val


def test_the_forcing_bound_follows_the_gradient_norm_from_the_first_iteration() -> None:
    g1 = [torch.tensor([3.0, 4.0], dtype=torch.float64)]  # ||g|| = 5
    asked = []

    def grad(g):  # type: ignore[no-untyped-def]
        return lambda: asked.append(1) or g

    assert Forcing().bound(grad(g1), None) is None and not asked  # the paper's: nothing read
    f = make_forcing("gradient", 0.5, 1.0)
    assert isinstance(f, GradientForcing)
    assert f.bound(grad(g1), None) == pytest.approx(0.5 * 5.0)  # eta_1 = eta_0
    half = [0.5 * t for t in g1]
    # eta_2 = 0.5 * (2.5 / 5)^1 = 0.25, times ||c ∘ g|| with c = 2: 0.25 * 5
    c = DiagonalScaling([torch.full((2,), 2.0, dtype=torch.float64)])
    assert f.bound(grad(half), c) == pytest.approx(0.25 * 5.0)
    assert f.state_dict() == {"g1_norm": 5.0}
    again = make_forcing("gradient", 0.5, 1.0)
    again.load_state_dict(f.state_dict())
    assert again.bound(grad(g1), None) == pytest.approx(2.5)  # the same reference after a resume
    with pytest.raises(ConfigError, match="forcing must be one of"):
        make_forcing("residual", 0.5, 1.0)
