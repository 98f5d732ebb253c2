"""Models trained by shf: the paper's symmetric deep autoencoder (the hand-written fast path)
and small classifiers for the examples."""

from shf.models.autoencoder import Autoencoder, forward, loss, sparse_init
from shf.models.classifier import RowTransformer, SmallCNN, mlp_classifier

__all__ = ["Autoencoder", "RowTransformer", "SmallCNN", "forward", "loss", "mlp_classifier", "sparse_init"]
