"""leansnn model -> ``nir.NIRGraph``.

A structural walk over the model through a table from module type to handler
(:mod:`._handlers` holds the built-in ones, :func:`register_nir_handler` adds yours): neurons,
``TimeFold``, ``StaticStem``, ``nn.Sequential``, conv/linear/pool layers, converted networks
and the modules ``from_nir`` builds each have one. A module without a handler is traced with
``torch.fx`` (handled modules stay leaves), which finds residual additions and
``torch.flatten`` calls. Every layer NIR cannot express is collected, and one ``ValueError``
names them all with what to do. Nothing is approximated silently.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from ..base.batching import input_is_static as _input_is_static
from . import _handlers  # noqa: F401  (registers the built-in handlers)
from ._common import DEFAULT_DT, META_KEY, require_nir
from ._context import NIRExportContext, NIRSignal

__all__ = ["to_nir", "NIRExportError", "input_is_static"]


class NIRExportError(ValueError):
    """The model holds layers NIR cannot express; ``.layers`` lists ``(name, reason)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.layers = list(problems)
        lines = [f"  - {name}: {why}" for name, why in problems]
        super().__init__(
            f"cannot export to NIR: {len(problems)} layer(s) have no exact NIR equivalent:\n"
            + "\n".join(lines)
        )


def input_is_static(model: nn.Module, x: torch.Tensor) -> bool:
    """True if ``x`` is a static ``[B, ...]`` input that ``model`` repeats over time itself
    (a converted network, a ``StaticStem`` / ``RepeatTime`` first, or a ``from_nir`` network
    built with ``T=``), False if it is the time-major ``[T, B, ...]`` input."""
    return bool(_input_is_static(model, x))


def to_nir(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    dt: float = DEFAULT_DT,
    soft_reset: str = "subgraph",
):
    """Export a leansnn model to a ``nir.NIRGraph`` (one NIR node per layer).

    Args:
        model: a network of LIF/IF neurons, conv/linear layers (BatchNorm folded in),
            average pooling, flatten and residual additions (see ``docs/nir.md``).
        example_input: what ``model`` takes: ``[T, B, ...]`` or, for directly encoded models
            (``StaticStem``/``RepeatTime`` first), a static ``[B, ...]``. Used for shapes only.
        dt: the time step in seconds that one leansnn step stands for. NIR neurons are
            continuous-time; the parameters are written so that forward Euler with this
            ``dt`` reproduces leansnn's dynamics exactly (``tau = dt/(1 - decay)``,
            ``r = gain/(1 - decay)``; IF ``r = gain/dt``). Default 1e-4 s, as snnTorch and
            SpikingJelly.
        soft_reset: ``"subgraph"`` (default) exports soft-reset IF neurons (serial-IF
            conversion) exactly as an Integrator + Threshold subgraph with a ``-threshold``
            feedback edge; ``"error"`` refuses them (for tool chains that accept only IF/LIF
            nodes).

    Returns:
        ``nir.NIRGraph`` whose input is one time step ``[...]`` of the (repeated) input and
        whose output is the model's output at that step. The model is exported in eval mode
        (BatchNorm running statistics, dropout off).

    Raises:
        NIRExportError (a ``ValueError``): naming every layer NIR cannot express and what to
        do (ASA, parallel neurons, soft-reset LIF, BatchNorm not after a conv/linear, ...).
    """
    nir = require_nir()
    if soft_reset not in ("subgraph", "error"):
        raise ValueError(f"soft_reset must be 'subgraph' or 'error', got {soft_reset!r}")
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) \
            or not dt > 0:
        raise ValueError(f"dt must be a finite positive time step in seconds, got {dt!r}")
    dt = float(dt)
    if not isinstance(example_input, torch.Tensor):
        raise ValueError(
            f"example_input must be a torch.Tensor, got {type(example_input).__name__}"
        )
    static = input_is_static(model, example_input)
    if not static and example_input.dim() < 2:
        raise ValueError(
            f"example_input must be time-major [T, B, ...], got shape {tuple(example_input.shape)}"
        )
    frame0 = example_input if static else example_input[0]
    frame0 = frame0.detach()
    b = NIRExportContext(dt, soft_reset)
    b.nodes["input"] = nir.Input(input_type={"input": np.array(frame0.shape[1:])})
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = b.walk(model, "", NIRSignal(("input",), frame0), time_folded=False)
    finally:
        model.train(was_training)
    if b.problems:
        raise NIRExportError(b.problems)
    out_shape = np.array(out.example.shape[1:])
    b.nodes["output"] = nir.Output(output_type={"output": out_shape})
    for s in out.sources:
        b.edges.append((s, "output"))
    from ..base.version import __version__

    meta = {META_KEY: {"version": __version__, "dt": float(dt),
                       "input": "one time step of the time-major input",
                       "model": type(model).__name__}}
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=meta, type_check=True)
