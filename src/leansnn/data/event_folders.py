"""Real event-camera data sets from the folders users already have, binned and cached.

Four data sets share one machinery: an *index* (:class:`EventIndex`: which files, which
labels, which time span of a file is one sample) built from the folder layout, one decode +
bin pass over the raw files (numpy-vectorised decoders, a process pool over files, a tqdm
bar) whose result is written to the generic checked cache (:mod:`leansnn.data.cache`), and
:class:`EventDataset`, which serves frames from that cache.

- ``nmnist``: ``ROOT/Train|Test/<digit>/*.bin``; 34x34 sensor; split by folder.
- ``ncaltech101``: ``ROOT/<class>/*.bin`` (N-MNIST binary format); 180x240; per class.
- ``dvs_gesture``: ``ROOT/userNN_<light>.aedat`` + ``userNN_<light>_labels.csv``; 128x128;
  the trials lists.
- ``cifar10_dvs``: ``ROOT/<class>/*.aedat`` (AEDAT 2.0); 128x128; per class.

N-Caltech101 uses a fixed 180x240 (H x W) sensor: the recordings (Caltech-101 pictures scaled
to fit 240x180 on the ATIS) have different extents, so a fixed grid keeps every object at the
same scale and position convention; an address outside it is an error naming the file.
``ncaltech101`` and ``cifar10_dvs`` have no official split: the files of each class, sorted
by name (numbers in names compared as numbers), are split in order, the last
``test_fraction`` (default 0.1) of each class being ``"test"``; ``"all"`` is every file.
DVS128 Gesture uses ``trials_to_train.txt`` / ``trials_to_test.txt`` when present, else users
1-23 train and 24-29 test (the same split); every labelled gesture becomes one sample.

Frames and the ASA paper's protocol
-----------------------------------
Settings (every one is part of the cache key): ``T`` frames per sample, ``size=(H, W)``
(down-sampling by summing ``f x f`` blocks, e.g. 128x128 -> 32x32 with f = 4; see
:class:`~leansnn.data.event_datasets.FrameSettings`), ``by="time"|"count"``, ``binary``, and
``dt_ms``:

- ``dt_ms=None`` (default): each sample's whole recording is split into ``T`` frames (equal
  time spans, or equal event counts with ``by="count"``). :meth:`EventDataset.batches`
  yields them; :meth:`EventDataset.windows` gives one window per recording.
- ``dt_ms=D``: each recording is binned into frames of ``D`` ms from its start (the cache
  holds all of them, ``ceil(duration / D)`` per recording), and the model sees windows of
  ``T`` consecutive frames (``T·D`` ms):

  * **training view** -- ``ds.batches(batch_size, shuffle=True, seed=s, drop_last)`` draws
    for every sample one random window start (uniform over the frame grid, ``0 .. L-T``)
    from ``numpy.random.default_rng([s, 1])``: the same ``seed`` gives the same windows
    (and order), a new seed -- the loops pass ``seed + epoch`` -- new ones. Recordings
    shorter than ``T`` frames are zero-padded at the end.
  * **evaluation view** -- ``view = ds.windows(stride=None)`` lists windows covering every
    recording: starts ``0, stride, 2·stride, ...`` (default ``stride = T``) plus one ending
    at the last frame, so every frame is in some window. ``view.batches(batch_size)``
    yields ``(x [T, B, 2, H, W], y [B], recording [B])`` -- the third item is the index of
    the recording (sample) each window comes from; ``len(view)`` windows,
    ``view.num_recordings``. A loop feeds ``x`` to the model, keeps one score row per window
    (e.g. ``out.mean(0)`` of the ``[T, B, K]`` output) and calls
    ``vote(scores, recording, num_recordings, how="majority"|"sum")`` for one prediction
    per recording, compared with ``ds.labels``. Loops that only take ``(x, y)`` pairs (the
    batching contract, :mod:`leansnn.base.batching`) read the view too: extra items are
    ignored, so they score every window separately.

Every data set object has ``.events(i)`` (the raw events of sample ``i`` as an
:data:`~leansnn.data.events.EVENT_DTYPE` array, times relative to the sample's start for
cut recordings) next to the frames.

Bad input raises :class:`~leansnn.data.errors.DataError` (or its
:class:`~leansnn.data.readers.EventFormatError` with the byte offset) naming the file: a root
without the layout, a missing split, a truncated or corrupt file, a file of another format,
an empty recording, labels outside the recording. ``skip_bad_files=True`` leaves out the
files that fail to decode and warns, listing them (also kept in ``ds.skipped``). A root is
used whole: files are never mixed from two roots.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..base.batching import batch_indices
from ..base.progress import progress as tqdm_progress
from ..base.voting import vote
from .cache import (
    Stream,
    array_digest,
    default_cache_dir,
    open_cache,
    read_cache,
    settings_key,
    source_fingerprint,
    write_cache,
)
from .errors import DataError
from .event_datasets import FrameSettings
from .events import frames_from_batch
from .fashion_mnist import subset_indices
from .layout import check_split, natural_key, resolve_root
from .readers import (
    DVS128_SENSOR,
    DVS_GESTURE_CLASSES,
    NMNIST_SENSOR,
    read_aedat2,
    read_aedat31,
    read_dvs_gesture_labels,
    read_nmnist,
)

__all__ = ["EventIndex", "Sample", "EventDataset", "EventWindows", "vote", "load_events",
           "nmnist", "ncaltech101", "dvs_gesture", "cifar10_dvs", "nmnist_index",
           "ncaltech101_index", "dvs_gesture_index", "cifar10_dvs_index",
           "CIFAR10_DVS_CLASSES", "NCALTECH101_SENSOR", "window_starts", "READERS"]

EVENTS_FORMAT = 1   # bump when decoding or binning of these data sets changes
NCALTECH101_SENSOR = (180, 240)
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                       "horse", "ship", "truck")


# --- readers by name (tasks sent to worker processes carry the name) -----------------------
def _read_nmnist(path: str) -> np.ndarray:
    return read_nmnist(path, NMNIST_SENSOR)


def _read_ncaltech(path: str) -> np.ndarray:
    return read_nmnist(path, NCALTECH101_SENSOR)


def _read_gesture(path: str) -> np.ndarray:
    return read_aedat31(path, DVS128_SENSOR)


def _read_cifar_dvs(path: str) -> np.ndarray:
    return read_aedat2(path, DVS128_SENSOR)


READERS = {"nmnist_bin": _read_nmnist, "ncaltech101_bin": _read_ncaltech,
           "aedat31": _read_gesture, "aedat2": _read_cifar_dvs}


@dataclass(frozen=True)
class Sample:
    """One sample: ``path`` (a file), ``label``; ``start``/``end`` (µs, ``end`` exclusive)
    cut a labelled span out of a longer recording, ``-1`` means the whole file."""

    path: str
    label: int
    start: int = -1
    end: int = -1


@dataclass(frozen=True)
class EventIndex:
    """The samples of one split of a data set found under ``root``; ``reader`` names a
    decoder in :data:`READERS`; ``sensor_size = (H, W)``."""

    name: str
    split: str
    root: Path
    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    sensor_size: tuple[int, int]
    reader: str
    skipped: tuple[tuple[str, str], ...] = ()

    def read(self, i: int) -> np.ndarray:
        """The events of sample ``i`` (cut and shifted to start at 0 for cut samples)."""
        s = self.samples[i]
        return _cut(READERS[self.reader](s.path), s)[0]


def _cut(ev: np.ndarray, s: Sample) -> tuple[np.ndarray, int, int]:
    """``(events, t0, duration)`` of sample ``s`` from its file's events ``ev``."""
    if s.start >= 0:
        if ev.size == 0:
            raise DataError(f"{s.path}: empty recording (no events), but its labels file "
                            f"places a gesture at {s.start}..{s.end} µs")
        t = ev["t"]
        if s.start > t[-1] or s.end <= t[0]:
            raise DataError(f"{s.path}: labels outside the recording: gesture {s.start}.."
                            f"{s.end} µs, events span {t[0]}..{t[-1]} µs")
        a, b = np.searchsorted(t, [s.start, s.end], side="left")
        g = ev[a:b].copy()
        if g.size == 0:
            raise DataError(f"{s.path}: no events in the labelled span {s.start}..{s.end} µs")
        g["t"] -= s.start
        return g, 0, s.end - s.start
    if ev.size == 0:
        raise DataError(f"{s.path}: empty recording (no events)")
    t0 = int(ev["t"][0])
    return ev, t0, int(ev["t"][-1]) - t0 + 1


