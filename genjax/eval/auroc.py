"""Area under the ROC curve from two score samples, by ranks (Mann-Whitney U)."""

from __future__ import annotations

import numpy as np


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..N of v with ties given their average rank."""
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    ranks = np.empty(len(v), np.float64)
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(v)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def auroc(scores_normal, scores_anomalous) -> float:
    """P(score of an anomaly > score of a normal example) + P(equal) / 2.

    scores_normal [N], scores_anomalous [M]: higher means "more anomalous". 1.0 is a
    perfect detector, 0.5 chance. Computed from average ranks in O((N+M) log(N+M)).
    """
    a = np.asarray(scores_normal, np.float64).ravel()
    b = np.asarray(scores_anomalous, np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("auroc needs at least one normal and one anomalous score")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("auroc: scores contain NaN or inf")
    ranks = _average_ranks(np.concatenate([a, b]))
    u = ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2.0
    return float(u / (len(a) * len(b)))
