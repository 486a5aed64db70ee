"""The converter: trace an ANN with torch.fx, find every activation, replace it by a neuron.

Pipeline (each step a function, each method a pluggable strategy):

1. ``copy.deepcopy`` the ANN and put the copy in eval mode (the ANN is never modified);
2. :func:`trace` it with a tracer that keeps torch.nn layers, QCFS and spiking neurons as
   leaves; an untraceable forward is reported with the module that breaks tracing;
3. :func:`find_activation_sites`: every QCFS / ReLU / ReLU6 module call and every
   ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` call (in-place variants too) is a site; every
   other non-linearity that a spiking neuron cannot stand in for (GELU, SiLU, sigmoid, ...)
   is collected, and all of them are reported in one error;
4. the conversion method (see :func:`register_method`) builds one neuron per site;
5. the graph is rewritten so each site calls its neuron on time-folded tensors, and
   wrapped in :class:`ConvertedSNN`, which runs it either by explicit simulation or by the
   exact fast path (:mod:`leansnn.convert.fastpath`).

Steps 1-3 are :func:`prepare` and step 5 :func:`assemble`; ``leansnn.load`` runs the same two
around neurons rebuilt from a checkpoint (:mod:`leansnn.convert.persist`), so a saved network
comes back exactly as it was converted.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..activations import QCFS
from ..neuron import SpikingNeuron
from .neurons import ParallelIF, SerialIF

__all__ = [
    "ActivationSite", "ConversionContext", "ConvertedSNN", "ConversionError", "convert",
    "register_method", "methods", "trace", "find_activation_sites", "site_thresholds",
    "fuse_batchnorm", "prepare", "assemble", "Origin", "replace_sites", "site_input",
    "infer_input_dims", "find_products", "keep_inplace_semantics", "unwrap",
    "check_qcfs_thresholds",
]


class ConversionError(ValueError):
    """The model cannot be converted as asked (the message lists every reason and a fix)."""


# ---------------------------------------------------------------------------------------------
# what counts as an activation
# ---------------------------------------------------------------------------------------------
_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}
_RELU6_FUNCTIONS = {F.relu6}
_UNCONVERTIBLE_MODULES: tuple[type, ...] = (
    nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.PReLU, nn.Softplus,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU, nn.RReLU, nn.Softsign,
    nn.Tanhshrink, nn.LogSigmoid, nn.Hardtanh, nn.Threshold, nn.GLU, nn.Softshrink,
    nn.Hardshrink, nn.MultiheadAttention, nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer, nn.RNNBase,
)
_UNCONVERTIBLE_FUNCTIONS = {
    F.gelu, F.silu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.elu, F.leaky_relu,
    F.softplus, F.mish, F.hardswish, F.hardsigmoid, F.selu, F.celu, F.hardtanh, F.logsigmoid,
    F.glu, F.prelu, F.rrelu, F.softsign, F.tanhshrink, F.threshold, torch.selu, torch.celu,
    torch.prelu, torch.rrelu, torch.threshold,
}
_UNCONVERTIBLE_METHODS = {"sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log"}


def _fn_name(target: Any) -> str:
    mod = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", str(target))
    if mod.startswith("torch.nn.functional"):
        return f"F.{name}"
    if mod.startswith("torch"):
        return f"torch.{name}"
    return name


@dataclass
class ActivationSite:
    """One activation call in the traced ANN, to be replaced by one spiking neuron.

    name: qualified module name the neuron gets in the converted network (e.g.
        ``"layer1.0.act"``; for functional calls ``"<owner module>.<graph node name>"``).
    kind: ``"qcfs"`` or ``"relu"``; ``clip``: the saturation value of a clipped ReLU
        (``ReLU6`` -> 6.0) or ``None``; ``module``: the activation module (``None`` for a
        functional call); ``where``: human-readable description for messages.
    """

    name: str
    node: fx.Node
    kind: str
    module: nn.Module | None
    clip: float | None
    where: str

    @property
    def qcfs_threshold(self) -> float | None:
        return self.module.theta if isinstance(self.module, QCFS) else None

    @property
    def qcfs_levels(self) -> int | None:
        return self.module.levels if isinstance(self.module, QCFS) else None


@dataclass
class ConversionContext:
    """What a conversion method sees.

    model: the traced copy of the ANN (``fx.GraphModule``, eval mode, activations still in
        place, so a method may run it, e.g. to record activation statistics).
    sites: every activation site, in graph order.  T: time steps.
    input_dims: dims of a static input ``[B, ...]`` (``None`` if unknown).
    """

    model: fx.GraphModule
    sites: list[ActivationSite]
    T: int
    input_dims: int | None
    info: dict = field(default_factory=dict)


@dataclass
class Origin:
    """Where a converted network came from (what :func:`snn_config` needs besides the net).

    ann_config: the ANN's registry config (``None`` if it was not built by
        ``leansnn.models.create``: then the network cannot be saved with ``leansnn.save``).
    ann_class: the ANN's class name (for messages). fuse_bn, leaf_modules: the switches
    :func:`~leansnn.convert.convert` was called with (leaf modules by class name).
    info: what the method reported (``ConversionContext.info``, e.g. calibration time);
        not saved.
    """

    ann_config: dict | None
    ann_class: str
    fuse_bn: bool = True
    leaf_modules: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)
    allow_products: bool = False


MethodFn = Callable[..., dict[str, nn.Module]]
_METHODS: dict[str, MethodFn] = {}


def register_method(name: str, fn: MethodFn | None = None, *, replace: bool = False):
    """Register a conversion method ``fn(ctx: ConversionContext, **options) -> {site name:
    neuron}`` under ``name`` (usable as ``convert(..., method=name, **options)``).

    Neurons must be :class:`~leansnn.neuron.SpikingNeuron` modules whose ``forward(x,
    mode="folded")`` maps ``[T*B, ...] -> [T*B, ...]``; neurons with ``supports_mean = True``
    (like :class:`ParallelIF`) also enable the exact fast path. Usable as a decorator.
    """
    def deco(f: MethodFn) -> MethodFn:
        if name in _METHODS and _METHODS[name] is not f and not replace:
            raise ValueError(f"conversion method {name!r} is already registered")
        _METHODS[name] = f
        return f

    return deco(fn) if fn is not None else deco


def methods() -> list[str]:
    """Names of the registered conversion methods."""
    return sorted(_METHODS)


# ---------------------------------------------------------------------------------------------
# tracing
# ---------------------------------------------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The network inside ``nn.DataParallel`` / ``DistributedDataParallel`` and
    ``torch.compile`` wrappers (their forwards scatter inputs or call compiled code, which
    torch.fx cannot trace; the arithmetic is the wrapped module's)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(
                getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class _Tracer(fx.Tracer):
    def __init__(self, leaves: tuple[type, ...] = ()) -> None:
        super().__init__()
        self.extra_leaves = tuple(leaves)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (QCFS, SpikingNeuron)) or (
                self.extra_leaves and isinstance(m, self.extra_leaves)):
            return True
        return super().is_leaf_module(m, qualname)


def _locate_untraceable(model: nn.Module, leaves: tuple[type, ...]) -> tuple[str, nn.Module]:
    path, module = "", model
    while True:
        found = None
        tracer = _Tracer(leaves)
        for name, child in module.named_children():
            if tracer.is_leaf_module(child, name):
                continue
            try:
                _Tracer(leaves).trace(child)
            except Exception:  # noqa: BLE001 - any tracing failure locates the culprit
                found = (name, child)
                break
        if found is None:
            return path, module
        path = f"{path}.{found[0]}" if path else found[0]
        module = found[1]


def trace(model: nn.Module, leaf_modules: Iterable[type] = ()) -> fx.GraphModule:
    """Symbolically trace ``model`` (torch.nn layers, QCFS and neurons stay leaves).

    Raises :class:`ConversionError` naming the innermost module whose forward cannot be
    traced and what to do about it.
    """
    leaves = tuple(leaf_modules)
    try:
        graph = _Tracer(leaves).trace(model)
    except Exception as e:  # noqa: BLE001 - torch.fx raises many types
        path, mod = _locate_untraceable(model, leaves)
        what = f"module '{path}' ({type(mod).__name__})" if path else (
            f"the model's own forward ({type(model).__name__})")
        raise ConversionError(
            f"cannot convert: torch.fx cannot trace {what}: {type(e).__name__}: {e}. Fix: make "
            "that forward free of Python control flow on tensor values (e.g. `if x.sum() > 0`, "
            "loops over tensor sizes taken as ints), or, if it contains no activation to "
            f"convert, pass leaf_modules=[{type(mod).__name__}] so it is kept as one opaque "
            "layer."
        ) from None
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


# ---------------------------------------------------------------------------------------------
# finding activations
# ---------------------------------------------------------------------------------------------
def _owner(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack)) if stack else ""


def _has_attr_path(gm: nn.Module, path: str) -> bool:
    try:
        gm.get_submodule(path)
        return True
    except AttributeError:
        parent, _, leaf = path.rpartition(".")
        try:
            mod = gm.get_submodule(parent) if parent else gm
        except AttributeError:
            return False
        return hasattr(mod, leaf)


def _hidden_activations(mod: nn.Module, name: str) -> list[str]:
    """Activations and neurons inside a module the tracer kept opaque (``leaf_modules``, or a
    torch.nn container such as ``nn.TransformerEncoder``), as ``'name' (class)``."""
    kinds = (QCFS, nn.ReLU, nn.ReLU6, SpikingNeuron) + _UNCONVERTIBLE_MODULES
    return [f"'{name}.{sub_name}' ({type(sub).__name__})"
            for sub_name, sub in mod.named_modules() if sub is not mod and isinstance(sub, kinds)]


def find_activation_sites(gm: fx.GraphModule) -> tuple[list[ActivationSite], list[str]]:
    """Return ``(sites, problems)``: every convertible activation, and a description of every
    node a spiking neuron cannot replace (qualified name, what it is)."""
    sites: list[ActivationSite] = []
    problems: list[str] = []
    used_names: set[str] = set()
    module_uses: dict[str, int] = {}

    def unique(base: str) -> str:
        name, k = base, 1
        while name in used_names or (name != base and _has_attr_path(gm, name)):
            name = f"{base}_{k}"
            k += 1
        used_names.add(name)
        return name

    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            kind = clip = None
            if isinstance(mod, QCFS):
                kind = "qcfs"
            elif isinstance(mod, nn.ReLU6):
                kind, clip = "relu", 6.0
            elif isinstance(mod, nn.ReLU):
                kind = "relu"
            elif isinstance(mod, SpikingNeuron):
                problems.append(f"'{node.target}' ({type(mod).__name__}) is already a spiking "
                                "neuron: convert the ANN, not an SNN")
                continue
            elif isinstance(mod, _UNCONVERTIBLE_MODULES):
                problems.append(f"'{node.target}' ({type(mod).__name__}) has no spiking "
                                "equivalent")
                continue
            if kind is None:
                hidden = _hidden_activations(mod, node.target)
                if hidden:
                    problems.append(
                        f"'{node.target}' ({type(mod).__name__}) is kept opaque (a leaf module) "
                        f"but contains {', '.join(hidden)}: they would stay analog inside the "
                        f"SNN; drop {type(mod).__name__} from leaf_modules and make its forward "
                        "traceable, so that its activations become neurons")
                continue
            uses = module_uses.get(node.target, 0)
            module_uses[node.target] = uses + 1
            name = unique(node.target if uses == 0 else f"{node.target}_{uses}")
            where = f"module '{node.target}' ({type(mod).__name__})"
            if uses:
                where += f", call {uses + 1}"
            sites.append(ActivationSite(name, node, kind, mod, clip, where))
        elif node.op in ("call_function", "call_method"):
            owner = _owner(node)
            where_owner = f"in '{owner}'" if owner else "in the top-level forward"
            if node.op == "call_function":
                label = _fn_name(node.target)
                is_relu = node.target in _RELU_FUNCTIONS
                is_relu6 = node.target in _RELU6_FUNCTIONS
                bad = node.target in _UNCONVERTIBLE_FUNCTIONS
            else:
                label = f"Tensor.{node.target}"
                is_relu, is_relu6 = node.target in _RELU_METHODS, False
                bad = node.target in _UNCONVERTIBLE_METHODS
            if is_relu or is_relu6:
                base = f"{owner}.{node.name}" if owner else node.name
                name = unique(base)
                sites.append(ActivationSite(name, node, "relu", None, 6.0 if is_relu6 else None,
                                            f"{label} {where_owner} (graph node '{node.name}')"))
            elif bad:
                problems.append(f"{label} {where_owner} (graph node '{node.name}') has no "
                                "spiking equivalent")
    return sites, problems


def _bad_threshold(value: Any) -> str | None:
    """Why ``value`` cannot be a firing threshold (``None`` if it can): every element must
    be a finite number > 0."""
    try:
        t = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError):
        t = None
    if t is None or t.dtype == torch.bool or t.is_complex() or t.numel() == 0:
        return f"{value!r} is not a number or a float tensor"
    t = t.double()
    if not bool(torch.isfinite(t).all()):
        return f"{_show(t)} is not finite"
    if not bool((t > 0).all()):
        return f"{_show(t)} is not > 0"
    return None


def _show(t: torch.Tensor) -> str:
    if t.numel() == 1:
        return f"{float(t):g}"
    bad = t[~(torch.isfinite(t) & (t > 0))]
    return f"a tensor of shape {tuple(t.shape)} holding {float(bad[0]) if bad.numel() else ''}"


def check_qcfs_thresholds(sites: list[ActivationSite]) -> None:
    """Refuse QCFS activations whose threshold in use is not a finite number > 0 (training
    can drive a learnable threshold there; QCFS then no longer computes a rate, and no
    spiking neuron has that threshold). Raises :class:`ConversionError` naming every one."""
    bad = []
    for s in sites:
        if s.kind == "qcfs":
            why = _bad_threshold(s.module.effective_threshold())
            if why is not None:
                bad.append(f"{s.where}: threshold {why}")
    if bad:
        raise ConversionError(
            f"cannot convert: {len(bad)} QCFS activation(s) have a threshold that is not a "
            "finite number > 0 (the ANN's training diverged or drove it there):\n  - "
            + "\n  - ".join(bad) + "\nFix: retrain or fine-tune the ANN (e.g. a lower "
            "learning rate for the thresholds), or set a positive threshold "
            "(qcfs.threshold.data.fill_(value)) and check the ANN's accuracy before converting.")


_PRODUCT_FUNCTIONS = {operator.mul, operator.truediv, operator.matmul, torch.mul, torch.div,
                      torch.matmul, torch.bmm, torch.mm, torch.einsum, torch.baddbmm,
                      torch.addcmul, F.scaled_dot_product_attention, F.bilinear}
_PRODUCT_METHODS = {"mul", "mul_", "div", "div_", "matmul", "bmm", "mm", "__mul__",
                    "__truediv__", "__matmul__", "addcmul", "addcmul_"}


def find_products(gm: fx.GraphModule, sites: list[ActivationSite]) -> list[str]:
    """Every multiplicative interaction of two signals that depend on spiking layers (the
    activation ``sites`` of an ANN graph, or the neurons of a converted one): gating
    (``x * sigmoid(...)``, squeeze-excitation), attention, ``x * y`` of two activations."""
    site_nodes = {s.node for s in sites}
    spiking: set[fx.Node] = set()
    found = []
    for node in gm.graph.nodes:
        is_neuron = node in site_nodes or (node.op == "call_module" and isinstance(
            gm.get_submodule(node.target), SpikingNeuron))
        ins = [i for i in node.all_input_nodes if i in spiking]
        if is_neuron or ins:
            spiking.add(node)
        if is_neuron or len(ins) < 2:
            continue
        prod = (node.op == "call_function" and node.target in _PRODUCT_FUNCTIONS) or (
            node.op == "call_method" and node.target in _PRODUCT_METHODS)
        if prod:
            label = (_fn_name(node.target) if node.op == "call_function"
                     else f"Tensor.{node.target}")
            found.append(f"{label} in '{_owner(node) or '<top level>'}' (graph node "
                         f"'{node.name}')")
    return found


def _is_inplace(site: ActivationSite) -> bool:
    node = site.node
    if site.module is not None:
        return bool(getattr(site.module, "inplace", False))
    if node.op == "call_method":
        return node.target == "relu_"
    if node.target in (torch.relu_, F.relu_):
        return True
    flag = node.kwargs.get("inplace", node.args[1] if len(node.args) > 1 else False)
    return flag is True


def keep_inplace_semantics(gm: fx.GraphModule, sites: list[ActivationSite]) -> int:
    """An in-place activation (``nn.ReLU(inplace=True)``, ``F.relu6(y, inplace=True)``,
    ``y.relu_()``) overwrites its input ``y``: every later use of ``y`` reads the activation's
    output. The spiking neuron that replaces it does not write into ``y``, so those later
    uses are rewired to the activation's output here (in place on ``gm``), keeping the ANN's
    arithmetic (e.g. ``z = relu6_(y); out = z + y`` computes ``z + z``). Returns the number
    of uses rewired."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    moved = 0
    for site in sites:
        if not _is_inplace(site) or not isinstance(site_input(site), fx.Node):
            continue
        y = site_input(site)
        for user in list(y.users):
            if user is not site.node and order[user] > order[site.node]:
                user.replace_input_with(y, site.node)
                moved += 1
    if moved:
        gm.recompile()
    return moved


