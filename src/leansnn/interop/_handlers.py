"""The built-in NIR export table: one handler per module type.

| module type | handler | NIR |
|---|---|---|
| ``nn.Conv2d`` | :func:`conv2d` | ``Conv2d`` |
| ``nn.Linear`` | :func:`linear` | ``Affine`` / ``Linear`` |
| ``nn.BatchNorm1d/2d`` | :func:`batchnorm` | folded into the preceding conv / linear node |
| ``nn.AvgPool2d`` / ``nn.AdaptiveAvgPool2d`` | :func:`avgpool2d` / ... | ``AvgPool2d`` |
| ``nn.Flatten`` | :func:`flatten` | ``Flatten`` |
| ``nn.Sequential``, ``SpikingSequential`` | :func:`sequential` | children in order |
| ``TimeFold``, ``StaticStem`` | :func:`time_fold` | the wrapped layer, per step |
| ``RepeatTime``, ``nn.Identity``, ``nn.Dropout*`` | :func:`identity` | nothing |
| ``ls.LIF``, ``ls.IF`` | :func:`lif` | ``LIF`` / ``IF`` / soft-reset subgraph |
| ``SerialIF`` | :func:`serial_if` | soft-reset subgraph with spike amplitude |
| ``ParallelIF``, ``ASA`` | refusals | -- |
| ``ConvertedSNN`` | :func:`converted_snn` | its ANN graph, per step |
| ``NIRNetwork``, ``NeuronArray``, ``LeakyIntegrator``, ``Scale`` | ... | (``from_nir``'s) |

Subclasses that keep the registered type's ``forward`` use its handler (``_context``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..attention import ASA
from ..convert.converter import ConvertedSNN
from ..convert.neurons import ParallelIF, SerialIF
from ..layers import RepeatTime, StaticStem, TimeFold
from ..models.snn import SpikingSequential
from ..neuron import IF, LIF, SpikingNeuron
from . import _import as imp
from ._common import META_KEY, lif_to_nir_fields
from ._context import NIRExportContext, NIRSignal, join, register_nir_handler

__all__ = ["soft_reset_subgraph"]

Ctx = NIRExportContext


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _pair(v) -> np.ndarray:
    if isinstance(v, (tuple, list)):
        return np.array([int(v[0]), int(v[-1])])
    return np.array([int(v), int(v)])


# -- stateless layers ---------------------------------------------------------------------------
def _run(ctx: Ctx, m: nn.Module, name: str, sig: NIRSignal):
    """``(output example, None)`` or ``(None, refused signal)`` for a stateless layer."""
    if not ctx.time_folded and not isinstance(m, nn.Linear):
        return None, ctx.refuse(
            name, f"{type(m).__name__} is applied to the time-major tensor [T, B, ...] "
            "directly; wrap it in leansnn.layers.TimeFold", sig)
    if sig.example is None:
        return None, None
    with torch.no_grad():
        try:
            return m(sig.example), None
        except Exception as e:
            return None, ctx.refuse(name, f"fails on the example input ({e})", sig)


@register_nir_handler(nn.Conv2d)
def conv2d(ctx: Ctx, m: nn.Conv2d, name: str, sig: NIRSignal) -> NIRSignal:
    out, refused = _run(ctx, m, name, sig)
    if refused is not None:
        return refused
    if m.padding_mode != "zeros":
        return ctx.refuse(name, f"padding_mode={m.padding_mode!r}: NIR convolutions pad with "
                          "zeros only", sig)
    ex = sig.example
    pad = m.padding if isinstance(m.padding, str) else tuple(int(p) for p in m.padding)
    bias = m.bias if m.bias is not None else torch.zeros(m.out_channels, dtype=m.weight.dtype)
    weight, meta = m.weight.detach(), {}
    if m.groups > 1:
        # nir takes weight.shape[1] as the input channels, so a grouped weight fails its type
        # check (nir.read refuses the file): write the equal dense block-diagonal weight and
        # record the groups, which from_nir restores
        weight, meta = ungroup_weight(weight, int(m.groups)), {META_KEY: {"groups": m.groups}}
    node = ctx.nir.Conv2d(
        input_shape=tuple(int(v) for v in ex.shape[-2:]) if ex is not None else None,
        weight=_np(weight), stride=tuple(int(s) for s in m.stride), padding=pad,
        dilation=tuple(int(d) for d in m.dilation), groups=1, bias=_np(bias), metadata=meta,
    )
    return ctx.add(name, node, sig, out)


def ungroup_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """The dense ``[C_out, C_in, kh, kw]`` weight (zeros between the groups) of a grouped
    convolution's ``[C_out, C_in / groups, kh, kw]`` weight: the same convolution."""
    out_c, in_g = w.shape[0], w.shape[1]
    out_g = out_c // groups
    dense = w.new_zeros(out_c, in_g * groups, *w.shape[2:])
    for g in range(groups):
        dense[g * out_g:(g + 1) * out_g, g * in_g:(g + 1) * in_g] = w[g * out_g:(g + 1) * out_g]
    return dense


