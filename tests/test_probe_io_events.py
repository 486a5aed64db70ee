"""Event readers and event arrays under unusual input: N-MNIST overflow markers, recordings
whose first bytes look like another format, values that do not fit the event dtype, huge
timestamps and bad binning arguments."""

import struct

import numpy as np
import pytest

from leansnn.data.events import EventError, as_events, check_events, make_events, to_frames
from leansnn.data.readers import EventFormatError, read_nmnist


def _record(x, y, p, t):
    return bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])


# --- N-MNIST / N-Caltech101 .bin ----------------------------------------------------------

@pytest.mark.parametrize("sensor", [(34, 34), (180, 240)])
@pytest.mark.parametrize("where", [0, 1, 3])
def test_nmnist_overflow_marker_is_not_an_event(tmp_path, sensor, where):
    """A y=240 record marks a timestamp overflow (the data sets' own reader adds 2**13 µs to
    every later time); it was refused as an address outside the sensor."""
    events = [(1, 2, 1, 100), (3, 4, 0, 200), (5, 6, 1, 300)]
    recs = [_record(*e) for e in events]
    recs.insert(where, _record(0, 240, 0, 0))
    f = tmp_path / "a.bin"
    f.write_bytes(b"".join(recs))
    ev = read_nmnist(f, sensor)
    assert ev.size == 3 and 240 not in ev["y"].tolist()
    shift = [2**13 if i >= where else 0 for i in range(3)]
    assert ev["t"].tolist() == sorted(e[3] + s for e, s in zip(events, shift))
    assert ev["x"].tolist()[-1] == 5


@pytest.mark.parametrize("head", [b"\x1f\x8b", b"PK\x03\x04", b"\x89PNG"])
def test_ncaltech_recording_starting_like_another_format(tmp_path, head):
    """A genuine 180x240 recording whose first event reads 1f 8b ... (x=31, y=139) was
    refused as 'a gzip archive file'; the format is named only for files that fail to
    decode."""
    data = bytearray(head + bytes(5 * 4 - len(head)))
    data[2] &= 0x7F  # keep the first time small
    for i in range(1, 4):
        data[5 * i:5 * i + 5] = _record(10 + i, 20, 1, 300_000)
    f = tmp_path / "image_0001.bin"
    f.write_bytes(bytes(data))
    ev = read_nmnist(f, (180, 240))
    assert ev.size == 4 and (head[0], head[1]) in list(zip(ev["x"].tolist(), ev["y"].tolist()))
    if len(head) <= 5:  # the magic survives the first record
        with pytest.raises(EventFormatError, match="not an N-MNIST"):
            read_nmnist(f, (34, 34))  # fails to decode on the small sensor: format named


# --- values that do not fit EVENT_DTYPE ---------------------------------------------------

def _struct(x, y, t, p, dt=("<i4", "<i4", "<i8", "<i4")):
    a = np.zeros(len(x), dtype=[("x", dt[0]), ("y", dt[1]), ("t", dt[2]), ("p", dt[3])])
    a["x"], a["y"], a["t"], a["p"] = x, y, t, p
    return a


@pytest.mark.parametrize("make, field", [
    (lambda: make_events([1, 65536 + 5], [0, 0], [0, 1], [1, 1]), "x"),   # wrapped to x=5
    (lambda: make_events([1, 2], [0, 65536 + 3], [0, 1], [1, 1]), "y"),
    (lambda: make_events([1, 2], [0, 0], [0, 1], [1, 256]), "p"),          # wrapped to OFF
    (lambda: make_events([1, 2], [0, 0], np.array([1, 2**63 + 5], np.uint64), [1, 1]), "t"),
    (lambda: make_events([1, 2], [0, 0], [0.0, 1e30], [1, 1]), "t"),
    (lambda: as_events(_struct([1, 65536 + 5], [0, 0], [0, 1], [1, 1])), "x"),
    (lambda: as_events(_struct([1, 2], [0, 0], [1, 2**63 + 5], [1, 1],
                               ("<i4", "<i4", "<u8", "<i4"))), "t"),
    (lambda: as_events(np.array([[0, 1, 1, 1], [1e19, 2, 1, 1]]), "txyp"), "t"),
    (lambda: to_frames(_struct([1, 70000], [0, 0], [0, 1], [1, 1]), 1, (4, 8)), "x"),
])
def test_values_that_would_wrap_are_refused(make, field):
    with pytest.raises(EventError, match=rf"{field}=\S+ at event 1 is out of range"):
        make()


# --- huge timestamps ----------------------------------------------------------------------

