"""Event data sets read from folders: N-MNIST, N-Caltech101, DVS128 Gesture, CIFAR10-DVS.

Every file is written here byte by byte from the formats' documentation (N-MNIST: 40-bit
big-endian records; AEDAT 3.1: text header + 28-byte packet headers + 8-byte little-endian
polarity events; AEDAT 2.0: text header + big-endian (address, timestamp) pairs with the
DVS128 address layout), independently of the readers' decoding code. Folders are built once
per session.
"""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
import torch

from leansnn.data import DATASETS, DataError, EventFormatError, make_events, to_frames, vote
from leansnn.data.event_folders import (
    cifar10_dvs,
    dvs_gesture,
    ncaltech101,
    nmnist,
    window_starts,
)


# --- format writers --------------------------------------------------------------------------
def nmnist_bytes(ev) -> bytes:
    out = bytearray()
    for e in ev:   # bit by bit, as the format page describes: x | y | p, t[22:16] | t | t
        t = int(e["t"])
        out += bytes([int(e["x"]), int(e["y"]), (int(e["p"]) << 7) | (t >> 16),
                      (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


AEDAT31_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                  b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")


def aedat31_bytes(ev, per_packet=300) -> bytes:
    out = bytearray(AEDAT31_HEADER)
    for i in range(0, len(ev), per_packet):
        chunk = ev[i:i + per_packet]
        body = bytearray()
        for e in chunk:
            t = int(e["t"])
            data = (int(e["x"]) << 17) | (int(e["y"]) << 2) | (int(e["p"]) << 1) | 1
            body += struct.pack("<Ii", data, t & 0x7FFFFFFF)
        overflow = int(chunk["t"][0]) >> 31
        out += struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, len(chunk), len(chunk),
                           len(chunk))
        out += body
    return bytes(out)


def aedat2_bytes(ev, header=b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n") -> bytes:
    out = bytearray(header)
    for e in ev:   # DVS128: y_raw bits 8-14, x_raw bits 1-7, bit 0 = 1 - p; grid transposed
        x_raw, y_raw = 127 - int(e["y"]), 127 - int(e["x"])
        addr = (y_raw << 8) | (x_raw << 1) | (1 - int(e["p"]))
        out += struct.pack(">II", addr, int(e["t"]))
    return bytes(out)


def rand_events(rng, n, h, w, t0=0, t1=300_000):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n),
                       np.sort(rng.integers(t0, t1, n)), rng.integers(0, 2, n))


# --- fixtures: one small folder per data set, built once --------------------------------------
@pytest.fixture(scope="session")
def nmnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    rng = np.random.default_rng(1)
    truth = {}
    for split, per in (("Train", 3), ("Test", 2)):
        for d in range(10):
            (root / split / str(d)).mkdir(parents=True)
            for k in range(per):
                ev = rand_events(rng, 150 + 10 * k, 34, 34, 0, 250_000 + 1000 * d)
                f = root / split / str(d) / f"{k:05d}.bin"
                f.write_bytes(nmnist_bytes(ev))
                truth[str(f)] = ev
    return root, truth


@pytest.fixture(scope="session")
def caltech_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ncaltech") / "Caltech101"
    rng = np.random.default_rng(2)
    truth = {}
    for c in ("Faces_easy", "accordion", "airplanes"):
        (root / c).mkdir(parents=True)
        for k in range(1, 6):
            h, w = int(rng.integers(100, 181)), int(rng.integers(150, 241))
            ev = rand_events(rng, 200, h, w)
            f = root / c / f"image_{k:04d}.bin"
            f.write_bytes(nmnist_bytes(ev))
            truth[str(f)] = ev
    return root.parent, truth


GESTURES = {  # file -> (events span, rows of class, start, end)
    "user01_fluorescent": [(1, 100_000, 900_000), (5, 1_000_000, 1_700_000)],
    "user02_led": [(11, 50_000, 600_000), (3, 700_000, 1_500_000), (2, 1_600_000, 1_900_000)],
    "user24_natural": [(7, 200_000, 800_000), (4, 900_000, 1_800_000)],
}


@pytest.fixture(scope="session")
def gesture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gesture") / "DvsGesture"
    root.mkdir()
    rng = np.random.default_rng(3)
    truth = {}
    for name, rows in GESTURES.items():
        ev = rand_events(rng, 3000, 128, 128, 0, 2_000_000)
        (root / f"{name}.aedat").write_bytes(aedat31_bytes(ev))
        csv = "class,startTime_usec,endTime_usec\r\n" + "".join(
            f"{c},{a},{b}\r\n" for c, a, b in rows)
        (root / f"{name}_labels.csv").write_text(csv)
        truth[name] = ev
    (root / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_led.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_natural.aedat\n")
    return root.parent, truth


@pytest.fixture(scope="session")
def cifar_dvs_root(tmp_path_factory):
    from leansnn.data.event_folders import CIFAR10_DVS_CLASSES

    root = tmp_path_factory.mktemp("c10dvs") / "CIFAR10DVS"
    rng = np.random.default_rng(4)
    truth = {}
    for c in CIFAR10_DVS_CLASSES:
        (root / c).mkdir(parents=True)
        for k in range(5):   # names sort numerically: 0..4 (and 10 > 9 would, too)
            ev = rand_events(rng, 120, 128, 128, 5_000_000, 6_300_000)
            f = root / c / f"cifar10_{c}_{k}.aedat"
            f.write_bytes(aedat2_bytes(ev))
            truth[str(f)] = ev
    return root.parent, truth


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*a, progress=False, **kw)


# --- N-MNIST ----------------------------------------------------------------------------------
def test_nmnist_frames_labels_events(nmnist_root, tmp_path):
    root, truth = nmnist_root
    ds = quiet(nmnist, "train", root, T=4, cache_dir=tmp_path)
    assert len(ds) == 30 and ds.num_classes == 10 and not ds.from_cache
    assert ds.labels.tolist() == [d for d in range(10) for _ in range(3)]
    for i in (0, 7, 29):
        ev = truth[ds._events_fn.__self__.samples[i].path]
        np.testing.assert_array_equal(ds.events(i), ev)
        x, y = ds[i]
        assert x.shape == (4, 2, 34, 34) and y == i // 3
        np.testing.assert_array_equal(x.numpy(), to_frames(ev, 4, (34, 34)))
    x, y = next(ds.batches(8))
    assert x.shape == (4, 8, 2, 34, 34) and y.tolist() == ds.labels[:8].tolist()
    test = quiet(nmnist, "test", root, T=4, cache_dir=tmp_path, size=(16, 16))
    assert len(test) == 20 and test[0][0].shape == (4, 2, 16, 16)


def test_nmnist_cache_hit_miss_invalidation(nmnist_root, tmp_path):
    root, _ = nmnist_root
    a = quiet(nmnist, "train", root, T=3, cache_dir=tmp_path)
    b = quiet(nmnist, "train", root, T=3, cache_dir=tmp_path)
    assert not a.from_cache and b.from_cache and b.cache_path == a.cache_path
    np.testing.assert_array_equal(np.asarray(a.frames), np.asarray(b.frames))
    for kw in ({"T": 4}, {"T": 3, "by": "count"}, {"T": 3, "binary": True},
               {"T": 3, "dt_ms": 50}, {"T": 3, "size": (32, 32)}):
        c = quiet(nmnist, "train", root, cache_dir=tmp_path, **kw)
        assert not c.from_cache and c.cache_path != a.cache_path
    # damaged cache file: warned about and rebuilt
    fr = a.cache_path.with_name(a.cache_path.name + ".frames.npy")
    data = bytearray(fr.read_bytes())
    data[-1] ^= 0xFF
    fr.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum mismatch"):
        d = nmnist("train", root, T=3, cache_dir=tmp_path, progress=False)
    assert not d.from_cache
    assert quiet(nmnist, "train", root, T=3, cache_dir=tmp_path).from_cache


def test_cache_invalidated_by_source_change(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "nm"
    for d in range(2):
        (root / "Train" / str(d)).mkdir(parents=True)
        for k in range(2):
            (root / "Train" / str(d) / f"{k}.bin").write_bytes(
                nmnist_bytes(rand_events(rng, 50, 34, 34)))
    a = quiet(nmnist, "train", root, T=2, cache_dir=tmp_path / "c")
    f = root / "Train" / "1" / "0.bin"
    f.write_bytes(nmnist_bytes(rand_events(rng, 60, 34, 34)))
    b = quiet(nmnist, "train", root, T=2, cache_dir=tmp_path / "c")
    assert not b.from_cache and b.cache_path != a.cache_path
    assert b.frames[b.offsets[2]:b.offsets[3]].sum() == 60
    # moving the whole root keeps the cache (paths are relative to the root)
    root.rename(tmp_path / "moved")
    assert quiet(nmnist, "train", tmp_path / "moved", T=2, cache_dir=tmp_path / "c").from_cache


def test_workers_give_the_same_frames(nmnist_root, tmp_path):
    root, _ = nmnist_root
    one = quiet(nmnist, "test", root, T=2, dt_ms=30, use_cache=False)
    two = nmnist("test", root, T=2, dt_ms=30, cache_dir=tmp_path, workers=2, progress=False)
    np.testing.assert_array_equal(np.asarray(one.frames), np.asarray(two.frames))
    np.testing.assert_array_equal(one.offsets, two.offsets)
    assert one.cache_path is None and two.cache_path is not None


# --- the ASA protocol: windows and voting -----------------------------------------------------
def test_fixed_duration_frames_and_training_windows(nmnist_root, tmp_path):
    root, truth = nmnist_root
    ds = quiet(nmnist, "train", root, T=4, dt_ms=20, cache_dir=tmp_path)
    for i in (0, 13):
        ev = ds.events(i)
        dur = int(ev["t"][-1] - ev["t"][0]) + 1
        L = -(-dur // 20_000)
        assert ds.lengths[i] == L
        ref = to_frames(ev, L, (34, 34), duration=L * 20_000)
        np.testing.assert_array_equal(ds.sequence(i).numpy(), ref)
    a = [x for x, _ in ds.batches(7, shuffle=True, seed=3)]
    b = [x for x, _ in ds.batches(7, shuffle=True, seed=3)]
    c = [x for x, _ in ds.batches(7, shuffle=True, seed=4)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    # each window is T consecutive frames of its recording, starting where random_starts says
    starts = ds.random_starts(3)
    assert len(set(starts.tolist())) > 1
    x, y = next(ds.batches(30, shuffle=False, seed=3))
    for i in (0, 5, 29):
        seq = ds.sequence(i)
        torch.testing.assert_close(x[:, i], seq[starts[i]:starts[i] + 4])
        assert 0 <= starts[i] <= ds.lengths[i] - 4


def test_window_starts_cover():
    assert window_starts(3, 4).tolist() == [0]
    assert window_starts(8, 4).tolist() == [0, 4]
    assert window_starts(10, 4).tolist() == [0, 4, 6]
    assert window_starts(10, 4, stride=2).tolist() == [0, 2, 4, 6]
    for L in range(1, 30):
        for stride in (1, 3, 4):
            s = window_starts(L, 4, stride)
            covered = np.zeros(L, bool)
            for a in s:
                covered[a:a + 4] = True
            assert covered.all() and (s + 4 <= max(L, 4)).all()
    with pytest.raises(ValueError, match="stride must be in 1..T=4"):
        window_starts(10, 4, stride=5)


def test_evaluation_windows_and_vote(nmnist_root, tmp_path):
    root, _ = nmnist_root
    ds = quiet(nmnist, "test", root, T=3, dt_ms=25, cache_dir=tmp_path)
    view = ds.windows()
    assert view.num_recordings == len(ds) == 20
    seen = np.zeros(len(ds), int)
    n = 0
    for x, y, rec in view.batches(11):
        assert x.shape[0] == 3 and x.shape[1] == y.shape[0] == rec.shape[0]
        assert torch.equal(y, ds.labels[rec])
        for b in range(rec.shape[0]):
            w = n + b
            r, s = int(rec[b]), int(view.start[w])
            torch.testing.assert_close(x[:, b], ds.sequence(r)[s:s + 3])
        seen += np.bincount(rec.numpy(), minlength=len(ds))
        n += rec.shape[0]
    assert n == len(view) and (seen == [len(window_starts(int(L), 3)) for L in ds.lengths]).all()
    # every frame of every recording lies in some window
    for r in range(len(ds)):
        cov = np.zeros(ds.lengths[r], bool)
        for s in view.start[view.recording == r]:
            cov[s:s + 3] = True
        assert cov.all()
    # whole-recording mode: one window per recording
    whole = quiet(nmnist, "test", root, T=3, cache_dir=tmp_path)
    assert len(whole.windows()) == len(whole)


def test_vote():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.0, 0.4],
                           [0.0, 0.1, 0.9], [0.0, 0.8, 0.2], [0.1, 0.45, 0.45]])
    rec = torch.tensor([0, 0, 0, 1, 1, 2])
    assert vote(scores, rec).tolist() == [0, 1, 1]
    assert vote(scores, rec, how="sum").tolist() == [0, 2, 1]
    assert vote(scores, rec, num_recordings=4).tolist() == [0, 1, 1, -1]
    tie = vote(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    assert tie.tolist() == [0]
    with pytest.raises(ValueError, match="majority"):
        vote(scores, rec, how="mean")


# --- N-Caltech101 -----------------------------------------------------------------------------
def test_ncaltech101(caltech_root, tmp_path):
    root, truth = caltech_root
    train = quiet(ncaltech101, "train", root, T=2, cache_dir=tmp_path, test_fraction=0.2)
    test = quiet(ncaltech101, "test", root, T=2, cache_dir=tmp_path, test_fraction=0.2)
    assert train.classes == ("Faces_easy", "accordion", "airplanes")
    assert len(train) == 12 and len(test) == 3 and test.labels.tolist() == [0, 1, 2]
    ev = test.events(1)
    np.testing.assert_array_equal(ev, truth[str(root / "Caltech101/accordion/image_0005.bin")])
    x, _ = test[1]
    assert x.shape == (2, 2, 45, 60)
    np.testing.assert_array_equal(x.numpy(), to_frames(ev, 2, (180, 240), downsample=4))
    assert len(quiet(ncaltech101, "all", root, T=2, cache_dir=tmp_path)) == 15


def test_ncaltech101_address_outside_sensor(tmp_path):
    d = tmp_path / "Caltech101" / "cls"
    d.mkdir(parents=True)
    ev = make_events([10, 241], [5, 6], [0, 10], [1, 0])
    (d / "image_0001.bin").write_bytes(nmnist_bytes(ev))
    with pytest.raises(EventFormatError, match=r"image_0001\.bin.*byte offset 5"):
        ncaltech101("all", tmp_path, T=2, use_cache=False, progress=False)


# --- DVS128 Gesture ---------------------------------------------------------------------------
def test_dvs_gesture_cut_per_gesture(gesture_root, tmp_path):
    root, truth = gesture_root
    train = quiet(dvs_gesture, "train", root, T=4, cache_dir=tmp_path)
    test = quiet(dvs_gesture, "test", root, T=4, cache_dir=tmp_path)
    assert len(train) == 5 and len(test) == 2 and train.num_classes == 11
    assert train.labels.tolist() == [0, 4, 10, 2, 1] and test.labels.tolist() == [6, 3]
    rows = [("user01_fluorescent", r) for r in GESTURES["user01_fluorescent"]] + \
        [("user02_led", r) for r in GESTURES["user02_led"]]
    for i, (name, (_, a, b)) in enumerate(rows):
        ev = truth[name]
        want = ev[(ev["t"] >= a) & (ev["t"] < b)].copy()
        want["t"] -= a
        np.testing.assert_array_equal(train.events(i), want)
        np.testing.assert_array_equal(train[i][0].numpy(),
                                      to_frames(want, 4, (128, 128), duration=b - a,
                                                t_start=0, downsample=4))
    # dt mode: frames of the gesture's span from its start
    fixed = quiet(dvs_gesture, "train", root, T=4, dt_ms=100, cache_dir=tmp_path)
    assert fixed.lengths.tolist() == [8, 7, 6, 8, 3]


def test_dvs_gesture_split_by_user_without_lists(gesture_root, tmp_path):
    root, _ = gesture_root
    alt = tmp_path / "g"
    alt.mkdir()
    for f in (root / "DvsGesture").iterdir():
        if f.suffix in (".aedat", ".csv"):
            (alt / f.name).write_bytes(f.read_bytes())
    tr = quiet(dvs_gesture, "train", alt, T=2, use_cache=False)
    te = quiet(dvs_gesture, "test", alt, T=2, use_cache=False)
    assert len(tr) == 5 and len(te) == 2


def _gesture_copy(src, dst, names=("user01_fluorescent",)):
    dst.mkdir()
    for n in names:
        for suffix in (".aedat", "_labels.csv"):
            (dst / (n + suffix)).write_bytes((src / (n + suffix)).read_bytes())
    return dst


def test_dvs_gesture_bad_input(gesture_root, tmp_path):
    src = gesture_root[0] / "DvsGesture"
    # labels outside the recording
    r = _gesture_copy(src, tmp_path / "a")
    (r / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n1,100000,900000\n2,5000000,6000000\n")
    with pytest.raises(DataError, match=r"user01_fluorescent\.aedat: labels outside the "
                                        r"recording"):
        dvs_gesture("train", r, T=2, use_cache=False, progress=False)
    # missing labels file
    r = _gesture_copy(src, tmp_path / "b")
    (r / "user01_fluorescent_labels.csv").unlink()
    with pytest.raises(DataError, match="user01_fluorescent_labels.csv is missing"):
        dvs_gesture("train", r, T=2, use_cache=False, progress=False)
    # a list names a file that is not there; a split whose list is missing
    r = _gesture_copy(src, tmp_path / "c")
    (r / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser05_led.aedat\n")
    with pytest.raises(DataError, match=r"trials_to_train\.txt: lists user05_led\.aedat"):
        dvs_gesture("train", r, T=2, use_cache=False, progress=False)
    with pytest.raises(DataError, match=r"split 'test' is missing.*trials_to_test\.txt"):
        dvs_gesture("test", r, T=2, use_cache=False, progress=False)
    # an AEDAT 2.0 file in place of a 3.1 recording; a truncated recording
    r = _gesture_copy(src, tmp_path / "d")
    ev = gesture_root[1]["user01_fluorescent"]
    (r / "user01_fluorescent.aedat").write_bytes(aedat2_bytes(ev[:10]))
    with pytest.raises(EventFormatError, match=r"user01_fluorescent\.aedat.*version '2\.0'"):
        dvs_gesture("train", r, T=2, use_cache=False, progress=False)
    data = aedat31_bytes(ev)
    (r / "user01_fluorescent.aedat").write_bytes(data[:-5])
    with pytest.raises(EventFormatError, match=r"byte offset \d+") as ei:
        dvs_gesture("train", r, T=2, use_cache=False, progress=False)
    assert ei.value.path.name == "user01_fluorescent.aedat"
    # an empty recording (header only)
    (r / "user01_fluorescent.aedat").write_bytes(AEDAT31_HEADER)
    with pytest.raises(DataError, match="empty recording"):
        dvs_gesture("train", r, T=2, use_cache=False, progress=False)


# --- CIFAR10-DVS ------------------------------------------------------------------------------
def test_cifar10_dvs(cifar_dvs_root, tmp_path):
    root, truth = cifar_dvs_root
    tr = quiet(cifar10_dvs, "train", root, T=4, cache_dir=tmp_path, test_fraction=0.2)
    te = quiet(cifar10_dvs, "test", root, T=4, cache_dir=tmp_path, test_fraction=0.2)
    assert len(tr) == 40 and len(te) == 10 and te.labels.tolist() == list(range(10))
    f = root / "CIFAR10DVS" / "dog" / "cifar10_dog_4.aedat"
    np.testing.assert_array_equal(te.events(5), truth[str(f)])
    np.testing.assert_array_equal(te[5][0].numpy(),
                                  to_frames(truth[str(f)], 4, (128, 128), downsample=4))


def test_aedat2_hand_made_record(tmp_path):
    from leansnn.data import read_aedat2

    # address 0x0000_0A03: bit0 = 1 (OFF), x_raw = 1, y_raw = 10 -> x = 117, y = 126, p = 0
    f = tmp_path / "a.aedat"
    f.write_bytes(b"#!AER-DAT2.0\r\n" + bytes.fromhex("00000A03 00000064")
                  + bytes.fromhex("00008000 00000070"))   # an external event: dropped
    e = read_aedat2(f)
    assert len(e) == 1 and (e["x"][0], e["y"][0], e["p"][0], e["t"][0]) == (117, 126, 0, 100)
    f.write_bytes(b"#!AER-DAT2.0\r\n" + bytes.fromhex("00000A03 000000"))
    with pytest.raises(EventFormatError, match="byte offset 14"):
        read_aedat2(f)
    f.write_bytes(AEDAT31_HEADER)
    with pytest.raises(EventFormatError, match="AEDAT 2.0"):
        read_aedat2(f)
    f.write_bytes(nmnist_bytes(make_events([1], [2], [3], [1])))
    with pytest.raises(EventFormatError, match="not an AEDAT file"):
        read_aedat2(f)


def test_cifar10_dvs_bad_layout(cifar_dvs_root, tmp_path):
    (tmp_path / "r" / "airplane").mkdir(parents=True)
    with pytest.raises(DataError, match=r"lacks the class folder\(s\) \['automobile'"):
        cifar10_dvs("train", tmp_path / "r", progress=False)


# --- bad input common to the folder data sets -------------------------------------------------
def test_bad_roots_and_splits(nmnist_root, tmp_path, monkeypatch):
    root, _ = nmnist_root
    monkeypatch.delenv("LEANSNN_DATA", raising=False)
    with pytest.raises(DataError, match="no data folder given.*LEANSNN_DATA"):
        nmnist("train", None)
    monkeypatch.setenv("LEANSNN_DATA", str(root))
    assert len(quiet(nmnist, "test", None, T=2, use_cache=False)) == 20
    with pytest.raises(DataError, match="does not have the expected layout"):
        nmnist("train", tmp_path)
    with pytest.raises(DataError, match="is not a folder"):
        nmnist("train", tmp_path / "nope")
    with pytest.raises(DataError, match="no split 'val'"):
        nmnist("val", root)
    only_train = tmp_path / "t"
    (only_train / "Train" / "3").mkdir(parents=True)
    (only_train / "Train" / "3" / "a.bin").write_bytes(nmnist_bytes(make_events([1], [1], [1],
                                                                                [1])))
    with pytest.raises(DataError, match=r"split 'test' is missing: no folder .*Test"):
        nmnist("test", only_train)   # never falls back to $LEANSNN_DATA's Test folder
    (only_train / "Train" / "x").mkdir()
    with pytest.raises(DataError, match="unexpected folder"):
        nmnist("train", only_train)


def test_bad_files_and_skip(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "nm"
    for d in range(2):
        (root / "Train" / str(d)).mkdir(parents=True)
        for k in range(3):
            (root / "Train" / str(d) / f"{k}.bin").write_bytes(
                nmnist_bytes(rand_events(rng, 40, 34, 34)))
    good = quiet(nmnist, "train", root, T=2, use_cache=False)
    cases = {
        "empty.bin": (b"", DataError, r"empty\.bin: empty recording"),
        "aedat.bin": (AEDAT31_HEADER, EventFormatError,
                      r"aedat\.bin: this is a AEDAT 3 file.*byte offset 0"),
        "trunc.bin": (nmnist_bytes(rand_events(rng, 4, 34, 34))[:-3], EventFormatError,
                      r"trunc\.bin: last record is 2 of 5 bytes.*byte offset 15"),
        "addr.bin": (bytes([40, 1, 0, 0, 5]), EventFormatError,
                     r"addr\.bin: event 0 has address x=40.*byte offset 0"),
    }
    for name, (data, err, msg) in cases.items():
        f = root / "Train" / "1" / name
        f.write_bytes(data)
        with pytest.raises(err, match=msg):
            nmnist("train", root, T=2, use_cache=False, progress=False)
        with pytest.warns(UserWarning, match=rf"skipped 1 bad file.*{name}"):
            ds = nmnist("train", root, T=2, cache_dir=tmp_path / "c", progress=False,
                        skip_bad_files=True)
        assert len(ds) == 6 and ds.skipped[0][0] == str(f)
        np.testing.assert_array_equal(np.asarray(ds.frames), np.asarray(good.frames))
        # the cached result repeats the warning
        with pytest.warns(UserWarning, match=rf"skipped 1 bad file.*{name}"):
            assert nmnist("train", root, T=2, cache_dir=tmp_path / "c", progress=False,
                          skip_bad_files=True).from_cache
        f.unlink()


# --- the registry -----------------------------------------------------------------------------
def test_registry_events(nmnist_root, caltech_root, gesture_root, cifar_dvs_root, tmp_path):
    roots = {"nmnist": nmnist_root[0], "ncaltech101": caltech_root[0],
             "dvs_gesture": gesture_root[0], "cifar10_dvs": cifar_dvs_root[0]}
    for name, root in roots.items():
        spec = DATASETS[name]
        assert spec.kind == "events" and "T" in spec.settings and "dt_ms" in spec.settings
        ds = spec.load(spec.splits[0], root=root, T=3, cache_dir=tmp_path, progress=False)
        x, y = next(ds.batches(2))
        assert tuple(x.shape[2:]) == spec.input_shape(T=3)[1:] and x.shape[0] == 3
        assert tuple(ds[0][0].shape) == spec.input_shape(T=3)
        if spec.num_classes is not None:
            assert ds.num_classes == spec.num_classes
    with pytest.raises(DataError, match="no split 'val'"):
        DATASETS["nmnist"].load("val", root=roots["nmnist"])
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['tee'\]"):
        DATASETS["nmnist"].load("train", root=roots["nmnist"], tee=3)
