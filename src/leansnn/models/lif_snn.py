"""Directly trained LIF SNNs of the ICCV 2023 redundancy paper, with optional ASA.

Registered builders (``ls.models.create(name, ...)``):

* ``lif_snn_a`` -- the paper's "LIF-SNN" (arch A): three conv stages
  Conv(in->w)+BN, Conv(w->2w)+BN+AvgPool2, Conv(2w->2w)+BN+AvgPool2, each followed by
  [ASA ->] LIF; then FC(2w * H/4 * W/4 -> 256)+LIF and FC(256 -> K)+LIF. ``width=64`` gives
  the paper's 64/128/128 channels.
* ``lif_snn_5`` -- the five-conv variant (our choice; the paper gives no table for it): five
  conv stages Conv(in->w)+BN, Conv(w->2w)+BN+AvgPool2, Conv(2w->2w)+BN,
  Conv(2w->4w)+BN+AvgPool2, Conv(4w->4w)+BN+AvgPool2, each [ASA ->] LIF, then the same two
  spiking FC layers as arch A on a ``H/8 x W/8`` map.
* ``sew_resnet18`` -- SEW-ResNet-18 with ADD connections (Fang et al. 2021): stem
  (3x3 conv for inputs up to 64 px, else 7x7/2 conv + 3x3/2 max-pool) + BN [-> ASA] -> LIF;
  four stages of two basic blocks (w, 2w, 4w, 8w channels, strides 1, 2, 2, 2) where a block
  is ``LIF(BN(conv(LIF(BN(conv(x)))))) + shortcut(x)`` with ASA before each of its two LIFs and
  shortcut = x or LIF(BN(conv1x1/2(x))); global average pooling and FC(8w -> K)+LIF.

Every network spikes in its classifier too (so the mean firing rate over all neurons is the
NASFR) and uses the paper's LIF by default: decay 0.3, threshold 0.3, hard reset to 0,
rectangular surrogate with a = 0.25. Input ``[T, B, C, H, W]`` (event frames) or static
``[B, C, H, W]`` (repeated over T: the first conv + BN run once per image); output
``[T, B, K]`` spikes of the classifier at each step (rates: ``y.mean(0)``).
Stateless layers are folded over time (:class:`~leansnn.layers.TimeFold`), so batch norm
pools its statistics over time and batch.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..attention import ASA
from ..layers import InputSpec, StaticStem, TimeFold, positive_int
from ..neuron import LIF
from ..neuron import surrogate as sg
from .registry import register
from .snn import SpikingSequential, image_size

__all__ = ["lif_snn_a", "lif_snn_5", "sew_resnet18", "SEWBlock", "paper_lif"]


def paper_lif(decay: float = 0.3, threshold: float = 0.3, surrogate_a: float = 0.25) -> LIF:
    """The paper's LIF: ``u = decay*h + x``, hard reset to 0, rectangular surrogate."""
    return LIF(decay=decay, threshold=threshold, reset="hard",
               surrogate=sg.Rectangular(a=surrogate_a))


def _check_common(T: int, attention: str | None, norm: str, input_size) -> tuple[int, int]:
    positive_int(T, "T")
    if attention not in (None, "none", "asa", "asa_authors"):
        raise ValueError(f"attention must be 'asa', 'asa_authors' (the authors' code, for "
                         f"comparison) or None, got {attention!r}")
    if norm not in ("bn", "none"):
        raise ValueError(f"norm must be 'bn' or 'none', got {norm!r}")
    return image_size(input_size, "input_size")


