"""ANN -> SNN conversion: lossless parallel conversion, fast path == simulation, errors."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leansnn as ls
from leansnn.convert import ConversionError, ParallelIF, SerialIF, register_method

D = torch.float64


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.6 - 0.1)
    return model


def _qcfs_thresholds(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, ls.QCFS):
            m.threshold.data.fill_(float(torch.rand(1, generator=g)) * 2 + 0.5)
    return model


class Block(nn.Module):
    """Residual block with a functional relu and a Tensor.relu."""

    def __init__(self, c: int, act: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.act = act

    def forward(self, x):
        y = F.relu(self.bn(self.conv1(x)))
        y = self.act(self.conv2(y) + x)
        return (y * 0.5 + x * 0.5).relu()


class Net(nn.Module):
    """Nested Sequentials, residual blocks, torch.relu, flatten via view, dropout."""

    def __init__(self, L: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1),
                                                nn.BatchNorm2d(4)), ls.QCFS(L, 1.0))
        self.blocks = nn.Sequential(Block(4, ls.QCFS(L, 1.0)),
                                    nn.Sequential(nn.AvgPool2d(2), Block(4, ls.QCFS(L, 1.0))))
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = x.view(x.size(0), -1)
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def _qcfs_relu_net(L: int) -> nn.Module:
    """The functional relus have no thresholds: swap them for QCFS-equivalent via convert's
    thresholds= option in the tests below."""
    return _qcfs_thresholds(_randomise_bn(Net(L))).to(D).eval()


def _functional_thresholds(snn_sites, value: float = 1.0) -> dict:
    return {name: value for name in snn_sites}


def _relu_site_names(model) -> list[str]:
    from leansnn.convert import find_activation_sites, trace

    sites, _ = find_activation_sites(trace(model))
    return [s.name for s in sites if s.kind == "relu"]


class AllQCFS(nn.Module):
    """Only QCFS activations, F.relu-free, with a residual add and flatten."""

    def __init__(self, L: int) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), ls.QCFS(L))
        self.c2 = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.a2 = ls.QCFS(L)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 7))

    def forward(self, x):
        h = self.c1(x)
        h = self.a2(self.c2(h) + h)
        return self.fc(self.pool(h))


@pytest.mark.parametrize("L", [2, 4, 8])
def test_lossless_with_levels_equal_T(L):
    torch.manual_seed(L)
    ann = _qcfs_thresholds(_randomise_bn(AllQCFS(L)), L).to(D).eval()
    x = torch.rand(16, 1, 8, 8, dtype=D) * 2
    ref = ann(x)
    snn = ls.convert(ann, T=L, method="parallel")
    for engine in ("simulate", "fast"):
        y = snn(x, engine=engine)
        assert y.shape == (L, 16, 7)
        assert torch.allclose(y.mean(0), ref, atol=1e-9), engine
    # lossy for T != L (at least somewhere), so the test above can fail
    other = ls.convert(ann, T=L + 1, method="parallel")
    assert not torch.allclose(other(x).mean(0), ref, atol=1e-6)


def test_lossless_residual_functional_relu_nested():
    L = 4
    torch.manual_seed(0)
    ann = _qcfs_relu_net(L)
    names = _relu_site_names(ann)
    # F.relu, Tensor.relu (x2 blocks) and torch.relu are all found, with qualified names
    assert len(names) == 5
    assert any(n.startswith("blocks.0.") for n in names)
    assert any(n.startswith("blocks.1.1.") for n in names)
    # the ANN's functional relus become QCFS(L, theta=1.5) for the reference
    th = 1.5

    class Ref(nn.Module):
        def forward(self, z):
            return ls.conversion.qcfs(z, th, L)

    ref_model = _qcfs_relu_net(L)
    ref_model.load_state_dict(ann.state_dict())
    x = torch.rand(8, 1, 8, 8, dtype=D) * 2
    with torch.no_grad():
        orig = (F.relu, torch.relu, torch.Tensor.relu)
        try:  # evaluate the ANN with every functional relu replaced by QCFS(L, 1.5)
            F.relu = torch.relu = Ref()  # type: ignore[assignment]
            torch.Tensor.relu = lambda self: Ref()(self)  # type: ignore[assignment]
            want = ref_model(x)
        finally:
            F.relu, torch.relu, torch.Tensor.relu = orig
    snn = ls.convert(ann, T=L, thresholds={n: th for n in names})
    assert snn.fast_path_status() == (True, [])
    for engine in ("simulate", "fast"):
        assert torch.allclose(snn(x, engine=engine).mean(0), want, atol=1e-9)


def _record_spikes(snn, x, engine):
    rec = {}
    handles = [m.add_observer(lambda mod, s, u, n=n: rec.__setitem__(n, (s.clone(), u)))
               for n, m in snn.named_neurons()]
    y = snn(x, engine=engine)
    for h in handles:
        h.remove()
    return y, rec


@pytest.mark.parametrize("T", [3, 8])
def test_fast_path_equals_simulation(T):
    torch.manual_seed(1)
    ann = _qcfs_relu_net(4)
    names = _relu_site_names(ann)
    snn = ls.convert(ann, T=T, thresholds={n: 0.8 for n in names})
    x = torch.rand(6, 1, 8, 8, dtype=D) * 2
    y_sim, s_sim = _record_spikes(snn, x, "simulate")
    y_fast, s_fast = _record_spikes(snn, x, "fast")
    assert set(s_sim) == set(s_fast) == {n for n, _ in snn.named_neurons()}
    assert len(s_sim) == 8
    for n in s_sim:
        a, b = s_sim[n][0], s_fast[n][0]
        assert a.shape[0] == T and set(a.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(a, b), n  # identical spike trains (hence counts)
    total = sum(float(s.sum()) for s, _ in s_sim.values())
    assert total > 0
    assert torch.allclose(y_sim, y_fast, atol=1e-9)  # identical per-step outputs


def test_fast_path_sequence_input():
    torch.manual_seed(2)
    T = 4
    ann = _qcfs_thresholds(_randomise_bn(AllQCFS(T))).to(D).eval()
    snn = ls.convert(ann, T=T)
    xs = torch.rand(T, 5, 1, 8, 8, dtype=D) * 2  # varies over time
    assert snn.fast_path_status(sequence=True)[0]
    assert torch.allclose(snn(xs, engine="fast"), snn(xs, engine="simulate"), atol=1e-9)
    with pytest.raises(ValueError, match="T=4"):
        snn(torch.rand(3, 5, 1, 8, 8, dtype=D))


class MaxPoolNet(nn.Module):
    def __init__(self, tail_pool: bool) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.a1 = ls.QCFS(4, 1.0)
        self.pool = nn.MaxPool2d(2) if not tail_pool else nn.AvgPool2d(2)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.a2 = ls.QCFS(4, 1.0)
        self.tail = nn.MaxPool2d(4) if tail_pool else nn.AvgPool2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.a2(self.c2(self.pool(self.a1(self.c1(x)))))
        return self.fc(torch.flatten(self.tail(x), 1))


def test_fallback_to_simulation_when_not_affine():
    torch.manual_seed(3)
    x = torch.rand(4, 1, 8, 8, dtype=D)
    # a max pool of spikes commutes with the time mean (front-loaded trains): fast path
    fast = ls.convert(MaxPoolNet(tail_pool=False).to(D), T=4)
    assert fast.fast_path_status() == (True, [])
    assert torch.allclose(fast(x, engine="fast"), fast(x, engine="simulate"), atol=1e-12)
    # a max pool of a conv of spikes does not (not front-loaded): simulation
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ls.QCFS(4, 1.0), nn.Conv2d(4, 4, 3),
                        nn.MaxPool2d(2), ls.QCFS(4, 1.0), nn.Flatten(), nn.Linear(36, 3))
    snn = ls.convert(net.to(D), T=4)
    ok, reasons = snn.fast_path_status()
    assert not ok and "MaxPool2d" in reasons[0] and "front-loaded" in reasons[0]
    assert torch.equal(snn(x), snn(x, engine="simulate"))  # auto -> simulation
    with pytest.raises(ValueError, match="fast path is not available"):
        snn(x, engine="fast")
    # a max pool after the last spiking layer is fine: the tail runs per step
    snn2 = ls.convert(MaxPoolNet(tail_pool=True).to(D), T=4)
    assert snn2.fast_path_status()[0]
    assert torch.allclose(snn2(x, engine="fast"), snn2(x, engine="simulate"), atol=1e-12)


def test_non_affine_on_static_input_keeps_fast_path():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.MaxPool2d(2), ls.QCFS(4, 1.0), nn.Flatten(),
                        nn.Linear(3 * 3 * 3, 2)).to(D)
    snn = ls.convert(net, T=4)
    assert snn.fast_path_status()[0]  # the pool sees the constant image
    assert not snn.fast_path_status(sequence=True)[0]  # but not a time-varying input
    x = torch.rand(3, 1, 8, 8, dtype=D)
    assert torch.allclose(snn(x, engine="fast"), snn(x, engine="simulate"), atol=1e-12)
    assert torch.allclose(snn(x).mean(0), net.eval()(x), atol=1e-12)


def test_parallel_neuron_golden_and_sorting():
    n = ParallelIF(T=4, threshold=1.0)
    x = torch.full((4, 1), 0.6)  # S = 2.4, n = floor(2.9) = 2
    assert n(x).flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    torch.manual_seed(0)
    T, th = 6, 0.7
    n = ParallelIF(T=T, threshold=torch.tensor(th, dtype=D))
    x = torch.randn(T, 500, dtype=D)
    s = n(x) / th
    S = x.sum(0)
    k = torch.arange(1, T + 1, dtype=D).unsqueeze(1)
    fire = (S + th / 2 >= k * th).to(D)  # firing condition of step k (spikes first)
    assert torch.equal(s, fire)
    assert torch.equal(s.sum(0), torch.clamp(torch.floor((S + th / 2) / th), 0, T))
    got = {}
    n.add_observer(lambda m, sp, u: got.update(s=sp, u=u))
    n(x)
    assert torch.equal(got["s"], (got["u"] >= th).to(D))


def test_serial_neuron_matches_leansnn_if():
    torch.manual_seed(0)
    th = 0.8
    x = torch.rand(10, 7, 1) * 1.5
    ref = ls.IF(threshold=th, reset="soft", v_init=th / 2)(x) * th
    assert torch.allclose(SerialIF(10, th)(x), ref)
    # golden: constant 0.3, theta 1, v0 0.5: u = .8, 1.1 (fire), .4, .7, 1.0 (fire)
    s = SerialIF(5, 1.0)(torch.full((5, 1, 1), 0.3))
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]


def test_serial_conversion_approaches_ann():
    torch.manual_seed(4)
    ann = _qcfs_thresholds(_randomise_bn(AllQCFS(4))).eval()
    x = torch.rand(16, 1, 8, 8) * 2
    fine = copy.deepcopy(ann)
    for m in fine.modules():
        if isinstance(m, ls.QCFS):
            m.levels = 4096  # ~ clipped ReLU, what serial IF approaches for large T
    with torch.no_grad():
        relu_like = fine(x)
        errs = []
        for T in (4, 128):
            snn = ls.convert(ann, T=T, method="serial")
            assert not snn.fast_path_status()[0]
            errs.append(float((snn(x).mean(0) - relu_like).abs().mean()))
    assert errs[1] < 0.3 * errs[0]


class Bad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), nn.GELU())
        self.act = nn.SiLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.act(self.inner(x))))


def test_one_error_lists_every_unconvertible_node():
    with pytest.raises(ConversionError) as e:
        ls.convert(Bad(), T=4)
    msg = str(e.value)
    for part in ("'inner.1' (GELU)", "'act' (SiLU)", "torch.sigmoid", "3 operation"):
        assert part in msg
    assert "QCFS" in msg


class Untraceable(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_untraceable_forward_names_module():
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Untraceable()))
    with pytest.raises(ConversionError, match=r"'1\.1' \(Untraceable\).*leaf_modules"):
        ls.convert(model, T=2)


def test_relu_without_thresholds_says_how():
    ann = ls.models.create("small_cnn", num_classes=3, in_channels=1, activation="relu",
                           width=4, hidden=8)
    with pytest.raises(ConversionError) as e:
        ls.convert(ann, T=4)
    msg = str(e.value)
    assert "calibrated" in msg and "calib_data" in msg and "QCFS" in msg and "'2'" in msg
    snn = ls.convert(ann, T=4, thresholds={"2": 1.0, "6": 1.0, "10": 1.0, "14": 2.0})
    assert snn(torch.rand(2, 1, 28, 28)).shape == (4, 2, 3)
    with pytest.raises(ConversionError, match="unknown activation sites"):
        ls.convert(ann, T=4, thresholds={"nope": 1.0})


def test_bad_arguments():
    ann = AllQCFS(4)
    with pytest.raises(ValueError, match="unknown conversion method"):
        ls.convert(ann, T=4, method="magic")
    for T in (0, 2.5, True):
        with pytest.raises(ValueError, match="T must be"):
            ls.convert(ann, T=T)
    snn = ls.convert(ann, T=4)
    with pytest.raises(ValueError, match="dims"):
        snn(torch.rand(8, 8))
    with pytest.raises(ValueError, match="float"):
        snn(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="engine"):
        snn(torch.rand(2, 1, 8, 8), engine="warp")


def test_register_method_extension_point():
    @register_method("test_double_threshold", replace=True)
    def _m(ctx, factor: float = 2.0):
        return {s.name: ParallelIF(ctx.T, s.qcfs_threshold * factor) for s in ctx.sites}

    assert "test_double_threshold" in ls.conversion.methods()
    ann = AllQCFS(4)
    snn = ls.convert(ann, T=4, method="test_double_threshold", factor=3.0)
    ths = [float(m.threshold) for _, m in snn.named_neurons()]
    assert ths == [3 * 8.0, 3 * 8.0]
    with pytest.raises(ValueError, match="bad options"):
        ls.convert(ann, T=4, method="test_double_threshold", nope=1)


def test_original_model_untouched_and_callable_module():
    import leansnn.convert as conv_pkg

    ann = AllQCFS(4)
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    snn = conv_pkg(ann, T=4)  # the package itself is callable
    assert isinstance(ann.a2, ls.QCFS) and ann.training
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    assert isinstance(snn.net.a2, ParallelIF) and not snn.training


def test_save_load_converted(tmp_path):
    torch.manual_seed(5)
    ann = ls.models.create("small_cnn", num_classes=4, in_channels=1,
                           activation=ls.QCFS(levels=4, threshold=2.0), width=4, hidden=8)
    _randomise_bn(ann)
    ann.net_tag = None
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, ls.QCFS):
                m.threshold.mul_(torch.rand(()) + 0.5)
    snn = ls.convert(ann, T=4)
    path = ls.save(snn, tmp_path / "snn.lsnn", note="converted")
    back = ls.load(path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(back(x), snn(x))
    assert [float(m.threshold) for _, m in back.named_neurons()] == [
        float(m.threshold) for _, m in snn.named_neurons()]


class Reuse(nn.Module):
    """One QCFS module called twice (as torchvision's BasicBlock does with self.relu)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Linear(5, 6), nn.Linear(6, 6)
        self.act = ls.QCFS(4, 1.2)
        self.clip = nn.ReLU6()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.clip(self.act(self.c2(self.act(self.c1(x)))) * 9))


