"""Figures of the recommender experiment: validation NDCG@100 over training per neural
model (with the fitted baselines as horizontal lines), and test Recall@k for k = 1..K
per model."""

from __future__ import annotations

import os

import numpy as np

from genjax.viz.grid import writes_files


def curves_figure(path: str, histories: dict, baselines: dict, recall_curves: dict, *,
                  title: str = "") -> None:
    """histories: {model: [(step, validation NDCG@100), ...]}; baselines: {model:
    validation NDCG@100} (drawn as lines across the left panel); recall_curves: {model:
    [K] test Recall@1..K}. Writes a two-panel PNG at ``path``."""
    if not writes_files():
        return
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {}
    for i, (name, hist) in enumerate(histories.items()):
        colors[name] = f"C{i}"
        if hist:
            steps, vals = zip(*hist)
            a.plot(steps, vals, "-", color=colors[name], label=name)
    for j, (name, v) in enumerate(baselines.items()):
        colors[name] = f"C{len(histories) + j}"
        a.axhline(v, ls="--", color=colors[name], label=name)
    a.set_xlabel("training step")
    a.set_ylabel("validation NDCG@100")
    a.legend(fontsize=8)
    for j, (name, curve) in enumerate(recall_curves.items()):
        curve = np.asarray(curve)
        style = ":" if name == "oracle" else "-"
        b.plot(np.arange(1, len(curve) + 1), curve, style,
               color=colors.get(name, "k" if name == "oracle" else f"C{j + 5}"), label=name)
    b.set_xlabel("k")
    b.set_ylabel("test Recall@k")
    b.set_ylim(0, 1.02)
    b.legend(fontsize=8)
    fig.suptitle(title or "recommenders", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
