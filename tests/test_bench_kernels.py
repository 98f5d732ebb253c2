"""``shf bench kernels``: the flop count, the shapes it times, and a smoke run of each bench command."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from shf.bench import kernels as kb
from shf.bench.common import ARCHITECTURES, time_call
from shf.cli import main
from shf.curvature.mlp import AutoencoderJacobian
from shf.errors import ConfigError
from shf.models.autoencoder import Autoencoder, sparse_init

TINY = [
    "data.n_train=120", "data.n_val=40", "data.n_test=40", "model.encoder=[784, 12, 4]",
    "optimizer.n1=30", "optimizer.n_max=60", "optimizer.maxiter1=5", "run.train_eval_size=none",
]  # fmt: skip


class _MatmulRecorder(TorchDispatchMode):
    """Records ``(M, K, N)`` of every matrix product the wrapped code runs."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int, int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm", "addmm_"):
            a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
            self.shapes.append((a.shape[0], a.shape[1], b.shape[1]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_flop_formula(arch: str) -> None:
    """``2 n (4 P - 2 m_1 m_2)`` with ``P = sum m_l m_{l+1}`` (module docstring)."""
    net = Autoencoder(ARCHITECTURES[arch])
    m, n = net.sizes, 37
    P = sum(m[l] * m[l + 1] for l in range(net.n_layers))
    assert kb.lsmr_iteration_flops(net, n) == 2 * n * (4 * P - 2 * m[0] * m[1])
    assert kb.forward_flops(net, n) == 2 * n * P


@pytest.mark.parametrize("encoder", [(9, 5, 3), (6, 4, 3, 2)])
def test_shapes_are_the_products_matrix_multiplications(encoder: tuple[int, ...]) -> None:
    """The ceiling times exactly the matrix products that matvec + rmatvec run."""
    net = Autoencoder(encoder)
    n = 11
    w = sparse_init(net, m0=3, sigma=1.0, dtype=torch.float64)
    X = torch.rand(n, net.input_dim, dtype=torch.float64)
    A = AutoencoderJacobian(net, w, X)
    d = [torch.randn_like(W) for W in w]
    U = torch.randn_like(X)
    rec = _MatmulRecorder()
    with rec:
        A.matvec(d)
        A.rmatvec(U)
    expected = Counter((s.M, s.K, s.N) for s in kb.product_shapes(net, n))
    assert Counter(rec.shapes) == expected
    assert sum(2 * a * b * c for a, b, c in rec.shapes) == kb.lsmr_iteration_flops(net, n)


def test_ceiling_calls_compute_the_products() -> None:
    """Both ceiling paths run (they write into preallocated outputs and return nothing)."""
    shapes = [kb.MatmulShape("nn", 3, 4, 5), kb.MatmulShape("tn", 4, 3, 2), kb.MatmulShape("nt", 2, 5, 3)]
    for fn in kb.ceiling_calls(shapes, torch.float32).values():
        assert fn() is None


def test_time_call_counts_repeats() -> None:
    calls = []
    t = time_call(lambda: calls.append(1), min_time=0.0, min_repeats=4, warmup=2)
    assert t.repeats == 4 and len(calls) == 6 and 0 <= t.best <= t.median


def test_bench_case_smoke() -> None:
    c = kb.bench_case("usps", 8, "float64", min_time=0.0)
    for key in ("gflops", "ceiling_gflops", "ratio", "lsmr_ratio", "forward_s", "generic_ratio"):
        assert math.isfinite(c[key]) and c[key] > 0, key
    assert c["generic_ratio"] == pytest.approx(c["generic_products_s"] / c["products_s"])
    assert kb.bench_case("usps", 8, "float64", min_time=0.0, generic=False)["generic_ratio"] is None
    assert c["ceiling_gflops"] == pytest.approx(max(c["ceiling_torch_gflops"], c["ceiling_numpy_gflops"]))
    assert c["ratio"] == pytest.approx(c["gflops"] / c["ceiling_gflops"])
    assert set(c["x_forward"]) == {"cached_forward", "precond", "gradient", "batch_stats", "products"}


@pytest.mark.parametrize(
    ("args", "message"),
    [(("nope", [8], ["float32"]), "unknown architecture"), (("usps", [0], ["float32"]), "positive"),
     (("usps", [8], ["float16"]), "unknown dtype")],
)  # fmt: skip
def test_bench_kernels_rejects_bad_input(args: tuple[Any, ...], message: str) -> None:
    arch, sizes, dtypes = args
    with pytest.raises(ConfigError, match=message):
        kb.bench_kernels([arch], sizes, dtypes)


def test_cli_bench_kernels_json(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    argv = ["bench", "kernels", "--archs", "usps", "--sizes", "8", "--dtypes", "float32",
            "--min-time", "0.001", "--json", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    assert {"arch", "n", "dtype", "gflops", "ceiling_gflops", "ratio"} <= set(rows[0])
    assert (rows[0]["arch"], rows[0]["n"], rows[0]["dtype"]) == ("usps", 8, "float32")
    assert json.loads((tmp_path / "kernels.json").read_text())["cases"][0]["n"] == 8
    assert "| usps | 8 | float32 |" in (tmp_path / "kernels.md").read_text()


def test_cli_bench_kernels_bad_arch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "kernels", "--archs", "cifar", "--no-progress"]) == 2
    assert "unknown architecture 'cifar'" in capsys.readouterr().err


def test_cli_bench_solve_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    argv = ["bench", "solve", "--configs", "default", "--iters", "1", "--phases", "start", "--json",
            "--no-progress", "--out", str(tmp_path), *[a for o in TINY for a in ("--set", o)]]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    (case,) = record["cases"]
    assert case["phase"] == "start" and case["per_iteration_s"] > 0
    # --out: the record, the summary and the breakdown figure (a PNG file).
    assert json.loads((tmp_path / "solve.json").read_text())["cases"][0]["n"] == case["n"]
    assert (tmp_path / "solve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_memory_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "memory", "--config", "default", "--iters", "1", "--growth-iters", "12", "--json",
            "--no-progress", *[a for o in TINY for a in ("--set", o)]]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert {m["method"] for m in record["methods"]} == {"shf-lsmr", "martens-hf"}
    assert all(m["peak_rss_mb"] > 0 for m in record["methods"])
