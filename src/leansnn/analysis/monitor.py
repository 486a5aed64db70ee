r"""Streaming spike and membrane-potential statistics of every spiking layer.

:class:`Monitor` attaches an observer to every :class:`~leansnn.neuron.SpikingNeuron` of a
model (found by type, never by name) and, while the user runs data through the model,
folds each batch into fixed-size accumulators: memory does not grow with the number of
samples seen. :meth:`Monitor.summary` turns the accumulators into the metrics below (a
JSON-able dict).

Notation for one spiking layer: spikes :math:`s_{t,b,i} \in \{0, 1\}` (a spike of any
amplitude counts as 1) at step :math:`t < T`, sample :math:`b` (of :math:`n` samples seen)
and neuron :math:`i` (of :math:`N` neurons per step; neuron shape ``[C, ...]``, channel
``c`` = dim 2 of the ``[T, B, C, ...]`` tensor, each feature of a linear layer is a
channel), membrane potential :math:`u_{t,b,i}` (the value compared with the threshold
:math:`\theta`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..evaluation import LayerSpikes, spike_rate, spiking_layers
from ..neuron import LIF

__all__ = ["Monitor", "MonitorConfig", "layer_threshold", "surrogate_window"]


@dataclass(frozen=True)
class MonitorConfig:
    """Settings of a :class:`Monitor`.

    bins: number of fixed histogram bins of the membrane potential.
    potential_range: ``(lo, hi)`` of the histogram in potential units, the same for every
        layer; ``None`` uses ``range_in_thresholds`` times each layer's threshold.
    range_in_thresholds: default range in units of the layer's threshold θ:
        ``(-4, 5)`` gives ``[-4θ, 5θ)``. Values outside are counted as under/overflow.
    capture: keep the full spike (and potential) tensors of the first ``capture`` samples
        for pictures (0 = none).
    potentials: record potential statistics (asks LIF/IF neurons to compute ``u``).
    potential_sample: the histograms, the fraction inside the surrogate window and (for
        neurons other than LIF/IF) the fraction above threshold are computed on at most this
        many values per step and batch: a fixed, evenly spread subset (every p-th value of
        the flattened ``[B, ...]`` step, p prime). ``None`` uses every value. The mean and std
        always use every value; LIF/IF's fraction above threshold is exact (it equals the
        firing rate, ``s = H(u - θ)``).
    """

    bins: int = 90
    potential_range: tuple[float, float] | None = None
    range_in_thresholds: tuple[float, float] = (-4.0, 5.0)
    capture: int = 0
    potentials: bool = True
    potential_sample: int | None = 65536

    def __post_init__(self) -> None:
        if not isinstance(self.bins, int) or self.bins < 1:
            raise ValueError(f"bins must be a positive int, got {self.bins!r}")
        for name in ("potential_range", "range_in_thresholds"):
            r = getattr(self, name)
            if r is None:
                continue
            if (len(r) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                       for v in r) or not r[0] < r[1]):
                raise ValueError(f"{name} must be (lo, hi) with finite lo < hi, got {r!r}")
        if self.potential_sample is not None and (
                not isinstance(self.potential_sample, int) or self.potential_sample < 1):
            raise ValueError(f"potential_sample must be a positive int or None, got "
                             f"{self.potential_sample!r}")
        if not isinstance(self.capture, int) or self.capture < 0:
            raise ValueError(f"capture must be an int >= 0, got {self.capture!r}")


def layer_threshold(module: nn.Module) -> float | torch.Tensor | None:
    """The firing threshold of a spiking layer: a float, a per-channel tensor ``[C]``, or
    ``None`` when the layer exposes none. Reads the neuron protocol's ``threshold``
    (:class:`~leansnn.neuron.SpikingNeuron`): a tensor that varies along the channel only
    (``[C]``, ``[C, 1, 1]``, ``[1, C, 1, 1]``) becomes ``[C]``; one that also varies within a
    channel (per neuron) is summarised by its per-channel mean (dim 0 of the neuron shape)."""
    th = getattr(module, "threshold", None)
    if isinstance(th, torch.Tensor):
        th = th.detach()
        if th.numel() == 1:
            return float(th)
        dims = list(th.shape)
        while dims and dims[0] == 1:  # batch-broadcast dims
            dims.pop(0)
        th = th.reshape(dims)
        if th.dim() > 1:
            th = th.flatten(1).mean(1)
        return th.flatten().float()
    if isinstance(th, (int, float)) and not isinstance(th, bool):
        return float(th)
    return None


def surrogate_window(module: nn.Module) -> float | None:
    """Half-width ``a`` of the surrogate-gradient window of a layer, in potential units.

    The window is ``|u - θ| < a``: where the surrogate gradient is non-negligible, i.e. where
    a neuron can learn. Surrogates with a compact support (``Rectangular``, ``Triangle``)
    use their ``a``; smooth ones (``ATan``, ``Sigmoid``) the half-width where the derivative
    is at least 10 % of its peak. ``None`` if the layer has no surrogate.
    """
    sg = getattr(module, "surrogate", None)
    if sg is None or not hasattr(sg, "derivative"):
        return None
    a = getattr(sg, "a", None)
    if isinstance(a, (int, float)):
        return float(a)
    v = torch.linspace(0.0, 50.0, 200001, dtype=torch.float64)
    d = sg.derivative(v)
    peak = float(d[0])
    if not peak > 0:
        return None
    inside = (d >= 0.1 * peak).nonzero()
    return float(v[int(inside[-1])])


class _LayerStats:
    """Fixed-size accumulators of one spiking layer (created at its first batch)."""

    def __init__(self, name: str, module: nn.Module, cfg: MonitorConfig) -> None:
        self.name, self.cfg = name, cfg
        self.kind = type(module).__name__
        # spikes per (step, channel): the counter every firing rate of leansnn is read from
        self.events = LayerSpikes(name)
        self.threshold = layer_threshold(module)
        raw = getattr(module, "threshold", None)
        self._th_raw = raw.detach().clone() if isinstance(raw, torch.Tensor) else None
        self.window = surrogate_window(module)
        # LIF/IF (and subclasses) emit exact 0./1. spikes with s = H(u - θ)
        self.unit_spikes = isinstance(module, LIF)
        self.shape: tuple[int, ...] | None = None
        self.T = 0
        self.samples = 0
        self.calls = 0
        self.captured_s: torch.Tensor | None = None  # also for a layer that never ran
        self.captured_u: torch.Tensor | None = None

    # -- allocation at the first batch -------------------------------------------------------
    def _init(self, s: torch.Tensor, u: torch.Tensor | None) -> None:
        T, shape = s.shape[0], tuple(s.shape[2:])
        self.T, self.shape = T, shape
        self.N = math.prod(shape) if shape else 1
        self.C = shape[0] if shape else 1
        dev = s.device
        f64 = dict(dtype=torch.float64, device=dev)
        self.neuron_counts = torch.zeros(self.N, **f64)  # spikes per neuron over t and b
        self.silent_in = torch.zeros((), **f64)  # (sample, neuron) pairs with no spike in T
        self.always_in = torch.zeros((), **f64)  # (sample, neuron) pairs spiking at every step
        self.joint = torch.zeros(max(T - 1, 0), **f64)  # sum_b,i s[t] s[t-1]
        self.prev_spikes = torch.zeros(max(T - 1, 0), **f64)  # sum_b,i s[t-1], t >= 1
        self.tcos_sum = torch.zeros(max(T - 1, 0), **f64)
        self.tcos_n = torch.zeros(max(T - 1, 0), **f64)
        self.spatial = len(shape) >= 2
        self.scos_sum = torch.zeros(T, **f64)
        self.scos_n = torch.zeros(T, **f64)
        self.has_u = u is not None and self.cfg.potentials
        if self.has_u:
            if self.cfg.potential_range is not None:
                lo, hi = self.cfg.potential_range
            else:
                th = self.threshold
                ref = float(th.max()) if isinstance(th, torch.Tensor) else (th or 1.0)
                lo, hi = (k * ref for k in self.cfg.range_in_thresholds)
            self.lo, self.hi = float(lo), float(hi)
            self.hist = torch.zeros(T, self.cfg.bins, **f64)
            self.under = torch.zeros(T, **f64)
            self.over = torch.zeros(T, **f64)
            self.u_mean = torch.zeros(T, **f64)  # running mean and sum of squared deviations
            self.u_m2 = torch.zeros(T, **f64)  # per step (merged batch by batch, Chan et al.)
            self.u_above = torch.zeros(T, **f64)
            self.u_window = torch.zeros(T, **f64)
            self.u_seen = torch.zeros(T, **f64)  # values in the histogram / window counts
            self.u_n = 0
            self.th_neuron = self._neuron_threshold()

    def _neuron_threshold(self) -> torch.Tensor | None:
        """The threshold of every neuron ``[N]`` (a tensor threshold per channel or per
        neuron), compared with the potentials; ``None`` for a scalar threshold."""
        th = self.threshold
        if not isinstance(th, torch.Tensor):
            return None
        raw = self._th_raw
        if raw is not None and raw.numel() > 1:
            try:
                return torch.broadcast_to(raw, (1, *self.shape)).reshape(self.N).float()
            except RuntimeError:  # a shape that does not broadcast: per-channel summary
                pass
        return th.float().repeat_interleave(self.N // self.C)

    # -- one batch ---------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, s: torch.Tensor, u: torch.Tensor | None) -> None:
        if s.dim() < 2:
            raise ValueError(f"{self.name}: spikes must be [T, B, ...], got {tuple(s.shape)}")
        if self.shape is None:
            self._init(s, u)
        elif s.shape[0] != self.T or tuple(s.shape[2:]) != self.shape:
            raise ValueError(
                f"Monitor: layer {self.name!r} first saw spikes [T={self.T}, B, "
                f"{', '.join(map(str, self.shape))}] and now {list(s.shape)}; use one Monitor "
                "per input size and number of time steps"
            )
        s = s.detach()
        T, B, N = self.T, s.shape[1], self.N
        self.events.update(s, self.unit_spikes)
        self.samples += B
        self.calls += 1
        self._capture(s, u)
        cnt_in = torch.zeros(B, N, dtype=torch.float32, device=s.device)
        prev = prev_n = None
        step_spikes = []
        C = self.C
        for t in range(T):
            st = s[t].reshape(B, N)
            # any spike amplitude counts as one spike; LIF/IF emit exact 0./1. floats already
            bt = st if self.unit_spikes and st.dtype == torch.float32 else st.ne(0).float()
            cnt_in += bt
            X = bt.view(B, C, -1)
            nc = X.sum(-1) if X.shape[-1] > 1 else X.view(B, C)  # [B, C] spikes per channel
            n_t = nc.sum(1)  # [B] spikes per sample at step t
            step_spikes.append(n_t.sum())
            if prev is not None:
                dot = torch.bmm(bt.unsqueeze(1), prev.unsqueeze(2)).view(B)
                self.joint[t - 1] += dot.sum()
                self.prev_spikes[t - 1] += prev_n.sum()
                ok = (n_t > 0) & (prev_n > 0)
                cos = dot / (n_t * prev_n).clamp_min(1).sqrt()
                self.tcos_sum[t - 1] += cos[ok].sum()
                self.tcos_n[t - 1] += ok.sum()
            if self.spatial:
                inv = nc.clamp_min(1).rsqrt() * (nc > 0)
                # sum_{c != c'} cos(x_c, x_c') = ||sum_c x_c / |x_c| ||^2 - k,  k = #non-empty
                z = torch.bmm(inv.unsqueeze(1), X).view(B, -1)
                k = (nc > 0).sum(1).double()
                pair_sum = z.double().square().sum(1) - k
                pairs = k * (k - 1)
                ok = pairs > 0
                self.scos_sum[t] += (pair_sum[ok] / pairs[ok]).sum()
                self.scos_n[t] += ok.sum()
            prev, prev_n = bt, n_t
        self.neuron_counts += cnt_in.sum(0)
        self.silent_in += torch.count_nonzero(cnt_in == 0)
        self.always_in += torch.count_nonzero(cnt_in == T)
        if self.has_u and u is not None:
            self._potential(u.detach(), step_spikes)

    def _potential(self, u: torch.Tensor, step_spikes: list) -> None:
        th = self.threshold if self.threshold is not None else math.inf
        a = self.window
        bins = self.cfg.bins
        w = (self.hi - self.lo) / bins
        m = u[0].numel()
        n_before = self.u_n
        self.u_n += m
        cap = self.cfg.potential_sample
        stride = 1 if cap is None or m <= cap else _prime_at_least(math.ceil(m / cap))
        th_n = self.th_neuron
        if th_n is not None:  # per channel or per neuron: each value against its own θ
            th_n = th_n.to(u.device, u.dtype)
            th_s = (th_n[torch.arange(0, m, stride, device=u.device) % self.N] if stride > 1
                    else th_n.view(1, *self.shape))
        for t in range(self.T):
            ut = u[t]
            if ut.dtype not in (torch.float32, torch.float64):
                ut = ut.float()
            self._moments(t, ut, n_before, m)
            v = ut.reshape(-1)[::stride].contiguous() if stride > 1 else ut
            tb = th if th_n is None else th_s
            self.u_seen[t] += v.numel()
            if self.unit_spikes:
                self.u_above[t] += step_spikes[t]  # LIF/IF: s = H(u - θ) by definition
            else:
                self.u_above[t] += torch.count_nonzero(v >= tb) * (ut.numel() / v.numel())
            if a is not None:
                self.u_window[t] += torch.count_nonzero((v - tb).abs_() < a)
            # one histc with an under- and an overflow bin: clamp outliers into them
            h = torch.histc(v.clamp(self.lo - w / 2, self.hi + w / 2), bins + 2,
                            self.lo - w, self.hi + w).double()
            self.hist[t] += h[1:-1]
            self.under[t] += h[0]
            self.over[t] += h[-1]

    def _moments(self, t: int, ut: torch.Tensor, n_a: int, n_b: int) -> None:
        """Fold the mean and variance of step ``t`` of one batch into the running ones:
        ``E[u^2] - E[u]^2`` in float32 loses every digit of a small spread about a large
        mean; two-pass batch moments merged by Chan's rule keep them."""
        var_b, mean_b = torch.var_mean(ut, correction=0)
        delta = mean_b.double() - self.u_mean[t]
        n = n_a + n_b
        self.u_mean[t] += delta * (n_b / n)
        self.u_m2[t] += var_b.double() * n_b + delta.square() * (n_a * n_b / n)

    def _capture(self, s: torch.Tensor, u: torch.Tensor | None) -> None:
        have = 0 if self.captured_s is None else self.captured_s.shape[1]
        k = min(self.cfg.capture - have, s.shape[1])
        if k <= 0:
            return
        cs = s[:, :k].ne(0).cpu()
        self.captured_s = cs if self.captured_s is None else torch.cat([self.captured_s, cs], 1)
        if u is not None:
            cu = u[:, :k].detach().float().cpu()
            self.captured_u = cu if self.captured_u is None else torch.cat([self.captured_u, cu], 1)

    # -- metrics -----------------------------------------------------------------------------
    def summary(self) -> dict:
        if self.shape is None:
            return {"type": self.kind, "samples": 0, "rate": float("nan")}
        T, N, n = self.T, self.N, self.samples
        ev = self.events.summary()
        per_neuron = self.neuron_counts  # [N]
        prev_spikes = self.prev_spikes
        p_step = _safe_div(self.joint, prev_spikes)  # None: no spike at t-1 to re-fire
        th = self.threshold
        out = {
            "type": self.kind,
            "shape": list(self.shape),
            "neurons": N,
            "T": T,
            "samples": n,
            "threshold": th.tolist() if isinstance(th, torch.Tensor) else th,
            "spikes": ev["spikes"],
            "rate": ev["rate"],
            "rate_per_step": ev["rate_per_step"],
            "rate_per_channel": ev["rate_per_channel"],
            "rate_per_step_channel": ev["rate_per_step_channel"],
            "silent_fraction": float((per_neuron == 0).sum()) / N,
            "always_firing_fraction": float((per_neuron == n * T).sum()) / N,
            "silent_fraction_per_input": float(self.silent_in) / (n * N),
            "always_firing_fraction_per_input": float(self.always_in) / (n * N),
            "temporal": {
                "p_refire": (float(self.joint.sum() / prev_spikes.sum()) if T > 1
                             and float(prev_spikes.sum()) > 0 else None),
                "p_refire_per_step": p_step,
                "consecutive_cosine": (float(self.tcos_sum.sum() / self.tcos_n.sum())
                                       if float(self.tcos_n.sum()) > 0 else None),
                "consecutive_cosine_per_step": _safe_div(self.tcos_sum, self.tcos_n),
            },
            "spatial": {
                "channel_cosine": (float(self.scos_sum.sum() / self.scos_n.sum())
                                   if self.spatial and float(self.scos_n.sum()) > 0 else None),
                "channel_cosine_per_step": (_safe_div(self.scos_sum, self.scos_n)
                                            if self.spatial else None),
            },
            "potential": self._potential_summary(),
        }
        return out

    def _potential_summary(self) -> dict | None:
        if not self.has_u or self.u_n == 0:
            return None
        m = self.u_n  # values per step
        mean_t = self.u_mean
        var_t = (self.u_m2 / m).clamp_min(0)
        total_n = m * self.T
        mean = float(mean_t.mean())
        var = max(float(self.u_m2.sum() + m * (mean_t - mean).square().sum()) / total_n, 0.0)
        binned = float(self.hist.sum() + self.under.sum() + self.over.sum())
        return {
            "mean": mean,
            "std": math.sqrt(var),
            "mean_per_step": mean_t.tolist(),
            "std_per_step": var_t.sqrt().tolist(),
            "frac_above_threshold": float(self.u_above.sum()) / total_n,
            "frac_above_threshold_per_step": (self.u_above / m).tolist(),
            "frac_in_window": (float(self.u_window.sum() / self.u_seen.sum())
                               if self.window is not None else None),
            "window": self.window,
            "range": [self.lo, self.hi],
            "bins": self.cfg.bins,
            "hist": self.hist.sum(0).tolist(),
            "hist_per_step": self.hist.tolist(),
            "underflow": float(self.under.sum() / self.u_seen.sum()),
            "overflow": float(self.over.sum() / self.u_seen.sum()),
            "sampled_values": float(self.u_seen.sum()),
            # NaN potentials fall in no bin (nor under/overflow, nor >= θ)
            "nan_fraction": 1.0 - binned / float(self.u_seen.sum()),
        }


