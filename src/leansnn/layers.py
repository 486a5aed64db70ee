"""Glue between stateless layers and time-major spiking tensors ``[T, B, ...]``."""

from __future__ import annotations

import torch
from torch import nn

from .neuron.functional import check_sequence

__all__ = [
    "TimeFold", "RepeatTime", "StaticStem", "repeat_time", "check_finite", "InputSpec",
    "positive_int",
]


def positive_int(value: object, name: str, where: str = "") -> int:
    """``value`` if it is an int >= 1 (not a bool); else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}{name} must be an int >= 1, got {value!r}")
    return value


class InputSpec:
    """What a model accepts, checked where the input enters (shapes only, no data pass).

    ``channels``: C; ``size``: ``(H, W)`` the model needs exactly, or ``None``;
    ``min_size``: the smallest side it can take; ``T``: the time steps of a time-major
    ``[T, B, C, H, W]`` input (``None``: a static model taking ``[B, C, H, W]`` only).
    Use as ``check(x)`` or as a forward pre-hook (``module.register_forward_pre_hook(spec)``).
    Errors are ``ValueError`` naming what was expected and what came.
    """

    def __init__(self, name: str, channels: int, size: tuple[int, int] | None = None,
                 T: int | None = None, min_size: int = 1) -> None:
        self.name, self.channels, self.T, self.min_size = name, int(channels), T, int(min_size)
        self.size = None if size is None else (int(size[0]), int(size[1]))

    def __repr__(self) -> str:
        return (f"InputSpec({self.name!r}, channels={self.channels}, size={self.size}, "
                f"T={self.T}, min_size={self.min_size})")

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if args:
            self.check(args[0], module)

    def _expected(self) -> str:
        hw = "H, W" if self.size is None else f"{self.size[0]}, {self.size[1]}"
        static = f"[B, {self.channels}, {hw}]"
        return static if self.T is None else f"{static} or [T={self.T}, B, {self.channels}, {hw}]"

    def check(self, x: object, module: nn.Module | None = None) -> None:
        """Raise ``ValueError`` if ``x`` does not fit (see the class docstring)."""
        where = f"{self.name} input"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{where}: expected a torch.Tensor {self._expected()}, got "
                             f"{type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{where}: expected a float tensor (floating-point dtype), got "
                             f"{x.dtype}; convert with x.float() (images scaled to [0, 1])")
        dims = (4,) if self.T is None else (4, 5)
        if x.dim() not in dims:
            raise ValueError(f"{where}: expected {self._expected()}, got shape "
                             f"{tuple(x.shape)}{self._rank_hint(x)}")
        if x.dim() == 5 and x.shape[0] != self.T:
            raise ValueError(self._time_message(x))
        self._check_image(x, where)
        if module is not None:
            self._check_weights(x, module, where)

    def _rank_hint(self, x: torch.Tensor) -> str:
        if x.dim() == 3 and x.shape[0] == self.channels:
            return "; one image? add the batch axis: x.unsqueeze(0)"
        if x.dim() == 5 and self.T is None:
            return ("; a time-major sequence [T, B, ...] is for SNNs: an ANN takes images "
                    "[B, C, H, W]")
        if x.dim() == 4 and self.T is None and x.shape[-1] == self.channels:
            return "; channels last? use x.permute(0, 3, 1, 2)"
        return ""

    def _time_message(self, x: torch.Tensor) -> str:
        shape = tuple(x.shape)
        if x.shape[1] == self.T:
            return (f"{self.name} input: got shape {shape}, which looks batch-major [B, T, ...] "
                    f"(B={x.shape[0]}, T={x.shape[1]}); the model takes time-major "
                    f"[T={self.T}, B, ...]: pass x.transpose(0, 1)")
        return (f"{self.name} input: a sequence of {x.shape[0]} time steps (shape {shape}) but "
                f"the model was built with T={self.T}; give [T={self.T}, B, C, H, W] (if the "
                "batch comes first, x.transpose(0, 1)) or build the model with "
                f"T={x.shape[0]}")

    def _check_image(self, x: torch.Tensor, where: str) -> None:
        c, h, w = (int(v) for v in x.shape[-3:])
        if c != self.channels:
            hint = ("; channels last? use x.permute(0, 3, 1, 2)" if x.dim() == 4 and
                    x.shape[-1] == self.channels else "")
            raise ValueError(f"{where}: expected {self.channels} channel(s) (shape "
                             f"{self._expected()}), got {c} in shape {tuple(x.shape)}; the "
                             f"model was built with in_channels={self.channels}{hint}")
        if self.size is not None and (h, w) != self.size:
            raise ValueError(f"{where}: expected images of {self.size[0]}x{self.size[1]}, got "
                             f"{h}x{w} (shape {tuple(x.shape)}); resize the data or build the "
                             f"model with input_size=({h}, {w})")
        if min(h, w) < self.min_size:
            raise ValueError(f"{where}: images of {h}x{w} are too small for this model "
                             f"(each side needs at least {self.min_size} pixels)")

    @staticmethod
    def _check_weights(x: torch.Tensor, module: nn.Module, where: str) -> None:
        p = next(module.parameters(), None)
        if p is None or torch.is_autocast_enabled():
            return
        if p.device != x.device:
            raise ValueError(f"{where}: the input is on {x.device} but the model on "
                             f"{p.device}; move one of them (x.to({str(p.device)!r}))")
        if p.dtype != x.dtype:
            raise ValueError(f"{where}: the input is {x.dtype} but the model's weights are "
                             f"{p.dtype}; convert with x.to({p.dtype}) or model.to({x.dtype})")


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

    def takes_static_input(self, x: torch.Tensor) -> bool:
        """False: the input is time-major ``[T, B, ...]``."""
        return False


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

    def takes_static_input(self, x: torch.Tensor) -> bool:
        """True for a static input ``[B, ...]`` (``static_dims`` dims)."""
        return x.dim() == self.static_dims


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

    def takes_static_input(self, x: torch.Tensor) -> bool:
        """True for a static input ``[B, ...]`` (``static_dims`` dims)."""
        return x.dim() == self.static_dims

