"""Redundancy analysis of SNNs: streaming monitors, firing and potential statistics,
operation counts and energy, plots and reports.

``Monitor(model)`` records per-layer statistics while data runs through the model;
``energy(model, data)`` counts synaptic operations from the spikes really emitted;
``analyze(model, data)`` does both in one pass (plus accuracy) and ``write_report`` turns one
or two such results into ``report.md`` / a self-contained ``report.html`` with PNG figures
(the ``leansnn analyze`` command).
Plotting needs matplotlib and is imported only when a report is written.
"""

from .energy import OpCounter, energy, fanout_map, is_binary
from .monitor import Monitor, MonitorConfig, layer_threshold, surrogate_window
from .report import analyze, to_json, write_report

__all__ = [
    "Monitor", "MonitorConfig", "OpCounter", "energy", "fanout_map", "is_binary", "layer_threshold",
    "surrogate_window", "analyze", "write_report", "to_json",
]
