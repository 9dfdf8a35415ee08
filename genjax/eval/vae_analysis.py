"""The lecture claims about a trained VAE (or autoencoder), each as a figure plus numbers.

Every function takes plain callables of the trained model (encode(x) -> (mean, log_var),
decode(z) -> likelihood parameters, decode_mean(z) -> images in [0, 1]), writes its
figure into ``workdir`` and returns a flat dict of metrics. The conditional VAE's
(Sohn et al., 2015) take callables with the label as a second argument (end of file):
class rows, analogies (fixed z, varied y), the conditional sample quality and its 2-D
latent map.
"""

from __future__ import annotations

import math
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from genjax import conditioning, viz
from genjax.eval import anomaly, conditional, latent
from genjax.eval.auroc import auroc
from genjax.eval.likelihood import iw_log_likelihood, map_dataset
from genjax.viz import conditional as viz_conditional


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


# -- the conditional VAE (experiments.vae with model.conditional) -----------------------
# Here encode_mean(x [N, *E], y [N]) -> z [N, Z] is the mean of q(z | x, y) and
# decode_mean(z [N, Z], y [N]) -> [N, *E] the mean of p(x | z, y).

def balanced_class_labels(num: int, classes) -> np.ndarray:
    """int32 [num]: `conditioning.balanced_labels` over the given class values (e.g. the
    trained subset data.classes), num // len(classes) of each, in class order."""
    classes = np.asarray(classes, np.int32)
    return classes[conditioning.balanced_labels(num, len(classes))]


def conditional_prior_samples(key, labels, *, decode_mean: Callable, latent_dim: int,
                              batch_size: int = 500) -> np.ndarray:
    """The decoder's mean at prior draws z ~ N(0, I) [N, Z], one per label of ``labels``
    [N] (the class each image is drawn for): [N, *E]."""
    labels = np.asarray(labels, np.int32)
    z = jax.random.normal(key, (len(labels), latent_dim))
    return np.concatenate([np.asarray(decode_mean(z[i:i + batch_size],
                                                  labels[i:i + batch_size]))
                           for i in range(0, len(labels), batch_size)])


def class_samples(path: str, key, *, decode_mean: Callable, classes, latent_dim: int,
                  per_class: int = 10) -> np.ndarray:
    """class_rows.png: one row of ``per_class`` prior samples per class. Returns the
    samples [len(classes) * per_class, *E], class-major."""
    labels = balanced_class_labels(per_class * len(classes), classes)
    samples = conditional_prior_samples(key, labels, decode_mean=decode_mean,
                                        latent_dim=latent_dim)
    viz_conditional.class_rows(path, samples, labels, per_row=per_class)
    return samples


def conditional_sample_quality(clf, key, *, decode_mean: Callable, classes,
                               latent_dim: int, num: int, real, real_labels,
                               num_classes: int) -> dict:
    """The shared conditional protocol (`genjax.eval.conditional.conditional_quality`) on
    ``num`` prior samples, num / len(classes) per class, against the real test images
    [M, *E] in [0, 1] with their labels: cond_accuracy, fd, fd_per_class, accuracy/<y>,
    fd/<y> (classes not trained are left out)."""
    labels = balanced_class_labels(num, classes)
    samples = conditional_prior_samples(key, labels, decode_mean=decode_mean,
                                        latent_dim=latent_dim)
    q = conditional.conditional_quality(clf, samples, labels, real, real_labels,
                                        num_classes=num_classes)
    return {k: v for k, v in q.items() if np.isfinite(v) or "/" not in k}


def same_class_pairs(x, y, num: int):
    """Up to ``num`` pairs of distinct examples of the same class, the classes taken in
    turn (0, 1, 2, ...): (x0 [P, *E], x1 [P, *E], labels int32 [P]) for interpolating
    with the label fixed."""
    x, y = np.asarray(x), np.asarray(y)
    pools = {c: list(np.flatnonzero(y == c)) for c in np.unique(y)}
    first, second = [], []
    while len(first) < num and any(len(v) >= 2 for v in pools.values()):
        for c, v in pools.items():
            if len(v) >= 2 and len(first) < num:
                first.append(v.pop(0))
                second.append(v.pop(0))
    first, second = np.asarray(first, int), np.asarray(second, int)
    return x[first], x[second], y[first].astype(np.int32)


def analogies(path: str, x, y, key, *, encode_mean: Callable, decode_mean: Callable,
              classes, num_prior: int, latent_dim: int) -> np.ndarray:
    """analogies.png: fixed z, varied y. One row per code: the posterior means of the test
    digits x [R, *E] (encoded with their own labels y [R]; the digit itself in the first
    column) and ``num_prior`` prior draws (a blank first column), each decoded with every
    label of ``classes`` (one column per class): the style carried by z stays across the
    digits. Returns the decoded images [R + num_prior, len(classes), *E]."""
    z = [np.asarray(encode_mean(x, np.asarray(y, np.int32)))] if len(x) else []
    if num_prior:
        z.append(np.asarray(jax.random.normal(key, (num_prior, latent_dim))))
    z = np.concatenate(z)
    sources = np.concatenate([np.asarray(x), np.ones((num_prior,) + tuple(x.shape[1:]),
                                                     np.float32)]) if len(x) else None
    return viz.figures.analogies_figure(path, z, decode_mean=decode_mean, classes=classes,
                                        sources=sources)


