"""Bad input raises clear errors; NaN never passes silently where data enters."""

import numpy as np
import pytest
import torch

import leansnn as ls
from leansnn.layers import check_finite


@pytest.mark.parametrize("neuron", [ls.LIF(), ls.IF(), ls.LIF(impl="reference")],
                         ids=["lif", "if", "lif-ref"])
def test_neuron_rejects_bad_input(neuron):
    with pytest.raises(ValueError, match="expected a torch.Tensor.*got ndarray"):
        neuron(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"time-major.*got shape \(5,\)"):
        neuron(torch.zeros(5))
    with pytest.raises(ValueError, match="floating-point.*torch.int64"):
        neuron(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="h0 must have shape"):
        neuron(torch.zeros(3, 2, 4), h0=torch.zeros(2, 5))


def test_neuron_parameter_validation():
    with pytest.raises(ValueError, match="either decay or tau"):
        ls.LIF(decay=0.5, tau=2.0)
    with pytest.raises(ValueError, match="decay must lie in"):
        ls.LIF(decay=1.5)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        ls.LIF(threshold=0.0)
    with pytest.raises(ValueError, match="reset must be"):
        ls.LIF(reset="zero")
    with pytest.raises(ValueError, match="tau must be"):
        ls.LIF(tau=0.5)
    with pytest.raises(ValueError, match="unknown impl"):
        ls.LIF(impl="cuda-magic")


def test_nan_potential_never_spikes_and_debug_mode_reports():
    x = torch.tensor([[0.2], [float("nan")], [2.0]]).unsqueeze(-1)  # [T, B, F]
    s = ls.LIF(decay=0.5, threshold=1.0)(x)
    assert s.view(-1).tolist() == [0.0, 0.0, 0.0]  # NaN compares false; it then sticks
    ls.set_debug(True)
    try:
        with pytest.raises(ValueError, match="NaN or Inf"):
            ls.LIF()(x)
    finally:
        ls.set_debug(False)


def test_model_input_nan_is_reported_where_it_enters():
    model = ls.models.create("lif_cnn", T=2, width=4)
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="model input: found 1 NaN"):
        model(x)
    with pytest.raises(ValueError, match="float tensor"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_check_finite_counts():
    check_finite(torch.ones(3), "ok")
    with pytest.raises(ValueError, match="loss: found 0 NaN and 1 Inf"):
        check_finite(torch.tensor([1.0, float("inf")]), "loss")


def test_training_loss_nan_is_reported(tmp_path):
    from leansnn.data import ImageDataset
    from leansnn.train import TrainConfig, fit

    imgs = torch.randint(0, 255, (16, 28, 28), dtype=torch.uint8)
    ds = ImageDataset(imgs, torch.randint(0, 10, (16,)), name="tiny")
    model = ls.models.create("lif_cnn", T=2, width=4)
    with torch.no_grad():
        model[-1].layer[-1].weight.fill_(float("inf"))
    with pytest.raises(ValueError, match=r"training loss \(epoch 1, batch 0\)"):
        fit(model, ds, None, TrainConfig(epochs=1, batch_size=8), progress=False)
