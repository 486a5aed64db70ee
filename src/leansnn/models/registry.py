"""Model registry: build every model by name, and rebuild it from a JSON-able config.

``create(name, **kwargs)`` calls the registered builder and records
``model.leansnn_config = {"name": name, "kwargs": <JSON-able kwargs>}`` so checkpoints can
rebuild the model without the script that made it. Non-primitive arguments (e.g. an
activation module) are encoded through :func:`register_configurable` classes, which provide
``to_config() -> dict`` and accept those keys back as constructor arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = [
    "register", "create", "available", "from_config", "register_configurable", "encode",
    "decode",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CONFIGURABLE: dict[str, type] = {}


def register(name: str) -> Callable:
    """Decorator: register a builder ``fn(**kwargs) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def register_configurable(cls: type) -> type:
    """Class decorator: allow instances of ``cls`` as model arguments (via ``to_config``)."""
    _CONFIGURABLE[cls.__name__] = cls
    return cls


def available() -> list[str]:
    """Names of all registered models."""
    from . import _ensure_builders

    _ensure_builders()
    return sorted(_MODELS)


def encode(value: Any) -> Any:
    """Encode a builder argument as JSON-able data (see module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    name = type(value).__name__
    if name in _CONFIGURABLE and hasattr(value, "to_config"):
        return {"__class__": name, "args": encode(value.to_config())}
    if isinstance(value, type) and value.__name__ in _CONFIGURABLE:
        return {"__class__": value.__name__, "args": {}}
    raise ValueError(
        f"cannot record model argument {value!r} of type {name} in a checkpoint; use "
        f"numbers, strings, lists or one of {sorted(_CONFIGURABLE)}"
    )


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__class__" in value:
            name = value["__class__"]
            if name not in _CONFIGURABLE:  # builder modules register their classes
                from . import _ensure_builders

                _ensure_builders()
            if name not in _CONFIGURABLE:
                raise ValueError(f"checkpoint refers to unknown class {name!r}")
            return _CONFIGURABLE[name](**decode(value.get("args", {})))
        return {k: decode(v) for k, v in value.items()}
    return value


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` (see :func:`available`)."""
    from . import _ensure_builders

    _ensure_builders()
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    cfg = {"name": name, "kwargs": encode(kwargs)}
    model = _MODELS[name](**kwargs)
    model.leansnn_config = cfg
    return model


def from_config(cfg: dict) -> nn.Module:
    """Rebuild a model from ``model.leansnn_config``."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ValueError(f"not a model config: {cfg!r}")
    return create(cfg["name"], **decode(cfg.get("kwargs", {})))
