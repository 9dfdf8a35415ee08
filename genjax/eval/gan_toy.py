"""Mode coverage and sample quality of a generator on a mixture of well-separated
Gaussians (the 8-Gaussians ring of `genjax.data`, std 0.02 on a circle of radius 2).

The protocol of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018): a
sample is *high quality* when it lies within ``num_std`` (3) standard deviations of its
nearest mode's centre; a mode is *covered* when at least ``min_fraction`` of all samples
are high-quality samples of that mode (default 1%; 1/8 = 12.5% for a perfect sampler).
Mode collapse shows as fewer modes covered and a large ``mode_kl``: the KL divergence,
in nats, from the high-quality samples' distribution over modes to the uniform one (0
for equal shares, log 8 = 2.08 when all sit on one mode).

    m = mode_metrics(samples, eight_gaussians_centres(), std=EIGHT_GAUSSIANS_STD)
    m["modes_covered"], m["high_quality_fraction"]

For a class-conditional generator whose label is the mode index,
`conditional_mode_accuracy` is the share of the samples drawn for label k that land
within ``num_std`` standard deviations of mode k (1 for a perfect conditional sampler; a
generator that ignores its label and covers all K modes evenly scores about 1/K times
its high-quality fraction).
"""

from __future__ import annotations

import numpy as np


def nearest_mode(samples, centres):
    """(index [N] of the nearest centre, its Euclidean distance [N]); samples [N, D],
    centres [K, D]."""
    samples, centres = np.asarray(samples, np.float64), np.asarray(centres, np.float64)
    d2 = ((samples[:, None, :] - centres[None, :, :]) ** 2).sum(-1)      # [N, K]
    idx = d2.argmin(-1)
    return idx, np.sqrt(d2[np.arange(len(samples)), idx])


def kl_to_uniform(counts) -> float:
    """KL(q || uniform) in nats of the histogram ``counts`` [K] normalised to q: 0 when
    every bin is equally full, log K when one bin holds everything (and for an empty
    histogram). Also used for the classes a digit classifier assigns to GAN samples."""
    counts = np.asarray(counts, np.float64)
    k = len(counts)
    if counts.sum() <= 0:
        return float(np.log(k))
    q = counts / counts.sum()
    nz = q > 0
    return float(np.sum(q[nz] * np.log(q[nz] * k)))


def mode_metrics(samples, centres, *, std: float, num_std: float = 3.0,
                 min_fraction: float = 0.01) -> dict:
    """Metrics of ``samples`` [N, D] against modes at ``centres`` [K, D] with isotropic
    standard deviation ``std``: modes_covered (of K), high_quality_fraction, mode_kl
    (nats), and the high-quality share of each mode (``mode_share/k``, as a fraction of
    all N samples). Non-finite samples count as low quality."""
    samples = np.asarray(samples, np.float64)
    k = len(centres)
    finite = np.all(np.isfinite(samples), -1)
    idx, dist = nearest_mode(np.where(finite[:, None], samples, 0.0), centres)
    hq = finite & (dist <= num_std * std)
    counts = np.bincount(idx[hq], minlength=k)                           # [K]
    shares = counts / max(len(samples), 1)
    covered = int(np.sum(shares >= min_fraction))
    out = {"modes_covered": covered, "high_quality_fraction": float(hq.mean()),
           "mode_kl": kl_to_uniform(counts)}
    out.update({f"mode_share/{i}": float(s) for i, s in enumerate(shares)})
    return out


def conditional_mode_accuracy(samples, labels, centres, *, std: float,
                              num_std: float = 3.0) -> dict:
    """Samples [N, D] drawn for ``labels`` [N] (int, the index of the requested mode in
    ``centres`` [K, D]): ``cond_mode_accuracy``, the share of samples within num_std * std
    of their requested mode's centre, and per label k ``cond_mode_accuracy/k`` (NaN for
    a label with no samples). Non-finite samples count as misses."""
    samples = np.asarray(samples, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    centres = np.asarray(centres, np.float64)
    if samples.shape[:1] != labels.shape or labels.ndim != 1:
        raise ValueError(f"samples {samples.shape} and labels {labels.shape} should be "
                         "[N, D] and [N]")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(centres)):
        raise ValueError(f"labels should be mode indices in 0..{len(centres) - 1}, got "
                         f"{labels.min()}..{labels.max()}")
    dist = np.sqrt(((samples - centres[labels]) ** 2).sum(-1))           # [N]
    hit = np.isfinite(dist) & (dist <= num_std * std)
    out = {"cond_mode_accuracy": float(hit.mean()) if len(hit) else float("nan")}
    for k in range(len(centres)):
        sel = labels == k
        out[f"cond_mode_accuracy/{k}"] = float(hit[sel].mean()) if sel.any() else float("nan")
    return out
