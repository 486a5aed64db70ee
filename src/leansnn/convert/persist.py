"""Saving converted networks: results, not recipes.

``leansnn.save(snn, path)`` records, beside the state dict, a few kilobytes of JSON
(:func:`snn_config`): the ANN's registry config, ``T``, the method (a label only), the
engine, the pipeline switches (``fuse_bn``, leaf modules, input dims, dtype) and, for each
activation site, the neuron class and the shapes of its tensors. The values (thresholds,
shifts, amplitudes, weights) are in the state dict.

``leansnn.load(path)`` calls the registry builder ``"converted"`` (:func:`converted`): it
rebuilds the ANN from its config, traces, fuses and finds the sites exactly as
:func:`~leansnn.convert.convert` does (:func:`~leansnn.convert.converter.prepare`), puts an
empty neuron of the recorded class and shapes at each site
(:func:`~leansnn.convert.converter.assemble`) and loads the state dict. Calibration is never
re-run and needs no data; the outputs are bit-identical.

Neuron classes a method puts at sites must be registered with :func:`register_site_neuron`
(:class:`ParallelIF` and :class:`SerialIF` are): the class provides ``to_config()``, its
constructor arguments, where tensors stand for themselves (only their shape and dtype are
recorded; a tensor of ones of that shape is passed back to the constructor, and the state
dict then fills in the values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..base.config import decode, encode
from ..models.registry import from_config, register
from .converter import ConversionError, ConvertedSNN, Origin, assemble, convert, prepare
from .neurons import ParallelIF, SerialIF

__all__ = ["register_site_neuron", "site_neuron_classes", "snn_config", "converted"]

_TENSOR = "__tensor__"
_SITE_NEURONS: dict[str, tuple[type, Callable[[Any], dict]]] = {}


def register_site_neuron(cls: type | None = None, *,
                         to_config: Callable[[Any], dict] | None = None):
    """Allow neurons of class ``cls`` at the sites of a saved converted network.

    ``to_config(neuron) -> dict`` gives the constructor arguments (default: the class's own
    ``to_config`` method); tensors in it are recorded by shape and dtype only, plain values
    as JSON. Usable as a class decorator. Raises ``ValueError`` if another class of the same
    name is registered.
    """
    def deco(c: type) -> type:
        fn = to_config if to_config is not None else getattr(c, "to_config", None)
        if fn is None:
            raise ValueError(f"register_site_neuron({c.__name__}): the class has no "
                             "to_config() method; pass to_config=<neuron -> constructor "
                             "arguments>")
        old = _SITE_NEURONS.get(c.__name__)
        if old is not None and old[0] is not c:
            raise ValueError(f"another site-neuron class named {c.__name__!r} is already "
                             "registered")
        _SITE_NEURONS[c.__name__] = (c, fn)
        return c

    return deco(cls) if cls is not None else deco


def site_neuron_classes() -> list[str]:
    """Names of the neuron classes a saved converted network may hold."""
    return sorted(_SITE_NEURONS)


register_site_neuron(ParallelIF)
register_site_neuron(SerialIF)


def _encode_args(args: dict, where: str) -> dict:
    out = {}
    for k, v in args.items():
        if isinstance(v, torch.Tensor):
            out[k] = {_TENSOR: list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            continue
        try:
            out[k] = encode(v)
        except ValueError as e:
            raise ConversionError(f"cannot save {where}: argument {k!r}: {e}") from None
    return out


def _decode_args(args: dict) -> dict:
    out = {}
    for k, v in args.items():
        if isinstance(v, dict) and _TENSOR in v:
            out[k] = torch.ones(v[_TENSOR], dtype=_torch_dtype(v.get("dtype", "float32")))
        else:
            out[k] = decode(v)
    return out


def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise ConversionError(f"checkpoint names an unknown dtype {name!r}")
    return dt


def _dtype(snn: nn.Module) -> str | None:
    t = next((t for t in snn.state_dict().values() if t.is_floating_point()), None)
    return None if t is None else str(t.dtype).removeprefix("torch.")


def snn_config(snn: ConvertedSNN) -> dict:
    """The registry config ``leansnn.save`` records for ``snn`` (module docstring).

    Raises :class:`ConversionError` naming what cannot be saved: an ANN not built by
    ``leansnn.models.create``, or a neuron class not registered with
    :func:`register_site_neuron`.
    """
    origin = getattr(snn, "origin", None)
    if origin is None or origin.ann_config is None:
        what = f"its ANN ({origin.ann_class})" if origin is not None else "its ANN"
        raise ConversionError(
            f"cannot save this converted SNN: {what} was not built by leansnn.models.create, "
            "so leansnn.load could not rebuild it. Build the ANN with "
            "leansnn.models.create(name, ...) (register your own builder with "
            "@leansnn.models.register(name)) and convert that, or save only the weights "
            "with torch.save(snn.state_dict(), path)")
    sites = []
    for name, neuron in snn.named_neurons():
        cls = type(neuron)
        entry = _SITE_NEURONS.get(cls.__name__)
        if entry is None or entry[0] is not cls:
            raise ConversionError(
                f"cannot save this converted SNN: the neuron at site {name!r} is a "
                f"{cls.__name__}, which is not a registered site neuron (registered: "
                f"{site_neuron_classes()}); register it with "
                f"leansnn.convert.register_site_neuron({cls.__name__}) (it needs a "
                "to_config() returning its constructor arguments)")
        args = _encode_args(entry[1](neuron), f"the {cls.__name__} at site {name!r}")
        sites.append({"site": name, "neuron": cls.__name__, "args": args})
    kwargs = {"ann": origin.ann_config, "T": snn.T, "method": snn.method,
              "engine": snn.engine, "fuse_bn": origin.fuse_bn, "input_dims": snn.input_dims,
              "leaf_modules": list(origin.leaf_modules), "dtype": _dtype(snn), "sites": sites}
    if origin.allow_products:  # recorded only when set: older files stay byte-identical
        kwargs["allow_products"] = True
    return {"name": "converted", "kwargs": kwargs}


def _leaf_classes(model: nn.Module, names: list[str]) -> tuple[type, ...]:
    found = {type(m).__name__: type(m) for m in model.modules()}
    missing = [n for n in names if n not in found]
    if missing:
        raise ConversionError(f"the saved conversion kept modules of classes {missing} opaque, "
                              "but the rebuilt ANN has no such module")
    return tuple(found[n] for n in names)


def _site_neuron(spec: dict) -> nn.Module:
    name = spec.get("neuron")
    if name not in _SITE_NEURONS:
        raise ConversionError(
            f"the checkpoint's site {spec.get('site')!r} holds a {name} neuron, which is not "
            f"registered (registered: {site_neuron_classes()}); import the module that "
            "registers it (leansnn.convert.register_site_neuron) before leansnn.load")
    return _SITE_NEURONS[name][0](**_decode_args(spec.get("args", {})))


@register("converted")
def converted(ann: dict, T: int, method: str = "parallel", engine: str = "auto",
              sites: list | None = None, fuse_bn: bool = True, input_dims: int | None = None,
              leaf_modules: list | None = None, dtype: str | None = None,
              options: dict | None = None, allow_products: bool = False) -> nn.Module:
    """Rebuild a converted SNN (weights and neuron values come from the checkpoint).

    ``sites``: per site ``{"site", "neuron", "args"}`` as :func:`snn_config` records them.
    Checkpoints written before results were recorded carry ``options`` instead and are
    converted again (``leansnn.convert(from_config(ann), T, method, **options)``).
    """
    model = from_config(ann)
    if sites is None:
        return convert(model, T, method, engine=engine, **(options or {}))
    leaves = _leaf_classes(model, list(leaf_modules or []))
    gm, found, dims = prepare(model, leaves, fuse_bn, input_dims, allow_products)
    names = [s.name for s in found]
    saved = [s.get("site") for s in sites]
    if names != saved:
        raise ConversionError(
            f"the rebuilt ANN's activation sites {names} differ from the checkpoint's {saved}; "
            "was it written by a leansnn whose converter finds other sites?")
    neurons = {s.name: _site_neuron(spec) for s, spec in zip(found, sites, strict=True)}
    snn = assemble(gm, found, neurons, T, method, dims, engine, what="the checkpoint")
    if dtype is not None and dtype != "float32":
        snn.to(_torch_dtype(dtype))
    snn.origin = Origin(encode(ann), type(model).__name__, fuse_bn, tuple(leaf_modules or ()),
                        allow_products=allow_products)
    return snn
