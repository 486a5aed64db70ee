"""The fused BPTT path against the reference: identical spikes, gradients within 1e-6."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import leansnn as ls
from leansnn.neuron import lif_fused, lif_reference

SURROGATES = [
    ls.surrogate.Rectangular(a=0.25),
    ls.surrogate.Sigmoid(alpha=4.0),
    ls.surrogate.ATan(alpha=2.0),
    ls.surrogate.Triangle(a=0.5),
]


def _grads(fn, x, params, h0, sg, reset, detach, v_reset, seed):
    S, U, H = fn(x, decay=params["decay"], gain=params["gain"], threshold=params["thr"],
                 surrogate=sg, reset=reset, detach_reset=detach, v_reset=v_reset, h0=h0)
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (S, U, H)]
    loss = (S * w[0]).sum() + (U * w[1]).sum() + (H * w[2]).sum()
    inputs = [x] + [p for p in params.values() if isinstance(p, torch.Tensor)]
    if h0 is not None:
        inputs.append(h0)
    return S, U, H, torch.autograd.grad(loss, inputs, allow_unused=False)


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 6),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    reset=st.sampled_from(["hard", "soft"]),
    sg_i=st.integers(0, len(SURROGATES) - 1),
    detach=st.booleans(),
    learn=st.booleans(),
    use_h0=st.booleans(),
    v_reset=st.sampled_from([0.0, -0.2]),
    seed=st.integers(0, 2**16),
)
def test_fused_matches_reference(T, shape, reset, sg_i, detach, learn, use_h0, v_reset, seed):
    torch.manual_seed(seed)
    x = (torch.randn(T, *shape, dtype=torch.float64) * 0.8 + 0.4).requires_grad_()

    def p(v):
        return torch.tensor(v, dtype=torch.float64, requires_grad=True) if learn else v

    params = {"decay": p(0.6), "gain": p(0.7), "thr": p(0.5)}
    h0 = torch.randn(*shape, dtype=torch.float64, requires_grad=True) if use_h0 else None
    sg = SURROGATES[sg_i]
    a = _grads(lif_reference, x, params, h0, sg, reset, detach, v_reset, seed)
    b = _grads(lif_fused, x, params, h0, sg, reset, detach, v_reset, seed)
    assert torch.equal(a[0], b[0]), "spikes differ"
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(a[2], b[2], rtol=0, atol=1e-12)
    for ga, gb in zip(a[3], b[3]):
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("tau_mode", [True, False])
@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: type(s).__name__)
def test_module_learnable_params_match(reset, tau_mode, sg):
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, dtype=torch.float64) + 0.5
    grads = []
    for impl in ("reference", "fused"):
        kw = {"tau": 2.5} if tau_mode else {"decay": 0.4}
        m = ls.LIF(threshold=0.6, reset=reset, surrogate=sg, learn_decay=True,
                   learn_threshold=True, impl=impl, **kw).double()
        xx = x.clone().requires_grad_()
        s, u = m(xx, return_potential=True)
        (s.sum() * 0.3 + (u * u).sum()).backward()
        grads.append([xx.grad, m.decay_logit.grad, m.threshold.grad])
    for ga, gb in zip(*grads):
        assert ga is not None and gb is not None
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-6)
    assert float(grads[1][1].abs()) > 0 and float(grads[1][2].abs()) > 0


def test_fused_saves_one_tensor_per_step():
    """Memory contract: the backward pass keeps at most one [B, ...] tensor per step."""
    T, shape = 7, (4, 3, 5)
    x = torch.randn(T, *shape, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = ls.LIF(decay=0.5)(x)
    per_step = x[0].numel()
    assert sum(saved) <= T * per_step, (saved, T * per_step)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_fused_no_grad_matches_and_broadcast_input():
    lif = ls.LIF(decay=0.4, threshold=0.5)
    img = torch.rand(3, 2, 5)
    x = img.unsqueeze(0).expand(6, *img.shape)  # direct encoding view (zero stride)
    with torch.no_grad():
        a = lif(x)
    b = lif(x.contiguous())
    assert torch.equal(a, b)
    xg = img.clone().requires_grad_()
    lif(xg.unsqueeze(0).expand(6, *img.shape)).sum().backward()
    xr = img.clone().requires_grad_()
    ls.LIF(decay=0.4, threshold=0.5, impl="reference")(
        xr.unsqueeze(0).expand(6, *img.shape)).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)
