"""The per-example benchmark script runs (a small batch): it reads ModuleProblem's attributes,
which a rename would otherwise break unseen."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "per_example.py"


def test_the_per_example_benchmark_prints_a_row_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("per_example_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        assert module.main(["--n", "6", "--repeats", "1"]) == 0
    finally:
        torch.set_num_threads(threads)  # the script takes one thread; the other tests keep theirs
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(module._models(6))  # the header and one row per model


def test_the_memory_probe_measures_each_call_of_a_model() -> None:
    # one model in this process (the script runs each call in a fresh one): a non-negative peak
    # for each of the three calls, and the probe asserts that the path it names is the one taken
    spec = importlib.util.spec_from_file_location("per_example_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Box(list):  # the queue's put
        put = list.append

    threads = torch.get_num_threads()
    got = Box()
    try:
        for what in ("gradient", "rules", "vmap"):
            module._memory_child("MNIST MLP classifier", 6, what, got)
    finally:
        torch.set_num_threads(threads)
    assert len(got) == 3 and all(m >= 0 for m in got)
