"""The NIR export table (module type -> handler) and the context handlers write through.

A handler is ``fn(ctx, module, name, signal) -> signal``: it receives the module, its
qualified name and the :class:`NIRSignal` flowing into it, emits NIR nodes with
:meth:`NIRExportContext.add` (or recurses into children with :meth:`NIRExportContext.walk`,
or refuses with :meth:`NIRExportContext.refuse`) and returns the signal flowing out.

Lookup follows the module type's MRO: a subclass uses the handler of its nearest registered
ancestor **only if it keeps that ancestor's** ``forward``. A subclass with its own ``forward``
computes something else, so it is never exported as its parent: a neuron is refused by name
(register a handler for it), any other module is traced with ``torch.fx``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from ..neuron import SpikingNeuron
from ._common import require_nir

__all__ = [
    "NIRSignal", "NIRExportContext", "register_nir_handler", "unregister_nir_handler",
    "find_nir_handler",
]


@dataclass(frozen=True)
class NIRSignal:
    """What flows along the export walk: the tensor a module receives.

    ``sources``: the NIR nodes whose outputs sum to this tensor (several after a residual
    addition). ``example``: one time step of it, ``[B, ...]`` (shapes and dtype only), or
    ``None`` once something upstream was refused.
    """

    sources: tuple[str, ...]
    example: torch.Tensor | None

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Per-sample shape (no batch, no time): the shape of a NIR parameter array."""
        return None if self.example is None else tuple(int(s) for s in self.example.shape[1:])

    @property
    def dtype(self) -> type:
        """numpy dtype for parameter arrays: float64 for a float64 model, else float32."""
        ex = self.example
        return np.float64 if ex is not None and ex.dtype == torch.float64 else np.float32


Handler = Callable[["NIRExportContext", nn.Module, str, NIRSignal], NIRSignal]
_HANDLERS: dict[type, Handler] = {}


def register_nir_handler(module_type: type, *, replace: bool = False) -> Callable:
    """Decorator: export modules of ``module_type`` with ``fn(ctx, module, name, signal)``.

    Subclasses of ``module_type`` that keep its ``forward`` use the handler too. Registering a
    second handler for the same type raises unless ``replace=True`` (which also overrides a
    built-in handler). Returns ``fn`` unchanged::

        @ls.interop.register_nir_handler(MyNeuron)
        def export_my_neuron(ctx, m, name, signal):
            node = ctx.nir.IF(r=ctx.full(1.0 / ctx.dt, signal),
                              v_threshold=ctx.full(m.threshold, signal),
                              v_reset=ctx.full(0.0, signal))
            return ctx.add(name, node, signal)
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_nir_handler needs an nn.Module subclass, got {module_type!r}")

    def deco(fn: Handler) -> Handler:
        if not callable(fn):
            raise TypeError(f"a NIR handler must be callable, got {fn!r}")
        old = _HANDLERS.get(module_type)
        if old is not None and old is not fn and not replace:
            raise ValueError(
                f"{module_type.__qualname__} already has a NIR handler ({old.__qualname__}); "
                "pass replace=True to override it"
            )
        _HANDLERS[module_type] = fn
        return fn

    return deco


def unregister_nir_handler(module_type: type) -> Handler | None:
    """Remove the handler registered for exactly ``module_type``; returns it (or ``None``)."""
    return _HANDLERS.pop(module_type, None)


def _registered_ancestor(module_type: type) -> type | None:
    return next((k for k in module_type.__mro__ if k in _HANDLERS), None)


def find_nir_handler(module_type: type) -> Handler | None:
    """The handler that exports ``module_type``: its own, or that of the nearest registered
    ancestor whose ``forward`` it keeps; ``None`` if there is none."""
    k = _registered_ancestor(module_type)
    if k is None or (k is not module_type and module_type.forward is not k.forward):
        return None
    return _HANDLERS[k]


def _how_to_register(t: type) -> str:
    k = _registered_ancestor(t)
    parent = f" It subclasses {k.__name__} but has its own forward, so it is not exported " \
        f"as a {k.__name__}." if k is not None and k is not t else ""
    return (f"{parent} To export it, register a handler: "
            f"@leansnn.interop.register_nir_handler({t.__name__}) on a function "
            "fn(ctx, module, name, signal) -> signal (docs/nir.md)")


class _Tracer(fx.Tracer):
    """Keeps neurons and every module with a NIR handler as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, SpikingNeuron) or find_nir_handler(type(m)) is not None:
            return True
        return super().is_leaf_module(m, qualname)