_MAX_SAMPLE_COUNTS = 2**28  # frames x 2 x H x W of one sample (2 GiB of int64 counts)


def _bin(ev: np.ndarray, t0: int, duration: int, fs: FrameSettings,
         sensor: tuple[int, int], where: str = "a recording") -> np.ndarray:
    """uint8 frames ``[L, 2, H, W]`` of one sample (``L = T``, or ``ceil(duration/dt)``).

    A sample whose time span needs more than 2**28 frame values with ``dt_us`` (a stray
    timestamp hours away, a corrupt labels row) is a :class:`DataError` naming ``where``,
    not an allocation of many gigabytes."""
    down, crop = fs.spatial(sensor)
    off = np.array([0, ev.size])
    if fs.dt_us is not None:
        n = max(1, -(-int(duration) // fs.dt_us))
        h, w = fs.size
        if n * 2 * h * w > _MAX_SAMPLE_COUNTS:
            raise DataError(
                f"{where}: the sample spans {duration / 1e6:.6g} s, {n:,} frames of "
                f"{fs.dt_us} µs ({n * 2 * h * w * 8 / 2**30:.1f} GiB to bin); its timestamps "
                "are probably corrupt (a stray event); fix or skip the file "
                "(skip_bad_files=True), or use a larger dt_ms")
    if fs.dt_us is None:
        fr = frames_from_batch(ev, off, fs.T, sensor, by=fs.by, duration=duration,
                               t_start=t0, downsample=down, crop=crop, binary=fs.binary,
                               dtype=np.int64)[0]
    else:
        n = max(1, -(-duration // fs.dt_us))
        fr = frames_from_batch(ev, off, n, sensor, by="time", duration=n * fs.dt_us,
                               t_start=t0, downsample=down, crop=crop, binary=fs.binary,
                               dtype=np.int64)[0]
    return np.minimum(fr, 255).astype(np.uint8)


def _bin_files(task: tuple) -> list:
    """Decode and bin a group of files (runs in worker processes). ``task = (reader, sensor,
    settings, groups)`` with ``groups`` a list of ``(path, [Sample, ...])``; returns per file
    ``(path, frames list, event counts)`` or ``(path, DataError)``."""
    reader, sensor, fs, groups = task
    out = []
    for path, samples in groups:
        try:
            ev = READERS[reader](path)
            frames, counts = [], []
            for s in samples:
                g, t0, dur = _cut(ev, s)
                frames.append(_bin(g, t0, dur, fs, sensor, path))
                counts.append(g.size)
            out.append((path, frames, counts))
        except DataError as e:
            out.append((path, e))
    return out


# --- the data set ----------------------------------------------------------------------------
def window_starts(length: int, T: int, stride: int | None = None) -> np.ndarray:
    """Start frames of windows of ``T`` frames covering ``length`` frames: ``0, stride, ...``
    while a window fits, plus one ending at the last frame (``[0]`` if ``length <= T``)."""
    stride = T if stride is None else int(stride)
    if not 1 <= stride <= T:
        raise ValueError(f"stride must be in 1..T={T} (a larger stride leaves frames out of "
                         f"every window), got {stride}")
    if length <= T:
        return np.zeros(1, np.int64)
    s = np.arange(0, length - T + 1, stride, dtype=np.int64)
    if s[-1] != length - T:
        s = np.append(s, length - T)
    return s


class EventDataset:
    """Binned event recordings with labels (see the module docstring for the views).

    ``frames``: uint8 ``[sum(L), 2, H, W]`` (usually a read-only memory map of the cache),
    recording ``i`` being ``frames[offsets[i]:offsets[i+1]]``; ``labels`` int64 ``[N]``.
    Items ``ds[i]`` are ``(float32 [T, 2, H, W], int label)`` (the first window when
    ``dt_ms`` is set); :meth:`batches` yields time-major ``(x float32 [T, B, 2, H, W],
    y int64 [B])``.
    """

    def __init__(self, frames: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                 settings: FrameSettings, classes: Sequence[str], name: str = "",
                 events_fn=None, sample_ids: np.ndarray | None = None) -> None:
        offsets = np.asarray(offsets, np.int64)
        labels = np.asarray(labels, np.int64)
        if frames.ndim != 4 or frames.shape[1] != 2:
            raise ValueError(f"{name}: frames must be [sum(L), 2, H, W], got {frames.shape}")
        if offsets.shape != (labels.shape[0] + 1,) or offsets[-1] != frames.shape[0]:
            raise ValueError(f"{name}: offsets {offsets.shape} do not fit {labels.shape[0]} "
                             f"recordings of {frames.shape[0]} frames")
        self.frames, self.offsets, self.settings = frames, offsets, settings
        self.labels = torch.from_numpy(labels.copy())
        self.classes, self.name = tuple(classes), name
        self._events_fn = events_fn
        self.sample_ids = (np.arange(len(labels)) if sample_ids is None
                           else np.asarray(sample_ids, np.int64))
        self.cache_path: Path | None = None
        self.from_cache = False
        self.skipped: list[tuple[str, str]] = []

    # sizes
    @property
    def T(self) -> int:
        """Frames per window (the model's time steps)."""
        return self.settings.T

    @property
    def lengths(self) -> np.ndarray:
        """Frames per recording (``T`` each unless ``dt_ms`` is set)."""
        return np.diff(self.offsets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.frames.shape[1:])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def events(self, i: int) -> np.ndarray:
        """The raw events of sample ``i`` (:data:`EVENT_DTYPE`), read from its file again."""
        if self._events_fn is None:
            raise DataError(f"{self.name}: this data set holds frames only, no events")
        return self._events_fn(int(self.sample_ids[i]))

    def sequence(self, i: int) -> torch.Tensor:
        """All frames of recording ``i``: float32 ``[L, 2, H, W]``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return torch.from_numpy(np.asarray(self.frames[a:b], dtype=np.float32))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} recordings")
        i = i % len(self)
        x = self._gather(np.array([i]), np.zeros(1, np.int64))[:, 0]
        return x, int(self.labels[i])

    def subset(self, n: int | None, seed: int = 0) -> EventDataset:
        """A random subset of ``n`` recordings (same choice as ``ImageDataset.subset``)."""
        sel = subset_indices(len(self), n, seed)
        if sel is None:
            return self
        idx = np.sort(sel.numpy())
        return self._select(idx, f"{self.name}[{n}]")

    def _select(self, idx: np.ndarray, name: str) -> EventDataset:
        lens = self.lengths[idx]
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]
                              ) if idx.size else np.zeros(0, np.int64)
        off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        ds = EventDataset(np.ascontiguousarray(self.frames[rows]), off,
                          self.labels.numpy()[idx], self.settings, self.classes, name,
                          self._events_fn, self.sample_ids[idx])
        ds.cache_path = self.cache_path
        return ds

    # reading windows
    def _gather(self, idx: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        """float32 ``[T, B, 2, H, W]``: ``T`` frames of recording ``idx[b]`` from frame
        ``starts[b]`` (zeros past the end of a recording)."""
        T = self.T
        k = np.arange(T, dtype=np.int64)
        rel = starts[:, None] + k[None, :]
        valid = rel < self.lengths[idx][:, None]
        rows = np.where(valid, self.offsets[idx][:, None] + rel, 0)
        flat = rows.reshape(-1)
        order = np.argsort(flat, kind="stable")   # read a memory map in file order
        block = np.empty((flat.size, *self.frames.shape[1:]), np.uint8)
        if flat.size:
            block[order] = self.frames[flat[order]]
        block = block.reshape(idx.size, T, *self.frames.shape[1:])
        block[~valid] = 0
        return torch.from_numpy(block).permute(1, 0, 2, 3, 4).float()

    def random_starts(self, seed: int) -> np.ndarray:
        """The training view's window start of every recording for ``seed`` (all zeros
        without ``dt_ms``)."""
        span = np.maximum(self.lengths - self.T, 0)
        if self.settings.dt_us is None or not span.any():
            return np.zeros(len(self), np.int64)
        rng = np.random.default_rng([int(seed), 1])
        return (rng.random(len(self)) * (span + 1)).astype(np.int64)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32 [T, B, 2, H, W], y int64 [B])``: the training view (a random
        window per recording drawn from ``seed`` when ``dt_ms`` is set)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        starts = self.random_starts(seed)
        for idx in batch_indices(len(self), batch_size, shuffle=shuffle, seed=seed,
                                 drop_last=drop_last):
            yield self._gather(idx, starts[idx]), self.labels[torch.from_numpy(idx)]

    def windows(self, stride: int | None = None) -> EventWindows:
        """The evaluation view: windows of ``T`` frames covering every recording."""
        return EventWindows(self, stride)


class EventWindows:
    """Windows of ``T`` frames covering every recording of an :class:`EventDataset`
    (:func:`window_starts`); ``recording[w]`` and ``start[w]`` locate window ``w``."""

    def __init__(self, dataset: EventDataset, stride: int | None = None) -> None:
        self.dataset = dataset
        per = [window_starts(int(L), dataset.T, stride) for L in dataset.lengths]
        self.start = (np.concatenate(per) if per else np.zeros(0, np.int64)).astype(np.int64)
        self.recording = np.repeat(np.arange(len(per), dtype=np.int64),
                                   [len(p) for p in per])
        self.labels = dataset.labels[torch.from_numpy(self.recording)]

    @property
    def num_recordings(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return int(self.start.size)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(x float32 [T, B, 2, H, W], y int64 [B], recording int64 [B])``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for w in batch_indices(len(self), batch_size, shuffle=shuffle, seed=seed,
                               drop_last=drop_last):
            rec = self.recording[w]
            yield (self.dataset._gather(rec, self.start[w]), self.labels[torch.from_numpy(w)],
                   torch.from_numpy(rec))


# --- decoding, caching ------------------------------------------------------------------------
def _groups(samples: Sequence[Sample]) -> list[tuple[str, list[tuple[int, Sample]]]]:
    """Consecutive samples of the same file, in order."""
    out: list[tuple[str, list[tuple[int, Sample]]]] = []
    for i, s in enumerate(samples):
        if out and out[-1][0] == s.path:
            out[-1][1].append((i, s))
        else:
            out.append((s.path, [(i, s)]))
    return out


def _frame_settings(T: int, size, by: str, binary: bool, dt_ms: float | None) -> FrameSettings:
    dt_us = None
    if dt_ms is not None:
        if not dt_ms > 0:
            raise ValueError(f"dt_ms must be > 0 (ms per frame) or None, got {dt_ms!r}")
        dt_us = max(1, round(float(dt_ms) * 1000))
    return FrameSettings(T=T, size=tuple(size), by=by, binary=binary, dt_us=dt_us)


class _Decoder:
    """Decodes and bins the files of ``groups`` in order (a process pool when ``workers >
    1``): :meth:`chunks` yields each sample's frames; afterwards :meth:`array` gives the
    offsets, labels and sample ids of what was kept, ``skipped`` what was not."""

    def __init__(self, index: EventIndex, fs: FrameSettings, groups: list, workers: int,
                 skip_bad_files: bool, progress: bool, label: str) -> None:
        self.index, self.fs, self.groups, self.workers = index, fs, groups, workers
        self.skip, self.progress, self.label = skip_bad_files, progress, label
        self.kept: list[int] = []
        self.lengths: list[int] = []
        self.skipped: list[tuple[str, str]] = []

    def chunks(self) -> Iterator[np.ndarray]:
        groups, workers = self.groups, self.workers
        per = max(1, min(32, len(groups) // (4 * workers) or 1))
        tasks = [(self.index.reader, self.index.sensor_size, self.fs,
                  [(p, [s for _, s in g]) for p, g in groups[i:i + per]])
                 for i in range(0, len(groups), per)]
        ids = iter(groups)
        with tqdm_progress(total=len(groups), desc=f"decoding {self.label}", unit="file",
                  quiet=not self.progress) as bar:
            pool = ProcessPoolExecutor(workers) if workers > 1 else None
            try:
                results = pool.map(_bin_files, tasks) if pool else map(_bin_files, tasks)
                for res in results:
                    for item in res:
                        _, g = next(ids)
                        bar.update(1)
                        if len(item) == 2:
                            if not self.skip:
                                raise item[1]
                            self.skipped.append((item[0], str(item[1])))
                            continue
                        for (i, _s), fr in zip(g, item[1]):
                            self.kept.append(i)
                            self.lengths.append(fr.shape[0])
                            yield fr
            finally:
                if pool:
                    pool.shutdown(cancel_futures=True)

    def array(self, what: str) -> np.ndarray:
        ids = np.array(self.kept, np.int64)
        if ids.size == 0:
            raise DataError(f"{self.label}: every file under {self.index.root} failed to "
                            "decode")
        if what == "offsets":
            return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        if what == "labels":
            return np.array([self.index.samples[i].label for i in ids], np.int64)
        return ids


def load_events(index: EventIndex, *, T: int = 8, size: tuple[int, int] = (32, 32),
                by: str = "time", binary: bool = False, dt_ms: float | None = None,
                cache_dir: str | os.PathLike | None = None, workers: int | None = None,
                progress: bool = True, skip_bad_files: bool = False,
                use_cache: bool = True) -> EventDataset:
    """Decode, bin and cache the samples of ``index`` (or open the cache), see the module
    docstring. ``workers``: processes decoding in parallel (default: up to 4 when there are
    more than 64 files); ``use_cache=False`` converts in memory without touching the disk."""
    fs = _frame_settings(T, size, by, binary, dt_ms)
    fs.spatial(index.sensor_size)   # validates the size against the sensor
    if not index.samples:
        raise DataError(f"{index.name}/{index.split}: no samples under {index.root}"
                        + (f" (skipped: {index.skipped})" if index.skipped else ""))
    groups = _groups(index.samples)
    paths = [g[0] for g in groups]
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if len(groups) > 64 else 1
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    label = f"{index.name}/{index.split}"
    key_src = {
        "format": EVENTS_FORMAT, "dataset": index.name, "split": index.split,
        "reader": index.reader, "sensor": list(index.sensor_size), "frames": asdict(fs),
        "skip_bad_files": bool(skip_bad_files),
        "samples": array_digest(np.array([(s.label, s.start, s.end)
                                          for s in index.samples], np.int64)),
        "source": source_fingerprint(paths, index.root),
    }
    key = settings_key(key_src)
    stem = Path(cache_dir if cache_dir is not None else default_cache_dir()) / \
        f"{index.name}-{index.split}-{key}"
    names = ("frames", "offsets", "labels", "samples")
    got = open_cache(stem, key, names) if use_cache else None
    from_cache = got is not None
    h, w = fs.size
    if got is None:
        dec = _Decoder(index, fs, groups, workers, skip_bad_files, progress, label)
        if use_cache:
            write_cache(stem, key, key_src,
                        {"frames": Stream(np.uint8, (2, h, w), dec.chunks()),
                         "offsets": lambda: dec.array("offsets"),
                         "labels": lambda: dec.array("labels"),
                         "samples": lambda: dec.array("samples")},
                        extra=lambda: {"skipped": dec.skipped})
            arrays, meta = read_cache(stem, key, names)
        else:
            frs = list(dec.chunks())
            arrays = {"frames": (np.concatenate(frs) if frs else np.zeros((0, 2, h, w),
                                                                          np.uint8))}
            arrays.update({n: dec.array(n) for n in ("offsets", "labels", "samples")})
            meta = {"skipped": dec.skipped}
        skipped = dec.skipped
    else:
        arrays, meta = got
        skipped = [tuple(s) for s in meta.get("skipped", [])]
    skipped = list(index.skipped) + skipped
    if skipped:
        listing = "; ".join(f"{p}: {why}" for p, why in skipped[:20])
        more = f"; and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        warnings.warn(f"{label}: skipped {len(skipped)} bad file(s) (skip_bad_files=True): "
                      f"{listing}{more}", stacklevel=3)
    ds = EventDataset(arrays["frames"], np.array(arrays["offsets"]),
                      np.array(arrays["labels"]), fs, index.classes, label, index.read,
                      np.array(arrays["samples"]))
    ds.cache_path = stem if use_cache else None
    ds.from_cache = from_cache
    ds.skipped = list(skipped)
    ds.sensor_size = index.sensor_size
    return ds


# --- the four data sets: index builders and loaders ------------------------------------------
def _bins(folder: Path, ext: str) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ext
                   and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _fraction(files: list, split: str, test_fraction: float) -> list:
    if split == "all":
        return files
    n_test = int(round(len(files) * test_fraction))
    return files[:len(files) - n_test] if split == "train" else files[len(files) - n_test:]


def _check_fraction(test_fraction: float) -> float:
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    return float(test_fraction)


def nmnist_index(split: str, root=None) -> EventIndex:
    """Index of N-MNIST ``split`` ("train" | "test"): ``ROOT/Train|Test/<digit>/*.bin``."""
    check_split("nmnist", split, ("train", "test"))
    layout = "ROOT/Train|Test/<digit 0-9>/*.bin"
    r = resolve_root(root, "nmnist", ("N-MNIST", "NMNIST", "nmnist"),
                     lambda d: (d / "Train").is_dir() or (d / "Test").is_dir(), layout)
    d = r / {"train": "Train", "test": "Test"}[split]
    if not d.is_dir():
        raise DataError(f"nmnist: split {split!r} is missing: no folder {d} (layout {layout})")
    samples = []
    for sub in _class_dirs(d):
        if sub.name not in [str(k) for k in range(10)]:
            raise DataError(f"{sub}: unexpected folder; {d} must hold one folder per digit "
                            "0-9")
        samples += [Sample(str(f), int(sub.name)) for f in _bins(sub, ".bin")]
    if not samples:
        raise DataError(f"nmnist: no .bin recordings in {d}/<digit>/ (layout {layout})")
    return EventIndex("nmnist", split, r, tuple(samples), tuple(str(k) for k in range(10)),
                      NMNIST_SENSOR, "nmnist_bin")


def ncaltech101_index(split: str, root=None, test_fraction: float = 0.1) -> EventIndex:
    """Index of N-Caltech101: ``ROOT/<class>/*.bin`` (every class folder, sorted by name)."""
    check_split("ncaltech101", split, ("train", "test", "all"))
    test_fraction = _check_fraction(test_fraction)
    layout = "ROOT/<class>/*.bin"
    r = resolve_root(root, "ncaltech101", ("Caltech101", "N-Caltech101", "NCaltech101"),
                     lambda d: any(_bins(c, ".bin") for c in _class_dirs(d)), layout)
    classes, samples = [], []
    for label, sub in enumerate(_class_dirs(r)):
        files = _bins(sub, ".bin")
        if not files:
            raise DataError(f"ncaltech101: class folder {sub} holds no .bin recordings")
        classes.append(sub.name)
        samples += [Sample(str(f), label) for f in _fraction(files, split, test_fraction)]
    return EventIndex("ncaltech101", split, r, tuple(samples), tuple(classes),
                      NCALTECH101_SENSOR, "ncaltech101_bin")


def dvs_gesture_index(split: str, root=None, skip_bad_files: bool = False) -> EventIndex:
    """Index of DVS128 Gesture: one sample per row of each recording's ``_labels.csv``."""
    check_split("dvs_gesture", split, ("train", "test"))
    layout = ("ROOT/userNN_<lighting>.aedat + userNN_<lighting>_labels.csv "
              "[+ trials_to_train.txt, trials_to_test.txt]")
    r = resolve_root(root, "dvs_gesture", ("DvsGesture", "DVSGesture", "dvs_gesture"),
                     lambda d: any(d.glob("trials_to_*.txt")) or any(d.glob("user*.aedat")),
                     layout)
    lists = {s: r / f"trials_to_{s}.txt" for s in ("train", "test")}
    if any(p.exists() for p in lists.values()):
        lp = lists[split]
        if not lp.exists():
            raise DataError(f"dvs_gesture: split {split!r} is missing: {lp} does not exist "
                            f"(but {lists['train' if split == 'test' else 'test'].name} does)")
        names = [ln.strip() for ln in lp.read_text(errors="replace").splitlines()
                 if ln.strip()]
        files = []
        for n in names:
            f = r / n
            if not f.is_file():
                raise DataError(f"{lp}: lists {n}, which is not in {r}")
            files.append(f)
    else:
        files = []
        for f in _bins(r, ".aedat"):
            m = re.match(r"user(\d+)_", f.name)
            if m is None:
                continue
            if (int(m.group(1)) <= 23) == (split == "train"):
                files.append(f)
    if not files:
        raise DataError(f"dvs_gesture: no {split} recordings in {r} (layout {layout})")
    samples, skipped = [], []
    for f in files:
        lab = f.with_name(f.stem + "_labels.csv")
        try:
            if not lab.is_file():
                raise DataError(f"{f}: its labels file {lab.name} is missing")
            rows = read_dvs_gesture_labels(lab)
            if rows.shape[0] == 0:
                raise DataError(f"{lab}: no gestures listed")
        except DataError as e:
            if not skip_bad_files:
                raise
            skipped.append((str(lab), str(e)))
            continue
        samples += [Sample(str(f), int(c) - 1, int(t0), int(t1)) for c, t0, t1 in rows]
    idx = EventIndex("dvs_gesture", split, r, tuple(samples), DVS_GESTURE_CLASSES,
                     DVS128_SENSOR, "aedat31", tuple(skipped))
    return idx


def cifar10_dvs_index(split: str, root=None, test_fraction: float = 0.1) -> EventIndex:
    """Index of CIFAR10-DVS: ``ROOT/<class>/*.aedat`` for the ten CIFAR-10 classes."""
    check_split("cifar10_dvs", split, ("train", "test", "all"))
    test_fraction = _check_fraction(test_fraction)
    layout = "ROOT/{airplane,automobile,...,truck}/*.aedat"
    r = resolve_root(root, "cifar10_dvs", ("CIFAR10DVS", "CIFAR10-DVS", "cifar10_dvs"),
                     lambda d: any((d / c).is_dir() for c in CIFAR10_DVS_CLASSES), layout)
    missing = [c for c in CIFAR10_DVS_CLASSES if not (r / c).is_dir()]
    if missing:
        raise DataError(f"cifar10_dvs: {r} lacks the class folder(s) {missing} "
                        f"(layout {layout})")
    samples = []
    for label, c in enumerate(CIFAR10_DVS_CLASSES):
        files = _bins(r / c, ".aedat")
        if not files:
            raise DataError(f"cifar10_dvs: class folder {r / c} holds no .aedat recordings")
        samples += [Sample(str(f), label) for f in _fraction(files, split, test_fraction)]
    return EventIndex("cifar10_dvs", split, r, tuple(samples), CIFAR10_DVS_CLASSES,
                      DVS128_SENSOR, "aedat2")


def nmnist(split: str = "train", root=None, *, T: int = 8, size=(34, 34), **kw) -> EventDataset:
    """N-MNIST ``split`` as frames ``[T, 2, H, W]`` (default native 34x34); ``**kw``: see
    :func:`load_events` (``by``, ``binary``, ``dt_ms``, ``cache_dir``, ``workers``,
    ``progress``, ``skip_bad_files``)."""
    return load_events(nmnist_index(split, root), T=T, size=size, **kw)


def ncaltech101(split: str = "train", root=None, *, T: int = 8, size=(45, 60),
                test_fraction: float = 0.1, **kw) -> EventDataset:
    """N-Caltech101 ``split`` ("train" | "test" | "all") on the fixed 180x240 sensor, by
    default summed 4x4 into 45x60 frames."""
    return load_events(ncaltech101_index(split, root, test_fraction), T=T, size=size, **kw)


def dvs_gesture(split: str = "train", root=None, *, T: int = 16, size=(32, 32),
                skip_bad_files: bool = False, **kw) -> EventDataset:
    """DVS128 Gesture ``split``, one sample per labelled gesture (11 classes), 128x128 summed
    4x4 into 32x32 frames by default."""
    return load_events(dvs_gesture_index(split, root, skip_bad_files), T=T, size=size,
                       skip_bad_files=skip_bad_files, **kw)


def cifar10_dvs(split: str = "train", root=None, *, T: int = 16, size=(32, 32),
                test_fraction: float = 0.1, **kw) -> EventDataset:
    """CIFAR10-DVS ``split`` ("train" | "test" | "all"), 128x128 summed 4x4 into 32x32."""
    return load_events(cifar10_dvs_index(split, root, test_fraction), T=T, size=size, **kw)
