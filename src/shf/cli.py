"""The ``shf`` command line: ``shf train``, ``reproduce``, ``compare``, ``plot`` and ``bench``.

Library code never prints; this module owns the progress bar and the final report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shf import config as cfgmod
from shf.errors import InterruptedRunError, ShfError
from shf.experiments.stop import StopRequest

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


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


# Flags mapped one to one onto a config key (in the order they are applied), then the
# data-file flags that need more than a copy.
_SIMPLE_FLAGS = (
    ("seed", "run.seed"), ("max_time", "run.max_time"), ("max_iters", "run.max_iters"),
    ("encoder", "model.encoder"), ("dtype", "run.dtype"), ("threads", "run.threads"),
    ("device", "run.device"), ("dataset", "data.dataset"), ("task", "model.task"), ("arch", "model.arch"),
)  # fmt: skip
_PATH_FLAGS = (("data_path", "data.path"), ("data_dir", "data.cache_dir"))
_FLAG_NAMES = frozenset(
    [f for f, _ in _SIMPLE_FLAGS + _PATH_FLAGS] + ["data_file", "label_column", "scale_255", "fractions"]
)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """The data-set flags shared by ``train`` and ``compare``."""
    m = p.add_argument_group("task")
    m.add_argument(
        "--task",
        choices=["autoencoder", "classify"],
        default=None,
        help="autoencoder (the paper's) or classify (labels of usps or mnist-t10k, softmax cross-entropy)",
    )
    m.add_argument(
        "--arch", choices=["mlp", "cnn", "transformer"], default=None,
        help="classifier (with --task classify)",
    )
    d = p.add_argument_group("data")
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
    t.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint, with its stored configuration "
        "(only --max-time and --max-iters may change)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace what --out DIR holds")
    t.add_argument(
        "--dist-timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="under torchrun: seconds a collective waits for the other processes before the job fails "
        "(a process that died or hangs; default 300)",
    )
    t.add_argument("--seed", type=int, default=None, help="seed of initialisation and batches")
    t.add_argument("--max-time", type=_positive_float, default=None, help="optimiser time limit, seconds")
    t.add_argument("--max-iters", type=int, default=None, help="HF iteration limit")
    t.add_argument("--encoder", type=_encoder, default=None, help="encoder sizes, e.g. 784,400,200,6")
    t.add_argument("--dtype", choices=cfgmod.DTYPES, default=None)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--method", default="shf-lsmr", help="shf-lsmr (default), shf-cg, martens-hf, adam or sgd")
    _add_data_args(t)

    r = sub.add_parser("reproduce", help="reproduce the paper's experiments")
    rsub = r.add_subparsers(dest="what", required=True)
    t2 = rsub.add_parser(
        "table2",
        help="SHF-LSMR over several seeds per data set, table beside the paper's Table 2",
        description=(
            "Runs the curves/mnist/usps presets for each seed (resuming finished runs), then writes "
            "table2.md, table2.json and Figures 2-3 per data set into --out."
        ),
    )
    t2.add_argument("--datasets", default="curves,mnist,usps", help="comma-separated: curves,mnist,usps")
    t2.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default 0-4, as the paper)")
    t2.add_argument(
        "--max-time",
        type=_positive_float,
        default=1200.0,
        help="optimiser time cap per run, seconds (default 1200)",
    )
    t2.add_argument(
        "--mnist", default="auto", help="MNIST row data: auto, mnist, fashion-mnist or mnist-t10k"
    )
    t2.add_argument("--out", default="runs/table2", help="output directory (default runs/table2)")
    t2.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value in every run (repeatable)",
    )
    t2.add_argument("--no-progress", action="store_true")
    t2.add_argument(
        "--overwrite", action="store_true", help="replace runs under --out made with another configuration"
    )
    t2.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tabulate and plot every finished run under --out/runs",
    )

    c = sub.add_parser(
        "compare",
        help="several methods on the same data, architecture, seed and time budget",
        description="Runs each method (in its own process, to measure peak memory) and writes "
        "compare.md, compare.json and compare.png into --out.",
    )
    c.add_argument("--config", default="default", help="preset or TOML file for data, model and settings")
    c.add_argument(
        "--methods",
        default="shf-lsmr,shf-cg,martens-hf,adam,sgd",
        help="comma-separated: shf-lsmr, shf-cg, martens-hf, adam, sgd, and shf-tuned (SHF-LSMR with "
        "the config's settings overlaid by the measured-best ones)",
    )
    c.add_argument("--budget", type=_positive_float, default=300.0, help="optimiser seconds per method")
    c.add_argument(
        "--target",
        type=float,
        default=None,
        help="target test error (paper scale); default: the worst final test error",
    )
    c.add_argument(
        "--hf-loss",
        choices=["cross_entropy", "squared"],
        default="cross_entropy",
        help="Martens HF's training objective (default: cross-entropy, as Martens)",
    )
    c.add_argument(
        "--baseline-losses",
        default=None,
        help="comma-separated objectives each first-order baseline sweeps on an autoencoder, the best "
        "validation error winning (default: squared,cross_entropy: the baseline gets every objective "
        "SHF may use)",
    )
    c.add_argument(
        "--weight-decays",
        default=None,
        help="comma-separated weight decays (first_order.weight_decay, the coupled L2 decay that is SHF's "
        "weight cost) each first-order baseline then sweeps at its chosen rate and objective, the best "
        "validation error winning among them and the configuration's own (default: no sweep)",
    )
    c.add_argument(
        "--sweep-fraction",
        type=_positive_float,
        default=1.0,
        help="fraction of the budget per learning rate in the first-order sweep (default 1: the whole "
        "budget, choosing by the best validation error reached; the chosen rate's run is then the "
        "first seed's run)",
    )
    c.add_argument(
        "--lrs",
        default=None,
        help="comma-separated learning rates of the first-order sweep (default: adam 3e-4,1e-3,3e-3,1e-2; "
        "sgd 3e-3,1e-2,3e-2,1e-1)",
    )
    c.add_argument(
        "--eval-every",
        type=_positive_int,
        default=1,
        help="train and test errors every N iterations (default 1; the validation error is recorded "
        "every iteration; a test-error target is then reached on that grid)",
    )
    c.add_argument("--out", default="runs/compare", help="output directory")
    c.add_argument("--seeds", default=None, help="comma-separated seeds; every method runs once per seed")
    c.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tabulate and plot the finished runs of this configuration under --out",
    )
    c.add_argument(
        "--target-from",
        default=None,
        metavar="METHOD",
        help="the target is METHOD's best validation error (mean over seeds), reached by validation error",
    )
    c.add_argument(
        "--overwrite", action="store_true", help="replace runs under --out made with another configuration"
    )
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    c.add_argument("--encoder", type=_encoder, default=None, help="encoder sizes, e.g. 784,400,200,6")
    _add_data_args(c)

    _add_bench_parser(sub)

    pl = sub.add_parser(
        "plot",
        help="Figures 2 and 3 from run directories",
        description="Figure 2: train (dotted) and test (solid) error vs time; "
        "Figure 3: mini-batch size vs time. Runs are overlaid.",
    )
    pl.add_argument("runs", nargs="+", help="run directories (with metrics.jsonl)")
    pl.add_argument("--figure", choices=["2", "3", "both"], default="both")
    pl.add_argument("--out", default=".", help="output directory (fig2.png, fig3.png) or a .png path")
    pl.add_argument("--labels", default=None, help="comma-separated legend labels, one per run")
    pl.add_argument("--title", default=None)
    pl.add_argument("--no-half", action="store_true", help="plot the no-1/2 scale")
    return p


def _add_bench_parser(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="benchmarks: curvature products, a whole HF iteration, memory",
        description="Benchmarks print numbers against a baseline measured in the same run. "
        "--out DIR also writes <name>.json and <name>.md there.",
    )
    bsub = b.add_subparsers(dest="bench", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of the markdown summary")
    common.add_argument(
        "--out", default=None, help="also write the JSON and markdown files into this directory"
    )
    common.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")

    k = bsub.add_parser(
        "kernels",
        parents=[common],
        help="products (Alg. 4 + 5) in GFLOP/s against the same-shape matrix-product ceiling",
        description="Per architecture, batch size and dtype: one LSMR iteration's products (forward + "
        "reverse mode) in GFLOP/s and as a ratio of the matrix-product throughput measured in the "
        "same run on the same shapes; the preconditioner, gradient and batch-size statistics as "
        "multiples of one forward pass.",
    )
    k.add_argument("--archs", default="curves,mnist,usps", help="comma-separated: curves, mnist, usps")
    k.add_argument("--sizes", default="250,1000,2500,6000", help="comma-separated batch sizes")
    k.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32, float64")
    k.add_argument(
        "--min-time",
        type=_positive_float,
        default=0.5,
        help="seconds of repeated calls per timing (default 0.5)",
    )
    k.add_argument(
        "--no-generic",
        action="store_true",
        help="skip timing the generic torch.func products against the hand-written ones",
    )

    s = bsub.add_parser(
        "solve",
        parents=[common],
        help="time per HF iteration on the paper's configurations, and where it goes",
        description="Runs SHF-LSMR for --iters HF iterations per configuration and phase (start: "
        "n = n1; n_max: the batch at its cap) and breaks the time per iteration down into products, "
        "LSMR's vector work, merit evaluations, validation, line search, preconditioner, forward "
        "pass, batch statistics and the rest.",
    )
    s.add_argument(
        "--configs",
        default="curves,mnist,usps",
        help="comma-separated presets or TOML files, each optionally with overrides of its own: "
        "classify-usps:model.arch=cnn",
    )
    s.add_argument("--iters", type=int, default=10, help="HF iterations timed per case (default 10)")
    s.add_argument("--phases", default="start,n_max", help="comma-separated: start, n_max")
    s.add_argument(
        "--paths",
        default="hand-written",
        help="comma-separated, for an autoencoder: hand-written (Alg. 4, 5), generic (the same module "
        "through torch.func), sequential (the network as nn.Sequential of nn.Linear, through torch.func); "
        "a classifier runs on its own module through torch.func",
    )
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")

    m = bsub.add_parser(
        "memory",
        parents=[common],
        help="peak resident memory of SHF-LSMR and Martens HF on the same configuration",
        description="Each method runs in its own process; also a baseline process (data and "
        "weights only) and the resident memory across many LSMR iterations.",
    )
    m.add_argument("--config", default="mnist", help="preset or TOML file (default mnist)")
    m.add_argument("--methods", default="shf-lsmr,martens-hf", help="comma-separated methods")
    m.add_argument(
        "--iters",
        type=int,
        default=5,
        help="HF iterations per method (default 5); on MNIST one Martens HF iteration (up to 250 CG "
        "iterations on 12,500 cases) takes minutes: --set hf.maxiter=50 caps it",
    )
    m.add_argument("--growth-iters", type=int, default=200, help="LSMR iterations of the growth check")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")


def _words(text: str) -> list[str]:
    """The comma-separated items of ``text``; a comma inside brackets or quotes belongs to its
    item (``classify-usps:model.hidden=[32,16],usps`` is two configurations)."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [v.strip() for v in items if v.strip()]


