"""``shf bench solve``: the record's structure and arithmetic on tiny cases (no timing is asserted)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from shf.bench import solve
from shf.bench.solve import BREAKDOWN, bench_solve, markdown, summarise
from shf.config import ExperimentConfig
from shf.data.split import Split, make_split
from shf.errors import ConfigError, DataError
from shf.experiments import run as experiments_run
from shf.optim.settings import PAPER_VALUES

# A tiny CURVES problem: 300/100/100 synthetic rows, a 784-20-6 encoder, n1 = 50, n_max capped at 300.
TINY = [
    "data.n_train=300",
    "data.n_val=100",
    "data.n_test=100",
    "model.encoder=[784, 20, 6]",
    "optimizer.n1=50",
    "optimizer.n_max=1000",
    "optimizer.maxiter1=5",
    "run.threads=1",
]
TIMES = ("forward", "precond", "solver", "products", "merit", "rho", "linesearch", "gradient", "total")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str], str]:
    toml = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    # a user's file with the paper's settings (a file without [optimizer] keys has the defaults)
    paper = "".join(f"{k} = {json.dumps('none' if v is None else v)}\n" for k, v in PAPER_VALUES.items())
    toml.write_text(f'name = "tiny-toml"\n[data]\ndataset = "curves"\nseed = 3\n[optimizer]\n{paper}')
    messages: list[str] = []
    record = bench_solve(("default", str(toml)), iters=2, overrides=TINY, progress=messages.append)
    return record, messages, str(toml)


def test_one_case_per_config_and_phase_in_order(run: tuple[dict[str, Any], list[str], str]) -> None:
    record, messages, toml = run
    got = [(c["config"], c["name"], c["phase"]) for c in record["cases"]]
    assert got == [
        ("default", "default", "start"),
        ("default", "default", "n_max"),
        (toml, "tiny-toml", "start"),
        (toml, "tiny-toml", "n_max"),
    ]
    assert record["iters"] == 2 and "cpu_model" in record["machine"]
    assert len(messages) == 4 and all("s per HF iteration" in m for m in messages)
    for c in record["cases"]:
        assert c["skipped"] is False and c["note"] is None
        assert c["dataset"] == "CURVES (synthetic)"
        assert c["sizes"] == {"train": 300, "val": 100, "test": 100}
        assert c["encoder"] == [784, 20, 6] and c["iterations"] == 2


def test_batch_size_and_lsmr_cap_per_phase(run: tuple[dict[str, Any], list[str], str]) -> None:
    for c in run[0]["cases"]:
        if c["phase"] == "start":
            assert c["n"] == 50 and c["maxiter"] == 5  # n1, maxiter1 (no growth within 5 iterations)
        elif c["name"] == "default":  # TUNED's B13: 30% of the 300 training rows; maxiter by 90/50
            assert c["n"] == 90 and c["maxiter"] == 9
        else:  # the paper's: n_max = 1000 capped at the 300 training rows; maxiter scaled by 300/50
            assert c["n"] == 300 and c["maxiter"] == 30
        assert 1 <= c["lsmr_iterations"] <= c["maxiter"]


def test_breakdown_sums_to_the_iteration(run: tuple[dict[str, Any], list[str], str]) -> None:
    for c in run[0]["cases"]:
        b, shares, total = c["breakdown"], c["shares"], c["per_iteration_s"]
        assert tuple(b) == BREAKDOWN and tuple(shares) == BREAKDOWN
        assert all(v >= 0 for k, v in b.items() if k != "other")
        assert b["products"] > 0 and b["batch_stats"] > 0
        # the paper's preset evaluates the merit inside LSMR; the default (TUNED, B15) does not
        assert b["merit"] > 0 if c["name"] == "tiny-toml" else b["merit"] == 0.0
        assert sum(b.values()) == pytest.approx(total, abs=1e-9)
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-9)
        assert shares["products"] == pytest.approx(b["products"] / total)
        assert len(c["samples_s"]) == 2 and total == pytest.approx(statistics.fmean(c["samples_s"]))
        per_lsmr_iteration = 1e3 * b["products"] / c["lsmr_iterations"]
        assert c["products_ms_per_lsmr_iteration"] == pytest.approx(per_lsmr_iteration)


def test_markdown_has_the_table_and_every_case(run: tuple[dict[str, Any], list[str], str]) -> None:
    md = markdown(run[0])
    head = "| config | data | phase | path | n | LSMR its / HF it | merit evals / HF it | s / HF it |"
    assert head in md
    for name in ("default", "tiny-toml"):
        for phase in ("start", "n_max"):
            assert f"| {name} | CURVES (synthetic) | {phase} | hand-written |" in md
            assert f"- {name} / {phase} / hand-written: products take" in md
    assert "Against the hand-written path" not in md  # one path: nothing to compare
    assert md.count("the largest other share is") == 4


def _record(i: int) -> dict[str, Any]:
    """A fake iteration record: the first one (the warm-up) is 100 times slower."""
    scale = 100.0 if i == 0 else float(i)
    times = {k: scale * (j + 1) * 1e-3 for j, k in enumerate(TIMES)}
    times["solver"], times["products"], times["total"] = 8 * scale, 5 * scale, 30 * scale
    times["validation"], times["batch_stats"] = 1.5 * scale, 2.5 * scale
    return {"examples": 40 + i, "solver_iterations": 10 * i, "merit_evaluations": 2, "times": times}


def test_summarise_arithmetic() -> None:
    s = summarise([_record(1), _record(3)])  # scales 1 and 3: means are 2x the unit values
    assert (s["iterations"], s["n"], s["lsmr_iterations"], s["merit_evaluations"]) == (2, 42, 20, 2)
    assert s["per_iteration_s"] == pytest.approx(2 * (30 + 1.5 + 2.5))
    b = s["breakdown"]
    assert b["products"] == pytest.approx(10) and b["solver_other"] == pytest.approx(6)
    assert b["validation"] == pytest.approx(3) and b["batch_stats"] == pytest.approx(5)
    assert b["forward"] == pytest.approx(2e-3) and b["linesearch"] == pytest.approx(14e-3)
    assert b["gradient"] == pytest.approx(16e-3)
    named = sum(v for k, v in b.items() if k != "other")
    assert b["other"] == pytest.approx(68 - named)
    assert s["products_ms_per_lsmr_iteration"] == pytest.approx(1e3 * 10 / 20)
    assert s["shares"]["products"] == pytest.approx(10 / 68)
    with pytest.raises(ValueError, match="no iteration records"):
        summarise([])


def _tiny_split(name: str = "tiny stand-in", n: int = 60) -> Split:
    g = torch.Generator().manual_seed(0)
    parts = (torch.rand(rows, 784, generator=g) for rows in (n, 10, 10))
    return make_split(*parts, name)


class _FakeMethod:
    """Stands in for SHFMethod: records its configuration and returns scripted iteration records."""

    made: list[Any] = []  # noqa: RUF012

    def __init__(self, net: Any, data: Split, cfg: Any, seed: int = 0) -> None:
        self.cfg, self.calls, self.threads = cfg, 0, torch.get_num_threads()
        _FakeMethod.made.append(self)

    def init_weights(self) -> list[torch.Tensor]:
        return []

    def step(self, w: list[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        rec = _record(self.calls)
        self.calls += 1
        return w, rec


def test_warmup_left_out_and_n_max_phase_config(monkeypatch: pytest.MonkeyPatch) -> None:
    _FakeMethod.made = []
    monkeypatch.setattr(solve, "shf_method", _FakeMethod)
    monkeypatch.setattr(experiments_run, "prepare_data", lambda cfg: _tiny_split(n=60))
    threads = torch.get_num_threads()
    no_b13 = "optimizer.n_max_fraction=none"  # the cap at N alone
    rec = bench_solve(["default"], iters=3, overrides=[*TINY[3:7], no_b13, "run.threads=3"])
    assert torch.get_num_threads() == threads  # restored after each case
    start, nmax = rec["cases"]
    assert [m.calls for m in _FakeMethod.made] == [4, 4]  # iters + 1 steps per case
    assert all(m.threads == 3 for m in _FakeMethod.made) and start["threads"] == 3
    # Means over records 1..3 (scales 1, 2, 3 -> mean 2); the warm-up (scale 100) is not in them.
    assert start["per_iteration_s"] == pytest.approx(2 * 34) and start["warmup_s"] == pytest.approx(100 * 34)
    assert start["samples_s"] == pytest.approx([34, 68, 102])
    cfg0, cfg1 = (m.cfg for m in _FakeMethod.made)
    assert (cfg0.n1, cfg0.maxiter1) == (50, 5)
    assert (cfg1.n1, cfg1.n_max, cfg1.maxiter1) == (60, 1000, math.ceil(5 * 60 / 50))  # capped at N = 60
    assert nmax["maxiter"] == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"iters": 0}, "iters must be a positive integer"),
        ({"iters": -2}, "iters must be a positive integer"),
        ({"phases": ("start", "middle")}, "phases must be some of start, n_max"),
        ({"phases": ()}, "phases must be some of start, n_max"),
        ({"configs": ("default", "no-such-preset")}, "unknown config 'no-such-preset'"),
        ({"overrides": ("optimizer.no_such_key=1",)}, "unknown key"),
    ],
)
def test_errors_before_any_work(monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], match: str) -> None:
    def no_work(cfg: ExperimentConfig) -> Split:
        raise AssertionError("data loaded before the arguments were checked")

    monkeypatch.setattr(experiments_run, "prepare_data", no_work)
    with pytest.raises(ConfigError, match=match):
        bench_solve(**{"configs": ("default",), **kwargs})


def test_missing_data_is_recorded_as_skipped(tmp_path: Path) -> None:
    messages: list[str] = []
    missing = tmp_path / "missing.mat"
    rec = bench_solve(("usps",), iters=1, overrides=[f"data.path='{missing}'"], progress=messages.append)
    assert [(c["phase"], c["skipped"]) for c in rec["cases"]] == [("start", True), ("n_max", True)]
    assert all("missing.mat" in c["error"] and c["dataset"] is None for c in rec["cases"])
    assert len(messages) == 2 and all("skipped" in m for m in messages)
    md = markdown(rec)
    assert "| usps | - | start |" in md and "- usps / n_max: skipped, no data" in md


def _fake_loader(loadable: set[str], seen: list[tuple[str, str | None]], narrow: str = "") -> Any:
    """A ``prepare_data`` that loads only the data sets in ``loadable``; ``narrow`` loads
    as 256-wide data, which do not fit a 784-wide network."""

    def prepare(cfg: ExperimentConfig) -> Split:
        seen.append((cfg.data.dataset, cfg.data.path))
        if cfg.data.dataset == narrow:
            return make_split(torch.rand(60, 256), torch.rand(10, 256), torch.rand(10, 256), "narrow")
        if cfg.data.dataset not in loadable:
            raise DataError(f"{cfg.data.dataset} is not here\nsecond line")
        return _tiny_split(f"{cfg.data.dataset} (fake)")

    return prepare


def test_mnist_falls_back_to_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []
    # fashion-mnist loads but does not fit the network: the next stand-in is timed.
    monkeypatch.setattr(experiments_run, "prepare_data", _fake_loader({"mnist-t10k"}, seen, "fashion-mnist"))
    rec = bench_solve(("mnist",), iters=1, phases=("start",), overrides=TINY)
    assert seen == [("mnist", None), ("fashion-mnist", None), ("mnist-t10k", None)]
    (case,) = rec["cases"]
    assert case["skipped"] is False and case["dataset"] == "mnist-t10k (fake)"
    assert case["sizes"] == {"train": 60, "val": 10, "test": 10}
    assert case["note"] == (
        "mnist could not be loaded (mnist: mnist is not here); "
        "timed on the stand-in mnist-t10k (mnist-t10k (fake), 60/10/10 rows)"
    )
    assert "Note: mnist could not be loaded" in markdown(rec)


def test_nothing_loads_is_skipped_with_every_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experiments_run, "prepare_data", _fake_loader(set(), []))
    rec = bench_solve(("mnist",), iters=1, phases=("n_max",), overrides=TINY)
    (case,) = rec["cases"]
    assert case["skipped"] is True and case["phase"] == "n_max" and case["note"] is None
    assert case["error"] == (
        "mnist: mnist is not here; fashion-mnist: fashion-mnist is not here; "
        "mnist-t10k: mnist-t10k is not here"
    )


def test_mnist_from_a_path_has_no_stand_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []
    monkeypatch.setattr(experiments_run, "prepare_data", _fake_loader({"fashion-mnist", "mnist-t10k"}, seen))
    rec = bench_solve(("mnist",), iters=1, phases=("start",), overrides=[*TINY, "data.path=/nowhere"])
    assert seen == [("mnist", "/nowhere")]
    (case,) = rec["cases"]
    assert case["skipped"] is True and case["error"] == "mnist: mnist is not here"


ALL_PATHS = ("hand-written", "generic", "sequential")


def test_paths_are_timed_side_by_side_with_ratios() -> None:
    rec = bench_solve(("default",), iters=1, phases=("start",), overrides=TINY, paths=ALL_PATHS)
    cases = rec["cases"]
    assert [c["path"] for c in cases] == list(ALL_PATHS)
    assert [c["per_example"] for c in cases] == ["hand-written", "vmap", "layers"]
    base = cases[0]
    assert base["vs_hand_written"] == {"per_iteration": 1.0, "per_lsmr_iteration": 1.0}
    for c in cases[1:]:
        r = c["vs_hand_written"]
        assert r["per_iteration"] == pytest.approx(c["per_iteration_s"] / base["per_iteration_s"])
        per_lsmr, base_per_lsmr = (x["per_iteration_s"] / x["lsmr_iterations"] for x in (c, base))
        assert r["per_lsmr_iteration"] == pytest.approx(per_lsmr / base_per_lsmr)
    md = markdown(rec)
    assert "## Against the hand-written path" in md
    assert "| default | start | sequential | layers |" in md


@pytest.mark.parametrize("loss", ["squared", "cross_entropy"])
def test_paths_start_from_the_same_weights_batches_and_objective(loss: str) -> None:
    """Every path's first HF iteration sees the same loss on the same batch and takes the same
    decisions (float32, the same function by other kernels: agreement to 1e-4 relative)."""
    from shf.config import load

    cfg = load("default", [*TINY, f"model.loss={loss}"])
    data = experiments_run.prepare_data(cfg)
    methods = solve._methods(cfg, data, cfg.optimizer, ALL_PATHS)
    recs = {}
    for path, m in methods.items():
        w = m.init_weights()
        recs[path] = m.step(w)[1]
    hw = recs["hand-written"]
    for path in ("generic", "sequential"):
        r = recs[path]
        assert r["loss"] == pytest.approx(hw["loss"], rel=1e-4)
        assert r["loss_new"] == pytest.approx(hw["loss_new"], rel=1e-3)
        assert r["examples"] == hw["examples"] and r["solver_iterations"] == hw["solver_iterations"]


def test_a_classifier_runs_once_on_its_own_module(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)

    def labelled(cfg: ExperimentConfig) -> Split:
        parts = [torch.rand(rows, 256, generator=g) for rows in (60, 10, 10)]
        split = make_split(*parts, "tiny labelled")
        labels = [torch.randint(0, 10, (rows,), generator=g) for rows in (60, 10, 10)]
        tr, va, te = labels
        return dataclasses.replace(split, train_targets=tr, val_targets=va, test_targets=te)

    monkeypatch.setattr(experiments_run, "prepare_data", labelled)
    over = ["optimizer.n1=20", "optimizer.maxiter1=3", "run.threads=1"]
    rec = bench_solve(("classify-usps",), iters=1, phases=("start",), overrides=over, paths=ALL_PATHS)
    (case,) = rec["cases"]
    assert case["path"] == "generic" and case["model"] == "mlp classifier" and case["encoder"] is None
    assert case["per_example"] == "layers" and case["vs_hand_written"] is None
    assert "Against the hand-written path" not in markdown(rec)


def test_a_configuration_may_carry_overrides_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    _FakeMethod.made = []
    monkeypatch.setattr(solve, "shf_method", _FakeMethod)
    monkeypatch.setattr(experiments_run, "prepare_data", lambda cfg: _tiny_split(n=60))
    rec = bench_solve(["default", "default:optimizer.n1=20:optimizer.maxiter1=3"], iters=1, phases=("start",),
                      overrides=TINY)  # fmt: skip
    assert [c["name"] for c in rec["cases"]] == ["default", "default (optimizer.n1=20, optimizer.maxiter1=3)"]
    assert [(m.cfg.n1, m.cfg.maxiter1) for m in _FakeMethod.made] == [(50, 5), (20, 3)]


def test_unknown_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="paths must be some of hand-written, generic, sequential"):
        bench_solve(("default",), paths=("fast",))
