"""Single-step API, return types and the public neuron protocol."""

import pytest
import torch

import leansnn as ls
from leansnn.neuron import NeuronOutput, SpikesAndPotential, SpikesAndState

D = torch.float64

NEURONS = {
    "lif_hard": lambda: ls.LIF(decay=0.3, threshold=0.3),
    "lif_tau_soft": lambda: ls.LIF(tau=2.0, threshold=0.5, reset="soft", v_init=0.1),
    "if_soft": lambda: ls.IF(threshold=0.7, v_init=0.35),
    "channel": lambda: ls.LIF(decay=torch.tensor([0.2, 0.9, 0.5]).view(3, 1),
                              threshold=torch.tensor([0.3, 0.6, 1.0]).view(3, 1),
                              v_reset=torch.tensor([0.0, -0.1, 0.1]).view(3, 1)),
    "neuron_soft": lambda: ls.IF(threshold=torch.rand(3, 4) + 0.5, v_init=torch.rand(3, 4) * 0.3),
    "learnable": lambda: ls.LIF(tau=torch.full((3, 1), 2.0), threshold=torch.full((3, 4), 0.5),
                                learn_decay=True, learn_threshold=True),
}


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("name", sorted(NEURONS))
@pytest.mark.parametrize("grad", [False, True])
def test_step_equals_window_exactly(name, impl, grad):
    torch.manual_seed(0)
    m = NEURONS[name]()
    m.impl = impl
    x = torch.rand(7, 2, 3, 4) * 1.2
    with torch.set_grad_enabled(grad):
        full, h_full = m(x, return_state=True)
        state, outs = None, []
        for t in range(x.shape[0]):
            s_t, state = m.step(x[t], state)
            outs.append(s_t)
    assert torch.equal(torch.stack(outs), full)
    assert torch.equal(state, h_full)


def test_step_gradient_matches_window():
    m = ls.LIF(decay=torch.full((4,), 0.6), threshold=0.5, learn_threshold=True).double()
    x = torch.rand(5, 2, 4, dtype=D, requires_grad=True)
    m(x).sum().backward()
    gx, gth = x.grad.clone(), m.threshold.grad.clone()
    x.grad = None
    m.threshold.grad = None
    state, total = None, 0
    for t in range(5):
        s, state = m.step(x[t], state)
        total = total + s.sum()
    total.backward()
    torch.testing.assert_close(x.grad, gx)
    torch.testing.assert_close(m.threshold.grad, gth)


def test_step_validates():
    m = ls.LIF()
    with pytest.raises(ValueError, match="state must have the shape"):
        m.step(torch.rand(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="floating tensor"):
        m.step(torch.ones(2, 3, dtype=torch.long))


def test_return_types():
    m = ls.LIF(decay=0.5, threshold=0.5)
    x = torch.rand(4, 2, 3)
    s = m(x)
    assert type(s) is torch.Tensor
    r = m(x, return_potential=True)
    assert isinstance(r, SpikesAndPotential) and torch.equal(r.spikes, s)
    s2, u = r
    assert u.shape == x.shape
    r = m(x, return_state=True)
    assert isinstance(r, SpikesAndState) and r.state.shape == x.shape[1:]
    r = m(x, return_potential=True, return_state=True)
    assert isinstance(r, NeuronOutput)
    s3, u3, h3 = r
    assert torch.equal(u3, u) and torch.equal(h3, m(x, return_state=True).state)
    assert isinstance(m.step(x[0]), SpikesAndState)


def test_protocol_values():
    m = ls.LIF(tau=4.0, threshold=0.5, reset="soft", v_reset=-0.1, v_init=0.2)
    assert (m.decay, m.gain, m.threshold, m.reset, m.v_reset, m.v_init, m.spike_amplitude) == (
        0.75, 0.25, 0.5, "soft", -0.1, 0.2, 1.0)
    i = ls.IF(threshold=2.0)
    assert (i.decay, i.gain, i.reset) == (1.0, 1.0, "soft")
    g = ls.LIF(decay=0.5, gain=0.25)
    assert (g.decay, g.gain) == (0.5, 0.25)
    p = ls.LIF(tau=2.0, learn_decay=True)
    assert isinstance(p.decay, torch.Tensor) and float(p.decay.detach()) == pytest.approx(0.5)
    assert float(p.gain.detach()) == pytest.approx(0.5)
    th = torch.tensor([1.0, 2.0])
    c = ls.IF(threshold=th)
    assert torch.equal(c.threshold, th) and c.params.reset == "soft"


def test_learnable_threshold_state_dict_key_unchanged():
    m = ls.LIF(decay=0.5, threshold=0.3, learn_threshold=True, learn_decay=True)
    assert sorted(m.state_dict()) == ["decay_logit", "threshold"]
    assert sorted(ls.LIF(decay=0.3, threshold=0.3).state_dict()) == []


@pytest.mark.parametrize("shape", [(3, 1, 1), (3, 4, 4), (1, 3, 1, 1)])
def test_monitor_reads_tensor_thresholds(shape):
    th = (torch.rand(shape) + 0.5)
    net = ls.LIF(decay=0.5, threshold=th)
    with ls.analysis.Monitor(net) as mon:
        net(torch.rand(4, 2, 3, 4, 4) * 2)
    (layer,) = mon.summary()["layers"].values()
    assert len(layer["threshold"]) == 3 and 0 < layer["rate"] < 1


def test_fused_tensor_params_save_one_tensor_per_step():
    T, shape = 6, (4, 3, 5)
    x = torch.randn(T, *shape, requires_grad=True)
    m = ls.LIF(decay=torch.full((3, 1), 0.5), threshold=torch.rand(3, 5) + 0.5,
               learn_threshold=True, v_reset=torch.zeros(3, 1))
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = m(x)
    assert sum(saved) <= T * x[0].numel(), saved
    y.sum().backward()
    assert m.threshold.grad.shape == (3, 5)


def test_tensor_parameter_neurons_nir_round_trip():
    pytest.importorskip("nir")
    from torch import nn

    from leansnn.layers import TimeFold

    torch.manual_seed(0)
    hard = nn.Sequential(
        TimeFold(nn.Linear(4, 3)),
        ls.LIF(decay=torch.tensor([0.3, 0.6, 0.9]), threshold=torch.tensor([0.2, 0.4, 0.3]),
               v_reset=torch.tensor([0.0, -0.1, 0.05])),
        TimeFold(nn.Linear(3, 5)), ls.IF(threshold=torch.rand(5) + 0.3, reset="hard")).double()
    soft = nn.Sequential(
        TimeFold(nn.Linear(4, 3)),
        ls.IF(threshold=torch.tensor([0.2, 0.4, 0.3]), v_init=torch.tensor([0.1, 0.2, 0.0])),
    ).double()
    x = torch.rand(6, 2, 4, dtype=D)
    for model in (hard, soft):
        back = ls.interop.from_nir(ls.interop.to_nir(model, x), dtype=D)
        with torch.no_grad():
            want = model(x)
            assert 0 < float(want.mean()) < 1
            assert torch.equal(back(x), want)
