"""ASA overhead per training step of the paper's LIF-SNN (arch A).

One training step = forward, MSE between the mean output rate and the one-hot label,
backward, Adam step; input ``[8, 16, 2, 32, 32]`` (T=8, batch 16, 2 polarities, 32x32), as in
the foundation issue's arch-A benchmark (``benchmarks/neurons.py``, no dropout).
``lif_snn_a`` without and with ASA (one ASA module in each of the three conv stages) and,
when installed, SpikingJelly's arch A (the same network, no ASA, from
``benchmarks/neurons.py``) are timed in interleaved rounds (medians); also the forward pass
alone and the peak memory of a step. Writes the ``asa_overhead`` section of BENCHMARKS.md.

Run: ``nice -n 10 .venv/bin/python benchmarks/train_step.py [--rounds 7] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine_line, md_table, peak_memory_mb, write_section  # noqa: E402

import leansnn as ls  # noqa: E402


def cpu_interleaved(fns: dict, rounds: int = 7, warmup: int = 2) -> dict[str, float]:
    """As ``_common.interleaved`` but in CPU seconds of this process (``time.process_time``).

    On a machine shared with other jobs, wall-clock time mostly measures the other jobs; the
    CPU time of a single-threaded run (``--threads 1``) measures the work itself.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def make_step(attention: str | None, x: torch.Tensor, y: torch.Tensor, width: int):
    torch.manual_seed(0)
    net = ls.models.create("lif_snn_a", num_classes=10, in_channels=2, T=x.shape[0],
                           attention=attention, input_size=tuple(x.shape[-2:]), width=width,
                           dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    target = torch.nn.functional.one_hot(y, 10).float()

    def step():
        out = net(x)
        loss = torch.nn.functional.mse_loss(out.mean(0), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    @torch.no_grad()
    def forward():
        return net(x)

    return step, forward


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--no-peers", action="store_true", help="skip SpikingJelly")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: perf_counter (default); cpu: CPU time of this process, for a "
                        "shared machine (use with --threads 1)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(a.T, a.batch, 2, 32, 32, generator=g) < 0.15).float()
    y = torch.randint(0, 10, (a.batch,), generator=g)
    step0, fwd0 = make_step(None, x, y, a.width)
    step1, fwd1 = make_step("asa", x, y, a.width)
    fns = {"step": step0, "step+asa": step1, "fwd": fwd0, "fwd+asa": fwd1}
    sj = None
    if not a.no_peers and a.width == 64:
        try:
            import neurons

            P = neurons.peers()
            sj = neurons.make_step_fns(a.T, a.batch, P)["SpikingJelly"]
            fns["sj"] = sj
        except (ImportError, SystemExit) as e:
            print(f"SpikingJelly not available ({e}); timing leansnn only")
    timer = cpu_interleaved if a.clock == "cpu" else interleaved
    t = timer(fns, rounds=a.rounds, warmup=2)
    mem0, mem1 = peak_memory_mb(step0), peak_memory_mb(step1)
    rows = [
        ["training step", f"{1e3 * t['step']:.0f}", f"{1e3 * t['step+asa']:.0f}",
         f"{100 * (t['step+asa'] / t['step'] - 1):+.1f} %"],
        ["forward (no grad)", f"{1e3 * t['fwd']:.0f}", f"{1e3 * t['fwd+asa']:.0f}",
         f"{100 * (t['fwd+asa'] / t['fwd'] - 1):+.1f} %"],
        ["peak memory of a step (MiB)", f"{mem0:.0f}", f"{mem1:.0f}",
         f"{100 * (mem1 / max(mem0, 1e-9) - 1):+.1f} %"],
    ]
    table = md_table(["lif_snn_a, input " + "x".join(map(str, x.shape)), "no ASA (ms)",
                      "with ASA (ms)", "ASA overhead"], rows)
    peer = ""
    if sj is not None:
        peer = (f"\n\nSpikingJelly 2.0 arch A (no ASA), same step, same rounds: "
                f"{1e3 * t['sj']:.0f} ms; leansnn without ASA is {t['sj'] / t['step']:.2f}x "
                f"faster, leansnn **with** ASA {t['sj'] / t['step+asa']:.2f}x faster.")
    clock = "CPU time (process_time)" if a.clock == "cpu" else "wall-clock time"
    md = (f"## ASA overhead per training step (arch A)\n\n{machine_line()}; {clock}, medians of "
          f"{a.rounds} interleaved rounds; width {a.width} (channels {a.width}/{2 * a.width}/"
          f"{2 * a.width}), one ASA per conv stage (fused implementation).\n\n{table}{peer}\n\n"
          f"Rerun: `nice -n 10 .venv/bin/python benchmarks/train_step.py --rounds {a.rounds} "
          f"--threads {a.threads} --clock {a.clock}`\n")
    print(md)
    if not a.no_write:
        write_section("asa_overhead", md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