@register_nir_handler(nn.Linear)
def linear(ctx: Ctx, m: nn.Linear, name: str, sig: NIRSignal) -> NIRSignal:
    out, refused = _run(ctx, m, name, sig)
    if refused is not None:
        return refused
    if m.bias is None:
        return ctx.add(name, ctx.nir.Linear(weight=_np(m.weight)), sig, out)
    return ctx.add(name, ctx.nir.Affine(weight=_np(m.weight), bias=_np(m.bias)), sig, out)


@register_nir_handler(nn.AvgPool2d)
def avgpool2d(ctx: Ctx, m: nn.AvgPool2d, name: str, sig: NIRSignal) -> NIRSignal:
    out, refused = _run(ctx, m, name, sig)
    if refused is not None:
        return refused
    if m.ceil_mode or m.divisor_override is not None or (
        not m.count_include_pad and np.any(_pair(m.padding) > 0)
    ):
        return ctx.refuse(name, "AvgPool2d with ceil_mode, divisor_override or "
                          "count_include_pad=False has no NIR equivalent", sig)
    stride = m.stride if m.stride is not None else m.kernel_size
    node = ctx.nir.AvgPool2d(kernel_size=_pair(m.kernel_size), stride=_pair(stride),
                             padding=_pair(m.padding))
    if sig.example is not None:
        node.input_type = {"input": np.array(sig.example.shape[1:])}
        node.output_type = {"output": np.array(out.shape[1:])}
    return ctx.add(name, node, sig, out)


