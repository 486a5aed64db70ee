"""Checkpoints (safe, atomic, config-carrying) and resumable training."""

import os

import pytest
import torch

import leansnn as ls
from leansnn.checkpoint import CheckpointError
from leansnn.data import ImageDataset
from leansnn.train import TrainConfig, evaluate, fit


def tiny_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    imgs = (torch.rand(n, 28, 28, generator=g) * 60).to(torch.uint8)
    # make the classes separable: a bright bar whose row depends on the label
    for i, y in enumerate(labels.tolist()):
        imgs[i, 2 + 2 * y: 4 + 2 * y, 4:24] = 255
    return ImageDataset(imgs, labels, name="tiny")


def test_save_load_roundtrip(tmp_path):
    m = ls.models.create("lif_cnn", T=2, width=4)
    p = ls.save(m, tmp_path / "m.lsnn", note="hello", meta={"acc": 0.5})
    m2 = ls.load(p)
    assert m2.leansnn_meta["note"] == "hello" and m2.leansnn_meta["meta"]["acc"] == 0.5
    x = torch.rand(3, 1, 28, 28)
    m.eval(), m2.eval()
    assert torch.equal(m(x), m2(x))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ls.load(tmp_path / "nope.lsnn")
    bad = tmp_path / "bad.lsnn"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a torch archive"):
        ls.load(bad)
    m = ls.models.create("lif_cnn", T=2, width=4)
    good = ls.save(m, tmp_path / "good.lsnn")
    trunc = tmp_path / "trunc.lsnn"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="trunc.lsnn"):
        ls.load(trunc)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a leansnn checkpoint"):
        ls.load(foreign)
    newer = tmp_path / "newer.lsnn"
    torch.save({"magic": "leansnn-checkpoint", "format_version": 99, "meta_json": "{}"}, newer)
    with pytest.raises(CheckpointError, match="newer than this leansnn"):
        ls.load(newer)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.lsnn"
    torch.save({"magic": "leansnn-checkpoint", "format_version": 1, "x": Evil()}, p)
    with pytest.raises(CheckpointError, match="refuses to unpickle|could not be read"):
        ls.load(p)


def test_training_learns_and_resume_is_exact(tmp_path):
    data = tiny_data()
    cfg = TrainConfig(epochs=3, batch_size=16, lr=5e-3, seed=1, augment="flip_crop")
    torch.manual_seed(0)
    full = ls.models.create("lif_cnn", T=2, width=4)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    out = fit(full, data, data, cfg, checkpoint=tmp_path / "full.lsnn", progress=False)
    hist = out["history"]
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"]
    assert 0 < hist[-1]["firing_rate"] < 1
    # interrupted after epoch 2, then resumed
    cfg2 = TrainConfig(**cfg.__dict__)
    ck = tmp_path / "part.lsnn"
    part2 = ls.models.create("lif_cnn", T=2, width=4)
    part2.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        fit(part2, data, data, cfg2, checkpoint=ck, progress=False,
            on_epoch=lambda r: _stop_after(r, 2))
    resumed = ls.models.create("lif_cnn", T=2, width=4)
    out2 = fit(resumed, data, data, cfg2, checkpoint=ck, resume=True, progress=False)
    assert [h["epoch"] for h in out2["history"]] == [1, 2, 3]
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    ev = evaluate(resumed, data)
    assert ev["n"] == len(data) and 0 <= ev["accuracy"] <= 1


def _stop_after(rec, epoch):
    if rec["epoch"] == epoch:
        raise KeyboardInterrupt