def test_reused_module_gets_one_neuron_per_call_and_relu6():
    torch.manual_seed(6)
    ann = Reuse().to(D)
    snn = ls.convert(ann, T=4)
    names = [n for n, _ in snn.named_neurons()]
    assert names == ["act", "act_1", "clip"]
    assert [float(m.threshold) for _, m in snn.named_neurons()] == pytest.approx([1.2, 1.2, 6.0])
    x = torch.randn(7, 5, dtype=D)
    y = snn(x)  # Linear first: static input [B, F]
    assert y.shape == (4, 7, 3)
    q = lambda z: ls.conversion.qcfs(z, ann.act.threshold, 4)  # noqa: E731
    r6 = lambda z: ls.conversion.qcfs(z, torch.tensor(6.0, dtype=D), 4)  # noqa: E731
    want = ann.fc(r6(q(ann.c2(q(ann.c1(x)))) * 9))
    assert torch.allclose(y.mean(0), want.detach(), atol=1e-9)


def test_fuse_batchnorm_leaves_a_callable_graph_equal_to_the_ann():
    # the traced module itself (what a conversion method sees as ctx.model) must not keep
    # calling the erased batch norms after their statistics were folded into the conv
    from leansnn.convert.converter import fuse_batchnorm, trace

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        for bn in (net[1], net[5]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 3)
            bn.weight.uniform_(0.5, 2)
    net.eval()
    gm = trace(copy.deepcopy(net))
    assert fuse_batchnorm(gm) == 2
    x = torch.randn(5, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(gm(x), net(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# save / load of any converted network: the result, never the recipe
# ---------------------------------------------------------------------------------------------
def _registry_ann(activation="relu", seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    kw = {} if activation == "relu" else {"activation": ls.QCFS(levels=4, threshold=2.0)}
    ann = ls.models.create("small_cnn", num_classes=4, in_channels=1, width=4, hidden=8, **kw)
    return _randomise_bn(ann, seed).eval()


def _round_trip(snn, path, x, **engines):
    ls.save(snn, path)
    meta = ls.load_checkpoint(path)["meta_json"]
    back = ls.load(path)
    with torch.no_grad():
        for eng in ("auto", "fast", "simulate") if snn.fast_path_status()[0] else ("simulate",):
            assert torch.equal(back(x, engine=eng), snn(x, engine=eng)), eng
    assert back.T == snn.T and back.method == snn.method and back.engine == snn.engine
    assert [(n, type(m)) for n, m in back.named_neurons()] == [
        (n, type(m)) for n, m in snn.named_neurons()]
    return back, len(meta.encode())


def _no_calibration(monkeypatch):
    import leansnn.convert.calibrate as cal

    def boom(*a, **k):
        raise AssertionError("leansnn.load re-ran the calibration")

    monkeypatch.setattr(cal, "calibrate_sites", boom)
    monkeypatch.setattr(cal, "calibration_batches", boom)


@pytest.mark.parametrize("kind", ["tensor", "TensorDataset", "DataLoader", "pair"])
def test_calibrated_save_load_is_bit_identical_small_and_needs_no_data(kind, tmp_path,
                                                                       monkeypatch):
    ann = _registry_ann()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    data = {"tensor": x, "TensorDataset": torch.utils.data.TensorDataset(x, y),
            "DataLoader": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                      batch_size=16),
            "pair": (x, y)}[kind]
    snn = ls.convert(ann, T=4, method="calibrated", calib_data=data, progress=False)
    _no_calibration(monkeypatch)
    _, size = _round_trip(snn, tmp_path / "cal.lsnn", x[:9])
    assert size < 8 * 1024, size


@pytest.mark.parametrize("method, T, kw", [
    ("parallel", 4, {}),
    ("parallel", 3, {"engine": "simulate"}),
    ("parallel", 4, {"fuse_bn": False}),
    ("serial", 5, {}),
    ("calibrated", 2, {"refine_steps": 5, "engine": "fast"}),
    ("calibrated", 8, {"mode": "momentum", "batch_size": 16, "fuse_bn": False}),
    ("channelwise-parallel", 4, {}),
    ("channelwise-serial", 3, {}),
])
def test_every_method_and_engine_round_trips(method, T, kw, tmp_path, monkeypatch):
    from leansnn.convert.calibrate import record_thresholds

    qcfs = method in ("parallel", "serial")
    ann = _registry_ann(activation="qcfs" if qcfs else "relu")
    x = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    if method == "calibrated":
        kw = dict(kw, calib_data=x, progress=False)
    elif method.startswith("channelwise"):
        method = method.split("-")[1]
        kw = dict(kw, thresholds=record_thresholds(ann, x))
    snn = ls.convert(ann, T=T, method=method, **kw)
    _no_calibration(monkeypatch)
    back, size = _round_trip(snn, tmp_path / "snn.lsnn", x[:5])
    assert size < 8 * 1024
    assert back.fast_path_status() == snn.fast_path_status()


def test_float64_converted_net_round_trips_in_float64(tmp_path):
    ann = _registry_ann(activation="qcfs").double()
    snn = ls.convert(ann, T=4)
    x = torch.rand(3, 1, 28, 28, dtype=D)
    back, _ = _round_trip(snn, tmp_path / "d.lsnn", x)
    assert next(back.parameters()).dtype == D


def test_saving_a_conversion_of_an_unregistered_ann_fails_at_save(tmp_path):
    snn = ls.convert(AllQCFS(4).eval(), T=4)
    path = tmp_path / "x.lsnn"
    with pytest.raises(ConversionError, match=r"AllQCFS.*leansnn.models.create"):
        ls.save(snn, path)
    assert not path.exists()


def test_user_method_neurons_save_once_registered(tmp_path):
    from leansnn.convert import register_site_neuron

    class HalfIF(ParallelIF):
        """A user's neuron: a parallel neuron with an extra setting."""

        def __init__(self, T, threshold, gain=0.5):
            super().__init__(T, threshold)
            self.gain = gain

        def to_config(self):
            return {"T": self.T, "threshold": self.threshold, "gain": self.gain}

    @register_method("half_if_test", replace=True)
    def half(ctx):
        first = ctx.sites[0].name  # channel-wise there (4 channels), scalar elsewhere
        return {s.name: HalfIF(ctx.T, torch.full((4, 1, 1) if s.name == first else (), 0.7))
                for s in ctx.sites}

    ann = _registry_ann(activation="qcfs")
    snn = ls.convert(ann, T=2, method="half_if_test")
    with pytest.raises(ConversionError, match="HalfIF.*register_site_neuron"):
        ls.save(snn, tmp_path / "u.lsnn")
    register_site_neuron(HalfIF)
    back, _ = _round_trip(snn, tmp_path / "u.lsnn", torch.rand(2, 1, 28, 28))
    assert all(m.gain == 0.5 for _, m in back.named_neurons())
