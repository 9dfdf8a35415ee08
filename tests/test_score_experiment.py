"""The score-based (NCSN) and energy-based experiments end to end: their quick presets
learn, write their figures and results, resume, sweep, and fail clearly on bad input."""

import json
import os

import numpy as np
import pytest

from configs import ebm as ebm_config
from configs import score as score_config
from experiments import ebm as ebm_experiment
from experiments import score as score_experiment
from genjax.train import NonFiniteError, experiment, sweep_spec
from genjax.train.ebm_step import replay_buffer
from genjax.train.ema import ema_params

DIGITS = {"data.name": "digits", "data.preprocess": "unit", "model.channels": 8,
          "model.groups": 4, "model.channel_mults": (1, 2), "eval.fd_samples": 0,
          "eval.num_samples": 16, "eval.dsm_examples": 50, "plots.num_samples": 16,
          "plots.chain_images": 2, "sampler.steps_per_level": 2, "train.num_steps": 20,
          "train.batch_size": 16, "train.steps_per_dispatch": 10,
          "train.checkpoint_every": 10}


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)["metrics"]


def score_quick(**changes):
    return sweep_spec.apply(score_config.get_config("quick"), changes)


def ebm_quick(**changes):
    return sweep_spec.apply(ebm_config.get_config("quick"), changes)


@pytest.fixture(scope="module")
def ncsn_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("score_quick"))
    config = score_quick()
    return workdir, config, score_experiment.train_and_evaluate(config, workdir)


def test_quick_ncsn_lowers_the_test_denoising_objective(ncsn_run, tmp_path):
    """100 steps cut the test-set DSM objective (mean over levels) by more than 15% from
    the untrained network's (about 1.0 = 0.5 E|z|^2 for a zero score in 2-D; measured
    1.05 -> 0.81), and at the largest level, where the score is smooth, to below 30% of
    it (measured 1.17 -> 0.19: the fine levels need the long runs)."""
    workdir, config, metrics = ncsn_run
    ds = experiment.prepare(config, str(tmp_path), kinds=("image", "points"))
    _, state, _, score_of = score_experiment.build(config, ds)
    before = score_experiment.make_evaluate(config, ds, score_of)(ema_params(state))
    assert metrics["test/dsm"] < 0.85 * before["dsm"], (metrics["test/dsm"], before)
    assert metrics["test/dsm/level_0"] < 0.3 * before["dsm/level_0"]
    assert metrics["samples/finite_fraction"] == 1.0
    assert 0 <= metrics["samples/histogram_tv"] <= 1 and metrics["test/histogram_tv"] < 0.2
    assert _results(workdir)["test/dsm"] == pytest.approx(metrics["test/dsm"])
    assert os.path.getsize(os.path.join(workdir, "score_field.png")) > 10_000


@pytest.fixture(scope="module")
def ebm_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ebm_quick"))
    config = ebm_quick()
    return workdir, config, ebm_experiment.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_quick_ebm_raises_the_grid_normalised_test_likelihood(ebm_run, tmp_path):
    """100 CD steps on the checkerboard raise the test log-likelihood (normalised on the
    grid over the sampler's box) by more than 0.5 nat from the untrained energy's (nearly
    uniform on [-4, 4]^2: about -log 64 = -4.2; measured -3.15 after), and the KL from the
    true density drops by as much (measured 2.1 -> 1.06)."""
    workdir, config, metrics = ebm_run
    ds = experiment.prepare(config, str(tmp_path), kinds=("image", "points"))
    _, state, _, energy_of = ebm_experiment.build(config, ds)
    before = ebm_experiment.log_likelihood_metrics(config, ds, energy_of, state.params)
    assert metrics["test/log_likelihood"] > before["test/log_likelihood"] + 0.5, \
        (metrics, before)
    assert metrics["test/kl_true_to_model"] < before["test/kl_true_to_model"] - 0.5
    assert metrics["test/log_likelihood"] < metrics["test/true_log_likelihood"] + 0.05
    assert os.path.getsize(os.path.join(workdir, "density.png")) > 10_000
    assert _results(workdir)["test/log_likelihood"] == pytest.approx(
        metrics["test/log_likelihood"])


def test_bad_configs_fail_before_anything_is_built(tmp_path):
    from genjax.train import ConfigError
    with pytest.raises(ConfigError, match="^--config.noise.sigma_max=0.001"):
        score_experiment.train_and_evaluate(score_quick(**{"noise.sigma_max": 0.001}),
                                            str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="^--config.data.preprocess='unit'"):
        score_experiment.train_and_evaluate(score_quick(**{"data.preprocess": "unit"}),
                                            str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="^--config.sampler.high=1.0"):
        ebm_experiment.train_and_evaluate(ebm_quick(**{"sampler.high": 1.0}),
                                          str(tmp_path / "c"))


