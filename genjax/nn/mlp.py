"""A plain multi-layer perceptron (Flax NNX)."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
from flax import nnx


class MLP(nnx.Module):
    """x [..., in_features] -> [..., out_features]; ``activation`` between layers, none
    after the last."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 activation: Callable = jax.nn.relu, rngs: nnx.Rngs):
        sizes = [in_features, *hidden, out_features]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.activation = activation

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
