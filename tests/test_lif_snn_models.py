"""LIF-SNN models of the redundancy paper: registry, shapes, ASA placement, paper LIF."""

import pytest
import torch

import leansnn as ls
from leansnn.attention import ASA
from leansnn.neuron import LIF
from leansnn.neuron import surrogate as sg


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_api_call_and_shapes():
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", num_classes=10, in_channels=2, T=8, attention="asa",
                           input_size=(32, 32), width=8)
    x = (torch.rand(8, 3, 2, 32, 32) < 0.2).float()
    y = net(x)
    assert y.shape == (8, 3, 10)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert _count(net, ASA) == 3
    assert _count(net, LIF) == 5
    assert net.leansnn_config["name"] == "lif_snn_a"


def test_arch_a_matches_paper_layout():
    net = ls.models.create("lif_snn_a", width=64)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(2, 64), (64, 128), (128, 128)]
    lins = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lins] == [(128 * 8 * 8, 256), (256, 10)]
    assert _count(net, torch.nn.AvgPool2d) == 2 and _count(net, torch.nn.BatchNorm2d) == 3
    assert _count(net, ASA) == 0
    for m in net.modules():
        if isinstance(m, LIF):
            p = m.params
            assert (p.decay, p.threshold, p.reset, p.v_reset) == (0.3, 0.3, "hard", 0.0)
            assert p.surrogate == sg.Rectangular(a=0.25)


@pytest.mark.parametrize("name,n_asa", [("lif_snn_a", 3), ("lif_snn_5", 5),
                                        ("sew_resnet18", 17)])
def test_models_forward_backward(name, n_asa):
    torch.manual_seed(0)
    kw = dict(num_classes=5, in_channels=2, T=4, input_size=(16, 16), width=4)
    for attention in (None, "asa"):
        net = ls.models.create(name, attention=attention, **kw)
        assert _count(net, ASA) == (n_asa if attention else 0)
        x = torch.rand(4, 2, 2, 16, 16)
        y = net(x)
        assert y.shape == (4, 2, 5)
        (y.mean(0) - torch.eye(5)[:2]).square().mean().backward()
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_static_input_equals_repeated_sequence():
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", T=4, in_channels=1, input_size=(16, 16), width=4,
                           attention="asa", dropout=0.0).eval()
    img = torch.rand(3, 1, 16, 16) * 3
    y_static = net(img)
    y_seq = net(img.unsqueeze(0).expand(4, -1, -1, -1, -1).contiguous())
    torch.testing.assert_close(y_static, y_seq)
    assert y_static.shape == (4, 3, 10)


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", T=4, attention="asa", width=4, input_size=(16, 16))
    net.eval()
    x = torch.rand(4, 2, 2, 16, 16) * 2
    ls.save(net, tmp_path / "m.lsnn")
    net2 = ls.load(tmp_path / "m.lsnn").eval()
    torch.testing.assert_close(net(x), net2(x))


def test_norm_none_and_options():
    net = ls.models.create("lif_snn_5", width=4, norm="none", T=2, dropout=0.0, hidden=32)
    assert _count(net, torch.nn.BatchNorm2d) == 0
    assert net(torch.rand(2, 1, 2, 32, 32)).shape == (2, 1, 10)
    big = ls.models.create("sew_resnet18", width=4, input_size=(128, 128), T=2)
    assert _count(big, torch.nn.MaxPool2d) == 1
    assert big(torch.rand(2, 1, 2, 128, 128)).shape == (2, 1, 10)


@pytest.mark.parametrize("kw", [dict(attention="se"), dict(input_size=(30, 30)),
                                dict(width=0), dict(norm="ln"), dict(dropout=1.0),
                                dict(T=0)])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        ls.models.create("lif_snn_a", **kw)


def test_wrong_T_for_asa_is_a_clear_error():
    net = ls.models.create("lif_snn_a", T=4, attention="asa", width=4, input_size=(16, 16))
    with pytest.raises(ValueError, match="T=4"):
        net(torch.rand(6, 1, 2, 16, 16))
