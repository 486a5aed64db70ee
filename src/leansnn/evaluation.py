r"""One spike counter and one evaluation loop, shared by training, conversion and analysis.

**Spike counting.** :class:`SpikeCounter` attaches a spike-only observer
(:meth:`leansnn.neuron.SpikingNeuron.add_observer` with ``potential=False``) to every
spiking layer of a model, so a LIF layer does not compute its potential for it. Each layer's
:class:`LayerSpikes` folds every batch into a fixed ``[T, C]`` table of spike *events* (a
spike of any amplitude counts as one; observers receive spikes in {0, 1}), summed over the
samples and the other neuron dims: memory does not grow with the data. For one layer with
``N`` neurons per step (neuron shape ``[C, ...]``; channel = dim 2 of ``[T, B, C, ...]``)
after ``n`` samples:

* ``rate`` :math:`= \sum_{t,c} \mathrm{counts}[t, c] / (T n N)`;
* ``rate_per_step[t]`` :math:`= \sum_c \mathrm{counts}[t, c] / (n N)`;
* ``rate_per_channel[c]`` :math:`= \sum_t \mathrm{counts}[t, c] / (T n N/C)`;

and over all layers the NASFR :math:`= \sum_l \mathrm{spikes}_l / \sum_l T_l n_l N_l`
(:func:`spike_rate`). :class:`leansnn.analysis.Monitor`, :func:`evaluate` (and so
``leansnn.train.fit`` / ``evaluate``, ``leansnn.convert.evaluate_snn`` and the CLI) all read
their firing rates from these tables, so they agree to the last bit on the same model and data.

**Evaluation.** :func:`evaluate` reads data through :func:`leansnn.base.batching.iter_batches`
and returns accuracy (after every step for SNN outputs ``[T, B, K]``), firing rates and,
optionally, the forward time per input measured without observers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .base.batching import Batch, check_limit, iter_batches, num_batches
from .base.progress import progress as tqdm_progress
from .base.voting import vote
from .neuron import LIF, SpikingNeuron

__all__ = ["rate_output", "LayerSpikes", "SpikeCounter", "spike_rate", "spiking_layers",
           "evaluate", "evaluate_votes"]


def rate_output(y: torch.Tensor) -> torch.Tensor:
    """``[T, B, K]`` -> mean over T ``[B, K]`` (the SNN's prediction); ``[B, K]`` passes
    through."""
    return y.mean(0) if y.dim() == 3 else y


def spiking_layers(model: nn.Module) -> Iterator[tuple[str, SpikingNeuron]]:
    """``(qualified name, module)`` of every :class:`SpikingNeuron` of ``model`` (found by
    type); the model itself, if it is one, is named ``"<model>"``."""
    for name, m in model.named_modules():
        if isinstance(m, SpikingNeuron):
            yield name or "<model>", m


class LayerSpikes:
    """Spike events of one spiking layer: a fixed ``[T, C]`` float64 table plus the number of
    samples (see the module docstring for the rates derived from it).

    ``update(spikes)`` folds one batch ``[T, B, C, ...]`` in. Observers receive spikes in
    {0, 1} (the neuron protocol), so a plain sum counts the events; the first batch of a layer
    not promised ``binary`` (LIF/IF are) is checked, and a layer that emits other values is
    counted as ``spikes != 0`` from then on (slower, same result).
    """

    __slots__ = ("name", "counts", "samples", "T", "shape", "N", "C", "_binary")

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: torch.Tensor | None = None  # [T, C] spikes summed over samples
        self.samples = 0
        self.T, self.shape, self.N, self.C = 0, None, 0, 1
        self._binary: bool | None = None  # None: not checked yet

    def update(self, spikes: torch.Tensor, binary: bool = False) -> None:
        # the table stays an ordinary tensor when a pass runs under torch.inference_mode(),
        # so passes in and out of inference mode can be mixed
        with torch.no_grad(), torch.inference_mode(False):
            self._update(spikes, binary)

    def _update(self, spikes: torch.Tensor, binary: bool) -> None:
        s = spikes.detach()
        if s.dim() < 2:
            raise ValueError(f"{self.name}: spikes must be [T, B, ...], got {tuple(s.shape)}")
        T, B, shape = s.shape[0], s.shape[1], tuple(s.shape[2:])
        if self.counts is None:
            self.T, self.shape = T, shape
            self.N = math.prod(shape) if shape else 1
            self.C = shape[0] if shape else 1
            self.counts = torch.zeros(T, self.C, dtype=torch.float64, device=s.device)
        elif T != self.T or shape != self.shape:
            raise ValueError(
                f"layer {self.name!r} first saw spikes [T={self.T}, B, "
                f"{', '.join(map(str, self.shape))}] and now {list(s.shape)}; count one input "
                "size and number of time steps at a time (a neuron module called more than "
                "once per forward pass on different shapes: leansnn.analysis.Monitor counts "
                "each call as a layer of its own)")
        if binary and s.is_floating_point():
            self._binary = True
        elif self._binary is None:
            self._binary = s.is_floating_point() and bool(((s == 0) | (s == 1)).all())
        if not self._binary:
            s = s.ne(0).float()
        # float32 sums of 0/1 are exact (< 2**24 events per step and channel in one batch);
        # two one-dim sums are faster than one over dims (1, 3)
        self.counts += s.reshape(T, B, self.C, -1).sum(-1).sum(1)
        self.samples += B

    @property
    def spikes(self) -> float:
        return float(self.counts.sum()) if self.counts is not None else 0.0

    @property
    def slots(self) -> int:
        """Neuron-steps seen: ``T * N * samples``."""
        return self.T * self.N * self.samples

    @property
    def rate(self) -> float:
        return self.spikes / self.slots if self.slots else float("nan")

    def summary(self) -> dict:
        """``{"spikes", "samples", "T", "neurons", "rate", "rate_per_step",
        "rate_per_channel", "rate_per_step_channel"}`` (JSON-able; ``rate`` nan if unseen)."""
        if self.counts is None:
            return {"spikes": 0.0, "samples": 0, "rate": float("nan")}
        n, T, N, per_ch = self.samples, self.T, self.N, self.N // self.C
        cnt = self.counts
        return {
            "spikes": self.spikes,
            "samples": n,
            "T": T,
            "neurons": N,
            "rate": self.rate,
            "rate_per_step": (cnt.sum(1) / (n * N)).tolist(),
            "rate_per_channel": (cnt.sum(0) / (n * T * per_ch)).tolist(),
            "rate_per_step_channel": (cnt / (n * per_ch)).tolist(),
        }

    def reset(self) -> None:
        if self.counts is not None:
            self.counts.zero_()
        self.samples = 0


def spike_rate(layers: Any) -> float:
    """NASFR of some :class:`LayerSpikes`: all spikes / all neuron-steps (nan if none)."""
    layers = [v for v in layers if v.samples > 0]
    slots = sum(v.slots for v in layers)
    return sum(v.spikes for v in layers) / slots if slots else float("nan")


class SpikeCounter:
    """Counts the spike events of every spiking layer of ``model`` while active (a context
    manager; also ``attach()`` / ``detach()``).

    ``layers``: qualified name -> :class:`LayerSpikes`. ``rate`` is the NASFR over every
    forward pass seen (the classifier's spikes included), ``layer_rates()`` the rate of each
    layer, ``summary()`` per-step and per-channel rates too. ``eval_only=True`` skips passes
    made in training mode. The observers never ask for potentials.
    """

    def __init__(self, model: nn.Module, *, eval_only: bool = False) -> None:
        self.model, self.eval_only = model, eval_only
        self._modules = dict(spiking_layers(model))
        self.layers = {name: LayerSpikes(name) for name in self._modules}
        self._handles: list = []

    def _observer(self, stats: LayerSpikes, binary: bool) -> Callable:
        eval_only = self.eval_only

        def fn(module: nn.Module, spikes: torch.Tensor, potential: Any) -> None:
            if not (eval_only and module.training):
                stats.update(spikes, binary)

        return fn

    def attach(self) -> SpikeCounter:
        if self._handles:
            raise RuntimeError("this SpikeCounter is already attached")
        for name, m in self._modules.items():
            fn = self._observer(self.layers[name], isinstance(m, LIF))
            self._handles.append(m.add_observer(fn, potential=False))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> SpikeCounter:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    @property
    def spikes(self) -> float:
        return sum(v.spikes for v in self.layers.values())

    @property
    def slots(self) -> int:
        return sum(v.slots for v in self.layers.values())

    @property
    def rate(self) -> float:
        return spike_rate(self.layers.values())

    def layer_rates(self) -> dict[str, float]:
        return {k: v.rate for k, v in self.layers.items()}

    def summary(self) -> dict:
        """``{"nasfr", "layers": {name: LayerSpikes.summary()}}``."""
        return {"nasfr": self.rate, "layers": {k: v.summary() for k, v in self.layers.items()}}

    def reset(self) -> None:
        for v in self.layers.values():
            v.reset()


def _hits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct predictions ``[T]`` after 1..T steps (``[1]`` for ``[B, K]`` outputs). Step t
    predicts ``argmax`` of the cumulative sum (= of the running mean); the last step uses
    :func:`rate_output` exactly, so it equals the plain accuracy."""
    final = (rate_output(out).argmax(-1) == y).sum().view(1)
    if out.dim() != 3 or out.shape[0] == 1:
        return final
    early = (out[:-1].cumsum(0).argmax(-1) == y.unsqueeze(0)).sum(1)
    return torch.cat([early, final])


@torch.no_grad()
def _predict_pass(model: nn.Module, data: Any, *, batch_size: int, device: Any, limits: dict,
                  progress: bool, desc: str, forward_kwargs: dict, need_steps: bool,
                  on_batch: Callable[[Batch], None] | None,
                  on_output: Callable[[Batch, torch.Tensor], None] | None = None) -> dict:
    hits: torch.Tensor | None = None
    labelled = inputs = n_batches = 0
    seconds = 0.0
    steps = None
    total = num_batches(data, batch_size, **limits)
    batches = iter_batches(data, batch_size, **limits, model=model)
    for b in tqdm_progress(batches, total=total, desc=desc, leave=False, quiet=not progress):
        x = b.x.to(device)
        t0 = time.perf_counter()
        out = model(x, **forward_kwargs)
        seconds += time.perf_counter() - t0
        if on_batch is not None:
            on_batch(b)
        if on_output is not None:
            on_output(b, out)
        if not bool(torch.isfinite(out).all()):
            raise ValueError(
                f"the model's output for batch {n_batches} holds NaN or inf values (shape "
                f"{tuple(out.shape)}); no prediction can be read from it (argmax would count "
                "NaN as the top class): check the weights and inputs for NaN/inf")
        n_batches += 1
        if need_steps and out.dim() != 3:
            raise ValueError(f"expected an SNN output [T, B, K], got shape {tuple(out.shape)}")
        steps = out.shape[0] if out.dim() == 3 else None
        inputs += int(out.shape[-2]) if out.dim() >= 2 else b.size
        if b.y is not None:
            h = _hits(out, b.y.to(out.device))
            if hits is not None and hits.shape != h.shape:
                raise ValueError(f"the model returned {len(h)} steps for one batch and "
                                 f"{len(hits)} for an earlier one; evaluate one T at a time")
            hits = h if hits is None else hits + h
            labelled += int(b.y.numel())
    if inputs == 0:
        raise ValueError("evaluation data is empty")
    acc = None if hits is None else [float(c) / labelled for c in hits.tolist()]
    return {"accuracy": None if acc is None else acc[-1],
            "accuracy_per_step": acc if steps is not None and acc is not None else None,
            "n": labelled or inputs, "seconds": seconds, "inputs": inputs}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "eval",
    *,
    max_batches: int | None = None,
    max_samples: int | None = None,
    firing_rate: bool = True,
    firing_max_samples: int | None = None,
    timing: bool = False,
    forward_kwargs: dict | None = None,
    require_steps: bool = False,
    during: Sequence[contextlib.AbstractContextManager] = (),
    on_batch: Callable[[Batch], None] | None = None,
    on_output: Callable[[Batch, torch.Tensor], None] | None = None,
) -> dict:
    """Accuracy, firing rates and (optionally) speed of ``model`` on ``data`` (eval mode).

    ``data``: anything :func:`leansnn.base.batching.iter_batches` reads (a tensor of inputs,
    an ``(inputs, labels)`` pair, a ``Dataset``, a ``DataLoader``, an iterable of batches),
    read up to ``max_batches`` batches / ``max_samples`` samples. ``firing_rate``: count
    spikes with a :class:`SpikeCounter` (in the same pass; with ``timing`` or
    ``firing_max_samples`` in a second pass over the first ``firing_max_samples`` samples, so
    that the timed pass runs without observers). ``forward_kwargs`` go to every
    ``model(x, ...)`` call; ``require_steps`` demands SNN outputs ``[T, B, K]``.
    ``during``: context managers (e.g. a :class:`~leansnn.analysis.Monitor`, an operation
    counter) active during the first pass; ``on_batch(batch)`` and ``on_output(batch,
    output)`` are called after each of its forward passes.

    Returns ``{"accuracy": float or None (no labels), "accuracy_per_step": [after 1..T
    steps] or None (ANN outputs [B, K]), "firing_rate": NASFR (nan without spiking layers or
    counting), "layer_rates": {layer: rate}, "n": labelled samples (inputs if none),
    "seconds_per_image": forward seconds per input (with ``timing``)}``.
    """
    check_limit(firing_max_samples, "firing_max_samples")
    limits = {"max_batches": check_limit(max_batches, "max_batches"),
              "max_samples": check_limit(max_samples, "max_samples")}
    was_training = model.training
    model.eval()
    counter = SpikeCounter(model) if firing_rate else None
    if counter is not None and not counter.layers:
        counter = None
    one_pass = counter is not None and not timing and firing_max_samples is None
    kw = dict(batch_size=batch_size, device=device, progress=progress, desc=desc,
              forward_kwargs=forward_kwargs or {}, need_steps=require_steps,
              on_batch=on_batch, on_output=on_output)
    try:
        with contextlib.ExitStack() as stack:
            for cm in during:
                stack.enter_context(cm)
            if one_pass:
                stack.enter_context(counter)
            r = _predict_pass(model, data, limits=limits, **kw)
        if not one_pass and counter is not None:
            kw.pop("on_output")
            lim = dict(limits)
            if firing_max_samples is not None:
                lim["max_samples"] = min(firing_max_samples,
                                         lim["max_samples"] or firing_max_samples)
            with counter:
                for b in iter_batches(data, batch_size, **lim, model=model):
                    model(b.x.to(device), **kw["forward_kwargs"])
    finally:
        model.train(was_training)
    res = {
        "accuracy": r["accuracy"],
        "accuracy_per_step": r["accuracy_per_step"],
        "firing_rate": counter.rate if counter is not None else float("nan"),
        "layer_rates": counter.layer_rates() if counter is not None else {},
        "n": r["n"],
    }
    if timing:
        res["seconds_per_image"] = r["seconds"] / r["inputs"]
    return res


def _windows_view(data: Any, stride: int | None) -> Any:
    """The evaluation view of ``data``: ``data.windows(stride)`` for an event data set, or
    ``data`` itself when it already is a view (``recording``, ``num_recordings``,
    ``dataset``)."""
    if all(hasattr(data, a) for a in ("recording", "num_recordings", "dataset")):
        if stride is not None:
            raise ValueError("stride applies to a data set, not to a windows view")
        return data
    if not callable(getattr(data, "windows", None)):
        raise ValueError(f"voting needs recordings split into windows (an event data set "
                         f"with .windows(), e.g. leansnn.data.nmnist); got "
                         f"{type(data).__name__}")
    return data.windows(stride)


@torch.no_grad()
def evaluate_votes(model: nn.Module, data: Any, batch_size: int = 256,
                   device: str | torch.device = "cpu", progress: bool = False,
                   desc: str = "eval", *, how: str = "majority", stride: int | None = None,
                   **kwargs: Any) -> dict:
    """The ASA paper's test protocol: score windows of ``T`` frames covering every recording,
    then vote one prediction per recording.

    ``data``: an event data set (its ``windows(stride)`` view is used: windows of ``T``
    frames from ``0, stride, ...`` plus one ending at the last frame; without ``dt_ms`` one
    window per recording) or such a view. Every window runs through :func:`evaluate`'s loop
    (``kwargs`` go to it: ``firing_rate``, ``during``, ``on_batch``, ...; no sample limits:
    take a ``subset`` of the data set instead); a window's score is the model's ``[T, B, K]``
    output averaged over T, and :func:`leansnn.data.vote` (``how="majority"`` or
    ``"sum"``) turns the scores of a recording's windows into its prediction.

    Returns :func:`evaluate`'s dict with ``"accuracy"`` per recording (``n`` recordings),
    beside ``"window_accuracy"`` / ``"window_accuracy_per_step"`` (every window scored on its
    own), ``"windows"`` (their number) and ``"vote"`` (``how``); firing rates are over all
    windows.
    """
    if how not in ("majority", "sum"):
        raise ValueError(f"vote must be 'majority' or 'sum', got {how!r}")
    for k in ("max_batches", "max_samples", "on_output"):
        if kwargs.get(k) is not None:
            raise ValueError(f"evaluate_votes does not take {k}: every window of every "
                             "recording is scored (use a subset of the data set)")
        kwargs.pop(k, None)
    view = _windows_view(data, stride)
    scores: list[torch.Tensor] = []
    ev = evaluate(model, view, batch_size, device, progress, desc, require_steps=True,
                  on_output=lambda b, out: scores.append(rate_output(out).detach().cpu()),
                  **kwargs)
    s = torch.cat(scores).float()
    rec = torch.as_tensor(np.asarray(view.recording), dtype=torch.int64)
    if s.shape[0] != rec.shape[0]:
        raise ValueError(f"the view listed {rec.shape[0]} windows but yielded {s.shape[0]}")
    pred = vote(s, rec, view.num_recordings, how=how)
    labels = torch.as_tensor(view.dataset.labels).to(torch.int64)
    return {**ev, "accuracy": float((pred == labels).float().mean()),
            "window_accuracy": ev["accuracy"],
            "window_accuracy_per_step": ev["accuracy_per_step"],
            "accuracy_per_step": None, "n": int(labels.numel()), "windows": int(rec.numel()),
            "vote": how}
