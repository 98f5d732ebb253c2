"""The stored comparison ``shf train`` prints beside its own result (shf.experiments.standing)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from shf import config as cfgmod
from shf.experiments import standing

RECORD = {
    "budget_s": 300.0,
    "seeds": [0, 1, 2],
    "rows": [
        {"method": "shf-lsmr", "lr": None, "objective": "cross_entropy",
         "over_seeds": {"test_error": {"mean": 0.9, "ci95": 0.1, "n": 3},
                        "best_val_error": {"mean": 0.95, "ci95": 0.1, "n": 3}}},
        {"method": "adam", "lr": 0.001, "objective": "cross_entropy",
         "over_seeds": {"test_error": {"mean": 0.6, "ci95": None, "n": 1},
                        "best_val_error": {"mean": 0.65, "ci95": None, "n": 1}}},
    ],
}  # fmt: skip


def _table() -> standing.Standing:
    return standing.from_compare(RECORD, "default", "bash docs/results/fair/run.sh default", "a CPU")


def test_a_compare_record_becomes_a_table_that_round_trips_and_reads():
    t = _table()
    assert standing.Standing.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    text = t.describe()
    assert "SHF (defaults) 0.9000 ± 0.1000" in text and "Adam (lr 0.001, on cross_entropy) 0.6000" in text
    assert "3 seeds, 300 s each" in text and "made by: bash docs/results/fair/run.sh default" in text


def test_the_table_is_shown_only_for_the_preset_s_own_shf_run(monkeypatch):
    monkeypatch.setattr(standing, "stored", lambda preset: _table() if preset == "default" else None)
    assert standing.for_run(cfgmod.load("default"), "shf-lsmr") == _table()
    # the seed and the thread count do not change what the table describes
    assert standing.for_run(cfgmod.load("default", ["run.seed=4", "run.threads=2"]), "shf-lsmr") is not None
    assert standing.for_run(cfgmod.load("default"), "adam") is None
    assert standing.for_run(cfgmod.load("default", ["optimizer.lambda1=2.0"]), "shf-lsmr") is None
    assert standing.for_run(cfgmod.load("default", ["run.max_time=60"]), "shf-lsmr") is None
    assert standing.for_run(cfgmod.load("usps"), "shf-lsmr") is None


def test_every_stored_table_names_a_preset_and_the_fair_adam():
    folder = resources.files("shf.experiments").joinpath("standing")
    files = [f for f in folder.iterdir() if f.name.endswith(".json")] if folder.is_dir() else []
    for f in files:
        t = standing.Standing.from_dict(json.loads(f.read_text()))
        assert f.name == f"{t.preset}.json" and t.preset in cfgmod.preset_names()
        assert {r.method for r in t.rows} >= {"adam"} and len(t.seeds) >= 2
        assert t.budget_s == cfgmod.load(t.preset).run.max_time  # what shf train runs


def test_a_table_needs_several_seeds(tmp_path):
    f = tmp_path / "compare.json"
    f.write_text(json.dumps({**RECORD, "seeds": [0]}))
    with pytest.raises(Exception, match="several seeds"):
        standing.main([str(f), "--command", "x"])
