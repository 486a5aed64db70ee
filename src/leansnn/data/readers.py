"""Readers for two real event-camera formats, returning :mod:`leansnn.data.events` arrays.

**N-MNIST** ``.bin`` (one file per sample; Orchard et al. 2015). Layout as documented on the
data set's page (https://www.garrickorchard.com/datasets/n-mnist): each event is 40 bits,
big-endian,

- bits 39-32: x address (pixels), bits 31-24: y address,
- bit 23: polarity (0 = OFF, 1 = ON), bits 22-0: timestamp (µs).

The ATIS sensor crop is 34x34 pixels.

**AEDAT 3.1**, as recorded for DVS128 Gesture (Amir et al., CVPR 2017). Layout from iniVation's
format description (https://docs.inivation.com/software/software-advanced-usage/file-formats/
aedat-3.1.html) and libcaer's headers ``include/libcaer/events/common.h`` and ``polarity.h``
(https://docs.ros.org/en/jazzy/p/libcaer/): all integers little-endian;

- text header lines starting with ``#`` and ending in CRLF; the first is ``#!AER-DAT3.1``,
  the last ``#!END-HEADER``;
- then packets, each a 28-byte header ``int16 eventType, int16 eventSource, int32 eventSize,
  int32 eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber,
  int32 eventValid`` followed by ``eventCapacity * eventSize`` bytes of events;
- polarity events (``eventType == 1``) are 8 bytes: ``uint32 data`` (bit 0: valid mark,
  bit 1: polarity, 1 = ON; bits 2-16: y; bits 17-31: x; origin at the top left) and
  ``int32 timestamp`` (µs); the full time is ``eventTSOverflow << 31 | timestamp``.

Other packet types (special events, frames, IMU) are skipped; invalid events (valid mark 0)
are dropped.

**AEDAT 2.0** (jAER), as distributed for CIFAR10-DVS (Li et al. 2017, recorded with a DVS128):
text header lines starting with ``#`` (the first ``#!AER-DAT2.0``), then 8-byte records of two
*big-endian* ``uint32``: the address and the timestamp (µs). DVS128 address bits: bit 0 the
polarity (jAER: 1 = OFF), bits 1-7 the column ``x_raw``, bits 8-14 the row ``y_raw``, bit 15
marks an external (special) event, which carries no pixel and is dropped. The pixel grid is
stored mirrored and transposed with respect to the displayed image; leansnn returns
``x = 127 - y_raw``, ``y = 127 - x_raw``, ``p = 1 - bit0`` (ON = 1), the orientation in which
the CIFAR-10 picture appears upright (the convention of SpikingJelly and tonic's original
reader; see https://github.com/jackd/events-tfds/pull/1). Layout read from jAER's
``AEFileInputStream`` / ``DVS128`` documentation and cross-checked against those readers.

DVS128 Gesture ships a ``<name>_labels.csv`` next to each ``<name>.aedat`` with
the header ``class,startTime_usec,endTime_usec`` and one row per gesture (classes 1-11).

Truncated or corrupt files raise :class:`EventFormatError` (a ``ValueError``) naming the file
and the byte offset where reading failed.
"""

from __future__ import annotations

import codecs
import os
import struct
from pathlib import Path

import numpy as np

from .errors import DataError, FileFormatError
from .events import EVENT_DTYPE

__all__ = [
    "EventFormatError", "read_nmnist", "read_aedat31", "read_aedat2", "sniff_format",
    "read_dvs_gesture_labels",
    "read_dvs_gesture", "NMNIST_SENSOR", "DVS128_SENSOR", "DVS_GESTURE_CLASSES",
]

NMNIST_SENSOR = (34, 34)
DVS128_SENSOR = (128, 128)
DVS_GESTURE_CLASSES = (
    "hand clap", "right hand wave", "left hand wave", "right arm clockwise",
    "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise",
    "arm roll", "air drums", "air guitar", "other gestures",
)
_PACKET_HEADER = struct.Struct("<hhiiiiii")
POLARITY_EVENT = 1
_NMNIST_OVERFLOW_Y = 240  # a .bin record with this y marks a timestamp overflow
_NMNIST_OVERFLOW_STEP = 2**13  # µs added to every later timestamp (the data sets' reader)


