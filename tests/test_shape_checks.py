"""Every public function of `genjax.losses` and `genjax.distributions` checks the shapes it
documents at trace time: a mismatched shape raises a ValueError that names the function,
the argument and both shapes, instead of broadcasting to a silently wrong number.

All calls go through `jax.eval_shape`, so nothing is compiled or run: the checks read only
static shapes."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import distributions as dist
from genjax import losses
from genjax.diffusion.schedules import make_schedule
from genjax.losses import autoregressive as ar
from genjax.losses import ddpm, ebm, flow, gan, gmm, recommend, score, vae
from genjax.shapes import Shapes

MODULES = (dist, vae, gmm, gan, ar, ddpm, flow, score, ebm, recommend)
# Public functions with no array shape to get wrong, and why.
EXEMPT = {
    gan.log_d: "element-wise on one array of any shape",
    gan.log_one_minus_d: "element-wise on one array of any shape",
    gan.objective: "takes a name, returns two functions (each checked)",
    ar.fvbn_mask: "takes two ints, returns the [D, D] mask",
    flow.check_images_u8: "a host-side check of values (0..255 integers), any shape",
    # the conditional forms (issue 20): shape-checked by _check_cnade (x [B, D], context
    # [B, K + 1]), whose errors tests/test_autoregressive_conditional.py checks
    ar.conditional_nade_logits: "checked by _check_cnade (test_autoregressive_conditional)",
    ar.conditional_nade_log_likelihood: "checked by _check_cnade",
    ar.conditional_nade_log_likelihood_naive: "checked by _check_cnade",
    ddpm.conditional_noise_loss: "noise_loss's checks on x0; y [B] goes to model_fn",
    recommend.beta_annealing: "element-wise on step of any shape",
    recommend.l2_penalty: "a sum over a pytree of arrays of any shapes",
}

KEY = jax.random.key(0)
SCHEDULE = make_schedule("linear", 20)


def z(*shape):
    return jnp.zeros(shape, jnp.float32)


def enc(mean_shape, log_var_shape):
    return lambda x: (z(*mean_shape), z(*log_var_shape))


def const(*shape):
    return lambda *args: z(*shape)


# B = 4, D = 3, Z = 2 (VAE, autoregressive); N = 5, D = 2, K = 3 (mixtures);
# B = 2, E = (4, 4, 1) (DDPM); B = 4, E = (3,), L = 3 (score matching). Each row:
# (function, call with one mismatched argument, the argument's name in the message, its
# shape, the expected shape as the message puts it)
X43 = z(4, 3)
NADE = dict(W=z(2, 3), c=z(2), V=z(3, 2), b=z(3))
RNADE = dict(W=z(2, 3), c=z(2), V=z(3, 2, 6), b=z(3, 6), rho=z(3))
X0 = z(2, 4, 4, 1)
CASES = [
    # ------------------------------------------------------------------ distributions
    (dist.sum_event, lambda: dist.sum_event(z(3), 2), "v", (3,), "at least 2 axes"),
    (dist.log_normal_diag, lambda: dist.log_normal_diag(z(4, 1), z(4, 5), z(4, 5)),
     "mean", (4, 5), "E = (1,)"),
    (dist.log_standard_normal, lambda: dist.log_standard_normal(z(3), event_ndim=2),
     "x", (3,), "at least 2 axes"),
    (dist.log_bernoulli_logits, lambda: dist.log_bernoulli_logits(z(4, 1), z(4, 784)),
     "logits", (4, 784), "E = (1,)"),
    (dist.normal_kl, lambda: dist.normal_kl(z(4, 1), z(4, 1), z(4, 3), 0.0),
     "mean_p", (4, 3), "E = (1,)"),
    (dist.normal_kl_to_standard, lambda: dist.normal_kl_to_standard(z(4, 2), z(4, 3)),
     "log_var", (4, 3), "E = (2,)"),
    (dist.sample_normal_diag, lambda: dist.sample_normal_diag(KEY, z(2), z(4, 2)),
     "log_var", (4, 2), "(2,)"),
    # ------------------------------------------------------------------------ VAE
    (vae.log_likelihood, lambda: vae.log_likelihood(z(4, 1), z(4, 784)),
     "decoded (logits)", (4, 784), "(4, 1)"),
    (vae.log_likelihood, lambda: vae.log_likelihood(X43, (X43, z(5, 3)), "gaussian"),
     "decoded[1] (log_var)", (5, 3), "(4, 3)"),
    (vae.elbo_terms, lambda: vae.elbo_terms(X43, KEY, encode=enc((4, 2), (4, 1)),
                                            decode=const(4, 3)),
     "encode(x)[1] (log_var)", (4, 1), "(4, 2)"),
    (vae.elbo, lambda: vae.elbo(X43, KEY, encode=enc((4, 2), (4, 2)), decode=const(4, 1)),
     "decode(z) (logits)", (4, 1), "(4, 3)"),
    (vae.autoencoder_loss, lambda: vae.autoencoder_loss(X43, encode=enc((5, 2), (5, 2)),
                                                        decode=const(4, 3)),
     "encode(x)[0] (codes)", (5, 2), "(4, Z)"),
    (vae.iw_log_weights, lambda: vae.iw_log_weights(X43, KEY, encode=enc((4, 2), (4, 2)),
                                                    decode=const(4, 3), num_samples=2),
     "decode(z) (logits)", (4, 3), "(8, 3)"),
    (vae.iwae_bound_terms, lambda: vae.iwae_bound_terms(
        X43, KEY, encode=enc((4, 2), (4, 2)), decode=lambda zz: (z(8, 3), z(8, 2)),
        num_samples=2, likelihood="gaussian"),
     "decode(z)[1] (log_var)", (8, 2), "(8, 3)"),
    (vae.iwae_bound, lambda: vae.iwae_bound(X43, KEY, encode=enc((4, 2), (2,)),
                                            decode=const(8, 3), num_samples=2),
     "encode(x)[1] (log_var)", (2,), "(4, 2)"),
    # ----------------------------------------------------------------------- mixtures
    (gmm.precision_cholesky, lambda: gmm.precision_cholesky(z(3, 2, 3), "full"),
     "covariances (full)", (3, 2, 3), "[K, D, D]"),
    (gmm.lower_triangular_inverse, lambda: gmm.lower_triangular_inverse(z(2, 3)),
     "chol", (2, 3), "[..., D, D]"),
    (gmm.log_gaussian_prob, lambda: gmm.log_gaussian_prob(z(5, 2), z(3, 4), z(3, 2, 2)),
     "means", (3, 4), "(K, 2)"),
    (gmm.log_joint, lambda: gmm.log_joint(z(5, 2), z(4), z(3, 2), z(3, 2, 2)),
     "weights", (4,), "(3,)"),
    # the case: means [K, D'] for data [N, D] used D columns and a D' log-det
    (gmm.log_likelihood, lambda: gmm.log_likelihood(z(5, 2), z(3), z(3, 3), z(3, 3, 3)),
     "means", (3, 3), "(K, 2)"),
    (gmm.responsibilities, lambda: gmm.responsibilities(
        z(5, 2), z(3), z(3, 2), z(3, 3), covariance_type="diag"),
     "covariances (diag)", (3, 3), "(3, 2)"),
    (gmm.elbo_from_log_joint, lambda: gmm.elbo_from_log_joint(z(5, 3), z(5, 4)),
     "q", (5, 4), "(5, 3)"),
    (gmm.elbo, lambda: gmm.elbo(z(5, 2), z(4, 3), z(3), z(3, 2), z(3),
                                covariance_type="spherical"),
     "q", (4, 3), "(5, 3)"),
    (gmm.bernoulli_mixture_log_joint,
     lambda: gmm.bernoulli_mixture_log_joint(z(5, 2), z(3), z(3, 4)),
     "logits", (3, 4), "(K, 2)"),
    (gmm.bernoulli_mixture_log_likelihood,
     lambda: gmm.bernoulli_mixture_log_likelihood(z(5, 2), z(4), z(3, 2)),
     "weights", (4,), "(3,)"),
    # ---------------------------------------------------------------------------- GAN
    (gan.optimal_discriminator_logits,
     lambda: gan.optimal_discriminator_logits(z(4), z(4, 1)), "log_p_model", (4, 1), "(4,)"),
    # the case: logits [B, 1] with weights [B] became a [B, B] sum
    (gan.minimax_value, lambda: gan.minimax_value(z(4, 1), z(4), real_weights=z(4)),
     "real_logits", (4, 1), "[B]: 1 axis"),
    (gan.discriminator_loss, lambda: gan.discriminator_loss(z(4), z(4), fake_weights=z(3)),
     "fake_weights", (3,), "(4,)"),
    (gan.generator_loss_saturating,
     lambda: gan.generator_loss_saturating(z(4), weights=z(4, 1)), "weights", (4, 1), "(4,)"),
    (gan.generator_loss_non_saturating, lambda: gan.generator_loss_non_saturating(z(4, 1)),
     "fake_logits", (4, 1), "[B']: 1 axis"),
    (gan.hinge_discriminator_loss, lambda: gan.hinge_discriminator_loss(z(4, 1), z(4)),
     "real_logits", (4, 1), "[B]: 1 axis"),
    (gan.hinge_generator_loss, lambda: gan.hinge_generator_loss(z(4, 2)),
     "fake_logits", (4, 2), "[B']: 1 axis"),
    (gan.wasserstein_critic_loss, lambda: gan.wasserstein_critic_loss(z(4), z(2, 2)),
     "fake_logits", (2, 2), "[B']: 1 axis"),
    (gan.wasserstein_generator_loss, lambda: gan.wasserstein_generator_loss(z()),
     "fake_logits", (), "[B']: 1 axis"),
    (gan.gradient_penalty, lambda: gan.gradient_penalty(lambda x: x[:, :1], X43, X43, KEY),
     "critic(x_hat)", (4, 1), "(4,)"),
    (gan.gradient_penalty, lambda: gan.gradient_penalty(lambda x: x[:, 0], X43, z(4, 2), KEY),
     "fake", (4, 2), "(4, 3)"),
    # ------------------------------------------------------------------ autoregressive
    (ar.bernoulli_log_likelihood, lambda: ar.bernoulli_log_likelihood(z(4, 1), X43),
     "logits", (4, 3), "(4, 1)"),
    (ar.autoregressive_log_likelihood,
     lambda: ar.autoregressive_log_likelihood(X43, logits_fn=const(4, 1)),
     "logits_fn(x)", (4, 1), "(4, 3)"),
    (ar.categorical_autoregressive_log_likelihood,
     lambda: ar.categorical_autoregressive_log_likelihood(X43, logits_fn=const(4, 2, 5)),
     "logits_fn(x)", (4, 2, 5), "(4, 3, K)"),
    (ar.nll_loss, lambda: ar.nll_loss(z(4, 1)), "log_px", (4, 1), "[B]: 1 axis"),
    (ar.fvbn_logits, lambda: ar.fvbn_logits(X43, W=z(3, 3), b=z(4)), "b", (4,), "(3,)"),
    (ar.fvbn_log_likelihood, lambda: ar.fvbn_log_likelihood(X43, W=z(2, 2), b=z(3)),
     "W", (2, 2), "(3, 3)"),
    (ar.nade_logits, lambda: ar.nade_logits(X43, **dict(NADE, b=z(1))), "b", (1,), "(3,)"),
    (ar.nade_log_likelihood, lambda: ar.nade_log_likelihood(X43, **dict(NADE, W=z(2, 4))),
     "W", (2, 4), "(H, 3)"),
    (ar.nade_log_likelihood_naive,
     lambda: ar.nade_log_likelihood_naive(X43, **dict(NADE, V=z(2, 3))), "V", (2, 3), "(3, 2)"),
    (ar.gaussian_mixture_log_prob,
     lambda: ar.gaussian_mixture_log_prob(z(4), z(4, 2), z(4, 3), z(4, 2)),
     "means", (4, 3), "(..., 2)"),
    (ar.gaussian_mixture_log_prob,
     lambda: ar.gaussian_mixture_log_prob(z(4), z(5, 2), z(5, 2), z(5, 2)),
     "logit_weights", (5, 2), "(4,)"),
    (ar.rnade_conditionals,
     lambda: ar.rnade_conditionals(X43, **dict(RNADE, V=z(3, 2, 5), b=z(3, 5))),
     "V", (3, 2, 5), "multiple of 3"),
    (ar.rnade_log_likelihood, lambda: ar.rnade_log_likelihood(X43, **dict(RNADE, rho=z(4))),
     "rho", (4,), "(3,)"),
    # --------------------------------------------------------------------------- DDPM
    (ddpm.noise_loss, lambda: ddpm.noise_loss(X0, KEY, model_fn=const(2, 1, 1, 1),
                                              schedule=SCHEDULE),
     "model_fn(x_t, t)", (2, 1, 1, 1), "(2, 4, 4, 1)"),
    (ddpm.normal_kl, lambda: ddpm.normal_kl(z(2, 3), z(2, 1), z(2, 4), 0.0),
     "mean2", (2, 4), "(2, 3)"),
    (ddpm.discretized_gaussian_log_likelihood,
     lambda: ddpm.discretized_gaussian_log_likelihood(z(2, 3), mean=z(2, 4), log_scale=0.0),
     "mean", (2, 4), "(2, 3)"),
    (ddpm.prior_kl, lambda: ddpm.prior_kl(z(), SCHEDULE), "x0", (), "[B, *E]"),
    (ddpm.step_terms, lambda: ddpm.step_terms(X0, jnp.zeros((1,), jnp.int32), KEY,
                                              model_fn=const(2, 4, 4, 1), schedule=SCHEDULE),
     "t", (1,), "(2,)"),
    (ddpm.vlb_terms, lambda: ddpm.vlb_terms(X0, KEY, model_fn=const(2, 4, 4, 3),
                                            schedule=SCHEDULE, num_t=2),
     "model_fn(x_t, t)", (2, 4, 4, 3), "(2, 4, 4, 1)"),
    (ddpm.bits_per_dim, lambda: ddpm.bits_per_dim(z(2), (28, 28)),
     "num_dims", (28, 28), "int >= 1"),
    # -------------------------------------------------------------------------- flows
    (flow.dequantize, lambda: flow.dequantize(KEY, z()), "x_u8", (), "[B, *E]"),
    (flow.logit_transform, lambda: flow.logit_transform(z()), "u", (), "[B, *E]"),
    # the flow's log-density must be per example, not per pixel
    (flow.dequantized_log_likelihood,
     lambda: flow.dequantized_log_likelihood(X0, log_prob_fn=lambda y: y),
     "log_prob_fn(y)", (2, 4, 4, 1), "(2,)"),
    (flow.flow_nll, lambda: flow.flow_nll(z(), KEY, log_prob_fn=const(1)), "x_u8", (),
     "[B, *E]"),
    # ---------------------------------------------------------------- score matching
    (score.geometric_sigmas, lambda: score.geometric_sigmas(1.0, 0.01, (3,)),
     "num", (3,), "int >= 1"),
    # a score [B, 1] would broadcast against the noise [B, D] in || sigma s + z ||^2
    (score.denoising_score_matching, lambda: score.denoising_score_matching(
        X43, KEY, score_fn=const(4, 1), sigmas=z(3)),
     "score_fn(x_noisy, level)", (4, 1), "(4, 3)"),
    (score.dsm_per_level, lambda: score.dsm_per_level(X43, KEY, score_fn=const(4, 3),
                                                      sigmas=z(3, 1)),
     "sigmas", (3, 1), "[L]: 1 axis"),
    (score.sliced_score_matching, lambda: score.sliced_score_matching(
        X43, KEY, score_fn=lambda x: x[:1]), "score_fn(x)", (1, 3), "(4, 3)"),
    (score.exact_score_matching, lambda: score.exact_score_matching(
        X43, score_fn=lambda x: x.sum(-1)), "score_fn(x)", (4,), "(4, 3)"),
    # ------------------------------------------------------------------ energy-based
    # negatives of another event shape would be scored by a different energy input
    (ebm.contrastive_divergence, lambda: ebm.contrastive_divergence(
        X43, z(5, 2), energy_fn=lambda x: x.sum(-1)), "x_neg", (5, 2), "(M, 3)"),
    # a per-dimension energy [N, D] would be averaged as if it were per example
    (ebm.contrastive_divergence, lambda: ebm.contrastive_divergence(
        X43, z(5, 3), energy_fn=lambda x: x), "energy_fn(x)", (9, 3), "(9,)"),
    # ------------------------------------------------------------- recommenders (B = 4, I = 3)
    # click counts [B, 1] would broadcast against the logits [B, I]
    (recommend.multinomial_log_likelihood,
     lambda: recommend.multinomial_log_likelihood(X43, z(4, 1)), "x", (4, 1), "(4, 3)"),
    (recommend.normalize_and_dropout,
     lambda: recommend.normalize_and_dropout(X43, KEY, dropout_rate=z(4)),
     "dropout_rate", (4,), "[]: 0 axes"),
    (recommend.mult_vae_loss, lambda: recommend.mult_vae_loss(
        X43, KEY, encode=enc((4, 2), (4, 1)), decode_logits=const(4, 3), beta=1.0),
     "encode(h)[1] (log_var)", (4, 1), "(4, 2)"),
    (recommend.mult_vae_loss, lambda: recommend.mult_vae_loss(
        X43, KEY, encode=enc((4, 2), (4, 2)), decode_logits=const(4, 1), beta=0.2),
     "decode_logits(z)", (4, 1), "(4, 3)"),
    (recommend.mult_dae_loss, lambda: recommend.mult_dae_loss(
        X43, KEY, encode=const(5, 2), decode_logits=const(4, 3)),
     "encode(h) (code)", (5, 2), "(4, H)"),
    (recommend.mult_dae_loss, lambda: recommend.mult_dae_loss(
        X43, KEY, encode=const(4, 2), decode_logits=const(4, 2)),
     "decode_logits(code)", (4, 2), "(4, 3)"),
]


def _name(fn):
    return fn.__module__.removeprefix("genjax.") + "." + fn.__name__


def _public_functions():
    found = {}
    for m in MODULES:
        for name, f in inspect.getmembers(m, inspect.isfunction):
            if f.__module__ == m.__name__ and not name.startswith("_"):
                found[_name(f)] = f
    # genjax.losses re-exports (gmm_elbo, ...) are the same objects
    for name in losses.__all__:
        f = getattr(losses, name)
        if inspect.isfunction(f):
            assert _name(f) in found, name
    return found


@pytest.mark.parametrize("fn, call, arg, bad, expected", CASES,
                         ids=[f"{_name(c[0])}-{c[2]}" for c in CASES])
def test_a_mismatched_shape_raises_naming_the_argument_and_both_shapes(
        fn, call, arg, bad, expected):
    with pytest.raises(ValueError) as err:
        jax.eval_shape(call)                      # traces only: the check is static
    msg = str(err.value)
    assert msg.startswith(_name(fn) + ": "), msg
    assert f"{arg} has shape {bad}" in msg or f"{arg} = {bad}" in msg, msg
    assert expected in msg, msg


def test_every_public_function_is_in_the_table():
    public = _public_functions()
    covered = {_name(c[0]) for c in CASES} | {_name(f) for f in EXEMPT}
    assert set(public) - covered == set(), "add a row to CASES (or to EXEMPT, with a reason)"
    assert covered - set(public) == set()
    assert len(public) == len(covered) >= 50


def test_the_rows_are_mismatches_the_same_call_accepts_when_fixed():
    """Guards the table against rows that fail for another reason: with the mismatched
    argument made right, the same functions trace."""
    ok = [
        lambda: dist.log_bernoulli_logits(z(4, 784), z(4, 784)),
        lambda: dist.log_normal_diag(z(7, 4, 5), z(4, 5), 0.0),       # sample axis, shared
        lambda: dist.sample_normal_diag(KEY, z(4, 2), z(2), (3,)),
        lambda: vae.log_likelihood(z(4, 784), z(4, 784)),
        lambda: vae.iwae_bound(X43, KEY, encode=enc((4, 2), (4, 2)),
                               decode=lambda zz: (z(8, 3), z()), num_samples=2,
                               likelihood="gaussian"),
        lambda: gmm.log_likelihood(z(5, 2), z(3), z(3, 2), z(3, 2, 2)),
        lambda: gmm.elbo(z(5, 2), z(5, 3), z(3), z(3, 2), z(3), covariance_type="spherical"),
        lambda: gan.minimax_value(z(4), z(6), real_weights=z(4), fake_weights=z(6)),
        lambda: gan.gradient_penalty(lambda x: x[:, 0], X43, X43, KEY),
        lambda: ar.nade_log_likelihood(X43, **NADE),
        lambda: ar.categorical_autoregressive_log_likelihood(X43, logits_fn=const(4, 3, 5)),
        lambda: ar.rnade_log_likelihood(X43, **RNADE),
        lambda: ar.gaussian_mixture_log_prob(z(4), z(4, 2), z(1, 2), z(2)),
        lambda: ddpm.vlb_terms(X0, KEY, model_fn=const(2, 4, 4, 1), schedule=SCHEDULE,
                               num_t=2),
        lambda: ddpm.normal_kl(z(2, 3), z(2, 1), z(2, 3), 0.0),
        lambda: score.denoising_score_matching(X43, KEY, score_fn=const(4, 3), sigmas=z(3)),
        lambda: score.dsm_per_level(X43, KEY, score_fn=const(4, 3), sigmas=z(3)),
        lambda: score.sliced_score_matching(X43, KEY, score_fn=jnp.tanh, num_projections=2),
        lambda: score.exact_score_matching(X43, score_fn=jnp.tanh),
        lambda: ebm.contrastive_divergence(X43, z(5, 3), energy_fn=lambda x: x.sum(-1)),
        lambda: recommend.multinomial_log_likelihood(X43, X43),
        lambda: recommend.normalize_and_dropout(X43, KEY, dropout_rate=z()),
        lambda: recommend.mult_vae_loss(X43, KEY, encode=enc((4, 2), (4, 2)),
                                        decode_logits=const(4, 3), beta=z()),
        lambda: recommend.mult_dae_loss(X43, KEY, encode=const(4, 2),
                                        decode_logits=const(4, 3), train=False),
    ]
    for call in ok:
        jax.eval_shape(call)


def test_checks_see_per_example_shapes_under_vmap_and_fire_under_jit():
    # a sweep vmaps over a leading axis: each member sees its own [B, D] and [K, D]
    xs, means = z(6, 5, 2), z(6, 3, 2)
    out = jax.eval_shape(jax.vmap(lambda x, m: gmm.log_likelihood(x, z(3), m, z(3, 2, 2))),
                         xs, means)
    assert out.shape == (6, 5)
    with pytest.raises(ValueError, match="means has shape"):
        jax.jit(lambda m: gmm.log_likelihood(z(5, 2), z(3), m, z(3, 2, 2))).lower(z(3, 4))


def test_gaussian_log_var_shared_by_image_rows_stays_aligned():
    """log_var [W, 1] against x [N, H, W, 1] broadcasts (one variance per image column,
    shared by the rows); flattening it before broadcasting would misalign it. The value
    equals the un-flattened density."""
    k1, k2 = jax.random.split(jax.random.key(1))
    x = jax.random.normal(k1, (3, 4, 5, 1))
    log_var = jax.random.normal(k2, (5, 1))
    got = vae.log_likelihood(x, (jnp.zeros_like(x), log_var), "gaussian")
    want = dist.log_normal_diag(x, 0.0, log_var, event_ndim=3)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_symbols_bind_across_arguments_and_messages_say_where_from():
    s = Shapes("f")
    assert s("x", z(128, 1), "N *E") == (128, 1)
    with pytest.raises(ValueError) as err:
        s("logits", z(128, 784), "N *E")
    assert str(err.value) == ("f: logits has shape (128, 784) but expected [N, *E] = "
                              "(128, 1) (N, E as in x of shape (128, 1))")
    s("b", z(7, 1), "... 1")                      # literal sizes and unbound leading axes
    with pytest.raises(ValueError, match=r"c has shape \(2,\) but expected \[N, K\] = "
                                         r"\(128, K\) \(N as in x .*\): 2 axes"):
        s("c", z(2), "N K")
    with pytest.raises(ValueError, match=r"d has shape \(7, 2\) but expected \[\.\.\., 1\]"):
        s("d", z(7, 2), "... 1")
