"""One spike-statistics path: every way leansnn reports a firing rate gives the same number.

Regression for issue 14: ``train.evaluate(...)["firing_rate"]`` summed the spike amplitudes
θ of converted neurons (0.061 where the truth was 0.031). Monitor, ``evaluate``,
``evaluate_snn``, ``analyze``, the training loop's test evaluation, ``leansnn analyze`` and
``leansnn train-snn`` now read one counter (:mod:`leansnn.evaluation`), on a converted QCFS
net, a LIF-SNN and a LIF-SNN with ASA. Also: one batching contract for fit / evaluate /
energy (tensor, ``(x, y)``, ``TensorDataset``, ``DataLoader``).
"""

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import leansnn as ls
from leansnn.analysis import Monitor, analyze, energy
from leansnn.base.batching import BatchError
from leansnn.cli import main
from leansnn.convert import FiringCounter, evaluate_snn
from leansnn.evaluation import SpikeCounter, evaluate
from leansnn.neuron import SpikingNeuron
from leansnn.train import TrainConfig, fit
from leansnn.train import evaluate as train_evaluate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

B = 8  # batch size used by every path (spikes do not depend on it, floats might)


def _converted():
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", activation=ls.QCFS(levels=4)).eval()
    return ann, ls.convert(ann, T=4)


def _lif(attention: str):
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", num_classes=10, in_channels=1, T=4,
                           attention=attention, input_size=(28, 28), width=4, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    fit(net, (x, y), None, TrainConfig(epochs=1, batch_size=8, seed=0), progress=False)
    return net.eval()


def _data(scale: float):
    g = torch.Generator().manual_seed(2)
    return torch.rand(20, 1, 28, 28, generator=g) * scale, torch.randint(0, 10, (20,),
                                                                         generator=g)


def _monitor(model, x) -> dict:
    with Monitor(model) as mon, torch.no_grad():
        for i in range(0, len(x), B):
            model(x[i:i + B])
    return mon.summary()


def _amplitude_sum(model, x) -> float:
    """What the old forward-hook counters measured: the sum of the emitted values."""
    tot = slots = 0.0

    def hook(module, inputs, out):
        nonlocal tot, slots
        tot += float(out.sum())
        slots += out.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, SpikingNeuron)]
    with torch.no_grad():
        for i in range(0, len(x), B):
            model(x[i:i + B], engine="simulate")
    for h in hooks:
        h.remove()
    return tot / slots


@pytest.mark.parametrize("kind", ["converted", "lif", "lif_asa"])
def test_every_path_reports_the_same_rates(kind):
    if kind == "converted":
        _, model = _converted()
        x, y = _data(40.0)  # QCFS thresholds start at 8: drive the untrained net harder
    else:
        model = _lif("none" if kind == "lif" else "asa")
        x, y = _data(3.0)
    mon = _monitor(model, x)
    truth = mon["nasfr"]
    assert 0.0 < truth < 1.0
    layer_truth = {k: v["rate"] for k, v in mon["layers"].items()}
    ev = evaluate(model, (x, y), batch_size=B)
    assert ev["firing_rate"] == truth and ev["layer_rates"] == layer_truth
    assert train_evaluate(model, TensorDataset(x, y), batch_size=B)["firing_rate"] == truth
    snn = evaluate_snn(model, TensorDataset(x, y), batch_size=B)
    assert snn["firing_rate"] == truth and snn["layer_rates"] == layer_truth
    assert snn["accuracy"] == ev["accuracy"] == snn["accuracy_per_step"][-1]
    res = analyze(model, (x, y), batch_size=B)
    assert res["monitor"]["nasfr"] == truth and res["accuracy"] == ev["accuracy"]
    with SpikeCounter(model) as sc, FiringCounter(model) as fc, torch.no_grad():
        for i in range(0, len(x), B):
            model(x[i:i + B])
    assert sc.rate == fc.rate == truth
    summ = sc.summary()["layers"]
    for name, lay in mon["layers"].items():
        for key in ("rate_per_step", "rate_per_channel", "rate_per_step_channel", "spikes"):
            assert summ[name][key] == lay[key]
    if kind == "converted":  # the bug: spikes of amplitude θ (= 8 here) were summed as values
        assert _amplitude_sum(model, x) > 4 * truth


