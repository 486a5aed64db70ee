"""Redundancy analysis of SNNs: streaming monitors, firing and potential statistics,
operation counts and energy, plots and reports.

``Monitor(model)`` records per-layer statistics while data runs through the model;
``energy(model, data)`` counts synaptic operations from the spikes really emitted;
``leansnn.analysis.report.write_report`` turns both into ``report.md`` / ``report.html``.
Plotting needs matplotlib and is imported only when a report is written.
"""

from .energy import OpCounter, energy, fanout_map, is_binary
from .monitor import Monitor, MonitorConfig, layer_threshold, surrogate_window

__all__ = [
    "Monitor", "MonitorConfig", "OpCounter", "energy", "fanout_map", "is_binary", "layer_threshold",
    "surrogate_window",
]
