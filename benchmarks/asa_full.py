"""The ASA claim at full scale: LIF-SNN vs LIF-SNN + ASA on all 60,000 emulated-event
Fashion-MNIST training recordings and the full 10,000-recording test set, several seeds, plus
what fixing the authors' defects is worth (``asa_authors``: batch-union masks, frozen
alpha/beta/FC) and lambda in {0.25, 0.5, 0.75}.

A *plan* is a list of runs (variant x width x seed x lambda), advanced a budget at a time::

    nice -n 10 .venv/bin/python benchmarks/asa_full.py --runs /work/runs/asa_full --budget 120
    .venv/bin/python benchmarks/asa_full.py --runs /work/runs/asa_full --status   # what is left
    .venv/bin/python benchmarks/asa_full.py --runs /work/runs/asa_full --report   # BENCHMARKS.md

Each run is one ``leansnn train-snn`` process writing ``<runs>/<name>/model.lsnn``, its
per-epoch resumable checkpoint ``model.lsnn.train`` and ``report.json``, followed by one
``leansnn analyze --no-report`` pass over the test set (``analysis/metrics.json``: SOPs,
energy, per-layer rates). A finished run (its metrics exist) is skipped; an interrupted one
continues from its last finished epoch (train-snn's exact resume: same weights, optimiser,
schedule and random state as an uninterrupted run). ``--jobs`` processes run side by side
with ``--threads`` torch threads each; when ``--budget`` minutes are spent the running
processes are stopped (losing at most the epoch in progress) and the script prints what is
left. ``--report`` copies every finished run's small files to ``benchmarks/results/asa_full``
(committed, so the table can be rebuilt without the runs folder) and writes the
``asa_full`` section of BENCHMARKS.md: mean +- standard deviation over seeds, paired
differences per seed, test-accuracy curves (``asa_full_curves.png``) and the redundancy
report (``leansnn analyze``) of the best pair.

Protocol: the emulated recordings are 300 ms long (three 100 ms saccades); each is binned into
T = 8 frames of 37.5 ms and the model sees the whole recording (the fixed-window protocol).
The paper's random-window training and voted evaluation need recordings much longer than the
T-frame window (DVS128 Gesture: ~6 s); they are available for event sets read from folders
(``train-snn --dt-ms``) and are not used here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, md_table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "asa_full"
VARIANT_LABEL = {"none": "LIF-SNN", "asa": "LIF-SNN + ASA",
                 "asa_authors": "LIF-SNN + ASA (authors' code)"}


@dataclasses.dataclass(frozen=True)
class Run:
    variant: str  # none | asa | asa_authors
    width: int
    seed: int
    lam: float = 0.5

    @property
    def name(self) -> str:
        lam = "" if self.variant == "none" or self.lam == 0.5 else f"_lam{self.lam:g}"
        return f"w{self.width}_{self.variant}{lam}_s{self.seed}"

    @property
    def label(self) -> str:
        lam = "" if self.variant == "none" or self.lam == 0.5 else f", λ = {self.lam:g}"
        return VARIANT_LABEL[self.variant] + lam


def make_plan(a: argparse.Namespace) -> list[Run]:
    """The runs of ``--plan`` in order of priority (duplicates dropped)."""
    runs: list[Run] = []
    for part in a.plan:
        if part == "main":  # pairs first, so that every finished seed is a paired comparison
            runs += [Run(v, a.width, s) for s in a.seeds for v in ("none", "asa")]
        elif part == "authors":
            runs += [Run("asa_authors", a.width, s) for s in a.ablation_seeds]
        elif part == "lam":
            runs += [Run("asa", a.width, s, lam) for s in a.lam_seeds
                     for lam in (0.25, 0.75)]
        elif part == "wide":
            runs += [Run(v, a.wide_width, s) for s in a.wide_seeds for v in ("none", "asa")]
        else:
            raise SystemExit(f"--plan: unknown part {part!r} (main, authors, lam, wide)")
    seen: set[Run] = set()
    return [r for r in runs if not (r in seen or seen.add(r))]


def train_argv(a: argparse.Namespace, run: Run, folder: Path, threads: int) -> list[str]:
    """The ``leansnn train-snn`` command line of one run (a rerun must give the same one)."""
    argv = ["train-snn", "--model", "lif_snn_a", "--data", "event_fashion_mnist",
            "--T", str(a.T), "--size", "32", "--noise-hz", str(a.noise_hz),
            "--attention", run.variant, "--width", str(run.width), "--dropout", "0.1",
            "--epochs", str(a.epochs), "--batch-size", "32", "--lr", str(a.lr),
            "--loss", "mse", "--seed", str(run.seed), "--threads", str(threads),
            "--device", "cpu", "--quiet", "--out", str(folder / "model.lsnn"),
            "--json", str(folder / "report.json")]
    if run.variant != "none":
        argv += ["--lam", str(run.lam)]
    return argv


def analyze_argv(folder: Path, threads: int) -> list[str]:
    return ["analyze", str(folder / "model.lsnn"), "--out", str(folder / "analysis"),
            "--no-report", "--threads", str(threads), "--quiet"]


def state(a: argparse.Namespace, run: Run) -> tuple[str, int]:
    """(``done`` | ``analyse`` | ``partial`` | ``todo``, epochs finished)."""
    folder = Path(a.runs) / run.name
    if (folder / "analysis" / "metrics.json").exists() or (RESULTS / run.name /
                                                            "metrics.json").exists():
        return "done", a.epochs  # finished here, or earlier and committed (--report)
    if (folder / "report.json").exists() and (folder / "model.lsnn").exists():
        return "analyse", a.epochs
    ckpt = folder / "model.lsnn.train"
    if ckpt.exists():
        from leansnn.train import stored_run

        try:
            return "partial", stored_run(ckpt)[2]
        except Exception as e:  # noqa: BLE001 - reported, the run restarts from its checkpoint
            print(f"warning: {ckpt}: {e}", file=sys.stderr)
    return "todo", 0


def minutes_per_epoch(a: argparse.Namespace, run: Run) -> float:
    """Estimated minutes per epoch: the mean over finished epochs of this kind of run (same
    variant and width), else the rough costs measured for width 8 with one thread each."""
    secs = []
    for p in Path(a.runs).glob(f"w{run.width}_{run.variant}_*/model.metrics.csv"):
        import csv

        with open(p, newline="") as f:
            secs += [float(r["seconds"]) + float(r.get("test_seconds") or 0)
                     for r in csv.DictReader(f) if r.get("seconds")]
    if secs:
        return statistics.fmean(secs) / 60
    base = {"none": 5.0, "asa": 7.5, "asa_authors": 8.0}[run.variant]
    return base * (run.width / 8) ** 1.5


def print_status(a: argparse.Namespace, plan: list[Run]) -> float:
    """Print one line per run and the estimated minutes left (one process); return them."""
    left = 0.0
    for run in plan:
        st, ep = state(a, run)
        rest = (a.epochs - ep) * minutes_per_epoch(a, run) + (1.5 if st != "done" else 0)
        left += rest if st != "done" else 0
        what = {"done": "done", "analyse": "trained, analysis left",
                "partial": f"{ep}/{a.epochs} epochs", "todo": "not started"}[st]
        print(f"  {run.name:28s} {what:24s}" + (f" ~{rest:.0f} min left" if st != "done"
                                                 else ""))
    print(f"left: ~{left:.0f} process-minutes, ~{left / a.jobs:.0f} min with {a.jobs} jobs")
    return left


class Job:
    """One run as a chain of subprocesses (train-snn, then analyze)."""

    def __init__(self, a: argparse.Namespace, run: Run) -> None:
        self.a, self.run = a, run
        self.folder = Path(a.runs) / run.name
        self.folder.mkdir(parents=True, exist_ok=True)
        st, _ = state(a, run)
        self.steps = ([] if st == "analyse" else [train_argv(a, run, self.folder, a.threads)])
        self.steps.append(analyze_argv(self.folder, a.threads))
        self.proc: subprocess.Popen | None = None
        self.log = open(self.folder / "log.txt", "a")  # noqa: SIM115 - closed in finish()

    def poll(self) -> bool:
        """Advance; True while the job still runs."""
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is None:
                return True
            if rc != 0:
                self.finish()
                raise SystemExit(f"{self.run.name}: `leansnn {shlex.join(self.steps[0])}` "
                                 f"failed with exit {rc}; see {self.folder / 'log.txt'}")
            self.steps.pop(0)
        if not self.steps:
            self.finish()
            print(f"finished {self.run.name}", flush=True)
            return False
        cmd = [sys.executable, "-m", "leansnn", *self.steps[0]]
        print(f"[{time.strftime('%H:%M')}] {self.run.name}: leansnn "
              f"{shlex.join(self.steps[0])}", flush=True)
        self.log.write(f"\n$ {shlex.join(cmd)}\n")
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.finish()

    def finish(self) -> None:
        if not self.log.closed:
            self.log.close()


def advance(a: argparse.Namespace, plan: list[Run]) -> None:
    """Run the plan's unfinished runs, ``--jobs`` at a time, until done or out of budget."""
    deadline = time.monotonic() + 60 * a.budget
    queue = [r for r in plan if state(a, r)[0] != "done"]
    jobs: list[Job] = []
    try:
        while queue or jobs:
            jobs = [j for j in jobs if j.poll()]
            left = (deadline - time.monotonic()) / 60
            while queue and len(jobs) < a.jobs:
                run = queue[0]
                if left < min(a.min_start, minutes_per_epoch(a, run)) and \
                        state(a, run)[0] != "analyse":
                    break  # not enough budget left for one epoch of it
                queue.pop(0)
                job = Job(a, run)
                jobs.append(job)
                job.poll()
            if left <= 0 or (not jobs and queue):
                break
            time.sleep(5)
    finally:
        for j in jobs:
            print(f"stopping {j.run.name} (budget spent; it resumes from its last epoch)")
            j.stop()


