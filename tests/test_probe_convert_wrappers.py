"""convert / to_qcfs / record_thresholds see through data-parallel and compile wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.convert.calibrate import record_thresholds


def _wrappers():
    return [("DataParallel", nn.DataParallel),
            ("DataParallel twice", lambda m: nn.DataParallel(nn.DataParallel(m))),
            ("torch.compile", torch.compile)]


@pytest.mark.parametrize("name,wrap", _wrappers(), ids=[w[0] for w in _wrappers()])
def test_wrapped_ann_converts_like_the_ann(name, wrap, tmp_path):
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", num_classes=10, in_channels=1,
                           activation=ls.QCFS(levels=4)).eval()
    x = torch.rand(3, 1, 28, 28)
    ref = ls.convert(ann, 4)
    snn = ls.convert(wrap(ann), 4)
    assert torch.equal(snn(x), ref(x))
    assert torch.equal(snn(x).mean(0), ann(x))
    ls.save(snn, tmp_path / "s.lsnn")  # the registry config is the wrapped model's
    assert torch.equal(ls.load(tmp_path / "s.lsnn")(x), ref(x))
    relu = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 3))
    q = ls.conversion.to_qcfs(wrap(relu), 4, calib_data=x)
    q_ref = ls.conversion.to_qcfs(relu, 4, calib_data=x)
    assert [float(m.theta) for m in q.modules() if isinstance(m, ls.QCFS)] == [
        float(m.theta) for m in q_ref.modules() if isinstance(m, ls.QCFS)]
    th = record_thresholds(wrap(relu), x)
    assert th.keys() == record_thresholds(relu, x).keys() == {"1"}
