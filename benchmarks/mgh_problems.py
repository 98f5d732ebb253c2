"""Scalable least-squares problems of Moré, Garbow and Hillstrom (1981), with known solutions.

"Testing unconstrained optimization software", ACM TOMS 7(1): problems whose size ``n`` (the
parameters) and ``m`` (the residuals) are chosen, for the larger problems of issue 31 item 4.
Each residual vector ``f(x)`` is written here from the paper's definition; the starting point
is the paper's ``x0``; the minimum is ``f* = 0`` for all four (the variably dimensioned and
extended Rosenbrock functions at a known ``x* = 1``).

Accuracy: where ``x*`` is known, the certified digits of ``x`` (NIST's LRE, as for the StRD
problems); for all, ``-log10 ||f(x)||`` (the digits of the zero residual).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def extended_rosenbrock(x: Tensor) -> Tensor:
    """MGH 21 (``n`` even, ``m = n``): ``f_{2i-1} = 10 (x_{2i} - x_{2i-1}^2)``, ``f_{2i} = 1 - x_{2i-1}``."""
    odd, even = x[0::2], x[1::2]
    return torch.stack([10.0 * (even - odd**2), 1.0 - odd], dim=1).reshape(-1)


def variably_dimensioned(x: Tensor) -> Tensor:
    """MGH 25 (``m = n + 2``): ``f_i = x_i - 1``, ``f_{n+1} = sum_j j (x_j - 1)``, ``f_{n+2} = f_{n+1}^2``."""
    j = torch.arange(1, x.shape[0] + 1, dtype=x.dtype)
    s = (j * (x - 1.0)).sum()
    return torch.cat([x - 1.0, s.reshape(1), (s * s).reshape(1)])


def broyden_tridiagonal(x: Tensor) -> Tensor:
    """MGH 30 (``m = n``): ``f_i = (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 1``, ``x_0 = x_{n+1} = 0``."""
    pad = torch.nn.functional.pad(x, (1, 1))
    return (3.0 - 2.0 * x) * x - pad[:-2] - 2.0 * pad[2:] + 1.0


def discrete_boundary_value(x: Tensor) -> Tensor:
    """MGH 28 (``m = n``): ``h = 1/(n+1)``, ``t_i = i h``,
    ``f_i = 2 x_i - x_{i-1} - x_{i+1} + h^2 (x_i + t_i + 1)^3 / 2``, ``x_0 = x_{n+1} = 0``."""
    n = x.shape[0]
    h = 1.0 / (n + 1)
    t = torch.arange(1, n + 1, dtype=x.dtype) * h
    pad = torch.nn.functional.pad(x, (1, 1))
    return 2.0 * x - pad[:-2] - pad[2:] + h * h * (x + t + 1.0) ** 3 / 2.0


def _start(name: str, n: int, dtype: torch.dtype) -> Tensor:
    if name == "extended_rosenbrock":
        return torch.tensor([-1.2, 1.0], dtype=dtype).repeat(n // 2)
    if name == "variably_dimensioned":
        return 1.0 - torch.arange(1, n + 1, dtype=dtype) / n
    if name == "broyden_tridiagonal":
        return -torch.ones(n, dtype=dtype)
    t = torch.arange(1, n + 1, dtype=dtype) / (n + 1)  # discrete boundary value: t_i (t_i - 1)
    return t * (t - 1.0)


FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "extended_rosenbrock": extended_rosenbrock,
    "variably_dimensioned": variably_dimensioned,
    "broyden_tridiagonal": broyden_tridiagonal,
    "discrete_boundary_value": discrete_boundary_value,
}


@dataclass(frozen=True)
class MghProblem:
    """One scalable problem at size ``n``: ``f(x)`` (m,), ``x0``, and ``x*`` where it is known."""

    name: str
    n: int
    x0: Tensor
    solution: Tensor | None

    def residual(self, x: Tensor) -> Tensor:
        return FUNCTIONS[self.name](x)

    def zero_digits(self, x: Tensor) -> float:
        """``-log10 ||f(x)||`` (16 at most, 0 at least): the digits of the zero residual."""
        r = float(torch.linalg.vector_norm(self.residual(x)))
        if not r < float("inf"):
            return 0.0
        return 16.0 if r == 0.0 else min(16.0, max(0.0, -torch.log10(torch.tensor(r)).item()))


def problem(name: str, n: int) -> MghProblem:
    """The problem ``name`` with ``n`` parameters (float64)."""
    if name not in FUNCTIONS:
        raise ValueError(f"unknown problem {name!r}: one of {', '.join(FUNCTIONS)}")
    if name == "extended_rosenbrock" and n % 2:
        raise ValueError("the extended Rosenbrock function needs an even n")
    known = name in ("extended_rosenbrock", "variably_dimensioned")
    solution = torch.ones(n, dtype=torch.float64) if known else None
    return MghProblem(name, n, _start(name, n, torch.float64), solution)
