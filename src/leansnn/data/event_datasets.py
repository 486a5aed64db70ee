"""Event data sets made by the emulator, cached on disk.

``event_fashion_mnist(split)`` converts Fashion-MNIST with the event-camera emulator
(:mod:`leansnn.data.emulator`) and bins each recording into ``T`` frames. The first call does
the conversion (a progress bar shows it; about 300 images/s on one CPU core) and writes the
frames to the cache folder; later calls with the same settings memory-map that file.

Cache: folder ``cache_dir``, else ``$LEANSNN_CACHE``, else ``~/.cache/leansnn``. The file name
holds a key that hashes every emulator and binning setting, the seed, which images were
converted, and the *content* of the source files (so re-installed or edited data invalidate
it). Files are written atomically; a small JSON file written last records the shapes and a
checksum of each array, and a cache file that fails those checks is rebuilt (with a warning).
For large files the checksum covers the size and 128 evenly spaced 64 KiB blocks, including
the first and last (a spot check that keeps loading fast; writes are atomic, so damage in
practice means a truncated or overwritten file).
Frames are stored as uint8 counts (clipped at 255): 16 KiB per image at T=8, 32x32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..base.io import atomic_write
from .emulator import EmulatorSettings, emulate_batch
from .events import frames_from_batch
from .fashion_mnist import CLASSES, DataError, fashion_mnist

__all__ = ["FrameSettings", "EventFrameDataset", "event_fashion_mnist", "default_cache_dir"]

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$LEANSNN_CACHE`` if set, else ``~/.cache/leansnn``."""
    env = os.environ.get("LEANSNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "leansnn"


@dataclass(frozen=True)
class FrameSettings:
    """How recordings become frames: ``T`` bins, output ``size = (H, W)``, ``by`` = "time" |
    "count" (see :func:`~leansnn.data.events.to_frames`), ``binary`` clips counts to 1.

    The spatial mapping from a sensor of ``(Hs, Ws)`` pixels: down-sample by the largest
    integer ``f`` with ``f·H <= Hs`` and ``f·W <= Ws`` (summing ``f x f`` blocks), then keep
    the central ``H x W`` window (34x34 -> 32x32 drops a one-pixel border, 34x34 -> 16x16 sums
    2x2 blocks of the central 32x32).
    """

    T: int = 8
    size: tuple[int, int] = (32, 32)
    by: str = "time"
    binary: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if int(self.T) != self.T or self.T < 1:
            raise ValueError(f"T must be a positive integer (number of frames), got {self.T!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (H, W) with positive entries, got {self.size!r}")
        if self.by not in ("time", "count"):
            raise ValueError(f"by must be 'time' or 'count', got {self.by!r}")

    def spatial(self, sensor_size: tuple[int, int]) -> tuple[int, tuple[int, int, int, int]]:
        """``(downsample, crop)`` for :func:`~leansnn.data.events.frames_from_batch`."""
        hs, ws = sensor_size
        h, w = self.size
        if h > hs or w > ws:
            raise ValueError(f"frame size {self.size} is larger than the sensor {sensor_size}; "
                             "use a smaller size or a larger EmulatorSettings.sensor_size")
        f = max(1, min(hs // h, ws // w))
        ch, cw = h * f, w * f
        return f, ((hs - ch) // 2, (ws - cw) // 2, ch, cw)


class EventFrameDataset(torch.utils.data.Dataset):
    """Binned event recordings with labels.

    ``frames``: uint8 counts ``[N, T, 2, H, W]`` (channel 1 = ON; possibly a read-only
    memory map); ``labels``: int64 ``[N]``. Items are ``(float32 [T, 2, H, W], int label)``;
    :meth:`batches` yields time-major ``x`` float32 ``[T, B, 2, H, W]`` and ``y`` int64 ``[B]``.
    """

    def __init__(self, frames: np.ndarray, labels: np.ndarray | torch.Tensor,
                 classes=CLASSES, name: str = "") -> None:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if frames.ndim != 5 or frames.shape[2] != 2:
            raise ValueError(f"{name}: frames must be [N, T, 2, H, W], got {frames.shape}")
        if frames.shape[0] != labels.shape[0]:
            raise ValueError(f"{name}: {frames.shape[0]} recordings but {labels.shape[0]} "
                             "labels")
        self.frames, self.labels, self.classes, self.name = frames, labels, classes, name
        self.cache_path: Path | None = None
        self.from_cache = False

    @property
    def T(self) -> int:
        """Number of time bins."""
        return int(self.frames.shape[1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.asarray(self.frames[i], dtype=np.float32)), int(self.labels[i])

    def subset(self, n: int | None, seed: int = 0) -> EventFrameDataset:
        """A random subset of ``n`` items (same choice as ``ImageDataset.subset``); all if
        ``None`` or ``n >= len(self)``."""
        if n is None or n >= len(self):
            return self
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.numpy()
        return EventFrameDataset(np.ascontiguousarray(self.frames[idx]), self.labels[idx],
                                 self.classes, f"{self.name}[{n}]")

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32 [T, B, 2, H, W], y int64 [B])``; time-major, ready for a model."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
                 if shuffle else np.arange(n))
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            # read in file order (fast on a memory map), then restore the batch order
            srt = np.argsort(idx, kind="stable")
            block = np.empty((idx.size, *self.frames.shape[1:]), np.uint8)
            block[srt] = self.frames[idx[srt]]
            x = torch.from_numpy(block).permute(1, 0, 2, 3, 4).float()
            yield x, self.labels[torch.from_numpy(idx)]


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _file_digest(path: Path, block: int = 1 << 16, blocks: int = 128) -> str:
    """Checksum of a file: all of it up to ``block * blocks`` bytes, else its size and
    ``blocks`` evenly spaced blocks including the first and the last (a spot check that
    catches truncation and damaged ends in milliseconds on a 1 GB cache file)."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        if size <= block * blocks:
            h.update(fh.read())
        else:
            for off in np.linspace(0, size - block, blocks).astype(np.int64):
                fh.seek(int(off))
                h.update(fh.read(block))
    return h.hexdigest()


def _load_cache(stem: Path, key: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(frames memmap, labels)`` or raise ``ValueError`` saying what is wrong."""
    meta_p, fr_p, lab_p = (stem.with_name(stem.name + s) for s in (".json", ".frames.npy",
                                                                    ".labels.npy"))
    try:
        meta = json.loads(meta_p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{meta_p}: unreadable ({type(e).__name__}: {e})") from None
    if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"{meta_p}: key or format mismatch")
    for p, name in ((fr_p, "frames"), (lab_p, "labels")):
        try:
            digest = _file_digest(p)
        except OSError as e:
            raise ValueError(f"{p}: unreadable ({e})") from None
        if digest != meta.get(f"{name}_digest"):
            raise ValueError(f"{p}: checksum mismatch (truncated or modified)")
    try:
        frames = np.load(fr_p, mmap_mode="r")
        labels = np.load(lab_p)
    except (OSError, ValueError) as e:
        raise ValueError(f"{stem}: cannot load ({type(e).__name__}: {e})") from None
    if frames.shape != shape or frames.dtype != np.uint8 or labels.shape != shape[:1]:
        raise ValueError(f"{fr_p}: shape {frames.shape}/{labels.shape}, expected {shape}")
    return frames, labels


def _convert(task: tuple) -> np.ndarray:
    """Emulate and bin one batch of images: uint8 ``[B, T, 2, H, W]`` (runs in workers too)."""
    images, indices, emu, fs, seed = task
    down, crop = fs.spatial(emu.sensor_size)
    ev, off = emulate_batch(images, emu, seed=seed, indices=indices)
    fr = frames_from_batch(ev, off, fs.T, emu.sensor_size, by=fs.by,
                           duration=emu.duration_us + 1, t_start=0, downsample=down,
                           crop=crop, binary=fs.binary, dtype=np.int64)
    return np.minimum(fr, 255).astype(np.uint8)


def event_fashion_mnist(
    split: str = "train",
    T: int = 8,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    size: tuple[int, int] = (32, 32),
    *,
    emulator: EmulatorSettings | None = None,
    noise_rate_hz: float | None = None,
    by: str = "time",
    binary: bool = False,
    seed: int = 0,
    n: int | None = None,
    subset_seed: int = 0,
    batch_size: int = 256,
    workers: int = 1,
    progress: bool = True,
) -> EventFrameDataset:
    """Fashion-MNIST ``split`` seen by the emulated event camera, as ``T`` frames per image.

    Returns an :class:`EventFrameDataset` of ``(float32 [T, 2, H, W] counts, int label)``
    with ``(H, W) = size`` (default 32x32 from the 34x34 sensor). Arguments:

    - ``emulator``: :class:`~leansnn.data.emulator.EmulatorSettings` (default settings:
      3 saccades of 100 ms, threshold 0.25, 1 Hz/pixel background noise); ``noise_rate_hz``,
      when given, replaces the emulator's background-noise rate (events per pixel per
      second); ``seed``: the emulator's random seed.
    - ``T``, ``size``, ``by``, ``binary``: see :class:`FrameSettings`. With ``by="time"``
      the ``T`` frames split the whole recording (timestamps ``0 ... emulator.duration_us``
      inclusive) equally.
    - ``n``: convert only a random subset of ``n`` images (chosen with ``subset_seed``, the
      same choice as ``fashion_mnist(split).subset(n, subset_seed)``); image ``i`` gives the
      same frames whether it is converted alone, in a subset, or with the whole split.
    - ``root``: where the idx files are (see :func:`~leansnn.data.fashion_mnist`);
      ``cache_dir``: see the module docstring. ``batch_size``: images converted at once
      (memory ~ 5 MB per 100 images); ``workers``: processes converting in parallel (the
      result does not depend on it); ``progress``: show a tqdm bar while converting.
    """
    emu = emulator if emulator is not None else EmulatorSettings()
    if not isinstance(emu, EmulatorSettings):
        raise ValueError(f"emulator must be an EmulatorSettings, got {type(emu).__name__}")
    if noise_rate_hz is not None:
        emu = dataclasses.replace(emu, noise_rate_hz=noise_rate_hz)
    fs = FrameSettings(T=T, size=size, by=by, binary=binary)
    fs.spatial(emu.sensor_size)  # validates the size against the sensor
    if int(workers) != workers or workers < 1 or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"workers and batch_size must be positive integers, got {workers!r} "
                         f"and {batch_size!r}")
    images_ds = fashion_mnist(split, root)
    images, labels = images_ds.images.numpy(), images_ds.labels.numpy()
    emu.check_image_size(*images.shape[1:])
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    if n is None or n >= len(labels):
        idx = np.arange(len(labels))
    else:
        g = torch.Generator().manual_seed(subset_seed)
        idx = torch.randperm(len(labels), generator=g)[:n].numpy()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = _digest(images, labels)
    h, w = fs.size

    def locate(ids: np.ndarray) -> tuple[dict, str, Path]:
        src = {"format": CACHE_FORMAT, "emulator": asdict(emu), "frames": asdict(fs),
               "seed": seed, "source": source, "indices": _digest(ids.astype(np.int64))}
        k = hashlib.sha256(json.dumps(src, sort_keys=True).encode()).hexdigest()[:20]
        tag = f"n{len(ids)}" if len(ids) < len(labels) else "all"
        return src, k, folder / f"event_fashion_mnist-{split}-{tag}-{k}"

    key_src, key, stem = locate(idx)
    shape = (len(idx), fs.T, 2, h, w)
    base = f"event_fashion_mnist/{split}"
    name = base + (f"[{len(idx)}]" if len(idx) < len(labels) else "")
    if len(idx) < len(labels):
        # the whole split converted with the same settings already holds these frames
        _, full_key, full_stem = locate(np.arange(len(labels)))
        full = _open_cached(full_stem, full_key, (len(labels), *shape[1:]), base)
        if full is not None:
            ds = full.subset(len(idx), subset_seed)
            ds.cache_path, ds.from_cache = full_stem, True
            return ds
    ds = _open_cached(stem, key, shape, name)
    if ds is not None:
        return ds
    tasks = [(images[idx[i:i + batch_size]], idx[i:i + batch_size], emu, fs, seed)
             for i in range(0, len(idx), batch_size)]
    _write_cache(stem, key, key_src, split, shape, labels[idx], tasks, workers,
                 progress=progress, desc=f"emulating events ({split})")
    try:
        frames, labs = _load_cache(stem, key, shape)
    except ValueError as e:  # pragma: no cover - only on a failing disk
        raise DataError(f"event cache written but unreadable: {e}") from None
    ds = EventFrameDataset(frames, labs, CLASSES, name)
    ds.cache_path = stem
    return ds


def _open_cached(stem: Path, key: str, shape: tuple, label: str) -> EventFrameDataset | None:
    """The cached frames at ``stem`` if present and intact (a damaged cache warns and is
    ignored, so the caller converts again)."""
    if not stem.with_name(stem.name + ".json").exists():
        return None
    try:
        frames, labs = _load_cache(stem, key, shape)
    except ValueError as e:
        warnings.warn(f"event cache is damaged, not using it (converting again): {e}",
                      stacklevel=3)
        return None
    ds = EventFrameDataset(frames, labs, CLASSES, label)
    ds.cache_path, ds.from_cache = stem, True
    return ds


def _write_cache(stem: Path, key: str, key_src: dict, split: str, shape: tuple,
                 labels: np.ndarray, tasks: list, workers: int, *, progress: bool,
                 desc: str) -> None:
    """Convert ``tasks`` (see :func:`_convert`) into ``stem.frames.npy``, write the labels
    and the JSON header with both files' digests; every file is written atomically and the
    header last, so a cache without a header is never read."""

    def write_frames(tmp: str) -> None:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        i = 0
        with tqdm(total=shape[0], desc=desc, unit="img", disable=not progress) as bar:
            if workers > 1:
                with ProcessPoolExecutor(workers) as pool:
                    results = pool.map(_convert, tasks)
                    for fr in results:
                        out[i:i + len(fr)] = fr
                        i += len(fr)
                        bar.update(len(fr))
            else:
                for task in tasks:
                    fr = _convert(task)
                    out[i:i + len(fr)] = fr
                    i += len(fr)
                    bar.update(len(fr))
        out.flush()
        del out

    fr_p = atomic_write(stem.with_name(stem.name + ".frames.npy"), write_frames)

    def write_labels(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, labels.astype(np.int64))

    lab_p = atomic_write(stem.with_name(stem.name + ".labels.npy"), write_labels)
    meta = {"format": CACHE_FORMAT, "key": key, "shape": list(shape), "split": split,
            "settings": key_src, "frames_digest": _file_digest(fr_p),
            "labels_digest": _file_digest(lab_p)}
    atomic_write(stem.with_name(stem.name + ".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
