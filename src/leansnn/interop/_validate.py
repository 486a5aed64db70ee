"""Checks of a NIR graph before :func:`~leansnn.interop.from_nir` builds anything from it.

Every problem is reported as ``(node name, what is wrong)`` so that the importer can list
them all in one error: edges to nodes that do not exist, nodes without input, parameter
arrays that are not numbers or not finite (integer arrays are converted to floats; a missing
bias or ``v_reset`` is zero, as NIR allows), and, once the modules exist, the shapes along
every edge (parameter sizes against the shape that arrives, the declared input and output
types against the shapes that flow) by one pass of a zero sample through the graph.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

__all__ = ["check_edges", "normalise_node", "check_inputs", "check_shapes"]

# value arrays (converted to float64); other array fields (stride, padding, ...) are ints
_VALUE_FIELDS = ("weight", "bias", "scale", "tau", "r", "v_leak", "v_threshold", "v_reset",
                 "threshold")
# missing (None) fields that mean zeros of the shape of the given one
_ZERO_IF_MISSING = {"bias": "weight", "v_reset": "v_threshold", "v_leak": "tau"}


def check_edges(nodes: dict, edges, where: str = "") -> list[tuple[str, str]]:
    """Problems with the edges of one (sub-)graph: malformed pairs, unknown endpoints."""
    problems = []
    for e in edges:
        if not (isinstance(e, (tuple, list)) and len(e) == 2
                and all(isinstance(n, str) for n in e)):
            problems.append((f"{where}edge {e!r}", "an edge must be a pair of node names"))
            continue
        for n in e:
            if n not in nodes:
                problems.append((f"{where}{e[0]} -> {e[1]}",
                                 f"edge to or from node {n!r}, which is not in the graph"))
    return problems


def _as_float(name: str, field: str, value) -> np.ndarray:
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"parameter {field} is not an array of numbers ({e})") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ValueError(f"parameter {field} has dtype {a.dtype}; NIR parameters are numbers")
    if a.dtype.kind == "b":
        raise ValueError(f"parameter {field} is boolean; NIR parameters are numbers")
    a = a.astype(np.float64) if a.dtype.kind in "iu" else a
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"parameter {field} holds {bad} non-finite value(s) (NaN or Inf)")
    return a


def normalise_node(name: str, node):
    """A copy of ``node`` whose value arrays are finite floats (integers converted, a
    missing bias / ``v_reset`` / ``v_leak`` set to zeros); ``ValueError`` saying which field
    is wrong otherwise. Other objects (``Input``, ``Output``) are returned as they are."""
    if not dataclasses.is_dataclass(node):
        return node
    fields = {f.name for f in dataclasses.fields(node)}
    if not fields & set(_VALUE_FIELDS):
        return node
    out = copy.copy(node)
    for field in _VALUE_FIELDS:
        if field not in fields:
            continue
        value = getattr(node, field)
        if value is None and field in _ZERO_IF_MISSING:
            ref = getattr(node, _ZERO_IF_MISSING[field], None)
            if field == "bias" and ref is not None:
                value = np.zeros(np.shape(ref)[0])  # one per output channel / feature
            elif ref is not None:
                value = np.zeros(np.shape(ref))
        if value is None:
            raise ValueError(f"parameter {field} is missing")
        object.__setattr__(out, field, _as_float(name, field, value))
    _check_param_shapes(out)
    return out


def _check_param_shapes(node) -> None:
    w = getattr(node, "weight", None)
    kind = type(node).__name__
    if w is not None:
        want = 4 if kind == "Conv2d" else 2
        if w.ndim != want:
            raise ValueError(f"weight has shape {list(w.shape)}; a {kind} weight has {want} "
                             "dims")
        b = getattr(node, "bias", None)
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"bias has shape {list(b.shape)} but the weight has "
                             f"{w.shape[0]} outputs (expected [{w.shape[0]}])")


def check_inputs(preds: dict[str, list[str]], compute: list[str], output: str) -> list:
    """Nodes that receive nothing (a graph that could not run)."""
    problems = [(n, "no incoming edge: the node receives no input") for n in compute
                if not preds.get(n)]
    if not preds.get(output):
        problems.append((output, "the Output node has no incoming edge"))
    return problems


def _declared(types, key: str) -> tuple[int, ...] | None:
    if not isinstance(types, dict):
        return None
    v = types.get(key)
    if v is None:
        return None
    a = np.asarray(v).reshape(-1)
    if a.size == 0:
        return None
    try:
        return tuple(int(s) for s in a)
    except (TypeError, ValueError):
        return None


def _param_fit(node, shape: tuple[int, ...]) -> str | None:
    """Why the parameters of ``node`` do not fit an input of per-sample ``shape``."""
    kind = type(node).__name__
    w = getattr(node, "weight", None)
    if kind in ("Affine", "Linear") and w is not None:
        if shape != (w.shape[1],):
            return (f"the {kind} weight {list(w.shape)} takes {w.shape[1]} inputs, but the "
                    f"incoming edge carries shape {list(shape)}")
    elif kind == "Conv2d" and w is not None:
        cin = int(w.shape[1]) * int(node.groups)
        if len(shape) != 3 or shape[0] != cin:
            return (f"the Conv2d weight {list(w.shape)} (groups={int(node.groups)}) takes "
                    f"[{cin}, H, W], but the incoming edge carries shape {list(shape)}")
    for field in ("scale", "tau", "r", "v_leak", "v_threshold", "v_reset", "threshold"):
        a = getattr(node, field, None)
        if a is None or np.ndim(a) == 0:
            continue
        try:
            fits = np.broadcast_shapes(np.shape(a), shape) == shape
        except ValueError:
            fits = False
        if not fits:
            return (f"parameter {field} has shape {list(np.shape(a))}, which does not fit the "
                    f"incoming shape {list(shape)}")
    return None


def _node_shape(key: str, ins: list[tuple[str, tuple]], node, module, dtype) -> tuple:
    """Output shape of one node given its inputs (``ValueError`` saying what is wrong)."""
    shapes = {s for _, s in ins}
    if len(shapes) > 1:
        desc = ", ".join(f"{list(s)} from {p!r}" for p, s in ins)
        raise ValueError(f"its incoming edges carry different shapes ({desc}); edges into a "
                         "node are summed and must agree")
    shape = ins[0][1]
    declared = _declared(getattr(node, "input_type", None), "input")
    if declared is not None and declared != shape and (not _is_neuron(node) or
                                                        np.prod(declared) != np.prod(shape)):
        raise ValueError(f"declares input type {list(declared)} but receives {list(shape)}")
    why = _param_fit(node, shape) if not isinstance(node, str) else None
    if why:
        raise ValueError(why)
    try:
        with torch.no_grad():
            y = module(torch.zeros(1, 1, *shape, dtype=dtype))
    except Exception as e:  # the layer itself refuses the shape
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"does not accept the incoming shape {list(shape)}: {first}") from None
    out = tuple(int(s) for s in y.shape[2:])
    declared = _declared(getattr(node, "output_type", None), "output")
    if declared is not None and declared != out and (not _is_neuron(node) or
                                                      np.prod(declared) != np.prod(out)):
        raise ValueError(f"declares output type {list(declared)} but computes {list(out)} "
                         f"from its input {list(shape)}")
    return out


def _is_neuron(node) -> bool:
    return hasattr(node, "v_threshold") or hasattr(node, "tau") or hasattr(node, "r")


def check_shapes(net, nodes: dict, inp: str, outp: str, dtype) -> list[tuple[str, str]]:
    """Follow a zero sample through ``net`` (a ``NIRNetwork``), node by node; the problems
    found (parameter sizes, declared types, disagreeing edges), each naming its node."""
    names = {k: n for n, k in net.nodes.items()}
    shapes: dict[str, tuple] = {"__input__": tuple(net.input_shape)}
    problems = []
    for key in net.order:
        preds = net.preds[key]
        if any(p not in shapes for p in preds):
            continue  # an upstream node failed: reported there
        name = names.get(key, key)
        try:
            shapes[key] = _node_shape(key, [(names.get(p, "input"), shapes[p]) for p in preds],
                                      nodes.get(name), net.layers[key], dtype)
        except ValueError as e:
            problems.append((name, str(e)))
    outs = [(names.get(p, "input"), shapes[p]) for p in net.output_preds if p in shapes]
    if not problems and outs:
        if len({s for _, s in outs}) > 1:
            problems.append((outp, "its incoming edges carry different shapes "
                             f"({', '.join(f'{list(s)} from {p!r}' for p, s in outs)})"))
        else:
            declared = _declared(getattr(nodes.get(outp), "output_type", None), "output")
            if declared is None:
                declared = _declared(getattr(nodes.get(outp), "input_type", None), "input")
            if declared is not None and declared != outs[0][1]:
                problems.append((outp, f"the Output node declares shape {list(declared)} but "
                                 f"the graph computes {list(outs[0][1])}"))
    return problems