# ----------------------------------------------------------------------------------------
# report


def _ms(v: list[float], fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    """mean ± std (sample standard deviation; just the value for one run)."""
    if not v:
        return "–"
    m = statistics.fmean(v) * scale
    if len(v) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ± {fmt.replace('+', '').format(statistics.stdev(v) * scale)}"


def collect(a: argparse.Namespace, plan: list[Run]) -> dict[Run, dict]:
    """Finished runs: copy their small files to benchmarks/results/asa_full and read them."""
    out = {}
    for run in plan:
        src = Path(a.runs) / run.name
        dst = RESULTS / run.name
        if (src / "analysis" / "metrics.json").exists():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / "report.json", dst / "report.json")
            shutil.copy2(src / "analysis" / "metrics.json", dst / "metrics.json")
        if (dst / "metrics.json").exists():
            rep = json.loads((dst / "report.json").read_text())
            met = json.loads((dst / "metrics.json").read_text())["models"][0]
            out[run] = dict(report=rep, metrics=met)
    return out


def _row(run_or_label, rs: list[dict]) -> list[str]:
    acc = [r["metrics"]["accuracy"] for r in rs]
    nas = [r["metrics"]["monitor"]["nasfr"] for r in rs]
    sops = [r["metrics"]["energy"]["sops"] for r in rs]
    en = [r["metrics"]["energy"]["energy_pj"] for r in rs]
    layers = list(rs[0]["metrics"]["monitor"]["layers"])
    rates = " / ".join(_ms([r["metrics"]["monitor"]["layers"][k]["rate"] for r in rs],
                           "{:.3f}") for k in layers)
    per_seed = " / ".join(f"{100 * a:.2f}" for a in acc)
    secs = [statistics.fmean(h["seconds"] for h in r["report"]["history"]) / 60 for r in rs]
    return [run_or_label, str(len(rs)), _ms(acc, scale=100), per_seed,
            _ms(nas, "{:.4f}"), rates, _ms(sops, "{:.2f}", 1e-6), _ms(en, "{:.2f}", 1e-6),
            _ms(secs, "{:.1f}")]


