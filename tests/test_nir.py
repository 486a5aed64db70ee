"""NIR interchange: round trips leansnn -> NIR -> file -> NIR -> leansnn, the NIR meaning of
exported graphs (checked by an independent step simulator of the NIR equations), a graph
built the way snnTorch documents its export, refusals, and the ``export`` command."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leansnn as ls
from leansnn.layers import StaticStem, TimeFold

nir = pytest.importorskip("nir")
from leansnn.interop import NIRExportError, from_nir, to_nir  # noqa: E402

DT = 1e-4


# ---------------------------------------------------------------------------------------------
# An independent reference: forward-Euler step simulation straight from the NIR equations
# (docs/nir.md). Written from the NIR node docstrings, sharing no code with leansnn.interop.
# An edge whose source comes later in the evaluation order (a recurrent edge) carries the
# source's value from the previous step, zero at the first step.
# ---------------------------------------------------------------------------------------------
def _order(graph) -> list[str]:
    preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    start = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    order, seen, onstack = [], set(), set()

    def visit(n):  # reverse post-order DFS from the input; back edges are the recurrent ones
        seen.add(n)
        onstack.add(n)
        for a, b in graph.edges:
            if a == n and b not in seen:
                visit(b)
        onstack.discard(n)
        order.append(n)

    for s in start:
        visit(s)
    del preds
    return order[::-1]


def _sim_step(graph, x: torch.Tensor, state: dict, dt: float) -> torch.Tensor:
    order = state.setdefault("__order__", _order(graph))
    prev = state.setdefault("__prev__", {})
    cur: dict[str, torch.Tensor] = {}

    def inp(n):
        vals = [cur[a] if a in cur else prev.get(a) for a, b in graph.edges if b == n]
        vals = [v for v in vals if v is not None]
        return sum(vals[1:], vals[0]) if vals else None

    def arr(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    out = None
    for n in order:
        node = graph.nodes[n]
        if isinstance(node, nir.Input):
            cur[n] = x
            continue
        i = inp(n)
        if i is None:  # only recurrent inputs, nothing yet: a zero of the right shape
            i = torch.zeros(x.shape[0], *np.asarray(node.input_type["input"]).astype(int),
                            dtype=torch.float64)
        if isinstance(node, nir.Output):
            out = cur[n] = i
        elif isinstance(node, nir.Affine):
            cur[n] = i @ arr(node.weight).T + arr(node.bias)
        elif isinstance(node, nir.Linear):
            cur[n] = i @ arr(node.weight).T
        elif isinstance(node, nir.Conv2d):
            cur[n] = F.conv2d(i, arr(node.weight), arr(node.bias), tuple(node.stride),
                              tuple(node.padding), tuple(node.dilation), int(node.groups))
        elif isinstance(node, nir.AvgPool2d):
            cur[n] = F.avg_pool2d(i, tuple(node.kernel_size), tuple(node.stride),
                                  tuple(node.padding))
        elif isinstance(node, nir.Flatten):
            end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
            cur[n] = torch.flatten(i, node.start_dim + 1, end)
        elif isinstance(node, nir.Scale):
            cur[n] = i * arr(node.scale)
        elif isinstance(node, nir.Threshold):
            cur[n] = (i > arr(node.threshold)).double()
        elif isinstance(node, (nir.LIF, nir.IF, nir.I, nir.LI)):
            v = state.get(n, torch.zeros_like(i))
            if isinstance(node, (nir.LIF, nir.LI)):
                v = v + dt / arr(node.tau) * (arr(node.v_leak) - v + arr(node.r) * i)
            else:
                v = v + dt * arr(node.r) * i
            if isinstance(node, (nir.LIF, nir.IF)):
                z = (v > arr(node.v_threshold)).double()
                v = torch.where(z > 0, arr(node.v_reset).expand_as(v), v)
                cur[n] = z
            else:
                cur[n] = v
            state[n] = v
        elif isinstance(node, nir.NIRGraph):
            cur[n] = _sim_step(node, i, state.setdefault(n, {}), dt)
        else:
            raise NotImplementedError(type(node).__name__)
    state["__prev__"] = cur
    return out


def simulate_nir(graph, x: torch.Tensor, dt: float = DT) -> torch.Tensor:
    """Run a NIR graph over ``x`` ``[T, B, ...]`` (float64) step by step; ``[T, B, ...]`` out."""
    state: dict = {}
    return torch.stack([_sim_step(graph, x[t].double(), state, dt) for t in range(x.shape[0])])


# ---------------------------------------------------------------------------------------------
# Models covering each supported layer type (all in float64, so folding BatchNorm into the
# weights cannot flip a spike through float rounding).
# ---------------------------------------------------------------------------------------------
def _bn(c: int, dim: int = 2):
    bn = nn.BatchNorm2d(c) if dim == 2 else nn.BatchNorm1d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return bn


class Residual(nn.Module):
    """SEW-style block: ``lif2(conv2(lif1(conv1(x))) + x)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = TimeFold(nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c))
        self.lif1 = ls.LIF(decay=0.3, threshold=0.3)
        self.conv2 = TimeFold(nn.Conv2d(c, c, 3, padding=1))
        self.lif2 = ls.LIF(tau=2.0, threshold=0.5)

    def forward(self, x):
        return self.lif2(self.conv2(self.lif1(self.conv1(x))) + x)


