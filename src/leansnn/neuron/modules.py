"""Thin ``nn.Module`` wrappers around the multi-step neuron functions.

Every module is *stateless by default*: a call processes one whole window ``[T, B, ...]``
starting from the initial potential ``v_init``, so there is no ``reset_net()``. Streaming
with a carried state is explicit: pass ``h0=`` and ask for ``return_state=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from . import surrogate as sg
from .functional import IMPLEMENTATIONS, check_sequence

__all__ = ["LIFParams", "SpikingNeuron", "LIF", "IF", "set_debug"]

_DEBUG = {"check_finite": False}


def set_debug(check_finite: bool = True) -> None:
    """Turn on (or off) a per-neuron NaN/Inf check of every neuron input (costs a pass)."""
    _DEBUG["check_finite"] = bool(check_finite)


@dataclass(frozen=True)
class LIFParams:
    """Validated neuron parameters (potential units are those of the input current).

    decay: leak factor lambda in [0, 1] per step (1 = no leak, IF).
    gain: input gain k (1, or 1/tau in the tau discretisation).
    threshold: firing threshold theta > 0.
    reset: ``"hard"`` (to ``v_reset``) or ``"soft"`` (subtract theta).
    v_init: potential before the first step.
    detach_reset: stop the gradient through the reset term.
    """

    decay: float
    gain: float
    threshold: float
    reset: str = "hard"
    v_reset: float = 0.0
    v_init: float = 0.0
    detach_reset: bool = False
    surrogate: sg.Surrogate = field(default_factory=lambda: sg.ATan(alpha=2.0))

    def __post_init__(self) -> None:
        for name in ("decay", "gain", "threshold", "v_reset", "v_init"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {self.decay}")
        if self.gain <= 0:
            raise ValueError(f"gain must be > 0, got {self.gain}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if self.reset not in ("hard", "soft"):
            raise ValueError(f"reset must be 'hard' or 'soft', got {self.reset!r}")
        if not isinstance(self.surrogate, sg.Surrogate):
            raise ValueError(
                f"surrogate must be a leansnn.surrogate.Surrogate, got {self.surrogate!r}"
            )


class _ObserverHandle:
    def __init__(self, observers: list, fn) -> None:
        self._observers, self._fn = observers, fn

    def remove(self) -> None:
        if self._fn in self._observers:
            self._observers.remove(self._fn)


class SpikingNeuron(nn.Module):
    """Base class of every spiking layer (the analysis tools find neurons by this type).

    Observers (``add_observer(fn)``) are called after each forward pass as
    ``fn(module, spikes, potential)`` with spikes ``[T, B, ...]`` and the potential compared
    with the threshold ``[T, B, ...]`` (or ``None`` if the neuron has none). A neuron
    computes its potential only when someone observes it, so unobserved runs pay nothing.
    Subclasses call :meth:`_notify` at the end of ``forward``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._observers: list = []

    def add_observer(self, fn) -> _ObserverHandle:
        """Register ``fn(module, spikes, potential)``; returns a handle with ``remove()``."""
        self._observers.append(fn)
        return _ObserverHandle(self._observers, fn)

    @property
    def observed(self) -> bool:
        return bool(self._observers)

    def _notify(self, spikes: torch.Tensor, potential: torch.Tensor | None) -> None:
        for fn in list(self._observers):
            fn(self, spikes, potential)


