"""Shared helpers for the benchmark scripts: interleaved timing, peak memory, BENCHMARKS.md.

Timings are medians over interleaved rounds (A, B, C, A, B, C, ...) so that machine noise
hits every contender alike; results are reported as ratios measured in the same run.
Peak memory on CPU is the rise of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over the resident set before the call.
"""

from __future__ import annotations

import gc
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _fix_malloc() -> None:
    """Make freed large blocks go back to the OS at once (glibc), so that the resident set
    measures live memory: pin the mmap threshold (this disables glibc's dynamic threshold,
    which otherwise keeps freed tensors in the heap and hides later peaks)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 256 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 1024 * 1024)
    except (OSError, AttributeError):
        pass


_fix_malloc()
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 2,
                inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured in interleaved rounds."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mb(fn: Callable[[], object], repeats: int = 2) -> float:
    """Peak extra resident memory (MiB) while ``fn()`` runs (max over ``repeats``)."""
    best = 0.0
    for _ in range(repeats):
        gc.collect()
        base = _status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:  # not Linux: fall back to a plain RSS difference
            pass
        out = fn()
        peak = _status_kb("VmHWM")
        del out
        best = max(best, (peak - base) / 1024)
    return best


def machine_line() -> str:
    import platform

    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the ``name`` section of BENCHMARKS.md, atomically."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else (
        "# Benchmarks\n\nEvery table here is written by a committed script; each section says "
        "how to rerun it. Timings are medians of interleaved rounds on the machine named in "
        "the section; compare the ratios, not the absolute times.\n")
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, BENCHMARKS_MD)


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
