"""Models trained by shf: the paper's symmetric deep autoencoder."""

from shf.models.autoencoder import Autoencoder, forward, loss, sparse_init

__all__ = ["Autoencoder", "forward", "loss", "sparse_init"]
