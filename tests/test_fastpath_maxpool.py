"""The fast path with max pooling, concatenation and channel shuffles; bit identity with the
QCFS ANN at T = L; NaN input; in-place activations; products of spiking signals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leansnn as ls
from leansnn.convert import ConversionError


def _bn(c: int) -> nn.BatchNorm2d:
    b = nn.BatchNorm2d(c)
    b.running_mean.uniform_(-0.5, 0.5)
    b.running_var.uniform_(0.5, 2.0)
    nn.init.uniform_(b.weight, 0.5, 1.5)
    nn.init.uniform_(b.bias, -0.2, 0.2)
    return b


class Mixed(nn.Module):
    """Max pooling (module and functional), a DenseNet-order BN after a concatenation, a
    channel shuffle, chunk, dropout, padding and a residual add between spiking layers."""

    def __init__(self, L: int = 4) -> None:
        super().__init__()
        self.c1, self.b1, self.a1 = nn.Conv2d(3, 8, 3, padding=1), _bn(8), ls.QCFS(L, 2.0)
        self.c2, self.b2, self.a2 = nn.Conv2d(3, 8, 3, padding=1), _bn(8), ls.QCFS(L, 1.5)
        self.mp = nn.MaxPool2d(3, 2, 1)
        self.bn = _bn(16)
        self.a3 = ls.QCFS(L, 1.0)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.a4 = ls.QCFS(L, 2.5)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.cat([self.a1(self.b1(self.c1(x))), self.a2(self.b2(self.c2(x)))], 1)
        h = self.mp(h)                                  # per-channel amplitudes: fine
        b, c, hh, w = h.size()
        h = h.view(b, 2, c // 2, hh, w).transpose(1, 2).contiguous().view(b, c, hh, w)
        h = self.a3(self.bn(h))                         # BN not preceded by a conv
        p, q = h.chunk(2, dim=1)
        q = self.a4(self.drop(self.c3(F.pad(q, (1, 1, 1, 1))))[..., 1:-1, 1:-1] + p)
        h = F.max_pool2d(torch.cat([p, q], 1), 2)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def _bit_identical_or_unreachable(y: torch.Tensor, ref: torch.Tensor) -> None:
    """``y.mean(0) == ref`` bit for bit, except where no honest per-step outputs can reach
    ``ref`` (cancellation between steps; see fastpath.close_mean): there one ulp off."""
    m = y.mean(0)
    off = m != ref
    assert off.float().mean() < 0.05
    assert torch.equal(torch.nextafter(m[off], ref[off]), ref[off])


@pytest.mark.parametrize("L", [2, 4, 8])
def test_max_pool_concat_shuffle_keep_exact_fast_path(L):
    torch.manual_seed(L)
    ann = Mixed(L).eval()
    x = torch.rand(16, 3, 12, 12) * 2 - 1
    snn = ls.convert(ann, T=L)
    assert snn.fast_path_status() == (True, [])
    with torch.no_grad():
        y, ref = snn(x), ann(x)
        _bit_identical_or_unreachable(y, ref)
        sim = snn(x, engine="simulate")
    torch.testing.assert_close(sim, y, rtol=1e-5, atol=1e-5)
    # float64: the simulate engine agrees with the fast path and the ANN
    a64, x64 = Mixed(L).eval(), x.double()
    a64.load_state_dict(ann.state_dict())
    a64 = a64.double()
    s64 = ls.convert(a64, T=L)
    with torch.no_grad():
        torch.testing.assert_close(s64(x64, engine="simulate"), s64(x64, engine="fast"),
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(s64(x64, engine="simulate").mean(0), a64(x64), rtol=0,
                                   atol=1e-12)


def test_spike_trains_equal_in_both_engines_with_max_pool():
    torch.manual_seed(0)
    ann = Mixed(4).double().eval()
    snn = ls.convert(ann, T=4)
    x = torch.rand(4, 3, 12, 12, dtype=torch.float64) * 2 - 1
    got = {}
    for eng in ("fast", "simulate"):
        trains = {}
        hooks = [m.add_observer(lambda mod, s, u, n=n, t=trains: t.__setitem__(n, s.clone()))
                 for n, m in snn.named_neurons()]
        snn(x, engine=eng)
        for h in hooks:
            h.remove()
        got[eng] = trains
    assert got["fast"].keys() == got["simulate"].keys() and len(got["fast"]) == 4
    for n in got["fast"]:
        assert torch.equal(got["fast"][n], got["simulate"][n]), n


def test_where_max_pooling_does_not_commute():
    # a max across channels with different amplitudes, and a max pool after a conv
    class Across(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.a, self.fc = nn.Conv2d(3, 4, 3), ls.QCFS(4, 1.0), nn.Conv2d(2, 2, 1)
            self.a2 = ls.QCFS(4, 1.0)

        def forward(self, x):
            h = self.a(self.c(x)).transpose(1, 3)  # channels last: amplitude per channel
            h = F.max_pool2d(h, (1, 2)).transpose(1, 3)  # now a max over channels
            return self.a2(self.fc(h)).flatten(1)

    assert ls.convert(Across(), T=4).fast_path_status()[0]  # one amplitude: fine
    per_channel = {"a": torch.tensor([1.0, 2.0, 0.5, 1.5]).view(4, 1, 1)}
    snn = ls.convert(Across(), T=4, thresholds=per_channel)
    ok, why = snn.fast_path_status()
    assert not ok and "pool" in why[0] and "front-loaded" in why[0]
    chan = ls.convert(nn.Sequential(nn.Conv2d(3, 4, 3), ls.QCFS(4, 1.0), nn.Conv2d(4, 4, 1),
                                    nn.MaxPool2d(2), ls.QCFS(4, 1.0), nn.Flatten()), T=4)
    assert not chan.fast_path_status()[0]


def test_nan_input_gives_nan_in_both_engines():
    torch.manual_seed(1)
    ann = Mixed(4).eval()
    snn = ls.convert(ann, T=4)
    x = torch.rand(3, 3, 12, 12)
    x[1, 0, 5, 5] = float("nan")
    assert ann(x)[1].isnan().all()
    for eng in ("fast", "simulate"):
        y = snn(x, engine=eng)
        assert y[:, 1].isnan().all() and not y[:, [0, 2]].isnan().any(), eng
    serial = ls.convert(ann, T=4, method="serial")
    assert serial(x)[:, 1].isnan().all()


def test_inplace_activation_keeps_ann_arithmetic():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            y = self.c(x)
            z = F.relu6(y, inplace=True)
            return self.fc(F.adaptive_avg_pool2d(z + y, 1).flatten(1))

    torch.manual_seed(2)
    ann = InPlace().eval()
    x = torch.rand(4, 3, 8, 8) * 20 - 10
    qann = ls.conversion.to_qcfs(ann, 4, calib_data=x).eval()
    snn = ls.convert(qann, T=4)
    assert torch.equal(snn(x).mean(0), qann(x))
    with torch.no_grad():
        want = ann(x.clone())  # the ReLU6 net itself: z + z
        relu6_net = ls.convert(ann, T=1000, method="parallel", thresholds={"relu6": 6.0})
        torch.testing.assert_close(relu6_net(x).mean(0), want, atol=0.05, rtol=0)


def test_products_of_spiking_signals_refused_by_name():
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.a = nn.Conv2d(3, 4, 3), ls.QCFS(4, 1.0)
            self.fc1, self.g = nn.Conv2d(4, 4, 1), ls.QCFS(4, 1.0)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            h = self.a(self.c(x))
            gate = self.g(self.fc1(F.adaptive_avg_pool2d(h, 1)))
            return self.fc(F.adaptive_avg_pool2d(h * gate, 1).flatten(1))

    with pytest.raises(ConversionError, match=r"mul.*product of two spiking signals"):
        ls.convert(SE(), T=4)
    snn = ls.convert(SE(), T=4, allow_products=True)
    assert snn.approximate and "mul" in snn.approximate[0]
    ok, why = snn.fast_path_status()
    assert not ok and any("mul" in w for w in why)
    for bad in (nn.Hardswish(), nn.SiLU()):
        with pytest.raises(ConversionError, match=type(bad).__name__):
            ls.convert(nn.Sequential(nn.Conv2d(3, 4, 3), bad, nn.Flatten()), T=4)
