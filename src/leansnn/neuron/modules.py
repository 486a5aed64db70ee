"""Thin ``nn.Module`` wrappers around the multi-step neuron functions.

Every module is *stateless by default*: a call processes one whole window ``[T, B, ...]``
starting from the initial potential ``v_init``, so there is no ``reset_net()``. Streaming
with a carried state is explicit: :meth:`LIF.step` (one step ``[B, ...]`` at a time), or
``h0=`` with ``return_state=True`` for windows.

Return types, one per call signature::

    lif(x)                                          -> spikes              (a tensor)
    lif(x, return_potential=True)                   -> SpikesAndPotential(spikes, potential)
    lif(x, return_state=True)                       -> SpikesAndState(spikes, state)
    lif(x, return_potential=True, return_state=True) -> NeuronOutput(spikes, potential, state)
    lif.step(x_t, state)                            -> SpikesAndState(spikes, state)

The named tuples unpack like plain tuples (``s, u = lif(x, return_potential=True)``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from . import surrogate as sg
from .functional import IMPLEMENTATIONS, RESETS, check_sequence

__all__ = [
    "LIFParams", "SpikingNeuron", "LIF", "IF", "set_debug", "NeuronOutput", "SpikesAndPotential",
    "SpikesAndState",
]

_DEBUG = {"check_finite": False}

Param = float | torch.Tensor


def set_debug(check_finite: bool = True) -> None:
    """Turn on (or off) a per-neuron NaN/Inf check of every neuron input (costs a pass)."""
    _DEBUG["check_finite"] = bool(check_finite)


class SpikesAndPotential(NamedTuple):
    """``lif(x, return_potential=True)``: spikes and potentials, both ``[T, B, ...]``."""

    spikes: torch.Tensor
    potential: torch.Tensor


class SpikesAndState(NamedTuple):
    """``lif(x, return_state=True)`` (spikes ``[T, B, ...]``) and ``lif.step`` (spikes
    ``[B, ...]``), with the state ``h`` ``[B, ...]`` after the last step."""

    spikes: torch.Tensor
    state: torch.Tensor


class NeuronOutput(NamedTuple):
    """``lif(x, return_potential=True, return_state=True)``."""

    spikes: torch.Tensor
    potential: torch.Tensor
    state: torch.Tensor


@dataclass(frozen=True)
class LIFParams:
    """The effective parameters of a LIF/IF neuron (``LIF.params``); potentials are in the
    units of the input current.

    decay: leak factor lambda in [0, 1] per step (1 = no leak, IF).
    gain: input gain k > 0 (1, or 1/tau in the tau discretisation).
    threshold: firing threshold theta > 0.
    reset: ``"hard"`` (to ``v_reset``), ``"soft"`` (subtract theta) or
        ``"subtract_after_decay"`` (snnTorch's subtract: theta is subtracted from the next
        step's potential, after the decay; the state is the unreset potential).
    v_reset: potential after a spike (hard reset).
    v_init: potential before the first step.
    detach_reset: stop the gradient through the reset term.

    Each of the five numbers is a float or a tensor broadcasting against one step ``x[t]``
    (learnable ones carry their autograd graph). Floats are checked here; tensors are checked
    once, when a neuron is built.
    """

    decay: Param
    gain: Param
    threshold: Param
    reset: str = "hard"
    v_reset: Param = 0.0
    v_init: Param = 0.0
    detach_reset: bool = False
    surrogate: sg.Surrogate = field(default_factory=lambda: sg.ATan(alpha=2.0))

    def __post_init__(self) -> None:
        for name in ("decay", "gain", "threshold", "v_reset", "v_init"):
            v = getattr(self, name)
            if not isinstance(v, torch.Tensor):
                _check_values(name, float(v) if isinstance(v, numbers.Real)
                              and not isinstance(v, bool) else v)
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if not isinstance(self.surrogate, sg.Surrogate):
            raise ValueError(
                f"surrogate must be a leansnn.surrogate.Surrogate, got {self.surrogate!r}"
            )


_RULES = {  # name -> (test, requirement) applied to every value
    "threshold": (lambda t: t > 0, "must be > 0"),
    "gain": (lambda t: t > 0, "must be > 0"),
    "decay": (lambda t: (t >= 0) & (t <= 1), "must lie in [0, 1]"),
    "tau": (lambda t: t >= 1, "must be >= 1"),
}


def _check_values(name: str, v) -> None:
    """Finite, and within the parameter's range; ``v`` is a float or a tensor."""
    if not isinstance(v, (float, torch.Tensor)):
        raise ValueError(f"{name} must be a number or a tensor, got {v!r}")
    t = torch.as_tensor(v, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {v!r}")
    rule = _RULES.get(name)
    if rule is not None and not bool(rule[0](t).all()):
        raise ValueError(f"{name} {rule[1]}, got {v!r}")


def _spec(v: Param) -> float | dict:
    """How a parameter is recorded in a config: the float, or ``{"tensor": shape}``."""
    return {"tensor": list(v.shape)} if isinstance(v, torch.Tensor) else float(v)


def _value(name: str, v, fill: float) -> Param:
    """A constructor argument as a float or a detached floating tensor (validated).

    ``{"tensor": shape}`` (what :meth:`LIF.to_config` records for tensors) gives a tensor of
    that shape filled with a valid placeholder; the values then come from ``load_state_dict``.
    """
    if isinstance(v, dict) and set(v) == {"tensor"}:
        v = torch.full(tuple(int(s) for s in v["tensor"]), float(fill))
    if isinstance(v, torch.Tensor):
        v = v.detach().clone()
        if not v.is_floating_point():
            v = v.to(torch.get_default_dtype())
    elif isinstance(v, numbers.Real) and not isinstance(v, bool):   # numpy scalars too
        v = float(v)
    else:
        raise ValueError(f"{name} must be a number or a tensor, got {v!r} "
                         f"({type(v).__name__})")
    _check_values(name, v)
    return v


def _desc(v: Param) -> str:
    return f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else f"{v:g}"


class _ObserverHandle:
    def __init__(self, lists: tuple[list, ...], fn) -> None:
        self._lists, self._fn = lists, fn

    def remove(self) -> None:
        for observers in self._lists:
            if self._fn in observers:
                observers.remove(self._fn)


class SpikingNeuron(nn.Module):
    """Base class of every spiking layer (the analysis tools find neurons by this type).

    **Neuron protocol.** Tools (analysis, NIR export, conversion) read a neuron only through
    these public attributes; each is a float or a tensor broadcasting against one step
    ``[B, ...]`` (a learnable one is the live ``nn.Parameter`` or a function of it):

    * ``threshold`` -- the effective firing threshold theta;
    * ``decay``, ``gain`` -- leak lambda and input gain k of ``u = lambda h + k x``;
    * ``reset`` -- ``"hard"``, ``"soft"`` or ``"subtract_after_decay"``; ``v_reset``,
      ``v_init``;
    * ``spike_amplitude`` -- the value of one emitted spike (1 unless stated otherwise).

    Neurons that are not step-by-step LIF/IF dynamics (e.g. parallel conversion neurons) may
    lack ``decay`` / ``gain`` / ``reset``; read them with ``getattr(m, name, None)``.

    Observers (``add_observer(fn)``) are called after each forward pass as
    ``fn(module, spikes, potential)`` with spikes ``[T, B, ...]`` in {0, 1} (whatever the
    amplitude) and the potential compared with the threshold ``[T, B, ...]`` (or ``None`` if
    the neuron has none). A neuron computes its potential only when an observer asks for it
    (``wants_potential``), so unobserved runs, and runs observed only by spike counters, pay
    nothing for it. Subclasses call :meth:`_notify` at the end of ``forward``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._observers: list = []
        self._potential_observers: list = []

    @property
    def spike_amplitude(self) -> Param:
        """Value of one emitted spike (outputs are in ``{0, spike_amplitude}``)."""
        return 1.0

    def add_observer(self, fn, potential: bool = True) -> _ObserverHandle:
        """Register ``fn(module, spikes, potential)``; returns a handle with ``remove()``.

        ``potential=False``: ``fn`` reads only the spikes (e.g. a spike counter), so the neuron
        need not compute its potential for it; ``fn`` then receives ``None`` unless another
        observer asked for the potential.
        """
        self._observers.append(fn)
        if potential:
            self._potential_observers.append(fn)
        return _ObserverHandle((self._observers, self._potential_observers), fn)

    @property
    def observed(self) -> bool:
        return bool(self._observers)

    @property
    def wants_potential(self) -> bool:
        """True if an observer registered with ``potential=True`` is attached."""
        return bool(self._potential_observers)

    def _notify(self, spikes: torch.Tensor, potential: torch.Tensor | None) -> None:
        for fn in list(self._observers):
            fn(self, spikes, potential)

    def takes_static_input(self, x: torch.Tensor) -> bool:
        """False: a neuron reads time-major ``[T, B, ...]`` input."""
        return False

    #: True for neurons whose step t depends only on steps 0..t (they have :meth:`step`)
    causal: bool = False

    def step(self, x_t: torch.Tensor, state=None):
        """One time step ``(x_t [B, ...], state) -> (spikes [B, ...], state)``.

        Causal neurons (:class:`LIF`, :class:`IF` and their subclasses) implement it. Others
        refuse with ``NotImplementedError``: e.g. a parallel conversion neuron's output at
        step t depends on the whole window's mean input, so it has no step-by-step form;
        call the module on the whole window ``[T, B, ...]`` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} is not causal (its step t depends on the whole window), so "
            "it has no single-step form; call it on the whole window [T, B, ...]")


