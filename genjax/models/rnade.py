"""RNADE: NADE for real-valued data, each conditional a mixture of K Gaussians
(Uria, Murray & Larochelle, 2013).

    a_1 = c,  a_{i+1} = a_i + W[:, i] x_i,  h_i = sigmoid(rho_i a_i)
    p(x_i | x_<i) = sum_k pi_ik N(x_i | mu_ik, sigma_ik^2),
    [logit pi_i, mu_i, log sigma_i] = V_i^T h_i + b_i          (V [D, H, 3K], b [D, 3K])

An exact density on R^D (`genjax.losses.autoregressive.rnade_log_likelihood`) and exact
ancestral sampling (one lax.scan over the dimensions: draw the component, then the
Gaussian).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import numerics
from genjax.losses import autoregressive as ar
from genjax.models import ancestral


def quantile_init(x, num_components: int):
    """Initial output biases from training data x [N, D]: component means at the
    (k + 1/2)/K quantiles of each dimension, scales of one K-th of its spread. Returns
    (means [D, K], log_scales [D, K]) as numpy float32."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    q = (np.arange(num_components) + 0.5) / num_components
    means = np.quantile(x, q, axis=0).T                                      # [D, K]
    spread = np.maximum(x.std(0), 1e-3)[:, None] / num_components
    return means.astype(np.float32), np.log(np.broadcast_to(spread, means.shape)).astype(
        np.float32)


class RNADE(nnx.Module):
    """log_prob(x [B, *E] real) -> [B] nats; conditionals(x) -> (logit weights, means,
    log scales) [B, D, K] each; sample(key, num) -> (x [num, *E], log p [num]).

    ``mean_init`` / ``log_scale_init`` [D, K]: initial component means / log scales (the
    output biases), e.g. from `quantile_init`; by default means spread over [-2, 2]."""

    def __init__(self, example_shape: Sequence[int], *, hidden: int = 100,
                 num_components: int = 10, mean_init=None, log_scale_init=None,
                 min_log_scale: float = -7.0, rngs: nnx.Rngs):
        self.example_shape = tuple(example_shape)
        d, k = math.prod(self.example_shape), num_components
        self.dim, self.hidden, self.num_components = d, hidden, k
        self.min_log_scale = float(min_log_scale)
        if mean_init is None:
            mean_init = jnp.broadcast_to(jnp.linspace(-2.0, 2.0, k), (d, k))
        if log_scale_init is None:
            log_scale_init = jnp.full((d, k), math.log(4.0 / k))
        self.W = nnx.Param(jax.random.normal(rngs.params(), (hidden, d)) / math.sqrt(d))
        self.c = nnx.Param(jnp.zeros((hidden,)))
        self.rho = nnx.Param(jnp.ones((d,)))
        self.V = nnx.Param(0.1 * jax.random.normal(rngs.params(), (d, hidden, 3 * k))
                           / math.sqrt(hidden))
        self.b = nnx.Param(jnp.concatenate(
            [jnp.zeros((d, k)), jnp.asarray(mean_init, jnp.float32).reshape(d, k),
             jnp.asarray(log_scale_init, jnp.float32).reshape(d, k)], axis=-1))

    def _params(self):
        return dict(W=self.W[...], c=self.c[...], V=self.V[...], b=self.b[...],
                    rho=self.rho[...], min_log_scale=self.min_log_scale)

    def conditionals(self, x):
        return ar.rnade_conditionals(x.reshape(x.shape[0], -1), **self._params())

    def log_prob(self, x):
        return ar.rnade_log_likelihood(x.reshape(x.shape[0], -1), **self._params())

    def sample(self, key, num: int):
        p = self._params()

        def step(a, key, inp):                                   # a [N, H]
            w_i, v_i, b_i, rho_i = inp                           # [H], [H, 3K], [3K], []
            out = numerics.sigmoid(rho_i * a) @ v_i + b_i         # [N, 3K]
            logit_w, means, log_s = jnp.split(out, 3, axis=-1)
            log_s = jnp.maximum(log_s, self.min_log_scale)
            k_comp, k_noise = jax.random.split(key)
            comp = jax.random.categorical(k_comp, logit_w, axis=-1)            # [N]
            pick = lambda v: jnp.take_along_axis(v, comp[:, None], -1)[:, 0]   # noqa: E731
            x_i = pick(means) + jnp.exp(pick(log_s)) * jax.random.normal(k_noise, (num,))
            log_p = ar.gaussian_mixture_log_prob(x_i, logit_w, means, log_s)
            return a + x_i[:, None] * w_i, x_i, log_p

        a0 = jnp.broadcast_to(p["c"], (num, self.hidden))
        _, x, log_p = ancestral.ancestral_sample(
            key, step, a0, self.dim, xs=(p["W"].T, p["V"], p["b"], p["rho"]))
        return x.reshape((num,) + self.example_shape), log_p
