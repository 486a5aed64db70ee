"""ls.conversion.to_qcfs: every ReLU / ReLU6 site -> its own QCFS, saved as "qcfs_of"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leansnn as ls
from leansnn.convert import ConversionError


class Sites(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)  # shared: called twice
        self.c2, self.r6 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu(self.b1(self.c1(x)))
        y = self.relu(self.c2(x))
        y = F.relu(y) + torch.relu(x)
        y = self.r6(y).relu()
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def test_every_site_gets_its_own_qcfs_and_converts_exactly():
    torch.manual_seed(0)
    data = torch.randn(64, 3, 8, 8)
    q = ls.conversion.to_qcfs(Sites(), 4, calib_data=data)
    acts = {n: m for n, m in q.named_modules() if isinstance(m, ls.QCFS)}
    assert len(acts) == 6 and len({id(m) for m in acts.values()}) == 6
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in q.modules())
    assert acts["r6"].cap == 6.0 and all(m.levels == 4 for m in acts.values())
    assert all(0 < m.theta < 20 for m in acts.values())
    q.eval()
    x = torch.randn(8, 3, 8, 8)
    snn = ls.convert(q, T=4)
    assert snn.fast_path_status() == (True, [])
    assert torch.equal(snn(x).mean(0), q(x))


def test_thresholds_without_data_and_cap():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1),
                      nn.ReLU6(), nn.Flatten())
    nn.init.constant_(m[1].weight, 2.0)
    nn.init.constant_(m[1].bias, 1.0)
    q = ls.conversion.to_qcfs(m, 8)
    assert q.get_submodule("2").theta == pytest.approx(7.0)  # beta + 3 |gamma|
    assert q.get_submodule("4").theta == pytest.approx(3.0)  # default
    q.get_submodule("4").threshold.data.fill_(9.0)
    assert q.get_submodule("4").theta == 6.0  # the ReLU6 clip stays a cap
    assert q.training  # ready for fine-tuning


def test_refuses_silu_and_hardswish_by_name():
    for bad in (nn.SiLU(), nn.Hardswish()):
        with pytest.raises(ConversionError, match=type(bad).__name__):
            ls.conversion.to_qcfs(nn.Sequential(nn.Conv2d(3, 4, 3), bad), 4)


class SqueezeExcite(nn.Module):
    """MobileNet-V3 style: Hardswish plus a gate (a product convert would refuse)."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.act = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.hs = nn.Hardswish()

    def forward(self, x):
        h = self.act(self.c(x))
        g = torch.sigmoid(self.fc2(self.act(self.fc1(h.mean((2, 3), keepdim=True)))))
        return self.hs(h * g).mean((1, 2, 3))


def test_refusal_also_names_products():
    with pytest.raises(ConversionError, match=r"(?s)Hardswish.*1 product.*allow_products"):
        ls.conversion.to_qcfs(SqueezeExcite(), 4)


def test_saves_and_loads_as_qcfs_of(tmp_path):
    relu = ls.models.create("small_cnn", activation="relu")
    q = ls.conversion.to_qcfs(relu, 4, calib_data=torch.rand(16, 1, 28, 28))
    assert q.leansnn_config["name"] == "qcfs_of"
    out = ls.save(q.eval(), tmp_path / "q.lsnn")
    back = ls.load(out).eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(back(x), q(x))
    assert torch.equal(ls.convert(back, T=4)(x).mean(0), q(x))


def test_train_ann_init_from_a_relu_checkpoint_makes_its_qcfs_twin(tmp_path):
    from leansnn.commands.train_ann import _init_weights

    relu = ls.models.create("small_cnn", activation="relu")
    path = ls.save(relu, tmp_path / "relu.lsnn")
    fresh = ls.models.create("small_cnn", activation=ls.QCFS(levels=4))
    net, info = _init_weights(fresh, path, "qcfs", 4, torch.rand(32, 1, 28, 28))
    assert net.leansnn_config["name"] == "qcfs_of" and info["path"] == "relu.lsnn"
    assert sum(isinstance(m, ls.QCFS) for m in net.modules()) >= 2
    x = torch.rand(2, 1, 28, 28)
    relu.eval()
    assert net.eval()(x).shape == relu(x).shape