@pytest.mark.slow
def test_ebm_resumes_with_its_replay_buffer(tmp_path):
    """Stopped at step 50 and resumed, the EBM ends where the uninterrupted run ends:
    parameters and the replay buffer (saved in the checkpoint) alike."""
    config = ebm_quick(**{"eval.num_samples": 100, "eval.eval_steps": 10})
    ds = experiment.prepare(config, str(tmp_path / "p"), kinds=("points",))
    from genjax.train import train

    def run(workdir, steps):
        c = sweep_spec.apply(config, {"train.num_steps": steps})
        _, state, step, _ = ebm_experiment.build(c, ds)
        return train(state, step, ds.train, cfg=c.train, seed=c.seed, workdir=workdir)[0]

    whole = run(str(tmp_path / "whole"), 100)
    run(str(tmp_path / "split"), 50)
    resumed = run(str(tmp_path / "split"), 100)
    np.testing.assert_allclose(np.asarray(replay_buffer(resumed)),
                               np.asarray(replay_buffer(whole)), rtol=1e-6, atol=1e-6)
    import jax
    for a, b in zip(jax.tree_util.tree_leaves(resumed.params),
                    jax.tree_util.tree_leaves(whole.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_ncsn_sweep_is_one_program_and_matches_single_runs(tmp_path):
    """An lr x ema.decay sweep of the quick NCSN trains in one program (a toy's seed
    also draws its data, so seeds are separate programs there); each setting's test
    objective equals its single run's (float reassociation: rtol 1e-4)."""
    config = score_quick()
    record = score_experiment.sweep(config, str(tmp_path / "sweep"),
                                    ["optim.lr=1e-3,3e-3", "ema.decay=0.9,0.5"])
    assert len(record["programs"]) == 1 and len(record["settings"]) == 4
    row = next(r for r in record["settings"] if r["setting"] == {"optim.lr": 3e-3,
                                                                  "ema.decay": 0.5})
    single = score_experiment.train_and_evaluate(
        sweep_spec.apply(config, {"optim.lr": 3e-3, "ema.decay": 0.5}),
        str(tmp_path / "single"))
    assert row["metrics"]["test/dsm"] == pytest.approx(single["test/dsm"], rel=1e-4)
    values = {r["metrics"]["test/dsm"] for r in record["settings"]}
    assert len(values) == 4


@pytest.mark.slow
def test_ebm_sweep_over_alpha_and_step_size_is_one_program(tmp_path):
    record = ebm_experiment.sweep(ebm_quick(**{"eval.num_samples": 100}),
                                  str(tmp_path / "sweep"),
                                  ["loss.alpha=0.01,0.1", "sampler.step_size=0.005,0.01"])
    assert len(record["programs"]) == 1 and len(record["settings"]) == 4
    lls = [r["metrics"]["test/log_likelihood"] for r in record["settings"]]
    assert np.all(np.isfinite(lls)) and len(set(lls)) == 4


@pytest.mark.slow
def test_image_paths_of_both_experiments_run_on_the_digits(tmp_path):
    """The U-Net NCSN and the conv EBM on the 8x8 digits for 20 steps: samples in [0, 1],
    samples.png and the Langevin chain strip written."""
    m = score_experiment.train_and_evaluate(score_quick(**DIGITS), str(tmp_path / "s"))
    assert np.isfinite(m["test/dsm"]) and m["sampling/samples_per_s"] > 0
    for f in ("samples.png", "langevin_chain.png"):
        assert os.path.getsize(os.path.join(tmp_path / "s", f)) > 100
    changes = {"data.name": "digits", "data.preprocess": "symmetric", "model.channels": 4,
               "model.levels": 2, "sampler.low": -1.0, "sampler.high": 1.0,
               "sampler.step_size": 1.0, "sampler.noise_scale": 0.01,
               "sampler.num_steps": 5, "sampler.buffer_size": 100, "eval.num_samples": 16,
               "eval.eval_steps": 5, "eval.batch_size": 16, "plots.num_samples": 16,
               "plots.chain_images": 2, "train.num_steps": 20, "train.batch_size": 16,
               "train.steps_per_dispatch": 10, "train.checkpoint_every": 10}
    m = ebm_experiment.train_and_evaluate(ebm_quick(**changes), str(tmp_path / "e"))
    assert m["samples/finite_fraction"] == 1.0
    for f in ("samples.png", "replay_buffer.png", "langevin_chain.png"):
        assert os.path.getsize(os.path.join(tmp_path / "e", f)) > 100


@pytest.mark.slow
def test_a_diverging_ebm_stops_with_the_step_and_metric_named(tmp_path):
    config = ebm_quick(**{"optim.lr": 1e6, "loss.alpha": 0.0, "optim.grad_clip": 0.0})
    with pytest.raises(NonFiniteError, match="at step"):
        ebm_experiment.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_short_run_ebm_without_a_buffer_trains_checkpoints_and_resumes(tmp_path):
    """sampler.buffer_size = 0: every chain starts from noise; the state keeps a
    placeholder where the buffer would be (checkpoints cannot hold empty arrays), so
    saving and resuming work as with a buffer."""
    config = ebm_quick(**{"sampler.buffer_size": 0, "eval.num_samples": 100,
                          "eval.eval_steps": 10})
    m = ebm_experiment.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(m["test/log_likelihood"]) and "buffer/histogram_tv" not in m
    again = ebm_experiment.train_and_evaluate(config, str(tmp_path))    # resumes at the end
    assert again["test/log_likelihood"] == pytest.approx(m["test/log_likelihood"])
