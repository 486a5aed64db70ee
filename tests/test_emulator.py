"""The event-camera emulator: determinism, physics sanity, noise, refractory period."""

import dataclasses

import numpy as np
import pytest

from leansnn.data.emulator import EmulatorSettings, emulate, emulate_batch, saccade_offsets
from leansnn.data.events import check_events, frames_from_batch

QUIET = dict(noise_rate_hz=0.0)


def _images(n=6, seed=0):
    """Blocky random 28x28 uint8 images with strong edges."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 7, 7)).astype(np.uint8)
    return np.kron(small, np.ones((4, 4), np.uint8))


def _square():
    img = np.zeros((28, 28), np.uint8)
    img[8:20, 8:20] = 255
    return img


def test_events_valid_sorted_and_in_window():
    s = EmulatorSettings()
    ev = emulate(_square(), s, seed=1)
    check_events(ev, s.sensor_size)          # in the sensor, p in {0,1}, sorted in time
    assert len(ev) > 100
    assert ev["t"].min() >= 0 and ev["t"].max() <= s.duration_us
    assert 0.3 < ev["p"].mean() < 0.7        # the path is closed: ON and OFF balance


def test_deterministic_for_seed_and_batch_independent():
    imgs = _images()
    s = EmulatorSettings(noise_rate_hz=5.0)
    ev1, off1 = emulate_batch(imgs, s, seed=3)
    ev2, off2 = emulate_batch(imgs, s, seed=3)
    np.testing.assert_array_equal(ev1, ev2)
    np.testing.assert_array_equal(off1, off2)
    ev3, _ = emulate_batch(imgs, s, seed=4)
    assert len(ev3) != len(ev1) or not np.array_equal(ev3, ev1)
    # image 4 alone (with its index) gives the same events as inside the batch
    alone = emulate(imgs[4], s, seed=3, index=4)
    np.testing.assert_array_equal(alone, ev1[off1[4]:off1[5]])


def test_moving_edge_polarity():
    # a bright square moves right then back left: leading edge ON, trailing edge OFF
    s = EmulatorSettings(path=((-1.0, 0.0), (1.0, 0.0)), threshold_sigma=0.0, **QUIET)
    ev = emulate(_square(), s)
    first = ev[ev["t"] < s.saccade_us]
    # the square spans sensor columns 11..22 when centred; it moves from 10..21 to 12..23
    on_x = first["x"][first["p"] == 1]
    off_x = first["x"][first["p"] == 0]
    assert on_x.min() >= 20 and off_x.max() <= 13
    second = ev[ev["t"] > s.saccade_us]
    assert second["x"][second["p"] == 1].max() <= 13
    # a log step of log(1.1/0.1) = 2.40 crossed fully by the edge pixels gives 9 events
    # at threshold 0.25 in each of the 12 rows of columns 22 and 23
    col = first[(first["x"] == 22) & (first["p"] == 1)]
    per_pixel = np.bincount(col["y"], minlength=34)[11:23]
    assert np.all(per_pixel == int(np.log(1.1 / 0.1) / 0.25))


def test_event_count_grows_with_sensitivity():
    imgs = _images(3)
    counts = [len(emulate_batch(imgs, EmulatorSettings(threshold=c, **QUIET))[0])
              for c in (0.6, 0.3, 0.15)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] > 2.5 * counts[0]


def _same_pixel_gaps(ev, off):
    rec = np.repeat(np.arange(len(off) - 1), np.diff(off))
    pix = (rec * 34 + ev["y"]) * 34 + ev["x"]
    order = np.lexsort((ev["t"], pix))
    return np.diff(ev["t"][order])[np.diff(pix[order]) == 0]


def test_refractory_period_respected():
    imgs = _images(4)
    refr = 5_000
    s = EmulatorSettings(refractory_us=refr, threshold=0.1, **QUIET)
    ev, off = emulate_batch(imgs, s)
    free, free_off = emulate_batch(imgs, dataclasses.replace(s, refractory_us=0))
    assert len(ev) < len(free)               # the dead time removes events
    gaps = _same_pixel_gaps(ev, off)
    assert gaps.size > 100 and gaps.min() >= refr
    assert _same_pixel_gaps(free, free_off).min() < refr


def test_noise_rate_statistics():
    blank = np.zeros((20, 28, 28), np.uint8)  # nothing moves: every event is noise
    rate = 20.0
    s = EmulatorSettings(noise_rate_hz=rate)
    ev, off = emulate_batch(blank, s, seed=0)
    expected = rate * 34 * 34 * s.duration_us * 1e-6 * 20
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
    assert abs(ev["p"].mean() - 0.5) < 0.02
    # uniform in time and space
    fr = frames_from_batch(ev, off, T=3, sensor_size=(34, 34), duration=s.duration_us,
                           t_start=0)
    per_bin = fr.sum((0, 2, 3, 4))
    assert np.all(np.abs(per_bin - expected / 3) < 5 * np.sqrt(expected / 3))
    assert abs(ev["x"].mean() - 16.5) < 0.5 and abs(ev["y"].mean() - 16.5) < 0.5
    assert len(emulate_batch(blank, EmulatorSettings(noise_rate_hz=0.0))[0]) == 0


def test_noise_adds_to_signal():
    img = _square()
    quiet = emulate(img, EmulatorSettings(**QUIET))
    noisy = emulate(img, EmulatorSettings(noise_rate_hz=50.0))
    extra = len(noisy) - len(quiet)
    assert abs(extra - 50.0 * 34 * 34 * 0.3) < 5 * np.sqrt(50.0 * 34 * 34 * 0.3)


def test_float_and_uint8_images_agree():
    img = _images(1)[0]
    np.testing.assert_array_equal(emulate(img), emulate(img.astype(np.float64) / 255.0))


def test_path_and_duration():
    s = EmulatorSettings(path=((0, 0), (2, 0), (2, 2), (0, 2)), saccade_us=50_000,
                         steps_per_saccade=10, sensor_size=(32, 32))
    times, offs = saccade_offsets(s, 28, 28)
    assert s.duration_us == 200_000 and times[-1] == 200_000 and len(times) == 41
    np.testing.assert_allclose(offs[0], offs[-1])          # closed path
    np.testing.assert_allclose(offs[10], [2.0, 4.0])       # (oy, ox) = centre + (0, 2)
    ev = emulate(_square(), s)
    assert ev["t"].max() <= 200_000 and ev["x"].max() < 32


def test_settings_validation_and_key():
    s = EmulatorSettings()
    assert s.key() == EmulatorSettings().key()
    assert s.key() != EmulatorSettings(noise_rate_hz=2.0).key()
    assert s.key() != EmulatorSettings(path=((0, 0), (1, 1))).key()
    assert EmulatorSettings(path=[[0, 0], [1, 1]]) == EmulatorSettings(path=((0, 0), (1, 1)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threshold = 0.1
    for bad in (dict(threshold=0), dict(threshold_sigma=-1), dict(noise_rate_hz=-1),
                dict(refractory_us=-5), dict(path=((0, 0),)), dict(saccade_us=0),
                dict(sensor_size=(0, 34)), dict(steps_per_saccade=1.5)):
        with pytest.raises(ValueError):
            EmulatorSettings(**bad)
    with pytest.raises(ValueError, match="does not fit"):
        emulate(np.zeros((33, 33), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        emulate(np.full((28, 28), 2.0))
