"""Small classifiers for the examples beyond autoencoders: an MLP and a CNN on flattened images.

Both take rows of ``side * side`` pixels (as the data loaders give them) and return
``classes`` logits, for ``loss="cross_entropy"``. They are ordinary ``nn.Module``s, so SHF
trains them through the ``torch.func`` products (:mod:`shf.curvature.module`).
"""

from __future__ import annotations

import itertools
import math
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


class SmallCNN(nn.Module):
    """Two 5x5 convolutions (``channels`` maps each, ReLU, 2x2 max-pooling), then a linear layer.

    Args:
        inputs: pixels per row, a square image (256 for USPS, 784 for MNIST).
        classes: number of logits.
        channels: feature maps of the two convolutions.
    """

    def __init__(self, inputs: int, classes: int, channels: Sequence[int] = (8, 16)) -> None:
        super().__init__()
        side = math.isqrt(inputs)
        if side * side != inputs or side < 4:
            raise ConfigError(f"the CNN needs square images: {inputs} pixels is not side^2 with side >= 4")
        c1, c2 = channels
        self.side = side
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Linear(c2 * (side // 4) ** 2, classes)

    def forward(self, x: Tensor) -> Tensor:
        z = self.features(x.reshape(x.shape[0], 1, self.side, self.side))
        out: Tensor = self.head(torch.flatten(z, 1))
        return out
