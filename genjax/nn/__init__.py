"""Flax NNX building blocks."""

from genjax.nn.conv import ConvDecoder, ConvEncoder
from genjax.nn.mlp import MLP

__all__ = ["MLP", "ConvEncoder", "ConvDecoder"]
