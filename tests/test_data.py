"""Fashion-MNIST idx reader: tiny files written here, plus the real set when installed."""

import gzip
import importlib
import struct

import numpy as np
import pytest
import torch

import leansnn as ls
from leansnn.data import DataError, read_idx

fm_mod = importlib.import_module("leansnn.data.fashion_mnist")


def write_idx(path, array, gz=False, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    head = magic if magic is not None else struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    data = head + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def make_set(folder, n=5, gz=True, split="t10k"):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labs = rng.integers(0, 10, n, dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(folder / f"{split}-images-idx3-ubyte{sfx}", imgs, gz)
    write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", labs, gz)
    return imgs, labs


@pytest.mark.parametrize("gz", [True, False])
def test_reads_tiny_set(tmp_path, gz):
    imgs, labs = make_set(tmp_path, gz=gz)
    ds = ls.data.fashion_mnist("test", root=tmp_path)
    assert len(ds) == 5
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(imgs[2]).float().unsqueeze(0) / 255)
    assert y == int(labs[2])
    xb, yb = next(ds.batches(4))
    assert xb.shape == (4, 1, 28, 28) and yb.tolist() == labs[:4].tolist()


def test_env_variable_is_searched(tmp_path, monkeypatch):
    (tmp_path / "fashion-mnist").mkdir()
    make_set(tmp_path / "fashion-mnist", split="train")
    monkeypatch.setenv("LEANSNN_DATA", str(tmp_path))
    assert len(ls.data.fashion_mnist("train")) == 5


def test_missing_data_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(fm_mod, "DEFAULT_ROOT", tmp_path / "nowhere")
    monkeypatch.delenv("LEANSNN_DATA", raising=False)
    with pytest.raises(DataError) as e:
        ls.data.fashion_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "nowhere" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_bad_magic(tmp_path):
    p = write_idx(tmp_path / "x.idx", np.zeros((2, 2)), magic=b"\x12\x34\x08\x02")
    with pytest.raises(DataError, match=r"x\.idx: bad magic number 0x12340802"):
        read_idx(p)


def test_size_mismatch(tmp_path):
    p = write_idx(tmp_path / "x.idx", np.zeros((3, 4, 4)))
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"x\.idx: size mismatch.*\(3, 4, 4\)"):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    p = write_idx(tmp_path / "x.gz", np.zeros((30, 28, 28)), gz=True)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match=r"x\.gz: cannot read.*truncated"):
        read_idx(p)


def test_images_labels_count_mismatch(tmp_path):
    make_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4), gz=True)
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        ls.data.fashion_mnist("test", root=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match="split must be"):
        ls.data.fashion_mnist("validation")


@pytest.mark.skipif(not fm_mod.DEFAULT_ROOT.exists(),
                    reason="dataset-fashion-mnist is not installed (make test installs it)")
def test_real_fashion_mnist():
    train, test = ls.data.fashion_mnist("train"), ls.data.fashion_mnist("test")
    assert (len(train), len(test)) == (60000, 10000)
    assert test.images.shape == (10000, 28, 28)
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.tolist() == [1000] * 10  # the test set is balanced
    x, y = test[0]
    assert y == 9 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # ankle boot
