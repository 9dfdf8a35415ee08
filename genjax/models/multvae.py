"""Mult-VAE and Mult-DAE (Liang et al., 2018; reference code dawenl/vae_cf): MLP
autoencoders over a user's item vector with a multinomial (softmax) decoder.

The modules hold parameters only. Training goes through the pure objectives in
``genjax.losses.recommend`` with ``model.encode`` / ``model.decode_logits`` as the
callables (they see the L2-normalised, dropped-out row; the losses apply that):

    model = MultVAE(num_items, rngs=nnx.Rngs(0))
    loss, metrics = losses.mult_vae_loss(x, key, encode=model.encode,
                                         decode_logits=model.decode_logits, beta=beta)

To score users for ranking, `scores(model, x)` encodes the normalised fold-in rows
without dropout and decodes the mean code (the code, for the DAE) to logits.

Initialisation as dawenl's code: Glorot (Xavier) uniform weights, biases from a normal
truncated at two standard deviations of 0.001. The layers are plain `nnx.Linear`s rather
than `genjax.nn.MLP`, which has no way to choose these initialisers.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import nnx

from genjax.losses.recommend import normalize_and_dropout

_KERNEL_INIT = nnx.initializers.glorot_uniform()     # tf's xavier_initializer (uniform)
_BIAS_INIT = nnx.initializers.truncated_normal(stddev=0.001)


def _dense_stack(sizes: Sequence[int], rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([nnx.Linear(a, b, kernel_init=_KERNEL_INIT, bias_init=_BIAS_INIT,
                                rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])


def _run(layers, h, tanh_last: bool):
    """tanh after every layer but the last (and after the last too when tanh_last)."""
    for i, layer in enumerate(layers):
        h = layer(h)
        if tanh_last or i < len(layers) - 1:
            h = jnp.tanh(h)
    return h


def _check_sizes(num_items, hidden, latent) -> tuple[int, ...]:
    hidden = tuple(hidden)
    for name, v in [("num_items", num_items), ("latent", latent)] + \
            [(f"hidden[{i}]", h) for i, h in enumerate(hidden)]:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} = {v!r} must be an int >= 1")
    return hidden


class MultVAE(nnx.Module):
    """The Mult-VAE: encode(h) h [B, I] -> (mean [B, Z], log_var [B, Z]) through
    I -> hidden... -> 2 Z (tanh between layers, none on the last, whose output is split
    into mean and log_var); decode_logits(z) z [N, Z] -> logits [N, I] through
    Z -> reversed(hidden)... -> I (tanh between layers, none on the logits).
    The paper's model (ML-20M, Netflix, MSD) is hidden=(600,), latent=200:
    [I -> 600 -> 200 -> 600 -> I].
    """

    def __init__(self, num_items: int, *, hidden: Sequence[int] = (600,), latent: int = 200,
                 rngs: nnx.Rngs):
        hidden = _check_sizes(num_items, hidden, latent)
        self.num_items = num_items
        self.latent = latent
        self.encoder = _dense_stack([num_items, *hidden, 2 * latent], rngs)
        self.decoder = _dense_stack([latent, *reversed(hidden), num_items], rngs)

    def encode(self, h):
        """h [B, I] (the normalised, dropped-out clicks) -> (mean [B, Z], log_var [B, Z])."""
        out = _run(self.encoder, h, tanh_last=False)                     # [B, 2 Z]
        return out[..., :self.latent], out[..., self.latent:]

    def decode_logits(self, z):
        """z [N, Z] -> logits [N, I] of the multinomial over items."""
        return _run(self.decoder, z, tanh_last=False)


class MultDAE(nnx.Module):
    """The Mult-DAE: encode(h) h [B, I] -> the code [B, Z] through I -> hidden... -> Z,
    tanh after every layer (the code is a hidden layer of the whole network);
    decode_logits(code) [N, Z] -> logits [N, I] through Z -> reversed(hidden)... -> I,
    tanh between layers, none on the logits. The paper's model is hidden=(), latent=200:
    [I -> 200 -> I].
    """

    def __init__(self, num_items: int, *, hidden: Sequence[int] = (), latent: int = 200,
                 rngs: nnx.Rngs):
        hidden = _check_sizes(num_items, hidden, latent)
        self.num_items = num_items
        self.latent = latent
        self.encoder = _dense_stack([num_items, *hidden, latent], rngs)
        self.decoder = _dense_stack([latent, *reversed(hidden), num_items], rngs)

    def encode(self, h):
        """h [B, I] -> code [B, Z] (deterministic; in (-1, 1) after the tanh)."""
        return _run(self.encoder, h, tanh_last=True)

    def decode_logits(self, code):
        """code [N, Z] -> logits [N, I] of the multinomial over items."""
        return _run(self.decoder, code, tanh_last=False)


def scores(model, x):
    """Ranking scores [B, I] (the decoder's logits; softmax is monotone, so they rank as
    the probabilities do) of a `MultVAE` or `MultDAE` for the fold-in rows x [B, I]: the
    L2-normalised rows without dropout, and the mean code for the Mult-VAE."""
    h = normalize_and_dropout(x, None, dropout_rate=0.0, train=False)   # [B, I]
    code = model.encode(h)
    if isinstance(code, tuple):                                         # (mean, log_var)
        code = code[0]
    return model.decode_logits(code)                                    # [B, I]
