r"""Training-free conversion: recorded thresholds and distribution-aware calibration (DA-QCFS).

papers.md, part B, "Distribution-aware error calibration". A network trained the ordinary
way (ReLU), or with QCFS at ``L != T``, becomes a network of channel-wise parallel neurons
without any training:

1. **Thresholds.** One pass over unlabeled data records, for every activation site found by
   the converter (``nn.ReLU`` / ``ReLU6`` / QCFS modules and ``F.relu`` / ``torch.relu`` /
   ``Tensor.relu`` calls, conv *and* linear activations alike), each channel's maximum
   activation ``theta_c`` (or a percentile of it). QCFS sites keep their trained threshold.
2. **DA-QCFS.** Each activation is replaced by

   .. math::

       r(z) = \frac{\theta_c + \varphi_c}{T}\,
              \mathrm{clip}\Big(\Big\lfloor \frac{(z + \psi_c)\,T + \theta_c/2}{\theta_c}
              \Big\rfloor, 0, T\Big)

   with a per-channel input-mean shift ``psi_c`` and amplitude shift ``phi_c``
   (:class:`DAQCFS`, :func:`da_qcfs`).
3. **Calibration, layer by layer, no labels.** The data run through two copies of the
   network in lock-step: the *reference* (clipped ReLU at ``theta_c``, or QCFS at the trained
   ``L``) and the DA network (already calibrated DA-QCFS upstream). At each site, ``psi_c``
   is the mean pre-activation error ``E[z_ref - z_DA]`` of the channel and then ``phi_c`` makes
   the channel's mean output equal the reference's:
   ``(theta_c + phi_c) E[n]/T = E[a_ref(z_ref)]`` (``n`` = spike count).

   ``mode="sequential"`` (default) computes these means *exactly* over all calibration
   images, one site after another (one forward pass in total, the calibration set held in
   memory a layer at a time). ``mode="momentum"`` is the authors' recipe: the same per-batch
   estimates folded into running averages (``psi <- m psi + (1 - m) psi_batch``,
   ``m = 0.99``) over a pass of the data, thresholds from a first pass (running maximum; a
   percentile is averaged over batches). ``benchmarks/calibration.py`` compares the two.
4. **Neurons.** DA-QCFS at site ``c`` is exactly a channel-wise :class:`ParallelIF` with
   threshold ``theta_c``, shift ``theta_c/2 + T psi_c`` and spike amplitude
   ``theta_c + phi_c`` (step ``k`` fires iff ``(T/k) mean(I) + (theta_c/2 + T psi_c)/k >=
   theta_c``), so the result keeps the exact fast path.

Use::

    snn = ls.convert(ann, T=4, method="calibrated", calib_data=train_set, calib_images=1024)
    # options: percentile=99.99, search=False (keep the recorded thresholds), mode="momentum",
    # calibrate=False (recorded thresholds only), refine_steps=300 (after the layer-by-layer
    # fit, tune every channel's threshold, shift and amplitude so that the network's output
    # matches the ANN's on the calibration images; still label-free, the weights untouched)
    calibration_summary(snn)     # per layer: channels, mean theta, mean |psi|, mean |phi|

Also :func:`record_thresholds` (per-channel thresholds for ``method="parallel"`` /
``"serial"``, ``thresholds=...``) and :func:`optimal_shift` (the shift rule for QCFS
networks converted at ``T != L``).
"""

from __future__ import annotations

import copy
import math
import operator
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from tqdm.auto import tqdm

from .converter import (
    ActivationSite,
    ConversionContext,
    ConversionError,
    _infer_input_dims,
    _site_input,
    find_activation_sites,
    register_method,
    replace_sites,
    trace,
)
from .neurons import ParallelIF

__all__ = [
    "CalibrationConfig", "DAQCFS", "da_qcfs", "record_thresholds", "calibrate_sites",
    "calibration_summary", "optimal_shift", "expected_rate_error", "collect_inputs",
]

