"""evaluate() never reads a prediction from NaN/inf outputs (argmax took NaN for the top
class: a model of NaNs scored 100 % on class-0 labels), and spike counting survives passes
made under torch.inference_mode()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.evaluation import SpikeCounter, evaluate


class _Net(nn.Module):
    def __init__(self, spiking: bool, poison: float | None, batch: int | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.lif = ls.LIF() if spiking else nn.ReLU()
        self.poison, self.batch = poison, batch
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lif(self.fc(x))
        self.calls += 1
        if self.poison is not None and (self.batch is None or self.calls - 1 == self.batch):
            out = out.clone()
            out[..., 1] = self.poison
        return out


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("spiking", [True, False], ids=["SNN [T, B, K]", "ANN [B, K]"])
@pytest.mark.parametrize("batch", [0, 1], ids=["first batch", "second batch"])
def test_non_finite_outputs_are_refused(poison, spiking, batch):
    x = torch.rand(2, 3, 4) if spiking else torch.rand(3, 4)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match=f"batch {batch} holds NaN or inf"):
        evaluate(_Net(spiking, poison, batch), [(x, y), (x, y)], 4)


def test_finite_outputs_still_evaluate():
    x, y = torch.rand(2, 3, 4), torch.zeros(3, dtype=torch.long)
    r = evaluate(_Net(True, None), [(x, y)], 4)
    assert 0.0 <= r["accuracy"] <= 1.0 and r["n"] == 3


@pytest.mark.parametrize("order", ["inference first", "inference second", "only inference"])
def test_spike_counter_mixes_inference_mode_passes(order):
    torch.manual_seed(0)
    net, x = _Net(True, None), torch.rand(2, 3, 4) * 3
    with SpikeCounter(net) as c:
        modes = {"inference first": [True, False], "inference second": [False, True],
                 "only inference": [True, True]}[order]
        for inf in modes:
            with torch.inference_mode(inf):
                net(x)
    ref = SpikeCounter(net)
    with ref:
        net(x)
        net(x)
    assert c.layers["lif"].samples == 6
    assert c.rate == ref.rate


@pytest.mark.parametrize("how", ["majority", "sum"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_vote_refuses_non_finite_scores(how, bad):
    from leansnn.base.voting import vote

    scores = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    assert vote(scores, [0, 0, 0], how=how).tolist() == [1]
    scores[1, 0] = bad
    with pytest.raises(ValueError, match="window 1 hold NaN or inf"):
        vote(scores, [0, 0, 0], how=how)