def _bench_solve(args: argparse.Namespace, progress: Any) -> tuple[dict[str, Any], str]:
    from shf.bench import solve

    record = solve.bench_solve(
        _words(args.configs), iters=args.iters, phases=_words(args.phases),
        overrides=args.overrides, paths=_words(args.paths), progress=progress,
    )  # fmt: skip
    return record, solve.markdown(record)


def _bench_memory(args: argparse.Namespace, progress: Any) -> tuple[dict[str, Any], str]:
    from shf.bench import memory

    record = memory.bench_memory(
        args.config, methods=_words(args.methods), iters=args.iters, overrides=args.overrides,
        threads=args.threads, growth_iters=args.growth_iters, progress=progress,
    )  # fmt: skip
    return record, memory.markdown(record)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from shf.bench.common import write_outputs

    if args.threads is not None:
        cfgmod.check_threads(args.threads, "--threads")
        torch.set_num_threads(args.threads)
    record: dict[str, Any]
    if args.bench == "kernels":
        from shf.bench import kernels as kb

        archs, dtypes = _words(args.archs), _words(args.dtypes)
        sizes = _ints(args.sizes, "--sizes")
        total = len(archs) * len(sizes) * len(dtypes)
        with tqdm(total=total, disable=args.no_progress, desc="bench kernels", file=sys.stderr) as bar:

            def on_case(case: dict[str, Any]) -> None:
                bar.write(kb.format_case(case), file=sys.stderr)
                bar.update(1)

            record = kb.bench_kernels(
                archs, sizes, dtypes, min_time=args.min_time, progress=on_case, generic=not args.no_generic
            )
        md = kb.markdown(record)
        printed: Any = kb.json_rows(record)
    else:
        with tqdm(disable=args.no_progress, desc=f"bench {args.bench}", file=sys.stderr, unit="case") as bar:

            def on_line(msg: str) -> None:
                bar.write(msg, file=sys.stderr)
                bar.update(1)

            record, md = (
                _bench_solve(args, on_line) if args.bench == "solve" else _bench_memory(args, on_line)
            )
        printed = record
    if args.out:
        written = write_outputs(args.out, args.bench, record, md)
        if args.bench == "solve":
            from shf.plots import time_breakdown

            written.append(time_breakdown(record, Path(args.out) / "solve.png"))
        print("written: " + ", ".join(map(str, written)), file=sys.stderr)
    if args.json:
        from shf.runlog import jsonable

        print(json.dumps(jsonable(printed), indent=2))
    else:
        print(md, end="")
    return 0


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ShfError(f"{what} must be comma-separated integers, got {text!r}") from None