_MODES = ("sequential", "momentum")
# amplitude fit -> the amplitude the threshold search scores its candidates with
_SEARCH_AMP = {"mean": "threshold", "ls": "ls"}


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
        clipped at the recorded threshold.
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
        if self.amplitude not in _SEARCH_AMP:
            raise ValueError(f"amplitude must be one of {tuple(_SEARCH_AMP)}, got "
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
# DA-QCFS: the calibrated quantized activation (and its spiking twin)
# ---------------------------------------------------------------------------------------------
def _counts(z: torch.Tensor, threshold: torch.Tensor, shift: torch.Tensor, T: int
            ) -> torch.Tensor:
    # the very arithmetic of ParallelIF.counts (with an explicit shift): bit-exact twins
    return torch.clamp(torch.floor(z / threshold * T + shift / threshold), 0.0, T)


def da_qcfs(z: torch.Tensor, threshold: torch.Tensor | float, T: int,
            psi: torch.Tensor | float = 0.0, phi: torch.Tensor | float = 0.0) -> torch.Tensor:
    r"""DA-QCFS ``((theta + phi)/T) clip(floor(((z + psi) T + theta/2)/theta), 0, T)``.

    ``z``: pre-activation ``[B, C, ...]`` (or any shape); ``threshold``, ``psi``, ``phi``:
    scalars or tensors broadcastable to one sample (``[C, 1, 1]`` for conv activations).
    Units: those of ``z``. With ``psi = phi = 0`` this is QCFS with ``L = T``.
    """
    th = torch.as_tensor(threshold, dtype=z.dtype, device=z.device)
    shift = th / 2 + T * torch.as_tensor(psi, dtype=z.dtype, device=z.device)
    amp = th + torch.as_tensor(phi, dtype=z.dtype, device=z.device)
    return _counts(z, th, shift, T) * (amp / T)


class DAQCFS(nn.Module):
    """DA-QCFS as an ANN activation module (``[B, ...] -> [B, ...]``), with the parameters a
    channel-wise :class:`ParallelIF` uses: ``threshold`` ``theta_c``, ``shift`` ``theta_c/2 +
    T psi_c`` and ``amplitude`` ``theta_c + phi_c`` (buffers broadcastable to one sample).

    ``forward`` uses the neuron's own arithmetic, so a network of these equals the converted
    network's time-mean output (fast path) bit for bit. :meth:`to_neuron` builds the twin.
    """

    def __init__(self, T: int, threshold: torch.Tensor, psi: torch.Tensor | float = 0.0,
                 phi: torch.Tensor | float = 0.0) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1, got {T!r}")
        th = threshold.detach().clone() if isinstance(threshold, torch.Tensor) and (
            threshold.is_floating_point()) else torch.as_tensor(
                threshold, dtype=torch.get_default_dtype())
        if not bool((th > 0).all()):
            raise ValueError("DAQCFS threshold must be > 0 in every channel")
        self.T = T
        self.register_buffer("threshold", th)
        self.register_buffer("shift", th / 2 + T * torch.as_tensor(psi, dtype=th.dtype))
        self.register_buffer("amplitude", th + torch.as_tensor(phi, dtype=th.dtype))

    @property
    def psi(self) -> torch.Tensor:
        """Input-mean shift ``psi_c`` (units of the pre-activation)."""
        return (self.shift - self.threshold / 2) / self.T

    @property
    def phi(self) -> torch.Tensor:
        """Amplitude shift ``phi_c`` (units of the activation)."""
        return self.amplitude - self.threshold

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _counts(z, self.threshold, self.shift, self.T) * (self.amplitude / self.T)

    def to_neuron(self) -> ParallelIF:
        """The channel-wise parallel neuron computing this activation of the time-mean."""
        return ParallelIF(self.T, self.threshold, shift=self.shift, amplitude=self.amplitude)

    def extra_repr(self) -> str:
        return f"T={self.T}, channels={self.threshold.numel()}"


# ---------------------------------------------------------------------------------------------
# the optimal shift for QCFS networks converted at T != L
# ---------------------------------------------------------------------------------------------
def optimal_shift(threshold: float | torch.Tensor, T: int, levels: int | None = None
                  ) -> float | torch.Tensor:
    r"""The shift ``psi`` of a parallel (or serial, ``v0 = psi``) neuron with ``T`` steps that
    replaces QCFS with ``levels = L``: ``psi* = theta/2`` for every ``T`` and ``L``.

    For ``z`` uniform on ``[0, theta]`` the neuron's expected output is
    ``theta/2 + (psi - theta/2)/T`` (:func:`expected_rate_error`), and QCFS(L) with its
    ``theta/2`` shift gives ``theta/2`` for every ``L``: the conversion error is zero in
    expectation iff ``psi = theta/2``, whatever ``T`` and ``L`` (papers.md: the ``k``-th spike's
    threshold sits at ``(k - 1/2) theta`` of summed current). Any other shift biases every
    layer by ``(psi - theta/2)/T``, an error that grows as ``T`` shrinks. ``levels`` is
    accepted to make the (absent) dependence on ``L`` explicit.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int)
                               or levels < 1):
        raise ValueError(f"levels must be an int >= 1 or None, got {levels!r}")
    return threshold / 2


def expected_rate_error(shift: float, threshold: float, T: int) -> float:
    """Exact ``E[neuron(z)] - E[QCFS_L(z)]`` for ``z ~ U[0, theta]`` and shift
    ``0 <= shift <= theta``: ``(shift - theta/2)/T`` (independent of ``L``)."""
    if not 0 <= shift <= threshold:
        raise ValueError(f"shift must lie in [0, threshold], got {shift!r}")
    return (shift - threshold / 2) / T


# ---------------------------------------------------------------------------------------------
# calibration data
# ---------------------------------------------------------------------------------------------
def _batch_input(batch: Any, i: int) -> torch.Tensor:
    x = batch
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError(f"calibration batch {i} is an empty {type(batch).__name__}")
        x = batch[0]
    elif isinstance(batch, dict):
        raise ValueError(f"calibration batch {i} is a dict (keys {sorted(batch)}); pass a "
                         "loader yielding input tensors or (inputs, labels) pairs")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"calibration batch {i}: expected an input tensor (or a tuple whose "
                         f"first item is one), got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"calibration batch {i} holds a {x.dtype} tensor of shape {tuple(x.shape)}: that "
            "looks like labels, not inputs. Pass a loader that yields float inputs [B, ...] "
            "or (inputs, labels) pairs (labels are never used)")
    return x


def collect_inputs(data: Any, input_dims: int | None = None, batches: int | None = None,
                   images: int | None = None, batch_size: int = 128) -> list[torch.Tensor]:
    """Read the calibration inputs (labels are dropped) into a list of float batches.

    ``data``: a tensor ``[N, ...]``, a leansnn dataset, a ``torch.utils.data.Dataset`` or any
    iterable of batches (tensors or ``(inputs, labels)``). At most ``batches`` batches and
    ``images`` images are read. Raises ``ValueError`` for no data, label-only batches,
    non-finite values or inputs of the wrong number of dims (``input_dims``, static batch).
    """
    from ..train import iterate

    if data is None:
        raise ValueError("method='calibrated' needs calib_data=<unlabeled inputs: a loader, "
                         "dataset or tensor [N, ...]> to record thresholds and calibrate on")
    for name, v in (("calib_batches", batches), ("calib_images", images)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be an int >= 1 or None, got {v!r}")
    if isinstance(data, torch.Tensor):
        _batch_input(data, 0)
        it: Iterable = data.split(batch_size)
    else:
        try:
            it = iterate(data, batch_size)
        except ValueError as e:
            raise ValueError(f"calib_data: {e}; pass a loader, dataset or tensor") from None
    out: list[torch.Tensor] = []
    n = 0
    for i, batch in enumerate(it):
        if batches is not None and i >= batches:
            break
        x = _batch_input(batch, i)
        if input_dims is not None and x.dim() != input_dims:
            raise ValueError(
                f"calibration batch {i} has shape {tuple(x.shape)} ({x.dim()} dims) but the "
                f"model takes static batches with {input_dims} dims (e.g. [B, C, H, W]); pass "
                "inputs shaped like the ANN's training batches")
        if x.shape[0] == 0:
            continue
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"calibration batch {i} contains NaN or inf values")
        if images is not None and n + x.shape[0] > images:
            x = x[:images - n]
        out.append(x.detach())
        n += x.shape[0]
        if images is not None and n >= images:
            break
    if not out:
        raise ValueError("calib_data yielded no inputs (empty loader or dataset); pass at "
                         "least one batch of unlabeled inputs")
    return out


def _rechunk(xs: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    if all(x.shape[0] == size for x in xs[:-1]) and xs[-1].shape[0] <= size:
        return xs
    return list(torch.cat(xs).split(size))


# ---------------------------------------------------------------------------------------------
# per-channel statistics (channel = dim 1 of [B, C, ...] activations; [B] is one channel)
# ---------------------------------------------------------------------------------------------
def _param_shape(x: torch.Tensor) -> tuple[int, ...]:
    if x.dim() < 2:
        return ()
    return (x.shape[1],) + (1,) * (x.dim() - 2)


def _red_dims(x: torch.Tensor) -> list[int]:
    return [d for d in range(x.dim()) if d != 1] if x.dim() >= 2 else [0]


def _chan_sum(xs: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    tot = None
    count = 0
    for x in xs:
        s = x.sum(dim=_red_dims(x), dtype=torch.float64)
        tot = s if tot is None else tot + s
        count += x.numel() // max(1, (x.shape[1] if x.dim() >= 2 else 1))
    return tot, count


def _chan_mean(xs: list[torch.Tensor]) -> torch.Tensor:
    s, count = _chan_sum(xs)
    return s / max(count, 1)


def _chan_max(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([x.amax(dim=_red_dims(x)) for x in xs]).amax(0)


def _chan_percentile(xs: list[torch.Tensor], p: float) -> torch.Tensor:
    if xs[0].dim() < 2:
        flat = torch.cat([x.reshape(1, -1) for x in xs], 1)
    else:
        flat = torch.cat([x.transpose(0, 1).reshape(x.shape[1], -1) for x in xs], 1)
    n = flat.shape[1]
    k = min(n, max(1, math.ceil(p / 100.0 * n)))
    return flat.kthvalue(k, dim=1).values


# ---------------------------------------------------------------------------------------------
# running a traced graph node by node on a list of chunks, reference and DA in lock-step
# ---------------------------------------------------------------------------------------------
SiteFn = Callable[[ActivationSite, list, list], tuple[list, list]]


def _run_lockstep(gm: fx.GraphModule, sites: list[ActivationSite], chunks: list[torch.Tensor],
                  on_site: SiteFn, progress: Any = None) -> None:
    """Run ``gm`` on ``chunks`` node by node, keeping two environments (reference, DA).

    At each activation site ``on_site(site, z_ref_chunks, z_da_chunks)`` returns the two
    output chunk lists. Values equal in both environments (everything before the first site)
    are computed once and shared. Dead values are freed as soon as possible.
    """
    nodes = list(gm.graph.nodes)
    site_of = {s.node: s for s in sites}
    site_in = {s.node: _site_input(s) for s in sites}
    last_use: dict[fx.Node, int] = {}
    for i, node in enumerate(nodes):
        for a in node.all_input_nodes:
            last_use[a] = i
    env_r: dict[fx.Node, list] = {}
    env_d: dict[fx.Node, list] = {}
    nch = len(chunks)

    def call(node: fx.Node, env: dict, j: int) -> Any:
        args = fx.node.map_arg(node.args, lambda a: env[a][j])
        kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a][j])
        if node.op == "call_module":
            return gm.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    for i, node in enumerate(nodes):
        if node.op == "output":
            break
        if node.op == "placeholder":
            env_r[node] = env_d[node] = chunks
        elif node.op == "get_attr":
            val = operator.attrgetter(node.target)(gm)
            env_r[node] = env_d[node] = [val] * nch
        elif node in site_of:
            x = site_in[node]
            out_r, out_d = on_site(site_of[node], env_r[x], env_d[x])
            env_r[node], env_d[node] = out_r, out_d
            if progress is not None:
                progress.update(1)
        else:
            shared = all(env_r[a] is env_d[a] for a in node.all_input_nodes)
            env_r[node] = [call(node, env_r, j) for j in range(nch)]
            env_d[node] = env_r[node] if shared else [call(node, env_d, j) for j in range(nch)]
        for a in node.all_input_nodes:
            if last_use.get(a) == i:
                env_r.pop(a, None)
                env_d.pop(a, None)


def _reference_pre(site: ActivationSite, z: torch.Tensor) -> torch.Tensor:
    """The original activation (ReLU / ReLU6 / QCFS at its trained L) of ``z``."""
    if site.kind == "qcfs":
        return site.module(z)
    a = torch.relu(z)
    return a if site.clip is None else a.clamp(max=site.clip)


@dataclass
class _SiteParams:
    threshold: torch.Tensor          # [C, 1, ...] (> 0)
    psi: torch.Tensor
    phi: torch.Tensor
    dead: torch.Tensor               # bool [C, 1, ...]: never active on the calibration data


def _fix_thresholds(raw: torch.Tensor, site: ActivationSite) -> tuple[torch.Tensor, torch.Tensor]:
    dead = ~(raw > 0)
    if bool(dead.all()):
        fill = torch.ones((), dtype=raw.dtype)
    else:
        fill = raw[~dead].max()
    return torch.where(dead, fill, raw), dead


def _site_thresholds_from(site: ActivationSite, a_chunks: list[torch.Tensor],
                          percentile: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    shape = _param_shape(a_chunks[0])
    if site.kind == "qcfs":
        th = site.module.threshold.detach().to(a_chunks[0].dtype)
        raw = th.expand(shape[:1] if shape else ()).clone()
    elif percentile is None or percentile >= 100:
        raw = _chan_max(a_chunks)
    else:
        raw = _chan_percentile(a_chunks, percentile)
    th, dead = _fix_thresholds(raw.to(a_chunks[0].dtype), site)
    return th.reshape(shape), dead.reshape(shape)


_ALPHAS = tuple(1.0 - 0.05 * i for i in range(16))


def _candidate_error(zs: list[torch.Tensor], rs: list[torch.Tensor], t: torch.Tensor,
                     shift: torch.Tensor, T: int, amplitude: str,
                     sums: torch.Tensor | None) -> torch.Tensor:
    """Per-channel ``sum((amp n / T - a)^2)`` for the quantiser ``(t, shift)``; ``amp`` is
    ``t`` (``"threshold"``) or the least-squares amplitude (``"ls"``)."""
    if amplitude == "threshold":
        err = None
        for z, a in zip(zs, rs, strict=True):
            e = (_counts(z, t, shift, T) * (t / T) - a).square_().sum(
                dim=_red_dims(z), dtype=torch.float64)
            err = e if err is None else err + e
        return err.reshape(t.shape)
    snn, sna = _count_moments([_counts(z, t, shift, T) for z in zs], rs)
    g = torch.where(snn > 0, sna / snn.clamp_min(1e-30), t.reshape(-1).double() / T)
    return (g * g * snn - 2 * g * sna + sums).reshape(t.shape)


def _search_thresholds(zd: list[torch.Tensor], a_ref: list[torch.Tensor], th: torch.Tensor,
                       psi: torch.Tensor, T: int, images: int | None,
                       amplitude: str = "threshold") -> torch.Tensor:
    """Per channel, the threshold ``alpha * th`` minimising ``E[(DA_T(z_d) - a_ref)^2]`` on
    ``images``.

    ``amplitude``: the spike amplitude the error is computed with, for each candidate:
    ``"threshold"`` (the candidate threshold itself) or ``"ls"`` (the least-squares
    amplitude of that candidate, as the final ``amplitude="ls"`` fit uses).
    """
    zs, rs, n = [], [], 0
    for z, a in zip(zd, a_ref, strict=True):
        zs.append(z)
        rs.append(a)
        n += z.shape[0]
        if images is not None and n >= images:
            break
    sums = None  # sum of a_ref^2 per channel, for the closed-form least-squares error
    if amplitude != "threshold":
        sums = sum(a.square().sum(dim=_red_dims(a), dtype=torch.float64) for a in rs)
    best_e, best = None, th
    for alpha in _ALPHAS:
        t = th * alpha
        e = _candidate_error(zs, rs, t, t / 2 + T * psi, T, amplitude, sums)
        if best_e is None:
            best_e, best = e, t
        else:
            better = e < best_e
            best_e = torch.where(better, e, best_e)
            best = torch.where(better, t, best)
    return best


def _count_moments(ns: list[torch.Tensor], a: list[torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel ``(sum n^2, sum n a)`` over the chunks: the least-squares amplitude's
    sufficient statistics."""
    snn = sum(n.square().sum(dim=_red_dims(n), dtype=torch.float64) for n in ns)
    sna = sum((n * x).sum(dim=_red_dims(n), dtype=torch.float64)
              for n, x in zip(ns, a, strict=True))
    return snn, sna


def _fit_amp_ls(ns: list[torch.Tensor], a: list[torch.Tensor], th: torch.Tensor, T: int
                ) -> torch.Tensor:
    """Least-squares amplitude shift: ``phi`` minimising ``E[((th+phi) n/T - a)^2]``."""
    snn, sna = _count_moments(ns, a)
    t = th.reshape(-1).double()
    amp = torch.where(snn > 0, T * sna / snn.clamp_min(1e-30), t)
    return (amp - t).to(th.dtype)


def _fit_phi(a_ref_mean: torch.Tensor, n_sum: torch.Tensor, count: int, th: torch.Tensor,
             T: int, min_spikes: float) -> torch.Tensor:
    """Amplitude shift so that ``(theta + phi) E[n] / T == E[a_ref]`` per channel."""
    n_mean = n_sum / max(count, 1)
    ok = n_sum >= min_spikes
    amp = torch.where(ok, T * a_ref_mean / n_mean.clamp_min(1e-30), th.reshape(-1).double())
    return (amp - th.reshape(-1).double()).to(th.dtype)


def calibrate_sites(gm: fx.GraphModule, sites: list[ActivationSite], T: int,
                    inputs: list[torch.Tensor], config: CalibrationConfig | None = None,
                    progress: bool = True) -> dict[str, DAQCFS]:
    """Record thresholds and fit ``psi``/``phi`` for every site of the traced ANN ``gm``.

    ``inputs``: calibration batches (float, static ``[B, ...]``). Returns ``{site name:
    DAQCFS}`` (call :meth:`DAQCFS.to_neuron` for the parallel neurons). No labels are used.
    """
    cfg = config or CalibrationConfig()
    was = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            if cfg.mode == "sequential":
                params = _calibrate_sequential(gm, sites, T, inputs, cfg, progress)
            else:
                params = _calibrate_momentum(gm, sites, T, inputs, cfg, progress)
    finally:
        gm.train(was)
    out = {}
    for s in sites:
        p = params[s.name]
        phi = torch.where(p.dead, -p.threshold, p.phi)  # dead channel: no output at all
        out[s.name] = DAQCFS(T, p.threshold, p.psi, phi)
    if cfg.refine_steps:
        gm.eval()
        try:
            out = _refine(gm, sites, out, inputs, cfg, progress)
        finally:
            gm.train(was)
    return out


def _calibrate_sequential(gm, sites, T, inputs, cfg, progress) -> dict[str, _SiteParams]:
    chunks = _rechunk(inputs, cfg.batch_size)
    params: dict[str, _SiteParams] = {}

    def on_site(site: ActivationSite, zr: list, zd: list) -> tuple[list, list]:
        a = [_reference_pre(site, z) for z in zr]
        th, dead = _site_thresholds_from(site, a, cfg.percentile)
        if site.kind == "relu":
            a = [x.clamp(max=th) for x in a] if cfg.percentile is not None else a
        shape = th.shape
        if not cfg.calibrate:
            zeros = torch.zeros(shape, dtype=th.dtype)
            if cfg.search and site.kind == "relu":
                th = _search_thresholds(zd, a, th, zeros, T, cfg.search_images)
            params[site.name] = _SiteParams(th, zeros, zeros.clone(), dead)
            dq = DAQCFS(T, th)
            return a, [dq(z) for z in zd]
        psi = (_chan_mean(zr) - _chan_mean(zd)).to(th.dtype).reshape(shape)
        if cfg.fit == "phi":
            psi = torch.zeros_like(psi)
        if cfg.search and site.kind == "relu":
            th = _search_thresholds(zd, a, th, psi, T, cfg.search_images,
                                    _SEARCH_AMP[cfg.amplitude])
        shift = th / 2 + T * psi
        ns = [_counts(z, th, shift, T) for z in zd]
        n_sum, count = _chan_sum(ns)
        if cfg.amplitude == "ls":
            phi = _fit_amp_ls(ns, a, th, T).reshape(shape)
        else:
            phi = _fit_phi(_chan_mean(a), n_sum, count, th, T, cfg.min_spikes).reshape(shape)
        if cfg.fit == "psi":
            phi = torch.zeros_like(phi)
        params[site.name] = _SiteParams(th, psi, phi, dead)
        dq = DAQCFS(T, th, psi, phi)
        amp_t = dq.amplitude / T
        return a, [n * amp_t for n in ns]

    bar = tqdm(total=len(sites), desc=f"calibrate T={T}", leave=False, disable=not progress)
    try:
        _run_lockstep(gm, sites, chunks, on_site, bar)
    finally:
        bar.close()
    return params


def _calibrate_momentum(gm, sites, T, inputs, cfg, progress) -> dict[str, _SiteParams]:
    chunks = _rechunk(inputs, cfg.batch_size)
    # pass 1: thresholds (running max, or the mean of per-batch percentiles)
    raw: dict[str, torch.Tensor] = {}
    nb = len(chunks)

    def rec(site: ActivationSite, zr: list, zd: list) -> tuple[list, list]:
        a = [_reference_pre(site, z) for z in zr]
        if site.kind == "qcfs":
            th, _ = _site_thresholds_from(site, a, None)
            raw[site.name] = th.reshape(-1)
        elif cfg.percentile is None or cfg.percentile >= 100:
            m = _chan_max(a)
            raw[site.name] = m if site.name not in raw else torch.maximum(raw[site.name], m)
        else:
            q = _chan_percentile(a, cfg.percentile) / nb
            raw[site.name] = q if site.name not in raw else raw[site.name] + q
        return a, a

    for c in tqdm(chunks, desc="thresholds", leave=False, disable=not progress):
        _run_lockstep(gm, sites, [c], rec)
    ths: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    params: dict[str, _SiteParams] = {}
    for s in sites:
        th, dead = _fix_thresholds(raw[s.name], s)
        ths[s.name] = (th, dead)
    m = cfg.momentum

    def on_site(site: ActivationSite, zr: list, zd: list) -> tuple[list, list]:
        a = [_reference_pre(site, z) for z in zr]
        th, dead = ths[site.name]
        shape = _param_shape(a[0])
        th, dead = th.reshape(shape), dead.reshape(shape)
        if site.kind == "relu":
            a = [x.clamp(max=th) for x in a]
        p = params.get(site.name)
        first = p is None
        if first:
            z0 = torch.zeros(shape, dtype=th.dtype)
            p = params[site.name] = _SiteParams(th, z0, z0.clone(), dead)
        if cfg.calibrate:
            psi_b = (_chan_mean(zr) - _chan_mean(zd)).to(th.dtype).reshape(shape)
            if cfg.fit == "phi":
                psi_b = torch.zeros_like(psi_b)
            p.psi = m * p.psi + (1 - m) * psi_b
        if first and cfg.search and site.kind == "relu":  # scales fixed on the first batch
            p.threshold = _search_thresholds(zd, a, th, p.psi, T, cfg.search_images,
                                             _SEARCH_AMP[cfg.amplitude])
        th = p.threshold
        if cfg.calibrate:
            shift = th / 2 + T * p.psi
            ns = [_counts(z, th, shift, T) for z in zd]
            n_sum, count = _chan_sum(ns)
            if cfg.amplitude == "ls":
                phi_b = _fit_amp_ls(ns, a, th, T)
            else:
                phi_b = _fit_phi(_chan_mean(a), n_sum, count, th, T, cfg.min_spikes)
            if cfg.fit == "psi":
                phi_b = torch.zeros_like(phi_b)
            p.phi = m * p.phi + (1 - m) * phi_b.reshape(shape)
        dq = DAQCFS(T, th, p.psi, p.phi)
        return a, [dq(z) for z in zd]

    for c in tqdm(chunks, desc=f"calibrate T={T} (momentum)", leave=False,
                  disable=not progress):
        _run_lockstep(gm, sites, [c], on_site)
    return params


# ---------------------------------------------------------------------------------------------
# output-matching refinement of the per-channel parameters (optional)
# ---------------------------------------------------------------------------------------------
class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 - autograd signature
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return g


class _TunableDA(nn.Module):
    """DA-QCFS with trainable relative parameters: ``theta = theta_0 exp(a)``, ``shift = s
    theta``, ``amplitude = m theta`` (dead channels keep amplitude 0)."""

    def __init__(self, q: DAQCFS) -> None:
        super().__init__()
        self.T = q.T
        th = q.threshold.detach()
        self.register_buffer("th0", th.clone())
        self.register_buffer("alive", (q.amplitude != 0).to(th.dtype))
        self.a = nn.Parameter(torch.zeros_like(th))
        self.s = nn.Parameter(q.shift.detach() / th)
        self.m = nn.Parameter(q.amplitude.detach() / th)

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        th = self.th0 * torch.exp(self.a)
        return th, self.s * th, self.m * th * self.alive

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        th, _, amp = self.parts()
        n = torch.clamp(_FloorSTE.apply(z / th * self.T + self.s), 0.0, self.T)
        return n * (amp / self.T)


def _refine(gm: fx.GraphModule, sites: list[ActivationSite], das: dict[str, DAQCFS],
            inputs: list[torch.Tensor], cfg: CalibrationConfig, progress: bool
            ) -> dict[str, DAQCFS]:
    """Tune (theta, shift, amplitude) of every site so the DA network's output matches the
    ANN's (MSE) on ``inputs``; returns new :class:`DAQCFS` modules."""
    if not sites:  # nothing to tune
        return das
    net = copy.deepcopy(gm)
    tun = {s.name: _TunableDA(das[s.name]) for s in sites}
    replace_sites(net, sites, tun)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    params = [p for m in tun.values() for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    dev = next(iter(tun.values())).th0.device
    X = torch.cat(inputs).to(dev)
    with torch.no_grad():
        outs = [gm(x.to(dev)) for x in _rechunk(inputs, cfg.batch_size)]
    if not all(isinstance(o, torch.Tensor) for o in outs):
        raise ConversionError("refine_steps needs a model whose output is one tensor; "
                              "use refine_steps=0 for this model")
    ref = torch.cat(outs)
    opt = torch.optim.Adam(params, lr=cfg.refine_lr)
    gen = torch.Generator().manual_seed(0)
    bs = min(cfg.batch_size, X.shape[0])
    bar = tqdm(range(cfg.refine_steps), desc="refine", leave=False, disable=not progress)
    for _ in bar:
        idx = torch.randint(0, X.shape[0], (bs,), generator=gen)
        loss = torch.mean((net(X[idx]) - ref[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{loss.item():.4g}", refresh=False)
    out = {}
    with torch.no_grad():
        for name, m in tun.items():
            th, shift, amp = m.parts()
            q = DAQCFS(m.T, th)
            q.shift.copy_(shift)
            q.amplitude.copy_(amp)
            out[name] = q
    return out


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def _check_runs(gm: fx.GraphModule, x: torch.Tensor) -> None:
    try:
        with torch.no_grad():
            gm(x[:2])
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"the model cannot run on the calibration inputs (batch shape {tuple(x.shape)}): "
            f"{msg}. Pass inputs shaped like the ANN's training batches") from None


def record_thresholds(model: nn.Module, calib_data: Any, *, calib_batches: int | None = None,
                      calib_images: int | None = None, percentile: float | None = None,
                      batch_size: int = 128, input_dims: int | None = None,
                      progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-channel thresholds of every activation site of ``model``, recorded on unlabeled
    data: ``{site name: theta [C, 1, ...]}``, usable as ``thresholds=`` of
    ``convert(..., method="parallel" | "serial")``. QCFS sites keep their trained threshold.

    One pass, reference = the ANN with clipped activations (identical to the ANN when
    ``percentile`` is ``None``: the channel maximum).
    """
    cfg = CalibrationConfig(percentile=percentile, batch_size=batch_size, calibrate=False)
    gm = trace(_eval_copy(model))
    sites, problems = find_activation_sites(gm)
    if problems:
        raise ConversionError("cannot record thresholds: " + "; ".join(problems))
    dims = input_dims if input_dims is not None else _infer_input_dims(gm)
    inputs = collect_inputs(calib_data, dims, calib_batches, calib_images, batch_size)
    _check_runs(gm, inputs[0])
    da = calibrate_sites(gm, sites, 1, inputs, cfg, progress)
    return {name: q.threshold.clone() for name, q in da.items()}


def _eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()


@register_method("calibrated")
def _calibrated_method(ctx: ConversionContext, calib_data: Any = None,
                       calib_batches: int | None = None, calib_images: int | None = None,
                       percentile: float | None = None, mode: str = "sequential",
                       momentum: float = 0.99, batch_size: int = 128, calibrate: bool = True,
                       search: bool = True, fit: str = "both", amplitude: str = "mean",
                       refine_steps: int = 0, refine_lr: float = 3e-3,
                       progress: bool = True) -> dict[str, nn.Module]:
    """Channel-wise parallel neurons from recorded thresholds and DA calibration (module
    docstring). Options: ``calib_data`` (required), ``calib_batches`` / ``calib_images``
    (how much of it to read; default all), ``percentile`` (``None`` = channel max),
    ``mode`` (``"sequential"`` | ``"momentum"``), ``momentum``, ``batch_size``,
    ``calibrate`` (``False``: thresholds only), ``search`` (threshold scale search, on by
    default: it is what makes T <= 4 work, see :class:`CalibrationConfig`), ``fit``
    (``"both"``: psi and phi, as the paper; ``"psi"`` / ``"phi"``: one of them), ``amplitude``
    (``"mean"`` | ``"ls"``, how phi is fitted, see :class:`CalibrationConfig`),
    ``refine_steps`` / ``refine_lr`` (output-matching refinement, see
    :class:`CalibrationConfig`), ``progress``.
    """
    cfg = CalibrationConfig(mode=mode, percentile=percentile, momentum=momentum,
                            batch_size=batch_size, calibrate=calibrate, search=search,
                            fit=fit, amplitude=amplitude, refine_steps=refine_steps,
                            refine_lr=refine_lr)
    inputs = collect_inputs(calib_data, ctx.input_dims, calib_batches, calib_images,
                            batch_size)
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
