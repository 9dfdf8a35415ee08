"""The mixture experiment end to end (2-D :quick, images via the digits preset, the
gradient method) and its errors; the benchmark's CLI (slow)."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import gmm as gmm_config
from experiments import gmm as gmm_experiment
from genjax.data import EIGHT_GAUSSIANS_STD
from genjax.models import bernoulli_mixture, gmm
from genjax.train import ConfigError, experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# eight_gaussians is 8 equal, well-separated isotropic Gaussians of std 0.02: its expected
# log-density is -(log 8 + log(2 pi e sigma^2)) = 2.9067 nats
TRUE_LOG_LIKELIHOOD = -(math.log(8) + math.log(2 * math.pi * math.e * EIGHT_GAUSSIANS_STD ** 2))


# The digits test's mixture of Bernoullis (10 components, one binarisation): its EM
# (about 24 iterations) gains about 1.15 nats per test image over the best k-means++
# start; a single EM iteration gains 0.52, no iteration nothing.
DIGITS_EM_GAIN = 0.75


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def start_log_likelihoods(config, scratch):
    """{"train", "test"}: mean log-likelihoods [restarts] of the restarts' starting
    mixtures (`initial_params`, the untrained models) on the experiment's own arrays."""
    ds = experiment.prepare(config, scratch, kinds=("points", "image"))
    if config.model.family == "bernoulli":
        log_prob = bernoulli_mixture.log_likelihood
    else:
        def log_prob(x, p):
            return gmm.log_likelihood(x, p, covariance_type=config.model.covariance_type)

    @jax.jit                                   # one compiled program: about 1 s, not 3
    def mean_log_likelihoods(x_train, x_test):
        inits = gmm_experiment.initial_params(config, x_train)
        return {split: jax.vmap(lambda p: jnp.mean(log_prob(x, p)))(inits)
                for split, x in (("train", x_train), ("test", x_test))}

    out = mean_log_likelihoods(*gmm_experiment.load_arrays(config, ds))
    return {k: np.asarray(v) for k, v in out.items()}


def test_quick_preset_recovers_the_eight_gaussians_density(tmp_path):
    config = gmm_config.get_config("quick")
    metrics = gmm_experiment.train_and_evaluate(config, str(tmp_path))
    # The untrained models are the restarts' k-means++ starts. With 8 clusters this far
    # apart (std 0.02, radius 2) k-means++ seeds one centre in each, and the start's
    # M-step is already the optimum: EM has nothing left to gain here, and must not lose
    # it (it never lowers the training log-likelihood). That EM learns is tested from
    # random starts below.
    start = start_log_likelihoods(config, str(tmp_path / "untrained"))
    assert metrics["train/log_likelihood"] >= start["train"].max() - 1e-4
    r = _results(tmp_path)
    assert r["metrics"] == pytest.approx(metrics)
    assert metrics["train/log_likelihood"] == pytest.approx(TRUE_LOG_LIKELIHOOD, abs=0.03)
    assert metrics["test/log_likelihood"] == pytest.approx(TRUE_LOG_LIKELIHOOD, abs=0.05)
    assert metrics["test/nll"] == -metrics["test/log_likelihood"]
    assert metrics["fit/converged"] == 1.0
    assert r["config"]["model"]["num_components"] == 8 and r["versions"]["jax"]
    img = np.asarray(Image.open(tmp_path / "density.png"))
    assert img.ndim == 3 and img.std() > 10
    p = np.load(tmp_path / "params.npz")
    assert p["weights"].shape == (8,) and p["covariances"].shape == (8, 2, 2)
    np.testing.assert_allclose(np.sort(p["weights"]), 1 / 8, atol=0.01)


def test_em_from_random_starts_learns_the_density(tmp_path):
    """Random training points as centres start far from the optimum (test log-likelihood
    about 0.2-0.8 nats against the true 2.91): EM must close at least half the gap from
    the best start to the true density (it closes about two thirds, to 2.19 nats, a
    local optimum; one EM iteration closes an eighth), and no restart may end below
    where it started."""
    config = gmm_config.get_config("quick")
    config.fit.init = "random"
    metrics = gmm_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    start = start_log_likelihoods(config, str(tmp_path / "untrained"))
    best = start["test"].max()
    assert metrics["test/log_likelihood"] > best + 0.5 * (TRUE_LOG_LIKELIHOOD - best), (
        metrics["test/log_likelihood"], start["test"])
    assert metrics["fit/restart_log_likelihood_min"] >= start["train"].min() - 1e-4


