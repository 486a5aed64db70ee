"""An event-camera emulator: a static image seen by a DVS sensor that moves along saccades.

This is how N-MNIST was recorded (Orchard et al., "Converting static image datasets to spiking
neuromorphic datasets using saccades", Front. Neurosci. 2015): the sensor makes three quick
linear saccades tracing a triangle while it looks at a still image, so every edge of the image
sweeps over some pixels and makes them fire. The model, per sensor pixel:

1. **Optics.** The image (intensity in [0, 1], ``background`` around it) is placed on a
   sensor a few pixels larger than it, at a sub-pixel offset that follows the saccade path;
   sensor values are bilinear interpolations of the image. The path is sampled
   ``steps_per_saccade`` times per saccade.
2. **Log intensity.** ``L = log(I + log_eps)``; ``log_eps`` keeps black finite and sets how
   strongly dark regions respond.
3. **Change detection.** Each pixel keeps a reference level ``L_ref`` (initially its first
   value). Whenever ``L - L_ref`` reaches ``+C_on`` an ON event is emitted and ``L_ref``
   moves up by ``C_on`` (likewise OFF with ``C_off``), so a large change gives several
   events. Between two samples ``L`` is taken as linear in time, so the crossing times (and
   the event timestamps) are interpolated, not snapped to the samples.
4. **Threshold mismatch.** ``C_on, C_off`` differ per pixel: ``C + sigma·N(0, 1)`` (clipped
   at ``min_threshold``); the map is a property of the sensor, drawn once from ``seed``.
5. **Refractory period.** A crossing less than ``refractory_us`` after that pixel's previous
   event is not emitted (its change is lost: ``L_ref`` still moves, as a real pixel resets
   during its dead time).
6. **Background noise.** Independent ON/OFF events, uniform in time and over pixels, at
   ``noise_rate_hz`` per pixel (half ON, half OFF). These are the "noise spikes" an attention
   module such as ASA should learn to ignore; they bypass the refractory model.

Every random draw comes from ``numpy.random.default_rng((seed, index))`` for the image at
position ``index``, so the events of an image do not depend on which other images are
converted with it, nor on the batch size: conversion is deterministic for a given seed.

The work is vectorised over a batch of images and all pixels; the only Python loops run over
path samples (60 by default) and over the (few) threshold crossings per sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .events import EVENT_DTYPE

__all__ = ["EmulatorSettings", "emulate", "emulate_batch", "saccade_offsets"]

_TRIANGLE = ((-1.5, 1.5), (1.5, 1.5), (0.0, -1.5))


@dataclass(frozen=True)
class EmulatorSettings:
    """Settings of :func:`emulate` (frozen and validated; :meth:`key` is a stable hash).

    - ``sensor_size``: ``(H, W)`` of the sensor (pixels); must be at least the image size
      plus twice the largest path displacement. ``(34, 34)`` for 28x28 images, as N-MNIST.
    - ``path``: saccade vertices ``(dx, dy)`` in pixels, relative to the centred image. The
      sensor starts at the first vertex, visits the others in order and returns to the first:
      ``len(path)`` linear saccades (default: three tracing a triangle).
    - ``saccade_us``: duration of each saccade (µs); the recording lasts
      ``len(path) * saccade_us``. ``steps_per_saccade``: path samples per saccade.
    - ``threshold``: mean contrast threshold ``C`` (log-intensity units) for ON and OFF;
      ``threshold_sigma``: per-pixel mismatch (std of ``C``, same units); ``min_threshold``:
      floor after the mismatch.
    - ``refractory_us``: dead time after each event of a pixel (µs, integer).
    - ``noise_rate_hz``: background noise events per pixel per second (ON + OFF).
    - ``log_eps``: offset inside the logarithm; ``background``: intensity around the image.
    """

    sensor_size: tuple[int, int] = (34, 34)
    path: tuple[tuple[float, float], ...] = _TRIANGLE
    saccade_us: int = 100_000
    steps_per_saccade: int = 20
    threshold: float = 0.25
    threshold_sigma: float = 0.03
    min_threshold: float = 0.01
    refractory_us: int = 1_000
    noise_rate_hz: float = 1.0
    log_eps: float = 0.1
    background: float = 0.0
    version: int = field(default=1, repr=False)  # bump when the model's semantics change

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(s) for s in self.sensor_size))
        object.__setattr__(self, "path", tuple((float(a), float(b)) for a, b in self.path))
        if len(self.sensor_size) != 2 or min(self.sensor_size) < 1:
            raise ValueError(f"sensor_size must be (H, W) with positive entries, got "
                             f"{self.sensor_size}")
        if len(self.path) < 2:
            raise ValueError(f"path needs at least 2 vertices (dx, dy), got {self.path}")
        if not all(np.isfinite(v) for xy in self.path for v in xy):
            raise ValueError(f"path vertices must be finite, got {self.path}")
        for name in ("saccade_us", "steps_per_saccade"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if int(self.refractory_us) != self.refractory_us or self.refractory_us < 0:
            raise ValueError(f"refractory_us must be a non-negative integer (µs), got "
                             f"{self.refractory_us!r}")
        if not (self.threshold > 0 and np.isfinite(self.threshold)):
            raise ValueError(f"threshold must be > 0 (log-intensity units; 0.1-0.5 is typical "
                             f"of DVS sensors), got {self.threshold!r}")
        if not (self.threshold_sigma >= 0):
            raise ValueError(f"threshold_sigma must be >= 0, got {self.threshold_sigma!r}")
        if not (0 < self.min_threshold <= self.threshold):
            raise ValueError(f"min_threshold must be in (0, threshold={self.threshold}], got "
                             f"{self.min_threshold!r}")
        if not (self.noise_rate_hz >= 0 and np.isfinite(self.noise_rate_hz)):
            raise ValueError(f"noise_rate_hz must be >= 0 (events per pixel per second), got "
                             f"{self.noise_rate_hz!r}")
        if not (self.log_eps > 0):
            raise ValueError(f"log_eps must be > 0, got {self.log_eps!r}")
        if not (0 <= self.background <= 1):
            raise ValueError(f"background must be an intensity in [0, 1], got "
                             f"{self.background!r}")

    @property
    def duration_us(self) -> int:
        """Length of one recording (µs): ``len(path) * saccade_us``."""
        return len(self.path) * int(self.saccade_us)

    def key(self) -> str:
        """A stable hex digest of all settings (same settings -> same key, across runs)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check_image_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` unless an ``h x w`` image fits on the sensor along the path."""
        sh, sw = self.sensor_size
        mx = max(abs(dx) for dx, _ in self.path)
        my = max(abs(dy) for _, dy in self.path)
        if h + 2 * my > sh or w + 2 * mx > sw:
            raise ValueError(
                f"a {h}x{w} image moved up to ({mx}, {my}) pixels does not fit on a sensor of "
                f"{sh}x{sw}; use sensor_size >= ({h + 2 * int(np.ceil(my))}, "
                f"{w + 2 * int(np.ceil(mx))}) or a smaller path")


def saccade_offsets(settings: EmulatorSettings, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Image top-left positions on the sensor along the path.

    Returns ``times`` (float64 µs, ``[S + 1]``) and ``offsets`` (float64 ``[S + 1, 2]`` as
    ``(oy, ox)`` pixels) at the ``S = len(path) * steps_per_saccade`` samples plus the start.
    """
    settings.check_image_size(h, w)
    sh, sw = settings.sensor_size
    cy, cx = (sh - h) / 2, (sw - w) / 2
    verts = np.array(settings.path + (settings.path[0],), dtype=np.float64)  # closed path
    k = settings.steps_per_saccade
    frac = np.arange(k) / k
    pts = [verts[i] + frac[:, None] * (verts[i + 1] - verts[i]) for i in range(len(verts) - 1)]
    pts = np.concatenate(pts + [verts[-1:]])
    times = np.arange(pts.shape[0], dtype=np.float64) * (settings.saccade_us / k)
    offs = np.round(np.stack([cy + pts[:, 1], cx + pts[:, 0]], axis=1), 9)
    return times, np.clip(offs, 0.0, [sh - h, sw - w])


class _Renderer:
    """Bilinear placement of images ``[B, h, w]`` on a ``[B, sh, sw]`` sensor, into buffers."""

    def __init__(self, img: np.ndarray, sh: int, sw: int, background: float) -> None:
        n = img.shape[0]
        self.img, self.background = img, background
        self.canvas = np.empty((n, sh + 1, sw + 1), np.float32)  # one guard row/column
        self.tmp = np.empty((n, sh, sw), np.float32)
        self.placed: tuple[int, int] | None = None

    def __call__(self, oy: float, ox: float, out: np.ndarray) -> np.ndarray:
        """Write the images with top-left at ``(oy, ox)`` (pixels) into ``out [B, sh, sw]``."""
        h, w = self.img.shape[1:]
        iy, ix = int(np.floor(oy)), int(np.floor(ox))
        fy, fx = oy - iy, ox - ix
        c = self.canvas
        if self.placed != (iy, ix):             # re-place only when the integer part moves
            c.fill(self.background)
            c[:, 1 + iy:1 + iy + h, 1 + ix:1 + ix + w] = self.img
            self.placed = (iy, ix)
        np.multiply(c[:, 1:, 1:], np.float32((1 - fy) * (1 - fx)), out=out)
        for use, src, wt in ((fx, c[:, 1:, :-1], (1 - fy) * fx),
                             (fy, c[:, :-1, 1:], fy * (1 - fx)),
                             (fx and fy, c[:, :-1, :-1], fy * fx)):
            if use:
                np.multiply(src, np.float32(wt), out=self.tmp)
                out += self.tmp
        return out


def _pixel_thresholds(settings: EmulatorSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sensor's per-pixel ON and OFF thresholds, float64 ``[H, W]`` each."""
    rng = np.random.default_rng((int(seed), 0x5E5))
    c = np.full((2, *settings.sensor_size), settings.threshold)
    if settings.threshold_sigma > 0:
        c = c + settings.threshold_sigma * rng.standard_normal(c.shape)
    c = np.maximum(c, settings.min_threshold)
    return c[0], c[1]


def _as_float_images(images: np.ndarray) -> np.ndarray:
    """``[N, h, w]`` uint8 0-255 or float in [0, 1] -> float32 in [0, 1] (checked)."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be [N, H, W] grayscale, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    img = images.astype(np.float32)
    if img.size and (np.nanmin(img) < 0 or np.nanmax(img) > 1 or np.isnan(img).any()):
        raise ValueError("float images must lie in [0, 1] (or pass uint8 0-255)")
    return img


def _change_events(img: np.ndarray, s: EmulatorSettings, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contrast-change events of every image along the saccades.

    Returns ``(flat, t, p)``: the flat index ``image * H * W + pixel`` (int64), the time in
    µs (float64, not yet rounded) and the polarity (int8) of each event, unsorted.
    """
    n, h, w = img.shape
    sh, sw = s.sensor_size
    times, offs = saccade_offsets(s, h, w)
    c_on, c_off = (c.astype(np.float32) for c in _pixel_thresholds(s, seed))
    refr = float(s.refractory_us)

    render = _Renderer(img, sh, sw, s.background)
    eps = np.float32(s.log_eps)
    npx = sh * sw
    bufs = [np.empty((n, sh, sw), np.float32) for _ in range(2)]  # L now / L before
    lref = render(*offs[0], bufs[0])
    lref += eps
    np.log(lref, out=lref)
    lref = lref.reshape(-1).copy()
    lprev = bufs[0].reshape(-1)
    lprev[:] = lref
    last = np.full(n * npx, -np.inf)               # time of each pixel's last event (µs)
    c_on_f = c_on.reshape(-1).astype(np.float64)
    c_off_f = c_off.reshape(-1).astype(np.float64)
    c_min = np.minimum(c_on, c_off).reshape(1, -1)
    absd = np.empty((n, npx), np.float32)
    chunks: list[tuple[np.ndarray, ...]] = []      # (flat pixel index, t, p)
    for j in range(1, times.size):
        t0, dt = times[j - 1], times[j] - times[j - 1]
        lcur = render(*offs[j], bufs[j % 2])
        lcur += eps
        np.log(lcur, out=lcur)
        lcur = lcur.reshape(-1)
        np.subtract(lcur.reshape(n, npx), lref.reshape(n, npx), out=absd)
        np.abs(absd, out=absd)
        flat = np.flatnonzero(absd >= c_min)       # pixels that may cross a threshold
        if flat.size:
            pix = flat % npx
            lr = lref[flat].astype(np.float64)
            lp = lprev[flat].astype(np.float64)
            lc = lcur[flat].astype(np.float64)
            on = lc > lr
            sign = np.where(on, 1.0, -1.0)
            cp = np.where(on, c_on_f[pix], c_off_f[pix])
            cnt = np.floor((lc - lr) * sign / cp).astype(np.int64)   # crossings now
            keep = np.flatnonzero(cnt > 0)
            flat, lr, lp, lc, on, sign, cp, cnt = (
                a[keep] for a in (flat, lr, lp, lc, on, sign, cp, cnt))
            # L is linear between samples: crossing k (1-based) of level lr + sign*k*cp
            # happens at fraction (lr + sign*k*cp - lp) / (lc - lp) of the interval.
            slope = (lc - lp) * sign                   # > 0: L moved past L_ref +- C
            base = (lr - lp) * sign
            lst = last[flat]
            pol = on.astype(np.int8)
            for k in range(1, int(cnt.max(initial=0)) + 1):
                sel = np.flatnonzero(cnt >= k) if k > 1 else np.arange(cnt.size)
                frac = np.clip((base[sel] + k * cp[sel]) / slope[sel], 0.0, 1.0)
                tk = t0 + frac * dt
                ok = tk - lst[sel] >= refr
                emit = sel[ok]
                lst[emit] = tk[ok]
                chunks.append((flat[emit], tk[ok], pol[emit]))
            last[flat] = lst
            lref[flat] = (lr + sign * cnt * cp).astype(np.float32)
        lprev = lcur
    if not chunks:
        return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int8)
    return tuple(np.concatenate([c[i] for c in chunks]) for i in range(3))  # type: ignore


def _noise_events(s: EmulatorSettings, seed: int, indices: np.ndarray
                  ) -> tuple[list, list, list, list]:
    """Background-noise events, per image from its own random stream ``(seed, 1, index)``:
    lists of (recording, pixel, time µs, polarity) arrays, one entry per image."""
    sh, sw = s.sensor_size
    dur = s.duration_us
    lam = s.noise_rate_hz * sh * sw * dur * 1e-6
    out: tuple[list, list, list, list] = ([], [], [], [])
    if lam <= 0:
        return out
    for i, idx in enumerate(indices):
        rng = np.random.default_rng((int(seed), 1, int(idx)))
        k = int(rng.poisson(lam))
        out[0].append(np.full(k, i, np.int64))
        out[1].append(rng.integers(0, sh * sw, k))
        out[2].append(rng.integers(0, dur, k))
        out[3].append(rng.integers(0, 2, k).astype(np.int8))
    return out


def emulate_batch(
    images: np.ndarray,
    settings: EmulatorSettings | None = None,
    seed: int = 0,
    indices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``N`` images ``[N, h, w]`` (uint8 0-255, or float in [0, 1]) to events.

    ``indices`` (default ``arange(N)``) names each image for its random stream, so image
    ``indices[i]`` gives the same events whatever batch it is in. Returns ``(events,
    offsets)``: one event array (:data:`~leansnn.data.events.EVENT_DTYPE`) holding all
    recordings one after the other, each sorted by time, and ``offsets`` (int64 ``[N + 1]``):
    image ``i``'s events are ``events[offsets[i]:offsets[i + 1]]``. Timestamps start at 0 µs.
    """
    s = settings or EmulatorSettings()
    img = _as_float_images(images)
    n = img.shape[0]
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.shape != (n,):
        raise ValueError(f"indices must have shape ({n},), got {indices.shape}")
    sh, sw = s.sensor_size
    fl, tt, pp = _change_events(img, s, seed)
    noise = _noise_events(s, seed, indices)
    rec = np.concatenate([fl // (sh * sw), *noise[0]])
    pix = np.concatenate([fl % (sh * sw), *noise[1]])
    t_int = np.concatenate([np.floor(tt).astype(np.int64), *noise[2]])
    pp = np.concatenate([pp, *noise[3]])

    # one int64 key per event: (image, time, pixel, polarity); unique up to identical events,
    # so the order within an image does not depend on the batch
    dur = s.duration_us
    key = ((rec * (dur + 1) + t_int) * (sh * sw) + pix) * 2 + pp
    order = np.argsort(key)
    ev = np.empty(order.size, EVENT_DTYPE)
    ev["x"] = pix[order] % sw
    ev["y"] = pix[order] // sw
    ev["t"] = t_int[order]
    ev["p"] = pp[order]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rec, minlength=n), out=offsets[1:])
    return ev, offsets


def emulate(image: np.ndarray, settings: EmulatorSettings | None = None, seed: int = 0,
            index: int = 0) -> np.ndarray:
    """Events of one image ``[h, w]`` (uint8 or float in [0, 1]) seen along the saccades.

    Returns an event array sorted by time (``t`` in µs from 0 to ``settings.duration_us``).
    Same ``(image, settings, seed, index)`` -> same events.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be [H, W] grayscale, got shape {image.shape}")
    ev, _ = emulate_batch(image[None], settings, seed, np.array([index]))
    return ev
