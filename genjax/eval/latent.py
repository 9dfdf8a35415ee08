"""Numbers about a latent space: how well codes separate classes, how even a decoded
interpolation path is."""

from __future__ import annotations

import numpy as np


def knn_accuracy(train_z, train_y, test_z, test_y, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour vote (Euclidean) that labels each test code
    [M, Z] from the training codes [N, Z] and their labels [N]: how much class structure
    an unsupervised latent space holds (chance is about 1 / num_classes)."""
    train_z, test_z = np.asarray(train_z, np.float64), np.asarray(test_z, np.float64)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    d2 = (np.sum(test_z**2, 1)[:, None] - 2 * test_z @ train_z.T
          + np.sum(train_z**2, 1)[None, :])                          # [M, N]
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
    votes = train_y[nearest]                                          # [M, k]
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    counts = np.stack([np.sum(votes == c, 1) for c in range(num_classes)], 1)
    return float(np.mean(counts.argmax(1) == test_y))


def max_jump_fraction(frames) -> float:
    """For decoded paths frames [S, P, *E] (S points along each of P paths): the largest
    step between consecutive frames as a fraction of the path's total length, averaged
    over paths. 1 / (S - 1) is a perfectly even path; 1 means one jump does all the
    change."""
    f = np.asarray(frames, np.float64)
    s, p = f.shape[:2]
    steps = np.linalg.norm((f[1:] - f[:-1]).reshape(s - 1, p, -1), axis=-1)   # [S-1, P]
    return float(np.mean(steps.max(0) / np.maximum(steps.sum(0), 1e-12)))