class FlattenHead(nn.Module):
    """A time-major ``torch.flatten(x, 2)`` call followed by a linear layer."""

    def __init__(self, n: int, k: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n, k)
        self.lif = ls.IF(threshold=0.6, reset="hard")

    def forward(self, x):
        return self.lif(self.fc(torch.flatten(x, 2)))


class ViewFlatten(nn.Module):
    """The VGG idiom ``x.view(x.size(0), -1)`` (per time step, inside ``TimeFold``)."""

    def forward(self, x):
        return x.view(x.size(0), -1)


def _conv_in():
    return (2, 6, 6)


CASES = {
    "conv_bias_lif_decay": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 3, 3, padding=1)), ls.LIF(decay=0.5, threshold=0.4)),
    "conv_nobias_stride_if_hard": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 3, 3, stride=2, bias=False)), ls.IF(threshold=0.5, reset="hard")),
    "linear_bias_lif_tau": lambda: nn.Sequential(
        TimeFold(nn.Flatten()), nn.Linear(72, 7), ls.LIF(tau=2.0, threshold=0.3)),
    "linear_nobias_lif_v_reset": lambda: nn.Sequential(
        TimeFold(nn.Flatten(), nn.Linear(72, 7, bias=False)),
        ls.LIF(decay=0.3, threshold=0.3, v_reset=-0.2)),
    "conv_batchnorm": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 4, 3, padding=1), _bn(4)), ls.LIF(decay=0.3, threshold=0.3)),
    "linear_batchnorm": lambda: nn.Sequential(
        TimeFold(nn.Flatten(), nn.Linear(72, 6), _bn(6, 1)), ls.LIF(decay=0.3, threshold=0.3)),
    "avgpool_flatten": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 3, 3, padding=1)), ls.LIF(decay=0.5, threshold=0.3),
        TimeFold(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 5)),
        ls.LIF(decay=0.5, threshold=0.2)),
    "residual_add": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 3, 3, padding=1)), ls.LIF(decay=0.3, threshold=0.3), Residual(3)),
    "flatten_function": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 3, 3, padding=1, bias=False)), ls.LIF(decay=0.4, threshold=0.3),
        FlattenHead(108, 4)),
    "view_flatten": lambda: nn.Sequential(
        TimeFold(nn.Conv2d(2, 2, 3, stride=2), ViewFlatten(), nn.Linear(8, 5)),
        ls.LIF(decay=0.5, threshold=0.2)),
    "static_stem_sequence_input": lambda: nn.Sequential(
        StaticStem(nn.Conv2d(2, 3, 3, padding=1, bias=False), _bn(3), T=6),
        ls.LIF(decay=0.5, threshold=0.3)),
    "if_soft_serial": lambda: nn.Sequential(  # serial-IF conversion neurons: v_init = theta/2
        TimeFold(nn.Conv2d(2, 3, 3, padding=1)), ls.IF(threshold=0.8, reset="soft", v_init=0.4),
        TimeFold(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 5)),
        ls.IF(threshold=0.5, reset="soft", v_init=0.25)),
}


def _run_case(name: str):
    torch.manual_seed(sum(map(ord, name)))
    model = CASES[name]().double().eval()
    x = torch.rand(6, 3, *_conv_in(), dtype=torch.float64) * 2.0
    return model, x


