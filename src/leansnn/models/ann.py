"""ANN builders for conversion: a small CNN (28x28), CIFAR-style VGG-11/16 and ResNet-18/20/34.

Every builder takes ``num_classes``, ``in_channels`` and a pluggable ``activation``:
``"relu"``, a :class:`leansnn.QCFS` instance (each layer gets its own copy, hence its own
learnable threshold), or ``"qcfs"`` with ``levels``. Down-sampling uses average pooling or
strided convolutions, never max pooling, so converted parallel networks keep the exact fast
path. Input ``[B, C, H, W]`` float -> logits ``[B, num_classes]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..activations import QCFS  # registers QCFS as a configurable builder argument
from ..layers import InputSpec, positive_int
from .registry import register
from .snn import image_size

__all__ = ["make_activation", "small_cnn", "vgg11", "vgg16", "resnet18", "resnet20",
           "resnet34", "BasicBlock", "CifarResNet", "VGG"]


def make_activation(activation: Any = "relu", levels: int = 4) -> nn.Module:
    """A fresh activation module: ``"relu"`` -> ``nn.ReLU``; ``"qcfs"`` -> ``QCFS(levels)``;
    a ``QCFS`` instance -> a copy with its own threshold."""
    if isinstance(activation, QCFS):
        return activation.clone()
    if isinstance(activation, str):
        key = activation.lower()
        if key == "relu":
            return nn.ReLU()
        if key == "qcfs":
            return QCFS(levels=levels)
    if isinstance(activation, nn.ReLU):
        return nn.ReLU()
    raise ValueError(f"activation must be 'relu', 'qcfs' or a leansnn.QCFS instance, got "
                     f"{activation!r}")


def _check(num_classes: int, in_channels: int, where: str = "", **more: object) -> None:
    """Build-time checks: sizes are ints >= 1, ``dropout`` lies in [0, 1)."""
    dropout = more.pop("dropout", 0.0)
    for name, v in (("num_classes", num_classes), ("in_channels", in_channels),
                    *more.items()):
        positive_int(v, name, where)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
            not 0.0 <= dropout < 1.0:
        raise ValueError(f"{where}: dropout must lie in [0, 1), got {dropout!r}")


def _checked(model: nn.Module, name: str, in_channels: int, size=None,
             min_size: int = 1) -> nn.Module:
    """Attach the input check (a forward pre-hook: shapes only, invisible to torch.fx)."""
    spec = InputSpec(name, in_channels, size, None, min_size)
    model.input_spec = spec
    model.register_forward_pre_hook(spec)
    return model


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout)]


@register("small_cnn")
def small_cnn(num_classes: int = 10, in_channels: int = 1, activation: Any = "relu",
              levels: int = 4, width: int = 16, input_size: int = 28, hidden: int = 128,
              dropout: float = 0.0) -> nn.Module:
    """Small CNN for 28x28 images (Fashion-MNIST): 0.43 M parameters, 2.3 M MACs at w = 16.

    conv(C->w)+BN+act, avgpool2, conv(w->2w)+BN+act, avgpool2, conv(2w->4w)+BN+act,
    flatten, linear(4w*7*7 -> hidden)+BN+act, [dropout], linear(hidden -> K).
    """
    _check(num_classes, in_channels, "small_cnn", width=width, levels=levels, hidden=hidden,
           dropout=dropout)
    H, _ = image_size((input_size, input_size), "small_cnn", minimum=4)
    w = width
    s = H // 4

    def act() -> nn.Module:
        return make_activation(activation, levels)

    layers = [
        *_conv_bn(in_channels, w), act(), nn.AvgPool2d(2),
        *_conv_bn(w, 2 * w), act(), nn.AvgPool2d(2),
        *_conv_bn(2 * w, 4 * w), act(),
        nn.Flatten(),
        nn.Linear(4 * w * s * s, hidden, bias=False), nn.BatchNorm1d(hidden), act(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, num_classes))
    return _checked(nn.Sequential(*layers), "small_cnn", in_channels, (H, H))


class VGG(nn.Module):
    """CIFAR-style VGG: 3x3 conv+BN+act stages with 2x2 average pooling, global average
    pooling and one linear classifier. ``cfg``: channel counts, ``"A"`` = average pool."""

    def __init__(self, cfg: list, num_classes: int, in_channels: int, activation: Any,
                 levels: int, input_size: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, int(input_size)
        for v in cfg:
            if v == "A":
                if size >= 2:  # skip pools that would shrink below 1x1 (28x28 inputs)
                    layers.append(nn.AvgPool2d(2))
                    size //= 2
            else:
                layers += [*_conv_bn(c, v), make_activation(activation, levels)]
                c = v
        self.features = nn.Sequential(*layers)
        self.min_size = 2 ** sum(isinstance(m, nn.AvgPool2d) for m in layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


_VGG = {
    "vgg11": [64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"],
    "vgg16": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A", 512, 512, 512, "A",
              512, 512, 512, "A"],
}


@register("vgg11")
def vgg11(num_classes: int = 10, in_channels: int = 3, activation: Any = "relu",
          levels: int = 4, input_size: int = 32, dropout: float = 0.0) -> nn.Module:
    """VGG-11, CIFAR style (average pooling, one linear classifier)."""
    _check(num_classes, in_channels, "vgg11", levels=levels, input_size=input_size,
           dropout=dropout)
    net = VGG(_VGG["vgg11"], num_classes, in_channels, activation, levels, input_size, dropout)
    return _checked(net, "vgg11", in_channels, None, net.min_size)


@register("vgg16")
def vgg16(num_classes: int = 10, in_channels: int = 3, activation: Any = "relu",
          levels: int = 4, input_size: int = 32, dropout: float = 0.0) -> nn.Module:
    """VGG-16, CIFAR style (average pooling, one linear classifier)."""
    _check(num_classes, in_channels, "vgg16", levels=levels, input_size=input_size,
           dropout=dropout)
    net = VGG(_VGG["vgg16"], num_classes, in_channels, activation, levels, input_size, dropout)
    return _checked(net, "vgg16", in_channels, None, net.min_size)


class BasicBlock(nn.Module):
    """conv3x3+BN+act, conv3x3+BN, + shortcut (identity or 1x1 conv+BN), act."""

    def __init__(self, cin: int, cout: int, stride: int, activation: Any, levels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, stride)
        self.act1 = make_activation(activation, levels)
        self.conv2, self.bn2 = _conv_bn(cout, cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()
        self.act2 = make_activation(activation, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet: conv3x3 stem (no max pool), stages of basic blocks with strided
    convolutions, global average pooling, linear classifier."""

    def __init__(self, blocks: list[int], widths: list[int], num_classes: int,
                 in_channels: int, activation: Any, levels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, widths[0]),
                                  make_activation(activation, levels))
        stages, c = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            layer = []
            for j in range(n):
                layer.append(BasicBlock(c, w, stride if j == 0 else 1, activation, levels))
                c = w
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


