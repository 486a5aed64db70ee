"""Bad input to the CLI: each a one-line error on stderr and exit code 2, never a traceback."""

import importlib
from pathlib import Path

import pytest
import torch

from leansnn.cli import main

fm_mod = importlib.import_module("leansnn.data.fashion_mnist")
QCFS4 = str(Path(__file__).resolve().parents[1] / "pretrained" / "small_cnn_qcfs4.lsnn")


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    monkeypatch.setattr(fm_mod, "DEFAULT_ROOT", tmp_path / "none")
    monkeypatch.delenv("LEANSNN_DATA", raising=False)
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _one_line_error(capsys, command, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"leansnn {command}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


@pytest.mark.parametrize("argv, needles", [
    (["convert", "{tmp}/missing.lsnn"], ["missing.lsnn", "does not exist"]),
    (["analyze", "{tmp}/missing.lsnn", "--out", "{tmp}/rep"], ["missing.lsnn"]),
    (["export", "{tmp}/missing.lsnn", "--out", "{tmp}/x.nir"], ["missing.lsnn"]),
    (["convert", "{tmp}/garbage.lsnn"], ["garbage.lsnn", "not a leansnn checkpoint"]),
    (["train-snn", "--model", "nope", "--data", "fashion_mnist", "--root", "{tiny}"],
     ["unknown model 'nope'", "lif_snn_a"]),
    (["train-ann", "--model", "nope", "--out", "{tmp}/m.lsnn", "--root", "{tiny}"],
     ["unknown model 'nope'", "small_cnn"]),
    (["convert", QCFS4, "--T", "0"], ["--T must be >= 1"]),
    (["train-snn", "--T", "0"], ["--T must be >= 1"]),
    (["demo", "--T", "2", "-1"], ["--T must be >= 1"]),
    (["analyze", QCFS4, "--out", "{tmp}/r", "--convert",
      "parallel"], ["--convert needs --T"]),
    (["convert", QCFS4, "--method", "magic"],
     ["unknown method", "magic"]),
    (["convert", QCFS4, "--threads", "0"], ["--threads"]),
])
def test_bad_arguments(argv, needles, tmp_path, tiny_idx, capsys, monkeypatch):
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "garbage.lsnn").write_bytes(b"\x00garbage")
    argv = [a.format(tmp=tmp_path, tiny=tiny_idx) for a in argv]
    assert main(argv) == 2
    _one_line_error(capsys, argv[0], *needles)


@pytest.mark.parametrize("argv", [
    ["convert", QCFS4, "--T", "2"],
    ["train-ann", "--out", "{tmp}/m.lsnn", "--epochs", "1"],
    ["train-snn", "--data", "fashion_mnist", "--epochs", "1"],
    ["analyze", QCFS4, "--convert", "parallel", "--T", "2",
     "--out", "{tmp}/rep"],
    ["demo"],
])
def test_data_not_installed(argv, no_data, capsys):
    argv = [a.format(tmp=no_data) for a in argv]
    assert main(argv) == 2
    _one_line_error(capsys, argv[0], "Fashion-MNIST", "not found", "dataset-fashion-mnist")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_device(capsys):
    assert main(["convert", QCFS4, "--device", "cuda"]) == 2
    _one_line_error(capsys, "convert", "no CUDA device")
