"""Where shf stands on a preset's task: a stored comparison against the fair Adam.

``shf train`` on a preset that has a stored table (``standing/<preset>.json``, made from a
``shf compare --seeds ... --target-from adam`` record by :func:`from_compare`) prints, after its
own result, the means over seeds of SHF's defaults and of the fair Adam (learning rate and
objective swept, same start and objective choice, same clock) on that task, with the command
that made them, so a user can tell at once whether their run is typical and what the baseline
would have given. The table is shown only when the run's configuration is the preset's on
everything that changes the result (seed, thread count and output aside).

``python -m shf.experiments.standing COMPARE_JSON --command CMD [--machine TEXT]`` prints the
stored form of a comparison record.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from shf import config as cfgmod
from shf.errors import ConfigError

#: Settings that do not change what a run computes on one machine (the seed is averaged over).
IGNORED = ("run.seed", "data.seed", "run.threads", "run.device")


@dataclass(frozen=True)
class StandingRow:
    """One method's result over the seeds: the mean test error (paper scale, or the
    cross-entropy of a classifier) with the half-width of its 95% t-interval (``None`` for one
    seed), and what the method was (``label``: its learning rate and objective where swept)."""

    method: str
    label: str
    test_error: float
    test_ci95: float | None
    best_val_error: float
    seeds: int


@dataclass(frozen=True)
class Standing:
    """A stored comparison on the task of ``preset``: ``budget_s`` optimiser seconds per run,
    one thread, over ``seeds``, on ``machine``; ``command`` made it."""

    preset: str
    budget_s: float
    seeds: tuple[int, ...]
    machine: str
    command: str
    rows: tuple[StandingRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standing:
        rows = tuple(StandingRow(**r) for r in d["rows"])
        return cls(**{**d, "seeds": tuple(d["seeds"]), "rows": rows})

    def describe(self) -> str:
        """The lines ``shf train`` prints under its own result."""
        cells = ", ".join(
            f"{r.label} {r.test_error:.4f}" + (f" ± {r.test_ci95:.4f}" if r.test_ci95 is not None else "")
            for r in self.rows
        )
        return (
            f"  on this task, stored ({len(self.seeds)} seeds, {self.budget_s:g} s each, one thread, "
            f"{self.machine}): test {cells} (means, 95% t-intervals)\n"
            f"    made by: {self.command}"
        )


def _label(row: dict[str, Any]) -> str:
    said = [f"lr {row['lr']:g}"] if row.get("lr") else []
    said += [f"on {row['objective']}"] if row.get("objective") and row.get("lr") else []
    name = "SHF (defaults)" if row["method"].startswith("shf") else row["method"].replace("adam", "Adam")
    return name + (f" ({', '.join(said)})" if said else "")


def from_compare(record: dict[str, Any], preset: str, command: str, machine: str) -> Standing:
    """The stored form of a ``shf compare`` record (``compare.json``) over several seeds."""
    rows = []
    for r in record["rows"]:
        test = r["over_seeds"]["test_error"]
        rows.append(StandingRow(
            method=r["method"], label=_label(r), test_error=float(test["mean"]),
            test_ci95=None if test["ci95"] is None else float(test["ci95"]),
            best_val_error=float(r["over_seeds"]["best_val_error"]["mean"]), seeds=int(test["n"]),
        ))  # fmt: skip
    return Standing(
        preset=preset, budget_s=float(record["budget_s"]), seeds=tuple(record["seeds"]),
        machine=machine, command=command, rows=tuple(rows),
    )  # fmt: skip


def stored(preset: str) -> Standing | None:
    """The stored table of ``preset``, or ``None`` when there is none."""
    f = resources.files("shf.experiments").joinpath("standing", f"{preset}.json")
    if not f.is_file():
        return None
    return Standing.from_dict(json.loads(f.read_text()))


def for_run(cfg: cfgmod.ExperimentConfig, method: str) -> Standing | None:
    """The stored table of the run's preset when the run is that preset's SHF run on everything
    that changes its result (:data:`IGNORED` aside) and ran for the table's budget."""
    if method != "shf-lsmr" or cfg.name not in cfgmod.preset_names():
        return None
    table = stored(cfg.name)
    if table is None or cfg.run.max_time != table.budget_s:
        return None
    from shf.experiments.run import config_differences

    preset = cfgmod.load(cfg.name)
    differ = [k for k in config_differences(cfg.to_dict(), preset) if k not in IGNORED]
    return None if differ else table


def machine() -> str:
    """This machine's processor, as ``/proc/cpuinfo`` names it where it can."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shf.experiments.standing", description=__doc__)
    p.add_argument("compare_json")
    p.add_argument("--preset", default="default")
    p.add_argument("--command", required=True, help="the command that made the comparison")
    p.add_argument("--machine", default=None, help="default: this machine's processor")
    a = p.parse_args(argv)
    with open(a.compare_json) as f:
        record = json.load(f)
    if len(record.get("seeds", [])) < 2:
        raise ConfigError("a stored table needs a comparison over several seeds")
    st = from_compare(record, a.preset, a.command, a.machine or machine())
    json.dump(st.to_dict(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