class _Builder:
    """Shared pieces: conv(+BN), attention, neuron."""

    def __init__(self, T: int, attention: str | None, norm: str, lam: float,
                 neuron_kw: dict) -> None:
        self.T, self.norm, self.lam = T, norm, lam
        self.asa = attention in ("asa", "asa_authors")
        self.behaviour = "authors" if attention == "asa_authors" else "fixed"
        self.neuron_kw = neuron_kw

    def conv_bn(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
        bn = self.norm == "bn"
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2,
                                             bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        return layers

    def attention(self, channels: int) -> nn.Module | None:
        return (ASA(self.T, channels, lam=self.lam, behaviour=self.behaviour) if self.asa
                else None)

    def neuron(self) -> LIF:
        return paper_lif(**self.neuron_kw)


def _conv_stack(b: _Builder, in_channels: int, plan: list[tuple[int, bool]]) -> tuple[
        OrderedDict, int, int]:
    """Conv stages from ``plan`` = [(out_channels, pool), ...]; returns (layers, C, pools)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    cin, pools = in_channels, 0
    for i, (cout, pool) in enumerate(plan, 1):
        mods = b.conv_bn(cin, cout) + ([nn.AvgPool2d(2)] if pool else [])
        layers[f"conv{i}"] = StaticStem(*mods, T=b.T) if i == 1 else TimeFold(*mods)
        att = b.attention(cout)
        if att is not None:
            layers[f"asa{i}"] = att
        layers[f"lif{i}"] = b.neuron()
        cin, pools = cout, pools + int(pool)
    return layers, cin, pools


def _fc_head(b: _Builder, layers: OrderedDict, features: int, hidden: int, num_classes: int,
             dropout: float) -> None:
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    layers["fc1"] = TimeFold(nn.Flatten(), *drop, nn.Linear(features, hidden))
    layers["lif_fc1"] = b.neuron()
    layers["fc2"] = TimeFold(*drop, nn.Linear(hidden, num_classes))
    layers["lif_out"] = b.neuron()


def _check_sizes(H: int, W: int, pools: int, name: str) -> None:
    f = 2 ** pools
    if H < f or W < f or H % f or W % f:
        raise ValueError(f"{name}: input_size ({H}, {W}) must be a multiple of {f} "
                         f"({pools} average poolings of 2)")


def _validate_width(width: int, dropout: float, num_classes: int, in_channels: int) -> None:
    for name, v in (("width", width), ("num_classes", num_classes),
                    ("in_channels", in_channels)):
        positive_int(v, name)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or \
            not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


@register("lif_snn_a")
def lif_snn_a(
    num_classes: int = 10,
    in_channels: int = 2,
    T: int = 8,
    attention: str | None = None,
    input_size: tuple[int, int] | list[int] = (32, 32),
    width: int = 64,
    hidden: int = 256,
    dropout: float = 0.1,
    lam: float = 0.5,
    norm: str = "bn",
    decay: float = 0.3,
    threshold: float = 0.3,
    surrogate_a: float = 0.25,
) -> nn.Module:
    """The paper's three-conv LIF-SNN (arch A); ``[T, B, C, H, W]`` or ``[B, C, H, W]`` ->
    ``[T, B, num_classes]`` spikes. ``width`` w gives channels (w, 2w, 2w); ``dropout``
    acts on the spikes entering each FC layer; ``norm="none"`` drops batch norm (convs get a
    bias); ``decay``, ``threshold``, ``surrogate_a`` set every LIF. ``attention``: None,
    ``"asa"`` (:class:`~leansnn.attention.ASA` with fraction ``lam``) or ``"asa_authors"``
    (ASA as the authors' code behaves, for comparison: ``behaviour="authors"``)."""
    H, W = _check_common(T, attention, norm, input_size)
    _validate_width(width, dropout, num_classes, in_channels)
    b = _Builder(T, attention, norm, lam, dict(decay=decay, threshold=threshold,
                                               surrogate_a=surrogate_a))
    layers, c, pools = _conv_stack(b, in_channels, [(width, False), (2 * width, True),
                                                    (2 * width, True)])
    _check_sizes(H, W, pools, "lif_snn_a")
    positive_int(hidden, "hidden", "lif_snn_a")
    _fc_head(b, layers, c * (H >> pools) * (W >> pools), hidden, num_classes, dropout)
    return _spiking(layers, "lif_snn_a", in_channels, (H, W), T)


@register("lif_snn_5")
def lif_snn_5(
    num_classes: int = 10,
    in_channels: int = 2,
    T: int = 8,
    attention: str | None = None,
    input_size: tuple[int, int] | list[int] = (32, 32),
    width: int = 64,
    hidden: int = 256,
    dropout: float = 0.1,
    lam: float = 0.5,
    norm: str = "bn",
    decay: float = 0.3,
    threshold: float = 0.3,
    surrogate_a: float = 0.25,
) -> nn.Module:
    """Five-conv LIF-SNN (see the module docstring); arguments as :func:`lif_snn_a`,
    channels (w, 2w, 2w, 4w, 4w), input size a multiple of 8."""
    H, W = _check_common(T, attention, norm, input_size)
    _validate_width(width, dropout, num_classes, in_channels)
    b = _Builder(T, attention, norm, lam, dict(decay=decay, threshold=threshold,
                                               surrogate_a=surrogate_a))
    plan = [(width, False), (2 * width, True), (2 * width, False), (4 * width, True),
            (4 * width, True)]
    layers, c, pools = _conv_stack(b, in_channels, plan)
    _check_sizes(H, W, pools, "lif_snn_5")
    positive_int(hidden, "hidden", "lif_snn_5")
    _fc_head(b, layers, c * (H >> pools) * (W >> pools), hidden, num_classes, dropout)
    return _spiking(layers, "lif_snn_5", in_channels, (H, W), T)


class SEWBlock(nn.Module):
    """SEW basic block, ADD connection: ``LIF(BN(conv(LIF(BN(conv(x)))))) + shortcut(x)``.

    Shapes: spikes ``[T, B, C_in, H, W]`` -> ``[T, B, C_out, H/stride, W/stride]`` (values in
    {0, 1, 2}: the sum of two spike trains).
    """

    def __init__(self, b: _Builder, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = TimeFold(*b.conv_bn(cin, cout, 3, stride))
        self.asa1 = b.attention(cout) or nn.Identity()
        self.lif1 = b.neuron()
        self.conv2 = TimeFold(*b.conv_bn(cout, cout, 3, 1))
        self.asa2 = b.attention(cout) or nn.Identity()
        self.lif2 = b.neuron()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(TimeFold(*b.conv_bn(cin, cout, 1, stride)),
                                            b.neuron())
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lif2(self.asa2(self.conv2(self.lif1(self.asa1(self.conv1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


@register("sew_resnet18")
def sew_resnet18(
    num_classes: int = 10,
    in_channels: int = 2,
    T: int = 8,
    attention: str | None = None,
    input_size: tuple[int, int] | list[int] = (32, 32),
    width: int = 64,
    lam: float = 0.5,
    norm: str = "bn",
    decay: float = 0.3,
    threshold: float = 0.3,
    surrogate_a: float = 0.25,
) -> nn.Module:
    """SEW-ResNet-18 (ADD) with optional ASA; ``[T, B, C, H, W]`` or ``[B, C, H, W]`` ->
    ``[T, B, num_classes]`` spikes. ``width`` w gives stages of (w, 2w, 4w, 8w) channels."""
    H, W = _check_common(T, attention, norm, input_size)
    _validate_width(width, 0.0, num_classes, in_channels)
    b = _Builder(T, attention, norm, lam, dict(decay=decay, threshold=threshold,
                                               surrogate_a=surrogate_a))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if max(H, W) <= 64:
        stem = b.conv_bn(in_channels, width, 3, 1)
    else:
        stem = b.conv_bn(in_channels, width, 7, 2) + [nn.MaxPool2d(3, 2, 1)]
    layers["conv1"] = StaticStem(*stem, T=T)
    att = b.attention(width)
    if att is not None:
        layers["asa1"] = att
    layers["lif1"] = b.neuron()
    cin = width
    for i, (mult, stride) in enumerate([(1, 1), (2, 2), (4, 2), (8, 2)], 1):
        cout = width * mult
        layers[f"layer{i}"] = nn.Sequential(SEWBlock(b, cin, cout, stride),
                                            SEWBlock(b, cout, cout, 1))
        cin = cout
    layers["fc"] = TimeFold(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
    layers["lif_out"] = b.neuron()
    return _spiking(layers, "sew_resnet18", in_channels, None, T)


def _spiking(layers: OrderedDict, name: str, in_channels: int, size, T: int) -> nn.Module:
    net = SpikingSequential(layers)
    net.input_spec = InputSpec(name, in_channels, size, T)
    return net
