"""Static image data sets: CIFAR-10/100 binary version, image folders, augmentations, the
tonic compatibility layer and the registry's static entries.

CIFAR files are written from the format's description (label byte(s) + 1024 R + 1024 G +
1024 B bytes per record), image folders with Pillow (PNG and JPEG).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from leansnn.data import (
    DATASETS,
    Cutout,
    DataError,
    FileFormatError,
    HorizontalFlip,
    RandomCrop,
    as_events,
    cifar10,
    cifar100,
    from_tonic,
    image_folder,
    make_events,
    time_major_collate,
    to_frames,
    to_time_major,
)

N_BATCH = 6


def cifar_record_bytes(labels, images) -> bytes:
    out = bytearray()
    for lab, img in zip(labels, images):
        out += bytes(lab)
        for c in range(3):                      # red plane, then green, then blue
            out += img[:, :, c].tobytes()       # row-major 32x32
    return bytes(out)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("c10")
    d = root / "cifar-10-batches-bin"
    d.mkdir()
    rng = np.random.default_rng(0)
    imgs, labs = {}, {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        hwc = rng.integers(0, 256, (N_BATCH, 32, 32, 3), dtype=np.uint8)
        lab = rng.integers(0, 10, N_BATCH)
        (d / f"{name}.bin").write_bytes(cifar_record_bytes([[v] for v in lab], hwc))
        imgs[name], labs[name] = hwc, lab
    (d / "batches.meta.txt").write_text("\n".join(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]) + "\n\n")
    return root, imgs, labs


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("c100") / "cifar-100-binary"
    root.mkdir()
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", 8), ("test", 4)):
        hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        coarse, fine = rng.integers(0, 20, n), rng.integers(0, 100, n)
        (root / f"{split}.bin").write_bytes(cifar_record_bytes(zip(coarse, fine), hwc))
        out[split] = (hwc, coarse, fine)
    (root / "coarse_label_names.txt").write_text("\n".join(f"c{i}" for i in range(20)))
    (root / "fine_label_names.txt").write_text("\n".join(f"f{i}" for i in range(100)))
    return root.parent, out


def test_cifar10_exact(cifar10_root):
    root, imgs, labs = cifar10_root
    tr = cifar10("train", root, normalize=False)
    te = cifar10("test", root / "cifar-10-batches-bin", normalize=False)
    assert len(tr) == 5 * N_BATCH and len(te) == N_BATCH and tr.classes[9] == "truck"
    want = np.concatenate([imgs[f"data_batch_{k}"] for k in range(1, 6)])
    x, y = tr[N_BATCH + 2]
    np.testing.assert_array_equal((x * 255).round().byte().numpy(),
                                  want[N_BATCH + 2].transpose(2, 0, 1))
    assert y == labs["data_batch_2"][2]
    xb, yb = next(te.batches(4))
    assert xb.shape == (4, 3, 32, 32) and yb.tolist() == labs["test_batch"][:4].tolist()
    # normalisation with the data set's mean/std
    n = cifar10("test", root)
    m, s = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
    torch.testing.assert_close(n[0][0], (te[0][0] - torch.tensor(m).view(3, 1, 1))
                               / torch.tensor(s).view(3, 1, 1))


def test_cifar100_fine_and_coarse(cifar100_root):
    root, out = cifar100_root
    hwc, coarse, fine = out["test"]
    f = cifar100("test", root, normalize=False)
    c = cifar100("test", root, label="coarse", normalize=False)
    assert f.labels.tolist() == fine.tolist() and c.labels.tolist() == coarse.tolist()
    assert f.num_classes == 100 and c.num_classes == 20 and c.classes[3] == "c3"
    np.testing.assert_array_equal((f[1][0] * 255).round().byte().numpy(),
                                  hwc[1].transpose(2, 0, 1))
    with pytest.raises(ValueError, match="'fine' or 'coarse'"):
        cifar100("test", root, label="super")


def test_cifar_bad_input(cifar10_root, tmp_path):
    root, _, _ = cifar10_root
    src = root / "cifar-10-batches-bin"
    bad = tmp_path / "cifar-10-batches-bin"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    data = (bad / "data_batch_3.bin").read_bytes()
    (bad / "data_batch_3.bin").write_bytes(data[:-100])
    with pytest.raises(FileFormatError, match=r"data_batch_3\.bin.*last record has 2973 "
                                              r"bytes.*byte offset 15365"):
        cifar10("train", tmp_path)
    (bad / "data_batch_3.bin").write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"data_batch_3\.bin: 0 bytes"):
        cifar10("train", tmp_path)
    wrong = bytearray(data)
    wrong[3073 * 2] = 12                           # label of record 2
    (bad / "data_batch_3.bin").write_bytes(bytes(wrong))
    with pytest.raises(FileFormatError, match=r"record 2 has label 12.*byte offset 6146"):
        cifar10("train", tmp_path)
    (bad / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match=r"incomplete: \['data_batch_3.bin'\] missing"):
        cifar10("train", tmp_path)
    assert len(cifar10("test", tmp_path)) == N_BATCH
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="does not have the expected layout"):
        cifar10("train", tmp_path / "other")
    with pytest.raises(DataError, match="does not have the expected layout"):
        cifar100("train", root)            # a CIFAR-10 root is not a CIFAR-100 one
    with pytest.raises(DataError, match="no split 'val'"):
        cifar10("val", root)


# --- augmentations ----------------------------------------------------------------------------
def test_augmentations_exact_and_seeded(cifar10_root):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = RandomCrop(2)(x, g)
    g2 = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 5, (16,), generator=g2)
    ox = torch.randint(0, 5, (16,), generator=g2)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(16):
        torch.testing.assert_close(y[b], xp[b, :, oy[b]:oy[b] + 8, ox[b]:ox[b] + 8])
    f = HorizontalFlip(1.0)(x, g)
    torch.testing.assert_close(f, x.flip(-1))
    assert torch.equal(HorizontalFlip(0.0)(x, g), x)
    c = Cutout(4)(torch.ones(64, 1, 8, 8), g)
    zeros = (c == 0).flatten(1).sum(1)
    assert zeros.max() == 16 and zeros.min() >= 4   # a 4x4 hole, partly outside at borders
    root = cifar10_root[0]
    ds = cifar10("train", root, augment="standard")
    a = [x for x, _ in ds.batches(8, shuffle=True, seed=5)]
    b = [x for x, _ in ds.batches(8, shuffle=True, seed=5)]
    c = [x for x, _ in ds.batches(8, shuffle=True, seed=6)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    plain = cifar10("train", root)
    assert torch.equal(ds[3][0], plain[3][0])          # items are never augmented
    assert ds.with_augment("cutout").augment[-1] == Cutout(16)
    with pytest.raises(ValueError, match="augment must be"):
        cifar10("train", root, augment="autoaugment")
    with pytest.raises(ValueError, match="padding"):
        RandomCrop(-1)


# --- image folders ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("val", 2)):
        for c, color in (("cat", (200, 10, 10)), ("dog", (10, 200, 10)), ("fox", (10, 10, 200))):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                arr = np.clip(np.array(color) + rng.integers(-5, 6, (24, 40, 3)), 0, 255)
                im = Image.fromarray(arr.astype(np.uint8))
                ext = "png" if k % 2 == 0 else "jpg"
                im.save(root / split / c / f"img{k}.{ext}")
    (root / "train" / "cat" / "notes.txt").write_text("ignored: not an image")
    return root


def test_image_folder(folder_root, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = image_folder("train", folder_root, size=(16, 16), cache_dir=tmp_path,
                          progress=False, normalize=False)
        va = image_folder("val", folder_root, size=(16, 16), cache_dir=tmp_path,
                          progress=False, normalize=False)
        again = image_folder("test", folder_root, size=(16, 16), cache_dir=tmp_path,
                             progress=False, normalize=False)
    assert tr.classes == ("cat", "dog", "fox") and len(tr) == 9 and len(va) == 6
    assert not tr.from_cache and again.from_cache and len(again) == 6
    assert tr.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x, y = tr[4]
    assert x.shape == (3, 16, 16) and y == 1
    # the dominant colour survives decoding, resizing (shorter side) and centre cropping
    assert x[1].mean() > 0.7 and x[0].mean() < 0.1 and x[2].mean() < 0.1
    xb, _ = next(tr.batches(4, shuffle=True, seed=0))
    assert xb.shape == (4, 3, 16, 16)


def test_image_folder_flat_and_bad(folder_root, tmp_path):
    flat = tmp_path / "flat"
    for c in ("a", "b"):
        (flat / c).mkdir(parents=True)
        for k in range(5):
            (flat / c / f"{k}.png").write_bytes((folder_root / "train" / "dog" / "img0.png")
                                                .read_bytes())
    kw = dict(size=(8, 8), cache_dir=tmp_path / "c", progress=False)
    assert len(image_folder("train", flat, test_fraction=0.2, **kw)) == 8
    assert len(image_folder("test", flat, test_fraction=0.2, **kw)) == 2
    (flat / "b" / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"5\.png: cannot decode as an image"):
        image_folder("all", flat, **kw)
    with pytest.warns(UserWarning, match=r"skipped 1 bad file.*5\.png"):
        ds = image_folder("all", flat, skip_bad_files=True, **kw)
    assert len(ds) == 10 and ds.labels.tolist() == [0] * 5 + [1] * 5
    with pytest.raises(DataError, match="split 'extra' is missing"):
        image_folder("extra", folder_root, **kw)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no .jpg/.jpeg/.png images"):
        image_folder("all", tmp_path / "empty", **kw)


# --- tonic compatibility ----------------------------------------------------------------------
class FakeTonic:
    """Mimics a tonic data set: (events, label) items, txyp field order, int64 fields."""

    dtype = np.dtype([("t", np.int64), ("x", np.int64), ("y", np.int64), ("p", np.int64)])
    ordering = dtype.names
    sensor_size = (20, 10, 2)                 # tonic: (W, H, P)

    def __init__(self, n=6):
        rng = np.random.default_rng(3)
        self.items = []
        for i in range(n):
            ev = np.zeros(50, self.dtype)
            ev["t"] = np.sort(rng.integers(0, 10_000, 50))
            ev["x"], ev["y"] = rng.integers(0, 20, 50), rng.integers(0, 10, 50)
            ev["p"] = rng.choice([-1, 1], 50)
            self.items.append((ev, i % 3))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_from_tonic_and_as_events():
    t = FakeTonic()
    ds = from_tonic(t, t.sensor_size, T=4, progress=False)
    ev0, _ = t[0]
    want = make_events(ev0["x"], ev0["y"], ev0["t"], (ev0["p"] > 0).astype(int))
    np.testing.assert_array_equal(ds.events(0), want)
    x, y = ds[0]
    assert x.shape == (4, 2, 10, 20) and y == 0
    np.testing.assert_array_equal(x.numpy(), to_frames(want, 4, (10, 20)))
    np.testing.assert_array_equal(to_frames(ev0, 4, (10, 20)), x.numpy())   # tonic arrays
    plain = np.stack([ev0["t"], ev0["x"], ev0["y"], ev0["p"]], 1)
    np.testing.assert_array_equal(as_events(plain, "txyp"), want)
    np.testing.assert_array_equal(to_frames(plain, 4, (10, 20), ordering="txyp"), x.numpy())
    xb, yb = next(ds.batches(6))
    assert xb.shape == (4, 6, 2, 10, 20) and yb.tolist() == [0, 1, 2, 0, 1, 2]
    w = from_tonic(t, (10, 20), T=2, dt_ms=2, progress=False)
    assert (w.lengths >= 4).all() and len(w.windows()) > len(w)
    with pytest.raises(Exception, match="ordering"):
        as_events(plain)
    with pytest.raises(DataError, match="outside the sensor"):
        from_tonic(t, (5, 5), T=2, progress=False)


def test_time_major_collate():
    items = [(np.full((3, 2, 4, 4), i, np.float32), i) for i in range(5)]
    x, y = time_major_collate(items)
    assert x.shape == (3, 5, 2, 4, 4) and y.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(x[:, 2], torch.full((3, 2, 4, 4), 2.0))
    loader = torch.utils.data.DataLoader(items, batch_size=2, collate_fn=time_major_collate)
    assert next(iter(loader))[0].shape == (3, 2, 2, 4, 4)
    bm = torch.arange(2 * 3 * 4).view(2, 3, 4)
    tm = to_time_major(bm)
    assert tm.shape == (3, 2, 4) and torch.equal(tm[1, 0], bm[0, 1]) and tm.is_contiguous()
    with pytest.raises(ValueError, match="different shapes"):
        time_major_collate([(np.zeros((3, 2)), 0), (np.zeros((4, 2)), 1)])


# --- registry ---------------------------------------------------------------------------------
def test_registry_static(cifar10_root, cifar100_root, folder_root, tmp_path):
    names = sorted(DATASETS)
    for n in ("fashion_mnist", "event_fashion_mnist", "cifar10", "cifar100", "image_folder",
              "nmnist", "ncaltech101", "dvs_gesture", "cifar10_dvs"):
        assert n in names
    roots = {"cifar10": cifar10_root[0], "cifar100": cifar100_root[0],
             "image_folder": folder_root}
    for name, root in roots.items():
        spec = DATASETS[name]
        assert spec.kind == "static" and len(spec.mean) == 3 and len(spec.std) == 3
        extra = {"cache_dir": tmp_path, "progress": False} if name == "image_folder" else {}
        ds = spec.load("train", root=root, **extra)
        assert tuple(ds[0][0].shape) == spec.input_shape()
        if spec.num_classes is not None:
            assert ds.num_classes == spec.num_classes
    assert DATASETS["fashion_mnist"].input_shape() == (1, 28, 28)
    assert DATASETS["event_fashion_mnist"].input_shape(T=4) == (4, 2, 32, 32)
    assert DATASETS["image_folder"].input_shape(size=(64, 48)) == (3, 64, 48)
    with pytest.raises(TypeError):
        DATASETS["cifar10"] = None
