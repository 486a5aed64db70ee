"""Tensor-valued neuron parameters: fused vs reference (float64), golden traces, validation."""

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
D = torch.float64


def _param_shape(kind: str, step: tuple[int, ...]) -> tuple[int, ...] | None:
    """Shape of a parameter for a step shape ``[B, C, ...]``: scalar, per channel, per neuron."""
    if kind == "float":
        return None
    if kind == "scalar":
        return ()
    if kind == "channel":
        return (step[1],) + (1,) * (len(step) - 2)
    return tuple(step[1:])  # per neuron


def _make(kind, step, lo, hi, g, learn):
    shape = _param_shape(kind, step)
    if shape is None:
        return float(lo + (hi - lo) * 0.5)
    t = (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=D))
    return t.requires_grad_(learn)


def _run(fn, x, p, h0, sg, reset, detach, seed):
    S, U, H = fn(x, decay=p["decay"], gain=p["gain"], threshold=p["threshold"],
                 v_reset=p["v_reset"], v_init=p["v_init"], surrogate=sg, reset=reset,
                 detach_reset=detach, h0=h0)
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (S, U, H)]
    loss = (S * w[0]).sum() + (U * w[1]).sum() + (H * w[2]).sum()
    inputs = [x] + [v for v in p.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    if h0 is not None:
        inputs.append(h0)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)  # v_reset unused by soft reset
    return S, U, H, [torch.zeros_like(i) if g is None else g for g, i in zip(grads, inputs)]


KINDS = ["float", "scalar", "channel", "neuron"]


@settings(max_examples=80, deadline=None)
@given(
    T=st.integers(1, 6),
    step=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    kinds=st.fixed_dictionaries({k: st.sampled_from(KINDS) for k in
                                 ("decay", "gain", "threshold", "v_reset", "v_init")}),
    learn=st.booleans(),
    reset=st.sampled_from(["hard", "soft"]),
    sg_i=st.integers(0, len(SURROGATES) - 1),
    detach=st.booleans(),
    use_h0=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fused_matches_reference_tensor_params(T, step, kinds, learn, reset, sg_i, detach,
                                               use_h0, seed):
    g = torch.Generator().manual_seed(seed)
    step = tuple(step)
    x = (torch.randn(T, *step, generator=g, dtype=D) * 0.8 + 0.4).requires_grad_()
    ranges = {"decay": (0.2, 0.9), "gain": (0.5, 1.5), "threshold": (0.3, 0.9),
              "v_reset": (-0.3, 0.1), "v_init": (-0.2, 0.4)}
    p = {k: _make(kinds[k], step, *ranges[k], g, learn) for k in ranges}
    h0 = torch.randn(*step, generator=g, dtype=D, requires_grad=True) if use_h0 else None
    sg = SURROGATES[sg_i]
    a = _run(lif_reference, x, p, h0, sg, reset, detach, seed)
    b = _run(lif_fused, x, p, h0, sg, reset, detach, seed)
    assert torch.equal(a[0], b[0]), "spikes differ"
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(a[2], b[2], rtol=0, atol=1e-12)
    assert len(a[3]) == len(b[3])
    for ga, gb in zip(a[3], b[3]):
        assert ga.shape == gb.shape
        torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("tau_mode", [True, False])
@pytest.mark.parametrize("shape", [(), (3, 1, 1), (3, 2, 2)], ids=["scalar", "channel", "neuron"])
def test_module_learnable_tensor_params_match(reset, detach, tau_mode, shape):
    """Learnable per-channel / per-neuron decay (PLIF) and threshold: module grads agree."""
    torch.manual_seed(1)
    x = torch.randn(5, 2, 3, 2, 2, dtype=D) + 0.5
    thr = torch.full(shape, 0.6, dtype=D) + 0.1 * torch.rand(shape, dtype=D)
    dec = torch.full(shape, 0.4, dtype=D) + 0.2 * torch.rand(shape, dtype=D)
    vr = torch.linspace(-0.2, 0.0, 3, dtype=D).view(3, 1, 1)
    grads = []
    for impl in ("reference", "fused"):
        kw = {"tau": 1.0 / (1.0 - dec)} if tau_mode else {"decay": dec}
        m = ls.LIF(threshold=thr, reset=reset, v_reset=vr, detach_reset=detach,
                   learn_decay=True, learn_threshold=True, impl=impl, **kw).double()
        xx = x.clone().requires_grad_()
        s, u = m(xx, return_potential=True)
        (s.sum() * 0.3 + (u * u).sum()).backward()
        assert m.decay_logit.shape == shape and m.threshold.shape == shape
        grads.append([xx.grad, m.decay_logit.grad, m.threshold.grad])
    for ga, gb in zip(*grads):
        assert ga is not None and gb is not None and ga.shape == gb.shape
        torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-9)
    assert float(grads[1][1].abs().sum()) > 0 and float(grads[1][2].abs().sum()) > 0


