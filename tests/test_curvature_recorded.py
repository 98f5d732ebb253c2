"""The math paths of the recorded layers (``shf.curvature.recorded``) compute each layer's own
function, in float64, and record one site per linear map; calls outside the covered case run the
layer's own forward and record nothing; the recurrent rules' sums agree with one example at a
time (``vmap`` cannot batch the recurrent layers' kernels, so the loop is the reference).

Tolerances: the math paths reorder a few float64 sums (the gate maps added apart, not in one
fused kernel), so they agree with the layers to a relative 1e-12; the sums of per-example
gradients to a relative 1e-10 of their largest entry (a few hundred float64 operations each).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from shf.curvature import recorded
from shf.curvature.module import ModuleProblem
from shf.curvature.per_example import Recorder, plan

F64 = torch.float64
T, N = 5, 6


def _recurrent_layers() -> dict[str, nn.RNNBase]:
    torch.manual_seed(0)
    return {
        "rnn-tanh": nn.RNN(4, 3, batch_first=True),
        "rnn-relu-2-layers-sequence-first": nn.RNN(4, 3, num_layers=2, nonlinearity="relu"),
        "lstm-2-layers-bidirectional": nn.LSTM(4, 3, num_layers=2, bidirectional=True, batch_first=True),
        "lstm-no-bias-sequence-first": nn.LSTM(4, 3, bias=False),
        "gru": nn.GRU(4, 3, batch_first=True),
        "gru-bidirectional-dropout-eval": nn.GRU(4, 3, num_layers=2, bidirectional=True, dropout=0.5).eval(),
    }


def _input(m: nn.RNNBase) -> torch.Tensor:
    x = torch.randn(N, T, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    return x if m.batch_first else x.transpose(0, 1)


def _state(m: nn.RNNBase) -> Any:
    D = 2 if m.bidirectional else 1
    g = torch.Generator().manual_seed(4)
    h0 = torch.randn(m.num_layers * D, N, m.hidden_size, dtype=F64, generator=g)
    return (h0, torch.randn(h0.shape, dtype=F64, generator=g)) if isinstance(m, nn.LSTM) else h0


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> None:
    assert a.shape == b.shape
    assert float((a - b).abs().max()) <= rel * (float(b.abs().max()) or 1.0)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("name", list(_recurrent_layers()))
def test_a_recurrent_math_path_is_the_layer_s_function(name: str, with_state: bool) -> None:
    m = _recurrent_layers()[name].double()
    x = _input(m)
    hx = _state(m) if with_state else None
    seen: list[Any] = []
    with torch.no_grad():
        want = m(x, hx)
        got = recorded.recurrent(m, seen.append, x, hx)
    for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want), strict=True):
        _close(a, b, 1e-12)
    # one site for the input map of each (layer, direction), then one per step for its hidden map
    (sites,) = seen
    D = 2 if m.bidirectional else 1
    assert len(sites) == m.num_layers * D * (1 + T)
    assert sites[0][0].shape == (N, T, 4) and sites[1][0].shape == (N, m.hidden_size)


def test_calls_outside_the_covered_case_run_the_layer_s_own_forward() -> None:
    lstm = nn.LSTM(4, 3, num_layers=2, dropout=0.5, batch_first=True).double()
    x = torch.randn(N, T, 4, dtype=F64)
    seen: list[Any] = []
    packed = nn.utils.rnn.pack_padded_sequence(x, [T] * N, batch_first=True)
    recorded.recurrent(lstm.eval(), seen.append, packed)  # a packed sequence
    recorded.recurrent(lstm.eval(), seen.append, x[0])  # one unbatched sequence
    torch.manual_seed(1)
    got = recorded.recurrent(lstm.train(), seen.append, x)[0]  # dropout between layers, training
    torch.manual_seed(1)
    _close(got, lstm(x)[0], 0.0)
    assert seen == [None, None, None]
    projected = nn.LSTM(4, 3, proj_size=2)
    assert plan(projected, [n for n, _ in projected.named_parameters()]) is None


class Reads(nn.Module):
    """A recurrent layer on (n, T, 4) inputs, read by a linear head through its outputs' mean
    and its last hidden state; ``from_input``: the initial state is a function of the input."""

    def __init__(self, core: nn.RNNBase, from_input: bool = False) -> None:
        super().__init__()
        self.core, self.from_input = core, from_input
        D = 2 if core.bidirectional else 1
        self.start = nn.Linear(4, core.hidden_size) if from_input else None
        self.head = nn.Linear(D * core.hidden_size + core.hidden_size, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = x if self.core.batch_first else x.transpose(0, 1)
        hx = None
        if self.start is not None:
            D = 2 if self.core.bidirectional else 1
            h0 = torch.tanh(self.start(x[:, 0])).unsqueeze(0).expand(self.core.num_layers * D, -1, -1)
            hx = (h0, torch.zeros_like(h0)) if isinstance(self.core, nn.LSTM) else h0
        out, state = self.core(xs, hx)
        out = out if self.core.batch_first else out.transpose(0, 1)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(torch.cat([torch.tanh(out).mean(dim=1), h_n[-1]], dim=1))


def _sequence_models() -> dict[str, nn.Module]:
    layers = _recurrent_layers()
    models: dict[str, nn.Module] = {name: Reads(m) for name, m in layers.items()}
    torch.manual_seed(1)
    models["lstm-state-from-input"] = Reads(nn.LSTM(4, 3, batch_first=True), from_input=True)
    models["gru-state-from-input"] = Reads(nn.GRU(4, 3, bidirectional=True), from_input=True)
    return models


@pytest.mark.parametrize("name", list(_sequence_models()))
def test_the_recurrent_rules_give_one_example_at_a_time_s_sums(name: str) -> None:
    model = _sequence_models()[name].double()
    X = torch.randn(N, T, 4, dtype=F64, generator=torch.Generator().manual_seed(5))
    prob = ModuleProblem(model, "mse")
    assert prob.layer_plan is not None
    w = [p.detach() for p in model.parameters()]
    with torch.no_grad():
        z = prob.output(w, X, X)
    V = torch.randn(z.shape, dtype=F64, generator=torch.Generator().manual_seed(6))
    total, sumsq = prob.per_example_products(w, X, X, V)
    assert prob.per_example_path == "layers"
    prob.layer_plan, prob.per_example_path = None, "loop"  # the reference: one example at a time
    rt, rs = prob.per_example_products(w, X, X, V)
    for a, b in zip(total + sumsq, rt + rs, strict=True):
        _close(a, b, 1e-10)
    # the check can fail: squaring each step's gradient before the sum over steps differs
    assert all(float(s.abs().max()) > 0 for s in sumsq)


def test_the_recorder_restores_the_layer_s_forward() -> None:
    model = Reads(nn.GRU(4, 3, batch_first=True)).double()
    layer_plan = plan(model, [n for n, _ in model.named_parameters()])
    assert layer_plan is not None
    X = torch.randn(N, T, 4, dtype=F64)
    with torch.no_grad():
        want = model(X)
    with Recorder(model, layer_plan) as rec, torch.enable_grad():
        got = model(X)
    assert rec.calls() is not None
    _close(got.detach(), want, 1e-12)
    assert all("forward" not in m.__dict__ for m in model.modules())
