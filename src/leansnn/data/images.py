"""Static image data sets: CIFAR-10/100 (official binary version), image folders, augmentation.

**CIFAR-10** (``cifar-10-batches-bin/``, https://www.cs.toronto.edu/~kriz/cifar.html):
``data_batch_1.bin`` ... ``data_batch_5.bin`` (train, 50,000 images) and ``test_batch.bin``
(10,000); each file is a sequence of 3073-byte records: one label byte (0-9), then 3072 pixel
bytes -- 1024 red, 1024 green, 1024 blue, each a 32x32 image in row-major order.
``batches.meta.txt`` holds the class names, one per line.
**CIFAR-100** (``cifar-100-binary/``): ``train.bin`` (50,000) and ``test.bin`` (10,000) of
3074-byte records: the coarse label byte (0-19), the fine label byte (0-99), 3072 pixel
bytes; class names in ``coarse_label_names.txt`` / ``fine_label_names.txt``. ``label="fine"``
(default) or ``"coarse"`` chooses the target.

**Image folders** (the ImageNet convention): ``ROOT/<split>/<class>/*.{jpg,jpeg,png}`` with
splits ``train`` and ``val`` (or ``test``); or, without split folders, ``ROOT/<class>/*``
split per class in file-name order, the last ``test_fraction`` being ``"test"``. Classes are
the sorted folder names (of ``ROOT/train`` when it exists, so every split numbers them the
same way). Images are decoded with Pillow (RGB), scaled so the shorter side is the target
size and centre-cropped to ``size = (H, W)``; the decoded uint8 array is cached with the
generic checked cache (:mod:`leansnn.data.cache`), decoding runs in a process pool.

Every set is an :class:`ImageSet`: ``ds[i]`` is ``(float32 [C, H, W], int label)``,
``ds.batches(batch_size, shuffle, seed, drop_last)`` yields ``(x float32 [B, C, H, W],
y int64 [B])``: pixels scaled to [0, 1], augmented (when ``augment`` is set, only in
``batches``, seeded by ``seed``), then normalised with the data set's mean/std
(``normalize=True``, the default for these sets; :data:`NORMALIZATION`).

Augmentations are small frozen dataclasses (:class:`RandomCrop`, :class:`HorizontalFlip`,
:class:`Cutout`) applied to a whole batch at once in torch: random crop with zero padding
and horizontal flip run on the [0, 1] image (padding is black, as in the usual torchvision
pipeline), Cutout after normalisation (the hole is the data set's mean).
``augment="standard"`` is crop (padding 4) + flip, the recipe of the conversion papers;
``"cutout"`` adds a 16x16 (CIFAR-10) or 8x8 (CIFAR-100) Cutout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..base.batching import batch_indices
from ..base.progress import progress as tqdm_progress
from .cache import (
    Stream,
    default_cache_dir,
    open_cache,
    read_cache,
    settings_key,
    source_fingerprint,
    write_cache,
)
from .errors import DataError, FileFormatError
from .fashion_mnist import subset_indices
from .layout import check_split, natural_key, resolve_root

__all__ = ["ImageSet", "RandomCrop", "HorizontalFlip", "Cutout", "augmentation",
           "NORMALIZATION", "cifar10", "cifar100", "image_folder", "read_cifar",
           "CIFAR10_CLASSES", "IMAGE_EXTENSIONS"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: per-channel (mean, std) of the training images, for inputs in [0, 1]
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "image_folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),   # ImageNet's
}
IMAGE_FOLDER_FORMAT = 1


# --- augmentations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomCrop:
    """Pad every side by ``padding`` pixels (value ``fill``), then cut a window of the
    original size at a uniformly random offset per image."""

    padding: int = 4
    fill: float = 0.0
    after_normalize = False

    def __post_init__(self) -> None:
        if int(self.padding) != self.padding or self.padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {self.padding!r}")

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.padding == 0:
            return x
        B, _, H, W = x.shape
        p = int(self.padding)
        xp = torch.nn.functional.pad(x, (p, p, p, p), value=self.fill)
        oy = torch.randint(0, 2 * p + 1, (B,), generator=g)
        ox = torch.randint(0, 2 * p + 1, (B,), generator=g)
        rows = (oy[:, None] + torch.arange(H))[:, None, :, None]        # [B, 1, H, 1]
        cols = (ox[:, None] + torch.arange(W))[:, None, None, :]        # [B, 1, 1, W]
        b = torch.arange(B)[:, None, None, None]
        c = torch.arange(x.shape[1])[None, :, None, None]
        return xp[b, c, rows, cols]


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    p: float = 0.5
    after_normalize = False

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p!r}")

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=g) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class Cutout:
    """Zero a ``size x size`` square centred at a uniformly random pixel (it may extend past
    the border) with probability ``p`` (DeVries & Taylor 2017); runs after normalisation,
    so the hole is the data set's mean."""

    size: int = 16
    p: float = 1.0
    after_normalize = True

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 1 or not 0 <= self.p <= 1:
            raise ValueError(f"Cutout needs size >= 1 and p in [0, 1], got {self!r}")

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        B, _, H, W = x.shape
        cy = torch.randint(0, H, (B,), generator=g)[:, None, None]
        cx = torch.randint(0, W, (B,), generator=g)[:, None, None]
        on = (torch.rand(B, generator=g) < self.p)[:, None, None]
        h = self.size // 2
        yy, xx = torch.arange(H)[None, :, None], torch.arange(W)[None, None, :]
        hole = (yy >= cy - h) & (yy < cy - h + self.size) & (xx >= cx - h) & \
            (xx < cx - h + self.size) & on
        return x.masked_fill(hole[:, None], 0.0)


