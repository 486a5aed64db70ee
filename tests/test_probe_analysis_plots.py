"""Potential-histogram figures: the drawn shares against a hand count of the potentials
(values off the plot: under/overflow and NaN), and a layer that never ran."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.analysis import Monitor, plots


class _Feed(nn.Module):
    def __init__(self, neuron: nn.Module, spare: bool = False) -> None:
        super().__init__()
        self.neuron = neuron
        if spare:
            self.spare = ls.LIF()  # never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(x)


def _input(nan: int, big: int) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.rand(3, 4, 10) * 0.5
    x[:, :, :nan] = float("nan")
    x[:, :, nan:nan + big] = 50.0  # far above the histogram's range
    return x


@pytest.mark.parametrize("nan,big", [(0, 0), (3, 0), (2, 4), (10, 0)])
def test_drawn_shares_are_shares_of_all_values(nan, big):
    net = _Feed(ls.IF(threshold=1.0, reset="hard"))
    x = _input(nan, big)
    with Monitor(net, bins=12) as mon:
        net(x)
    p = mon.summary()["layers"]["neuron"]["potential"]
    u = net.neuron(x, return_potential=True)[1].double()
    lo, hi = p["range"]
    inside = ((u >= lo) & (u < hi)).double()
    pooled = plots._shares(p["hist"], p)
    assert pooled.sum() == pytest.approx(float(inside.mean()))
    steps = plots._shares(p["hist_per_step"], p, len(p["hist_per_step"]))
    for t in range(u.shape[0]):
        assert steps[t].sum() == pytest.approx(float(inside[t].mean()))
        expected = np.histogram(u[t][torch.isfinite(u[t])].numpy(), 12, (lo, hi))[0]
        assert steps[t] == pytest.approx(expected / u[t].numel())


@pytest.mark.parametrize("two_runs", [False, True])
def test_layer_without_potentials_is_drawn_without_warnings(tmp_path, two_runs):
    net = _Feed(ls.LIF(decay=0.5, threshold=0.2), spare=True)
    with Monitor(net) as mon:
        net(torch.rand(2, 3, 5))
    st = mon.summary()
    runs = [("a", st), ("b", st)] if two_runs else [("a", st)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plots.plot_potential_hist(runs, tmp_path / "h.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("T,readout_steps", [(5, 1), (4, 2), (1, 3)])
def test_spike_heatmap_of_layers_with_different_step_counts(tmp_path, T, readout_steps):
    torch.manual_seed(1)
    hidden = ls.LIF(decay=0.5, threshold=0.3)
    readout = ls.LIF(threshold=0.1)
    net = _Feed(hidden)
    net.readout = readout
    captured = {}
    with Monitor(net, capture=1) as mon:
        h = hidden(torch.rand(T, 2, 6))
        readout(h.mean(0, keepdim=True).expand(readout_steps, -1, -1).contiguous())
    for name in ("neuron", "readout"):
        captured[name] = mon.captured(name)[0]
    assert captured["readout"].shape[0] == readout_steps
    path = plots.plot_spike_heatmap("mixed", captured, tmp_path / "s.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