def fuse_batchnorm(gm: fx.GraphModule) -> int:
    """Fold eval-mode batch norms into the convolution / linear layer feeding them (in place).

    Only when that layer is called once and feeds nothing else. Returns the number folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not node.args:
            continue
        bn = gm.get_submodule(node.target)
        prev = node.args[0]
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) or (
                bn.running_mean is None or calls[node.target] != 1 or len(node.args) != 1
                or not isinstance(prev, fx.Node) or prev.op != "call_module"
                or len(prev.users) != 1 or calls[prev.target] != 1):
            continue
        layer = gm.get_submodule(prev.target)
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and (
                layer.out_channels == bn.num_features):
            fused = fuse_conv_bn_eval(layer.eval(), bn.eval())
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d) and (
                layer.out_features == bn.num_features):
            fused = fuse_linear_bn_eval(layer.eval(), bn.eval())
        else:
            continue
        parent, _, leaf = prev.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
        folded += 1
    if folded:  # the generated forward must stop calling the erased batch norms
        gm.recompile()
    return folded


def site_input(site: ActivationSite) -> fx.Node:
    """The graph node feeding the activation at ``site``."""
    node = site.node
    x = node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("self"))
    if not isinstance(x, fx.Node):
        raise ConversionError(f"{site.where}: its input is not a tensor computed by the model")
    return x


def replace_sites(gm: fx.GraphModule, sites: list[ActivationSite],
                  modules: dict[str, nn.Module], kwargs: dict | None = None) -> None:
    """Replace every activation site of ``gm`` (in place) by a call of ``modules[site.name]``
    on the site's input, registered under the site's name, then recompile ``gm``.

    Sites are matched by node name, so they may come from the graph ``gm`` was deep-copied
    from. ``kwargs``: extra keyword arguments of each call (e.g. ``{"mode": "folded"}``).
    """
    graph = gm.graph
    by_name = {n.name: n for n in graph.nodes}
    for s in sites:
        node, x = by_name[s.node.name], by_name[site_input(s).name]
        gm.add_submodule(s.name, modules[s.name])
        with graph.inserting_after(node):
            new = graph.call_module(s.name, (x,), dict(kwargs or {}))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        by_name[s.node.name] = new  # a later site fed by this one finds its replacement
        by_name[new.name] = new
    graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()


def infer_input_dims(gm: fx.GraphModule) -> int | None:
    """Dims of one static input batch, read off the first conv / BN / linear layer (or
    ``None``)."""
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if not phs:
        return None
    frontier, seen = [phs[0]], set()
    while frontier:
        node = frontier.pop(0)
        for user in node.users:
            if user in seen:
                continue
            seen.add(user)
            if user.op == "call_module":
                mod = gm.get_submodule(user.target)
                for cls, dims in ((nn.Conv1d, 3), (nn.Conv2d, 4), (nn.Conv3d, 5),
                                  (nn.BatchNorm2d, 4), (nn.BatchNorm3d, 5)):
                    if isinstance(mod, cls):
                        return dims
                if isinstance(mod, nn.Linear) and node is phs[0]:
                    return 2
                if isinstance(mod, (nn.Identity, nn.Dropout)):
                    frontier.append(user)
            elif user.op == "call_function" and user.target in (F.conv1d, F.conv2d, F.conv3d):
                return {F.conv1d: 3, F.conv2d: 4, F.conv3d: 5}[user.target]
    return None


# ---------------------------------------------------------------------------------------------
# the built-in methods
# ---------------------------------------------------------------------------------------------
def site_thresholds(ctx: ConversionContext, thresholds: dict[str, Any] | None = None,
                    method: str = "parallel") -> dict[str, Any]:
    """Threshold of every site: ``thresholds[name]`` if given, else the QCFS threshold, else
    the clip value of a clipped ReLU. Raises one error listing every site left without one."""
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - {s.name for s in ctx.sites})
    if unknown:
        raise ConversionError(
            f"thresholds given for unknown activation sites {unknown}; the model's sites are "
            f"{[s.name for s in ctx.sites]}")
    bad = [f"{name!r}: {why}" for name, v in thresholds.items()
           if (why := _bad_threshold(v)) is not None]
    if bad:
        raise ConversionError(
            f"thresholds= must give every site a finite threshold > 0 (a number, or a tensor "
            f"broadcastable to one sample): {'; '.join(bad)}")
    out, missing = {}, []
    for s in ctx.sites:
        if s.name in thresholds:
            out[s.name] = thresholds[s.name]
        elif s.kind == "qcfs":
            out[s.name] = s.module.effective_threshold().detach().clone()
        elif s.clip is not None:
            out[s.name] = s.clip
        else:
            missing.append(s.where)
    if missing:
        raise ConversionError(
            f"method={method!r} needs a firing threshold for every activation, and these "
            f"plain ReLU activations have none: {'; '.join(missing)}. Get thresholds by "
            "training the ANN with QCFS activations (activation=leansnn.QCFS(levels=L)), by "
            "calibrating on data (method=\"calibrated\", calib_data=<loader of inputs>), or "
            "pass thresholds={site name: value} (e.g. the 99.9th percentile of each "
            "activation on training data); site names: "
            f"{[s.name for s in ctx.sites]}")
    return out


@register_method("parallel")
def _parallel_method(ctx: ConversionContext, thresholds: dict | None = None
                     ) -> dict[str, nn.Module]:
    """Parallel spiking neurons (threshold theta from QCFS, shift theta/2)."""
    th = site_thresholds(ctx, thresholds, "parallel")
    return {s.name: ParallelIF(ctx.T, th[s.name]) for s in ctx.sites}


@register_method("serial")
def _serial_method(ctx: ConversionContext, thresholds: dict | None = None
                   ) -> dict[str, nn.Module]:
    """Serial IF neurons (v0 = theta/2, soft reset, per-layer theta)."""
    th = site_thresholds(ctx, thresholds, "serial")
    return {s.name: SerialIF(ctx.T, th[s.name]) for s in ctx.sites}


# ---------------------------------------------------------------------------------------------
# the converted network
# ---------------------------------------------------------------------------------------------
# torch's messages for inputs whose channels, size or dtype do not fit a layer
_SHAPE_ERRORS = ("expected input", "shapes cannot be multiplied", "size of tensor",
                 "must match the size", "channels", "Expected", "expected scalar type",
                 "Output size is too small", "Kernel size can't be greater")


class ConvertedSNN(nn.Module):
    """A converted ANN: input ``[B, ...]`` (direct encoding, repeated over T) or
    ``[T, B, ...]`` -> per-step output ``y`` ``[T, B, K]`` (not cumulative).

    ``net`` is the rewritten graph (time folded into the batch: ``[T*B, ...]``); its neurons
    are ordinary submodules (``named_neurons()``). ``engine``: ``"auto"`` (fast path when it
    is exact, else simulation), ``"fast"`` or ``"simulate"``; also per call
    ``snn(x, engine=...)``. The prediction after ``t+1`` steps is
    ``y[:t+1].mean(0).argmax(-1)``.
    """

    def __init__(self, net: fx.GraphModule, T: int, method: str, input_dims: int | None,
                 engine: str = "auto") -> None:
        super().__init__()
        self.net = net
        self.T = int(T)
        self.method = method
        self.input_dims = input_dims
        self.engine = engine
        self.origin: Origin | None = None  # set by convert / leansnn.load; needed to save
        # products of spiking signals converted under allow_products=True (approximate)
        self.approximate: list[str] = find_products(net, [])
        self._build_plan()
        self.eval()  # converted networks are for inference (BN uses running statistics)

    # -- plan -----------------------------------------------------------------------------
    def _build_plan(self) -> None:
        from .fastpath import build_plan

        object.__setattr__(self, "_plan", build_plan(self.net))

    def _apply(self, fn, *args, **kwargs):  # .to(), .double(): rebuild graphs on new tensors
        out = super()._apply(fn, *args, **kwargs)
        if "net" in self._modules:
            self._build_plan()
        return out

    @property
    def engine(self) -> str:
        return self._engine

    @engine.setter
    def engine(self, value: str) -> None:
        if value not in ("auto", "fast", "simulate"):
            raise ValueError(f"engine must be 'auto', 'fast' or 'simulate', got {value!r}")
        self._engine = value

    def named_neurons(self) -> list[tuple[str, SpikingNeuron]]:
        """``(qualified name, neuron)`` for every spiking neuron, in graph order."""
        out = []
        for node in self.net.graph.nodes:
            if node.op == "call_module":
                m = self.net.get_submodule(node.target)
                if isinstance(m, SpikingNeuron):
                    out.append((node.target, m))
        return out

    def checkpoint_config(self) -> dict:
        """The config ``leansnn.save`` records: the ANN's registry config, ``T``, method,
        engine and each site's neuron class and tensor shapes (values are in the state dict;
        :mod:`leansnn.convert.persist`). Raises :class:`ConversionError` saying what cannot
        be saved (an ANN not built by ``leansnn.models.create``, an unregistered neuron)."""
        from .persist import snn_config

        return snn_config(self)

    def fast_path_status(self, sequence: bool = False) -> tuple[bool, list[str]]:
        """``(available, reasons it is not)`` for static (or ``sequence``) inputs."""
        return self._status(sequence)

    def _status(self, sequence: bool) -> tuple[bool, list[str]]:
        ok, reasons = self._plan.status(sequence, self.training)
        if self.approximate:  # converted under allow_products=True
            reasons = reasons + [f"{p} multiplies two spiking signals: converted approximately "
                                 "(allow_products=True), so it is simulated step by step"
                                 for p in self.approximate]
        return ok and not self.approximate, reasons

    # -- running --------------------------------------------------------------------------
    def takes_static_input(self, x: torch.Tensor) -> bool:
        """True for a static input ``[B, ...]`` (``input_dims`` dims; repeated over T)."""
        return self.input_dims is not None and x.dim() == self.input_dims

    def _check_input(self, x: Any) -> bool:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"converted SNN input: expected a torch.Tensor, got "
                             f"{type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"converted SNN input: expected a float tensor, got {x.dtype}; "
                             "use x.float()")
        param = next(self.net.parameters(), None)
        if param is not None and x.dtype != param.dtype:
            raise ValueError(f"converted SNN input: the network computes in {param.dtype}, the "
                             f"input is {x.dtype}; use x.to({param.dtype}) (or convert the "
                             f"network with snn.to({x.dtype}))")
        d = self.input_dims
        if d is None:
            raise ValueError(
                "the converted SNN does not know whether its input is static [B, ...] or a "
                "sequence [T, B, ...] (the ANN does not start with a convolution); convert "
                "with input_dims=<dims of one static batch, e.g. 2 for [B, F]>")
        spec = getattr(self.net, "input_spec", None)
        if x.dim() == d:
            if spec is not None:
                spec.check(x)
            return True
        if x.dim() == d + 1:
            if spec is not None:
                spec.check(x[0])
            if x.shape[0] != self.T:
                raise ValueError(f"converted SNN built for T={self.T} got a sequence of "
                                 f"{x.shape[0]} steps (shape {tuple(x.shape)}); convert again "
                                 f"with T={x.shape[0]} or pass a static [B, ...] input")
            return False
        raise ValueError(f"converted SNN input: expected [B, ...] with {d} dims or [T, B, ...] "
                         f"with {d + 1} dims, got shape {tuple(x.shape)}")

    def _fold(self, x: torch.Tensor, static: bool) -> torch.Tensor:
        if static:
            return x.unsqueeze(0).expand(self.T, *x.shape).reshape(-1, *x.shape[1:])
        return x.reshape(-1, *x.shape[2:])

    def _unfold(self, y: Any) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"converted SNN: the ANN must return one tensor, got "
                             f"{type(y).__name__}")
        return y.reshape(self.T, -1, *y.shape[1:])

    def forward(self, x: torch.Tensor, engine: str | None = None) -> torch.Tensor:
        static = self._check_input(x)
        eng = engine or self._engine
        if eng not in ("auto", "fast", "simulate"):
            raise ValueError(f"engine must be 'auto', 'fast' or 'simulate', got {eng!r}")
        if eng != "simulate":
            ok, reasons = self._status(not static)
            if eng == "fast" and not ok:
                raise ValueError("the exact fast path is not available: " + "; ".join(reasons)
                                 + "; use engine='simulate'")
            eng = "fast" if ok else "simulate"
        try:
            if eng == "fast":
                return self._fast(x, static)
            return _nan_rows(self._unfold(self.net(self._fold(x, static))), x, static)
        except RuntimeError as e:
            msg = str(e)
            if not any(k in msg for k in _SHAPE_ERRORS):
                raise
            raise ValueError(f"converted SNN input of shape {tuple(x.shape)} does not fit the "
                             f"network ({msg.splitlines()[0]}); give inputs shaped like the "
                             "ANN's training images") from None

    def _fast(self, x: torch.Tensor, static: bool) -> torch.Tensor:
        """The exact fast path: time-means through the graph once, the tail on the rebuilt
        trains, and the last step closed so that ``y.mean(0)`` is the rate-domain output
        bit for bit (the QCFS ANN's arithmetic at ``T == L``; see ``fastpath.close_mean``)."""
        from .fastpath import close_mean

        plan = self._plan
        means, z = plan.fast(x if static else x.mean(0))
        xf = self._fold(x, static) if plan.tail_uses_input else None
        y = self._unfold(plan.tail(xf, *means))
        if plan.mean_is_exact(not static) and isinstance(z, torch.Tensor) and (
                z.shape == y.shape[1:] and z.dtype == y.dtype):
            close_mean(y, z)
        return _nan_rows(y, x, static)

    def extra_repr(self) -> str:
        ok, _ = self._plan.status(False, False)
        return (f"T={self.T}, method={self.method!r}, engine={self._engine!r}, "
                f"fast_path={'exact' if ok else 'unavailable'}")


def _nan_rows(y: torch.Tensor, x: torch.Tensor, static: bool) -> torch.Tensor:
    """NaN input gives NaN output (as in the ANN), in both engines: every output of a sample
    with a NaN anywhere in its input is NaN (spike counts of NaN would otherwise read 0)."""
    nan = torch.isnan(x)
    if not bool(nan.any()):
        return y
    rows = nan.reshape(x.shape[0], -1).any(1) if static else (
        nan.transpose(0, 1).reshape(x.shape[1], -1).any(1))
    return y.masked_fill(rows.view(1, -1, *([1] * (y.dim() - 2))), float("nan"))


def convert(model: nn.Module, T: int, method: str = "parallel", *, engine: str = "auto",
            input_dims: int | None = None, leaf_modules: Iterable[type] = (),
            fuse_bn: bool | None = None, allow_products: bool = False,
            **options: Any) -> ConvertedSNN:
    """Convert an ANN into a spiking network with ``T`` time steps.

    Args:
        model: the ANN (not modified; a copy is converted in eval mode).
        T: time steps (>= 1). For QCFS nets with ``levels == T`` and ``method="parallel"``
            the conversion is lossless.
        method: a registered method (:func:`methods`): ``"parallel"`` (parallel spiking
            neurons), ``"serial"`` (IF neurons, ``v0 = theta/2``, soft reset), or one added
            with :func:`register_method` (e.g. ``"calibrated"``).
        engine: default engine of the result (``"auto"``, ``"fast"``, ``"simulate"``).
        input_dims: dims of one static input batch (inferred from a first convolution).
        leaf_modules: module classes to keep opaque while tracing.
        fuse_bn: fold eval-mode batch norms into the preceding conv / linear layer (faster
            simulation; outputs change by float rounding, which can move a value across a
            floor boundary). ``None`` (default): fold only for ``method="serial"`` (always
            simulated); otherwise keep the ANN's exact arithmetic, so that on the fast path at
            ``T == L`` ``y.mean(0)`` is the QCFS ANN's output bit for bit.
        allow_products: convert products of two spiking signals (gating such as
            squeeze-excitation ``x * sigmoid(...)``, attention, ``x * y`` of two activations)
            anyway. The result is then only approximate (the time mean of a product is not
            the product of the means): it is marked ``snn.approximate`` and always
            simulated, and ``fast_path_status()`` says why. Default: refused by name.
        options: passed to the method (``thresholds={site: value}`` for the built-ins).

    The result saves with ``leansnn.save`` (results, not the options: see
    :mod:`leansnn.convert.persist`) when the ANN came from ``leansnn.models.create``.
    Returns a :class:`ConvertedSNN`: ``[B, ...]`` or ``[T, B, ...]`` -> ``y`` ``[T, B, K]``.
    Raises :class:`ConversionError` (a ``ValueError``) listing every problem found.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if method not in _METHODS:
        raise ValueError(f"unknown conversion method {method!r}; available: {methods()}")
    if engine not in ("auto", "fast", "simulate"):
        raise ValueError(f"engine must be 'auto', 'fast' or 'simulate', got {engine!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"convert expects an nn.Module, got {type(model).__name__}")
    model = unwrap(model)
    leaf_modules = tuple(leaf_modules)
    fuse_bn = (method == "serial") if fuse_bn is None else bool(fuse_bn)
    gm, sites, dims = prepare(model, leaf_modules, fuse_bn, input_dims, allow_products)
    ctx = ConversionContext(gm, sites, T, dims)
    try:
        neurons = _METHODS[method](ctx, **options)
    except TypeError as e:
        raise ValueError(f"method {method!r}: bad options {sorted(options)}: {e}") from None
    snn = assemble(gm, sites, neurons, T, method, dims, engine, what=f"method {method!r}")
    snn.origin = Origin(getattr(model, "leansnn_config", None), type(model).__name__, fuse_bn,
                        tuple(c.__name__ for c in leaf_modules), ctx.info, allow_products)
    try:  # what leansnn.save will record (if it can be saved)
        snn.leansnn_config = snn.checkpoint_config()
    except ConversionError:
        pass
    return snn


def prepare(model: nn.Module, leaf_modules: Iterable[type] = (), fuse_bn: bool = True,
            input_dims: int | None = None, allow_products: bool = False
            ) -> tuple[fx.GraphModule, list[ActivationSite], int | None]:
    """Steps 1 to 3 of the pipeline, shared by :func:`convert` and ``leansnn.load``: an eval
    copy of ``model`` traced (``leaf_modules`` kept opaque), its activation sites, the
    dims of one static input batch (``input_dims`` or inferred) and, if ``fuse_bn``, batch
    norms folded. Raises :class:`ConversionError` listing every problem."""
    model = unwrap(model)
    ann = copy.deepcopy(model).eval()
    gm = trace(ann, leaf_modules)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(
            f"cannot convert: the model's forward takes {len(placeholders)} inputs "
            f"({[n.name for n in placeholders]}); wrap it in a module whose forward takes "
            "exactly one tensor")
    sites, problems = find_activation_sites(gm)
    products = find_products(gm, sites)
    if products and not allow_products:
        problems += [f"{p}: a product of two spiking signals (its time mean is not the "
                     "product of the means); pass allow_products=True to convert it "
                     "approximately" for p in products]
    if problems:
        raise ConversionError(
            f"cannot convert {type(model).__name__}: {len(problems)} operation(s) have no "
            "spiking equivalent:\n  - " + "\n  - ".join(problems) + "\nFix: replace them by "
            "ReLU or leansnn.QCFS and retrain (or fine-tune) the ANN; only QCFS, ReLU, ReLU6 "
            "and F.relu / torch.relu / Tensor.relu calls can become spiking neurons.")
    check_qcfs_thresholds(sites)
    keep_inplace_semantics(gm, sites)
    dims = input_dims if input_dims is not None else infer_input_dims(gm)
    if fuse_bn:
        fuse_batchnorm(gm)
    # the ANN's input check (models built by the registry carry one) guards the SNN too
    gm.input_spec = getattr(model, "input_spec", None)
    return gm, sites, dims


def assemble(gm: fx.GraphModule, sites: list[ActivationSite], neurons: dict[str, nn.Module],
             T: int, method: str, input_dims: int | None, engine: str = "auto",
             what: str = "the conversion") -> ConvertedSNN:
    """Steps 4 and 5: check ``neurons`` (one :class:`~leansnn.neuron.SpikingNeuron` per site),
    put each at its site of ``gm`` (in place) and wrap the graph in :class:`ConvertedSNN`."""
    missing = [s.name for s in sites if s.name not in neurons]
    if missing:
        raise ConversionError(f"{what} built no neuron for sites {missing}")
    for s in sites:
        neuron = neurons[s.name]
        if not isinstance(neuron, SpikingNeuron):
            raise ConversionError(f"{what} returned {type(neuron).__name__} for "
                                  f"{s.name}; expected a leansnn.neuron.SpikingNeuron")
    replace_sites(gm, sites, neurons, {"mode": "folded"})
    return ConvertedSNN(gm, T, method, input_dims, engine)
