"""QCFS activation: formula, straight-through gradients, configuration."""

import pytest
import torch

import leansnn as ls
from leansnn.convert import QCFS, floor_ste, qcfs


def test_formula_matches_paper():
    # a(z) = theta/L * clip(floor((z L + theta/2) / theta), 0, L)
    torch.manual_seed(0)
    z = torch.randn(1000, dtype=torch.float64) * 3
    for L, th in ((1, 1.0), (4, 2.5), (8, 0.7)):
        want = th / L * torch.clamp(torch.floor((z * L + th / 2) / th), 0, L)
        got = qcfs(z, th, L)
        assert torch.allclose(got, want, atol=1e-12)


def test_golden_values():
    act = QCFS(levels=4, threshold=2.0)
    z = torch.tensor([-1.0, 0.0, 0.24, 0.26, 1.0, 1.9, 2.0, 5.0])
    # theta/L = 0.5; steps at 0.25, 0.75, 1.25, 1.75
    assert act(z).tolist() == [0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_straight_through_gradients():
    act = QCFS(levels=4, threshold=2.0)
    z = torch.tensor([-1.0, 0.3, 1.1, 3.0], requires_grad=True)
    act(z).sum().backward()
    # inside [0, theta] the floor passes the gradient through: d/dz = 1; outside 0
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert act.threshold.grad is not None and float(act.threshold.grad) != 0.0
    x = torch.tensor([0.3, 1.7], requires_grad=True)
    floor_ste(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_threshold_learns():
    torch.manual_seed(0)
    act = QCFS(levels=4, threshold=1.0)
    opt = torch.optim.SGD(act.parameters(), lr=0.1)
    z = torch.rand(256) * 4  # targets need a larger threshold
    for _ in range(50):
        loss = (act(z) - z.clamp(max=3.0)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert act.theta > 2.0


def test_config_roundtrip_and_validation():
    act = ls.QCFS(levels=8, threshold=3.0)
    again = QCFS(**act.to_config())
    assert again.levels == 8 and again.theta == 3.0
    c = act.clone()
    assert c.threshold is not act.threshold
    fixed = QCFS(levels=2, threshold=1.0, learn_threshold=False)
    assert not list(fixed.parameters()) and "threshold" in fixed.state_dict()
    for bad in (dict(levels=0), dict(levels=2.5), dict(threshold=0.0),
                dict(threshold=float("nan"))):
        with pytest.raises(ValueError):
            QCFS(**bad)


def test_spike_count_is_the_one_formula_of_qcfs_parallel_neurons_and_da_qcfs():
    from leansnn.activations import spike_count
    from leansnn.convert import ParallelIF
    from leansnn.convert.daqcfs import DAQCFS

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, generator=g) * 3
    th = torch.tensor(1.7)
    # golden: n = clip(floor((T z + psi) / theta), 0, T), offset psi/theta = 1/2 by default
    assert spike_count(torch.tensor([-1.0, 0.0, 0.2, 0.22, 0.9, 5.0]), th, 4).tolist() == [
        0.0, 0.0, 0.0, 1.0, 2.0, 4.0]
    # QCFS at L = T and the parallel neuron without shift share the very arithmetic
    for T in (1, 3, 8):
        n = spike_count(z, th, T)
        assert torch.equal(qcfs(z, th, T), n * (th / T))
        assert torch.equal(ParallelIF(T, th).counts(z), n)
        # with an explicit shift: the neuron and DA-QCFS agree bit for bit
        shift = torch.tensor(0.3)
        q = DAQCFS(T, th)
        q.shift.fill_(0.3)
        assert torch.equal(ParallelIF(T, th, shift=shift).counts(z),
                           spike_count(z, th, T, shift / th))
        assert torch.equal(q(z), spike_count(z, th, T, shift / th) * (th / T))
    # ste=True: same values, identity gradient through the floor (inside the clip)
    x = torch.tensor([0.3, 0.9, 5.0], requires_grad=True)
    n = spike_count(x, th, 4, 0.5, ste=True)
    assert n.tolist() == spike_count(x.detach(), th, 4, 0.5).tolist()
    n.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([4 / 1.7, 4 / 1.7, 0.0]))
