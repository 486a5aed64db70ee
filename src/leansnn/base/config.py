"""The JSON codec for model-builder arguments (what checkpoints record to rebuild a model).

Plain data (None, bool, int, float, str, lists, dicts) is stored as it is. Instances of
classes registered with :func:`register_configurable` (e.g. :class:`leansnn.QCFS`) are
stored as ``{"__class__": name, "args": obj.to_config()}`` and rebuilt with
``cls(**args)``; a registered class itself (not an instance) as ``{"__class__": name,
"args": {}}``. The module that defines such a class registers it when it is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_configurable", "encode", "decode", "configurable_classes"]

_CONFIGURABLE: dict[str, type] = {}


def register_configurable(cls: type) -> type:
    """Class decorator: allow instances of ``cls`` as model arguments (via ``to_config``)."""
    _CONFIGURABLE[cls.__name__] = cls
    return cls


def configurable_classes() -> list[str]:
    """Names of the registered configurable classes."""
    return sorted(_CONFIGURABLE)


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
    """Inverse of :func:`encode` (the classes must be registered: import their module)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "__class__" in value:
            name = value["__class__"]
            if name not in _CONFIGURABLE:
                raise ValueError(f"checkpoint refers to unknown class {name!r}; known: "
                                 f"{sorted(_CONFIGURABLE)}")
            return _CONFIGURABLE[name](**decode(value.get("args", {})))
        return {k: decode(v) for k, v in value.items()}
    return value
