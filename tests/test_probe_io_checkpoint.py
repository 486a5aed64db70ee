"""Checkpoints and atomic writes under unusual input: dtypes, map_location, output paths
that cannot name a file, and the permissions of a file that is rewritten."""

import os
import stat

import pytest
import torch

import leansnn as ls
from leansnn.base.io import atomic_write, write_text
from leansnn.checkpoint import CheckpointError


def _lif(dtype=torch.float32):
    torch.manual_seed(0)
    return ls.models.create("lif_cnn", T=2, width=4).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_load_keeps_the_saved_dtype(tmp_path, dtype):
    """A float64 (or half) model came back as float32: float64 weights silently rounded."""
    m = _lif(dtype).eval()
    p = ls.save(m, tmp_path / "m.lsnn")
    m2 = ls.load(p).eval()
    for k, v in m.state_dict().items():
        assert m2.state_dict()[k].dtype == v.dtype, k
        assert torch.equal(m2.state_dict()[k], v), k
    x = torch.rand(2, 1, 28, 28, dtype=dtype)
    assert torch.equal(m(x), m2(x))


@pytest.mark.parametrize("bad, match", [
    ("bogus", "not a device"),
    ("cuda:0" if not torch.cuda.is_available() else "cuda:999", "cannot hold tensors"),
    (torch.float64, "not a device"),
    (3.5, "not a device"),
])
def test_bad_map_location_is_named_not_called_corruption(tmp_path, bad, match):
    """A device that does not exist here was reported as a 'truncated or corrupt' file."""
    p = ls.save(_lif(), tmp_path / "m.lsnn")
    for fn in (ls.load, ls.load_checkpoint):
        with pytest.raises(CheckpointError, match=match) as e:
            fn(p, map_location=bad)
        assert "corrupt" not in str(e.value)


@pytest.mark.parametrize("where", ["meta", torch.device("meta"), "cpu", torch.device("cpu")])
def test_map_location_places_the_model(tmp_path, where):
    """map_location='meta' crashed with NotImplementedError; the model ignored the device."""
    p = ls.save(_lif(), tmp_path / "m.lsnn")
    dev = torch.device(where)
    m = ls.load(p, map_location=where)
    assert {t.device.type for t in m.state_dict().values()} == {dev.type}
    ck = ls.load_checkpoint(p, map_location=where)
    assert {t.device.type for t in ck["state_dict"].values()} == {dev.type}


def _dir(tmp_path):
    (tmp_path / "adir").mkdir()
    return tmp_path / "adir", "folder, not a file"


def _under_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile" / "m.lsnn", "is a file, not a folder"


def _deep_under_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile" / "sub" / "m.lsnn", "is a file, not a folder"


def _trailing_slash(tmp_path):
    return str(tmp_path / "newdir") + "/", "folder, not a file"


def _empty(tmp_path):
    return "", "empty"


@pytest.mark.parametrize("make", [_dir, _under_file, _deep_under_file, _trailing_slash, _empty])
def test_output_path_that_cannot_be_a_file(tmp_path, make, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target, match = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for write in (lambda: ls.save(_lif(), target), lambda: write_text(target, "hi")):
        with pytest.raises((OSError, ValueError), match=match):
            write()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing left behind


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o755])
def test_rewrite_keeps_the_permissions_of_the_existing_file(tmp_path, mode):
    """Rewriting a private (0600) file made it world-readable (0666 less the umask)."""
    p = tmp_path / "m.lsnn"
    p.write_bytes(b"old")
    os.chmod(p, mode)
    ls.save(_lif(), p)
    assert stat.S_IMODE(p.stat().st_mode) == mode
    atomic_write(p, lambda tmp: open(tmp, "w").write("new"))
    assert stat.S_IMODE(p.stat().st_mode) == mode and p.read_text() == "new"


@pytest.mark.parametrize("length", [230, 240, 250, 255])
@pytest.mark.parametrize("char", ["a", "é"])
def test_long_file_names_that_the_system_allows(tmp_path, length, char):
    """A 240-byte name is legal, but '.<name>.<pid>-<random>.tmp' is not: every write to it
    failed with 'File name too long'."""
    n = (length - 5) // len(char.encode())
    target = tmp_path / (char * n + ".lsnn")
    assert len(target.name.encode()) <= 255
    ls.save(_lif(), target)
    ls.save(_lif(), target)  # a rewrite (stale temporaries looked up by the same name)
    assert isinstance(ls.load(target), torch.nn.Module)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("other", ["m.csv", "m.lsnn", "m.1", "m.x.y"])
def test_write_keeps_live_temporaries_of_files_sharing_the_name_start(tmp_path, other):
    """Writing 'm' deleted '.m.csv.<pid>-xyz.tmp', another writer's file in progress, as a
    stale temporary of its own."""
    live = tmp_path / f".{other}.{os.getpid()}-abc123.tmp"
    live.write_text("in progress")
    write_text(tmp_path / "m", "hi")
    ls.save(_lif(), tmp_path / "m")
    assert live.exists()
    stale = tmp_path / ".m.999999999-abc.tmp"  # a killed writer of 'm' itself
    stale.write_text("x")
    write_text(tmp_path / "m", "again")
    assert not stale.exists() and live.exists()