@pytest.mark.parametrize("case", sorted(CASES))
def test_nir_roundtrip_identical_spikes(case, tmp_path):
    """leansnn -> NIR -> file -> NIR -> leansnn gives identical spikes over T steps."""
    model, x = _run_case(case)
    with torch.no_grad():
        ref = model(x)
    rate = float(ref.mean())
    assert 0.02 < rate < 0.98, f"test input gives a degenerate spike rate {rate}"
    graph = to_nir(model, x)
    path = tmp_path / f"{case}.nir"
    nir.write(path, graph)
    back = from_nir(nir.read(path), dtype=torch.float64)
    with torch.no_grad():
        out = back(x)
    assert out.shape == ref.shape
    assert torch.equal(out, ref)
    # and straight from the path
    with torch.no_grad():
        assert torch.equal(from_nir(path, dtype=torch.float64)(x), ref)


@pytest.mark.parametrize("case", sorted(CASES))
def test_nir_export_means_the_same_under_nir_semantics(case, tmp_path):
    """The written graph, run by an independent Euler simulator of the NIR equations,
    spikes exactly as the leansnn model does."""
    model, x = _run_case(case)
    ref = model(x).detach()
    path = tmp_path / "g.nir"
    nir.write(path, to_nir(model, x, dt=DT))
    sim = simulate_nir(nir.read(path), x, dt=DT)
    assert torch.equal(sim, ref)


def test_nir_semantics_tau_lif_under_no_grad():
    """Regression: the fused LIF's single-buffer path (no autograd, potential unobserved) with
    gain != 1 used to overwrite h before reading it; the NIR simulator caught it."""
    model, x = _run_case("linear_bias_lif_tau")
    with torch.no_grad():
        ref = model(x)
    assert torch.equal(simulate_nir(to_nir(model, x), x), ref)


def test_nir_batchnorm_is_folded_not_a_node():
    model, x = _run_case("conv_batchnorm")
    g = to_nir(model, x)
    kinds = sorted(type(n).__name__ for n in g.nodes.values())
    assert kinds == ["Conv2d", "Input", "LIF", "Output"]
    conv = next(n for n in g.nodes.values() if isinstance(n, nir.Conv2d))
    assert not np.allclose(conv.weight, model[0].layer[0].weight.detach().numpy())


def test_nir_lif_fields_follow_the_documented_discretisation():
    """tau = dt/(1 - decay), r = gain/(1 - decay); IF r = gain/dt; threshold, v_reset."""
    dt = 1e-3
    model = nn.Sequential(TimeFold(nn.Flatten()), nn.Linear(4, 3),
                          ls.LIF(decay=0.75, threshold=0.6, v_reset=-0.1),
                          nn.Linear(3, 3), ls.LIF(tau=4.0, threshold=1.0),
                          nn.Linear(3, 2), ls.IF(threshold=0.7, reset="hard"))
    g = to_nir(model, torch.rand(2, 1, 4), dt=dt)
    lif1, lif2, iff = g.nodes["2"], g.nodes["4"], g.nodes["6"]
    assert np.allclose(lif1.tau, dt / 0.25) and np.allclose(lif1.r, 1 / 0.25)
    assert np.allclose(lif1.v_threshold, 0.6) and np.allclose(lif1.v_reset, -0.1)
    assert np.allclose(lif1.v_leak, 0.0) and lif1.tau.shape == (3,)
    assert np.allclose(lif2.tau, 4 * dt) and np.allclose(lif2.r, 1.0)  # tau mode: r = 1
    assert isinstance(iff, nir.IF) and np.allclose(iff.r, 1 / dt)
    # importing with another dt gives the other Euler discretisation of the same ODE
    back = from_nir(g, dt=dt / 2)
    lifs = [m for m in back.modules() if type(m) is ls.LIF]
    assert abs(lifs[0].params.decay - (1 - 0.5 * 0.25)) < 1e-6
    assert abs(lifs[0].params.gain - 0.5) < 1e-6


def test_nir_dt_recorded_in_the_graph_is_used_on_import(tmp_path):
    model, x = _run_case("conv_bias_lif_decay")
    path = tmp_path / "dt.nir"
    nir.write(path, to_nir(model, x, dt=2e-3))
    g = nir.read(path)
    lif = next(n for n in g.nodes.values() if isinstance(n, nir.LIF))
    assert np.allclose(lif.tau, 2e-3 / 0.5)
    with torch.no_grad():
        assert torch.equal(from_nir(g, dtype=torch.float64)(x), model(x))


