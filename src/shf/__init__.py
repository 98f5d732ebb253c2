"""shf: stochastic Hessian-free optimisation with LSMR (Emirahmetoglu & Stewart, 2025)."""

from shf.errors import ConfigError, DataError, ShfError
from shf.solvers.lsmr import LsmrInfo, LsmrStop, lsmr

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "LsmrInfo", "LsmrStop", "ShfError", "__version__", "lsmr"]
