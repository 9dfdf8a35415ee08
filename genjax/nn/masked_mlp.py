"""MADE as the conditioner of an autoregressive flow: x [B, D] -> theta [B, D, P], where
theta[:, d, :] is a function of the inputs before d in an ordering only.

The connectivity is MADE's (`genjax.models.made.made_masks`; Germain et al. 2015): input
d has degree m_0(d) = its rank 1..D in the ordering, hidden unit k of layer l a degree
m_l(k) in 1..D-1; a hidden unit sees the units below of degree <= its own, and output d
sees the last hidden units of degree < m_0(d). A flow needs P numbers per dimension
(shift and log-scale, spline knots), so output d's mask column is repeated P times, laid
out [d0 p0 .. d0 p(P-1), d1 p0, ...]: the reshape to [B, D, P] groups them by dimension
and keeps the autoregressive property d theta[:, d] / d x[:, d'] = 0 unless d' comes
strictly before d.

``zero_init=True`` (the default) zeroes the output layer's kernel and bias, so theta = 0
for every x: with the affine transformer (y = x e^s + t) every layer starts as the
identity, as in MAF and Glow. The masks are `genjax.models.made.Mask` variables, not
`nnx.Param`: ``nnx.split(model, nnx.Param, ...)`` keeps them out of the optimiser.

Conditional (``condition_dim`` C > 0; a conditional MAF, flowjax's ``condition=``): a
condition c [B, C] (e.g. a one-hot class, `genjax.conditioning.one_hot`) is one more
input connected to every unit of the first hidden layer, through an unmasked kernel
[C, H_1] (the mask rows of the condition inputs are all ones), and, with
``condition_to_output``, directly to every output through a kernel [C, D P] that starts
at zero. Every theta may then depend on c, and the autoregressive property in x is
unchanged. With C = 0 (the default) the module has no extra parameter and computes what
it always did, bit for bit.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax.models.made import Mask, made_masks


class MaskedMLP(nnx.Module):
    """x [B, D] -> theta [B, D, num_params]. ``ordering`` is "natural", "reverse" or
    "random" (drawn from ``mask_seed``, as are the hidden degrees); ``order`` [D] (a `Mask`)
    is the ordering: order[t] is the t-th dimension, pass it to the flow. ``activation``
    between hidden layers, none after the last. ``condition_dim`` > 0: the module takes a
    condition [B, condition_dim] (see the module docstring); call it as
    ``model(x, condition)``."""

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), num_params: int = 2, *,
                 ordering: str = "natural", mask_seed: int = 0,
                 activation: Callable = jax.nn.relu, zero_init: bool = True,
                 condition_dim: int = 0, condition_to_output: bool = True,
                 rngs: nnx.Rngs):
        orders, masks = made_masks(dim, tuple(hidden), ordering=ordering, num_masks=1,
                                   seed=mask_seed)
        self.dim, self.num_params = int(dim), int(num_params)
        self.activation = activation
        self.order = Mask(jnp.asarray(orders[0]))                          # [D] int32
        out_mask = np.repeat(masks[-1][0], num_params, axis=1)            # [H_L, D P]
        self.masks = nnx.List([Mask(jnp.asarray(m[0])) for m in masks[:-1]]
                              + [Mask(jnp.asarray(out_mask))])
        sizes = [dim, *hidden, dim * num_params]
        kernels = [jax.random.normal(rngs.params(), (a, b)) / math.sqrt(a)
                   for a, b in zip(sizes[:-1], sizes[1:])]
        if zero_init:
            kernels[-1] = jnp.zeros_like(kernels[-1])
        self.kernels = nnx.List([nnx.Param(k) for k in kernels])
        self.biases = nnx.List([nnx.Param(jnp.zeros((b,))) for b in sizes[1:]])
        self.condition_dim = int(condition_dim)
        if self.condition_dim:
            if not hidden:
                raise ValueError("a conditional MaskedMLP needs a hidden layer")
            self.condition_kernel = nnx.Param(
                jax.random.normal(rngs.params(), (self.condition_dim, hidden[0]))
                / math.sqrt(self.condition_dim))
            self.condition_out = (nnx.Param(jnp.zeros((self.condition_dim, sizes[-1])))
                                  if condition_to_output else None)

    def __call__(self, x, condition=None):       # x [B, D], condition [B, C] -> [B, D, P]
        if (condition is None) != (self.condition_dim == 0):
            raise ValueError(f"MaskedMLP with condition_dim={self.condition_dim} called "
                             f"with condition={'None' if condition is None else 'an array'}")
        h = x
        n = len(self.kernels)
        for l in range(n):
            h = h @ (self.kernels[l][...] * self.masks[l][...]) + self.biases[l][...]
            if condition is not None and l == 0:          # every first-layer unit sees c
                h = h + condition @ self.condition_kernel[...]
            if condition is not None and l == n - 1 and self.condition_out is not None:
                h = h + condition @ self.condition_out[...]
            if l < n - 1:
                h = self.activation(h)
        return h.reshape(x.shape[0], self.dim, self.num_params)


def as_conditioner(model: MaskedMLP):
    """(conditioner, params, order) for `genjax.flows.autoregressive`: the pure function
    conditioner(params, x [B, D]) -> theta [B, D, P] (a conditional model:
    conditioner(params, x, condition [B, C])), the trainable parameters (an `nnx.State` of
    the `nnx.Param`s; the masks are closed over) and the ordering as numpy."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def conditioner(p, x, *condition):
        return nnx.merge(graphdef, p, rest)(x, *condition)

    return conditioner, params, np.asarray(model.order[...])
