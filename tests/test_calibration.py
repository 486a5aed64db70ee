"""Training-free conversion: recorded thresholds, DA-QCFS calibration, channel-wise neurons."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import leansnn as ls
from leansnn.convert import QCFS, ParallelIF, qcfs
from leansnn.convert.calibrate import (
    CalibrationConfig,
    calibration_batches,
    calibration_summary,
    record_thresholds,
)
from leansnn.convert.daqcfs import DAQCFS, da_qcfs


class Net(nn.Module):
    """conv+BN+nn.ReLU, conv + residual + F.relu, avg pool, linear + torch.relu, linear."""

    def __init__(self, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = act if act is not None else nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))
        h = F.relu(self.conv2(h) + h)
        h = self.pool(h).flatten(1)
        h = torch.relu(self.fc1(h))
        return self.fc2(h)


def make_net(seed: int = 0, act: nn.Module | None = None) -> Net:
    torch.manual_seed(seed)
    net = Net(act)
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
        net.bn1.weight.uniform_(0.5, 1.5)
    return net.eval()


def data(n: int = 96, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g)


def pairs(x: torch.Tensor, bs: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(b, torch.zeros(b.shape[0], dtype=torch.long)) for b in x.split(bs)]


def channel_max_by_hooks(net: Net, x: torch.Tensor) -> list[torch.Tensor]:
    """Per-channel maxima of the four activations, computed independently of the converter."""
    with torch.no_grad():
        a1 = torch.relu(net.bn1(net.conv1(x)))
        a2 = torch.relu(net.conv2(a1) + a1)
        a3 = torch.relu(net.fc1(net.pool(a2).flatten(1)))
    return [a1.amax((0, 2, 3)), a2.amax((0, 2, 3)), a3.amax(0)]


# ---------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------
def test_record_thresholds_modules_and_functional_conv_and_linear():
    net, x = make_net(), data()
    th = record_thresholds(net, pairs(x))
    assert len(th) == 3  # nn.ReLU, F.relu (conv, after a residual add), torch.relu (linear)
    ref = channel_max_by_hooks(net, x)
    got = list(th.values())
    assert [tuple(t.shape) for t in got] == [(4, 1, 1), (4, 1, 1), (16,)]
    for g, r in zip(got, ref, strict=True):
        live = r > 0
        torch.testing.assert_close(g.reshape(-1)[live], r[live], rtol=1e-5, atol=1e-6)


def test_percentile_thresholds_are_channel_percentiles():
    net, x = make_net(), data(64)
    th = record_thresholds(net, pairs(x), percentile=90.0)
    with torch.no_grad():
        a1 = torch.relu(net.bn1(net.conv1(x)))
    flat = a1.transpose(0, 1).reshape(4, -1)
    k = int(torch.tensor(0.9 * flat.shape[1]).ceil())
    expect = flat.kthvalue(k, dim=1).values
    got = next(iter(th.values())).reshape(-1)
    live = expect > 0
    torch.testing.assert_close(got[live], expect[live])
    assert bool((got[live] < a1.amax((0, 2, 3))[live]).all())


def test_recorded_thresholds_feed_parallel_and_serial_methods():
    net, x = make_net(), data()
    th = record_thresholds(net, x)
    par = ls.convert(net, T=4, method="parallel", thresholds=th)
    ser = ls.convert(net, T=4, method="serial", thresholds=th)
    assert par(x[:5]).shape == ser(x[:5]).shape == (4, 5, 3)
    cal = ls.convert(net, T=4, method="calibrated", calib_data=x, calibrate=False,
                     search=False, progress=False)
    torch.testing.assert_close(cal(x[:5]), par(x[:5]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# DA-QCFS and its spiking twin
# ---------------------------------------------------------------------------------------------
def test_da_qcfs_matches_the_paper_formula():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 3, 5, 5, generator=g, dtype=torch.float64)
    th = torch.rand(3, 1, 1, generator=g, dtype=torch.float64) + 0.5
    psi = 0.1 * torch.randn(3, 1, 1, generator=g, dtype=torch.float64)
    phi = 0.1 * torch.randn(3, 1, 1, generator=g, dtype=torch.float64)
    T = 5
    expect = (th + phi) / T * torch.clamp(torch.floor(((z + psi) * T + th / 2) / th), 0, T)
    got = da_qcfs(z, th, T, psi, phi)
    # the two arithmetics may round differently exactly at a level boundary: allow a few
    assert (got - expect).abs().gt(1e-9).float().mean() < 1e-3
    q = DAQCFS(T, th, psi, phi)
    torch.testing.assert_close(q.psi, psi)
    torch.testing.assert_close(q.phi, phi)
    torch.testing.assert_close(q(z), got)
    # psi = phi = 0 is QCFS with L = T
    torch.testing.assert_close(da_qcfs(z, th[0, 0, 0], T), qcfs(z, th[0, 0, 0], T))


def _da_ann(snn) -> nn.Module:
    """The converted graph with every neuron replaced by the DA-QCFS activation it stands for
    (run on static [B, ...] inputs)."""

    class Act(nn.Module):
        def __init__(self, n: ParallelIF) -> None:
            super().__init__()
            self.q = DAQCFS(n.T, n.threshold, 0.0, 0.0)
            self.q.shift.copy_(n.shift)
            self.q.amplitude.copy_(n.amplitude)

        def forward(self, x, mode=None):
            return self.q(x)

    net = copy.deepcopy(snn.net)
    for name, n in snn.named_neurons():
        parent, _, leaf = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, leaf, Act(n))
    return net


@pytest.mark.parametrize("T", [1, 3, 8])
def test_channelwise_parallel_neurons_equal_the_calibrated_activation(T):
    net, x = make_net(), data()
    snn = ls.convert(net, T=T, method="calibrated", calib_data=pairs(x), progress=False)
    assert snn.fast_path_status()[0]
    neurons = snn.named_neurons()
    assert len(neurons) == 3
    for _, n in neurons:
        assert isinstance(n, ParallelIF) and n.threshold.numel() in (4, 16)
    da = _da_ann(snn)
    xt = data(40, seed=7)
    with torch.no_grad():
        ref = da(xt)
        fast = snn(xt, engine="fast")
        sim = snn(xt, engine="simulate")
    torch.testing.assert_close(fast.mean(0), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sim.mean(0), ref, rtol=1e-4, atol=1e-4)
    # spike counts seen by observers are the DA-QCFS levels
    counts = {}
    for name, n in neurons:
        n.add_observer(lambda m, s, u, name=name: counts.__setitem__(name, s.sum(0)))
    with torch.no_grad():
        snn(xt, engine="fast")
    assert set(counts) == {name for name, _ in neurons}
    for c in counts.values():
        assert bool(((c >= 0) & (c <= T) & (c == c.round())).all())


def test_calibration_fits_psi_and_phi_per_channel():
    net, x = make_net(), data(128)
    snn = ls.convert(net, T=2, method="calibrated", calib_data=x, progress=False)
    rows = calibration_summary(snn)
    assert [r["channels"] for r in rows] == [4, 4, 16]
    assert rows[0]["psi"] == 0.0  # first activation sees the exact ANN input
    assert rows[1]["psi"] > 0 and rows[2]["psi"] > 0  # upstream quantization moved the means
    assert any(r["phi"] > 0 for r in rows)


def _mean_output_error(snn, net, x) -> float:
    with torch.no_grad():
        return float((snn(x).mean(0) - net(x)).mean(0).abs().mean())


def test_calibration_reduces_the_mean_error_at_low_T():
    net, x = make_net(), data(256)
    raw = ls.convert(net, T=2, method="calibrated", calib_data=x, calibrate=False,
                     search=False, progress=False)
    cal = ls.convert(net, T=2, method="calibrated", calib_data=x, search=False,
                     progress=False)
    assert _mean_output_error(cal, net, x) < 0.5 * _mean_output_error(raw, net, x)


def _output_mse(snn, net, x) -> float:
    with torch.no_grad():
        return float(((snn(x, engine="fast").mean(0) - net(x)) ** 2).mean())


@pytest.mark.parametrize("T", [1, 2])
def test_refinement_reduces_the_output_error_and_keeps_exact_neurons(T):
    net, x = make_net(), data(256)
    kw = dict(calib_data=x, progress=False)
    cal = ls.convert(net, T=T, method="calibrated", **kw)
    ref = ls.convert(net, T=T, method="calibrated", refine_steps=60, refine_lr=0.01, **kw)
    assert _output_mse(ref, net, x) < 0.9 * _output_mse(cal, net, x)
    # the refined parameters are still channel-wise parallel neurons on the exact fast path,
    # equal to the DA-QCFS activation they stand for, in both engines
    assert ref.fast_path_status()[0]
    da = _da_ann(ref)
    xt = data(40, seed=7)
    with torch.no_grad():
        want = da(xt)
        torch.testing.assert_close(ref(xt, engine="fast").mean(0), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ref(xt, engine="simulate").mean(0), want, rtol=1e-4,
                                   atol=1e-4)
    for _, n in ref.named_neurons():
        assert bool((n.threshold > 0).all())


def test_refinement_is_deterministic():
    net, x = make_net(), data(128)
    a, b = (ls.convert(net, T=2, method="calibrated", calib_data=x, refine_steps=10,
                       progress=False) for _ in range(2))
    for (_, na), (_, nb) in zip(a.named_neurons(), b.named_neurons(), strict=True):
        assert torch.equal(na.threshold, nb.threshold) and torch.equal(na.shift, nb.shift)
        assert torch.equal(na.amplitude, nb.amplitude)


def test_threshold_search_reduces_the_error_at_T1():
    net, x = make_net(), data(256)
    plain = ls.convert(net, T=1, method="calibrated", calib_data=x, search=False,
                       progress=False)
    searched = ls.convert(net, T=1, method="calibrated", calib_data=x, search=True,
                          progress=False)
    with torch.no_grad():
        y = net(x)
        e_plain = float((plain(x).mean(0) - y).square().mean())
        e_search = float((searched(x).mean(0) - y).square().mean())
    assert e_search < e_plain
    th_p = torch.cat([n.threshold.reshape(-1) for _, n in plain.named_neurons()])
    th_s = torch.cat([n.threshold.reshape(-1) for _, n in searched.named_neurons()])
    assert bool((th_s <= th_p + 1e-6).all()) and bool((th_s < th_p).any())


@pytest.mark.parametrize("search", [False, True])
def test_least_squares_amplitude_minimises_each_channels_error(search):
    # one activation site on exact inputs: with the same quantiser, the least-squares
    # amplitude can only lower each channel's squared error (and with the search, its
    # candidates are scored with that amplitude, so the minimum is no larger either)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 6), nn.ReLU()).eval()
    x = torch.randn(512, 8)
    with torch.no_grad():
        ref = net(x)
        errs = {}
        for amp in ("mean", "ls"):
            snn = ls.convert(net, T=3, method="calibrated", calib_data=x, search=search,
                             amplitude=amp, progress=False)
            errs[amp] = (snn(x).mean(0) - ref).square().mean(0)
    assert bool((errs["ls"] <= errs["mean"] + 1e-7).all())
    assert bool((errs["ls"] < errs["mean"] - 1e-6).any())


def test_momentum_mode_with_zero_momentum_and_one_batch_equals_sequential():
    net, x = make_net(), data(64)
    a = ls.convert(net, T=3, method="calibrated", calib_data=x, progress=False)
    b = ls.convert(net, T=3, method="calibrated", calib_data=x, mode="momentum", momentum=0.0,
                   batch_size=64, progress=False)
    for (_, na), (_, nb) in zip(a.named_neurons(), b.named_neurons(), strict=True):
        torch.testing.assert_close(na.threshold, nb.threshold)
        torch.testing.assert_close(na.shift, nb.shift)
        torch.testing.assert_close(na.amplitude, nb.amplitude)


def test_dead_channel_emits_nothing():
    net, x = make_net(), data()
    with torch.no_grad():
        net.fc1.weight[3].zero_()
        net.fc1.bias[3] = -1.0
    snn = ls.convert(net, T=4, method="calibrated", calib_data=x, progress=False)
    name, n = snn.named_neurons()[-1]
    assert float(n.amplitude.reshape(-1)[3]) == 0.0
    assert bool(torch.isfinite(n.threshold).all()) and bool((n.threshold > 0).all())


def qcfs_net(levels: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), QCFS(levels=levels, threshold=1.0), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), QCFS(levels=levels, threshold=0.8), nn.Flatten(),
        nn.Linear(6 * 4 * 4, 16), QCFS(levels=levels, threshold=0.6), nn.Linear(16, 3))
    return net.eval()


def test_qcfs_net_at_L_equal_T_stays_lossless():
    net, x = qcfs_net(4), data(128)
    snn = ls.convert(net, T=4, method="calibrated", calib_data=x, progress=False)
    with torch.no_grad():
        torch.testing.assert_close(snn(x).mean(0), net(x), rtol=1e-5, atol=1e-5)
    ths = [float(n.threshold.reshape(-1)[0]) for _, n in snn.named_neurons()]
    assert ths == pytest.approx([1.0, 0.8, 0.6])  # the trained thresholds, per channel
    for row in calibration_summary(snn):
        assert row["psi"] < 1e-6 and row["phi"] < 1e-6


@pytest.mark.parametrize("T", [2, 3])
def test_qcfs_net_at_L_ne_T_calibration_reduces_the_mean_error(T):
    net, x = qcfs_net(8), data(256)
    cal = ls.convert(net, T=T, method="calibrated", calib_data=x, progress=False)
    par = ls.convert(net, T=T, method="parallel")
    assert _mean_output_error(cal, net, x) < _mean_output_error(par, net, x)


def test_config_validation():
    for bad in (dict(mode="ema"), dict(percentile=0), dict(percentile=101.0),
                dict(momentum=1.0), dict(batch_size=0), dict(fit="x"), dict(amplitude="x"),
                dict(refine_steps=-1), dict(refine_steps=True), dict(refine_steps=2.0),
                dict(refine_lr=0.0), dict(refine_lr=float("nan"))):
        with pytest.raises(ValueError):
            CalibrationConfig(**bad)


# ---------------------------------------------------------------------------------------------
# no data path: clear errors before any work
# ---------------------------------------------------------------------------------------------
class Exploding(nn.Module):
    """Counts forward calls: the checks must run before the model is ever run."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_net()
        self.calls = 0

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("bad, match", [
    (None, "calib_data"),
    ([], "no inputs"),
    (torch.empty(0, 1, 8, 8), "no samples"),
    ([torch.zeros(8, dtype=torch.long)], "labels"),
    ([(torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))], "labels"),
    (torch.rand(8, 8, 8), "dims"),
    ([{"image": torch.rand(2, 1, 8, 8)}], "dict"),
    ([torch.full((2, 1, 8, 8), float("nan"))], "NaN"),
    ([torch.rand(2, 3, 8, 8)], "cannot run"),
])
def test_no_data_path_fails_clearly(bad, match):
    net = make_net()
    with pytest.raises(ValueError, match=match):
        ls.convert(net, T=4, method="calibrated", calib_data=bad, progress=False)


