"""Energy-based models trained by contrastive divergence (maximum likelihood with MCMC
negatives).

For p_theta(x) = exp(-E_theta(x)) / Z_theta, the gradient of the negative log-likelihood
is grad E(x_data) - E_{x ~ p_theta}[grad E(x)]. `contrastive_divergence` is the loss whose
gradient is that estimate, given negatives x_neg drawn (approximately) from the model by
short-run Langevin dynamics (`genjax.mcmc.ula`) and held fixed (no gradient flows through
the sampler), plus the energy-magnitude penalty alpha * (E(x+)^2 + E(x-)^2) of Du &
Mordatch (2019) that keeps energies near zero (without it, the loss is unbounded in an
offset-free direction and training drifts).

    loss, metrics = contrastive_divergence(x_data, x_neg, energy_fn=lambda x: net(x),
                                           alpha=1.0)

Energies are in nats (p proportional to exp(-E)).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax.shapes import Shapes


def contrastive_divergence(x_pos, x_neg, *, energy_fn: Callable, alpha=1.0):
    """x_pos: data [B, *E]; x_neg: model samples [M, *E] (gradient stopped here);
    energy_fn(x [N, *E]) -> [N]. Returns (loss scalar, metrics): loss = mean E(x_pos) -
    mean E(x_neg) + alpha * (mean E(x_pos)^2 + mean E(x_neg)^2); metrics "cd" (the
    energy gap mean E(x_pos) - mean E(x_neg), nats; negative when data are more probable
    than the negatives), "energy/data", "energy/samples", "energy/penalty". ``alpha``
    may be a traced array (a sweep varies it)."""
    s = Shapes("losses.ebm.contrastive_divergence")
    s("x_pos", x_pos, "B *E")
    s("x_neg", x_neg, "M *E")
    x = jnp.concatenate([x_pos, jax.lax.stop_gradient(x_neg)])
    s("concatenate([x_pos, x_neg])", x, "N *E")
    e = energy_fn(x)                                                   # [B + M]
    s("energy_fn(x)", e, "N")
    e_pos, e_neg = e[:x_pos.shape[0]], e[x_pos.shape[0]:]           # [B], [M]
    gap = e_pos.mean() - e_neg.mean()
    penalty = jnp.mean(e_pos ** 2) + jnp.mean(e_neg ** 2)
    loss = gap + alpha * penalty
    return loss, {"cd": gap, "energy/data": e_pos.mean(), "energy/samples": e_neg.mean(),
                  "energy/penalty": penalty}
