"""A map-style Dataset as training, validation and test data (shf.data.dataset, shf.fit)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import shf
from shf.data.dataset import DatasetRows, is_dataset, tensors
from shf.errors import DataError


class Digits(Dataset[tuple[torch.Tensor, int]]):
    """Items made on demand (as a dataset read from files would be): an image row and an int label."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (n,), generator=g)
        self.noise = torch.randn(n, 6, generator=g, dtype=torch.float64) * 0.3
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        x = self.noise[i].clone()
        x[int(self.labels[i]) * 2] += 2.0  # the class shows in its own pair of features
        return x, int(self.labels[i])


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


KW: dict[str, Any] = {"max_iters": 6, "seed": 3, "batch": shf.Batch(n1=20, n_max=60)}


def test_a_tensor_dataset_trains_exactly_as_its_tensors() -> None:
    """The batches drawn from a dataset are the rows the tensor path draws: the same run, bit for bit."""
    data = Digits(200)
    X, Y = tensors(data)
    assert X.dtype == torch.float64 and Y is not None and Y.dtype == torch.int64
    Xv, Yv = tensors(Digits(50, seed=1))
    a = shf.fit(_mlp(), (X, Y), (Xv, Yv), loss="cross_entropy", **KW)
    b = shf.fit(_mlp(), TensorDataset(X, Y), TensorDataset(Xv, Yv), loss="cross_entropy", **KW)
    c = shf.fit(_mlp(), data, Digits(50, seed=1), loss="cross_entropy", **KW)
    for r in (b, c):
        assert [h["val_error"] for h in r.history] == [h["val_error"] for h in a.history]
        assert [h["loss"] for h in r.history] == [h["loss"] for h in a.history]
        assert r.best_val_loss == a.best_val_loss
        # The final train loss is one forward pass over rows the dataset path gathers into a new
        # tensor: MKL's kernels depend on the memory's alignment (an Intel Xeon gives the last bit
        # differently, an AMD EPYC not), so this one pass agrees to round-off, not to the bit.
        assert r.train_loss == pytest.approx(a.train_loss, rel=1e-14)
    assert a.best_val_loss < a.initial_val_loss


def test_only_the_drawn_rows_are_read_and_the_train_loss_is_on_a_subset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.import_module("shf.fit"), "TRAIN_EVAL_ROWS", 30)
    data = Digits(400)
    res = shf.fit(_mlp(), data, Digits(40, seed=1), loss="cross_entropy", **{**KW, "max_iters": 2})
    # 30 rows for the train loss, then one batch per HF iteration: never the whole set
    drawn = sum(h["n"] for h in res.history)
    assert data.reads == 30 + drawn < len(data)
    assert res.history[-1]["train_error_subset"] is True


def test_workers_read_the_same_batches() -> None:
    X, Y = tensors(Digits(120))
    kw = {**KW, "max_iters": 2}
    a = shf.fit(_mlp(), TensorDataset(X, Y), (X[:40], Y[:40]), loss="cross_entropy", **kw)
    b = shf.fit(_mlp(), TensorDataset(X, Y), (X[:40], Y[:40]), loss="cross_entropy", workers=1, **kw)
    assert [h["loss"] for h in b.history] == [h["loss"] for h in a.history]


def test_an_autoencoder_dataset_of_inputs_only() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(100, 8, generator=g)
    ds = [x for x in X]  # a list is not a dataset: it must be a Dataset
    assert not is_dataset(ds) and not is_dataset(X) and not is_dataset((X, X))

    class Rows(Dataset[torch.Tensor]):
        def __len__(self) -> int:
            return 100

        def __getitem__(self, i: int) -> torch.Tensor:
            return X[i]

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 3), nn.Sigmoid(), nn.Linear(3, 8))
    res = shf.fit(net, Rows(), X[:30], max_iters=3, batch=shf.Batch(n1=20, n_max=40))
    assert res.iterations == 3 and res.best_val_loss <= res.initial_val_loss


def test_bad_datasets_are_one_line_errors() -> None:
    class Triples(Dataset[tuple[torch.Tensor, ...]]):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
            return torch.zeros(2), torch.zeros(1), torch.zeros(1)

    with pytest.raises(DataError, match=r"a pair \(inputs, target\).*3-item list"):
        DatasetRows(Triples()).take([0, 1])
    with pytest.raises(DataError, match="at least 2 examples"):
        DatasetRows(TensorDataset(torch.zeros(1, 2)))
    with pytest.raises(DataError, match="workers must be an integer >= 0"):
        DatasetRows(TensorDataset(torch.zeros(4, 2)), workers=-1)
    with pytest.raises(DataError, match=r"shf\.fit also takes a torch\.utils\.data\.Dataset"):
        X = torch.zeros(4, 6, dtype=torch.float64)
        y = torch.zeros(4, dtype=torch.long)
        shf.SHF(_mlp(), "cross_entropy").step(X, y, val=TensorDataset(X, y))  # type: ignore[arg-type]
