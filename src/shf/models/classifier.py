"""Small classifiers for the examples beyond autoencoders: an MLP, a CNN and a transformer on
flattened images.

Each takes rows of ``side * side`` pixels (as the data loaders give them) and returns
``classes`` logits, for ``loss="cross_entropy"``. They are ordinary ``nn.Module``s, so SHF
trains them through the generic products (:mod:`shf.curvature.module`).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from shf.errors import ConfigError


def mlp_classifier(inputs: int, hidden: Sequence[int], classes: int) -> nn.Sequential:
    """``inputs -> hidden[0] -> ... -> classes`` with tanh units and logits out."""
    sizes = [inputs, *hidden, classes]
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in sizes):
        raise ConfigError(f"layer sizes must be positive integers, got {sizes}")
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


class SmallCNN(nn.Sequential):
    """Two 5x5 convolutions (``channels`` maps each, ReLU, 2x2 max-pooling), then a linear layer.

    A plain chain of layers (an ``nn.Sequential``: rows of pixels unflattened to one-channel
    images, ``features``, flattened, ``head``), so that SHF's per-layer rules make its
    products (:mod:`shf.curvature.chain`).

    Args:
        inputs: pixels per row, a square image (256 for USPS, 784 for MNIST).
        classes: number of logits.
        channels: feature maps of the two convolutions.
    """

    def __init__(self, inputs: int, classes: int, channels: Sequence[int] = (8, 16)) -> None:
        side = math.isqrt(inputs)
        if side * side != inputs or side < 4:
            raise ConfigError(f"the CNN needs square images: {inputs} pixels is not side^2 with side >= 4")
        c1, c2 = channels
        features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        super().__init__(
            OrderedDict(
                unflatten=nn.Unflatten(1, (1, side, side)),
                features=features,
                flatten=nn.Flatten(),
                head=nn.Linear(c2 * (side // 4) ** 2, classes),
            )
        )
        self.side = side


class RowTransformer(nn.Module):
    """A small transformer that reads an image as a sequence of its rows.

    Each of the ``side`` rows (``side`` pixels) is embedded by a linear layer to ``width``
    features, a learned position embedding is added (an ``nn.Embedding`` of the row indices,
    zero at the start: a layer with a per-example rule), ``layers`` ``nn.TransformerEncoderLayer``
    blocks (``heads`` heads, feed-forward width ``2 * width``, no dropout, pre-norm) mix the
    rows, and the mean over rows goes through a layer norm and a linear layer to the logits.

    Args:
        inputs: pixels per row, a square image (256 for USPS, 784 for MNIST).
        classes: number of logits.
        width: the model width (divisible by ``heads``).
        layers: encoder blocks.
        heads: attention heads.
    """

    def __init__(self, inputs: int, classes: int, width: int = 32, layers: int = 1, heads: int = 4) -> None:
        super().__init__()
        side = math.isqrt(inputs)
        if side * side != inputs or side < 2:
            raise ConfigError(f"the transformer reads square images: {inputs} pixels is not side^2")
        if width < 1 or heads < 1 or width % heads:
            raise ConfigError(
                f"the transformer's width ({width}) must be a positive multiple of its heads ({heads})"
            )
        if layers < 1:
            raise ConfigError(f"the transformer needs at least one layer, got {layers}")
        self.side = side
        self.embed = nn.Linear(side, width)
        self.position = nn.Embedding(side, width)
        nn.init.zeros_(self.position.weight)
        block = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        rows = torch.arange(self.side, device=x.device).expand(x.shape[0], self.side)
        h = self.embed(x.reshape(x.shape[0], self.side, self.side)) + self.position(rows)
        out: Tensor = self.head(self.norm(self.encoder(h).mean(dim=1)))
        return out