def test_digits_preset_fits_a_mixture_of_bernoullis_and_draws_its_means(tmp_path):
    config = gmm_config.get_config("digits")
    config.model.num_components = 10
    config.data.binarizations = 1
    config.fit.restarts = 2
    metrics = gmm_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    # 64 binary pixels: far better than independent fair coins (64 log 2 = 44.4 nats)
    assert 10 < metrics["test/nll"] < 35
    # EM learned beyond its k-means++ start (10 digit images as centres, one M-step)
    start = start_log_likelihoods(config, str(tmp_path / "untrained"))
    assert metrics["test/log_likelihood"] > start["test"].max() + DIGITS_EM_GAIN, (
        metrics["test/log_likelihood"], start["test"])
    means = np.asarray(Image.open(tmp_path / "run" / "means.png"))
    # 10 tiles of 8x8 in a 4-column grid, 7x scale, 2 px padding
    assert means.shape[:2] == (7 * (3 * 10 + 2), 7 * (4 * 10 + 2))
    assert os.path.exists(tmp_path / "run" / "samples.png")


@pytest.mark.slow
def test_gradient_method_trains_through_the_shared_loop(tmp_path):
    """From random starts (the k-means++ start is already the optimum on this data, see
    above, and 200 minibatch Adam steps from it only drift, by about 0.03 nats): 400
    steps must close at least a quarter of the gap from the best start (about 0.8 nats)
    to the true density (they close about 45%: 1.78 nats)."""
    config = gmm_config.get_config("quick")
    config.fit.update(method="gradient", init="random")
    config.train.update(num_steps=400, steps_per_dispatch=200, checkpoint_every=400)
    metrics = gmm_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert np.isfinite(metrics["test/log_likelihood"])
    assert 0.0 < metrics["train/log_likelihood"] < TRUE_LOG_LIKELIHOOD + 0.05
    best = start_log_likelihoods(config, str(tmp_path / "untrained"))["test"].max()
    assert metrics["test/log_likelihood"] > best + 0.25 * (TRUE_LOG_LIKELIHOOD - best), (
        metrics["test/log_likelihood"], best)
    run = tmp_path / "run"
    assert os.path.isdir(run / "checkpoints") and os.path.exists(run / "metrics.jsonl")


@pytest.mark.parametrize("field, value, match", [
    ("model.num_components", 30_000, "at most the 20000 training examples"),
    ("model.family", "poisson", "model.family"),
    ("fit.tol", 0.0, "fit.tol"),
    ("fit.reg_covar", -1.0, "fit.reg_covar"),
    ("model.family", "bernoulli", "data.preprocess"),
])
def test_bad_configs_fail_before_anything_is_fitted(tmp_path, field, value, match):
    config = gmm_config.get_config("quick")
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=match):
        gmm_experiment.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w" / "results.json").exists()


@pytest.mark.slow
def test_singular_fit_is_a_config_error_naming_reg_covar(tmp_path, monkeypatch):
    config = gmm_config.get_config("quick")
    config.fit.reg_covar = 0.0
    config.model.num_components = 2
    # the data loader rejects NaN points itself; duplicates need reg_covar > 0
    dup = np.ones((100, 2), np.float32)
    monkeypatch.setattr(gmm_experiment, "load_arrays", lambda c, ds: (dup, dup))
    with pytest.raises(ConfigError, match="reg_covar"):
        gmm_experiment.train_and_evaluate(config, str(tmp_path))


def test_images_need_the_bernoulli_or_points_need_points(tmp_path):
    config = gmm_config.get_config("quick")
    config.data.name = "eight_gaussians"
    config.data.preprocess = "unit"
    with pytest.raises(ConfigError, match="'none' for 2-D points"):
        gmm_experiment.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_cli_errors_are_one_line():
    p = subprocess.run([sys.executable, "-m", "experiments.gmm", "--workdir=/nonexistent-gmm",
                        "--config=configs/gmm.py:quick", "--config.model.num_components=0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "model.num_components" in last
    assert "Traceback" not in p.stderr


def test_presets_are_locked_configs():
    for preset in (None, "quick", "moons", "gradient", "digits", "mnist5k"):
        c = gmm_config.get_config(preset)
        with pytest.raises(AttributeError):
            c.fit.tool = 1.0
    c = gmm_config.get_config("mnist5k")
    assert (c.model.family, c.data.name, c.data.preprocess) == (
        "bernoulli", "mnist5k", "dynamic_binarize")


@pytest.mark.slow
def test_benchmark_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "r" / "gmm.json"
    p = subprocess.run([sys.executable, "-m", "benchmarks.gmm_em", "--quick", f"--out={out}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    for case in r["cases"].values():
        assert case["genjax"]["n_iter"] == case["sklearn"]["n_iter"]
        assert case["speedup_vs_sklearn"] > 0 and case["restarts"]["ratio"] > 0
        assert len(case["restarts"]["16"]["n_iter"]) == 16
    assert isinstance(r["targets"]["speedup_vs_sklearn_met"], bool)
    assert "other_processes_cpu_fraction" in r and r["versions"]["jax"]
