"""Evaluating converted networks: accuracy after every time step, firing rate, speed."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..neuron import SpikingNeuron
from ..train import _num_batches, iterate

__all__ = ["accuracy_per_step", "evaluate_snn", "FiringCounter"]


class FiringCounter:
    """Counts the spikes (in {0, 1} per step) of every spiking neuron through observers.

    ``rate`` = all spikes / all neuron-steps seen (the mean firing rate). Context manager.
    Works for every engine (the fast path rebuilds spike trains while observed).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model, self.handles = model, []
        self.spikes, self.slots = 0.0, 0

    def _obs(self, module, spikes, potential) -> None:
        self.spikes += float(spikes.sum())
        self.slots += spikes.numel()

    def __enter__(self) -> FiringCounter:
        for m in self.model.modules():
            if isinstance(m, SpikingNeuron):
                self.handles.append(m.add_observer(self._obs))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    @property
    def rate(self) -> float:
        return self.spikes / self.slots if self.slots else float("nan")


@torch.no_grad()
def evaluate_snn(snn: nn.Module, data: Any, batch_size: int = 256, device: str = "cpu",
                 progress: bool = False, firing_rate: bool = True, engine: str | None = None,
                 desc: str = "eval", firing_images: int | None = None) -> dict:
    """Accuracy after each step, firing rate and time per image of an SNN returning
    ``[T, B, K]``.

    Returns ``{"accuracy_per_step": [acc after 1..T steps] (fractions), "accuracy": final,
    "firing_rate": spikes per neuron per step (nan if not measured), "seconds_per_image":
    forward time per image (measured without observers), "n": images}``. The firing rate
    is counted in a second pass with observers, over the first ``firing_images`` images
    (default: all).
    """
    was = snn.training
    snn.eval()
    correct: torch.Tensor | None = None
    n, seconds = 0, 0.0
    kw = {} if engine is None else {"engine": engine}
    for x, y in tqdm(iterate(data, batch_size), total=_num_batches(data, batch_size),
                     desc=desc, leave=False, disable=not progress):
        x, y = x.to(device), y.to(device)
        t0 = time.perf_counter()
        out = snn(x, **kw)
        seconds += time.perf_counter() - t0
        if out.dim() != 3:
            raise ValueError(f"expected an SNN output [T, B, K], got shape {tuple(out.shape)}")
        cum = out.cumsum(0)  # argmax of the cumulative sum == argmax of the running mean
        hit = (cum.argmax(-1) == y.unsqueeze(0)).sum(1)
        correct = hit if correct is None else correct + hit
        n += int(y.numel())
    if n == 0:
        raise ValueError("evaluation data is empty")
    rate = float("nan")
    if firing_rate:
        seen = 0
        with FiringCounter(snn) as fc:
            for x, _ in iterate(data, batch_size):
                if firing_images is not None and seen >= firing_images:
                    break
                if firing_images is not None:
                    x = x[: firing_images - seen]
                seen += int(x.shape[0])
                snn(x.to(device), **kw)
        rate = fc.rate
    snn.train(was)
    acc = [float(c) / n for c in correct.tolist()]
    return {"accuracy_per_step": acc, "accuracy": acc[-1], "firing_rate": rate,
            "seconds_per_image": seconds / n, "n": n}


def accuracy_per_step(snn: nn.Module, data: Any, batch_size: int = 256, device: str = "cpu",
                      progress: bool = False) -> list[float]:
    """Accuracy (fraction) after 1, 2, ..., T steps: prediction ``y[:t].mean(0).argmax(-1)``."""
    return evaluate_snn(snn, data, batch_size, device, progress,
                        firing_rate=False)["accuracy_per_step"]
