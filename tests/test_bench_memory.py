"""`shf bench memory` on a tiny configuration: every method in its own spawned process."""

from __future__ import annotations

import math

import pytest
import torch

from shf.bench import memory
from shf.bench.memory import bench_memory, lsmr_rss_growth, markdown
from shf.errors import ConfigError, DataError

TINY = [
    "data.n_train=300", "data.n_val=100", "data.n_test=100", "model.encoder=[784, 20, 6]",
    "optimizer.n_max=100", "optimizer.n1=50", "optimizer.maxiter1=10", "hf.maxiter=10",
]  # fmt: skip


@pytest.fixture
def one_thread():
    """The in-process LSMR runs use one torch thread (the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def record():
    lines: list[str] = []
    rec = bench_memory("default", overrides=TINY, iters=2, growth_iters=20, threads=1, progress=lines.append)
    rec["_progress"] = lines
    return rec


def test_every_method_and_the_baseline_report_a_peak(record):
    assert [r["method"] for r in record["methods"]] == ["shf-lsmr", "martens-hf"]
    base = record["baseline"]
    assert "error" not in base, base
    assert base["peak_rss_mb"] > 50  # a Python + torch process
    assert base["dataset"] == "CURVES (synthetic)" and base["sizes"] == {
        "train": 300,
        "val": 100,
        "test": 100,
    }
    assert record["dataset"] == "CURVES (synthetic)" and record["encoder"] == [784, 20, 6]
    for r in record["methods"]:
        assert "error" not in r, r
        assert r["peak_rss_mb"] > 50
        assert r["iterations"] == 2 and r["stop_reason"] == "max_iters"
        assert r["s_per_iteration"] > 0
        # the default preset's objective, for both methods: the cross-entropy (B9)
        assert r["loss"] == "cross_entropy"
        # The whole-life peak covers the peak after the data load, which covers the data.
        assert r["peak_rss_mb"] >= r["peak_after_data_mb"] >= r["rss_after_data_mb"] > 0
        assert r["method_peak_mb"] == pytest.approx(r["peak_after_data_mb"] - r["rss_after_data_mb"])
    # One progress line per child: baseline, two methods, the growth run.
    assert len(record["_progress"]) == 4
    assert record["_progress"][0].startswith("baseline: peak")


def test_peak_over_baseline_and_ratio(record):
    base = record["baseline"]["peak_rss_mb"]
    rows = {r["method"]: r for r in record["methods"]}
    for r in rows.values():
        assert r["peak_over_baseline_mb"] == pytest.approx(r["peak_rss_mb"] - base)
    shf, hf = rows["shf-lsmr"]["peak_over_baseline_mb"], rows["martens-hf"]["peak_over_baseline_mb"]
    if shf > 0:
        assert record["ratio"] == pytest.approx(hf / shf)
    else:
        assert record["ratio"] is None


def test_shf_runs_at_its_largest_batch(record):
    shf = next(r for r in record["methods"] if r["method"] == "shf-lsmr")
    # Configured n1 = 50 would stay 50 for the first 5 iterations; the benchmark uses n_max.
    assert shf["n1"] == shf["n_max"] == 100
    assert shf["final_batch_size"] == 100
    assert shf["examples_per_iteration_min"] == shf["examples_per_iteration_max"] == 100
    assert any("n1 = optimizer.n_max = 100" in n and "configured n1 = 50" in n for n in record["notes"])
    hf = next(r for r in record["methods"] if r["method"] == "martens-hf")
    assert hf["grad_batch"] == 300  # the whole training set


def test_lsmr_growth_in_the_record(record):
    g = record["lsmr_growth"]
    assert "error" not in g, g
    assert g["encoder"] == [784, 20, 6] and g["n"] == 100  # the config's net at n = n_max
    assert g["iterations"] == 20 and g["reference_iteration"] == 10
    assert math.isfinite(g["growth_per_iteration_kb"])


def test_markdown_lists_every_method(record):
    md = markdown(record)
    for m in ("baseline", "shf-lsmr (batch 100)", "martens-hf"):
        assert f"| {m}" in md
    assert "| method | peak RSS (MB) | over baseline (MB) |" in md
    assert "LSMR growth" in md and "iteration 20" in md
    if record["ratio"] is not None:
        assert f"{record['ratio']:.2f}x" in md


def test_lsmr_rss_growth_tiny(one_thread):
    g = lsmr_rss_growth([64, 16, 4], n=50, iters=30, seed=1)
    assert g["iterations"] == 30 and g["stop"] == "maxiter"
    assert g["n_params"] == 65 * 16 + 17 * 4 + 5 * 16 + 17 * 64
    assert g["reference_iteration"] == 10
    assert g["rss_mb_at_10"] > 50 and g["rss_mb_last"] > 50
    assert g["growth_mb"] == pytest.approx(g["rss_mb_last"] - g["rss_mb_at_10"])
    assert math.isfinite(g["growth_per_iteration_kb"])
    assert [k for k, _ in g["samples"]] == list(range(1, 31))


def test_lsmr_rss_growth_thins_samples_and_takes_names(one_thread):
    g = lsmr_rss_growth("usps", n=10, iters=120, dtype="float64")
    assert g["encoder"] == [256, 400, 200, 100, 50, 25] and g["dtype"] == "float64"
    ks = [k for k, _ in g["samples"]]
    assert len(ks) <= 50 and ks[0] == 1 and ks[-1] == 120 and ks == sorted(ks)
    few = lsmr_rss_growth([16, 4], n=5, iters=3)
    assert few["reference_iteration"] == 1 and few["growth_per_iteration_kb"] is not None
    with pytest.raises(ConfigError, match="unknown architecture"):
        lsmr_rss_growth("cifar")


def test_a_failing_child_becomes_an_error_entry():
    bad = [*TINY, "data.dataset=own", "data.path=/nonexistent/shf-bench-memory.npy"]
    lines: list[str] = []
    rec = bench_memory(
        "default", methods=("shf-lsmr",), overrides=bad, iters=1, growth_iters=0, progress=lines.append
    )
    assert "/nonexistent/shf-bench-memory.npy" in rec["baseline"]["error"]
    (row,) = rec["methods"]
    assert row["method"] == "shf-lsmr" and "/nonexistent/shf-bench-memory.npy" in row["error"]
    assert "peak_rss_mb" not in row
    assert rec["ratio"] is None and rec["lsmr_growth"] is None and rec["dataset"] is None
    assert len(lines) == 2 and all("failed" in line for line in lines)
    md = markdown(rec)
    assert "| shf-lsmr | failed:" in md and "| baseline | failed:" in md


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ("lbfgs",)}, "unknown method 'lbfgs'"),
        ({"iters": 0}, "iters must be a positive integer"),
        ({"growth_iters": -1}, "growth_iters"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"overrides": ["optimizer.no_such_key=1"]}, "unknown key"),
    ],
)
def test_config_errors_are_raised_before_any_child(monkeypatch, kwargs, message):
    def no_spawn(*args, **kw):
        raise AssertionError("a child was started")

    monkeypatch.setattr(memory, "_spawn", no_spawn)
    with pytest.raises(ConfigError, match=message):
        bench_memory("default", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error for a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(memory, "_spawn", lambda *a, **k: pytest.fail("a child was started"))
    with pytest.raises(ConfigError, match="CUDA is not available"):
        bench_memory("default", overrides=["run.device=cuda"])


def test_a_child_loads_a_stand_in_when_mnist_fails(monkeypatch):
    """The baseline child (run in this process) records the stand-in it loaded and what failed."""
    from shf import config as cfgmod
    from shf.data.split import make_split
    from shf.experiments import run

    calls: list[tuple[str, int | None]] = []

    def fake_prepare(cfg):
        calls.append((cfg.data.dataset, cfg.data.n_train))
        if cfg.data.dataset != "mnist-t10k":
            raise DataError(f"{cfg.data.dataset} is not here\nno network")
        g = torch.Generator().manual_seed(0)
        return make_split(*(torch.rand(n, 784, generator=g) for n in (30, 10, 10)), "t10k (fake)")

    monkeypatch.setattr(run, "prepare_data", fake_prepare)
    monkeypatch.setattr(memory, "_reset_peak", lambda: False)  # leave this process's peak alone
    cfg = cfgmod.load("mnist", ["model.encoder=[784, 8, 4]"])
    out = memory._method_child(cfg, "baseline", 1)
    # The preset's 50000/10000/10000 split does not fit in the 10,000 t10k images: its default.
    assert calls == [("mnist", 50000), ("fashion-mnist", 50000), ("mnist-t10k", None)]
    assert out["dataset"] == "t10k (fake)" and out["dataset_config"] == "mnist-t10k"
    assert out["data_config"]["dataset"] == "mnist-t10k" and out["data_config"]["n_train"] is None
    assert out["fallbacks_tried"] == ["mnist: mnist is not here", "fashion-mnist: fashion-mnist is not here"]
    assert out["sizes"] == {"train": 30, "val": 10, "test": 10} and math.isfinite(out["initial_loss"])
    assert out["peak_after_data_mb"] is None and out["peak_rss_mb"] > 0


def test_a_child_raises_the_last_error_when_nothing_loads(monkeypatch):
    from shf import config as cfgmod
    from shf.experiments import run

    def fake_prepare(cfg):
        raise DataError(f"{cfg.data.dataset} is not here")

    monkeypatch.setattr(run, "prepare_data", fake_prepare)
    with pytest.raises(DataError, match=r"^mnist-t10k is not here$"):
        memory._method_child(cfgmod.load("mnist"), "baseline", 1)


def _fake_spawn(peaks, payloads, dataset="curves"):
    """A stand-in for the spawned children: fixed peaks, the payloads recorded."""

    def spawn(kind, payload, threads):
        payloads.append((kind, payload, threads))
        if kind == "growth":
            g = payload["growth"]
            return {"encoder": g["arch"], "n": g["n"], "dtype": "float32", "rss_mb_at_10": 300.0,
                    "rss_mb_last": 300.0, "growth_mb": 0.0, "growth_per_iteration_kb": 0.0,
                    "reference_iteration": 10, "iterations": 20}  # fmt: skip
        data = payload["config"]["data"]
        out = {
            "dataset": data["dataset"],
            "dataset_config": data["dataset"],
            "peak_rss_mb": peaks[kind],
            "sizes": {"train": 300, "val": 50, "test": 50},
            "iterations": 2,
            "s_per_iteration": 0.1,
        }
        if kind == "baseline":
            out.update(dataset_config=dataset, data_config={**data, "dataset": dataset, "n_train": 300},
                       fallbacks_tried=["mnist: no network"])  # fmt: skip
        return out

    return spawn


def test_the_baseline_settles_the_data_set_and_the_ratio(monkeypatch):
    payloads: list = []
    peaks = {"baseline": 400.0, "shf-lsmr": 450.0, "martens-hf": 600.0}
    monkeypatch.setattr(memory, "_spawn", _fake_spawn(peaks, payloads, dataset="fashion-mnist"))
    rec = bench_memory("mnist", iters=3, threads=2, growth_iters=20)
    assert [k for k, _, _ in payloads] == ["baseline", "shf-lsmr", "martens-hf", "growth"]
    assert all(t == 2 for _, _, t in payloads)
    # The methods load what the baseline loaded; SHF at n1 = n_max, Martens HF as configured.
    for _, payload, _ in payloads[1:3]:
        assert payload["config"]["data"]["dataset"] == "fashion-mnist"
        assert payload["config"]["data"]["n_train"] == 300
        assert payload["iters"] == 3
    assert payloads[1][1]["config"]["optimizer"]["n1"] == 6000
    assert payloads[2][1]["config"]["optimizer"]["n1"] == 300
    assert payloads[3][1]["growth"]["n"] == 300 and payloads[3][1]["growth"]["iters"] == 20
    assert payloads[3][1]["growth"]["arch"] == [784, 1000, 500, 250, 30]
    assert any(
        "'mnist' could not be loaded (mnist: no network)" in n and "300/50/50" in n for n in rec["notes"]
    )
    assert [r["peak_over_baseline_mb"] for r in rec["methods"]] == [50.0, 200.0]
    assert rec["ratio"] == 4.0
    assert rec["machine"]["torch_threads"] == 2
    assert "4.00x" in markdown(rec)


def test_no_ratio_when_shf_does_not_exceed_the_baseline(monkeypatch):
    peaks = {"baseline": 400.0, "shf-lsmr": 400.0, "martens-hf": 600.0}
    monkeypatch.setattr(memory, "_spawn", _fake_spawn(peaks, []))
    rec = bench_memory("default", growth_iters=0)
    assert rec["ratio"] is None and rec["lsmr_growth"] is None
    assert any("method_peak_mb" in n for n in rec["notes"])
    assert "No ratio" in markdown(rec)
