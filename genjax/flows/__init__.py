"""Normalizing flows: bijectors with log-determinants as pure functions (`bijectors`)."""

from genjax.flows.bijectors import (actnorm, actnorm_init, affine_coupling, chain,
                                    channel_mask, checkerboard_mask, conv1x1, conv1x1_init,
                                    conv1x1_weight, permute, squeeze)

__all__ = ["actnorm", "actnorm_init", "affine_coupling", "chain", "channel_mask",
           "checkerboard_mask", "conv1x1", "conv1x1_init", "conv1x1_weight", "permute",
           "squeeze"]
