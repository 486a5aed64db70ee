"""NIR export as a table from module type to handler, extensible by users
(``ls.interop.register_nir_handler``): a neuron type of the user's own, inheritance along the
MRO (only for subclasses that keep the parent's ``forward``), the error for an unregistered
type, a handler that recurses into children, and the public ``input_is_static``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.layers import TimeFold

nir = pytest.importorskip("nir")
from test_nir import simulate_nir  # noqa: E402  (the independent NIR step simulator)

from leansnn.interop import (  # noqa: E402
    NIRExportError,
    find_nir_handler,
    from_nir,
    input_is_static,
    register_nir_handler,
    to_nir,
    unregister_nir_handler,
)


class CountingIF(ls.SpikingNeuron):
    """A user's own neuron with its own loop: integrate, fire at ``v >= threshold``, reset
    to 0. (Not an ``ls.IF``: leansnn knows nothing about it.)"""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, out = torch.zeros_like(x[0]), []
        for t in range(x.shape[0]):
            v = v + x[t]
            s = (v >= self.threshold).to(x.dtype)
            v = v * (1 - s)
            out.append(s)
        return torch.stack(out)


def export_counting_if(ctx, m, name, signal):
    """``v[t] = v[t-1] + x[t]`` is NIR's IF with ``r = 1/dt``."""
    node = ctx.nir.IF(r=ctx.full(1.0 / ctx.dt, signal),
                      v_threshold=ctx.full(m.threshold, signal),
                      v_reset=ctx.full(0.0, signal))
    return ctx.add(name, node, signal)


@pytest.fixture
def counting_if_handler():
    register_nir_handler(CountingIF)(export_counting_if)
    yield export_counting_if
    unregister_nir_handler(CountingIF)


