"""Restructuring changes no result: the runs of ``tests/regression_runs.py`` (each paper
preset's SHF-LSMR settings, SHF-CG, Martens HF, Adam and SGD, seed 7, float64, one
thread) give the metrics recorded before the generic optimizer API was introduced.

Integers, strings and booleans must match exactly. Floats must match to 1e-10 relative:
the same float64 operations in the same order give the same bits, and the margin only
admits a re-association of a sum in the restructured code (round-off ~1e-16 per
operation, amplified by at most a few thousand LSMR/CG operations); a changed decision,
seed or formula moves them by far more.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import regression_runs

BEFORE = json.loads((Path(__file__).parent / "data" / "before_refactor.json").read_text())


# StepInfo names the solver's fields the same for LSMR and CG since the restructuring.
RENAMED = {
    "lsmr_iterations": "solver_iterations",
    "cg_iterations": "solver_iterations",
    "lsmr_stop": "solver_stop",
    "cg_stop": "solver_stop",
}


def _same(a: Any, b: Any, where: str) -> None:
    exact = (bool, str, type(None))
    if isinstance(a, exact) or isinstance(b, exact) or (isinstance(a, int) and isinstance(b, int)):
        assert a == b, where
    elif isinstance(a, (int, float)):
        if math.isnan(a):
            assert math.isnan(b), where
        else:
            assert b == pytest.approx(a, rel=1e-10, abs=1e-12), where
    elif isinstance(a, dict):
        for k in a:
            k_new = RENAMED.get(k, k) if "solver" in a else k  # only SHF's records are renamed
            assert k_new in b, f"{where}.{k_new} missing"
            _same(a[k], b[k_new], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:  # pragma: no cover
        raise AssertionError(f"{where}: unexpected {a!r}")


@pytest.mark.parametrize(("name", "preset", "method"), regression_runs.RUNS)
def test_small_runs_give_the_recorded_metrics(name: str, preset: str, method: str, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        got = regression_runs.run(preset, method, str(tmp_path / name))
    finally:
        torch.set_num_threads(threads)
    _same(BEFORE[name], json.loads(json.dumps(got)), name)
