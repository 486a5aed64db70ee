"""Monitor: metrics against hand-worked numbers and a brute-force loop reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.analysis import Monitor
from leansnn.layers import TimeFold


class _Seq(nn.Module):
    """Feeds a given current ``[T, B, ...]`` straight into one neuron."""

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(x)


def test_hand_worked_two_neurons():
    # IF, threshold 1, soft reset: neuron 0 gets [1, 1, 0] -> spikes [1, 1, 0];
    # neuron 1 gets [0, 1, 1] -> spikes [0, 1, 1]
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]).view(3, 1, 2)
    net = _Seq(ls.IF(threshold=1.0))
    with Monitor(net) as mon:
        s = net(x)
    assert s.view(3, 2).tolist() == [[1, 0], [1, 1], [0, 1]]
    st = mon.summary()
    lay = st["layers"]["neuron"]
    assert st["nasfr"] == pytest.approx(4 / 6)
    assert lay["rate"] == pytest.approx(4 / 6)
    assert lay["rate_per_step"] == pytest.approx([0.5, 1.0, 0.5])
    assert lay["rate_per_channel"] == pytest.approx([2 / 3, 2 / 3])
    # P(fire at t | fired at t-1) = (1 + 1) / (1 + 2)
    assert lay["temporal"]["p_refire"] == pytest.approx(2 / 3)
    assert lay["temporal"]["p_refire_per_step"] == pytest.approx([1.0, 0.5])
    # cos([1,0],[1,1]) = cos([1,1],[0,1]) = 1/sqrt(2)
    assert lay["temporal"]["consecutive_cosine"] == pytest.approx(1 / math.sqrt(2))
    assert lay["silent_fraction"] == 0 and lay["always_firing_fraction"] == 0
    assert lay["spatial"]["channel_cosine"] is None  # no spatial dims
    pot = lay["potential"]
    # u = [[1,0],[1,1],[0,1]]: mean 4/6, 4 of 6 values >= 1
    assert pot["mean"] == pytest.approx(4 / 6)
    assert pot["std"] == pytest.approx(math.sqrt(4 / 6 - (4 / 6) ** 2))
    assert pot["frac_above_threshold"] == pytest.approx(4 / 6)


def _reference(s: np.ndarray, u: np.ndarray, th: float, a: float, lo: float, hi: float,
               bins: int) -> dict:
    """Brute-force loops over s, u [T, B, C, H, W] (binary s)."""
    s, u = s.astype(np.float64), u.astype(np.float64)
    T, B, C = s.shape[:3]
    flat = s.reshape(T, B, C, -1)
    N = C * flat.shape[-1]
    rate = s.sum() / (T * B * N)
    joint = prev = 0.0
    tc, tn = 0.0, 0
    for b in range(B):
        for t in range(1, T):
            a1, a0 = flat[t, b].ravel(), flat[t - 1, b].ravel()
            joint += float((a1 * a0).sum())
            prev += float(a0.sum())
            if a1.sum() > 0 and a0.sum() > 0:
                tc += float(a1 @ a0 / np.sqrt(a1.sum() * a0.sum()))
                tn += 1
    sc, sn = 0.0, 0
    for t in range(T):
        for b in range(B):
            maps = [flat[t, b, c] for c in range(C) if flat[t, b, c].sum() > 0]
            k = len(maps)
            if k < 2:
                continue
            tot = 0.0
            for i in range(k):
                for j in range(k):
                    if i != j:
                        tot += maps[i] @ maps[j] / np.sqrt(maps[i].sum() * maps[j].sum())
            sc += tot / (k * (k - 1))
            sn += 1
    per_neuron = s.sum(axis=(0, 1))
    per_in = s.sum(axis=0)
    hist = np.stack([np.histogram(u[t], bins, (lo, hi))[0] for t in range(T)])
    return {
        "rate": rate,
        "rate_per_step": s.sum(axis=(1, 2, 3, 4)) / (B * N),
        "rate_per_channel": s.sum(axis=(0, 1, 3, 4)) / (T * B * N / C),
        "silent": float((per_neuron == 0).mean()),
        "always": float((per_neuron == T * B).mean()),
        "silent_in": float((per_in == 0).mean()),
        "always_in": float((per_in == T).mean()),
        "p_refire": joint / prev,
        "tcos": tc / tn,
        "scos": sc / sn,
        "u_mean": u.mean(),
        "u_std": u.std(),
        "above": float((u >= th).mean()),
        "window": float((np.abs(u - th) < a).mean()),
        "hist": hist,
        "under": float((u < lo).mean()),
        "over": float((u >= hi).mean()),
    }


def _conv_lif_net(T: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        TimeFold(nn.Conv2d(1, 3, 3, padding=1)),
        ls.LIF(decay=0.3, threshold=0.3, surrogate=ls.surrogate.Rectangular(a=0.25)),
        TimeFold(nn.Conv2d(3, 4, 3, stride=2)),
        ls.LIF(decay=0.5, threshold=0.5, surrogate=ls.surrogate.Rectangular(a=0.25)),
        TimeFold(nn.Flatten(), nn.Linear(4 * 2 * 2, 6)),
        ls.LIF(decay=0.5, threshold=0.2),
    )


def test_matches_bruteforce_reference_and_streams():
    T = 5
    net = _conv_lif_net(T)
    x = torch.randn(T, 7, 1, 6, 6)
    captured: dict[str, tuple] = {}

    def keep(name):
        def fn(m, s, u):
            captured[name] = (s.numpy().copy(), u.numpy().copy())
        return fn

    handles = [net[1].add_observer(keep("1")), net[3].add_observer(keep("3"))]
    with Monitor(net, bins=30) as mon:
        for xb in x.split([3, 1, 3], dim=1):  # three batches: streaming must equal one pass
            with torch.no_grad():
                net(xb)
    for h in handles:
        h.remove()
    # reference on the full batch
    with torch.no_grad():
        net[1].add_observer(keep("1"))
        net[3].add_observer(keep("3"))
        net(x)
    stats = mon.summary()
    assert stats["samples"] == 7
    for name, th in (("1", 0.3), ("3", 0.5)):
        s, u = captured[name]
        lo, hi = -4 * th, 5 * th
        ref = _reference(s, u, th, 0.25, lo, hi, 30)
        lay = stats["layers"][name]
        assert lay["rate"] == pytest.approx(ref["rate"], abs=1e-9)
        assert lay["rate_per_step"] == pytest.approx(ref["rate_per_step"].tolist(), abs=1e-9)
        assert lay["rate_per_channel"] == pytest.approx(ref["rate_per_channel"].tolist(),
                                                        abs=1e-9)
        assert lay["silent_fraction"] == pytest.approx(ref["silent"])
        assert lay["always_firing_fraction"] == pytest.approx(ref["always"])
        assert lay["silent_fraction_per_input"] == pytest.approx(ref["silent_in"])
        assert lay["always_firing_fraction_per_input"] == pytest.approx(ref["always_in"])
        assert lay["temporal"]["p_refire"] == pytest.approx(ref["p_refire"], rel=1e-6)
        assert lay["temporal"]["consecutive_cosine"] == pytest.approx(ref["tcos"], rel=1e-5)
        assert lay["spatial"]["channel_cosine"] == pytest.approx(ref["scos"], rel=1e-5)
        pot = lay["potential"]
        assert pot["mean"] == pytest.approx(ref["u_mean"], rel=1e-5, abs=1e-6)
        assert pot["std"] == pytest.approx(ref["u_std"], rel=1e-4)
        assert pot["frac_above_threshold"] == pytest.approx(ref["above"])
        assert pot["frac_in_window"] == pytest.approx(ref["window"])
        assert pot["underflow"] == pytest.approx(ref["under"])
        assert pot["overflow"] == pytest.approx(ref["over"], abs=1 / u.size)
        # binning of values sitting on an edge may differ by float rounding: compare totals
        got = np.array(pot["hist_per_step"])
        assert got.sum() == pytest.approx(ref["hist"].sum(), abs=2)
        assert np.abs(got - ref["hist"]).sum() <= 4
    # NASFR: all spikes over all neuron-steps, the classifier layer included
    sizes = {"1": 3 * 36, "3": 4 * 4, "5": 6}
    spikes = sum(stats["layers"][k]["spikes"] for k in sizes)
    assert stats["nasfr"] == pytest.approx(spikes / (T * 7 * sum(sizes.values())))
    json.dumps(stats)  # JSON-able


def test_memory_constant_in_samples():
    net = _conv_lif_net(4)

    def footprint(mon: Monitor) -> int:
        return sum(v.numel() for st in mon.layers.values() for v in vars(st).values()
                   if isinstance(v, torch.Tensor))

    mon = Monitor(net)
    with mon, torch.no_grad():
        net(torch.randn(4, 2, 1, 6, 6))
        first = footprint(mon)
        for _ in range(5):
            net(torch.randn(4, 16, 1, 6, 6))
    assert footprint(mon) == first
    assert mon.samples == 82


def test_capture_and_observer_removed():
    net = _conv_lif_net(3)
    with Monitor(net, capture=3) as mon, torch.no_grad():
        net(torch.randn(3, 2, 1, 6, 6))
        net(torch.randn(3, 2, 1, 6, 6))
    s, u = mon.captured("1")
    assert s.shape == (3, 3, 3, 6, 6) and s.dtype == torch.bool
    assert u.shape == (3, 3, 3, 6, 6)
    assert not net[1].observed and not net[3].observed
    assert mon.rate_map("3").shape == (4, 2, 2)


def test_amplitude_spikes_count_once_and_per_channel_threshold():
    class Amp(ls.SpikingNeuron):
        """Emits spikes of amplitude theta_c (like a converted neuron), per-channel θ."""

        def __init__(self) -> None:
            super().__init__()
            self.threshold = torch.tensor([0.5, 2.0])

        def forward(self, x):
            th = self.threshold.view(1, 1, -1)
            s = (x >= th).float() * th
            if self.observed:
                self._notify(s, x)
            return s

    net = _Seq(Amp())
    x = torch.tensor([[0.6, 1.0], [0.1, 2.5]]).view(2, 1, 2)
    with Monitor(net) as mon:
        net(x)
    lay = mon.summary()["layers"]["neuron"]
    assert lay["rate"] == pytest.approx(2 / 4)
    assert lay["rate_per_channel"] == pytest.approx([0.5, 0.5])
    assert lay["potential"]["frac_above_threshold"] == pytest.approx(2 / 4)
    assert lay["potential"]["frac_in_window"] is None


def test_lif_cnn_model_and_errors():
    model = ls.models.create("lif_cnn", T=4)
    with Monitor(model) as mon, torch.no_grad():
        model(torch.rand(5, 1, 28, 28))
    st = mon.summary()
    assert set(st["layers"]) == {"1", "3"}
    assert 0.0 <= st["nasfr"] <= 1.0
    assert len(st["layers"]["1"]["rate_per_step"]) == 4
    assert len(st["layers"]["3"]["rate_per_channel"]) == 32
    with pytest.raises(ValueError, match="no spiking layers"):
        Monitor(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bins"):
        Monitor(model, bins=0)
    with Monitor(model) as mon, torch.no_grad():
        model(torch.rand(2, 1, 28, 28))
        with pytest.raises(ValueError, match="expected images of 28x28, got 32x32"):
            model(torch.rand(2, 1, 32, 32))  # the model refuses first, naming both sizes
        model.input_spec = None  # without that check, the Monitor still notices
        with pytest.raises(ValueError, match="first saw spikes"):
            model[:2](torch.rand(2, 1, 32, 32))


def test_potential_sample_estimates_match_exact():
    net = _conv_lif_net(4)
    x = torch.randn(4, 64, 1, 6, 6)
    with Monitor(net, potential_sample=None) as exact, torch.no_grad():
        net(x)
    with Monitor(net, potential_sample=500) as sampled, torch.no_grad():
        net(x)
    e = exact.summary()["layers"]["1"]
    s = sampled.summary()["layers"]["1"]
    assert s["rate"] == e["rate"]  # spikes are always exact
    assert s["potential"]["mean"] == pytest.approx(e["potential"]["mean"], rel=1e-5)
    assert s["potential"]["frac_above_threshold"] == e["potential"]["frac_above_threshold"]
    # 64 * 108 = 6912 values per step -> stride 17 (prime) -> 407 values per step
    assert s["potential"]["sampled_values"] == 4 * len(range(0, 6912, 17))
    assert s["potential"]["frac_in_window"] == pytest.approx(e["potential"]["frac_in_window"],
                                                             abs=0.03)
    he = np.array(e["potential"]["hist"]) / e["potential"]["sampled_values"]
    hs = np.array(s["potential"]["hist"]) / s["potential"]["sampled_values"]
    # coarse (9-bin) histograms of the sample and of all values agree in L1 distance
    assert np.abs(he.reshape(9, 10).sum(1) - hs.reshape(9, 10).sum(1)).sum() < 0.08


def test_channelwise_parallel_neuron_thresholds():
    from leansnn.convert import ParallelIF

    torch.manual_seed(0)
    th = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    net = _Seq(ParallelIF(4, th))
    x = torch.rand(4, 50, 3, 5, 5) * 3
    got = {}
    net.neuron.add_observer(lambda m, s, u: got.update(s=s, u=u))
    with Monitor(net, potential_sample=None) as exact, torch.no_grad():
        net(x)
    with Monitor(net, potential_sample=1000) as sampled, torch.no_grad():
        net(x)
    u, s = got["u"], got["s"]
    want_above = float((u >= th.view(1, 1, 3, 1, 1)).float().mean())
    e = exact.summary()["layers"]["neuron"]
    assert e["threshold"] == [0.5, 1.0, 2.0]
    assert e["potential"]["frac_above_threshold"] == pytest.approx(want_above)
    assert e["rate"] == pytest.approx(float((s != 0).float().mean()))
    # a strided sample with per-channel thresholds estimates the same fraction
    est = sampled.summary()["layers"]["neuron"]["potential"]["frac_above_threshold"]
    assert est == pytest.approx(want_above, abs=0.012)  # a wrong channel map is off by 0.03
