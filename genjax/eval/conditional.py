"""How well class-conditional samples match their labels, with the shared classifier.

Every conditional family reports the same numbers (`conditional_quality`), computed with
the sample-quality classifier of `genjax.eval.sample_quality` on N samples, N / K per
class (`genjax.conditioning.balanced_labels`; 1,000 = 100 per class on MNIST):

* ``cond_accuracy``: the share of samples drawn for label y that the classifier calls y
  (the classifier's own test accuracy, reported next to it, is the ceiling real images
  reach);
* ``fd``: the Fréchet distance of all N samples against N real test images;
* ``fd_per_class``: the mean over classes of the Fréchet distance between the samples of
  class y and the real test images of class y (compare only numbers with the same N: with
  100 images per class and 128 features it is biased upwards much more than ``fd``);
* per class: ``accuracy/<y>`` and ``fd/<y>``.

    labels = conditioning.balanced_labels(1000, 10)
    samples = sample(key, labels)                        # [1000, H, W, C] in [0, 1]
    m = conditional_quality(clf, samples, labels, real, real_labels)
"""

from __future__ import annotations

import numpy as np

from genjax.eval.frechet import frechet_distance


def class_accuracy(predicted, labels, num_classes: int) -> np.ndarray:
    """float [K]: per class y, the share of ``labels == y`` entries with ``predicted == y``
    (NaN for a class with no entries)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    out = np.full(num_classes, np.nan)
    for k in range(num_classes):
        sel = labels == k
        if sel.any():
            out[k] = float(np.mean(predicted[sel] == k))
    return out


def conditional_quality(clf, samples, labels, real, real_labels, *,
                        num_classes: int | None = None) -> dict:
    """Metrics of class-conditional samples [N, *E] in [0, 1] drawn for ``labels`` [N]
    against real test images [M, *E] with ``real_labels`` [M] (the first N real images
    enter the overall FD). ``clf`` is a `sample_quality.FeatureClassifier` (or anything
    with ``features`` and ``predict`` on images). Returns a flat dict of floats (see the
    module docstring); per-class FDs need at least 2 samples and 2 real images of the
    class (else NaN, left out of the mean)."""
    samples, labels = np.asarray(samples, np.float32), np.asarray(labels)
    real, real_labels = np.asarray(real, np.float32), np.asarray(real_labels)
    if len(samples) != len(labels) or len(real) != len(real_labels):
        raise ValueError(f"samples {samples.shape} / labels {labels.shape} or real "
                         f"{real.shape} / real labels {real_labels.shape} differ in length")
    k = int(num_classes or max(labels.max(), real_labels.max()) + 1)
    feats, real_feats = clf.features(samples), clf.features(real)
    predicted = np.asarray(clf.predict(samples))
    acc = class_accuracy(predicted, labels, k)
    out = {"cond_accuracy": float(np.mean(predicted == labels)),
           "fd": frechet_distance(real_feats[:len(samples)], feats)}
    fds = np.full(k, np.nan)
    for y in range(k):
        a, b = feats[labels == y], real_feats[real_labels == y]
        if len(a) >= 2 and len(b) >= 2:
            fds[y] = frechet_distance(b, a)
    out["fd_per_class"] = float(np.nanmean(fds)) if np.isfinite(fds).any() else float("nan")
    for y in range(k):
        out[f"accuracy/{y}"] = float(acc[y])
        out[f"fd/{y}"] = float(fds[y])
    return out
