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


PARTS = json.loads((Path(__file__).parent / "data" / "before_parts.json").read_text())


@pytest.mark.parametrize(("name", "preset", "method", "extra"), regression_runs.PARTS_RUNS)
def test_the_defaults_and_their_switches_give_the_recorded_metrics(
    name: str, preset: str, method: str, extra: list[str], tmp_path: Path
) -> None:
    """Issue 28's refactoring of the HF iteration into parts changes no decision of the defaults
    or of any switch (recorded before it, see ``tests/regression_runs.py``)."""
    threads = torch.get_num_threads()
    try:
        got = regression_runs.run(preset, method, str(tmp_path / name), extra)
    finally:
        torch.set_num_threads(threads)
    _same(PARTS[name], json.loads(json.dumps(got)), name)


@pytest.mark.parametrize("name", regression_runs.FIT_RUNS)
def test_fit_on_a_module_gives_the_recorded_metrics(name: str) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        got = regression_runs.fit_run(name)
    finally:
        torch.set_num_threads(threads)
    _same(PARTS[name], json.loads(json.dumps(got)), name)
