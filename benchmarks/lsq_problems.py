"""The NIST StRD nonlinear regression problems, with their certified values, as torch models.

The 27 problems of NIST's Statistical Reference Datasets for nonlinear least squares
(https://www.itl.nist.gov/div898/strd/nls/nls_main.shtml; public domain): data, two starting
points each (Start 1 far from the solution, Start 2 near it), the certified parameters and
residual sum of squares to 11 significant digits, and three levels of difficulty. The original
``.dat`` files are in ``benchmarks/data/nist-strd.tar.gz`` (or any folder of them, ``--nist-dir``).

The model of each problem is written here from its file's "Model:" section; ``Nelson`` fits
``log y``. The test ``tests/test_benchmark_least_squares.py`` checks every model against its
certified residual sum of squares.

The accuracy measure is NIST's *log relative error* (LRE): for an estimate ``b`` of a certified
``c``, ``LRE = -log10(|b - c| / |c|)``, the number of correct significant digits, clipped to
``[0, 11]`` (the certified values have 11).
"""

from __future__ import annotations

import io
import math
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

ARCHIVE = Path(__file__).resolve().parent / "data" / "nist-strd.tar.gz"
DIGITS = 11.0
"""Significant digits of NIST's certified values: the most an LRE can show."""

Model = Callable[[Tensor, Tensor], Tensor]
"""``model(b, x)``: the predictions (n,) for parameters ``b`` (p,) and predictors ``x`` (n, k)."""


def _rational(num: int) -> Model:
    """``(b1 + b2 x + ... ) / (1 + b_{num+1} x + ...)`` with ``num`` numerator coefficients."""

    def f(b: Tensor, x: Tensor) -> Tensor:
        t = x[:, 0]
        top = sum(b[i] * t**i for i in range(num))
        bottom = 1.0 + sum(b[num + i] * t ** (i + 1) for i in range(b.shape[0] - num))
        out = top / bottom
        assert isinstance(out, Tensor)  # num >= 1 terms on top
        return out

    return f


def _gauss(b: Tensor, x: Tensor) -> Tensor:
    t = x[:, 0]
    return (b[0] * torch.exp(-b[1] * t) + b[2] * torch.exp(-((t - b[3]) ** 2) / b[4] ** 2)
            + b[5] * torch.exp(-((t - b[6]) ** 2) / b[7] ** 2))  # fmt: skip


def _lanczos(b: Tensor, x: Tensor) -> Tensor:
    t = x[:, 0]
    return b[0] * torch.exp(-b[1] * t) + b[2] * torch.exp(-b[3] * t) + b[4] * torch.exp(-b[5] * t)


def _chwirut(b: Tensor, x: Tensor) -> Tensor:
    t = x[:, 0]
    return torch.exp(-b[0] * t) / (b[1] + b[2] * t)


def _exp_rise(b: Tensor, x: Tensor) -> Tensor:  # Misra1a, BoxBOD
    return b[0] * (1.0 - torch.exp(-b[1] * x[:, 0]))


def _enso(b: Tensor, x: Tensor) -> Tensor:
    t = x[:, 0]
    w = 2.0 * math.pi * t
    return (b[0] + b[1] * torch.cos(w / 12) + b[2] * torch.sin(w / 12)
            + b[4] * torch.cos(w / b[3]) + b[5] * torch.sin(w / b[3])
            + b[7] * torch.cos(w / b[6]) + b[8] * torch.sin(w / b[6]))  # fmt: skip


MODELS: dict[str, Model] = {
    # lower difficulty
    "Misra1a": _exp_rise,
    "Chwirut2": _chwirut,
    "Chwirut1": _chwirut,
    "Lanczos3": _lanczos,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "DanWood": lambda b, x: b[0] * x[:, 0] ** b[1],
    "Misra1b": lambda b, x: b[0] * (1.0 - (1.0 + b[1] * x[:, 0] / 2) ** -2),
    # average difficulty
    "Kirby2": _rational(3),
    "Hahn1": _rational(4),
    "Nelson": lambda b, x: b[0] - b[1] * x[:, 0] * torch.exp(-b[2] * x[:, 1]),  # log y
    "MGH17": lambda b, x: b[0] + b[1] * torch.exp(-x[:, 0] * b[3]) + b[2] * torch.exp(-x[:, 0] * b[4]),
    "Lanczos1": _lanczos,
    "Lanczos2": _lanczos,
    "Gauss3": _gauss,
    "Misra1c": lambda b, x: b[0] * (1.0 - (1.0 + 2 * b[1] * x[:, 0]) ** -0.5),
    "Misra1d": lambda b, x: b[0] * b[1] * x[:, 0] / (1.0 + b[1] * x[:, 0]),
    "Roszman1": lambda b, x: b[0] - b[1] * x[:, 0] - torch.atan(b[2] / (x[:, 0] - b[3])) / math.pi,
    "ENSO": _enso,
    # higher difficulty
    "MGH09": lambda b, x: b[0] * (x[:, 0] ** 2 + x[:, 0] * b[1]) / (x[:, 0] ** 2 + x[:, 0] * b[2] + b[3]),
    "Thurber": _rational(4),
    "BoxBOD": _exp_rise,
    "Rat42": lambda b, x: b[0] / (1.0 + torch.exp(b[1] - b[2] * x[:, 0])),
    "MGH10": lambda b, x: b[0] * torch.exp(b[1] / (x[:, 0] + b[2])),
    "Eckerle4": lambda b, x: (b[0] / b[1]) * torch.exp(-0.5 * ((x[:, 0] - b[2]) / b[1]) ** 2),
    "Rat43": lambda b, x: b[0] / (1.0 + torch.exp(b[1] - b[2] * x[:, 0])) ** (1.0 / b[3]),
    "Bennett5": lambda b, x: b[0] * (b[1] + x[:, 0]) ** (-1.0 / b[2]),
}
"""The 27 problems in NIST's order (lower, average, higher difficulty)."""


