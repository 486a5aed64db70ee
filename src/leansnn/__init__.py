"""leansnn: lean spiking neural networks in PyTorch.

Time-major tensors ``[T, B, ...]`` everywhere. See README.md for the tour and
docs/architecture.md for the layout. Heavier sub-packages (attention, conversion, analysis,
interop) are imported on first use.
"""

import importlib as _importlib

from . import data, layers, models, neuron
from .base.version import __version__
from .checkpoint import load, load_checkpoint, save
from .neuron import IF, LIF, SpikingNeuron, set_debug, surrogate

# the package root composes the floors: builders that live above models/ are declared here
models.registry.register_lazy("converted", "leansnn.convert")
models.registry.register_lazy("qcfs_of", "leansnn.convert")

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "ASA": ("leansnn.attention", "ASA"),
    "attention": ("leansnn.attention", None),
    "QCFS": ("leansnn.activations", "QCFS"),
    "activations": ("leansnn.activations", None),
    "convert": ("leansnn.convert", None),  # the package, callable as convert()
    "conversion": ("leansnn.convert", None),
    "analysis": ("leansnn.analysis", None),
    "interop": ("leansnn.interop", None),
    "train": ("leansnn.train", None),
    "encoding": ("leansnn.encoding", None),
    "distributed": ("leansnn.distributed", None),
}

__all__ = [
    "__version__", "LIF", "IF", "SpikingNeuron", "surrogate", "set_debug", "layers", "neuron",
    "data", "models", "save", "load", "load_checkpoint", *_LAZY,
]


def __dir__() -> list[str]:
    """Module attributes plus the lazily imported ones, for tab completion."""
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str):
    if name in _LAZY:
        mod_name, attr = _LAZY[name]
        mod = _importlib.import_module(mod_name)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'leansnn' has no attribute {name!r}")
