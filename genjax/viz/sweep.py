"""The figure of a sweep: the main metric against each swept field, and learning curves."""

from __future__ import annotations

import math

import numpy as np

from genjax.viz.grid import writes_files


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _heat_axes(rows: list, fields: list):
    """The two fields of a heat map, or None: exactly two swept fields besides ``seed``,
    each with at most 12 values."""
    pair = [f for f in fields if f != "seed"]
    if len(pair) != 2:
        return None
    if any(len({str(r["setting"][f]) for r in rows}) > 12 for f in pair):
        return None
    return pair


def _heat_map(ax, rows: list, pair: list, metric: str) -> None:
    """``metric`` over the grid of two fields (the mean over seeds where the seed is
    swept too); a cell whose settings all diverged says so."""
    values = []
    for f in pair:
        vs = sorted({_hashable(r["setting"][f]) for r in rows},
                    key=lambda v: (str(type(v)), v))
        values.append(vs)
    grid = np.full((len(values[0]), len(values[1])), np.nan)
    for i, a in enumerate(values[0]):
        for j, b in enumerate(values[1]):
            ys = [r["metrics"].get(metric, math.nan) for r in rows
                  if _hashable(r["setting"][pair[0]]) == a
                  and _hashable(r["setting"][pair[1]]) == b]
            ys = [y for y in ys if math.isfinite(y)]
            grid[i, j] = np.mean(ys) if ys else np.nan
    im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            bad = not np.isfinite(grid[i, j])
            light = bad or im.norm(grid[i, j]) > 0.6        # viridis is yellow at the top
            ax.text(j, i, "diverged" if bad else format(grid[i, j], ".4g"), ha="center",
                    va="center", fontsize=6, color="k" if light else "w")
    ax.set_yticks(range(len(values[0])), [_label(v) for v in values[0]], fontsize=7)
    ax.set_xticks(range(len(values[1])), [_label(v) for v in values[1]], fontsize=7,
                  rotation=30)
    ax.set_ylabel(pair[0])
    ax.set_xlabel(pair[1])
    ax.set_title(metric + (" (mean over seeds)" if any("seed" in r["setting"] for r in rows)
                           else ""), fontsize=8)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _hashable(v):
    """A setting's value as a set member: tuple fields (model.hidden) come back from JSON
    as lists."""
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


def _label(v) -> str:
    return format(v, ".4g") if isinstance(v, float) else str(v)


def sweep_figure(path: str, rows: list, fields: list, metric: str, *,
                 curves: dict | None = None, curve_metric: str = "train/loss") -> str:
    """Writes ``path``: one panel per swept field with ``metric`` of every setting against
    the field's value (log axis for positive numbers spanning a factor >= 3, ticks at the
    values when there are at most 8 of them; other values as categories; diverged
    settings, NaN, are left out); a heat map of ``metric`` when two fields besides the
    seed are swept (`_heat_axes`); and, with ``curves`` {setting name: (steps,
    ``curve_metric``)}, a last panel of learning curves. rows: sweep.json's
    "settings" ({"name", "setting": {field: value}, "metrics": {...}})."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pair = _heat_axes(rows, fields)
    panels = len(fields) + bool(pair) + bool(curves)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.2), squeeze=False)
    if pair:
        _heat_map(axes[0][len(fields)], rows, pair, metric)
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
        ax.set_ylabel(f"{curve_metric} (dispatch mean)", fontsize=8)
        if len(curves) <= 8:
            ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if writes_files():
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