def _seeds(text: str, what: str) -> list[int]:
    """Comma-separated seeds, each in ``[0, 2**63)``, at least one."""
    seeds = _ints(text, what)
    if not seeds:
        raise ShfError(f"{what} names no seed ({text!r}); e.g. {what} 0,1,2")
    for v in seeds:
        cfgmod.check_seed(v, f"{what}: each seed")
    return seeds


def _check_out_dir(out: Path, flag: str = "--out") -> None:
    """Refuse an output directory that cannot be one: it, or a folder above it, is a file."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"is under {p}, which is a file"
                raise ShfError(f"{flag} {out} {what}, not a directory: give a directory")
            return


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ShfError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ShfError(f"{what} must be positive numbers, got {text!r}")
    return values


def cmd_reproduce(args: argparse.Namespace) -> int:
    from shf.experiments import reproduce as rp
    from shf.plots import figure2, figure3

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    seeds = _seeds(args.seeds, "--seeds")
    out = Path(args.out)
    _check_out_dir(out)
    bars: list[ProgressBar] = []

    def on_run(ds: str, seed: int, cfg: cfgmod.ExperimentConfig) -> ProgressBar:
        for b in bars:
            b.close()
        bar = ProgressBar(cfg.run.max_iters, cfg.run.max_time, args.no_progress, desc=f"{ds} seed {seed}")
        bars.append(bar)
        return bar

    if args.report_only:
        dirs = sorted(p for p in (out / "runs").glob("*") if p.is_dir())
        if not dirs:
            raise ShfError(f"no runs under {out / 'runs'}")
    else:
        try:
            dirs = rp.run_all(
                datasets,
                seeds,
                out,
                max_time=args.max_time,
                mnist=args.mnist,
                overrides=args.overrides,
                on_run=on_run,
                overwrite=args.overwrite,
            )
        finally:
            for b in bars:
                b.close()
    groups = rp.collect(dirs)
    md, record = rp.table(groups)
    (out / "table2.md").write_text(md)
    (out / "table2.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, runs in groups.items():
        rd = [r["run_dir"] for r in runs]
        figure2(rd, out / f"fig2-{name}.png", title=f"{name.upper()}: train (dotted) and test (solid) error")
        figure3(rd, out / f"fig3-{name}.png", title=f"{name.upper()}: mini-batch size")
    print(md + f"\nwritten: {out / 'table2.md'}, {out / 'table2.json'}, fig2-*.png, fig3-*.png")
    return 0


def _set_keys(overrides: list[str]) -> set[str]:
    """The ``section.key`` names that the overrides set."""
    return {".".join(cfgmod.parse_override(s)[:2]) for s in overrides}


def _compare_config(
    config: str, o: list[str], methods: list[str]
) -> tuple[cfgmod.ExperimentConfig, dict[str, Any]]:
    """The comparison's base configuration, and the ``[optimizer]`` keys for ``shf-tuned`` alone.

    When ``shf-tuned`` is compared without ``shf-lsmr``, the user's ``optimizer.*`` overrides
    concern ``shf-tuned`` only: they are validated over TUNED's overlay rather than over the
    preset's paper values (``optimizer.curvature_size`` needs TUNED's ``lambda_min > 0``, which
    the paper's presets do not have), and returned to be laid over TUNED; the base keeps the
    preset's ``[optimizer]``. Otherwise every override applies to the base, as for any command.
    """
    from shf.experiments.compare import TUNED_METHOD
    from shf.optim.hyper import TUNED

    opt = [s for s in o if cfgmod.parse_override(s)[0] == "optimizer"]
    if not opt or TUNED_METHOD not in methods or "shf-lsmr" in methods:
        return cfgmod.load(config, o), {}
    rest = [s for s in o if s not in opt]
    keys = [k.split(".", 1)[1] for k in _set_keys(opt)]
    under = [f"optimizer.{k}={json.dumps(v)}" for k, v in TUNED.items() if k not in keys]
    tuned = cfgmod.load(config, [*rest, *under, *opt], given=keys)  # validates shf-tuned's own [optimizer]
    return cfgmod.load(config, rest), {k: getattr(tuned.optimizer, k) for k in sorted(keys)}


def cmd_compare(args: argparse.Namespace) -> int:
    from shf.experiments.compare import compare

    o = [*args.overrides, *_flag_overrides(args)]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ShfError(f"--methods names no method ({args.methods!r}); e.g. --methods shf-lsmr,adam")
    seeds = _seeds(args.seeds, "--seeds") if args.seeds else None
    _check_out_dir(Path(args.out))
    cfg, tuned_optimizer = _compare_config(args.config, o, methods)
    _check_task_flags(args, cfg)
    print(f"shf compare: {', '.join(methods)}; {args.budget:g} s each -> {args.out}", file=sys.stderr)
    record = compare(
        cfg, methods, args.out, budget=args.budget, hf_loss=args.hf_loss,
        sweep_fraction=args.sweep_fraction, target=args.target, overwrite=args.overwrite,
        lrs=None if args.lrs is None else dict.fromkeys(("adam", "sgd"), _floats(args.lrs, "--lrs")),
        seeds=seeds, target_from=args.target_from,
        report_only=args.report_only, eval_every=args.eval_every, explicit=_set_keys(o),
        tuned_optimizer=tuned_optimizer,
        baseline_losses=_words(args.baseline_losses) if args.baseline_losses else None,
        weight_decays=_floats(args.weight_decays, "--weight-decays") if args.weight_decays else None,
    )  # fmt: skip
    from shf.experiments.compare import markdown

    print(markdown(record) + f"\nwritten: {Path(args.out) / 'compare.md'}, compare.json, compare.png")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from shf.plots import figure2, figure3

    labels = args.labels.split(",") if args.labels is not None else None
    if labels is not None and len(labels) != len(args.runs):
        raise ShfError(
            f"--labels gives {len(labels)} label{'s' if len(labels) != 1 else ''} for {len(args.runs)} "
            f"run{'s' if len(args.runs) != 1 else ''}: give one per run, comma-separated, in their order"
        )
    out = Path(args.out)
    single = out.suffix == ".png"
    if single and args.figure == "both":
        raise ShfError("--out names one .png file: choose --figure 2 or --figure 3 (or give a directory)")
    written = []
    if args.figure in ("2", "both"):
        written.append(
            figure2(
                args.runs,
                out if single else out / "fig2.png",
                labels=labels,
                title=args.title,
                no_half=args.no_half,
            )
        )
    if args.figure in ("3", "both"):
        written.append(
            figure3(args.runs, out if single else out / "fig3.png", labels=labels, title=args.title)
        )
    print("written: " + ", ".join(map(str, written)))
    return 0


def _toml(value: Any) -> str:
    """A flag's value as a TOML literal (strings quoted and escaped)."""
    return _toml_string(value) if isinstance(value, str) else repr(value)


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: every character as itself (an emoji stays one character;
    JSON's ``\\ud83d\\ude00`` surrogate pair is not TOML), with the quote, the backslash and
    the control characters TOML forbids escaped."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _flag_overrides(ns: argparse.Namespace) -> list[str]:
    """``section.key=value`` overrides for the flags a sub-command has and the user gave.

    Conflicting inputs are errors, never a silent choice: ``--data`` with ``--data-path``,
    the own-file flags with a named data set, and a ``--set`` key that a flag also sets.
    """
    given = {k: v for k, v in vars(ns).items() if k in _FLAG_NAMES and v is not None and v is not False}
    if "data_file" in given and "data_path" in given:
        raise ShfError("give --data FILE (your own file) or --data-path (a named data set's file), not both")
    own_flags = [f"--{k.replace('_', '-')}" for k in ("label_column", "scale_255", "fractions") if k in given]
    if own_flags and "data_file" not in given and given.get("dataset", "own") != "own":
        raise ShfError(
            f"{', '.join(own_flags)} apply to your own file (--data FILE), "
            f"not to --dataset {given['dataset']}"
        )
    o = [f"{key}={_toml(given[flag])}" for flag, key in _SIMPLE_FLAGS if flag in given]
    if "data_file" in given:
        o += ['data.dataset="own"', f"data.path={_toml(given['data_file'])}"]
    o += [f"{key}={_toml(given[flag])}" for flag, key in _PATH_FLAGS if flag in given]
    if "label_column" in given:
        lc = given["label_column"]
        o.append(f"data.label_column={lc if lc.lstrip('-').isdigit() else _toml(lc)}")
    if given.get("scale_255"):
        o.append("data.scale_255=true")
    if "fractions" in given:
        o.append(f"data.fractions=[{given['fractions']}]")
    set_keys = _set_keys(getattr(ns, "overrides", []))
    if given.get("task") == "classify" and "model.loss" not in set_keys:
        # model.loss is the autoencoder's objective (the default preset's is B9's cross-entropy):
        # a classifier trains on softmax cross-entropy whatever it says, so drop the preset's
        o.append('model.loss="squared"')
    both = sorted(set_keys & _set_keys(o))
    if both:
        raise ShfError(f"{', '.join(both)} set both by --set and by a flag: give each setting once")
    return o


def _check_task_flags(args: argparse.Namespace, cfg: cfgmod.ExperimentConfig) -> None:
    """Refuse a flag that the configuration's task would ignore: ``--arch`` chooses a
    classifier, ``--encoder`` sizes an autoencoder."""
    task = cfg.model.task
    if getattr(args, "arch", None) is not None and task != "classify":
        raise ShfError(
            f"--arch applies to --task classify; this run's task is {task} (its layers: --encoder)"
        )
    if getattr(args, "encoder", None) is not None and task != "autoencoder":
        raise ShfError(
            f"--encoder applies to --task autoencoder; this run's task is {task} "
            "(a classifier's layers: --arch, and --set model.hidden=[...] or model.channels=[...])"
        )


def _fmt(x: Any, spec: str = ".4g") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and x is not None else "-"


class ProgressBar:
    """A tqdm bar whose postfix shows the state of the latest HF iteration.

    With a time limit (``max_time`` finite) the bar counts the optimiser's seconds towards it
    (a run stops at its time limit long before ``max_iters`` at the defaults, so a bar of
    iterations would promise a far later end); it jumps ahead when the iterations are nearer
    their own limit, so it fills whichever limit ends the run, and its ETA is honest. The
    postfix counts the iterations. Without a time limit it counts iterations.
    """

    def __init__(self, total: int, max_time: float, disable: bool, desc: str = "SHF-LSMR") -> None:
        from tqdm import tqdm

        self.by_time = math.isfinite(max_time)
        self.max_iters, self.max_time = total, max_time
        if self.by_time:
            fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]"
            self.bar = tqdm(total=max_time, disable=disable, unit="s", dynamic_ncols=True, file=sys.stderr,
                            bar_format=fmt)  # fmt: skip
        else:
            self.bar = tqdm(total=total, disable=disable, unit="it", dynamic_ncols=True, file=sys.stderr)
        self.bar.set_description(f"{desc} (<= {max_time:g}s)" if self.by_time else desc)
        self.last_train: Any = None
        self.iterations = 0

    def __call__(self, rec: dict[str, Any]) -> None:
        if rec.get("train_error") is not None:
            self.last_train = rec["train_error"]
        self.iterations = int(rec.get("iteration", self.iterations + 1))
        if self.by_time:
            by_iters = self.max_time * self.iterations / max(self.max_iters, 1)
            done = max(float(rec.get("time_s", 0.0)), by_iters)
            self.bar.update(max(0.0, min(done, self.max_time) - self.bar.n))
        else:
            self.bar.update(1)
        parts = [f"it={self.iterations}" if self.by_time else "", f"n={rec['n']}" if "n" in rec else ""]
        if rec.get("lam") is not None:
            parts.append(f"λ={rec['lam']:.3g}")
        if "solver_iterations" in rec:
            parts.append(f"{rec.get('solver', 'lsmr')}={rec['solver_iterations']}/{rec['solver_stop']}")
        elif "cg_iterations" in rec:  # Martens HF
            parts.append(f"cg={rec['cg_iterations']}/{rec['cg_stop']}")
        parts.append(f"train={_fmt(self.last_train)} val={rec['val_error']:.4g} t={rec['time_s']:.0f}s")
        self.bar.set_postfix_str(" ".join(p for p in parts if p), refresh=False)

    def close(self) -> None:
        self.bar.close()


