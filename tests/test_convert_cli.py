"""The train-ann and convert commands end to end on tiny Fashion-MNIST subsets."""

import pytest

import leansnn as ls
from leansnn.cli import main


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    try:
        ls.data.fashion_mnist("test")
    except (OSError, ValueError) as e:
        pytest.skip(f"Fashion-MNIST unavailable: {e}")
    out = tmp_path_factory.mktemp("ann") / "q.lsnn"
    rc = main(["train-ann", "--model", "small_cnn", "--activation", "qcfs", "--levels", "2",
               "--out", str(out), "--epochs", "1", "--train-images", "256",
               "--test-images", "128", "--threads", "1"])
    assert rc == 0
    return out


def test_train_ann_writes_loadable_checkpoint(tiny_ckpt):
    ann = ls.load(tiny_ckpt)
    assert {m.levels for m in ann.modules() if isinstance(m, ls.QCFS)} == {2}
    meta = ann.leansnn_meta["meta"]
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and len(meta["history"]) == 1
    assert (tiny_ckpt.parent / (tiny_ckpt.name + ".train")).exists()  # resumable state


def test_convert_command_table(tiny_ckpt, capsys):
    rc = main(["convert", str(tiny_ckpt), "--T", "1", "2", "--method", "parallel", "serial",
               "--test-images", "64", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ANN test accuracy" in out
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("parallel", "serial"))]
    assert [(r[0], r[1]) for r in rows] == [("parallel", "1"), ("parallel", "2"),
                                            ("serial", "1"), ("serial", "2")]
    assert all(0.0 <= float(r[-1]) <= 1.0 for r in rows)  # firing rate


def test_convert_command_calibrated_with_refinement(tiny_ckpt, capsys):
    rc = main(["convert", str(tiny_ckpt), "--T", "2", "--method", "calibrated",
               "--calib-images", "64", "--refine-steps", "3", "--test-images", "64",
               "--no-firing-rate", "--threads", "1"])
    assert rc == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("calibrated")]
    assert [(r[0], r[1]) for r in rows] == [("calibrated", "2")]
    assert main(["convert", str(tiny_ckpt), "--method", "calibrated",
                 "--refine-steps", "-1"]) == 2
    assert "--refine-steps must be >= 0" in capsys.readouterr().err


def test_convert_command_errors(tiny_ckpt, capsys):
    assert main(["convert", str(tiny_ckpt), "--method", "nope"]) == 2
    assert main(["convert", str(tiny_ckpt), "--T", "0"]) == 2
    assert main(["convert", str(tiny_ckpt) + ".missing"]) == 2


def test_train_ann_init_from_starts_from_the_given_weights(tiny_ckpt, tmp_path, capsys):
    import torch

    from leansnn.commands.train_ann import _init_weights

    src = ls.load(tiny_ckpt)
    net = ls.models.create("small_cnn", num_classes=10, in_channels=1,
                           activation=ls.QCFS(levels=2, threshold=3.0))
    net, info = _init_weights(net, tiny_ckpt, "qcfs", 2)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v)
    assert info["path"] == tiny_ckpt.name and len(info["history"]) == 1

    out = tmp_path / "ft.lsnn"
    rc = main(["train-ann", "--model", "small_cnn", "--activation", "qcfs", "--levels", "2",
               "--out", str(out), "--epochs", "1", "--train-images", "128",
               "--test-images", "64", "--threads", "1", "--init-from", str(tiny_ckpt),
               "--lr", "0.01"])
    assert rc == 0
    meta = ls.load(out).leansnn_meta["meta"]
    assert meta["init_from"]["test_accuracy"] == src.leansnn_meta["meta"]["test_accuracy"]
    assert meta["train_config"]["lr"] == 0.01

    # a checkpoint of another configuration is refused with one line naming both
    rc = main(["train-ann", "--model", "small_cnn", "--activation", "qcfs", "--levels", "4",
               "--out", str(tmp_path / "x.lsnn"), "--epochs", "1", "--train-images", "64",
               "--threads", "1", "--init-from", str(tiny_ckpt)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "same model" in err
    assert not (tmp_path / "x.lsnn").exists()
