"""The torch.func path and the hand-written Alg. 4/5 path agree on the paper's autoencoder.

Same weights, batch and seeds, float64: the operators, the Chapelle-Erhan and Martens
preconditioners, Alg. 2's statistics and whole SHF steps agree to round-off (1e-10
relative: the two paths sum the same products in different orders), and every discrete
decision (LSMR iterations, stop reason, n_hat, lambda) is identical.
"""

from __future__ import annotations

import copy

import pytest
import torch

from shf import SHF
from shf import tensorlist as tl
from shf.curvature.module import ModuleProblem
from shf.models import Autoencoder
from shf.optim import precond
from shf.optim.step import SHFConfig

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _setup(loss: str = "squared") -> tuple[Autoencoder, torch.Tensor, torch.Tensor]:
    net = Autoencoder(
        (12, 7, 4), loss_name=loss, m0=5, sigma=1.5, generator=torch.Generator().manual_seed(1), dtype=F64
    )
    g = torch.Generator().manual_seed(2)
    return net, torch.rand(40, 12, generator=g, dtype=F64), torch.rand(30, 12, generator=g, dtype=F64)


def test_operators_agree() -> None:
    net, X, _ = _setup()
    w = [p.detach() for p in net.parameters()]
    fast = net.jacobian(w, X)
    generic = ModuleProblem(net, "mse").jacobian(w, X)
    torch.testing.assert_close(generic.residual, fast.residual, **TOL)
    assert generic.loss == pytest.approx(fast.loss, rel=1e-12)
    g = torch.Generator().manual_seed(3)
    d = [torch.randn(t.shape, generator=g, dtype=F64) for t in w]
    u = torch.randn(fast.residual.shape, generator=g, dtype=F64)
    torch.testing.assert_close(generic.matvec(d), fast.matvec(d), **TOL)
    for a, b in zip(generic.rmatvec(u), fast.rmatvec(u)):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(generic.gradient(), fast.gradient()):
        torch.testing.assert_close(a, b, **TOL)
    for a, b in zip(generic.per_example_sumsq(u), fast.per_example_sumsq(u)):
        torch.testing.assert_close(a, b, **TOL)
    for pa, pb in zip(generic.per_example_gradient_stats(), fast.per_example_gradient_stats()):
        for a, b in zip(pa, pb):
            torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("kind", ["chapelle-erhan", "martens"])
def test_preconditioners_agree(kind: str) -> None:
    net, X, _ = _setup()
    w = [p.detach() for p in net.parameters()]
    fast = precond.compute(kind, net.jacobian(w, X), 0.7, torch.Generator().manual_seed(4))
    generic = precond.compute(
        kind, ModuleProblem(net, "mse").jacobian(w, X), 0.7, torch.Generator().manual_seed(4)
    )
    assert fast is not None and generic is not None
    for a, b in zip(generic, fast):
        torch.testing.assert_close(a, b, **TOL)


def test_shf_steps_agree() -> None:
    net, X, Xv = _setup()
    twin = copy.deepcopy(net)
    cfg = SHFConfig.paper(lambda1=2.0, n1=20, n_max=40, maxiter1=40, miniter=10, recover=15, theta=0.3)
    fast = SHF(net, config=cfg, train_size=X.shape[0], seed=0)
    generic = SHF(twin, config=cfg, train_size=X.shape[0], seed=0, generic=True)
    assert fast.fast_path and not generic.fast_path
    for it in range(6):
        idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(it))[: fast.batch_size]
        a = fast.step(X[idx], val=Xv)
        b = generic.step(X[idx], val=Xv)
        for key in (
            "solver_iterations",
            "solver_stop",
            "n_hat",
            "n_next",
            "maxiter_next",
            "accepted",
            "lam_next",
        ):
            assert getattr(a, key) == getattr(b, key), (it, key)
        assert b.val_loss == pytest.approx(a.val_loss, rel=1e-10)
        torch.testing.assert_close(tl.flatten(generic.weights()), tl.flatten(fast.weights()), **TOL)
