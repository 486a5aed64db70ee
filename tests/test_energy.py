"""energy(): SOPs and MACs against counts worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.analysis import energy, fanout_map, is_binary
from leansnn.data.fashion_mnist import ImageDataset
from leansnn.layers import TimeFold


def _one(x: torch.Tensor) -> list:
    return [(x, torch.zeros(1, dtype=torch.long))]  # one input (label count 1)


def test_fanout_3x3_pad1_stride1_by_hand():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    f = fanout_map(conv, (1, 4, 4))[0]
    # each output channel: corner 4 positions, edge 6, interior 9
    expect = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]) * 2
    assert torch.equal(f, expect.double())


def test_sops_conv_stride2_pad1_by_hand():
    # 3x3, stride 2, padding 1 on 4x4 -> 2x2 outputs. Output row 0 reads input rows -1..1,
    # output row 1 reads rows 1..3: rows covered [1, 2, 1, 1] times (same for columns).
    conv = nn.Conv2d(1, 3, 3, stride=2, padding=1, bias=False)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1  # 2*2 = 4 positions
    x[0, 0, 3, 3] = 1  # 1*1 = 1
    x[0, 0, 0, 2] = 1  # 1*1 = 1
    x[0, 0, 1, 0] = 1  # 2*1 = 2
    e = energy(conv, _one(x))
    assert e["sops"] == 3 * (4 + 1 + 1 + 2)
    assert e["macs"] == 0
    assert e["layers"]["<model>"]["input"] == "spikes"
    assert e["energy_pj"] == pytest.approx(0.9 * 24)
    # the ANN does 3 * 2*2 outputs * 9 taps
    assert e["ann_macs"] == 3 * 4 * 9
    assert e["ann_energy_pj"] == pytest.approx(4.6 * 108)


def test_sops_groups_dilation_linear():
    conv = nn.Conv2d(2, 4, 1, groups=2, bias=False)  # each input feeds 2 outputs
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 0, 0] = x[0, 1, 2, 2] = x[0, 1, 1, 1] = 1
    assert energy(conv, _one(x))["sops"] == 3 * 2
    # 3x3 kernel, dilation 2, no padding on 5x5 -> 1x1 output reading rows/cols 0, 2, 4
    dil = nn.Conv2d(1, 1, 3, dilation=2, bias=False)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = x[0, 0, 1, 1] = x[0, 0, 4, 0] = 1  # (1,1) is never read
    assert energy(dil, _one(x))["sops"] == 2
    lin = nn.Linear(8, 5)
    x = torch.zeros(1, 8)
    x[0, [0, 3, 7]] = 1
    assert energy(lin, _one(x))["sops"] == 15


def test_analog_input_counts_dense_macs_and_amplitude_spikes_count_as_spikes():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.rand(1, 1, 4, 4) + 0.1
    e = energy(conv, _one(x))
    assert e["macs"] == 2 * 16 * 9 and e["sops"] == 0
    assert e["energy_pj"] == pytest.approx(4.6 * 288)
    # spikes of amplitude theta (a converted network) are accumulates, not MACs
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 2, 2] = 0.7
    e = energy(conv, _one(x))
    assert e["macs"] == 0 and e["sops"] == 2 * (4 + 9)
    assert is_binary(torch.tensor([[0.0, 2.0], [0.0, 2.0], [3.0, 0.0]]), 1)  # per channel
    assert not is_binary(torch.tensor([[0.0, 2.0], [0.0, 1.0]]), 1)
    assert not is_binary(torch.tensor([[0.0, -1.0]]), 1)


class _Net(nn.Module):
    """Analog stem conv -> LIF -> conv (stride 2, pad 1) -> LIF -> flatten -> linear."""

    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = T
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.lif1 = ls.LIF(decay=0.5, threshold=0.2)
        self.conv = TimeFold(nn.Conv2d(2, 3, 3, stride=2, padding=1))
        self.lif2 = ls.LIF(decay=0.5, threshold=0.1)
        self.fc = TimeFold(nn.Flatten(), nn.Linear(3 * 2 * 2, 4))

    def forward(self, x):  # x: [B, 1, 4, 4]
        y = self.stem(x)
        y = y.unsqueeze(0).expand(self.T, *y.shape)
        return self.fc(self.lif2(self.conv(self.lif1(y))))


def test_network_counts_from_actual_spikes():
    torch.manual_seed(1)
    T = 3
    net = _Net(T)
    seen: dict[str, torch.Tensor] = {}
    net.lif1.add_observer(lambda m, s, u: seen.__setitem__("s1", s.clone()))
    net.lif2.add_observer(lambda m, s, u: seen.__setitem__("s2", s.clone()))
    batches = [torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4)]
    sops_conv = sops_fc = 0.0
    cov = torch.tensor([1.0, 2.0, 1.0, 1.0])  # stride 2 pad 1 on 4: row coverage
    fan = (cov[:, None] * cov[None, :]) * 3  # per input position, 3 output channels
    for xb in batches:
        with torch.no_grad():
            net.eval()
            net(xb)
        sops_conv += float((seen["s1"].sum(dim=(0, 1, 2)) * fan).sum())
        sops_fc += float(seen["s2"].sum()) * 4
    assert sops_conv > 0 and sops_fc > 0
    e = energy(net, [(xb, torch.zeros(len(xb), dtype=torch.long)) for xb in batches])
    assert e["inputs"] == 5
    L = e["layers"]
    assert L["stem"]["input"] == "analog" and L["stem"]["macs"] == 2 * 16 * 9  # once/input
    assert L["conv.layer"]["sops"] == pytest.approx(sops_conv / 5)
    assert L["fc.layer.1"]["sops"] == pytest.approx(sops_fc / 5)
    assert e["sops"] == pytest.approx((sops_conv + sops_fc) / 5)
    assert e["energy_pj"] == pytest.approx(4.6 * 288 + 0.9 * (sops_conv + sops_fc) / 5)
    assert e["ann_macs"] == 288 + 3 * 4 * 2 * 9 + 12 * 4
    e2 = energy(net, [(xb, torch.zeros(len(xb), dtype=torch.long)) for xb in batches],
                e_mac=1.0, e_ac=0.0, max_batches=1)
    assert e2["inputs"] == 2 and e2["energy_pj"] == pytest.approx(288)


def test_lif_cnn_and_bad_arguments():
    model = ls.models.create("lif_cnn", T=2)
    data = ImageDataset(
        torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8), torch.zeros(6, dtype=torch.long))
    e = energy(model, data, batch_size=4)
    assert e["inputs"] == 6
    assert e["layers"]["0.layer.0"]["input"] == "analog"
    assert e["layers"]["2.layer.0"]["input"] == "spikes"
    # the linear layer reads average-pooled spikes: accumulates per pooled spike
    assert e["layers"]["4.layer.2"]["input"] in ("pooled", "spikes", "pooled+spikes")
    assert e["layers"]["4.layer.2"]["macs"] == 0
    with pytest.raises(ValueError, match="e_ac"):
        energy(model, data, e_ac=-1)
    with pytest.raises(ValueError, match="no Conv"):
        energy(nn.ReLU(), data)


def test_converted_network_counts_spikes_of_the_simulation():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ls.QCFS(levels=4, threshold=1.0),
                        nn.Conv2d(4, 4, 3, padding=1), ls.QCFS(levels=4, threshold=1.0),
                        nn.Flatten(), nn.Linear(4 * 36, 3))
    snn = ls.convert(ann, T=4, method="parallel")
    x = torch.rand(2, 1, 6, 6)
    e = energy(snn, [(x, torch.zeros(2, dtype=torch.long))])
    assert snn.engine == "auto"  # restored
    kinds = [v["input"] for v in e["layers"].values()]
    assert kinds[0] == "analog" and kinds[1:] == ["spikes", "spikes"]
    assert e["sops"] > 0


def test_event_counts_are_accumulates_with_multiplicity():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 2  # two events at a corner (fan-out 4 per output channel)
    x[0, 0, 1, 1] = 3  # three events inside (fan-out 9)
    e = energy(conv, _one(x))
    assert e["layers"]["<model>"]["input"] == "events"
    assert e["sops"] == 2 * (2 * 4 + 3 * 9) and e["macs"] == 0
    x[0, 0, 2, 2] = 0.37  # no common unit any more: analog, dense MACs
    e = energy(conv, _one(x))
    assert e["layers"]["<model>"]["input"] == "analog" and e["macs"] == 2 * 16 * 9


def test_average_pooled_spikes_count_one_accumulate_per_spike():
    torch.manual_seed(0)
    s = (torch.rand(3, 2, 4, 4) < 0.4).float()  # spikes [B, C, H, W]
    s[0, 0, 0, 0] = 1.0  # at least one window with a single spike (unit 1/4)
    s[0, 0, :2, 1] = 0.0
    s[0, 0, 1, 0] = 0.0
    net = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, 5))
    e = energy(net, [(s, torch.zeros(3, dtype=torch.long))])
    lay = e["layers"]["2"]
    assert lay["input"] == "pooled"
    assert lay["sops"] * 3 == float(s.sum()) * 5  # every spike reaches 5 outputs once
    # amplitude-theta spikes pooled per channel, and analog values stay MACs
    e = energy(net, [(s * 0.7, torch.zeros(3, dtype=torch.long))])
    assert e["layers"]["2"]["input"] == "pooled" and e["layers"]["2"]["sops"] * 3 == float(
        s.sum()) * 5
    x = torch.rand(3, 2, 4, 4)
    assert energy(net, [(x, torch.zeros(3, dtype=torch.long))])["layers"]["2"]["input"] == "analog"
