"""event_fashion_mnist: conversion, on-disk cache (hit, miss, invalidation, corruption), batches."""

import struct
import warnings

import numpy as np
import pytest
import torch

from leansnn.data.emulator import EmulatorSettings, emulate_batch
from leansnn.data.event_datasets import EventFrameDataset, FrameSettings, event_fashion_mnist
from leansnn.data.events import frames_from_batch

N = 10


def _write_idx(folder, images, labels, split="train"):
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}[split]
    (folder / names[0]).write_bytes(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
    (folder / names[1]).write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


@pytest.fixture()
def fake_root(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (N, 7, 7)).astype(np.uint8)
    images = np.kron(small, np.ones((4, 4), np.uint8))
    labels = (np.arange(N) % 10).astype(np.uint8)
    root = tmp_path / "fm"
    root.mkdir()
    _write_idx(root, images, labels)
    return root, images, labels


def _load(root, cache, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # an unexpected "cache damaged" warning fails
        return event_fashion_mnist("train", root=root, cache_dir=cache, progress=False, **kw)


def test_conversion_matches_emulator(fake_root, tmp_path):
    root, images, labels = fake_root
    emu = EmulatorSettings(noise_rate_hz=5.0)
    ds = _load(root, tmp_path / "c", T=4, size=(34, 34), emulator=emu, seed=2)
    assert len(ds) == N and ds.T == 4
    x, y = ds[3]
    assert x.shape == (4, 2, 34, 34) and x.dtype == torch.float32 and y == labels[3]
    ev, off = emulate_batch(images, emu, seed=2)
    ref = frames_from_batch(ev, off, 4, (34, 34), duration=emu.duration_us + 1, t_start=0)
    np.testing.assert_array_equal(np.asarray(ds.frames, np.float32), ref)
    # every event is in some frame
    assert ds.frames.astype(np.int64).sum() == len(ev)


def test_default_size_crops_sensor(fake_root, tmp_path):
    root, _, _ = fake_root
    full = _load(root, tmp_path / "c", T=2, size=(34, 34))
    ds = _load(root, tmp_path / "c", T=2)
    assert ds.frames.shape == (N, 2, 2, 32, 32)
    np.testing.assert_array_equal(ds.frames, full.frames[..., 1:33, 1:33])
    half = _load(root, tmp_path / "c", T=2, size=(16, 16))
    np.testing.assert_array_equal(
        half.frames.astype(int),
        full.frames[..., 1:33, 1:33].astype(int).reshape(N, 2, 2, 16, 2, 16, 2).sum((4, 6)))
    assert FrameSettings(size=(8, 8)).spatial((34, 34)) == (4, (1, 1, 32, 32))
    with pytest.raises(ValueError, match="larger than the sensor"):
        _load(root, tmp_path / "c", size=(40, 40))


def test_cache_hit_miss_invalidation(fake_root, tmp_path):
    root, images, labels = fake_root
    cache = tmp_path / "cache"
    a = _load(root, cache, T=4)
    assert not a.from_cache and a.cache_path.parent == cache
    b = _load(root, cache, T=4)
    assert b.from_cache and b.cache_path == a.cache_path
    np.testing.assert_array_equal(a.frames, b.frames)
    # any emulator or binning change -> a new conversion under another key
    assert _load(root, cache, T=4, noise_rate_hz=1.0).from_cache  # 1.0 is the default
    for kw in (dict(T=5), dict(T=4, emulator=EmulatorSettings(noise_rate_hz=3.0)),
               dict(T=4, noise_rate_hz=4.0),
               dict(T=4, binary=True), dict(T=4, by="count"), dict(T=4, seed=1)):
        c = _load(root, cache, **kw)
        assert not c.from_cache and c.cache_path != a.cache_path
    # changing the source images invalidates too
    images2 = images.copy()
    images2[0] = 255 - images2[0]
    _write_idx(root, images2, labels)
    d = _load(root, cache, T=4)
    assert not d.from_cache and d.cache_path != a.cache_path
    assert not np.array_equal(d.frames[0], a.frames[0])
    np.testing.assert_array_equal(d.frames[1:], a.frames[1:])


def test_cache_env_var(fake_root, tmp_path, monkeypatch):
    root, _, _ = fake_root
    monkeypatch.setenv("LEANSNN_CACHE", str(tmp_path / "envcache"))
    ds = event_fashion_mnist("train", T=2, root=root, progress=False)
    assert ds.cache_path.parent == tmp_path / "envcache"


@pytest.mark.parametrize("damage", ["truncate_frames", "flip_byte", "bad_json", "no_labels"])
def test_corrupt_cache_is_rebuilt(fake_root, tmp_path, damage):
    root, _, _ = fake_root
    cache = tmp_path / "cache"
    a = _load(root, cache, T=3)
    good = np.array(a.frames)
    stem = a.cache_path
    del a
    fr = stem.with_name(stem.name + ".frames.npy")
    if damage == "truncate_frames":
        data = fr.read_bytes()
        fr.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        data = bytearray(fr.read_bytes())
        data[-5] ^= 0xFF
        fr.write_bytes(bytes(data))
    elif damage == "bad_json":
        stem.with_name(stem.name + ".json").write_text("{not json")
    else:
        stem.with_name(stem.name + ".labels.npy").unlink()
    with pytest.warns(UserWarning, match="damaged"):
        b = event_fashion_mnist("train", T=3, root=root, cache_dir=cache, progress=False)
    assert not b.from_cache
    np.testing.assert_array_equal(b.frames, good)
    assert _load(root, cache, T=3).from_cache


def test_subset_argument(fake_root, tmp_path):
    root, _, labels = fake_root
    part = _load(root, tmp_path / "c", T=3, n=4, subset_seed=7)
    assert len(part) == 4 and not part.from_cache
    assert _load(root, tmp_path / "c", T=3, n=4, subset_seed=7).from_cache
    full = _load(root, tmp_path / "c", T=3)
    assert not full.from_cache and part.cache_path != full.cache_path
    ref = full.subset(4, seed=7)
    np.testing.assert_array_equal(part.frames, ref.frames)
    np.testing.assert_array_equal(part.labels, ref.labels)
    # once the whole split is cached, subsets are cut from it instead of converted again
    other = _load(root, tmp_path / "c", T=3, n=5, subset_seed=1)
    assert other.from_cache and other.cache_path == full.cache_path
    np.testing.assert_array_equal(other.frames, full.subset(5, seed=1).frames)
    direct = _load(root, tmp_path / "d", T=3, n=5, subset_seed=1)
    assert not direct.from_cache
    np.testing.assert_array_equal(other.frames, direct.frames)


def test_batches_time_major(fake_root, tmp_path):
    root, _, _ = fake_root
    ds = _load(root, tmp_path / "c", T=3)
    got = list(ds.batches(4, shuffle=True, seed=1))
    assert [x.shape for x, _ in got] == [(3, 4, 2, 32, 32)] * 2 + [(3, 2, 2, 32, 32)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in got)
    assert len(list(ds.batches(4, drop_last=True))) == 2
    order = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    x0, y0 = got[0]
    for j in range(4):
        xi, yi = ds[int(order[j])]
        torch.testing.assert_close(x0[:, j], xi)
        assert int(y0[j]) == yi
    ys = torch.cat([y for _, y in got])
    assert sorted(ys.tolist()) == sorted(ds.labels.tolist())
    x_again = next(iter(ds.batches(4, shuffle=True, seed=1)))[0]
    torch.testing.assert_close(x_again, x0)


def test_dataset_validation():
    with pytest.raises(ValueError, match=r"\[N, T, 2, H, W\]"):
        EventFrameDataset(np.zeros((2, 3, 1, 4, 4), np.uint8), np.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        EventFrameDataset(np.zeros((2, 3, 2, 4, 4), np.uint8), np.zeros(3))
    with pytest.raises(ValueError, match="T must be"):
        FrameSettings(T=0)


def test_workers_and_batch_size_do_not_change_frames(fake_root, tmp_path):
    root, _, _ = fake_root
    emu = EmulatorSettings(noise_rate_hz=10.0)
    a = _load(root, tmp_path / "a", T=3, emulator=emu)
    b = _load(root, tmp_path / "b", T=3, emulator=emu, batch_size=3, workers=2)
    np.testing.assert_array_equal(a.frames, b.frames)
    with pytest.raises(ValueError, match="workers"):
        _load(root, tmp_path / "c", workers=0)


def test_file_digest_spot_check(tmp_path):
    from leansnn.data.event_datasets import _file_digest

    f = tmp_path / "big.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3_000_000, np.uint8).tobytes())
    f.write_bytes(bytes(data))
    d0 = _file_digest(f, block=1024, blocks=16)
    for pos in (0, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 1
        f.write_bytes(bytes(bad))
        assert _file_digest(f, block=1024, blocks=16) != d0
    f.write_bytes(bytes(data[:-1]))
    assert _file_digest(f, block=1024, blocks=16) != d0
    f.write_bytes(bytes(data))
    assert _file_digest(f, block=1024, blocks=16) == d0
