"""QCFS: the quantization-clip-floor-shift activation ANNs are trained with before conversion.

.. math::

    a(z) = \\frac{\\theta}{L}\\,\\mathrm{clip}\\Big(\\Big\\lfloor \\frac{z L + \\theta/2}{\\theta}
    \\Big\\rfloor, 0, L\\Big)

with ``L`` quantization levels, a learnable per-layer threshold ``theta`` (units of the
pre-activation ``z``) and the shift ``psi = theta/2``. The floor passes gradients straight
through (STE), so ``z`` and ``theta`` both learn. A network of QCFS layers with ``L == T``
converts losslessly to parallel spiking neurons with ``T`` steps (papers.md, part B).

The quantization level is :func:`spike_count` (``L`` = ``T``), the one copy of the formula
``clip(floor((S + psi)/theta), 0, T)`` that the parallel neuron and DA-QCFS also use, and
:func:`floor_ste` is the one straight-through floor.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base.config import register_configurable

__all__ = ["QCFS", "floor_ste", "qcfs", "spike_count"]


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


def spike_count(x: torch.Tensor, threshold: torch.Tensor, T: int,
                offset: torch.Tensor | float | None = None, *, ste: bool = False
                ) -> torch.Tensor:
    r"""Spike count of a parallel neuron, ``n = clip(floor((S + psi) / theta), 0, T)``.

    ``x`` is the time-mean input ``[B, ...]`` (so the window's summed input is ``S = T x``),
    ``threshold`` ``theta`` > 0 a scalar or a tensor broadcastable to ``x`` (``[C, 1, 1]``
    channel-wise), ``offset`` the shift in units of the threshold, ``psi / theta`` (same
    broadcasting; ``None`` means ``1/2``, i.e. ``psi = theta/2``). Returns a float tensor of
    the shape of ``x`` with values in ``{0..T}``. This one formula is QCFS's quantization
    level (``T`` = levels ``L``), the parallel neuron's count and DA-QCFS's.

    Arithmetic, chosen for speed and exactness (one function, so its users agree bit for bit):

    * ``offset = None``: ``floor(clamp(x (T/theta) + 1/2, 1/2, T + 1/2))`` in three passes,
      the last two in place; QCFS and the parallel neuron without shift both use it, so a
      parallel neuron with ``T == L`` fed the same mean input reproduces QCFS exactly.
    * otherwise ``clamp(floor(x/theta T + offset), 0, T)``.
    * ``ste=True``: the floor passes gradients straight through (:func:`floor_ste`), for
      tuning ``x``, ``theta`` or ``offset`` by gradient descent.
    """
    if offset is None and not ste:
        half = torch.tensor(0.5, dtype=x.dtype, device=x.device)
        v = torch.addcmul(half, x, T / threshold)
        return v.clamp_(0.5, T + 0.5).floor_()
    v = x / threshold * T + (0.5 if offset is None else offset)
    return torch.clamp(floor_ste(v) if ste else torch.floor(v), 0.0, T)


class _QCFSFn(torch.autograd.Function):
    """Fused QCFS with a straight-through floor (saves its input and output)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, th: torch.Tensor, levels: int) -> torch.Tensor:  # type: ignore[override]
        y = spike_count(x, th, levels).mul_(th / levels)
        ctx.save_for_backward(x, th, y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, th, y = ctx.saved_tensors
        inside = (x >= 0).logical_and_(x <= th)
        gx = g * inside
        gth = None
        if ctx.needs_input_grad[1]:
            # y = q(r) * th, r = x / th, dq/dr = 1 inside (STE): dy/dth = (y - x * inside) / th
            if th.dim() == 0:
                gth = (torch.dot(g.reshape(-1), y.reshape(-1))
                       - torch.dot(gx.reshape(-1), x.reshape(-1))) / th
            else:
                gth = ((g * y - gx * x).sum_to_size(th.shape)) / th
        return (gx if ctx.needs_input_grad[0] else None), gth, None


def qcfs(x: torch.Tensor, threshold: torch.Tensor | float, levels: int) -> torch.Tensor:
    """Functional QCFS: ``theta/L * clip(floor(x L / theta + 1/2), 0, L)``.

    Gradients: straight-through floor, so ``d/dx = 1`` for ``0 <= x <= theta`` (else 0) and
    ``d/dtheta = (a(x) - x * 1[0 <= x <= theta]) / theta``.
    Shapes: any; ``threshold`` a scalar (or broadcastable tensor) > 0.
    """
    if not isinstance(threshold, torch.Tensor):
        threshold = torch.tensor(float(threshold), dtype=x.dtype, device=x.device)
    return _QCFSFn.apply(x, threshold, int(levels))


@register_configurable
class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation with a learnable per-layer threshold.

    Args:
        levels: quantization levels ``L`` >= 1 (convert with ``T == L`` for zero error).
        threshold: initial threshold ``theta`` > 0 (the activation saturates at ``theta``).
        learn_threshold: make ``theta`` an ``nn.Parameter`` (default) or a fixed buffer.
        cap: an upper bound on the threshold in use (``None``: none), e.g. ``6.0`` where a
            ReLU6 was replaced, so the activation keeps its clip however ``theta`` learns.

    Shapes: ``[B, ...] -> [B, ...]`` (elementwise). Values lie in ``{0, theta/L, ..., theta}``.
    Used as a model-builder argument, each layer gets its own copy (see
    :meth:`clone`), and it is recorded in checkpoints through :meth:`to_config`.
    """

    def __init__(self, levels: int = 4, threshold: float = 8.0, learn_threshold: bool = True,
                 cap: float | None = None) -> None:
        super().__init__()
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))
                                or not math.isfinite(cap) or cap <= 0):
            raise ValueError(f"QCFS cap must be a finite number > 0 or None, got {cap!r}")
        self.cap = None if cap is None else float(cap)
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
        return qcfs(x, self.effective_threshold(), self.levels)

    def effective_threshold(self) -> torch.Tensor:
        """The threshold in use: ``threshold``, at most ``cap`` (the clip of a ReLU6 that
        :func:`leansnn.conversion.to_qcfs` replaced: the output never exceeds it)."""
        th = self.threshold
        return th if self.cap is None else th.clamp(max=self.cap)

    @property
    def theta(self) -> float:
        """The threshold in use (:meth:`effective_threshold`) as a Python float."""
        return float(self.effective_threshold().detach())

    def to_config(self) -> dict:
        cfg = {"levels": self.levels, "threshold": float(self.threshold.detach()),
               "learn_threshold": self.learn_threshold}
        if self.cap is not None:
            cfg["cap"] = self.cap
        return cfg

    def clone(self) -> QCFS:
        """A fresh QCFS with the same settings and its own threshold parameter."""
        return QCFS(**self.to_config())

    def extra_repr(self) -> str:
        cap = "" if self.cap is None else f", cap={self.cap:g}"
        return f"levels={self.levels}, threshold={self.theta:g}{cap}"
