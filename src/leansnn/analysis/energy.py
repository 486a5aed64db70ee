r"""Operation counts and the usual energy estimate of an SNN, from the spikes it really emits.

For every convolution and linear layer, on every call:

* input **binary** (every non-zero value of a channel equals that channel's largest value,
  e.g. spikes 0/1 or 0/θ): synaptic operations (accumulates)
  :math:`\mathrm{SOPs} = \sum_{\text{input spikes } j} \mathrm{fanout}(j)`, where
  :math:`\mathrm{fanout}(j)` is the exact number of weights input element ``j`` is
  multiplied with: ``out_features`` for a linear layer; for a convolution
  ``C_out/groups`` times the number of output positions whose receptive field covers ``j``
  (fewer at the borders, with padding, stride and dilation). The fan-out map is computed once
  per layer and input size as the gradient of ``sum(conv(x; W = 1))`` with respect to
  ``x``, so it is exact for any padding mode, stride, dilation and group count.
* input **event counts** (non-negative whole numbers, e.g. event-camera frames with several
  events in one bin): as spikes, each event counted once: ``SOPs = sum_j x_j fanout(j)``.
* input **pooled spikes** (e.g. average-pooled spikes: integer multiples, up to 64, of a
  per-channel unit): the pooling folds into the layer's weights, so every spike in the
  pooling window costs one accumulate per target: ``SOPs = sum_j (x_j / unit) fanout(j)``
  (see :func:`spike_units`).
* input **analog** (the first layer of a directly encoded network, or any layer whose input
  is not made of spikes): dense multiply-accumulates
  :math:`\mathrm{MACs} = (\text{output elements}) \cdot (\text{fan-in})`, fan-in =
  ``C_in/groups · kernel size`` or ``in_features`` (padding taps included, the usual
  convention).

Energy :math:`E = E_\mathrm{MAC}\,\mathrm{MACs} + E_\mathrm{AC}\,\mathrm{SOPs}` with
:math:`E_\mathrm{MAC} = 4.6` pJ and :math:`E_\mathrm{AC} = 0.9` pJ (45 nm CMOS, 32-bit
float, Horowitz 2014) by default. The ANN of the same architecture does every layer once per
input with dense MACs: :math:`E_\mathrm{ANN} = E_\mathrm{MAC} \sum_l \mathrm{MACs}_l`.
Biases, batch norm (foldable into weights), pooling and neuron updates are not counted, as
is usual in this estimate.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..base.batching import Batch, check_limit, iter_batches, num_batches
from ..neuron import SpikingNeuron

__all__ = [
    "energy", "OpCounter", "fanout_map", "is_binary", "is_event_counts", "spike_units",
]

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _channel_amp(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Largest value of each channel, shaped to broadcast against ``x``."""
    dims = tuple(d for d in range(x.dim()) if d != channel_dim)
    amp = x.amax(dim=dims, keepdim=True) if dims else x
    return amp


def _constant_channels(x: torch.Tensor, channel_dim: int) -> bool:
    """True if every channel of ``x`` holds one value only (e.g. a linear layer's input of
    one sample repeated over ``T`` steps): its values then say nothing about whether the
    channel switches between 0 and a spike amplitude."""
    dims = tuple(d for d in range(x.dim()) if d != channel_dim)
    if not dims:
        return True
    return bool((x.amax(dim=dims) == x.amin(dim=dims)).all())


