"""tonic compatibility: tonic-style data sets in, time-major batches out.

tonic (https://tonic.readthedocs.io) data sets yield ``(events, label)`` with events a
structured numpy array of fields ``x, y, t, p`` (field order and dtypes vary by data set), and
describe the sensor as ``sensor_size = (W, H, P)``; its ``ToFrame`` transform gives
``[T, P, H, W]`` frames that a ``DataLoader`` stacks *batch-major*, ``[B, T, P, H, W]``.

- :func:`from_tonic` bins any such data set (or any sequence of ``(events, label)``, events
  also as plain ``[N, 4]`` arrays with ``ordering=``) into a leansnn
  :class:`~leansnn.data.event_folders.EventDataset` in memory: the same frames, windows,
  ``batches`` and ``events(i)`` as the data sets read from folders.
- :func:`time_major_collate` is a ``DataLoader`` ``collate_fn`` for items ``(frames [T, ...],
  label)``: it returns ``x [T, B, ...]`` (time-major, what leansnn models take) and
  ``y [B]``; :func:`to_time_major` turns an already batched ``[B, T, ...]`` tensor into
  ``[T, B, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..base.progress import progress as tqdm_progress
from .errors import DataError
from .event_folders import EventDataset, _bin, _frame_settings
from .events import EventError, as_events, check_events

__all__ = ["from_tonic", "time_major_collate", "to_time_major", "sensor_hw"]


def sensor_hw(sensor_size: Sequence[int]) -> tuple[int, int]:
    """leansnn's ``(H, W)`` from a sensor size: a 3-tuple is tonic's ``(W, H, P)``, a 2-tuple
    leansnn's ``(H, W)``."""
    s = tuple(int(v) for v in sensor_size)
    if len(s) == 3:
        return s[1], s[0]
    if len(s) == 2:
        return s
    raise ValueError(f"sensor_size must be tonic's (W, H, P) or leansnn's (H, W), got "
                     f"{sensor_size!r}")


def from_tonic(dataset, sensor_size: Sequence[int], T: int = 8, *,
               size: tuple[int, int] | None = None, by: str = "time", binary: bool = False,
               dt_ms: float | None = None, ordering: str | None = None,
               classes: Sequence[str] | None = None, progress: bool = True,
               name: str = "tonic") -> EventDataset:
    """Bin a tonic-style data set into an in-memory :class:`EventDataset`.

    ``dataset``: indexable (``len`` + ``[i]``) or iterable of ``(events, label)``; events as
    accepted by :func:`~leansnn.data.events.as_events` (``ordering`` for plain arrays,
    default ``dataset.ordering`` when it has one). ``sensor_size``: tonic's ``(W, H, P)`` or
    leansnn's ``(H, W)``; ``size`` (default: the sensor's) and the other settings as in
    :func:`~leansnn.data.event_folders.load_events`. Each recording's frames start at its
    first event. ``classes`` default to ``dataset.classes`` or ``"0" ... "K-1"``.
    """
    hw = sensor_hw(sensor_size)
    fs = _frame_settings(T, size if size is not None else hw, by, binary, dt_ms)
    fs.spatial(hw)
    if ordering is None:
        ordering = getattr(dataset, "ordering", None)
        if isinstance(ordering, (tuple, list)):
            ordering = "".join(ordering)
    try:
        n = len(dataset)
        items = (dataset[i] for i in range(n))
    except TypeError:
        n, items = None, iter(dataset)
    frames, lengths, labels = [], [], []
    for i, item in enumerate(tqdm_progress(items, total=n, desc=f"binning {name}", unit="rec",
                                  quiet=not progress)):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{name}: item {i} is not an (events, label) pair")
        try:
            ev = check_events(as_events(item[0], ordering, name=f"{name}[{i}]"), hw,
                              name=f"{name}[{i}]")
        except EventError as e:
            raise DataError(str(e)) from None
        if ev.size == 0:
            raise DataError(f"{name}: recording {i} is empty (no events)")
        t0 = int(ev["t"][0])
        fr = _bin(ev, t0, int(ev["t"][-1]) - t0 + 1, fs, hw)
        frames.append(fr)
        lengths.append(fr.shape[0])
        labels.append(int(item[1]))
    if not frames:
        raise DataError(f"{name}: the data set is empty")
    if classes is None:
        classes = getattr(dataset, "classes", None)
        if classes is None or isinstance(classes, dict):
            classes = [str(k) for k in range(max(labels) + 1)]
    off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def events(i: int) -> np.ndarray:
        return as_events(dataset[i][0], ordering, name=f"{name}[{i}]")

    ds = EventDataset(np.concatenate(frames), off, np.array(labels, np.int64), fs, classes,
                      name, events if n is not None else None)
    ds.sensor_size = hw
    return ds


def to_time_major(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``[B, T, ...]`` (batch-major, tonic/DataLoader layout) -> contiguous ``[T, B, ...]``."""
    x = torch.as_tensor(x)
    if x.dim() < 2:
        raise ValueError(f"expected a batch-major tensor [B, T, ...], got shape "
                         f"{tuple(x.shape)}")
    return x.transpose(0, 1).contiguous()


def time_major_collate(batch: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """``collate_fn`` for a ``DataLoader``: items ``(frames [T, ...], label)`` (tensors or
    numpy arrays, e.g. tonic ``ToFrame`` output ``[T, P, H, W]``) -> ``(x float32
    [T, B, ...], y int64 [B])``. All items must have the same shape (pad or window first)."""
    if not batch:
        raise ValueError("empty batch")
    xs, ys = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"item {i} is not a (frames, label) pair")
        xs.append(torch.as_tensor(np.asarray(item[0]) if not isinstance(item[0], torch.Tensor)
                                  else item[0]))
        ys.append(int(item[1]))
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) != 1:
        raise ValueError(f"items have different shapes {sorted(shapes)}; every item must be "
                         "[T, ...] of the same T and size")
    x = torch.stack(xs, dim=1).float()          # [T, B, ...]
    return x, torch.tensor(ys, dtype=torch.int64)
