"""Event arrays and their binning into frames.

An *event array* is a 1-D structured numpy array with the fields (tonic's layout):

==== ========= ===========================================================
x    int16     column, 0 at the left of the sensor (pixels)
y    int16     row, 0 at the top of the sensor (pixels)
t    int64     timestamp (microseconds), non-decreasing within a recording
p    int8      polarity: 1 = ON (brightness went up), 0 = OFF (went down)
==== ========= ===========================================================

:func:`to_frames` turns one such array into ``float32 [T, 2, H, W]`` event counts (channel
0 = OFF, channel 1 = ON), binned either by equal time (each frame covers the same time span:
frames reflect how the scene moves, a quiet period gives empty frames) or by equal event count
(each frame holds the same number of events: every frame is informative, but the time axis is
warped by the event rate). Spatial down-sampling sums ``factor x factor`` blocks (counts are
conserved); cropping keeps a window of the sensor. :func:`frames_from_batch` does the same for
many recordings concatenated in one array (``offsets`` marks where each begins), fully
vectorised; the emulated data set uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "EVENT_DTYPE", "EventError", "make_events", "as_events", "check_events", "to_frames",
    "frames_from_batch",
]

EVENT_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "i1")])
_MAX_SPAN = 2**62  # µs; a wider range of timestamps in one call can only be corrupt data


class EventError(ValueError):
    """An event array is malformed or does not fit the stated sensor."""


def make_events(x, y, t, p) -> np.ndarray:
    """Build an event array from equal-length sequences ``x, y`` (pixels), ``t`` (µs), ``p`` (0/1).

    Values are converted to :data:`EVENT_DTYPE`; nothing is sorted or validated here (see
    :func:`check_events`).
    """
    x, y, t, p = (np.asarray(a).reshape(-1) for a in (x, y, t, p))
    n = x.shape[0]
    if not (y.shape[0] == t.shape[0] == p.shape[0] == n):
        raise EventError(f"x, y, t, p must have the same length, got {x.shape[0]}, {y.shape[0]}, "
                         f"{t.shape[0]}, {p.shape[0]}")
    for f, v in (("x", x), ("y", y), ("t", t), ("p", p)):
        _check_fits(f, v)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def _check_fits(field: str, v: np.ndarray, name: str = "events") -> None:
    """Refuse values that :data:`EVENT_DTYPE` cannot hold: numpy would wrap them silently
    (x = 65541 became x = 5, a uint64 time past 2**63 became negative, p = 256 became 0)."""
    if v.size == 0 or v.dtype.kind == "b":
        return
    info = np.iinfo(EVENT_DTYPE[field])
    if v.dtype.kind == "f":
        finite = np.isfinite(v)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise EventError(f"{name}: {field}={v[i]} at event {i} is not a finite number")
    elif v.dtype.kind not in "iu":
        if v.dtype.kind != "O":
            return  # strings and the like: refused (or converted) by the caller
        try:
            v = np.asarray([int(a) for a in v], dtype=object)
        except (TypeError, ValueError, OverflowError):
            return  # numpy's own conversion error is clear enough
    lo, hi = v.min(), v.max()
    if int(lo) >= info.min and int(hi) <= info.max:
        return
    i = int(np.flatnonzero((v < info.min) | (v > info.max))[0])
    what = {"x": "a column (pixels)", "y": "a row (pixels)", "t": "a time in µs",
            "p": "a polarity (0 or 1)"}[field]
    raise EventError(f"{name}: {field}={v[i]} at event {i} is out of range for {what} "
                     f"({info.dtype}: {info.min}..{info.max}); the data are corrupt or in "
                     "other units")


def as_events(events, ordering: str | None = None, name: str = "events") -> np.ndarray:
    """Any event array as an :data:`EVENT_DTYPE` array sorted by ``t``.

    Accepts a structured array with fields ``x, y, t, p`` in any order and of any numeric
    dtypes (tonic's arrays, e.g. ``[("t", "<i8"), ("x", "<i8"), ...]``; extra fields are
    dropped), or a plain 2-D numeric array ``[N, 4]`` whose columns ``ordering`` names (e.g.
    ``"txyp"``, tonic's ``dataset.ordering``). Polarities ``{-1, 1}`` or booleans become
    ``{0, 1}`` (``p > 0`` is ON). Values must be integers; anything else raises
    :class:`EventError`.
    """
    if isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE:
        ev = events
    else:
        arr = np.asarray(events)
        if arr.dtype.names is not None:
            missing = [f for f in "xytp" if f not in arr.dtype.names]
            if missing:
                raise EventError(f"{name}: missing field(s) {missing}; have "
                                 f"{list(arr.dtype.names)}")
            cols = {f: arr[f] for f in "xytp"}
        elif arr.ndim == 2 and arr.shape[1] == 4:
            if ordering is None or sorted(ordering) != sorted("xytp"):
                raise EventError(f"{name}: a plain [N, 4] array needs ordering= naming its "
                                 f"columns (a permutation of 'xytp', e.g. 'txyp'), got "
                                 f"{ordering!r}")
            cols = {f: arr[:, ordering.index(f)] for f in "xytp"}
        else:
            raise EventError(f"{name}: expected a structured array with fields x, y, t, p or "
                             f"a plain [N, 4] array with ordering=, got {arr.dtype} "
                             f"{arr.shape}")
        for f, v in cols.items():
            if v.dtype.kind == "f":
                if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
                    raise EventError(f"{name}: field {f} holds non-integer values")
            elif v.dtype.kind not in "iub":
                raise EventError(f"{name}: field {f} has dtype {v.dtype}, expected integers")
        p = cols["p"]
        ev = make_events(cols["x"], cols["y"], cols["t"],
                         (p > 0).astype(np.int8) if p.dtype.kind in "ifb" else p)
    if ev.ndim != 1:
        raise EventError(f"{name}: expected a 1-D array of events, got shape {ev.shape}")
    if ev.size > 1 and np.any(ev["t"][1:] < ev["t"][:-1]):  # np.diff can overflow
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def check_events(events: np.ndarray, sensor_size: tuple[int, int] | None = None,
                 sorted_in_time: bool = True, name: str = "events") -> np.ndarray:
    """Validate an event array and return it unchanged.

    Checks: 1-D structured array with at least the fields ``x, y, t, p``; ``p`` in {0, 1};
    ``x, y >= 0`` and, when ``sensor_size = (H, W)`` is given, ``x < W`` and ``y < H``; ``t``
    non-decreasing when ``sorted_in_time``. Raises :class:`EventError` saying which check
    failed and at which event.
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise EventError(f"{name}: expected a structured numpy array with fields x, y, t, p "
                         f"(see leansnn.data.make_events), got {type(events).__name__}")
    missing = [f for f in ("x", "y", "t", "p") if f not in events.dtype.names]
    if missing:
        raise EventError(f"{name}: missing field(s) {missing}; have {list(events.dtype.names)}")
    if events.ndim != 1:
        raise EventError(f"{name}: expected a 1-D array of events, got shape {events.shape}")
    if events.size == 0:
        return events
    p = events["p"]
    bad = np.flatnonzero((p != 0) & (p != 1))
    if bad.size:
        raise EventError(f"{name}: polarity must be 0 (OFF) or 1 (ON); event {bad[0]} has "
                         f"p={p[bad[0]]}")
    for f in ("x", "y"):
        v = events[f]
        bad = np.flatnonzero(v < 0)
        if bad.size:
            raise EventError(f"{name}: negative {f}={v[bad[0]]} at event {bad[0]}")
    if sensor_size is not None:
        h, w = sensor_size
        for f, lim in (("x", w), ("y", h)):
            v = events[f]
            bad = np.flatnonzero(v >= lim)
            if bad.size:
                raise EventError(
                    f"{name}: {f}={v[bad[0]]} at event {bad[0]} is outside the sensor "
                    f"(H, W) = {tuple(sensor_size)}; pass the right sensor_size or crop")
    if sorted_in_time:
        t = events["t"]
        bad = np.flatnonzero(t[1:] < t[:-1])  # not np.diff: it overflows on huge times
        if bad.size:
            i = bad[0] + 1
            raise EventError(f"{name}: timestamps go backwards at event {i} "
                             f"({events['t'][i - 1]} -> {events['t'][i]} µs); sort with "
                             "np.sort(events, order='t', kind='stable')")
    return events


def _spatial(h: int, w: int, downsample: int, crop) -> tuple[int, int, int, int, int, int]:
    """Return (y0, x0, crop_h, crop_w, out_h, out_w) after validating crop and down-sampling."""
    if downsample < 1 or int(downsample) != downsample:
        raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
    if crop is None:
        y0, x0, ch, cw = 0, 0, h, w
    else:
        if len(crop) != 4:
            raise ValueError(f"crop must be (y0, x0, height, width), got {crop!r}")
        y0, x0, ch, cw = (int(c) for c in crop)
        if y0 < 0 or x0 < 0 or ch < 1 or cw < 1 or y0 + ch > h or x0 + cw > w:
            raise ValueError(f"crop {tuple(crop)} (y0, x0, height, width) does not fit in the "
                             f"sensor (H, W) = ({h}, {w})")
    return y0, x0, ch, cw, -(-ch // downsample), -(-cw // downsample)


def _check_frame_args(events: np.ndarray, offsets: Any, T: Any, sensor_size: Any,
                      by: str) -> tuple[np.ndarray, int, int, int]:
    """Validated ``(offsets, T, H, W)`` of :func:`frames_from_batch`."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != events.size \
            or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must be non-decreasing from 0 to len(events)={events.size}, "
                         f"got {offsets[:3]}...{offsets[-3:]} ({offsets.size} values)")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be an integer >= 1 (the number of frames), got {T!r}")
    T = int(T)
    if by not in ("time", "count"):
        raise ValueError(f"by must be 'time' (equal time spans) or 'count' (equal event "
                         f"counts), got {by!r}")
    try:
        h, w = (int(s) for s in sensor_size)
        if any(int(s) != s or isinstance(s, bool) for s in sensor_size):
            raise ValueError
    except (TypeError, ValueError):
        h = w = -1
    if h < 1 or w < 1:
        raise ValueError(f"sensor_size must be (H, W), two integers >= 1, got {sensor_size!r}")
    return offsets, T, h, w


def _time_bins(t: np.ndarray, offsets: np.ndarray, counts: np.ndarray, rec: np.ndarray,
               T: int, duration: int | None, t_start: Any) -> tuple[np.ndarray, np.ndarray]:
    """Frame index of each event when binning by time, and which events fall in a frame."""
    R = counts.size
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        if t_start is not None:
            ts = np.asarray(t_start)
            lo, hi = min(lo, int(ts.min())), max(hi, int(ts.max()))
        if hi - lo >= _MAX_SPAN:
            raise ValueError(f"timestamps (and t_start) span {lo}..{hi} µs, more than 2**62 "
                             "µs (146,000 years): the times are corrupt")
    nonempty = counts > 0
    starts = offsets[:-1]
    if t_start is None:
        t0 = np.zeros(R, np.int64)
        t0[nonempty] = t[starts[nonempty]]
    else:
        t0 = np.broadcast_to(np.asarray(t_start, np.int64), (R,))
    if duration is None:
        last = np.zeros(R, np.int64)
        last[nonempty] = t[offsets[1:][nonempty] - 1]
        span = np.maximum(last - t0 + 1, 1)
    else:
        if duration < 1:
            raise ValueError(f"duration must be >= 1 µs, got {duration}")
        span = np.full(R, int(duration), np.int64)
    rel = t - t0[rec]
    if rel.size and int(np.abs(rel).max()) * T >= 2**63:  # rel * T would overflow
        b = ((rel.astype(object) * T) // span[rec].astype(object)).clip(-1, T)
        b = b.astype(np.int64)
    else:
        b = (rel * T) // span[rec]
    keep = (rel >= 0) & (b < T)
    return b, keep


def frames_from_batch(
    events: np.ndarray,
    offsets: np.ndarray,
    T: int,
    sensor_size: tuple[int, int],
    by: str = "time",
    duration: int | None = None,
    t_start: int | np.ndarray | None = None,
    downsample: int = 1,
    crop: Sequence[int] | None = None,
    binary: bool = False,
    dtype=np.float32,
) -> np.ndarray:
    """Bin ``R`` recordings, concatenated in ``events``, into ``[R, T, 2, H', W']`` frames.

    Recording ``r`` is ``events[offsets[r]:offsets[r + 1]]`` (``offsets``: ``R + 1`` indices)
    and must be sorted in time. See :func:`to_frames` for the other arguments; ``t_start``
    may be one value or one per recording.
    """
    offsets, T, h, w = _check_frame_args(events, offsets, T, sensor_size, by)
    y0, x0, ch, cw, oh, ow = _spatial(h, w, downsample, crop)
    R = offsets.size - 1
    counts = np.diff(offsets)
    rec = np.repeat(np.arange(R, dtype=np.int64), counts)
    x = events["x"].astype(np.int64) - x0
    y = events["y"].astype(np.int64) - y0
    p = events["p"].astype(np.int64)
    t = events["t"].astype(np.int64)
    if by == "time":
        b, keep = _time_bins(t, offsets, counts, rec, T, duration, t_start)
    else:
        rank = np.arange(events.size, dtype=np.int64) - offsets[:-1][rec]
        b = (rank * T) // np.maximum(counts[rec], 1)
        keep = np.ones(events.size, bool)
    keep &= (x >= 0) & (x < cw) & (y >= 0) & (y < ch)
    idx = ((((rec * T + b) * 2 + p) * oh + y // downsample) * ow + x // downsample)[keep]
    out = np.bincount(idx, minlength=R * T * 2 * oh * ow).reshape(R, T, 2, oh, ow)
    if binary:
        np.minimum(out, 1, out=out)
    return out.astype(dtype, copy=False)


def to_frames(
    events: np.ndarray,
    T: int,
    sensor_size: tuple[int, int],
    by: str = "time",
    duration: int | None = None,
    t_start: int | None = None,
    downsample: int = 1,
    crop: Sequence[int] | None = None,
    binary: bool = False,
    ordering: str | None = None,
) -> np.ndarray:
    """Bin one recording into ``float32 [T, 2, H', W']`` event counts (channel 1 = ON).

    ``events``: an :data:`EVENT_DTYPE` array, any structured array with fields x, y, t, p
    (tonic's), or a plain ``[N, 4]`` array with ``ordering`` (see :func:`as_events`).

    - ``sensor_size = (H, W)``: the sensor the events come from (validated).
    - ``by="time"``: frame ``k`` holds events with ``t0 + k·D/T <= t < t0 + (k+1)·D/T``
      (integer arithmetic on µs), where ``t0 = t_start`` (default: the first event's time) and
      ``D = duration`` µs (default: up to and including the last event). Events outside the
      window are dropped. ``by="count"``: frame ``k`` holds events ``k·N/T`` to
      ``(k+1)·N/T - 1`` of the ``N`` events (every event is kept).
    - ``crop = (y0, x0, height, width)``: keep only that window (applied first).
    - ``downsample = f``: sum ``f x f`` pixel blocks, ``H' = ceil(height / f)``.
    - ``binary``: clip counts to 1 (a frame then says *whether* a pixel fired).

    Without cropping, a time window covering all events, and ``binary=False``, the frames
    sum to ``len(events)``.
    """
    if not (isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE):
        events = as_events(events, ordering)
    check_events(events, sensor_size)
    return frames_from_batch(events, np.array([0, events.size]), T, sensor_size, by=by,
                             duration=duration, t_start=t_start, downsample=downsample,
                             crop=crop, binary=binary)[0]