def is_binary(x: torch.Tensor, channel_dim: int,
              amplitudes: torch.Tensor | None = None) -> bool:
    """True if every non-zero value of ``x`` equals the largest value of its channel
    (spikes of one amplitude per channel: 0/1, 0/θ or 0/θ_c) and none is negative.

    When every channel holds a single value (no channel shows both 0 and its amplitude, as
    for the flattened input of one sample repeated over ``T`` steps), any tensor would pass
    that test; it then counts as spikes only if its non-zero values are one amplitude shared
    by all channels or each one of the known spike ``amplitudes`` (the model's neurons'),
    so the verdict does not depend on the batch size. Needs one boolean temporary the size
    of ``x``."""
    if x.numel() == 0:
        return True
    x = x.detach()
    amp = _channel_amp(x, channel_dim)
    if bool((amp < 0).any()):
        return False
    nonzero = torch.count_nonzero(x)
    amp_pos = torch.where(amp > 0, amp, torch.full_like(amp, math.nan))  # NaN never equal
    at_amp = torch.count_nonzero(x == amp_pos)
    if not bool(nonzero == at_amp):
        return False
    if int(nonzero) == 0 or not _constant_channels(x, channel_dim):
        return True
    values = amp[amp > 0]
    if bool((values == values[0]).all()):
        return True
    if amplitudes is None or amplitudes.numel() == 0:
        return False
    return bool(torch.isin(values, amplitudes.to(values.device, values.dtype)).all())


def is_event_counts(x: torch.Tensor) -> bool:
    """True if ``x`` holds non-negative whole numbers (event counts per bin, e.g. event-camera
    frames): each unit is one input event, i.e. one synaptic operation per target."""
    x = x.detach()
    return bool((x >= 0).all()) and bool((x == torch.round(x)).all())


MAX_MULTIPLICITY = 64


def spike_units(x: torch.Tensor, channel_dim: int, amplitudes: torch.Tensor | None = None
                ) -> tuple[str, torch.Tensor | None]:
    """Classify a layer input; return ``(kind, unit)`` with ``unit`` the value of one spike
    per channel (broadcastable against ``x``), or ``None`` for analog input.

    * ``"spikes"``: binary per channel (:func:`is_binary`), unit = the channel's amplitude;
    * ``"events"``: non-negative whole numbers (event counts), unit = 1;
    * ``"pooled"``: non-negative integer multiples, at most ``MAX_MULTIPLICITY`` = 64, of the
      channel's smallest positive value, e.g. average-pooled spikes (0, 1/4, ..., 1 after
      2x2 pooling): unit = that smallest value, so ``x / unit`` counts the spikes in the
      pooling window. Pooling folds into the next layer's weights, so each of those spikes
      costs one accumulate per target;
    * ``"analog"``: anything else (images, currents): dense MACs.

    ``amplitudes``: the spike amplitudes of the model's neurons (see :func:`is_binary`). A
    tensor whose every channel holds one value (one sample repeated over ``T``) is not
    tested for per-channel units: any such tensor would pass.
    """
    x = x.detach()
    if is_binary(x, channel_dim, amplitudes):
        return "spikes", _channel_amp(x, channel_dim)
    if bool((x < 0).any()):
        return "analog", None
    if bool((x == torch.round(x)).all()):
        return "events", torch.ones((), dtype=x.dtype, device=x.device)
    pos = torch.where(x > 0, x, torch.full((), math.inf, dtype=x.dtype, device=x.device))
    dims = tuple(d for d in range(x.dim()) if d != channel_dim)
    # one unit for the whole tensor (a window somewhere holding a single spike), else one
    # per channel (per-channel amplitudes)
    per_channel = pos.amin(dim=dims, keepdim=True) if dims and not _constant_channels(
        x, channel_dim) else None
    for unit in (pos.amin(), per_channel):
        if unit is None:
            continue
        unit = torch.where(torch.isfinite(unit), unit, torch.ones_like(unit))
        q = x / unit
        if (float(q.amax()) <= MAX_MULTIPLICITY + 0.5
                and float((q - q.round()).abs().amax()) <= 1e-3):
            return "pooled", unit
    return "analog", None


