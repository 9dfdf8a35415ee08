"""Pure objectives, one file per family. Every function takes arrays and plain callables
and documents its shapes; units are nats unless a name says bits."""

from genjax.losses import autoregressive, ddpm, ebm, flow, gan, gmm, recommend, score
from genjax.losses.autoregressive import (categorical_autoregressive_log_likelihood,
                                          fvbn_log_likelihood, nade_log_likelihood,
                                          nade_log_likelihood_naive, rnade_log_likelihood)
from genjax.losses.ddpm import bits_per_dim, noise_loss, vlb_terms
from genjax.losses.ebm import contrastive_divergence
from genjax.losses.flow import dequantized_log_likelihood, flow_nll
from genjax.losses.gan import (discriminator_loss, generator_loss_non_saturating,
                               generator_loss_saturating, gradient_penalty,
                               hinge_discriminator_loss, hinge_generator_loss, minimax_value,
                               optimal_discriminator_logits, wasserstein_critic_loss,
                               wasserstein_generator_loss)
from genjax.losses.gmm import bernoulli_mixture_log_likelihood
from genjax.losses.gmm import elbo as gmm_elbo
from genjax.losses.gmm import log_likelihood as gmm_log_likelihood
from genjax.losses.gmm import responsibilities as gmm_responsibilities
from genjax.losses.recommend import (beta_annealing, l2_penalty, multinomial_log_likelihood,
                                     mult_dae_loss, mult_vae_loss, normalize_and_dropout)
from genjax.losses.score import (denoising_score_matching, dsm_per_level,
                                  exact_score_matching, geometric_sigmas,
                                  sliced_score_matching)
from genjax.losses.vae import (autoencoder_loss, elbo, elbo_terms, iw_log_weights, iwae_bound,
                               iwae_bound_terms, log_likelihood)

__all__ = ["autoregressive", "flow", "gan", "categorical_autoregressive_log_likelihood",
           "fvbn_log_likelihood", "nade_log_likelihood",
           "nade_log_likelihood_naive", "rnade_log_likelihood",
           "discriminator_loss", "generator_loss_non_saturating", "generator_loss_saturating",
           "gradient_penalty", "hinge_discriminator_loss", "hinge_generator_loss",
           "minimax_value", "optimal_discriminator_logits", "wasserstein_critic_loss",
           "wasserstein_generator_loss",
           "autoencoder_loss", "bernoulli_mixture_log_likelihood", "bits_per_dim", "ddpm",
           "elbo", "elbo_terms", "gmm", "noise_loss", "vlb_terms",
           "dequantized_log_likelihood", "flow_nll",
           "gmm_elbo", "gmm_log_likelihood", "gmm_responsibilities", "iw_log_weights", "iwae_bound",
           "iwae_bound_terms", "log_likelihood",
           "score", "denoising_score_matching", "dsm_per_level", "exact_score_matching",
           "geometric_sigmas", "sliced_score_matching", "ebm", "contrastive_divergence",
           "recommend", "beta_annealing", "l2_penalty", "multinomial_log_likelihood",
           "mult_dae_loss", "mult_vae_loss", "normalize_and_dropout"]
