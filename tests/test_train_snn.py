"""``leansnn train-snn``: a tiny real run, JSON report, checkpoint, resume, errors."""

import json

import pytest
import torch
from conftest import needs_fmnist

import leansnn as ls
from leansnn.attention import ASA
from leansnn.cli import main
from leansnn.evaluation import SpikeCounter

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TINY = ["train-snn", "--data", "fashion_mnist", "--train-subset", "64", "--test-subset", "32",
        "--T", "2", "--batch-size", "16", "--width", "4", "--quiet", "--threads", "1"]


needs_data = needs_fmnist


@needs_data
def test_train_snn_json_checkpoint_and_resume(tmp_path):
    ck, js = tmp_path / "run.lsnn", tmp_path / "run.json"
    args = TINY + ["--attention", "asa", "--checkpoint", str(ck), "--json", str(js)]
    assert main(args + ["--epochs", "1"]) == 0
    r1 = json.loads(js.read_text())
    assert len(r1["history"]) == 1
    # another run (--epochs 2) over the checkpoint: an error; --resume continues it as stored
    assert main(args + ["--epochs", "2"]) == 2
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert [h["epoch"] for h in json.loads(js.read_text())["history"]] == [1]
    # --restart (alias --no-resume) starts over; the same command again continues it
    assert main(args + ["--epochs", "2", "--no-resume"]) == 0
    r = json.loads(js.read_text())
    assert [h["epoch"] for h in r["history"]] == [1, 2]
    assert r["history"][0]["loss"] == pytest.approx(r1["history"][0]["loss"])
    assert main(args + ["--epochs", "2"]) == 0
    assert [h["epoch"] for h in json.loads(js.read_text())["history"]] == [1, 2]
    f = r["final"]
    assert 0.0 <= f["test_accuracy"] <= 1.0
    rates = f["layer_rates"]
    assert list(rates) == ["lif1", "lif2", "lif3", "lif_fc1", "lif_out"]
    assert all(0.0 <= v <= 1.0 for v in rates.values())
    assert min(rates.values()) < f["nasfr"] < max(rates.values()) or len(set(rates.values())) == 1
    model = ls.load(ck)
    assert sum(isinstance(m, ASA) for m in model.modules()) == 3
    assert model(torch.rand(4, 1, 28, 28)).shape == (2, 4, 10)


def test_eval_only_counter_skips_training_passes_and_matches_the_full_counter():
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", T=3, width=4, input_size=(8, 8), dropout=0.0)
    x = torch.rand(3, 5, 2, 8, 8) * 2
    with SpikeCounter(net, eval_only=True) as ev_only, SpikeCounter(net) as every:
        net.train()
        net(x)
        assert all(v != v for v in ev_only.layer_rates().values())  # nan: nothing counted
        assert every.slots > 0
        every.reset()
        net.eval()
        net(x)
    assert ev_only.rate == every.rate and ev_only.layer_rates() == every.layer_rates()
    net(x)  # detached: no more counting
    assert ev_only.layers["lif1"].samples == 5


def test_errors_exit_2(capsys):
    assert main(["train-snn", "--resume"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["train-snn", "--T", "0"]) == 2