def report(a: argparse.Namespace, plan: list[Run]) -> str:
    done = collect(a, plan)
    if not done:
        raise SystemExit(f"no finished runs in {a.runs} or {RESULTS}")
    groups: dict[tuple, list[Run]] = {}
    for run in done:
        groups.setdefault((run.width, run.variant, run.lam), []).append(run)
    layer_names = list(next(iter(done.values()))["metrics"]["monitor"]["layers"])
    rows = [_row(f"{groups[k][0].label}, width {k[0]}", [done[r] for r in groups[k]])
            for k in sorted(groups, key=lambda k: (k[0], k[1] != "none", k[1], k[2]))]
    head = ["network", "seeds", "test acc. (%)", "per seed (%)", "NASFR",
            "layer rates (" + ", ".join(layer_names) + ")", "SOPs (M / input)",
            "energy (µJ / input)", "min / epoch"]
    parts = [md_table(head, rows)]
    # paired comparisons: each variant against the baseline of the same width and seed
    prow = []
    for run in sorted(done, key=lambda r: (r.width, r.variant, r.lam, r.seed)):
        if run.variant == "none":
            continue
        base = done.get(Run("none", run.width, run.seed))
        if base is None:
            continue
        m, b = done[run]["metrics"], base["metrics"]
        prow.append([f"{run.label}, width {run.width}", str(run.seed),
                     f"{100 * (m['accuracy'] - b['accuracy']):+.2f}",
                     f"{100 * (m['monitor']['nasfr'] / b['monitor']['nasfr'] - 1):+.1f}",
                     f"{100 * (m['energy']['energy_pj'] / b['energy']['energy_pj'] - 1):+.1f}"])
    summary = _paired_summary(done)
    parts.append("Paired with the baseline of the same seed and width (variant − baseline):\n\n"
                 + md_table(["variant", "seed", "Δ accuracy (points)", "Δ NASFR (%)",
                             "Δ energy (%)"], prow) + "\n\n" + summary)
    parts.append(_curve_table(done, groups))
    curve = _plot_curves(done)
    best = _best_pair(a, done)
    seeds = {"main": f"--seeds {' '.join(map(str, a.seeds))}",
             "authors": f"--ablation-seeds {' '.join(map(str, a.ablation_seeds))}",
             "lam": f"--lam-seeds {' '.join(map(str, a.lam_seeds))}",
             "wide": f"--wide-width {a.wide_width} --wide-seeds "
                     f"{' '.join(map(str, a.wide_seeds))}"}
    plan = " ".join(a.plan) + "".join(f" {seeds[p]}" for p in a.plan)
    cmd = ("nice -n 10 .venv/bin/python benchmarks/asa_full.py --runs RUNS "
           f"--plan {plan} --epochs {a.epochs} --budget MINUTES`, repeated until `--status` "
           f"shows nothing left, then `... --plan {plan} --report --note TEXT")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(a.threads)  # what machine_line() reports: the runs' threads
    machine = machine_line()
    torch.set_num_threads(before)
    protocol = ("Protocol: each emulated recording is 300 ms (three 100 ms saccades of the "
                "emulator) binned into T frames over the whole recording, and the model sees "
                "the whole recording (the fixed-window protocol). The paper's random-window "
                "training with voted evaluation needs recordings much longer than a T-frame "
                "window (DVS128 Gesture: ~6 s); leansnn has it for event sets read from "
                "folders (`train-snn --dt-ms`), and it is not used here.")
    text = (f"## ASA at full scale: LIF-SNN vs LIF-SNN + ASA, all of emulated-event "
            f"Fashion-MNIST\n\n{machine}; runs side by side, {a.threads} thread(s) "
            f"each. Data: `ls.data.event_fashion_mnist`, all 60,000 training and 10,000 test "
            f"recordings, T = {a.T} frames of 32x32 per 300 ms recording (fixed-window "
            f"protocol, see below), background noise {a.noise_hz} events/pixel/s. Model "
            f"`lif_snn_a` (channels w/2w/2w, FC 256), dropout 0.1, paper LIF (decay 0.3, "
            f"threshold 0.3, hard reset, rectangular surrogate a = 0.25); {a.epochs} epochs, "
            f"batch 32, Adam lr {a.lr} cosine to 1e-6, weight decay 1e-4, MSE on output "
            f"rates. Accuracy, NASFR, per-layer rates, SOPs and energy (45 nm: 4.6 pJ/MAC, "
            f"0.9 pJ/AC) are `leansnn analyze` on the full test set after the last epoch; "
            f"mean ± sample standard deviation over seeds.\n\n" + "\n\n".join(parts)
            + f"\n\n![test accuracy per epoch]({curve})\n\n{protocol}\n\n{best}\n\n"
            f"{a.note + chr(10) + chr(10) if a.note else ''}Command: `{cmd}`\n")
    return text