@register("resnet20")
def resnet20(num_classes: int = 10, in_channels: int = 3, activation: Any = "relu",
             levels: int = 4, width: int = 16) -> nn.Module:
    """ResNet-20 (CIFAR): 3 stages x 3 blocks, widths w, 2w, 4w (w = 16): 0.27 M params."""
    _check(num_classes, in_channels, "resnet20", levels=levels, width=width)
    w = width
    net = CifarResNet([3, 3, 3], [w, 2 * w, 4 * w], num_classes, in_channels, activation,
                      levels)
    return _checked(net, "resnet20", in_channels)


@register("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, activation: Any = "relu",
             levels: int = 4, width: int = 64) -> nn.Module:
    """ResNet-18, CIFAR style: 4 stages x 2 blocks, widths 64..512."""
    _check(num_classes, in_channels, "resnet18", levels=levels, width=width)
    w = width
    net = CifarResNet([2, 2, 2, 2], [w, 2 * w, 4 * w, 8 * w], num_classes, in_channels, activation,
                      levels)
    return _checked(net, "resnet18", in_channels)


@register("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3, activation: Any = "relu",
             levels: int = 4, width: int = 64) -> nn.Module:
    """ResNet-34, CIFAR style: 4 stages x (3, 4, 6, 3) blocks, widths 64..512."""
    _check(num_classes, in_channels, "resnet34", levels=levels, width=width)
    w = width
    net = CifarResNet([3, 4, 6, 3], [w, 2 * w, 4 * w, 8 * w], num_classes, in_channels, activation,
                      levels)
    return _checked(net, "resnet34", in_channels)
