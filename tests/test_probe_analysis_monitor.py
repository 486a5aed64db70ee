"""Monitor on unusual but legitimate models and potentials, against hand computations:
shared (reused) neuron modules, spiking layers that never run, undefined per-step refire
probabilities, potentials with a small spread about a large mean, NaN potentials."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.analysis import Monitor


class _Reused(nn.Module):
    """One LIF module applied after each of ``widths``' linear layers (weight-free sharing
    of the neuron, as in code that keeps one ``self.act``)."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = ls.LIF(decay=0.5, threshold=0.3)

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        for fc in self.fcs:
            x = self.act(fc(x))
            if keep is not None:
                keep.append(x.detach().clone())
        return x


@pytest.mark.parametrize("widths", [[4, 4, 4], [4, 6, 3], [5, 8, 8, 2]])
@pytest.mark.parametrize("batches", [[5], [1, 3, 2]])
def test_reused_neuron_is_one_layer_per_call(widths, batches):
    net = _Reused(widths)
    xs = [torch.rand(3, b, widths[0]) * 2 for b in batches]
    with torch.no_grad():
        per_call = [[] for _ in widths[1:]]
        for x in xs:
            keep: list = []
            net(x, keep)
            for k, s in enumerate(keep):
                per_call[k].append(s)
    with Monitor(net) as mon, torch.no_grad():
        for x in xs:
            net(x)
    st = mon.summary()
    n = sum(batches)
    names = ["act"] + [f"act#{k}" for k in range(2, len(widths))]
    assert list(st["layers"]) == names
    assert st["samples"] == n
    spikes = [sum(float(s.sum()) for s in calls) for calls in per_call]
    slots = [3 * n * w for w in widths[1:]]
    assert st["spikes_per_input"] == pytest.approx(sum(spikes) / n)
    assert st["nasfr"] == pytest.approx(sum(spikes) / sum(slots))
    for name, sp, sl, w in zip(names, spikes, slots, widths[1:]):
        lay = st["layers"][name]
        assert lay["samples"] == n and lay["shape"] == [w]
        assert lay["rate"] == pytest.approx(sp / sl)


class _Spare(nn.Module):
    """A spiking layer defined (first, or between) but not used in forward."""

    def __init__(self, spare_first: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        if spare_first:
            self.spare = ls.LIF()
        self.fc = nn.Linear(4, 6)
        self.lif = ls.LIF(decay=0.5, threshold=0.2)
        if not spare_first:
            self.spare = ls.LIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.fc(x))


@pytest.mark.parametrize("spare_first", [True, False])
def test_unused_spiking_layer_does_not_hide_the_inputs(spare_first):
    net = _Spare(spare_first)
    xs = [torch.rand(2, b, 4) for b in (3, 1)]
    with torch.no_grad():
        spikes = sum(float(net(x).sum()) for x in xs)
    with Monitor(net) as mon, torch.no_grad():
        for x in xs:
            net(x)
    st = mon.summary()
    assert st["samples"] == 4 and mon.samples == 4
    assert st["spikes_per_input"] == pytest.approx(spikes / 4)
    assert st["layers"]["spare"]["samples"] == 0