def _curve_table(done: dict[Run, dict], groups: dict[tuple, list[Run]]) -> str:
    """Mean test accuracy (10,000 recordings) after each epoch, per variant."""
    rows, epochs = [], 0
    for k in sorted(groups, key=lambda k: (k[0], k[1] != "none", k[1], k[2])):
        hists = [done[r]["report"]["history"] for r in groups[k]]
        epochs = max(epochs, *(len(h) for h in hists))
        cells = []
        for e in range(epochs):
            v = [h[e]["test_accuracy"] for h in hists if len(h) > e]
            cells.append(_ms(v, scale=100))
        rows.append([f"{groups[k][0].label}, width {k[0]}", *cells])
    return ("Test accuracy (%) after each epoch (mean ± std over seeds):\n\n"
            + md_table(["network", *[f"epoch {e + 1}" for e in range(epochs)]], rows))


def _paired_summary(done: dict[Run, dict]) -> str:
    lines = []
    keys = sorted({(r.variant, r.width, r.lam) for r in done if r.variant != "none"},
                  key=lambda k: (k[1], k[0], k[2] != 0.5, k[2]))
    for variant, width, lam in keys:
        pairs = [(done[r]["metrics"], done[Run("none", width, r.seed)]["metrics"])
                 for r in sorted(done, key=lambda r: r.seed)
                 if (r.variant, r.width, r.lam) == (variant, width, lam)
                 and Run("none", width, r.seed) in done]
        if not pairs:
            continue
        label = VARIANT_LABEL[variant] + ("" if lam == 0.5 else f", λ = {lam:g}")
        da = [100 * (m["accuracy"] - b["accuracy"]) for m, b in pairs]
        dn = [100 * (m["monitor"]["nasfr"] / b["monitor"]["nasfr"] - 1) for m, b in pairs]
        base_sd = [100 * b["accuracy"] for _, b in pairs]
        spread = f"{statistics.stdev(base_sd):.2f}" if len(base_sd) > 1 else "n/a"
        wins = sum(d > 0 for d in da)
        lines.append(f"- {label}, width {width}, {len(pairs)} paired "
                     f"seed(s): accuracy {_ms(da, '{:+.2f}')} points (higher on {wins} of "
                     f"{len(pairs)} seeds), NASFR {_ms(dn, '{:+.1f}')} % (the baseline's "
                     f"seed-to-seed standard deviation of accuracy: {spread} points).")
    return "\n".join(lines)


