"""Robustness probes of the data sets (found by an adversarial pass): ``subset(n)`` of every
data set type refuses a negative or non-integer ``n`` (a negative one used to slice all but
``|n|`` items silently) and all types make the same choice of items."""

import numpy as np
import pytest
import torch

import leansnn as ls
from leansnn.data.event_datasets import EventFrameDataset
from leansnn.data.event_folders import EventDataset, FrameSettings
from leansnn.data.fashion_mnist import ImageDataset, subset_indices

N = 12


def _sets():
    labels = np.arange(N) % 3
    frames_per = np.full(N, 2)
    offsets = np.concatenate([[0], np.cumsum(frames_per)])
    yield "ImageDataset", ImageDataset(torch.arange(N, dtype=torch.uint8).view(N, 1, 1)
                                       .expand(N, 2, 2).contiguous(),
                                       torch.as_tensor(labels), name="tiny")
    yield "ImageSet", ls.data.ImageSet(np.arange(N, dtype=np.uint8).reshape(N, 1, 1, 1)
                                       .repeat(2, 2).repeat(2, 3), labels, ("a", "b", "c"),
                                       "tiny")
    yield "EventFrameDataset", EventFrameDataset(
        np.arange(N, dtype=np.float32).reshape(N, 1, 1, 1, 1).repeat(2, 1).repeat(2, 2),
        labels, ("a", "b", "c"), "tiny")
    yield "EventDataset", EventDataset(
        np.repeat(np.arange(N, dtype=np.float32), 2).reshape(2 * N, 1, 1, 1).repeat(2, 1),
        offsets, labels, FrameSettings(T=2, size=(1, 1)), ("a", "b", "c"), "tiny")


@pytest.mark.parametrize("name, ds", list(_sets()), ids=[n for n, _ in _sets()])
@pytest.mark.parametrize("n", [-1, -N, 2.5, "3", True])
def test_subset_refuses_bad_n(name, ds, n):
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        ds.subset(n)


@pytest.mark.parametrize("name, ds", list(_sets()), ids=[n for n, _ in _sets()])
def test_subset_sizes_and_common_choice(name, ds):
    assert len(ds.subset(0)) == 0
    assert ds.subset(None) is ds and ds.subset(N) is ds and ds.subset(N + 5) is ds
    assert len(ds.subset(np.int64(5), seed=3)) == 5
    chosen = sorted(subset_indices(N, 5, seed=3).tolist())
    sub = ds.subset(5, seed=3)
    # item i of every tiny set holds the value i: the same items
    assert sorted(_first_value(name, sub, j) for j in range(len(sub))) == chosen


def _first_value(name, ds, j):
    if name == "ImageSet":
        return int(ds.images[j].reshape(-1)[0])
    v = float(torch.as_tensor(ds[j][0]).reshape(-1)[0])
    return round(v * 255) if name == "ImageDataset" else round(v)
