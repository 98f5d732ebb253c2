"""The benchmarks' shared data loading: MNIST's stand-ins, their order and the t10k sizes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from shf.bench.common import STAND_INS, load_with_stand_ins, stand_in_attempts
from shf.config import ExperimentConfig, load
from shf.data.split import Split, make_split
from shf.errors import ConfigError, DataError
from shf.experiments import run as experiments_run

SMALL = ["data.n_train=300", "data.n_val=100", "data.n_test=100"]


def _sizes(cfg: ExperimentConfig) -> tuple[int | None, int | None, int | None]:
    return cfg.data.n_train, cfg.data.n_val, cfg.data.n_test


def _split(name: str) -> Split:
    g = torch.Generator().manual_seed(0)
    return make_split(*(torch.rand(n, 784, generator=g) for n in (6, 2, 2)), name)


class _Loader:
    """A ``prepare_data`` that loads only the data sets in ``loadable`` and records each call;
    the others raise ``errors[name]`` (a two-line DataError by default)."""

    def __init__(self, loadable: set[str], errors: dict[str, Exception] | None = None) -> None:
        self.loadable, self.errors = loadable, errors or {}
        self.calls: list[ExperimentConfig] = []

    def __call__(self, cfg: ExperimentConfig) -> Split:
        self.calls.append(cfg)
        name = cfg.data.dataset
        if name not in self.loadable:
            raise self.errors.get(name, DataError(f"{name} is not here\nsecond line"))
        return _split(f"{name} (fake)")

    @property
    def names(self) -> list[str]:
        return [c.data.dataset for c in self.calls]


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(loadable: set[str], errors: dict[str, Exception] | None = None) -> _Loader:
        fake = _Loader(loadable, errors)
        monkeypatch.setattr(experiments_run, "prepare_data", fake)
        return fake

    return install


def test_mnist_stand_ins_in_order() -> None:
    assert STAND_INS == {"mnist": ("fashion-mnist", "mnist-t10k")}
    cfg = load("mnist", SMALL)
    attempts = stand_in_attempts(cfg)
    assert attempts[0] is cfg
    assert [a.data.dataset for a in attempts] == ["mnist", "fashion-mnist", "mnist-t10k"]
    assert all(a.data.path is None for a in attempts)
    # Only the data set changes; the rest of the configuration is the same.
    assert all(a.model == cfg.model and a.optimizer == cfg.optimizer and a.run == cfg.run for a in attempts)
    assert all(a.data.seed == cfg.data.seed for a in attempts)


@pytest.mark.parametrize(("name", "overrides"), [("curves", []), ("usps", []), ("mnist", ["data.path=/x"])])
def test_no_stand_ins_for_other_data_sets_or_a_given_path(name: str, overrides: list[str]) -> None:
    cfg = load(name, overrides)
    attempts = stand_in_attempts(cfg)
    assert len(attempts) == 1 and attempts[0] is cfg


def test_t10k_stand_in_keeps_sizes_that_fit() -> None:
    paper = stand_in_attempts(load("mnist"))  # 50000/10000/10000 do not fit in 10,000 images
    assert _sizes(paper[0]) == _sizes(paper[1]) == (50000, 10000, 10000)
    assert _sizes(paper[2]) == (None, None, None)  # load_mnist_t10k's own split
    small = stand_in_attempts(load("mnist", SMALL))
    assert _sizes(small[2]) == (300, 100, 100)
    # Unset sizes count as t10k's defaults (2000 val, 2000 test): 6000 training rows fit exactly...
    edge = stand_in_attempts(load("mnist", ["data.n_train=6000", "data.n_val=None", "data.n_test=None"]))
    assert _sizes(edge[2]) == (6000, None, None)
    # ...6001 do not, although 6001 alone is below 10,000.
    over = stand_in_attempts(load("mnist", ["data.n_train=6001", "data.n_val=None", "data.n_test=None"]))
    assert _sizes(over[1]) == (6001, None, None) and _sizes(over[2]) == (None, None, None)


def test_the_data_set_itself_when_it_loads(loader: Any) -> None:
    fake = loader({"mnist"})
    cfg = load("mnist", SMALL)
    data, used, tried = load_with_stand_ins(cfg)
    assert data.name == "mnist (fake)" and used is cfg and tried == []
    assert fake.calls == [cfg]


def test_falls_back_in_order_with_one_line_errors(loader: Any) -> None:
    fake = loader({"mnist-t10k"})
    cfg = load("mnist")
    data, used, tried = load_with_stand_ins(cfg)
    assert fake.names == ["mnist", "fashion-mnist", "mnist-t10k"]
    assert data.name == "mnist-t10k (fake)"
    assert used.data.dataset == "mnist-t10k" and used is fake.calls[-1]
    assert _sizes(used) == (None, None, None)  # the paper's sizes do not fit in t10k
    assert tried == ["mnist: mnist is not here", "fashion-mnist: fashion-mnist is not here"]


def test_os_errors_and_failed_checks_move_on(loader: Any) -> None:
    fake = loader({"fashion-mnist", "mnist-t10k"}, {"mnist": OSError("disk gone")})
    checked: list[str] = []

    def check(data: Split) -> None:
        checked.append(data.name)
        if data.name.startswith("fashion"):
            raise ConfigError("does not fit the network")

    data, used, tried = load_with_stand_ins(load("mnist", SMALL), check=check)
    assert fake.names == ["mnist", "fashion-mnist", "mnist-t10k"]
    assert checked == ["fashion-mnist (fake)", "mnist-t10k (fake)"]
    assert data.name == "mnist-t10k (fake)" and used.data.dataset == "mnist-t10k"
    assert _sizes(used) == (300, 100, 100)
    assert tried == ["mnist: disk gone", "fashion-mnist: does not fit the network"]


def test_raises_the_last_error_when_nothing_loads(loader: Any) -> None:
    last = DataError("no t10k either")
    fake = loader(set(), {"mnist-t10k": last})
    tried: list[str] = ["kept"]
    with pytest.raises(DataError) as info:
        load_with_stand_ins(load("mnist"), tried=tried)
    assert info.value is last
    assert fake.names == ["mnist", "fashion-mnist", "mnist-t10k"]
    # The caller's list holds every failure, after what it held already.
    assert tried == [
        "kept",
        "mnist: mnist is not here",
        "fashion-mnist: fashion-mnist is not here",
        "mnist-t10k: no t10k either",
    ]


def test_given_path_or_other_data_set_does_not_fall_back(loader: Any) -> None:
    fake = loader({"fashion-mnist", "mnist-t10k", "curves"})
    with pytest.raises(DataError, match="mnist is not here"):
        load_with_stand_ins(load("mnist", ["data.path=/somewhere"]))
    assert fake.names == ["mnist"]
    fake = loader(set())
    with pytest.raises(DataError, match="curves is not here"):
        load_with_stand_ins(load("curves"))
    assert fake.names == ["curves"]


def test_other_exceptions_are_not_caught(loader: Any) -> None:
    fake = loader(set(), {"mnist": RuntimeError("a bug")})
    with pytest.raises(RuntimeError, match="a bug"):
        load_with_stand_ins(load("mnist"))
    assert fake.names == ["mnist"]


def test_jacobian_problem_is_the_same_problem_in_both_dtypes() -> None:
    """The benchmarks' operator: b = -R, c within Alg. 3's range, the same data in float32/64."""
    from shf.bench.common import encoder_of, jacobian_problem

    p64 = jacobian_problem("usps", 7, torch.float64, seed=3)
    p32 = jacobian_problem("usps", 7, torch.float32, seed=3)
    assert p64.net.encoder == encoder_of("usps") and tuple(p64.X.shape) == (7, 256)
    torch.testing.assert_close(p32.X.double(), p64.X, rtol=0, atol=1e-7)  # float32 rounding only
    torch.testing.assert_close(p64.b, -p64.A.residual, rtol=0, atol=0)
    assert all(float(t.min()) >= 0.5 and float(t.max()) <= 1.0 for t in p64.c)
    assert [tuple(t.shape) for t in p64.c] == [tuple(W.shape) for W in p64.w]
    assert encoder_of([5, 3]) == (5, 3)
    with pytest.raises(ConfigError, match="unknown architecture 'cifar'"):
        encoder_of("cifar")
