"""Training curves from a Detectron2 run's metrics.json (losses, learning rate, box AP)."""
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["read_records", "read_metrics", "plot"]


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
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