def _net(neuron: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(TimeFold(nn.Conv2d(2, 3, 3, padding=1)), neuron,
                         TimeFold(nn.Flatten(), nn.Linear(3 * 36, 4)),
                         ls.LIF(decay=0.5, threshold=0.05)).double().eval()


def test_user_neuron_type_exports_through_its_registered_handler(counting_if_handler, tmp_path):
    model = _net(CountingIF(threshold=0.7))
    x = torch.rand(6, 3, 2, 6, 6, dtype=torch.float64) * 2
    with torch.no_grad():
        ref = model(x)
        assert 0.02 < float(model[:2](x).mean()) < 0.98  # the user's neurons fire, not always
    assert 0.02 < float(ref.mean()) < 0.98
    g = to_nir(model, x)
    assert isinstance(g.nodes["1"], nir.IF) and np.allclose(g.nodes["1"].v_threshold, 0.7)
    nir.write(tmp_path / "user.nir", g)
    g = nir.read(tmp_path / "user.nir")
    assert torch.equal(simulate_nir(g, x), ref)  # means, under NIR, what the model computes
    with torch.no_grad():
        assert torch.equal(from_nir(g, dtype=torch.float64)(x), ref)


def test_unregistered_type_error_names_it_and_says_how_to_register():
    model = _net(CountingIF(threshold=0.7))
    with pytest.raises(NIRExportError) as ei:
        to_nir(model, torch.rand(2, 1, 2, 6, 6, dtype=torch.float64))
    (name, why), = ei.value.layers
    assert name == "1"
    assert "CountingIF" in why and "register_nir_handler(CountingIF)" in why


def test_untraceable_module_error_says_how_to_register():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: fx cannot trace

    with pytest.raises(NIRExportError, match=r"register_nir_handler\(Branchy\)"):
        to_nir(nn.Sequential(Branchy(), ls.LIF()), torch.rand(2, 1, 3))


def test_subclass_keeping_forward_inherits_subclass_with_own_forward_is_refused():
    class LoudLIF(ls.LIF):  # same dynamics, spikes of amplitude 2: inherits LIF's handler
        @property
        def spike_amplitude(self) -> float:
            return 2.0

    class OddLIF(ls.LIF):  # its own forward: not exported as a LIF
        def forward(self, x):
            return super().forward(x * 2)

    assert find_nir_handler(LoudLIF) is find_nir_handler(ls.LIF) is not None
    assert find_nir_handler(OddLIF) is None
    model = nn.Sequential(TimeFold(nn.Linear(3, 4)), LoudLIF(decay=0.5, threshold=0.4),
                          nn.Linear(4, 2), ls.IF(threshold=0.9, reset="hard")).double()
    x = torch.rand(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
    g = to_nir(model, x)
    assert isinstance(g.nodes["1"], nir.LIF) and np.allclose(g.nodes["1.amplitude"].scale, 2.0)
    assert torch.equal(simulate_nir(g, x), ref)
    with pytest.raises(NIRExportError) as ei:
        to_nir(nn.Sequential(OddLIF(decay=0.5)), x)
    (name, why), = ei.value.layers
    assert name == "0" and "OddLIF" in why and "own forward" in why
    assert "register_nir_handler(OddLIF)" in why


def test_handler_can_recurse_into_children_and_reuse_builtin_handlers():
    class Stage(nn.Module):
        """Untraceable container (a Python loop over a list attribute)."""

        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList([TimeFold(nn.Conv2d(2, 2, 3, padding=1)) for _ in range(2)])
            self.lifs = nn.ModuleList([ls.LIF(decay=0.5, threshold=0.3) for _ in range(2)])

        def forward(self, x):
            for conv, lif in zip(self.convs, self.lifs):
                x = lif(conv(x))
            return x

    class OwnLIF(ls.LIF):  # its own forward, but the same dynamics: reuse LIF's handler
        def forward(self, x):
            return super().forward(x)

    @register_nir_handler(Stage)
    def export_stage(ctx, m, name, signal):
        for i, (conv, lif) in enumerate(zip(m.convs, m.lifs)):
            signal = ctx.walk(conv, ctx.join(name, f"convs.{i}"), signal)
            signal = ctx.walk(lif, ctx.join(name, f"lifs.{i}"), signal)
        return signal

    register_nir_handler(OwnLIF)(find_nir_handler(ls.LIF))
    try:
        torch.manual_seed(1)
        model = nn.Sequential(Stage(), OwnLIF(decay=0.5, threshold=0.2)).double()
        x = torch.rand(4, 2, 2, 5, 5, dtype=torch.float64) * 2
        g = to_nir(model, x)
        assert [k for k in g.nodes if k not in ("input", "output")] == [
            "0.convs.0.layer", "0.lifs.0", "0.convs.1.layer", "0.lifs.1", "1"]
        with torch.no_grad():
            assert torch.equal(simulate_nir(g, x), model(x))
    finally:
        unregister_nir_handler(Stage)
        unregister_nir_handler(OwnLIF)


def test_registration_rules():
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_nir_handler(int)
    with pytest.raises(ValueError, match="already has a NIR handler.*replace=True"):
        register_nir_handler(ls.LIF)(export_counting_if)
    old = find_nir_handler(ls.LIF)
    try:  # replace=True overrides a built-in handler
        register_nir_handler(ls.LIF, replace=True)(
            lambda ctx, m, name, sig: ctx.refuse(name, "no LIFs today", sig))
        with pytest.raises(NIRExportError, match="no LIFs today"):
            to_nir(nn.Sequential(ls.LIF()), torch.rand(2, 1, 3))
    finally:
        register_nir_handler(ls.LIF, replace=True)(old)
    assert find_nir_handler(ls.LIF) is old


def test_handler_must_return_a_signal():
    class Odd(ls.SpikingNeuron):
        def forward(self, x):
            return x

    register_nir_handler(Odd)(lambda ctx, m, name, sig: None)
    try:
        with pytest.raises(TypeError, match="Odd.*NIRSignal"):
            to_nir(nn.Sequential(Odd()), torch.rand(2, 1, 3))
    finally:
        unregister_nir_handler(Odd)


def test_input_is_static_is_public():
    lif_cnn = ls.models.create("lif_cnn", T=2, width=2)
    assert input_is_static(lif_cnn, torch.rand(1, 1, 28, 28))
    assert not input_is_static(lif_cnn, torch.rand(2, 1, 1, 28, 28))
    assert not input_is_static(nn.Sequential(ls.LIF()), torch.rand(2, 1, 3))
    back = from_nir(to_nir(nn.Sequential(TimeFold(nn.Linear(3, 2)), ls.LIF()),
                           torch.rand(2, 1, 3)), T=2)
    assert input_is_static(back, torch.rand(1, 3)) and not input_is_static(back,
                                                                           torch.rand(2, 1, 3))