# -- golden values ------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_per_channel_threshold_golden(impl):
    # two channels, thresholds 1 and 0.5, decay 0.5, hard reset; input 0.375 every step
    # channel 0: u = .375, .5625, .65625, .703125, ...  never reaches 1
    # channel 1: u = .375, .5625 (fire), .375, .5625 (fire)
    th = torch.tensor([1.0, 0.5], dtype=D).view(2, 1, 1)
    lif = ls.LIF(decay=0.5, threshold=th, reset="hard", impl=impl)
    x = torch.full((4, 1, 2, 1, 1), 0.375, dtype=D)
    s, u = lif(x, return_potential=True)
    assert u[:, 0, 0].flatten().tolist() == [0.375, 0.5625, 0.65625, 0.703125]
    assert s[:, 0, 0].flatten().tolist() == [0, 0, 0, 0]
    assert u[:, 0, 1].flatten().tolist() == [0.375, 0.5625, 0.375, 0.5625]
    assert s[:, 0, 1].flatten().tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_per_neuron_soft_reset_golden(impl):
    # IF, soft reset, per-neuron thresholds [1, 0.25] and v_init [0.5, 0], input 0.375
    # neuron 0: u = .875, 1.25 (fire) -> .25, .625, 1.0 (fire)
    # neuron 1: u = .375 (fire) -> .125, .5 (fire) -> .25 (fire) -> 0, .375 (fire)
    iff = ls.IF(threshold=torch.tensor([1.0, 0.25], dtype=D), reset="soft",
                v_init=torch.tensor([0.5, 0.0], dtype=D), impl=impl)
    x = torch.full((4, 1, 2), 0.375, dtype=D)
    s, u = iff(x, return_potential=True)
    assert u[:, 0, 0].tolist() == [0.875, 1.25, 0.625, 1.0]
    assert s[:, 0, 0].tolist() == [0, 1, 0, 1]
    assert u[:, 0, 1].tolist() == [0.375, 0.5, 0.625, 0.75]
    assert s[:, 0, 1].tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_per_channel_decay_and_v_reset_golden(impl):
    # decays [0.5, 1], v_reset [0, -0.5], threshold 1, hard reset, input 0.75
    # ch 0: u = .75, 1.125 (fire, h=0), .75, 1.125 (fire)
    # ch 1: u = .75, 1.5 (fire, h=-.5), .25, 1.0 (fire)
    lif = ls.LIF(decay=torch.tensor([0.5, 1.0], dtype=D), threshold=1.0, reset="hard",
                 v_reset=torch.tensor([0.0, -0.5], dtype=D), impl=impl)
    s, u = lif(torch.full((4, 1, 2), 0.75, dtype=D), return_potential=True)
    assert u[:, 0, 0].tolist() == [0.75, 1.125, 0.75, 1.125]
    assert u[:, 0, 1].tolist() == [0.75, 1.5, 0.25, 1.0]
    assert s[:, 0].tolist() == [[0, 0], [1, 1], [0, 0], [1, 1]]


