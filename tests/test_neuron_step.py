"""Single-step API on every neuron, the 2-D input refusal, and the subtract-after-decay reset
(golden values, fused == reference in float64 with gradients, step == window)."""

import pytest
import torch

import leansnn as ls
from leansnn.convert.neurons import ParallelIF, SerialIF
from leansnn.neuron import lif_fused, lif_reference

RESETS = ["hard", "soft", "subtract_after_decay"]


def _neurons():
    yield ls.LIF(decay=0.6, threshold=0.5, reset="hard", v_reset=-0.1)
    yield ls.LIF(tau=2.0, threshold=0.4, reset="soft", surrogate=ls.surrogate.FastSigmoid())
    yield ls.LIF(decay=0.8, threshold=0.5, reset="subtract_after_decay")
    yield ls.LIF(decay=torch.tensor([0.3, 0.9, 0.5, 0.7]), threshold=0.5,
                 reset="subtract_after_decay", v_init=0.6)
    yield ls.IF(threshold=0.7)
    yield SerialIF(6, 0.8)


@pytest.mark.parametrize("neuron", list(_neurons()), ids=lambda m: type(m).__name__)
def test_step_equals_window(neuron):
    torch.manual_seed(0)
    x = torch.rand(6, 3, 4, dtype=torch.float64) * 1.2
    neuron = neuron.double()
    if isinstance(neuron, SerialIF):  # its forward has no return_state: the LIF one does
        ref, h_ref = ls.LIF.forward(neuron, x, return_state=True)
        assert torch.equal(neuron(x), ref)
    else:
        ref, h_ref = neuron(x, return_state=True)
    state, outs = None, []
    for t in range(x.shape[0]):
        s_t, state = neuron.step(x[t], state)
        outs.append(s_t)
    assert torch.equal(torch.stack(outs), ref)
    assert torch.equal(state, h_ref)
    assert neuron.causal


def test_step_gradients_equal_window_gradients():
    torch.manual_seed(1)
    x = (torch.rand(5, 2, 3, dtype=torch.float64) * 1.5).requires_grad_()
    lif = ls.LIF(decay=0.7, threshold=0.5, reset="subtract_after_decay", learn_threshold=True,
                 surrogate=ls.surrogate.FastSigmoid(slope=5.0)).double()
    w = torch.randn(5, 2, 3, dtype=torch.float64)
    gw = torch.autograd.grad((lif(x) * w).sum(), (x, lif.threshold))
    state, loss = None, 0.0
    for t in range(5):
        s_t, state = lif.step(x[t], state)
        loss = loss + (s_t * w[t]).sum()
    gs = torch.autograd.grad(loss, (x, lif.threshold))
    for a, b in zip(gw, gs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_non_causal_neuron_refuses_step():
    p = ParallelIF(T=4, threshold=1.0)
    assert not p.causal
    with pytest.raises(NotImplementedError, match="not causal"):
        p.step(torch.rand(2, 3))


def test_two_dimensional_input_is_refused_with_the_way_out():
    lif = ls.LIF(decay=0.5)
    with pytest.raises(ValueError, match=r"ambiguous.*step\(x_t, state\).*unsqueeze\(0\)"):
        lif(torch.rand(4, 3))
    assert lif(torch.rand(4, 3).unsqueeze(0)).shape == (1, 4, 3)   # one step
    assert lif(torch.rand(4, 3).unsqueeze(-1)).shape == (4, 3, 1)  # a [T, B] window
    assert lif(torch.rand(2, 4, 3)).shape == (2, 4, 3)              # [T, B, F]
    s, h = lif.step(torch.rand(4, 3))
    assert s.shape == h.shape == (4, 3)


def test_subtract_after_decay_golden():
    # u = 0.5 h + x - 1 * s_prev, h = u: x = .75 .75 .75 .75 .125
    # u0 = .75; u1 = .375 + .75 = 1.125 (fire); u2 = .5625 + .75 - 1 = .3125;
    # u3 = .15625 + .75 = .90625; u4 = .453125 + .125 = .578125
    lif = ls.LIF(decay=0.5, threshold=1.0, reset="subtract_after_decay")
    for impl in ("fused", "reference"):
        lif.impl = impl
        x = torch.tensor([0.75, 0.75, 0.75, 0.75, 0.125], dtype=torch.float64).view(-1, 1, 1)
        s, u = lif(x, return_potential=True)
        assert u.view(-1).tolist() == [0.75, 1.125, 0.3125, 0.90625, 0.578125]
        assert s.view(-1).tolist() == [0, 1, 0, 0, 0]
    # the soft reset subtracts before the decay: 0.5 * (1.125 - 1) + .75 at step 2
    soft = ls.LIF(decay=0.5, threshold=1.0, reset="soft")
    assert soft(x, return_potential=True)[1].view(-1)[2].item() == 0.8125


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_subtract_after_decay_fused_matches_reference_float64(detach, per_neuron, with_h0):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(7, 3, 4, generator=g, dtype=torch.float64) * 0.8 + 0.4).requires_grad_()

    def p(v):
        if per_neuron:
            return (torch.rand(4, generator=g, dtype=torch.float64) * 0.4 + v).requires_grad_()
        return torch.tensor(v, dtype=torch.float64, requires_grad=True)

    params = dict(decay=p(0.5), threshold=p(0.4), gain=p(1.1))
    v_init = torch.full((4,), 0.6, dtype=torch.float64, requires_grad=True)
    h0 = (torch.rand(3, 4, generator=g, dtype=torch.float64)).requires_grad_() if with_h0 else None
    kw = dict(params, v_init=v_init, h0=h0, surrogate=ls.surrogate.ATan(alpha=2.0),
              reset="subtract_after_decay", detach_reset=detach)
    inputs = (x, *params.values(), v_init) + ((h0,) if with_h0 else ())
    w = [torch.randn(7, 3, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    wh = torch.randn(3, 4, generator=g, dtype=torch.float64)
    res = []
    for fn in (lif_reference, lif_fused):
        s, u, h = fn(**{"x": x}, **kw)
        loss = (s * w[0]).sum() + (u * w[1]).sum() + (h * wh).sum()
        res.append((s, u, h, torch.autograd.grad(loss, inputs, allow_unused=True)))
    (s0, u0, h0_, g0), (s1, u1, h1, g1) = res
    assert torch.equal(s0, s1) and torch.equal(u0, u1) and torch.equal(h0_, h1)
    for a, b in zip(g0, g1):
        if a is None:
            assert b is None or not b.abs().any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_reset_names_are_checked():
    with pytest.raises(ValueError, match="subtract_after_decay"):
        ls.LIF(reset="subtract")
    lif = ls.LIF(decay=0.9, reset="subtract_after_decay")
    assert ls.LIF(**lif.to_config()).reset == "subtract_after_decay"


def test_tab_completion_lists_the_lazy_modules():
    names = dir(ls)
    for n in ("convert", "conversion", "analysis", "interop", "encoding", "train", "LIF"):
        assert n in names
