"""Readers for N-MNIST .bin and AEDAT 3.1 (DVS128 Gesture): round trips and corrupt files.

The tests encode files themselves, bit by bit from the published layouts, independently of
the reader's decoding code.
"""

import struct

import numpy as np
import pytest

from leansnn.data.events import make_events
from leansnn.data.readers import (
    EventFormatError,
    read_aedat31,
    read_dvs_gesture,
    read_dvs_gesture_labels,
    read_nmnist,
)


def _random(n, h, w, seed=0, t_max=300_000):
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n),
                       np.sort(rng.integers(0, t_max, n)), rng.integers(0, 2, n))


# --- N-MNIST ------------------------------------------------------------------------------
def _nmnist_bytes(ev):
    out = bytearray()
    for e in ev:
        word = (int(e["x"]) << 32) | (int(e["y"]) << 24) | (int(e["p"]) << 23) | int(e["t"])
        out += word.to_bytes(5, "big")
    return bytes(out)


def test_nmnist_round_trip(tmp_path):
    ev = _random(500, 34, 34, t_max=2**23)
    f = tmp_path / "00001.bin"
    f.write_bytes(_nmnist_bytes(ev))
    got = read_nmnist(f)
    np.testing.assert_array_equal(got, ev)
    # a hand-made record: x=3, y=7, ON, t=0x012345
    f.write_bytes(bytes([3, 7, 0x80 | 0x01, 0x23, 0x45]))
    e = read_nmnist(f)[0]
    assert (e["x"], e["y"], e["p"], e["t"]) == (3, 7, 1, 0x012345)


def test_nmnist_truncated(tmp_path):
    ev = _random(20, 34, 34)
    f = tmp_path / "a.bin"
    f.write_bytes(_nmnist_bytes(ev)[:-2])
    with pytest.raises(EventFormatError, match=r"a\.bin.*byte offset 95") as ei:
        read_nmnist(f)
    assert ei.value.offset == 95 and ei.value.path == f
    assert isinstance(ei.value, ValueError)


def test_nmnist_bad_address(tmp_path):
    data = bytearray(_nmnist_bytes(_random(10, 34, 34)))
    data[5 * 4] = 200                        # x of event 4
    f = tmp_path / "b.bin"
    f.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match="byte offset 20"):
        read_nmnist(f)
    assert read_nmnist(f, sensor_size=(256, 256))["x"][4] == 200


def test_nmnist_empty(tmp_path):
    f = tmp_path / "e.bin"
    f.write_bytes(b"")
    assert read_nmnist(f).size == 0


# --- AEDAT 3.1 ----------------------------------------------------------------------------
HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 0: DVS128\r\n"
          b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")


def _packet(etype, events_bytes, size, n, cap=None, valid=None, overflow=0, tsoff=4):
    cap = n if cap is None else cap
    valid = n if valid is None else valid
    head = struct.pack("<hhiiiiii", etype, 0, size, tsoff, overflow, cap, n, valid)
    return head + events_bytes


def _polarity_packet(ev, overflow=0, invalid=()):
    body = bytearray()
    for i, e in enumerate(ev):
        data = (int(e["x"]) << 17) | (int(e["y"]) << 2) | (int(e["p"]) << 1)
        data |= 0 if i in invalid else 1
        body += struct.pack("<Ii", data, int(e["t"]) & 0x7FFFFFFF)
    return _packet(1, bytes(body), 8, len(ev), overflow=overflow, valid=len(ev) - len(invalid))


def test_aedat_round_trip(tmp_path):
    ev = _random(300, 128, 128, t_max=5_000_000)
    a, b = ev[:120], ev[120:]
    special = _packet(0, b"\x00" * 16, 8, 2)          # a special-event packet, skipped
    imu = _packet(3, b"\x01" * 40 * 3, 40, 3, tsoff=4)  # an IMU6 packet, skipped
    f = tmp_path / "user01_led.aedat"
    f.write_bytes(HEADER + special + _polarity_packet(a) + imu + _polarity_packet(b))
    np.testing.assert_array_equal(read_aedat31(f), ev)


