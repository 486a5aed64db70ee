"""Data sets: Fashion-MNIST from idx files (and, later, emulated and real event data)."""

from .fashion_mnist import CLASSES, DataError, ImageDataset, fashion_mnist, read_idx

__all__ = ["fashion_mnist", "read_idx", "ImageDataset", "DataError", "CLASSES"]
