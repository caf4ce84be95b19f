"""PNG plots for ``learnsieve eval``: metric vs steps (a line per arm) and score histograms of the
pool split by ground truth. matplotlib with the Agg backend (no screen needed)."""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(arms: Dict[str, dict], metrics: Sequence[str], path: str, title: str = "") -> str:
    """One panel per metric; x = learner steps, one line per arm."""
    metrics = [m for m in metrics if any(m in p for a in arms.values() for p in a["curve"])]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 3.6),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, arm in arms.items():
            pts = [(p["step"], p[metric]) for p in arm["curve"] if metric in p]
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", ms=3, label=name)
        ax.set_xlabel("learner steps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histograms(values: Dict[str, Dict[str, List[float]]], auroc: Dict[str, float], path: str,
                    bins: int = 40) -> str:
    """One panel per score: histograms of its values, one colour per ground-truth kind."""
    names = list(values)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        every = [v for vals in values[name].values() for v in vals]
        lo, hi = (min(every), max(every)) if every else (0.0, 1.0)
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)] if hi > lo else bins
        for kind, vals in values[name].items():
            if vals:
                ax.hist(vals, bins=edges, alpha=0.5, label=f"{kind} ({len(vals)})", density=True)
        ax.set_title(f"{name}: AUROC clean vs noisy {auroc.get(name, float('nan')):.3f}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
