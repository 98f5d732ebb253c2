"""Data sets for the paper's autoencoder experiments (loaders and offline generators)."""
