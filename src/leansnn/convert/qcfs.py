"""QCFS: the quantization-clip-floor-shift activation ANNs are trained with before conversion.

.. math::

    a(z) = \\frac{\\theta}{L}\\,\\mathrm{clip}\\Big(\\Big\\lfloor \\frac{z L + \\theta/2}{\\theta}
    \\Big\\rfloor, 0, L\\Big)

with ``L`` quantization levels, a learnable per-layer threshold ``theta`` (units of the
pre-activation ``z``) and the shift ``psi = theta/2``. The floor passes gradients straight
through (STE), so ``z`` and ``theta`` both learn. A network of QCFS layers with ``L == T``
converts losslessly to parallel spiking neurons with ``T`` steps (papers.md, part B).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models.registry import register_configurable

__all__ = ["QCFS", "floor_ste", "qcfs"]


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)`` forward, identity gradient backward (straight-through estimator)."""
    return _FloorSTE.apply(x)


def qcfs(x: torch.Tensor, threshold: torch.Tensor | float, levels: int) -> torch.Tensor:
    """Functional QCFS: ``floor(clip(x/theta, 0, 1) * L + 1/2) / L * theta``.

    Written in exactly the order the parallel neuron uses for its spike count, so a parallel
    neuron with ``T == L`` fed the same mean input reproduces this output bit for bit.
    Shapes: any; ``threshold`` a scalar (or broadcastable tensor) > 0.
    """
    y = floor_ste(torch.clamp(x / threshold, 0.0, 1.0) * levels + 0.5)
    return y / levels * threshold


@register_configurable
class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation with a learnable per-layer threshold.

    Args:
        levels: quantization levels ``L`` >= 1 (convert with ``T == L`` for zero error).
        threshold: initial threshold ``theta`` > 0 (the activation saturates at ``theta``).
        learn_threshold: make ``theta`` an ``nn.Parameter`` (default) or a fixed buffer.

    Shapes: ``[B, ...] -> [B, ...]`` (elementwise). Values lie in ``{0, theta/L, ..., theta}``.
    Used as a model-builder argument, each layer gets its own copy (see
    :meth:`clone`), and it is recorded in checkpoints through :meth:`to_config`.
    """

    def __init__(self, levels: int = 4, threshold: float = 8.0, learn_threshold: bool = True
                 ) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"QCFS levels must be an int >= 1, got {levels!r}")
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or (
                threshold <= 0):
            raise ValueError(f"QCFS threshold must be a finite number > 0, got {threshold!r}")
        self.levels = int(levels)
        t = torch.tensor(float(threshold))
        if learn_threshold:
            self.threshold = nn.Parameter(t)
        else:
            self.register_buffer("threshold", t)
        self.learn_threshold = bool(learn_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return qcfs(x, self.threshold, self.levels)

    @property
    def theta(self) -> float:
        """The current threshold as a Python float."""
        return float(self.threshold.detach())

    def to_config(self) -> dict:
        return {"levels": self.levels, "threshold": self.theta,
                "learn_threshold": self.learn_threshold}

    def clone(self) -> QCFS:
        """A fresh QCFS with the same settings and its own threshold parameter."""
        return QCFS(**self.to_config())

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.theta:g}"
