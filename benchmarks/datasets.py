"""Data-set readers: decode rate (events/s) of each reader, epoch time from the cache vs raw.

Writes synthetic files of realistic size in the real formats into a temporary folder (no
downloads): N-MNIST ``.bin`` (~4,000 events per sample, as the real recordings), N-Caltech101
``.bin`` (~100,000), DVS128 Gesture AEDAT 3.1 (recordings of ~1,000,000 events cut into 6
gestures), CIFAR10-DVS AEDAT 2.0 (~200,000), and CIFAR-10 binary batches. For each reader it
times decoding every file (best of ``--rounds``), then, for the event data sets, one epoch of
``batches(32, shuffle=True)`` read from the cache against one epoch that decodes and bins the
raw files again (``use_cache=False``), plus the first (caching) pass.

Run: ``.venv/bin/python benchmarks/datasets.py [--scale 1.0] [--workers 1] [--write]``
(``--write`` replaces the ``datasets`` section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, md_table, write_section  # noqa: E402

from leansnn.data import cifar10, read_aedat2, read_aedat31, read_nmnist  # noqa: E402
from leansnn.data.event_folders import (  # noqa: E402
    NCALTECH101_SENSOR,
    cifar10_dvs,
    dvs_gesture,
    ncaltech101,
    nmnist,
)
from leansnn.data.images import read_cifar  # noqa: E402


def _events(rng, n, h, w, t_max):
    return (rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, t_max, n)),
            rng.integers(0, 2, n))


def nmnist_bytes(x, y, t, p) -> bytes:
    b = np.empty((len(x), 5), np.uint8)
    b[:, 0], b[:, 1] = x, y
    b[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    b[:, 3], b[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return b.tobytes()


def aedat31_bytes(x, y, t, p, per_packet=4096) -> bytes:
    out = [b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"]
    for i in range(0, len(x), per_packet):
        s = slice(i, i + per_packet)
        rec = np.empty(len(x[s]), np.dtype([("d", "<u4"), ("t", "<i4")]))
        rec["d"] = (x[s] << 17) | (y[s] << 2) | (p[s] << 1) | 1
        rec["t"] = t[s]
        n = len(rec)
        out.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, n, n, n) + rec.tobytes())
    return b"".join(out)


def aedat2_bytes(x, y, t, p) -> bytes:
    rec = np.empty(len(x), np.dtype([("a", ">u4"), ("t", ">u4")]))
    rec["a"] = ((127 - x) << 8) | ((127 - y) << 1) | (1 - p)
    rec["t"] = t
    return b"#!AER-DAT2.0\r\n" + rec.tobytes()


def build(root: Path, scale: float, rng) -> dict:
    """Write the synthetic folders; return {name: (folder, list of files, events)}."""
    out = {}
    n_nm = max(10, int(400 * scale))
    files = []
    for k in range(n_nm):
        d = root / "nmnist" / "Train" / str(k % 10)
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"{k:05d}.bin"
        f.write_bytes(nmnist_bytes(*_events(rng, 4000, 34, 34, 300_000)))
        files.append(f)
    out["nmnist"] = (root / "nmnist", files, 4000 * n_nm)
    files = []
    n_ct = max(3, int(30 * scale))
    for k in range(n_ct):
        d = root / "ncaltech" / f"class{k % 3}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"image_{k:04d}.bin"
        f.write_bytes(nmnist_bytes(*_events(rng, 100_000, *NCALTECH101_SENSOR, 300_000)))
        files.append(f)
    out["ncaltech101"] = (root / "ncaltech", files, 100_000 * n_ct)
    g = root / "gesture"
    g.mkdir()
    files = []
    n_g = max(1, int(4 * scale))
    for k in range(n_g):
        f = g / f"user{k + 1:02d}_led.aedat"
        f.write_bytes(aedat31_bytes(*_events(rng, 1_000_000, 128, 128, 36_000_000)))
        rows = "".join(f"{c + 1},{c * 6_000_000},{c * 6_000_000 + 5_500_000}\n"
                       for c in range(6))
        (g / f"user{k + 1:02d}_led_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n" + rows)
        files.append(f)
    (g / "trials_to_train.txt").write_text("".join(f.name + "\n" for f in files))
    (g / "trials_to_test.txt").write_text(files[0].name + "\n")
    out["dvs_gesture"] = (g, files, 1_000_000 * n_g)
    files = []
    n_c = max(10, int(40 * scale))
    from leansnn.data.event_folders import CIFAR10_DVS_CLASSES

    for k in range(n_c):
        d = root / "c10dvs" / CIFAR10_DVS_CLASSES[k % 10]
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"cifar10_{k}.aedat"
        f.write_bytes(aedat2_bytes(*_events(rng, 200_000, 128, 128, 1_300_000)))
        files.append(f)
    out["cifar10_dvs"] = (root / "c10dvs", files, 200_000 * n_c)
    c = root / "cifar" / "cifar-10-batches-bin"
    c.mkdir(parents=True)
    rec = rng.integers(0, 256, (10_000, 3073), dtype=np.uint8)
    rec[:, 0] %= 10
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (c / f"{name}.bin").write_bytes(rec.tobytes())
    out["cifar10"] = (root / "cifar", [c / "test_batch.bin"], 10_000)
    return out


READ = {"nmnist": read_nmnist, "ncaltech101": lambda f: read_nmnist(f, NCALTECH101_SENSOR),
        "dvs_gesture": read_aedat31, "cifar10_dvs": read_aedat2,
        "cifar10": lambda f: read_cifar(f, 1, (10,))}
LOAD = {"nmnist": (nmnist, "train", {"T": 8}), "ncaltech101": (ncaltech101, "all", {"T": 8}),
        "dvs_gesture": (dvs_gesture, "train", {"T": 16, "dt_ms": 25}),
        "cifar10_dvs": (cifar10_dvs, "all", {"T": 16})}


def best(fn, rounds: int) -> float:
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def bench_one(name: str, folder: Path, files: list[Path], n_events: int, args,
              tmp: Path) -> tuple[list, list]:
    """One table row each: decode rate of the reader, epoch times of the data set."""
    read = READ[name]
    sec = best(lambda: [read(f) for f in files], args.rounds)
    unit = "images" if name == "cifar10" else "events"
    mb = sum(f.stat().st_size for f in files) / 1e6
    dec = [name, len(files), f"{n_events:,}", f"{mb:.1f}",
           f"{n_events / sec / 1e6:.1f} M {unit}/s", f"{mb / sec:.0f}"]
    if name == "cifar10":
        ds = cifar10("train", folder)
        ep = best(lambda: [None for _ in ds.batches(128, shuffle=True)], args.rounds)
        return dec, [name, len(ds), "-", f"{ep:.3f}", "-", "-"]
    fn, split, kw = LOAD[name]
    common = dict(progress=False, workers=args.workers, **kw)
    t0 = time.perf_counter()
    ds = fn(split, folder, cache_dir=tmp / "cache", **common)
    first = time.perf_counter() - t0
    assert not ds.from_cache and fn(split, folder, cache_dir=tmp / "cache", **common).from_cache

    def epoch(d) -> None:
        for _ in d.batches(32, shuffle=True, seed=1):
            pass

    ep_cache = best(lambda: epoch(fn(split, folder, cache_dir=tmp / "cache", **common)),
                    args.rounds)
    ep_raw = best(lambda: epoch(fn(split, folder, use_cache=False, **common)),
                  max(1, args.rounds - 1))
    return dec, [name, len(ds), f"{first:.2f}", f"{ep_cache:.3f}", f"{ep_raw:.2f}",
                 f"{ep_raw / ep_cache:.0f}x"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="number of files (x default)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="decoding processes")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows_dec, rows_ep = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build(tmp / "data", args.scale, rng)
        for name, (folder, files, n_events) in data.items():
            dec, ep = bench_one(name, folder, files, n_events, args, tmp)
            rows_dec.append(dec)
            rows_ep.append(ep)
            print(dec, ep, flush=True)
    md = "\n\n".join([
        "## Data-set readers (`benchmarks/datasets.py`)",
        f"{machine_line()}, load average {os.getloadavg()[0]:.1f} at the end of the run "
        "(the machine was shared). Synthetic files in the real formats, written by the script "
        f"(scale {args.scale}, {args.workers} decoding process(es)). Rerun: "
        f"`.venv/bin/python benchmarks/datasets.py --scale {args.scale} --workers "
        f"{args.workers} --write`.",
        "Decode rate: every file read by the reader alone (best of "
        f"{args.rounds}); CIFAR-10 is one 10,000-image batch file.",
        md_table(["reader", "files", "events / images", "MB", "decode rate", "MB/s"],
                 rows_dec),
        "Epoch: one pass of `batches(32, shuffle=True)` (CIFAR-10: 128) opening the data set "
        "from its cache, against one pass that decodes and bins the raw files again "
        "(`use_cache=False`); first pass = decoding + writing the cache. DVS128 Gesture uses "
        "`dt_ms=25` frames and random T=16 windows, the others T frames per recording. The "
        "cached epoch includes opening the data set, which fingerprints the raw files (a "
        "spot checksum of each; for N-MNIST's many small files that is most of it).",
        md_table(["data set", "samples", "first pass s", "epoch from cache s",
                  "epoch from raw files s", "raw / cache"], rows_ep),
    ])
    print(md)
    if args.write:
        write_section("datasets", md)


if __name__ == "__main__":
    main()