def test_calibration_batches_limits_batches_and_samples():
    x = data(100)
    assert sum(b.shape[0] for b in calibration_batches(pairs(x, 10), max_batches=3)) == 30
    assert sum(b.shape[0] for b in calibration_batches(pairs(x, 32), max_samples=40)) == 40
    with pytest.raises(ValueError, match="max_samples"):
        calibration_batches(x, max_samples=0)


def test_old_limit_names_say_what_they_were_renamed_to():
    net, x = make_net(), data(32)
    with pytest.raises(ValueError, match="renamed 'max_samples'"):
        ls.convert(net, T=2, method="calibrated", calib_data=x, calib_images=16,
                   progress=False)


@pytest.mark.parametrize("kind", ["tensor", "pair", "TensorDataset", "DataLoader"])
def test_calibration_data_of_every_kind_gives_the_same_neurons(kind):
    net, x = make_net(), data(64)
    y = torch.zeros(64, dtype=torch.long)
    given = {
        "tensor": x,
        "pair": (x, y),
        "TensorDataset": torch.utils.data.TensorDataset(x, y),
        "DataLoader": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                  batch_size=16),
    }[kind]
    ref = ls.convert(net, T=2, method="calibrated", calib_data=x, progress=False)
    got = ls.convert(net, T=2, method="calibrated", calib_data=given, max_samples=64,
                     progress=False)
    for (_, a), (_, b) in zip(ref.named_neurons(), got.named_neurons(), strict=True):
        assert torch.equal(a.threshold, b.threshold) and torch.equal(a.shift, b.shift)
        assert torch.equal(a.amplitude, b.amplitude)


