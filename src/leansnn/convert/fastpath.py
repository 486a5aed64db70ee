r"""The exact fast path for networks of parallel neurons.

A parallel neuron reads only the time-mean of its input current. If every operation
between two spiking layers is affine (conv, linear, eval-mode batch norm, average pooling,
flatten/view, residual addition, dropout in eval mode, ...), the time-mean of a layer's input
is the same affine map applied to the time-means of the spike trains feeding it. So the
whole network up to its last spiking layers can be evaluated once, on time-means
(``[B, ...]``, about one ANN forward pass), and each neuron's spike train rebuilt from its
count (sorting property: the first ``n`` steps fire).

The per-step output ``y[t]`` is then computed exactly: the *tail* of the graph (the nodes
between the last spiking layers and the output, usually pooling + the classifier) runs on
the rebuilt spike trains with time folded into the batch, so the tail may even be
non-affine.

:func:`build_plan` splits the converted graph into

* ``fast``: input time-mean ``[B, ...]`` -> time-mean input currents of the *source*
  neurons (the neurons whose output reaches the network output without crossing another
  neuron), every neuron run in ``mode="mean"``;
* ``tail``: (folded input or ``None``, those means) -> folded output ``[T*B, ...]``, with the
  source neurons in ``mode="spikes"``.

When a non-affine operation (max pooling of spikes, a product of two spike-dependent
tensors, an unknown function, batch norm without running statistics) lies between
time-varying values and a neuron, the fast path is not exact and the status says why; the
converted network then simulates all T steps explicitly.

**Max pooling commutes with the time mean of front-loaded trains.** A parallel neuron emits
its ``n`` spikes in the first ``n`` steps, so each of its outputs is ``b + a 1[t < n]``. If
every element of a pooling window has the *same* amplitude ``a`` and base ``b`` (any sign),
the step-wise max over the window is ``b + a 1[t < max n]`` (``a >= 0``) or
``b + a 1[t < min n]`` (``a < 0``): again a front-loaded train, whose time mean is the max of
the elements' time means. So ``maxpool(mean) == mean(maxpool)`` exactly, and the fast path
(which pools the means, picking one element without rounding) stays exact. :func:`fl_tags`
tracks this form through the graph: a neuron with a scalar or per-channel (``[C, 1, ...]``)
amplitude starts it; identity-like ops (dropout in eval, contiguous, clone, dtype casts),
multiplication / addition by Python numbers, eval batch norm (per-channel), chunk / split,
concatenation along a positive dim, and max pooling itself keep it; a scalar amplitude also
survives every reshape (view / flatten / transpose / permute). Anything else (a conv, an add of
two signals, average pooling, padding) ends it — the result is still fine for affine ops, but a
max pool of it is not exact. Where it does **not** hold: a max over elements of different
amplitudes (a max across channels of per-channel amplitudes, a spatial max of per-neuron
amplitudes), a max of trains that are not front-loaded (after a conv, a residual add, or of a
time-varying input sequence), and serial IF neurons (not front-loaded).
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..neuron import SpikingNeuron

__all__ = ["FastPlan", "build_plan", "is_affine", "fl_tags", "close_mean", "pooled_train"]

_AFFINE_MODULES: tuple[type, ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d, nn.Linear, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Flatten,
    nn.Unflatten, nn.Identity, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.PixelShuffle, nn.PixelUnshuffle, nn.Dropout, nn.Dropout1d,
    nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_AFFINE_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.pos, operator.getitem, torch.add,
    torch.sub, torch.neg, torch.cat, torch.concat, torch.stack, torch.flatten, torch.reshape,
    torch.squeeze, torch.unsqueeze, torch.transpose, torch.permute, torch.narrow, torch.chunk,
    torch.split, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.linear, F.conv1d, F.conv2d, F.conv3d,
    F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, F.dropout, F.dropout1d,
    F.dropout2d, F.dropout3d, F.batch_norm, F.pixel_shuffle, torch.nn.functional.pad,
}
_AFFINE_METHODS = {
    "view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "transpose", "permute",
    "add", "sub", "neg", "chunk", "split", "narrow", "expand", "expand_as", "view_as",
    "reshape_as", "clone", "to", "float", "double", "half", "type_as", "__getitem__",
}
_SCALING = {operator.mul, operator.truediv, torch.mul, torch.div, "mul", "div"}
_REDUCTIONS = {torch.mean, torch.sum, "mean", "sum"}
_META_METHODS = {"size", "dim", "numel", "type", "ndimension"}


def _node_inputs(node: fx.Node) -> list[fx.Node]:
    return list(node.all_input_nodes)


def is_affine(node: fx.Node, gm: fx.GraphModule, varying: set[fx.Node]) -> bool:
    """True if ``node`` maps the time-mean of its time-varying inputs to the time-mean of its
    output (an affine map of them, applied per sample)."""
    target = node.target
    if node.op == "call_module":
        mod = gm.get_submodule(target)
        if isinstance(mod, _BN):
            return mod.track_running_stats and mod.running_mean is not None
        if isinstance(mod, nn.Sequential):
            return False
        return isinstance(mod, _AFFINE_MODULES)
    if node.op not in ("call_function", "call_method"):
        return False
    key = target
    if key in _SCALING:
        args = list(node.args) + list(node.kwargs.values())
        tv = [a for a in args if isinstance(a, fx.Node) and a in varying]
        if len(tv) > 1:
            return False
        if key in (operator.truediv, torch.div, "div"):
            return not (len(node.args) > 1 and node.args[1] in varying)
        return True
    if key in _REDUCTIONS:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if dim is None:
            return False
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        return all(isinstance(d, int) and d != 0 for d in dims)
    if node.op == "call_function":
        if target is F.pad:
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            return mode == "constant"
        return target in _AFFINE_FUNCTIONS
    return target in _AFFINE_METHODS


_MAX_MODULES: tuple[type, ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_MAX_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d,
                  F.adaptive_max_pool2d, F.adaptive_max_pool3d}
_KEEP_MODULES: tuple[type, ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
_KEEP_METHODS = {"contiguous", "clone", "to", "float", "double", "half", "type_as", "detach",
                 "chunk", "split"}
_KEEP_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.chunk, torch.split,
                   torch.clone}
_RESHAPES = {"view", "reshape", "flatten", "transpose", "permute", "squeeze", "unsqueeze",
             "view_as", "reshape_as", torch.flatten, torch.reshape, torch.squeeze,
             torch.unsqueeze, torch.transpose, torch.permute}
_NUMBER_OPS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
               operator.pos, torch.add, torch.sub, torch.mul, torch.div, torch.neg, "add",
               "sub", "mul", "div", "neg"}


def _neuron_tag(mod: nn.Module) -> int | None:
    amp = getattr(mod, "spike_amplitude", None)
    if not isinstance(amp, torch.Tensor) or not getattr(mod, "supports_mean", False):
        return None  # e.g. serial IF neurons: their trains are not front-loaded
    if amp.numel() == 1:
        return 0
    return 1 if all(s == 1 for s in amp.shape[1:]) else None


def _max_ok(node: fx.Node, gm: fx.GraphModule, tag: int | None) -> bool:
    """A max pooling whose input is a front-loaded train uniform over every pooled dim."""
    if tag is None or tag > 1:
        return False
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return isinstance(mod, _MAX_MODULES) and not mod.return_indices
    return node.op == "call_function" and node.target in _MAX_FUNCTIONS and not (
        node.kwargs.get("return_indices", False))


def _tag_of(node: fx.Node, gm: fx.GraphModule, tags: dict[fx.Node, int | None]
            ) -> int | None:
    """Front-loaded form of ``node``'s output: ``d`` = amplitude and base are constant over
    every dim after ``d`` (0: scalar, 1: per channel); ``None``: not front-loaded."""
    ins = [i for i in node.all_input_nodes if i in tags]
    if not ins:
        return None
    d = tags[ins[0]] if len(ins) == 1 else None
    tgt = node.target
    if node.op == "call_module":
        mod = gm.get_submodule(tgt)
        if isinstance(mod, _KEEP_MODULES) or _max_ok(node, gm, d):
            return d
        if isinstance(mod, _BN) and d is not None:
            return max(d, 1)
        return None
    if node.op == "call_function" and tgt in (torch.cat, torch.concat):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        ds = [tags.get(i) for i in node.all_input_nodes]
        if not isinstance(dim, int) or dim < 1 or any(x is None for x in ds):
            return None
        return max(*ds, dim)
    if tgt is operator.getitem and isinstance(node.args[0], fx.Node) and (
            node.args[0].target in ("chunk", "split", torch.chunk, torch.split)):
        return d
    if tgt in _KEEP_METHODS or tgt in _KEEP_FUNCTIONS or _max_ok(node, gm, d):
        return d
    if tgt in _RESHAPES:
        return 0 if d == 0 else None
    if tgt in _NUMBER_OPS and len(node.all_input_nodes) == 1 and all(
            isinstance(a, (int, float, fx.Node)) for a in node.args):
        return d
    return None


def fl_tags(net: fx.GraphModule, nodes: list[fx.Node], varying: set[fx.Node]
            ) -> dict[fx.Node, int | None]:
    """Front-loaded form (see :func:`_tag_of` and the module docstring) of every varying
    node of the converted graph ``net``."""
    tags: dict[fx.Node, int | None] = {}
    for n in nodes:
        if n not in varying:
            continue
        if n.op == "call_module" and isinstance(net.get_submodule(n.target), SpikingNeuron):
            tags[n] = _neuron_tag(net.get_submodule(n.target))
        elif n.op != "placeholder":
            tags[n] = _tag_of(n, net, tags)
        else:
            tags[n] = None
    return tags


def _is_meta(node: fx.Node, meta: set[fx.Node]) -> bool:
    """Nodes that compute shapes / sizes (Python numbers), never tensors."""
    if node.op == "call_method" and node.target in _META_METHODS:
        return True
    if node.op == "call_function" and node.target is builtins.getattr:
        return True
    ins = _node_inputs(node)
    return bool(ins) and node.op == "call_function" and all(i in meta for i in ins) and (
        getattr(node.target, "__module__", "") in ("_operator", "operator", "builtins"))


@dataclass
class FastPlan:
    """The split graphs (see module docstring) and why the fast path may be unavailable."""

    fast: fx.GraphModule | None
    tail: fx.GraphModule | None
    tail_uses_input: bool
    reasons_static: list[str] = field(default_factory=list)
    reasons_sequence: list[str] = field(default_factory=list)
    # why the output's time mean is not the rate-domain output (the tail does not commute)
    tail_static: list[str] = field(default_factory=list)
    tail_sequence: list[str] = field(default_factory=list)

    def mean_is_exact(self, sequence: bool) -> bool:
        """Whether ``y.mean(0)`` equals the output computed on time-means (so the engine may
        close the last step's rounding, see :func:`close_mean`)."""
        return not (self.tail_sequence if sequence else self.tail_static)

    def status(self, sequence: bool, training: bool) -> tuple[bool, list[str]]:
        reasons = list(self.reasons_sequence if sequence else self.reasons_static)
        if training:
            reasons.append("the network is in training mode (call .eval())")
        return (not reasons and self.fast is not None), reasons


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"'{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack)) if stack else ""
    name = getattr(node.target, "__name__", str(node.target))
    return f"{name} in '{owner or '<top level>'}' (graph node '{node.name}')"


def build_plan(net: fx.GraphModule) -> FastPlan:
    """Analyse the converted graph ``net`` and build the fast / tail graphs."""
    nodes = list(net.graph.nodes)
    neurons = [n for n in nodes if n.op == "call_module"
               and isinstance(net.get_submodule(n.target), SpikingNeuron)]
    not_mean = [n for n in neurons if not getattr(net.get_submodule(n.target), "supports_mean",
                                                  False)]
    if not_mean:
        names = ", ".join(f"'{n.target}' ({type(net.get_submodule(n.target)).__name__})"
                          for n in not_mean[:3])
        why = [f"neurons such as {names} are simulated step by step (no time-mean form)"]
        return FastPlan(None, None, False, why, why)
    neuron_set = set(neurons)
    tail, sources = _tail_and_sources(nodes, neuron_set)
    src_index = {n: i for i, n in enumerate(sources)}
    fast = _fast_graph(net, nodes, neuron_set, src_index)
    tail_gm, uses_input = _tail_graph(net, nodes, tail, src_index)
    (rs, ts), (rq, tq) = (_not_exact(net, nodes, neurons, False),
                          _not_exact(net, nodes, neurons, True))
    return FastPlan(fast, tail_gm, uses_input, rs, rq, ts, tq)


def _not_exact(net: fx.GraphModule, nodes: list[fx.Node], neurons: list[fx.Node],
               sequence: bool) -> tuple[list[str], list[str]]:
    """Why the fast path is not exact for static (or ``sequence``) inputs: every node between
    time-varying values and a neuron that does not commute with the time mean (not affine,
    not a max pooling of front-loaded trains); and the same for the tail after the last
    neurons (then the output's time mean is not the rate-domain output)."""
    neuron_set = set(neurons)
    anc: set[fx.Node] = set()  # ancestors of neurons: nodes whose value reaches some neuron
    stack = [i for n in neurons for i in _node_inputs(n)]
    while stack:
        n = stack.pop()
        if n not in anc:
            anc.add(n)
            stack.extend(_node_inputs(n))
    meta: set[fx.Node] = set()
    for n in nodes:
        if _is_meta(n, meta):
            meta.add(n)
    varying: set[fx.Node] = set()
    for n in nodes:
        if n in meta or n.op in ("get_attr", "output"):
            continue
        if n.op == "placeholder":
            if sequence:
                varying.add(n)
            continue
        if n in neuron_set or any(i in varying for i in _node_inputs(n)):
            varying.add(n)
    tags = fl_tags(net, nodes, varying)
    bad = [n for n in nodes if n in varying and n not in neuron_set and n.op != "placeholder"
           and not (
        is_affine(n, net, varying) or _max_ok(n, net, tags.get(_first_input(n, varying))))]
    reasons = [f"{_describe(n, net)} is not affine, nor a max pooling of front-loaded spike "
               "trains of one amplitude per window, and lies between spiking layers"
               for n in bad if n in anc]
    tail = [f"{_describe(n, net)} (after the last spiking layers) does not commute with the "
            "time mean" for n in bad if n not in anc]
    return reasons, tail


def _first_input(node: fx.Node, varying: set[fx.Node]) -> fx.Node | None:
    return next((i for i in _node_inputs(node) if i in varying), None)


def _tail_and_sources(nodes: list[fx.Node], neuron_set: set[fx.Node]
                      ) -> tuple[set[fx.Node], list[fx.Node]]:
    """The tail (nodes reaching the output without crossing a neuron) and the source neurons
    feeding it, in graph order."""
    out_node = next(n for n in reversed(nodes) if n.op == "output")
    tail: set[fx.Node] = set()
    sources: list[fx.Node] = []
    stack = _node_inputs(out_node)
    while stack:
        n = stack.pop()
        if n in tail or n in sources:
            continue
        if n in neuron_set:
            sources.append(n)
            continue
        tail.add(n)
        stack.extend(_node_inputs(n))
    order = {n: i for i, n in enumerate(nodes)}
    sources.sort(key=order.__getitem__)
    return tail, sources


def _fast_graph(net: fx.GraphModule, nodes: list[fx.Node], neuron_set: set[fx.Node],
                src_index: dict[fx.Node, int]) -> fx.GraphModule:
    """Everything up to the source neurons' inputs, on time-means."""
    fg = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in nodes:
        if n.op == "output":
            break
        if n in neuron_set:  # sources notify from the tail, where their trains are built
            mode = "mean_silent" if n in src_index else "mean"
            env[n] = fg.call_module(n.target, (env[n.args[0]],), {"mode": mode})
        else:
            env[n] = fg.node_copy(n, lambda a: env[a])
    out_node = next(n for n in reversed(nodes) if n.op == "output")
    # sources' inputs in index order, then the whole output computed on time-means (the
    # ANN's own arithmetic: what y.mean(0) is closed to, see close_mean)
    fg.output((tuple(env[s.args[0]] for s in src_index),
               fx.node.map_arg(out_node.args[0], lambda a: env[a])))
    fast = fx.GraphModule(net, fg, class_name="FastPath")
    fast.graph.eliminate_dead_code()
    fast.recompile()
    return fast


def _tail_graph(net: fx.GraphModule, nodes: list[fx.Node], tail: set[fx.Node],
                src_index: dict[fx.Node, int]) -> tuple[fx.GraphModule, bool]:
    """Folded input + source means -> folded output; also whether it reads the input.

    Where the tail starts with a global average pool of source neurons (directly, or of
    their concatenation along channels), the neurons emit the pooled train from a histogram
    of their counts (``ParallelIF`` mode ``spikes_gap``) and the ``[T*B, C, H, W]`` trains
    are never built: pooling commutes with the concatenation."""
    tg = fx.Graph()
    tenv: dict[fx.Node, fx.Node] = {}
    x_ph = tg.placeholder("x_folded")
    m_ph = [tg.placeholder(f"mean_{i}") for i in range(len(src_index))]
    uses_input = False
    gaps = _gap_rewrites(net, tail, src_index)
    pooled_src = {p: (keep, dims) for parts, (keep, dims), _ in gaps.values() for p in parts}
    skip = {c for _, _, c in gaps.values() if c is not None}
    for n in nodes:
        if n.op == "output":
            tg.output(fx.node.map_arg(n.args[0], lambda a: tenv[a]))
        elif n in pooled_src:  # the pooled train [T*B, C(, 1, 1)], built without the train
            keep, dims = pooled_src[n]
            tenv[n] = tg.call_function(pooled_train, (tg.get_attr(n.target),
                                                      m_ph[src_index[n]], keep, dims))
        elif n in src_index:
            tenv[n] = tg.call_module(n.target, (m_ph[src_index[n]],), {"mode": "spikes"})
        elif n in skip:
            continue
        elif n in gaps:
            parts, _, cat = gaps[n]
            tenv[n] = (tg.call_function(torch.cat, ([tenv[p] for p in parts], 1)) if cat
                       else tenv[parts[0]])
        elif n in tail:
            if n.op == "placeholder":
                tenv[n] = x_ph
                uses_input = True
            else:
                tenv[n] = tg.node_copy(n, lambda a: tenv[a])
    return fx.GraphModule(net, tg, class_name="FastTail"), uses_input


def pooled_train(neuron: nn.Module, mean: torch.Tensor, keepdim: bool,
                 dims: tuple[int, ...] | None) -> torch.Tensor:
    """The fast path's tail for ``neuron -> global average pool``: the pooled spike train
    ``[T*B, C]`` (``[T*B, C, 1, 1]`` with ``keepdim``) from the neuron's time-mean input
    ``[B, C, H, W]`` without building the train (``ParallelIF`` mode ``spikes_gap``). Other
    ranks, or ``dims`` (of a ``mean``) that are not the last two, build the train and pool
    it as the network does (``dims`` None: ``adaptive_avg_pool2d(., 1)``)."""
    if mean.dim() == 4 and (dims is None or sorted(d % 4 for d in dims) == [2, 3]):
        return neuron(mean, mode="spikes_gap_keepdim" if keepdim else "spikes_gap")
    s = neuron(mean, mode="spikes")
    return F.adaptive_avg_pool2d(s, 1) if dims is None else s.mean(dims, keepdim=keepdim)


def _gap_rewrites(net: fx.GraphModule, tail: set[fx.Node], src_index: dict[fx.Node, int]
                  ) -> dict[fx.Node, tuple[list[fx.Node], tuple, fx.Node | None]]:
    """Global average pools of source neurons: ``{pool node: (neurons, (keepdim, dims),
    cat node or None)}`` for a pool whose input is a parallel source neuron used only by
    it, or a ``torch.cat(..., 1)`` used only by it of distinct such neurons used only by
    the cat."""
    from .neurons import ParallelIF

    def only_for(n: fx.Node, user: fx.Node) -> bool:
        return (n in src_index and set(n.users) == {user}
                and isinstance(net.get_submodule(n.target), ParallelIF))

    out = {}
    for g in tail:
        hit = _global_avg_pool(net, g)
        if hit is None:
            continue
        inp, keep = hit[0], hit[1:]
        if only_for(inp, g):
            out[g] = ([inp], keep, None)
        elif (inp.op == "call_function" and inp.target is torch.cat and set(inp.users) == {g}
              and _cat_dim(inp) == 1 and isinstance(inp.args[0], (list, tuple))):
            parts = list(inp.args[0])
            if parts and len(set(parts)) == len(parts) and all(only_for(p, inp) for p in parts):
                out[g] = (parts, keep, inp)
    return out


def _cat_dim(n: fx.Node):
    return n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)


