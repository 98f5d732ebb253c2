"""Finished runs kept as one small gzipped JSON file, so that a comparison can span sessions and machines.

A comparison of issue 31 (``shf compare`` over several seeds and a learning-rate sweep, each run
a quarter or half hour on one core) takes longer than a working session, and run directories
(checkpoints, weights, per-iteration metrics) are not kept in git. :func:`pack` keeps what a
report reads of each *finished* run under a root (its configuration, summary, environment and
the metrics thinned to the error curves); :func:`unpack` writes those runs back as run
directories without checkpoints or weights, which ``shf compare`` then reuses as finished runs
(``--report-only`` or a resumed queue).

Thinning keeps every row where the running minimum of the validation error falls (so the first
time a validation target is reached is kept), up to :data:`EVAL_ROWS` evenly spaced rows with a
test error (the curves in the figures), and the first and last rows; of each row only the
iteration, the optimiser clock (to the millisecond) and the error and accuracy columns, rounded
down to 7 significant digits (so a run still reaches a target equal to its own best). The
summaries, which the tables' errors come from, are kept exactly.

    python -m shf.experiments.archive pack runs/fair/usps docs/results/fair/usps/runs.json.gz
    python -m shf.experiments.archive unpack docs/results/fair/usps/runs.json.gz runs/fair/usps
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shf import config as cfgmod
from shf.errors import ShfError
from shf.experiments.run import is_finished
from shf.runlog import read_json, read_metrics

FORMAT = 1
EVAL_ROWS = 200
"""Rows with a test error kept per run at most (evenly spaced; the figures' curves)."""
_ERROR_DIGITS = 7
_FILES = ("config", "run", "env", "summary")


def _keep_key(k: str) -> bool:
    """The columns kept: the clock, the iteration and the error and accuracy curves (not the
    ``*_no_half`` doubles, which the summary holds at the best iteration)."""
    return k in ("iteration", "time_s") or (
        ("error" in k or "accuracy" in k) and not k.endswith("_no_half") and not k.startswith("best_")
    )


def _floor_digits(x: float) -> float:
    """``x`` to :data:`_ERROR_DIGITS` significant digits, never above ``x``: a run that reached a
    validation target still reaches it after rounding (a target may equal a run's own best)."""
    if not math.isfinite(x) or x == 0.0:
        return x
    r = float(f"{x:.{_ERROR_DIGITS}g}")
    if r > x:
        r -= 10.0 ** (math.floor(math.log10(abs(x))) - _ERROR_DIGITS + 1)
    return r


def _compact(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, x in r.items():
        if not _keep_key(k) or x is None:
            continue
        if isinstance(x, float):
            x = round(x, 3) if k == "time_s" else _floor_digits(x)
        out[k] = x
    return out


def thin(metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``metrics`` a report and its figures read (see the module's docstring)."""
    evals = [i for i, r in enumerate(metrics) if r.get("test_error") is not None]
    step = max(1, math.ceil(len(evals) / EVAL_ROWS))
    keep = set(evals[::step]) | {0, len(metrics) - 1}
    best = math.inf
    for i, r in enumerate(metrics):
        v = r.get("val_error")
        if v is not None and v < best:
            best = float(v)
            keep.add(i)
    return [_compact(metrics[i]) for i in sorted(keep) if 0 <= i < len(metrics)]


def finished_runs(root: Path) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """``(directory, configuration, summary)`` of the runs under ``root`` that finished, by the rule
    ``shf compare`` reuses a run by (:func:`shf.experiments.run.is_finished`: not interrupted, and
    not an extension to a longer budget killed before its own summary)."""
    found = []
    for summary_path in sorted(root.rglob("summary.json")):
        d = summary_path.parent
        if not (d / "config.json").is_file() or d == root:
            continue
        summary = read_json(summary_path, "run's summary")
        config = read_json(d / "config.json", "run's configuration")
        if is_finished(summary, cfgmod.from_dict(cfgmod.restore_infinities(config))):
            found.append((d, config, summary))
    return found


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"format": FORMAT, "runs": {}}
    try:
        rec = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
    except (OSError, ValueError) as e:
        raise ShfError(f"{path} is not a run archive of format {FORMAT} ({e})") from e
    if not isinstance(rec, dict):
        raise ShfError(f"{path} is not a run archive of format {FORMAT}")
    if rec.get("format") != FORMAT or not isinstance(rec.get("runs"), dict):
        raise ShfError(f"{path} is not a run archive of format {FORMAT}")
    return rec


def pack(root: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Add the finished runs under ``root`` to the archive ``dest`` (created if missing; a run
    already in it is replaced by the one on disk). Returns the runs added, as paths relative to
    ``root``."""
    root, dest = Path(root), Path(dest)
    rec = _load(dest)
    added = []
    for d, config, summary in finished_runs(root):
        rel = d.relative_to(root).as_posix()
        entry: dict[str, Any] = {"config": config, "summary": summary}
        for name in ("run", "env"):
            p = d / f"{name}.json"
            if p.is_file():
                entry[name] = read_json(p, f"run's {name}")
        entry["metrics"] = thin(read_metrics(d)) if (d / "metrics.jsonl").is_file() else []
        rec["runs"][rel] = entry
        added.append(rel)
    rec["runs"] = dict(sorted(rec["runs"].items()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    text = json.dumps(rec, separators=(",", ":"), allow_nan=True) + "\n"
    tmp.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    os.replace(tmp, dest)
    return added


def unpack(src: str | os.PathLike[str], root: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Write the archived runs of ``src`` as run directories under ``root``. A directory that
    already holds a run is left as it is (never overwritten). Returns (written, skipped)."""
    if not Path(src).is_file():
        raise ShfError(f"no run archive at {src}")
    rec = _load(Path(src))
    root = Path(root)
    written, skipped = [], []
    for rel, entry in rec["runs"].items():
        d = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ShfError(f"{src}: run path {rel!r} leaves the root")
        if (d / "config.json").exists() or (d / "summary.json").exists():
            skipped.append(rel)
            continue
        d.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            if name in entry:
                (d / f"{name}.json").write_text(json.dumps(entry[name], indent=2) + "\n", encoding="utf-8")
        lines = "".join(json.dumps(r) + "\n" for r in entry.get("metrics", []))
        (d / "metrics.jsonl").write_text(lines, encoding="utf-8")
        written.append(rel)
    return written, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """``pack ROOT ARCHIVE`` or ``unpack ARCHIVE ROOT``."""
    p = argparse.ArgumentParser(prog="python -m shf.experiments.archive", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack", help="add the finished runs under ROOT to ARCHIVE")
    a.add_argument("root")
    a.add_argument("archive")
    b = sub.add_parser("unpack", help="write ARCHIVE's runs under ROOT (existing runs are kept)")
    b.add_argument("archive")
    b.add_argument("root")
    args = p.parse_args(argv)
    try:
        if args.cmd == "pack":
            added = pack(args.root, args.archive)
            print(f"{args.archive}: {len(added)} finished run(s) from {args.root}")
        else:
            written, skipped = unpack(args.archive, args.root)
            print(f"{args.root}: {len(written)} run(s) written, {len(skipped)} already there")
    except ShfError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
