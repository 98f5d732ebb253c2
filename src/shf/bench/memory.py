"""``shf bench memory``: peak resident memory of SHF-LSMR and of Martens' HF-CG, and
whether LSMR's memory grows from one iteration to the next.

Peak memory (:func:`bench_memory`). Every method runs ``iters`` HF iterations on the
same configuration in its own freshly *spawned* process, so nothing one method
allocated (or the allocator kept) counts against another; a ``baseline`` process
does only what every method needs anyway (load the data, build the network and its
initial weights, evaluate the loss once). All figures are resident set sizes (RSS,
host memory, MiB reported as "MB"):

* ``peak_rss_mb``: the process's peak RSS over its whole life (Python, torch, the
  data set, the loader's temporary copies and the optimiser), the figure
  ``getrusage(RUSAGE_SELF).ru_maxrss`` gives when nothing resets it;
* ``peak_over_baseline_mb``: ``peak_rss_mb`` minus the baseline process's
  ``peak_rss_mb``, the memory the method needs beyond loading the data and the
  network: the headline number, and ``ratio`` = Martens HF's over SHF-LSMR's;
* ``rss_after_data_mb``: RSS right after the data are loaded (the data resident);
* ``peak_after_data_mb``: the peak RSS from then on (the high-water mark is reset
  after the data load on Linux), i.e. data resident plus what the method allocates
  at its worst, free of the loader's transient peak, which can be larger than the
  optimiser's and then hides it in ``peak_rss_mb``;
* ``method_peak_mb``: ``peak_after_data_mb - rss_after_data_mb``, what the method
  (or, for the baseline, the network and one loss evaluation) adds on top of the data.

SHF's memory grows with its batch size, which Alg. 1 raises from ``n1`` towards
``n_max``; so that the few measured iterations see the largest batch, SHF runs with
``optimizer.n1 = optimizer.n_max`` (recorded in ``notes``). Martens HF computes its
gradient on ``hf.grad_batch`` rows (default: the whole training set) and its
curvature on a quarter of it (``hf.num_chunks = 4``).

The baseline process loads the data first: when the configured data set cannot be
loaded and has stand-ins (MNIST without a ``data.path``, which needs a download; see
:func:`shf.bench.common.load_with_stand_ins`), it uses the first stand-in that loads,
every later process loads that one, and ``dataset`` and ``notes`` say so.

Growth (:func:`lsmr_rss_growth`): LSMR on one Jacobian with a fixed number of
iterations, sampling the current RSS after every iteration; a leak or an allocation
that piles up per iteration shows as a positive slope.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shf import config as cfgmod
from shf.bench.common import describe_machine, encoder_of, jacobian_problem, load_with_stand_ins, machine
from shf.errors import ConfigError, ShfError
from shf.experiments.methods import METHODS, SHF_METHODS
from shf.runlog import jsonable, peak_rss_mb

__all__ = ["bench_memory", "current_rss_mb", "lsmr_rss_growth", "markdown"]

_MB = 1024.0 * 1024.0


# --------------------------------------------------------------------------- RSS probes


def current_rss_mb() -> float:
    """The current resident set size of this process in MiB (``/proc/self/statm``, Linux)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError as e:
        raise ShfError(f"cannot read the resident memory from /proc/self/statm (Linux only): {e}") from None
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") / _MB


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark (``/proc/self/clear_refs``); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- LSMR growth