def test_aedat_overflow_and_valid_mark(tmp_path):
    ev = make_events([1, 2, 3], [4, 5, 6], [10, 20, 30], [1, 0, 1])
    f = tmp_path / "o.aedat"
    f.write_bytes(HEADER + _polarity_packet(ev, overflow=2, invalid=(1,)))
    got = read_aedat31(f)
    assert list(got["x"]) == [1, 3] and list(got["y"]) == [4, 6] and list(got["p"]) == [1, 1]
    assert list(got["t"]) == [(2 << 31) + 10, (2 << 31) + 30]


def test_aedat_truncated_packet(tmp_path):
    ev = _random(50, 128, 128)
    good = HEADER + _polarity_packet(ev[:20]) + _polarity_packet(ev[20:])
    second = len(HEADER) + 28 + 20 * 8
    f = tmp_path / "t.aedat"
    f.write_bytes(good[:-3])
    with pytest.raises(EventFormatError, match=rf"t\.aedat.*byte offset {second}"):
        read_aedat31(f)
    f.write_bytes(good[:second + 10])                  # cut inside a packet header
    with pytest.raises(EventFormatError, match=f"packet header needs 28 bytes.*offset {second}"):
        read_aedat31(f)


def test_aedat_corrupt(tmp_path):
    ev = _random(10, 128, 128)
    f = tmp_path / "c.aedat"
    # impossible header: number > capacity
    f.write_bytes(HEADER + _packet(1, b"\x00" * 80, 8, 10, cap=5))
    with pytest.raises(EventFormatError, match=f"impossible packet header.*offset {len(HEADER)}"):
        read_aedat31(f)
    # address out of the 128x128 sensor, in event 3
    body = bytearray(_polarity_packet(ev))
    struct.pack_into("<I", body, 28 + 3 * 8, (200 << 17) | 1)
    f.write_bytes(HEADER + bytes(body))
    with pytest.raises(EventFormatError, match=f"offset {len(HEADER) + 28 + 24}"):
        read_aedat31(f)
    # no end-of-header line
    f.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n" + _polarity_packet(ev))
    with pytest.raises(EventFormatError, match="END-HEADER"):
        read_aedat31(f)
    f.write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(EventFormatError, match="only 3.1"):
        read_aedat31(f)
    f.write_bytes(b"\x00\x01garbage")
    with pytest.raises(EventFormatError, match="not an AEDAT file"):
        read_aedat31(f)


def test_dvs_gesture_split_by_labels(tmp_path):
    ev = make_events(np.arange(10) % 128, np.arange(10), [5, 10, 15, 20, 25, 30, 35, 40, 45, 50],
                     np.arange(10) % 2)
    f = tmp_path / "user02_fluorescent.aedat"
    f.write_bytes(HEADER + _polarity_packet(ev))
    (tmp_path / "user02_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\r\n1,10,25\r\n11,30,51\r\n")
    out = read_dvs_gesture(f)
    assert [lab for _, lab in out] == [0, 10]
    g0, g1 = out[0][0], out[1][0]
    assert list(g0["t"]) == [0, 5, 10] and list(g0["y"]) == [1, 2, 3]
    assert list(g1["t"]) == [0, 5, 10, 15, 20] and list(g1["y"]) == [5, 6, 7, 8, 9]


def test_dvs_gesture_bad_labels(tmp_path):
    f = tmp_path / "x_labels.csv"
    f.write_text("class,startTime_usec,endTime_usec\n1,10,25\n3,40\n")
    with pytest.raises(EventFormatError, match=r"x_labels\.csv.*line 3.*byte offset 42"):
        read_dvs_gesture_labels(f)
    f.write_text("class,startTime_usec,endTime_usec\n12,10,25\n")
    with pytest.raises(EventFormatError, match="class 12"):
        read_dvs_gesture_labels(f)
    f.write_text("a,b,c\n")
    with pytest.raises(EventFormatError, match="header"):
        read_dvs_gesture_labels(f)
    f.write_text("class,startTime_usec,endTime_usec\n4,7,9\n")
    np.testing.assert_array_equal(read_dvs_gesture_labels(f), [[4, 7, 9]])