def join(a: str, b: str) -> str:
    """Qualified name of child ``b`` of the module named ``a``."""
    return f"{a}.{b}" if a else str(b)


class NIRExportContext:
    """What a handler writes through (one per :func:`to_nir` call).

    Attributes (read only): ``nir`` (the ``nir`` package), ``dt`` (seconds per leansnn step),
    ``soft_reset`` (``"subgraph"`` or ``"error"``), ``time_folded`` (True when the module is
    applied to one step ``[B, ...]`` -- inside ``TimeFold`` or a converted network -- False
    when it receives the time-major ``[T, B, ...]`` tensor), ``nodes`` (name -> NIR node
    written so far).

    Methods: :meth:`add` a node, :meth:`refuse` a layer with a reason, :meth:`walk` a child
    module (through the handler table), :meth:`trace` a module's ``forward`` with
    ``torch.fx``, :meth:`full` to broadcast a parameter to the layer's shape.
    """

    join = staticmethod(join)

    def __init__(self, dt: float, soft_reset: str) -> None:
        self.nir = require_nir()
        self.dt = float(dt)
        self.soft_reset = soft_reset
        self.time_folded = False
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.problems: list[tuple[str, str]] = []

    # -- the public handler API -----------------------------------------------------------
    def add(self, name: str, node, signal: NIRSignal, example: torch.Tensor | None = None
            ) -> NIRSignal:
        """Add NIR ``node`` under ``name`` (made unique) fed by ``signal``; returns its output.

        ``example``: one step of the node's output ``[B, ...]``; default: the input example
        (right for neurons and other shape-preserving nodes).
        """
        key = self._unique(name)
        self.nodes[key] = node
        for s in signal.sources:
            self.edges.append((s, key))
        return NIRSignal((key,), signal.example if example is None else example)

    def refuse(self, name: str, reason: str, signal: NIRSignal) -> NIRSignal:
        """Record that layer ``name`` cannot be exported, and why / what to do. The export
        goes on (to report every problem in one error) with an unknown output shape."""
        self.problems.append((name or "<model>", reason))
        return NIRSignal(signal.sources, None)

    def walk(self, module: nn.Module, name: str, signal: NIRSignal, *,
             time_folded: bool | None = None) -> NIRSignal:
        """Export ``module`` (named ``name``) fed by ``signal`` through its handler; without
        one, neurons are refused and other modules traced. ``time_folded``: set it for this
        module and its children (``True`` inside a ``TimeFold``); default unchanged."""
        outer = self.time_folded
        if time_folded is not None:
            self.time_folded = bool(time_folded)
        try:
            fn = find_nir_handler(type(module))
            if fn is None:
                return self._unhandled(module, name, signal)
            out = fn(self, module, name, signal)
            if not isinstance(out, NIRSignal):
                raise TypeError(f"NIR handler {getattr(fn, '__qualname__', fn)!r} for "
                                f"{type(module).__name__} returned {type(out).__name__}, "
                                "not the NIRSignal from ctx.add / ctx.walk / ctx.refuse")
            return out
        finally:
            self.time_folded = outer

    def trace(self, module: nn.Module, name: str, signal: NIRSignal) -> NIRSignal:
        """Export ``module`` by tracing its ``forward`` with ``torch.fx``: children are
        walked, residual additions become two edges, ``torch.flatten`` a Flatten node."""
        try:
            graph = _Tracer().trace(module)
        except Exception as e:  # fx raises many types for untraceable code
            return self.refuse(
                name, f"{type(module).__name__} could not be traced with torch.fx ({e}); write "
                "its forward without data-dependent Python control flow, or register a NIR "
                f"handler for it (leansnn.interop.register_nir_handler({type(module).__name__}))",
                signal)
        return self._run_graph(module, graph, name, signal)

    def full(self, value, signal: NIRSignal) -> np.ndarray:
        """``value`` (a float or a tensor broadcasting against one step) as an array of the
        layer's per-sample shape, in the signal's dtype. ``ValueError`` if it does not
        broadcast; ``None`` shape (refused upstream) gives shape ``(1,)``."""
        shape = signal.shape or (1,)
        if isinstance(value, torch.Tensor):
            a = value.detach().cpu().double().numpy()
        else:
            a = np.asarray(value, dtype=np.float64)
        try:
            return np.broadcast_to(a, shape).astype(signal.dtype)
        except ValueError:
            raise ValueError(f"a parameter of shape {tuple(a.shape)} does not broadcast to "
                             f"the layer shape {shape}") from None

    # -- internals ---------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        base = name or "layer"
        out, i = base, 1
        while out in self.nodes:
            i += 1
            out = f"{base}#{i}"
        return out

    def consumers(self, key: str) -> int:
        """How many edges leave node ``key`` so far."""
        return sum(1 for a, _ in self.edges if a == key)

    def _unhandled(self, m: nn.Module, name: str, sig: NIRSignal) -> NIRSignal:
        t = type(m)
        if isinstance(m, SpikingNeuron):
            return self.refuse(
                name, f"{t.__name__} is a spiking neuron without a NIR handler; NIR has LIF/IF "
                "nodes for ls.LIF / ls.IF (parallel conversion neurons read the whole time "
                "window: export the serial-IF conversion of the same ANN, ls.convert(ann, T, "
                f"method='serial')).{_how_to_register(t)}", sig)
        if t.__module__.startswith("torch.nn"):
            return self.refuse(
                name, f"{t.__name__} has no NIR equivalent (NIR has affine, convolution, "
                "average/sum pooling, flatten, scale and neuron nodes)", sig)
        return self.trace(m, name, sig)

    def _run_graph(self, m: nn.Module, graph: fx.Graph, name: str, sig: NIRSignal,
                   folded_neurons: bool = False) -> NIRSignal:
        """Walk an fx graph owned by ``m``. ``folded_neurons``: neurons are called with
        ``mode="folded"`` (a converted network, time folded into the batch)."""
        env: dict[fx.Node, object] = {}
        first = True
        for node in graph.nodes:
            where = f"{join(name, node.name)} ({type(m).__name__}.forward)"
            if node.op == "placeholder":
                if first:
                    env[node], first = sig, False
                elif node.args:  # has a default value: leave it at its default
                    env[node] = None
                else:
                    return self.refuse(where, "forward takes more than one tensor input", sig)
            elif node.op == "call_module":
                out = self._call_module(m, node, env, name, folded_neurons)
                if out is None:
                    return self.refuse(join(name, node.target),
                                       "called with other than one tensor argument", sig)
                env[node] = out
            elif node.op in ("call_function", "call_method"):
                if node.target == "size" or node.target is getattr:
                    env[node] = ("size", node)  # only usable as x.view(x.size(0), -1)
                    continue
                out = _function(self, node, env, where)
                if out is None:
                    return NIRSignal(sig.sources, None)
                env[node] = out
            elif node.op == "output":
                res = env.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
                if not isinstance(res, NIRSignal):
                    return self.refuse(name, "forward must return one tensor", sig)
                return res
            else:
                return self.refuse(where, f"fx operation {node.op} ({node.target}) is not "
                                   "supported (constant tensors have no NIR node)", sig)
        return self.refuse(name, "forward has no output", sig)

    def _call_module(self, m: nn.Module, node: fx.Node, env: dict, name: str,
                     folded_neurons: bool) -> NIRSignal | None:
        sub = m.get_submodule(node.target)
        kwargs = dict(node.kwargs)
        if folded_neurons and isinstance(sub, SpikingNeuron) and kwargs.get("mode") == "folded":
            kwargs.pop("mode")
        args = list(node.args)
        if len(args) != 1 or kwargs or not isinstance(env.get(args[0]), NIRSignal):
            return None
        return self.walk(sub, join(name, node.target), env[args[0]])

    def flatten(self, name: str, sig: NIRSignal, start: int, end: int) -> NIRSignal:
        """A NIR ``Flatten`` over per-sample dims ``start..end`` (no batch/time axes)."""
        ex = sig.example
        shape = np.array(ex.shape[1:]) if ex is not None else None
        node = self.nir.Flatten(input_type={"input": shape}, start_dim=int(start),
                                end_dim=int(end))
        out = None
        if ex is not None:
            out = torch.flatten(ex, start + 1, end + 1 if end >= 0 else -1)
        return self.add(name, node, sig, out)


