"""Event arrays: construction, validation and binning into frames."""

import numpy as np
import pytest

from leansnn.data.events import (
    EVENT_DTYPE,
    EventError,
    check_events,
    frames_from_batch,
    make_events,
    to_frames,
)


def _random_events(n=1000, h=20, w=30, dur=50_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, dur, n))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n))


def test_make_events_layout():
    ev = make_events([1, 2], [3, 4], [10, 20], [0, 1])
    assert ev.dtype == EVENT_DTYPE
    assert ev.dtype.names == ("x", "y", "t", "p")
    assert ev["t"].dtype == np.int64
    assert list(ev["x"]) == [1, 2] and list(ev["p"]) == [0, 1]
    with pytest.raises(EventError, match="same length"):
        make_events([1], [1, 2], [0], [0])


@pytest.mark.parametrize("bad, msg", [
    (dict(p=[0, 2]), "polarity"),
    (dict(x=[-1, 0]), "negative x"),
    (dict(y=[0, 20]), "outside the sensor"),
    (dict(t=[5, 4]), "backwards at event 1"),
])
def test_check_events_rejects(bad, msg):
    f = dict(x=[0, 1], y=[0, 1], t=[0, 1], p=[0, 1])
    f.update(bad)
    ev = make_events(f["x"], f["y"], f["t"], f["p"])
    with pytest.raises(EventError, match=msg):
        check_events(ev, (20, 30))


def test_check_events_not_structured():
    with pytest.raises(EventError, match="structured"):
        check_events(np.zeros(3))


@pytest.mark.parametrize("by", ["time", "count"])
def test_frames_conserve_counts(by):
    ev = _random_events()
    fr = to_frames(ev, T=7, sensor_size=(20, 30), by=by)
    assert fr.shape == (7, 2, 20, 30) and fr.dtype == np.float32
    assert fr.sum() == len(ev)
    assert fr[:, 1].sum() == (ev["p"] == 1).sum()
    # per-pixel totals equal the event histogram
    hist = np.zeros((2, 20, 30))
    np.add.at(hist, (ev["p"], ev["y"], ev["x"]), 1)
    np.testing.assert_array_equal(fr.sum(0), hist)


def test_count_binning_equal_counts():
    ev = _random_events(n=800)
    fr = to_frames(ev, T=8, sensor_size=(20, 30), by="count")
    np.testing.assert_array_equal(fr.sum((1, 2, 3)), np.full(8, 100))


def test_time_binning_boundaries():
    # duration 100 µs, T=4: bins [0,25), [25,50), [50,75), [75,100); 100 is outside
    ev = make_events([0] * 6, [0] * 6, [0, 24, 25, 74, 99, 100], [1] * 6)
    fr = to_frames(ev, T=4, sensor_size=(1, 1), duration=100, t_start=0)
    np.testing.assert_array_equal(fr[:, 1, 0, 0], [2, 1, 1, 1])
    # default window covers every event
    assert to_frames(ev, T=4, sensor_size=(1, 1)).sum() == 6


def test_downsample_and_crop():
    ev = _random_events()
    fr = to_frames(ev, T=3, sensor_size=(20, 30), downsample=4)
    assert fr.shape == (3, 2, 5, 8)          # ceil(20/4), ceil(30/4)
    assert fr.sum() == len(ev)
    full = to_frames(ev, T=3, sensor_size=(20, 30))
    np.testing.assert_array_equal(fr[:, :, 1, 2], full[:, :, 4:8, 8:12].sum((-1, -2)))
    cr = to_frames(ev, T=3, sensor_size=(20, 30), crop=(2, 5, 10, 12))
    np.testing.assert_array_equal(cr, full[:, :, 2:12, 5:17])
    with pytest.raises(ValueError, match="does not fit"):
        to_frames(ev, T=3, sensor_size=(20, 30), crop=(15, 0, 10, 10))


def test_binary_clips():
    ev = make_events([1, 1, 1], [0, 0, 0], [0, 1, 2], [1, 1, 0])
    fr = to_frames(ev, T=1, sensor_size=(2, 2), binary=True)
    assert fr.max() == 1 and fr.sum() == 2


def test_batch_equals_single():
    evs = [_random_events(n, seed=i) for i, n in enumerate([50, 0, 300, 7])]
    cat = np.concatenate(evs)
    off = np.cumsum([0] + [len(e) for e in evs])
    for by in ("time", "count"):
        fb = frames_from_batch(cat, off, 5, (20, 30), by=by, downsample=2)
        for i, e in enumerate(evs):
            np.testing.assert_array_equal(fb[i], to_frames(e, 5, (20, 30), by=by, downsample=2))


def test_bad_arguments():
    ev = _random_events(10)
    with pytest.raises(ValueError, match="by must be"):
        to_frames(ev, 2, (20, 30), by="rate")
    with pytest.raises(ValueError, match="downsample"):
        to_frames(ev, 2, (20, 30), downsample=0)
    with pytest.raises(ValueError, match="T must be"):
        to_frames(ev, 0, (20, 30))
