"""shf: stochastic Hessian-free optimisation with LSMR (Emirahmetoglu & Stewart, 2025).

A matrix-free Gauss-Newton / Levenberg-Marquardt optimizer for PyTorch models:

* :class:`SHF`: the optimizer (one HF iteration per ``step(inputs, targets, val=...)``);
* :func:`fit`: Alg. 1's whole loop for any ``nn.Module``, best-validation weights restored;
* :func:`lsmr`: the damped, preconditioned LSMR solver on its own;
* :mod:`shf.losses`: losses in least-squares form; :mod:`shf.models`: the paper's autoencoder.
"""

from shf import losses, models
from shf._version import __version__
from shf.errors import ConfigError, DataError, ShfError
from shf.fit import FitResult, fit
from shf.optim.hyper import PAPER
from shf.optim.settings import Batch, Damping, Init, LineSearch, Solver, WarmStart
from shf.optim.shf import SHF
from shf.optim.step import SHFConfig, StepInfo
from shf.solvers.lsmr import LsmrInfo, LsmrStop, lsmr

__all__ = [
    "PAPER",
    "SHF",
    "Batch",
    "ConfigError",
    "Damping",
    "DataError",
    "FitResult",
    "Init",
    "LineSearch",
    "LsmrInfo",
    "LsmrStop",
    "SHFConfig",
    "ShfError",
    "Solver",
    "StepInfo",
    "WarmStart",
    "__version__",
    "fit",
    "losses",
    "lsmr",
    "models",
]
