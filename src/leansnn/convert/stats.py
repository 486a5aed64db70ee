"""Per-channel statistics over lists of chunks, for calibration.

A channel is dim 1 of an activation ``[B, C, ...]`` (a ``[B]`` activation is one channel);
parameters shaped by :func:`param_shape` (``[C, 1, ...]``) broadcast against one sample.
Sums are accumulated in float64 so that the means do not depend on how the data are chunked.
"""

from __future__ import annotations

import math

import torch

__all__ = ["param_shape", "reduce_dims", "chan_sum", "chan_mean", "chan_max", "chan_percentile",
           "count_moments"]


def param_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape of a per-channel parameter of activations like ``x``: ``(C, 1, ...)``."""
    if x.dim() < 2:
        return ()
    return (x.shape[1],) + (1,) * (x.dim() - 2)


def reduce_dims(x: torch.Tensor) -> list[int]:
    """Every dim of ``x`` but the channel dim."""
    return [d for d in range(x.dim()) if d != 1] if x.dim() >= 2 else [0]


def chan_sum(xs: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Per-channel sum (float64 ``[C]``) over all chunks, and the number of terms per channel."""
    tot = None
    count = 0
    for x in xs:
        s = x.sum(dim=reduce_dims(x), dtype=torch.float64)
        tot = s if tot is None else tot + s
        count += x.numel() // max(1, (x.shape[1] if x.dim() >= 2 else 1))
    return tot, count


def chan_mean(xs: list[torch.Tensor]) -> torch.Tensor:
    """Per-channel mean (float64 ``[C]``) over all chunks."""
    s, count = chan_sum(xs)
    return s / max(count, 1)


def chan_max(xs: list[torch.Tensor]) -> torch.Tensor:
    """Per-channel maximum ``[C]`` over all chunks."""
    return torch.stack([x.amax(dim=reduce_dims(x)) for x in xs]).amax(0)


def chan_percentile(xs: list[torch.Tensor], p: float) -> torch.Tensor:
    """Per-channel ``p``-th percentile ``[C]`` (in %, the ``ceil(p/100 n)``-th smallest)."""
    if xs[0].dim() < 2:
        flat = torch.cat([x.reshape(1, -1) for x in xs], 1)
    else:
        flat = torch.cat([x.transpose(0, 1).reshape(x.shape[1], -1) for x in xs], 1)
    n = flat.shape[1]
    k = min(n, max(1, math.ceil(p / 100.0 * n)))
    return flat.kthvalue(k, dim=1).values


def count_moments(ns: list[torch.Tensor], a: list[torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel ``(sum n^2, sum n a)`` over the chunks: the sufficient statistics of the
    least-squares amplitude ``g = sum n a / sum n^2`` of ``g n ~ a``."""
    snn = sum(n.square().sum(dim=reduce_dims(n), dtype=torch.float64) for n in ns)
    sna = sum((n * x).sum(dim=reduce_dims(n), dtype=torch.float64)
              for n, x in zip(ns, a, strict=True))
    return snn, sna
