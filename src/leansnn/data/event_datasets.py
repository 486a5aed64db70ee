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
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..base.batching import batch_indices
from ..base.progress import progress as tqdm_progress
from .cache import (
    CacheError,
    Stream,
    array_digest,
    default_cache_dir,
    open_cache,
    read_cache,
    settings_key,
    write_cache,
)
from .cache import file_digest as _file_digest  # noqa: F401  (kept for callers and tests)
from .emulator import EmulatorSettings, emulate_batch
from .events import frames_from_batch
from .fashion_mnist import CLASSES, DataError, fashion_mnist, subset_indices

__all__ = ["FrameSettings", "EventFrameDataset", "event_fashion_mnist", "default_cache_dir"]

CACHE_FORMAT = 1   # version of this data set's frames (the cache layout has its own)


@dataclass(frozen=True)
class FrameSettings:
    """How recordings become frames: ``T`` bins, output ``size = (H, W)``, ``by`` = "time" |
    "count" (see :func:`~leansnn.data.events.to_frames`), ``binary`` clips counts to 1.

    ``dt_us``: ``None`` splits each whole recording into ``T`` frames; an integer bins every
    recording into frames of ``dt_us`` µs from its start (as many as its duration needs),
    from which a model reads windows of ``T`` consecutive frames (the ASA paper's protocol,
    see :mod:`leansnn.data.event_folders`). Only with ``by="time"``.

    The spatial mapping from a sensor of ``(Hs, Ws)`` pixels: down-sample by the largest
    integer ``f`` with ``f·H <= Hs`` and ``f·W <= Ws`` (summing ``f x f`` blocks), then keep
    the central ``H x W`` window (34x34 -> 32x32 drops a one-pixel border, 34x34 -> 16x16 sums
    2x2 blocks of the central 32x32).
    """

    T: int = 8
    size: tuple[int, int] = (32, 32)
    by: str = "time"
    binary: bool = False
    dt_us: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        if int(self.T) != self.T or self.T < 1:
            raise ValueError(f"T must be a positive integer (number of frames), got {self.T!r}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (H, W) with positive entries, got {self.size!r}")
        if self.by not in ("time", "count"):
            raise ValueError(f"by must be 'time' or 'count', got {self.by!r}")
        if self.dt_us is not None:
            if int(self.dt_us) != self.dt_us or self.dt_us < 1:
                raise ValueError(f"dt_us must be a positive integer (µs per frame) or None, "
                                 f"got {self.dt_us!r}")
            object.__setattr__(self, "dt_us", int(self.dt_us))
            if self.by != "time":
                raise ValueError("dt_us (frames of a fixed duration) needs by='time', got "
                                 f"by={self.by!r}")

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
        sel = subset_indices(len(self), n, seed)
        if sel is None:
            return self
        idx = sel.numpy()
        return EventFrameDataset(np.ascontiguousarray(self.frames[idx]), self.labels[idx],
                                 self.classes, f"{self.name}[{n}]")

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32 [T, B, 2, H, W], y int64 [B])``; time-major, ready for a model."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for idx in batch_indices(len(self), batch_size, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last):
            # read in file order (fast on a memory map), then restore the batch order
            srt = np.argsort(idx, kind="stable")
            block = np.empty((idx.size, *self.frames.shape[1:]), np.uint8)
            block[srt] = self.frames[idx[srt]]
            x = torch.from_numpy(block).permute(1, 0, 2, 3, 4).float()
            yield x, self.labels[torch.from_numpy(idx)]


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
    sel = subset_indices(len(labels), n, subset_seed)
    idx = np.arange(len(labels)) if sel is None else sel.numpy()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = array_digest(images, labels)
    h, w = fs.size

    def locate(ids: np.ndarray) -> tuple[dict, str, Path]:
        src = {"format": CACHE_FORMAT, "emulator": asdict(emu), "frames": asdict(fs),
               "seed": seed, "source": source, "indices": array_digest(ids.astype(np.int64))}
        k = settings_key(src)
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
        arrays, _ = read_cache(stem, key, ("frames", "labels"))
    except CacheError as e:  # pragma: no cover - only on a failing disk
        raise DataError(f"event cache written but unreadable: {e}") from None
    ds = EventFrameDataset(arrays["frames"], np.array(arrays["labels"]), CLASSES, name)
    ds.cache_path = stem
    return ds


def _open_cached(stem: Path, key: str, shape: tuple, label: str) -> EventFrameDataset | None:
    """The cached frames at ``stem`` if present and intact (a damaged cache warns and is
    ignored, so the caller converts again)."""
    got = open_cache(stem, key, ("frames", "labels"))
    if got is None:
        return None
    arrays, _ = got
    frames, labs = arrays["frames"], np.array(arrays["labels"])
    if frames.shape != shape or frames.dtype != np.uint8 or labs.shape != shape[:1]:
        warnings.warn(f"event cache is damaged, not using it (converting again): {stem}: "
                      f"shape {frames.shape}/{labs.shape}, expected {shape}", stacklevel=3)
        return None
    ds = EventFrameDataset(frames, labs, CLASSES, label)
    ds.cache_path, ds.from_cache = stem, True
    return ds


def _write_cache(stem: Path, key: str, key_src: dict, split: str, shape: tuple,
                 labels: np.ndarray, tasks: list, workers: int, *, progress: bool,
                 desc: str) -> None:
    """Convert ``tasks`` (see :func:`_convert`) into the cache entry at ``stem`` (frames
    streamed as they are converted, then the labels, then the header)."""

    def chunks():
        with tqdm_progress(total=shape[0], desc=desc, unit="img", quiet=not progress) as bar:
            if workers > 1:
                with ProcessPoolExecutor(workers) as pool:
                    for fr in pool.map(_convert, tasks):
                        bar.update(len(fr))
                        yield fr
            else:
                for task in tasks:
                    fr = _convert(task)
                    bar.update(len(fr))
                    yield fr

    write_cache(stem, key, key_src,
                {"frames": Stream(np.uint8, shape[1:], chunks()),
                 "labels": labels.astype(np.int64)},
                extra={"split": split, "shape": list(shape)})
