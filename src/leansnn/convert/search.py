"""Threshold scale search: per channel, the threshold that quantizes best at ``T`` steps.

A recorded threshold (the channel's maximum activation) wastes the few levels of a coarse
``T`` on rare large activations. :func:`search_thresholds` tries ``alpha * theta_c`` for
``alpha`` in ``{1, 0.95, ..., 0.25}`` and keeps, per channel, the one whose DA-QCFS output is
closest (squared error) to the reference activation. The reference itself stays clipped at
the recorded threshold.
"""

from __future__ import annotations

import torch

from ..activations import spike_count
from .stats import count_moments, reduce_dims

__all__ = ["ALPHAS", "search_thresholds", "candidate_error"]

ALPHAS = tuple(1.0 - 0.05 * i for i in range(16))
"""The threshold scales tried, largest first (a tie keeps the larger threshold)."""


def candidate_error(zs: list[torch.Tensor], rs: list[torch.Tensor], t: torch.Tensor,
                    shift: torch.Tensor, T: int, amplitude: str,
                    sums: torch.Tensor | None) -> torch.Tensor:
    """Per-channel ``sum((amp n / T - a)^2)`` for the quantiser ``(t, shift)``; ``amp`` is
    ``t`` (``"threshold"``) or the least-squares amplitude (``"ls"``; ``sums`` = per-channel
    ``sum a^2``, for the closed-form error)."""
    off = shift / t
    if amplitude == "threshold":
        err = None
        for z, a in zip(zs, rs, strict=True):
            e = (spike_count(z, t, T, off) * (t / T) - a).square_().sum(
                dim=reduce_dims(z), dtype=torch.float64)
            err = e if err is None else err + e
        return err.reshape(t.shape)
    snn, sna = count_moments([spike_count(z, t, T, off) for z in zs], rs)
    g = torch.where(snn > 0, sna / snn.clamp_min(1e-30), t.reshape(-1).double() / T)
    return (g * g * snn - 2 * g * sna + sums).reshape(t.shape)


def search_thresholds(zd: list[torch.Tensor], a_ref: list[torch.Tensor], th: torch.Tensor,
                      psi: torch.Tensor, T: int, images: int | None,
                      amplitude: str = "threshold") -> torch.Tensor:
    """Per channel, the threshold ``alpha * th`` minimising ``E[(DA_T(z_d) - a_ref)^2]`` on
    the first ``images`` samples of the chunks (all if ``None``).

    ``zd``: the DA network's pre-activations; ``a_ref``: the reference outputs; ``psi``: the
    input-mean shift the candidates are scored with. ``amplitude``: the spike amplitude of
    each candidate, ``"threshold"`` (the candidate threshold itself) or ``"ls"`` (its
    least-squares amplitude, as the final ``amplitude="ls"`` fit uses).
    """
    zs, rs, n = [], [], 0
    for z, a in zip(zd, a_ref, strict=True):
        zs.append(z)
        rs.append(a)
        n += z.shape[0]
        if images is not None and n >= images:
            break
    sums = None
    if amplitude != "threshold":
        sums = sum(a.square().sum(dim=reduce_dims(a), dtype=torch.float64) for a in rs)
    best_e, best = None, th
    for alpha in ALPHAS:
        t = th * alpha
        e = candidate_error(zs, rs, t, t / 2 + T * psi, T, amplitude, sums)
        if best_e is None:
            best_e, best = e, t
        else:
            better = e < best_e
            best_e = torch.where(better, e, best_e)
            best = torch.where(better, t, best)
    return best
