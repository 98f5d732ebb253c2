"""A batch's inputs as one tensor or a dict of tensors (shf.batch), and such inputs through
`shf.fit`, `SHF.step` and datasets: a model of named inputs trains exactly as the same model
given one tensor."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import shf
from shf import batch as bt
from shf.errors import DataError

F64 = torch.float64


def _inputs(n: int = 5) -> dict[str, Any]:
    return {"ids": torch.arange(3 * n).reshape(n, 3), "extra": {"x": torch.ones(n, 2, dtype=F64)}}


def test_rows_take_apply_and_describe_work_leaf_by_leaf() -> None:
    X = _inputs()
    assert bt.rows(X) == 5 and bt.rows(torch.zeros(4, 2)) == 4
    sub = bt.take(X, torch.tensor([4, 0]))
    assert isinstance(sub, dict)
    assert sub["ids"].tolist() == [[12, 13, 14], [0, 1, 2]] and sub["extra"]["x"].shape == (2, 2)
    one = bt.take(X, 1)  # one example: the row dimension dropped
    assert isinstance(one, dict) and one["ids"].shape == (3,)
    assert bt.rows(bt.take(X, slice(1, 3))) == 2
    doubled = bt.apply(lambda t: t * 2, X)
    assert isinstance(doubled, dict) and doubled["extra"]["x"].sum() == 20
    assert bt.device(X) == torch.device("cpu") and bt.first(X) is X["ids"]
    assert bt.describe(X) == "inputs ['ids'] (5, 3) int64, ['extra']['x'] (5, 2) float64"
    assert [name for name, _ in bt.leaves(X)] == ["['ids']", "['extra']['x']"]


@pytest.mark.parametrize(
    ("X", "match"),
    [
        ({"a": torch.zeros(3, 1), "b": torch.zeros(4, 1)}, r"\['a'\] has 3 rows but inputs\['b'\] has 4"),
        ({"a": [1, 2]}, r"inputs\['a'\] must be a torch.Tensor or a dict of tensors, got list"),
        ({}, "got an empty dict"),
        ({1: torch.zeros(2)}, "needs str keys"),
        ({"a": torch.tensor(1.0)}, "one row per example"),
    ],
)
def test_bad_inputs_are_one_line_data_errors(X: Any, match: str) -> None:
    with pytest.raises(DataError, match=match):
        bt.rows(X)


class Named(nn.Module):
    """A classifier of named inputs: token ids and features (a nested dict)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.lin = nn.Embedding(6, 4), nn.Linear(4 + 3, 3)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        h = self.emb(batch["ids"]).mean(dim=1)
        return self.lin(torch.tanh(torch.cat([h, batch["more"]["x"]], dim=1)))


class Packed(nn.Module):
    """The same model given one tensor: the ids (as numbers) and the features side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Named()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net({"ids": x[:, :2].long(), "more": {"x": x[:, 2:]}})


def _task(n: int, seed: int) -> tuple[dict[str, Any], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    ids = torch.stack([y * 2, torch.randint(0, 6, (n,), generator=g)], dim=1)
    x = torch.randn(n, 3, generator=g, dtype=F64) * 0.5
    x[torch.arange(n), y] += 1.0
    return {"ids": ids, "more": {"x": x}}, y


def _packed(X: dict[str, Any]) -> torch.Tensor:
    return torch.cat([X["ids"].to(F64), X["more"]["x"]], dim=1)


KW: dict[str, Any] = {"loss": "cross_entropy", "max_iters": 6, "seed": 1, "batch": shf.Batch(n1=30, n_max=90)}


def test_a_model_of_named_inputs_trains_as_the_same_model_given_one_tensor() -> None:
    (X, Y), (Xv, Yv), (Xt, Yt) = _task(240, 0), _task(60, 1), _task(60, 2)
    a = shf.fit(Named().double(), (X, Y), (Xv, Yv), test=(Xt, Yt), **KW)
    b = shf.fit(Packed().double(), (_packed(X), Y), (_packed(Xv), Yv), test=(_packed(Xt), Yt), **KW)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-12)
    assert a.best_val_loss == pytest.approx(b.best_val_loss, rel=1e-12) and a.test_loss is not None
    assert a.best_val_loss < 0.5 * a.initial_val_loss


class NamedItems(Dataset[tuple[dict[str, Any], int]]):
    """Items made on demand, each a dict of inputs and an int label."""

    def __init__(self, X: dict[str, Any], Y: torch.Tensor) -> None:
        self.X, self.Y = X, Y

    def __len__(self) -> int:
        return len(self.Y)

    def __getitem__(self, i: int) -> tuple[dict[str, Any], int]:
        return bt.take(self.X, i), int(self.Y[i])  # type: ignore[return-value]


def test_a_dataset_of_dict_items_trains_as_its_tensors() -> None:
    (X, Y), (Xv, Yv) = _task(240, 0), _task(60, 1)
    a = shf.fit(Named().double(), (X, Y), (Xv, Yv), **KW)
    b = shf.fit(Named().double(), NamedItems(X, Y), NamedItems(Xv, Yv), **KW)
    assert [h["loss"] for h in b.history] == [h["loss"] for h in a.history]
    assert b.best_val_loss == a.best_val_loss


def test_dict_inputs_are_checked_in_one_line() -> None:
    (X, Y), (Xv, Yv) = _task(40, 0), _task(20, 1)
    with pytest.raises(DataError, match="a dict, which a model cannot reconstruct: give the targets"):
        shf.fit(Named().double(), X, (Xv, Yv), **KW)
    bad = {"ids": X["ids"], "more": {"x": X["more"]["x"][:30]}}
    with pytest.raises(DataError, match=r"has 40 rows but inputs\['more'\]\['x'\] has 30"):
        shf.fit(Named().double(), (bad, Y), (Xv, Yv), **KW)
    nan = {"ids": X["ids"], "more": {"x": X["more"]["x"].clone()}}
    nan["more"]["x"][3, 1] = float("nan")
    with pytest.raises(DataError, match=r"training inputs\['more'\]\['x'\] have 1 row\(s\) with NaN"):
        shf.fit(Named().double(), (nan, Y), (Xv, Yv), **KW)
    wrong = {"ids": X["ids"], "more": {"y": X["more"]["x"]}}  # a key the model does not read
    with pytest.raises(DataError, match=r"data \(inputs \['ids'\] \(40, 2\) int64, \['more'\]\['y'\]"):
        shf.fit(Named().double(), (wrong, Y), (Xv, Yv), **KW)
    opt = shf.SHF(Named().double(), "cross_entropy")
    info = opt.step(X, Y, val=(Xv, Yv))
    assert info.val_loss is not None
