"""Training does what it says (issue 15, item 2): a rerun resumes only the same run, runs that
cannot train are refused, divergence stops without a non-finite checkpoint."""

import math

import pytest
import torch

import leansnn as ls
from leansnn.cli import main
from leansnn.train import RunMismatch, TrainConfig, TrainingDiverged, fit

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ANN = ["train-ann", "--train-images", "64", "--test-images", "32", "--batch-size", "32",
       "--threads", "1", "--quiet"]
SNN = ["train-snn", "--data", "fashion_mnist", "--train-images", "64", "--test-images", "32",
       "--T", "2", "--batch-size", "32", "--width", "2", "--threads", "1", "--quiet"]


def _weights(path):
    return {k: v.clone() for k, v in ls.load(path).state_dict().items()}


@pytest.mark.parametrize("cmd", [ANN, SNN], ids=["train-ann", "train-snn"])
def test_changed_rerun_stops_then_restart_and_resume_do_what_they_say(cmd, tmp_path, tiny_idx,
                                                                      capsys):
    out = tmp_path / "m.lsnn"
    base = cmd + ["--root", str(tiny_idx), "--out", str(out)]
    assert main(base + ["--epochs", "1"]) == 0
    assert (tmp_path / "m.lsnn.train").exists()          # per-epoch checkpoint by default
    assert (tmp_path / "m.metrics.csv").exists()
    w1 = _weights(out)
    capsys.readouterr()
    # the old silently wrong result: epoch 2 "trained" at lr 0, lr 0.1 written in the metadata
    assert main(base + ["--epochs", "2", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--epochs: 1 there, 2 here" in err and "--lr:" in err and "0.1 here" in err
    assert "--restart" in err and "--resume" in err
    assert all(torch.equal(v, _weights(out)[k]) for k, v in w1.items())   # nothing written
    # --resume: the stored run as stored, saying which flags it ignores
    assert main(base + ["--epochs", "2", "--lr", "0.1", "--resume"]) == 0
    said = capsys.readouterr()
    assert "ignoring --epochs 2 (stored: 1), --lr 0.1" in said.out + said.err
    m = ls.load(out).leansnn_meta["meta"]
    assert len(m["history"]) == 1
    # --restart: the new run from scratch, trained at the requested learning rate
    assert main(base + ["--epochs", "2", "--lr", "0.1", "--restart"]) == 0
    hist = ls.load(out).leansnn_meta["meta"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[0]["lr"] == pytest.approx(0.1) and hist[1]["lr"] > 0
    # the same command again: the same run, continued (already finished): exit 0
    assert main(base + ["--epochs", "2", "--lr", "0.1"]) == 0


@pytest.mark.parametrize("cmd", [ANN, SNN], ids=["train-ann", "train-snn"])
@pytest.mark.parametrize("extra, words", [
    (["--train-images", "1"], ["no optimizer step", "1 training image", "batch of 32"]),
    (["--train-images", "31"], ["no optimizer step", "31 training images", "batch of 32"]),
    (["--lr", "inf"], ["lr must be a finite number", "inf"]),
    (["--lr", "nan"], ["lr must be a finite number"]),
    (["--lr", "-0.1"], ["lr must be > 0"]),
    (["--weight-decay", "-1"], ["weight_decay must be >= 0"]),
])
def test_runs_that_cannot_train_are_refused(cmd, extra, words, tmp_path, tiny_idx, capsys):
    out = tmp_path / "m.lsnn"
    assert main(cmd + ["--root", str(tiny_idx), "--out", str(out), "--epochs", "1"] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists() and not (tmp_path / "m.lsnn.train").exists()


def test_train_snn_min_lr_checked(tmp_path, tiny_idx, capsys):
    for v, word in (("-1e-6", "min_lr must lie in [0"), ("1", "min_lr must lie in [0")):
        assert main(SNN + ["--root", str(tiny_idx), f"--min-lr={v}"]) == 2
        assert word in capsys.readouterr().err


@pytest.mark.parametrize("kw, word", [
    (dict(lr=float("inf")), "lr must be a finite"), (dict(lr=0.0), "lr must be > 0"),
    (dict(min_lr=-1e-3), "min_lr"), (dict(lr=1e-3, min_lr=1e-2), "min_lr"),
    (dict(momentum=-0.5), "momentum"), (dict(weight_decay=float("nan")), "weight_decay"),
    (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"),
    (dict(max_batches=0), "max_batches"),
])
def test_train_config_refuses_bad_settings(kw, word):
    with pytest.raises(ValueError, match=word):
        TrainConfig(**kw)


def _toy(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_fit_refuses_zero_steps_and_a_changed_run(tmp_path):
    x, y = _toy(8)
    with pytest.raises(ValueError, match="no optimizer step: 8 training images"):
        fit(torch.nn.Linear(4, 3), (x, y), None, TrainConfig(batch_size=16), progress=False)
    x, y = _toy()
    ck = tmp_path / "ck.lsnn"
    fit(torch.nn.Linear(4, 3), (x, y), None, TrainConfig(batch_size=8), checkpoint=ck,
        progress=False, run={"width": 4})
    with pytest.raises(RunMismatch) as e:
        fit(torch.nn.Linear(4, 3), (x, y), None, TrainConfig(batch_size=8, lr=0.1),
            checkpoint=ck, resume=True, progress=False, run={"width": 4})
    assert e.value.diffs == [("lr", 1e-3, 0.1)]
    with pytest.raises(RunMismatch, match="width 4 there, 8 here"):
        fit(torch.nn.Linear(4, 3), (x, y), None, TrainConfig(batch_size=8), checkpoint=ck,
            resume=True, progress=False, run={"width": 8})


def test_divergence_stops_without_a_non_finite_checkpoint(tmp_path):
    x, y = _toy()
    x = x * 1e20
    ck = tmp_path / "ck.lsnn"
    net = torch.nn.Linear(4, 3)
    cfg = TrainConfig(epochs=2, batch_size=8, optimizer="sgd", lr=1e30, momentum=0.0)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch \d.*lower learning rate"):
        fit(net, (x, y), None, cfg, checkpoint=ck, progress=False)
    assert not ck.exists()


def test_train_snn_huge_lr_stops_with_exit_2_and_writes_nothing(tmp_path, tiny_idx, capsys):
    out = tmp_path / "m.lsnn"
    code = main(SNN + ["--root", str(tiny_idx), "--out", str(out), "--lr", "1e38",
                       "--min-lr", "0", "--epochs", "3"])
    if code == 0:   # Adam's step is bounded by lr: the weights may stay finite
        sd = ls.load(out).state_dict()
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    else:
        assert code == 2
        err = capsys.readouterr().err
        assert "training diverged" in err and "lower learning rate" in err
        assert not out.exists()


def test_encoding_is_recorded(tmp_path, tiny_idx):
    out = tmp_path / "m.lsnn"
    assert main(SNN + ["--root", str(tiny_idx), "--out", str(out), "--encoding", "rate"]) == 0
    model = ls.load(out)
    m = model.leansnn_meta["meta"]
    assert m["data"]["encoding"] == "rate"
    assert not math.isnan(m["history"][0]["loss"])
    # the encoder is part of the saved model: loading gives back rate-coded inputs, so an
    # evaluation of the loaded model reproduces the training run's test accuracy
    from leansnn.models.encoded import EncodedModel

    assert isinstance(model, EncodedModel) and model.encoder.encoding == "rate"
    test = ls.data.fashion_mnist("test", root=tiny_idx).subset(32, 0)
    ev = ls.train.evaluate(model, test, batch_size=32)
    assert ev["accuracy"] == m["history"][-1]["test_accuracy"]