RESUMABLE_KEYS = ("run.max_time", "run.max_iters")
"""The settings ``--resume`` may change: they move where the run stops, not its iterations."""


def _resume_config(args: argparse.Namespace) -> tuple[cfgmod.ExperimentConfig, Path, str]:
    """The stored configuration and method of ``--resume DIR`` with the allowed overrides."""
    from shf import runlog
    from shf.experiments.run import check_extension
    from shf.fit import LoopState

    out = Path(args.resume)
    if args.out is not None or args.overwrite:
        raise ShfError("--resume DIR continues DIR: give neither --out nor --overwrite with it")
    if args.method != "shf-lsmr":
        raise ShfError("--resume continues with the run's own method: leave out --method")
    files = [out / "config.json", out / "run.json"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ShfError(f"{out} is not a run directory of shf train (no {', '.join(missing)})")
    from shf.runlog import read_json

    stored = cfgmod.restore_infinities(read_json(files[0], "run's configuration"))
    method = read_json(files[1], "run's record").get("method")
    if not isinstance(method, str):
        raise ShfError(f"{files[1]} names no method: not a run directory of shf train?")
    overrides = [*args.overrides, *_flag_overrides(args)]
    cfg = cfgmod.from_dict(cfgmod.apply_overrides(stored, overrides))
    changed = _real_changes(cfgmod.from_dict(stored), cfg, overrides)
    if changed:
        raise ShfError(
            f"--resume continues {out} with its stored configuration; these settings would change its "
            f"result: {', '.join(changed)} (only {', '.join(RESUMABLE_KEYS)} may change)"
        )
    # before any data is loaded: a resume extends a run, never shortens or redoes it
    ck = runlog.RunDir(out).load_checkpoint()
    check_extension(cfg, out, LoopState.from_dict(ck["loop"]))
    return cfg, out, method


def _real_changes(
    stored: cfgmod.ExperimentConfig, new: cfgmod.ExperimentConfig, overrides: list[str]
) -> list[str]:
    """``section.key (old -> new)`` for each overridden key outside :data:`RESUMABLE_KEYS` whose
    resolved value differs from the stored one (giving the stored value again is no change)."""
    changed: list[str] = []
    for o in overrides:
        section, key, _ = cfgmod.parse_override(o)
        name = f"{section}.{key}"
        old, value = (getattr(getattr(c, section), key) for c in (stored, new))
        if name not in RESUMABLE_KEYS and old != value and not any(c.startswith(name + " ") for c in changed):
            changed.append(f"{name} ({_show(old)} -> {_show(value)})")
    return changed


def _show(value: Any) -> str:
    """A configuration value as the user would type it (``none`` for None)."""
    return "none" if value is None else json.dumps(value, ensure_ascii=False)


def _fresh_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix a new run into a directory that holds files, unless ``overwrite`` (never
    while another process writes to it)."""
    from shf.runlog import clear_run_dir, lock_holder

    if out.exists() and not out.is_dir():
        raise ShfError(f"--out {out} is a file, not a directory")
    holder = lock_holder(out)
    if holder is not None:
        raise ShfError(f"another shf process (pid {holder}) is writing to {out}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ShfError(
                f"{out} already holds files: continue that run with --resume {out}, "
                "or replace it with --overwrite"
            )
        clear_run_dir(out)  # shf's own run files only; refused for a directory holding others


def _encoder_for(
    cfg: cfgmod.ExperimentConfig, width: int, args: argparse.Namespace, *, quiet: bool = False
) -> cfgmod.ExperimentConfig:
    """The preset's encoder with its input size set to the data's width, when the data set was
    chosen on the command line (another width than the preset's) and the user gave no encoder."""
    import dataclasses

    enc = cfg.model.encoder
    given = args.encoder is not None or any(o.strip().startswith("model.encoder") for o in args.overrides)
    if cfg.model.task != "autoencoder" or enc[0] == width or given or args.resume or args.dataset is None:
        return cfg
    new = [width, *enc[1:]]
    if not quiet:
        print(f"shf train: the encoder's input follows the data: {enc} -> {new}", file=sys.stderr)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder=new))