def _prime_at_least(n: int) -> int:
    """Smallest prime >= n (strides that never align with a layer's shape)."""
    n = max(2, n)
    while any(n % d == 0 for d in range(2, int(n ** 0.5) + 1)):
        n += 1
    return n


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> list:
    return [float(x) / float(y) if float(y) > 0 else None for x, y in zip(a, b)]


class Monitor:
    r"""Record streaming spike and potential statistics of every spiking layer of ``model``.

    Use as a context manager around ordinary forward passes::

        with ls.analysis.Monitor(snn) as mon:
            for x, _ in loader:
                snn(x)
        stats = mon.summary()

    Every :class:`~leansnn.neuron.SpikingNeuron` (LIF, IF, conversion neurons, ...) is found
    by type; layers are keyed by their qualified module name. A neuron module called k times
    in one forward pass of ``model`` (applied at several places, or step by step) is k
    layers: ``name``, ``name#2``, ..., ``name#k`` (the k-th call of each pass), so every
    layer's rate is over its own neurons and ``samples`` counts each input once. Per layer
    the monitor keeps ``O(T·N + T·bins)`` numbers, independent of how many samples are seen;
    ``capture=k`` additionally keeps the full tensors of the first ``k`` samples (pictures).
    The statistics are computed without gradients and do not change the model's outputs.

    Metrics in :meth:`summary` (notation in the module docstring; sums run over all samples
    seen, :math:`n` samples):

    * ``rate`` :math:`r = \sum_{t,b,i} s_{t,b,i} / (T n N)`; ``rate_per_step``
      :math:`r[t] = \sum_{b,i} s_{t,b,i} / (n N)`; ``rate_per_channel``
      :math:`r[c] = \sum_{t,b,i \in c} s / (T n N_c)`.
    * ``nasfr`` (network average spike firing rate) :math:`= \sum_l \sum_{t,b,i} s^l /
      \sum_l T_l n_l N_l` over all spiking layers, the classifier's included.
    * ``silent_fraction``: share of neurons with no spike over all steps and samples;
      ``always_firing_fraction``: share firing at every step of every sample.
      ``*_per_input``: the same per (sample, neuron) pair, i.e. within one window.
    * temporal redundancy: ``p_refire`` :math:`= \sum_{t\ge1} s_t s_{t-1} / \sum_{t\ge1}
      s_{t-1}` = P(fire at t | fired at t-1) (compare with ``rate``: equal means no
      temporal structure); ``consecutive_cosine`` = mean over (sample, t ≥ 1) of
      :math:`\cos(s_{t}, s_{t-1})` of the layer's whole spike map, over pairs where both
      maps are non-empty.
    * spatial redundancy (layers with spatial dims): ``channel_cosine`` = mean over (sample,
      step) of the mean pairwise cosine similarity :math:`\cos(s_{t,b,c}, s_{t,b,c'})`,
      :math:`c \ne c'`, of the non-empty channel maps (computed as
      :math:`(\|\sum_c \hat s_c\|^2 - k) / (k(k-1))` with unit-norm maps :math:`\hat s_c`).
    * ``potential``: mean and std of :math:`u`; ``frac_above_threshold`` = share of
      :math:`u \ge \theta`; ``frac_in_window`` = share of :math:`|u - \theta| < a`, ``a``
      from :func:`surrogate_window`; fixed-bin histograms over the whole layer and per step,
      with under/overflow shares and ``nan_fraction`` (NaN values, in no bin).
    """

    def __init__(self, model: nn.Module, config: MonitorConfig | None = None, **kwargs) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"Monitor needs an nn.Module, got {type(model).__name__}")
        if config is not None and kwargs:
            raise ValueError("give either config= or keyword settings, not both")
        self.config = config if config is not None else MonitorConfig(**kwargs)
        self.model = model
        self.layers: dict[str, _LayerStats] = {}
        self._handles: list = []
        self._modules: dict[str, nn.Module] = {}
        for name, m in spiking_layers(model):
            self.layers[name] = _LayerStats(name, m, self.config)
            self._modules[name] = m
        if not self.layers:
            raise ValueError(
                f"Monitor: {type(model).__name__} has no spiking layers (no submodule derives "
                "from leansnn.SpikingNeuron); analyse an SNN, e.g. ls.convert(ann, T=...)"
            )
        self._depth = 0  # nesting of the model's own forward calls
        # calls of each layer in the current forward pass, per thread: replicas that run a
        # share of the batch in threads of their own (DataParallel) each make one pass
        self._pass = 0
        self._local = threading.local()
        self._inputs = 0  # samples of the model's forward passes that reached a spiking layer
        self._lock = threading.Lock()

    def _site(self, name: str, calls: dict[str, int] | None) -> _LayerStats:
        """Stats of this call of layer ``name``: its k-th call in one forward pass of the
        model (k >= 2: a neuron module applied at several places) is the layer ``name#k``."""
        if calls is None:  # a submodule called on its own: every call is the layer
            return self.layers[name]
        k = calls.get(name, 0) + 1
        calls[name] = k
        if k == 1:
            return self.layers[name]
        key = f"{name}#{k}"
        if key not in self.layers:  # insert after the layer's previous call site
            items = list(self.layers.items())
            at = [i for i, (n, _) in enumerate(items) if n in (name, f"{name}#{k - 1}")][-1]
            items.insert(at + 1, (key, _LayerStats(key, self._modules[name], self.config)))
            self.layers = dict(items)
        return self.layers[key]

    def _observer(self, name: str) -> Callable:
        def fn(module: nn.Module, spikes: torch.Tensor, potential: torch.Tensor | None) -> None:
            # accumulators are ordinary tensors even when a pass runs in inference mode, so
            # that passes outside it (or summary()) can still update and read them
            with self._lock, torch.inference_mode(False):
                calls = self._pass_calls() if self._depth else None
                if calls == {}:  # the first spiking layer of a pass (of this thread)
                    self._inputs += spikes.shape[1]
                site = self._site(name, calls)
                site.update(spikes, potential if self.config.potentials else None)

        return fn

    def _pass_calls(self) -> dict[str, int]:
        """This thread's call counts of the current forward pass."""
        local = self._local
        if getattr(local, "pass_id", None) != self._pass:
            local.pass_id, local.calls = self._pass, {}
        return local.calls

    def _enter_forward(self, module: nn.Module, args: Any) -> None:
        self._depth += 1
        if self._depth == 1:
            self._pass += 1

    def _exit_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        self._depth = max(self._depth - 1, 0)

    def __enter__(self) -> Monitor:
        if self._handles:
            raise RuntimeError("this Monitor is already active")
        self._depth = 0
        self._handles += [self.model.register_forward_pre_hook(self._enter_forward),
                          self.model.register_forward_hook(self._exit_forward, always_call=True)]
        for name, m in self._modules.items():
            self._handles.append(m.add_observer(self._observer(name),
                                                potential=self.config.potentials))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- results -----------------------------------------------------------------------------
    @property
    def samples(self) -> int:
        """Inputs seen: samples of the model's forward passes that reached a spiking layer
        (when its layers were called on their own, the most any layer saw)."""
        return self._inputs or max(st.samples for st in self.layers.values())

    def summary(self) -> dict:
        """All metrics as a JSON-able dict (see the class docstring for the formulas).

        Keys: ``nasfr``, ``samples``, ``spikes_per_input``, ``neurons`` (per step, all
        layers), ``layers`` (qualified name -> per-layer dict with ``rate``,
        ``rate_per_step``, ``rate_per_channel``, ``silent_fraction``, ...).
        """
        layers = {name: st.summary() for name, st in self.layers.items()}
        seen = [st for st in self.layers.values() if st.samples > 0]
        spikes = sum(st.events.spikes for st in seen)
        n = self.samples
        return {
            "nasfr": spike_rate(st.events for st in seen),
            "samples": n,
            "neurons": sum(st.N for st in seen),
            "spikes_per_input": spikes / n if n else float("nan"),
            "layers": layers,
        }

    def rate_map(self, name: str) -> torch.Tensor:
        """Per-neuron firing rate ``neuron_shape`` (spikes per step and sample, over all
        inputs seen) of layer ``name``."""
        st = self._get(name)
        return (st.neuron_counts / max(st.samples * st.T, 1)).view(st.shape).float().cpu()

    def captured(self, name: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Full ``(spikes bool [T, k, ...], potential float [T, k, ...] or None)`` of the first
        ``k = capture`` samples of layer ``name`` (``(None, None)`` without ``capture``)."""
        st = self._get(name)
        return st.captured_s, st.captured_u

    def _get(self, name: str) -> _LayerStats:
        if name not in self.layers:
            raise ValueError(f"no spiking layer {name!r}; layers: {', '.join(self.layers)}")
        st = self.layers[name]
        if st.shape is None:
            raise ValueError(f"layer {name!r} has seen no data yet")
        return st
