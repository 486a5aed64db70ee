"""Every data set through the CLI, end to end, on multi-file folders written in the formats'
exact byte layouts (the fixtures of test_datasets_events.py / test_datasets_static.py).

What is verified per data set:

* ``cifar10``: ``train-ann --data cifar10`` builds a 3-channel, 10-class ResNet-20, records the
  data set in the checkpoint; ``convert`` evaluates on the recorded data set (says so), and
  refuses Fashion-MNIST with an error naming both shapes.
* ``nmnist``, ``dvs_gesture``, ``cifar10_dvs``, ``ncaltech101``: ``train-snn`` with
  ``--dt-ms`` trains one tiny epoch; the model's channels, classes and input size come from
  the data; the reported test accuracy is the per-recording vote, equal to recomputing
  ``ls.data.vote`` over the windows with the saved model, beside the per-window accuracy.
* ``analyze`` on the N-MNIST checkpoint reuses the stored settings and reproduces the
  training run's voted accuracy exactly.
* bad input: no root, a wrong kind, a flag the data set does not take, a corrupt file with
  and without ``--skip-bad-files`` -- exit 2 and one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_datasets_events import (  # noqa: F401  (session fixtures)
    caltech_root,
    cifar_dvs_root,
    gesture_root,
    nmnist_bytes,
    nmnist_root,
    rand_events,
)
from test_datasets_static import cifar10_root  # noqa: F401

import leansnn as ls
from leansnn.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
QCFS4 = str(Path(__file__).resolve().parents[1] / "pretrained" / "small_cnn_qcfs4.lsnn")

SNN = ["--model", "lif_snn_a", "--width", "4", "--epochs", "1", "--batch-size", "4",
       "--quiet", "--threads", "1", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LEANSNN_DATA", raising=False)


def _one_line_error(capsys, command, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"leansnn {command}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


def _voted(model, data_name, root, **settings):
    """Per-recording and per-window accuracy recomputed with the public data API."""
    test = ls.data.DATASETS[data_name].load("test", root=root, progress=False, **settings)
    view = test.windows()
    scores, recs, hits = [], [], 0
    model.eval()
    with torch.no_grad():
        for x, y, rec in view.batches(7):
            s = model(x).mean(0)
            scores.append(s)
            recs.append(rec)
            hits += int((s.argmax(1) == y).sum())
    pred = ls.data.vote(torch.cat(scores), torch.cat(recs), view.num_recordings)
    return float((pred == test.labels).float().mean()), hits / len(view), len(test)


# --- static: CIFAR-10 -> ResNet-20 -> conversion ---------------------------------------------
def test_cifar10_train_ann_and_convert(cifar10_root, tmp_path, tiny_idx, capsys):  # noqa: F811
    root = str(cifar10_root[0])
    out, js = tmp_path / "r20.lsnn", tmp_path / "conv.json"
    assert main(["train-ann", "--data", "cifar10", "--root", root, "--model", "resnet20",
                 "--activation", "qcfs", "--levels", "2", "--epochs", "1", "--batch-size", "8",
                 "--out", str(out), "--threads", "1"]) == 0
    ann = ls.load(out)
    assert ann.leansnn_config["kwargs"]["in_channels"] == 3
    assert ann.leansnn_config["kwargs"]["num_classes"] == 10
    data = ann.leansnn_meta["meta"]["data"]
    assert data["name"] == "cifar10" and data["kind"] == "static"
    assert data["augment"] == "standard"
    capsys.readouterr()
    # convert: the data set comes from the checkpoint (no --data)
    assert main(["convert", str(out), "--root", root, "--T", "2", "--method", "parallel",
                 "--json", str(js), "--threads", "1"]) == 0
    assert "data: cifar10" in capsys.readouterr().out
    table = json.loads(js.read_text())
    assert table["data"]["name"] == "cifar10" and table["test_images"] == 6
    assert len(table["rows"]) == 1 and 0 <= table["rows"][0]["accuracy"] <= 1
    # the same checkpoint on Fashion-MNIST: an error naming both shapes
    assert main(["convert", str(out), "--data", "fashion_mnist", "--root", str(tiny_idx),
                 "--T", "2"]) == 2
    _one_line_error(capsys, "convert", "in_channels=3", "in_channels=1", "fashion_mnist")


# --- events: train-snn with the paper's protocol ----------------------------------------------
EVENT_CASES = {
    # name: (fixture, extra flags, (in_channels, num_classes, input_size), settings to reload)
    "nmnist": ("nmnist_root", ["--T", "4", "--size", "32", "--dt-ms", "40"], (2, 10, [32, 32]),
               dict(T=4, size=(32, 32), dt_ms=40.0)),
    "dvs_gesture": ("gesture_root", ["--T", "4", "--size", "32", "--dt-ms", "100"],
                    (2, 11, [32, 32]), dict(T=4, size=(32, 32), dt_ms=100.0)),
    "cifar10_dvs": ("cifar_dvs_root", ["--T", "3", "--size", "32", "--dt-ms", "200",
                                       "--test-fraction", "0.4"],
                    (2, 10, [32, 32]), dict(T=3, size=(32, 32), dt_ms=200.0, test_fraction=0.4)),
    "ncaltech101": ("caltech_root", ["--T", "3", "--size", "44", "60", "--dt-ms", "50",
                                     "--test-fraction", "0.4"],
                    (2, 3, [44, 60]), dict(T=3, size=(44, 60), dt_ms=50.0, test_fraction=0.4)),
}


@pytest.mark.parametrize("name", sorted(EVENT_CASES))
def test_train_snn_event_sets_vote(name, request, tmp_path):
    fixture, flags, (cin, k, size), settings = EVENT_CASES[name]
    root = request.getfixturevalue(fixture)[0]
    out, js = tmp_path / "m.lsnn", tmp_path / "m.json"
    argv = ["train-snn", "--data", name, "--root", str(root), *flags, *SNN, "--out", str(out),
            "--json", str(js), "--vote", "majority"]
    assert main(argv) == 0
    rep = json.loads(js.read_text())
    f = rep["final"]
    assert f["vote"] == "majority"
    assert rep["data"]["name"] == name and rep["data"]["settings"]["dt_ms"] == settings["dt_ms"]
    model = ls.load(out)
    kw = model.leansnn_config["kwargs"]
    assert (kw["in_channels"], kw["num_classes"]) == (cin, k)
    assert list(kw.get("input_size", [32, 32])) == size
    acc, win_acc, n = _voted(model, name, root, **settings)
    assert f["test_accuracy"] == pytest.approx(acc)
    assert f["test_window_accuracy"] == pytest.approx(win_acc)
    assert model.leansnn_meta["meta"]["data"]["settings"]["T"] == settings["T"]


def test_analyze_uses_the_stored_settings(nmnist_root, tmp_path, capsys):  # noqa: F811
    root = str(nmnist_root[0])
    out, js = tmp_path / "m.lsnn", tmp_path / "m.json"
    assert main(["train-snn", "--data", "nmnist", "--root", root, "--T", "4", "--size", "32",
                 "--dt-ms", "40", *SNN, "--out", str(out), "--json", str(js),
                 "--vote", "sum"]) == 0
    trained = json.loads(js.read_text())["final"]
    capsys.readouterr()
    rep = tmp_path / "rep"
    assert main(["analyze", str(out), "--root", root, "--out", str(rep), "--no-report",
                 "--vote", "sum", "--json", "-", "--threads", "1"]) == 0
    cap = capsys.readouterr()
    assert "nmnist (T=4, size=32x32, dt_ms=40.0" in cap.err
    assert "from the checkpoint" in cap.err and "sum vote" in cap.err
    res = json.loads(cap.out)["models"][0]
    assert res["data"]["name"] == "nmnist" and res["data"]["from"]["dt_ms"] == "checkpoint"
    assert res["accuracy"] == pytest.approx(trained["test_accuracy"])
    assert res["window_accuracy"] == pytest.approx(trained["test_window_accuracy"])
    assert res["monitor"]["nasfr"] == pytest.approx(trained["nasfr"])
    assert res["energy"]["energy_pj"] > 0
    # an override is taken and said
    assert main(["analyze", str(out), "--root", root, "--out", str(rep), "--no-report",
                 "--dt-ms", "80", "--threads", "1"]) == 0
    assert "dt_ms from the command line" in capsys.readouterr().out


def test_train_snn_static_cifar10(cifar10_root, tmp_path):  # noqa: F811
    out = tmp_path / "s.lsnn"
    assert main(["train-snn", "--data", "cifar10", "--root", str(cifar10_root[0]), "--T", "2",
                 *SNN, "--out", str(out), "--augment", "standard"]) == 0
    kw = ls.load(out).leansnn_config["kwargs"]
    assert (kw["in_channels"], kw["num_classes"], kw["T"]) == (3, 10, 2)


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needles", [
    (["train-snn", "--data", "nmnist"], ["nmnist", "LEANSNN_DATA"]),
    (["train-ann", "--data", "nmnist", "--out", "{tmp}/m.lsnn"],
     ["nmnist is an event data set", "train-ann takes static image data sets", "cifar10"]),
    (["convert", "{qcfs4}", "--data", "dvs_gesture"], ["dvs_gesture", "static"]),
    (["analyze", "{qcfs4}", "--convert", "parallel", "--T", "2", "--data", "nmnist",
      "--out", "{tmp}/r"], ["nmnist is an event data set", "analyze takes static"]),
    (["train-snn", "--data", "cifar10", "--dt-ms", "10"], ["--dt-ms", "cifar10 does not take"]),
    (["train-snn", "--data", "imagenet"], ["unknown data set", "dvs_gesture"]),
    (["train-snn", "--data", "nmnist", "--augment", "standard", "--root", "{tmp}"],
     ["--augment standard", "static data sets only"]),
    (["train-snn", "--data", "fashion_mnist", "--vote", "sum", "--root", "{tiny}"],
     ["--vote sum"]),
])
def test_bad_data_arguments(argv, needles, tmp_path, tiny_idx, capsys):
    argv = [a.format(tmp=tmp_path, tiny=tiny_idx, qcfs4=QCFS4) for a in argv]
    assert main(argv + ["--epochs", "1"] if argv[0].startswith("train") else argv) == 2
    _one_line_error(capsys, argv[0], *needles)


def test_corrupt_file_with_and_without_skip(tmp_path, capsys):
    rng = __import__("numpy").random.default_rng(7)
    root = tmp_path / "nm"
    for split in ("Train", "Test"):
        for d in range(2):
            (root / split / str(d)).mkdir(parents=True)
            for k in range(3):
                (root / split / str(d) / f"{k}.bin").write_bytes(
                    nmnist_bytes(rand_events(rng, 60, 34, 34)))
    bad = root / "Train" / "1" / "bad.bin"
    bad.write_bytes(nmnist_bytes(rand_events(rng, 4, 34, 34))[:-3])
    argv = ["train-snn", "--data", "nmnist", "--root", str(root), "--T", "2", "--size", "32",
            *SNN]
    assert main(argv) == 2
    _one_line_error(capsys, "train-snn", "bad.bin", "byte offset")
    assert main(argv + ["--skip-bad-files"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "skipped 1 bad file" in err and "bad.bin" in err


def test_data_sets_listed_by_kind():
    from leansnn.cli import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    helps = {n: next(x.help for x in p._actions if "--data" in x.option_strings)
             for n, p in sub.choices.items() if n in ("train-ann", "convert", "train-snn",
                                                     "analyze")}
    for n in ("cifar10", "cifar100", "image_folder", "fashion_mnist"):
        assert all(n in h for h in helps.values())
    for n in ("nmnist", "dvs_gesture", "cifar10_dvs", "ncaltech101"):
        assert n in helps["train-snn"] and n in helps["analyze"]
        assert n not in helps["train-ann"] and n not in helps["convert"]
