"""The run archive: finished runs packed into one JSON file and written back as run directories
that `shf compare --report-only` tabulates exactly as the originals."""

from __future__ import annotations

import gzip
import json

import pytest

from shf.cli import main
from shf.errors import ShfError
from shf.experiments.archive import EVAL_ROWS, pack, thin, unpack
from shf.experiments.archive import main as archive_main
from shf.experiments.compare import _time_to


def test_thin_keeps_every_new_best_validation_and_every_test_row():
    rows = [{"iteration": i, "time_s": float(i), "loss": 1.0, "lam": 2.0, "val_error": v,
             "test_error": (v + 1 if i % 3 == 0 else None)}
            for i, v in enumerate([9.0, 8.0, 8.5, 7.0, 7.5, 7.2, 6.0, 6.5, 6.4])]  # fmt: skip
    kept = thin(rows)
    assert [r["iteration"] for r in kept] == [0, 1, 3, 6, 8]  # new bests 0,1,3,6; tests 0,3,6; last 8
    assert all(set(r) <= {"iteration", "time_s", "val_error", "test_error"} for r in kept)
    assert [r.get("test_error") for r in kept] == [10.0, None, 8.0, 7.0, None]
    for target in (9.0, 8.2, 7.0, 6.9, 6.0, 5.0):  # the time to any validation target is exact
        assert _time_to(kept, "val_error", target) == _time_to(rows, "val_error", target)


def test_rounding_never_lifts_an_error_above_a_target_it_reached():
    rows = [{"iteration": 0, "time_s": 0.12345678, "val_error": 0.21791234567891},
            {"iteration": 1, "time_s": 1.0, "val_error": 1 / 3}]  # fmt: skip
    kept = thin(rows)
    assert kept[0]["time_s"] == 0.123
    for r, k in zip(rows, kept):
        assert k["val_error"] <= r["val_error"] and k["val_error"] == pytest.approx(r["val_error"], rel=1e-6)
    assert _time_to(kept, "val_error", 1 / 3) == 0.123
    many = [{"iteration": i, "time_s": float(i), "val_error": 1.0, "test_error": 1.0} for i in range(1000)]
    assert len(thin(many)) == EVAL_ROWS + 1  # evenly spaced test rows, and the last


def _write(path, rec):
    path.write_bytes(gzip.compress(json.dumps(rec).encode()))


def _run(d, stop="max_time", metrics=3):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"run": {"max_time": 1.0}}))
    (d / "summary.json").write_text(json.dumps({"stop_reason": stop, "val_error": 1.0}))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i, "val_error": 5.0 - i}) + "\n"
                                             for i in range(metrics)))  # fmt: skip


def test_pack_takes_finished_runs_only_and_unpack_never_overwrites(tmp_path):
    root, arc = tmp_path / "runs", tmp_path / "a" / "runs.json.gz"
    _run(root / "sweep" / "adam-lr1")
    _run(root / "runs" / "shf", stop="interrupted")
    killed = root / "runs" / "extended"  # an extension to 2 s killed before its own summary
    _run(killed)
    (killed / "config.json").write_text(json.dumps({"run": {"max_time": 2.0}}))
    (killed / "summary.json").write_text(json.dumps({"stop_reason": "max_time", "optimizer_time_s": 1.0}))
    assert pack(root, arc) == ["sweep/adam-lr1"]
    _run(root / "runs" / "adam")
    assert pack(root, arc) == ["runs/adam", "sweep/adam-lr1"]  # merged: the file keeps both
    assert list(json.loads(gzip.decompress(arc.read_bytes()))["runs"]) == ["runs/adam", "sweep/adam-lr1"]
    back = tmp_path / "back"
    _run(back / "runs" / "adam", metrics=1)  # a run already there is kept as it is
    written, skipped = unpack(arc, back)
    assert (written, skipped) == (["sweep/adam-lr1"], ["runs/adam"])
    assert len((back / "runs" / "adam" / "metrics.jsonl").read_text().splitlines()) == 1
    got = back / "sweep" / "adam-lr1"
    assert json.loads((got / "summary.json").read_text()) == {"stop_reason": "max_time", "val_error": 1.0}
    assert len((got / "metrics.jsonl").read_text().splitlines()) == 3


def test_unpack_refuses_a_path_that_leaves_the_root_and_a_foreign_file(tmp_path):
    bad = tmp_path / "bad.json"
    _write(bad, {"format": 1, "runs": {"../x": {"summary": {}}}})
    with pytest.raises(ShfError, match="leaves the root"):
        unpack(bad, tmp_path / "r")
    assert not (tmp_path / "x").exists()
    other = tmp_path / "other.json"
    _write(other, {"rows": []})
    with pytest.raises(ShfError, match="not a run archive"):
        unpack(other, tmp_path / "r")
    other.write_text(json.dumps({"format": 1, "runs": {}}))  # not gzipped
    with pytest.raises(ShfError, match="not a run archive"):
        unpack(other, tmp_path / "r")
    assert archive_main(["unpack", str(tmp_path / "missing.json"), str(tmp_path / "r")]) == 2


@pytest.mark.slow  # about 30-40 s (several spawned runs); `python -m pytest -m slow`
def test_unpacked_runs_make_the_same_report(tmp_path):
    out = tmp_path / "cmp"
    common = ["compare", "--budget", "1.0", "--encoder", "784,16,6", "--set", "data.n_train=200",
              "--set", "data.n_val=60", "--set", "data.n_test=60", "--set", "optimizer.n1=40",
              "--lrs", "1e-3", "--set", "first_order.batch_size=50", "--baseline-losses", "squared",
              "--methods", "shf-lsmr,adam", "--seeds", "0,1", "--target-from", "adam"]  # fmt: skip
    assert main([*common, "--out", str(out)]) == 0
    assert archive_main(["pack", str(out), str(tmp_path / "runs.json.gz")]) == 0
    assert archive_main(["unpack", str(tmp_path / "runs.json.gz"), str(tmp_path / "back")]) == 0
    assert not list((tmp_path / "back").rglob("*.pt"))  # no checkpoints or weights
    assert main([*common, "--out", str(tmp_path / "back"), "--report-only"]) == 0
    a, b = (json.loads((d / "compare.json").read_text()) for d in (out, tmp_path / "back"))
    _same(a, b, str(out), str(tmp_path / "back"))


def _same(a, b, path_a: str, path_b: str, key: str = "") -> None:
    """Equal records, but for the run paths and the times to the target (and their ratios),
    which come from the curves' clock kept to the millisecond: within 2 ms or 5% (the runs here
    last 1 s and reach the target within hundredths of a second, where a millisecond is a few
    percent of a ratio)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), key
        for k in a:
            _same(a[k], b[k], path_a, path_b, f"{key}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), key
        for x, y in zip(a, b):
            _same(x, y, path_a, path_b, key)
    elif isinstance(a, str):
        assert a.replace(path_a, "") == b.replace(path_b, ""), key
    elif isinstance(a, float) and "time" in key:
        assert b == pytest.approx(a, rel=0.05, abs=2e-3), key
    else:
        assert a == b, key
