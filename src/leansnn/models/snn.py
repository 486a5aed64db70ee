"""Small directly encoded LIF SNN (the foundation demo model)."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import StaticStem, TimeFold, check_finite
from ..neuron import LIF
from ..neuron import surrogate as sg
from .registry import register

__all__ = ["SpikingSequential", "lif_cnn"]


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` for time-major SNNs that checks its input once where it enters.

    Input ``[B, C, H, W]`` (static, repeated over T by the stem) or ``[T, B, C, H, W]``;
    output ``[T, B, K]``: the classifier's output at each step (not cumulative).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"model input: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"model input: expected a float tensor, got {x.dtype}; use x.float()")
        check_finite(x, "model input")
        return super().forward(x)


@register("lif_cnn")
def lif_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    T: int = 4,
    width: int = 16,
    input_size: tuple[int, int] | list[int] = (28, 28),
    decay: float = 0.5,
    threshold: float = 1.0,
) -> nn.Module:
    """Two-conv LIF SNN with direct encoding; ``[B, C, H, W]`` -> ``[T, B, K]``.

    conv3x3(C->w)+BN -> LIF -> conv3x3(w->2w)+BN+avgpool2 -> LIF -> avgpool2 -> linear.
    The first conv+BN runs once per image (:class:`~leansnn.layers.StaticStem`).
    """
    H, W = (int(v) for v in input_size)
    w = int(width)

    def neuron() -> LIF:
        return LIF(decay=decay, threshold=threshold, surrogate=sg.ATan(alpha=2.0))

    return SpikingSequential(
        StaticStem(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), T=T),
        neuron(),
        TimeFold(nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w),
                 nn.AvgPool2d(2)),
        neuron(),
        TimeFold(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * w * (H // 4) * (W // 4),
                                                           num_classes)),
    )
