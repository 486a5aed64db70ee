"""Benchmark: parallel ANN->SNN conversion vs serial IF and SpikingJelly 2.0's converter.

On a trained QCFS net (and its ReLU-trained twin for SpikingJelly, whose rate-coding recipe
expects ReLU) and the same batch of 64 test images, 2 threads, interleaved rounds, medians:
ANN forward; leansnn parallel (exact fast path); parallel, explicit T-step simulation;
serial IF (v0 = theta/2, soft reset); SpikingJelly ``Converter(RateCodingRecipe(mode="max"))``
stepped T times. Then accuracy vs T on the test set for parallel, serial and SpikingJelly
(serial IF and SpikingJelly are causal, so one run at the largest T gives the accuracy after
every step), and time-to-accuracy: the inference time parallel needs to reach the ANN's
accuracy - 0.5 pt versus serial IF at the smallest T (<= --tta-max-T) where it does.

Run::

    nice -n 10 .venv/bin/python benchmarks/conversion.py            # full settings
    nice -n 10 .venv/bin/python benchmarks/conversion.py --quick    # fewer images / rounds

and it rewrites the "conversion" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import interleaved, machine_line, md_table, write_section  # noqa: E402

import leansnn as ls  # noqa: E402
from leansnn.convert import evaluate_snn  # noqa: E402
from leansnn.train import evaluate  # noqa: E402


def sj_convert(relu_ann: torch.nn.Module, calib: list) -> torch.nn.Module:
    """SpikingJelly 2.0.0: rate-coding ReLU -> IFNode conversion, max-activation scaling."""
    from spikingjelly.activation_based import ann2snn

    recipe = ann2snn.RateCodingRecipe(dataloader=calib, mode="max")
    return ann2snn.Converter(recipe=recipe, device="cpu").convert(copy.deepcopy(relu_ann)).eval()


class SJRunner(torch.nn.Module):
    """Steps a SpikingJelly single-step SNN T times: [B, ...] -> [T, B, K]."""

    def __init__(self, snn: torch.nn.Module, T: int) -> None:
        super().__init__()
        self.snn, self.T = snn, T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.snn)
        return torch.stack([self.snn(x) for _ in range(self.T)])


def first_T_reaching(accs: dict[int, float], target: float) -> int | None:
    for T in sorted(accs):
        if accs[T] >= target:
            return T
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ann", default=str(ROOT / "pretrained" / "small_cnn_qcfs4.lsnn"))
    p.add_argument("--relu", default=str(ROOT / "pretrained" / "small_cnn_relu.lsnn"))
    p.add_argument("--T", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--acc-T", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--acc-images", type=int, default=10000,
                   help="test images for the ANN and parallel accuracy (default all)")
    p.add_argument("--slow-acc-images", type=int, default=10000,
                   help="test images for serial IF and SpikingJelly accuracy (default all)")
    p.add_argument("--tta-images", type=int, default=1000)
    p.add_argument("--tta-max-T", type=int, default=256)
    p.add_argument("--calib-batches", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="rounds 3, 2000 / 500 images")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.slow_acc_images, args.tta_images = 3, 1000, 300
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ann = ls.load(args.ann).eval()
    relu = ls.load(args.relu).eval()
    levels = sorted({m.levels for m in ann.modules() if isinstance(m, ls.QCFS)})
    L = levels[0] if len(levels) == 1 else None
    test = ls.data.fashion_mnist("test")
    train = ls.data.fashion_mnist("train")
    x64 = next(iter(test.subset(64, seed=1).batches(64)))[0]
    calib = [x for x, _ in train.subset(128 * args.calib_batches, seed=2).batches(128)]
    sj = sj_convert(relu, [(c, torch.zeros(len(c), dtype=torch.long)) for c in calib])
    print(machine_line(), flush=True)

    # ---- speed -----------------------------------------------------------------------------
    speed_rows, fast_ratio, sj_ratio = [], {}, {}
    with torch.no_grad():
        for T in args.T:
            par = ls.convert(ann, T=T)
            ser = ls.convert(ann, T=T, method="serial")
            sjr = SJRunner(sj, T)
            fns = {
                "ann": lambda: ann(x64),
                "fast": lambda par=par: par(x64, engine="fast"),
                "sim": lambda par=par: par(x64, engine="simulate"),
                "serial": lambda ser=ser: ser(x64),
                "sj": lambda sjr=sjr: sjr(x64),
            }
            t = interleaved(fns, rounds=args.rounds, warmup=1)
            fast_ratio[T] = t["fast"] / t["ann"]
            sj_ratio[T] = t["sj"] / t["fast"]
            speed_rows.append([T] + [f"{1e3 * t[k]:.1f}" for k in fns] + [
                f"{fast_ratio[T]:.2f}x", f"{t['sim'] / t['fast']:.1f}x",
                f"{t['serial'] / t['fast']:.1f}x", f"{sj_ratio[T]:.1f}x",
                f"{t['sj'] / t['ann']:.1f}x"])
            print(f"T={T}: " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in t.items()),
                  flush=True)

    # ---- accuracy vs T ---------------------------------------------------------------------
    acc_set = test.subset(args.acc_images, 0) if args.acc_images < len(test) else test
    ann_acc = evaluate(ann, acc_set)["accuracy"]
    relu_acc = evaluate(relu, acc_set)["accuracy"]
    Tmax = max(args.acc_T)
    par_acc = {}
    for T in args.acc_T:
        par_acc[T] = evaluate_snn(ls.convert(ann, T=T), acc_set, firing_rate=False)["accuracy"]
    slow_set = test.subset(args.slow_acc_images, 0) if args.slow_acc_images < len(test) else test
    slow_ann = evaluate(ann, slow_set)["accuracy"]
    par_slow = {T: evaluate_snn(ls.convert(ann, T=T), slow_set, firing_rate=False)["accuracy"]
                for T in args.acc_T}
    ser_steps = evaluate_snn(ls.convert(ann, T=Tmax, method="serial"), slow_set,
                             batch_size=64, firing_rate=False, progress=True,
                             desc="serial")["accuracy_per_step"]
    sj_steps = evaluate_snn(SJRunner(sj, Tmax), slow_set, batch_size=64, firing_rate=False,
                            progress=True, desc="spikingjelly")["accuracy_per_step"]
    acc_rows = [[T, f"{100 * par_acc[T]:.2f}", f"{100 * par_slow[T]:.2f}",
                 f"{100 * ser_steps[T - 1]:.2f}", f"{100 * sj_steps[T - 1]:.2f}"]
                for T in args.acc_T]
    print("accuracy:", acc_rows, flush=True)

    # ---- time to accuracy ------------------------------------------------------------------
    tta_set = test.subset(args.tta_images, 3)
    tta_ann = evaluate(ann, tta_set)["accuracy"]
    target = tta_ann - 0.005
    par_tta = {T: evaluate_snn(ls.convert(ann, T=T), tta_set, firing_rate=False)["accuracy"]
               for T in sorted(set(args.acc_T) | {1, 2, 4, 8, 16, 32})}
    ser_curve = evaluate_snn(ls.convert(ann, T=args.tta_max_T, method="serial"), tta_set,
                             batch_size=16, firing_rate=False, progress=True,
                             desc="serial T_max")["accuracy_per_step"]
    T_par = first_T_reaching(par_tta, target)
    T_ser = first_T_reaching({i + 1: a for i, a in enumerate(ser_curve)}, target)
    with torch.no_grad():
        fns = {}
        if T_par is not None:
            fns["par"] = lambda s=ls.convert(ann, T=T_par): s(x64)
        if T_ser is not None:
            fns["ser"] = lambda s=ls.convert(ann, T=T_ser, method="serial"): s(x64)
        tt = interleaved(fns, rounds=max(3, args.rounds // 2), warmup=1) if fns else {}
    tta_line = (
        f"Time-to-accuracy (target = ANN accuracy {100 * tta_ann:.2f} % - 0.5 pt on "
        f"{len(tta_set)} test images): parallel reaches it at T = {T_par} "
        f"({1e3 * tt['par'] / 64:.3f} ms/image)" if T_par else
        f"Time-to-accuracy: parallel never reaches ANN - 0.5 pt ({100 * target:.2f} %) for "
        f"T <= {max(par_tta)}")
    if T_ser is not None:
        tta_line += (f"; serial IF first reaches it at T = {T_ser} ({1e3 * tt['ser'] / 64:.3f} "
                     f"ms/image)")
        if T_par is not None:
            tta_line += f": parallel is {tt['ser'] / tt['par']:.1f}x faster to that accuracy."
    else:
        tta_line += (f"; serial IF does not reach it within T = {args.tta_max_T} (best "
                     f"{100 * max(ser_curve):.2f} %, at T = {args.tta_max_T}: "
                     f"{100 * ser_curve[-1]:.2f} %).")
    print(tta_line, flush=True)

    # ---- report ----------------------------------------------------------------------------
    cmd = "nice -n 10 .venv/bin/python benchmarks/conversion.py" + (
        " --quick" if args.quick else "")
    lossless = ""
    if L is not None and L in par_acc:
        same = "exactly equals" if par_acc[L] == ann_acc else "differs from"
        lossless = (f"Parallel at T = L = {L}: {100 * par_acc[L]:.2f} % — {same} the ANN's "
                    f"{100 * ann_acc:.2f} %.")
    md = "\n\n".join([
        "## ANN -> SNN conversion (parallel vs serial IF vs SpikingJelly 2.0.0)",
        f"`{cmd}` — {machine_line()}. Model: `{Path(args.ann).name}` (QCFS, L = {L}; ANN test "
        f"accuracy {100 * ann_acc:.2f} %) and its ReLU twin `{Path(args.relu).name}` "
        f"({100 * relu_acc:.2f} %) for SpikingJelly's `Converter(RateCodingRecipe(mode='max'))`"
        f" calibrated on {len(calib)} training batches of 128. Time per batch of 64 test images"
        f", median of {args.rounds} interleaved rounds.",
        md_table(["T", "ANN ms", "parallel fast ms", "parallel sim ms", "serial IF ms",
                  "SpikingJelly ms", "fast / ANN", "sim / fast", "serial / fast",
                  "SpikingJelly / fast", "SpikingJelly / ANN"], speed_rows),
        f"Accuracy (%) vs T: parallel on {len(acc_set)} test images (ANN "
        f"{100 * ann_acc:.2f} %), and parallel, serial IF and SpikingJelly on a random subset of "
        f"{len(slow_set)} (ANN {100 * slow_ann:.2f} %; serial and SpikingJelly: "
        f"accuracy after T steps of one {Tmax}-step run, both being causal):",
        md_table(["T", f"parallel ({len(acc_set)})", f"parallel ({len(slow_set)})",
                  f"serial IF ({len(slow_set)})", f"SpikingJelly, ReLU twin ({len(slow_set)})"],
                 acc_rows),
        lossless,
        tta_line,
        "Targets: fast / ANN <= 1.3 at every T: " + ", ".join(
            f"T={T}: {fast_ratio[T]:.2f}" for T in args.T) + "; SpikingJelly / fast >= 6 at "
        "T = 4 and >= 40 at T = 32: " + ", ".join(f"T={T}: {sj_ratio[T]:.1f}"
                                                 for T in args.T) + ".",
    ])
    print(md)
    if not args.no_write:
        write_section("conversion", md)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    print(f"done in {time.perf_counter() - t0:.0f} s")
    raise SystemExit(rc)
