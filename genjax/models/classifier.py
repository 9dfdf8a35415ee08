"""A small image classifier whose penultimate layer gives the features of the classifier
Fréchet distance (`genjax.eval.sample_quality`)."""

from __future__ import annotations

import math
from typing import Sequence

import jax
from flax import nnx

from genjax.nn import MLP


class Classifier(nnx.Module):
    """x [B, *E] float in [0, 1] -> logits [B, num_classes]; ``features(x)`` -> [B, F]
    with F = hidden[-1], the ReLU activations before the output layer."""

    def __init__(self, example_shape: Sequence[int], num_classes: int, *,
                 hidden: Sequence[int] = (256, 128), rngs: nnx.Rngs):
        if not hidden:
            raise ValueError("the classifier needs at least one hidden layer for features")
        self.example_shape = tuple(example_shape)
        self.body = MLP(math.prod(self.example_shape), tuple(hidden[:-1]), hidden[-1],
                        rngs=rngs)
        self.head = nnx.Linear(hidden[-1], num_classes, rngs=rngs)

    def features(self, x):
        return jax.nn.relu(self.body(x.reshape(x.shape[0], -1)))

    def __call__(self, x):
        return self.head(self.features(x))