class _Feed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.neuron = ls.IF(threshold=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(x)


@pytest.mark.parametrize("current,expected", [
    ([0.0, 1.0, 1.0], [None, 1.0]),          # no spike at t=0: nothing can re-fire at t=1
    ([1.0, 0.0, 0.0, 1.0], [0.0, None, None]),
    ([0.0, 0.0], [None]),
])
def test_refire_per_step_is_undefined_without_spikes_before(current, expected):
    net = _Feed()
    with Monitor(net) as mon:
        net(torch.tensor(current).view(-1, 1, 1))
    got = mon.summary()["layers"]["neuron"]["temporal"]["p_refire_per_step"]
    assert got == expected


@pytest.mark.parametrize("offset,spread", [(50.0, 0.05), (1000.0, 1.0), (-300.0, 0.01)])
def test_potential_std_about_a_large_mean(offset, spread):
    torch.manual_seed(2)
    net = _Feed()
    net.neuron = ls.IF(threshold=1e6)  # never fires: u is the running sum of the input
    xs = [offset + spread * torch.randn(2, b, 300) for b in (40, 7, 1)]
    with Monitor(net) as mon:
        for x in xs:
            net(x)
    p = mon.summary()["layers"]["neuron"]["potential"]
    u = torch.cat([net.neuron(x, return_potential=True)[1].double() for x in xs], 1)
    assert p["mean"] == pytest.approx(float(u.mean()), rel=1e-6)
    assert p["std"] == pytest.approx(float(u.std(unbiased=False)), rel=1e-4)
    for t in range(2):
        assert p["std_per_step"][t] == pytest.approx(float(u[t].std(unbiased=False)), rel=1e-4)


@pytest.mark.parametrize("nan_share", [0.25, 1.0])
def test_nan_potentials_are_reported_not_binned(nan_share):
    x = torch.full((2, 2, 8), 0.5)
    x[0, :, : int(8 * nan_share)] = float("nan")
    net = _Feed()
    with Monitor(net, bins=9) as mon:
        net(x)
    p = mon.summary()["layers"]["neuron"]["potential"]
    nan = float(torch.isnan(net.neuron(x, return_potential=True)[1]).double().mean())
    assert nan > 0
    assert p["nan_fraction"] == pytest.approx(nan)
    binned = sum(p["hist"]) / p["sampled_values"] + p["underflow"] + p["overflow"]
    assert binned + p["nan_fraction"] == pytest.approx(1.0)
    assert math.isnan(p["mean"])


@pytest.mark.parametrize("shape,th_shape", [
    ((2, 3, 3), (2, 3, 3)),      # per neuron of a conv layer
    ((2, 3, 3), (1, 2, 3, 3)),   # per neuron, with a batch-broadcast dim
    ((2, 3, 3), (2, 1, 1)),      # per channel
    ((5,), (5,)),                # per feature of a linear layer
])
def test_tensor_threshold_fractions_use_each_neurons_threshold(shape, th_shape):
    torch.manual_seed(3)
    th = torch.rand(th_shape) + 0.2
    net = _Feed()
    net.neuron = ls.LIF(decay=0.5, threshold=th, surrogate=ls.surrogate.Rectangular(a=0.25))
    x = torch.rand(3, 4, *shape)
    with Monitor(net, potential_sample=None) as mon:
        net(x)
    p = mon.summary()["layers"]["neuron"]["potential"]
    _, u = net.neuron(x, return_potential=True)
    assert p["frac_above_threshold"] == pytest.approx(float((u >= th).double().mean()))
    assert p["frac_in_window"] == pytest.approx(float(((u - th).abs() < 0.25).double().mean()))


@pytest.mark.parametrize("modes", [("inference", "plain"), ("plain", "inference", "plain"),
                                   ("inference", "no_grad", "inference")])
def test_passes_in_and_out_of_inference_mode_mix(modes):
    torch.manual_seed(4)
    net = _Feed()
    net.neuron = ls.LIF(decay=0.5, threshold=0.3)
    xs = [torch.rand(2, b, 4) for b in range(1, len(modes) + 1)]
    ctx = {"inference": torch.inference_mode, "no_grad": torch.no_grad,
           "plain": torch.enable_grad}
    with Monitor(net, capture=3) as mon:
        for mode, x in zip(modes, xs):
            with ctx[mode]():
                net(x)
    with Monitor(net, capture=3) as ref:
        for x in xs:
            net(x)
    assert mon.summary() == ref.summary()
    assert torch.equal(mon.captured("neuron")[0], ref.captured("neuron")[0])


class _Replicas(nn.Module):
    """Runs shares of the batch through one inner model in threads of their own, as
    ``nn.DataParallel`` does with its replicas (which share the neurons' observers)."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.parts = parts
        self.module = nn.Sequential(TimeFoldLinear(4, 5), ls.LIF(decay=0.5, threshold=0.3),
                                    TimeFoldLinear(5, 3), ls.LIF(threshold=0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(self.parts, dim=1)
        outs: list = [None] * len(chunks)

        def run(i: int) -> None:
            outs[i] = self.module(chunks[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(chunks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return torch.cat(outs, 1)


def TimeFoldLinear(a: int, b: int) -> nn.Module:  # noqa: N802 - a layer factory
    from leansnn.layers import TimeFold

    return TimeFold(nn.Linear(a, b))


@pytest.mark.parametrize("parts", [2, 3])
def test_replicas_in_threads_are_one_pass(parts):
    net = _Replicas(parts)
    xs = [torch.rand(2, 6, 4), torch.rand(2, 3, 4)]
    with Monitor(net) as mon:
        for x in xs:
            net(x)
    with Monitor(net.module) as ref:
        for x in xs:
            net.module(x)
    st, want = mon.summary(), ref.summary()
    assert list(st["layers"]) == [f"module.{k}" for k in want["layers"]]
    assert st["samples"] == want["samples"] == 9
    assert st["nasfr"] == pytest.approx(want["nasfr"])
    for k, v in want["layers"].items():
        assert st["layers"][f"module.{k}"]["rate"] == pytest.approx(v["rate"])
