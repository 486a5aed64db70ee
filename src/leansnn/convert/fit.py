r"""Fitting DA-QCFS, layer by layer, without labels: thresholds, then ``psi`` and ``phi``.

At each activation site (in graph order, the sites upstream already calibrated) the
calibration data run through the reference ANN and the DA network in lock-step
(:mod:`.lockstep`), and :func:`update_site` makes one update of the site's parameters:

* ``psi_c = E[z_ref - z_DA]``, the channel's mean pre-activation error;
* (optional) the threshold scale search (:mod:`.search`);
* ``phi_c`` so that the channel's mean output equals the reference's,
  ``(theta_c + phi_c) E[n]/T = E[a_ref]`` (``amplitude="mean"``), or least squares
  (``amplitude="ls"``), ``n`` the spike count at ``(theta_c, theta_c/2 + T psi_c)``.

Two algorithms fold these updates differently (``CalibrationConfig.mode``):

* ``"sequential"`` (:func:`fit_sequential`): one update per site over *all* calibration
  images, so the means are exact (one forward pass in total, the calibration set held in
  memory a layer at a time); thresholds are recorded at the site from the same pass;
* ``"momentum"`` (:func:`fit_momentum`, the authors' recipe): thresholds from a first pass
  (running maximum, or the mean of per-batch percentiles), then one update per batch folded
  into running averages ``x <- m x + (1 - m) x_batch``.

With ``momentum = 0`` and one batch the two are the same computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import fx

from ..activations import spike_count
from ..base.progress import progress as show_progress
from .converter import ActivationSite
from .daqcfs import DAQCFS
from .lockstep import run_lockstep
from .search import search_thresholds
from .stats import chan_max, chan_mean, chan_percentile, chan_sum, count_moments, param_shape

if TYPE_CHECKING:
    from .calibrate import CalibrationConfig

__all__ = ["SiteParams", "fit_sites", "fit_sequential", "fit_momentum", "update_site",
           "reference_activation", "site_thresholds_from"]

# amplitude fit -> the amplitude the threshold search scores its candidates with
_SEARCH_AMP = {"mean": "threshold", "ls": "ls"}


@dataclass
class SiteParams:
    """The fitted parameters of one site (per channel, shaped ``[C, 1, ...]``)."""

    threshold: torch.Tensor          # > 0
    psi: torch.Tensor                # input-mean shift
    phi: torch.Tensor                # amplitude shift
    dead: torch.Tensor               # bool: never active on the calibration data

    @classmethod
    def start(cls, threshold: torch.Tensor, dead: torch.Tensor) -> SiteParams:
        z = torch.zeros(threshold.shape, dtype=threshold.dtype)
        return cls(threshold, z, z.clone(), dead)

    def to_daqcfs(self, T: int) -> DAQCFS:
        """The activation (a dead channel gets amplitude 0: no output at all)."""
        phi = torch.where(self.dead, -self.threshold, self.phi)
        return DAQCFS(T, self.threshold, self.psi, phi)


def reference_activation(site: ActivationSite, z: torch.Tensor) -> torch.Tensor:
    """The original activation (ReLU / ReLU6 / QCFS at its trained L) of ``z``."""
    if site.kind == "qcfs":
        return site.module(z)
    a = torch.relu(z)
    return a if site.clip is None else a.clamp(max=site.clip)


def _fix_dead(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A channel never active (threshold <= 0) gets the largest live threshold; flag it."""
    dead = ~(raw > 0)
    fill = torch.ones((), dtype=raw.dtype) if bool(dead.all()) else raw[~dead].max()
    return torch.where(dead, fill, raw), dead


