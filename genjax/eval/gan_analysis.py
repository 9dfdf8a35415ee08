"""What a trained GAN shows, as numbers and figures, from plain callables:

  generate(z [N, Z]) -> samples [N, *E]   (images in [0, 1], or 2-D points)
  discriminate(x [N, *E]) -> scores [N]   (D(x) = sigmoid(logit), or a critic's score)

A class-conditional generator is ``generate(z [N, Z], y [N]) -> samples`` (pass
``labels`` to `sample` and `toy_figure`); `class_style_grid` fixes z and varies y.

(the VAE's counterpart is `genjax.eval.vae_analysis`).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np

from genjax import conditioning
from genjax import data as gdata
from genjax import viz
from genjax.eval import gan_toy, latent
from genjax.viz.gan_toy import gan_toy_figure
from genjax.train.distributed import is_main_process


def sample(generate: Callable, key, n: int, latent_dim: int, *, chunk: int = 500,
           labels=None):
    """numpy [n, *E]: generator outputs of n prior draws z ~ N(0, I), ``chunk`` at a time
    (a generator with batch statistics sees batches of up to ``chunk``). With ``labels``
    [n] the generator is conditional: generate(z, y) with y the chunk's labels (mix the
    classes in every chunk: batch statistics of one class differ from training's)."""
    z = jax.random.normal(key, (n, latent_dim))
    if labels is None:
        return np.concatenate([np.asarray(generate(z[i:i + chunk]))
                               for i in range(0, n, chunk)])
    labels = np.asarray(labels, np.int32)
    if labels.shape != (n,):
        raise ValueError(f"sample: labels {labels.shape} should be [{n}]")
    return np.concatenate([np.asarray(generate(z[i:i + chunk], labels[i:i + chunk]))
                           for i in range(0, n, chunk)])


def mixed_labels(key, num: int, num_classes: int) -> np.ndarray:
    """int32 [num]: `genjax.conditioning.balanced_labels` (num // K per class) in a random
    order fixed by ``key``, so that every chunk of `sample` holds a mix of classes."""
    labels = conditioning.balanced_labels(num, num_classes)
    return np.asarray(jax.random.permutation(key, labels), np.int32)


def digit_quality(clf, real, samples, num_classes: int = 10) -> dict:
    """Sample quality of images [N, *E] in [0, 1] against ``real`` [N, *E] with a
    `genjax.eval.sample_quality` classifier: the Fréchet distance of its features, and
    ``predicted_class_kl``, the KL divergence (nats) from uniform of the classes it
    assigns to the samples (0 = every class equally often; mode collapse raises it, up
    to log 10 = 2.30 when all samples look like one digit)."""
    return {"frechet_distance": clf.frechet_distance(real, samples),
            "predicted_class_kl": predicted_class_kl(clf, samples, num_classes)}


def predicted_class_kl(clf, images, num_classes: int = 10) -> float:
    """KL (nats) from uniform of the classes ``clf`` assigns to ``images`` [N, *E]."""
    return gan_toy.kl_to_uniform(np.bincount(clf.predict(images), minlength=num_classes))


def eight_gaussians_modes(samples, *, num_std: float = 3.0, min_fraction: float = 0.01) -> dict:
    """`gan_toy.mode_metrics` against the eight_gaussians ring of `genjax.data`."""
    return gan_toy.mode_metrics(samples, gdata.eight_gaussians_centres(),
                                std=gdata.EIGHT_GAUSSIANS_STD, num_std=num_std,
                                min_fraction=min_fraction)