def lsmr_rss_growth(
    arch: str | Sequence[int] = "mnist",
    n: int = 1000,
    iters: int = 200,
    dtype: str = "float32",
    seed: int = 0,
    *,
    damp: float = 1e-2,
    loss: str = "squared",
    linear_code: bool = False,
) -> dict[str, Any]:
    """Resident memory of this process along ``iters`` LSMR iterations on one Jacobian.

    Builds :class:`~shf.curvature.mlp.AutoencoderJacobian` for ``arch`` (a name in
    :data:`shf.bench.common.ARCHITECTURES` or a list of encoder sizes) at sparse-initialised
    weights (eq. 9, ``m0 = 15``, ``sigma = 1``) on ``n`` uniform random rows in [0, 1],
    then runs :func:`shf.solvers.lsmr.lsmr` on ``b = -R`` with ``damp``, a random
    positive preconditioner in [0.5, 1] (:func:`shf.bench.common.jacobian_problem`) and
    every stopping test off (``atol = btol = 0``,
    ``conlim = 0``; only the machine-precision tests stay), sampling the current RSS
    (``/proc/self/statm``) after every iteration. The default ``damp = 1e-2`` keeps LSMR
    running: with ``damp = 1`` the damping dominates these Jacobians (norm about 1-70)
    and LSMR reaches machine precision (``lsq_eps``) within 13-100 iterations on small
    nets, which would end the measurement early; ``iterations`` and ``stop`` say how
    many ran and why it stopped.

    Returns:
        ``rss_mb_at_10``: RSS after iteration 10 (or the first sample when fewer ran),
        once LSMR's work vectors exist; ``rss_mb_last``: after the last iteration;
        ``growth_mb = rss_mb_last - rss_mb_at_10``; ``growth_per_iteration_kb``: the
        least-squares slope of RSS against the iteration over the iterations ``>= 10``
        (KiB per iteration; None with fewer than two such samples); ``samples``:
        ``[iteration, rss_mb]`` pairs thinned to at most 50; plus the problem's size,
        ``iterations`` done and LSMR's ``stop`` reason.
    """
    import torch

    from shf.solvers.lsmr import lsmr

    encoder = encoder_of(arch)
    arch_name = arch if isinstance(arch, str) else "-".join(map(str, encoder))
    if not (isinstance(n, int) and n >= 1):
        raise ConfigError(f"n must be a positive integer, got {n}")
    if not (isinstance(iters, int) and iters >= 1):
        raise ConfigError(f"iters must be a positive integer, got {iters}")
    if not (math.isfinite(damp) and damp >= 0):
        raise ConfigError(f"damp must be a finite number >= 0, got {damp}")
    if dtype not in cfgmod.DTYPES:
        raise ConfigError(f"dtype must be one of {cfgmod.DTYPES}, got {dtype!r}")
    tdtype = torch.float64 if dtype == "float64" else torch.float32

    p = jacobian_problem(encoder, n, tdtype, seed, loss=loss, linear_code=linear_code)
    net = p.net

    samples: list[tuple[int, float]] = []

    def sample(k: int, x: Any, info: Any) -> bool:
        samples.append((k, current_rss_mb()))
        return False

    rss_start = current_rss_mb()
    t = time.perf_counter()
    _, info = lsmr(
        p.A, p.b, damp=damp, precond=p.c, maxiter=iters, atol=0.0, btol=0.0, conlim=0.0, callback=sample
    )
    elapsed = time.perf_counter() - t
    if not samples:  # stopped before its first iteration (A^T b = 0)
        samples.append((0, current_rss_mb()))

    ref_k = 10 if any(k >= 10 for k, _ in samples) else samples[0][0]
    at_ref = next(r for k, r in samples if k >= ref_k)
    last = samples[-1][1]
    tail = [(k, r) for k, r in samples if k >= ref_k]
    slope_kb: float | None = None
    if len(tail) >= 2:
        km = sum(k for k, _ in tail) / len(tail)
        rm = sum(r for _, r in tail) / len(tail)
        sxx = sum((k - km) ** 2 for k, _ in tail)
        sxy = sum((k - km) * (r - rm) for k, r in tail)
        slope_kb = sxy / sxx * 1024.0
    step = max(1, math.ceil(len(samples) / 50))
    thinned = samples[::step]
    if thinned[-1] != samples[-1]:
        thinned = [*thinned[:49], samples[-1]]
    return {
        "arch": arch_name,
        "encoder": list(encoder),
        "n": n,
        "n_params": net.n_params(),
        "dtype": dtype,
        "seed": seed,
        "damp": damp,
        "loss": loss,
        "iterations": info.iterations,
        "stop": info.stop.value,
        "seconds": elapsed,
        "rss_mb_before": rss_start,
        "reference_iteration": ref_k,
        "rss_mb_at_10": at_ref,
        "rss_mb_last": last,
        "growth_mb": last - at_ref,
        "growth_per_iteration_kb": slope_kb,
        "samples": [[k, r] for k, r in thinned],
    }