def site_thresholds_from(site: ActivationSite, a_chunks: list[torch.Tensor],
                         percentile: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(threshold, dead)`` ``[C, 1, ...]`` from the reference outputs: the
    trained threshold of a QCFS site, else the channel maximum or ``percentile``."""
    shape = param_shape(a_chunks[0])
    if site.kind == "qcfs":
        th = site.module.effective_threshold().detach().to(a_chunks[0].dtype)
        raw = th.expand(shape[:1] if shape else ()).clone()
    elif percentile is None or percentile >= 100:
        raw = chan_max(a_chunks)
    else:
        raw = chan_percentile(a_chunks, percentile)
    th, dead = _fix_dead(raw.to(a_chunks[0].dtype))
    return th.reshape(shape), dead.reshape(shape)


def _phi_mean_match(a: list[torch.Tensor], ns: list[torch.Tensor], th: torch.Tensor, T: int,
                    min_spikes: float) -> torch.Tensor:
    """Amplitude shift so that ``(theta + phi) E[n] / T == E[a_ref]`` per channel (a channel
    with fewer than ``min_spikes`` spikes keeps ``phi = 0``)."""
    n_sum, count = chan_sum(ns)
    n_mean = n_sum / max(count, 1)
    t = th.reshape(-1).double()
    amp = torch.where(n_sum >= min_spikes, T * chan_mean(a) / n_mean.clamp_min(1e-30), t)
    return (amp - t).to(th.dtype)


def _phi_least_squares(a: list[torch.Tensor], ns: list[torch.Tensor], th: torch.Tensor,
                       T: int) -> torch.Tensor:
    """Least-squares amplitude shift: ``phi`` minimising ``E[((theta + phi) n/T - a)^2]``."""
    snn, sna = count_moments(ns, a)
    t = th.reshape(-1).double()
    amp = torch.where(snn > 0, T * sna / snn.clamp_min(1e-30), t)
    return (amp - t).to(th.dtype)


def update_site(p: SiteParams, zr: list[torch.Tensor], zd: list[torch.Tensor],
                a: list[torch.Tensor], T: int, cfg: CalibrationConfig, *,
                momentum: float = 0.0, search: bool = False) -> list[torch.Tensor]:
    """One update of ``p`` (in place) from chunks of the reference pre-activations ``zr``,
    the DA pre-activations ``zd`` and the reference outputs ``a``; returns the DA outputs.

    ``psi`` and ``phi`` are estimated on these chunks and folded in as ``x <- m x + (1 - m)
    x_chunks`` (``m = momentum``; 0 replaces them). ``search``: run the threshold scale
    search first (ReLU sites). ``cfg.calibrate = False`` keeps ``psi = phi = 0``;
    ``cfg.fit`` = ``"psi"`` / ``"phi"`` fits only that one.
    """
    shape = p.threshold.shape

    def fold(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        return new if momentum == 0 else momentum * old + (1 - momentum) * new

    if cfg.calibrate and cfg.fit != "phi":
        psi = (chan_mean(zr) - chan_mean(zd)).to(p.threshold.dtype).reshape(shape)
        p.psi = fold(p.psi, psi)
    if search:
        amp = _SEARCH_AMP[cfg.amplitude] if cfg.calibrate else "threshold"
        p.threshold = search_thresholds(zd, a, p.threshold, p.psi, T, cfg.search_images, amp)
    th = p.threshold
    shift = th / 2 + T * p.psi
    ns = [spike_count(z, th, T, shift / th) for z in zd]
    if cfg.calibrate and cfg.fit != "psi":
        if cfg.amplitude == "ls":
            phi = _phi_least_squares(a, ns, th, T)
        else:
            phi = _phi_mean_match(a, ns, th, T, cfg.min_spikes)
        p.phi = fold(p.phi, phi.reshape(shape))
    amp_t = (th + p.phi) / T
    return [n * amp_t for n in ns]


def fit_sequential(gm: fx.GraphModule, sites: list[ActivationSite], T: int,
                   chunks: list[torch.Tensor], cfg: CalibrationConfig, progress: bool
                   ) -> dict[str, SiteParams]:
    """Exact means over all ``chunks``, one site after another (module docstring)."""
    params: dict[str, SiteParams] = {}

    def on_site(site: ActivationSite, zr: list, zd: list) -> tuple[list, list]:
        a = [reference_activation(site, z) for z in zr]
        th, dead = site_thresholds_from(site, a, cfg.percentile)
        if site.kind == "relu" and cfg.percentile is not None:  # max: clipping is a no-op
            a = [x.clamp(max=th) for x in a]
        p = params[site.name] = SiteParams.start(th, dead)
        return a, update_site(p, zr, zd, a, T, cfg, search=cfg.search and site.kind == "relu")

    bar = show_progress(total=len(sites), desc=f"calibrate T={T}", quiet=not progress)
    try:
        run_lockstep(gm, sites, chunks, on_site, bar)
    finally:
        bar.close()
    return params


def _record_thresholds_per_batch(gm: fx.GraphModule, sites: list[ActivationSite],
                                 chunks: list[torch.Tensor], cfg: CalibrationConfig,
                                 progress: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Momentum mode's first pass: per site ``(threshold, dead)`` as flat ``[C]`` tensors,
    the running maximum over batches, or the mean of the per-batch percentiles."""
    raw: dict[str, torch.Tensor] = {}
    nb = len(chunks)

    def rec(site: ActivationSite, zr: list, zd: list) -> tuple[list, list]:
        a = [reference_activation(site, z) for z in zr]
        if site.kind == "qcfs":
            raw[site.name] = site_thresholds_from(site, a, None)[0].reshape(-1)
        elif cfg.percentile is None or cfg.percentile >= 100:
            m = chan_max(a)
            raw[site.name] = m if site.name not in raw else torch.maximum(raw[site.name], m)
        else:
            q = chan_percentile(a, cfg.percentile) / nb
            raw[site.name] = q if site.name not in raw else raw[site.name] + q
        return a, a

    for c in show_progress(chunks, desc="thresholds", quiet=not progress):
        run_lockstep(gm, sites, [c], rec)
    return {s.name: _fix_dead(raw[s.name]) for s in sites}


def fit_momentum(gm: fx.GraphModule, sites: list[ActivationSite], T: int,
                 chunks: list[torch.Tensor], cfg: CalibrationConfig, progress: bool
                 ) -> dict[str, SiteParams]:
    """The authors' recipe: running averages over batches (module docstring)."""
    ths = _record_thresholds_per_batch(gm, sites, chunks, cfg, progress)
    params: dict[str, SiteParams] = {}

    def on_site(site: ActivationSite, zr: list, zd: list) -> tuple[list, list]:
        a = [reference_activation(site, z) for z in zr]
        p = params.get(site.name)
        first = p is None
        if first:
            th, dead = ths[site.name]
            shape = param_shape(a[0])
            p = params[site.name] = SiteParams.start(th.reshape(shape), dead.reshape(shape))
        if site.kind == "relu":
            a = [x.clamp(max=ths[site.name][0].reshape(p.threshold.shape)) for x in a]
        # the threshold scales are searched once, on the first batch
        search = first and cfg.search and site.kind == "relu"
        return a, update_site(p, zr, zd, a, T, cfg, momentum=cfg.momentum, search=search)

    for c in show_progress(chunks, desc=f"calibrate T={T} (momentum)",
                           quiet=not progress):
        run_lockstep(gm, sites, [c], on_site)
    return params


def fit_sites(gm: fx.GraphModule, sites: list[ActivationSite], T: int,
              chunks: list[torch.Tensor], cfg: CalibrationConfig, progress: bool
              ) -> dict[str, SiteParams]:
    """Fit every site with the algorithm ``cfg.mode`` names (``gm`` in eval mode, no grad)."""
    fit = fit_sequential if cfg.mode == "sequential" else fit_momentum
    return fit(gm, sites, T, chunks, cfg, progress)
