"""``leansnn demo``: the main job, on real Fashion-MNIST and the shipped checkpoints.

1. **Conversion** (Hao et al., ICML 2025): the shipped QCFS (L = 4) and ReLU small CNNs are
   converted with the parallel, calibrated (training-free DA calibration) and serial IF
   methods at T = 1, 2, 4, 8; the table gives test accuracy, the change against the ANN,
   inference time per image and its ratio to the ANN's forward pass.
2. **Direct training with ASA** (Yao et al., ICCV 2023): the shipped LIF-SNN and LIF-SNN + ASA
   (``benchmarks/asa.py``, seed 0) are evaluated on emulated-event test recordings with
   background noise: accuracy, NASFR, synaptic operations and energy.
3. **Report**: the redundancy analysis of those two SNNs (``leansnn analyze``) as
   ``report.md`` / ``report.html`` with figures.

Serial IF neurons are causal (step t never looks at later inputs), so one T = max run gives the
accuracy after every t <= T exactly as a T = t run would; its time is measured for T = max.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ._common import add_common, log_stream, positive, progress, setup, write_json

NAME = "demo"
HELP = ("the main job: convert the shipped ANNs (parallel / calibrated / serial), evaluate the "
        "shipped LIF-SNN and LIF-SNN + ASA on event data, write the analysis report")
EXAMPLE = "leansnn demo --out reports/demo --test-images 10000"

CONVERSION_NETS = (  # (file, label, methods)
    ("small_cnn_qcfs4.lsnn", "small_cnn QCFS L=4", ("parallel", "calibrated", "serial")),
    ("small_cnn_relu.lsnn", "small_cnn ReLU", ("calibrated", "serial")),
)
FIRING_IMAGES = 1000  # the firing-rate column is counted on the first 1000 test images
SNN_NETS = (
    ("lif_snn_a_none_seed0.lsnn", "LIF-SNN"),
    ("lif_snn_a_asa_seed0.lsnn", "LIF-SNN + ASA"),
)


def default_pretrained_dir() -> Path:
    import leansnn

    return Path(leansnn.__file__).resolve().parents[2] / "pretrained"


# the SNN part's default number of test recordings (the shipped SNNs were tested on all
# 10,000; a fixed random 2,000 keep the demo well under 3 minutes on 2 CPU cores)
DEMO_EVENT_TEST = 2000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="reports/demo", metavar="DIR",
                   help="folder for the analysis report (default reports/demo)")
    p.add_argument("--pretrained", default=None, metavar="DIR",
                   help="folder with the shipped checkpoints (default: the repository's "
                        "pretrained/)")
    p.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="time steps of the conversion table (default 1 2 4 8)")
    p.add_argument("--test-images", type=int, default=5000, metavar="N",
                   help="Fashion-MNIST test images for the conversion table (default 5000 "
                        "of 10000, the same random subset for every row)")
    p.add_argument("--calib-images", type=int, default=1024, metavar="N",
                   help="unlabeled training images for calibration and recorded thresholds "
                        "(default 1024)")
    p.add_argument("--event-test-images", type=int, default=None, metavar="N",
                   help="emulated-event test recordings for the SNNs (default: the test "
                        "subset each checkpoint was evaluated on when it was trained, at most "
                        f"{DEMO_EVENT_TEST} recordings to keep the demo short)")
    p.add_argument("--skip", nargs="+", default=[], choices=["convert", "snn", "report"],
                   help="leave out parts of the demo")
    p.add_argument("--batch-size", type=int, default=256)
    add_common(p, json_help="also write every figure of the demo as JSON to PATH (no PATH or "
                            "'-': stdout)")


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"shipped checkpoint {path} is missing; run the demo from a clone of the "
            "leansnn repository (make demo) or pass --pretrained DIR")
    return path


def _row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def conversion_table(args: argparse.Namespace, pre: Path, log) -> list[dict]:
    """Part 1: convert each shipped ANN with each method at each T; print and return rows."""
    import leansnn as ls

    test = ls.data.fashion_mnist("test", root=args.root)
    if args.test_images < len(test):
        test = test.subset(args.test_images, args.seed)
    calib = ls.data.fashion_mnist("train", root=args.root).subset(args.calib_images, args.seed)
    rows: list[dict] = []
    print(f"\n[1/3] ANN -> SNN conversion, {len(test)} Fashion-MNIST test images "
          f"(calibration / recorded thresholds: {len(calib)} unlabeled training images)",
          file=log)
    print(_row(["net", "method", "T", "accuracy", "vs ANN", "ms/image", "x ANN", "firing"],
               _WIDTHS), file=log)
    for fname, label, methods in CONVERSION_NETS:
        ann = ls.load(_need(pre / fname)).eval().to(args.device)
        # the ANN is timed like the SNNs: the forward pass alone, in the same loop
        ev = ls.train.evaluate(ann, test, batch_size=args.batch_size, device=args.device,
                               timing=True)
        base = dict(net=label, ann_acc=ev["accuracy"], ann_ms=1e3 * ev["seconds_per_image"])
        rows.append(dict(net=label, method="ANN", T=None, accuracy=ev["accuracy"],
                         ms_per_image=base["ann_ms"]))
        print(_row([label, "ANN", "-", f"{100 * ev['accuracy']:.2f} %", "",
                    f"{base['ann_ms']:.3f}", "1.00", ""], _WIDTHS), file=log, flush=True)
        for method in methods:
            run = _serial_rows if method == "serial" else _method_rows
            rows += run(args, ann, method, test, calib, base, log)
    for n in _lossless_notes(rows):
        print(f"  {n}", file=log)
    print("  ReLU nets need calibration (or recorded thresholds for serial IF); firing = spikes "
          f"per neuron per step (first {min(FIRING_IMAGES, len(test))} images); ms/image of the "
          f"forward pass (batch {args.batch_size}).", file=log)
    return rows


_WIDTHS = [20, 10, 3, 9, 7, 9, 6, 8]


def _print_row(log, method: str, T: int, acc: float, base: dict, ms: float | None,
               firing: float | None) -> None:
    print(_row(["", method, T, f"{100 * acc:.2f} %", f"{100 * (acc - base['ann_acc']):+.2f}",
                f"{ms:.3f}" if ms is not None else "(causal)",
                f"{ms / base['ann_ms']:.2f}" if ms is not None else "",
                f"{firing:.4f}" if firing is not None else ""], _WIDTHS), file=log, flush=True)


def _serial_rows(args, ann, method: str, test, calib, base: dict, log) -> list[dict]:
    """Serial IF is causal: one run at max(T) gives the accuracy after every t."""
    import leansnn as ls
    from leansnn.convert import evaluate_snn
    from leansnn.convert.calibrate import record_thresholds

    Ts = sorted(set(args.T))
    opts = {}
    if ann_is_relu(ann):
        opts["thresholds"] = record_thresholds(ann, calib, max_samples=args.calib_images)
    snn = ls.convert(ann, T=max(Ts), method="serial", **opts).to(args.device)
    r = evaluate_snn(snn, test, batch_size=args.batch_size, device=args.device,
                     progress=progress(args), desc=f"{base['net']}: serial T={max(Ts)}",
                     firing_max_samples=FIRING_IMAGES)
    rows = []
    for T in Ts:
        last = T == max(Ts)
        ms = 1e3 * r["seconds_per_image"] if last else None
        acc = r["accuracy_per_step"][T - 1]
        fr = r["firing_rate"] if last else None
        rows.append(dict(net=base["net"], method="serial", T=T, accuracy=acc, ms_per_image=ms,
                         firing_rate=fr))
        _print_row(log, "serial", T, acc, base, ms, fr)
    return rows


def _method_rows(args, ann, method: str, test, calib, base: dict, log) -> list[dict]:
    """One conversion and evaluation per T (parallel or calibrated)."""
    import leansnn as ls
    from leansnn.convert import evaluate_snn

    rows = []
    for T in sorted(set(args.T)):
        opts = {}
        if method == "calibrated":
            opts = dict(calib_data=calib, max_samples=args.calib_images, progress=False)
        t0 = time.perf_counter()
        snn = ls.convert(ann, T=T, method=method, **opts).to(args.device)
        conv_s = time.perf_counter() - t0
        r = evaluate_snn(snn, test, batch_size=args.batch_size, device=args.device,
                         progress=progress(args), desc=f"{base['net']}: {method} T={T}",
                         firing_max_samples=FIRING_IMAGES)
        ms = 1e3 * r["seconds_per_image"]
        rows.append(dict(net=base["net"], method=method, T=T, accuracy=r["accuracy"],
                         ms_per_image=ms, firing_rate=r["firing_rate"],
                         conversion_seconds=conv_s, levels=_levels(ann)))
        _print_row(log, method, T, r["accuracy"], base, ms, r["firing_rate"])
    return rows


def _lossless_notes(rows: list[dict]) -> list[str]:
    notes = []
    for r in rows:
        if r["method"] == "parallel" and r["T"] == r.get("levels"):
            ann = next(a for a in rows if a["net"] == r["net"] and a["method"] == "ANN")
            same = "the ANN's exactly (lossless)" if r["accuracy"] == ann["accuracy"] else (
                f"ANN {100 * ann['accuracy']:.2f} %: NOT lossless")
            notes.append(f"{r['net']}, parallel at T = L = {r['T']}: "
                         f"{100 * r['accuracy']:.2f} %, {same}")
    return notes


def _levels(model) -> int | None:
    """The QCFS level L of a QCFS network (None for ReLU nets or mixed levels)."""
    from leansnn.convert import QCFS

    levels = {int(m.levels) for m in model.modules() if isinstance(m, QCFS)}
    return levels.pop() if len(levels) == 1 else None


def ann_is_relu(model) -> bool:
    from leansnn.convert import QCFS

    return not any(isinstance(m, QCFS) for m in model.modules())


def snn_results(args: argparse.Namespace, pre: Path, log) -> tuple[list[dict], str]:
    """Part 2: analyse the two shipped directly trained SNNs on their event test data."""
    import leansnn as ls
    from leansnn.analysis import analyze

    results = []
    desc = ""
    for fname, label in SNN_NETS:
        path = _need(pre / fname)
        model = ls.load(path).eval()
        data_meta = model.leansnn_meta.get("meta", {}).get("data", {})
        cfg = model.leansnn_config["kwargs"] if "kwargs" in model.leansnn_config else {}
        T = int(data_meta.get("T") or cfg.get("T", 8))
        size = int(data_meta.get("size") or 32)
        n = args.event_test_images or min(data_meta.get("test_subset") or DEMO_EVENT_TEST,
                                          DEMO_EVENT_TEST)
        noise = data_meta.get("noise_hz")
        test = ls.data.event_fashion_mnist("test", T=T, root=args.root, size=(size, size),
                                           noise_rate_hz=noise, n=n, progress=progress(args))
        desc = (f"emulated-event Fashion-MNIST test recordings ({len(test)}, background noise "
                f"{noise} events/pixel/s), T = {T} frames of {size}x{size}")
        res = analyze(model, test, label, batch_size=args.batch_size, device=args.device,
                      progress=progress(args))
        results.append(res)
    return results, desc


def print_snn_table(results: list[dict], desc: str, log) -> None:
    print(f"\n[2/3] Directly trained LIF SNNs (arch A, BPTT) on {desc}", file=log)
    widths = [14, 9, 7, 11, 10, 11, 11]
    print(_row(["model", "accuracy", "NASFR", "SOPs/input", "MACs/input", "energy µJ",
                "ANN µJ"], widths), file=log)
    for r in results:
        e, m = r["energy"], r["monitor"]
        print(_row([r["label"], f"{100 * r['accuracy']:.2f} %", f"{m['nasfr']:.4f}",
                    f"{e['sops']:.3g}", f"{e['macs']:.3g}", f"{e['energy_pj'] / 1e6:.4g}",
                    f"{e['ann_energy_pj'] / 1e6:.4g}"], widths), file=log)
    if len(results) == 2:
        a, b = results
        drop = 100 * (1 - b["monitor"]["nasfr"] / a["monitor"]["nasfr"])
        print(f"  ASA: NASFR {-drop:+.1f} %, accuracy "
              f"{100 * (b['accuracy'] - a['accuracy']):+.2f} points, energy "
              f"{100 * (b['energy']['energy_pj'] / a['energy']['energy_pj'] - 1):+.1f} % "
              "(E_MAC = 4.6 pJ, E_AC = 0.9 pJ)", file=log)


def next_hints(args: argparse.Namespace, pre: Path, report: dict | None) -> list[str]:
    """What to try next, with paths that work from any folder (absolute checkpoint paths;
    outputs relative to the current folder) and the demo's own --root."""
    import shlex

    def q(p: Any) -> str:
        return shlex.quote(str(Path(p).resolve()))

    root = f" --root {q(args.root)}" if args.root else ""
    first = f"open {q(report['report_html'])}" if report else "leansnn analyze --help"
    return [
        first,
        f"leansnn convert {q(pre / 'small_cnn_relu.lsnn')} --method calibrated --T 1 2 4 8 "
        f"--test-images 2000{root}   # ~1-2 min",
        f"leansnn analyze {q(pre / 'small_cnn_qcfs4.lsnn')} {q(pre / 'small_cnn_qcfs4.lsnn')} "
        f"--convert serial parallel --T 4 --test-images 500 --out serial_vs_parallel{root}"
        "   # ~1 min",
        "leansnn train-snn --attention asa --width 8 --noise-hz 5 --epochs 2 --train-images 1000 "
        f"--test-images 500 --out my_asa.lsnn{root}   # ~3 min; the shipped models: width 8, "
        "4 epochs, all 60,000 recordings (pretrained/README.md)",
        f"leansnn export {q(pre / 'lif_snn_a_none_seed0.lsnn')} --format nir --out lif.nir",
        "leansnn COMMAND --help  (every option with its default)",
    ]


