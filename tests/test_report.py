"""Report and ``leansnn analyze``: files written, self-contained HTML, JSON output, errors;
Monitor and energy on the other model families (ASA LIF-SNN, converted networks)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import needs_fmnist
from torch import nn

import leansnn as ls
from leansnn.analysis import Monitor, energy
from leansnn.analysis.report import analyze, write_metrics
from leansnn.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    paths = []
    for i, th in enumerate((1.0, 0.5)):
        torch.manual_seed(i)
        m = ls.models.create("lif_cnn", T=3, width=4, threshold=th)
        paths.append(ls.save(m, d / f"m{i}.lsnn"))
    return paths


needs_data = needs_fmnist


@needs_data
def test_analyze_two_checkpoints_writes_report_and_json(checkpoints, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["analyze", str(checkpoints[0]), str(checkpoints[1]), "--out", str(out),
                 "--max-images", "24", "--batch-size", "16", "--json",
                 "--labels", "base", "low-threshold"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)["models"]
    assert [s["label"] for s in stats] == ["base", "low-threshold"]
    for s in stats:
        assert s["inputs"] == 24
        assert 0.0 <= s["monitor"]["nasfr"] <= 1.0
        assert set(s["monitor"]["layers"]) == {"1", "3"}
        assert s["energy"]["sops"] > 0 and s["energy"]["energy_pj"] > 0
        assert 0.0 <= s["accuracy"] <= 1.0
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "NASFR" in md and "base" in md and "low-threshold" in md
    figs = sorted((out / "figures").glob("*.png"))
    assert len(figs) >= 7
    for f in figs:
        assert f.read_bytes()[:8] == PNG
        assert f"figures/{f.name}" in md
    # self-contained: every image inline, nothing fetched from elsewhere
    assert html.count("data:image/png;base64,") == len(figs)
    assert "src='figures" not in html and "http" not in html
    assert json.loads((out / "metrics.json").read_text())["models"][0]["label"] == "base"
    assert ((out / "report.md").stat().st_mode & 0o777) == 0o644


@needs_data
def test_analyze_errors(checkpoints, tmp_path, capsys):
    code = main(["analyze", str(checkpoints[0]), "--data", "event_fashion_mnist", "--out",
                 str(tmp_path), "--max-images", "4"])
    assert code == 2
    assert "--data fashion_mnist" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.lsnn"), "--out", str(tmp_path)]) == 2
    assert main(["analyze", *map(str, checkpoints), str(checkpoints[0]), "--out",
                 str(tmp_path)]) == 2


def test_analyze_from_tensors_matches_monitor_and_energy(tmp_path):
    torch.manual_seed(0)
    model = ls.models.create("lif_cnn", T=2, width=4).eval()
    x = torch.rand(6, 1, 28, 28)
    y = torch.zeros(6, dtype=torch.long)
    res = analyze(model, [(x[:4], y[:4]), (x[4:], y[4:])], "tiny", capture=2)
    assert res["captured"]["1"].shape == (2, 2, 4, 28, 28)
    assert res["inputs"] == 6
    with Monitor(model) as mon, torch.no_grad():
        model(x)
    assert res["monitor"]["nasfr"] == pytest.approx(mon.summary()["nasfr"])
    assert res["energy"]["sops"] == pytest.approx(energy(model, [(x, y)])["sops"])
    p = write_metrics([res], tmp_path)
    js = json.loads(p.read_text())   # one schema for one model or two
    assert js["schema"] == "leansnn.analysis/2" and js["models"][0]["label"] == "tiny"
    assert (p.stat().st_mode & 0o777) == 0o644


def test_lif_snn_a_with_asa():
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", T=4, attention="asa", width=8, hidden=16,
                           input_size=(16, 16)).eval()
    x = (torch.rand(4, 3, 2, 16, 16) < 0.2).float()
    with Monitor(net) as mon, torch.no_grad():
        net(x)
    st = mon.summary()
    assert len(st["layers"]) == 5  # three conv stages, two FC layers
    assert all(v["potential"]["window"] == 0.25 for v in st["layers"].values())
    e = energy(net, [(x, torch.zeros(3, dtype=torch.long))])
    # binary event frames into the first conv are accumulates
    assert e["layers"]["conv1.layer.0"]["input"] in ("spikes", "events")
    assert e["sops"] > 0
    # ASA (T=4, r=1; channels 8, 16, 16 on 16x16, 8x8, 4x4 maps) on its analog input:
    # B*C*T*T for the FC + B*H*W*36 for the two 2->1 3x3 convs, per sample (B=1)
    asa = {n: v["macs"] for n, v in e["layers"].items() if n.startswith("asa")}
    assert asa == {"asa1": 8 * 16 + 256 * 36, "asa2": 16 * 16 + 64 * 36,
                   "asa3": 16 * 16 + 16 * 36}
    assert e["macs"] == sum(asa.values())


@pytest.mark.parametrize("method", ["parallel", "serial"])
def test_converted_networks(method):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ls.QCFS(levels=4, threshold=1.0),
                        nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        ls.QCFS(levels=4, threshold=1.0), nn.Flatten(), nn.Linear(4 * 9, 3))
    snn = ls.convert(ann, T=4, method=method)
    x = torch.rand(5, 1, 6, 6)
    with Monitor(snn) as mon, torch.no_grad():
        y = snn(x)
    st = mon.summary()
    assert len(st["layers"]) == 2
    # spikes summed per layer match the output rate of the neurons (amplitude theta = 1)
    for lay in st["layers"].values():
        assert lay["samples"] == 5 and lay["T"] == 4
        assert 0.0 <= lay["rate"] <= 1.0
        assert lay["potential"] is not None
    assert y.shape == (4, 5, 3)


@needs_data
def test_analyze_converts_an_ann_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", num_classes=10, in_channels=1,
                           activation=ls.QCFS(levels=2, threshold=1.0))
    ck = ls.save(ann, tmp_path / "ann.lsnn")
    code = main(["analyze", str(ck), str(ck), "--convert", "serial", "parallel", "--T", "2",
                 "--out", str(tmp_path / "rep"), "--max-images", "8", "--json", "--no-report"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)["models"]
    assert [s["label"] for s in stats] == ["ann (serial, T=2)", "ann (parallel, T=2)"]
    kinds = {s["monitor"]["layers"][n]["type"] for s in stats for n in s["monitor"]["layers"]}
    assert kinds == {"SerialIF", "ParallelIF"}
    assert [p.name for p in (tmp_path / "rep").iterdir()] == ["metrics.json"]
    assert main(["analyze", str(ck), "--out", str(tmp_path), "--convert", "parallel"]) == 2
    assert "--T" in capsys.readouterr().err
