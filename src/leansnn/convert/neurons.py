"""Spiking neurons that replace ANN activations in a converted network.

Both take the layer's input current ``[T, B, ...]`` and emit spikes of amplitude ``theta``
(the value the next layer's weights expect), i.e. outputs in ``{0, amplitude}``. Observers
(:meth:`leansnn.neuron.SpikingNeuron.add_observer`) receive spikes in ``{0, 1}`` per step.

Inside a converted network the graph calls them on tensors with time folded into the batch
(``mode="folded"``: ``[T*B, ...]``), and parallel neurons also on time-means
(``mode="mean"``, ``mode="spikes"``: see :class:`ParallelIF`). Users call them with the
default ``mode="sequence"`` on ``[T, B, ...]``.
"""

from __future__ import annotations

import torch

from ..activations import spike_count
from ..neuron import IF, SpikingNeuron
from ..neuron import surrogate as sg
from ..neuron.functional import check_sequence

__all__ = ["ParallelIF", "SerialIF"]

_MODES = ("sequence", "folded", "mean", "mean_silent", "spikes", "spikes_gap",
          "spikes_gap_keepdim")


def _as_buffer(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        t = value.detach().clone()
    else:
        t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t


class ParallelIF(SpikingNeuron):
    r"""Parallel spiking neuron (Hao et al., ICML 2025): all ``T`` steps at once.

    From the window's summed input :math:`S = \sum_t I(t) = T\,\bar I` the neuron fires
    :math:`n = \mathrm{clip}(\lfloor (S + \psi)/\theta \rfloor, 0, T)` spikes, in the **first**
    ``n`` steps (the sorting property: step ``k`` fires iff :math:`S + \psi \ge k\theta`), each
    of amplitude ``amplitude``. Defaults: shift :math:`\psi = \theta/2`, amplitude ``theta``;
    then the rate :math:`n\theta/T` equals QCFS with ``L = T`` of the mean input exactly.

    Args:
        T: number of time steps of the window.
        threshold: ``theta`` > 0, a scalar or a tensor broadcastable to one sample
            (e.g. ``[C, 1, 1]`` for channel-wise thresholds).
        shift: ``psi`` (same units and broadcasting as ``threshold``); ``None`` = ``theta/2``.
        amplitude: value of one spike; ``None`` = ``theta``.

    Modes of :meth:`forward` (``x`` is the input current):
        ``"sequence"`` ``[T, B, ...] -> [T, B, ...]``; ``"folded"`` ``[T*B, ...] -> [T*B, ...]``;
        ``"mean"`` time-mean ``[B, ...]`` -> time-mean output (rate times amplitude)
        ``[B, ...]``; ``"spikes"`` time-mean ``[B, ...]`` -> spike train ``[T*B, ...]``
        (folded) rebuilt from the counts. ``"mean_silent"`` is ``"mean"`` without notifying.
        ``"spikes_gap"`` / ``"spikes_gap_keepdim"``: time-mean ``[B, C, H, W]`` -> the spike
        train's global average pool ``[T*B, C]`` / ``[T*B, C, 1, 1]``, computed from a
        histogram of the counts without building the train (the fast path's tail for
        ``neuron -> global average pooling``; same values as pooling the train, up to float
        rounding).

    Observed potential: ``u[k] = S + psi - (k-1)*theta`` for step ``k = 1..T`` — the window's
    charge (summed input plus shift) left after the ``k-1`` earlier steps' discharge; step ``k``
    fires iff ``u[k] >= theta`` (up to float rounding at the boundary).
    """

    supports_mean = True  # enables the exact fast path (leansnn.convert.fastpath)

    def __init__(self, T: int, threshold, shift=None, amplitude=None) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1, got {T!r}")
        self.T = T
        th = _as_buffer(threshold, "threshold")
        if not bool((th > 0).all()):
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        self.register_buffer("threshold", th)
        self.register_buffer("shift", None if shift is None else _as_buffer(shift, "shift"))
        self.register_buffer("amplitude",
                             None if amplitude is None else _as_buffer(amplitude, "amplitude"))

    # -- the neuron's arithmetic ---------------------------------------------------------------
    def counts(self, mean: torch.Tensor) -> torch.Tensor:
        """Spike count ``n`` in ``{0..T}`` (float tensor, shape of ``mean`` ``[B, ...]``)."""
        # the very function QCFS uses (bit-exact for T == L without shift) and DA-QCFS uses
        th = self.threshold
        return spike_count(mean, th, self.T, None if self.shift is None else self.shift / th)

    def _amp(self) -> torch.Tensor:
        return self.threshold if self.amplitude is None else self.amplitude

    @property
    def spike_amplitude(self) -> torch.Tensor:
        """Value of one emitted spike: ``amplitude``, or ``theta`` by default."""
        return self._amp()

    def rate_output(self, n: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Time-mean output ``n * (amplitude / T)`` ``[B, ...]`` (``inplace`` reuses ``n``)."""
        scale = self._amp() / self.T
        return n.mul_(scale) if inplace else n * scale

    def spike_train(self, n: torch.Tensor) -> torch.Tensor:
        """Spike train in {0, 1} ``[T, B, ...]`` with the first ``n`` steps firing."""
        steps = torch.arange(self.T, device=n.device, dtype=n.dtype)
        out = n.new_empty(self.T, *n.shape)
        # written straight into a float tensor: ~10x faster than a bool mask cast afterwards
        return torch.lt(steps.view(-1, *([1] * n.dim())), n.unsqueeze(0), out=out)

    def _pooled_train(self, n: torch.Tensor) -> torch.Tensor:
        """Global average pool of the spike train (times amplitude) ``[T, B, C]`` from the
        counts ``n`` ``[B, C, H, W]``: step ``t`` of channel ``c`` is ``a_c`` times the share
        of positions with ``n > t``. A histogram of the counts (``O(B C H W + B C T)``)
        replaces the ``T B C H W`` train where the amplitude is one per channel; otherwise
        the train is built and pooled."""
        T, a = self.T, self._amp()
        if n.dim() != 4:
            raise ValueError(f"spikes_gap mode needs means [B, C, H, W], got {tuple(n.shape)}")
        B, C, H, W = n.shape
        a_map = torch.broadcast_to(a, (C, H, W))
        if not torch.equal(a_map, a_map[:, :1, :1].expand_as(a_map)):
            s = self.spike_train(n).mul_(a_map)
            return s.mean((-2, -1))
        # time-major histogram: hist[k, b*C + c] = #{positions with n == k}
        idx = torch.nan_to_num(n, nan=0.0).reshape(B * C, H * W).t().long()
        hist = n.new_zeros(T + 1, B * C).scatter_add_(0, idx, n.new_ones(()).expand(idx.shape))
        below = hist[:T]
        for t in range(1, T):  # cumulative sum over steps (torch.cumsum over dim 0 is slow)
            below[t].add_(below[t - 1])
        above = below.neg_().add_(H * W)  # above[t] = #{n > t}
        return above.view(T, B, C).mul_(a_map[:, 0, 0]).div_(H * W)

    def potential(self, mean: torch.Tensor) -> torch.Tensor:
        """Observed potential ``u[k] = S + psi - (k-1) theta`` ``[T, B, ...]`` (see class)."""
        th = self.threshold
        psi = th / 2 if self.shift is None else self.shift
        k = torch.arange(self.T, device=mean.device, dtype=mean.dtype)
        k = k.view(-1, *([1] * mean.dim()))
        return (mean * self.T + psi).unsqueeze(0) - k * th

    def _scale(self, s: torch.Tensor) -> torch.Tensor:
        """Spikes {0, 1} -> {0, amplitude}; in place unless observers may hold ``s``."""
        return s * self._amp() if self._observers else s.mul_(self._amp())

    def _notify_from(self, n: torch.Tensor, mean: torch.Tensor) -> None:
        self._notify(self.spike_train(n), self.potential(mean))

    def forward(self, x: torch.Tensor, mode: str = "sequence") -> torch.Tensor:
        T = self.T
        if mode in ("sequence", "folded"):
            if mode == "folded":
                if x.shape[0] % T:
                    raise ValueError(f"folded input's first dim {x.shape[0]} is not a multiple "
                                     f"of T={T}")
                x = x.reshape(T, x.shape[0] // T, *x.shape[1:])
            else:
                check_sequence(x, "ParallelIF input")
                if x.shape[0] != T:
                    raise ValueError(f"ParallelIF built for T={T} got a window of "
                                     f"{x.shape[0]} steps; build it with T={x.shape[0]}")
            mean = x.mean(0)
            s = self.spike_train(self.counts(mean))
            if self._observers:
                self._notify(s, self.potential(mean))
            out = self._scale(s)
            return out.reshape(-1, *out.shape[2:]) if mode == "folded" else out
        if mode in ("mean", "mean_silent"):
            n = self.counts(x)
            if self._observers and mode == "mean":
                self._notify_from(n, x)
            return self.rate_output(n, inplace=True)  # fresh tensor: no extra allocation
        if mode == "spikes":
            s = self.spike_train(self.counts(x))
            if self._observers:
                self._notify(s, self.potential(x))
            out = self._scale(s)
            return out.reshape(-1, *out.shape[2:])
        if mode in ("spikes_gap", "spikes_gap_keepdim"):
            n = self.counts(x)
            if self._observers:
                self._notify(self.spike_train(n), self.potential(x))
            out = self._pooled_train(n)
            return out.reshape(-1, *out.shape[2:], *((1, 1) if mode.endswith("keepdim") else ()))
        raise ValueError(f"unknown mode {mode!r}; choose from {_MODES}")

    def to_config(self) -> dict:
        """Constructor arguments (``ParallelIF(**to_config())`` rebuilds the neuron); the
        tensors are the buffers themselves (checkpoints record only their shapes)."""
        return {"T": self.T, "threshold": self.threshold, "shift": self.shift,
                "amplitude": self.amplitude}

    def extra_repr(self) -> str:
        th = self.threshold
        desc = f"{float(th):g}" if th.numel() == 1 else f"tensor{tuple(th.shape)}"
        extra = "" if self.shift is None else ", shift"
        extra += "" if self.amplitude is None else ", amplitude"
        return f"T={self.T}, threshold={desc}{extra}"


class SerialIF(IF):
    """Classic IF conversion baseline: an :class:`leansnn.IF` with threshold ``theta``,
    ``v_init = theta/2``, soft reset, spikes of amplitude ``theta``, one step at a time.

    Args:
        T: number of time steps (only checked against ``[T, B, ...]`` inputs).
        threshold: ``theta`` > 0, scalar or broadcastable to one sample (a buffer, state_dict
            key ``threshold``; ``v_init`` follows it).

    Shapes: ``"sequence"`` ``[T, B, ...] -> [T, B, ...]`` in ``{0, theta}``; ``"folded"``
    ``[T*B, ...] -> [T*B, ...]``. Observed potential: the IF potential ``u[t]`` (units of
    the input) compared with ``theta`` at step ``t``; observed spikes are in {0, 1}.
    """

    def __init__(self, T: int, threshold) -> None:
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1, got {T!r}")
        if isinstance(threshold, dict) and set(threshold) == {"tensor"}:  # from to_config
            threshold = torch.ones(threshold["tensor"])
        th = _as_buffer(threshold, "threshold")
        if not bool((th > 0).all()):
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        super().__init__(threshold=th, reset="soft", surrogate=sg.ATan(alpha=2.0))
        self.T = T

    @property
    def v_init(self) -> torch.Tensor:
        """``theta / 2``: the initial potential that centres the rounding of the rate."""
        return self.threshold / 2

    @property
    def spike_amplitude(self) -> torch.Tensor:
        return self.threshold

    def forward(self, x: torch.Tensor, mode: str = "sequence") -> torch.Tensor:
        if mode == "folded":
            T = self.T
            out = super().forward(x.reshape(T, x.shape[0] // T, *x.shape[1:]))
            return out.reshape(-1, *out.shape[2:])
        if mode != "sequence":
            raise ValueError(f"SerialIF supports modes 'sequence' and 'folded', got {mode!r}")
        return super().forward(x)

    def to_config(self) -> dict:
        """``SerialIF(**cfg)`` rebuilds it; a tensor threshold's values come from the
        state_dict."""
        return {"T": self.T, "threshold": {"tensor": list(self.threshold.shape)}}

    def extra_repr(self) -> str:
        th = self.threshold
        desc = f"{float(th):g}" if th.numel() == 1 else f"tensor{tuple(th.shape)}"
        return f"T={self.T}, threshold={desc}, v0=theta/2, reset=soft"
