"""Fashion-MNIST from the original idx files (gzipped or not), with clear errors.

The files are looked up in ``root`` when it is given (only there), else in
``$LEANSNN_DATA``, then ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist`` package); in each folder and its ``fashion-mnist`` subfolder. The
images and labels of a split always come from the same folder: a folder holding one without
the other is an error naming the missing file.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..base.batching import batch_indices
from .errors import DataError

__all__ = ["fashion_mnist", "read_idx", "ImageDataset", "DataError", "CLASSES", "DEFAULT_ROOT",
           "subset_indices"]

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, as root; it puts "
    "the files in /usr/share/datasets/fashion-mnist), or download the four idx files "
    "(train-images-idx3-ubyte.gz, ...) from https://github.com/zalandoresearch/fashion-mnist "
    "into a folder and pass root=FOLDER or set LEANSNN_DATA=FOLDER"
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (``.gz`` or raw) into a numpy array; validate header and size."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); the file is truncated "
                        "or corrupt, reinstall or re-download it") from None
    if len(data) < 4:
        raise DataError(f"{path}: file is {len(data)} bytes, too short for an idx header")
    zero, dtype_code, ndim = data[0] << 8 | data[1], data[2], data[3]
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad magic number 0x{int.from_bytes(data[:4], 'big'):08x}; not an idx "
            "file (expected 0x00000801 for labels or 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: size mismatch: header says {dims} ({expected} bytes of data) but the file "
            f"holds {len(data) - header} bytes after the header; the file is truncated or "
            "corrupt"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _bases(root: str | os.PathLike | None) -> list[Path]:
    """The folders to search: ``root`` alone when given, else ``$LEANSNN_DATA`` and the
    default root."""
    if root is not None and str(root):
        return [Path(root)]
    return [Path(b) for b in (os.environ.get("LEANSNN_DATA"), DEFAULT_ROOT) if b]


def _find(name: str, d: Path) -> Path | None:
    for fname in (name + ".gz", name):
        p = d / fname
        if p.is_file():
            return p
    return None


def _locate(split: str, root: str | os.PathLike | None) -> tuple[Path, Path]:
    """The images and labels files of ``split``, both from the same folder.

    A folder holding one of the two but not the other is an error naming the missing file
    (a data root is used whole, never completed from another folder); a given ``root`` is
    never completed from ``$LEANSNN_DATA`` or the default root.
    """
    names = _FILES[split]
    looked: list[Path] = []
    for base in _bases(root):
        if root is not None and not base.is_dir():
            raise DataError(f"Fashion-MNIST root {base} does not exist or is not a folder")
        for d in (base, base / "fashion-mnist"):
            looked.append(d)
            found = [_find(n, d) for n in names]
            if all(found):
                return found[0], found[1]
            if any(found):
                have = next(p for p in found if p is not None)
                missing = next(n for n, p in zip(names, found, strict=True) if p is None)
                raise DataError(
                    f"Fashion-MNIST {split} set in {d} is incomplete: {have.name} is there but "
                    f"{missing}[.gz] is missing; a data folder is used whole (never completed "
                    "from another folder): put the missing file there")
    where = ", ".join(str(d) for d in looked)
    other = ""
    if root is not None:
        others = _bases(None)
        other = (f" (without root=, leansnn looks in "
                 f"{', '.join(str(b) for b in others)})" if others else "")
    raise DataError(
        f"Fashion-MNIST {split} set not found: no {names[0]}[.gz] and {names[1]}[.gz] in "
        f"{where}{other}. To get it, {INSTALL_HINT}")


def subset_indices(size: int, n: object, seed: int = 0) -> torch.Tensor | None:
    """The items of a random subset of ``n`` of ``size`` items (the choice every data set's
    ``subset(n, seed)`` makes), or ``None`` for all of them (``n`` None or ``>= size``).

    ``n`` must be an int >= 0: a negative one would otherwise slice all but ``|n|`` items
    silently, a float fail deep inside torch.
    """
    if n is None:
        return None
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise ValueError(f"subset: n must be an int >= 0 or None (all items), got {n!r}")
    n = int(n.__index__())
    if n < 0:
        raise ValueError(f"subset: n must be an int >= 0 or None (all items), got {n}")
    if n >= size:
        return None
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]


class ImageDataset(torch.utils.data.Dataset):
    """In-memory image classification set.

    ``images``: uint8 ``[N, H, W]``; ``labels``: int64 ``[N]``. Items are
    ``(float32 [1, H, W] in [0, 1], int label)``. :meth:`batches` iterates fast without a
    ``DataLoader`` (slicing, no per-item Python).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes=CLASSES,
                 name: str = "") -> None:
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{name}: {images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels, self.classes, self.name = images, labels, classes, name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int):
        return self.images[i].unsqueeze(0).float().div_(255.0), int(self.labels[i])

    def subset(self, n: int | None, seed: int = 0) -> ImageDataset:
        """A random subset of ``n`` items (class-balanced in expectation); all if ``None``."""
        idx = subset_indices(len(self), n, seed)
        if idx is None:
            return self
        return ImageDataset(self.images[idx], self.labels[idx], self.classes,
                            f"{self.name}[{n}]")

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False):
        """Yield ``(x float32 [b, 1, H, W], y int64 [b])`` batches."""
        for b in batch_indices(len(self), batch_size, shuffle=shuffle, seed=seed,
                               drop_last=drop_last):
            idx = torch.from_numpy(b)
            yield self.images[idx].unsqueeze(1).float().div_(255.0), self.labels[idx]


def fashion_mnist(split: str = "train", root: str | os.PathLike | None = None) -> ImageDataset:
    """Fashion-MNIST ``split`` (``"train"``: 60,000 images, ``"test"``: 10,000).

    Returns an :class:`ImageDataset` of ``(float32 [1, 28, 28] in [0, 1], int label)``.
    Raises :class:`DataError` (a ``ValueError``) naming where it looked when the files are
    missing, and naming the file and the defect when one is truncated or corrupt.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    img_p, lab_p = _locate(split, root)
    images = read_idx(img_p)
    labels = read_idx(lab_p)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{img_p}: expected uint8 images [N, H, W], got {images.dtype} "
                        f"{images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{lab_p}: expected labels [N], got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_p} holds {images.shape[0]} images but {lab_p} holds "
                        f"{labels.shape[0]} labels; one of them is from another set")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{lab_p}: labels outside 0..{len(CLASSES) - 1}")
    return ImageDataset(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)),
                        CLASSES, f"fashion_mnist/{split}")
