"""Interchange with neuromorphic tool chains through NIR (optional extra ``nir``).

``to_nir(model, example_input)`` -> ``nir.NIRGraph``; ``from_nir(graph_or_path)`` -> a
time-major leansnn module. Export goes through a table from module type to handler; add a
handler for a module type of your own with ``register_nir_handler``. The mapping, its
discretisation and what is refused are documented in ``docs/nir.md``. The ``nir`` package is
imported on first use; without it these functions raise an ``ImportError`` that says
``pip install "leansnn[nir]"``.
"""

from ._common import DEFAULT_DT, require_nir
from ._context import (
    NIRExportContext,
    NIRSignal,
    find_nir_handler,
    register_nir_handler,
    unregister_nir_handler,
)
from ._export import NIRExportError, input_is_static, to_nir
from ._handlers import soft_reset_subgraph
from ._import import LeakyIntegrator, NeuronArray, NIRNetwork, from_nir

__all__ = [
    "to_nir", "from_nir", "NIRExportError", "NIRNetwork", "NeuronArray", "LeakyIntegrator",
    "DEFAULT_DT", "require_nir", "input_is_static", "register_nir_handler",
    "unregister_nir_handler", "find_nir_handler", "NIRExportContext", "NIRSignal",
    "soft_reset_subgraph",
]