def augmentation(spec, dataset: str = "cifar10") -> tuple:
    """Normalise an ``augment=`` value: ``None``/``"none"`` -> ``()``, ``"standard"`` ->
    crop(4) + flip, ``"cutout"`` -> crop + flip + Cutout(16, or 8 for CIFAR-100), or a
    sequence of transforms (validated)."""
    if spec is None or spec == "none":
        return ()
    if spec == "standard":
        return (RandomCrop(4), HorizontalFlip(0.5))
    if spec == "cutout":
        return (RandomCrop(4), HorizontalFlip(0.5), Cutout(8 if dataset == "cifar100" else 16))
    if isinstance(spec, str):
        raise ValueError(f"augment must be None, 'standard', 'cutout' or a sequence of "
                         f"transforms, got {spec!r}")
    spec = tuple(spec)
    for a in spec:
        if not callable(a) or not hasattr(a, "after_normalize"):
            raise ValueError(f"augment: {a!r} is not a leansnn augmentation (RandomCrop, "
                             "HorizontalFlip, Cutout, or any callable(x, generator) with an "
                             "after_normalize attribute)")
    return spec


# --- the data set -----------------------------------------------------------------------------
class ImageSet(torch.utils.data.Dataset):
    """Images ``uint8 [N, C, H, W]`` (tensor or memory map) with int64 labels.

    ``mean``/``std`` (per channel, for [0, 1] inputs) are applied when ``normalize``;
    ``augment`` (a tuple of transforms) only in :meth:`batches`.
    """

    def __init__(self, images, labels, classes: Sequence[str], name: str = "",
                 mean=None, std=None, normalize: bool = True, augment=()) -> None:
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if images.ndim != 4 or images.shape[0] != self.labels.shape[0]:
            raise DataError(f"{name}: images must be [N, C, H, W] with one label each, got "
                            f"{tuple(images.shape)} and {tuple(self.labels.shape)}")
        self.classes, self.name = tuple(classes), name
        c = images.shape[1]
        self.mean = tuple(mean) if mean is not None else (0.0,) * c
        self.std = tuple(std) if std is not None else (1.0,) * c
        self.normalize = bool(normalize)
        self.augment = tuple(augment)
        self.cache_path: Path | None = None
        self.from_cache = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _raw(self, idx: np.ndarray) -> torch.Tensor:
        idx = np.asarray(idx)
        if isinstance(self.images, torch.Tensor):   # numpy gathers uint8 rows ~100x faster
            return torch.from_numpy(self.images.numpy()[idx])
        srt = np.argsort(idx, kind="stable")
        block = np.empty((idx.size, *self.images.shape[1:]), np.uint8)
        block[srt] = self.images[idx[srt]]
        return torch.from_numpy(block)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return x
        m = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
        return x.sub_(m).div_(s)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = range(len(self))[i]
        x = self._norm(self._raw(np.array([i])).float().div_(255.0))
        return x[0], int(self.labels[i])

    def subset(self, n: int | None, seed: int = 0) -> ImageSet:
        """A random subset of ``n`` items (same choice as ``ImageDataset.subset``)."""
        idx = subset_indices(len(self), n, seed)
        if idx is None:
            return self
        return ImageSet(self._raw(idx.numpy()), self.labels[idx], self.classes,
                        f"{self.name}[{n}]", self.mean, self.std, self.normalize, self.augment)

    def with_augment(self, augment) -> ImageSet:
        """The same images with another augmentation (see :func:`augmentation`)."""
        ds = ImageSet(self.images, self.labels, self.classes, self.name, self.mean, self.std,
                      self.normalize, augmentation(augment, self.name.split("/")[0]))
        ds.cache_path, ds.from_cache = self.cache_path, self.from_cache
        return ds

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32 [B, C, H, W], y int64 [B])``; augmentations draw from a
        generator seeded with ``seed`` (same seed, same batches)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        for idx in batch_indices(len(self), batch_size, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last):
            x = self._raw(idx).float().div_(255.0)
            for a in self.augment:
                if not a.after_normalize:
                    x = a(x, g)
            x = self._norm(x)
            for a in self.augment:
                if a.after_normalize:
                    x = a(x, g)
            yield x, self.labels[torch.from_numpy(idx)]


