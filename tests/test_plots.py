"""Figures 2 and 3 from run directories."""

from __future__ import annotations

import json

import pytest

from shf.cli import main
from shf.errors import DataError
from shf.plots import figure2, figure3


def _run(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    rows = [
        {
            "iteration": i,
            "time_s": 0.5 * i,
            "n": 100 + 10 * i,
            "train_error": 10.0 / i,
            "test_error": 11.0 / i,
        }
        for i in range(1, 8)
    ]
    rows[2].pop("train_error")  # metrics written every eval_every iterations only
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d


def test_figures_are_png(tmp_path):
    runs = [_run(tmp_path, "a"), _run(tmp_path, "b")]
    p2 = figure2(runs, tmp_path / "f2.png", labels=["A", "B"])
    p3 = figure3(runs, tmp_path / "f3.png")
    for p in (p2, p3):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_not_a_run_dir(tmp_path):
    with pytest.raises(DataError, match="is not a run directory"):
        figure2([tmp_path], tmp_path / "x.png")


def test_plot_command(tmp_path, capsys):
    r = _run(tmp_path, "a")
    assert main(["plot", str(r), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "fig2.png").is_file() and (tmp_path / "figs" / "fig3.png").is_file()
    assert main(["plot", str(r), "--out", str(tmp_path / "one.png")]) == 2
    assert "choose --figure 2 or --figure 3" in capsys.readouterr().err
    assert main(["plot", str(r), "--figure", "3", "--out", str(tmp_path / "one.png")]) == 0