@dataclass(frozen=True)
class Problem:
    """One StRD problem: ``y ~ model(b, x)`` (``Nelson``: ``log y``), float64 tensors."""

    name: str
    difficulty: str
    x: Tensor
    y: Tensor
    starts: tuple[Tensor, Tensor]
    certified: Tensor
    certified_rss: float

    def model(self, b: Tensor, x: Tensor | None = None) -> Tensor:
        return MODELS[self.name](b, self.x if x is None else x)

    def residual(self, b: Tensor) -> Tensor:
        return self.model(b) - self.y

    def rss(self, b: Tensor) -> float:
        r = self.residual(b)
        return float(r @ r)


_NUMBER = r"[-+]?\d*\.?\d+(?:[EeDd][-+]?\d+)?"


def parse(name: str, text: str) -> Problem:
    """A problem from the text of its NIST ``.dat`` file."""
    lines = text.splitlines()
    starts: list[list[float]] = [[], []]
    certified: list[float] = []
    rss = math.nan
    difficulty = ""
    data_at = -1
    for i, line in enumerate(lines):
        m = re.match(rf"\s*b\d+\s*=\s*({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s*$", line)
        if m:
            starts[0].append(float(m.group(1)))
            starts[1].append(float(m.group(2)))
            certified.append(float(m.group(3)))
        if line.startswith("Residual Sum of Squares:"):
            rss = float(line.split(":")[1])
        if "Level of Difficulty" in line:
            difficulty = line.split()[0].lower()
        if line.startswith("Data:") and line.split()[1:2] == ["y"]:  # the table's header
            data_at = i
    if data_at < 0 or not certified:
        raise ValueError(f"{name}: not a NIST StRD nonlinear regression file")
    rows = [[float(v) for v in line.split()] for line in lines[data_at + 1 :] if line.strip()]
    table = torch.tensor(rows, dtype=torch.float64)
    y, x = table[:, 0], table[:, 1:]
    if name == "Nelson":
        y = torch.log(y)  # the model is of log y
    first, second, best = (torch.tensor(v, dtype=torch.float64) for v in (*starts, certified))
    return Problem(name, difficulty, x, y, (first, second), best, rss)


def load(source: Path | None = None, names: list[str] | None = None) -> list[Problem]:
    """The problems (all, or ``names``) in NIST's order, from the archive or a folder of ``.dat``
    files."""
    texts: dict[str, str] = {}
    source = ARCHIVE if source is None else source
    if source.is_dir():
        for f in source.glob("*.dat"):
            texts[f.stem] = f.read_text()
    else:
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                fh = tar.extractfile(member)
                if fh is not None and member.name.endswith(".dat"):
                    texts[Path(member.name).stem] = io.TextIOWrapper(fh, encoding="ascii").read()
    wanted = list(MODELS) if names is None else names
    missing = [n for n in wanted if n not in texts or n not in MODELS]
    if missing:
        raise ValueError(f"no NIST StRD file or model for {', '.join(missing)} in {source}")
    return [parse(n, texts[n]) for n in wanted]


def lre(estimate: Tensor | float, certified: Tensor | float) -> float:
    """The fewest correct significant digits over the entries (NIST's log relative error,
    clipped to ``[0, 11]``); 0 for a non-finite estimate."""
    b = torch.as_tensor(estimate, dtype=torch.float64).reshape(-1)
    c = torch.as_tensor(certified, dtype=torch.float64).reshape(-1)
    if not bool(torch.isfinite(b).all()):
        return 0.0
    rel = ((b - c).abs() / c.abs()).max().item()
    return DIGITS if rel == 0.0 else min(DIGITS, max(0.0, -math.log10(rel)))