@register_nir_handler(nn.AdaptiveAvgPool2d)
def adaptive_avgpool2d(ctx: Ctx, m: nn.AdaptiveAvgPool2d, name: str, sig: NIRSignal
                       ) -> NIRSignal:
    out, refused = _run(ctx, m, name, sig)
    if refused is not None:
        return refused
    ex = sig.example
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else \
        (m.output_size, m.output_size)
    hw = tuple(int(v) for v in ex.shape[-2:]) if ex is not None else None
    osz = tuple(hw[i] if size[i] is None else int(size[i]) for i in range(2)) if hw else None
    if hw is None or hw[0] % osz[0] or hw[1] % osz[1]:
        return ctx.refuse(name, "AdaptiveAvgPool2d whose output size does not divide the "
                          "input size has no NIR equivalent", sig)
    k = np.array([hw[0] // osz[0], hw[1] // osz[1]])
    node = ctx.nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.array([0, 0]))
    node.input_type = {"input": np.array(ex.shape[1:])}
    node.output_type = {"output": np.array(out.shape[1:])}
    return ctx.add(name, node, sig, out)


@register_nir_handler(nn.Flatten)
def flatten(ctx: Ctx, m: nn.Flatten, name: str, sig: NIRSignal) -> NIRSignal:
    _, refused = _run(ctx, m, name, sig)
    if refused is not None:
        return refused
    if m.start_dim < 1 or (m.end_dim >= 0 and m.end_dim < m.start_dim):
        return ctx.refuse(name, "Flatten must keep the batch axis (start_dim >= 1)", sig)
    end = m.end_dim - 1 if m.end_dim >= 0 else m.end_dim
    return ctx.flatten(name, sig, m.start_dim - 1, end)


@register_nir_handler(nn.BatchNorm1d)
@register_nir_handler(nn.BatchNorm2d)
def batchnorm(ctx: Ctx, m: nn.modules.batchnorm._BatchNorm, name: str, sig: NIRSignal
              ) -> NIRSignal:
    """Eval-mode BatchNorm right after a conv / linear node: folded into its weights."""
    out, refused = _run(ctx, m, name, sig)
    if refused is not None:
        return refused
    if m.running_mean is None or m.running_var is None:
        return ctx.refuse(name, "BatchNorm without running statistics "
                          "(track_running_stats=False) normalises with batch statistics, "
                          "which no NIR node computes", sig)
    nir = ctx.nir
    prev = sig.sources[0] if len(sig.sources) == 1 else None
    if prev is None or not isinstance(ctx.nodes.get(prev), (nir.Conv2d, nir.Linear, nir.Affine)) \
            or ctx.consumers(prev) != 0:
        return ctx.refuse(name, "BatchNorm must directly follow a Conv2d or Linear layer (it "
                          "is folded into that layer's weights and bias); NIR has no "
                          "batch-norm node", sig)
    ctx.nodes[prev] = _fold_batchnorm(nir, ctx.nodes[prev], m, name)
    return NIRSignal(sig.sources, out)


def _fold_batchnorm(nir, node, m, name: str):
    """``W' = W g/sqrt(var + eps)``, ``b' = (b - mean) g/sqrt(var + eps) + beta``."""
    w = torch.as_tensor(node.weight, dtype=torch.float64)
    if isinstance(node, nir.Linear):
        b = torch.zeros(w.shape[0], dtype=torch.float64)
    else:
        b = torch.as_tensor(node.bias, dtype=torch.float64)
    mean = m.running_mean.detach().double().cpu()
    scale = 1.0 / torch.sqrt(m.running_var.detach().double().cpu() + m.eps)
    if m.affine:
        scale = scale * m.weight.detach().double().cpu()
        shift = m.bias.detach().double().cpu()
    else:
        shift = torch.zeros_like(mean)
    w2 = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b2 = (b - mean) * scale + shift
    dtype = np.asarray(node.weight).dtype
    meta = dict(node.metadata)
    meta["folded_batchnorm"] = name
    if isinstance(node, nir.Conv2d):
        return nir.Conv2d(input_shape=node.input_shape, weight=w2.numpy().astype(dtype),
                          stride=node.stride, padding=node.padding, dilation=node.dilation,
                          groups=node.groups, bias=b2.numpy().astype(dtype), metadata=meta)
    return nir.Affine(weight=w2.numpy().astype(dtype), bias=b2.numpy().astype(dtype),
                      metadata=meta)


# -- containers ---------------------------------------------------------------------------------
@register_nir_handler(nn.Sequential)
@register_nir_handler(SpikingSequential)
def sequential(ctx: Ctx, m: nn.Sequential, name: str, sig: NIRSignal) -> NIRSignal:
    """Children in order. ``from_nir``'s LIF with ``v_leak`` (``AddConstant`` then the
    neuron) becomes one LIF node with that leak again."""
    if type(m) is nn.Sequential and len(m) == 2 and type(m[0]) is imp.AddConstant \
            and type(m[1]) in (LIF, IF):
        return _lif(ctx, m[1], join(name, "1"), sig, drive_input=m[0].c)
    for cname, child in m.named_children():
        sig = ctx.walk(child, join(name, cname), sig)
    return sig


@register_nir_handler(TimeFold)
@register_nir_handler(StaticStem)
def time_fold(ctx: Ctx, m: nn.Module, name: str, sig: NIRSignal) -> NIRSignal:
    """The wrapped stateless layers, applied to one step ``[B, ...]``. A ``StaticStem``'s
    graph is fed with the repeated image: exact, since the stem is stateless."""
    return ctx.walk(m.layer, join(name, "layer"), sig, time_folded=True)


@register_nir_handler(RepeatTime)
@register_nir_handler(nn.Identity)
@register_nir_handler(nn.Dropout)
@register_nir_handler(nn.Dropout1d)
@register_nir_handler(nn.Dropout2d)
@register_nir_handler(nn.Dropout3d)
def identity(ctx: Ctx, m: nn.Module, name: str, sig: NIRSignal) -> NIRSignal:
    """Transparent in eval mode (dropout off; the NIR input is already one step)."""
    return sig


@register_nir_handler(ConvertedSNN)
def converted_snn(ctx: Ctx, m: ConvertedSNN, name: str, sig: NIRSignal) -> NIRSignal:
    """A converted ANN: its graph runs on ``[T*B, ...]``, i.e. per time step."""
    ctx.time_folded = True  # restored by the walk that called this handler
    return ctx._run_graph(m.net, m.net.graph, join(name, "net"), sig, folded_neurons=True)


# -- refusals -----------------------------------------------------------------------------------
@register_nir_handler(ASA)
def asa(ctx: Ctx, m: nn.Module, name: str, sig: NIRSignal) -> NIRSignal:
    return ctx.refuse(
        name, "ASA attention computes data-dependent top-k masks over the whole time window "
        "and has no NIR node; train the network without ASA (attention=None) for hardware",
        sig)


@register_nir_handler(ParallelIF)
def parallel_if(ctx: Ctx, m: nn.Module, name: str, sig: NIRSignal) -> NIRSignal:
    return ctx.refuse(
        name, "ParallelIF (parallel conversion neuron) reads the whole time window: its spike "
        "count depends on the mean input over all T steps, which no causal NIR neuron can "
        "compute; export the serial-IF conversion of the same ANN instead "
        "(ls.convert(ann, T, method='serial'))", sig)


# -- neurons ------------------------------------------------------------------------------------
_SOFT_ERROR = (
    "{what} with soft reset (subtract threshold): NIR's IF node resets to v_reset only; pass "
    "soft_reset='subgraph' (leansnn export --soft-reset subgraph) to export it exactly as an "
    "Integrator + Threshold subgraph with a -threshold feedback edge (check that your tool "
    "chain accepts I, Threshold and Scale nodes and recurrent edges), or use reset='hard'"
)
_SOFT_LIF = (
    "LIF with soft reset (subtract threshold): NIR's LIF node resets to v_reset only; train "
    "with reset='hard' for hardware"
)


def _scalar(v) -> bool:
    return not isinstance(v, torch.Tensor) or v.numel() == 1


def _float(v) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


@register_nir_handler(LIF)
@register_nir_handler(IF)
def lif(ctx: Ctx, m: LIF, name: str, sig: NIRSignal) -> NIRSignal:
    """LIF/IF dynamics read through the neuron protocol (``decay``, ``gain``, ``threshold``,
    ``reset``, ``v_reset``, ``v_init``, ``spike_amplitude``): hard reset -> ``LIF`` / ``IF``
    node, non-leaky soft reset -> the exact Integrator + Threshold subgraph."""
    return _lif(ctx, m, name, sig)


def _lif(ctx: Ctx, m: LIF, name: str, sig: NIRSignal, drive_input: float = 0.0) -> NIRSignal:
    if m.reset not in ("hard", "soft"):
        return ctx.refuse(name, f"reset={m.reset!r} (subtract the threshold after the decay, "
                          "as snnTorch's 'subtract') has no NIR equivalent: NIR's LIF/IF nodes "
                          "reset to v_reset, and the soft-reset subgraph subtracts before the "
                          "decay; use reset='hard' (or 'soft' on a non-leaky IF)", sig)
    vals = {k: getattr(m, k) for k in ("decay", "gain", "threshold", "v_reset", "v_init")}
    amp = m.spike_amplitude
    if not all(_scalar(v) for v in (*vals.values(), amp)):
        return _tensor_lif(ctx, m, name, sig, drive_input)
    decay, gain, theta, v_reset, v_init = (_float(v) for v in vals.values())
    amp = _float(amp)
    meta = {
        "layer": "IF" if isinstance(m, IF) else "LIF", "decay": decay, "gain": gain,
        "threshold": theta, "reset": m.reset, "v_reset": v_reset, "v_init": v_init,
        "dt": ctx.dt, "spike_condition": "u >= threshold",
    }
    if type(m) not in (LIF, IF):
        meta["class"] = type(m).__qualname__
    drive = gain * float(drive_input)  # per-step constant added to the potential
    if drive != 0.0 and (decay == 1.0 or m.reset != "hard"):
        return ctx.refuse(name, "a constant drive (v_leak) on a non-leaky or soft-reset "
                          "neuron has no NIR node", sig)
    if m.reset == "hard":
        if v_init != 0.0:
            return ctx.refuse(
                name, f"initial potential v_init={v_init:g} with hard reset: NIR neurons start "
                "at 0 and have no initial-state field; use v_init=0", sig)
        full = lambda v: ctx.full(v, sig)  # noqa: E731
        if decay == 1.0:
            node = ctx.nir.IF(r=full(gain / ctx.dt), v_threshold=full(theta),
                              v_reset=full(v_reset), metadata={META_KEY: meta})
        else:
            f = lif_to_nir_fields(decay, gain, ctx.dt)
            node = ctx.nir.LIF(tau=full(f["tau"]), r=full(f["r"]),
                               v_leak=full(drive / (1.0 - decay)), v_threshold=full(theta),
                               v_reset=full(v_reset), metadata={META_KEY: meta})
        return _amplitude(ctx, name, ctx.add(name, node, sig), amp)
    if decay != 1.0:  # soft reset: no NIR neuron node subtracts the threshold
        return ctx.refuse(name, _SOFT_LIF + " (soft reset is exported only for non-leaky IF "
                          "neurons, as an exact Integrator + Threshold subgraph)", sig)
    if ctx.soft_reset != "subgraph":
        return ctx.refuse(name, _SOFT_ERROR.format(what="IF"), sig)
    return soft_reset_subgraph(ctx, name, sig, ctx.full(gain, sig), ctx.full(theta, sig),
                               ctx.full(v_init, sig), None if amp == 1.0 else
                               ctx.full(amp, sig), meta)


def _amplitude(ctx: Ctx, name: str, out: NIRSignal, amp) -> NIRSignal:
    """Spikes of amplitude ``amp`` != 1: a ``Scale`` node after the neuron."""
    if isinstance(amp, float) and amp == 1.0:
        return out
    return ctx.add(join(name, "amplitude"), ctx.nir.Scale(scale=ctx.full(amp, out)), out)


def _tensor_lif(ctx: Ctx, m: LIF, name: str, sig: NIRSignal, drive_input: float) -> NIRSignal:
    """LIF/IF with per-channel or per-neuron parameters: NIR nodes hold one value per
    neuron, so they are exported as arrays (hard reset, or soft-reset IF as a subgraph)."""
    if drive_input != 0.0:
        return ctx.refuse(name, "a constant drive (v_leak) on a neuron with tensor parameters "
                          "has no NIR node", sig)
    if sig.example is None:
        return ctx.refuse(name, "shape unknown", sig)
    try:
        a = {k: ctx.full(getattr(m, k), sig) for k in ("decay", "gain", "threshold", "v_init")}
        amp = m.spike_amplitude
        amp = None if _scalar(amp) and _float(amp) == 1.0 else ctx.full(amp, sig)
    except ValueError as e:
        return ctx.refuse(name, str(e), sig)
    if m.reset == "hard":
        if np.any(a["v_init"] != 0):
            return ctx.refuse(
                name, "initial potential v_init != 0 with hard reset: NIR neurons start at 0 "
                "and have no initial-state field; use v_init=0", sig)
        out = state_array(ctx, m, name, sig)
        return out if amp is None or out.example is None else _amplitude(ctx, name, out, amp)
    if np.any(a["decay"] != 1.0):
        return ctx.refuse(name, _SOFT_LIF, sig)
    if ctx.soft_reset != "subgraph":
        return ctx.refuse(name, _SOFT_ERROR.format(what="IF"), sig)
    meta = {"layer": type(m).__name__, "reset": "soft", "dt": ctx.dt,
            "spike_condition": "u >= threshold"}
    return soft_reset_subgraph(ctx, name, sig, a["gain"], a["threshold"], a["v_init"], amp, meta)


@register_nir_handler(SerialIF)
def serial_if(ctx: Ctx, m: SerialIF, name: str, sig: NIRSignal) -> NIRSignal:
    """``SerialIF`` (an IF with ``v_init = theta/2``, soft reset, spikes of amplitude theta)
    in the normalised form the importer recognises: the same dynamics divided by theta
    (``r = 1/(theta dt)``, Threshold 1/2, feedback ``-theta``, amplitude ``theta``)."""
    if ctx.soft_reset != "subgraph":
        return ctx.refuse(name, _SOFT_ERROR.format(what="SerialIF (serial conversion)"), sig)
    dtype = sig.dtype
    th = m.threshold.detach().cpu().double()
    try:
        th_full = th.expand(sig.shape or (1,)).numpy().astype(dtype)
    except RuntimeError:
        return ctx.refuse(name, f"threshold of shape {tuple(th.shape)} does not broadcast to "
                          f"the layer shape {sig.shape or (1,)}", sig)
    ones = np.ones(th_full.shape, dtype=dtype)
    meta = {"layer": "SerialIF", "T": int(m.T), "threshold_shape": list(th.shape) or [0],
            "reset": "soft", "dt": ctx.dt, "spike_condition": "u >= threshold"}
    return soft_reset_subgraph(ctx, name, sig, (1.0 / th_full).astype(dtype), ones, 0.5 * ones,
                               th_full, meta)


def soft_reset_subgraph(ctx: Ctx, name: str, sig: NIRSignal, gain, theta, v_init, amplitude,
                        meta: dict) -> NIRSignal:
    """Exact soft-reset IF as NIR primitives (arrays of the layer shape).

    ``u[t] = v_init + sum_{k<=t} gain x[k] - theta * (spikes before t)``, fire iff
    ``u >= theta``. An NIR Integrator (starting at 0, ``r = gain/dt``) fed with
    ``x - (theta/gain) s[t-1]`` (the Scale feedback edge; a recurrent edge delivers the
    previous step's spikes, and in continuous time it subtracts theta at the spike
    instant) holds ``u - v_init``; the Threshold node compares it with
    ``theta - v_init``. ``amplitude`` (optional) scales the emitted spikes.
    """
    nir = ctx.nir
    shape = np.array(np.shape(gain))
    nodes = {
        "input": nir.Input(input_type={"input": shape}),
        "integrator": nir.I(r=(gain / ctx.dt).astype(gain.dtype)),
        "threshold": nir.Threshold(threshold=(theta - v_init).astype(gain.dtype)),
        "reset": nir.Scale(scale=(-theta / gain).astype(gain.dtype)),
        "output": nir.Output(output_type={"output": shape}),
    }
    edges = [("input", "integrator"), ("integrator", "threshold"), ("threshold", "reset"),
             ("reset", "integrator")]
    if amplitude is not None:
        nodes["amplitude"] = nir.Scale(scale=amplitude)
        edges += [("threshold", "amplitude"), ("amplitude", "output")]
    else:
        edges.append(("threshold", "output"))
    sub = nir.NIRGraph(nodes=nodes, edges=edges, metadata={META_KEY: meta}, type_check=False)
    sub.input_type = {"input": shape}
    sub.output_type = {"output": shape}
    return ctx.add(name, sub, sig)


# -- modules built by from_nir ------------------------------------------------------------------
@register_nir_handler(imp.NIRNetwork)
def nir_network(ctx: Ctx, m: imp.NIRNetwork, name: str, sig: NIRSignal) -> NIRSignal:
    names = {k: n for n, k in m.nodes.items()}
    env: dict[str, NIRSignal] = {"__input__": sig}

    def total(keys: list[str]) -> NIRSignal | None:
        sigs = [env[k] for k in keys]
        srcs = tuple(x for g in sigs for x in g.sources)
        if len(set(srcs)) != len(srcs):
            ctx.problems.append((name or "<model>", "two inputs of a node resolve to the same "
                                 "NIR node (x + x); NIR sums distinct edges only"))
            return None
        exs = [g.example for g in sigs]
        ex = None if any(e is None for e in exs) else sum(exs[1:], exs[0])
        return NIRSignal(srcs, ex)

    for key in m.order:
        inp = total(m.preds[key])
        if inp is None:
            return NIRSignal(sig.sources, None)
        env[key] = ctx.walk(m.layers[key], join(name, names.get(key, key)), inp,
                            time_folded=False)
    out = total(m.output_preds)
    return out if out is not None else NIRSignal(sig.sources, None)


@register_nir_handler(imp.Scale)
def scale(ctx: Ctx, m: imp.Scale, name: str, sig: NIRSignal) -> NIRSignal:
    if not ctx.time_folded:
        return ctx.refuse(name, "Scale is applied to the time-major tensor [T, B, ...] "
                          "directly; wrap it in leansnn.layers.TimeFold", sig)
    if sig.example is None:
        return ctx.refuse(name, "shape unknown", sig)
    return ctx.add(name, ctx.nir.Scale(scale=ctx.full(m.scale, sig)), sig)


@register_nir_handler(imp.NeuronArray)
@register_nir_handler(imp.LeakyIntegrator)
def state_array(ctx: Ctx, m: nn.Module, name: str, sig: NIRSignal) -> NIRSignal:
    """Per-neuron parameters -> NIR: ``NeuronArray`` or a hard-reset LIF/IF with tensor
    parameters (a ``drive`` it lacks counts as 0), or ``LeakyIntegrator`` (LI/I)."""
    nir = ctx.nir
    spiking = isinstance(m, SpikingNeuron)
    if sig.example is None:
        return ctx.refuse(name, "shape unknown", sig)
    keys = ("decay", "gain", "drive") + (("threshold", "v_reset") if spiking else ())
    a = {k: ctx.full(getattr(m, k, 0.0), sig) for k in keys}
    d, g, c = a["decay"], a["gain"], a["drive"]
    meta = {"layer": type(m).__name__, "dt": ctx.dt, "spike_condition": "u >= threshold"}
    if np.all(d == 1.0):
        if np.any(c != 0):
            return ctx.refuse(name, "a non-leaky neuron with a constant drive: NIR's IF and I "
                              "nodes have no bias term", sig)
        if spiking:
            node = nir.IF(r=g / ctx.dt, v_threshold=a["threshold"], v_reset=a["v_reset"],
                          metadata={META_KEY: meta})
        else:
            node = nir.I(r=g / ctx.dt)
    elif np.all(d < 1.0):
        one = (1.0 - d).astype(d.dtype)
        fields = dict(tau=ctx.dt / one, r=g / one, v_leak=c / one)
        if spiking:
            node = nir.LIF(**fields, v_threshold=a["threshold"], v_reset=a["v_reset"],
                           metadata={META_KEY: meta})
        else:
            node = nir.LI(**fields)
    else:
        return ctx.refuse(name, "a layer mixing leaky and non-leaky neurons has no single NIR "
                          "node; split it", sig)
    return ctx.add(name, node, sig)
