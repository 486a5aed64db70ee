"""Robustness probes of training-time augmentation (found by an adversarial pass).

* ``TrainConfig(augment="flip_crop")`` on time-major frames ``[T, B, C, H, W]`` flipped
  per *time step* (the batch axis was taken to be the first), so a sample was mirrored at
  some steps and not at others; it must flip whole samples, as for images ``[B, C, H, W]``.
* ``train-snn`` on a static data set with its own augmentation (CIFAR, image folders) must
  apply it by default, as ``--help`` and docs/cli.md say (it applied none).
"""

import pytest
import torch
from test_datasets_static import cifar10_root  # noqa: F401  (session fixture)
from torch import nn

from leansnn.cli import build_parser
from leansnn.commands import train_snn
from leansnn.train import TrainConfig, fit

torch.set_num_threads(1)


class _Recorder(nn.Module):
    """Records every training input; a [T, B, K] output from a linear read-out."""

    def __init__(self, features: int, classes: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        flat = x.reshape(*x.shape[:-3], -1)
        out = self.fc(flat)
        return out if x.dim() == 5 else out.unsqueeze(0)


def _fit(x, y):
    """Three epochs of fit on batches of 4 (time-major batches come as a list of batches)."""
    t_major = x.dim() == 5
    model = _Recorder(x[0, 0].numel() if t_major else x[0].numel())
    batches = [((x[:, i:i + 4] if t_major else x[i:i + 4]), y[i:i + 4])
               for i in range(0, len(y), 4)]
    cfg = TrainConfig(epochs=3, batch_size=4, augment="flip_crop", seed=1, schedule="none")
    fit(model, batches, config=cfg, progress=False, metrics_csv=False)
    return model.seen


def test_flip_crop_flips_whole_samples_of_time_major_frames():
    T, B = 5, 8
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(B, 2, 6, 7, generator=g)
    x = frames.unsqueeze(0).expand(T, *frames.shape).contiguous()   # every step the same
    seen = _fit(x, torch.arange(B) % 2)
    assert seen and all(s.shape[0] == T for s in seen)
    for s in seen:   # each sample's steps stay identical: flipped (and shifted) as a whole
        assert torch.equal(s, s[:1].expand_as(s))


def test_flip_crop_same_draws_for_frames_and_images():
    """The same seed flips and shifts the same samples whether they come as images or as
    (one-step) frames."""
    B = 8
    g = torch.Generator().manual_seed(3)
    images = torch.rand(B, 1, 6, 6, generator=g)
    y = torch.arange(B) % 2
    a = _fit(images, y)
    b = _fit(images.unsqueeze(0), y)
    assert len(a) == len(b)
    for s4, s5 in zip(a, b):
        assert torch.equal(s4, s5[0])


def _args(argv):
    return build_parser().parse_args(["train-snn", *argv])


@pytest.mark.parametrize("given, expect", [(None, 2), ("standard", 2), ("cutout", 3),
                                           ("none", 0)])
def test_train_snn_static_default_is_the_data_sets_augmentation(cifar10_root, given,  # noqa: F811
                                                                  expect):
    argv = ["--data", "cifar10", "--root", str(cifar10_root[0]), "--quiet"]
    if given is not None:
        argv += ["--augment", given]
    train, test, _, _ = train_snn.load_data(_args(argv))
    assert len(train.augment) == expect          # standard: random crop + flip
    assert test.augment == ()                    # never the test set


def test_train_snn_help_states_its_own_fallback():
    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    text = {name: sub[name].format_help() for name in ("train-snn", "train-ann")}
    assert "else none)" in " ".join(text["train-snn"].split())
    assert "else flip_crop)" in " ".join(text["train-ann"].split())
