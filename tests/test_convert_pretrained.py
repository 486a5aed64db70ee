"""Whole-test-set check of the shipped QCFS net: parallel conversion at T = L is lossless.

Skipped when the committed checkpoint or the Fashion-MNIST files are absent.
"""

import json
from pathlib import Path

import pytest
import torch

import leansnn as ls

ROOT = Path(__file__).resolve().parent.parent
# every shipped QCFS net whose level L is used as T
CKPTS = sorted(p for p in (ROOT / "pretrained").glob("*_qcfs4.lsnn"))


def _test_set():
    try:
        return ls.data.fashion_mnist("test")
    except (OSError, ValueError) as e:
        pytest.skip(f"Fashion-MNIST test set unavailable: {e}")


def test_small_cnn_qcfs4_is_shipped():
    assert ROOT / "pretrained" / "small_cnn_qcfs4.lsnn" in CKPTS


@pytest.mark.slow
@pytest.mark.parametrize("ckpt", CKPTS, ids=lambda p: p.stem)
@torch.no_grad()
def test_parallel_at_T_equal_L_agrees_on_every_test_image(ckpt):
    test = _test_set()
    ann = ls.load(ckpt).eval()
    levels = {m.levels for m in ann.modules() if isinstance(m, ls.QCFS)}
    assert len(levels) == 1
    L = levels.pop()
    exact = ls.convert(ann, T=L, fuse_bn=False)  # the ANN's own arithmetic
    fused = ls.convert(ann, T=L)  # default: batch norm folded (float rounding differs)
    agree = agree_fused = n = correct = 0
    for i, (x, y) in enumerate(test.batches(1000)):
        a = ann(x).argmax(-1)
        s = exact(x).mean(0).argmax(-1)  # exact fast path
        agree += int((a == s).sum())
        if i < 2:  # folded batch norm: first 2000 images
            agree_fused += int((a == fused(x).mean(0).argmax(-1)).sum())
        correct += int((a == y).sum())
        n += len(y)
        if i == 0:  # explicit simulation agrees too (first 200 images)
            sim = exact(x[:200], engine="simulate").mean(0).argmax(-1)
            assert torch.equal(sim, a[:200])
    assert n == 10000
    assert agree == n, f"{n - agree} of {n} predictions differ"
    assert agree_fused >= 1995, f"{2000 - agree_fused} of 2000 predictions differ (fused BN)"
    assert correct / n > 0.85


@pytest.mark.parametrize("name", ["small_cnn_relu", "resnet20_relu"])
def test_shipped_relu_net_calibrated_saves_and_loads_exactly(name, tmp_path):
    path = ROOT / "pretrained" / f"{name}.lsnn"
    if not path.exists():
        pytest.skip(f"{path} not shipped")
    ann = ls.load(path).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 28, 28, generator=g)
    snn = ls.convert(ann, T=4, method="calibrated", calib_data=(x, torch.zeros(32).long()),
                     progress=False)
    out = ls.save(snn, tmp_path / "cal.lsnn")
    meta = json.loads(ls.load_checkpoint(out)["meta_json"])
    assert len(json.dumps(meta["config"])) < 8 * 1024  # results, not recipes (tensor digests
    # are recorded beside, one per state-dict entry)
    back = ls.load(out)
    with torch.no_grad():
        assert torch.equal(back(x[:4]), snn(x[:4]))
