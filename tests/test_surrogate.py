"""Each surrogate's gradient is the derivative of its stated primitive (numerically)."""

import math

import pytest
import torch

import leansnn as ls
from leansnn.neuron.functional import SpikeFn

CASES = [
    ls.surrogate.Rectangular(a=0.25),
    ls.surrogate.Rectangular(a=1.0),
    ls.surrogate.Sigmoid(alpha=4.0),
    ls.surrogate.ATan(alpha=2.0),
    ls.surrogate.Triangle(a=0.5),
    ls.surrogate.FastSigmoid(slope=25.0),
    ls.surrogate.FastSigmoid(slope=2.0),
]


@pytest.mark.parametrize("sg", CASES, ids=repr)
def test_derivative_matches_primitive(sg):
    v = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    # avoid the kinks of the piecewise surrogates, where the derivative is undefined
    kinks = [getattr(sg, "a", None), -getattr(sg, "a", 0.0), 0.0]
    keep = torch.ones_like(v, dtype=torch.bool)
    for k in kinks:
        if k is not None:
            keep &= (v - k).abs() > 1e-3
    v = v[keep]
    eps = 1e-6
    numeric = (sg.primitive(v + eps) - sg.primitive(v - eps)) / (2 * eps)
    torch.testing.assert_close(sg.derivative(v), numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sg", CASES, ids=repr)
def test_spike_function_uses_surrogate(sg):
    v = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64, requires_grad=True)
    s = SpikeFn.apply(v, sg)
    assert torch.equal(s, (v >= 0).double())
    s.sum().backward()
    torch.testing.assert_close(v.grad, sg.derivative(v.detach()))


def test_stated_formulas():
    v = torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64)
    assert ls.surrogate.Rectangular(a=0.25).derivative(v).tolist() == [2.0, 2.0, 0.0]
    assert ls.surrogate.Triangle(a=0.5).derivative(v).tolist() == pytest.approx([2.0, 1.6, 0.8])
    at = ls.surrogate.ATan(alpha=2.0).derivative(v)
    assert at[1].item() == pytest.approx(1.0 / (1 + (math.pi / 2 * 2 * 0.1) ** 2))
    sig = ls.surrogate.Sigmoid(alpha=4.0).derivative(v)
    assert sig[0].item() == pytest.approx(1.0)


def test_surrogate_validation_and_lookup():
    with pytest.raises(ValueError, match="a must be"):
        ls.surrogate.Rectangular(a=0)
    assert ls.surrogate.get("atan") == ls.surrogate.ATan()
    assert ls.surrogate.get({"name": "Rectangular", "a": 0.25}) == ls.surrogate.Rectangular(0.25)
    with pytest.raises(ValueError, match="unknown surrogate"):
        ls.surrogate.get("gauss")


def test_fast_sigmoid_formula_and_config():
    v = torch.tensor([0.0, 0.1, -0.2], dtype=torch.float64)
    fs = ls.surrogate.FastSigmoid()
    assert fs.slope == 25.0
    expect = [1.0 / (25 * abs(x) + 1) ** 2 for x in v.tolist()]
    assert fs.derivative(v).tolist() == pytest.approx(expect, rel=1e-15)
    assert ls.surrogate.get(fs.to_config()) == fs
    assert ls.surrogate.get("fastsigmoid") == fs
    with pytest.raises(ValueError, match="slope must be"):
        ls.surrogate.FastSigmoid(slope=-1)
    lif = ls.LIF(decay=0.5, surrogate=ls.surrogate.FastSigmoid(slope=10))
    assert type(lif)(**lif.to_config()).surrogate == ls.surrogate.FastSigmoid(slope=10)
