"""Sample quality for digit-like images: the classifier Fréchet distance.

Inception-based FID does not fit 28x28 digits, so genjax trains a small classifier on the
dataset's training split (`genjax.models.classifier`, the shared training loop), saves it
with orbax in ``runs/classifier/<dataset>`` and reuses it on later calls: the Fréchet
distance (`genjax.eval.frechet`) between its penultimate-layer features of real test
images and of generated ones. Every family (VAE, GAN, DDPM) reports it the same way:

    clf = get_classifier("mnist5k")                  # trains once (about a minute), then loads
    d = clf.frechet_distance(real_images, samples)   # images [N, H, W, C] in [0, 1]

It is only comparable between numbers computed with the same classifier (dataset, config,
seed) and the same N; ``clf.test_accuracy`` is reported next to it.

The classifier sees grey images in [0, 1], each training example binarised with
probability 1/2, so its features describe both Bernoulli means (VAE) and binary or grey
samples.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from genjax import xla
from genjax.data import transforms
from genjax.eval.frechet import frechet_distance
from genjax.models.classifier import Classifier
from genjax.train import config as cfglib, experiment
from genjax.train import init_state, make_optimizer, make_train_step, train
from genjax.train.writers import log


def default_config(dataset: str = "mnist5k", num_steps: int = 3000
                   ) -> ml_collections.ConfigDict:
    """The reference classifier for ``dataset``: MLP 784-256-128-10, Adam 1e-3, 3,000
    steps of batch 128. Changing it changes every Fréchet distance computed with it.

    ``num_steps`` (any integer >= 1) also sets the loop's dispatch size (at most 500) and
    a checkpoint interval past the end, so the only checkpoint is the final one."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise cfglib.ConfigError(f"--config.eval.classifier_steps={num_steps!r} is invalid: "
                                 "expected an integer > 0")
    per = min(500, num_steps)
    c = ml_collections.ConfigDict()
    c.preset = "default"
    c.seed = 0
    c.data = ml_collections.ConfigDict(dict(name=dataset, data_dir="", preprocess="unit"))
    c.model = ml_collections.ConfigDict(dict(hidden=(256, 128)))
    c.optim = ml_collections.ConfigDict(dict(
        name="adam", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, momentum=0.0, weight_decay=0.0,
        grad_clip=0.0, schedule="cosine", warmup_steps=0))
    c.train = ml_collections.ConfigDict(dict(
        num_steps=num_steps, batch_size=128, steps_per_dispatch=per,
        checkpoint_every=per * -(-num_steps // per), keep_checkpoints=1, eval_every=0,
        distributed=False))
    return c


def validate(config) -> None:
    """The classifier config's own fields (`experiment.prepare` checks the shared ones),
    before anything is compiled."""
    cfglib.int_tuple(config, "model.hidden", min_len=0, example="'(256, 128)'",
                     what="the classifier's hidden widths")


def default_workdir(dataset: str, num_steps: int = 3000) -> str:
    """runs/classifier/<dataset>_<num_steps>: a classifier trained for other steps never
    resumes into (and changes) the reference one. User data (``npz:PATH``,
    ``folder:PATH``) is named by `genjax.data.user.cache_name`, e.g.
    ``npz-mine-3f2a9c0d1e4b_3000``: a file-name-safe stem plus a hash of the absolute path
    and the data, so a changed file trains a new classifier instead of reusing a stale one
    (and two files called mine.npz do not share one)."""
    from genjax.data import user  # pylint: disable=import-outside-toplevel

    if user.is_user_name(dataset):
        dataset = user.cache_name(dataset)
    return os.path.join("runs", "classifier", f"{dataset}_{num_steps}")


@dataclasses.dataclass
class FeatureClassifier:
    """A trained classifier: ``features(x)`` [N, *E] in [0, 1] -> [N, F] (batched, jitted),
    ``predict(x)`` -> [N] labels, ``test_accuracy`` on the dataset's test split."""
    graphdef: Any
    params: Any
    example_shape: tuple
    test_accuracy: float
    workdir: str

    def _apply(self, method: str, x, batch_size: int = 500) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if tuple(x.shape[1:]) != self.example_shape:
            raise ValueError(f"the classifier in {self.workdir} was trained on images of "
                             f"shape {self.example_shape}, got {tuple(x.shape[1:])}")
        fn = _jitted(self.graphdef, method)
        return np.concatenate([np.asarray(fn(self.params, x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)])

    def features(self, x) -> np.ndarray:
        return self._apply("features", x)

    def predict(self, x) -> np.ndarray:
        return self._apply("__call__", x).argmax(-1)

    def prior_sample_distance(self, real, key, *, decode_mean, latent_dim: int):
        """Fréchet distance between ``real`` [N, *E] and N images decoded from prior
        draws z ~ N(0, I) [N, latent_dim]. Returns (distance, the generated images)."""
        z = jax.random.normal(key, (len(real), latent_dim))
        generated = np.concatenate([np.asarray(decode_mean(z[i:i + 500]))
                                    for i in range(0, len(real), 500)])
        return self.frechet_distance(real, generated), generated

    def frechet_distance(self, real, generated) -> float:
        """Squared Fréchet distance between the features of two image sets [N, *E] in
        [0, 1] (use the same N across compared models)."""
        return frechet_distance(self.features(real), self.features(generated))


_JIT_CACHE: dict = {}


def _jitted(graphdef, method):
    key = (id(graphdef), method)
    if key not in _JIT_CACHE:
        def f(params, x):
            m = nnx.merge(graphdef, params)
            return m(x) if method == "__call__" else getattr(m, method)(x)
        _JIT_CACHE[key] = (graphdef, xla.jit(f))   # keep graphdef alive with its id
    return _JIT_CACHE[key][1]


def _loss_fn(graphdef):
    def loss_fn(params, batch, key, hp):
        x_u8, y = batch
        k_bin, k_pick = jax.random.split(key)
        x = transforms.to_unit(x_u8)
        binary = transforms.binarize_dynamic(k_bin, x_u8)
        pick = jax.random.bernoulli(k_pick, 0.5, (x.shape[0],) + (1,) * (x.ndim - 1))
        logits = nnx.merge(graphdef, params)(jnp.where(pick, binary, x))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, {"accuracy": jnp.mean(logits.argmax(-1) == y)}
    return loss_fn


def fit(config, workdir: str) -> FeatureClassifier:
    """Trains the classifier of ``config`` in ``workdir``, or restores it when a finished
    checkpoint is there (the loop resumes at its last step, so nothing is retrained), and
    measures its test accuracy."""
    ds = experiment.prepare(config, workdir)
    cfglib.require(ds.train_labels is not None, "data.name", config.data.name,
                   "a labelled dataset (the classifier needs labels)")
    model = Classifier(ds.example_shape, ds.num_classes, hidden=tuple(config.model.hidden),
                       rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx, hparams, schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, hparams)
    state, _ = train(state, make_train_step(_loss_fn(graphdef), tx, schedule),
                     (ds.train, ds.train_labels.astype(np.int32)), cfg=config.train,
                     seed=config.seed, workdir=workdir)
    clf = FeatureClassifier(graphdef, state.params, ds.example_shape, float("nan"),
                            os.path.abspath(workdir))
    clf.test_accuracy = float(np.mean(clf.predict(transforms.to_unit(ds.test))
                                      == ds.test_labels))
    return clf


def get_classifier(dataset: str = "mnist5k", workdir: str | None = None, *,
                   num_steps: int = 3000, config=None) -> FeatureClassifier:
    """The reference classifier of ``dataset`` (``default_config`` with ``num_steps``
    training steps): loaded from ``workdir`` (default `default_workdir`) if trained there
    before, else trained there first."""
    if config is None:
        config = default_config(dataset, num_steps)
    validate(config)
    workdir = workdir or default_workdir(dataset, int(config.train.num_steps))
    fresh = not os.path.isdir(os.path.join(workdir, "checkpoints"))
    if fresh:
        log(f"training the sample-quality classifier for {dataset} in {workdir} (once)")
    clf = fit(config, workdir)
    log(f"sample-quality classifier {workdir}: test accuracy {clf.test_accuracy:.4f}")
    return clf
