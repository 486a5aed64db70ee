"""``max_samples`` and sample counts over unlabelled batches, for every kind of input a model
takes: the samples of a time-major ``[T, B, ...]`` batch lie in dim 1, and a cut must never
shorten T (it did: the first dim was taken for the batch whatever the model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import leansnn as ls
from leansnn.analysis import analyze, energy
from leansnn.base.batching import iter_batches
from leansnn.evaluation import evaluate


def _ann() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ls.QCFS(levels=4, threshold=2.0),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def _cases() -> list[tuple[str, nn.Module, torch.Tensor, int]]:
    """(name, model, unlabelled batch, its sample dim)."""
    torch.manual_seed(0)
    snn = ls.models.create("lif_snn_a", num_classes=4, in_channels=2, T=4, width=4,
                           input_size=(16, 16)).eval()
    conv = ls.convert(_ann(), T=4, method="parallel").eval()
    return [
        ("direct-trained SNN, event frames [T, B, ...]", snn, torch.rand(4, 5, 2, 16, 16), 1),
        ("direct-trained SNN, static images [B, ...]", snn, torch.rand(5, 2, 16, 16), 0),
        ("converted SNN, static images [B, ...]", conv, torch.rand(5, 1, 6, 6), 0),
        ("converted SNN, sequence [T, B, ...]", conv, torch.rand(4, 5, 1, 6, 6), 1),
        ("ANN, static images [B, ...]", _ann(), torch.rand(5, 1, 6, 6), 0),
    ]


CASES = _cases()


@pytest.mark.parametrize("name,model,x,dim", CASES, ids=[c[0] for c in CASES])
def test_cut_along_samples(name, model, x, dim):
    shapes = [tuple(b.x.shape) for b in iter_batches([x, x], max_samples=7, model=model)]
    full, cut = list(x.shape), list(x.shape)
    cut[dim] = 2  # 5 from the first batch, 2 from the second
    assert shapes == [tuple(full), tuple(cut)]
    sizes = [b.size for b in iter_batches([x, x], max_samples=7, model=model)]
    assert sizes == [5, 2]


@pytest.mark.parametrize("name,model,x,dim", CASES, ids=[c[0] for c in CASES])
def test_energy_and_analysis_count_samples(name, model, x, dim):
    assert energy(model, [x, x], max_samples=7)["inputs"] == 7
    assert energy(model, [x])["inputs"] == 5
    if name.startswith("ANN"):
        return  # no spiking layer to analyse
    assert analyze(model, [x, x], max_samples=7)["inputs"] == 7
    # the counts per input do not depend on where the cut fell
    per_input = energy(model, [x])["sops"]
    assert energy(model, [x, x], max_samples=10)["sops"] == pytest.approx(per_input, rel=1e-6)


def test_labelled_time_major_cut_keeps_T():
    x, y = torch.rand(4, 5, 2, 16, 16), torch.arange(5)
    b = list(iter_batches([(x, y)], max_samples=3))[0]
    assert tuple(b.x.shape) == (4, 3, 2, 16, 16) and b.y.tolist() == [0, 1, 2]
    assert b.batch_dim == 1 and b.size == 3


def test_evaluate_reads_max_samples_of_time_major_batches():
    snn = CASES[0][1]
    x = torch.rand(4, 5, 2, 16, 16)
    r = evaluate(snn, [x, x], max_samples=7)
    assert r["n"] == 7


def test_batch_unpacks_pickles_and_keeps_its_sample_dim():
    import pickle

    x = torch.rand(4, 5, 3)
    b = next(iter_batches([x], model=ls.LIF()))
    xb, yb = b
    assert xb is b.x and yb is None and b.batch_dim == 1 and b.size == 5
    c = pickle.loads(pickle.dumps(b))
    assert torch.equal(c.x, x) and c.y is None and c.batch_dim == 1
