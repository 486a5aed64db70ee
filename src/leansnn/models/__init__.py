"""Model registry (``create``, ``available``) and the builders that register into it.

Every module in this package is imported on first use of the registry, so a new builder
module only needs ``@register("name")`` on its builder functions.
"""

from .registry import (
    available,
    create,
    decode,
    encode,
    from_config,
    register,
    register_configurable,
)

__all__ = ["available", "create", "from_config", "register", "register_configurable", "encode",
           "decode"]

_LOADED = False


def _ensure_builders() -> None:
    global _LOADED
    if _LOADED:
        return
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True
