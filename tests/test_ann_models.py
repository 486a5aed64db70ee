"""ANN builders: shapes, pluggable activations, no max pooling, checkpoint round trip."""

import pytest
import torch
from torch import nn

import leansnn as ls

SMALL = {"small_cnn": {"width": 8}, "resnet20": {"width": 8}, "vgg11": {"input_size": 28}}


@pytest.mark.parametrize("name", ["small_cnn", "resnet20", "vgg11", "vgg16", "resnet18",
                                  "resnet34"])
def test_builders_shapes_and_no_max_pool(name):
    kw = {"input_size": 28} if name.startswith("vgg") else {}
    if name in ("resnet18", "resnet34", "vgg16"):
        kw["width" if name.startswith("resnet") else "input_size"] = 8 if name.startswith(
            "resnet") else 28
    torch.manual_seed(0)
    net = ls.models.create(name, num_classes=7, in_channels=1, activation="relu", **kw).eval()
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 7)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in net.modules())


def test_activation_options():
    q = ls.models.create("resnet20", num_classes=10, in_channels=1,
                         activation=ls.QCFS(levels=4))
    acts = [m for m in q.modules() if isinstance(m, ls.QCFS)]
    assert len(acts) == 19  # stem + 2 per block x 9 blocks
    assert len({id(a.threshold) for a in acts}) == 19  # one learnable threshold per layer
    assert not any(isinstance(m, nn.ReLU) for m in q.modules())
    q8 = ls.models.create("small_cnn", activation="qcfs", levels=8)
    assert {m.levels for m in q8.modules() if isinstance(m, ls.QCFS)} == {8}
    r = ls.models.create("small_cnn")
    assert sum(isinstance(m, nn.ReLU) for m in r.modules()) == 4
    for bad in ("gelu", 3):
        with pytest.raises(ValueError, match="activation"):
            ls.models.create("small_cnn", activation=bad)
    with pytest.raises(ValueError):
        ls.models.create("small_cnn", activation=nn.GELU())
    with pytest.raises(ValueError, match="num_classes"):
        ls.models.create("resnet20", num_classes=0)


def test_checkpoint_roundtrip_with_qcfs(tmp_path):
    torch.manual_seed(0)
    net = ls.models.create("small_cnn", num_classes=10, in_channels=1,
                           activation=ls.QCFS(levels=4, threshold=3.0), width=8).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ls.QCFS):
                m.threshold.fill_(float(torch.rand(())) + 1)
    path = ls.save(net, tmp_path / "a.lsnn")
    back = ls.load(path).eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(back(x), net(x))


@pytest.mark.parametrize("name", list(SMALL))
def test_builders_convert_losslessly(name):
    torch.manual_seed(1)
    net = ls.models.create(name, num_classes=5, in_channels=1,
                           activation=ls.QCFS(levels=4, threshold=1.5), **SMALL[name])
    net = net.double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    snn = ls.convert(net, T=4)
    assert snn.fast_path_status()[0]
    assert torch.allclose(snn(x).mean(0), net(x), atol=1e-9)


def test_load_qcfs_model_in_fresh_process(tmp_path):
    """ls.load must rebuild QCFS activations without leansnn.convert imported first."""
    import subprocess
    import sys

    net = ls.models.create("small_cnn", activation=ls.QCFS(levels=8), width=4, hidden=8)
    path = ls.save(net, tmp_path / "q.lsnn")
    code = ("import sys, leansnn as ls; m = ls.load(sys.argv[1]); "
            "print(sorted({a.levels for a in m.modules() if type(a).__name__ == 'QCFS'}))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[8]"