# --- CIFAR ------------------------------------------------------------------------------------
def read_cifar(path: str | os.PathLike, label_bytes: int = 1,
               num_labels: Sequence[int] = (10,)) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR binary file: ``(images uint8 [N, 3, 32, 32], labels uint8
    [N, label_bytes])``. Raises :class:`FileFormatError` with the byte offset on a size that
    is not a whole number of records or a label byte out of range."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    rec = label_bytes + 3072
    n, rest = divmod(len(data), rec)
    if rest or n == 0:
        raise FileFormatError(path, rec * n, f"{len(data)} bytes is not a whole, non-zero "
                              f"number of {rec}-byte records" + (
                                  f" (last record has {rest} bytes)" if rest else ""))
    raw = np.frombuffer(data, np.uint8).reshape(n, rec)
    labels = raw[:, :label_bytes]
    for j, k in enumerate(num_labels):
        bad = np.flatnonzero(labels[:, j] >= k)
        if bad.size:
            i = int(bad[0])
            raise FileFormatError(path, rec * i + j, f"record {i} has label {labels[i, j]}, "
                                  f"outside 0..{k - 1}; not a CIFAR file of this kind")
    return raw[:, label_bytes:].reshape(n, 3, 32, 32), labels


def _names(path: Path, n: int, default: Sequence[str] | None) -> tuple[str, ...]:
    if not path.exists():
        if default is None:
            return tuple(str(i) for i in range(n))
        return tuple(default)
    names = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if len(names) != n:
        raise DataError(f"{path}: {len(names)} class names, expected {n}")
    return tuple(names)


def cifar10(split: str = "train", root=None, *, normalize: bool = True, augment=None
            ) -> ImageSet:
    """CIFAR-10 ``split`` ("train": data_batch_1-5, "test": test_batch) from the binary
    version: ``(float32 [3, 32, 32], int label)``."""
    check_split("cifar10", split, ("train", "test"))
    layout = "ROOT/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin"
    r = resolve_root(root, "cifar10", ("cifar-10-batches-bin",),
                     lambda d: any((d / f).is_file() for f in ("data_batch_1.bin",
                                                                "test_batch.bin")), layout)
    names = ([f"data_batch_{k}.bin" for k in range(1, 6)] if split == "train"
             else ["test_batch.bin"])
    missing = [n for n in names if not (r / n).is_file()]
    if missing:
        raise DataError(f"cifar10: split {split!r} is incomplete: {missing} missing in {r}")
    parts = [read_cifar(r / n, 1, (10,)) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1][:, 0] for p in parts]).astype(np.int64)
    mean, std = NORMALIZATION["cifar10"]
    return ImageSet(torch.from_numpy(images.copy()), labels,
                    _names(r / "batches.meta.txt", 10, CIFAR10_CLASSES), f"cifar10/{split}",
                    mean, std, normalize, augmentation(augment, "cifar10"))


