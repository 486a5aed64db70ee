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


def test_convert_command_errors(tiny_ckpt, capsys):
    assert main(["convert", str(tiny_ckpt), "--method", "nope"]) == 2
    assert main(["convert", str(tiny_ckpt), "--T", "0"]) == 2
    assert main(["convert", str(tiny_ckpt) + ".missing"]) == 2