# ---------------------------------------------------------------------------------------------
# the theta/2 shift of parallel neurons for QCFS networks converted at T != L
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T, L", [(2, 8), (4, 8), (8, 4), (3, 5), (1, 4)])
def test_half_threshold_shift_makes_the_expected_error_zero_on_uniform_inputs(T, L):
    # for z ~ U[0, theta] the neuron's expected output is theta/2 + (shift - theta/2)/T and
    # QCFS(L) gives theta/2 for every L: the default shift theta/2 is unbiased for any T, L
    g = torch.Generator().manual_seed(T * 10 + L)
    theta = 1.7
    z = torch.rand(400_000, generator=g, dtype=torch.float64) * theta
    ann = qcfs(z, theta, L)
    neuron = ParallelIF(T, torch.tensor(theta, dtype=torch.float64))
    snn = neuron(z.unsqueeze(0).expand(T, -1), mode="sequence").mean(0)
    # |neuron - QCFS| <= theta/(2T) + theta/(2L) per sample: 5 standard errors of the mean
    tol = 5 * (theta / T + theta / L) / 2 / (3 * z.numel()) ** 0.5
    assert abs(float((snn - ann).mean())) < tol
    # any other shift is biased by (shift - theta/2)/T
    for shift in (0.0, 0.25 * theta, theta):
        other = ParallelIF(T, torch.tensor(theta, dtype=torch.float64),
                           shift=torch.tensor(shift, dtype=torch.float64))
        out = other(z.unsqueeze(0).expand(T, -1), mode="sequence").mean(0)
        err = float((out - ann).mean())
        assert err == pytest.approx((shift - theta / 2) / T, abs=tol)
        assert abs(err) > 10 * tol
