"""The CLI's bad-input corpus (issue 15): every user mistake ends with exit code 2 and exactly
one line on stderr naming the problem (``leansnn COMMAND: error: ...``), never a traceback.

Each case runs ``leansnn.cli.main`` in-process. The data (a tiny Fashion-MNIST in idx format)
and the checkpoints (tiny ANNs and SNNs, and files with nonsense metadata) are built once per
session. Cases are grouped by class; ``CLASSES`` counts them.
"""

from __future__ import annotations

import errno
import importlib
import json

import numpy as np
import pytest
import torch
from conftest import write_idx

import leansnn as ls
from leansnn.cli import main, user_error

MAGIC = "leansnn-checkpoint"


# -- fixtures, built once ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input_fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return d


def _raw(path, config, state_dict=None, *, meta_json=None, version=1):
    info = {"config": config, "leansnn_version": ls.__version__, "note": "", "meta": {}}
    payload = {"magic": MAGIC, "format_version": version,
               "meta_json": json.dumps(info) if meta_json is None else meta_json}
    if state_dict is not None:
        payload["state_dict"] = state_dict
    torch.save(payload, path)
    return path


@pytest.fixture(scope="session")
def ck(tmp_path_factory):
    """name -> checkpoint path."""
    d = tmp_path_factory.mktemp("bad_input_ckpts")
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", width=4, hidden=16,
                           activation=ls.QCFS(levels=2, threshold=1.0))
    relu = ls.models.create("small_cnn", width=4, hidden=16)
    snn = ls.models.create("lif_snn_a", in_channels=1, T=2, input_size=(28, 28), width=2,
                           hidden=8)
    snn_ev = ls.models.create("lif_snn_a", T=2, width=2, hidden=8)
    out = {"ann": ls.save(ann, d / "ann.lsnn"), "relu": ls.save(relu, d / "relu.lsnn"),
           "snn": ls.save(snn, d / "snn.lsnn"), "snn_ev": ls.save(snn_ev, d / "snn_ev.lsnn"),
           "conv": ls.save(ls.convert(ann, T=2, method="serial"), d / "conv.lsnn")}
    sd = ann.state_dict()
    cfg = ann.leansnn_config
    bad = {
        "unknown_arg": {**cfg, "kwargs": {**cfg["kwargs"], "colour": 3}},
        "mistyped_arg": {**cfg, "kwargs": {**cfg["kwargs"], "width": "wide"}},
        "unknown_model": {"name": "no_such_net", "kwargs": {}},
        "config_list": [1, 2, 3],
        "config_str": "small_cnn",
        "kwargs_list": {"name": "small_cnn", "kwargs": [4]},
    }
    for name, c in bad.items():
        out[name] = _raw(d / f"{name}.lsnn", c, sd)
    out["no_state"] = _raw(d / "no_state.lsnn", cfg)
    out["wrong_weights"] = _raw(d / "wrong_weights.lsnn", cfg, relu.state_dict() | {
        "net.0.weight": torch.zeros(1)})
    out["no_config"] = _raw(d / "no_config.lsnn", None, sd)
    out["nested"] = _raw(d / "nested.lsnn", None, sd, meta_json="[" * 100_000 + "]" * 100_000)
    out["bad_json"] = _raw(d / "bad_json.lsnn", None, sd, meta_json="{not json")
    out["newer"] = _raw(d / "newer.lsnn", cfg, sd, version=99)
    (d / "garbage.lsnn").write_bytes(b"\x00garbage")
    (d / "empty.lsnn").write_bytes(b"")
    torch.save({"w": torch.zeros(2)}, d / "plain.pt")
    out.update(garbage=d / "garbage.lsnn", empty=d / "empty.lsnn", plain=d / "plain.pt",
               missing=d / "missing.lsnn", folder=d)
    return {k: str(v) for k, v in out.items()}


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LEANSNN_DATA", raising=False)


def _run(argv, capsys, code=2):
    got = main(argv)
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert got == code, (argv, got, err)
    return err, cap.out


def _one_line(err, command, needles):
    assert "Traceback" not in err, err
    assert "\n" not in err, err
    assert err.startswith(f"leansnn {command}: error: "), err
    for n in needles:
        assert n in err, (n, err)


def _check(argv, needles, ck, root, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, root=root, **ck) for a in argv]
    err, _ = _run(argv + ["--quiet"] if argv[0] != "bench" else argv, capsys)
    _one_line(err, argv[0], [n.format(**ck) for n in needles])


