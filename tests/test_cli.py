"""The leansnn command: help, the main job on tiny data, one-line errors."""

import importlib
import subprocess
import sys

import pytest

from leansnn.cli import main

fm_mod = importlib.import_module("leansnn.data.fashion_mnist")


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_on_tiny_data(tiny_idx, tmp_path, monkeypatch, capsys):
    """The whole main job (shipped checkpoints, real code paths) on a tiny idx data set."""
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    out_dir = tmp_path / "report"
    js = tmp_path / "demo.json"
    assert main(["demo", "--root", str(tiny_idx), "--test-images", "16", "--calib-images", "32",
                 "--T", "1", "2", "--event-test-images", "8", "--batch-size", "8",
                 "--out", str(out_dir), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "[1/3] ANN -> SNN conversion, 16 Fashion-MNIST test images" in out
    for method in ("parallel", "calibrated", "serial"):
        assert method in out
    assert "LIF-SNN + ASA" in out and "NASFR" in out
    assert (out_dir / "report.md").exists() and (out_dir / "report.html").exists()
    import json

    res = json.loads(js.read_text())
    rows = res["conversion"]
    # every conversion row of each net, both T, and two SNN results
    assert {(r["net"], r["method"]) for r in rows} >= {
        ("small_cnn QCFS L=4", "parallel"), ("small_cnn QCFS L=4", "serial"),
        ("small_cnn ReLU", "calibrated")}
    assert len(res["snn"]) == 2 and all(0 <= r["accuracy"] <= 1 for r in res["snn"])
    assert all(0 <= r["accuracy"] <= 1 for r in rows)


def test_demo_missing_data_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fm_mod, "DEFAULT_ROOT", tmp_path / "none")
    monkeypatch.delenv("LEANSNN_DATA", raising=False)
    assert main(["demo", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leansnn demo: error: Fashion-MNIST test set not found")
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
