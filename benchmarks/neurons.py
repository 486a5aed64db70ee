"""Neuron and training-step benchmark: leansnn vs SpikingJelly 2.0.0 vs snnTorch 1.0.0.

(a) one LIF layer on [8, 32, 128, 16, 16]: forward only (no autograd) and forward+backward,
    plus the peak extra memory of forward+backward;
(b) one training step (forward, MSE on the mean output rate against one-hot labels,
    backward, Adam) of the ICCV 2023 "arch A" LIF-SNN on [8, 16, 2, 32, 32] event frames.

All three libraries get the same inputs and the paper's neuron (decay 0.3 i.e. tau = 1/0.7,
threshold 0.3, hard reset to 0, rectangular surrogate of half-width 0.25 -- SpikingJelly's
``Rect(alpha=2)``; snnTorch has no rectangular surrogate, so it gets ``atan``) with 2 threads;
timings are medians of interleaved rounds, so the ratios are measured side by side in one run.
SpikingJelly: ``neuron.LIFNode(step_mode='m', decay_input=False)`` with its multi-step
``layer.*`` containers; snnTorch: ``snn.Leaky`` stepped over T in a Python loop (stateless
layers folded over T, which is faster for snnTorch than stepping them too).

Run:  make bench-setup && .venv/bin/python benchmarks/neurons.py [--rounds 7] [--no-write]
Writes the "neurons" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, machine_line, md_table, peak_memory_mb, write_section  # noqa: E402

import leansnn as ls  # noqa: E402

DECAY, THR = 0.3, 0.3
TAU = 1.0 / (1.0 - DECAY)


def peers():
    """Import the peers (installed by `make bench-setup`), or explain how to get them."""
    warnings.filterwarnings("ignore")
    try:
        import snntorch
        from snntorch import surrogate as snn_surrogate
        from spikingjelly.activation_based import functional as sj_functional
        from spikingjelly.activation_based import layer as sj_layer
        from spikingjelly.activation_based import neuron as sj_neuron
        from spikingjelly.activation_based import surrogate as sj_surrogate
    except ImportError as e:
        raise SystemExit(f"benchmark peers missing ({e}); run `make bench-setup` first") from None
    return sj_neuron, sj_layer, sj_surrogate, sj_functional, snntorch, snn_surrogate


# ---------------------------------------------------------------------------------------------
# (a) one layer
# ---------------------------------------------------------------------------------------------
def make_layer_fns(shape, P):
    sj_neuron, _, sj_surrogate, sj_functional, snntorch, snn_surrogate = P
    x = torch.rand(shape) * 0.6
    ours = ls.LIF(decay=DECAY, threshold=THR, surrogate=ls.surrogate.Rectangular(a=0.25))
    sj = sj_neuron.LIFNode(tau=TAU, decay_input=False, v_threshold=THR, v_reset=0.0,
                           surrogate_function=sj_surrogate.Rect(alpha=2.0), step_mode="m")
    sn = snntorch.Leaky(beta=DECAY, threshold=THR, reset_mechanism="zero",
                        spike_grad=snn_surrogate.atan(alpha=2.0))

    def run_ours(xx):
        return ours(xx)

    def run_sj(xx):
        y = sj(xx)
        sj_functional.reset_net(sj)
        return y

    def run_snn(xx):
        mem = sn.init_leaky()
        out = []
        for t in range(xx.shape[0]):
            spk, mem = sn(xx[t], mem)
            out.append(spk)
        return torch.stack(out)

    runs = {"leansnn": run_ours, "SpikingJelly": run_sj, "snnTorch": run_snn}

    def fwd(fn):
        def f():
            with torch.no_grad():
                return fn(x)
        return f

    def fwd_bwd(fn):
        def f():
            xx = x.clone().requires_grad_()
            y = fn(xx)
            y.sum().backward()
            return xx.grad
        return f

    return ({k: fwd(v) for k, v in runs.items()}, {k: fwd_bwd(v) for k, v in runs.items()})


# ---------------------------------------------------------------------------------------------
# (b) arch-A training step
# ---------------------------------------------------------------------------------------------
def leansnn_arch_a(T, num_classes=10):
    return ls.models.create("lif_snn_a", num_classes=num_classes, in_channels=2, T=T,
                            attention=None, input_size=(32, 32), dropout=0.0)


def sj_arch_a(P, num_classes=10):
    sj_neuron, sj_layer, sj_surrogate, _, _, _ = P

    def lif():
        return sj_neuron.LIFNode(tau=TAU, decay_input=False, v_threshold=THR, v_reset=0.0,
                                 surrogate_function=sj_surrogate.Rect(alpha=2.0), step_mode="m")

    L = sj_layer
    return nn.Sequential(
        L.Conv2d(2, 64, 3, padding=1, bias=False, step_mode="m"),
        L.BatchNorm2d(64, step_mode="m"), lif(),
        L.Conv2d(64, 128, 3, padding=1, bias=False, step_mode="m"),
        L.BatchNorm2d(128, step_mode="m"), L.AvgPool2d(2, step_mode="m"), lif(),
        L.Conv2d(128, 128, 3, padding=1, bias=False, step_mode="m"),
        L.BatchNorm2d(128, step_mode="m"), L.AvgPool2d(2, step_mode="m"), lif(),
        L.Flatten(step_mode="m"), L.Linear(128 * 8 * 8, 256, step_mode="m"), lif(),
        L.Linear(256, num_classes, step_mode="m"), lif(),
    )


class SnnTorchArchA(nn.Module):
    """Arch A with snnTorch Leaky neurons stepped over T; stateless layers folded over T."""

    def __init__(self, P, num_classes=10):
        super().__init__()
        _, _, _, _, snntorch, snn_surrogate = P

        def leaky():
            return snntorch.Leaky(beta=DECAY, threshold=THR, reset_mechanism="zero",
                                  spike_grad=snn_surrogate.atan(alpha=2.0))

        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(2, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
            nn.Sequential(nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128),
                          nn.AvgPool2d(2)),
            nn.Sequential(nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128),
                          nn.AvgPool2d(2)),
            nn.Sequential(nn.Flatten(), nn.Linear(128 * 8 * 8, 256)),
            nn.Linear(256, num_classes),
        ])
        self.neurons = nn.ModuleList([leaky() for _ in self.stages])

    def forward(self, x):
        T, B = x.shape[:2]
        for stage, neuron in zip(self.stages, self.neurons):
            cur = stage(x.flatten(0, 1))
            cur = cur.view(T, B, *cur.shape[1:])
            mem = neuron.init_leaky()
            spikes = []
            for t in range(T):
                spk, mem = neuron(cur[t], mem)
                spikes.append(spk)
            x = torch.stack(spikes)
        return x


def make_step_fns(T, B, P):
    _, _, _, sj_functional, _, _ = P
    torch.manual_seed(0)
    x = (torch.rand(T, B, 2, 32, 32) < 0.15).float()
    y = torch.randint(0, 10, (B,))
    target = nn.functional.one_hot(y, 10).float()
    models = {"leansnn": leansnn_arch_a(T), "SpikingJelly": sj_arch_a(P),
              "snnTorch": SnnTorchArchA(P)}
    # identical initial weights for all three (same parameter order and shapes)
    ref = [p for p in models["leansnn"].parameters()]
    for name in ("SpikingJelly", "snnTorch"):
        ps = list(models[name].parameters())
        assert [p.shape for p in ps] == [p.shape for p in ref], name
        with torch.no_grad():
            for p, q in zip(ps, ref):
                p.copy_(q)
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name):
        m, opt = models[name], opts[name]

        def f():
            out = m(x)
            loss = nn.functional.mse_loss(out.mean(0), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if name == "SpikingJelly":
                sj_functional.reset_net(m)
            return loss.detach()
        return f

    return {k: step(k) for k in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--step-rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--note", default="", help="text added to the BENCHMARKS.md section")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    P = peers()

    shape = (8, 32, 128, 16, 16)
    fwd, fb = make_layer_fns(shape, P)
    t_fwd = interleaved(fwd, rounds=args.rounds)
    t_fb = interleaved(fb, rounds=args.rounds)
    mem = {k: peak_memory_mb(f) for k, f in fb.items()}
    steps = make_step_fns(8, 16, P)
    t_step = interleaved(steps, rounds=args.step_rounds, warmup=1)

    names = ["leansnn", "SpikingJelly", "snnTorch"]
    rows = []
    for n in names:
        rows.append([
            n,
            f"{1e3 * t_fwd[n]:.1f}", f"{t_fwd[n] / t_fwd['leansnn']:.2f}x",
            f"{1e3 * t_fb[n]:.1f}", f"{t_fb[n] / t_fb['leansnn']:.2f}x",
            f"{mem[n]:.0f}",
            f"{1e3 * t_step[n]:.0f}", f"{t_step[n] / t_step['leansnn']:.2f}x",
        ])
    headers = ["library", "(a) fwd ms", "(a) fwd vs leansnn", "(a) fwd+bwd ms",
               "(a) fwd+bwd vs leansnn", "(a) fwd+bwd peak MiB", "(b) train step ms",
               "(b) step vs leansnn"]
    table = md_table(headers, rows)
    print(table)
    speed = {
        "fwd_vs_sj": t_fwd["SpikingJelly"] / t_fwd["leansnn"],
        "fb_vs_sj": t_fb["SpikingJelly"] / t_fb["leansnn"],
        "step_vs_sj": t_step["SpikingJelly"] / t_step["leansnn"],
        "step_vs_snntorch": t_step["snnTorch"] / t_step["leansnn"],
    }
    verdict = (
        f"leansnn is {speed['fwd_vs_sj']:.1f}x faster than SpikingJelly forward (target >= 5x), "
        f"{speed['fb_vs_sj']:.1f}x forward+backward (target >= 2.2x), peak memory "
        f"{mem['leansnn']:.0f} vs {mem['SpikingJelly']:.0f} MiB (target: no higher); arch-A "
        f"training step {speed['step_vs_sj']:.2f}x faster than SpikingJelly (target >= 1.2x) "
        f"and {speed['step_vs_snntorch']:.2f}x faster than snnTorch (target > 1x)."
    )
    print(verdict)
    if not args.no_write:
        write_section("neurons", "\n".join([
            "## Neurons and the arch-A training step",
            "",
            f"`python benchmarks/neurons.py` (after `make bench-setup`) on {machine_line()}. "
            "(a) one LIF layer on `[8, 32, 128, 16, 16]`; (b) one Adam training step of the "
            "ICCV 2023 arch-A LIF-SNN on `[8, 16, 2, 32, 32]`. Medians of interleaved rounds; "
            "ratios > 1 mean leansnn is faster. Peak MiB: rise of the peak resident set during "
            "one forward+backward.",
            "",
            table,
            "",
            verdict,
        ] + (["", args.note] if args.note else [])))


if __name__ == "__main__":
    main()