def test_nir_leaky_integrator_readout_import():
    """Norse-style Affine -> LI readout: the potential follows the Euler-discretised LI."""
    w = np.array([[1.0, -0.5], [0.25, 2.0]], np.float32)
    tau = np.array([2e-3, 4e-3], np.float32)
    g = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.zeros(2, np.float32)),
                               nir.LI(tau=tau, r=np.ones(2, np.float32),
                                      v_leak=np.zeros(2, np.float32)))
    x = torch.rand(5, 3, 2, dtype=torch.float64)
    for taus in (tau, np.full(2, 4e-3, np.float32)):  # per-neuron, then shared time constants
        g.nodes["li"].tau = taus
        got = from_nir(g, dt=1e-3, dtype=torch.float64)(x)
        a = torch.as_tensor(1e-3 / taus.astype(np.float64))
        v, want = torch.zeros(3, 2, dtype=torch.float64), []
        for t in range(5):
            v = v + a * (-v + x[t] @ torch.as_tensor(w, dtype=torch.float64).T)
            want.append(v)
        torch.testing.assert_close(got, torch.stack(want), rtol=1e-6, atol=1e-9)


def test_nir_per_neuron_parameters_import_as_neuron_array():
    """A foreign LIF/IF layer whose tau, r, thresholds and resets differ per neuron (as trained
    per-neuron parameters are exported) spikes as the NIR equations say."""
    rng = np.random.default_rng(7)
    n = 6
    lif = nir.LIF(tau=rng.uniform(2e-4, 1e-3, n).astype(np.float32),
                  r=rng.uniform(0.5, 2.0, n).astype(np.float32),
                  v_leak=rng.uniform(-0.1, 0.1, n).astype(np.float32),
                  v_threshold=rng.uniform(0.5, 1.0, n).astype(np.float32),
                  v_reset=rng.uniform(-0.2, 0.0, n).astype(np.float32))
    iff = nir.IF(r=rng.uniform(5e3, 2e4, 4).astype(np.float32),
                 v_threshold=rng.uniform(0.5, 1.5, 4).astype(np.float32))
    g = nir.NIRGraph.from_list(
        nir.Affine(weight=rng.normal(0.5, 0.5, (n, 3)).astype(np.float32),
                   bias=np.zeros(n, np.float32)), lif,
        nir.Linear(weight=rng.normal(0.4, 0.6, (4, n)).astype(np.float32)), iff)
    net = from_nir(g, dt=1e-4, dtype=torch.float64)
    from leansnn.interop import NIRNetwork
    from leansnn.interop._import import NeuronArray

    assert isinstance(net, NIRNetwork)
    assert sum(isinstance(m, NeuronArray) for m in net.modules()) == 2
    x = torch.as_tensor(rng.uniform(0, 1, (10, 5, 3)))
    with torch.no_grad():
        got = net(x)
    want = simulate_nir(g, x, dt=1e-4)
    assert 0.05 < float(want.mean()) < 0.95
    assert torch.equal(got, want)


def test_nir_static_stem_exported_as_layers_fed_with_repeated_input(tmp_path):
    torch.manual_seed(1)
    model = ls.models.create("lif_cnn", T=4, width=4, threshold=0.5).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model = model.double()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    g = to_nir(model, x)
    assert list(np.asarray(g.nodes["input"].input_type["input"])) == [1, 28, 28]
    path = tmp_path / "lif_cnn.nir"
    nir.write(path, g)
    back = from_nir(path, T=4, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(back(x), ref)  # static input repeated by the imported module
        assert torch.equal(back(ls.layers.repeat_time(x, 4)), ref)


def test_nir_float32_roundtrip_lif_cnn():
    """Default dtype: the registry's demo model survives the round trip bit for bit."""
    torch.manual_seed(2)
    model = ls.models.create("lif_cnn", T=4, width=4, threshold=0.5).eval()
    x = torch.rand(2, 1, 28, 28)
    back = from_nir(to_nir(model, x), T=4)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


@pytest.mark.parametrize("name", ["lif_snn_a", "lif_snn_5", "sew_resnet18"])
def test_nir_registry_snn_without_attention_roundtrip(name, tmp_path):
    """The paper's directly trained LIF-SNNs (attention=None) export and come back exactly."""
    from leansnn.models import available

    if name not in available():
        pytest.skip(f"{name} has not landed")
    torch.manual_seed(3)
    model = ls.models.create(name, num_classes=4, in_channels=2, T=3, attention=None,
                             input_size=(16, 16), width=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.3, 1.0)
    model = model.double().eval()
    x = torch.rand(3, 2, 2, 16, 16, dtype=torch.float64)
    path = tmp_path / f"{name}.nir"
    nir.write(path, to_nir(model, x))
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(from_nir(path, dtype=torch.float64, T=3)(x), ref)


def _qcfs_ann(name: str, **kw):
    torch.manual_seed(5)
    ann = ls.models.create(name, activation=ls.QCFS(levels=4, threshold=0.5), **kw)
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.6)
                m.bias.uniform_(0.0, 0.3)
    return ann


