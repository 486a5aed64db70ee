"""The mapping table of docs/neurons.md, checked against the peers where they are installed
(`make bench-setup` installs SpikingJelly and snnTorch; Norse is optional) and against the
equations everywhere: same spikes, same potentials and the same float64 input gradients."""

import pytest
import torch

import leansnn as ls

T, B, F = 12, 3, 5


def _x(seed=0, scale=0.9, shift=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, F, generator=g, dtype=torch.float64) * scale + shift)


def _ours(lif, x):
    x = x.clone().requires_grad_()
    s, u = lif.double()(x, return_potential=True)
    w = torch.linspace(-1, 1, s.numel(), dtype=torch.float64).view_as(s)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    return s.detach(), u.detach(), g


def _check(ours, theirs_s, theirs_g, tol=1e-12):
    s, _, g = ours
    assert torch.equal(s, theirs_s.to(s.dtype))
    torch.testing.assert_close(g, theirs_g, rtol=tol, atol=tol)


# -- equations only (always run) -----------------------------------------------------------
def _snntorch_subtract_by_hand(x, beta, thr, sg):
    """snnTorch Leaky(reset_mechanism="subtract"), written out: reset = H(mem[t-1] - thr)
    (detached), mem[t] = beta mem[t-1] + x[t] - reset thr, spk = H(mem[t] - thr)."""
    from leansnn.neuron.functional import SpikeFn

    mem = torch.zeros_like(x[0])
    spk, mems = [], []
    for t in range(x.shape[0]):
        reset = (mem - thr >= 0).to(x.dtype)
        mem = beta * mem + x[t] - reset * thr
        spk.append(SpikeFn.apply(mem - thr, sg))
        mems.append(mem)
    return torch.stack(spk), torch.stack(mems)


def test_subtract_after_decay_is_the_written_out_snntorch_equation():
    sg = ls.surrogate.FastSigmoid(slope=25.0)
    x = _x().requires_grad_()
    s, mem = _snntorch_subtract_by_hand(x, 0.8, 0.6, sg)
    w = torch.linspace(-1, 1, s.numel(), dtype=torch.float64).view_as(s)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    for impl in ("fused", "reference"):
        lif = ls.LIF(decay=0.8, threshold=0.6, reset="subtract_after_decay", surrogate=sg,
                     detach_reset=True, impl=impl)
        ours = _ours(lif, x.detach())
        _check(ours, s.detach(), g)
        torch.testing.assert_close(ours[1], mem.detach(), rtol=0, atol=0)


# -- snnTorch -------------------------------------------------------------------------------
def _snntorch_run(neuron, x):
    x = x.clone().requires_grad_()
    mem = torch.zeros_like(x[0])
    spk = []
    for t in range(x.shape[0]):
        s, mem = neuron(x[t], mem)
        spk.append(s)
    s = torch.stack(spk)
    w = torch.linspace(-1, 1, s.numel(), dtype=torch.float64).view_as(s)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    return s.detach(), g


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_leaky(surrogate, reset):
    snntorch = pytest.importorskip("snntorch")
    from snntorch import surrogate as sst

    theirs_sg = sst.fast_sigmoid(slope=25) if surrogate == "fast_sigmoid" else sst.atan(alpha=2.0)
    ours_sg = (ls.surrogate.FastSigmoid(slope=25.0) if surrogate == "fast_sigmoid"
               else ls.surrogate.ATan(alpha=2.0))
    # beta and threshold exact in float32 (snnTorch keeps them as float32 buffers)
    leaky = snntorch.Leaky(beta=0.75, threshold=0.5, spike_grad=theirs_sg,
                           reset_mechanism=reset).double()
    s, g = _snntorch_run(leaky, _x(1))
    lif = ls.LIF(decay=0.75, threshold=0.5, surrogate=ours_sg, detach_reset=True,
                 reset="subtract_after_decay" if reset == "subtract" else "hard", v_reset=0.0)
    # snnTorch's spike functions return float32 spikes, so its gradients are float32-exact
    _check(_ours(lif, _x(1)), s, g, tol=1e-6)


# -- SpikingJelly ---------------------------------------------------------------------------
def _sj_run(node, x):
    from spikingjelly.activation_based import functional

    functional.reset_net(node)
    x = x.clone().requires_grad_()
    s = node(x)
    w = torch.linspace(-1, 1, s.numel(), dtype=torch.float64).view_as(s)
    (g,) = torch.autograd.grad((s * w).sum(), x)
    return s.detach(), g


@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach", [False, True])
def test_spikingjelly_lif(v_reset, detach):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron, surrogate

    node = neuron.LIFNode(tau=2.0, v_threshold=0.5, v_reset=v_reset, detach_reset=detach,
                          surrogate_function=surrogate.ATan(alpha=2.0), step_mode="m")
    s, g = _sj_run(node, _x(2, 1.6, -0.2))
    lif = ls.LIF(tau=2.0, threshold=0.5, reset="hard" if v_reset is not None else "soft",
                 surrogate=ls.surrogate.ATan(alpha=2.0), detach_reset=detach)
    _check(_ours(lif, _x(2, 1.6, -0.2)), s, g)


def test_spikingjelly_if_sigmoid():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron, surrogate

    node = neuron.IFNode(v_threshold=1.0, v_reset=None,
                         surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")
    s, g = _sj_run(node, _x(3))
    iff = ls.IF(threshold=1.0, reset="soft", surrogate=ls.surrogate.Sigmoid(alpha=4.0))
    _check(_ours(iff, _x(3)), s, g)


# -- Norse (optional) -------------------------------------------------------------------------
def test_norse_lif_box():
    pytest.importorskip("norse")
    from norse.torch import LIFBoxParameters
    from norse.torch.functional.lif_box import lif_box_feed_forward_step

    dt, tau_mem_inv = 1e-3, 200.0
    p = LIFBoxParameters(tau_mem_inv=torch.tensor(tau_mem_inv), v_th=torch.tensor(0.3),
                         v_reset=torch.tensor(0.0), v_leak=torch.tensor(0.0),
                         method="super", alpha=torch.tensor(100.0))
    x = _x(4, 2.0, 0.5)
    state, spikes = None, []
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    state = LIFBoxFeedForwardState(v=torch.zeros_like(x[0]))
    for t in range(T):
        z, state = lif_box_feed_forward_step(x[t], state, p, dt)
        spikes.append(z)
    k = dt * tau_mem_inv
    lif = ls.LIF(decay=1 - k, gain=k, threshold=0.3, reset="hard",
                 surrogate=ls.surrogate.FastSigmoid(slope=100.0))
    assert torch.equal(lif.double()(x), torch.stack(spikes))