def _plot_curves(done: dict[Run, dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leansnn.base.io import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"none": "tab:blue", "asa": "tab:orange", "asa_authors": "tab:green"}
    styles = {0.25: ":", 0.5: "-", 0.75: "--"}
    for run, d in sorted(done.items(), key=lambda kv: kv[0].name):
        h = d["report"]["history"]
        ax.plot(range(1, len(h) + 1), [100 * e["test_accuracy"] for e in h],
                color=colors[run.variant], ls=styles.get(run.lam, "-"),
                lw=1.0 if run.width == 8 else 2.0, marker="o", ms=3,
                label=f"{run.label}, w{run.width}, seed {run.seed}")
    epochs = max(len(d["report"]["history"]) for d in done.values())
    ax.set_xticks(range(1, epochs + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%), 10,000 recordings")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    name = "asa_full_curves.png"
    atomic_write(ROOT / "benchmarks" / "results" / name,
                 lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return f"benchmarks/results/{name}"


def _best_pair(a: argparse.Namespace, done: dict[Run, dict]) -> str:
    """Run the full redundancy report on the seed whose ASA run is most accurate."""
    pairs = [r for r in done if r.variant == "asa" and r.lam == 0.5 and r.width == a.width
             and Run("none", r.width, r.seed) in done]
    if not pairs:
        return ""
    best = max(pairs, key=lambda r: done[r]["metrics"]["accuracy"])
    base = Run("none", best.width, best.seed)
    out = RESULTS / "report_best_pair"
    models = [Path(a.runs) / r.name / "model.lsnn" for r in (base, best)]
    if a.analyze_best and all(m.exists() for m in models):
        cmd = [sys.executable, "-m", "leansnn", "analyze", *map(str, models), "--out", str(out),
               "--labels", "LIF-SNN", "LIF-SNN+ASA", "--quiet"]
        print("$ " + shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    if not out.exists():
        return ""
    return (f"Redundancy report of the best pair (seed {best.seed}, width {best.width}): "
            f"`benchmarks/results/asa_full/report_best_pair/` (`leansnn analyze "
            f"{base.name}/model.lsnn {best.name}/model.lsnn --labels LIF-SNN LIF-SNN+ASA`).")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(ROOT / "runs" / "asa_full"),
                   help="folder of the runs (checkpoints; large, not committed)")
    p.add_argument("--plan", nargs="+", default=["main", "authors", "lam", "wide"],
                   help="parts in order of priority: main (none/asa x --seeds), authors "
                        "(asa_authors x --ablation-seeds), lam (asa at lambda 0.25 and 0.75 x "
                        "--lam-seeds), wide (none/asa at --wide-width x --wide-seeds)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ablation-seeds", type=int, nargs="+", default=[0],
                   help="seeds of the authors' variant (plan part authors)")
    p.add_argument("--lam-seeds", type=int, nargs="+", default=[0],
                   help="seeds of the lambda sweep (plan part lam)")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--wide-width", type=int, default=16)
    p.add_argument("--wide-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--T", type=int, default=8)
    p.add_argument("--noise-hz", type=float, default=5.0)
    p.add_argument("--budget", type=float, default=60.0, help="minutes to spend (default 60)")
    p.add_argument("--min-start", type=float, default=5.0,
                   help="do not start a run with less than this many minutes left")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--status", action="store_true", help="only print what is left")
    p.add_argument("--report", action="store_true",
                   help="only write the report of the finished runs")
    p.add_argument("--no-analyze-best", dest="analyze_best", action="store_false",
                   help="--report: keep the existing best-pair redundancy report")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--note", default="", help="text added to the BENCHMARKS.md section")
    a = p.parse_args(argv)
    if a.budget < 0 or a.jobs < 1 or a.threads < 1 or a.epochs < 1:
        raise SystemExit("--budget must be >= 0 and --jobs, --threads, --epochs >= 1")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    plan = make_plan(a)
    print(f"plan: {len(plan)} runs of {a.epochs} epochs in {a.runs}")
    if a.report:
        md = report(a, plan)
        print(md)
        if not a.no_write:
            write_section("asa_full", md)
        return 0
    print_status(a, plan)
    if a.status:
        return 0
    advance(a, plan)
    print("after this budget:")
    print_status(a, plan)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
