"""Property: for QCFS nets with levels == T, y.mean(0) == ann(x) (float64), on random small
architectures; with levels != T the fast path still equals step-by-step simulation."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import leansnn as ls


def _act(rng: random.Random, L: int) -> nn.Module:
    return ls.QCFS(levels=L, threshold=rng.uniform(0.3, 2.5))


class _Res(nn.Module):
    """Conv stem, a residual block written with functional ops, GAP or max pool tail."""

    def __init__(self, rng: random.Random, L: int) -> None:
        super().__init__()
        self.c0, self.q0 = nn.Conv2d(2, 3, 3, padding=1), _act(rng, L)
        self.c1, self.bn, self.q1 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), _act(rng, L)
        self.pool = rng.choice([nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)])
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        h = self.q0(self.c0(x))
        h = self.q1(self.bn(self.c1(h)) + h)
        return self.fc(torch.flatten(self.pool(h), 1))


class _Cat(nn.Module):
    def __init__(self, rng: random.Random, L: int) -> None:
        super().__init__()
        self.a, self.qa = nn.Conv2d(2, 3, 3, padding=1), _act(rng, L)
        self.b, self.qb = nn.Conv2d(2, 2, 1), _act(rng, L)
        self.c, self.q = nn.Conv2d(5, 4, 3, padding=1, stride=2), _act(rng, L)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.cat([self.qa(self.a(x)), self.qb(self.b(x))], 1)
        return self.fc(self.q(self.c(y)).mean((2, 3)))


def _mlp(rng: random.Random, L: int) -> nn.Module:
    layers, d = [nn.Flatten()], 12
    for _ in range(rng.randint(1, 3)):
        h = rng.randint(2, 9)
        layers += [nn.Linear(d, h)] + ([nn.BatchNorm1d(h)] if rng.random() < 0.5 else [])
        layers += [_act(rng, L)]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, 4))


def _conv1d(rng: random.Random, L: int) -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), _act(rng, L),
                         rng.choice([nn.AvgPool1d(2), nn.MaxPool1d(2)]),
                         nn.Conv1d(4, 3, 3), _act(rng, L), nn.Flatten(), nn.Linear(6, 3))


SHAPES = {"res": (2, 6, 6), "cat": (2, 6, 6), "mlp": (12,), "conv1d": (2, 8)}
BUILD = {"res": _Res, "cat": _Cat, "mlp": _mlp, "conv1d": _conv1d}


def _random_net(seed: int, L: int):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    kind = rng.choice(sorted(BUILD))
    net = BUILD[kind](rng, L)
    x = torch.randn(rng.randint(1, 3), *SHAPES[kind], dtype=torch.float64) * 2
    net = net.double().eval()
    net(x)  # materialise lazy layers
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(-2, 2)
            m.bias.data.uniform_(-1, 1)
    return net.eval(), x


@pytest.mark.parametrize("seed", range(24))
def test_levels_equal_T_is_lossless(seed):
    T = random.Random(1000 + seed).choice([1, 2, 3, 4, 5, 8])
    net, x = _random_net(seed, T)
    snn = ls.convert(net, T, input_dims=x.dim())
    ref = net(x)
    for y in (snn(x), snn(x, engine="simulate"),
              snn(x.unsqueeze(0).expand(T, *x.shape).contiguous())):
        assert y.shape == (T, x.shape[0], ref.shape[-1])
        torch.testing.assert_close(y.mean(0), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_levels_other_than_T_fast_path_equals_simulation(seed):
    r = random.Random(2000 + seed)
    T, L = r.choice([1, 2, 4, 6]), r.choice([2, 4, 8])
    net, x = _random_net(100 + seed, L)
    snn = ls.convert(net, T, input_dims=x.dim())
    torch.testing.assert_close(snn(x), snn(x, engine="simulate"), rtol=0, atol=1e-9)
