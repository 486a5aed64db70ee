"""leansnn model -> ``nir.NIRGraph``.

A structural walk over the model: neurons (:class:`~leansnn.neuron.SpikingNeuron`),
:class:`~leansnn.layers.TimeFold`, :class:`~leansnn.layers.StaticStem` and plain
``nn.Sequential`` containers are handled by type; any other container is traced with
``torch.fx`` (neurons, time-folds and unknown leaf modules stay leaves), which finds residual
additions and ``torch.flatten`` calls. Every layer NIR cannot express is collected, and one
``ValueError`` names them all with what to do. Nothing is approximated silently.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from ..layers import RepeatTime, StaticStem, TimeFold
from ..neuron import IF, LIF, SpikingNeuron
from ._common import DEFAULT_DT, META_KEY, lif_to_nir_fields, require_nir

__all__ = ["to_nir", "NIRExportError"]


class NIRExportError(ValueError):
    """The model holds layers NIR cannot express; ``.layers`` lists ``(name, reason)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.layers = list(problems)
        lines = [f"  - {name}: {why}" for name, why in problems]
        super().__init__(
            f"cannot export to NIR: {len(problems)} layer(s) have no exact NIR equivalent:\n"
            + "\n".join(lines)
        )


@dataclass(frozen=True)
class _Signal:
    """What flows along the walk: the NIR nodes whose outputs sum to this tensor, and an
    example of one time step of it (``[B, ...]``, used for shapes only)."""

    sources: tuple[str, ...]
    example: torch.Tensor | None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _pair(v) -> np.ndarray:
    if isinstance(v, (tuple, list)):
        return np.array([int(v[0]), int(v[-1])])
    return np.array([int(v), int(v)])


_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_MAPPED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d,
           nn.AdaptiveAvgPool2d, nn.Flatten)


def _same_forward(m: nn.Module, types: tuple) -> bool:
    """``m`` is one of ``types`` and runs that type's own ``forward``."""
    return any(isinstance(m, t) and type(m).forward is t.forward for t in types)


def _known(m: nn.Module) -> bool:
    """Modules the walk handles itself (kept as leaves when tracing a container)."""
    return (type(m) in _MAPPED or _same_forward(m, (TimeFold, StaticStem, RepeatTime,
                                                    *_PASS_THROUGH))
            or (isinstance(m, nn.Sequential) and _check_only_sequential(m)))


def _converted_type():
    try:
        from ..convert.converter import ConvertedSNN
    except ImportError:  # pragma: no cover - conversion package absent
        return None
    return ConvertedSNN


def _serial_type():
    try:
        from ..convert.neurons import SerialIF
    except ImportError:  # pragma: no cover
        return None
    return SerialIF


def _check_only_sequential(m: nn.Module) -> bool:
    """``nn.Sequential`` whose forward only chains children (maybe after input checks)."""
    if type(m).forward is nn.Sequential.forward:
        return True
    try:
        from ..models.snn import SpikingSequential
    except ImportError:  # pragma: no cover
        return False
    return type(m).forward is SpikingSequential.forward


def _refused_type(m: nn.Module) -> str | None:
    """A reason if ``m`` is a leansnn layer NIR cannot express, else ``None``."""
    try:
        from ..attention import ASA
    except ImportError:  # pragma: no cover
        ASA = ()  # noqa: N806
    if ASA and isinstance(m, ASA):
        return (
            "ASA attention computes data-dependent top-k masks over the whole time window and "
            "has no NIR node; train the network without ASA (attention=None) for hardware"
        )
    return None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, SpikingNeuron) or _known(m):
            return True
        if isinstance(m, nn.Sequential):
            return _check_only_sequential(m)
        if _refused_type(m) is not None:
            return True
        return super().is_leaf_module(m, qualname)


