"""Per-example statistics on the generic path: per-layer rules against ``vmap``, same run.

    taskset -c 0 python benchmarks/per_example.py [--n 2000] [--repeats 5]
    python benchmarks/per_example.py --memory [--n 2000]

For each model, the time of ``ModuleProblem.per_example_products`` (what the Chapelle-Erhan
preconditioner, Martens' preconditioner and Alg. 2's variance test call once or twice per HF
iteration) through the layer rules and through ``vmap``, interleaved, median of the repeats,
one thread; and, as the yardstick, one gradient (a forward and a backward pass) on the same
batch. Prints a markdown table with the ratios.

``--memory`` measures peak memory instead (issue 27's goal: the per-example statistics at most
twice a forward and backward pass on the same batch): each call runs in a fresh process (spawn)
with the model, batch and weights already built and the call made once, so that lazy
initialisation is not counted; the peak is the resident set's high-water mark during a second
call (``/proc/self/clear_refs``, then ``VmHWM``) less the resident set just before it. glibc's
``MALLOC_MMAP_THRESHOLD_`` is fixed at 64 KiB in the children, so freed tensors go back to the
system at once and the high-water mark follows the live tensors instead of a heap that keeps
freed pages. Linux only.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from shf.bench.memory import _reset_peak, current_rss_mb
from shf.curvature.module import ModuleProblem
from shf.curvature.per_example import LayerPlan
from shf.models.classifier import RowTransformer


def _models(n: int) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor, str]]:
    g = torch.Generator().manual_seed(0)
    sizes = (256, 400, 200, 100, 50, 25)
    layers: list[nn.Module] = []
    dims = list(sizes) + list(reversed(sizes[:-1]))
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i != len(sizes) - 2 and i != len(dims) - 2:
            layers.append(nn.Sigmoid())
    usps_ae = nn.Sequential(*layers)
    Xu = torch.rand(n, 256, generator=g)
    cnn = nn.Sequential(
        nn.Unflatten(1, (1, 16, 16)), nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 10),
    )  # fmt: skip
    yl = torch.randint(0, 10, (n,), generator=g)
    mlp = nn.Sequential(nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10))
    Xm = torch.rand(n, 784, generator=g)

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(1000, 64)
            self.norm = nn.LayerNorm(64)
            self.mix = nn.Linear(64, 64)
            self.out = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm(self.emb(x))
            out: torch.Tensor = self.out(torch.tanh(self.mix(h)).mean(dim=1))
            return out

    class Recurrent(nn.Module):
        """A recurrent layer over the 16 rows of a 16x16 image, its outputs' mean to 10 logits."""

        def __init__(self, core: nn.RNNBase) -> None:
            super().__init__()
            self.core, self.head = core, nn.Linear(core.hidden_size, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.head(self.core(x.reshape(-1, 16, 16))[0].mean(dim=1))
            return out

    ids = torch.randint(0, 1000, (n, 32), generator=g)
    return {
        "USPS autoencoder (nn.Sequential)": (usps_ae, Xu, Xu, "mse"),
        "MNIST MLP classifier": (mlp, Xm, yl, "cross_entropy"),
        "USPS CNN classifier": (cnn, Xu, yl, "cross_entropy"),
        "tokens: Embedding, LayerNorm, Linear on 32 positions": (Tokens(), ids, yl, "cross_entropy"),
        # shf's transformer classifier (model.arch = transformer): attention, LayerNorm, Linear
        # on the 16 rows, the position Embedding; one block of width 32, four heads (the model
        # of the classify-usps-transformer runs)
        "USPS row transformer (MultiheadAttention)": (
            RowTransformer(256, 10, width=32, layers=1, heads=4).eval(), Xu, yl, "cross_entropy",
        ),
        # vmap cannot batch the recurrent kernels: their reference is one example at a time
        "LSTM 16-32 over 16 rows": (Recurrent(nn.LSTM(16, 32, batch_first=True)), Xu, yl, "cross_entropy"),
        "GRU 16-32-32 (2 layers) over 16 rows": (
            Recurrent(nn.GRU(16, 32, num_layers=2, batch_first=True)), Xu, yl, "cross_entropy",
        ),
    }


def _problem(
    model: nn.Module, X: torch.Tensor, Y: torch.Tensor, loss: str
) -> tuple[ModuleProblem, list[torch.Tensor], LayerPlan | None, torch.Tensor]:
    """The model's problem, its weights, its layer plan and random output cotangents ``V``."""
    prob = ModuleProblem(model, loss)
    w = [q.detach() for q in model.parameters()]
    with torch.no_grad():
        z = prob.output(w, X, Y)
    return prob, w, prob.layer_plan, torch.randn_like(z)


def _time(f: Callable[[], object]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _measure(
    model: nn.Module, X: torch.Tensor, Y: torch.Tensor, loss: str, repeats: int
) -> tuple[int, float, float, float, str]:
    """(weights, median seconds of a gradient, of the layer rules, of the fallback, which
    fallback: ``vmap``, or ``loop`` where vmap fails and shf takes one example at a time)."""
    prob, w, plan, V = _problem(model, X, Y, loss)

    def rules() -> object:
        prob.layer_plan = plan
        out = prob.per_example_products(w, X, Y, V)
        assert prob.per_example_path == "layers"
        return out

    fallback: list[str | None] = [None]  # what the first call fell back to

    def vmap() -> object:
        prob.layer_plan, prob.per_example_path = None, fallback[0]
        out = prob.per_example_products(w, X, Y, V)
        fallback[0] = prob.per_example_path
        return out

    def gradient() -> object:
        return prob.jacobian(w, X, Y).gradient()

    times: dict[str, list[float]] = {"g": [], "r": [], "v": []}
    for f in (gradient, rules, vmap):  # warm-up
        f()
    for _ in range(repeats):
        times["g"].append(_time(gradient))
        times["r"].append(_time(rules))
        times["v"].append(_time(vmap))
    g, r, v = (statistics.median(times[k]) for k in "grv")
    return prob.n_params, g, r, v, str(fallback[0])


def _peak_mb() -> float:
    """The resident set's high-water mark of this process in MiB (``VmHWM``, Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def _memory_child(name: str, n: int, what: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    """Put the peak MiB of one call of ``what`` (gradient, rules or vmap) on ``model`` into ``q``."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, X, Y, loss = _models(n)[name]
    prob, w, plan, V = _problem(model, X, Y, loss)

    def call() -> object:
        if what == "gradient":
            return prob.jacobian(w, X, Y).gradient()
        prob.layer_plan = plan if what == "rules" else None
        out = prob.per_example_products(w, X, Y, V)
        assert prob.per_example_path == ("layers" if what == "rules" else "vmap"), prob.per_example_path
        return out

    call()  # lazy initialisation (kernels, the trace) is not counted
    gc.collect()
    before = current_rss_mb()
    if not _reset_peak():
        raise RuntimeError("cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    out = call()
    peak = _peak_mb()
    del out
    q.put(peak - before)


def _memory(name: str, n: int, what: str) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_memory_child, args=(name, n, what, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"{name}, {what}: the measuring process failed ({p.exitcode})")
    return float(q.get())


def main_memory(n: int) -> int:
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # read by glibc when a child starts
    print(f"{n} examples, one thread; peak MiB of one call above the memory held before it\n")
    print("| model | weights | gradient | layer rules | vmap | rules / gradient | vmap / gradient |")
    print("|---|---|---|---|---|---|---|")
    for name, (model, _, _, _) in _models(8).items():
        weights = sum(p.numel() for p in model.parameters())
        g = _memory(name, n, "gradient")
        r = _memory(name, n, "rules")
        recurrent = isinstance(getattr(model, "core", None), nn.RNNBase)
        v = None if recurrent else _memory(name, n, "vmap")  # vmap cannot batch them (see above)
        vs = "—" if v is None else f"{v:.1f}"
        vr = "—" if v is None else f"{v / g:.1f}"
        print(f"| {name} | {weights:,} | {g:.1f} | {r:.1f} | {vs} | {r / g:.2f} | {vr} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=2000, help="examples in the batch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory", action="store_true", help="peak memory instead of time")
    a = p.parse_args(argv)
    if a.memory:
        return main_memory(a.n)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{a.n} examples, one thread, median of {a.repeats} (seconds)\n")
    print("| model | weights | gradient | layer rules | fallback | fallback / rules | rules / gradient |")
    print("|---|---|---|---|---|---|---|")
    for name, (model, X, Y, loss) in _models(a.n).items():
        weights, g, r, v, fallback = _measure(model, X, Y, loss, a.repeats)
        cells = f"{weights:,} | {g:.4f} | {r:.4f} | {v:.4f} ({fallback}) | {v / r:.1f} | {r / g:.1f}"
        print(f"| {name} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
