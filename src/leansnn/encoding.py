"""Input encoders: a static input ``[B, ...]`` -> a spike or current train ``[T, B, ...]``.

Units: ``x`` holds intensities in ``[0, 1]`` (e.g. pixel values scaled to [0, 1]; the data
sets of :mod:`leansnn.data` give them so). ``rate`` and ``latency`` clamp to ``[0, 1]``;
``direct`` passes any real value through unchanged (it is a current, not a spike).

* :func:`direct` -- the same input at every step (a broadcast view, no copy): the first
  layer turns it into a current; the usual choice for static images.
* :func:`rate` -- Bernoulli ("Poisson") spikes: at each step an element spikes with
  probability ``clamp(gain * x, 0, 1)`` (``gain`` in spikes per step per unit intensity),
  independently over steps. Seeded: ``seed=`` or a ``torch.Generator`` gives the same
  spikes on every run.
* :func:`latency` -- time-to-first-spike: one spike per element, brighter inputs earlier;
  inputs below ``threshold`` never spike. ``method="linear"``: step
  ``round((1 - x) / (1 - threshold) * (T - 1))``; ``method="log"``: step
  ``round(ln(x) / ln(threshold) * (T - 1))`` (logarithmic in the intensity, as the charging
  time of an RC neuron). ``x = 1`` fires at step 0, ``x = threshold`` at step ``T - 1``.

:func:`encode` dispatches on a name in :data:`ENCODINGS` (``train-snn --encoding``);
:class:`Encoder` is the same as a parameter-free module, to put in front of a model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ENCODINGS", "direct", "rate", "latency", "encode", "Encoder"]

ENCODINGS = ("direct", "rate", "latency")


def _check(x: object, T: object, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what}: expected a tensor [B, ...], got {type(x).__name__}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"{what}: T must be an int >= 1, got {T!r}")
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def direct(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[B, ...] -> [T, B, ...]``: ``x`` at every step (a view of ``x``, no copy)."""
    x = _check(x, T, "direct encoding")
    return x.unsqueeze(0).expand(T, *x.shape)


def _generator(x: torch.Tensor, seed: int | None,
               generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    if seed is not None:
        return torch.Generator(device=x.device).manual_seed(int(seed))
    return generator


def rate(x: torch.Tensor, T: int, *, gain: float = 1.0, seed: int | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli rate code: spikes in {0., 1.} ``[T, B, ...]``, ``P(spike) = clamp(gain x, 0, 1)``
    at every step, independently. ``seed`` or ``generator`` (on ``x``'s device) makes it
    reproducible; without either the global torch random state is used."""
    x = _check(x, T, "rate encoding")
    if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
        raise ValueError(f"rate encoding: gain must be a finite number > 0, got {gain!r}")
    p = (x.detach() * gain).clamp(0.0, 1.0)
    g = _generator(x, seed, generator)
    u = torch.rand((T, *x.shape), generator=g, dtype=x.dtype, device=x.device)
    return (u < p).to(x.dtype)


def latency(x: torch.Tensor, T: int, *, method: str = "linear",
            threshold: float = 0.01) -> torch.Tensor:
    """Time-to-first-spike code: one spike per element at the step given in the module
    docstring (``method`` ``"linear"`` or ``"log"``); elements below ``threshold`` (in
    ``(0, 1)``) stay silent. Returns {0., 1.} ``[T, B, ...]``."""
    x = _check(x, T, "latency encoding")
    if method not in ("linear", "log"):
        raise ValueError(f"latency encoding: method must be 'linear' or 'log', got {method!r}")
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise ValueError(f"latency encoding: threshold must lie in (0, 1), got {threshold!r}")
    v = x.detach().clamp(0.0, 1.0)
    if method == "linear":
        frac = (1.0 - v) / (1.0 - threshold)
    else:
        frac = torch.log(v.clamp_min(threshold)) / math.log(threshold)
    t_fire = torch.round(frac.clamp(0.0, 1.0) * (T - 1)).long()
    t_fire = torch.where(v >= threshold, t_fire, torch.full_like(t_fire, T))  # T: silent
    steps = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))
    return (steps == t_fire.unsqueeze(0)).to(x.dtype)


def encode(x: torch.Tensor, T: int, encoding: str = "direct", **options) -> torch.Tensor:
    """``direct``, ``rate`` or ``latency`` encoding of ``x`` by name, with that encoder's
    keyword options (``seed=``, ``gain=``, ``method=``, ``threshold=``)."""
    fns = {"direct": direct, "rate": rate, "latency": latency}
    if encoding not in fns:
        raise ValueError(f"unknown encoding {encoding!r}; choose from {list(ENCODINGS)}")
    return fns[encoding](x, T, **options)


class Encoder(nn.Module):
    """``encode(x, T, encoding, **options)`` as a module (no parameters): ``[B, ...]`` ->
    ``[T, B, ...]``.

    A ``[T, B, ...]`` input (already a sequence, ``x.dim() == static_dims + 1``) passes
    through when ``static_dims`` is given. ``seed`` (rate code) seeds a generator created on
    the input's device at the first call, so a run draws the same spikes every time it is
    repeated, and different spikes at every call within it.
    """

    def __init__(self, encoding: str = "direct", T: int = 8, *,
                 static_dims: int | None = None, seed: int | None = None, **options) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; choose from {list(ENCODINGS)}")
        if seed is not None and encoding != "rate":
            raise ValueError(f"seed applies to the rate encoding only, not {encoding!r}")
        self.encoding, self.T, self.static_dims = encoding, int(T), static_dims
        self.seed, self.options = seed, dict(options)
        self._gen: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.static_dims is not None and x.dim() == self.static_dims + 1:
            return x
        kw = dict(self.options)
        if self.encoding == "rate" and self.seed is not None:
            if self._gen is None or self._gen.device != x.device:
                self._gen = torch.Generator(device=x.device).manual_seed(int(self.seed))
            kw["generator"] = self._gen
        return encode(x, self.T, self.encoding, **kw)

    def takes_static_input(self, x: torch.Tensor) -> bool:
        """True unless ``x`` is already a sequence (``static_dims + 1`` dims)."""
        return self.static_dims is None or x.dim() != self.static_dims + 1

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"encoding={self.encoding!r}, T={self.T}{opts}"