class LIF(SpikingNeuron):
    """Multi-step leaky integrate-and-fire neuron on time-major input.

    Give either ``decay`` (``u = decay*h + x``) or ``tau`` (``decay = 1 - 1/tau`` and input
    scaled by ``1/tau``); default ``tau=2``. ``learn_decay`` makes the leak a per-layer
    parameter (PLIF style: ``decay = sigmoid(w)``, and with ``tau`` the gain ``1 - decay``);
    ``learn_threshold`` makes the threshold a per-layer parameter.

    Shapes: ``x`` float ``[T, B, ...]`` -> spikes ``[T, B, ...]`` in {0., 1.};
    with ``return_potential=True`` also ``u`` ``[T, B, ...]``, the potential compared with
    the threshold at each step; with ``return_state=True`` also the state ``[B, ...]``
    after the last step (pass it as ``h0`` to continue a stream).
    """

    def __init__(
        self,
        decay: float | None = None,
        threshold: float = 1.0,
        reset: str = "hard",
        v_reset: float = 0.0,
        surrogate: sg.Surrogate | None = None,
        detach_reset: bool = False,
        *,
        tau: float | None = None,
        v_init: float = 0.0,
        learn_decay: bool = False,
        learn_threshold: bool = False,
        impl: str = "fused",
    ) -> None:
        super().__init__()
        if decay is not None and tau is not None:
            raise ValueError("give either decay or tau, not both")
        if tau is not None:
            if not isinstance(tau, (int, float)) or not tau >= 1.0:
                raise ValueError(f"tau must be a number >= 1, got {tau!r}")
            self.tau_mode = True
            dec, gain = 1.0 - 1.0 / tau, 1.0 / tau
        elif decay is not None:
            self.tau_mode = False
            dec, gain = decay, 1.0
        else:
            self.tau_mode = True
            dec, gain = 0.5, 0.5
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown impl {impl!r}; choose from {sorted(IMPLEMENTATIONS)}")
        self.impl = impl
        self.params = LIFParams(
            decay=float(dec),
            gain=float(gain),
            threshold=float(threshold),
            reset=reset,
            v_reset=float(v_reset),
            v_init=float(v_init),
            detach_reset=bool(detach_reset),
            surrogate=surrogate if surrogate is not None else sg.ATan(alpha=2.0),
        )
        if learn_decay:
            if not 0.0 < dec < 1.0:
                raise ValueError(f"learn_decay needs 0 < decay < 1, got {dec}")
            self.decay_logit = nn.Parameter(torch.tensor(math.log(dec / (1.0 - dec))))
        else:
            self.decay_logit = None
        self.threshold = nn.Parameter(torch.tensor(float(threshold))) if learn_threshold else None

    # -- effective parameters (floats, or 0-dim tensors when learnable) ---------------------
    def _decay_gain(self):
        if self.decay_logit is None:
            return self.params.decay, self.params.gain
        d = torch.sigmoid(self.decay_logit)
        return d, (1.0 - d) if self.tau_mode else 1.0

    def _threshold(self):
        return self.threshold if self.threshold is not None else self.params.threshold

    @property
    def decay(self) -> float:
        d, _ = self._decay_gain()
        return float(d)

    def forward(
        self,
        x: torch.Tensor,
        return_potential: bool = False,
        h0: torch.Tensor | None = None,
        return_state: bool = False,
    ):
        check_sequence(x, f"{type(self).__name__} input")
        if _DEBUG["check_finite"] and not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__}: input contains NaN or Inf")
        if h0 is not None and h0.shape != x.shape[1:]:
            raise ValueError(f"h0 must have shape {tuple(x.shape[1:])}, got {tuple(h0.shape)}")
        decay, gain = self._decay_gain()
        p = self.params
        observed = bool(self._observers)
        want_u = return_potential or observed
        kw = dict(
            decay=decay, gain=gain, threshold=self._threshold(), surrogate=p.surrogate,
            reset=p.reset, v_reset=p.v_reset, v_init=p.v_init, detach_reset=p.detach_reset,
            h0=h0,
        )
        if self.impl == "fused":
            from .fused import lif_fused

            s, u, h = lif_fused(x, want_u=want_u, want_state=return_state, **kw)
        else:
            s, u, h = IMPLEMENTATIONS[self.impl](x, **kw)
        if observed:
            self._notify(s, u)
        out = [s]
        if return_potential:
            out.append(u)
        if return_state:
            out.append(h)
        return out[0] if len(out) == 1 else tuple(out)

    def extra_repr(self) -> str:
        p = self.params
        lead = f"tau={1.0 / p.gain:g}" if self.tau_mode else f"decay={p.decay:g}"
        extra = ", learn_decay" if self.decay_logit is not None else ""
        extra += ", learn_threshold" if self.threshold is not None else ""
        return (
            f"{lead}, threshold={p.threshold:g}, reset={p.reset}, v_reset={p.v_reset:g}, "
            f"v_init={p.v_init:g}, surrogate={p.surrogate}, detach_reset={p.detach_reset}"
            f"{extra}"
        )

    def to_config(self) -> dict:
        p = self.params
        cfg = dict(
            threshold=p.threshold, reset=p.reset, v_reset=p.v_reset, v_init=p.v_init,
            detach_reset=p.detach_reset, surrogate=p.surrogate.to_config(),
            learn_decay=self.decay_logit is not None, learn_threshold=self.threshold is not None,
        )
        if self.tau_mode:
            cfg["tau"] = 1.0 / p.gain
        else:
            cfg["decay"] = p.decay
        return cfg


class IF(LIF):
    """Multi-step integrate-and-fire neuron: :class:`LIF` with decay 1 and gain 1.

    Default soft reset (subtract the threshold), as used for ANN-to-SNN conversion.
    Shapes as :class:`LIF`.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        reset: str = "soft",
        v_init: float = 0.0,
        v_reset: float = 0.0,
        surrogate: sg.Surrogate | None = None,
        detach_reset: bool = False,
        *,
        learn_threshold: bool = False,
        impl: str = "fused",
    ) -> None:
        super().__init__(
            decay=1.0, threshold=threshold, reset=reset, v_reset=v_reset, surrogate=surrogate,
            detach_reset=detach_reset, v_init=v_init, learn_threshold=learn_threshold, impl=impl,
        )

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"threshold={p.threshold:g}, reset={p.reset}, v_init={p.v_init:g}, "
            f"surrogate={p.surrogate}"
        )
