"""Plots: training curves from a Detectron2 run's metrics.json (losses, learning rate, box AP),
and distribution spread against localisation error (:mod:`gfocal.analysis.uncertainty`'s data)."""

import json
import os
import re
import sys
from collections import defaultdict
from typing import Dict, Optional

import matplotlib
import numpy as np

from .uncertainty import pearson, spearman

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["read_records", "read_metrics", "final_metrics", "training_minutes", "plot", "plot_uncertainty_vs_error"]


def read_records(path):
    """metrics.json (one JSON object per line) -> its records with an ``iteration``, sorted by
    iteration. A resumed run appends records for iterations the killed run had already logged:
    for each (iteration, key) the last logged value wins. Lines that are not JSON are skipped
    with a warning."""
    merged = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                print(f"warning: {path}:{line_no} is not JSON, skipped", file=sys.stderr)
                continue
            it = record.get("iteration") if isinstance(record, dict) else None
            if it is not None:
                merged.setdefault(it, {}).update(record)
    return [merged[it] for it in sorted(merged)]


def read_metrics(path):
    """metrics.json -> {key: [(iteration, value), ...]} (numeric values, one per iteration)."""
    series = defaultdict(list)
    for record in read_records(path):
        for key, value in record.items():
            if key != "iteration" and isinstance(value, (int, float)):
                series[key].append((record["iteration"], value))
    return series


def final_metrics(path, keys=("AP", "AP50", "AP75", "APs", "APm", "APl")) -> Optional[Dict[str, float]]:
    """The last evaluation in a metrics.json (its ``bbox/<key>`` values and ``iteration``), or None."""
    evaluated = [r for r in read_records(path) if "bbox/AP" in r] if os.path.isfile(path) else []
    if not evaluated:
        return None
    return {**{k: evaluated[-1].get(f"bbox/{k}", float("nan")) for k in keys}, "iteration": evaluated[-1]["iteration"]}


def training_minutes(log_path) -> Optional[float]:
    """Detectron2's last "Total training time: H:MM:SS" in a log.txt, in minutes (None if absent)."""
    found = None
    if os.path.isfile(log_path):
        with open(log_path) as f:
            for m in re.finditer(r"Total training time: (\d+):(\d+):(\d+)", f.read()):
                h, mi, sec = map(int, m.groups())
                found = h * 60 + mi + sec / 60
    return found


def plot(series, output, title=None):
    losses = sorted(k for k in series if k.startswith("loss_") or k == "total_loss")
    aps = [k for k in ("bbox/AP", "bbox/AP50", "bbox/AP75") if k in series]
    if not losses and not aps:
        raise ValueError("no loss_* or bbox/AP values in the metrics")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in losses:
        it, v = zip(*series[key])
        axes[0].plot(it, v, label=key, lw=1.5 if key == "total_loss" else 1)
    axes[0].set_title("losses")
    axes[0].set_yscale("log")
    if "lr" in series:
        it, v = zip(*series["lr"])
        axes[1].plot(it, v)
    axes[1].set_title("learning rate")
    for key in aps:
        it, v = zip(*series[key])
        axes[2].plot(it, v, "o-", label=key)
    axes[2].set_title("box AP (val)")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, output, dpi=100)


def _save(fig, output: str, **savefig_kwargs) -> str:
    """Lay out, write (creating folders) and close ``fig``; returns ``output``."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, **savefig_kwargs)
    plt.close(fig)
    return output


_SHORT = {"spread_px": "spread (px)", "spread_rel": "spread / box size", "top1": "top-1 prob.", "score": "score"}
_LABELS = {
    "spread": "distribution spread (mean side std, pixels)",
    "spread_rel": "distribution spread (mean side std / box size)",
    "spread_px": "distribution spread (mean side std, pixels)",
    "top1": "mean top-1 bin probability",
    "score": "detection score",
}


def plot_uncertainty_vs_error(
    data: Dict[str, np.ndarray],
    output_png: str,
    title: Optional[str] = None,
    x: str = "spread",
) -> Dict:
    """Scatter of a distribution statistic (default: the spread in pixels) against 1 - IoU, one
    point per detection coloured by its score, with the median error per spread decile and the
    Pearson and Spearman correlations printed on the figure.

    Args:
        data: arrays from :func:`collect` or :func:`match_detections` (needs ``x`` and
            ``iou``; ``score`` colours the points when present).
        x: which statistic goes on the x axis (a key of ``data``).

    Returns:
        {"pearson", "spearman", "n", "x", "output"} for ``x`` vs 1 - IoU, plus ``"others"``:
        {statistic: {"pearson", "spearman"}} for the other statistics present.
    """
    xs = np.asarray(data[x], np.float64).ravel()
    err = 1.0 - np.asarray(data["iou"], np.float64).ravel()
    result = {"pearson": pearson(xs, err), "spearman": spearman(xs, err), "n": int(xs.size), "x": x}
    others = {}
    for name in ("spread_px", "spread_rel", "top1", "score"):
        if name in data and name != x and not (x == "spread" and name == "spread_px"):
            v = np.asarray(data[name], np.float64).ravel()
            others[name] = {"pearson": pearson(v, err), "spearman": spearman(v, err)}
    result["others"] = others

    fig, ax = plt.subplots(figsize=(6.4, 5.0), dpi=120)
    if xs.size:
        color = np.asarray(data["score"], np.float64).ravel() if "score" in data else None
        sc = ax.scatter(xs, err, c=color, cmap="viridis", s=12, alpha=0.7, edgecolors="none", vmin=0, vmax=1)
        if color is not None:
            fig.colorbar(sc, ax=ax, label="score", fraction=0.046, pad=0.02)
        if xs.size >= 20:  # median error per decile of the statistic: the trend
            edges = np.unique(np.quantile(xs, np.linspace(0, 1, 11)))
            which = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, len(edges) - 2)
            deciles = [which == b for b in np.unique(which)]
            centres = [np.median(xs[sel]) for sel in deciles]
            medians = [np.median(err[sel]) for sel in deciles]
            ax.plot(centres, medians, "-o", color="#d62728", lw=2, ms=4, label="median per decile")
            ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel("localisation error: 1 - IoU with the gt")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    text = f"Pearson r = {result['pearson']:.3f}\nSpearman $\\rho$ = {result['spearman']:.3f}\nn = {result['n']}"
    if others:
        text += "\nother statistics, Spearman $\\rho$:"
    for name, c in others.items():
        text += f"\n  {_SHORT.get(name, name)}: {c['spearman']:+.2f}"
    frame = dict(boxstyle="round", facecolor="white", alpha=0.85, edgecolor="0.7")
    ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", ha="left", fontsize=9, bbox=frame)
    ax.set_title(title or "GFL: distribution spread vs localisation error")
    result["output"] = _save(fig, output_png)
    return result
