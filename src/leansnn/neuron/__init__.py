"""Multi-step spiking neurons: pure functions, surrogate gradients, thin modules."""

from . import surrogate
from .functional import IMPLEMENTATIONS, check_sequence, lif, lif_reference
from .fused import lif_fused
from .modules import (
    IF,
    LIF,
    LIFParams,
    NeuronOutput,
    SpikesAndPotential,
    SpikesAndState,
    SpikingNeuron,
    set_debug,
)

IMPLEMENTATIONS["fused"] = lif_fused

__all__ = [
    "surrogate", "lif", "lif_reference", "lif_fused", "check_sequence", "IMPLEMENTATIONS",
    "LIF", "IF", "LIFParams", "SpikingNeuron", "set_debug", "NeuronOutput", "SpikesAndPotential",
    "SpikesAndState",
]
