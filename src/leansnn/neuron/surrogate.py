"""Surrogate gradients for the Heaviside spike function.

The forward pass of every spiking neuron is the step function ``s = H(v)`` with
``v = u - threshold`` (potential minus threshold, same units as the potential). Its true
derivative is zero almost everywhere, so training uses the derivative of a smooth
*primitive* ``f(v)`` in its place. Each surrogate here is a frozen dataclass that states

* ``primitive(v)`` -- the smooth function whose derivative is used (for tests and plots),
* ``derivative(v)`` -- ``df/dv``, pure (returns a new tensor),
* ``derivative_(v)`` -- the same, computed in place in ``v`` (the fused kernels use it to
  avoid allocating one tensor per time step).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

__all__ = ["Surrogate", "Rectangular", "Sigmoid", "ATan", "Triangle", "FastSigmoid", "get"]


class Surrogate:
    """Base class. Subclasses are frozen dataclasses; see the module docstring."""

    def primitive(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        return self.derivative_(v.clone())

    def derivative_(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_config(self) -> dict:
        from dataclasses import asdict

        return {"name": type(self).__name__, **asdict(self)}


def _positive(obj: Surrogate, name: str) -> None:
    """Check the parameter ``name`` of the frozen dataclass ``obj``: a finite real number > 0
    (a bool is not one); a numpy number is stored as a Python float (configs stay JSON)."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"surrogate parameter {name} must be a number, got {value!r} "
                         f"({type(value).__name__}); pass a Python float, e.g. float(x)")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"surrogate parameter {name} must be a finite number > 0, got {value!r}")
    if type(value) not in (int, float):   # numpy scalars (np.float64 is a float subclass)
        object.__setattr__(obj, name, float(value))


@dataclass(frozen=True)
class Rectangular(Surrogate):
    """Rectangular window: ``df/dv = 1/(2a)`` if ``|v| < a`` else 0.

    Primitive: ``f(v) = clamp((v + a) / (2a), 0, 1)``. ``a`` is the half-width of the window
    in potential units (the ICCV 2023 redundancy paper uses ``a = 0.25``).
    """

    a: float = 0.5

    def __post_init__(self) -> None:
        _positive(self, "a")

    def primitive(self, v: torch.Tensor) -> torch.Tensor:
        return ((v + self.a) / (2 * self.a)).clamp(0.0, 1.0)

    def derivative_(self, v: torch.Tensor) -> torch.Tensor:
        return v.abs_().lt_(self.a).mul_(0.5 / self.a)


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """``f(v) = sigmoid(alpha * v)``; ``df/dv = alpha * sig * (1 - sig)``."""

    alpha: float = 4.0

    def __post_init__(self) -> None:
        _positive(self, "alpha")

    def primitive(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.alpha * v)

    def derivative_(self, v: torch.Tensor) -> torch.Tensor:
        sig = v.mul_(self.alpha).sigmoid_()
        # sig - sig^2, in place
        return torch.addcmul(sig, sig, sig, value=-1.0, out=sig).mul_(self.alpha)


@dataclass(frozen=True)
class ATan(Surrogate):
    """``f(v) = atan(pi/2 alpha v) / pi + 1/2``; ``df/dv = (alpha/2) / (1 + (pi/2 alpha v)^2)``."""

    alpha: float = 2.0

    def __post_init__(self) -> None:
        _positive(self, "alpha")

    def primitive(self, v: torch.Tensor) -> torch.Tensor:
        return torch.atan(math.pi / 2 * self.alpha * v) / math.pi + 0.5

    def derivative_(self, v: torch.Tensor) -> torch.Tensor:
        k = math.pi / 2 * self.alpha
        one = torch.ones((), dtype=v.dtype, device=v.device)
        torch.addcmul(one, v, v, value=k * k, out=v)  # 1 + (k v)^2
        return torch.div(one * (self.alpha / 2), v, out=v)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Triangle: ``df/dv = max(0, 1/a - |v|/a^2)``.

    Primitive: ``f(v) = 0`` for ``v <= -a``, ``(v + a)^2 / (2a^2)`` for ``-a < v <= 0``,
    ``1 - (a - v)^2 / (2a^2)`` for ``0 < v < a``, ``1`` beyond.
    """

    a: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "a")

    def primitive(self, v: torch.Tensor) -> torch.Tensor:
        a = self.a
        vc = v.clamp(-a, a)
        neg = (vc + a) ** 2 / (2 * a * a)
        pos = 1 - (a - vc) ** 2 / (2 * a * a)
        return torch.where(vc <= 0, neg, pos)

    def derivative_(self, v: torch.Tensor) -> torch.Tensor:
        a = self.a
        inv_a = torch.full((), 1.0 / a, dtype=v.dtype, device=v.device)
        return torch.add(inv_a, v.abs_(), alpha=-1.0 / (a * a), out=v).clamp_min_(0.0)


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Fast sigmoid (SuperSpike; snnTorch's ``surrogate.fast_sigmoid(slope=25)``):
    ``df/dv = 1 / (slope |v| + 1)^2``.

    Primitive: ``f(v) = v / (1 + slope |v|)`` (a rescaled fast sigmoid, odd around the
    threshold). ``slope`` (default 25, snnTorch's) is in 1 / potential units; the derivative
    peaks at 1 for ``v = 0``.
    """

    slope: float = 25.0

    def __post_init__(self) -> None:
        _positive(self, "slope")

    def primitive(self, v: torch.Tensor) -> torch.Tensor:
        # d/dv [v / (1 + k|v|)] = 1 / (1 + k|v|)^2
        return v / (1 + self.slope * v.abs())

    def derivative_(self, v: torch.Tensor) -> torch.Tensor:
        v.abs_().mul_(self.slope).add_(1.0)
        return v.mul_(v).reciprocal_()


_BY_NAME = {c.__name__.lower(): c for c in (Rectangular, Sigmoid, ATan, Triangle, FastSigmoid)}


def get(spec: Surrogate | dict | str) -> Surrogate:
    """Return a surrogate from an instance, a name (``"atan"``) or a ``to_config()`` dict."""
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        kw = dict(spec)
        name = str(kw.pop("name", "")).lower()
        if name not in _BY_NAME:
            raise ValueError(
                f"unknown surrogate {name!r}; choose one of {sorted(_BY_NAME)} "
                "or pass an instance such as leansnn.surrogate.ATan(alpha=2.0)"
            )
        return _BY_NAME[name](**kw)
    raise ValueError(f"expected a Surrogate, a name or a config dict, got {type(spec).__name__}")
