"""Flax NNX building blocks."""

from genjax.nn import loop_conv
from genjax.nn.batch_stat_norm import BatchStatNorm
from genjax.nn.conv import ConvDecoder, ConvEncoder
from genjax.nn.mlp import MLP

__all__ = ["BatchStatNorm", "loop_conv", "MLP", "ConvEncoder", "ConvDecoder"]