def _global_avg_pool(net: fx.GraphModule, u: fx.Node) -> tuple[fx.Node, bool, tuple | None
                                                               ] | None:
    """``(input, keepdim, dims)`` when ``u`` is a global average pool (``AdaptiveAvgPool2d(1)``,
    ``F.adaptive_avg_pool2d(x, 1)``: dims None; ``x.mean((2, 3))`` /
    ``torch.mean(x, (-2, -1), keepdim=...)``: those dims), else None."""
    if not u.args or not isinstance(u.args[0], fx.Node):
        return None
    inp = u.args[0]
    if u.op == "call_module":
        m = net.get_submodule(u.target)
        ok = type(m) is nn.AdaptiveAvgPool2d and m.output_size in (1, (1, 1))
        return (inp, True, None) if ok else None
    if u.op == "call_function" and u.target is F.adaptive_avg_pool2d:
        size = u.args[1] if len(u.args) > 1 else u.kwargs.get("output_size")
        return (inp, True, None) if size in (1, (1, 1), [1, 1]) and len(u.args) <= 2 else None
    if (u.op == "call_method" and u.target == "mean") or (
            u.op == "call_function" and u.target is torch.mean):
        dims = u.args[1] if len(u.args) > 1 else u.kwargs.get("dim")
        keep = u.args[2] if len(u.args) > 2 else u.kwargs.get("keepdim", False)
        extra = set(u.kwargs) - {"dim", "keepdim"}
        if isinstance(dims, (tuple, list)) and sorted(dims) in ([2, 3], [-2, -1]) and \
                isinstance(keep, bool) and not extra and len(u.args) <= 3:
            return inp, keep, tuple(dims)
    return None


