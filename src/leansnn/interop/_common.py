"""Shared pieces of the NIR exporter and importer: the lazy ``nir`` import and the mapping.

The discretisation both directions use (forward Euler with step ``dt``, input current held
constant over the step, the usual convention of snnTorch and SpikingJelly) is::

    NIR LIF   tau dv/dt = (v_leak - v) + r I        v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t]
                                                          + (dt/tau) v_leak
    NIR IF        dv/dt = r I                       v[t] = v[t-1] + dt r I[t]
    leansnn       u[t] = decay h[t-1] + gain x[t]

so ``decay = 1 - dt/tau``, ``gain = r dt/tau`` (LIF) or ``gain = r dt`` (IF), and back
``tau = dt/(1 - decay)``, ``r = gain/(1 - decay)`` (LIF) or ``r = gain/dt`` (IF).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "require_nir", "DEFAULT_DT", "META_KEY", "lif_to_nir_fields", "nir_lif_to_leansnn",
    "nir_if_to_leansnn", "strict_threshold", "uniform",
]

DEFAULT_DT = 1e-4
"""Default time step in seconds: the value snnTorch and SpikingJelly export with."""

META_KEY = "leansnn"
"""Node / graph metadata key under which leansnn records its exact (unrounded) parameters."""


def require_nir():
    """Import and return the ``nir`` package, or raise a clear ``ImportError``."""
    try:
        import nir
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "NIR interchange needs the optional package 'nir'; install it "
            'with: pip install "leansnn[nir]"'
        ) from e
    return nir


def lif_to_nir_fields(decay: float, gain: float, dt: float) -> dict[str, float]:
    """leansnn ``(decay, gain)`` with ``decay < 1`` -> NIR LIF ``tau`` [s] and ``r``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"LIF decay must lie in [0, 1) for a NIR LIF node, got {decay}")
    return {"tau": dt / (1.0 - decay), "r": gain / (1.0 - decay)}


def nir_lif_to_leansnn(tau: float, r: float, v_leak: float, dt: float) -> dict[str, float]:
    """NIR LIF ``(tau, r, v_leak)`` -> leansnn ``decay``, ``gain`` and a constant drive per step.

    ``drive`` is added to the potential every step: ``(dt/tau) v_leak``.
    """
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"NIR LIF tau must be a finite positive time constant, got {tau}")
    if dt > tau:
        raise ValueError(
            f"time step dt={dt:g} s is larger than the membrane time constant tau={tau:g} s: "
            "forward Euler would give a negative decay; pass a smaller dt to from_nir"
        )
    a = dt / tau
    return {"decay": 1.0 - a, "gain": r * a, "drive": a * v_leak}


def nir_if_to_leansnn(r: float, dt: float) -> dict[str, float]:
    """NIR IF/I ``r`` -> leansnn ``gain`` (decay 1)."""
    return {"decay": 1.0, "gain": r * dt}


def strict_threshold(theta: np.ndarray | float) -> float:
    """Smallest float32 above ``theta``: ``u >= strict_threshold(t)`` is ``u > t`` in float32.

    NIR fires when ``v > v_threshold``; leansnn when ``u >= threshold``.
    """
    t = np.float32(theta)
    return float(np.nextafter(t, np.float32(np.inf)))


def uniform(arr, what: str, layer: str) -> float:
    """The single value of a NIR parameter array whose neurons share it.

    The importer calls it only after checking that the values agree (layers whose neurons
    differ become tensor-parameter modules: ``NeuronArray``, ``LeakyIntegrator``, an ``IF``
    with tensor parameters); a ``ValueError`` here means a caller skipped that check.
    """
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"NIR node {layer!r}: parameter {what} is empty")
    v = float(a.reshape(-1)[0])
    if not np.all(a == v):
        raise ValueError(
            f"NIR node {layer!r}: parameter {what} differs between neurons (min {a.min():g}, "
            f"max {a.max():g}) where one shared value was expected; per-neuron values are "
            "imported as tensor parameters (NeuronArray), so please report this graph"
        )
    return v