def run(args: argparse.Namespace) -> int:
    import torch

    import leansnn as ls
    from leansnn.analysis import to_json, write_report

    setup(args)
    positive(args, "T", "test_images", "calib_images", "batch_size", "event_test_images")
    torch.manual_seed(args.seed)
    pre = Path(args.pretrained) if args.pretrained else default_pretrained_dir()
    log = log_stream(args)
    ls.data.fashion_mnist("test", root=args.root)  # fail early with the install hint
    t_start = time.perf_counter()
    print(f"leansnn demo: lean SNNs on real Fashion-MNIST (checkpoints from {pre})", file=log)
    out: dict[str, Any] = {}
    if "convert" not in args.skip:
        t0 = time.perf_counter()
        out["conversion"] = conversion_table(args, pre, log)
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=log)
    results: list[dict] = []
    if "snn" not in args.skip or "report" not in args.skip:
        t0 = time.perf_counter()
        results, desc = snn_results(args, pre, log)
        print_snn_table(results, desc, log)
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=log)
        out["snn"] = json.loads(to_json(results))["models"]
    report = None
    if "report" not in args.skip and results:
        report = write_report(results, args.out,
                              title="leansnn demo: LIF-SNN vs LIF-SNN + ASA",
                              data_desc=desc[0].upper() + desc[1:] + ".")
        print(f"\n[3/3] Redundancy report: {report['report_md']} and {report['report_html']} "
              f"(figures in {Path(args.out) / 'figures'})", file=log)
    total = time.perf_counter() - t_start
    out["seconds"] = total
    write_json(args, out)
    print(f"\ndone in {total:.0f} s. Next (each a few minutes on 2 CPU cores):", file=log)
    for line in next_hints(args, pre, report):
        print(f"  {line}", file=log)
    return 0
