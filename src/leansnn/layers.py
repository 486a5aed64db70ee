"""Glue between stateless layers and time-major spiking tensors ``[T, B, ...]``."""

from __future__ import annotations

import torch
from torch import nn

from .neuron.functional import check_sequence

__all__ = [
    "TimeFold", "RepeatTime", "StaticStem", "repeat_time", "check_finite",
]


def check_finite(x: torch.Tensor, where: str) -> torch.Tensor:
    """Raise ``ValueError`` naming ``where`` if ``x`` holds NaN or Inf; return ``x``.

    One reduction over ``x``; used where data enters a model and on training losses.
    """
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(
            f"{where}: found {n_nan} NaN and {n_inf} Inf values in a tensor of shape "
            f"{tuple(x.shape)}; check the data (normalisation, division by zero) or lower the "
            "learning rate if this is a training loss"
        )
    return x


def repeat_time(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding: ``[B, ...] -> [T, B, ...]`` (a view; no copy)."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    return x.unsqueeze(0).expand(T, *x.shape)


class TimeFold(nn.Module):
    """Apply stateless layers (conv, BN, pooling, linear, ...) to ``[T, B, ...]``.

    T is folded into the batch: ``[T, B, ...] -> [T*B, ...] -> layers -> [T, B, ...']``.
    Batch norm therefore pools its statistics over time and batch, as in tdBN-free SNNs.
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layer = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence(x, "TimeFold input")
        T, B = x.shape[:2]
        y = self.layer(x.reshape(T * B, *x.shape[2:]))
        return y.reshape(T, B, *y.shape[1:])


class RepeatTime(nn.Module):
    """Direct encoding layer: static ``[B, ...]`` -> ``[T, B, ...]``; passes ``[T, B, ...]``
    through unchanged when the input already has ``ndim_static + 1`` dims."""

    def __init__(self, T: int, static_dims: int) -> None:
        super().__init__()
        self.T, self.static_dims = int(T), int(static_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == self.static_dims:
            return repeat_time(x, self.T)
        if x.dim() == self.static_dims + 1:
            return x
        raise ValueError(
            f"expected a static input with {self.static_dims} dims [B, ...] or a sequence with "
            f"{self.static_dims + 1} dims [T, B, ...], got shape {tuple(x.shape)}"
        )


class StaticStem(nn.Module):
    """First (stateless) layers of a directly encoded network, computed once per input.

    With direct encoding every time step sees the same image, so ``conv -> BN`` gives the
    same current at every step: compute it on ``[B, ...]`` and broadcast to ``[T, B, ...]``
    (T times less work, and identical to folding T copies: the batch-norm mean and biased
    variance over T identical copies equal those over one). A ``[T, B, ...]`` input (e.g.
    event frames) is folded over time as in :class:`TimeFold`.

    Input ``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> output ``[T, B, C', H', W']``.
    """

    def __init__(self, *layers: nn.Module, T: int, static_dims: int = 4) -> None:
        super().__init__()
        self.layer = layers[0] if len(layers) == 1 else nn.Sequential(*layers)
        self.T, self.static_dims = int(T), int(static_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() == self.static_dims:
            y = self.layer(x)
            return y.unsqueeze(0).expand(self.T, *y.shape)
        if x.dim() == self.static_dims + 1:
            T, B = x.shape[:2]
            y = self.layer(x.reshape(T * B, *x.shape[2:]))
            return y.reshape(T, B, *y.shape[1:])
        raise ValueError(
            f"expected [B, ...] with {self.static_dims} dims or [T, B, ...] with "
            f"{self.static_dims + 1}, got shape {tuple(x.shape)}"
        )

