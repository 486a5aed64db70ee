"""Model registry: build every model by name, and rebuild it from a JSON-able config.

``create(name, **kwargs)`` calls the registered builder and records
``model.leansnn_config = {"name": name, "kwargs": <JSON-able kwargs>}`` so checkpoints can
rebuild the model without the script that made it. Non-primitive arguments (e.g. an
activation module) are encoded by :mod:`leansnn.base.config` (classes registered with
``register_configurable`` provide ``to_config() -> dict`` and accept those keys back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..base.config import decode, encode, register_configurable

__all__ = [
    "register", "register_lazy", "builder", "create", "available", "from_config",
    "register_configurable", "encode", "decode",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# name -> module that registers it when imported (packages above models/, e.g. convert/)
_LAZY: dict[str, str] = {}


def register(name: str) -> Callable:
    """Decorator: register a builder ``fn(**kwargs) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def register_lazy(name: str, module: str) -> None:
    """Declare that importing ``module`` registers the builder ``name``.

    Used by the package root (the composition root) for builders that live above
    ``models/`` (``"converted"`` in :mod:`leansnn.convert`), so ``create`` and checkpoints
    find them without ``models/`` importing those packages.
    """
    _LAZY[name] = module


def _lookup(name: str) -> Callable[..., nn.Module] | None:
    from . import _ensure_builders

    _ensure_builders()
    if name not in _MODELS and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    return _MODELS.get(name)


def builder(name: str) -> Callable[..., nn.Module]:
    """The builder function registered as ``name`` (its signature lists the arguments a
    config may hold); ``ValueError`` naming the available models if there is none."""
    fn = _lookup(name)
    if fn is None:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    return fn


def available() -> list[str]:
    """Names of all registered models."""
    from . import _ensure_builders

    _ensure_builders()
    return sorted(set(_MODELS) | set(_LAZY))


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` (see :func:`available`)."""
    builder = _lookup(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    _check_arguments(name, builder, kwargs)
    cfg = {"name": name, "kwargs": encode(kwargs)}
    model = builder(**kwargs)
    model.leansnn_config = cfg
    return model


class ModelArgumentError(TypeError, ValueError):
    """``create`` got an argument its builder does not take (a ``TypeError`` as Python's own,
    and a ``ValueError`` like leansnn's other user errors)."""


def _check_arguments(name: str, fn: Callable[..., nn.Module], kwargs: dict) -> None:
    """Unknown keyword arguments: an error naming them and the builder's arguments."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    ok = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                          p.KEYWORD_ONLY)]
    bad = sorted(set(kwargs) - set(ok))
    if bad:
        raise ModelArgumentError(f"model {name!r} takes no argument(s) {', '.join(bad)}; its "
                                 f"arguments: {', '.join(ok)}")


def from_config(cfg: dict) -> nn.Module:
    """Rebuild a model from ``model.leansnn_config``."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ValueError(f"not a model config: {cfg!r}")
    if _lookup(cfg["name"]) is None:
        raise ValueError(f"unknown model {cfg['name']!r}; available: {', '.join(available())}")
    return create(cfg["name"], **decode(cfg.get("kwargs", {})))