def interpolation_strip(path: str, key, *, generate: Callable, latent_dim: int,
                        example_shape, pairs: int = 8, steps: int = 10,
                        num_classes: int = 0) -> dict:
    """One row per pair of prior draws (z0, z1): the generated images along the spherical
    path between them (slerp keeps the norm profile of N(0, I) draws), written to
    ``path``. Returns the largest step between consecutive frames as a share of the path
    (``interp/slerp_max_jump``; ``interp/even_path_max_jump`` = 1/(steps-1) is even).
    A conditional generator (``num_classes`` K > 0, generate(z, y)): row i keeps the
    label i mod K along its path (the style changes, the class does not)."""
    k0, k1 = jax.random.split(key)
    z0 = jax.random.normal(k0, (pairs, latent_dim))
    z1 = jax.random.normal(k1, (pairs, latent_dim))
    path_z = viz.slerp(z0, z1, steps)                                      # [S, P, Z]
    flat = path_z.reshape(steps * pairs, latent_dim)
    if num_classes:
        y = np.tile(np.arange(pairs) % num_classes, steps).astype(np.int32)  # [S * P]
        frames = np.asarray(generate(flat, y))
    else:
        frames = np.asarray(generate(flat))
    frames = frames.reshape((steps, pairs) + tuple(example_shape))         # [S, P, *E]
    rows = np.swapaxes(frames, 0, 1).reshape((-1,) + tuple(example_shape))
    viz.save_image_grid(path, rows, ncol=steps)
    return {"interp/slerp_max_jump": latent.max_jump_fraction(frames),
            "interp/even_path_max_jump": 1.0 / (steps - 1)}


def class_style_grid(path: str, key, *, generate: Callable, latent_dim: int,
                     num_classes: int, rows: int = 8) -> np.ndarray:
    """Fix z, vary y: row r is generate(z_r, y) for y = 0..K-1 (one latent draw per row),
    so a row keeps one style across the classes. Writes the grid; returns the images
    [rows * K, *E]."""
    z = jax.random.normal(key, (rows, latent_dim))
    zz = np.repeat(np.asarray(z), num_classes, axis=0)                   # [R * K, Z]
    y = np.tile(np.arange(num_classes), rows).astype(np.int32)           # [R * K]
    images = np.asarray(generate(zz, y))
    viz.save_image_grid(path, images, ncol=num_classes)
    return images


def eight_gaussians_conditional(samples, labels, *, num_std: float = 3.0) -> dict:
    """`gan_toy.conditional_mode_accuracy` against the eight_gaussians ring (the label of
    a point is its mode's index)."""
    return gan_toy.conditional_mode_accuracy(samples, labels,
                                             gdata.eight_gaussians_centres(),
                                             std=gdata.EIGHT_GAUSSIANS_STD, num_std=num_std)


def toy_figure(path: str, key, *, generate: Callable, discriminate: Callable,
               latent_dim: int, data, num_points: int, num_paths: int = 8,
               modes: bool = True, num_std: float = 3.0, d_label: str = "D(x)",
               title: str = "", num_classes: int = 0, data_labels=None) -> None:
    """`genjax.viz.gan_toy.gan_toy_figure` for a generator of 2-D points: ``num_points``
    samples over the discriminator's output, and G along ``num_paths`` straight lines
    in latent space (50 points each); with ``modes`` the eight_gaussians centres and
    their high-quality circles of radius num_std * std. A conditional generator
    (``num_classes`` K > 0, generate(z, y)): the samples are drawn for balanced labels
    and coloured by them, path i keeps label i mod K (``data_labels`` colour the data)."""
    k_s, k0, k1 = jax.random.split(key, 3)
    labels = path_labels = None
    if num_classes:
        labels = mixed_labels(jax.random.fold_in(k_s, 1), num_points, num_classes)
        path_labels = (np.arange(num_paths) % num_classes).astype(np.int32)
    samples = sample(generate, k_s, num_points, latent_dim, labels=labels)
    z0 = jax.random.normal(k0, (num_paths, latent_dim))
    z1 = jax.random.normal(k1, (num_paths, latent_dim))
    line = np.asarray(viz.lerp(z0, z1, 50))                                # [S, P, Z]
    if num_classes:
        pts = np.asarray(generate(line.reshape(-1, latent_dim), np.tile(path_labels, 50)))
    else:
        pts = np.asarray(generate(line.reshape(-1, latent_dim)))
    paths = pts.reshape(50, num_paths, -1).swapaxes(0, 1)                  # [P, S, 2]
    if is_main_process():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    gan_toy_figure(path, data=data, samples=samples, discriminator=discriminate, paths=paths,
                   centres=gdata.eight_gaussians_centres() if modes else None,
                   radius=num_std * gdata.EIGHT_GAUSSIANS_STD if modes else None,
                   d_label=d_label, title=title, labels=labels, path_labels=path_labels,
                   data_labels=data_labels)
