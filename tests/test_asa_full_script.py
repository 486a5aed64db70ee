"""benchmarks/asa_full.py: its plan, the train-snn command lines it runs (they must parse and
stay stable, since an interrupted run resumes only with the same command) and its report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("asa_full", ROOT / "benchmarks" / "asa_full.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["asa_full"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _args(script, tmp_path, *extra):
    return script.parse_args(["--runs", str(tmp_path), *extra])


def test_plan_order_and_names(script, tmp_path):
    a = _args(script, tmp_path)
    names = [r.name for r in script.make_plan(a)]
    assert names[:6] == ["w8_none_s0", "w8_asa_s0", "w8_none_s1", "w8_asa_s1", "w8_none_s2",
                         "w8_asa_s2"]
    assert names[6:] == ["w8_asa_authors_s0", "w8_asa_lam0.25_s0", "w8_asa_lam0.75_s0",
                         "w16_none_s0", "w16_asa_s0"]
    # the authors' seeds and the lambda sweep's seeds are chosen apart
    a = _args(script, tmp_path, "--plan", "authors", "lam", "--ablation-seeds", "0", "1", "2")
    assert [r.name for r in script.make_plan(a)] == [
        "w8_asa_authors_s0", "w8_asa_authors_s1", "w8_asa_authors_s2", "w8_asa_lam0.25_s0",
        "w8_asa_lam0.75_s0"]
    a.plan = ["main", "bogus"]
    with pytest.raises(SystemExit, match="bogus"):
        script.make_plan(a)


def test_commands_parse_with_the_cli(script, tmp_path):
    from leansnn.cli import build_parser

    a = _args(script, tmp_path)
    for run in script.make_plan(a):
        argv = script.train_argv(a, run, tmp_path / run.name, 1)
        ns = build_parser().parse_args(argv)
        assert ns.attention == run.variant and ns.width == run.width and ns.seed == run.seed
        assert ns.lam == (None if run.variant == "none" else run.lam)
        assert ns.train_subset is None and ns.test_subset is None  # the whole data set
        build_parser().parse_args(script.analyze_argv(tmp_path / run.name, 1))


def test_state_and_report_from_finished_runs(script, tmp_path, monkeypatch):
    a = _args(script, tmp_path, "--plan", "main", "lam", "--seeds", "0", "1",
              "--ablation-seeds", "0", "--epochs", "2")
    plan = script.make_plan(a)
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results")
    assert all(script.state(a, r) == ("todo", 0) for r in plan)
    layers = ["lif1", "lif2", "lif_out"]
    for i, run in enumerate(plan):
        d = tmp_path / run.name
        (d / "analysis").mkdir(parents=True)
        acc = 0.80 + 0.01 * i
        hist = [{"test_accuracy": acc - 0.05, "seconds": 60.0},
                {"test_accuracy": acc, "seconds": 60.0}]
        (d / "report.json").write_text(json.dumps({"history": hist}))
        (d / "model.lsnn").write_text("")
        assert script.state(a, run) == ("analyse", 2)
        nasfr = 0.2 if run.variant == "none" else 0.1
        met = {"models": [{"accuracy": acc, "monitor": {"nasfr": nasfr, "layers": {
            k: {"rate": nasfr} for k in layers}}, "energy": {"sops": 2e6, "energy_pj": 3e6}}]}
        (d / "analysis" / "metrics.json").write_text(json.dumps(met))
        assert script.state(a, run) == ("done", 2)
    monkeypatch.setattr(script, "ROOT", tmp_path)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    a.analyze_best = False
    md = script.report(a, plan)
    assert "| LIF-SNN, width 8 | 2 | 81.00 ± 1.41 | 80.00 / 82.00 |" in md
    assert "| LIF-SNN + ASA, width 8 | 2 | 82.00 ± 1.41 | 81.00 / 83.00 |" in md
    assert "| LIF-SNN + ASA, λ = 0.75, width 8 | 1 | 85.00 | 85.00 |" in md
    # every variant gets a paired line against the baseline of its seed, λ sweeps included
    assert "- LIF-SNN + ASA, width 8, 2 paired seed(s): accuracy +1.00 ± 0.00 points" in md
    assert "- LIF-SNN + ASA, λ = 0.25, width 8, 1 paired seed(s): accuracy +4.00 points" in md
    # paired: ASA seed s minus baseline seed s = +1 point, NASFR -50 %
    assert "| LIF-SNN + ASA, width 8 | 0 | +1.00 | -50.0 | +0.0 |" in md
    assert (tmp_path / "results" / "w8_asa_s1" / "metrics.json").exists()
    assert "--plan main lam --seeds 0 1 --lam-seeds 0 --epochs 2" in md  # rebuilds this plan
    assert (tmp_path / "benchmarks" / "results" / "asa_full_curves.png").stat().st_size > 0

    # the committed results count as finished on a machine without the runs folder
    a.runs = str(tmp_path / "elsewhere")
    assert all(script.state(a, r) == ("done", 2) for r in plan)
    assert script.print_status(a, plan) == 0
    assert script.report(a, plan) == md
