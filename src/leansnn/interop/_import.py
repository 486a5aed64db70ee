"""``nir.NIRGraph`` (or a file written by ``nir.write``) -> a time-major leansnn module.

Nested sub-graphs are inlined; the exact soft-reset motif leansnn writes for serial-IF neurons
(Integrator -> Threshold -> negative Scale back into the Integrator) becomes an ``ls.IF`` with
``reset="soft"``; every other node is mapped one to one. The result, :class:`NIRNetwork`,
evaluates the graph over a whole window ``[T, B, ...]``: stateless nodes fold T into the batch
(:class:`~leansnn.layers.TimeFold`), neurons are ``ls.LIF`` / ``ls.IF`` modules.

NIR fires when ``v > v_threshold``, leansnn when ``u >= threshold``: a foreign graph's
thresholds are therefore raised to the next float32 (:func:`strict_threshold`), which makes
the two comparisons identical in float32. Graphs written by leansnn carry their exact
parameters in node metadata (``metadata["leansnn"]``); they are used only when they agree
with the NIR fields, so an edited graph is never overridden by stale metadata.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import Counter

import numpy as np
import torch
from torch import nn

from ..layers import TimeFold, repeat_time
from ..neuron import IF, LIF
from ..neuron import surrogate as sg
from ..neuron.functional import check_sequence
from ._common import (
    DEFAULT_DT,
    META_KEY,
    nir_if_to_leansnn,
    nir_lif_to_leansnn,
    require_nir,
    strict_threshold,
    uniform,
)
from ._validate import check_edges, check_inputs, check_shapes, normalise_node

__all__ = ["from_nir", "NIRNetwork", "LeakyIntegrator", "NeuronArray", "AddConstant", "Scale"]


class LeakyIntegrator(nn.Module):
    """Non-spiking readout (NIR ``LI`` / ``I``): ``v[t] = decay v[t-1] + gain x[t] + drive``.

    ``[T, B, ...] -> [T, B, ...]`` (the potential at every step), from ``v[-1] = 0``.
    Parameters are floats or tensors of the per-sample shape (one value per neuron).
    """

    def __init__(self, decay, gain, drive=0.0) -> None:
        super().__init__()
        for k, v in (("decay", decay), ("gain", gain), ("drive", drive)):
            self.register_buffer(k, torch.as_tensor(v, dtype=torch.float64).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence(x, "LeakyIntegrator input")
        v = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            v = self.decay * v + self.gain * x[t] + self.drive
            out.append(v)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={_desc(getattr(self, k))}" for k in ("decay", "gain", "drive"))


def _desc(t: torch.Tensor) -> str:
    return f"{float(t):g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"


class NeuronArray(LIF):
    """Hard-reset LIF/IF layer whose parameters differ between neurons (from a NIR graph).

    An ``ls.LIF`` with tensor parameters of the per-sample shape plus a constant ``drive``:
    ``u[t] = decay h[t-1] + gain x[t] + drive``; ``s[t] = [u[t] >= threshold]``;
    ``h[t] = v_reset`` after a spike, else ``u[t]``; from ``h[-1] = 0``. The drive enters
    as the input offset ``drive / gain``. Shapes: ``[T, B, ...] -> [T, B, ...]`` spikes in
    {0, 1}; surrogate ``ATan(alpha=2)``. Layers whose neurons share their parameters become
    ``ls.LIF`` / ``ls.IF`` instead.
    """

    def __init__(self, decay, gain, threshold, v_reset, drive=0.0) -> None:
        def t(v) -> torch.Tensor:
            return torch.as_tensor(v, dtype=torch.float64).clone()

        super().__init__(decay=t(decay), gain=t(gain), threshold=t(threshold), reset="hard",
                         v_reset=t(v_reset), surrogate=sg.ATan(alpha=2.0))
        self.register_buffer("drive", t(drive))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence(x, "NeuronArray input")
        if bool((self.drive != 0).any()):
            x = x + self.drive / self.gain
        return super().forward(x)

    def to_config(self) -> dict:
        cfg = {k: v for k, v in super().to_config().items()
               if k in ("decay", "gain", "threshold", "v_reset")}
        return dict(cfg, drive={"tensor": list(self.drive.shape)})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={_desc(torch.as_tensor(getattr(self, k)))}"
                         for k in ("decay", "gain", "threshold", "v_reset", "drive"))


class AddConstant(nn.Module):
    """``x + c`` (NIR ``v_leak`` drive expressed as an input offset)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = float(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c


class Scale(nn.Module):
    """Element-wise scale (NIR ``Scale``); ``scale`` has the per-sample shape."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class NIRNetwork(nn.Module):
    """A NIR graph evaluated over time: input ``[T, B, *input_shape]`` -> output ``[T, B, ...]``.

    With ``T`` set, a static ``[B, *input_shape]`` input is repeated over ``T`` steps (direct
    encoding). ``layers`` holds one module per NIR node (``nodes`` maps the NIR node name to
    its key); a node's input is the sum of its predecessors' outputs.
    """

    def __init__(self, layers: dict[str, nn.Module], names: dict[str, str],
                 preds: dict[str, list[str]], order: list[str], output_preds: list[str],
                 input_shape: tuple[int, ...], T: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.nodes = dict(names)
        self.preds = {k: list(v) for k, v in preds.items()}
        self.order = list(order)
        self.output_preds = list(output_preds)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.T = T

    def takes_static_input(self, x: torch.Tensor) -> bool:
        """True for a static ``[B, *input_shape]`` input (repeated over ``T``; needs ``T``)."""
        return self.T is not None and x.dim() == len(self.input_shape) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"NIRNetwork input: expected a torch.Tensor, got {type(x).__name__}")
        n = len(self.input_shape)
        if x.dim() == n + 1 and self.T is not None:
            x = repeat_time(x, self.T)
        check_sequence(x, "NIRNetwork input")
        if x.dim() != n + 2 or tuple(x.shape[2:]) != self.input_shape:
            hint = "" if self.T is not None else " (pass T= to from_nir to repeat static inputs)"
            raise ValueError(
                f"NIRNetwork input: expected [T, B, {', '.join(map(str, self.input_shape))}], "
                f"got shape {tuple(x.shape)}{hint}"
            )
        values: dict[str, torch.Tensor] = {"__input__": x}

        def gather(srcs: list[str]) -> torch.Tensor:
            out = values[srcs[0]]
            for s in srcs[1:]:
                out = out + values[s]
            return out

        for key in self.order:
            values[key] = self.layers[key](gather(self.preds[key]))
        return gather(self.output_preds)


def _key(name: str, used: set[str]) -> str:
    k = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "node"
    if k[0].isdigit():
        k = "n" + k
    base, i = k, 1
    while k in used:
        i += 1
        k = f"{base}_{i}"
    used.add(k)
    return k


def _meta(m) -> dict:
    """The leansnn metadata dict of a node (after an HDF5 round trip values are numpy)."""
    if not isinstance(m, dict):
        return {}
    d = m.get(META_KEY)
    if not isinstance(d, dict):
        return {}
    out = {}
    for k, v in d.items():
        if isinstance(v, bytes):
            v = v.decode("utf8")
        elif isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _inline(nir, graph, prefix: str = ""):
    """Flatten nested graphs. Returns nodes, edges, group metadata and pass-through names."""
    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    group_meta: dict[str, dict] = {}
    passes: set[str] = set()
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    _raise_if(check_edges(graph.nodes, graph.edges, prefix))
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise ValueError(f"NIR sub-graph {full!r} must have one Input and one Output node")
            n2, e2, g2, p2 = _inline(nir, node, full + ".")
            nodes.update(n2)
            edges.extend(e2)
            group_meta.update(g2)
            passes |= p2
            for k in node.nodes:
                group_meta.setdefault(full + "." + k, _meta(node.metadata))
            passes |= {full + "." + ins[0], full + "." + outs[0]}
            entry[full] = full + "." + ins[0]
            exit_[full] = full + "." + outs[0]
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a2 = exit_.get(prefix + a, prefix + a)
        b2 = entry.get(prefix + b, prefix + b)
        edges.append((a2, b2))
    return nodes, edges, group_meta, passes


def _contract(nodes: dict, edges: list, passes: set[str]) -> list[tuple[str, str]]:
    for p in passes:
        ins = [a for a, b in edges if b == p]
        outs = [b for a, b in edges if a == p]
        edges = [(a, b) for a, b in edges if a != p and b != p]
        edges += [(a, c) for a in ins for c in outs]
        nodes.pop(p, None)
    return edges


def _topo(names: list[str], preds: dict[str, list[str]]) -> list[str]:
    indeg = {n: len(set(preds[n])) for n in names}
    users: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for p in set(preds[n]):
            if p in users:
                users[p].append(n)
            else:
                indeg[n] -= 1  # the graph input
    ready = [n for n in names if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for u in users[n]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if len(order) != len(names):
        stuck = sorted(set(names) - set(order))
        raise ValueError(
            f"NIR graph has a recurrent cycle through {stuck}; leansnn imports feed-forward "
            "graphs (and the soft-reset Integrator/Threshold motif) only"
        )
    return order


def from_nir(graph_or_path, *, dt: float | None = None, T: int | None = None,
             dtype: torch.dtype = torch.float32) -> NIRNetwork:
    """Import a NIR graph as a time-major leansnn module (:class:`NIRNetwork`).

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
        dt: the time step in seconds used to discretise NIR's continuous-time neurons with
            forward Euler: ``decay = 1 - dt/tau``, ``gain = r dt/tau`` (LIF), ``gain = r dt``
            (IF). Default: the ``dt`` leansnn recorded when it wrote the graph, else 1e-4 s
            (the value snnTorch and SpikingJelly export with).
        T: if given, a static ``[B, ...]`` input is repeated over ``T`` steps.
        dtype: parameter dtype of the returned module.

    Returns:
        ``NIRNetwork``: ``[T, B, *input_shape] -> [T, B, *output_shape]``.

    Raises:
        ValueError naming every node leansnn cannot represent (CubaLIF, Delay, recurrent
        cycles other than the soft-reset motif, ...) or that is inconsistent: edges to
        missing nodes, nodes without input, non-numeric or non-finite parameters, parameter
        sizes or declared input/output types that disagree with the shapes along the edges.
        Integer arrays are converted to floats; a missing bias is zero. All of this is
        checked before the network is returned.
    """
    nir = require_nir()
    graph = _read(nir, graph_or_path)
    where = "dt"
    if dt is None:
        dt, where = _meta(graph.metadata).get("dt", DEFAULT_DT), "the dt recorded in the graph"
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) \
            or not dt > 0:
        raise ValueError(f"{where} must be a finite positive time step in seconds, got {dt!r}"
                         + ("; pass dt= to from_nir" if where != "dt" else ""))
    dt = float(dt)
    if T is not None and (isinstance(T, bool) or not isinstance(T, numbers.Integral)
                          or T < 1):
        raise ValueError(f"T must be a positive int or None, got {T!r}")
    T = None if T is None else int(T)
    nodes, edges, group_meta, inp, outp = _flat_graph(nir, graph)
    problems: list[tuple[str, str]] = []
    for name, node in list(nodes.items()):  # numbers only, finite, missing biases as zeros
        try:
            nodes[name] = normalise_node(name, node)
        except ValueError as e:
            problems.append((name, f"{type(node).__name__}: {e}"))
    _raise_if(problems)
    # the soft-reset motif first (it is the only cycle leansnn reads), then node by node
    edges, modules = _merge_soft_reset_motifs(nir, nodes, edges, group_meta, dt, problems)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        preds[b].append(a)
    for n, c in Counter(edges).items():
        if c > 1:
            problems.append((f"{n[0]} -> {n[1]}", "duplicate edge"))
    for name, node in nodes.items():
        if name in modules or isinstance(node, (nir.Input, nir.Output)):
            continue
        try:
            modules[name] = _node_module(nir, node, dt, group_meta.get(name, {}), name)
        except (ValueError, NotImplementedError) as e:
            problems.append((name, str(e)))
    compute = [n for n in nodes if n not in (inp, outp)]
    problems += check_inputs(preds, compute, outp)
    _raise_if(problems)
    net = _assemble(nodes, preds, modules, inp, outp, T).to(dtype)
    _raise_if(check_shapes(net, nodes, inp, outp, dtype))
    return net


def _raise_if(problems: list[tuple[str, str]]) -> None:
    """One ``ValueError`` listing every problem, each naming its node."""
    if problems:
        lines = "\n".join(f"  - {n}: {w}" for n, w in problems)
        raise ValueError(f"cannot import this NIR graph into leansnn:\n{lines}")


def _read(nir, graph_or_path):
    """The ``nir.NIRGraph`` given, or read from the path given."""
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = os.fspath(graph_or_path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"NIR file {path} is a folder; give the file nir.write "
                                    "wrote")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"NIR file {path} does not exist")
        try:
            graph = nir.read(path)
        except Exception as e:
            raise ValueError(f"{path} could not be read as a NIR file (nir.read: {e})") from None
    else:
        graph = graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"expected a nir.NIRGraph or a path, got {type(graph).__name__}")
    return graph


def _flat_graph(nir, graph):
    """Nested graphs inlined: nodes, edges, group metadata, the Input and the Output node."""
    nodes, edges, group_meta, passes = _inline(nir, graph)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input) and k not in passes]
    outputs = [k for k, v in nodes.items() if isinstance(v, nir.Output) and k not in passes]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"leansnn imports graphs with one Input and one Output node, found inputs "
            f"{inputs} and outputs {outputs}"
        )
    edges = _contract(nodes, edges, passes)
    return nodes, edges, group_meta, inputs[0], outputs[0]


def _motif(nir, nodes: dict, edges: list, bname: str) -> tuple[str, str] | None:
    """``(integrator, feedback)`` names if Threshold ``bname`` closes the soft-reset motif
    integrator -> threshold -> negative scale -> integrator, else ``None``."""
    apreds = [a for a, b in edges if b == bname]
    if len(apreds) != 1 or not isinstance(nodes.get(apreds[0]), nir.I):
        return None
    aname = apreds[0]
    fb = [c for a, c in edges if a == bname and isinstance(nodes[c], (nir.Scale, nir.Linear))
          and [x for x, y in edges if y == c] == [bname]
          and [y for x, y in edges if x == c] == [aname]]
    return (aname, fb[0]) if len(fb) == 1 else None


def _motif_module(nir, nodes: dict, edges: list, names: tuple[str, str, str], gm: dict,
                  dt: float) -> tuple[nn.Module, list[str]]:
    """The neuron a motif stands for, and the nodes it replaces (``SerialIF`` when leansnn
    wrote it as one, with its amplitude Scale; else a soft-reset ``IF``)."""
    aname, bname, cname = names
    group = [aname, bname, cname]
    if gm.get("layer") == "SerialIF":  # leansnn's own serial-conversion neuron
        amp = [d for a, d in edges if a == bname and d != cname
               and isinstance(nodes[d], nir.Scale) and [x for x, y in edges if y == d] == [bname]]
        if len(amp) == 1:
            mod = _serial_if(nir, nodes[aname], nodes[bname], nodes[cname], nodes[amp[0]], dt, gm)
            if mod is not None:
                return mod, group + [amp[0]]
    return _soft_if(nir, nodes[aname], nodes[bname], nodes[cname], dt, gm, bname), group


def _merge_soft_reset_motifs(nir, nodes: dict, edges: list, group_meta: dict, dt: float,
                             problems: list) -> tuple[list, dict[str, nn.Module]]:
    """Replace each soft-reset motif by one node (in ``nodes``, in place) whose module is
    the neuron; returns the new edges and ``{node: module}``."""
    modules: dict[str, nn.Module] = {}
    for bname, bnode in list(nodes.items()):
        found = _motif(nir, nodes, edges, bname) if isinstance(bnode, nir.Threshold) else None
        if found is None:
            continue
        aname, cname = found
        try:
            mod, group = _motif_module(nir, nodes, edges, (aname, bname, cname),
                                       group_meta.get(bname, {}), dt)
        except ValueError as e:
            problems.append((bname, str(e)))
            continue
        common = []
        for x, y in zip(aname.split("."), bname.split("."), strict=False):
            if x != y:
                break
            common.append(x)
        new = ".".join(common) if common and ".".join(common) not in nodes else bname + "+"
        last = group[3] if len(group) == 4 else bname
        for n in group:
            nodes.pop(n)
        ins = [a for a, b in edges if b == aname and a != cname]
        outs = [b for a, b in edges if a == last and b not in group]
        edges = [(a, b) for a, b in edges if a not in group and b not in group]
        edges += [(a, new) for a in ins] + [(new, b) for b in outs]
        nodes[new] = "soft-if"
        modules[new] = mod
    return edges, modules


def _assemble(nodes: dict, preds: dict, modules: dict, inp: str, outp: str,
              T: int | None) -> NIRNetwork:
    compute = [n for n in nodes if n not in (inp, outp)]
    used: set[str] = {"__input__"}
    keys = {n: _key(n, used) for n in compute}
    keys[inp] = "__input__"
    order = _topo(compute, {n: [p for p in preds[n] if p != inp] for n in compute})
    in_type = (nodes[inp].input_type or {}).get("input")
    if in_type is None:
        raise ValueError(f"the graph's Input node {inp!r} has no shape; leansnn needs it to "
                         "check inputs (set input_type={'input': np.array([...])})")
    in_shape = tuple(int(s) for s in np.asarray(in_type).reshape(-1))
    return NIRNetwork(
        layers={keys[n]: modules[n] for n in order},
        names={n: keys[n] for n in compute},
        preds={keys[n]: [keys[p] for p in preds[n]] for n in compute},
        order=[keys[n] for n in order],
        output_preds=[keys[p] for p in preds[outp]],
        input_shape=in_shape,
        T=T,
    )


def _threshold_from(meta: dict, nir_theta: float) -> float:
    """leansnn threshold: the exact one leansnn wrote (``>=``), else NIR's strict ``>``."""
    if meta.get("spike_condition") == "u >= threshold" and "threshold" in meta and \
            np.float32(meta["threshold"]) == np.float32(nir_theta):
        return float(meta["threshold"])
    return strict_threshold(nir_theta)


def _neuron(cls, *, gain: float, **kw) -> LIF:
    """``LIF`` / ``IF`` with input gain ``gain`` (``r dt / tau`` or ``r dt``)."""
    if not gain > 0:
        raise ValueError(f"input gain r*dt/tau must be > 0, got {gain:g}")
    return cls(gain=gain, **kw) if gain != 1.0 else cls(**kw)


def _affine(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    w = torch.as_tensor(np.asarray(node.weight))
    m = nn.Linear(w.shape[1], w.shape[0], bias=True)
    m.weight.data = w.clone()
    m.bias.data = torch.as_tensor(np.asarray(node.bias)).clone()
    return TimeFold(m)


def _linear(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    w = torch.as_tensor(np.asarray(node.weight))
    m = nn.Linear(w.shape[1], w.shape[0], bias=False)
    m.weight.data = w.clone()
    return TimeFold(m)


def _conv2d(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    w = torch.as_tensor(np.asarray(node.weight))
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode("utf8")
    if not isinstance(pad, str):
        pad = tuple(int(p) for p in np.asarray(pad).reshape(-1))
    groups = int(node.groups)
    w, groups = _regroup(w, groups, meta.get("groups"))
    m = nn.Conv2d(int(w.shape[1]) * groups, int(w.shape[0]),
                  tuple(int(k) for k in w.shape[2:]),
                  stride=tuple(int(s) for s in np.asarray(node.stride).reshape(-1)),
                  padding=pad,
                  dilation=tuple(int(d) for d in np.asarray(node.dilation).reshape(-1)),
                  groups=groups, bias=True)
    m.weight.data = w.clone()
    m.bias.data = torch.as_tensor(np.asarray(node.bias)).clone()
    return TimeFold(m)


def _regroup(w: torch.Tensor, groups: int, recorded) -> tuple[torch.Tensor, int]:
    """A dense weight leansnn wrote for a grouped convolution (``recorded`` groups, zeros
    between them) back as the grouped weight; anything else unchanged."""
    try:
        g = int(recorded)
    except (TypeError, ValueError):
        return w, groups
    if groups != 1 or g <= 1 or w.dim() != 4 or w.shape[0] % g or w.shape[1] % g:
        return w, groups
    out_g, in_g = w.shape[0] // g, w.shape[1] // g
    blocks = [w[i * out_g:(i + 1) * out_g, i * in_g:(i + 1) * in_g] for i in range(g)]
    if int(torch.count_nonzero(w)) != sum(int(torch.count_nonzero(b)) for b in blocks):
        return w, groups  # not block-diagonal (edited): keep the dense convolution
    return torch.cat(blocks), g


def _pool2d(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    """``AvgPool2d`` / ``SumPool2d`` (an average pool without the divisor)."""
    def pair(v) -> tuple[int, ...]:
        t = tuple(int(x) for x in np.asarray(v).reshape(-1))
        return t * 2 if len(t) == 1 else t

    k, s, p = pair(node.kernel_size), pair(node.stride), pair(node.padding)
    if isinstance(node, nir.SumPool2d):
        return TimeFold(nn.AvgPool2d(k, s, p, divisor_override=1))
    return TimeFold(nn.AvgPool2d(k, s, p))


def _flatten(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    start, end = int(node.start_dim), int(node.end_dim)
    if start < 0:
        raise ValueError("Flatten with a negative start_dim is ambiguous without the input "
                         "rank; use a non-negative start_dim")
    return TimeFold(nn.Flatten(start + 1, end + 1 if end >= 0 else end))


def _scale(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    return TimeFold(Scale(torch.as_tensor(np.asarray(node.scale)).clone()))


def _shared(node) -> bool:
    """Every neuron of the layer has the same parameters (else: per-neuron modules)."""
    fields = ("tau", "r", "v_leak", "v_threshold", "v_reset")
    arrays = [np.asarray(getattr(node, f), np.float64) for f in fields if hasattr(node, f)]
    return all(np.all(a == a.reshape(-1)[0]) for a in arrays if a.size)


def _lif(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    if not _shared(node):
        return _per_neuron(nir, node, dt, name)
    p = nir_lif_to_leansnn(uniform(node.tau, "tau", name), uniform(node.r, "r", name),
                           uniform(node.v_leak, "v_leak", name), dt)
    theta = uniform(node.v_threshold, "v_threshold", name)
    v_reset = uniform(node.v_reset, "v_reset", name)
    decay, gain = p["decay"], p["gain"]
    if meta.get("layer") in ("LIF", "IF") and _close(meta.get("decay", -1), decay) and \
            _close(meta.get("gain", -1), gain) and _close(meta.get("dt", -1), dt, 1e-9):
        decay, gain = float(meta["decay"]), float(meta["gain"])
    neuron = _neuron(LIF, decay=decay, gain=gain, threshold=_threshold_from(meta, theta),
                     reset="hard", v_reset=v_reset)
    if p["drive"] != 0.0:
        return nn.Sequential(AddConstant(p["drive"] / gain), neuron)
    return neuron


def _if(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    if not _shared(node):
        return _per_neuron(nir, node, dt, name)
    gain = nir_if_to_leansnn(uniform(node.r, "r", name), dt)["gain"]
    theta = uniform(node.v_threshold, "v_threshold", name)
    if meta.get("layer") in ("LIF", "IF") and _close(meta.get("gain", -1), gain) and \
            _close(meta.get("dt", -1), dt, 1e-9):
        gain = float(meta["gain"])
    return _neuron(IF, gain=gain, threshold=_threshold_from(meta, theta), reset="hard",
                   v_reset=uniform(node.v_reset, "v_reset", name))


def _li(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    if not _shared(node):
        return _per_neuron(nir, node, dt, name)
    p = nir_lif_to_leansnn(uniform(node.tau, "tau", name), uniform(node.r, "r", name),
                           uniform(node.v_leak, "v_leak", name), dt)
    return LeakyIntegrator(p["decay"], p["gain"], p["drive"])


def _i(nir, node, dt: float, meta: dict, name: str) -> nn.Module:
    if not _shared(node):
        return _per_neuron(nir, node, dt, name)
    return LeakyIntegrator(1.0, nir_if_to_leansnn(uniform(node.r, "r", name), dt)["gain"])


# NIR node class (looked up with isinstance, in this order) -> leansnn module builder
_BUILDERS = (
    ("Affine", _affine), ("Linear", _linear), ("Conv2d", _conv2d), ("AvgPool2d", _pool2d),
    ("SumPool2d", _pool2d), ("Flatten", _flatten), ("Scale", _scale), ("LIF", _lif),
    ("IF", _if), ("LI", _li), ("I", _i),
)
_UNSUPPORTED = {
    "CubaLIF": "current-based LIF (synaptic current state) has no leansnn neuron",
    "CubaLI": "current-based leaky integrator has no leansnn module",
    "Delay": "delays are not supported",
    "Threshold": "a Threshold outside the soft-reset motif is not supported",
    "Conv1d": "1-d convolution is not supported",
}


def _node_module(nir, node, dt: float, gmeta: dict, name: str) -> nn.Module:
    """The leansnn module for one NIR node (``ValueError`` saying why if there is none)."""
    meta = _meta(node.metadata) or gmeta
    for cls_name, build in _BUILDERS:
        if isinstance(node, getattr(nir, cls_name)):
            return build(nir, node, dt, meta, name)
    what = _UNSUPPORTED.get(type(node).__name__, "no leansnn equivalent")
    raise ValueError(f"{type(node).__name__}: {what}")


def _soft_if(nir, integ, thr, fb, dt: float, meta: dict, name: str) -> IF:
    if isinstance(fb, nir.Scale):
        w_arr = np.asarray(fb.scale, dtype=np.float64)
    else:
        mat = np.asarray(fb.weight, dtype=np.float64)
        if mat.ndim != 2 or not np.array_equal(mat, np.diag(np.diag(mat))):
            raise ValueError("the reset feedback must be diagonal (each neuron resets itself)")
        w_arr = np.diag(mat)
    arrays = [np.asarray(a, np.float64) for a in (integ.r, thr.threshold, w_arr)]
    if not all(a.size and np.all(a == a.reshape(-1)[0]) for a in arrays):
        return _soft_if_per_neuron(integ, thr, w_arr, dt)
    gain = nir_if_to_leansnn(uniform(integ.r, "r", name), dt)["gain"]
    theta_thr = uniform(thr.threshold, "threshold", name)
    w = uniform(w_arr, "feedback weight", name)
    if not w < 0:
        raise ValueError(f"the reset feedback must be negative (subtract), got {w:g}")
    theta = -w * gain
    v_init = theta - theta_thr
    threshold = strict_threshold(theta)
    if meta.get("reset") == "soft" and _close(meta.get("gain", -1), gain) and \
            _close(float(meta.get("threshold", -1)) - float(meta.get("v_init", 0)), theta_thr) \
            and _close(float(meta.get("threshold", -1)), theta):
        gain, threshold = float(meta["gain"]), float(meta["threshold"])
        v_init = float(meta["v_init"])
    return _neuron(IF, gain=gain, threshold=threshold, reset="soft", v_init=v_init)


def _soft_if_per_neuron(integ, thr, w, dt: float) -> IF:
    """The soft-reset motif with per-neuron values: an ``IF`` with tensor parameters."""
    shape = np.broadcast_shapes(*(np.shape(a) for a in (integ.r, thr.threshold, w)))

    def full(a) -> np.ndarray:
        return np.broadcast_to(np.asarray(a, np.float64), shape)

    gain = full(integ.r) * dt
    if not np.all(w < 0):
        raise ValueError("the reset feedback must be negative (subtract) for every neuron")
    theta = -full(w) * gain
    threshold = np.nextafter(theta.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    return IF(threshold=torch.as_tensor(threshold), reset="soft", gain=torch.as_tensor(gain),
              v_init=torch.as_tensor(theta - full(thr.threshold)))


def _serial_if(nir, integ, thr, fb, amp, dt: float, meta: dict):
    """Rebuild leansnn's ``SerialIF`` from its subgraph when every field agrees with it
    (``r dt = 1/theta``, threshold 0.5, feedback ``-theta``, amplitude ``theta``); else
    ``None`` (the generic soft-reset import then applies)."""
    from ..convert.neurons import SerialIF

    theta = np.asarray(amp.scale, dtype=np.float64)
    ok = (np.allclose(np.asarray(integ.r, np.float64) * dt * theta, 1.0, rtol=1e-6, atol=0)
          and np.all(np.asarray(thr.threshold, np.float64) == 0.5)
          and np.allclose(np.asarray(fb.scale, np.float64), -theta, rtol=1e-6, atol=0)
          and theta.size > 0 and bool(np.all(theta > 0)))
    if not ok:
        return None
    tshape = [int(v) for v in np.asarray(meta.get("threshold_shape", [0])).reshape(-1)]
    if tshape == [0]:
        th = torch.tensor(float(theta.reshape(-1)[0]))
    else:
        idx = [slice(None)] * theta.ndim
        for i, sz in enumerate(reversed(tshape)):
            if sz == 1:
                idx[theta.ndim - 1 - i] = slice(0, 1)
        th = torch.as_tensor(theta[tuple(idx)].copy()).reshape(tshape)
    if not torch.equal(th.expand(theta.shape), torch.as_tensor(theta)):
        return None
    return SerialIF(int(meta.get("T", 1)), th)


def _per_neuron(nir, node, dt: float, name: str) -> nn.Module:
    """LIF/IF/LI/I whose parameters differ between neurons: elementwise Euler mapping."""
    def arr(a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    if isinstance(node, (nir.LIF, nir.LI)):
        tau = arr(node.tau)
        if not np.all(np.isfinite(tau) & (tau > 0)):
            raise ValueError("tau must be finite and positive for every neuron")
        if np.any(dt > tau):
            raise ValueError(f"time step dt={dt:g} s exceeds the smallest tau={tau.min():g} s: "
                             "forward Euler would give a negative decay; pass a smaller dt")
        a = dt / tau
        decay, gain, drive = 1.0 - a, arr(node.r) * a, a * arr(node.v_leak)
    else:
        gain = arr(node.r) * dt
        decay, drive = np.ones_like(gain), np.zeros_like(gain)
    if isinstance(node, (nir.LI, nir.I)):
        return LeakyIntegrator(decay, gain, drive)
    theta = np.nextafter(arr(node.v_threshold).astype(np.float32), np.float32(np.inf))
    return NeuronArray(decay, gain, theta.astype(np.float64), arr(node.v_reset), drive)
