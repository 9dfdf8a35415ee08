"""Autoregressive flows: MAF (Papamakarios, Pavlakou & Murray, 2017) and IAF (Kingma,
Salimans, Jozefowicz, Chen, Sutskever & Welling, 2016), as bijectors in the convention
of `genjax.flows.bijectors` (each (params, x [B, D]) -> (y [B, D], logdet [B])).

A conditioner c(params, x) -> theta [B, D, P] whose theta[:, d] depends only on the
dimensions before d in an ordering (a MADE: `genjax.nn.masked_mlp.MaskedMLP`) and an
element-wise monotone transformer tau (`genjax.flows.transformers`) give

    MAF, data x -> noise z:   z_d = tau(x_d; c(x)_d),   c(x)_d a function of x_<d only,

whose Jacobian dz/dx is triangular in the ordering, so

    log|det dz/dx| = sum_d log|d tau / d x_d|           (the transformer's terms, [B])

and log p(x) = log p_Z(z) + log|det dz/dx|. Here ``forward`` is that direction, data to
noise, and costs ONE conditioner pass for the whole batch: MAF evaluates densities in
one pass. ``inverse`` (noise to data, i.e. sampling) must undo it dimension by dimension:
x_{o_t} = tau^-1(z_{o_t}; c(x)_{o_t}) for t = 1..D, where c(x)_{o_t} uses only the
x_{o_1..o_{t-1}} already set; a `jax.lax.scan` of D conditioner passes.

IAF is the same map the other way round (`invert` swaps forward and inverse): its noise
to data map x = tau(z; c(z)) is one pass, so IAF samples (and scores its own samples,
as in a variational posterior) in one pass, while the density of a given x needs the D
passes of the scan. MAF: density 1 pass, sampling D passes; IAF: sampling 1 pass,
density of arbitrary data D passes.

Conditional (flowjax's ``condition=``; the conditional MAF of Papamakarios et al.):
forward(params, x, condition=c) and inverse(params, z, condition=c) call
conditioner(params, x, c) -> theta [B, D, P], where c [B, ...] (e.g. a one-hot class) may
reach every theta[:, d] (it is not part of the ordering); for a fixed c the map is the
same triangular bijection of x. With ``condition=None`` the conditioner is called with
two arguments, exactly as before.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.flows.bijectors import Bijector
from genjax.flows.transformers import Transformer


def _check_order(order, dim: int) -> np.ndarray:
    """order [D] int32 (arange(dim) when None); ValueError unless a permutation of 0..D-1."""
    order = np.arange(dim) if order is None else np.asarray(order)
    if order.shape != (dim,) or not np.array_equal(np.sort(order), np.arange(dim)):
        raise ValueError(f"order must be a permutation of 0..{dim - 1}, got {order.tolist()}")
    return order.astype(np.int32)


def invert(bijector: Bijector) -> Bijector:
    """The inverse bijector: forward and inverse swapped (log-determinants follow)."""
    forward, inverse = bijector
    return inverse, forward


def masked_autoregressive(conditioner: Callable, transformer: Transformer, dim: int,
                          order=None) -> Bijector:
    """MAF: forward(params, x [B, D]) -> (z, log|det dz/dx| [B]) in one conditioner pass;
    inverse(params, z) -> (x, log|det dx/dz| [B]) in a scan of D passes over ``order``
    ([D] ints, order[t] the t-th dimension; arange(D) by default; it must be the
    conditioner's, e.g. `MaskedMLP.order`). conditioner(params, x [B, D]) -> [B, D, P]
    with P = transformer.num_params; with ``condition=c`` given to forward / inverse,
    conditioner(params, x, c)."""
    order = _check_order(order, dim)
    p = transformer.num_params

    def _theta(params, x, condition):                        # x [B, D] -> [B, D, P]
        theta = (conditioner(params, x) if condition is None
                 else conditioner(params, x, condition))
        if theta.shape != (x.shape[0], dim, p):
            raise ValueError(f"the conditioner returned shape {theta.shape}; expected "
                             f"{(x.shape[0], dim, p)} ([B, D, num_params])")
        return theta

    def forward(params, x, condition=None):
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(f"expected x of shape [B, {dim}], got {x.shape}")
        z, ld = transformer.forward(x, _theta(params, x, condition))   # [B, D], [B, D]
        return z, ld.sum(-1)

    def inverse(params, z, condition=None):
        if z.ndim != 2 or z.shape[1] != dim:
            raise ValueError(f"expected z of shape [B, {dim}], got {z.shape}")

        def step(carry, d):                                  # set dimension d = order[t]
            x, ld = carry                                    # [B, D], [B]
            theta_d = _theta(params, x, condition)[:, d]     # [B, P]: x's earlier dims set
            x_d, ld_d = transformer.inverse(z[:, d], theta_d)           # [B], [B]
            return (x.at[:, d].set(x_d), ld + ld_d), None

        init = (jnp.zeros_like(z), jnp.zeros(z.shape[:1], z.dtype))
        (x, ld), _ = jax.lax.scan(step, init, jnp.asarray(order))
        return x, ld

    return forward, inverse


def inverse_autoregressive(conditioner: Callable, transformer: Transformer, dim: int,
                           order=None) -> Bijector:
    """IAF = invert(MAF): forward(params, x) -> (z, log|det dz/dx|) solves
    x = tau(z; c(z)) by the D-pass scan; inverse(params, z) -> (x = tau(z; c(z)),
    log|det dx/dz|) is one pass. Same arguments as `masked_autoregressive`."""
    return invert(masked_autoregressive(conditioner, transformer, dim, order))
