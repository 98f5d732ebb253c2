"""Time one HF iteration at ``n_max`` data-parallel (P processes, 1 thread each) against one process
with P threads, and report what the collectives cost.

    python benchmarks/distributed_scaling.py --procs 1,2 --out docs/results/distributed
    python benchmarks/distributed_scaling.py --device cuda --procs 1,2      # one GPU per process

The network is the paper's MNIST autoencoder (784-1000-500-250-30, 2.8M weights) on random
inputs in [0, 1] (no data set needed), ``n = n_max = 6000`` rows from the first iteration
(``n1 = n_max``), a fixed number of LSMR iterations (``--lsmr``; the merit, forcing and ``atol``
stops are off so every run does the same work), float32. Per configuration it reports the
seconds of one HF iteration (median over ``--repeat`` after one warm-up), the seconds and
bytes in collectives, and LSMR iterations; then a model of the time per iteration for P
workers: ``T(P) = T_compute(1) / P + L (t_reduce(P) + 2 t_lat)`` with ``L`` LSMR iterations,
``t_reduce(P) = 2 (P - 1) / P * bytes / bandwidth`` (a ring all-reduce of the weights) and the
all-reduce bandwidth and latency measured here (``--bandwidth`` to model another network).
Processes are spawned by ``torch.multiprocessing`` (gloo on the CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ENCODER = (784, 1000, 500, 250, 30)


def _problem(n: int, n_val: int, device: torch.device) -> tuple[Any, Any, Any]:
    import shf

    g = torch.Generator().manual_seed(0)
    X = torch.rand(n, ENCODER[0], generator=g).to(device)
    Xv = torch.rand(n_val, ENCODER[0], generator=g).to(device)
    net = shf.models.Autoencoder(ENCODER, generator=torch.Generator().manual_seed(1), device=device)
    return net, X, Xv


def _time_steps(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import shf
    from shf.optim.step import SHFConfig

    net, X, Xv = _problem(args.n, args.n_val, device)
    cfg = SHFConfig.paper(n1=args.n, n_max=args.n, maxiter1=args.lsmr, atol=0.0, use_merit=False, lambda1=1.0)
    opt = shf.SHF(net, config=cfg, train_size=args.n, seed=0)
    comm = getattr(opt.problem, "collectives", None)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times, comm_s, comm_b, its, vec = [], [], [], [], []
    for r in range(args.repeat + 1):
        if comm is not None:
            comm.stats.reset()
            dist.barrier()
        sync()
        t = time.perf_counter()
        info = opt.step(X, val=Xv)
        sync()
        dt = time.perf_counter() - t
        if r == 0:
            continue  # warm-up
        times.append(dt)
        its.append(info.solver_iterations)
        # LSMR's own vector work (weight-sized, the same on every rank: it does not shrink with P)
        vec.append(info.times["solver"] - info.times["products"])
        if comm is not None:
            comm_s.append(comm.stats.seconds)
            comm_b.append(comm.stats.bytes)
    out: dict[str, Any] = {"step_s": statistics.median(times), "lsmr_iterations": statistics.median(its),
                           "replicated_s": statistics.median(vec), "n_weights": net.n_params()}  # fmt: skip
    if comm is not None:
        out.update(comm_s=statistics.median(comm_s), comm_bytes=statistics.median(comm_b))
        # an all-reduce of the weights' size, alone: the bandwidth and latency the model uses
        buf = torch.zeros(net.n_params(), device=device)
        tiny = torch.zeros(1, dtype=torch.float64, device=device)
        for _ in range(2):
            dist.all_reduce(buf)
        sync()
        t = time.perf_counter()
        for _ in range(5):
            dist.all_reduce(buf)
        sync()
        out["allreduce_weights_s"] = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        for _ in range(20):
            dist.all_reduce(tiny)
        sync()
        out["allreduce_scalar_s"] = (time.perf_counter() - t) / 20
    return out


def _rank(rank: int, world: int, init: str, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{init}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=600))  # fmt: skip
    try:
        res = _time_steps(args, device)
        if rank == 0:
            Path(out).write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()


def _spawn(P: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        mp.spawn(_rank, args=(P, os.path.join(d, "init"), args, out), nprocs=P, join=True)  # type: ignore[attr-defined,no-untyped-call]
        res: dict[str, Any] = json.loads(Path(out).read_text())
        return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--procs", default="1,2", help="process counts P (comma-separated)")
    p.add_argument("--n", type=int, default=6000, help="rows of the batch (n_max)")
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--lsmr", type=int, default=10, help="LSMR iterations per HF iteration")
    p.add_argument("--repeat", type=int, default=2, help="timed HF iterations (after one warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bandwidth", type=float, default=None, help="model with this all-reduce bandwidth, GB/s")
    p.add_argument("--out", default=None, help="directory for distributed.json and distributed.md")
    args = p.parse_args(argv)
    procs = [int(x) for x in args.procs.split(",")]
    rows: list[dict[str, Any]] = []
    base: dict[str, Any] | None = None
    for P in procs:
        if args.device == "cpu":
            torch.set_num_threads(P)  # one process with P threads: the baseline for P processes
            one = _time_steps(args, torch.device("cpu"))
            rows.append({"processes": 1, "threads_each": P, **one})
            if P == 1:
                base = one
        if P > 1:
            rows.append({"processes": P, "threads_each": 1, **_spawn(P, args)})
        elif args.device != "cpu":
            one = _time_steps(args, torch.device(args.device))
            rows.append({"processes": 1, "threads_each": torch.get_num_threads(), **one})
            base = one
    lines = ["| processes | threads each | HF iteration s | LSMR its | in collectives s | share | "
             "MB all-reduced per HF it |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        share = r["comm_s"] / r["step_s"] if "comm_s" in r else 0.0
        mb = r["comm_bytes"] / 1e6 if "comm_bytes" in r else 0.0
        cells = [r["processes"], r["threads_each"], f"{r['step_s']:.3f}", f"{r['lsmr_iterations']:.0f}",
                 f"{r.get('comm_s', 0.0):.3f}", f"{share:.1%}", f"{mb:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    model: list[dict[str, Any]] = []
    dp = [r for r in rows if r["processes"] > 1]
    if base is not None and dp:
        m = dp[-1]
        nbytes = 4 * m["n_weights"]
        ring = 2 * (m["processes"] - 1) / m["processes"]
        bw = args.bandwidth * 1e9 if args.bandwidth else ring * nbytes / m["allreduce_weights_s"]
        lat = m["allreduce_scalar_s"]
        L = base["lsmr_iterations"]
        lines += ["", f"per LSMR iteration: one all-reduce of the {m['n_weights']:,} weights "
                  f"({nbytes / 1e6:.2f} MB in float32) and one of 8 bytes (||u||)", ""]
        rep = base["replicated_s"]
        lines += [f"model T(P) = (T1 - T_rep)/P + T_rep + L (2 (P-1)/P bytes/bandwidth + 2 latency): "
                  f"bandwidth {bw / 1e9:.2f} GB/s, scalar all-reduce {lat * 1e6:.0f} us, L = {L:.0f}, "
                  f"T1 = {base['step_s']:.3f} s, T_rep (LSMR's vector work, replicated) = {rep:.3f} s", "",
                  "| P | modelled HF iteration s | speed-up |", "|---|---|---|"]  # fmt: skip
        for P in (1, 2, 4, 8, 16, 32):
            comm_t = 0.0 if P == 1 else L * (2 * (P - 1) / P * nbytes / bw + 2 * lat)
            t = (base["step_s"] - rep) / P + rep + comm_t
            model.append({"P": P, "step_s": t, "speedup": base["step_s"] / t})
            lines.append(f"| {P} | {t:.3f} | {base['step_s'] / t:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        d = Path(args.out)
        d.mkdir(parents=True, exist_ok=True)
        env = {"argv": sys.argv, "torch": torch.__version__, "device": args.device}
        record = {"env": env, "rows": rows, "model": model}
        (d / "distributed.json").write_text(json.dumps(record, indent=2) + "\n")
        (d / "distributed.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
