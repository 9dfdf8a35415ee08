"""Pure objectives, one file per family. Every function takes arrays and plain callables
and documents its shapes; units are nats unless a name says bits."""

from genjax.losses.vae import (elbo, elbo_terms, iw_log_weights, iwae_bound,
                               iwae_bound_terms, log_likelihood)

__all__ = ["elbo", "elbo_terms", "iw_log_weights", "iwae_bound", "iwae_bound_terms",
           "log_likelihood"]
