"""The autoencoder of §3 and the sparse initialisation of eq. (9)."""

from __future__ import annotations

import pytest
import torch

from shf.errors import ConfigError
from shf.models.autoencoder import LINEAR, LOGISTIC, Autoencoder, forward, loss, sparse_init


def test_mirrored_sizes_shapes_and_activations():
    net = Autoencoder((784, 400, 200, 100, 50, 25, 6))
    assert net.sizes == (784, 400, 200, 100, 50, 25, 6, 25, 50, 100, 200, 400, 784)
    assert net.n_layers == 12
    assert net.weight_shapes()[0] == (785, 400) and net.weight_shapes()[-1] == (401, 784)
    assert set(net.activations) == {LOGISTIC}
    lin = Autoencoder((784, 30, 6), linear_code=True)
    assert lin.activations == (LOGISTIC, LINEAR, LOGISTIC, LOGISTIC)
    # Table 1's MNIST net: 784-1000-500-250-30 mirrored, 2 x (785*1000 + 1001*500 + 501*250 + 251*30) + ...
    assert Autoencoder((784, 1000, 500, 250, 30)).n_params() == sum(
        (a + 1) * b
        for a, b in zip((784, 1000, 500, 250, 30, 250, 500, 1000), (1000, 500, 250, 30, 250, 500, 1000, 784))
    )


def test_sparse_init_structure_and_distribution():
    net = Autoencoder((300, 200, 5))
    w = sparse_init(net, m0=15, sigma=1.5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for W, m_l in zip(w, net.sizes[:-1]):
        assert torch.all(W[-1] == 0)  # biases 0
        nnz = (W[:-1] != 0).sum(dim=0)
        assert torch.all(nnz == min(15, m_l))  # min(m0, m_l) incoming weights per unit
    vals = torch.cat([W[:-1][W[:-1] != 0] for W in w])
    # ~3,000 draws from N(0, 1.5): sample std within 5% (its standard error is ~1.3%).
    assert float(vals.std()) == pytest.approx(1.5, rel=0.05)
    assert abs(float(vals.mean())) < 0.1
    # Seeded: identical for the same generator seed.
    w2 = sparse_init(net, m0=15, sigma=1.5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert all(torch.equal(a, b) for a, b in zip(w, w2))


def test_loss_is_half_mean_squared_error_and_chunking():
    net = Autoencoder((8, 3))
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(s, generator=g, dtype=torch.float64) for s in net.weight_shapes()]
    X = torch.rand(50, 8, generator=g, dtype=torch.float64)
    ref = float(0.5 * ((forward(net, w, X) - X) ** 2).sum(1).mean())
    assert loss(net, w, X) == pytest.approx(ref, rel=1e-13)
    assert loss(net, w, X, chunk=7) == pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize(
    ("encoder", "match"),
    [
        ((784,), "at least an input and a code size"),
        ((784, 0, 6), "positive integers"),
        ((784, -3), "positive"),
    ],
)
def test_bad_architectures(encoder, match):
    with pytest.raises(ConfigError, match=match):
        Autoencoder(encoder)


def test_bad_init_parameters():
    net = Autoencoder((8, 3))
    with pytest.raises(ConfigError, match="m0 must be a positive integer"):
        sparse_init(net, m0=0, sigma=1.0)
    with pytest.raises(ConfigError, match="sigma must be positive"):
        sparse_init(net, m0=2, sigma=0.0)


def _net_and_data(dtype: torch.dtype, loss_name: str = "cross_entropy") -> tuple[Autoencoder, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    net = Autoencoder((12, 7, 3), loss_name=loss_name, generator=g, dtype=dtype)
    X = torch.rand(40, 12, generator=g, dtype=dtype)
    return net, X


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shared_outputs_give_the_two_passes_numbers_bit_for_bit(dtype):
    # The memo (OutputMemo) must not change a number: the loss and the error at the same weights
    # equal those of mlp's own functions, each computed by its own forward pass.
    from shf.curvature import mlp

    net, X = _net_and_data(dtype)
    w = [t.detach().clone() for t in net.weights]
    copies = [t.clone() for t in w]  # what the loop holds: equal values, other tensors
    ce, se = mlp.cross_entropy(net, w, X), mlp.loss(net, w, X)
    assert net.loss(w, X) == ce
    assert net.squared_error(copies, X) == se  # a hit: the cross-entropy's pass
    assert net.loss(copies, X) == ce  # a hit again, from the other copy of the weights
    Y = torch.rand(40, 12, generator=torch.Generator().manual_seed(4), dtype=dtype)
    assert net.squared_error(w, X, Y) == mlp.loss(net, w, X, Y)
    assert net.loss(w, X, Y) == mlp.cross_entropy(net, w, X, Y)


def test_the_memo_runs_one_forward_pass_for_the_same_rows_and_weights(monkeypatch):
    import shf.models.autoencoder as ae

    calls = []
    real = ae.pre_activations
    monkeypatch.setattr(ae, "pre_activations", lambda *a: calls.append(1) or real(*a))
    net, X = _net_and_data(torch.float64)
    w = [t.detach().clone() for t in net.weights]
    net.loss(w, X)
    net.squared_error([t.clone() for t in w], X)
    assert len(calls) == 1, "equal weights on the same rows must share the forward pass"
    net.squared_error(w, X[:20])  # other rows (a view of the same memory, other shape): a miss
    assert len(calls) == 2


def test_the_memo_misses_when_weights_or_rows_change(monkeypatch):
    from shf.curvature import mlp

    net, X = _net_and_data(torch.float64)
    w = [t.detach().clone() for t in net.weights]
    net.loss(w, X)
    w2 = [t.clone() for t in w]
    w2[1][0, 0] += 1e-3  # one weight changed
    assert net.squared_error(w2, X) == mlp.loss(net, w2, X)
    assert net.squared_error(w2, X) != mlp.loss(net, w, X)
    X.mul_(0.5)  # the same tensor changed in place: its version counter moves
    assert net.squared_error(w2, X) == mlp.loss(net, w2, X)
    assert net.loss(w2, X) == mlp.cross_entropy(net, w2, X)
    Xb = X.clone()  # equal values in other memory: computed again, the same numbers
    assert net.loss(w2, Xb) == mlp.cross_entropy(net, w2, X)