# -- validation -----------------------------------------------------------------------------------
def test_shape_mismatch_names_parameter_and_shapes():
    lif = ls.LIF(decay=0.5, threshold=torch.ones(4, 1, 1))
    with pytest.raises(ValueError, match=r"threshold of shape \(4, 1, 1\).*\(2, 3, 5, 5\)"):
        lif(torch.rand(6, 2, 3, 5, 5))
    with pytest.raises(ValueError, match="decay of shape"):
        lif_fused(torch.rand(3, 2, 5), decay=torch.full((4,), 0.5), threshold=1.0,
                  surrogate=ls.surrogate.ATan())
    with pytest.raises(ValueError, match="v_init of shape"):
        lif_reference(torch.rand(3, 2, 5), decay=0.5, threshold=1.0, v_init=torch.zeros(2, 1, 5),
                      surrogate=ls.surrogate.ATan())


@pytest.mark.parametrize("kw, msg", [
    (dict(threshold=torch.tensor([1.0, 0.0])), "threshold must be > 0"),
    (dict(threshold=torch.tensor([1.0, float("nan")])), "threshold must be finite"),
    (dict(decay=torch.tensor([0.5, 1.5])), r"decay must lie in \[0, 1\]"),
    (dict(decay=torch.tensor([0.5, -0.1])), r"decay must lie in \[0, 1\]"),
    (dict(tau=torch.tensor([2.0, 0.5])), "tau must be >= 1"),
    (dict(v_reset=torch.tensor([0.0, float("inf")])), "v_reset must be finite"),
    (dict(threshold=-1.0), "threshold must be > 0"),
    (dict(decay=torch.tensor([0.5, 1.0]), learn_decay=True), r"learn_decay needs 0 < decay < 1"),
])
def test_value_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ls.LIF(**kw)


def test_tensor_params_are_buffers_move_and_save():
    th = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1)
    lif = ls.LIF(decay=torch.full((3, 1, 1), 0.25), threshold=th, v_reset=-0.1)
    keys = set(lif.state_dict())
    assert {"threshold", "fixed_decay"} <= keys
    d = lif.double()
    assert d.threshold.dtype == D and d.decay.dtype == D
    lif2 = ls.LIF(**lif.to_config())
    lif2.load_state_dict(lif.state_dict())
    x = torch.rand(4, 2, 3, 2, 2, dtype=D) * 2
    assert torch.equal(lif2.double()(x), d(x))
    # learnable tensors are parameters of the given shape
    m = ls.LIF(tau=torch.full((5,), 2.0), learn_decay=True, learn_threshold=True)
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == {
        "decay_logit": (5,), "threshold": ()}
    m2 = ls.LIF(threshold=torch.ones(5), learn_threshold=True)
    assert tuple(m2.threshold.shape) == (5,) and isinstance(m2.threshold, torch.nn.Parameter)


def test_config_round_trip_scalar_and_tensor():
    cases = [
        ls.LIF(decay=0.3, threshold=0.3, reset="hard"),
        ls.LIF(tau=2.5, threshold=1.0, reset="soft", learn_decay=True),
        ls.IF(threshold=torch.tensor([1.0, 2.0]), v_init=0.5),
        ls.LIF(decay=0.5, gain=0.25, threshold=torch.ones(2), v_reset=torch.tensor([0.0, -1.0])),
        ls.LIF(tau=torch.tensor([2.0, 4.0]), threshold=torch.tensor([1.0, 2.0]),
               learn_threshold=True),
    ]
    x = torch.rand(5, 3, 2) * 2
    for m in cases:
        cfg = m.to_config()
        back = type(m)(**cfg)
        back.load_state_dict(m.state_dict())
        assert back.to_config() == cfg
        assert torch.equal(back(x), m(x))
