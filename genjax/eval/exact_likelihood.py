"""The reported numbers of a model with an exact log-likelihood (NADE, MADE, RNADE,
PixelCNN): the test split's log-likelihood in nats per example, its bits per dimension,
and the same on a fixed view of some training examples (the overfitting gap).

Shared by `experiments.nade` and `experiments.pixelcnn`: ``log_prob_fn(params, x) ->
{name: [B]}`` gives each example's exact log-likelihoods (nats) of the preprocessed data
(the first name is "log_likelihood"); the evaluation is one jitted program that takes the
parameters as an argument, so every evaluation during training and every setting of a
sweep reuses it.
"""

from __future__ import annotations

import math
from typing import Callable

import jax

from genjax.eval.likelihood import evaluate_dataset
from genjax.train import experiment


def bits_per_dim(preprocess: str, log_likelihood: float, dim: int, *,
                 discrete: bool = False):
    """Bits per dimension of the discrete data, or None: binary data, and 8-bit values
    modelled by a discrete distribution (``discrete``, e.g. a 256-way softmax), as they
    are; dequantised 8-bit data with the -D log 256 change of variables (a bound on the
    discrete log-likelihood); None for real-valued points."""
    if preprocess == "dynamic_binarize" or discrete:
        return -log_likelihood / (dim * math.log(2))
    if preprocess == "dequantize":
        return -(log_likelihood - dim * math.log(256)) / (dim * math.log(2))
    return None


def make_evaluate(config, ds, log_prob_fn: Callable):
    """evaluate(params, data=None, seed=config.seed) -> {name: mean over examples}: the
    exact log-likelihoods of the test examples (config.eval.num_examples of them, 0 =
    all, on `experiment.fixed_view` of config.data.preprocess), or of ``data``."""
    e = config.eval
    x_test = experiment.fixed_view(ds.test, config.data.preprocess)
    if e.num_examples:
        x_test = x_test[:e.num_examples]

    def per_example(params, x, key):          # one function: one compiled program
        del key
        return log_prob_fn(params, x)

    def evaluate(params, data=None, seed=config.seed):
        return evaluate_dataset(per_example, x_test if data is None else data,
                                jax.random.key(seed + 1), batch_size=e.batch_size,
                                params=params)

    return evaluate


def final_metrics(config, ds, evaluate, params, seed, *, discrete: bool = False) -> dict:
    """test/log_likelihood (nats per example), test/nll, test/bits_per_dim (binary,
    discrete or dequantised images) and, with config.eval.train_examples, the train/
    log-likelihoods on a fixed view (seed 1) of that many training examples."""
    metrics = {f"test/{k}": v for k, v in evaluate(params, seed=seed).items()}
    metrics["test/nll"] = -metrics["test/log_likelihood"]
    bpd = bits_per_dim(config.data.preprocess, metrics["test/log_likelihood"],
                       math.prod(ds.example_shape), discrete=discrete)
    if bpd is not None:
        metrics["test/bits_per_dim"] = bpd
    if config.eval.train_examples:
        x_train = experiment.fixed_view(ds.train[:config.eval.train_examples],
                                        config.data.preprocess, seed=1)
        metrics.update({f"train/{k}": v
                        for k, v in evaluate(params, x_train, seed=seed).items()})
    return metrics
