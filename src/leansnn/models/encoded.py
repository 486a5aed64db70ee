"""A model with its input encoding built in (``"encoded"`` in the registry).

``train-snn --encoding rate|latency`` trains a directly trained SNN on static images turned
into spike trains. The encoder is part of what was trained, so it is part of the model:
:class:`EncodedModel` runs ``net(encoder(x))`` and its checkpoint records the encoding, so
``ls.load`` gives back a model that encodes its input exactly as during training (never a
silent fall-back to direct encoding).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..base.config import encode
from ..encoding import Encoder
from .registry import from_config, register

__all__ = ["EncodedModel", "encoded", "with_encoding"]


class EncodedModel(nn.Module):
    """``net(encoder(x))``: static input ``[B, C, H, W]`` -> spike trains ``[T, B, C, H, W]``
    (``encoder``) -> the SNN's output ``[T, B, K]``. A time-major input passes through the
    encoder unchanged."""

    def __init__(self, encoder: Encoder, net: nn.Module) -> None:
        super().__init__()
        self.encoder, self.net = encoder, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoder(x))


def with_encoding(net: nn.Module, encoding: str, T: int, seed: int | None = None
                  ) -> EncodedModel:
    """Wrap an existing registry model (keeping its weights) with an input encoder; the
    result saves and loads with ``ls.save`` / ``ls.load``."""
    cfg = getattr(net, "leansnn_config", None)
    if cfg is None:
        raise ValueError("with_encoding needs a model built by leansnn.models.create")
    model = EncodedModel(Encoder(encoding, T, static_dims=4, seed=seed), net)
    model.leansnn_config = {"name": "encoded", "kwargs": encode(
        {"model": cfg, "encoding": encoding, "T": int(T), "seed": seed})}
    return model


@register("encoded")
def encoded(model: dict, encoding: str = "direct", T: int = 8, seed: int | None = None
            ) -> nn.Module:
    """Rebuild :class:`EncodedModel` from the inner model's registry config."""
    inner: Any = from_config(model)
    return EncodedModel(Encoder(encoding, T, static_dims=4, seed=seed), inner)
