"""The leansnn command: help, the foundation demo on tiny data, one-line errors."""

import gzip
import importlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from leansnn.cli import main

fm_mod = importlib.import_module("leansnn.data.fashion_mnist")


def _write(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.tobytes())


@pytest.fixture
def tiny_root(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 32)):
        _write(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return tmp_path


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_demo_runs_on_tiny_data(tiny_root, capsys):
    assert main(["demo", "--data", str(tiny_root), "--train-images", "32", "--T", "2",
                 "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "on 32 images" in out and "mean firing rate" in out


def test_demo_missing_data_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fm_mod, "DEFAULT_ROOT", tmp_path / "none")
    monkeypatch.delenv("LEANSNN_DATA", raising=False)
    assert main(["demo", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leansnn demo: error: Fashion-MNIST train set not found")
    assert "\n" not in err and "Traceback" not in err


def test_demo_bad_T(capsys):
    assert main(["demo", "--T", "0"]) == 2
    assert "--T must be >= 1" in capsys.readouterr().err


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "leansnn.cli", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("leansnn ")


def test_bench_lists_and_rejects_unknown(capsys):
    assert main(["bench"]) == 0
    assert "neurons" in capsys.readouterr().out
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