class LIF(SpikingNeuron):
    r"""Multi-step leaky integrate-and-fire neuron on time-major input.

    ``u[t] = decay h[t-1] + gain x[t]``; ``s[t] = [u[t] >= threshold]``; hard reset
    ``h[t] = u[t] (1 - s[t]) + v_reset s[t]``, soft reset ``h[t] = u[t] - threshold s[t]``;
    ``h[-1] = v_init`` (see :mod:`leansnn.neuron.functional`). ``reset="subtract_after_decay"``
    is snnTorch's ``reset_mechanism="subtract"``: ``u[t] = decay h[t-1] + gain x[t] -
    threshold s[t-1]``, ``h[t] = u[t]`` (the threshold is subtracted after the decay; with
    ``detach_reset=True`` the gradients are snnTorch's too, whose reset is detached).

    Give either ``decay`` (gain 1, or ``gain=``) or ``tau`` (``decay = 1 - 1/tau``, input
    scaled by ``1/tau``); default ``tau=2``. ``decay``/``tau``, ``threshold``, ``v_reset``,
    ``v_init`` and ``gain`` are numbers or tensors broadcasting against one step ``x[t]``
    ``[B, ...]`` (``[C, 1, 1]`` per channel of ``[T, B, C, H, W]``, ``[F]`` per neuron of
    ``[T, B, F]``); fixed tensors are buffers (they follow ``.to()`` and are saved).
    ``learn_decay`` makes the leak a parameter of the decay's shape, PLIF style:
    ``decay = sigmoid(decay_logit)`` (with ``tau``, the gain is ``1 - decay``);
    ``learn_threshold`` makes ``threshold`` an ``nn.Parameter`` of its shape.

    Shapes: ``x`` float ``[T, B, ...]`` -> spikes ``[T, B, ...]`` in {0., 1.}; see the module
    docstring for ``return_potential`` / ``return_state`` and :meth:`step`. A 2-D input is
    refused: ``[B, F]`` (one step) and ``[T, B]`` look alike; use :meth:`step` or
    ``x.unsqueeze(0)`` for one step, ``x.unsqueeze(-1)`` for ``[T, B]``.
    """

    causal = True

    def __init__(
        self,
        decay: Param | None = None,
        threshold: Param = 1.0,
        reset: str = "hard",
        v_reset: Param = 0.0,
        surrogate: sg.Surrogate | dict | str | None = None,
        detach_reset: bool = False,
        *,
        tau: Param | None = None,
        gain: Param | None = None,
        v_init: Param = 0.0,
        learn_decay: bool = False,
        learn_threshold: bool = False,
        impl: str = "fused",
    ) -> None:
        super().__init__()
        if decay is not None and tau is not None:
            raise ValueError("give either decay or tau, not both")
        if tau is not None and gain is not None:
            raise ValueError("gain goes with decay (tau sets the gain to 1/tau)")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown impl {impl!r}; choose from {sorted(IMPLEMENTATIONS)}")
        self.tau_mode = decay is None
        if self.tau_mode:
            tau_v = _value("tau", 2.0 if tau is None else tau, 2.0)
            dec, gn = 1.0 - 1.0 / tau_v, 1.0 / tau_v
            lead = {"tau": _spec(tau_v)}
        else:
            dec = _value("decay", decay, 0.5)
            gn = _value("gain", 1.0 if gain is None else gain, 1.0)
            lead = {"decay": _spec(dec)}
            if gain is not None:
                lead["gain"] = _spec(gn)
        self.reset = reset
        self.detach_reset = bool(detach_reset)
        self.surrogate = sg.ATan(alpha=2.0) if surrogate is None else sg.get(surrogate)
        self.impl = impl
        # decay and gain: decay_logit (learnable) or _decay/_gain (float) / fixed_* (buffers)
        self._decay: float | None = None
        self._gain: float | None = None
        self.register_buffer("fixed_decay", None)
        self.register_buffer("fixed_gain", None)
        if learn_decay:
            t = torch.as_tensor(dec, dtype=torch.get_default_dtype())
            if not bool(((t > 0) & (t < 1)).all()):
                raise ValueError(f"learn_decay needs 0 < decay < 1, got {dec!r}")
            self.decay_logit = nn.Parameter(torch.log(t / (1 - t)))
        else:
            self.decay_logit = None
            self._store_fixed("decay", dec)
        if not (learn_decay and self.tau_mode):
            self._store_fixed("gain", gn)
        self._bind("threshold", _value("threshold", threshold, 1.0), learnable=learn_threshold)
        self._bind("v_reset", _value("v_reset", v_reset, 0.0))
        self._bind("v_init", _value("v_init", v_init, 0.0))
        self._config = dict(
            lead, threshold=_spec(self._given(threshold)), reset=reset,
            v_reset=_spec(self._given(v_reset)), v_init=_spec(self._given(v_init)),
            detach_reset=self.detach_reset, surrogate=self.surrogate.to_config(),
            learn_decay=bool(learn_decay), learn_threshold=bool(learn_threshold),
        )

    @staticmethod
    def _given(v) -> Param:
        if isinstance(v, dict) and set(v) == {"tensor"}:
            return torch.empty(tuple(v["tensor"]))
        return v if isinstance(v, torch.Tensor) else float(v)

    def _store_fixed(self, name: str, v: Param) -> None:
        if isinstance(v, torch.Tensor):
            self.register_buffer(f"fixed_{name}", v)
        else:
            setattr(self, f"_{name}", v)

    def _bind(self, name: str, v: Param, learnable: bool = False) -> None:
        """Store a parameter under its public name: float, buffer or ``nn.Parameter``.
        A subclass that derives it (a property of the same name) keeps its property."""
        if isinstance(getattr(type(self), name, None), property):
            return
        if learnable:
            self.register_parameter(name, nn.Parameter(torch.as_tensor(
                v, dtype=torch.get_default_dtype()).clone()))
        elif isinstance(v, torch.Tensor):
            self.register_buffer(name, v)
        else:
            setattr(self, name, v)

    # -- the neuron protocol (floats, or tensors when given as / learnt as tensors) ---------------
    # threshold, v_reset, v_init are plain attributes (float, buffer or nn.Parameter)
    @property
    def decay(self) -> Param:
        """Effective leak lambda (``sigmoid(decay_logit)`` when learnable)."""
        if self.decay_logit is not None:
            return torch.sigmoid(self.decay_logit)
        return self._decay if self.fixed_decay is None else self.fixed_decay

    @property
    def gain(self) -> Param:
        """Effective input gain k (``1 - decay`` for a learnable decay given by ``tau``)."""
        if self.fixed_gain is None and self._gain is None:
            return 1.0 - self.decay
        return self._gain if self.fixed_gain is None else self.fixed_gain

    @property
    def params(self) -> LIFParams:
        """All effective parameters at once (a snapshot; learnable ones keep their graph)."""
        return LIFParams(
            decay=self.decay, gain=self.gain, threshold=self.threshold, reset=self.reset,
            v_reset=self.v_reset, v_init=self.v_init, detach_reset=self.detach_reset,
            surrogate=self.surrogate,
        )

    # -- running ----------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, h0: torch.Tensor | None, want_u: bool, want_state: bool):
        kw = dict(
            decay=self.decay, gain=self.gain, threshold=self.threshold, surrogate=self.surrogate,
            reset=self.reset, v_reset=self.v_reset, v_init=self.v_init,
            detach_reset=self.detach_reset, h0=h0,
        )
        if self.impl == "fused":
            from .fused import lif_fused

            return lif_fused(x, want_u=want_u, want_state=want_state, **kw)
        return IMPLEMENTATIONS[self.impl](x, **kw)

    def _emit(self, s: torch.Tensor) -> torch.Tensor:
        amp = self.spike_amplitude
        return s if isinstance(amp, float) and amp == 1.0 else s * amp

    def forward(
        self,
        x: torch.Tensor,
        return_potential: bool = False,
        h0: torch.Tensor | None = None,
        return_state: bool = False,
    ):
        """Run a window ``x`` ``[T, B, ...]`` from ``v_init`` (or from the state ``h0``)."""
        check_sequence(x, f"{type(self).__name__} input")
        if x.dim() == 2:
            name = type(self).__name__
            raise ValueError(
                f"{name} input: got a 2-D tensor of shape {tuple(x.shape)}, which is ambiguous "
                "(one step [B, F], or a window [T, B] without a feature axis). Multi-step "
                "neurons take [T, B, ...]: for one step use the neuron's .step(x_t, state) "
                "or x.unsqueeze(0); for a [T, B] window use x.unsqueeze(-1)")
        if _DEBUG["check_finite"] and not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__}: input contains NaN or Inf")
        if h0 is not None and not isinstance(h0, torch.Tensor):
            raise ValueError(f"h0 must be a tensor of shape {tuple(x.shape[1:])} (the state "
                             f"returned with return_state=True) or None, got "
                             f"{type(h0).__name__}")
        if h0 is not None and h0.shape != x.shape[1:]:
            raise ValueError(f"h0 must have shape {tuple(x.shape[1:])}, got {tuple(h0.shape)}")
        observed = bool(self._observers)
        want_u = return_potential or self.wants_potential
        s, u, h = self._run(x, h0, want_u, return_state)
        if observed:
            self._notify(s, u if want_u else None)
        s = self._emit(s)
        if return_potential:
            return NeuronOutput(s, u, h) if return_state else SpikesAndPotential(s, u)
        return SpikesAndState(s, h) if return_state else s

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None = None) -> SpikesAndState:
        """One time step: ``x_t`` ``[B, ...]`` and the state returned by the previous step
        (``None`` at the start, i.e. ``v_init``) -> ``(spikes [B, ...], state [B, ...])``.

        Stepping through ``x[0..T-1]`` gives exactly ``self(x)``. Observers are not called.
        """
        if not isinstance(x_t, torch.Tensor) or x_t.dim() < 1 or not x_t.is_floating_point():
            raise ValueError(
                f"{type(self).__name__}.step: expected a floating tensor x_t [B, ...], got "
                f"{tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__}"
            )
        if state is not None and not isinstance(state, torch.Tensor):
            raise ValueError(f"{type(self).__name__}.step: state must be None (start from "
                             "v_init) or the tensor the previous step returned, got "
                             f"{type(state).__name__}")
        if state is not None and state.shape != x_t.shape:
            raise ValueError(f"{type(self).__name__}.step: state must have the shape of x_t "
                             f"{tuple(x_t.shape)}, got {tuple(state.shape)}")
        s, _, h = self._run(x_t.unsqueeze(0), state, False, True)
        return SpikesAndState(self._emit(s[0]), h)

    # -- description ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        c = self._config
        if self.tau_mode:
            lead = f"tau={_desc(self._given(c['tau']))}"
        else:
            lead = f"decay={_desc(self._given(c['decay']))}"
            if "gain" in c:
                lead += f", gain={_desc(self._given(c['gain']))}"
        extra = ", learn_decay" if self.decay_logit is not None else ""
        extra += ", learn_threshold" if c["learn_threshold"] else ""
        return (
            f"{lead}, threshold={_desc(self.threshold)}, reset={self.reset}, "
            f"v_reset={_desc(self.v_reset)}, v_init={_desc(self.v_init)}, "
            f"surrogate={self.surrogate}, detach_reset={self.detach_reset}{extra}"
        )

    def to_config(self) -> dict:
        """Constructor arguments that rebuild this neuron (``type(m)(**m.to_config())``).

        Numbers are recorded as given; a tensor as ``{"tensor": shape}``: the rebuilt neuron
        has a tensor of that shape whose values come from ``load_state_dict``.
        """
        return dict(self._config)


