"""Flax NNX building blocks."""

from genjax.nn import loop_conv
from genjax.nn.batch_stat_norm import BatchStatNorm
from genjax.nn.conv import ConvDecoder, ConvEncoder
from genjax.nn.group_norm import GroupNorm
from genjax.nn.mlp import MLP

__all__ = ["BatchStatNorm", "GroupNorm", "loop_conv", "MLP", "ConvEncoder", "ConvDecoder"]
