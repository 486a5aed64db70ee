r"""Training-free conversion: recorded thresholds and distribution-aware calibration (DA-QCFS).

papers.md, part B, "Distribution-aware error calibration". A network trained the ordinary
way (ReLU), or with QCFS at ``L != T``, becomes a network of channel-wise parallel neurons
without any training. This module is the entry point (the ``"calibrated"`` method,
:func:`record_thresholds`, :func:`calibrate_sites`, :class:`CalibrationConfig`); the stages
live beside it:

1. **Thresholds** (:mod:`.fit`). One pass over unlabeled data records, for every activation
   site the converter finds (``nn.ReLU`` / ``ReLU6`` / QCFS modules and ``F.relu`` /
   ``torch.relu`` / ``Tensor.relu`` calls, conv *and* linear activations alike), each
   channel's maximum activation ``theta_c`` (or a percentile). QCFS sites keep their trained
   threshold. Optionally (:mod:`.search`) each ReLU channel's threshold is shrunk to the
   scale that quantizes best at ``T``.
2. **DA-QCFS** (:mod:`.daqcfs`). Each activation is replaced by
   ``((theta_c + phi_c)/T) clip(floor(((z + psi_c) T + theta_c/2)/theta_c), 0, T)``.
3. **Calibration, layer by layer, no labels** (:mod:`.fit`, run by the lock-step interpreter
   :mod:`.lockstep`): reference network and DA network side by side; ``psi_c`` is the mean
   pre-activation error, ``phi_c`` matches the channel's mean output (``mode="sequential"``:
   exact means; ``mode="momentum"``: the authors' running averages).
4. **Refinement** (optional, :mod:`.refine`): Adam on every channel's threshold, shift and
   amplitude so that the network's output matches the ANN's.
5. **Neurons.** DA-QCFS at a site is exactly a channel-wise :class:`ParallelIF` (threshold
   ``theta_c``, shift ``theta_c/2 + T psi_c``, amplitude ``theta_c + phi_c``), so the result
   keeps the exact fast path, and saves with ``leansnn.save`` like any converted network.

Use::

    snn = ls.convert(ann, T=4, method="calibrated", calib_data=train_set, max_samples=1024)
    # options: percentile=99.99, search=False (keep the recorded thresholds), mode="momentum",
    # calibrate=False (recorded thresholds only), refine_steps=300 (output-matching
    # refinement; still label-free, the weights untouched)
    calibration_summary(snn)     # per layer: channels, mean theta, mean |psi|, mean |phi|

Calibration data go through :func:`leansnn.base.batching.iter_batches` (a tensor, an
``(inputs, labels)`` pair, a ``Dataset`` such as ``TensorDataset(x, y)``, a ``DataLoader``,
any iterable of batches); labels are never used. :func:`record_thresholds` gives per-channel
thresholds for ``method="parallel"`` / ``"serial"`` (``thresholds=...``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from ..base.batching import check_limit, iter_batches
from .converter import (
    ActivationSite,
    ConversionContext,
    ConversionError,
    check_qcfs_thresholds,
    find_activation_sites,
    infer_input_dims,
    register_method,
    trace,
    unwrap,
)
from .daqcfs import DAQCFS
from .fit import fit_sites
from .neurons import ParallelIF
from .refine import refine

__all__ = [
    "CalibrationConfig", "record_thresholds", "calibrate_sites", "calibration_batches",
    "calibration_summary",
]

_MODES = ("sequential", "momentum")
_AMPLITUDES = ("mean", "ls")


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationConfig:
    """Settings of the ``"calibrated"`` conversion method.

    mode: ``"sequential"`` (exact means over all calibration images, site after site) or
        ``"momentum"`` (running averages over batches, the authors' recipe).
    percentile: record this percentile (in %, e.g. ``99.99``) of each channel's activation
        instead of its maximum (``None``).
    momentum: weight of the old value in ``"momentum"`` mode (0.99 in the paper).
    batch_size: images per chunk of the calibration pass (memory / speed only; in
        ``"momentum"`` mode also the averaging unit).
    calibrate: fit ``psi``/``phi`` (``False``: recorded thresholds only, ``psi = phi = 0``).
    min_spikes: a channel whose DA output fires fewer spikes than this on the calibration
        set keeps ``phi = 0`` (its mean is too poorly estimated to rescale).
    search: per ReLU channel, shrink the recorded threshold to ``alpha * theta_c`` with the
        ``alpha`` in ``{1, 0.95, ..., 0.25}`` that minimises the squared error between DA-QCFS
        at ``T`` and the reference activation on the first ``search_images`` images (default
        ``None``: all calibration images; on the shipped ReLU small CNN 1,024 images gave
        0.1 point more at T = 4, 8, 16 than the first 256) (coarse
        ``T`` wastes levels on rare large activations). The reference stays the activation
        clipped at the recorded threshold. In ``"momentum"`` mode the scales are searched on
        the first batch; with ``calibrate=False`` the candidates are scored with their own
        threshold as amplitude (as the result uses).
    fit: ``"both"`` (default: ``psi`` and ``phi``, as the paper), ``"psi"`` or ``"phi"``
        (fit only that one, the other stays 0).
    amplitude: how ``phi`` is fitted: ``"mean"`` (default, the paper's: the channel's mean
        output equals the reference's) or ``"ls"`` (least squares: minimises the channel's
        squared output error, and the threshold search scores its candidates with their own
        least-squares amplitude; ``benchmarks/calibration.py --amplitude ls``. Measured on
        the full test set: +0.19 / +0.09 points at T = 4 / 8 on the shipped ReLU ResNet-20,
        -0.11 / +0.04 / -0.11 at T = 4 / 8 / 16 on the small CNN, so not the default).
    refine_steps: after the layer-by-layer fit, this many Adam steps that tune every
        channel's threshold, shift and amplitude together (3 numbers per channel, the weights
        untouched) so that the network's output matches the ANN's on the calibration images
        (mean squared error of the outputs, straight-through gradient of the floor; still no
        labels). ``0`` (default) skips it. It costs one forward and backward pass of a
        ``batch_size`` batch per step (ResNet-20: ~0.3 s per step with 2 CPU threads) and,
        with 300 steps, brings the shipped ReLU ResNet-20 from -1.67 / -0.86 to -1.07 / -0.27
        points at T = 4 / 8 (``benchmarks/calibration.py --refine-steps``). Minibatches are
        drawn with a fixed seed, so the result is deterministic.
    refine_lr: Adam learning rate of the refinement, on relative parameters (log-threshold,
        shift / threshold, amplitude / threshold).
    """

    mode: str = "sequential"
    percentile: float | None = None
    momentum: float = 0.99
    batch_size: int = 128
    calibrate: bool = True
    min_spikes: float = 4.0
    search: bool = False
    search_images: int | None = None
    fit: str = "both"
    amplitude: str = "mean"
    refine_steps: int = 0
    refine_lr: float = 3e-3

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"calibration mode must be one of {_MODES}, got {self.mode!r}")
        if self.percentile is not None and not (
                isinstance(self.percentile, (int, float)) and 0 < self.percentile <= 100):
            raise ValueError(f"percentile must be in (0, 100] (e.g. 99.99) or None for the "
                             f"maximum, got {self.percentile!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or (
                self.batch_size < 1):
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.amplitude not in _AMPLITUDES:
            raise ValueError(f"amplitude must be one of {_AMPLITUDES}, got "
                             f"{self.amplitude!r}")
        if self.fit not in ("both", "psi", "phi"):
            raise ValueError(f"fit must be 'both', 'psi' or 'phi', got {self.fit!r}")
        if self.search_images is not None and self.search_images < 1:
            raise ValueError(f"search_images must be >= 1, got {self.search_images!r}")
        if self.min_spikes < 0:
            raise ValueError(f"min_spikes must be >= 0, got {self.min_spikes!r}")
        if isinstance(self.refine_steps, bool) or not isinstance(self.refine_steps, int) or (
                self.refine_steps < 0):
            raise ValueError(f"refine_steps must be an int >= 0, got {self.refine_steps!r}")
        if not (isinstance(self.refine_lr, (int, float)) and math.isfinite(self.refine_lr)
                and self.refine_lr > 0):
            raise ValueError(f"refine_lr must be a finite number > 0, got {self.refine_lr!r}")


# ---------------------------------------------------------------------------------------------
# calibration data
# ---------------------------------------------------------------------------------------------
def calibration_batches(data: Any, input_dims: int | None = None, *,
                        max_batches: int | None = None, max_samples: int | None = None,
                        batch_size: int = 128) -> list[torch.Tensor]:
    """Read the calibration inputs (labels are dropped) into a list of float batches.

    ``data``: anything :func:`leansnn.base.batching.iter_batches` reads. At most
    ``max_batches`` batches and ``max_samples`` inputs are read. Raises ``ValueError`` for no
    data, label-only batches, non-finite values or inputs of the wrong number of dims
    (``input_dims``, the dims of one static batch).
    """
    if data is None:
        raise ValueError("method='calibrated' needs calib_data=<unlabeled inputs: a tensor "
                         "[N, ...], an (inputs, labels) pair, a Dataset or a DataLoader> to "
                         "record thresholds and calibrate on")
    check_limit(max_batches, "max_batches")
    check_limit(max_samples, "max_samples")
    out: list[torch.Tensor] = []
    batches = iter_batches(data, batch_size, max_batches=max_batches, max_samples=max_samples)
    for i, (x, _) in enumerate(batches):
        if input_dims is not None and x.dim() != input_dims:
            raise ValueError(
                f"calibration batch {i} has shape {tuple(x.shape)} ({x.dim()} dims) but the "
                f"model takes static batches with {input_dims} dims (e.g. [B, C, H, W]); pass "
                "inputs shaped like the ANN's training batches")
        if x.shape[0] == 0:
            continue
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"calibration batch {i} contains NaN or inf values")
        out.append(x.detach())
    if not out:
        raise ValueError("calib_data yielded no inputs (empty loader or dataset); pass at "
                         "least one batch of unlabeled inputs")
    return out


def _rechunk(xs: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    if all(x.shape[0] == size for x in xs[:-1]) and xs[-1].shape[0] <= size:
        return xs
    return list(torch.cat(xs).split(size))


def _check_runs(gm: fx.GraphModule, x: torch.Tensor) -> None:
    try:
        with torch.no_grad():
            gm(x[:2])
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"the model cannot run on the calibration inputs (batch shape {tuple(x.shape)}): "
            f"{msg}. Pass inputs shaped like the ANN's training batches") from None


# ---------------------------------------------------------------------------------------------
# the pipeline: fit (thresholds, psi, phi) -> optional refinement
# ---------------------------------------------------------------------------------------------
def calibrate_sites(gm: fx.GraphModule, sites: list[ActivationSite], T: int,
                    inputs: list[torch.Tensor], config: CalibrationConfig | None = None,
                    progress: bool = True) -> dict[str, DAQCFS]:
    """Record thresholds and fit ``psi``/``phi`` for every site of the traced ANN ``gm``
    (then refine them if ``config.refine_steps``).

    ``inputs``: calibration batches (float, static ``[B, ...]``). Returns ``{site name:
    DAQCFS}`` (call :meth:`DAQCFS.to_neuron` for the parallel neurons). No labels are used.
    """
    cfg = config or CalibrationConfig()
    chunks = _rechunk(inputs, cfg.batch_size)
    was = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            params = fit_sites(gm, sites, T, chunks, cfg, progress)
        out = {s.name: params[s.name].to_daqcfs(T) for s in sites}
        if cfg.refine_steps:
            out = refine(gm, sites, out, chunks, cfg.refine_steps, cfg.refine_lr,
                         cfg.batch_size, progress)
    finally:
        gm.train(was)
    return out


def record_thresholds(model: nn.Module, calib_data: Any, *, max_batches: int | None = None,
                      max_samples: int | None = None, percentile: float | None = None,
                      batch_size: int = 128, input_dims: int | None = None,
                      progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-channel thresholds of every activation site of ``model``, recorded on unlabeled
    data: ``{site name: theta [C, 1, ...]}``, usable as ``thresholds=`` of
    ``convert(..., method="parallel" | "serial")``. QCFS sites keep their trained threshold.

    One pass, reference = the ANN with clipped activations (identical to the ANN when
    ``percentile`` is ``None``: the channel maximum). ``max_batches`` / ``max_samples``
    limit how much of ``calib_data`` is read (default all).
    """
    cfg = CalibrationConfig(percentile=percentile, batch_size=batch_size, calibrate=False)
    gm = trace(copy.deepcopy(unwrap(model)).eval())
    sites, problems = find_activation_sites(gm)
    if problems:
        raise ConversionError("cannot record thresholds: " + "; ".join(problems))
    check_qcfs_thresholds(sites)
    dims = input_dims if input_dims is not None else infer_input_dims(gm)
    inputs = calibration_batches(calib_data, dims, max_batches=max_batches,
                                 max_samples=max_samples, batch_size=batch_size)
    _check_runs(gm, inputs[0])
    da = calibrate_sites(gm, sites, 1, inputs, cfg, progress)
    return {name: q.threshold.clone() for name, q in da.items()}


