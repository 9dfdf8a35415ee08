"""Normalizing flows as pure functions: bijectors with log-determinants (`bijectors`),
element-wise transformers (`transformers`: affine; `splines`: rational-quadratic splines)
and autoregressive flows on MADE conditioners (`autoregressive`: MAF, IAF). The models
that chain them are in `genjax.models.flow`. Every bijector takes an optional
``condition=`` (flowjax's conditional flows): couplings and autoregressive layers hand it
to their conditioner, the others ignore it, None changes nothing."""

from genjax.flows import autoregressive, splines, transformers
from genjax.flows.autoregressive import inverse_autoregressive, invert, masked_autoregressive
from genjax.flows.bijectors import (actnorm, actnorm_init, affine_coupling, chain, channel_mask,
                                    checkerboard_mask, conv1x1, conv1x1_init, conv1x1_weight,
                                    coupling, permute, squeeze)
from genjax.flows.splines import rational_quadratic_spline, rq_spline, spline_coupling
from genjax.flows.transformers import Transformer, affine

__all__ = ["actnorm", "actnorm_init", "affine", "affine_coupling", "autoregressive", "chain",
           "channel_mask", "checkerboard_mask", "conv1x1", "conv1x1_init", "conv1x1_weight",
           "coupling", "inverse_autoregressive", "invert", "masked_autoregressive", "permute",
           "rational_quadratic_spline", "rq_spline", "spline_coupling", "splines", "squeeze",
           "Transformer", "transformers"]