@pytest.mark.parametrize("arch", ["small_cnn", "resnet20"])
def test_nir_serial_conversion_roundtrip_and_semantics(arch, tmp_path):
    """Serial-IF converted networks (per-layer threshold, v0 = theta/2, soft reset) export
    exactly: residual blocks, global average pooling and flatten included."""
    ann = _qcfs_ann(arch, num_classes=5, in_channels=1)
    snn = ls.convert(ann, T=4, method="serial").double()
    size = 28 if arch == "small_cnn" else 12  # small_cnn's classifier fixes 28x28
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    g = to_nir(snn, x)
    subs = [v for v in g.nodes.values() if isinstance(v, nir.NIRGraph)]
    assert len(subs) == len(snn.named_neurons())
    path = tmp_path / "serial.nir"
    nir.write(path, g)
    back = from_nir(path, T=4, dtype=torch.float64)
    from leansnn.convert import SerialIF

    got = [m for m in back.modules() if isinstance(m, SerialIF)]
    want = [m for _, m in snn.named_neurons()]
    assert [float(m.threshold) for m in got] == [float(m.threshold) for m in want]
    counts = []
    for _, m in snn.named_neurons():
        m.add_observer(lambda mod, s, u: counts.append(float(s.mean())))
    with torch.no_grad():
        ref = snn(x)
        assert torch.equal(back(x), ref)
        sim = simulate_nir(nir.read(path), ls.layers.repeat_time(x, 4))
    # the readout is analog (a linear layer on spikes): equal up to matmul rounding, while a
    # single flipped spike would move it by ~1e-2
    torch.testing.assert_close(sim, ref, rtol=0, atol=1e-12)
    assert 0.02 < np.mean(counts) < 0.98  # the neurons do fire, and not always


def test_nir_parallel_conversion_is_refused_with_the_serial_alternative():
    snn = ls.convert(_qcfs_ann("small_cnn", num_classes=3, in_channels=1), T=4)
    with pytest.raises(NIRExportError) as ei:
        to_nir(snn, torch.rand(1, 1, 28, 28))
    assert len(ei.value.layers) == len(snn.named_neurons())
    assert all("whole time window" in why and "method='serial'" in why
               for _, why in ei.value.layers)


def test_nir_lif_snn_a_with_asa_is_refused_naming_each_asa():
    from leansnn.models import available

    if "lif_snn_a" not in available():
        pytest.skip("lif_snn_a has not landed")
    model = ls.models.create("lif_snn_a", num_classes=4, in_channels=2, T=2, attention="asa",
                             input_size=(16, 16), width=4, hidden=8)
    asas = [n for n, m in model.named_modules() if isinstance(m, ls.ASA)]
    with pytest.raises(NIRExportError) as ei:
        to_nir(model, torch.rand(2, 1, 2, 16, 16))
    assert [n for n, _ in ei.value.layers] == asas and len(asas) == 3
    assert "attention=None" in str(ei.value)


# ---------------------------------------------------------------------------------------------
# A graph written the way another library documents its export: snnTorch's ``Leaky``.
# snnTorch's documentation of ``snntorch.export_nir`` (https://snntorch.readthedocs.io/en/latest/
# snntorch.export_nir.html, source ``snntorch/export_nir.py::_extract_snntorch_module`` in
# snnTorch 1.0) exports ``snn.Leaky(beta)`` with ``dt = 1e-4`` as
#   nir.LIF(tau = dt/(1 - beta), r = tau/dt, v_leak = 0, v_threshold = threshold, v_reset = 0)
# and ``nn.Linear`` as ``nir.Affine``, ``nn.Flatten(1)`` as ``nir.Flatten(start_dim=0)``; the
# documented example is Flatten -> Linear -> Leaky -> Linear -> Leaky (here with small sizes).
# ---------------------------------------------------------------------------------------------
def _snntorch_leaky_graph(rng, scalar_params: bool = False):
    dt = 1e-4

    def leaky(beta: float, n: int, thr: float = 1.0):
        shape = () if scalar_params else (n,)
        tau = np.full(shape, dt / (1 - beta), dtype=np.float32)
        return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(shape, np.float32),
                       v_threshold=np.full(shape, thr, np.float32),
                       v_reset=np.zeros(shape, np.float32))

    w1 = rng.normal(0, 0.6, (5, 16)).astype(np.float32)
    b1 = rng.normal(0.2, 0.1, 5).astype(np.float32)
    w2 = rng.normal(0.3, 0.8, (3, 5)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 3).astype(np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "0": nir.Flatten(input_type={"input": np.array([1, 4, 4])}, start_dim=0, end_dim=-1),
        "1": nir.Affine(weight=w1, bias=b1),
        "2": leaky(0.9, 5),
        "3": nir.Affine(weight=w2, bias=b2),
        "4": leaky(0.8, 3),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=not scalar_params)