def cifar100(split: str = "train", root=None, *, label: str = "fine", normalize: bool = True,
             augment=None) -> ImageSet:
    """CIFAR-100 ``split`` ("train" | "test") from the binary version, with the ``fine``
    (100 classes, default) or ``coarse`` (20 super-classes) label."""
    check_split("cifar100", split, ("train", "test"))
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    layout = "ROOT/cifar-100-binary/{train,test}.bin"
    r = resolve_root(root, "cifar100", ("cifar-100-binary",),
                     lambda d: (d / "train.bin").is_file() or (d / "test.bin").is_file(),
                     layout)
    f = r / f"{split}.bin"
    if not f.is_file():
        raise DataError(f"cifar100: split {split!r} is missing: no {f}")
    images, labels = read_cifar(f, 2, (20, 100))
    col, n = (1, 100) if label == "fine" else (0, 20)
    mean, std = NORMALIZATION["cifar100"]
    return ImageSet(torch.from_numpy(images.copy()), labels[:, col].astype(np.int64),
                    _names(r / f"{label}_label_names.txt", n, None), f"cifar100/{split}",
                    mean, std, normalize, augmentation(augment, "cifar100"))


# --- image folders ----------------------------------------------------------------------------
def _images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _decode(task: tuple) -> np.ndarray | tuple[str, str]:
    """Decode, resize (shorter side) and centre-crop images: uint8 ``[n, 3, H, W]``, or
    ``(path, error)`` for the first file that fails (runs in worker processes)."""
    from PIL import Image, UnidentifiedImageError

    paths, (h, w) = task
    out = np.empty((len(paths), 3, h, w), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                s = max(h / im.height, w / im.width)
                nh, nw = max(h, round(im.height * s)), max(w, round(im.width * s))
                im = im.resize((nw, nh), Image.BILINEAR)
                top, left = (nh - h) // 2, (nw - w) // 2
                im = im.crop((left, top, left + w, top + h))
                out[i] = np.asarray(im, np.uint8).transpose(2, 0, 1)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            return (str(p), f"{p}: cannot decode as an image ({type(e).__name__}: {e})")
    return out


def _decode_all(files: list[Path], size: tuple[int, int], workers: int, progress: bool,
                skip_bad_files: bool, kept: list[int], skipped: list, desc: str,
                per: int = 64) -> Iterator[np.ndarray]:
    """Yield decoded uint8 ``[n, 3, H, W]`` chunks of ``files`` in order, appending the index
    of every decoded file to ``kept`` and ``(path, reason)`` of every bad one to ``skipped``
    (only with ``skip_bad_files``; otherwise the first bad file raises)."""
    tasks = [([str(p) for p in files[i:i + per]], size) for i in range(0, len(files), per)]
    with tqdm_progress(total=len(files), desc=desc, unit="img", quiet=not progress) as bar:
        pool = ProcessPoolExecutor(workers) if workers > 1 else None
        try:
            res = pool.map(_decode, tasks) if pool else map(_decode, tasks)
            for k, (t, out) in enumerate(zip(tasks, res)):
                base = k * per
                if isinstance(out, tuple):
                    if not skip_bad_files:
                        raise DataError(out[1])
                    # decode again file by file to keep the good ones of this chunk
                    for j, p in enumerate(t[0]):
                        one = _decode(([p], size))
                        if isinstance(one, tuple):
                            skipped.append(one)
                        else:
                            kept.append(base + j)
                            yield one
                else:
                    kept.extend(range(base, base + len(out)))
                    yield out
                bar.update(len(t[0]))
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)


