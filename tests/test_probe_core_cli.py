"""Robustness probes of the training commands' --model handling (found by an adversarial
pass): every registry name either trains or is refused in one line naming the models the
command does train; a model without an ``attention`` option trains with ``--attention none``.
"""

import json

import pytest

import leansnn as ls
from leansnn.cli import main
from leansnn.commands._common import trainable_models

TINY = ["--epochs", "1", "--train-images", "8", "--test-images", "4", "--batch-size", "4",
        "--threads", "1", "--quiet"]


def _strict(text):
    def bad(c):
        raise ValueError(f"non-strict JSON constant {c}")
    return json.loads(text, parse_constant=bad)


def test_trainable_lists_partition_the_networks():
    snn, ann = trainable_models("snn"), trainable_models("ann")
    assert {"lif_snn_a", "lif_snn_5", "sew_resnet18", "lif_cnn"} <= set(snn)
    assert {"small_cnn", "resnet20", "vgg11"} <= set(ann)
    assert not set(snn) & set(ann)
    # wrappers rebuilt from another model's config are trained by neither command
    for name in ("encoded", "qcfs_of", "converted"):
        assert name not in snn and name not in ann


@pytest.mark.parametrize("command, kind", [("train-snn", "snn"), ("train-ann", "ann")])
def test_every_registry_name_trains_or_is_refused_in_one_line(command, kind, tmp_path,
                                                              capsys):
    for name in ls.models.available():
        if name in trainable_models(kind):
            continue
        argv = [command, "--model", name, "--out", str(tmp_path / "m.lsnn"),
                "--root", str(tmp_path / "no_data_needed")]
        assert main(argv) == 2, name          # a one-line error, never a traceback
        err = capsys.readouterr().err
        assert f"--model {name}" in err, err
        assert ", ".join(trainable_models(kind)) in err, err


def test_train_snn_lif_cnn_without_attention_option(tiny_idx, tmp_path, capsys):
    out = tmp_path / "lif_cnn.lsnn"
    argv = ["train-snn", "--model", "lif_cnn", "--data", "fashion_mnist", "--root",
            str(tiny_idx), "--T", "2", "--width", "2", *TINY]
    assert main(argv + ["--out", str(out), "--json", "-"]) == 0
    report = _strict(capsys.readouterr().out)
    assert "attention" not in report["config"]["model_kwargs"]
    assert ls.load(out).leansnn_config["name"] == "lif_cnn"
    # asking it for attention is a one-line error naming the models that have it
    assert main(argv + ["--attention", "asa"]) == 2
    err = capsys.readouterr().err
    assert "lif_cnn has no attention option" in err and "lif_snn_a" in err


def test_lif_snn_a_still_records_attention_none(tiny_idx, tmp_path, capsys):
    """Configs of earlier runs hold ``attention: None``; resuming them must keep matching."""
    argv = ["train-snn", "--data", "fashion_mnist", "--root", str(tiny_idx), "--T", "2",
            "--width", "2", "--json", "-", *TINY]
    assert main(argv) == 0
    assert _strict(capsys.readouterr().out)["config"]["model_kwargs"]["attention"] is None


def test_positive_names_the_flag_the_user_typed(capsys):
    assert main(["train-snn", "--train-images", "0"]) == 2
    assert "--train-images must be >= 1" in capsys.readouterr().err
    assert main(["train-snn", "--test-images", "-3"]) == 2
    assert "--test-images must be >= 1" in capsys.readouterr().err