@pytest.mark.parametrize("span", [2**40, 2**59, 2**61, 2**62 - 2])
def test_huge_time_spans_bin_exactly(span):
    """(t - t0) * T overflowed int64: the last event landed in frame 0."""
    ev = make_events([0, 1, 1], [0, 0, 1], [0, span // 2, span], [1, 1, 0])
    T = 8
    fr = to_frames(ev, T, (2, 2))
    assert fr.sum() == 3
    assert fr[0, 1, 0, 0] == 1 and fr[T - 1, 0, 1, 1] == 1
    assert fr[(span // 2) * T // (span + 1), 1, 0, 1] == 1


@pytest.mark.parametrize("t", [[-2**62, 2**62], [0, 2**62], [-2**63, 2**63 - 1]])
def test_absurd_time_spans_are_named(t):
    """np.diff overflowed: sorted times were reported as 'going backwards'."""
    ev = make_events([0, 1], [0, 0], t, [1, 1])
    check_events(ev)  # sorted: no complaint
    assert as_events(ev)["t"].tolist() == t
    with pytest.raises(ValueError, match="span .* corrupt"):
        to_frames(ev, 2, (2, 2))


@pytest.mark.parametrize("kw, match", [
    (dict(T=2.5), "T must be an integer"),
    (dict(T=True), "T must be an integer"),
    (dict(T="4"), "T must be an integer"),
    (dict(sensor_size=(-1, 3)), "sensor_size"),
    (dict(sensor_size=(0, 4)), "sensor_size"),
    (dict(sensor_size=(4.5, 4)), "sensor_size"),
])
def test_bad_binning_arguments_are_named(kw, match):
    ev = make_events([], [], [], [])
    args = dict(T=2, sensor_size=(4, 4)) | kw
    with pytest.raises(ValueError, match=match):
        to_frames(ev, args["T"], args["sensor_size"])


# --- event folders: a stray timestamp with fixed-duration frames --------------------------

def _aedat2(events) -> bytes:
    out = bytearray(b"#!AER-DAT2.0\r\n")
    for x, y, t in events:  # DVS128 address: y_raw << 8 | x_raw << 1 | OFF bit
        out += struct.pack(">II", ((127 - x) << 8) | ((127 - y) << 1), t)
    return bytes(out)


def _cifar_root(tmp_path, stray_t):
    from leansnn.data.event_folders import CIFAR10_DVS_CLASSES

    root = tmp_path / "CIFAR10DVS"
    for c in CIFAR10_DVS_CLASSES:
        (root / c).mkdir(parents=True)
        (root / c / "a_1.aedat").write_bytes(_aedat2([(1, 2, 10), (3, 4, 900)]))
    (root / "cat" / "a_2.aedat").write_bytes(_aedat2([(1, 2, 10), (3, 4, stray_t)]))
    return root


@pytest.mark.parametrize("stray_t, dt_ms", [(2**32 - 1, 1.0), (2**31, 0.5), (600_000_000, 0.01)])
def test_stray_timestamp_with_dt_ms_names_the_file(tmp_path, stray_t, dt_ms):
    """A file whose span is hours long asked for tens of GiB of frames (MemoryError, or the
    OOM killer) instead of naming the file."""
    from leansnn.data import DataError
    from leansnn.data.event_folders import cifar10_dvs

    root = _cifar_root(tmp_path, stray_t)
    with pytest.raises(DataError, match=r"a_2\.aedat: the sample spans .* corrupt"):
        cifar10_dvs("all", root, T=2, dt_ms=dt_ms, use_cache=False, progress=False)
    with pytest.warns(UserWarning, match=r"skipped 1 bad file.*a_2\.aedat"):
        ds = cifar10_dvs("all", root, T=2, dt_ms=dt_ms, use_cache=False, progress=False,
                         skip_bad_files=True)
    assert len(ds) == 10


# --- DVS128 Gesture labels ----------------------------------------------------------------

_HEAD = b"class,startTime_usec,endTime_usec"


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf" + _HEAD + b"\r\n3,10,20\r\n",   # saved by a spreadsheet: UTF-8 BOM
    b"\n" + _HEAD + b"\n3,10,20\n",                  # a blank line first
    b"\r\n\r\n" + _HEAD + b"\r\n3,10,20\r\n\r\n",
    b"\xef\xbb\xbf\n" + _HEAD + b"\n3, 10, 20\n",
])
def test_labels_with_bom_or_leading_blank_lines(tmp_path, data):
    from leansnn.data.readers import read_dvs_gesture_labels

    f = tmp_path / "user01_led_labels.csv"
    f.write_bytes(data)
    assert read_dvs_gesture_labels(f).tolist() == [[3, 10, 20]]


@pytest.mark.parametrize("row", [b"1,0,100000000000000000000", b"1,0,9223372036854775808",
                                 b"1,-99999999999999999999,5"])
def test_labels_times_past_int64_name_the_line(tmp_path, row):
    """A time past int64 crashed with 'OverflowError: Python int too large to convert to C
    long' naming neither the file nor the line."""
    from leansnn.data.readers import read_dvs_gesture_labels

    f = tmp_path / "u_labels.csv"
    f.write_bytes(_HEAD + b"\n2,0,5\n" + row + b"\n")
    with pytest.raises(EventFormatError, match=r"u_labels\.csv: line 3.*byte offset 40"):
        read_dvs_gesture_labels(f)
