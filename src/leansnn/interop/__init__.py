"""Interchange with neuromorphic tool chains through NIR (optional extra ``nir``).

``to_nir(model, example_input)`` -> ``nir.NIRGraph``; ``from_nir(graph_or_path)`` -> a
time-major leansnn module. The mapping, its discretisation and what is refused are documented
in ``docs/nir.md``. The ``nir`` package is imported on first use; without it these functions
raise an ``ImportError`` that says ``pip install "leansnn[nir]"``.
"""

from ._common import DEFAULT_DT, require_nir
from ._export import NIRExportError, to_nir
from ._import import LeakyIntegrator, NeuronArray, NIRNetwork, from_nir

__all__ = [
    "to_nir", "from_nir", "NIRExportError", "NIRNetwork", "NeuronArray", "LeakyIntegrator",
    "DEFAULT_DT", "require_nir",
]
