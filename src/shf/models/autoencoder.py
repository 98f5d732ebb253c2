"""The symmetric deep autoencoder of §3 as a ``torch.nn.Module``.

Layer sizes ``(m_1, ..., m_{k+1})``: the encoder is given, the decoder mirrors it, so
``m_{k+1} = m_1``. Weight ``W_l`` has shape ``(m_l + 1) x m_{l+1}`` with the bias in
its last row (eq. 1), and layer ``l`` computes ``S_l = sigma_l(S~_{l-1} W_l)`` (eq. 3)
with ``S~ = [S 1]``. The loss is ``f = (1/n) sum_i 1/2 ||xhat_i - x_i||^2``
``= 1/2 ||R||_F^2`` with the residual ``R = (S_k - X)/sqrt(n)`` (§3).

The module's parameters are the matrices ``W_l`` themselves (``weights``), so SHF uses
the hand-written products of :mod:`shf.curvature.mlp` (Alg. 4, 5) on it: the fast path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from shf.batch import Inputs
from shf.curvature.mlp import (
    ACTIVATIONS,
    CROSS_ENTROPY,
    LINEAR,
    LOGISTIC,
    LOSSES,
    SQUARED,
    MLPJacobian,
    Outputs,
    activation,
    affine,
    check_batch,
    check_weights,
    cross_entropy,
    forward,
    loss,
    objective,
    pre_activations,
    weight_count,
)
from shf.errors import ConfigError, DataError

__all__ = [
    "ACTIVATIONS",
    "CROSS_ENTROPY",
    "LINEAR",
    "LOGISTIC",
    "LOSSES",
    "SQUARED",
    "Autoencoder",
    "activation",
    "affine",
    "as_sequential",
    "cross_entropy",
    "forward",
    "loss",
    "sequential_weights",
    "sparse_init",
]


def _one_tensor(X: Inputs) -> Tensor:
    """The autoencoder's inputs: one tensor (not a dict)."""
    if not isinstance(X, Tensor):
        raise DataError(f"the autoencoder takes one tensor of inputs, got {type(X).__name__}")
    return X


