"""Figures of a Monitor summary (matplotlib, Agg backend, PNG).

Every function takes ``runs``: a list of ``(label, summary)`` pairs (one or two models; a
summary is :meth:`leansnn.analysis.Monitor.summary`) and writes one PNG, returning its path.
Layers of two models are matched by their order (the k-th spiking layer of each), so a
model with extra modules (e.g. ASA) still lines up with its baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "plot_layer_rates", "plot_step_rates", "plot_potential_hist", "plot_potential_steps",
    "plot_spike_heatmap", "plot_energy",
]

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    from ..base.io import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    _plt().close(fig)
    path.chmod(0o644)
    return path


def _log_y(ax, bottom: float = 1e-6) -> None:
    """Log y axis with plain tick labels (1e-06 ... 1; mathtext labels are slow to lay out)."""
    from matplotlib import ticker

    ax.set_yscale("log")
    ax.set_ylim(bottom, 1.0)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, numticks=8))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.0e}" if v < 0.01
                                                      else f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _layer_labels(runs: list[tuple[str, dict]]) -> list[str]:
    """Tick labels: the layer names if every model names its k-th layer alike."""
    names = [list(s["layers"]) for _, s in runs]
    L = max(len(n) for n in names)
    out = []
    for k in range(L):
        ks = {n[k] for n in names if k < len(n)}
        out.append(f"layer {k + 1} [{ks.pop()}]" if len(ks) == 1 else f"layer {k + 1}")
    return out


def plot_layer_rates(runs: list[tuple[str, dict]], path: str | Path) -> Path:
    """Grouped bars: firing rate of each spiking layer, one colour per model; NASFR in the
    legend."""
    plt = _plt()
    labels = _layer_labels(runs)
    L, R = len(labels), len(runs)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.9 * L * R), 3.6))
    width = 0.8 / R
    for r, (label, st) in enumerate(runs):
        rates = [v["rate"] for v in st["layers"].values()]
        xs = np.arange(len(rates)) + (r - (R - 1) / 2) * width
        bars = ax.bar(xs, rates, width, color=_COLORS[r % 4],
                      label=f"{label} (NASFR {st['nasfr']:.4f})")
        for b, v in zip(bars, rates):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.3f}", ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(range(L), labels, rotation=20 if L > 4 else 0, ha="right" if L > 4 else "center")
    ax.set_xlabel("spiking layer in network order [module name]")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_title("Firing rate per spiking layer")
    ax.margins(y=0.15)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2 if L <= 4 else -0.35),
              frameon=False, ncol=min(R, 2))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_step_rates(runs: list[tuple[str, dict]], path: str | Path) -> Path:
    """Firing rate per time step, one line per layer, one panel per model (shared y)."""
    plt = _plt()
    R = len(runs)
    fig, axes = plt.subplots(1, R, figsize=(4.8 * R, 3.4), sharey=True, squeeze=False)
    for ax, (label, st) in zip(axes[0], runs):
        for k, (name, v) in enumerate(st["layers"].items()):
            r = v.get("rate_per_step") or []
            ax.plot(range(1, len(r) + 1), r, marker="o", ms=3, label=f"layer {k + 1} [{name}]",
                    color=plt.cm.viridis(k / max(1, len(st["layers"]) - 1)))
        T = max((len(v.get("rate_per_step") or []) for v in st["layers"].values()), default=1)
        ax.set_xticks(range(1, T + 1) if T <= 16 else range(1, T + 1, max(1, T // 8)))
        ax.set_xlabel("time step t")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="spiking layer", title_fontsize=7)
    axes[0][0].set_ylabel("firing rate at step t\n(spikes / neuron)")
    fig.suptitle("Firing rate per time step", y=1.02)
    return _save(fig, path)


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    c = min(cols, n)
    return math.ceil(n / c), c


def plot_potential_hist(runs: list[tuple[str, dict]], path: str | Path) -> Path:
    """Membrane-potential histogram per spiking layer (all steps pooled), models overlaid;
    threshold θ as a dashed line, the surrogate-gradient window |u − θ| < a shaded."""
    plt = _plt()
    labels = _layer_labels(runs)
    rows, cols = _grid(len(labels))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 4.3 * rows), squeeze=False)
    for k, title in enumerate(labels):
        ax = axes[k // cols][k % cols]
        drawn: list[float] = []
        ths = {_max_threshold(list(st["layers"].values())[k].get("threshold"))
               for _, st in runs if k < len(st["layers"])}
        for r, (label, st) in enumerate(runs):
            lay = list(st["layers"].values())
            if k >= len(lay) or not lay[k].get("potential"):
                continue
            p = lay[k]["potential"]
            h = _shares(p["hist"], p)
            lo, hi = p["range"]
            edges = np.linspace(lo, hi, len(h) + 1)
            text = f"{label}: {100 * p['frac_above_threshold']:.1f} % ≥ θ"
            if p["underflow"] + p["overflow"] > 0.0005:
                text += (f"\n  ({100 * p['underflow']:.1f} % < {lo:g}, "
                         f"{100 * p['overflow']:.1f} % > {hi:g}: off the plot)")
            if p.get("nan_fraction"):
                text += f"\n  ({100 * p['nan_fraction']:.1f} % NaN: off the plot)"
            ax.stairs(h, edges, color=_COLORS[r % 4], lw=1.4, label=text)
            th = lay[k].get("threshold")
            if isinstance(th, list):
                th = max(th)
            if th is not None and all(abs(th - d) > 1e-9 for d in drawn):
                drawn.append(th)
                color = "k" if len(ths) == 1 else _COLORS[r % 4]
                who = "" if len(ths) == 1 else f" ({label})"
                ax.axvline(th, color=color, ls="--", lw=1.2, label=f"threshold θ{who} = {th:g}")
                a = p.get("window")
                if a:
                    ax.axvspan(th - a, th + a, color="orange", alpha=0.12)
        _log_y(ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("membrane potential u (input-current units)")
        ax.set_ylabel("share of values per bin")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                      frameon=False)
        else:  # a layer that never ran (or has no potential)
            ax.text(0.5, 0.5, "no potentials recorded", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="#777777")
        ax.grid(alpha=0.3)
    for k in range(len(labels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("Membrane-potential distribution (dashed: threshold θ; shaded: surrogate "
                 "window |u − θ| < a)", y=1.0)
    fig.tight_layout()
    return _save(fig, path)


def _shares(hist: list, p: dict, steps: int = 1) -> np.ndarray:
    """Histogram counts -> share of all (sampled) potential values per bin; ``steps``: the
    counts are one step's of a ``steps``-step summary (every step sees as many values).
    Values off the plot (under/overflow, NaN) count in the total."""
    h = np.asarray(hist, dtype=float)
    n = p.get("sampled_values")
    if not n:  # a summary without the count: from the binned share
        n = h.sum() * steps / max(1e-12, 1 - p["underflow"] - p["overflow"])
    return h / max(n / steps, 1.0)


def _max_threshold(th):
    return max(th) if isinstance(th, list) else th


def plot_potential_steps(label: str, summary: dict, path: str | Path) -> Path:
    """Membrane-potential histogram per time step (one line per step) for every layer of
    one model."""
    plt = _plt()
    lays = [(n, v) for n, v in summary["layers"].items() if v.get("potential")]
    if not lays:
        raise ValueError("the summary holds no potential statistics")
    rows, cols = _grid(len(lays))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.1 * rows), squeeze=False)
    for k, (name, v) in enumerate(lays):
        ax = axes[k // cols][k % cols]
        p = v["potential"]
        T = len(p["hist_per_step"])
        H = _shares(p["hist_per_step"], p, T)
        lo, hi = p["range"]
        edges = np.linspace(lo, hi, H.shape[1] + 1)
        for t in range(T):
            ax.stairs(H[t], edges, color=plt.cm.plasma(t / max(1, T - 1)),
                      lw=1, label=f"t={t + 1}" if T <= 8 or t in (0, T - 1) else None)
        th = v.get("threshold")
        if isinstance(th, list):
            th = max(th)
        if th is not None:
            ax.axvline(th, color="k", ls="--", lw=1)
        _log_y(ax)
        ax.set_title(f"layer {k + 1} [{name}]", fontsize=9)
        ax.set_xlabel("membrane potential u")
        ax.set_ylabel("share of values per bin")
        ax.legend(fontsize=6, ncol=2)
        ax.grid(alpha=0.3)
    for k in range(len(lays), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"{label}: membrane potential per time step (dashed: threshold θ)", y=1.0)
    fig.tight_layout()
    return _save(fig, path)


def _neuron_map(s: torch.Tensor) -> np.ndarray:
    """One sample's spikes at one step ``[C, ...]`` -> 2-D picture: the share of channels
    firing at each position (conv), or the features laid out on a near-square grid."""
    s = s.float()
    if s.dim() >= 3:
        return s.mean(0).reshape(s.shape[1], -1).numpy()
    flat = s.reshape(-1).numpy()
    n = flat.size
    w = math.ceil(math.sqrt(n))
    h = math.ceil(n / w)
    img = np.full(h * w, np.nan)
    img[:n] = flat
    return img.reshape(h, w)


def plot_spike_heatmap(label: str, captured: dict[str, torch.Tensor], path: str | Path,
                       sample: int = 0, max_steps: int = 8) -> Path:
    """Spikes of one input: one row per spiking layer, one column per time step.

    ``captured``: layer name -> bool spikes ``[T, k, C, ...]`` (``Monitor(capture=k)``).
    Conv layers show the share of channels firing at each position; linear layers show
    each neuron as one cell (grey = padding of the grid).
    """
    plt = _plt()
    items = [(n, s) for n, s in captured.items() if s is not None]
    if not items:
        raise ValueError("nothing captured: run the Monitor with capture >= 1")
    T = max(s.shape[0] for _, s in items)  # layers may run different numbers of steps
    steps = sorted(set(np.linspace(0, T - 1, min(T, max_steps)).round().astype(int).tolist()))
    L = len(items)
    fig, axes = plt.subplots(L, len(steps), figsize=(1.5 * len(steps) + 1.2, 1.55 * L + 0.6),
                             squeeze=False)
    cmap = plt.cm.magma.with_extremes(bad="#bbbbbb")
    im = None
    for i, (name, s) in enumerate(items):
        conv = s.dim() >= 5
        for j, t in enumerate(steps):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t = {t + 1}", fontsize=9)
            if t >= s.shape[0]:  # a layer with fewer steps (e.g. a readout of the time mean)
                ax.set_frame_on(False)
                continue
            im = ax.imshow(_neuron_map(s[t, sample]), cmap=cmap, vmin=0, vmax=1,
                           interpolation="nearest")
            if j == 0:
                rate = float(s[:, sample].float().mean())
                kind = f"{s.shape[2]} ch" if conv else f"{s[0, 0].numel()} neurons"
                ax.set_ylabel(f"layer {i + 1} [{name}]\n{kind}\nrate {rate:.3f}", fontsize=7.5,
                              rotation=0, ha="right", va="center")
    cb = fig.colorbar(im, ax=axes, fraction=0.025, pad=0.02)
    cb.set_label("share of channels firing\n(linear layers: 1 = spike)", fontsize=8)
    fig.suptitle(f"{label}: spikes of one input (sample {sample}), rows = spiking layers",
                 fontsize=10)
    return _save(fig, path)


def _merge_names(lists: list[list[str]]) -> list[str]:
    """Union of several ordered name lists, keeping each list's order (layers that only one
    model has, e.g. ASA's operations, go after the layer that precedes them there)."""
    out: list[str] = []
    for names in lists:
        pos = 0
        for n in names:
            if n in out:
                pos = out.index(n) + 1
            else:
                out.insert(pos, n)
                pos += 1
    return out


