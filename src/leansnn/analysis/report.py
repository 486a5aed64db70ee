"""One-pass analysis of a model over a data set, and the report (``report.md`` + a
self-contained ``report.html`` with the PNG figures embedded as base64).

``analyze(model, data)`` runs the data once through the model with a
:class:`~leansnn.analysis.Monitor` and an :class:`~leansnn.analysis.energy.OpCounter`
attached and returns accuracy, the monitor summary and the energy counts;
``write_report([result, ...], out_dir)`` draws the figures and writes the report for one
model, or two side by side (e.g. LIF-SNN vs LIF-SNN + ASA, serial vs parallel conversion).
"""

from __future__ import annotations

import base64
import errno
import html
import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.io import atomic_write
from ..evaluation import evaluate, evaluate_votes
from .energy import OpCounter
from .monitor import Monitor, MonitorConfig

__all__ = ["analyze", "write_report", "write_metrics", "to_json", "check_out_dir"]


@torch.no_grad()
def analyze(model: nn.Module, data: Any, label: str = "model", *, batch_size: int = 256,
            max_batches: int | None = None, max_samples: int | None = None, capture: int = 1,
            bins: int = 90, e_mac: float = 4.6, e_ac: float = 0.9, device: str = "cpu",
            progress: bool = False, vote: str | None = None) -> dict:
    """Run ``data`` through ``model`` once (eval mode) and collect every metric.

    ``data``: anything :func:`leansnn.base.batching.iter_batches` reads (a tensor, an
    ``(x, y)`` pair, a ``Dataset``, a ``DataLoader``, an iterable of batches), read up to
    ``max_batches`` batches / ``max_samples`` samples; ``x`` is what the model takes
    (``[B, ...]`` static or ``[T, B, ...]`` sequences). One pass of
    :func:`leansnn.evaluation.evaluate` with a :class:`Monitor` and an :class:`OpCounter`
    attached. ``vote`` (``"majority"`` | ``"sum"``; event data sets) runs
    :func:`leansnn.evaluation.evaluate_votes` instead: every window of every recording is
    analysed, ``accuracy`` is per recording and ``window_accuracy`` per window.
    Returns ``{"label", "accuracy" (None without labels), "inputs", "monitor":
    Monitor.summary(), "energy": OpCounter.result(), "captured": {layer: bool spikes [T,
    capture, ...]}}``.
    """
    model.to(device)
    mon = Monitor(model, MonitorConfig(bins=bins, capture=capture))
    ops = OpCounter(model, e_mac, e_ac)
    limits = {"max_batches": max_batches, "max_samples": max_samples}
    run: Any = evaluate
    if vote is not None:
        run, limits = partial(evaluate_votes, how=vote), {}
    ev = run(model, data, batch_size, device, progress, f"analyse {label}", **limits,
             firing_rate=False, during=(mon, ops), on_batch=ops.add_batch)
    _check_observed(mon, label)
    extra = {} if vote is None else {"window_accuracy": ev["window_accuracy"],
                                     "windows": ev["windows"], "vote": vote}
    return {
        "label": label,
        "accuracy": ev["accuracy"],
        **extra,
        "inputs": ops.inputs,
        "monitor": mon.summary(),
        "energy": ops.result(),
        "captured": {name: mon.layers[name].captured_s for name in mon.layers},
    }


def _check_observed(mon: Monitor, label: str) -> None:
    """A clear error when no spiking layer reported a forward pass: every spike metric
    would be undefined (NaN) and the energy would count no spikes."""
    if mon.samples == 0:
        names = ", ".join(list(mon.layers)[:4]) + (", ..." if len(mon.layers) > 4 else "")
        raise ValueError(
            f"{label}: none of the spiking layers ({names}) reported a forward pass over the "
            "data, so there are no spikes to analyse. Neurons driven one step at a time with "
            ".step() are not observed: call them on the whole window, neuron(x) with x "
            "[T, B, ...]")


JSON_SCHEMA = "leansnn.analysis/2"


def to_json(results: list[dict]) -> str:
    """All metrics of :func:`analyze` results as strict JSON text (captured tensors left
    out; NaN and infinities as ``null``), one schema for any number of models:
    ``{"schema": "leansnn.analysis/2", "models": [result, ...]}``."""
    clean = [{k: v for k, v in r.items() if k != "captured"} for r in results]
    return json.dumps(_strict({"schema": JSON_SCHEMA, "models": clean}), indent=1,
                      allow_nan=False)


def _strict(v: Any) -> Any:
    """``v`` as plain JSON data: tensors as lists, tuples as lists, non-finite floats None."""
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if hasattr(v, "item") and type(v).__module__.split(".")[0] == "numpy":
        return _strict(v.item())
    raise TypeError(f"not JSON-able: {type(v).__name__}")


# -- formatting ---------------------------------------------------------------------------------
def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _si(v: float, unit: str) -> str:
    for div, pre in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {pre}{unit}"
    return f"{v:.3g} {unit}"


