"""NIR interchange under unusual input: grouped / depthwise convolutions through a file,
and bad ``dt`` / ``T`` / paths given to ``from_nir``."""

import numpy as np
import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.layers import TimeFold

nir = pytest.importorskip("nir")
from leansnn.interop import from_nir, to_nir  # noqa: E402


def _bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    return bn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cin, cout, groups, bn, dilation", [
    (2, 4, 2, False, 2),     # grouped, dilated
    (3, 6, 3, True, 1),      # depthwise with channel multiplier 2, BatchNorm folded
    (4, 4, 4, True, 1),      # depthwise
    (4, 2, 2, False, 1),     # groups reduce channels
])
def test_grouped_conv_roundtrips_through_a_file(tmp_path, dtype, cin, cout, groups, bn,
                                                dilation):
    """A grouped convolution failed nir's type check ('type mismatch ... [[2 8 8]] ->
    [[1 8 8]]'): nir takes weight.shape[1] as the input channels."""
    torch.manual_seed(groups + cin)
    layers = [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, groups=groups)]
    if bn:
        layers.append(_bn(cout))
    model = nn.Sequential(TimeFold(*layers), ls.LIF(decay=0.5, threshold=0.3),
                          TimeFold(nn.Conv2d(cout, cout, 1, groups=cout)),
                          ls.IF(threshold=0.4)).to(dtype).eval()
    x = torch.rand(4, 2, cin, 6, 6, dtype=dtype) * 2
    graph = to_nir(model, x)
    assert all(int(n.groups) == 1 for n in graph.nodes.values() if isinstance(n, nir.Conv2d))
    nir.write(tmp_path / "g.nir", graph)
    back = from_nir(tmp_path / "g.nir", dtype=dtype)
    convs = [m for m in back.modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in convs] == [groups, cout]
    with torch.no_grad():
        assert torch.equal(model(x), back(x))


def test_dense_weight_with_an_edited_block_stays_dense(tmp_path):
    """The recorded groups are used only while the weight is still block-diagonal."""
    torch.manual_seed(0)
    model = nn.Sequential(TimeFold(nn.Conv2d(2, 2, 3, padding=1, groups=2)),
                          ls.LIF(decay=0.5, threshold=0.3)).eval()
    x = torch.rand(3, 1, 2, 5, 5)
    graph = to_nir(model, x)
    conv = next(n for n in graph.nodes.values() if isinstance(n, nir.Conv2d))
    conv.weight[0, 1] = 0.25  # a weight between the groups
    back = from_nir(graph)
    assert next(m for m in back.modules() if isinstance(m, nn.Conv2d)).groups == 1
    dense = nn.Conv2d(2, 2, 3, padding=1)
    with torch.no_grad():
        dense.weight.copy_(torch.as_tensor(conv.weight))
        dense.bias.copy_(torch.as_tensor(conv.bias))
        ref = ls.LIF(decay=0.5, threshold=0.3)(TimeFold(dense)(x))
        assert torch.equal(back(x), ref)


def _graph(metadata=None):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        "l": nir.LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3),
                     v_threshold=np.ones(3), v_reset=np.zeros(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "l"), ("l", "output")],
                        metadata=metadata or {})


@pytest.mark.parametrize("kw, meta, match", [
    (dict(dt="1e-4"), None, "dt must be a finite positive"),
    (dict(dt=float("inf")), None, "dt must be a finite positive"),
    (dict(dt=True), None, "dt must be a finite positive"),
    (dict(), {"leansnn": {"dt": "abc"}}, "dt recorded in the graph .* pass dt="),
    (dict(), {"leansnn": {"dt": float("nan")}}, "dt recorded in the graph"),
    (dict(T=True), None, "T must be a positive int"),
    (dict(T=2.0), None, "T must be a positive int"),
])
def test_bad_dt_and_T_are_named(kw, meta, match):
    with pytest.raises(ValueError, match=match):
        from_nir(_graph(meta), **kw)


@pytest.mark.parametrize("T", [3, np.int64(3), torch.tensor(3).item()])
def test_T_as_any_integer(T):
    net = from_nir(_graph(), T=T)
    assert net(torch.rand(2, 4)).shape == (3, 2, 3)


def test_folder_path_is_named(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        from_nir(tmp_path)


@pytest.mark.parametrize("dt, ok", [
    (np.float32(1e-4), True), (np.float64(2e-4), True), (1, True),
    (True, False), (float("nan"), False), (float("inf"), False), ("1e-4", False), (0.0, False),
])
def test_to_nir_dt_any_real_number(dt, ok):
    """np.float32 dt was refused as 'not positive'; dt=True was taken as 1 s."""
    m = nn.Sequential(TimeFold(nn.Linear(4, 3)), ls.LIF(decay=0.5, threshold=0.3)).eval()
    x = torch.rand(2, 1, 4)
    if ok:
        g = to_nir(m, x, dt=dt)
        assert g.metadata["leansnn"]["dt"] == float(dt)
        assert torch.equal(from_nir(g)(x), m(x))
    else:
        with pytest.raises(ValueError, match="dt must be a finite positive"):
            to_nir(m, x, dt=dt)