# -- functions met while tracing: residual additions, flatten, x.view(x.size(0), -1) -------------
def _function(ctx: NIRExportContext, node: fx.Node, env: dict, where: str) -> NIRSignal | None:
    t = node.target
    if t in (operator.add, operator.iadd, torch.add) or t in ("add", "add_", "__add__"):
        return _add(ctx, node, env, where)
    if t in (torch.flatten, "flatten"):
        return _flatten_call(ctx, node, env, where)
    if t in ("view", "reshape", torch.reshape) and ctx.time_folded:
        return _view_call(ctx, node, env, where)
    tname = getattr(t, "__name__", str(t))
    ctx.problems.append((where, f"function {tname} has no NIR node; NIR graphs hold only "
                         "affine/conv/pool/flatten layers, sums and neurons"))
    return None


def _add(ctx: NIRExportContext, node: fx.Node, env: dict, where: str) -> NIRSignal | None:
    args = list(node.args)
    if len(args) == 2 and not node.kwargs and all(
        isinstance(a, fx.Node) and isinstance(env.get(a), NIRSignal) for a in args
    ):
        a, b = env[args[0]], env[args[1]]
        if set(a.sources) & set(b.sources):
            ctx.problems.append((where, "adds a tensor to itself (x + x); NIR sums distinct "
                                 "edges only: use a Scale"))
            return None
        ex = a.example + b.example if a.example is not None and b.example is not None \
            else None
        return NIRSignal(a.sources + b.sources, ex)
    ctx.problems.append((where, "addition of a constant or with extra arguments has no NIR "
                         "node (only residual sums of two branches)"))
    return None


