"""The same SHF iteration on CUDA as on the CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from reference import random_like, tiny_problem
from shf import tensorlist as tl
from shf.curvature.mlp import AutoencoderJacobian
from shf.optim.step import SHFConfig, SHFState, shf_step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
def test_products_match_cpu():
    net, w, X = tiny_problem((12, 8, 4), 16)
    d = random_like(w, 1)
    U = torch.randn(X.shape, dtype=torch.float64)
    A = AutoencoderJacobian(net, w, X)
    Ag = AutoencoderJacobian(net, [W.cuda() for W in w], X.cuda())
    torch.testing.assert_close(Ag.matvec([D.cuda() for D in d]).cpu(), A.matvec(d), rtol=1e-12, atol=1e-14)
    for a, b in zip(Ag.rmatvec(U.cuda()), A.rmatvec(U)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-12, atol=1e-14)


@cuda
def test_step_runs_on_cuda():
    net, w, X = tiny_problem((12, 8, 4), 16)
    cfg = SHFConfig.paper(n1=16, maxiter1=20)
    wg = [W.cuda() for W in w]
    w1, info = shf_step(net, wg, X.cuda(), SHFState.initial(cfg), cfg, X_val=X.cuda())
    assert w1[0].is_cuda and tl.all_finite(w1) and info.loss_new <= info.loss


@cuda
def test_generic_operator_and_fit_on_cuda_match_cpu():
    import shf
    from shf.curvature.module import ModuleProblem

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    X, y = torch.randn(40, 6, dtype=torch.float64), torch.randint(0, 3, (40,))
    w = [p.detach() for p in model.parameters()]
    A = ModuleProblem(model, "cross_entropy").jacobian(w, X, y)
    d = random_like(w, 2)
    model_gpu = __import__("copy").deepcopy(model).cuda()
    Ag = ModuleProblem(model_gpu, "cross_entropy").jacobian(
        [p.detach() for p in model_gpu.parameters()], X.cuda(), y.cuda()
    )
    torch.testing.assert_close(Ag.matvec([D.cuda() for D in d]).cpu(), A.matvec(d), rtol=1e-12, atol=1e-14)
    res = shf.fit(model_gpu, (X.cuda(), y.cuda()), (X.cuda(), y.cuda()), loss="cross_entropy", max_iters=3,
                  batch=shf.Batch(n1=20, n_max=40))  # fmt: skip
    assert next(model_gpu.parameters()).is_cuda and res.best_val_loss < res.initial_val_loss
