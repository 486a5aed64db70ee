"""Benchmark: training-free conversion of ReLU-trained nets (recorded thresholds + DA calibration).

For every ReLU-trained net given (default: the shipped small CNN and ResNet-20) on the
Fashion-MNIST test set:

* the ANN's accuracy;
* ``method="calibrated"`` (channel-wise parallel neurons, DA calibration on
  ``--calib-images`` unlabeled training images) at T = 1, 2, 4, 8, 16, with the conversion
  time (tracing + threshold recording + calibration);
* parallel neurons with the same recorded per-channel thresholds but no calibration;
* serial IF neurons (v0 = theta/2, soft reset) with the same recorded thresholds, T = 1..64
  (causal, so one run at T = 64 gives every step);
* SpikingJelly 2.0.0's converter (``RateCodingRecipe``, mode ``"max"`` and ``"99.9%"``),
  T = 1..64 (causal as well);
* the QCFS L = 8 nets, if present, converted at T = 2 and 4 (plain parallel and calibrated);
* mean |psi| and |phi| per layer of the calibrated T = 4 network of the first net;
* sequential exact-mean calibration (``--calib-images``) against the authors' momentum
  recipe over one pass of the whole training set.

Run::

    nice -n 10 .venv/bin/python benchmarks/calibration.py
    nice -n 10 .venv/bin/python benchmarks/calibration.py --test-images 2000 --no-write  # quick

and it rewrites the "calibration" section of BENCHMARKS.md.
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

from _common import machine_line, md_table, write_section  # noqa: E402

import leansnn as ls  # noqa: E402
from leansnn.convert import evaluate_snn  # noqa: E402
from leansnn.convert.calibrate import calibration_summary, record_thresholds  # noqa: E402
from leansnn.train import evaluate  # noqa: E402

SERIAL_REPORT = (1, 2, 4, 8, 16, 32, 64)


class SJRunner(torch.nn.Module):
    """Steps a SpikingJelly single-step SNN T times: ``[B, ...] -> [T, B, K]``."""

    def __init__(self, snn: torch.nn.Module, T: int) -> None:
        super().__init__()
        self.snn, self.T = snn, T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.snn)
        return torch.stack([self.snn(x) for _ in range(self.T)])


def sj_convert(ann: torch.nn.Module, calib: list, mode: str) -> torch.nn.Module:
    """SpikingJelly 2.0.0 rate-coding ReLU -> IFNode conversion (``mode`` "max" / "99.9%")."""
    from spikingjelly.activation_based import ann2snn

    recipe = ann2snn.RateCodingRecipe(dataloader=calib, mode=mode)
    return ann2snn.Converter(recipe=recipe, device="cpu").convert(copy.deepcopy(ann)).eval()


def pct(a: float) -> str:
    return f"{100 * a:.2f}"


def delta(a: float, ann: float) -> str:
    return f"{100 * (a - ann):+.2f}"


def run_net(label: str, path: Path, args, train, test, serial_test, lines: list[str],
            summary_out: list) -> None:
    ann = ls.load(path).eval()
    ann_acc = evaluate(ann, test, batch_size=256)["accuracy"]
    print(f"== {label}: ANN {pct(ann_acc)} %", flush=True)
    calib_kw = dict(calib_data=train, max_samples=args.calib_images, progress=False)
    rows = []
    for T in args.T:
        t0 = time.perf_counter()
        snn = ls.convert(ann, T=T, method="calibrated", search=not args.no_search,
                         amplitude=args.amplitude, **calib_kw)
        secs = time.perf_counter() - t0
        acc = evaluate_snn(snn, test, firing_rate=False)["accuracy"]
        if T == 4 and not summary_out:
            summary_out.extend([label, calibration_summary(snn)])
        raw = ls.convert(ann, T=T, method="calibrated", calibrate=False, search=False,
                         **calib_kw)
        acc_raw = evaluate_snn(raw, test, firing_rate=False)["accuracy"]
        row = [T, f"{pct(acc)} ({delta(acc, ann_acc)})",
               f"{pct(acc_raw)} ({delta(acc_raw, ann_acc)})", f"{secs:.1f}"]
        print(f"  T={T}: calibrated {pct(acc)} ({delta(acc, ann_acc)}) in {secs:.1f} s, "
              f"recorded thresholds only {pct(acc_raw)}", flush=True)
        if args.refine_steps:
            t0 = time.perf_counter()
            ref = ls.convert(ann, T=T, method="calibrated", search=not args.no_search,
                             amplitude=args.amplitude, refine_steps=args.refine_steps,
                             **calib_kw)
            rsecs = time.perf_counter() - t0
            acc_ref = evaluate_snn(ref, test, firing_rate=False)["accuracy"]
            row += [f"{pct(acc_ref)} ({delta(acc_ref, ann_acc)})", f"{rsecs:.1f}"]
            print(f"  T={T}: calibrated + {args.refine_steps} refinement steps "
                  f"{pct(acc_ref)} ({delta(acc_ref, ann_acc)}) in {rsecs:.1f} s", flush=True)
        rows.append(row)
    head = ["T", "calibrated parallel % (vs ANN)",
            "parallel, recorded thresholds, no calibration %", "conversion time s"]
    if args.refine_steps:
        head += [f"calibrated + {args.refine_steps} refinement steps % (vs ANN)",
                 "conversion time with refinement s"]
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    lines.append(f"### {label} (`{where}`)\n\nANN test accuracy **{pct(ann_acc)} %** "
                 f"({len(test)} test images). "
                 f"Calibration on {args.calib_images} unlabeled training images"
                 f"{' (no threshold search)' if args.no_search else ', threshold search on'}"
                 f"{', least-squares amplitudes' if args.amplitude == 'ls' else ''}.\n")
    lines.append(md_table(head, rows))
    if args.no_baselines:
        lines.append("")
        return
    # serial IF and SpikingJelly: causal, one run at the largest T
    th = record_thresholds(ann, train, max_samples=args.calib_images)
    Tmax = max(SERIAL_REPORT)
    ser = ls.convert(ann, T=Tmax, method="serial", thresholds=th)
    s_acc = evaluate_snn(ser, serial_test, firing_rate=False, progress=True,
                         desc="serial")["accuracy_per_step"]
    print("  serial:", [pct(s_acc[t - 1]) for t in SERIAL_REPORT], flush=True)
    calib_batches = list(train.subset(args.calib_images, 0).batches(128))
    sj = {}
    for mode in ("max", "99.9%"):
        try:
            snn = SJRunner(sj_convert(ann, calib_batches, mode), Tmax)
            sj[mode] = evaluate_snn(snn, serial_test, firing_rate=False, progress=True,
                                    desc=f"SJ {mode}")["accuracy_per_step"]
        except Exception as e:  # noqa: BLE001 - report, keep the rest of the table
            print(f"  SpikingJelly {mode} failed: {type(e).__name__}: {e}")
            sj[mode] = None
        if sj[mode]:
            print(f"  SJ {mode}:", [pct(sj[mode][t - 1]) for t in SERIAL_REPORT], flush=True)
    n_serial = len(serial_test)
    srows = [[t, pct(s_acc[t - 1])] + [pct(sj[m][t - 1]) if sj[m] else "failed"
                                       for m in ("max", "99.9%")] for t in SERIAL_REPORT]
    lines.append(f"\nStep-by-step baselines ({n_serial} test images; accuracy after t steps of "
                 f"one T = {Tmax} run):\n")
    lines.append(md_table(["t", "serial IF, recorded thresholds %",
                           "SpikingJelly 2.0.0 max %", "SpikingJelly 2.0.0 99.9 % %"], srows))
    lines.append("")


def run_qcfs(paths: list[Path], args, train, test, lines: list[str]) -> None:
    rows = []
    for path in paths:
        ann = ls.load(path).eval()
        ann_acc = evaluate(ann, test, batch_size=256)["accuracy"]
        for T in (2, 4):
            par = evaluate_snn(ls.convert(ann, T=T, method="parallel"), test,
                               firing_rate=False)["accuracy"]
            t0 = time.perf_counter()
            snn = ls.convert(ann, T=T, method="calibrated", calib_data=train,
                             max_samples=args.calib_images, progress=False)
            secs = time.perf_counter() - t0
            cal = evaluate_snn(snn, test, firing_rate=False)["accuracy"]
            rows.append([path.stem, pct(ann_acc), T, f"{pct(par)} ({delta(par, ann_acc)})",
                         f"{pct(cal)} ({delta(cal, ann_acc)})", f"{secs:.1f}"])
            print(f"  {path.stem} T={T}: parallel {pct(par)}, calibrated {pct(cal)}",
                  flush=True)
    if rows:
        lines.append("### QCFS L = 8 nets converted at T < L\n")
        lines.append(md_table(["net", "ANN %", "T", "parallel (theta/2 shift) %",
                               "calibrated %", "conversion time s"], rows))
        lines.append("")


def run_modes(path: Path, args, train, test, lines: list[str]) -> None:
    ann = ls.load(path).eval()
    ann_acc = evaluate(ann, test, batch_size=256)["accuracy"]
    rows = []
    for T in (2, 4, 8):
        for mode, n, kw in (("sequential (exact means)", args.calib_images, {}),
                            ("momentum 0.99 (authors)", args.momentum_images,
                             {"mode": "momentum"})):
            t0 = time.perf_counter()
            snn = ls.convert(ann, T=T, method="calibrated", calib_data=train, max_samples=n,
                             progress=False, **kw)
            secs = time.perf_counter() - t0
            acc = evaluate_snn(snn, test, firing_rate=False)["accuracy"]
            rows.append([T, mode, n, f"{pct(acc)} ({delta(acc, ann_acc)})", f"{secs:.1f}"])
            print(f"  modes T={T} {mode}: {pct(acc)} in {secs:.1f} s", flush=True)
    lines.append(f"### Sequential exact-mean fit vs the authors' momentum recipe "
                 f"({path.stem}, ANN {pct(ann_acc)} %)\n")
    lines.append(md_table(["T", "calibration", "images", "accuracy % (vs ANN)", "time s"],
                          rows))
    lines.append("")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=["small_cnn=pretrained/small_cnn_relu.lsnn",
                                                 "resnet20=pretrained/resnet20_relu.lsnn"],
                   help="label=path of ReLU-trained ANN checkpoints (missing ones are skipped)")
    p.add_argument("--qcfs", nargs="*", default=["pretrained/small_cnn_qcfs8.lsnn",
                                                 "pretrained/resnet20_qcfs8.lsnn"])
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--calib-images", type=int, default=1024)
    p.add_argument("--amplitude", default="mean", choices=["mean", "ls"],
                   help="how phi is fitted (CalibrationConfig.amplitude; default mean)")
    p.add_argument("--refine-steps", type=int, default=0, metavar="N",
                   help="also measure calibration + N output-matching refinement steps "
                        "(CalibrationConfig.refine_steps)")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the serial IF and SpikingJelly T = 64 runs")
    p.add_argument("--no-search", action="store_true",
                   help="calibrate without the per-channel threshold scale search")
    p.add_argument("--momentum-images", type=int, default=60000,
                   help="images for the momentum recipe (default: the whole training set)")
    p.add_argument("--test-images", type=int, default=None, help="default: all 10000")
    p.add_argument("--serial-test-images", type=str, nargs="*", default=[],
                   help="label=N: fewer test images for the T = 64 serial / SpikingJelly runs")
    p.add_argument("--no-modes", action="store_true", help="skip sequential vs momentum")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train = ls.data.fashion_mnist("train")
    test = ls.data.fashion_mnist("test").subset(args.test_images, 0)
    serial_n = dict(kv.split("=") for kv in args.serial_test_images)
    lines = [f"Machine: {machine_line()}. Reproduce: `nice -n 10 .venv/bin/python "
             f"benchmarks/calibration.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
             ".\n", "Conversion time = wall time of `ls.convert(..., method=\"calibrated\")` "
             "(tracing, one threshold + calibration pass, building the neurons).\n"]
    summary: list = []
    reduced = []
    for spec in args.nets:
        label, _, path = spec.partition("=")
        path = Path(path) if Path(path).is_absolute() else ROOT / path
        if not path.exists():
            print(f"skipping {label}: {path} does not exist")
            lines.append(f"*{label}: no checkpoint at `{path}` when this ran.*\n")
            continue
        stest = test.subset(int(serial_n[label]), 0) if label in serial_n else test
        if len(stest) < len(test):
            reduced.append(f"{label}: serial IF and SpikingJelly on {len(stest)} test images")
        run_net(label, path, args, train, test, stest, lines, summary)
    qpaths = [ROOT / q if not Path(q).is_absolute() else Path(q) for q in args.qcfs]
    run_qcfs([q for q in qpaths if q.exists()], args, train, test, lines)
    if summary:
        label, rows = summary
        lines.append(f"### What calibration changed, layer by layer ({label}, T = 4)\n")
        lines.append(md_table(
            ["layer", "channels", "mean theta", "mean abs psi", "mean abs phi",
             "mean abs phi / theta"],
            [[r["layer"], r["channels"], f"{r['theta']:.4f}", f"{r['psi']:.5f}",
              f"{r['phi']:.5f}", f"{r['phi_rel']:.3f}"] for r in rows]))
        lines.append("")
    first = next((s for s in args.nets if Path(s.partition("=")[2]).exists()
                  or (ROOT / s.partition("=")[2]).exists()), None)
    if first and not args.no_modes:
        path = Path(first.partition("=")[2])
        run_modes(path if path.is_absolute() else ROOT / path, args, train, test, lines)
    if reduced:
        lines.append("Reduced: " + "; ".join(reduced) + ".\n")
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("calibration", "## Training-free conversion (calibration)\n\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
