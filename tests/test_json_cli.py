"""Every command's ``--json`` output is strict JSON (no NaN/Infinity, no object reprs) with one
stable schema, on stdout alone with ``--json -`` (human-readable lines go to stderr)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import leansnn as ls
from leansnn.cli import main
from leansnn.commands._common import dumps, jsonable


def strict(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("json_ckpts")
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", width=4, hidden=16,
                           activation=ls.QCFS(levels=2, threshold=1.0))
    snn = ls.models.create("lif_snn_a", in_channels=1, T=2, input_size=(28, 28), width=2,
                           hidden=8)
    return {"ann": str(ls.save(ann, d / "ann.lsnn")), "snn": str(ls.save(snn, d / "snn.lsnn")),
            "dir": d}


def _json_of(argv, capsys):
    assert main(argv + ["--json", "-", "--threads", "1"]) == 0
    cap = capsys.readouterr()
    return strict(cap.out), cap.err


def test_jsonable_is_strict():
    obj = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": torch.tensor([1.0]),
           "d": (1, 2), "_run": print, "e": torch.tensor(float("nan"))}
    assert strict(dumps(obj)) == {"a": None, "b": [None, None, 1.5], "c": [1.0], "d": [1, 2],
                                  "e": None}
    with pytest.raises(TypeError):
        jsonable({"f": print})


def test_train_ann_and_convert(tiny_idx, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.lsnn"
    js, err = _json_of(["train-ann", "--root", str(tiny_idx), "--out", str(out), "--epochs", "1",
                        "--train-images", "32", "--test-images", "16", "--batch-size", "16"],
                       capsys)
    assert set(js) == {"test_accuracy", "history", "seconds", "path"}
    assert "test accuracy" in err   # the result, on stderr beside the JSON
    js, _ = _json_of(["convert", str(out), "--root", str(tiny_idx), "--T", "1", "2",
                      "--method", "parallel", "serial", "--test-images", "16"], capsys)
    assert {"checkpoint", "test_images", "data", "ann", "rows"} <= set(js)
    assert len(js["rows"]) == 4 and all(0 <= r["accuracy"] <= 1 for r in js["rows"])


def test_train_snn_has_no_reprs(tiny_idx, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    js, err = _json_of(["train-snn", "--data", "fashion_mnist", "--root", str(tiny_idx),
                        "--T", "2", "--width", "2", "--epochs", "1", "--train-images", "32",
                        "--test-images", "16", "--batch-size", "16", "--quiet"], capsys)
    assert "_run" not in js["config"] and "function" not in json.dumps(js)
    assert js["final"]["test_accuracy"] is not None
    assert "test accuracy" in err   # --quiet hides progress, never the result


def test_analyze_one_schema_for_one_or_two_models(files, tiny_idx, tmp_path, capsys):
    common = ["--root", str(tiny_idx), "--data", "fashion_mnist", "--out", str(tmp_path / "r"),
              "--no-report", "--test-images", "8"]
    one, _ = _json_of(["analyze", files["snn"], *common], capsys)
    two, _ = _json_of(["analyze", files["ann"], files["ann"], "--convert", "serial",
                       "parallel", "--T", "2", *common, "--labels", "a", "b"], capsys)
    for js in (one, two):
        assert set(js) == {"schema", "models"} and js["schema"] == "leansnn.analysis/2"
        for m in js["models"]:
            assert {"label", "accuracy", "monitor", "energy", "data", "checkpoint"} <= set(m)
            assert m["data"]["name"] == "fashion_mnist"
    assert len(one["models"]) == 1 and len(two["models"]) == 2
    assert set(one["models"][0]) == set(two["models"][0])
    assert two["models"][1]["converted"] == {"method": "parallel", "T": 2}
    assert one["models"][0]["converted"] is None
    metrics = strict((tmp_path / "r" / "metrics.json").read_text())
    assert metrics == two


def test_export_and_bench(files, tmp_path, capsys):
    pytest.importorskip("nir")
    js, err = _json_of(["export", files["snn"], "--out", str(tmp_path / "s.nir")], capsys)
    assert js["spiking_layers"] > 0 and js["input_shape"] == [1, 28, 28] and "wrote" in err
    js, _ = _json_of(["export", files["ann"], "--convert", "serial", "--T", "2",
                      "--out", str(tmp_path / "a.nir"), "--seed", "1"], capsys)
    assert js["converted"] == "serial" and js["T"] == 2
    assert main(["bench", "--json", "-"]) == 0
    assert "neurons" in strict(capsys.readouterr().out)["benchmarks"]


@pytest.mark.slow
def test_demo(tiny_idx, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "cache"))
    js, err = _json_of(["demo", "--root", str(tiny_idx), "--test-images", "16",
                        "--calib-images", "16", "--T", "1", "2", "--event-test-images", "8",
                        "--batch-size", "8", "--out", str(tmp_path / "rep")], capsys)
    assert {"conversion", "snn", "seconds"} <= set(js) and len(js["snn"]) == 2
    assert all(r["ms_per_image"] is None or math.isfinite(r["ms_per_image"])
               for r in js["conversion"])
    # hints: absolute checkpoint paths and the demo's --root, CPU-sized training
    assert f"--root {tiny_idx}" in err and "--width 8" in err
    assert "leansnn convert /" in err