class _Builder:
    def __init__(self, dt: float, soft_reset: str) -> None:
        self.nir = require_nir()
        self.dt = float(dt)
        self.soft_reset = soft_reset
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.problems: list[tuple[str, str]] = []
        self.kind: dict[str, str] = {}

    # -- bookkeeping ----------------------------------------------------------------------
    def refuse(self, name: str, why: str, sig: _Signal) -> _Signal:
        self.problems.append((name or "<model>", why))
        return _Signal(sig.sources, None)

    def _unique(self, name: str) -> str:
        base = name or "layer"
        out, i = base, 1
        while out in self.nodes:
            i += 1
            out = f"{base}#{i}"
        return out

    def add(self, name: str, node, sig: _Signal, kind: str, example) -> _Signal:
        key = self._unique(name)
        self.nodes[key] = node
        self.kind[key] = kind
        for s in sig.sources:
            self.edges.append((s, key))
        return _Signal((key,), example)

    def consumers(self, key: str) -> int:
        return sum(1 for a, _ in self.edges if a == key)

    # -- the walk -------------------------------------------------------------------------
    def walk(self, m: nn.Module, name: str, sig: _Signal, frame: bool) -> _Signal:
        why = _refused_type(m)
        if why is not None:
            return self.refuse(name, why, sig)
        from . import _import as imp  # modules from_nir builds: re-export them

        if type(m) is imp.NIRNetwork:
            return self.nir_network(m, name, sig)
        if type(m) in (imp.NeuronArray, imp.LeakyIntegrator):
            return self.state_array(m, name, sig)
        if type(m) is imp.Scale and frame:
            return self.scale(m, name, sig)
        if type(m) is nn.Sequential and len(m) == 2 and type(m[0]) is imp.AddConstant \
                and type(m[1]) in (LIF, IF):  # from_nir's LIF with v_leak
            return self.neuron(m[1], _join(name, "1"), sig, drive_input=m[0].c)
        if isinstance(m, SpikingNeuron):
            return self.neuron(m, name, sig)
        converted = _converted_type()
        if converted is not None and isinstance(m, converted):
            # a converted ANN: its graph runs on [T*B, ...], i.e. per time step
            return self.run_graph(m.net, m.net.graph, _join(name, "net"), sig, frame=True,
                                  folded_neurons=True)
        # exact types (or unchanged forwards) only: a subclass with its own forward is traced,
        # never exported as its parent
        if _same_forward(m, (TimeFold, StaticStem)):
            return self.walk(m.layer, _join(name, "layer"), sig, frame=True)
        if _same_forward(m, (RepeatTime, *_PASS_THROUGH)):
            return sig
        if isinstance(m, nn.Sequential) and _check_only_sequential(m):
            for cname, child in m.named_children():
                sig = self.walk(child, _join(name, cname), sig, frame)
            return sig
        if type(m) in _MAPPED:
            return self.stateless(m, name, sig, frame)
        if type(m).__module__.startswith("torch.nn"):
            return self.refuse(
                name, f"{type(m).__name__} has no NIR equivalent (NIR has affine, convolution, "
                "average/sum pooling, flatten, scale and neuron nodes)", sig)
        return self.trace(m, name, sig, frame)

    def trace(self, m: nn.Module, name: str, sig: _Signal, frame: bool) -> _Signal:
        try:
            graph = _Tracer().trace(m)
        except Exception as e:  # fx raises many types for untraceable code
            return self.refuse(
                name, f"{type(m).__name__} could not be traced with torch.fx ({e}); write its "
                "forward without data-dependent Python control flow", sig)
        return self.run_graph(m, graph, name, sig, frame)

    def run_graph(self, m: nn.Module, graph: fx.Graph, name: str, sig: _Signal, frame: bool,
                  folded_neurons: bool = False) -> _Signal:
        """Walk an fx graph owned by ``m``. ``folded_neurons``: neurons are called with
        ``mode="folded"`` (a converted network, time folded into the batch)."""
        env: dict[fx.Node, object] = {}
        first = True
        for node in graph.nodes:
            where = f"{_join(name, node.name)} ({type(m).__name__}.forward)"
            if node.op == "placeholder":
                if first:
                    env[node] = sig
                    first = False
                elif node.args:  # has a default value: leave it at its default
                    env[node] = None
                else:
                    return self.refuse(where, "forward takes more than one tensor input", sig)
            elif node.op == "call_module":
                sub = m.get_submodule(node.target)
                kwargs = dict(node.kwargs)
                if folded_neurons and isinstance(sub, SpikingNeuron) and \
                        kwargs.get("mode") == "folded":
                    kwargs.pop("mode")
                args = list(node.args)
                if len(args) != 1 or kwargs or not isinstance(env.get(args[0]), _Signal):
                    return self.refuse(_join(name, node.target),
                                       "called with other than one tensor argument", sig)
                env[node] = self.walk(sub, _join(name, node.target), env[args[0]], frame)
            elif node.op in ("call_function", "call_method"):
                if node.target == "size" or node.target is getattr:
                    env[node] = ("size", node)  # only usable as x.view(x.size(0), -1)
                    continue
                out = self.function(node, env, where, frame)
                if out is None:
                    return _Signal(sig.sources, None)
                env[node] = out
            elif node.op == "output":
                res = env.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
                if not isinstance(res, _Signal):
                    return self.refuse(name, "forward must return one tensor", sig)
                return res
            else:
                return self.refuse(where, f"fx operation {node.op} ({node.target}) is not "
                                   "supported (constant tensors have no NIR node)", sig)
        return self.refuse(name, "forward has no output", sig)

    def function(self, node: fx.Node, env: dict, where: str, frame: bool) -> _Signal | None:
        t = node.target
        is_add = t in (operator.add, operator.iadd, torch.add) or t in ("add", "add_", "__add__")
        if is_add:
            args = list(node.args)
            if len(args) == 2 and not node.kwargs and all(
                isinstance(a, fx.Node) and isinstance(env.get(a), _Signal) for a in args
            ):
                a, b = env[args[0]], env[args[1]]
                if set(a.sources) & set(b.sources):
                    self.problems.append((where, "adds a tensor to itself (x + x); NIR sums "
                                          "distinct edges only: use a Scale"))
                    return None
                ex = a.example + b.example if a.example is not None and b.example is not None \
                    else None
                return _Signal(a.sources + b.sources, ex)
            self.problems.append((where, "addition of a constant or with extra arguments has "
                                  "no NIR node (only residual sums of two branches)"))
            return None
        if t in (torch.flatten, "flatten"):
            args = list(node.args)
            src = env.get(args[0]) if args and isinstance(args[0], fx.Node) else None
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
            if isinstance(src, _Signal) and isinstance(start, int) and isinstance(end, int):
                offset = 1 if frame else 2  # leading dims that are not per-sample: B or T, B
                if start >= offset and (end == -1 or end >= start):
                    return self.flatten(where, src, start - offset,
                                        end - offset if end >= 0 else -1)
            self.problems.append((where, "flatten must keep the batch (and time) axes: use "
                                  "torch.flatten(x, 1) inside TimeFold or (x, 2) outside"))
            return None
        if t in ("view", "reshape", torch.reshape) and frame:
            args = list(node.args)
            shape = args[1:] if t != torch.reshape else list(args[1]) if len(args) > 1 else []
            if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
                shape = list(shape[0])
            src = env.get(args[0]) if args and isinstance(args[0], fx.Node) else None
            batch = shape[0] if shape else None
            is_batch = isinstance(batch, fx.Node) and isinstance(env.get(batch), tuple) and \
                batch.args[0] is args[0] and list(batch.args[1:]) in ([0], ["0"])
            if isinstance(src, _Signal) and len(shape) == 2 and is_batch and shape[1] == -1:
                return self.flatten(where, src, 0, -1)
            self.problems.append((where, "view/reshape other than x.view(x.size(0), -1) has no "
                                  "NIR node; use torch.flatten(x, 1)"))
            return None
        tname = getattr(t, "__name__", str(t))
        self.problems.append((where, f"function {tname} has no NIR node; NIR graphs hold only "
                              "affine/conv/pool/flatten layers, sums and neurons"))
        return None

    # -- stateless layers -------------------------------------------------------------------
    def stateless(self, m: nn.Module, name: str, sig: _Signal, frame: bool) -> _Signal:
        nir = self.nir
        ex = sig.example
        if not frame and not isinstance(m, nn.Linear):
            return self.refuse(
                name, f"{type(m).__name__} is applied to the time-major tensor [T, B, ...] "
                "directly; wrap it in leansnn.layers.TimeFold", sig)
        out = None
        if ex is not None:
            with torch.no_grad():
                try:
                    out = m(ex)
                except Exception as e:
                    return self.refuse(name, f"fails on the example input ({e})", sig)
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                return self.refuse(name, f"padding_mode={m.padding_mode!r}: NIR convolutions "
                                   "pad with zeros only", sig)
            pad = m.padding if isinstance(m.padding, str) else tuple(int(p) for p in m.padding)
            bias = m.bias if m.bias is not None else torch.zeros(m.out_channels,
                                                                 dtype=m.weight.dtype)
            node = nir.Conv2d(
                input_shape=tuple(int(v) for v in ex.shape[-2:]) if ex is not None else None,
                weight=_np(m.weight), stride=tuple(int(s) for s in m.stride), padding=pad,
                dilation=tuple(int(d) for d in m.dilation), groups=int(m.groups),
                bias=_np(bias),
            )
            return self.add(name, node, sig, "conv", out)
        if isinstance(m, nn.Linear):
            if m.bias is None:
                node = nir.Linear(weight=_np(m.weight))
                return self.add(name, node, sig, "linear", out)
            node = nir.Affine(weight=_np(m.weight), bias=_np(m.bias))
            return self.add(name, node, sig, "affine", out)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.batchnorm(m, name, sig, out)
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or m.divisor_override is not None or (
                not m.count_include_pad and np.any(_pair(m.padding) > 0)
            ):
                return self.refuse(name, "AvgPool2d with ceil_mode, divisor_override or "
                                   "count_include_pad=False has no NIR equivalent", sig)
            stride = m.stride if m.stride is not None else m.kernel_size
            node = nir.AvgPool2d(kernel_size=_pair(m.kernel_size), stride=_pair(stride),
                                 padding=_pair(m.padding))
            if ex is not None:
                node.input_type = {"input": np.array(ex.shape[1:])}
                node.output_type = {"output": np.array(out.shape[1:])}
            return self.add(name, node, sig, "pool", out)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size if isinstance(m.output_size, (tuple, list)) else \
                (m.output_size, m.output_size)
            hw = tuple(int(v) for v in ex.shape[-2:]) if ex is not None else None
            osz = tuple(hw[i] if size[i] is None else int(size[i]) for i in range(2)) \
                if hw else None
            if hw is None or hw[0] % osz[0] or hw[1] % osz[1]:
                return self.refuse(name, "AdaptiveAvgPool2d whose output size does not divide "
                                   "the input size has no NIR equivalent", sig)
            k = np.array([hw[0] // osz[0], hw[1] // osz[1]])
            node = nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.array([0, 0]))
            node.input_type = {"input": np.array(ex.shape[1:])}
            node.output_type = {"output": np.array(out.shape[1:])}
            return self.add(name, node, sig, "pool", out)
        if isinstance(m, nn.Flatten):
            if m.start_dim < 1 or (m.end_dim >= 0 and m.end_dim < m.start_dim):
                return self.refuse(name, "Flatten must keep the batch axis (start_dim >= 1)", sig)
            end = m.end_dim - 1 if m.end_dim >= 0 else m.end_dim
            return self.flatten(name, sig, m.start_dim - 1, end)
        return self.refuse(name, f"{type(m).__name__} has no NIR equivalent", sig)

    def flatten(self, name: str, sig: _Signal, start: int, end: int) -> _Signal:
        ex = sig.example
        shape = np.array(ex.shape[1:]) if ex is not None else None
        node = self.nir.Flatten(input_type={"input": shape}, start_dim=int(start),
                                end_dim=int(end))
        out = None
        if ex is not None:
            out = torch.flatten(ex, start + 1, end + 1 if end >= 0 else -1)
        return self.add(name, node, sig, "flatten", out)

    def batchnorm(self, m, name: str, sig: _Signal, out) -> _Signal:
        if m.running_mean is None or m.running_var is None:
            return self.refuse(name, "BatchNorm without running statistics "
                               "(track_running_stats=False) normalises with batch statistics, "
                               "which no NIR node computes", sig)
        prev = sig.sources[0] if len(sig.sources) == 1 else None
        if prev is None or self.kind.get(prev) not in ("conv", "linear", "affine") \
                or self.consumers(prev) != 0:
            return self.refuse(name, "BatchNorm must directly follow a Conv2d or Linear layer "
                               "(it is folded into that layer's weights and bias); NIR has no "
                               "batch-norm node", sig)
        nir = self.nir
        node = self.nodes[prev]
        w = torch.as_tensor(node.weight, dtype=torch.float64)
        if isinstance(node, nir.Linear):
            b = torch.zeros(w.shape[0], dtype=torch.float64)
        else:
            b = torch.as_tensor(node.bias, dtype=torch.float64)
        mean = m.running_mean.detach().double().cpu()
        var = m.running_var.detach().double().cpu()
        scale = 1.0 / torch.sqrt(var + m.eps)
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
            new = nir.Conv2d(input_shape=node.input_shape, weight=w2.numpy().astype(dtype),
                             stride=node.stride, padding=node.padding, dilation=node.dilation,
                             groups=node.groups, bias=b2.numpy().astype(dtype), metadata=meta)
            kind = "conv"
        else:
            new = nir.Affine(weight=w2.numpy().astype(dtype), bias=b2.numpy().astype(dtype),
                             metadata=meta)
            kind = "affine"
        self.nodes[prev] = new
        self.kind[prev] = kind
        return _Signal(sig.sources, out)

    # -- neurons ----------------------------------------------------------------------------
    # -- modules built by from_nir -----------------------------------------------------------
    def nir_network(self, m, name: str, sig: _Signal) -> _Signal:
        names = {k: n for n, k in m.nodes.items()}
        env: dict[str, _Signal] = {"__input__": sig}

        def total(keys: list[str]) -> _Signal | None:
            sigs = [env[k] for k in keys]
            srcs = tuple(x for g in sigs for x in g.sources)
            if len(set(srcs)) != len(srcs):
                self.problems.append((name or "<model>", "two inputs of a node resolve to the "
                                      "same NIR node (x + x); NIR sums distinct edges only"))
                return None
            exs = [g.example for g in sigs]
            ex = None if any(e is None for e in exs) else sum(exs[1:], exs[0])
            return _Signal(srcs, ex)

        for key in m.order:
            inp = total(m.preds[key])
            if inp is None:
                return _Signal(sig.sources, None)
            env[key] = self.walk(m.layers[key], _join(name, names.get(key, key)), inp,
                                 frame=False)
        out = total(m.output_preds)
        return out if out is not None else _Signal(sig.sources, None)

    def _arrays(self, m, keys: tuple[str, ...], sig: _Signal) -> dict[str, np.ndarray] | None:
        ex = sig.example
        if ex is None:
            return None
        shape = tuple(ex.shape[1:])
        dtype = np.float64 if ex.dtype == torch.float64 else np.float32
        out = {}
        for k in keys:
            v = getattr(m, k, 0.0)  # neuron protocol values: floats or tensors
            t = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v)
            out[k] = np.broadcast_to(t.cpu().double().numpy(), shape).astype(dtype)
        return out

    def scale(self, m, name: str, sig: _Signal) -> _Signal:
        a = self._arrays(m, ("scale",), sig)
        if a is None:
            return self.refuse(name, "shape unknown", sig)
        return self.add(name, self.nir.Scale(scale=a["scale"]), sig, "scale", sig.example)

    def state_array(self, m, name: str, sig: _Signal) -> _Signal:
        """Per-neuron parameters -> NIR: ``NeuronArray`` or a hard-reset LIF/IF with tensor
        parameters (a ``drive`` it lacks counts as 0), or ``LeakyIntegrator`` (LI/I)."""
        nir = self.nir
        spiking = isinstance(m, SpikingNeuron)
        keys = ("decay", "gain", "drive") + (("threshold", "v_reset") if spiking else ())
        a = self._arrays(m, keys, sig)
        if a is None:
            return self.refuse(name, "shape unknown", sig)
        d, g, c = a["decay"], a["gain"], a["drive"]
        meta = {"layer": type(m).__name__, "dt": self.dt, "spike_condition": "u >= threshold"}
        if np.all(d == 1.0):
            if np.any(c != 0):
                return self.refuse(name, "a non-leaky neuron with a constant drive: NIR's IF "
                                   "and I nodes have no bias term", sig)
            if spiking:
                node = nir.IF(r=g / self.dt, v_threshold=a["threshold"], v_reset=a["v_reset"],
                              metadata={META_KEY: meta})
            else:
                node = nir.I(r=g / self.dt)
        elif np.all(d < 1.0):
            one = (1.0 - d).astype(d.dtype)
            fields = dict(tau=self.dt / one, r=g / one, v_leak=c / one)
            if spiking:
                node = nir.LIF(**fields, v_threshold=a["threshold"], v_reset=a["v_reset"],
                               metadata={META_KEY: meta})
            else:
                node = nir.LI(**fields)
        else:
            return self.refuse(name, "a layer mixing leaky and non-leaky neurons has no single "
                               "NIR node; split it", sig)
        return self.add(name, node, sig, "neuron", sig.example)

    def neuron(self, m: SpikingNeuron, name: str, sig: _Signal,
               drive_input: float = 0.0) -> _Signal:
        serial = _serial_type()
        if serial is not None and type(m) is serial:
            return self.serial_if(m, name, sig)
        if type(m).__name__ == "ParallelIF" and type(m).__module__.startswith("leansnn."):
            return self.refuse(
                name, "ParallelIF (parallel conversion neuron) reads the whole time window: its "
                "spike count depends on the mean input over all T steps, which no causal NIR "
                "neuron can compute; export the serial-IF conversion of the same ANN instead "
                "(ls.convert(ann, T, method='serial'))", sig)
        if type(m) not in (LIF, IF):
            return self.refuse(
                name, f"{type(m).__name__} is not a leansnn LIF/IF neuron; NIR has no node for "
                "it (parallel conversion neurons read the whole time window): export the "
                "serial-IF conversion of the same ANN (ls.convert(ann, T, method='serial'))",
                sig)
        nir = self.nir
        vals = {k: getattr(m, k) for k in ("decay", "gain", "threshold", "v_reset", "v_init")}
        if not all(_scalar(v) for v in vals.values()):
            return self.tensor_neuron(m, name, sig, drive_input)
        decay, gain, theta, v_reset, v_init = (
            float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in vals.values())
        reset = m.reset
        ex = sig.example
        shape = tuple(ex.shape[1:]) if ex is not None else (1,)
        dtype = np.float32 if ex is None or ex.dtype != torch.float64 else np.float64

        def full(v: float) -> np.ndarray:
            return np.full(shape, v, dtype=dtype)

        meta = {
            "layer": type(m).__name__, "decay": decay, "gain": gain, "threshold": theta,
            "reset": reset, "v_reset": v_reset, "v_init": v_init, "dt": self.dt,
            "spike_condition": "u >= threshold",
        }
        drive = gain * float(drive_input)  # per-step constant added to the potential
        if drive != 0.0 and (decay == 1.0 or reset != "hard"):
            return self.refuse(name, "a constant drive (v_leak) on a non-leaky or soft-reset "
                               "neuron has no NIR node", sig)
        if reset == "hard":
            if v_init != 0.0:
                return self.refuse(
                    name, f"initial potential v_init={v_init:g} with hard reset: NIR neurons "
                    "start at 0 and have no initial-state field; use v_init=0", sig)
            if decay == 1.0:
                node = nir.IF(r=full(gain / self.dt), v_threshold=full(theta),
                              v_reset=full(v_reset), metadata={META_KEY: meta})
            else:
                f = lif_to_nir_fields(decay, gain, self.dt)
                node = nir.LIF(tau=full(f["tau"]), r=full(f["r"]),
                               v_leak=full(drive / (1.0 - decay)),
                               v_threshold=full(theta), v_reset=full(v_reset),
                               metadata={META_KEY: meta})
            return self.add(name, node, sig, "neuron", ex)
        # soft reset: no NIR neuron node subtracts the threshold
        if decay != 1.0:
            return self.refuse(
                name, "LIF with soft reset (subtract threshold): NIR's LIF node resets to "
                "v_reset only; train with reset='hard' for hardware (soft reset is exported only "
                "for non-leaky IF neurons, as an exact Integrator + Threshold subgraph)", sig)
        if self.soft_reset != "subgraph":
            return self.refuse(name, _SOFT_ERROR.format(what="IF"), sig)
        return self.soft_subgraph(name, sig, full(gain), full(theta), full(v_init), None,
                                  meta)

    def tensor_neuron(self, m: SpikingNeuron, name: str, sig: _Signal,
                      drive_input: float) -> _Signal:
        """LIF/IF with per-channel or per-neuron parameters: NIR nodes hold one value per
        neuron, so they are exported as arrays (hard reset, or soft-reset IF as a subgraph)."""
        if drive_input != 0.0:
            return self.refuse(name, "a constant drive (v_leak) on a neuron with tensor "
                               "parameters has no NIR node", sig)
        if m.reset == "hard":
            a = self._arrays(m, ("v_init",), sig)
            if a is not None and np.any(a["v_init"] != 0):
                return self.refuse(
                    name, "initial potential v_init != 0 with hard reset: NIR neurons start "
                    "at 0 and have no initial-state field; use v_init=0", sig)
            return self.state_array(m, name, sig)
        a = self._arrays(m, ("decay", "gain", "threshold", "v_init"), sig)
        if a is None:
            return self.refuse(name, "shape unknown", sig)
        if np.any(a["decay"] != 1.0):
            return self.refuse(
                name, "LIF with soft reset (subtract threshold): NIR's LIF node resets to "
                "v_reset only; train with reset='hard' for hardware", sig)
        if self.soft_reset != "subgraph":
            return self.refuse(name, _SOFT_ERROR.format(what="IF"), sig)
        meta = {"layer": type(m).__name__, "reset": "soft", "dt": self.dt,
                "spike_condition": "u >= threshold"}
        return self.soft_subgraph(name, sig, a["gain"], a["threshold"], a["v_init"], None, meta)

    def serial_if(self, m: SpikingNeuron, name: str, sig: _Signal) -> _Signal:
        """``SerialIF``: IF with ``v0 = theta/2``, soft reset, spikes of amplitude ``theta``,
        computed (as leansnn does) on ``x / theta`` against threshold 1."""
        if self.soft_reset != "subgraph":
            return self.refuse(name, _SOFT_ERROR.format(what="SerialIF (serial conversion)"),
                               sig)
        ex = sig.example
        shape = tuple(ex.shape[1:]) if ex is not None else (1,)
        dtype = np.float32 if ex is None or ex.dtype != torch.float64 else np.float64
        th = m.threshold.detach().cpu().double()
        try:
            th_full = th.expand(shape).numpy().astype(dtype)
        except RuntimeError:
            return self.refuse(name, f"threshold of shape {tuple(th.shape)} does not broadcast "
                               f"to the layer shape {shape}", sig)
        ones = np.ones(shape, dtype=dtype)
        meta = {"layer": "SerialIF", "T": int(m.T), "threshold_shape": list(th.shape) or [0],
                "reset": "soft", "dt": self.dt, "spike_condition": "u >= threshold"}
        return self.soft_subgraph(name, sig, (1.0 / th_full).astype(dtype), ones, 0.5 * ones,
                                  th_full, meta)

    def soft_subgraph(self, name: str, sig: _Signal, gain, theta, v_init, amplitude,
                      meta: dict) -> _Signal:
        """Exact soft-reset IF as NIR primitives (arrays of the layer shape).

        ``u[t] = v_init + sum_{k<=t} gain x[k] - theta * (spikes before t)``, fire iff
        ``u >= theta``. An NIR Integrator (starting at 0, ``r = gain/dt``) fed with
        ``x - (theta/gain) s[t-1]`` (the Scale feedback edge; a recurrent edge delivers the
        previous step's spikes, and in continuous time it subtracts theta at the spike
        instant) holds ``u - v_init``; the Threshold node compares it with
        ``theta - v_init``. ``amplitude`` (optional) scales the emitted spikes.
        """
        nir = self.nir
        ex = sig.example
        shape = np.array(np.shape(gain))
        nodes = {
            "input": nir.Input(input_type={"input": shape}),
            "integrator": nir.I(r=(gain / self.dt).astype(gain.dtype)),
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
        sub = nir.NIRGraph(nodes=nodes, edges=edges, metadata={META_KEY: meta},
                           type_check=False)
        sub.input_type = {"input": shape}
        sub.output_type = {"output": shape}
        return self.add(name, sub, sig, "neuron", ex)


_SOFT_ERROR = (
    "{what} with soft reset (subtract threshold): NIR's IF node resets to v_reset only; pass "
    "soft_reset='subgraph' (leansnn export --soft-reset subgraph) to export it exactly as an "
    "Integrator + Threshold subgraph with a -threshold feedback edge (check that your tool "
    "chain accepts I, Threshold and Scale nodes and recurrent edges), or use reset='hard'"
)


def _scalar(v) -> bool:
    return not isinstance(v, torch.Tensor) or v.numel() == 1


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a else str(b)


def _input_is_static(model: nn.Module, x: torch.Tensor) -> bool:
    """True if ``x`` is a static ``[B, ...]`` input the model repeats over time itself."""
    converted = _converted_type()
    for m in model.modules():
        if converted is not None and isinstance(m, converted):
            return m.input_dims is not None and x.dim() == m.input_dims
        if isinstance(m, (StaticStem, RepeatTime)):
            return x.dim() == m.static_dims
        if isinstance(m, (SpikingNeuron, TimeFold)):
            return False
    return False


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
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive time step in seconds, got {dt!r}")
    if not isinstance(example_input, torch.Tensor):
        raise ValueError(
            f"example_input must be a torch.Tensor, got {type(example_input).__name__}"
        )
    static = _input_is_static(model, example_input)
    if not static and example_input.dim() < 2:
        raise ValueError(
            f"example_input must be time-major [T, B, ...], got shape {tuple(example_input.shape)}"
        )
    frame0 = example_input if static else example_input[0]
    frame0 = frame0.detach()
    b = _Builder(dt, soft_reset)
    b.nodes["input"] = nir.Input(input_type={"input": np.array(frame0.shape[1:])})
    b.kind["input"] = "input"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = b.walk(model, "", _Signal(("input",), frame0), frame=False)
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