def _flatten_call(ctx: NIRExportContext, node: fx.Node, env: dict, where: str
                  ) -> NIRSignal | None:
    args = list(node.args)
    src = env.get(args[0]) if args and isinstance(args[0], fx.Node) else None
    start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
    if isinstance(src, NIRSignal) and isinstance(start, int) and isinstance(end, int):
        offset = 1 if ctx.time_folded else 2  # leading dims that are not per-sample
        if start >= offset and (end == -1 or end >= start):
            return ctx.flatten(where, src, start - offset, end - offset if end >= 0 else -1)
    ctx.problems.append((where, "flatten must keep the batch (and time) axes: use "
                         "torch.flatten(x, 1) inside TimeFold or (x, 2) outside"))
    return None


def _view_call(ctx: NIRExportContext, node: fx.Node, env: dict, where: str) -> NIRSignal | None:
    t = node.target
    args = list(node.args)
    shape = args[1:] if t != torch.reshape else list(args[1]) if len(args) > 1 else []
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = list(shape[0])
    src = env.get(args[0]) if args and isinstance(args[0], fx.Node) else None
    batch = shape[0] if shape else None
    is_batch = isinstance(batch, fx.Node) and isinstance(env.get(batch), tuple) and \
        batch.args[0] is args[0] and list(batch.args[1:]) in ([0], ["0"])
    if isinstance(src, NIRSignal) and len(shape) == 2 and is_batch and shape[1] == -1:
        return ctx.flatten(where, src, 0, -1)
    ctx.problems.append((where, "view/reshape other than x.view(x.size(0), -1) has no NIR "
                         "node; use torch.flatten(x, 1)"))
    return None
