"""Exact conditionals of autoregressive models: completing partial images, and a
class-conditional model's label decomposition. Shared by `experiments.nade` (FVBN, NADE,
MADE and their conditional forms) and `experiments.pixelcnn`.

**Completion.** An autoregressive model p(x) = prod_i p(x_i | x_<i) gives the exact
conditional of the pixels after a point in its order given those before it: with the
top ``rows`` rows given (`given_rows`) and the raster order,

    log p(bottom | top) = log p(x) - log p(top) = sum_{i in bottom} log p(x_i | x_<i),

and ancestral sampling of the bottom pixels with the top ones fixed draws exactly from
it. The models' ``conditional_log_prob(x, given_mask)`` is that sum and their
``complete(key, x, given_mask)`` the sampler. For a mask that is not a prefix of the
order the sum is still a normalised distribution over the missing pixels, but not the
model's conditional (which would need the marginal of the given pixels that come after a
missing one: no closed form). `completion_log_likelihood` averages the exact log p of
the true missing part of test images (nats per image); `completion_figure` draws rows
of [masked input | completions | truth].

**Labels.** A class-conditional model with K classes has the exact
log p(x) = log sum_y p(y) p(x | y) (K passes), and the Bayes posterior p(y | x) with it:
`class_log_likelihoods` gives the [B, K] table of log p(x | y = k) and
`label_metrics` its test summaries; `completion_from_classes` the completion
log-likelihoods with and without the label.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from genjax.eval.likelihood import evaluate_dataset
from genjax.viz.grid import save_image_grid


# ---------------------------------------------------------------------------- completion

def given_rows(example_shape, rows: int) -> np.ndarray:
    """The completion mask [H, W, C] (bool): the top ``rows`` rows given. In raster order
    they come before every other pixel, so a model's completion is its exact conditional
    p(bottom | top)."""
    mask = np.zeros(tuple(example_shape), bool)
    mask[:rows] = True
    return mask


def completion_log_likelihood(conditional_log_prob: Callable, params, x, given_mask, *,
                              key, batch_size: int) -> dict:
    """{"completion_log_likelihood": the mean over x [N, *E] of
    conditional_log_prob(params, x_b, given_mask) [b]}, nats per image (exact for a
    prefix mask, see the module docstring). One compiled program over fixed-size batches
    (`genjax.eval.likelihood.evaluate_dataset`)."""
    mask = jnp.asarray(given_mask)

    def per_example(p, xb, k):
        del k
        return {"completion_log_likelihood": conditional_log_prob(p, xb, mask)}

    return evaluate_dataset(per_example, np.asarray(x), key, batch_size=batch_size,
                            params=params)


def complete_examples(complete: Callable, truth, per: int, key) -> np.ndarray:
    """``per`` completions of each of the M images truth [M, *E]:
    complete(key, given [M * per, *E]) -> completed [M * per, *E] (jit it yourself, or
    pass a jitted function). Returns [M, per, *E] (numpy)."""
    truth = np.asarray(truth)
    done = np.asarray(complete(key, np.repeat(truth, per, axis=0)))
    return done.reshape((len(truth), per) + truth.shape[1:])


def completion_figure(path: str, truth, completions, given_mask, *, scale: int = 2,
                      missing_value: float = 0.5) -> np.ndarray:
    """One row per image: the masked input (missing pixels drawn at ``missing_value``),
    its completions, the truth. truth [M, H, W, C] and completions [M, P, H, W, C] in
    [0, 1]; given_mask [H, W, C] or [M, H, W, C] (bool). Returns the uint8 grid."""
    truth, completions = np.asarray(truth, np.float32), np.asarray(completions, np.float32)
    shown = np.where(np.asarray(given_mask, bool), truth, missing_value)
    grid = np.concatenate([shown[:, None], completions, truth[:, None]], axis=1)
    return save_image_grid(path, np.clip(grid, 0, 1).reshape((-1,) + truth.shape[1:]),
                           ncol=completions.shape[1] + 2, scale=scale)


# -------------------------------------------------------------------------------- labels

def class_log_likelihoods(log_prob: Callable, x, num_classes: int):
    """log p(x | y = k) for every class k: log_prob(x, y int32 [B]) -> [B]; returns
    [B, K] (one vmapped call per class)."""
    ys = jnp.arange(num_classes, dtype=jnp.int32)
    per_class = jax.vmap(lambda k: log_prob(x, jnp.full((x.shape[0],), k, jnp.int32)))(ys)
    return per_class.T                                                   # [B, K]


def log_label_prior(train_labels, num_classes: int) -> np.ndarray:
    """log p(y) [K]: the training split's class frequencies (the maximum-likelihood p(y)
    of the joint model p(y) p(x | y)); a class absent from it gets -inf."""
    counts = np.bincount(np.asarray(train_labels, np.int64), minlength=num_classes)
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())


def label_metrics(log_px_given_y, labels, log_prior) -> dict:
    """Means over N examples of a class-conditional model's exact quantities, from
    log_px_given_y [N, K] (`class_log_likelihoods`), the true labels [N] and log p(y) [K]:

    * ``log_likelihood``: log p(x) = logsumexp_y (log p(y) + log p(x | y)), nats (the
      model's likelihood, comparable with an unconditional model's);
    * ``cond_log_likelihood``: log p(x | y) with each example's own label, nats;
    * ``label_accuracy``: the share where argmax_y p(y | x) is the label (the model as
      its own Bayes classifier);
    * ``label_log_posterior``: log p(y | x) of the true label, nats."""
    table = np.asarray(log_px_given_y, np.float64)
    labels = np.asarray(labels, np.int64)
    joint = table + np.asarray(log_prior, np.float64)                   # [N, K]
    marginal = logsumexp(joint, axis=1)
    rows = np.arange(len(table))
    return {"log_likelihood": float(np.mean(marginal)),
            "cond_log_likelihood": float(np.mean(table[rows, labels])),
            "label_accuracy": float(np.mean(np.argmax(joint, 1) == labels)),
            "label_log_posterior": float(np.mean(joint[rows, labels] - marginal))}


def completion_from_classes(log_px_given_y, log_pgiven_given_y, labels, log_prior) -> dict:
    """The completion log-likelihoods of a class-conditional model, from the [N, K] tables
    log p(x | y = k) and log p(x_given | y = k) (the given pixels' conditionals, exact for
    a prefix mask): means over N of

    * ``completion_log_likelihood``: log p(x_missing | x_given) without the label,
      logsumexp_y (log p(y) + log p(x | y)) - logsumexp_y (log p(y) + log p(x_given | y))
      (the label summed out with its posterior given the visible part), nats;
    * ``completion_log_likelihood_given_label``: log p(x_missing | x_given, y) with the
      true label, nats."""
    full = np.asarray(log_px_given_y, np.float64)
    given = np.asarray(log_pgiven_given_y, np.float64)
    labels = np.asarray(labels, np.int64)
    lp = np.asarray(log_prior, np.float64)
    rows = np.arange(len(full))
    free = logsumexp(full + lp, axis=1) - logsumexp(given + lp, axis=1)
    with_label = full[rows, labels] - given[rows, labels]
    return {"completion_log_likelihood": float(np.mean(free)),
            "completion_log_likelihood_given_label": float(np.mean(with_label))}