class EventFormatError(FileFormatError):
    """An event file is truncated, corrupt or in another format; ``path`` and ``offset``
    (bytes) say where."""


def _sorted_by_time(ev: np.ndarray) -> np.ndarray:
    if ev.size > 1 and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


_MAGICS = ((b"#!AER-DAT4", "AEDAT 4"), (b"#!AER-DAT3", "AEDAT 3"), (b"#!AER-DAT2", "AEDAT 2"),
           (b"#!AER-DAT1", "AEDAT 1"), (b"#!AER-DAT", "AEDAT"), (b"\x93NUMPY", "numpy .npy"),
           (b"PK\x03\x04", "zip archive"), (b"\x1f\x8b", "gzip archive"),
           (b"%PDF", "PDF"), (b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"))


def sniff_format(data: bytes) -> str | None:
    """Name of a recognisable file format from the first bytes (AEDAT versions, archives,
    images), or ``None``."""
    for magic, name in _MAGICS:
        if data.startswith(magic):
            return name
    return None


def read_nmnist(path: str | os.PathLike,
                sensor_size: tuple[int, int] = NMNIST_SENSOR) -> np.ndarray:
    """Read one N-MNIST ``.bin`` sample into an event array (sorted by ``t``, µs).

    ``sensor_size = (H, W)`` bounds the addresses (34x34 for N-MNIST); an address outside it
    means the file is corrupt. A record with ``y == 240`` is a timestamp-overflow marker, not
    an event (the ATIS convention of the data sets' own reader, Orchard's ``Read_Ndataset``
    / ``eventvision.py``, followed by tonic): it is dropped and every later timestamp grows
    by ``2**13``. Raises :class:`EventFormatError` on a truncated file (size not a multiple
    of 5 bytes) or a bad record, with the record's byte offset.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None

    def refuse(offset: int, why: str) -> EventFormatError:
        # name a recognisable other format only once the bytes fail as a recording: a
        # genuine recording may start with the same bytes (gzip's 1f 8b is x=31, y=139)
        kind = sniff_format(data[:16])
        if kind is not None:
            return EventFormatError(path, 0, f"this is a {kind} file, not an N-MNIST/"
                                    f"N-Caltech101 binary (.bin) recording ({why})")
        return EventFormatError(path, offset, why)

    n, rest = divmod(len(data), 5)
    if rest:
        raise refuse(5 * n, f"last record is {rest} of 5 bytes")
    raw = np.frombuffer(data, np.uint8).reshape(n, 5).astype(np.int64)
    x, y = raw[:, 0], raw[:, 1]
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == _NMNIST_OVERFLOW_Y
    if overflow.any():
        t = t + np.cumsum(overflow) * _NMNIST_OVERFLOW_STEP
    keep = np.flatnonzero(~overflow)
    h, w = sensor_size
    bad = keep[(x[keep] >= w) | (y[keep] >= h)]
    if bad.size:
        i = int(bad[0])
        raise refuse(5 * i, f"event {i} has address x={x[i]}, y={y[i]} outside the {h}x{w} "
                     "sensor")
    ev = np.empty(keep.size, EVENT_DTYPE)
    ev["x"], ev["y"] = x[keep], y[keep]
    ev["p"] = raw[keep, 2] >> 7
    ev["t"] = t[keep]
    return _sorted_by_time(ev)


def _aedat_header_end(path: Path, data: bytes) -> int:
    """Offset of the first packet after the ``#`` header lines of an AEDAT 3.1 file."""
    nl = data.find(b"\n", 0, 256)
    first = data[:nl] if nl >= 0 else data[:64]
    if not first.startswith(b"#!AER-DAT"):
        raise EventFormatError(path, 0, "no '#!AER-DAT' version line; not an AEDAT file")
    version = first[len(b"#!AER-DAT"):].strip().decode("ascii", "replace")
    if version != "3.1":
        raise EventFormatError(path, 0, f"AEDAT version {version!r}; only 3.1 is supported")
    pos = 0
    while True:
        if pos >= len(data) or data[pos:pos + 1] != b"#":
            raise EventFormatError(path, pos, "header ends without a '#!END-HEADER' line")
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise EventFormatError(path, pos, "header line without an end of line")
        line, pos = data[pos:nl + 1].rstrip(b"\r\n"), nl + 1
        if line == b"#!END-HEADER":
            return pos


def read_aedat31(path: str | os.PathLike,
                 sensor_size: tuple[int, int] = DVS128_SENSOR) -> np.ndarray:
    """All valid polarity events of an AEDAT 3.1 file, as one event array.

    Timestamps are the full 64-bit µs times of the recording (``tsOverflow << 31 | ts``),
    sorted. ``sensor_size = (H, W)`` bounds the addresses (128x128 for the DVS128). Raises
    :class:`EventFormatError` with the byte offset on a bad header, a truncated or corrupt
    packet, or an out-of-range address.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    pos = _aedat_header_end(path, data)
    h, w = sensor_size
    parts: list[np.ndarray] = []
    while pos < len(data):
        if pos + _PACKET_HEADER.size > len(data):
            raise EventFormatError(path, pos, f"packet header needs {_PACKET_HEADER.size} bytes, "
                                   f"only {len(data) - pos} left")
        etype, _src, esize, tsoff, tsovf, cap, num, valid = _PACKET_HEADER.unpack_from(data, pos)
        if (esize < 1 or cap < 0 or not 0 <= num <= cap or not 0 <= valid <= num
                or not 0 <= tsoff <= esize - 4 or tsovf < 0 or etype < 0):
            raise EventFormatError(
                path, pos, f"impossible packet header (type={etype}, size={esize}, "
                f"tsOffset={tsoff}, tsOverflow={tsovf}, capacity={cap}, number={num}, "
                f"valid={valid})")
        body = pos + _PACKET_HEADER.size
        end = body + cap * esize
        if end > len(data):
            raise EventFormatError(path, pos, f"packet of {cap} events x {esize} bytes runs "
                                   f"{end - len(data)} bytes past the end of the file")
        if etype == POLARITY_EVENT:
            if esize != 8 or tsoff != 4:
                raise EventFormatError(path, pos, f"polarity packet with event size {esize} "
                                       f"and timestamp offset {tsoff} (expected 8 and 4)")
            rec = np.frombuffer(data, dtype=np.dtype([("d", "<u4"), ("t", "<i4")]), count=num,
                                offset=body)
            d = rec["d"].astype(np.int64)
            keep = np.flatnonzero(d & 1)
            d = d[keep]
            x, y = (d >> 17) & 0x7FFF, (d >> 2) & 0x7FFF
            bad = np.flatnonzero((x >= w) | (y >= h))
            if bad.size:
                i = int(keep[bad[0]])
                raise EventFormatError(path, body + 8 * i, f"polarity event with address "
                                       f"x={x[bad[0]]}, y={y[bad[0]]} outside the {h}x{w} "
                                       "sensor")
            t = rec["t"][keep].astype(np.int64)
            if np.any(t < 0):
                i = int(keep[np.flatnonzero(t < 0)[0]])
                raise EventFormatError(path, body + 8 * i + 4, "negative timestamp")
            ev = np.empty(keep.size, EVENT_DTYPE)
            ev["x"], ev["y"], ev["p"] = x, y, (d >> 1) & 1
            ev["t"] = (np.int64(tsovf) << 31) | t
            parts.append(ev)
        pos = end
    ev = np.concatenate(parts) if parts else np.empty(0, EVENT_DTYPE)
    return _sorted_by_time(ev)


def read_dvs_gesture_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a DVS128 Gesture ``*_labels.csv``: int64 ``[K, 3]`` rows of
    ``(class 1-11, startTime_usec, endTime_usec)``.

    Raises :class:`EventFormatError` naming the line's byte offset on a malformed row.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    rows: list[tuple[int, int, int]] = []
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # saved by Excel
    pos = bom
    header = True
    for i, line in enumerate(data[bom:].split(b"\n")):
        start, pos = pos, pos + len(line) + 1
        text = line.strip().decode("ascii", "replace")
        if not text:
            continue
        if header:  # the first line that is not blank
            header = False
            if text.replace(" ", "") != "class,startTime_usec,endTime_usec":
                raise EventFormatError(path, 0, f"header {text!r}, expected "
                                       "'class,startTime_usec,endTime_usec'")
            continue
        fields = text.split(",")
        try:
            cls, t0, t1 = (int(f) for f in fields)
        except ValueError:
            raise EventFormatError(path, start, f"line {i + 1}: {text!r} is not three "
                                   "integers") from None
        if not 1 <= cls <= len(DVS_GESTURE_CLASSES) or t1 <= t0 or t0 < 0 or t1 >= 2**63:
            raise EventFormatError(path, start, f"line {i + 1}: class {cls} (expected 1-"
                                   f"{len(DVS_GESTURE_CLASSES)}) or times {t0}..{t1} invalid")
        rows.append((cls, t0, t1))
    if not data.strip():
        raise EventFormatError(path, 0, "empty label file")
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def read_dvs_gesture(aedat_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                     sensor_size: tuple[int, int] = DVS128_SENSOR
                     ) -> list[tuple[np.ndarray, int]]:
    """Split one DVS128 Gesture recording into its labelled gestures.

    ``labels_path`` defaults to ``<aedat stem>_labels.csv`` next to the file. Returns a list
    of ``(events, label)``, one per CSV row, in file order: the events with
    ``startTime_usec <= t < endTime_usec``, timestamps shifted so the gesture starts at 0,
    and ``label = class - 1`` (0-10, names in :data:`DVS_GESTURE_CLASSES`).
    """
    aedat_path = Path(aedat_path)
    if labels_path is None:
        labels_path = aedat_path.with_name(aedat_path.stem + "_labels.csv")
    rows = read_dvs_gesture_labels(labels_path)
    ev = read_aedat31(aedat_path, sensor_size)
    t = ev["t"]
    out = []
    for cls, t0, t1 in rows:
        a, b = np.searchsorted(t, [t0, t1], side="left")
        g = ev[a:b].copy()
        g["t"] -= t0
        out.append((g, int(cls) - 1))
    return out


_AEDAT2_RECORD = np.dtype([("a", ">u4"), ("t", ">u4")])


def read_aedat2(path: str | os.PathLike,
                sensor_size: tuple[int, int] = DVS128_SENSOR) -> np.ndarray:
    """All pixel events of a jAER AEDAT 2.0 file from a DVS128 (CIFAR10-DVS), sorted by ``t``.

    See the module docstring for the address layout and the orientation. Raises
    :class:`EventFormatError` with the byte offset on a missing or other-version header or a
    truncated record.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not data.startswith(b"#!AER-DAT"):
        kind = sniff_format(data[:16])
        raise EventFormatError(path, 0, f"no '#!AER-DAT2.0' header line; "
                               f"{'a ' + kind + ' file' if kind else 'not an AEDAT file'}")
    nl = data.find(b"\n")
    version = data[len(b"#!AER-DAT"):nl if nl >= 0 else 16].strip().decode("ascii", "replace")
    if not version.startswith("2"):
        raise EventFormatError(path, 0, f"AEDAT version {version!r}; CIFAR10-DVS files are "
                               "AEDAT 2.0")
    pos = 0
    while pos < len(data) and data[pos:pos + 1] == b"#":
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise EventFormatError(path, pos, "header line without an end of line")
        pos = nl + 1
    n, rest = divmod(len(data) - pos, 8)
    if rest:
        raise EventFormatError(path, pos + 8 * n, f"last record is {rest} of 8 bytes")
    rec = np.frombuffer(data, _AEDAT2_RECORD, count=n, offset=pos)
    a = rec["a"].astype(np.int64)
    keep = np.flatnonzero((a & 0x8000) == 0)
    a = a[keep]
    h, w = sensor_size
    x, y = 127 - ((a >> 8) & 0x7F), 127 - ((a >> 1) & 0x7F)
    bad = np.flatnonzero((x >= w) | (y >= h))
    if bad.size:
        i = int(keep[bad[0]])
        raise EventFormatError(path, pos + 8 * i, f"event {i} maps to x={x[bad[0]]}, "
                               f"y={y[bad[0]]} outside the {h}x{w} sensor")
    ev = np.empty(keep.size, EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"] = x, y, 1 - (a & 1)
    ev["t"] = rec["t"][keep].astype(np.int64)
    return _sorted_by_time(ev)
