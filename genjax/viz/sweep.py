"""The figure of a sweep: the main metric against each swept field, and learning curves."""

from __future__ import annotations

import math

import numpy as np


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sweep_figure(path: str, rows: list, fields: list, metric: str, *,
                 curves: dict | None = None) -> str:
    """Writes ``path``: one panel per swept field with ``metric`` of every setting against
    the field's value (log axis for positive numbers spanning a factor >= 3, ticks at the
    values when there are at most 8 of them; other values as categories; diverged
    settings, NaN, are left out), and, with ``curves`` {setting name: (steps, train
    loss)}, a last panel of learning curves. rows: sweep.json's
    "settings" ({"name", "setting": {field: value}, "metrics": {...}})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(fields) + bool(curves)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.2), squeeze=False)
    y = np.array([r["metrics"].get(metric, math.nan) for r in rows], float)
    ok = np.isfinite(y)
    for ax, field in zip(axes[0], fields):
        values = [r["setting"][field] for r in rows]
        if _numeric(values):
            x = np.array(values, float)
            ax.scatter(x[ok], y[ok], s=18)
            if x.min() > 0 and x.max() / x.min() >= 3:
                ax.set_xscale("log")
            distinct = sorted(set(x.tolist()))
            if len(distinct) <= 8:                      # a grid axis: tick its values
                ax.minorticks_off()
                ax.set_xticks(distinct, [format(v, ".4g") for v in distinct], fontsize=8)
        else:
            labels = sorted({str(v) for v in values})
            pos = np.array([labels.index(str(v)) for v in values], float)
            ax.scatter(pos[ok], y[ok], s=18)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
        ax.set_xlabel(field)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3)
    if curves:
        ax = axes[0][-1]
        for name, (steps, loss) in curves.items():
            ax.plot(steps, loss, lw=1, label=name.split("_", 1)[0])
        ax.set_xlabel("step")
        ax.set_ylabel("train/loss (dispatch mean)", fontsize=8)
        if len(curves) <= 8:
            ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
