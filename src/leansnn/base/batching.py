"""One batching contract: whatever a user passes as data becomes a stream of :class:`Batch`.

Accepted ``data`` (training, evaluation, calibration, energy and analysis all go through
:func:`iter_batches`):

* a tensor ``[N, ...]`` of inputs (no labels): split into batches along dim 0;
* an ``(inputs, labels)`` pair (tuple or list) of tensors with ``len(inputs) ==
  len(labels)``: split into batches along dim 0 — a whole labelled data set in memory;
* a leansnn data set (anything with a ``batches(batch_size, shuffle, seed, drop_last)``
  method, e.g. :func:`leansnn.data.fashion_mnist`; event data sets yield time-major
  ``[T, B, ...]`` inputs);
* a ``torch.utils.data.Dataset`` (map-style) whose items are inputs or ``(input, label)``
  pairs, e.g. ``TensorDataset(x)`` or ``TensorDataset(x, y)``: batched with a DataLoader;
* a ``DataLoader`` or any other iterable of batches, each a tensor or an ``(inputs,
  labels)`` pair (tuple or list; further items are ignored).

Every batch comes out as ``Batch(x, y)`` with ``x`` a floating tensor and ``y`` an integer
tensor or ``None``. ``max_batches`` and ``max_samples`` are the limits every leansnn
function that reads data spells the same way (the last batch is cut to honour
``max_samples``). Bad data raises :class:`BatchError` (a ``ValueError``) naming the batch
and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["Batch", "BatchError", "iter_batches", "num_batches", "check_limit",
           "batch_indices", "input_is_static"]


class BatchError(ValueError):
    """Data that cannot be read as batches (the message names the batch and the fix)."""


class Batch(tuple):
    """One batch, the pair ``(x, y)``: inputs ``x`` (float; ``[B, ...]`` static or
    ``[T, B, ...]`` time-major) and labels ``y`` (int ``[B]``) or ``None`` for unlabelled
    data; ``batch_dim`` is the dim of ``x`` that holds the samples (0 static, 1 time-major).
    Unpacks as ``x, y = batch``."""

    batch_dim: int

    def __new__(cls, x: torch.Tensor, y: torch.Tensor | None, batch_dim: int = 0) -> Batch:
        b = super().__new__(cls, (x, y))
        b.batch_dim = int(batch_dim)
        return b

    def __getnewargs__(self) -> tuple:  # pickling (DataLoader workers), copy
        return (self[0], self[1], self.batch_dim)

    @property
    def x(self) -> torch.Tensor:
        return self[0]

    @property
    def y(self) -> torch.Tensor | None:
        return self[1]

    def __repr__(self) -> str:
        y = None if self.y is None else tuple(self.y.shape)
        return f"Batch(x={tuple(self.x.shape)}, y={y}, batch_dim={self.batch_dim})"

    @property
    def size(self) -> int:
        """Number of samples: ``len(y)`` when labelled, else ``x.shape[batch_dim]``."""
        return int(self.y.shape[0]) if self.y is not None else int(self.x.shape[self.batch_dim])


def input_is_static(model: Any, x: torch.Tensor) -> bool | None:
    """Whether ``model`` reads ``x`` as a static ``[B, ...]`` input (True) or a time-major
    ``[T, B, ...]`` one (False).

    Asked of the first module of ``model.modules()`` that answers: leansnn modules that see
    the input first declare ``takes_static_input(x) -> bool`` (encoders, ``RepeatTime`` /
    ``StaticStem``, converted SNNs, NIR networks say from ``x.dim()``; ``TimeFold`` and
    spiking neurons always read ``[T, B, ...]``). ``None`` when no module answers (a plain
    ANN; its inputs are static)."""
    modules = model.modules() if hasattr(model, "modules") else ()
    for m in modules:
        ask = getattr(m, "takes_static_input", None)
        if callable(ask):
            return bool(ask(x))
    return None


def check_limit(value: Any, name: str) -> int | None:
    """Validate a ``max_batches`` / ``max_samples`` style limit (int >= 1 or None)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
    return value


