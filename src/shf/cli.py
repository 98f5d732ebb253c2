"""The ``shf`` command line: ``shf train`` (more sub-commands to come).

Library code never prints; this module owns the progress bar and the final report.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shf import config as cfgmod
from shf.errors import ShfError

log = logging.getLogger("shf")


def _encoder(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--encoder must be comma-separated integers such as 784,400,6, got {text!r}"
        ) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--encoder needs at least two positive sizes, got {text!r}")
    return sizes


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shf",
        description="Stochastic Hessian-free optimisation with LSMR (Emirahmetoglu & Stewart 2025).",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train an autoencoder with SHF-LSMR",
        description=(
            "Train with SHF-LSMR and write a run directory (config.json, env.json, metrics.jsonl, "
            "weights.pt, summary.json). With no arguments: the CURVES architecture on a seeded "
            "synthetic CURVES set, capped at 300 s of optimiser time."
        ),
    )
    t.add_argument(
        "--config",
        default="default",
        help=f"a TOML file or a built-in preset ({', '.join(cfgmod.preset_names())}); default: default",
    )
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config value, e.g. --set optimizer.lambda1=3 (repeatable)",
    )
    t.add_argument("--out", default=None, help="run directory (default: runs/<name>-<timestamp>)")
    t.add_argument("--seed", type=int, default=None, help="seed of initialisation and batches")
    t.add_argument("--max-time", type=_positive_float, default=None, help="optimiser time limit, seconds")
    t.add_argument("--max-iters", type=int, default=None, help="HF iteration limit")
    t.add_argument("--encoder", type=_encoder, default=None, help="encoder sizes, e.g. 784,400,200,6")
    t.add_argument("--dtype", choices=cfgmod.DTYPES, default=None)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = t.add_argument_group("data")
    d.add_argument("--dataset", default=None, help="curves, mnist, fashion-mnist, mnist-t10k, usps or own")
    d.add_argument(
        "--data",
        dest="data_file",
        default=None,
        metavar="FILE",
        help="your own .npy/.npz/.csv/.csv.gz file, one example per row (sets --dataset own)",
    )
    d.add_argument("--data-path", default=None, help="file or directory of a named data set")
    d.add_argument("--data-dir", default=None, help="download cache (default $SHF_DATA_DIR or ~/.cache/shf)")
    d.add_argument("--label-column", default=None, help="column (name or index) of your file to drop")
    d.add_argument("--scale-255", action="store_true", help="your file holds 0..255 values: divide by 255")
    d.add_argument(
        "--fractions", default=None, help="train,val,test fractions of your file (default 0.8,0.1,0.1)"
    )
    return p


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    o: list[str] = []
    if args.seed is not None:
        o.append(f"run.seed={args.seed}")
    if args.max_time is not None:
        o.append(f"run.max_time={args.max_time!r}")
    if args.max_iters is not None:
        o.append(f"run.max_iters={args.max_iters}")
    if args.encoder is not None:
        o.append(f"model.encoder={args.encoder}")
    if args.dtype is not None:
        o.append(f'run.dtype="{args.dtype}"')
    if args.threads is not None:
        o.append(f"run.threads={args.threads}")
    if args.device is not None:
        o.append(f'run.device="{args.device}"')
    if args.dataset is not None:
        o.append(f'data.dataset="{args.dataset}"')
    if args.data_file is not None:
        o += ['data.dataset="own"', f"data.path={json.dumps(args.data_file)}"]
    if args.data_path is not None:
        o.append(f"data.path={json.dumps(args.data_path)}")
    if args.data_dir is not None:
        o.append(f"data.cache_dir={json.dumps(args.data_dir)}")
    if args.label_column is not None:
        lc = args.label_column
        o.append(f"data.label_column={lc if lc.lstrip('-').isdigit() else json.dumps(lc)}")
    if args.scale_255:
        o.append("data.scale_255=true")
    if args.fractions is not None:
        o.append(f"data.fractions=[{args.fractions}]")
    return o


def _fmt(x: Any, spec: str = ".4g") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and x is not None else "-"


class ProgressBar:
    """A tqdm bar whose postfix shows the state of the latest HF iteration."""

    def __init__(self, total: int, max_time: float, disable: bool, desc: str = "SHF-LSMR") -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=disable, unit="it", dynamic_ncols=True, file=sys.stderr)
        self.bar.set_description(f"{desc} (<= {max_time:g}s)" if math.isfinite(max_time) else desc)
        self.last_train: Any = None

    def __call__(self, rec: dict[str, Any]) -> None:
        if rec.get("train_error") is not None:
            self.last_train = rec["train_error"]
        self.bar.update(1)
        self.bar.set_postfix_str(
            f"n={rec['n']} λ={rec['lam']:.3g} lsmr={rec['lsmr_iterations']}/{rec['lsmr_stop']} "
            f"train={_fmt(self.last_train)} val={rec['val_error']:.4g} t={rec['time_s']:.0f}s",
            refresh=False,
        )

    def close(self) -> None:
        self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from shf import runlog
    from shf.experiments.run import describe, prepare_data, run_experiment
    from shf.models.autoencoder import Autoencoder

    cfg = cfgmod.load(args.config, [*args.overrides, *_flag_overrides(args)])
    out = Path(args.out) if args.out else runlog.default_run_dir(cfg.name)
    t0 = time.perf_counter()
    data = prepare_data(cfg)
    n_params = Autoencoder(tuple(cfg.model.encoder)).n_params()
    print(
        f"shf train: {data.name}, train/val/test = {len(data.train)}/{len(data.val)}/{len(data.test)}, "
        f"encoder {'-'.join(map(str, cfg.model.encoder))} ({n_params:,} weights), {cfg.run.dtype}, "
        f"data ready in {time.perf_counter() - t0:.1f}s -> {out}",
        file=sys.stderr,
    )
    bar = ProgressBar(cfg.run.max_iters, cfg.run.max_time, args.no_progress)
    try:
        summary = run_experiment(cfg, out, data=data, on_iteration=bar)
    finally:
        bar.close()
    print(describe(summary) + f"\n  run directory: {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            return cmd_train(args)
    except ShfError as e:
        print(f"shf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shf: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