_RENAMED = {"calib_images": "max_samples", "calib_batches": "max_batches"}


@register_method("calibrated")
def _calibrated_method(ctx: ConversionContext, calib_data: Any = None,
                       max_batches: int | None = None, max_samples: int | None = None,
                       percentile: float | None = None, mode: str = "sequential",
                       momentum: float = 0.99, batch_size: int = 128, calibrate: bool = True,
                       search: bool = True, fit: str = "both", amplitude: str = "mean",
                       refine_steps: int = 0, refine_lr: float = 3e-3,
                       progress: bool = True, **renamed: Any) -> dict[str, nn.Module]:
    """Channel-wise parallel neurons from recorded thresholds and DA calibration (module
    docstring). Options: ``calib_data`` (required), ``max_batches`` / ``max_samples``
    (how much of it to read; default all), ``percentile`` (``None`` = channel max),
    ``mode`` (``"sequential"`` | ``"momentum"``), ``momentum``, ``batch_size``,
    ``calibrate`` (``False``: thresholds only), ``search`` (threshold scale search, on by
    default: it is what makes T <= 4 work, see :class:`CalibrationConfig`), ``fit``
    (``"both"``: psi and phi, as the paper; ``"psi"`` / ``"phi"``: one of them), ``amplitude``
    (``"mean"`` | ``"ls"``, how phi is fitted, see :class:`CalibrationConfig`),
    ``refine_steps`` / ``refine_lr`` (output-matching refinement, see
    :class:`CalibrationConfig`), ``progress``.
    """
    for old in renamed:
        new = _RENAMED.get(old)
        raise TypeError(f"unexpected option {old!r}" + (f" (renamed {new!r})" if new else ""))
    cfg = CalibrationConfig(mode=mode, percentile=percentile, momentum=momentum,
                            batch_size=batch_size, calibrate=calibrate, search=search,
                            fit=fit, amplitude=amplitude, refine_steps=refine_steps,
                            refine_lr=refine_lr)
    inputs = calibration_batches(calib_data, ctx.input_dims, max_batches=max_batches,
                                 max_samples=max_samples, batch_size=batch_size)
    _check_runs(ctx.model, inputs[0])
    t0 = time.perf_counter()
    da = calibrate_sites(ctx.model, ctx.sites, ctx.T, inputs, cfg, progress)
    ctx.info["calibration"] = {"images": sum(int(x.shape[0]) for x in inputs),
                               "seconds": time.perf_counter() - t0, "mode": mode,
                               "refine_steps": refine_steps}
    return {name: q.to_neuron() for name, q in da.items()}


def calibration_summary(snn: nn.Module) -> list[dict]:
    """Per spiking layer of a converted network: ``{"layer", "channels", "theta"
    (mean), "psi" (mean |psi|), "phi" (mean |phi|), "phi_rel" (mean |phi|/theta)}``,
    read back from the parallel neurons (``psi = (shift - theta/2)/T``, ``phi = amplitude -
    theta``)."""
    rows = []
    neurons = snn.named_neurons() if hasattr(snn, "named_neurons") else [
        (n, m) for n, m in snn.named_modules() if isinstance(m, ParallelIF)]
    for name, m in neurons:
        if not isinstance(m, ParallelIF):
            continue
        th = m.threshold.reshape(-1)
        shift = (m.threshold / 2 if m.shift is None else m.shift).reshape(-1)
        amp = (m.threshold if m.amplitude is None else m.amplitude).reshape(-1)
        psi = (shift - th / 2) / m.T
        phi = amp - th
        rows.append({"layer": name, "channels": int(th.numel()), "theta": float(th.mean()),
                     "psi": float(psi.abs().mean()), "phi": float(phi.abs().mean()),
                     "phi_rel": float((phi.abs() / th).mean())})
    return rows
