"""Thresholds that no spiking neuron can have are refused by site, for every method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.convert import ConversionError
from leansnn.convert.calibrate import record_thresholds

BAD = [-0.5, 0.0, math.nan, math.inf]
CALIB = torch.rand(8, 1, 4, 4)


def _qcfs_net(theta: float) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), ls.QCFS(levels=4, threshold=1.0), nn.Flatten(),
                        nn.Linear(2 * 4, 3), ls.QCFS(levels=4, threshold=1.0), nn.Linear(3, 2))
    net[1].threshold.data.fill_(theta)  # as a diverged training leaves it
    return net.eval()


def _convert(net, method, **kw):
    opts = dict(calib_data=CALIB, progress=False) if method == "calibrated" else {}
    return ls.convert(net, 4, method=method, **opts, **kw)


@pytest.mark.parametrize("method", ["parallel", "serial", "calibrated"])
@pytest.mark.parametrize("theta", BAD)
def test_qcfs_with_a_threshold_no_neuron_can_have_is_refused_by_name(theta, method):
    with pytest.raises(ConversionError, match=r"module '1' \(QCFS\): threshold") as err:
        _convert(_qcfs_net(theta), method)
    assert "'4'" not in str(err.value) and "Fix:" in str(err.value)
    with pytest.raises(ConversionError, match=r"module '1' \(QCFS\)"):
        record_thresholds(_qcfs_net(theta), CALIB)
    _convert(_qcfs_net(0.7), method)  # a positive threshold converts


@pytest.mark.parametrize("method", ["parallel", "serial"])
@pytest.mark.parametrize("value", [-1.0, 0, math.nan, "a", True,
                                   torch.tensor([1.0, -1.0]).view(2, 1, 1)])
def test_given_thresholds_are_checked_by_site(method, value):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    with pytest.raises(ConversionError, match=r"thresholds=.*'1': "):
        ls.convert(net, 4, method=method, thresholds={"1": value})
    for good in (2, 0.5, torch.tensor([0.5, 1.0]).view(2, 1, 1)):
        snn = ls.convert(net, 4, method=method, thresholds={"1": good})
        assert snn(CALIB[:2]).shape == (4, 2, 3)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(2, 2, 3, padding=1)
        self.q = ls.QCFS(levels=4, threshold=1.0)

    def forward(self, x):
        return self.q(self.c(x)) + x


@pytest.mark.parametrize("inner", ["leaf", "torch container"])
def test_activations_inside_an_opaque_module_are_refused_by_name(inner):
    # kept opaque, they would silently stay analog activations inside the "SNN"
    if inner == "leaf":
        block, leaves, hidden = _Block(), [_Block], r"'2\.q' \(QCFS\)"
    else:
        layer = nn.TransformerEncoderLayer(6, 2, dim_feedforward=8, batch_first=True)
        block, leaves, hidden = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False), [], \
            r"'2\.layers\.0' \(TransformerEncoderLayer\)"
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), ls.QCFS(levels=4, threshold=1.0), block,
                        nn.Flatten(), nn.LazyLinear(3))
    with pytest.raises(ConversionError, match=r"'2' \(\w+\) is kept opaque.*" + hidden):
        ls.convert(net.eval(), 4, leaf_modules=leaves, input_dims=4)
    with pytest.raises(ConversionError, match="kept opaque"):
        ls.conversion.to_qcfs(net, 4, leaf_modules=leaves)
