"""A converted SNN checks its input like the ANN it came from: leansnn errors naming the
problem (channels, size, dtype, T), never raw torch errors — registry nets through the ANN's
input spec, any other net through the layer that refuses the input."""

import pytest
import torch
from torch import nn

import leansnn as ls


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    ann = ls.models.create("small_cnn", activation=ls.QCFS(levels=4), width=4, hidden=8).eval()
    snn = ls.convert(ann, T=4)
    p = tmp_path_factory.mktemp("c") / "s.lsnn"
    ls.save(snn, p)
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), ls.QCFS(levels=4), nn.Flatten(),
                          nn.Linear(4 * 26 * 26, 10)).eval()
    return {"registry": snn, "loaded": ls.load(p), "plain": ls.convert(plain, T=4)}


CASES = [
    (torch.rand(2, 3, 28, 28), "channel"),
    (torch.rand(2, 1, 20, 20), "(20x20|shape)"),
    (torch.rand(4, 2, 3, 28, 28), "channel"),
    (torch.rand(2, 1, 28, 28, dtype=torch.float64), "float64"),
    (torch.rand(5, 2, 1, 28, 28), "T=4"),
    (torch.randint(0, 2, (2, 1, 28, 28)), "float"),
    (torch.rand(2, 28, 28), "dims"),
]


@pytest.mark.parametrize("which", ["registry", "loaded", "plain"])
@pytest.mark.parametrize("x,needle", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_inputs_are_value_errors(nets, which, x, needle):
    with pytest.raises(ValueError, match=needle):
        nets[which](x)


@pytest.mark.parametrize("which", ["registry", "loaded", "plain"])
def test_good_input_runs(nets, which):
    assert nets[which](torch.rand(2, 1, 28, 28)).shape == (4, 2, 10)