def _euler_reference(graph, x: np.ndarray, dt: float) -> np.ndarray:
    """Plain Euler loop of the NIR equations for Flatten -> Affine -> LIF -> Affine -> LIF."""
    n = graph.nodes
    T, B = x.shape[:2]
    v1 = np.zeros((B, n["1"].weight.shape[0]))
    v2 = np.zeros((B, n["3"].weight.shape[0]))
    out = []

    def lif(v, i, node):
        tau, r = node.tau.astype(np.float64), node.r.astype(np.float64)
        v = v + dt / tau * (node.v_leak - v + r * i)
        z = v > node.v_threshold
        return np.where(z, node.v_reset, v), z.astype(np.float64)

    for t in range(T):
        h = x[t].reshape(B, -1)
        i1 = h @ n["1"].weight.astype(np.float64).T + n["1"].bias
        v1, z1 = lif(v1, i1, n["2"])
        i2 = z1 @ n["3"].weight.astype(np.float64).T + n["3"].bias
        v2, z2 = lif(v2, i2, n["4"])
        out.append(z2)
    return np.stack(out)


@pytest.mark.parametrize("scalar_params", [False, True])
def test_nir_snntorch_leaky_graph_loads_and_spikes_as_nir_prescribes(tmp_path, scalar_params):
    rng = np.random.default_rng(0)
    g = _snntorch_leaky_graph(rng, scalar_params)
    if not scalar_params:  # through a file as another tool would hand it over
        nir.write(tmp_path / "snntorch.nir", g)
        g = nir.read(tmp_path / "snntorch.nir")
    x = rng.uniform(0, 1.5, (12, 4, 1, 4, 4))
    expected = _euler_reference(g, x, 1e-4)
    assert 0.05 < expected.mean() < 0.95
    net = from_nir(g, dt=1e-4, dtype=torch.float64)
    lifs = [m for m in net.modules() if isinstance(m, ls.LIF)]
    assert [round(m.params.decay, 6) for m in lifs] == [0.9, 0.8]
    with torch.no_grad():
        got = net(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_nir_imported_graph_reexports_with_the_same_meaning(tmp_path):
    """from_nir's modules (per-neuron NeuronArray, LIF with v_leak, Scale, LI readout) export
    again, and the re-exported graph means what the original meant."""
    rng = np.random.default_rng(8)

    def f32(a):
        return np.asarray(a, np.float32)

    g = nir.NIRGraph.from_list(
        nir.Affine(weight=f32(rng.normal(0.5, 0.5, (5, 3))), bias=f32(np.zeros(5))),
        nir.LIF(tau=f32(rng.uniform(3e-4, 1e-3, 5)), r=f32(rng.uniform(0.8, 1.5, 5)),
                v_leak=f32(rng.uniform(0, 0.2, 5)), v_threshold=f32(rng.uniform(0.4, 0.8, 5)),
                v_reset=f32(np.zeros(5))),
        nir.Scale(scale=f32(rng.uniform(0.5, 1.5, 5))),
        nir.Linear(weight=f32(rng.normal(0.4, 0.6, (4, 5)))),
        nir.LIF(tau=f32(np.full(4, 5e-4)), r=f32(np.full(4, 2.0)), v_leak=f32(np.full(4, 0.1)),
                v_threshold=f32(np.full(4, 0.6)), v_reset=f32(np.zeros(4))),
        nir.Linear(weight=f32(rng.normal(0, 1, (2, 4)))),
        nir.LI(tau=f32(np.full(2, 1e-3)), r=f32(np.ones(2)), v_leak=f32(np.zeros(2))))
    x = torch.as_tensor(rng.uniform(0, 1, (8, 4, 3)))
    net = from_nir(g, dt=1e-4, dtype=torch.float64)
    g2 = to_nir(net, x, dt=1e-4)
    nir.write(tmp_path / "again.nir", g2)
    g2 = nir.read(tmp_path / "again.nir")
    ref = simulate_nir(g, x, dt=1e-4)
    torch.testing.assert_close(simulate_nir(g2, x, dt=1e-4), ref, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(from_nir(g2, dtype=torch.float64)(x), net(x), rtol=0,
                                   atol=1e-12)


def test_nir_threshold_comparison_strict_for_foreign_graphs_exact_for_own():
    """NIR fires on v > threshold, leansnn on u >= threshold: a potential exactly at the
    threshold must not fire in a foreign graph, and must fire after a leansnn round trip."""
    x = torch.full((3, 1, 2), 0.5)  # IF with threshold 1: u = 0.5, 1.0 (tie), ...
    foreign = nir.NIRGraph.from_list(
        nir.IF(r=np.full(2, 1.0 / DT, np.float32), v_threshold=np.ones(2, np.float32),
               v_reset=np.zeros(2, np.float32)))
    got = from_nir(foreign, dt=DT)(x)
    assert got[:, 0, 0].tolist() == [0.0, 0.0, 1.0]  # fires at u = 1.5 > 1, not at u = 1
    own = nn.Sequential(ls.IF(threshold=1.0, reset="hard"))
    back = from_nir(to_nir(own, x))
    assert own(x)[:, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert torch.equal(back(x), own(x))


def test_nir_soft_reset_if_is_an_exact_integrator_threshold_subgraph():
    model = nn.Sequential(ls.IF(threshold=0.8, reset="soft", v_init=0.4))
    g = to_nir(model, torch.rand(4, 2, 3))
    sub = g.nodes["0"]
    assert isinstance(sub, nir.NIRGraph)
    kinds = {k: type(v).__name__ for k, v in sub.nodes.items()}
    assert sorted(kinds.values()) == ["I", "Input", "Output", "Scale", "Threshold"]
    assert ("reset", "integrator") in sub.edges
    assert np.allclose(sub.nodes["threshold"].threshold, 0.4)  # theta - v_init
    assert np.allclose(sub.nodes["reset"].scale, -0.8)
    back = from_nir(g)
    (iff,) = [m for m in back.modules() if isinstance(m, ls.IF)]
    assert iff.params.reset == "soft" and iff.params.v_init == 0.4 and iff.params.threshold == 0.8


# ---------------------------------------------------------------------------------------------
# Refusals: one error naming every layer NIR cannot express, and what to do.
# ---------------------------------------------------------------------------------------------
class ParallelLike(ls.SpikingNeuron):
    """Stand-in for a parallel conversion neuron: reads the whole window."""

    def forward(self, x):
        return (x.mean(0, keepdim=True) > 0.5).to(x.dtype).expand_as(x)


def test_nir_refuses_inexpressible_layers_in_one_error():
    model = nn.Sequential(
        TimeFold(nn.Conv2d(2, 4, 3, padding=1)),
        ls.ASA(T=4, channels=4),
        ls.LIF(decay=0.3, reset="soft"),
        TimeFold(nn.AvgPool2d(2), nn.BatchNorm2d(4)),
        ParallelLike(),
        TimeFold(nn.ReLU()),
        ls.LIF(decay=0.5, v_init=0.2),
        ls.IF(reset="soft", v_init=0.5),
    )
    with pytest.raises(NIRExportError) as ei:
        to_nir(model, torch.rand(4, 2, 2, 8, 8), soft_reset="error")
    err = ei.value
    names = [n for n, _ in err.layers]
    assert names == ["1", "2", "3.layer.1", "4", "5.layer", "6", "7"]
    msg = str(err)
    assert "ASA" in msg and "attention=None" in msg
    assert "reset='hard'" in msg
    assert "serial" in msg  # parallel neurons: export the serial-IF conversion instead
    assert "soft_reset='subgraph'" in msg
    assert isinstance(err, ValueError)


def test_nir_refuses_untraceable_custom_module():
    class Gate(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    with pytest.raises(NIRExportError, match="sigmoid|mul"):
        to_nir(nn.Sequential(Gate(), ls.LIF()), torch.rand(2, 1, 3))


def test_nir_subclass_with_own_forward_is_not_exported_as_its_parent():
    class StandardisedConv(nn.Conv2d):  # weight standardisation: not a plain convolution
        def forward(self, x):
            w = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
            return F.conv2d(x, w, self.bias, self.stride, self.padding)

    model = nn.Sequential(TimeFold(StandardisedConv(2, 3, 3)), ls.LIF())
    with pytest.raises(NIRExportError) as ei:
        to_nir(model, torch.rand(2, 1, 2, 6, 6))
    assert all(n.startswith("0.layer") for n, _ in ei.value.layers)


def test_nir_learnable_neuron_parameters_export_their_current_values():
    torch.manual_seed(6)
    lif = ls.LIF(tau=2.0, threshold=0.5, learn_decay=True, learn_threshold=True)
    with torch.no_grad():
        lif.decay_logit.fill_(0.7)
        lif.threshold.fill_(0.35)
    model = nn.Sequential(TimeFold(nn.Linear(4, 6)), lif).double()
    x = torch.rand(5, 3, 4, dtype=torch.float64)
    g = to_nir(model, x)
    d = float(torch.sigmoid(torch.tensor(0.7, dtype=torch.float64)))
    assert np.allclose(g.nodes["1"].tau, DT / (1 - d)) and np.allclose(g.nodes["1"].r, 1.0)
    assert np.allclose(g.nodes["1"].v_threshold, 0.35)
    ref = model(x).detach()
    assert 0 < ref.mean() < 1
    assert torch.equal(from_nir(g, dtype=torch.float64)(x).detach(), ref)


def test_nir_import_refuses_unsupported_nodes_by_name():
    g = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 2), np.float32), bias=np.zeros(2, np.float32)),
        nir.CubaLIF(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                    v_threshold=np.ones(2)))
    with pytest.raises(ValueError, match="cubalif.*current-based"):
        from_nir(g)