def analogy_accuracy(clf, x, y, *, encode_mean: Callable, decode_mean: Callable,
                     classes) -> float:
    """Style transfer keeps the new label: each test digit x [N, *E] is encoded with its
    own label y [N] and its posterior mean decoded with every other class of ``classes``;
    the share of those N * (len(classes) - 1) images the classifier ``clf`` calls the new
    label (1 = the label alone decides the class, whatever z came from)."""
    z = np.asarray(encode_mean(x, np.asarray(y, np.int32)))              # [N, Z]
    classes = np.asarray(classes, np.int32)
    hits, total = 0, 0
    for c in classes:
        keep = np.asarray(y) != c
        if not keep.any():
            continue
        img = np.asarray(decode_mean(z[keep], np.full(int(keep.sum()), c, np.int32)))
        hits += int(np.sum(np.asarray(clf.predict(img)) == c))
        total += int(keep.sum())
    return hits / max(total, 1)


def conditional_latent_map(workdir: str, *, encode_mean: Callable, decode_mean: Callable,
                           x_train, y_train, x_test, y_test, classes,
                           grid: int = 10) -> dict:
    """A 2-D latent of the conditional VAE: latent_scatter.png (test codes of
    q(z | x, y) coloured by label), latent_manifold_by_class.png (the decoded
    grid x grid manifold of each class, one panel per class) and the 5-nearest-neighbour
    label accuracy of the test codes from the training codes (``latent/knn5_accuracy``:
    near chance when the label, given to both networks, leaves z to the style)."""
    def codes(x, y):
        return np.concatenate([np.asarray(encode_mean(x[i:i + 500], y[i:i + 500]))
                               for i in range(0, len(x), 500)])
    z_train = codes(x_train, np.asarray(y_train, np.int32))
    z_test = codes(x_test, np.asarray(y_test, np.int32))
    viz.latent.latent_scatter_figure(
        os.path.join(workdir, "latent_scatter.png"), z_test, y_test,
        title="test codes of q(z | x, y) by label (y given: z keeps the style)")
    viz.latent.class_manifolds_figure(os.path.join(workdir, "latent_manifold_by_class.png"),
                                      decode_mean=decode_mean, classes=classes, n=grid)
    return {"latent/knn5_accuracy": latent.knn_accuracy(z_train, y_train, z_test, y_test)}


def label_marginal(x, y, key, *, encode: Callable, decode: Callable, classes,
                   num_samples: int, likelihood: str = "bernoulli",
                   batch_size: int = 100) -> dict:
    """What a conditional VAE says without the label: for each x [N, *E] (preprocessed)
    the importance-weighted estimate p(x | c) (``num_samples`` draws of q(z | x, c)) for
    every class c of ``classes`` (the same draws' keys for every class), combined with a
    uniform p(c) over them:

    * ``marginal_iw_log_likelihood``: mean log (1/C) sum_c p(x | c), in nats; (1/C) sum_c
      of unbiased estimates of p(x | c) is an unbiased estimate of p(x), so this is a
      stochastic lower bound on log p(x), comparable with an unconditional VAE's
      test/iw_log_likelihood;
    * ``generative_accuracy``: the share of x whose label y [N] is argmax_c p(x | c) (the
      Bayes classifier p(c | x) of the generative model, which never trained on it).

    encode(x, y [b]) -> (mean, log_var) and decode(z, y [b]) -> likelihood parameters, as
    `genjax.models.vae.VAE`'s (decode takes z of S * b rows, sample-major)."""
    classes = jnp.asarray(np.asarray(classes, np.int32))
    chunk = math.gcd(int(num_samples), 100)

    def fn(xb, k):
        def one(c):
            yc = jnp.full((xb.shape[0],), c, jnp.int32)
            return iw_log_likelihood(xb, k, encode=lambda v: encode(v, yc),
                                     decode=lambda z: decode(z, yc),
                                     num_samples=num_samples, chunk_size=chunk,
                                     likelihood=likelihood)                   # [b]
        lp = jax.lax.map(one, classes)                                          # [C, b]
        return {"log_px": logsumexp(lp, 0) - jnp.log(len(classes)),
                "predicted": classes[jnp.argmax(lp, 0)]}
    out = map_dataset(fn, np.asarray(x, np.float32), key, batch_size=batch_size)
    return {"marginal_iw_log_likelihood": float(np.mean(out["log_px"])),
            "generative_accuracy": float(np.mean(out["predicted"] == np.asarray(y)))}