# --------------------------------------------------------------------------- children


def _method_child(cfg: cfgmod.ExperimentConfig, method: str, iters: int) -> dict[str, Any]:
    """Load the data, then ``iters`` iterations of ``method`` (or the baseline's work)."""
    import torch

    from shf.experiments.methods import build_method
    from shf.experiments.run import build_network, check_data_for, squared_error
    from shf.fit import run_loop
    from shf.models.autoencoder import sparse_init

    rss_start = current_rss_mb()
    data, used, tried = load_with_stand_ins(cfg)
    peak_load = peak_rss_mb()
    rss_data = current_rss_mb()
    reset = _reset_peak()
    net = build_network(used)
    out: dict[str, Any] = {
        "dataset": data.name,
        "dataset_config": used.data.dataset,
        "data_config": dataclasses.asdict(used.data),
        "fallbacks_tried": tried,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "loss": used.model.loss,
        "rss_start_mb": rss_start,
        "rss_after_data_mb": rss_data,
    }
    if method == "baseline":
        check_data_for(net, data)
        gen = torch.Generator().manual_seed(used.run.seed)
        X = data.train
        w = sparse_init(
            net,
            m0=used.optimizer.m0,
            sigma=used.optimizer.sigma,
            generator=gen,
            dtype=X.dtype,
            device=X.device,
        )
        out["initial_loss"] = net.loss(w, X)
    else:
        opt = build_method(method, net, data, used)
        loop = dataclasses.replace(
            used.run.loop(), max_iters=iters, max_time=math.inf, patience=iters + 1, patience_time=math.inf,
            eval_every=iters + 1,
        )
        batches: list[int] = []
        seen = [0]

        def on_iteration(rec: dict[str, Any]) -> None:
            batches.append(int(rec["examples"]) - seen[0])
            seen[0] = int(rec["examples"])

        result = run_loop(
            data, opt, loop, evaluate=squared_error(net), seed=used.run.seed, on_iteration=on_iteration
        )
        s = result.summary
        out.update(
            iterations=s["hf_iterations"],
            optimizer_time_s=s["optimizer_time_s"],
            s_per_iteration=s["optimizer_time_s"] / max(1, s["hf_iterations"]),
            stop_reason=s["stop_reason"],
            examples_per_iteration_min=min(batches, default=None),
            examples_per_iteration_max=max(batches, default=None),
        )
        if method in SHF_METHODS:
            out["final_batch_size"] = s["final_batch_size"]
            out["n1"] = used.optimizer.n1
            out["n_max"] = used.optimizer.n_max
        if method == "martens-hf":
            N = len(data.train)
            gb = used.hf.grad_batch
            out["grad_batch"] = N if gb is None or gb >= N else gb
            out["curvature_chunk"] = math.ceil(N / min(used.hf.num_chunks, N))
    peak_end = peak_rss_mb()
    out["peak_rss_mb"] = max(peak_load, peak_end)
    out["peak_after_data_mb"] = peak_end if reset else None
    out["method_peak_mb"] = peak_end - rss_data if reset else None
    out["peak_reset_after_load"] = reset
    if used.run.device.startswith("cuda") and torch.cuda.is_available():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / _MB
    return out


def _growth_child(kwargs: dict[str, Any]) -> dict[str, Any]:
    return lsmr_rss_growth(**kwargs)