# -- 1. checkpoint files: missing, not a checkpoint, nonsense metadata ---------------------------
CHECKPOINT_FILES = [
    (["convert", "{missing}"], ["missing.lsnn", "does not exist"]),
    (["analyze", "{missing}", "--out", "{tmp}/r"], ["missing.lsnn"]),
    (["export", "{missing}", "--out", "{tmp}/x.nir"], ["missing.lsnn"]),
    (["convert", "{folder}"], ["folder"]),
    (["convert", "{garbage}"], ["garbage.lsnn", "not a leansnn checkpoint"]),
    (["analyze", "{empty}", "--out", "{tmp}/r"], ["empty.lsnn"]),
    (["export", "{plain}", "--out", "{tmp}/x.nir"], ["plain.pt", "not a leansnn checkpoint"]),
    (["convert", "{unknown_arg}"], ["unknown_arg.lsnn"]),
    (["analyze", "{mistyped_arg}", "--out", "{tmp}/r"], ["mistyped_arg.lsnn"]),
    (["export", "{unknown_model}", "--out", "{tmp}/x.nir"], ["unknown_model.lsnn"]),
    (["convert", "{config_list}"], ["config_list.lsnn"]),
    (["convert", "{config_str}"], ["config_str.lsnn"]),
    (["analyze", "{kwargs_list}", "--out", "{tmp}/r"], ["kwargs_list.lsnn"]),
    (["convert", "{no_state}"], ["no_state.lsnn"]),
    (["convert", "{wrong_weights}"], ["wrong_weights.lsnn"]),
    (["export", "{no_config}", "--out", "{tmp}/x.nir"], ["no_config.lsnn"]),
    (["convert", "{nested}"], ["nested.lsnn"]),
    (["analyze", "{bad_json}", "--out", "{tmp}/r"], ["bad_json.lsnn"]),
    (["convert", "{newer}"], ["newer.lsnn"]),
    (["train-ann", "--out", "{tmp}/m.lsnn", "--init-from", "{garbage}", "--root", "{root}",
      "--epochs", "1"], ["garbage.lsnn"]),
]

# -- 2. a checkpoint of the wrong kind for the command ------------------------------------------
WRONG_KIND = [
    (["convert", "{snn}"], ["snn.lsnn", "directly trained SNN", "convert takes an ANN"]),
    (["convert", "{conv}"], ["conv.lsnn", "converted SNN", "already converted"]),
    (["analyze", "{ann}", "--out", "{tmp}/r"], ["ann.lsnn", "an ANN", "--convert METHOD --T"]),
    (["analyze", "{snn}", "--convert", "serial", "--T", "2", "--out", "{tmp}/r"],
     ["snn.lsnn", "already an SNN"]),
    (["export", "{ann}", "--out", "{tmp}/x.nir"], ["an ANN", "--convert serial --T"]),
    (["export", "{snn}", "--convert", "serial", "--T", "2", "--out", "{tmp}/x.nir"],
     ["directly trained SNN"]),
    (["export", "{relu}", "--convert", "serial", "--T", "2", "--out", "{tmp}/x.nir"],
     ["ReLU ANN", "record_thresholds"]),
    (["train-ann", "--model", "lif_snn_a", "--out", "{tmp}/m.lsnn", "--root", "{root}"],
     ["lif_snn_a is an SNN", "train-snn"]),
    (["train-snn", "--model", "small_cnn", "--data", "fashion_mnist", "--root", "{root}"],
     ["small_cnn is an ANN", "train-ann"]),
    (["train-snn", "--data", "fashion_mnist", "--root", "{root}", "--checkpoint", "{ann}",
      "--width", "2", "--T", "2"], ["an ANN", "directly trained SNN", "--no-resume"]),
    (["train-ann", "--out", "{tmp}/m.lsnn", "--root", "{root}", "--checkpoint", "{snn}",
      "--epochs", "1"], ["directly trained SNN", "an ANN"]),
    (["train-ann", "--out", "{tmp}/m.lsnn", "--root", "{root}", "--init-from", "{snn}",
      "--epochs", "1"], ["snn.lsnn", "directly trained SNN"]),
]