def close_mean(y: torch.Tensor, z: torch.Tensor, rounds: int = 6) -> torch.Tensor:
    """Make ``y.mean(0)`` equal ``z`` bit for bit (in place on ``y`` ``[T, ...]``), by
    moving only the last step's value by the float rounding that separates the per-step sum
    from the rate-domain value ``z`` (a few ulp of ``z``; ``y`` and ``z`` agree exactly in
    real arithmetic). Exact whenever floats allow it (always for ``T`` a power of two, since
    then ``mean = sum / T`` divides exactly) unless the steps cancel: when the per-step values
    are much larger than their mean, the sum's grid (the ulp of the partial sums) is coarser
    than ``z``'s and the mean stays a few ulp of ``z`` off (no last-step value can close it).
    Non-finite ``z`` (NaN input) is copied to every step; infinite ``z`` is left alone."""
    T = y.shape[0]
    nan = torch.isnan(z)
    if bool(nan.any()):
        y.masked_fill_(nan.unsqueeze(0), float("nan"))
    fin = torch.isfinite(z)
    last = y[T - 1]
    m = y.mean(0)
    off = (m != z) & fin
    if not bool(off.any()):
        return y
    head = y[:T - 1].sum(0) if T > 1 else torch.zeros_like(z)
    last.copy_(torch.where(off, z * T - head, last))
    for _ in range(rounds):  # nudge by one ulp at a time where rounding still separates them
        m = y.mean(0)
        off = (m != z) & fin
        if not bool(off.any()):
            break
        toward = torch.where(m < z, torch.full_like(z, float("inf")),
                             torch.full_like(z, float("-inf")))
        last.copy_(torch.where(off, torch.nextafter(last, toward), last))
    return y
