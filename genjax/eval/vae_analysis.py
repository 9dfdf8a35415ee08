"""The lecture claims about a trained VAE (or autoencoder), each as a figure plus numbers.

Every function takes plain callables of the trained model (encode(x) -> (mean, log_var),
decode(z) -> likelihood parameters, decode_mean(z) -> images in [0, 1]), writes its
figure into ``workdir`` and returns a flat dict of metrics.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np

from genjax import viz
from genjax.eval import anomaly, latent
from genjax.eval.auroc import auroc
from genjax.eval.likelihood import map_dataset


def interpolations(workdir: str, x0, x1, *, encode_mean: Callable, decode_mean: Callable,
                   steps: int) -> dict:
    """Claim 3, z-space interpolation is smooth: interpolation.png (linear) and
    interpolation_slerp.png (spherical), and each path's largest step as a fraction of its
    length (``interp/<kind>_max_jump``; 1/(steps-1) is perfectly even)."""
    out = {}
    for kind, spherical in (("linear", False), ("slerp", True)):
        name = "interpolation.png" if kind == "linear" else "interpolation_slerp.png"
        frames = viz.figures.interpolation_figure(
            os.path.join(workdir, name), x0, x1, encode_mean=encode_mean,
            decode_mean=decode_mean, steps=steps, spherical=spherical)
        out[f"interp/{kind}_max_jump"] = latent.max_jump_fraction(frames)
    out["interp/even_path_max_jump"] = 1.0 / (steps - 1)
    return out


def latent_map(workdir: str, *, encode_mean: Callable, decode_mean: Callable, x_train,
               y_train, x_test, y_test, grid: int = 20) -> dict:
    """Claim 2, a 2-D latent space is organised by class: latent_scatter.png (test codes
    coloured by label), latent_manifold.png (decoded grid x grid over the prior's
    quantiles) and the 5-nearest-neighbour accuracy of the test codes' labels from the
    training codes (``latent/knn5_accuracy``; labels are never used in training)."""
    def codes(x):
        return np.concatenate([np.asarray(encode_mean(x[i:i + 500]))
                               for i in range(0, len(x), 500)])
    z_train, z_test = codes(x_train), codes(x_test)
    viz.latent.latent_scatter_figure(os.path.join(workdir, "latent_scatter.png"),
                                     z_test, y_test)
    viz.latent.manifold_figure(os.path.join(workdir, "latent_manifold.png"),
                               decode_mean=decode_mean, n=grid)
    return {"latent/knn5_accuracy": latent.knn_accuracy(z_train, y_train, z_test, y_test)}


def anomaly_detection(workdir: str, *, encode: Callable, decode: Callable,
                      decode_mean: Callable, likelihood: str, normal, shifted: dict, key,
                      iw_samples: int, batch_size: int) -> dict:
    """Claim 4, a VAE trained on normal data detects anomalies: three scores
    (reconstruction error, -ELBO, -IW log-likelihood with ``iw_samples``) for the normal
    test images and each shifted set (all preprocessed, [N, *E] in [0, 1]); the AUROC of
    every (set, score) as ``anomaly/<set>/<score>``; anomaly_scores.png."""
    def scores(x, k):
        k1, k2 = jax.random.split(k)
        return {
            "reconstruction_error": anomaly.reconstruction_error(
                x, encode=encode, decode_mean=decode_mean),
            "negative_elbo": anomaly.negative_elbo(x, k1, encode=encode, decode=decode,
                                                   likelihood=likelihood),
            "negative_iw_log_likelihood": anomaly.negative_iw_log_likelihood(
                x, k2, encode=encode, decode=decode, num_samples=iw_samples,
                chunk_size=min(iw_samples, 50) if iw_samples % 50 == 0 else iw_samples,
                likelihood=likelihood),
        }
    s_normal = map_dataset(scores, normal, key, batch_size=batch_size)
    s_shift = {name: map_dataset(scores, x, jax.random.fold_in(key, i + 1),
                                 batch_size=batch_size)
               for i, (name, x) in enumerate(shifted.items())}
    aurocs = {name: {s: auroc(s_normal[s], v[s]) for s in s_normal}
              for name, v in s_shift.items()}
    viz.anomaly.score_histograms_figure(os.path.join(workdir, "anomaly_scores.png"),
                                        s_normal, s_shift, aurocs)
    return {f"anomaly/{name}/{s}": a for name, d in aurocs.items() for s, a in d.items()}
