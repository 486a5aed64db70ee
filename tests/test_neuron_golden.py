"""Spikes and potentials against values worked out by hand (exact binary fractions)."""

import pytest
import torch

import leansnn as ls

IMPLS = ["fused", "reference"]


def run(neuron, xs):
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1, 1)
    s, u = neuron(x, return_potential=True)
    return s.view(-1).tolist(), u.view(-1).tolist()


@pytest.mark.parametrize("impl", IMPLS)
def test_lif_hard_reset(impl):
    lif = ls.LIF(decay=0.5, threshold=1.0, reset="hard", impl=impl)
    s, u = run(lif, [0.625, 0.625, 0.625, 1.25, 0.125])
    assert u == [0.625, 0.9375, 1.09375, 1.25, 0.125]
    assert s == [0, 0, 1, 1, 0]


@pytest.mark.parametrize("impl", IMPLS)
def test_lif_soft_reset(impl):
    lif = ls.LIF(decay=0.5, threshold=1.0, reset="soft", impl=impl)
    s, u = run(lif, [0.625, 0.625, 0.625, 1.25, 0.125])
    assert u == [0.625, 0.9375, 1.09375, 1.296875, 0.2734375]
    assert s == [0, 0, 1, 1, 0]


@pytest.mark.parametrize("impl", IMPLS)
def test_lif_tau_discretisation(impl):
    # tau = 2: u = 0.5 h + 0.5 x
    lif = ls.LIF(tau=2.0, threshold=1.0, impl=impl)
    s, u = run(lif, [1.5, 1.5, 0.5])
    assert u == [0.75, 1.125, 0.25]
    assert s == [0, 1, 0]


@pytest.mark.parametrize("impl", IMPLS)
def test_if_soft_reset_with_v_init(impl):
    iff = ls.IF(threshold=1.0, reset="soft", v_init=0.5, impl=impl)
    s, u = run(iff, [0.25, 0.25, 0.75, 0.0])
    assert u == [0.75, 1.0, 0.75, 0.75]  # u == threshold fires (>=)
    assert s == [0, 1, 0, 0]


@pytest.mark.parametrize("impl", IMPLS)
def test_hard_reset_to_v_reset(impl):
    iff = ls.IF(threshold=1.0, reset="hard", v_reset=-0.25, impl=impl)
    s, u = run(iff, [1.0, 0.5, 0.75])
    assert u == [1.0, 0.25, 1.0]
    assert s == [1, 0, 1]


@pytest.mark.parametrize("impl", IMPLS)
def test_paper_lif_settings(impl):
    # ICCV 2023 setting: decay 0.3, threshold 0.3, hard reset to 0
    lif = ls.LIF(decay=0.3, threshold=0.3, surrogate=ls.surrogate.Rectangular(a=0.25), impl=impl)
    s, u = run(lif, [0.25, 0.25, 0.0, 0.5])
    assert u == pytest.approx([0.25, 0.325, 0.0, 0.5])
    assert s == [0, 1, 0, 1]


def test_stateless_between_calls_and_streaming():
    lif = ls.LIF(decay=0.5, threshold=1.0)
    x = torch.rand(6, 3, 4) * 1.5
    full = lif(x)
    assert torch.equal(lif(x), full)  # no hidden state between calls
    s1, h = lif(x[:3], return_state=True)
    s2 = lif(x[3:], h0=h)
    assert torch.equal(torch.cat([s1, s2]), full)


def test_output_is_binary_float_and_shape():
    lif = ls.LIF()
    x = torch.randn(4, 2, 3, 5, 5)
    s = lif(x)
    assert s.shape == x.shape and s.dtype == x.dtype
    assert set(s.unique().tolist()) <= {0.0, 1.0}
