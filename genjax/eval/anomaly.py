"""Anomaly detection with a VAE trained on normal data.

Scores are per example, [B], higher = more anomalous, from plain callables (as in
`genjax.losses.vae`): encode(x) -> (mean, log_var), decode(z) -> likelihood parameters,
decode_mean(z) -> E[x | z].

* `reconstruction_error`: squared error between x and the decoded posterior mean code;
* `negative_elbo`: -ELBO, one reparameterised sample, nats;
* `negative_iw_log_likelihood`: -log p(x) estimated with K importance samples, nats.

`shifted_sets` builds the standard anomaly sets from uint8 images, and `auroc`
(`genjax.eval.auroc`) turns two score samples into one number.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from genjax.eval.likelihood import iw_log_likelihood
from genjax.losses.vae import elbo_terms

SHIFTS = ("held_out_classes", "uniform_noise", "inverted", "upside_down")


def reconstruction_error(x, *, encode: Callable, decode_mean: Callable):
    """sum over data axes of (x - decode_mean(mean of q(z|x)))^2: x [B, *E] -> [B]."""
    recon = decode_mean(encode(x)[0])
    return jnp.sum(((x - recon) ** 2).reshape(x.shape[0], -1), axis=-1)


def negative_elbo(x, key, *, encode: Callable, decode: Callable,
                  likelihood: str = "bernoulli"):
    """-ELBO(x) with one sample z ~ q(z|x) and the closed-form KL: [B] nats (>= -log p(x)
    in expectation)."""
    return -elbo_terms(x, key, encode=encode, decode=decode, likelihood=likelihood)["elbo"]


def negative_iw_log_likelihood(x, key, *, encode: Callable, decode: Callable,
                               num_samples: int, chunk_size: int | None = None,
                               likelihood: str = "bernoulli"):
    """-log p(x) estimated with ``num_samples`` importance samples: [B] nats."""
    return -iw_log_likelihood(x, key, encode=encode, decode=decode,
                              num_samples=num_samples, chunk_size=chunk_size,
                              likelihood=likelihood)


def shifted_sets(held_out: np.ndarray, normal: np.ndarray, seed: int = 0) -> dict:
    """Anomaly sets [N, H, W, C] uint8, named as in `SHIFTS`, from normal test images
    ``normal`` and images of classes never seen in training ``held_out``:

    * held_out_classes: ``held_out`` as is (a semantic shift);
    * uniform_noise: i.i.d. uniform pixels 0..255, as many as ``normal``;
    * inverted: 255 - normal (a photometric shift: white background);
    * upside_down: normal flipped vertically (a geometric shift of known digits).
    """
    normal = np.asarray(normal)
    rng = np.random.default_rng(seed)
    return {
        "held_out_classes": np.asarray(held_out),
        "uniform_noise": rng.integers(0, 256, normal.shape, dtype=np.uint8),
        "inverted": (255 - normal).astype(np.uint8),
        "upside_down": normal[:, ::-1].copy(),
    }
