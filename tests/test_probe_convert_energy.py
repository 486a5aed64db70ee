"""energy(): counts per input must not depend on how the data is batched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.analysis import energy, is_binary
from leansnn.layers import TimeFold


def _mlp(levels: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), ls.QCFS(levels=levels, threshold=1.0),
                         nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("T", [1, 4])
def test_converted_mlp_counts_do_not_depend_on_batch_size(T):
    # one analog sample repeated over T steps: every feature of the first linear layer's
    # input holds one value, which must not make it look like spikes (batch size 1)
    snn = ls.convert(_mlp(T), T, input_dims=4)
    x = torch.rand(6, 1, 4, 4)
    ref = energy(snn, x, batch_size=6)
    assert ref["layers"]["net.1"]["input"] == "analog"
    assert ref["layers"]["net.1"]["macs"] == T * 16 * 8
    for bs in (1, 2):
        e = energy(snn, x, batch_size=bs)
        assert e["layers"]["net.1"]["input"] == "analog"
        assert e["sops"] == pytest.approx(ref["sops"])
        assert e["macs"] == pytest.approx(ref["macs"])
        assert e["energy_pj"] == pytest.approx(ref["energy_pj"])


def test_spikes_of_one_sample_stay_spikes():
    # the same degenerate layout holding real spikes: one amplitude for all features, or the
    # per-feature amplitudes of the model's own (calibrated) neurons
    x = torch.zeros(1, 6)
    x[0, [1, 4]] = 0.7
    assert is_binary(x, 1)
    assert not is_binary(torch.rand(4, 6).clamp_min(0.1)[:1].expand(4, 6), 1)
    amps = torch.tensor([0.5, 0.9, 1.3, 0.2, 0.8, 0.4])
    s = torch.zeros(3, 6)
    s[:, [0, 2, 5]] = amps[[0, 2, 5]]
    assert not is_binary(s, 1)
    assert is_binary(s, 1, amps)
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    data = torch.rand(64, 5)
    snn = ls.convert(ann, 1, method="calibrated", calib_data=data, progress=False,
                     input_dims=2)
    big = energy(snn, data[:8], batch_size=8)
    one = energy(snn, data[:8], batch_size=1)
    assert big["layers"]["net.2"]["input"] == one["layers"]["net.2"]["input"] == "spikes"
    assert one["sops"] == pytest.approx(big["sops"]) and one["macs"] == big["macs"]


class _Seq(nn.Module):
    """Time-major input [T, B, 2, 4, 4] -> conv -> LIF -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = TimeFold(nn.Conv2d(2, 3, 3, padding=1))
        self.lif = ls.LIF(decay=0.5, threshold=0.2)
        self.fc = TimeFold(nn.Flatten(), nn.Linear(3 * 16, 4))

    def forward(self, x):
        return self.fc(self.lif(self.conv(x)))


@pytest.mark.parametrize("model", ["seq", "converted"])
def test_unlabelled_time_major_batches_count_their_samples_not_their_steps(model):
    torch.manual_seed(0)
    T, B = 4, 3
    if model == "seq":
        net = _Seq().eval()
    else:
        ann = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), ls.QCFS(levels=T, threshold=0.5),
                            nn.Flatten(), nn.Linear(3 * 16, 4))
        net = ls.convert(ann, T)
    x = (torch.rand(T, B, 2, 4, 4) < 0.3).float()
    labelled = energy(net, [(x, torch.zeros(B, dtype=torch.long))])
    unlabelled = energy(net, [x])
    assert labelled["inputs"] == unlabelled["inputs"] == B
    assert unlabelled["sops"] == pytest.approx(labelled["sops"])
    assert unlabelled["energy_pj"] == pytest.approx(labelled["energy_pj"])
    report = ls.analysis.report.analyze(net, [x], capture=0)  # the same counter inside
    assert report["inputs"] == B
    assert report["energy"]["sops"] == pytest.approx(labelled["sops"])
    # static inputs of an ANN (no spiking layer) still count their first dim
    assert energy(nn.Linear(5, 2), torch.rand(7, 5))["inputs"] == 7