def _energy(pj: float) -> str:
    for div, unit in ((1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= div:
            return f"{pj / div:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _blocks(results: list[dict], figs: dict[str, Path], title: str, data_desc: str) -> list:
    """The report as a list of blocks: ("h1"|"h2"|"p", text), ("table", headers, rows),
    ("img", path, caption)."""
    B: list = [("h1", title)]
    B.append(("p", data_desc))
    B.append(("h2", "Summary"))
    head = ["model", "accuracy", "NASFR", "spikes / input", "SOPs / input", "MACs / input",
            "energy / input", "ANN energy / input", "SNN / ANN energy"]
    rows = []
    for r in results:
        m, e = r["monitor"], r["energy"]
        rows.append([r["label"], _pct(r["accuracy"]), _f(m["nasfr"]),
                     _si(m["spikes_per_input"], ""), _si(e["sops"], ""), _si(e["macs"], ""),
                     _energy(e["energy_pj"]), _energy(e["ann_energy_pj"]),
                     _f(e["ratio_to_ann"], 3)])
    B.append(("table", head, rows))
    B.append(("p", "NASFR = all spikes / (T · all spiking neurons), over every input seen. "
                   f"Energy = E_MAC·MACs + E_AC·SOPs with E_MAC = {results[0]['energy']['e_mac']} "
                   f"pJ, E_AC = {results[0]['energy']['e_ac']} pJ; SOPs are counted from the "
                   "spikes that actually reach each conv/linear layer times that input's exact "
                   "fan-out (average-pooled spikes: each spike in the window once; event "
                   "counts: each event once); layers fed with analog values (the first layer of "
                   "a directly encoded network) count dense MACs. The ANN column is the same "
                   "architecture run once per input with dense MACs."))
    B.append(("h2", "Firing rates"))
    B.append(("img", figs["layer_rates"], "Firing rate per spiking layer."))
    B.append(("img", figs["step_rates"], "Firing rate per time step."))
    for r in results:
        B.append(("h2", f"Redundancy per layer: {r['label']}"))
        head = ["layer", "neurons", "rate", "silent", "always firing", "silent / input",
                "P(s_t=1 ∣ s_t−1=1)", "cos(s_t, s_t−1)", "channel cosine", "u mean ± std",
                "u ≥ θ", "in surrogate window"]
        rows = []
        for name, v in r["monitor"]["layers"].items():
            p = v.get("potential") or {}
            rows.append([
                f"{name} ({v['type']})", v.get("neurons", "–"), _f(v["rate"]),
                _pct(v.get("silent_fraction")), _pct(v.get("always_firing_fraction")),
                _pct(v.get("silent_fraction_per_input")),
                _f(v.get("temporal", {}).get("p_refire"), 3),
                _f(v.get("temporal", {}).get("consecutive_cosine"), 3),
                _f(v.get("spatial", {}).get("channel_cosine"), 3),
                (f"{p['mean']:.3f} ± {p['std']:.3f}" if p else "–"),
                _pct(p.get("frac_above_threshold")), _pct(p.get("frac_in_window")),
            ])
        B.append(("table", head, rows))
    B.append(("p", "silent / always firing: share of neurons that never fire / fire at every "
                   "step over all inputs; silent / input: share of (input, neuron) pairs with no "
                   "spike in the window. P(s_t=1 ∣ s_t−1=1) (a neuron that fired at t−1 fires "
                   "again at t) well above the rate means spikes "
                   "repeat over time (temporal redundancy); cos(s_t, s_t−1): mean cosine "
                   "similarity of a layer's consecutive spike maps; channel cosine: mean pairwise "
                   "cosine similarity of the channels' spike maps at one step (spatial "
                   "redundancy)."))
    B.append(("h2", "Membrane potential"))
    B.append(("img", figs["potential"], "Membrane-potential histograms per layer."))
    for key in sorted(k for k in figs if k.startswith("potential_steps")):
        B.append(("img", figs[key], "Membrane potential per time step."))
    B.append(("h2", "Spikes of one input"))
    for key in sorted(k for k in figs if k.startswith("heatmap")):
        B.append(("img", figs[key], "Spike maps of the first test input."))
    B.append(("h2", "Energy per layer"))
    B.append(("img", figs["energy"], "Energy per conv/linear layer."))
    for r in results:
        e = r["energy"]
        head = ["layer", "input", "spikes per input element", "SOPs / input", "MACs / input",
                "energy / input", "ANN MACs / input"]
        rows = [[f"{n} ({v['type']})", v["input"], _f(v["input_spike_rate"]),
                 _si(v["sops"], ""), _si(v["macs"], ""), _energy(v["energy_pj"]),
                 _si(v["ann_macs"], "")] for n, v in e["layers"].items()]
        rows.append(["total", "", "", _si(e["sops"], ""), _si(e["macs"], ""),
                     _energy(e["energy_pj"]), _si(e["ann_macs"], "")])
        B.append(("p", f"**{r['label']}**"))
        B.append(("table", head, rows))
    return B


def _cell(c: Any) -> str:
    """A markdown table cell: a '|' (e.g. in a model's label) would split the cell."""
    return " ".join(str(c).replace("|", "\\|").split())


def _md(blocks: list, out: Path) -> str:
    lines = []
    for b in blocks:
        if b[0] in ("h1", "h2"):  # a heading is one line (a label may hold a line break)
            lines += [f"{'#' * int(b[0][1])} {' '.join(b[1].split())}", ""]
        elif b[0] == "p":
            lines += [b[1], ""]
        elif b[0] == "table":
            lines.append("| " + " | ".join(map(_cell, b[1])) + " |")
            lines.append("|" + "|".join("---" for _ in b[1]) + "|")
            lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in b[2]]
            lines.append("")
        elif b[0] == "img":
            lines += [f"![{b[2]}]({Path(b[1]).relative_to(out).as_posix()})", "", f"*{b[2]}*", ""]
    return "\n".join(lines)


def _html(blocks: list, title: str) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #eee}figcaption{font-style:italic;color:#555}",
        "</style></head><body>",
    ]
    for b in blocks:
        if b[0] in ("h1", "h2"):
            parts.append(f"<{b[0]}>{e(b[1])}</{b[0]}>")
        elif b[0] == "p":
            text = e(b[1])
            if text.startswith("**") and text.endswith("**"):
                text = f"<b>{text[2:-2]}</b>"
            parts.append(f"<p>{text}</p>")
        elif b[0] == "table":
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
            for row in b[2]:
                parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
            parts.append("</table>")
        elif b[0] == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode()
            parts.append(f"<figure><img alt='{e(b[2])}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{e(b[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _write_text(path: Path, text: str) -> Path:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    path.chmod(0o644)
    return path


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a ``Path`` if it can be the report's folder (it exists as a folder or
    can be created), else a ``NotADirectoryError`` naming the file in the way; checked before
    any work so that a long analysis does not end in an unwritable folder."""
    out = Path(out_dir)
    for q in (out, *out.parents):
        if q.exists():
            if not q.is_dir():
                raise NotADirectoryError(
                    errno.ENOTDIR, f"cannot write into the folder {out}: {q} is a file, not "
                    "a folder; choose another output folder or move that file away")
            break
    return out


def write_metrics(results: list[dict], out_dir: str | Path) -> Path:
    """Write only ``out_dir/metrics.json`` (all metrics of :func:`analyze` results)."""
    return _write_text(check_out_dir(out_dir) / "metrics.json", to_json(results))


def write_report(results: list[dict], out_dir: str | Path, title: str = "leansnn analysis",
                 data_desc: str = "") -> dict[str, Path]:
    """Draw the figures and write ``report.md``, ``report.html`` and ``metrics.json`` into
    ``out_dir`` for one or two :func:`analyze` results. Returns the paths written."""
    from . import plots

    if not 1 <= len(results) <= 4:
        raise ValueError(f"write_report takes 1 to 4 results, got {len(results)}")
    out = Path(out_dir)
    fig_dir = check_out_dir(out / "figures")
    fig_dir.mkdir(parents=True, exist_ok=True)
    runs = [(r["label"], r["monitor"]) for r in results]
    figs: dict[str, Path] = {
        "layer_rates": plots.plot_layer_rates(runs, fig_dir / "firing_rate_per_layer.png"),
        "step_rates": plots.plot_step_rates(runs, fig_dir / "firing_rate_per_step.png"),
        "potential": plots.plot_potential_hist(runs, fig_dir / "potential_histograms.png"),
        "energy": plots.plot_energy([(r["label"], r["energy"]) for r in results],
                                    fig_dir / "energy_per_layer.png"),
    }
    for i, r in enumerate(results):
        if any(v.get("potential") for v in r["monitor"]["layers"].values()):
            figs[f"potential_steps_{i}"] = plots.plot_potential_steps(
                r["label"], r["monitor"], fig_dir / f"potential_per_step_{i + 1}.png")
        cap = {k: v for k, v in (r.get("captured") or {}).items() if v is not None}
        if cap:
            figs[f"heatmap_{i}"] = plots.plot_spike_heatmap(
                r["label"], cap, fig_dir / f"spike_heatmap_{i + 1}.png")
    blocks = _blocks(results, figs, title, data_desc)
    md_p = _write_text(out / "report.md", _md(blocks, out))
    html_p = _write_text(out / "report.html", _html(blocks, title))
    js_p = _write_text(out / "metrics.json", to_json(results))
    _remove_stale_figures(fig_dir, figs.values())
    return {"report_md": md_p, "report_html": html_p, "metrics_json": js_p, **figs}


def _remove_stale_figures(fig_dir: Path, written: Any) -> None:
    """Remove the per-model figures an earlier report into the same folder left behind
    (e.g. ``spike_heatmap_2.png`` of a two-model report, now replaced by a one-model one),
    so that the folder holds only this report's figures. Other files are left alone."""
    keep = {Path(f).name for f in written}
    for pattern in ("potential_per_step_*.png", "spike_heatmap_*.png"):
        for f in fig_dir.glob(pattern):
            if f.name not in keep and f.stem.rsplit("_", 1)[-1].isdigit():
                f.unlink(missing_ok=True)