def test_nir_missing_package_message(monkeypatch):
    from leansnn.interop import require_nir

    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ImportError, match=r'pip install "leansnn\[nir\]"'):
        require_nir()


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def test_nir_export_command_writes_a_readable_file(tmp_path, capsys):
    from leansnn.cli import main

    torch.manual_seed(4)
    model = ls.models.create("lif_cnn", T=3, width=4, threshold=0.5)
    ckpt = ls.save(model, tmp_path / "m.lsnn", note="nir test")
    out = tmp_path / "sub" / "m.nir"
    assert main(["export", str(ckpt), "--format", "nir", "--out", str(out)]) == 0
    assert out.exists()
    assert [p for p in os.listdir(out.parent) if p != "m.nir"] == []  # no temp file left
    assert "wrote" in capsys.readouterr().out
    back = from_nir(out, T=3)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(x), ls.load(ckpt).eval()(x))


def test_nir_export_command_converted_checkpoint(tmp_path):
    from leansnn.cli import main

    ann = _qcfs_ann("small_cnn", num_classes=3, in_channels=1)
    snn = ls.convert(ann, T=4, method="serial")
    ckpt = ls.save(snn, tmp_path / "serial.lsnn")
    out = tmp_path / "serial.nir"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        ref = snn(x)
        assert torch.equal(from_nir(out, T=4)(x), ref)
    assert main(["export", str(ckpt), "--out", str(out), "--soft-reset", "error"]) == 2


def test_nir_export_command_dt_and_input_shape(tmp_path):
    from leansnn.cli import main

    ckpt = ls.save(ls.models.create("lif_cnn", T=2, width=2, decay=0.75), tmp_path / "m.lsnn")
    out = tmp_path / "m.nir"
    assert main(["export", str(ckpt), "--out", str(out), "--dt", "1e-3",
                 "--input-shape", "1", "28", "28"]) == 0
    g = nir.read(out)
    taus = [n.tau for n in g.nodes.values() if isinstance(n, nir.LIF)]
    assert len(taus) == 2 and all(np.allclose(t, 1e-3 / 0.25) for t in taus)
    assert main(["export", str(ckpt), "--out", str(out), "--input-shape", "1", "0", "28"]) == 2


def test_nir_export_command_errors_are_one_line(tmp_path, capsys):
    from leansnn.cli import main

    assert main(["export", str(tmp_path / "none.lsnn"), "--out", str(tmp_path / "x.nir")]) == 2
    assert "does not exist" in capsys.readouterr().err