# -- 3. option values -------------------------------------------------------------------------
BAD_VALUES = [
    (["convert", "{ann}", "--T", "0"], ["--T must be >= 1"]),
    (["convert", "{ann}", "--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["convert", "{ann}", "--threads", "0"], ["--threads"]),
    (["convert", "{ann}", "--test-images", "0"], ["--test-images must be >= 1"]),
    (["convert", "{ann}", "--refine-steps", "-1"], ["--refine-steps"]),
    (["convert", "{ann}", "--method", "magic"], ["unknown method", "magic"]),
    (["convert", "{ann}", "--device", "cuda"], ["--device cuda"]),
    (["train-snn", "--T", "0"], ["--T must be >= 1"]),
    (["train-snn", "--data", "fashion_mnist", "--root", "{root}", "--width", "0"],
     ["--width must be >= 1"]),
    (["train-snn", "--epochs", "0"], ["--epochs must be >= 1"]),
    (["train-snn", "--resume", "--no-resume", "--checkpoint", "{tmp}/c"], ["contradict"]),
    (["train-snn", "--resume"], ["--resume needs --checkpoint"]),
    (["train-ann", "--out", "{tmp}/m.lsnn", "--levels", "0"], ["--levels must be >= 1"]),
    (["train-ann", "--out", "{tmp}/m.lsnn", "--resume", "--no-resume"], ["contradict"]),
    (["train-ann", "--model", "nope", "--out", "{tmp}/m.lsnn", "--root", "{root}"],
     ["unknown model 'nope'"]),
    (["demo", "--T", "2", "-1"], ["--T must be >= 1"]),
    (["demo", "--test-images", "0"], ["--test-images must be >= 1"]),
    (["analyze", "{snn}", "--out", "{tmp}/r", "--test-images", "0"], ["--test-images"]),
    (["analyze", "{snn}", "--out", "{tmp}/r", "--batch-size", "0"], ["--batch-size"]),
    (["analyze", "{ann}", "--out", "{tmp}/r", "--convert", "parallel"], ["--convert needs --T"]),
    (["analyze", "{snn}", "{snn}", "{snn}", "--out", "{tmp}/r"], ["one or two checkpoints"]),
    (["analyze", "{snn}", "--out", "{tmp}/r", "--labels", "a", "b"], ["--labels needs 1"]),
    (["analyze", "{ann}", "--out", "{tmp}/r", "--convert", "a", "b", "c", "--T", "2"],
     ["--convert takes one method"]),
    (["export", "{snn}", "--out", "{tmp}/x.nir", "--input-shape", "0", "28", "28"],
     ["--input-shape must be positive"]),
    (["export", "{snn}", "--out", "{tmp}/x.nir", "--dt", "-1"], ["--dt must be a positive"]),
    (["export", "{snn}", "--out", "{tmp}/x.nir", "--T", "4"], ["give --convert METHOD"]),
    (["export", "{ann}", "--out", "{tmp}/x.nir", "--convert", "serial"],
     ["--convert needs --T"]),
    (["export", "{snn}", "--out", "{tmp}/x.nir", "--threads", "0"], ["--threads"]),
    (["bench", "no_such_bench"], ["unknown benchmark"]),
]

# -- 4. data: unknown or wrong-kind sets, settings they do not take, models they do not fit -----
BAD_DATA = [
    (["convert", "{ann}", "--data", "nope"], ["unknown data set"]),
    (["convert", "{ann}", "--data", "nmnist"], ["event data set", "convert takes static"]),
    (["train-ann", "--out", "{tmp}/m.lsnn", "--data", "event_fashion_mnist"],
     ["event data set"]),
    (["convert", "{ann}", "--root", "{root}", "--size", "14"], ["--size", "does not take"]),
    (["convert", "{ann}", "--root", "{root}", "--size", "1", "2", "3"], ["--size takes S"]),
    (["analyze", "{snn}", "--out", "{tmp}/r", "--root", "{root}", "--data", "fashion_mnist",
      "--dt-ms", "5"], ["--dt-ms", "does not take"]),
    (["train-snn", "--root", "{root}", "--augment", "cutout"], ["--augment cutout"]),
    (["train-snn", "--data", "fashion_mnist", "--root", "{root}", "--vote", "sum"],
     ["--vote sum"]),
    (["convert", "{ann}", "--root", "{tmp}/nowhere"], ["nowhere", "does not exist"]),
    (["analyze", "{snn_ev}", "--out", "{tmp}/r", "--root", "{root}", "--data",
      "fashion_mnist"], ["in_channels=2", "in_channels=1"]),
    (["analyze", "{snn}", "--out", "{tmp}/r", "--root", "{root}", "--data",
      "event_fashion_mnist", "--test-images", "4"], ["in_channels=1", "in_channels=2"]),
    (["export", "{snn}", "--out", "{tmp}/x.nir", "--input-shape", "3", "28", "28"],
     ["1 channel", "got 3"]),
]


@pytest.mark.parametrize("argv, needles", CHECKPOINT_FILES)
def test_checkpoint_files(argv, needles, ck, root, tmp_path, capsys):
    _check(argv, needles, ck, root, tmp_path, capsys)


@pytest.mark.parametrize("argv, needles", WRONG_KIND)
def test_wrong_kind(argv, needles, ck, root, tmp_path, capsys):
    _check(argv, needles, ck, root, tmp_path, capsys)


@pytest.mark.parametrize("argv, needles", BAD_VALUES)
def test_bad_values(argv, needles, ck, root, tmp_path, capsys):
    _check(argv, needles, ck, root, tmp_path, capsys)


@pytest.mark.parametrize("argv, needles", BAD_DATA)
def test_bad_data(argv, needles, ck, root, tmp_path, capsys):
    _check(argv, needles, ck, root, tmp_path, capsys)


# -- 5. resources and raw errors from below: full disk, memory, torch input errors -------------
def _raise(exc):
    def f(*a, **k):
        raise exc
    return f


ENOSPC = OSError(errno.ENOSPC, "No space left on device")
ALLOC = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not "
                     "enough memory: you tried to allocate 1099511627776 bytes.")
CHANNELS = RuntimeError("Given groups=1, weight of size [4, 1, 3, 3], expected input"
                        "[8, 3, 28, 28] to have 1 channels, but got 3 channels instead")
RESOURCES = [  # (what to patch, replacement, argv, needles)
    ("leansnn.base.io.os.replace", _raise(ENOSPC), ["export", "{snn}", "--out", "{tmp}/x.nir"],
     ["disk is full"]),
    ("leansnn.commands._common.Path.write_text", _raise(ENOSPC),
     ["export", "{snn}", "--out", "{tmp}/x.nir", "--json", "{tmp}/x.json"], ["disk is full"]),
    ("torch.save", _raise(ENOSPC), ["train-ann", "--out", "{tmp}/m.lsnn", "--root", "{root}",
                                    "--epochs", "1", "--train-images", "32", "--batch-size", "16",
                                    "--test-images", "8"], ["disk is full"]),
    ("leansnn.convert", _raise(ALLOC), ["convert", "{ann}", "--root", "{root}", "--T", "10000",
                                        "--method", "serial", "--test-images", "8"],
     ["out of memory", "--T", "--batch-size"]),
    ("leansnn.convert", _raise(MemoryError()), ["convert", "{ann}", "--root", "{root}",
                                                "--test-images", "8"], ["out of memory"]),
    ("leansnn.convert:evaluate_snn", _raise(CHANNELS),
     ["convert", "{ann}", "--root", "{root}", "--T", "2", "--method", "parallel",
      "--test-images", "8"], ["cannot run on this input", "--size"]),
    ("leansnn.analysis.report.analyze", _raise(ALLOC),
     ["analyze", "{snn}", "--root", "{root}", "--out", "{tmp}/r", "--data", "fashion_mnist",
      "--test-images", "4"], ["out of memory"]),
    ("leansnn.commands.analyze._data.load", lambda *a, **k: [],
     ["analyze", "{snn}", "--root", "{root}", "--out", "{tmp}/r", "--data", "fashion_mnist"],
     ["empty", "nothing to analyse"]),
]


@pytest.mark.parametrize("target, repl, argv, needles", RESOURCES)
def test_resources(target, repl, argv, needles, ck, root, tmp_path, capsys, monkeypatch):
    if ":" in target:   # a module attribute that the package's namespace would shadow
        mod, attr = target.split(":")
        monkeypatch.setattr(importlib.import_module(mod), attr, repl)
    else:
        monkeypatch.setattr(target, repl)
    _check(argv, needles, ck, root, tmp_path, capsys)


def test_a_bug_is_still_a_traceback(ck, tmp_path, monkeypatch):
    """Exit code 1 (a traceback) stays reserved for bugs: an unexpected error propagates."""
    monkeypatch.setattr("leansnn.interop.to_nir", _raise(KeyError("bug")))
    with pytest.raises(KeyError):
        main(["export", ck["snn"], "--out", str(tmp_path / "x.nir"), "--quiet"])
    assert user_error(ZeroDivisionError("x")) is None
    assert user_error(RuntimeError("some internal failure")) is None


CLASSES = {"checkpoint files": len(CHECKPOINT_FILES), "wrong kind": len(WRONG_KIND),
           "option values": len(BAD_VALUES), "data": len(BAD_DATA),
           "resources and raw errors": len(RESOURCES)}


def test_corpus_size():
    assert sum(CLASSES.values()) >= 50, CLASSES
