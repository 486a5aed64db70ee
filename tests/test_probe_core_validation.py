"""Robustness probes of argument validation (found by an adversarial pass).

Numbers may come as numpy scalars (a sweep over ``np.linspace``, a config read with numpy):
they are accepted where the Python number is, and give the same module. Values of the wrong
kind (a bool, a string, a tensor) and non-finite ones are refused with a ``ValueError`` that
names the argument -- never accepted silently, never a message that says a valid value is
out of range, never an ``AttributeError``/``IndexError`` from deep inside.
"""

import json

import numpy as np
import pytest
import torch

import leansnn as ls

torch.set_num_threads(1)

SURROGATE_PARAMS = [(ls.surrogate.Rectangular, "a"), (ls.surrogate.Sigmoid, "alpha"),
                    (ls.surrogate.ATan, "alpha"), (ls.surrogate.Triangle, "a"),
                    (ls.surrogate.FastSigmoid, "slope")]


@pytest.mark.parametrize("cls, name", SURROGATE_PARAMS)
def test_surrogate_numpy_numbers_are_floats(cls, name):
    for v in (np.float32(0.5), np.float64(0.5), np.int64(2)):
        s = cls(**{name: v})
        assert type(getattr(s, name)) is float and getattr(s, name) == float(v)
        json.dumps(s.to_config())               # configs (checkpoints) stay JSON
        ref = cls(**{name: float(v)})
        u = torch.linspace(-2, 2, 41)
        assert torch.equal(s.derivative(u), ref.derivative(u))


@pytest.mark.parametrize("cls, name", SURROGATE_PARAMS)
@pytest.mark.parametrize("bad", [True, False, "0.5", torch.tensor(0.5), None])
def test_surrogate_wrong_kind_refused(cls, name, bad):
    with pytest.raises(ValueError, match=f"surrogate parameter {name} must be a number"):
        cls(**{name: bad})


@pytest.mark.parametrize("cls, name", SURROGATE_PARAMS)
@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), np.float32("nan")])
def test_surrogate_out_of_range_refused(cls, name, bad):
    with pytest.raises(ValueError, match="finite number > 0"):
        cls(**{name: bad})


def test_asa_numpy_numbers_give_the_same_module():
    x = torch.randn(4, 2, 6, 3, 3)
    torch.manual_seed(0)
    ref = ls.ASA(4, 6, 0.5, 2, temperature=1.0)
    torch.manual_seed(0)
    a = ls.ASA(np.int64(4), np.int32(6), np.float32(0.5), np.int64(2),
               temperature=np.float64(1.0))
    assert (a.T, a.channels, a.reduction) == (4, 6, 2)
    assert all(type(v) is int for v in (a.T, a.channels, a.reduction))
    assert type(a.lam) is float and type(a.temperature) is float
    assert torch.equal(a(x), ref(x))


@pytest.mark.parametrize("kw, needle", [
    ({"T": True}, "T must be a positive int"),
    ({"T": 4.0}, "T must be a positive int"),
    ({"channels": "6"}, "channels must be a positive int"),
    ({"reduction": 0}, "reduction must be a positive int"),
    ({"lam": "0.5"}, "lam must be a number"),
    ({"lam": True}, "lam must be a number"),
    ({"lam": torch.tensor(0.5)}, "lam must be a number"),
    ({"lam": np.float32(1.0)}, "lam must lie strictly between 0 and 1"),
    ({"temperature": float("inf")}, "temperature must be a finite number > 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number > 0"),
    ({"temperature": "1"}, "temperature must be a finite number > 0"),
    ({"temperature": 0}, "temperature must be a finite number > 0"),
])
def test_asa_bad_arguments(kw, needle):
    args = {"T": 4, "channels": 6, **kw}
    with pytest.raises(ValueError, match=needle):
        ls.ASA(**args)


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("shape", [(4, 2, 6, 0, 3), (4, 2, 6, 3, 0), (4, 1, 6, 0, 0)])
def test_asa_empty_spatial_map_refused(impl, shape):
    with pytest.raises(ValueError, match="empty spatial map.*H and W must be >= 1"):
        ls.ASA(4, 6, impl=impl)(torch.randn(shape))


@pytest.mark.parametrize("neuron", [ls.LIF(decay=0.5), ls.IF()])
@pytest.mark.parametrize("bad", [0.0, [0.0, 0.0], np.zeros((2, 3))])
def test_neuron_state_must_be_a_tensor(neuron, bad):
    x = torch.randn(3, 2, 3)
    with pytest.raises(ValueError, match="h0 must be a tensor"):
        neuron(x, h0=bad)
    with pytest.raises(ValueError, match="state must be None .* or the tensor"):
        neuron.step(x[0], bad)
    # the whole (spikes, state) pair of the previous step is the usual slip
    out = neuron.step(x[0])
    with pytest.raises(ValueError, match="got SpikesAndState"):
        neuron.step(x[1], out)
    assert torch.equal(neuron.step(x[1], out.state).spikes,
                       neuron(x[:2])[1])


@pytest.mark.parametrize("name", ["decay", "threshold", "v_reset", "v_init", "gain", "tau"])
def test_neuron_numpy_numbers_give_the_same_neuron(name):
    value = {"decay": 0.25, "threshold": 0.5, "v_reset": -0.25, "v_init": 0.125, "gain": 2.0,
             "tau": 4.0}[name]
    kw = {} if name == "tau" else {"decay": 0.5}
    x = torch.randn(5, 2, 3)
    ref = ls.LIF(**{**kw, name: value})
    for v in (np.float32(value), np.float64(value)):
        lif = ls.LIF(**{**kw, name: v})
        json.dumps(lif.to_config())
        assert torch.equal(lif(x), ref(x))
    for bad in (True, "0.5", None if name not in ("decay", "tau") else [0.5]):
        if bad is None:
            continue
        with pytest.raises(ValueError, match=f"{name} must be a number or a tensor"):
            ls.LIF(**{**kw, name: bad})


def test_lif_params_take_numpy_numbers():
    p = ls.neuron.LIFParams(decay=np.float32(0.5), gain=np.int64(1), threshold=np.float64(1.0),
                            v_reset=np.float32(0.0))
    assert p.decay == 0.5
    with pytest.raises(ValueError, match="decay must lie in"):
        ls.neuron.LIFParams(decay=np.float32(1.5), gain=1.0, threshold=1.0)