def cmd_train(args: argparse.Namespace) -> int:
    from shf import collectives

    torchrun = collectives.launched_by_torchrun()
    if args.dist_timeout is not None and not torchrun:
        raise ShfError("--dist-timeout is for runs launched by torchrun (WORLD_SIZE > 1)")
    if torchrun and not args.resume and args.out is None:
        raise ShfError("a data-parallel run needs --out DIR (the same on every process)")
    cfg, out, method = _train_setup(args)
    if not torchrun:
        return _train(args, cfg, out, method, lead=True)
    # Data-parallel: every process trains on its rows of every batch; rank 0 alone checks and
    # writes the run directory and prints (docs/distributed.md).
    import torch.distributed as dist

    timeout = args.dist_timeout if args.dist_timeout is not None else collectives.DEFAULT_TIMEOUT_S
    collectives.init_from_environment(cfg.run.device, timeout)
    try:
        code = _train(args, cfg, out, method, lead=dist.get_rank() == 0)
        dist.barrier()  # every process done (rank 0 has written the run) before the group goes
        return code
    except RuntimeError as e:  # a collective failed: a peer died, hung past the timeout, or refused
        if not _is_comm_error(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShfError(
            f"another process of the job failed or did not answer within {timeout:g} s ({first})"
        ) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _is_comm_error(e: BaseException) -> bool:
    """Whether ``e`` is ``torch.distributed``'s (a backend's error, a timeout, a closed peer)."""
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistError", None),) if isinstance(k, type))
    text = str(e).lower()
    return isinstance(e, kinds) or any(w in text for w in ("gloo", "nccl", "connection", "timed out"))


def _train_setup(args: argparse.Namespace) -> tuple[cfgmod.ExperimentConfig, Path, str]:
    """The configuration, run directory and method of ``shf train`` (stored ones with ``--resume``)."""
    from shf import runlog

    if args.resume:
        return _resume_config(args)
    o = [*args.overrides, *_flag_overrides(args)]
    cfg = cfgmod.load(args.config, o)
    _check_task_flags(args, cfg)
    capped = "run.max_iters" in _set_keys(o)
    if args.method in ("adam", "sgd") and math.isfinite(cfg.run.max_time) and not capped:
        # a preset's max_iters counts HF iterations: it must not cut a first-order method's time
        # budget short at as many epochs (shf compare does the same)
        from shf.experiments.compare import UNCAPPED_ITERS

        cfg = cfgmod.load(args.config, [*o, f"run.max_iters={UNCAPPED_ITERS}"])
    out = Path(args.out) if args.out else runlog.default_run_dir(cfg.name)
    return cfg, out, args.method


def _train(
    args: argparse.Namespace, cfg: cfgmod.ExperimentConfig, out: Path, method: str, *, lead: bool
) -> int:
    """``shf train`` in one process (``lead``: the one that writes and prints)."""
    from shf import collectives, runlog
    from shf.experiments.run import build_network, describe, prepare_data, run_experiment

    comm = collectives.current()
    if not args.resume:
        if comm is None:
            _fresh_out(out, args.overwrite)
        else:  # rank 0 checks the directory; its error, if any, ends every process in one line
            comm.on_rank0(lambda: _fresh_out(out, args.overwrite))
    t0 = time.perf_counter()
    data = prepare_data(cfg)
    cfg = _encoder_for(cfg, data.dim, args, quiet=not lead)
    if cfg.model.task == "classify":
        import torch

        from shf.experiments.classify import build_classifier

        clf = build_classifier(cfg, data.dim, dtype=torch.float32, device=torch.device("cpu"))
        model = f"{cfg.model.arch} classifier ({sum(p.numel() for p in clf.parameters()):,} weights)"
    else:
        model = f"encoder {'-'.join(map(str, cfg.model.encoder))} ({build_network(cfg).n_params():,} weights)"
    procs = f", {comm.world_size} processes" if comm is not None else ""
    if lead:
        print(
            f"shf train: {data.name}, train/val/test = {len(data.train)}/{len(data.val)}/{len(data.test)}, "
            f"{model}, {cfg.run.dtype}, {method}{procs}, "
            f"data ready in {time.perf_counter() - t0:.1f}s -> {out}"
            + (" (resumed)" if args.resume else ""),
            file=sys.stderr,
        )
    bar = ProgressBar(cfg.run.max_iters, cfg.run.max_time, args.no_progress or not lead)
    made = not out.exists()
    lock = runlog.RunLock(out) if lead else contextlib.nullcontext()
    try:
        with lock, StopRequest() as stop:
            summary = run_experiment(
                cfg, out, data=data, on_iteration=bar, method=method, resume=bool(args.resume),
                should_stop=stop,
            )  # fmt: skip
    except BaseException:
        # A run that failed before its first iteration leaves no half-made directory behind.
        started = (out / "metrics.jsonl").is_file()
        if lead and made and out.is_dir() and not started and runlog.lock_holder(out) is None:
            with contextlib.suppress(ShfError, OSError):  # only shf's own files, then the directory
                runlog.clear_run_dir(out)
                out.rmdir()
        raise
    finally:
        bar.close()
    if lead:
        from shf.experiments.standing import for_run

        print(describe(summary) + f"\n  run directory: {out}")
        table = for_run(cfg, method)  # the fair Adam and SHF over seeds on this very task, stored
        if table is not None and summary["stop_reason"] != "interrupted":
            print(table.describe())
    if summary["stop_reason"] == "interrupted":
        if lead:
            resume = "torchrun ... -m shf train" if comm is not None else "shf train"
            print(f"  interrupted: continue with  {resume} --resume {out}", file=sys.stderr)
        return stop.exit_code
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        from shf.collectives import launched_by_torchrun

        if launched_by_torchrun() and args.command != "train":
            raise ShfError(f"shf {args.command} runs on one process: launch it without torchrun "
                           "(only shf train runs data-parallel)")  # fmt: skip
        if args.command == "train":
            return cmd_train(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "plot":
            return cmd_plot(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "bench":
            return cmd_bench(args)
    except InterruptedRunError as e:  # a graceful stop: the run is resumable, the message says how
        print(f"shf: {e}", file=sys.stderr)
        return e.exit_code
    except ShfError as e:
        print(f"shf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("shf: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only directory, permissions: nothing half-written
        from shf.runlog import WriteError

        where = f" {e.filename}" if e.filename else ""
        what = "could not write" if isinstance(e, WriteError) else "could not read or write"
        print(f"shf: error: {what}{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
