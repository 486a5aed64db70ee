"""Small directly encoded LIF SNN (the foundation demo model)."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import InputSpec, StaticStem, TimeFold, check_finite, positive_int
from ..neuron import LIF
from ..neuron import surrogate as sg
from .registry import register

__all__ = ["SpikingSequential", "lif_cnn", "image_size"]


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` for time-major SNNs that checks its input once where it enters.

    Input ``[B, C, H, W]`` (static, repeated over T by the stem) or ``[T, B, C, H, W]``;
    output ``[T, B, K]``: the classifier's output at each step (not cumulative).
    """

    input_spec: InputSpec | None = None
    """What the model accepts (set by the builders); checked once where the input enters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.input_spec is not None:
            self.input_spec.check(x, self)
        elif not isinstance(x, torch.Tensor):
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
    H, W = image_size(input_size, "lif_cnn", minimum=4)
    for name, v in (("T", T), ("width", width), ("num_classes", num_classes),
                    ("in_channels", in_channels)):
        positive_int(v, name, "lif_cnn")
    w = width

    def neuron() -> LIF:
        return LIF(decay=decay, threshold=threshold, surrogate=sg.ATan(alpha=2.0))

    net = SpikingSequential(
        StaticStem(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), T=T),
        neuron(),
        TimeFold(nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w),
                 nn.AvgPool2d(2)),
        neuron(),
        TimeFold(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * w * (H // 4) * (W // 4),
                                                           num_classes)),
    )
    net.input_spec = InputSpec("lif_cnn", in_channels, (H, W), T)
    return net


def image_size(input_size: object, where: str, minimum: int = 1) -> tuple[int, int]:
    """``(H, W)`` from an int or a pair of ints >= ``minimum``; ``ValueError`` otherwise."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    ok = isinstance(input_size, (tuple, list)) and len(input_size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= max(1, minimum)
        for v in input_size)
    if not ok:
        raise ValueError(f"{where}: input_size must be (H, W) with ints >= {max(1, minimum)}, "
                         f"got {input_size!r}")
    return int(input_size[0]), int(input_size[1])
