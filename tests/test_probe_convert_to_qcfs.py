"""to_qcfs(calib_data=...): data that cannot give thresholds is an error, never defaults."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import leansnn as ls


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(F.avg_pool2d(F.relu(self.c(x)), 2).flatten(1))


X = torch.rand(8, 1, 8, 8)
Y = torch.zeros(8, dtype=torch.long)


@pytest.mark.parametrize("data", [
    [], DataLoader(TensorDataset(X[:0], Y[:0]), batch_size=4), iter(()),
], ids=["empty list", "empty loader", "exhausted iterator"])
def test_empty_calibration_data_is_refused(data):
    with pytest.raises(ValueError, match="no inputs"):
        ls.conversion.to_qcfs(_Net(), 4, calib_data=data)


def test_non_finite_calibration_data_is_refused():
    bad = X.clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        ls.conversion.to_qcfs(_Net(), 4, calib_data=(bad, Y))
    bad[3, 0, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        ls.conversion.to_qcfs(_Net(), 4, calib_data=bad)


@pytest.mark.parametrize("data,match", [
    (torch.rand(8, 3, 8, 8), "cannot run on the calibration inputs"),
    (torch.rand(4, 8, 1, 8, 8), "static batches with 4 dims"),
], ids=["wrong channels", "time-major"])
def test_calibration_data_of_the_wrong_shape_is_named(data, match):
    with pytest.raises(ValueError, match=match):
        ls.conversion.to_qcfs(_Net(), 4, calib_data=data)


def test_every_way_of_giving_the_same_data_gives_the_same_thresholds():
    def theta(data):
        q = ls.conversion.to_qcfs(_Net(), 4, calib_data=data)
        return [float(m.theta) for m in q.modules() if isinstance(m, ls.QCFS)]

    torch.manual_seed(0)
    ref = theta(X)
    assert ref[0] > 0
    for data in ((X, Y), TensorDataset(X, Y), TensorDataset(X),
                 DataLoader(TensorDataset(X, Y), batch_size=8), [X]):
        torch.manual_seed(0)
        assert theta(data) == ref
