r"""Multi-step leaky integrate-and-fire dynamics as pure functions on ``[T, B, ...]`` tensors.

One step, from :math:`h[-1] = v_\mathrm{init}` (or a carried state ``h0``):

.. math::

    u[t] &= \lambda\, h[t-1] + k\, x[t] \\
    s[t] &= H(u[t] - \theta) \\
    h[t] &= u[t]\,(1 - s[t]) + v_\mathrm{reset}\, s[t] \quad \text{(hard reset)} \\
    h[t] &= u[t] - \theta\, s[t] \quad \text{(soft reset)}

or, with ``reset="subtract_after_decay"`` (snnTorch's ``reset_mechanism="subtract"``: the
threshold is subtracted *after* the decay, one step late, so the state ``h`` is the
unreset potential)

.. math::

    u[t] &= \lambda\, h[t-1] + k\, x[t] - \theta\, H(h[t-1] - \theta) \\
    h[t] &= u[t]

with decay :math:`\lambda` (dimensionless, ``decay``), input gain :math:`k` (``1`` when the
decay is given directly, ``1/tau`` in the ``tau`` discretisation ``h + (x - h)/tau``),
threshold :math:`\theta` and reset potential in the units of the input current. ``u`` is
the potential compared with the threshold (what ``return_potential`` gives back). The IF
neuron is :math:`\lambda = 1, k = 1`.

Every parameter (``decay``, ``gain``, ``threshold``, ``v_reset``, ``v_init``) is a Python
float or a tensor that broadcasts against one step ``x[t]`` (shape ``[B, ...]``): ``[C, 1, 1]``
for one value per channel of ``[T, B, C, H, W]``, ``[F]`` for one per neuron of ``[T, B, F]``;
the equations then hold per element. Gradients reach every tensor that requires them, summed
over the broadcast dimensions (the parameter's own shape). Two implementations share this
contract: :func:`lif_reference` (one step at a time, plain autograd; short and obviously
right) and :func:`leansnn.neuron.fused.lif_fused` (whole window in one
``autograd.Function`` with a hand-written BPTT backward, the default).
"""

from __future__ import annotations

import torch

from .surrogate import Surrogate

__all__ = [
    "SpikeFn", "lif_reference", "lif", "check_sequence", "check_param_shapes", "IMPLEMENTATIONS",
    "PARAM_NAMES", "RESETS",
]

RESETS = ("hard", "soft", "subtract_after_decay")


class SpikeFn(torch.autograd.Function):
    """``H(v)`` forward, surrogate derivative backward. ``v = u - threshold``."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.surrogate = surrogate
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(v), None


def check_sequence(x: object, what: str = "neuron input") -> torch.Tensor:
    """Validate a time-major input ``[T, B, ...]`` of floating dtype; return it.

    Raises ``ValueError`` naming what was seen and what was expected. Costs no data pass.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{what}: expected a torch.Tensor of shape [T, B, ...], got {type(x).__name__}"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{what}: expected a time-major tensor [T, B, ...] with at least 2 dims, got shape "
            f"{tuple(x.shape)}; add the time axis first (e.g. x.unsqueeze(0) for one step, or "
            "leansnn.layers.repeat_time(x, T) to repeat a static input)"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{what}: expected a floating-point tensor, got dtype {x.dtype}; convert with "
            "x.float()"
        )
    return x


PARAM_NAMES = ("decay", "gain", "threshold", "v_reset", "v_init")


def check_param_shapes(step_shape: tuple[int, ...] | torch.Size, **params) -> None:
    """Raise ``ValueError`` unless every tensor parameter broadcasts against one step.

    ``step_shape`` is the shape of ``x[t]`` (``[B, ...]``). A parameter may have fewer dims
    and size-1 dims, but never widen the step (the potential keeps the shape of ``x[t]``).
    Shape-only: costs no data pass.
    """
    step_shape = tuple(step_shape)
    for name, p in params.items():
        if not isinstance(p, torch.Tensor) or p.dim() == 0:
            continue
        try:
            ok = torch.broadcast_shapes(p.shape, step_shape) == step_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"neuron parameter {name} of shape {tuple(p.shape)} does not broadcast against "
                f"one time step of the input, shape {step_shape} ([B, ...] of x [T, B, ...]); "
                "use e.g. [C, 1, 1] for one value per channel of [T, B, C, H, W] or [F] for "
                "one value per neuron of [T, B, F]"
            )


def lif_reference(
    x: torch.Tensor,
    *,
    decay: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: Surrogate,
    gain: float | torch.Tensor = 1.0,
    reset: str = "hard",
    v_reset: float | torch.Tensor = 0.0,
    v_init: float | torch.Tensor = 0.0,
    detach_reset: bool = False,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference LIF, one step at a time with plain autograd.

    Args:
        x: input current ``[T, B, ...]``.
        decay, gain, threshold, v_reset, v_init: floats or tensors broadcasting against
            ``x[t]`` (module docstring).
        h0: state ``h[-1]`` ``[B, ...]`` to continue from (replaces ``v_init``).
    Returns:
        ``(s, u, h_last)``: spikes ``[T, B, ...]`` in {0, 1}, potentials ``u`` ``[T, B, ...]``
        and the state after the last step ``[B, ...]``.
    """
    check_param_shapes(x.shape[1:], decay=decay, gain=gain, threshold=threshold,
                       v_reset=v_reset, v_init=v_init)
    if h0 is not None:
        h = h0
    elif isinstance(v_init, torch.Tensor):
        h = torch.zeros_like(x[0]) + v_init
    else:
        h = torch.full_like(x[0], float(v_init))
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    spikes, pots = [], []
    for t in range(x.shape[0]):
        if reset == "subtract_after_decay":  # h is the unreset potential of the last step
            r = SpikeFn.apply(h - threshold, surrogate)
            u = decay * h + gain * x[t] - threshold * (r.detach() if detach_reset else r)
        else:
            u = decay * h + gain * x[t]
        s = SpikeFn.apply(u - threshold, surrogate)
        sr = s.detach() if detach_reset else s
        if reset == "hard":
            h = u * (1 - sr) + v_reset * sr
        elif reset == "soft":
            h = u - threshold * sr
        else:
            h = u
        spikes.append(s)
        pots.append(u)
    return torch.stack(spikes), torch.stack(pots), h


def lif(
    x: torch.Tensor,
    *,
    decay: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: Surrogate,
    gain: float | torch.Tensor = 1.0,
    reset: str = "hard",
    v_reset: float | torch.Tensor = 0.0,
    v_init: float | torch.Tensor = 0.0,
    detach_reset: bool = False,
    h0: torch.Tensor | None = None,
    impl: str = "fused",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-step LIF: dispatch to ``impl`` (``"fused"``, the default, or ``"reference"``).

    Same arguments and returns as :func:`lif_reference`.
    """
    try:
        fn = IMPLEMENTATIONS[impl]
    except KeyError:
        raise ValueError(
            f"unknown implementation {impl!r}; choose from {sorted(IMPLEMENTATIONS)}"
        ) from None
    return fn(
        x,
        decay=decay,
        threshold=threshold,
        surrogate=surrogate,
        gain=gain,
        reset=reset,
        v_reset=v_reset,
        v_init=v_init,
        detach_reset=detach_reset,
        h0=h0,
    )


IMPLEMENTATIONS: dict = {"reference": lif_reference}
