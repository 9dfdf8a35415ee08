"""Histograms of anomaly scores: normal test data against each anomaly set."""

from __future__ import annotations

import numpy as np

from genjax.viz.grid import writes_files


def score_histograms_figure(path: str, normal: dict, anomalous: dict, aurocs: dict) -> None:
    """One panel per score name: the normal scores against every anomaly set's.

    normal: {score: [N]}; anomalous: {set: {score: [M]}}; aurocs: {set: {score: float}}
    (shown in the legend).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = list(normal)
    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.8), squeeze=False)
    for ax, s in zip(axes[0], scores):
        allv = np.concatenate([normal[s]] + [a[s] for a in anomalous.values()])
        lo, hi = np.percentile(allv, [0.5, 99.5])
        bins = np.linspace(lo, hi, 60)
        ax.hist(np.clip(normal[s], lo, hi), bins, alpha=0.6, density=True, color="k",
                label="normal (test)")
        for i, (name, a) in enumerate(anomalous.items()):
            ax.hist(np.clip(a[s], lo, hi), bins, alpha=0.45, density=True,
                    color=plt.cm.tab10(i), label=f"{name} (AUROC {aurocs[name][s]:.3f})")
        ax.set_title(s)
        ax.set_xlabel("score (higher = more anomalous)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    if writes_files():
        fig.savefig(path, dpi=110)
    plt.close(fig)