def _child(kind: str, payload: dict[str, Any], threads: int | None, result: str) -> None:
    """Entry point of a spawned child: do ``kind``'s work, write the JSON result (or the error)."""
    import json

    try:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        if kind == "growth":
            out = _growth_child(payload["growth"])
        else:
            out = _method_child(cfgmod.from_dict(payload["config"]), kind, int(payload["iters"]))
    except BaseException as e:  # reported to the parent, which records it
        tb = traceback.format_exc().strip().splitlines()
        out = {"error": f"{type(e).__name__}: {e}".splitlines()[0], "traceback": tb[-6:]}
    Path(result).write_text(json.dumps(jsonable(out)))


def _spawn(kind: str, payload: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Run :func:`_child` in a fresh spawned process; its result, or ``{"error": ...}``."""
    import json

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="shf-bench-memory-") as tmp:
        result = Path(tmp) / "result.json"
        p = ctx.Process(target=_child, args=(kind, payload, threads, str(result)))
        p.start()
        try:
            p.join()
        finally:
            if p.is_alive():  # interrupted while waiting: do not leave the child behind
                p.terminate()
                p.join()
        if result.is_file():
            out: dict[str, Any] = json.loads(result.read_text())
            return out
        return {"error": f"the child process exited with code {p.exitcode} without a result"}


# --------------------------------------------------------------------------- the benchmark


def _check_args(
    cfg: cfgmod.ExperimentConfig, methods: Sequence[str], iters: int, threads: int | None, growth_iters: int
) -> list[str]:
    from shf.experiments.run import resolve_device

    ms = list(dict.fromkeys(methods))
    if not ms:
        raise ConfigError("give at least one method")
    for m in ms:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"iters must be a positive integer, got {iters}")
    if isinstance(growth_iters, bool) or not isinstance(growth_iters, int) or growth_iters < 0:
        raise ConfigError(f"growth_iters must be a non-negative integer (0: skip), got {growth_iters}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    resolve_device(cfg.run.device)
    return ms


def bench_memory(
    config: str = "mnist",
    *,
    methods: Sequence[str] = ("shf-lsmr", "martens-hf"),
    iters: int = 5,
    overrides: Sequence[str] = (),
    threads: int | None = 1,
    growth_iters: int = 200,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Peak resident memory of each method, each in a fresh spawned process (see the module).

    Args:
        config: a preset name (``curves``, ``mnist``, ``usps``, ``default``) or a TOML file.
        methods: names from :data:`shf.experiments.methods.METHODS`.
        iters: HF iterations per method (no time cap, no patience stop).
        overrides: ``section.key=value`` strings applied to the configuration (all methods).
        threads: torch threads in every child; None: ``run.threads`` (else torch's default).
        growth_iters: LSMR iterations of the growth measurement (:func:`lsmr_rss_growth`,
            on the configuration's architecture with ``n = n_max`` rows); 0 skips it.
        progress: called with one short line per finished child.

    Returns:
        The record: ``machine``, ``config``, ``overrides``, ``dataset`` (the one actually
        used), ``encoder``, ``loss``, ``iters``, ``methods`` (one entry per method: the
        RSS figures of the module docstring, ``iterations``, ``s_per_iteration`` = mean
        optimiser seconds per HF iteration including the validation loss, and
        ``final_batch_size`` for SHF; or ``error``), ``baseline``, ``ratio`` (Martens HF's
        ``peak_over_baseline_mb`` over SHF-LSMR's, None unless both exist and SHF's is
        positive), ``lsmr_growth`` and ``notes``.

    Raises:
        ConfigError: a bad configuration, override, method name or argument (before any
            child starts). A child's failure is recorded as an ``error`` entry instead.
    """
    say = progress or (lambda msg: None)
    base_cfg = cfgmod.load(config, list(overrides))
    ms = _check_args(base_cfg, methods, iters, threads, growth_iters)
    if threads is None:
        threads = base_cfg.run.threads
    notes: list[str] = []
    opt = base_cfg.optimizer
    if any(m in SHF_METHODS for m in ms):
        notes.append(
            f"SHF ran with optimizer.n1 = optimizer.n_max = {opt.n_max} (configured n1 = {opt.n1}): "
            "its memory grows with the batch size, which Alg. 1 raises from n1 towards n_max over many "
            f"iterations, so the {iters} measured iterations run at its largest batch (a whole run's peak)."
        )
    notes.append(
        "peak_over_baseline_mb = a method's peak RSS minus the peak RSS of a process that only loads the "
        "data, builds the network and evaluates the loss once; the ratio is Martens HF's over SHF-LSMR's."
    )

    def payload(cfg: cfgmod.ExperimentConfig) -> dict[str, Any]:
        return {"config": cfg.to_dict(), "iters": iters}

    # The baseline first: it settles which data set is used (MNIST may need a download).
    baseline = _spawn("baseline", payload(base_cfg), threads)
    cfg = base_cfg
    if "error" in baseline:
        say(f"baseline: failed: {baseline['error']}")
    else:
        if baseline["dataset_config"] != base_cfg.data.dataset:
            # Every later process loads what the baseline loaded, without retrying MNIST.
            cfg = dataclasses.replace(base_cfg, data=cfgmod.DataConfig(**baseline["data_config"]))
            sz = baseline["sizes"]
            notes.append(
                f"data.dataset = {base_cfg.data.dataset!r} could not be loaded "
                f"({'; '.join(baseline['fallbacks_tried'])}); every process used "
                f"{baseline['dataset_config']!r} instead "
                f"(train/val/test {sz['train']}/{sz['val']}/{sz['test']})."
            )
        say(f"baseline: peak {baseline['peak_rss_mb']:.0f} MB ({baseline['dataset']})")

    rows: list[dict[str, Any]] = []
    for m in ms:
        mcfg = cfg
        if m in SHF_METHODS:
            mcfg = dataclasses.replace(
                cfg, optimizer=dataclasses.replace(cfg.optimizer, n1=cfg.optimizer.n_max)
            )
        r = {"method": m, **_spawn(m, payload(mcfg), threads)}
        if "error" in r:
            say(f"{m}: failed: {r['error']}")
        else:
            r["peak_over_baseline_mb"] = (
                r["peak_rss_mb"] - baseline["peak_rss_mb"] if "error" not in baseline else None
            )
            say(
                f"{m}: peak {r['peak_rss_mb']:.0f} MB, {r['iterations']} iterations, "
                f"{r['s_per_iteration']:.3g} s/iteration"
            )
        rows.append(r)

    ok = {r["method"]: r for r in rows if "error" not in r}
    ratio: float | None = None
    shf, hf = ok.get("shf-lsmr"), ok.get("martens-hf")
    if shf is not None and hf is not None:
        a, b = hf.get("peak_over_baseline_mb"), shf.get("peak_over_baseline_mb")
        if a is not None and b is not None and b > 0:
            ratio = a / b
        elif b is not None and b <= 0:
            notes.append(
                "SHF-LSMR's peak does not exceed the baseline's (the data load's transient peak dominates), "
                "so no ratio; compare method_peak_mb (peak after the data load minus the RSS with the data "
                "loaded) instead."
            )

    growth: dict[str, Any] | None = None
    if growth_iters > 0:
        sizes = (baseline.get("sizes") or {}) if "error" not in baseline else {}
        n_train = sizes.get("train") or cfg.data.n_train or cfg.optimizer.n_max
        n = max(1, min(cfg.optimizer.n_max, int(n_train)))
        growth = _spawn(
            "growth",
            {
                "growth": {
                    "arch": list(cfg.model.encoder),
                    "n": n,
                    "iters": growth_iters,
                    "dtype": cfg.run.dtype,
                    "seed": cfg.run.seed,
                    "loss": cfg.model.loss,
                    "linear_code": cfg.model.linear_code,
                }
            },
            threads,
        )
        if "error" in growth:
            say(f"lsmr growth: failed: {growth['error']}")
        else:
            say(
                f"lsmr growth: {growth['growth_mb']:+.1f} MB from iteration {growth['reference_iteration']} "
                f"to {growth['iterations']}"
            )

    if cfg.run.device != "cpu":
        notes.append(f"run.device = {cfg.run.device}: RSS is host memory; see cuda_peak_mb for the device's.")
    first_ok = next((r for r in [baseline, *rows] if "error" not in r), None)
    mach = machine()
    if threads is not None:  # the children's setting, not this (parent) process's
        mach["torch_threads"] = threads
    return {
        "machine": mach,
        "config": config,
        "overrides": list(overrides),
        "dataset": first_ok["dataset"] if first_ok else None,
        "dataset_config": first_ok["dataset_config"] if first_ok else cfg.data.dataset,
        "sizes": first_ok["sizes"] if first_ok else None,
        "encoder": list(cfg.model.encoder),
        "loss": cfg.model.loss,
        "dtype": cfg.run.dtype,
        "device": cfg.run.device,
        "threads": threads,
        "iters": iters,
        "methods": rows,
        "baseline": baseline,
        "ratio": ratio,
        "lsmr_growth": growth,
        "notes": notes,
    }


# --------------------------------------------------------------------------- report


def _f(x: Any, spec: str = ".0f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


def markdown(record: dict[str, Any]) -> str:
    """The summary: machine, a table of the peaks, the ratio and the LSMR growth line."""
    enc = "-".join(map(str, record.get("encoder", [])))
    sizes = record.get("sizes") or {}
    lines = [
        "# Peak resident memory",
        "",
        f"Machine: {describe_machine(record.get('machine', {}))}.",
        "",
        f"Config {record.get('config')}: data {record.get('dataset')} (train {sizes.get('train', '?')}), "
        f"encoder {enc}, loss {record.get('loss')}, {record.get('dtype')}, {record.get('iters')} HF "
        f"iterations per method, each method in its own process.",
        "",
        "| method | peak RSS (MB) | over baseline (MB) | peak after data load (MB) | iterations "
        "| s/iteration |",
        "|---|---|---|---|---|---|",
    ]
    b = record.get("baseline") or {}
    if "error" in b:
        lines.append(f"| baseline | failed: {b['error']} | | | | |")
    else:
        lines.append(
            f"| baseline (data, network, one loss) | {_f(b.get('peak_rss_mb'))} | 0 | "
            f"{_f(b.get('peak_after_data_mb'))} | — | — |"
        )
    for r in record.get("methods", []):
        name = r["method"]
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        if r.get("final_batch_size") is not None:
            name += f" (batch {r['final_batch_size']})"
        lines.append(
            f"| {name} | {_f(r.get('peak_rss_mb'))} | {_f(r.get('peak_over_baseline_mb'))} | "
            f"{_f(r.get('peak_after_data_mb'))} | {r.get('iterations')} | "
            f"{_f(r.get('s_per_iteration'), '.3g')} |"
        )
    lines.append("")
    ratio = record.get("ratio")
    if ratio is not None:
        lines.append(
            f"Martens HF needs {ratio:.2f}x the memory of SHF-LSMR beyond the baseline "
            "(peak over baseline, martens-hf / shf-lsmr)."
        )
    else:
        lines.append("No ratio: it needs both shf-lsmr and martens-hf with SHF-LSMR above the baseline.")
    g = record.get("lsmr_growth")
    if g:
        if "error" in g:
            lines.append(f"LSMR growth: failed: {g['error']}")
        else:
            slope = g.get("growth_per_iteration_kb")
            lines.append(
                f"LSMR growth ({g['encoder'][0]}-...-{g['encoder'][-1]} net, n = {g['n']}, {g['dtype']}): "
                f"RSS {g['rss_mb_at_10']:.1f} MB at iteration {g['reference_iteration']}, "
                f"{g['rss_mb_last']:.1f} MB at iteration {g['iterations']} ({g['growth_mb']:+.1f} MB, "
                f"slope {_f(slope, '+.2f')} KB/iteration)."
            )
    notes = record.get("notes") or []
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
