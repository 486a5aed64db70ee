"""Shared fixtures: a tiny Fashion-MNIST in the real idx format."""

import gzip
import struct

import numpy as np
import pytest


def write_idx(path, arr):
    """Write ``arr`` (uint8) as a gzipped idx file, as the Fashion-MNIST distribution does."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.tobytes())


@pytest.fixture
def tiny_idx(tmp_path_factory):
    """A folder with 64 training and 32 test images of random noise and random labels."""
    root = tmp_path_factory.mktemp("tiny_fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return root


def _fmnist_available() -> bool:
    import leansnn as ls

    try:
        ls.data.fashion_mnist("test")
        return True
    except ValueError:
        return False


#: skip a test that reads the installed Fashion-MNIST when it is not there
needs_fmnist = pytest.mark.skipif(not _fmnist_available(), reason="Fashion-MNIST not installed")