class IF(LIF):
    """Multi-step integrate-and-fire neuron: :class:`LIF` with decay 1 and gain 1.

    Default soft reset (subtract the threshold), as used for ANN-to-SNN conversion.
    ``gain`` (default 1) scales the input, for imported graphs. Shapes as :class:`LIF`.
    """

    def __init__(
        self,
        threshold: Param = 1.0,
        reset: str = "soft",
        v_init: Param = 0.0,
        v_reset: Param = 0.0,
        surrogate: sg.Surrogate | dict | str | None = None,
        detach_reset: bool = False,
        *,
        gain: Param | None = None,
        learn_threshold: bool = False,
        impl: str = "fused",
    ) -> None:
        super().__init__(
            decay=1.0, threshold=threshold, reset=reset, v_reset=v_reset, surrogate=surrogate,
            detach_reset=detach_reset, gain=gain, v_init=v_init, learn_threshold=learn_threshold,
            impl=impl,
        )
        for k in ("decay", "learn_decay"):
            self._config.pop(k)

    def extra_repr(self) -> str:
        g = self._config.get("gain")
        lead = "" if g is None else f"gain={_desc(self._given(g))}, "
        return (
            f"{lead}threshold={_desc(self.threshold)}, reset={self.reset}, "
            f"v_init={_desc(self.v_init)}, surrogate={self.surrogate}"
        )