def test_training_time_counter_does_not_ask_for_potentials():
    net = ls.models.create("lif_snn_a", num_classes=10, in_channels=1, T=2,
                           input_size=(8, 8), width=4, dropout=0.0)
    seen = []
    lif = net.lif1
    lif.add_observer(lambda m, s, u: seen.append(u), potential=False)
    with SpikeCounter(net):
        assert not lif.wants_potential
        net(torch.rand(3, 1, 8, 8))
    assert seen == [None]
    with Monitor(net, potentials=False):
        assert not lif.wants_potential
    with Monitor(net):
        assert lif.wants_potential
        net(torch.rand(3, 1, 8, 8))
    assert seen[-1] is not None
    assert not lif.wants_potential


@pytest.mark.slow
def test_cli_analyze_and_train_snn_report_the_same_rates(tiny_idx, tmp_path):
    test = ls.data.fashion_mnist("test", root=tiny_idx)
    xs = torch.stack([test[i][0] for i in range(len(test))])
    common = ["--data", "fashion_mnist", "--root", str(tiny_idx), "--threads", "1"]
    # train-snn: the reported NASFR and layer rates are those of the saved model on the test
    # set (batch 256 in fit's evaluation)
    js, out = tmp_path / "t.json", tmp_path / "snn.lsnn"
    assert main(["train-snn", "--T", "2", "--batch-size", "16", "--width", "4",
                 "--epochs", "1", "--attention", "asa", "--quiet", "--out", str(out),
                 "--json", str(js), *common]) == 0
    final = json.loads(js.read_text())["final"]
    snn = ls.load(out).eval()
    with Monitor(snn) as mon, torch.no_grad():
        snn(xs)
    s = mon.summary()
    assert final["nasfr"] == s["nasfr"]
    assert final["layer_rates"] == {k: v["rate"] for k, v in s["layers"].items()}
    # analyze: a LIF-SNN and a converted QCFS net (--convert) against the Python paths
    ann, conv = _converted()
    ls.save(ann, tmp_path / "ann.lsnn")
    for ckpt, extra, model in ((out, [], snn),
                               (tmp_path / "ann.lsnn", ["--convert", "parallel", "--T", "4"],
                                conv)):
        aj = tmp_path / "a.json"
        assert main(["analyze", str(ckpt), "--out", str(tmp_path / "rep"), "--no-report",
                     "--batch-size", str(B), "--json", str(aj), *extra, *common]) == 0
        nasfr = json.loads(aj.read_text())["models"][0]["monitor"]["nasfr"]
        assert nasfr == evaluate(model, xs, batch_size=B)["firing_rate"]


def _forms(x, y):
    return {
        "pair": (x, y),
        "list": [x, y],
        "TensorDataset": TensorDataset(x, y),
        "DataLoader": DataLoader(TensorDataset(x, y), batch_size=5),
        "batches": [(x[:5], y[:5]), (x[5:], y[5:])],
    }


def test_one_batching_contract_for_fit_evaluate_energy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(10, 1, 8, 8, generator=g) * 3, torch.randint(0, 10, (10,), generator=g)

    def net():
        torch.manual_seed(0)
        return ls.models.create("lif_snn_a", num_classes=10, in_channels=1, T=2,
                                input_size=(8, 8), width=4, dropout=0.0)

    cfg = TrainConfig(epochs=1, batch_size=5, seed=0, schedule="none")
    losses, evals, energies = {}, {}, {}
    for name, data in _forms(x, y).items():
        model = net()
        losses[name] = fit(model, data, data, cfg, progress=False)["history"][0]
        ref = net()
        evals[name] = evaluate(ref, data, batch_size=5)
        energies[name] = energy(ref, data, batch_size=5)["sops"]
        assert evals[name]["n"] == 10
    first = next(iter(evals.values()))
    assert all(e == first for e in evals.values())
    assert len(set(energies.values())) == 1
    # fit shuffles only the data it batches itself; loaders / lists are read as given
    for a, b in (("pair", "list"), ("pair", "TensorDataset")):
        assert losses[a]["loss"] == pytest.approx(losses[b]["loss"])
    # a bare tensor of inputs: evaluated (no accuracy) and counted, but not trainable
    ev = evaluate(net(), x, batch_size=5)
    assert ev["accuracy"] is None and ev["firing_rate"] == first["firing_rate"]
    assert energy(net(), x, batch_size=5)["sops"] == energies["pair"]
    with pytest.raises(BatchError, match="labels"):
        fit(net(), x, None, cfg, progress=False)
    # the limits are spelled the same everywhere
    assert evaluate(net(), (x, y), batch_size=4, max_samples=6)["n"] == 6
    assert evaluate(net(), (x, y), batch_size=4, max_batches=1)["n"] == 4
    assert energy(net(), (x, y), batch_size=4, max_samples=6)["inputs"] == 6
    assert analyze(net(), (x, y), batch_size=4, max_samples=5)["inputs"] == 5
