"""Robustness check of leansnn's ANN->SNN conversion on torchvision architectures.

torchvision is not a leansnn dependency and PyPI's build does not import beside the CPU
torch 2.13 wheel, so this runs in a venv of its own (torch 2.14.1 + torchvision 0.29.1,
~5.5 GB)::

    python3 -m venv /tmp/tv/venv
    /tmp/tv/venv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy tqdm matplotlib
    /tmp/tv/venv/bin/pip install --no-deps -e .
    nice -n 5 /tmp/tv/venv/bin/python benchmarks/torchvision_check.py            # all, table
    nice -n 5 /tmp/tv/venv/bin/python benchmarks/torchvision_check.py --one NAME # one model
    nice -n 5 /tmp/tv/venv/bin/python benchmarks/torchvision_check.py --table    # table only

Working files (per-model JSON, logs, checkpoints, results.md) go to ``$LEANSNN_TV_DIR``
(default /tmp/tv).

Each model runs in its own subprocess (memory, crashes). Full tracebacks: /tmp/tv/logs/NAME.log.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(os.environ.get("LEANSNN_TV_DIR", "/tmp/tv"))
RES, LOGS, CKPT = ROOT / "res", ROOT / "logs", ROOT / "ckpt"

# name -> (extra torchvision kwargs, input side)
MODELS = {
    "resnet18": ({}, 64),
    "resnext50_32x4d": ({}, 64),
    "vgg11_bn": ({}, 64),
    "mobilenet_v2": ({}, 64),
    "densenet121": ({}, 64),
    "squeezenet1_0": ({}, 64),
    "shufflenet_v2_x1_0": ({}, 64),
    "googlenet": ({"aux_logits": False, "init_weights": True}, 64),
    "inception_v3": ({"aux_logits": False, "init_weights": True}, 96),
    "regnet_x_400mf": ({}, 64),
    "mnasnet1_0": ({}, 64),
    "alexnet": ({}, 64),
    "efficientnet_b0": ({}, 64),       # expected refusal (SiLU, SE products)
    "mobilenet_v3_small": ({}, 64),    # expected refusal (Hardswish, SE products)
}
EXPECT_REFUSAL = {"efficientnet_b0", "mobilenet_v3_small"}
BATCH = 4


# ----------------------------------------------------------------------------------------------
def leansnn_frame(tb) -> str:
    """Innermost traceback frame inside the leansnn package (file:line in function)."""
    frames = [f for f in traceback.extract_tb(tb) if "/leansnn/" in f.filename]
    if not frames:
        f = traceback.extract_tb(tb)[-1]
        return f"(outside leansnn) {Path(f.filename).name}:{f.lineno} in {f.name}"
    f = frames[-1]
    rel = f.filename.split("/src/")[-1]
    return f"{rel}:{f.lineno} in {f.name}"


class Step:
    """Context manager: run a step, record any exception (type, message, leansnn frame)."""

    def __init__(self, res: dict, log, name: str, key: str = "errors"):
        self.res, self.log, self.name, self.key = res, log, name, key

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, et, ev, tb):
        dt = time.perf_counter() - self.t0
        self.log.write(f"[{self.name}] {dt:.2f}s {'OK' if et is None else 'FAILED'}\n")
        if et is None:
            return False
        self.log.write("".join(traceback.format_exception(et, ev, tb)) + "\n")
        self.log.flush()
        self.res.setdefault(self.key, {})[self.name] = {
            "type": et.__name__, "msg": str(ev)[:2000], "where": leansnn_frame(tb)}
        return True  # swallow


def ulp_dist(a, b):
    """ULP distance between two float32 tensors (sign-aware integer ordering)."""
    import torch
    ia = a.contiguous().view(torch.int32).to(torch.int64)
    ib = b.contiguous().view(torch.int32).to(torch.int64)
    ia = torch.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = torch.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return (ia - ib).abs()


def run_one(name: str) -> dict:
    import torch
    import torchvision
    from torch import nn

    torch.set_num_threads(1)
    import leansnn as ls

    @ls.models.register("tvcheck")
    def tvcheck(arch: str, num_classes: int = 10, extra: dict | None = None) -> nn.Module:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes,
                                            **(extra or {}))

    extra, side = MODELS[name]
    res: dict = {"model": name, "input": [BATCH, 3, side, side]}
    LOGS.mkdir(parents=True, exist_ok=True)
    CKPT.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "w")
    log.write(f"torch {torch.__version__} torchvision {torchvision.__version__}\n")
    torch.manual_seed(0)

    relu = ls.models.create("tvcheck", arch=name, num_classes=10, extra=extra)
    # realistic BN statistics: cumulative average over 64 random images, then eval
    for m in relu.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    relu.train()
    with torch.no_grad():
        for _ in range(4):
            relu(torch.randn(16, 3, side, side))
    relu.eval()
    calib = torch.randn(16, 3, side, side)
    x = torch.randn(BATCH, 3, side, side)

    qann = snn4 = snn8 = None
    with Step(res, log, "to_qcfs"):
        qann = ls.conversion.to_qcfs(relu, 4, calib_data=calib)
        res["sites"] = sum(1 for m in qann.modules() if isinstance(m, ls.QCFS))
    if qann is None:
        if name in EXPECT_REFUSAL:  # also see what convert says about the ReLU-free net
            res["expected_refusals"] = res.pop("errors", {})
            with Step(res, log, "convert(relu_model)", key="expected_refusals"):
                ls.convert(relu, T=4)
        log.close()
        return res
    qann.eval()
    with torch.no_grad():
        ref = qann(x)
        res["ann_relu_pred_agree"] = float((relu(x).argmax(-1) == ref.argmax(-1)).float().mean())
    res["out_absmax"] = float(ref.abs().max())
    res["out_std_over_classes"] = float(ref.std(-1).mean())
    with torch.no_grad():
        res["relu_vs_qann_absdiff"] = float((relu(x) - ref).abs().max())

    # 1. convert at T=4 and T=8 --------------------------------------------------------------
    with Step(res, log, "convert T=4"):
        snn4 = ls.convert(qann, T=4)
        ok, why = snn4.fast_path_status()
        res["fast4"], res["fast4_reasons"] = ok, why
    with Step(res, log, "convert T=8"):
        snn8 = ls.convert(qann, T=8)
        ok, why = snn8.fast_path_status()
        res["fast8"], res["fast8_reasons"] = ok, why

    # 2. bit identity at T=4, prediction agreement -------------------------------------------
    y4 = None
    if snn4 is not None:
        with Step(res, log, "snn4(x)"), torch.no_grad():
            y4 = snn4(x)
            m = y4.mean(0)
            neq = m != ref
            res["n_out"] = ref.numel()
            res["n_neq"] = int(neq.sum())
            if res["n_neq"]:
                within = torch.nextafter(m, ref) == ref
                res["n_neq_1ulp"] = int((neq & within).sum())
                ud = ulp_dist(m, ref)
                res["max_ulp"] = int(ud.max())
                res["max_absdiff_mean_vs_ann"] = float((m - ref).abs().max())
                big = (ud > 1).nonzero().tolist()
                res["misses_gt1ulp"] = [
                    {"idx": i, "ref": float(ref[tuple(i)]), "mean": float(m[tuple(i)]),
                     "ulps": int(ud[tuple(i)]),
                     "steps": [float(v) for v in y4[(slice(None), *i)]],
                     "ulp_of_max_step": float(torch.finfo(torch.float32).eps / 2 * 2 * float(
                         y4[(slice(None), *i)].abs().max()))}
                    for i in big[:5]]
            res["pred4"] = float((m.argmax(-1) == ref.argmax(-1)).float().mean())
    if snn8 is not None:
        with Step(res, log, "snn8(x)"), torch.no_grad():
            m8 = snn8(x).mean(0)
            res["pred8"] = float((m8.argmax(-1) == ref.argmax(-1)).float().mean())
            res["absdiff8_vs_ann"] = float((m8 - ref).abs().max())

    # 3. simulate vs fast -----------------------------------------------------------------------
    if y4 is not None:
        with Step(res, log, "simulate T=4 f32"), torch.no_grad():
            ys = snn4(x, engine="simulate")
            res["sim_fast_f32"] = float((ys - y4).abs().max())
            res["sim_ann_f32"] = float((ys.mean(0) - ref).abs().max())
    with Step(res, log, "float64"), torch.no_grad():
        q64 = copy.deepcopy(qann).double()
        x64 = x.double()
        r64 = q64(x64)
        s64c = ls.convert(q64, T=4)
        res["fast4_f64"] = s64c.fast_path_status()[0]
        f64 = s64c(x64)
        s64 = s64c(x64, engine="simulate")
        res["sim_fast_f64"] = float((s64 - f64).abs().max())
        res["fast_ann_f64"] = float((f64.mean(0) - r64).abs().max())
        res["sim_ann_f64"] = float((s64.mean(0) - r64).abs().max())
        res["ann_f64_vs_f32"] = float((r64.float() - ref).abs().max())
        del q64, s64c, f64, s64

    # 5. save / load --------------------------------------------------------------------------
    if y4 is not None:
        path = CKPT / f"{name}.lsnn"
        with Step(res, log, "ls.save"):
            ls.save(snn4, path)
            res["ckpt_kb"] = round(path.stat().st_size / 1024)
        if path.exists():
            with Step(res, log, "ls.load"), torch.no_grad():
                snnl = ls.load(path)
                yl = snnl(x)
                res["load_identical"] = bool(torch.equal(yl, y4))
                if not res["load_identical"]:
                    res["load_maxdiff"] = float((yl - y4).abs().max())
                res["load_fast"] = snnl.fast_path_status()[0]
                res["load_sim_identical"] = bool(torch.equal(snnl(x, engine="simulate"), ys))
                path.unlink()
    if name == "resnet18":  # a plain torchvision model (not from the registry): clear refusal?
        with Step(res, log, "ls.save(plain torchvision)", key="expected_refusals"):
            plain = torchvision.models.resnet18(weights=None, num_classes=10).eval()
            ls.save(ls.convert(ls.conversion.to_qcfs(plain, 4, calib_data=calib), T=4),
                    CKPT / "plain.lsnn")
            res["plain_save"] = "saved (unexpected)"

    # 4. timing -------------------------------------------------------------------------------
    if snn4 is not None:
        with Step(res, log, "timing"), torch.no_grad():
            def tm(fn):
                t0 = time.perf_counter()
                fn(x)
                return time.perf_counter() - t0
            tm(qann), tm(snn4)  # warm-up
            t_ann, t4, t32 = [tm(qann)], [tm(snn4)], []
            snn32 = None
            if t_ann[0] <= 2.0:
                snn32 = ls.convert(qann, T=32)
                res["fast32"] = snn32.fast_path_status()[0]
                tm(snn32)
                t32.append(tm(snn32))
            for _ in range(2):
                t_ann.append(tm(qann))
                t4.append(tm(snn4))
                if snn32 is not None:
                    t32.append(tm(snn32))
            a = statistics.median(t_ann)
            res["t_ann"] = a
            res["ratio4"] = statistics.median(t4) / a
            res["ratio32"] = statistics.median(t32) / a if t32 else None
    log.close()
    return res


# ----------------------------------------------------------------------------------------------
def fmt(v, spec=".1e"):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def table(results: list[dict]) -> str:
    head = ["model", "in", "sites", "fast T4/T8", "neq@T4 (>1ulp, maxulp)", "pred T4/T8",
            "sim-fast f32", "sim-fast f64", "fast-ANN f64", "save/load", "ANN s",
            "ratio T4", "ratio T32", "errors"]
    rows = []
    for r in results:
        e = r.get("errors", {})
        neq = "-"
        if "n_neq" in r:
            n = r["n_neq"]
            neq = f"{n}/{r['n_out']}" if n == 0 else (
                f"{n}/{r['n_out']} ({n - r['n_neq_1ulp']}, {r['max_ulp']})")
        sl = "-"
        if "load_identical" in r:
            sl = "identical" if r["load_identical"] and r["load_sim_identical"] else "MISMATCH"
        elif "ls.save" in e or "ls.load" in e:
            sl = "ERROR"
        rows.append([
            r["model"], str(r["input"][2]), fmt(r.get("sites")),
            f"{fmt(r.get('fast4'))}/{fmt(r.get('fast8'))}", neq,
            f"{fmt(r.get('pred4'), '.2f')}/{fmt(r.get('pred8'), '.2f')}",
            fmt(r.get("sim_fast_f32")), fmt(r.get("sim_fast_f64")), fmt(r.get("fast_ann_f64")),
            sl, fmt(r.get("t_ann"), ".2f"), fmt(r.get("ratio4"), ".2f"),
            fmt(r.get("ratio32"), ".2f"),
            ", ".join(e) if e else "-"])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    notes = []
    for r in results:
        for k in ("fast4_reasons", "fast8_reasons"):
            if r.get(k):
                notes.append(f"- {r['model']} {k}: " + "; ".join(r[k]))
        for mi in r.get("misses_gt1ulp", []):
            notes.append(f"- {r['model']} >1-ulp miss at {mi['idx']}: ANN {mi['ref']:.9g}, "
                         f"SNN mean {mi['mean']:.9g} ({mi['ulps']} ulp); per-step outputs "
                         + ", ".join(f"{v:.6g}" for v in mi["steps"]))
        if r.get("pred8") is not None:
            notes.append(f"- {r['model']} context: |ANN logits| max {r['out_absmax']:.3g}, "
                         f"class std {r['out_std_over_classes']:.3g}; max|ReLU-ANN - QCFS-ANN| "
                         f"{r['relu_vs_qann_absdiff']:.3g}; max|SNN(T=8) mean - QCFS-ANN| "
                         f"{r['absdiff8_vs_ann']:.3g}")
        for step, err in r.get("expected_refusals", {}).items():
            notes.append(f"- {r['model']} [{step}] (expected refusal) {err['type']} at "
                         f"{err['where']}: " + err["msg"].replace("\n", " / ")[:900])
        for step, err in r.get("errors", {}).items():
            notes.append(f"- {r['model']} [{step}] {err['type']} at {err['where']}: "
                         + err["msg"].replace("\n", " / ")[:600])
    return "\n".join(out) + ("\n\nNotes:\n" + "\n".join(notes) if notes else "") + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    a = ap.parse_args()
    RES.mkdir(parents=True, exist_ok=True)
    if a.one:
        res = run_one(a.one)
        (RES / f"{a.one}.json").write_text(json.dumps(res, indent=1))
        return
    if not a.table:
        for name in a.models:
            t0 = time.time()
            p = subprocess.run([sys.executable, __file__, "--one", name],
                               capture_output=True, text=True)
            print(f"{name}: rc={p.returncode} {time.time() - t0:.0f}s", flush=True)
            if p.returncode != 0:
                (RES / f"{name}.json").write_text(json.dumps(
                    {"model": name, "input": [BATCH, 3, MODELS[name][1], MODELS[name][1]],
                     "errors": {"process": {"type": f"rc={p.returncode}",
                                            "msg": p.stderr[-1500:], "where": "?"}}}))
                (LOGS / f"{name}.proc.log").write_text(p.stdout + p.stderr)
    results = [json.loads((RES / f"{n}.json").read_text()) for n in MODELS
               if (RES / f"{n}.json").exists()]
    text = table(results)
    (ROOT / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