def plot_energy(runs: list[tuple[str, dict]], path: str | Path) -> Path:
    """Energy per input of each conv/linear layer (pJ, log scale): the models side by side
    and, in grey, the ANN of the same architecture (dense MACs, one pass). Layers are matched
    by name, so a layer only one model has (e.g. ASA's convolution) gets only its bar."""
    plt = _plt()
    names = _merge_names([list(e["layers"]) for _, e in runs])
    L = len(names)
    R = len(runs) + 1
    fig, ax = plt.subplots(figsize=(max(5.5, 1.5 + 0.8 * L * R), 3.8))
    width = 0.8 / R
    info: dict[str, dict] = {}
    for _, e in runs:
        for n, v in e["layers"].items():
            info.setdefault(n, v)
    positive = [v for _, e in runs for lay in e["layers"].values()
                for v in (lay["energy_pj"], lay["ann_energy_pj"]) if v > 0]
    floor = min(positive) / 3 if positive else 1e-3  # bars of zero energy are not drawn
    for r, (label, e) in enumerate(runs):
        idx = [k for k, n in enumerate(names) if e["layers"].get(n, {}).get("energy_pj", 0) > 0]
        xs = np.asarray(idx) + (r - (R - 1) / 2) * width
        ax.bar(xs, [e["layers"][names[k]]["energy_pj"] for k in idx], width,
               color=_COLORS[r % 4], label=f"{label}: {e['energy_pj'] / 1e6:.3g} µJ / input")
    idx = [k for k, n in enumerate(names) if info[n]["ann_energy_pj"] > 0]
    xs = np.asarray(idx) + (R - 1 - (R - 1) / 2) * width
    ax.bar(xs, [info[names[k]]["ann_energy_pj"] for k in idx], width, color="#bbbbbb",
           hatch="//", edgecolor="#888888",
           label=f"ANN, same layers: {runs[0][1]['ann_energy_pj'] / 1e6:.3g} µJ / input")
    ticks = [f"{n}\n{info[n]['type']}, {info[n]['input']} in" for n in names]
    ax.set_xticks(range(L), ticks, rotation=20 if L > 4 else 0, ha="right" if L > 4 else "center",
                  fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("conv / linear layer (input: spikes → accumulates, analog → MACs)")
    ax.set_ylabel("energy per input (pJ)")
    ax.set_title("Energy per layer: 4.6 pJ · MACs + 0.9 pJ · SOPs" if _default_costs(runs)
                 else "Energy per layer: E_MAC · MACs + E_AC · SOPs")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _default_costs(runs: list[tuple[str, dict]]) -> bool:
    return all(e.get("e_mac") == 4.6 and e.get("e_ac") == 0.9 for _, e in runs)
