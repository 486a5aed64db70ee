"""Turn an ordinary ReLU / ReLU6 network into a QCFS network, ready for QCFS fine-tuning.

``to_qcfs(model, levels, calib_data=None)`` traces a copy of ``model`` with the converter's
own tracer and finds every activation site exactly as :func:`~leansnn.convert.convert` does
(``nn.ReLU`` / ``nn.ReLU6`` modules, a module called at several places, ``F.relu`` /
``torch.relu`` / ``Tensor.relu`` / ``F.relu6`` calls, in-place variants), then gives *each
site its own* :class:`~leansnn.activations.QCFS` (a shared module becomes one QCFS per call).
A ReLU6 keeps its clip as the QCFS ``cap`` (the threshold in use never exceeds 6). Sites
that no QCFS can stand in for (SiLU, Hardswish, GELU, ...) are refused by name.

Thresholds: with ``calib_data`` (anything :func:`leansnn.base.batching.iter_batches` reads),
the ``percentile`` (default 99.9) of each site's input, averaged over ``max_batches``
batches — robust to the few outliers a plain maximum would follow. Without data: for a site
fed by an eval batch norm, ``max_c(beta_c + 3 |gamma_c|)`` (the 99.9 % point of the
normalised pre-activation of the widest channel); otherwise ``default_threshold``; capped at
6 for ReLU6 sites.

The result is an ``fx.GraphModule`` (the model's class name) in the model's training mode.
When the model came from ``leansnn.models.create``, it records the registry config
``{"name": "qcfs_of", "kwargs": {"source": <model's config>, "levels": L, ...}}``, so
``leansnn.save`` / ``leansnn.load`` and ``leansnn train-ann --init-from relu.lsnn
--activation qcfs`` work with it (thresholds and weights are in the state dict).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import fx, nn

from ..activations import QCFS
from ..models.registry import from_config, register
from .calibrate import _check_runs, calibration_batches
from .converter import (
    ActivationSite,
    ConversionError,
    find_activation_sites,
    find_products,
    infer_input_dims,
    keep_inplace_semantics,
    replace_sites,
    site_input,
    trace,
    unwrap,
)

__all__ = ["to_qcfs", "qcfs_of"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _Recorder(nn.Module):
    """Stands at a site while data runs: records the site input's percentile, then acts as
    the activation it replaces (ReLU, clipped at ``clip``) so later sites see ANN values."""

    def __init__(self, q: float, clip: float | None) -> None:
        super().__init__()
        self.q, self.clip, self.values = q, clip, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().reshape(-1).float()
        if flat.numel() > 1 << 22:  # torch.quantile's size limit: a strided subsample
            flat = flat[:: flat.numel() // (1 << 22) + 1]
        self.values.append(float(torch.quantile(flat, self.q / 100.0)))
        return x.clamp(0.0, self.clip) if self.clip is not None else x.clamp(min=0.0)


def _bn_guess(gm: fx.GraphModule, site: ActivationSite) -> float | None:
    node = site_input(site)
    if node.op != "call_module":
        return None
    bn = gm.get_submodule(node.target)
    if not isinstance(bn, _BN) or not bn.affine:
        return None
    return float((bn.bias.detach() + 3 * bn.weight.detach().abs()).max())


def _thresholds(gm: fx.GraphModule, sites: list[ActivationSite], calib_data: Any,
                percentile: float, max_batches: int, default: float) -> dict[str, float]:
    if calib_data is None:
        guess = {s.name: _bn_guess(gm, s) for s in sites}
        return {n: (g if g is not None and g > 0 else default) for n, g in guess.items()}
    # the checks of method="calibrated": no data, non-finite values or inputs of the wrong
    # dims are errors, never silent default thresholds
    inputs = calibration_batches(calib_data, infer_input_dims(gm), max_batches=max_batches,
                                 batch_size=256)
    p = next(iter(gm.parameters()), None)
    if p is not None:
        inputs = [x.to(p.device, p.dtype) for x in inputs]
    probe = copy.deepcopy(gm).eval()
    _check_runs(probe, inputs[0])
    recorders = {s.name: _Recorder(percentile, s.clip) for s in sites}
    replace_sites(probe, sites, recorders)
    with torch.no_grad():
        for x in inputs:
            probe(x)
    out = {}
    for name, r in recorders.items():
        v = sum(r.values) / len(r.values) if r.values else 0.0
        out[name] = v if v > 0 else default
    return out


def to_qcfs(model: nn.Module, levels: int = 4, calib_data: Any = None, *,
            percentile: float = 99.9, max_batches: int = 8, default_threshold: float = 3.0,
            leaf_modules: Iterable[type] = ()) -> fx.GraphModule:
    """A copy of the ReLU / ReLU6 network ``model`` with every activation site replaced by
    its own ``QCFS(levels)`` (module docstring: sites, thresholds, saving).

    Args:
        model: any module torch.fx can trace (not modified).
        levels: QCFS levels ``L`` (convert later with ``T == L`` for a lossless SNN).
        calib_data: optional inputs (tensor, ``(x, y)`` pairs, Dataset, DataLoader) for the
            per-site thresholds; ``max_batches`` of them are read.
        percentile: the percentile of each site's input taken as its threshold.
        default_threshold: threshold of a site without data and without a batch norm.
        leaf_modules: module classes kept opaque while tracing.

    Raises :class:`~leansnn.convert.ConversionError` listing every unsupported activation.
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"to_qcfs expects an nn.Module, got {type(model).__name__}")
    model = unwrap(model)
    training = model.training
    gm = trace(copy.deepcopy(model), tuple(leaf_modules))
    sites, problems = find_activation_sites(gm)
    if problems:
        products = find_products(gm, sites)
        also = ("" if not products else
                f"\nAlso: {len(products)} product(s) of two activation-dependent signals "
                "(gating, squeeze-excitation), which ls.convert refuses unless "
                "allow_products=True (then approximate):\n  - " + "\n  - ".join(products))
        raise ConversionError(
            f"to_qcfs({type(model).__name__}): {len(problems)} activation(s) have no QCFS "
            "equivalent:\n  - " + "\n  - ".join(problems) + "\nReplace them by ReLU / ReLU6 "
            "and retrain, or keep them out of the network you convert." + also)
    keep_inplace_semantics(gm, sites)
    th = _thresholds(gm, sites, calib_data, percentile, max_batches, default_threshold)
    acts = {}
    for s in sites:
        t = s.module.theta if s.kind == "qcfs" and calib_data is None else th[s.name]
        t = min(t, s.clip) if s.clip is not None else t
        q = QCFS(levels, threshold=float(t), cap=s.clip)
        acts[s.name] = q
    replace_sites(gm, sites, acts)
    p = next(iter(gm.parameters()), None)
    if p is not None:
        gm.to(p.device)
    gm.train(training)
    src = getattr(model, "leansnn_config", None)
    if src is not None and not tuple(leaf_modules):
        gm.leansnn_config = {"name": "qcfs_of", "kwargs": {"source": src, "levels": levels}}
    return gm


@register("qcfs_of")
def qcfs_of(source: dict, levels: int = 4) -> nn.Module:
    """Registry builder: the QCFS network :func:`to_qcfs` makes of the registry model
    ``source`` (its config) with ``levels`` — the structure only; ``leansnn.load`` fills in
    the weights and thresholds from the checkpoint."""
    return to_qcfs(from_config(source), levels)
