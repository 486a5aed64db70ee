"""Evaluating converted networks: accuracy after every time step, firing rate, speed.

Thin entry points over the one evaluation loop, :func:`leansnn.evaluation.evaluate`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..evaluation import SpikeCounter, evaluate

__all__ = ["accuracy_per_step", "evaluate_snn", "FiringCounter"]

FiringCounter = SpikeCounter  # the one spike counter, under its historical name here


def evaluate_snn(snn: nn.Module, data: Any, batch_size: int = 256, device: str = "cpu",
                 progress: bool = False, firing_rate: bool = True, engine: str | None = None,
                 desc: str = "eval", *, max_batches: int | None = None,
                 max_samples: int | None = None,
                 firing_max_samples: int | None = None) -> dict:
    """Accuracy after each step, firing rate and time per image of an SNN returning
    ``[T, B, K]`` (``engine``, if given, is passed to every ``snn(x, engine=...)`` call).

    Returns ``{"accuracy_per_step": [acc after 1..T steps] (fractions), "accuracy": final,
    "firing_rate": spikes per neuron per step (nan if not measured), "layer_rates",
    "seconds_per_image": forward time per image (measured without observers), "n": images}``.
    The data is read up to ``max_batches`` / ``max_samples``; the firing rate is counted in
    a second pass with observers, over the first ``firing_max_samples`` samples (default:
    all).
    """
    return evaluate(snn, data, batch_size, device, progress, desc, max_batches=max_batches,
                    max_samples=max_samples, firing_rate=firing_rate,
                    firing_max_samples=firing_max_samples, timing=True,
                    forward_kwargs=None if engine is None else {"engine": engine},
                    require_steps=True)


def accuracy_per_step(snn: nn.Module, data: Any, batch_size: int = 256, device: str = "cpu",
                      progress: bool = False, *, max_batches: int | None = None,
                      max_samples: int | None = None) -> list[float]:
    """Accuracy (fraction) after 1, 2, ..., T steps: prediction ``y[:t].mean(0).argmax(-1)``."""
    return evaluate(snn, data, batch_size, device, progress, firing_rate=False,
                    max_batches=max_batches, max_samples=max_samples,
                    require_steps=True)["accuracy_per_step"]