def _folder_index(split: str, root, test_fraction: float
                  ) -> tuple[Path, str, list[str], list[Path], list[int]]:
    """``(root, split folder name, classes, files, labels)`` of an image folder."""
    layout = "ROOT/<split>/<class>/*.{jpg,jpeg,png} or ROOT/<class>/*.{jpg,jpeg,png}"
    r = resolve_root(root, "image_folder", (), lambda d: bool(_dirs(d)), layout)
    split_dirs = {d.name: d for d in _dirs(r) if d.name in ("train", "val", "test")}
    if split_dirs:
        alias = {"val": "test", "test": "val"}
        name = split if split in split_dirs else alias.get(split)
        if name not in split_dirs:
            raise DataError(f"image_folder: split {split!r} is missing: {r} has "
                            f"{sorted(split_dirs)}")
        split = name   # "val" and "test" name the same folder (and cache entry)
        classes = [d.name for d in _dirs(split_dirs.get("train", split_dirs[name]))]
        files, labels = [], []
        for d in _dirs(split_dirs[name]):
            if d.name not in classes:
                raise DataError(f"image_folder: {d} is a class not in {r / 'train'}")
            imgs = _images(d)
            files += imgs
            labels += [classes.index(d.name)] * len(imgs)
    else:
        check_split("image_folder", split, ("train", "test", "val", "all"))
        if not 0 <= test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
        classes = [d.name for d in _dirs(r)]
        files, labels = [], []
        for k, d in enumerate(_dirs(r)):
            imgs = _images(d)
            n_test = int(round(len(imgs) * test_fraction))
            if split == "train":
                imgs = imgs[:len(imgs) - n_test]
            elif split in ("test", "val"):
                imgs = imgs[len(imgs) - n_test:]
            files += imgs
            labels += [k] * len(imgs)
    return r, split, classes, files, labels


def image_folder(split: str = "train", root=None, *, size: tuple[int, int] = (32, 32),
                 test_fraction: float = 0.1, normalize: bool = True, augment=None,
                 mean=None, std=None, cache_dir=None, workers: int | None = None,
                 progress: bool = True, skip_bad_files: bool = False) -> ImageSet:
    """Images in class folders (see the module docstring), decoded to ``float32 [3, H, W]``.

    ``split``: ``"train"``, ``"val"``/``"test"`` (the folder of that name; either name is
    accepted for the other when only one exists), or with a flat ``ROOT/<class>/`` layout
    ``"train"``/``"test"``/``"all"`` by ``test_fraction``. ``mean``/``std`` default to
    ImageNet's. Corrupt images raise :class:`DataError` naming the file unless
    ``skip_bad_files`` (then they are left out, with a warning listing them).
    """
    import warnings

    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive entries, got {size!r}")
    r, split, classes, files, labels = _folder_index(split, root, test_fraction)
    layout = "ROOT/<split>/<class>/*.{jpg,jpeg,png} or ROOT/<class>/*.{jpg,jpeg,png}"
    if not files:
        raise DataError(f"image_folder: no {'/'.join(IMAGE_EXTENSIONS)} images for split "
                        f"{split!r} under {r} (layout {layout})")
    key_src = {"format": IMAGE_FOLDER_FORMAT, "split": split, "size": list(size),
               "labels": labels, "test_fraction": test_fraction,
               "skip_bad_files": bool(skip_bad_files),
               "source": source_fingerprint(files, r)}
    key = settings_key(key_src)
    stem = Path(cache_dir if cache_dir is not None else default_cache_dir()) / \
        f"image_folder-{split}-{key}"
    names = ("images", "labels")
    got = open_cache(stem, key, names)
    skipped: list[tuple[str, str]] = []
    if got is None:
        if workers is None:
            workers = min(4, os.cpu_count() or 1) if len(files) > 256 else 1
        kept: list[int] = []
        chunks = _decode_all(files, size, workers, progress, skip_bad_files, kept, skipped,
                             f"decoding image_folder/{split}")

        def label_array() -> np.ndarray:
            if not kept:
                raise DataError(f"image_folder: no image under {r} could be decoded")
            return np.asarray(labels, np.int64)[kept]

        write_cache(stem, key, key_src, {"images": Stream(np.uint8, (3, *size), chunks),
                                         "labels": label_array},
                    extra=lambda: {"skipped": skipped, "classes": classes})
        arrays, meta = read_cache(stem, key, names)
        from_cache = False
    else:
        arrays, meta = got
        from_cache = True
    skipped = [tuple(s) for s in meta.get("skipped", [])]
    if skipped:
        warnings.warn(f"image_folder/{split}: skipped {len(skipped)} bad file(s) "
                      f"(skip_bad_files=True): " + "; ".join(s[1] for s in skipped[:20]),
                      stacklevel=2)
    m0, s0 = NORMALIZATION["image_folder"]
    ds = ImageSet(arrays["images"], np.array(arrays["labels"]), classes, f"image_folder/{split}",
                  mean if mean is not None else m0, std if std is not None else s0, normalize,
                  augmentation(augment, "image_folder"))
    ds.cache_path, ds.from_cache = stem, from_cache
    ds.skipped = skipped
    return ds