def _spikes_per_position(x: torch.Tensor, channel_dim: int, unit: torch.Tensor
                         ) -> torch.Tensor:
    """Spikes per input element summed over the leading (batch) dims, float64:
    ``round(sum_b x / unit)`` (no boolean copy of ``x``)."""
    lead = x.reshape(-1, *x.shape[channel_dim:]) if channel_dim > 0 else x.unsqueeze(0)
    tot = lead.sum(0).double()  # float32 sums of spike values are exact to << one unit
    unit = unit.double()
    if unit.dim() > 0:
        unit = unit.reshape(-1, *unit.shape[channel_dim:])[0]
    return torch.where(unit > 0, tot / unit.clamp_min(1e-30), torch.zeros_like(tot)).round()


@torch.enable_grad()
def fanout_map(conv: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Exact fan-out of every input element of ``conv`` for inputs of shape
    ``[C_in, *spatial]``: the number of weights it is multiplied with (``[C_in, *spatial]``,
    float64). Computed as ``d/dx sum(conv(x; W = 1, no bias))``."""
    x = torch.zeros(1, *in_shape, dtype=torch.float64, requires_grad=True)
    w = torch.ones(conv.weight.shape, dtype=torch.float64)
    y = conv._conv_forward(x, w, None)
    (g,) = torch.autograd.grad(y.sum(), x)
    return g[0]


class _Counter:
    """Per-layer SOP/MAC accumulator (forward hook)."""

    def __init__(self, name: str, module: nn.Module,
                 amplitudes: torch.Tensor | None = None) -> None:
        self.name, self.module = name, module
        self.amplitudes = amplitudes  # spike amplitudes of the model's neurons
        self.kind = type(module).__name__
        self.sops = 0.0
        self.macs = 0.0
        self.ann_macs: float | None = None  # dense MACs of one sample, one pass
        self.spike_calls = self.analog_calls = 0
        self.kinds: set[str] = set()
        self.input_spikes = 0.0
        self.input_elems = 0.0
        self._fanout: dict[tuple, torch.Tensor] = {}

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0].detach()
        m = self.module
        if isinstance(m, nn.Linear):
            if x.dim() == 1:  # unbatched vector
                x = x.unsqueeze(0)
            rows = x.numel() // m.in_features
            fan_in, per_row_out = m.in_features, m.out_features
            cd = x.dim() - 1
        else:
            spatial = m.weight.dim() - 2
            if x.dim() == spatial + 1:  # unbatched conv input
                x = x.unsqueeze(0)
            rows = x.shape[0]
            fan_in = m.weight[0].numel()
            per_row_out = output.numel() // max(rows, 1)
            cd = 1
        if self.ann_macs is None:
            self.ann_macs = float(per_row_out * fan_in)
        kind, unit = spike_units(x, cd, self.amplitudes)
        if unit is not None:
            self.spike_calls += 1
            self.kinds.add(kind)
            self.input_elems += x.numel()
            if isinstance(m, nn.Linear):
                per_pos = _spikes_per_position(x, cd, unit)  # [in_features]
                n_spikes = float(per_pos.sum())
                self.sops += n_spikes * m.out_features
            else:
                key = tuple(x.shape[1:])
                if key not in self._fanout:
                    self._fanout[key] = fanout_map(m, key).to(x.device)
                per_pos = _spikes_per_position(x, 1, unit)  # [C_in, *spatial] per element
                n_spikes = float(per_pos.sum())
                self.sops += float((per_pos * self._fanout[key]).sum())
            self.input_spikes += n_spikes
        else:
            self.analog_calls += 1
            self.macs += float(rows) * per_row_out * fan_in

    def result(self, n: int, e_mac: float, e_ac: float) -> dict:
        if self.spike_calls and self.analog_calls:
            kind = "mixed"
        elif self.spike_calls:
            kind = "+".join(sorted(self.kinds))
        elif self.analog_calls:
            kind = "analog"
        else:
            kind = "unused"
        sops, macs = self.sops / n, self.macs / n
        ann = self.ann_macs or 0.0
        return {
            "type": self.kind,
            "input": kind,
            "input_spike_rate": (self.input_spikes / self.input_elems
                                 if self.input_elems else None),
            "sops": sops,
            "macs": macs,
            "energy_pj": e_mac * macs + e_ac * sops,
            "ann_macs": ann,
            "ann_energy_pj": e_mac * ann,
        }


def _spike_amplitudes(model: nn.Module) -> torch.Tensor:
    """Every spike amplitude of ``model``'s neurons (``spike_amplitude`` of the neuron
    protocol), flattened (float64)."""
    amps = []
    for m in model.modules():
        if isinstance(m, SpikingNeuron):
            try:
                a = m.spike_amplitude
            except (AttributeError, RuntimeError, TypeError):
                continue
            amps.append(torch.as_tensor(a).detach().reshape(-1).double().cpu())
    return torch.cat(amps) if amps else torch.zeros(0, dtype=torch.float64)


def _asa_type() -> type | None:
    try:
        from ..attention import ASA
    except ImportError:  # pragma: no cover - attention module absent
        return None
    return ASA


class _ASACounter(_Counter):
    """ASA (``leansnn.attention.ASA``) computes its FC and convolutions functionally, on
    analog values: per call on ``[T, B, C, H, W]`` it costs ``B·C·Σ(in·out)`` MACs for the
    temporal FC and ``2 · B·H·W · 2·3·3`` for its two spatial-attention convolutions
    (pooling, sigmoid, masking and the element-wise products are not counted). The ANN of
    the same architecture has no time axis and no ASA: ``ann_macs = 0``."""

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        _, B, C, H, W = x.shape
        fc = sum(m.weight.numel() for m in module.fc.modules() if isinstance(m, nn.Linear))
        conv = module.conv_important.weight.numel() + module.conv_sub.weight.numel()
        self.analog_calls += 1
        self.macs += float(B * C * fc + B * H * W * conv)
        self.ann_macs = 0.0


class OpCounter:
    """Context manager counting SOPs and MACs of every conv/linear layer of ``model`` on the
    forward passes run inside it (see the module docstring for the rules).

    Call :meth:`add_inputs` with the number of inputs of each batch, then :meth:`result`.
    A converted network (``model.engine``) is switched to its explicit simulation while
    counting, so that layers see the real spike trains, not the fast path's time means.
    """

    def __init__(self, model: nn.Module, e_mac: float = 4.6, e_ac: float = 0.9) -> None:
        for nm, v in (("e_mac", e_mac), ("e_ac", e_ac)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{nm} must be a finite number >= 0 (pJ), got {v!r}")
        self.model, self.e_mac, self.e_ac = model, float(e_mac), float(e_ac)
        amps = _spike_amplitudes(model)
        asa = _asa_type()
        inside = {id(sub) for m in model.modules() if asa is not None and isinstance(m, asa)
                  for sub in m.modules() if sub is not m}
        self.counters = [
            _ASACounter(name, m) if asa is not None and isinstance(m, asa)
            else _Counter(name or "<model>", m, amps)
            for name, m in model.named_modules()
            if (isinstance(m, _COUNTED) and id(m) not in inside)
            or (asa is not None and isinstance(m, asa))
        ]
        if not self.counters:
            raise ValueError(
                f"{type(model).__name__} has no Conv1d/2d/3d or Linear layer to count")
        self.inputs = 0
        self._handles: list = []
        self._engine = None
        self._neurons = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
        self._seen_batch: int | None = None  # batch dim the neurons saw since add_batch

    def _observe(self, module: nn.Module, spikes: torch.Tensor, potential) -> None:
        if self._seen_batch is None and spikes.dim() >= 2:
            self._seen_batch = int(spikes.shape[1])  # spikes are [T, B, ...]

    def __enter__(self) -> OpCounter:
        self._handles = [c.module.register_forward_hook(c.hook) for c in self.counters]
        self._handles += [m.add_observer(self._observe, potential=False)
                          for m in self._neurons]
        self._seen_batch = None
        eng = getattr(self.model, "engine", None)
        if isinstance(eng, str) and eng in ("auto", "fast"):
            self._engine = eng
            self.model.engine = "simulate"
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._engine is not None:
            self.model.engine = self._engine
            self._engine = None

    def add_inputs(self, n: int) -> None:
        """Record that the last forward pass(es) processed ``n`` more inputs."""
        self.inputs += int(n)
        self._seen_batch = None

    def add_batch(self, batch: Batch) -> None:
        """Record the inputs of ``batch`` after the model ran on it: its labels' count, or
        for an unlabelled batch the batch dim ``B`` its spiking layers saw (``[T, B, ...]``),
        which a time-major input ``[T, B, ...]`` does not show in its first dim; the first
        dim when the model has no spiking layer."""
        n = batch.size if batch.y is not None or self._seen_batch is None else self._seen_batch
        self.add_inputs(n)

    def result(self) -> dict:
        """Counts per input (mean over the inputs recorded); see :func:`energy`."""
        n = self.inputs
        if n == 0:
            raise ValueError("energy: no inputs were counted (the data yielded nothing?)")
        e_mac, e_ac = self.e_mac, self.e_ac
        layers = {c.name: c.result(n, e_mac, e_ac) for c in self.counters}
        sops = sum(v["sops"] for v in layers.values())
        macs = sum(v["macs"] for v in layers.values())
        ann = sum(v["ann_macs"] for v in layers.values())
        e = e_mac * macs + e_ac * sops
        return {
            "sops": sops,
            "macs": macs,
            "energy_pj": e,
            "ann_macs": ann,
            "ann_energy_pj": e_mac * ann,
            "ratio_to_ann": e / (e_mac * ann) if ann else None,
            "inputs": n,
            "e_mac": e_mac,
            "e_ac": e_ac,
            "layers": layers,
        }


@torch.no_grad()
def energy(
    model: nn.Module,
    data: Any,
    e_mac: float = 4.6,
    e_ac: float = 0.9,
    max_batches: int | None = None,
    *,
    max_samples: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict:
    """Synaptic operations, MACs and energy per input of ``model`` over ``data``.

    ``data``: anything :func:`leansnn.base.batching.iter_batches` reads (a tensor of inputs
    ``[N, ...]``, an ``(inputs, labels)`` pair, a ``Dataset``, a ``DataLoader``, an iterable
    of batches), read up to ``max_batches`` batches / ``max_samples`` samples; inputs are
    counted as the labels of a batch, or the batch dim ``B`` of an unlabelled one (dim 1 of
    a time-major ``[T, B, ...]`` input: :func:`leansnn.base.batching.input_is_static`).
    ``e_mac``, ``e_ac``: energy per multiply-accumulate and per accumulate, in pJ.
    Counting rules and formulas are in the module docstring; the model runs in eval mode.

    Returns ``{"sops", "macs", "energy_pj", "ann_macs", "ann_energy_pj", "ratio_to_ann",
    "inputs", "e_mac", "e_ac", "layers": {qualified name: {"input": "spikes" | "analog" |
    "mixed", "sops", "macs", "energy_pj", "ann_macs", "input_spike_rate" (spikes per input
    element and step; for pooled inputs the spikes in the pooling window), ...}}}`` -- every
    count per input
    (mean over the inputs seen), energies in pJ per input.
    """
    limits = {"max_batches": check_limit(max_batches, "max_batches"),
              "max_samples": check_limit(max_samples, "max_samples")}
    counter = OpCounter(model, e_mac, e_ac)
    was_training = model.training
    model.eval()
    try:
        with counter:
            for b in tqdm(iter_batches(data, batch_size, **limits, model=model), desc="energy",
                          total=num_batches(data, batch_size, **limits), leave=False,
                          disable=not progress):
                model(b.x.to(device))
                counter.add_batch(b)
    finally:
        model.train(was_training)
    return counter.result()
