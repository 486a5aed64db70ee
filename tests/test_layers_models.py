"""Time folding, the static stem, and the model registry."""

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.layers import RepeatTime, StaticStem, TimeFold, repeat_time


def test_timefold_equals_per_step_application():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(4, 5, 2, 6, 6)
    y = TimeFold(conv)(x)
    assert y.shape == (4, 5, 3, 6, 6)
    for t in range(4):
        torch.testing.assert_close(y[t], conv(x[t]))


@pytest.mark.parametrize("train", [True, False])
def test_static_stem_equals_folding_repeated_input(train):
    torch.manual_seed(0)
    layers = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))
    layers.train(train)
    img = torch.randn(3, 1, 8, 8)
    a = StaticStem(layers, T=5)(img)
    b = TimeFold(layers)(repeat_time(img, 5))
    assert a.shape == b.shape == (5, 3, 4, 8, 8)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # a sequence input is folded over time instead
    seq = torch.randn(5, 3, 1, 8, 8)
    layers.eval()
    torch.testing.assert_close(StaticStem(layers, T=5)(seq), TimeFold(layers)(seq))


def test_repeat_time_validation():
    with pytest.raises(ValueError, match="T must be a positive int"):
        repeat_time(torch.zeros(2), 0)
    with pytest.raises(ValueError, match="got shape"):
        RepeatTime(4, static_dims=4)(torch.zeros(2, 3))


def test_registry_create_and_unknown():
    m = ls.models.create("lif_cnn", T=3, width=4)
    assert m.leansnn_config == {"name": "lif_cnn", "kwargs": {"T": 3, "width": 4}}
    y = m(torch.rand(2, 1, 28, 28))
    assert y.shape == (3, 2, 10)
    assert "lif_cnn" in ls.models.available()
    with pytest.raises(ValueError, match="unknown model 'resnet999'; available: .*lif_cnn"):
        ls.models.create("resnet999")


def test_lif_cnn_accepts_sequences_and_backprops():
    m = ls.models.create("lif_cnn", T=3, width=4)
    x = torch.rand(3, 2, 1, 28, 28, requires_grad=True)
    y = m(x)
    assert y.shape == (3, 2, 10)
    y.sum().backward()
    assert x.grad is not None and m[0].layer[0].weight.grad.abs().sum() > 0
