"""The symmetric deep autoencoder of §3, with weights as a list of matrices.

Layer sizes ``(m_1, ..., m_{k+1})``: the encoder is given, the decoder mirrors it, so
``m_{k+1} = m_1``. Weight ``W_l`` has shape ``(m_l + 1) x m_{l+1}`` with the bias in
its last row (eq. 1), and layer ``l`` computes ``S_l = sigma_l(S~_{l-1} W_l)`` (eq. 3)
with ``S~ = [S 1]``. The loss is ``f = (1/n) sum_i 1/2 ||xhat_i - x_i||^2``
``= 1/2 ||R||_F^2`` with the residual ``R = (S_k - X)/sqrt(n)`` (§3).

``S~ W`` is computed as ``S W^- + 1 w_b^T`` (``torch.addmm``) so the augmented
matrix ``S~`` is never materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from shf import tensorlist as tl
from shf.errors import ConfigError

if TYPE_CHECKING:
    from shf.curvature.mlp import AutoencoderJacobian

LOGISTIC = "logistic"
LINEAR = "linear"
ACTIVATIONS = (LOGISTIC, LINEAR)
SQUARED = "squared"
CROSS_ENTROPY = "cross_entropy"
LOSSES = (SQUARED, CROSS_ENTROPY)


@dataclass(frozen=True)
class Autoencoder:
    """A symmetric autoencoder: layer sizes and one activation per non-input layer.

    Args:
        encoder: encoder sizes ``(m_1, ..., m_c)``, input first, code last.
        linear_code: make the code layer linear (Hinton & Salakhutdinov, Martens);
            the paper uses logistic units everywhere (NOTES item 11).
        loss: the training objective: ``squared`` (the paper's ``(1/n) sum 1/2 ||r_i||^2``)
            or ``cross_entropy`` on the logistic outputs (Martens 2010). Errors are always
            reported as squared errors.
    """

    encoder: tuple[int, ...]
    linear_code: bool = False
    loss_name: str = SQUARED
    sizes: tuple[int, ...] = field(init=False)
    activations: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        enc = tuple(self.encoder)
        if len(enc) < 2:
            raise ConfigError(f"encoder needs at least an input and a code size, got {list(enc)}")
        for m in enc:
            if isinstance(m, bool) or not isinstance(m, int) or m <= 0:
                raise ConfigError(f"layer sizes must be positive integers, got {list(enc)}")
        object.__setattr__(self, "encoder", enc)
        # Decoder mirrors the encoder (§6, "symmetric autoencoder").
        sizes = enc + tuple(reversed(enc[:-1]))
        object.__setattr__(self, "sizes", sizes)
        k = len(sizes) - 1
        code = len(enc) - 2  # index of the weight matrix that produces the code layer
        acts = tuple(LINEAR if (self.linear_code and l == code) else LOGISTIC for l in range(k))
        object.__setattr__(self, "activations", acts)
        if self.loss_name not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss_name!r}")

    @property
    def n_layers(self) -> int:
        """``k``, the number of non-input layers (= number of weight matrices)."""
        return len(self.sizes) - 1

    @property
    def input_dim(self) -> int:
        """``m_1``."""
        return self.sizes[0]

    def weight_shapes(self) -> list[tuple[int, int]]:
        """Shapes ``(m_l + 1, m_{l+1})`` of ``W_1, ..., W_k`` (eq. 1)."""
        return [(self.sizes[l] + 1, self.sizes[l + 1]) for l in range(self.n_layers)]

    def n_params(self) -> int:
        """``n_var = sum_l (m_l + 1) m_{l+1}`` (§4)."""
        return sum(a * b for a, b in self.weight_shapes())

    def check_weights(self, w: Sequence[Tensor]) -> None:
        """Raise ``ValueError`` unless ``w`` has this network's shapes."""
        shapes = self.weight_shapes()
        if len(w) != len(shapes):
            raise ValueError(f"expected {len(shapes)} weight matrices, got {len(w)}")
        for l, (W, s) in enumerate(zip(w, shapes), start=1):
            if tuple(W.shape) != s:
                raise ValueError(f"W_{l} must have shape {s}, got {tuple(W.shape)}")

    def jacobian(self, w: list[Tensor], X: Tensor) -> AutoencoderJacobian:
        """``grad R(w; X)`` with ``S_l, S'_l`` cached (Alg. 4, 5)."""
        from shf.curvature.mlp import AutoencoderJacobian

        return AutoencoderJacobian(self, w, X)

    def loss(self, w: Sequence[Tensor], X: Tensor) -> float:
        """The training objective at ``(w, X)``: :func:`loss` or :func:`cross_entropy`."""
        if self.loss_name == CROSS_ENTROPY:
            return cross_entropy(self, w, X)
        return loss(self, w, X)

    def check_data(self, X: Tensor, name: str = "X") -> None:
        """Raise ``ValueError`` for a batch this network cannot reconstruct."""
        if X.dim() != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"{name} must have shape (n, {self.input_dim}), got {tuple(X.shape)}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} is empty")


