"""Pure MCMC samplers on a batch of independent chains, each one compiled ``lax.scan``.

* `ula`: the unadjusted Langevin algorithm (also the short-run dynamics of EBM training).
* `annealed_langevin`: Song & Ermon's annealed Langevin dynamics over noise levels.
* `mala`: the Metropolis-adjusted Langevin algorithm (`mala_log_acceptance`).
* `hmc`: Hamiltonian Monte Carlo with a fixed number of leapfrog steps and a diagonal
  mass (`leapfrog`, `hamiltonian`, `hmc_log_acceptance`).
* `diagnostics.effective_sample_size`: multi-chain ESS (Stan / Geyer).

Every sampler takes a key, the chains' starts x0 [C, *E] and plain callables
(``score_fn(x) -> [C, *E]`` or ``log_prob_fn(x) -> [C]``: a Flax module, a lambda), and
returns a `Chain` (x, samples, accept_rate). Step sizes are floats or per-chain arrays
[C]; the samplers are jittable and vmappable over any array argument (keys, step sizes).

    from genjax import mcmc
    chain = mcmc.mala(key, x0, log_prob_fn=log_p, step_size=0.1, num_steps=1000,
                      burn_in=500, keep_samples=True)
    ess = mcmc.effective_sample_size(chain.samples)           # [*E]
"""

# the functions hmc and mala shadow their modules' names here; import from the modules
# (genjax.mcmc.hmc, genjax.mcmc.mala) by `from ... import`, which still works
from genjax.mcmc import chain, diagnostics, langevin
from genjax.mcmc.chain import Chain, run_chain, step_keys
from genjax.mcmc.diagnostics import effective_sample_size
from genjax.mcmc.hmc import hamiltonian, hmc, hmc_log_acceptance, leapfrog
from genjax.mcmc.langevin import annealed_langevin, ula
from genjax.mcmc.mala import mala, mala_log_acceptance

__all__ = ["Chain", "annealed_langevin", "chain", "diagnostics", "effective_sample_size",
           "hamiltonian", "hmc", "hmc_log_acceptance", "langevin", "leapfrog", "mala",
           "mala_log_acceptance", "run_chain", "step_keys", "ula"]
