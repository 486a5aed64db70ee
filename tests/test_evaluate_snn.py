"""evaluate_snn: accuracy per step and the firing rate over a chosen number of images."""

import torch
from torch.utils.data import TensorDataset

import leansnn as ls
from leansnn.convert import evaluate_snn


def test_firing_max_samples_counts_only_the_first_images():
    torch.manual_seed(0)
    ann = ls.models.create("small_cnn", num_classes=10, in_channels=1,
                           activation=ls.QCFS(levels=4)).eval()
    snn = ls.convert(ann, T=4, method="parallel")
    x = torch.rand(20, 1, 28, 28)
    y = torch.randint(0, 10, (20,))
    data = TensorDataset(x, y)
    part = evaluate_snn(snn, data, batch_size=6, firing_max_samples=8)
    first8 = evaluate_snn(snn, TensorDataset(x[:8], y[:8]), batch_size=6)
    full = evaluate_snn(snn, data, batch_size=6)
    assert part["n"] == full["n"] == 20 and part["accuracy"] == full["accuracy"]
    assert abs(part["firing_rate"] - first8["firing_rate"]) < 1e-12
    assert part["firing_rate"] != full["firing_rate"]