def sparse_init(
    net: Autoencoder,
    *,
    m0: int,
    sigma: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Martens' sparse initialisation, eq. (9).

    Each unit ``j`` of layer ``l+1`` gets ``min(m0, m_l)`` nonzero incoming weights,
    at rows drawn without replacement from ``{1, ..., m_l}``, each ``~ N(0, sigma)``
    with ``sigma`` the standard deviation (NOTES item 8); biases are 0.
    """
    if m0 <= 0:
        raise ConfigError(f"m0 must be a positive integer, got {m0}")
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive, got {sigma}")
    w: list[Tensor] = []
    for rows, cols in net.weight_shapes():
        m_l = rows - 1
        nnz = min(m0, m_l)  # |I_{jl}| = min(m0, m_l)
        # Indices drawn without replacement per unit: argsort of uniform keys, one column each.
        keys = torch.rand(m_l, cols, generator=generator, dtype=torch.float64)
        idx = keys.argsort(dim=0)[:nnz]  # (nnz, cols) row indices for every unit
        vals = torch.randn(nnz, cols, generator=generator, dtype=torch.float64) * sigma
        W = torch.zeros(rows, cols, dtype=torch.float64)
        W[:m_l].scatter_(0, idx, vals)  # (W_l)_{ij} ~ N(0, sigma) if i in I_{jl}, else 0
        w.append(W.to(dtype=dtype, device=device))  # bias row stays 0
    return w


def activation(name: str, Z: Tensor) -> tuple[Tensor, Tensor]:
    """``(sigma(Z), sigma'(Z))`` for a named elementwise activation (eq. 3 and 15)."""
    if name == LOGISTIC:
        S = torch.sigmoid(Z)
        return S, S * (1.0 - S)  # logistic: sigma' = sigma (1 - sigma)
    if name == LINEAR:
        return Z, torch.ones_like(Z)
    raise ConfigError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


def affine(S: Tensor, W: Tensor) -> Tensor:
    """``S~ W = S W^- + 1 w_b^T`` with ``W^-`` the first ``m_l`` rows, ``w_b`` the bias row."""
    return torch.addmm(W[-1], S, W[:-1])


def forward(net: Autoencoder, w: Sequence[Tensor], X: Tensor) -> Tensor:
    """Reconstruction ``S_k`` of the rows of ``X`` (eq. 3), without caching."""
    S = X
    for act, W in zip(net.activations, w):
        Z = affine(S, W)
        S = Z.sigmoid_() if act == LOGISTIC else Z  # in place: Z is a new tensor
    return S


def loss(net: Autoencoder, w: Sequence[Tensor], X: Tensor, chunk: int = 8192) -> float:
    """``f(w; X) = (1/n) sum_i 1/2 ||xhat_i - x_i||^2`` (§3), in chunks of rows.

    Accumulated in float64; returns ``inf`` rather than NaN if the network overflows.
    """
    n = X.shape[0]
    total = 0.0
    with torch.no_grad():
        for start in range(0, n, chunk):
            Xc = X[start : start + chunk]
            R = forward(net, w, Xc).sub_(Xc)
            total += tl.sumsq(R)  # float64 accumulation without a float64 copy of R
    value = 0.5 * total / n
    return value if value == value else float("inf")


def cross_entropy(net: Autoencoder, w: Sequence[Tensor], X: Tensor, chunk: int = 8192) -> float:
    """``(1/n) sum_i sum_j -[x_ij log s_ij + (1 - x_ij) log(1 - s_ij)]`` on logistic outputs.

    Computed from the output pre-activations ``z`` as ``softplus(z) - x z`` (no log of 0).
    """
    n = X.shape[0]
    total = 0.0
    with torch.no_grad():
        for start in range(0, n, chunk):
            Xc = X[start : start + chunk]
            S = Xc
            Z = Xc
            for act, W in zip(net.activations, w):
                Z = affine(S, W)
                S = torch.sigmoid(Z) if act == LOGISTIC else Z
            total += tl.sum64(torch.nn.functional.softplus(Z).sub_(Xc * Z))
    value = total / n
    return value if value == value else float("inf")