def batch_indices(n: int, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                  drop_last: bool = False) -> Iterator[np.ndarray]:
    """Sample indices (int64 numpy arrays) of each batch over ``n`` samples: in order, or a
    permutation drawn from ``seed`` (``torch.randperm`` with its own generator, never the
    global random state); ``drop_last`` drops an incomplete last batch. Every leansnn data
    set's ``batches`` uses this, so the same seed gives the same batches everywhere."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
             if shuffle else np.arange(n, dtype=np.int64))
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def _is_pair(data: Any) -> bool:
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(v, torch.Tensor) for v in data)
            and data[0].dim() >= 1 and data[1].dim() == 1
            and not data[1].is_floating_point() and data[0].shape[0] == data[1].shape[0])


def _as_batch(item: Any, i: int) -> Batch:
    x, y = item, None
    if isinstance(item, (tuple, list)):
        if not item:
            raise BatchError(f"batch {i} is an empty {type(item).__name__}")
        x = item[0]
        y = item[1] if len(item) > 1 else None
    elif isinstance(item, dict):
        raise BatchError(f"batch {i} is a dict (keys {sorted(item)}); pass data that yields "
                         "input tensors or (inputs, labels) pairs")
    if not isinstance(x, torch.Tensor):
        raise BatchError(f"batch {i}: expected an input tensor (or a tuple whose first item "
                         f"is one), got {type(x).__name__}")
    if not x.is_floating_point():
        raise BatchError(
            f"batch {i} holds a {x.dtype} input tensor of shape {tuple(x.shape)}: inputs must "
            "be floating point (labels, if any, come second: (inputs, labels)); convert with "
            "x.float()")
    if y is not None:
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        if y.dim() != 1 or y.is_floating_point():
            raise BatchError(f"batch {i}: labels must be an integer tensor [B], got "
                             f"{y.dtype} of shape {tuple(y.shape)}")
        if x.dim() >= 2 and x.shape[0] != y.shape[0] and x.shape[1] == y.shape[0]:
            return Batch(x, y, 1)  # time-major inputs [T, B, ...]
    return Batch(x, y)


def _source(data: Any, batch_size: int, shuffle: bool, seed: int, drop_last: bool) -> Iterable:
    if data is None:
        raise BatchError("no data given (None)")
    if isinstance(data, torch.Tensor):
        if data.dim() < 1 or data.shape[0] == 0:
            raise BatchError(f"input tensor of shape {tuple(data.shape)} holds no samples")
        if shuffle:
            g = torch.Generator().manual_seed(seed)
            data = data[torch.randperm(data.shape[0], generator=g)]
        stop = data.shape[0] - data.shape[0] % batch_size if drop_last else data.shape[0]
        return (data[i:i + batch_size] for i in range(0, stop, batch_size))
    if _is_pair(data):
        x, y = data
        order = (torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
                 if shuffle else None)
        stop = x.shape[0] - x.shape[0] % batch_size if drop_last else x.shape[0]

        def pairs():
            for i in range(0, stop, batch_size):
                if order is None:
                    yield x[i:i + batch_size], y[i:i + batch_size]
                else:
                    idx = order[i:i + batch_size]
                    yield x[idx], y[idx]

        return pairs()
    if hasattr(data, "batches"):
        return data.batches(batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
            data, torch.utils.data.IterableDataset):
        # the same order as an in-memory pair with the same seed; the loader's own generator
        # keeps it from drawing on the global random state
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(data), generator=g).tolist() if shuffle else None
        return torch.utils.data.DataLoader(data, batch_size=batch_size, sampler=order,
                                           generator=g, drop_last=drop_last)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise BatchError(
            f"cannot read batches from a {type(data).__name__}; pass a tensor [N, ...], an "
            "(inputs, labels) pair, a Dataset, a DataLoader or an iterable of batches")
    return data


def iter_batches(data: Any, batch_size: int = 256, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, max_batches: int | None = None,
                 max_samples: int | None = None, model: Any = None) -> Iterator[Batch]:
    """Yield :class:`Batch` es from ``data`` (see the module docstring for what is accepted).

    ``batch_size``, ``shuffle``, ``seed`` and ``drop_last`` apply where leansnn does the
    batching (tensors, pairs, data sets); a loader or iterable of batches is read as it is.
    Stops after ``max_batches`` batches or ``max_samples`` samples (the last batch cut along
    its samples). Where the samples of a batch lie: along the labels for a labelled batch;
    for an unlabelled one, dim 1 if ``model`` reads it as time-major ``[T, B, ...]`` (see
    :func:`input_is_static`), else dim 0 -- pass the ``model`` the batches are for.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    check_limit(max_batches, "max_batches")
    check_limit(max_samples, "max_samples")
    seen = 0
    static: dict[int, bool | None] = {}  # input_is_static by input dims
    for i, item in enumerate(_source(data, batch_size, shuffle, seed, drop_last)):
        if max_batches is not None and i >= max_batches:
            return
        b = _as_batch(item, i)
        if b.y is None and model is not None:
            if b.x.dim() not in static:
                static[b.x.dim()] = input_is_static(model, b.x)
            if static[b.x.dim()] is False:
                b = Batch(b.x, b.y, 1)
        if max_samples is not None:
            left = max_samples - seen
            if left <= 0:
                return
            if b.size > left:
                b = _cut(b, left)
        seen += b.size
        yield b


def _cut(b: Batch, n: int) -> Batch:
    x = b.x[:, :n] if b.batch_dim == 1 else b.x[:n]
    return Batch(x, None if b.y is None else b.y[:n], b.batch_dim)


def num_batches(data: Any, batch_size: int, *, drop_last: bool = False,
                max_batches: int | None = None, max_samples: int | None = None) -> int | None:
    """How many batches :func:`iter_batches` yields, or ``None`` when unknown (for progress
    bars; an iterable without ``len`` is unknown)."""
    if isinstance(data, torch.Tensor) or _is_pair(data):
        n_samples: int | None = int((data if isinstance(data, torch.Tensor) else data[0])
                                    .shape[0])
        n: int | None = None
    else:
        try:
            length = len(data)
        except TypeError:
            return max_batches
        if hasattr(data, "batches") or isinstance(data, torch.utils.data.Dataset):
            n_samples, n = length, None
        else:  # a loader or list of batches: len() counts batches
            n_samples, n = None, length
    if n is None and n_samples is not None:
        if max_samples is not None:
            n_samples = min(n_samples, max_samples)
        n = n_samples // batch_size if drop_last else math.ceil(n_samples / batch_size)
    if n is not None and max_batches is not None:
        n = min(n, max_batches)
    return n