class Autoencoder(nn.Module):
    """A symmetric autoencoder: layer sizes and one activation per non-input layer.

    Args:
        encoder: encoder sizes ``(m_1, ..., m_c)``, input first, code last.
        linear_code: make the code layer linear (Hinton & Salakhutdinov, Martens);
            the paper uses logistic units everywhere (NOTES item 11).
        loss_name: the training objective: ``squared`` (the paper's
            ``(1/n) sum 1/2 ||r_i||^2``) or ``cross_entropy`` on the logistic outputs
            (Martens 2010). Errors are always reported as squared errors.
        m0, sigma: the sparse initialisation of eq. (9) the weights start from.
        generator: random numbers for the initialisation (default: torch's global RNG).
        dtype, device: of the weights.
    """

    def __init__(
        self,
        encoder: Sequence[int],
        linear_code: bool = False,
        loss_name: str = SQUARED,
        *,
        m0: int = 20,
        sigma: float = 1.5,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        enc = tuple(encoder)
        if len(enc) < 2:
            raise ConfigError(f"encoder needs at least an input and a code size, got {list(enc)}")
        for m in enc:
            if isinstance(m, bool) or not isinstance(m, int) or m <= 0:
                raise ConfigError(f"layer sizes must be positive integers, got {list(enc)}")
        if loss_name not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {loss_name!r}")
        self.encoder = enc
        self.linear_code = bool(linear_code)
        self.loss_name = loss_name
        # Decoder mirrors the encoder (§6, "symmetric autoencoder").
        self.sizes = enc + tuple(reversed(enc[:-1]))
        k = len(self.sizes) - 1
        code = len(enc) - 2  # index of the weight matrix that produces the code layer
        self.activations = tuple(LINEAR if (self.linear_code and l == code) else LOGISTIC for l in range(k))
        w = sparse_init(self, m0=m0, sigma=sigma, generator=generator, dtype=dtype, device=device)
        self.weights = nn.ParameterList([nn.Parameter(W) for W in w])
        self._outputs = OutputMemo()

    def extra_repr(self) -> str:
        return f"sizes={list(self.sizes)}, activations={list(self.activations)}, loss={self.loss_name!r}"

    def forward(self, X: Tensor) -> Tensor:
        """The reconstruction ``S_k`` of the rows of ``X`` (eq. 3), differentiable."""
        return pre_activations(self, list(self.weights), X)[0]

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
        return weight_count(self)

    def check_weights(self, w: Sequence[Tensor]) -> None:
        """Raise ``ValueError`` unless ``w`` has this network's shapes."""
        check_weights(self, w)

    def check_data(self, X: Tensor, name: str = "X") -> None:
        """Raise ``ValueError`` for a batch this network cannot reconstruct."""
        check_batch(self, X, name)

    # The curvature-model protocol (shf.curvature.base.CurvatureModel): the fast path.

    def jacobian(self, w: list[Tensor], X: Inputs, Y: Tensor | None = None) -> MLPJacobian:
        """``grad R(w; X)`` with ``S_l, S'_l`` cached (Alg. 4, 5); targets ``Y = X`` by default."""
        return MLPJacobian(self, w, _one_tensor(X), Y)

    def loss(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None = None) -> float:
        """The training objective at ``(w, X)``: squared error or cross-entropy, the output layer's
        pre-activations shared with :meth:`squared_error` at the same weights and rows
        (:class:`OutputMemo`)."""
        return objective(self, w, _one_tensor(X), Y, outputs=self._memo(w))

    def squared_error(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None = None) -> float:
        """``(1/n) sum_i 1/2 ||s_{k,i} - y_i||^2`` (§3; ``Y = X`` by default), the error every table
        reports, with the pre-activations shared with :meth:`loss` (:class:`OutputMemo`)."""
        return loss(self, w, _one_tensor(X), Y, outputs=self._memo(w))

    def _memo(self, w: Sequence[Tensor]) -> Outputs:
        return lambda Xc: self._outputs.get(self, w, Xc)

    def check_batch(self, w: Sequence[Tensor], X: Inputs, Y: Tensor | None) -> None:
        """Raise ``ValueError`` unless ``(X, Y)`` fits the network (widths, rows)."""
        X = _one_tensor(X)
        check_batch(self, X)
        if Y is not None:
            check_batch(self, Y, "targets", output=True)
            if Y.shape[0] != X.shape[0]:
                raise ValueError(f"inputs have {X.shape[0]} rows but targets have {Y.shape[0]}")


class OutputMemo:
    """A one-entry memo of the output layer's pre-activations ``Z_k`` (eq. 3) on one chunk of rows.

    Beyond the paper (an exact saving): an autoencoder trained on the cross-entropy (B9) has SHF
    compute the validation cross-entropy (Alg. 2's ``f_val,i``) and the loop the validation squared
    error (the reported error) at the same weights in each HF iteration; with the memo both read one
    forward pass instead of two (5-6% of an HF iteration on CURVES, 2,000 validation rows). The
    numbers are those of two forward passes, bit for bit.

    A hit needs the same rows and the same weights: the rows in the same memory (the memo holds the
    chunk, so that memory cannot be freed and reused by another tensor) with unchanged version
    counters (an in-place change of the data misses), and weights equal, element for element, to the
    copy stored with ``Z_k`` (the loop's weights are copies of the optimizer's, so identity would
    never hit). A miss computes ``Z_k`` and replaces the entry.
    """

    def __init__(self) -> None:
        self._X: Tensor | None = None
        self._version = -1
        self._w: list[Tensor] = []
        self._Z: Tensor | None = None

    def get(self, spec: Autoencoder, w: Sequence[Tensor], X: Tensor) -> Tensor:
        """``Z_k`` for the rows ``X`` at the weights ``w`` (do not modify it)."""
        if self._Z is not None and self._hit(w, X):
            return self._Z
        Z = pre_activations(spec, w, X)[1]
        self._X, self._version, self._Z = X, X._version, Z
        self._w = [t.detach().clone() for t in w]
        return Z

    def _hit(self, w: Sequence[Tensor], X: Tensor) -> bool:
        held = self._X
        assert held is not None
        same_rows = (
            held.data_ptr() == X.data_ptr()
            and held.shape == X.shape
            and held.stride() == X.stride()
            and held.dtype == X.dtype
            and held.device == X.device
            and held._version == self._version
            and X._version == self._version
        )
        same_weights = len(w) == len(self._w) and all(
            a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(w, self._w)
        )
        return same_rows and same_weights


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
    if isinstance(m0, bool) or not isinstance(m0, int) or m0 <= 0:
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
        W = W.to(dtype=dtype, device=device)  # bias row stays 0
        if not bool(torch.isfinite(W).all()):
            raise ConfigError(f"sigma = {sigma:g} makes the initial weights overflow {dtype}: use less")
        w.append(W)
    return w


def as_sequential(
    net: Autoencoder, w: Sequence[Tensor] | None = None, *, logits: bool = False
) -> nn.Sequential:
    """The same network written as a user would: ``nn.Sequential`` of ``nn.Linear`` and
    ``nn.Sigmoid`` layers, with the weights ``w`` (default: the network's own).

    Layer ``l`` of the autoencoder computes ``S~ W_l = S W_l^- + 1 w_b^T`` (eq. 3); the
    ``nn.Linear`` holds ``weight = (W_l^-)^T`` and ``bias = w_b``, so both compute the same
    function (to round-off: another kernel). ``logits=True`` leaves the output layer's
    logistic unit out, for ``loss="bce"`` (the cross-entropy of the logistic outputs, which
    is the autoencoder's ``cross_entropy`` objective per coordinate). The copy is a new
    module: it shares no tensor with ``net``.
    """
    w = list(net.weights) if w is None else list(w)
    net.check_weights(w)
    layers: list[nn.Module] = []
    last = len(net.activations) - 1
    for l, (act, W) in enumerate(zip(net.activations, w)):
        lin = nn.Linear(W.shape[0] - 1, W.shape[1], dtype=W.dtype, device=W.device)
        with torch.no_grad():
            lin.weight.copy_(W[:-1].T)
            lin.bias.copy_(W[-1])
        layers.append(lin)
        if act == LOGISTIC and not (logits and l == last):
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def sequential_weights(w: Sequence[Tensor]) -> list[Tensor]:
    """The autoencoder's weights ``W_l`` as :func:`as_sequential`'s parameters, in order:
    ``(W_1^-)^T, w_b1, (W_2^-)^T, w_b2, ...`` (new contiguous tensors)."""
    out: list[Tensor] = []
    for W in w:
        out += [W[:-1].T.contiguous(), W[-1].clone()]
    return out


def autoencoder_weights(params: Sequence[Tensor]) -> list[Tensor]:
    """The inverse of :func:`sequential_weights`: ``nn.Linear`` parameters ``(weight, bias)`` in
    order as the autoencoder's ``W_l = [weight^T; bias]`` (new tensors)."""
    if len(params) % 2:
        raise ValueError(f"expected (weight, bias) pairs, got {len(params)} tensors")
    return [torch.cat([W.T, b.unsqueeze(0)], 0) for W, b in zip(params[::2], params[1::2])]
