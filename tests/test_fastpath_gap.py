"""The fast path's tail for ``neuron -> global average pooling``: the pooled spike train is
computed from a histogram of the counts (``ParallelIF`` mode ``spikes_gap``) instead of
building the ``[T, B, C, H, W]`` train. Every spelling of global average pooling, every
amplitude shape, observers, NaN input and a neuron with a second user."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leansnn as ls
from leansnn.convert.neurons import ParallelIF

POOLS = {
    "module": lambda h: nn.AdaptiveAvgPool2d(1),
    "module_tuple": lambda h: nn.AdaptiveAvgPool2d((1, 1)),
    "functional": lambda h: (lambda x: F.adaptive_avg_pool2d(x, 1)),
    "mean": lambda h: (lambda x: x.mean((2, 3))),
    "mean_neg_keepdim": lambda h: (lambda x: x.mean((-2, -1), keepdim=True)),
    "torch_mean": lambda h: (lambda x: torch.mean(x, dim=(2, 3))),
}


class Head(nn.Module):
    def __init__(self, pool: str, L: int = 4, second_user: bool = False) -> None:
        super().__init__()
        self.c1, self.a1 = nn.Conv2d(3, 6, 3, padding=1), ls.QCFS(L, 1.5)
        self.c2, self.b2, self.a2 = nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), \
            ls.QCFS(L, 2.0)
        self.pool = POOLS[pool](None)
        self.fc = nn.Linear(8, 5)
        self.second_user = second_user
        with torch.no_grad():
            self.b2.running_mean.uniform_(-0.3, 0.3)
            self.b2.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        h = self.a2(self.b2(self.c2(self.a1(self.c1(x)))))
        p = self.pool(h).flatten(1)
        y = self.fc(p)
        if self.second_user:  # the neuron's output is used twice: no histogram tail
            y = y + h.amax((2, 3))[:, :5]
        return y


def _tail_code(snn) -> str:
    return snn._plan.tail.code


@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("T", [1, 4, 7])
def test_every_global_average_pool_uses_histogram_and_matches_simulation(pool, T):
    torch.manual_seed(T)
    ann = Head(pool).eval()
    x = torch.rand(5, 3, 6, 6) * 3 - 1
    snn = ls.convert(ann, T=T)
    assert snn.fast_path_status() == (True, [])
    assert "pooled_train" in _tail_code(snn)
    with torch.no_grad():
        y = snn(x)
        sim = snn(x, engine="simulate")
        assert y.shape == sim.shape == (T, 5, 5)
        torch.testing.assert_close(y, sim, rtol=1e-5, atol=1e-5)
        if T == 4:  # T == L: the mean is the QCFS ANN's output (close_mean)
            m, ref = y.mean(0), ann(x)
            off = m != ref
            assert off.float().mean() < 0.05
            assert torch.equal(torch.nextafter(m[off], ref[off]), ref[off])
    a64 = Head(pool).double().eval()
    a64.load_state_dict(ann.double().state_dict())
    s64 = ls.convert(a64, T=T)
    with torch.no_grad():
        torch.testing.assert_close(s64(x.double()), s64(x.double(), engine="simulate"),
                                   rtol=0, atol=1e-12)


def test_second_user_keeps_the_train():
    torch.manual_seed(0)
    ann = Head("module", second_user=True).eval()
    snn = ls.convert(ann, T=4)
    assert "pooled_train" not in _tail_code(snn)
    x = torch.rand(3, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(snn(x), snn(x, engine="simulate"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("amp_shape", [(), (1,), (4, 1, 1), (4, 3, 5), (1, 3, 1)])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_pooled_train_equals_pooling_the_train(amp_shape, T):
    g = torch.Generator().manual_seed(T)
    theta = torch.rand(amp_shape, generator=g, dtype=torch.float64) + 0.5
    neuron = ParallelIF(T, theta)
    mean = (torch.rand(6, 4, 3, 5, generator=g, dtype=torch.float64) * 1.4 - 0.2) * theta
    mean[0, 0] = -1.0  # no spikes
    mean[0, 1] = 10.0  # every step fires
    n = neuron.counts(mean)
    expect = (neuron.spike_train(n) * neuron.spike_amplitude).mean((-2, -1))
    for mode, shape in (("spikes_gap", (T * 6, 4)), ("spikes_gap_keepdim", (T * 6, 4, 1, 1))):
        got = neuron(mean, mode=mode)
        assert got.shape == shape
        torch.testing.assert_close(got.reshape(T, 6, 4), expect, rtol=0, atol=1e-14)


def test_observers_see_the_full_train_and_nan_rows_stay_nan():
    torch.manual_seed(1)
    ann = Head("mean").double().eval()
    snn = ls.convert(ann, T=4)
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    got = {}
    for eng in ("fast", "simulate"):
        trains: dict = {}
        hooks = [m.add_observer(lambda mod, s, u, n=n, t=trains: t.__setitem__(n, s.clone()))
                 for n, m in snn.named_neurons()]
        snn(x, engine=eng)
        for h in hooks:
            h.remove()
        got[eng] = trains
    assert len(got["fast"]) == 2
    for k in got["fast"]:
        assert torch.equal(got["fast"][k], got["simulate"][k]), k
    x[1, 0, 2, 2] = float("nan")
    with torch.no_grad():
        y = snn(x)
    assert torch.isnan(y[:, 1]).all() and torch.isfinite(y[:, [0, 2]]).all()


def test_gap_mode_refuses_other_ranks():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ParallelIF(4, 1.0)(torch.rand(3, 5), mode="spikes_gap")


class Branches(nn.Module):
    """Inception-style end: parallel branches concatenated, then global average pooling;
    ``mixed`` concatenates a non-spiking tensor too (then the trains must be built)."""

    def __init__(self, mixed: bool = False, L: int = 4) -> None:
        super().__init__()
        self.c1, self.a1 = nn.Conv2d(3, 4, 1), ls.QCFS(L, 1.0)
        self.c2, self.a2 = nn.Conv2d(3, 6, 3, padding=1), ls.QCFS(L, 2.0)
        self.c3 = nn.Conv2d(3, 2, 1)
        self.mixed = mixed
        self.fc = nn.Linear(12 if mixed else 10, 3)

    def forward(self, x):
        parts = [self.a1(self.c1(x)), self.a2(self.c2(x))]
        if self.mixed:
            parts.append(self.c3(parts[0][:, :3]))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(torch.cat(parts, 1), 1), 1))


@pytest.mark.parametrize("mixed", [False, True])
def test_pool_of_concatenated_branches(mixed):
    torch.manual_seed(2)
    ann = Branches(mixed).eval()
    snn = ls.convert(ann, T=4)
    assert ("pooled_train" in _tail_code(snn)) is not mixed
    x = torch.rand(4, 3, 5, 5) * 2 - 0.5
    with torch.no_grad():
        torch.testing.assert_close(snn(x), snn(x, engine="simulate"), rtol=1e-5, atol=1e-5)
        m, ref = snn(x).mean(0), ann(x)
        off = m != ref
        assert torch.equal(torch.nextafter(m[off], ref[off]), ref[off])


class Volume(nn.Module):
    """5-D activations: ``mean((2, 3))`` pools depth and height here, not the last two dims,
    and ``mean((-2, -1))`` pools height and width of a 5-D map: both build the train."""

    def __init__(self, dims) -> None:
        super().__init__()
        self.c, self.a = nn.Conv3d(2, 4, 3, padding=1), ls.QCFS(4, 1.0)
        self.dims = dims
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        return self.fc(self.a(self.c(x)).mean(self.dims).flatten(1))


@pytest.mark.parametrize("dims", [(2, 3), (-2, -1)])
def test_other_ranks_fall_back_to_the_train(dims):
    torch.manual_seed(3)
    ann = Volume(dims)
    x = torch.rand(3, 2, 4, 5, 6)
    ann(x)
    ann.eval()
    snn = ls.convert(ann, T=4)
    with torch.no_grad():
        y = snn(x)
        torch.testing.assert_close(y, snn(x, engine="simulate"), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y.mean(0), ann(x), rtol=1e-5, atol=1e-5)
