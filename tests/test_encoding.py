"""Input encoders: shapes [T, B, ...], stated formulas, seeding, the module form."""

import math

import pytest
import torch

import leansnn as ls
from leansnn import encoding as enc


def test_direct_is_a_view_repeated_over_time():
    x = torch.rand(3, 1, 4, 4)
    d = enc.direct(x, 5)
    assert d.shape == (5, 3, 1, 4, 4) and d.data_ptr() == x.data_ptr()
    assert torch.equal(d[4], x)
    assert ls.encoding is enc


def test_rate_is_bernoulli_with_the_stated_probability_and_seeded():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.7]).repeat(4000, 1)
    s = enc.rate(x, 8, seed=1)
    assert s.shape == (8, 4000, 5) and set(s.unique().tolist()) <= {0.0, 1.0}
    p = s.mean((0, 1))
    assert p[0] == 0 and p[3] == 1 and p[4] == 1
    assert p[1].item() == pytest.approx(0.25, abs=0.01)
    assert p[2].item() == pytest.approx(0.5, abs=0.01)
    assert torch.equal(s, enc.rate(x, 8, seed=1))
    assert not torch.equal(s, enc.rate(x, 8, seed=2))
    g = torch.Generator().manual_seed(1)
    assert torch.equal(s, enc.rate(x, 8, generator=g))
    assert enc.rate(x, 8, gain=0.5, seed=0).mean((0, 1))[2].item() == pytest.approx(0.25,
                                                                                     abs=0.01)
    with pytest.raises(ValueError, match="either seed or generator"):
        enc.rate(x, 2, seed=0, generator=g)


@pytest.mark.parametrize("method", ["linear", "log"])
def test_latency_one_spike_brighter_earlier(method):
    x = torch.tensor([[1.0, 0.8, 0.5, 0.1, 0.01, 0.005, 0.0]])
    s = enc.latency(x, 10, method=method, threshold=0.01)
    assert s.shape == (10, 1, 7)
    counts = s.sum(0)[0].tolist()
    assert counts == [1, 1, 1, 1, 1, 0, 0]  # below the threshold: silent
    t = s[:, 0, :5].argmax(0).tolist()
    assert t[0] == 0 and t[4] == 9 and t == sorted(t)
    frac = ((1 - 0.5) / 0.99 if method == "linear" else math.log(0.5) / math.log(0.01))
    assert t[2] == round(frac * 9)


def test_encode_and_module():
    x = torch.rand(2, 3)
    assert torch.equal(enc.encode(x, 4, "direct"), enc.direct(x, 4))
    assert torch.equal(enc.encode(x, 4, "latency", method="log"),
                       enc.latency(x, 4, method="log"))
    with pytest.raises(ValueError, match="unknown encoding"):
        enc.encode(x, 4, "poisson2")
    with pytest.raises(ValueError, match="T must be"):
        enc.direct(x, 0)
    m = enc.Encoder("rate", T=3, seed=7, static_dims=2)
    a, b = m(x), m(x)
    assert a.shape == (3, 2, 3) and not torch.equal(a, b)  # fresh draws within a run
    m2 = enc.Encoder("rate", T=3, seed=7, static_dims=2)
    assert torch.equal(m2(x), a)                            # the same run again
    seq = torch.rand(3, 2, 3)
    assert m(seq) is seq                                    # already a sequence
    assert "rate" in repr(m)


def test_encoded_input_drives_a_model():
    net = ls.models.create("lif_cnn", T=4, width=4)
    x = torch.rand(2, 1, 28, 28)
    for how in enc.ENCODINGS:
        y = net(enc.encode(x, 4, how))
        assert y.shape == (4, 2, 10)
