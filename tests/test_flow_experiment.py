"""The normalizing-flow experiment end to end (configs/flow.py:quick on the 8x8 digits and
on a 2-D toy), resuming, a sweep, and its configuration and data errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import flow as flow_config
from experiments import flow as flow_experiment
from genjax import data as gdata
from genjax.data import toy_density
from genjax.train import ConfigError, experiment, sweep_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def quick(**changes):
    return sweep_spec.apply(flow_config.get_config("quick"), changes)


TOY = {"data.name": "two_moons", "data.preprocess": "none"}


def untrained(config, scratch):
    """final_metrics of `build`'s step-0 parameters (actnorm from the data, every
    coupling at the identity): what training must improve on."""
    ds = experiment.prepare(config, scratch, kinds=("image", "points"))
    b = flow_experiment.build(config, ds)
    evaluate = flow_experiment.make_evaluate(config, ds, b)
    return flow_experiment.final_metrics(config, ds, evaluate, b.state.params, config.seed)


@pytest.fixture(scope="module")
def quick_digits(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("flow_quick"))
    config = quick()
    return workdir, config, flow_experiment.train_and_evaluate(config, workdir)


def test_quick_flow_learns_the_digits_in_bits_per_dim(quick_digits, tmp_path):
    """100 steps of a small RealNVP: test bits/dim (8-bit scale, every Jacobian counted)
    drop by more than 2 from the untrained flow's (about 9.6: a standard normal in logit
    space) and below 8, the cost of a uniform density on [0, 256)^64."""
    workdir, config, metrics = quick_digits
    before = untrained(config, str(tmp_path))
    bpd = metrics["test/bits_per_dim"]
    assert np.isfinite(bpd) and bpd < 8.0 and bpd < before["test/bits_per_dim"] - 2.0, \
        (bpd, before)
    np.testing.assert_allclose(metrics["test/nll"],
                               bpd * 64 * np.log(2), rtol=1e-6)     # same units
    saved = _results(workdir)
    assert saved["metrics"]["test/bits_per_dim"] == pytest.approx(bpd)
    assert saved["metrics"]["sampling/samples_per_s"] > 0


def test_quick_flow_writes_samples_checkpoints_and_logs(quick_digits):
    workdir, _, _ = quick_digits
    img = np.asarray(Image.open(os.path.join(workdir, "samples.png")))
    assert img.ndim == 3 and img.std() > 5
    assert os.listdir(os.path.join(workdir, "checkpoints"))
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert any("bits_per_dim" in json.dumps(r) for r in rows)


@pytest.mark.slow
def test_quick_flow_on_a_toy_approaches_the_true_density(tmp_path):
    """On two_moons the report puts the true density's test log-likelihood next to the
    flow's; 500 steps of 6 spline couplings close more than half of the untrained flow's
    gap to it (measured: 90%, from 1.81 to 0.18 nats)."""
    config = quick(**TOY, **{"train.num_steps": 500, "train.checkpoint_every": 500,
                             "model.layers": 6, "model.hidden": (64, 64),
                             "optim.lr": 3e-3, "model.transformer": "spline",
                             "model.tail_bound": 4.0})
    metrics = flow_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    truth = toy_density.expected_log_density("two_moons", gdata.load("two_moons").test[:100])
    assert metrics["test/true_log_likelihood"] == pytest.approx(truth)
    before = untrained(config, str(tmp_path / "scratch"))
    assert 0 < metrics["test/gap_to_truth"] < before["test/gap_to_truth"] / 2, \
        (metrics, before)
    img = np.asarray(Image.open(tmp_path / "run" / "density.png"))
    assert img.ndim == 3 and img.std() > 10


@pytest.mark.slow
def test_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path):
    """50 steps, stop, then resume to 100: the same test log-likelihood as 100 steps in
    one go (actnorm's initialisation and every key depend on the seed and step alone)."""
    steps = {"train.checkpoint_every": 50, "train.steps_per_dispatch": 25}
    whole = flow_experiment.train_and_evaluate(quick(**steps), str(tmp_path / "whole"))
    flow_experiment.train_and_evaluate(quick(**steps, **{"train.num_steps": 50}),
                                       str(tmp_path / "split"))
    resumed = flow_experiment.train_and_evaluate(quick(**steps), str(tmp_path / "split"))
    np.testing.assert_allclose(resumed["test/log_likelihood"], whole["test/log_likelihood"],
                               rtol=1e-6)


@pytest.mark.slow
def test_a_sweep_over_seeds_and_learning_rates_is_one_program(tmp_path):
    """Seeds and learning rates share one compiled program (the flows' fixed parts do not
    depend on the seed), and each setting equals its single run up to float32
    reassociation in the vmapped program, amplified over 50 Adam steps (measured: at most
    4e-5 relative, 0.012 nats; the closest two settings differ by 0.12 nats, 4e-4)."""
    config = quick(**{"train.num_steps": 50, "train.checkpoint_every": 50,
                      "plots.num_samples": 4})
    record = flow_experiment.sweep(config, str(tmp_path / "sweep"),
                                   ["optim.lr=3e-4,1e-3", "seed=0,1"])
    assert record["description"].startswith("4 settings in 1 compiled program")
    rows = record["settings"]
    lls = sorted(r["metrics"]["test/log_likelihood"] for r in rows)
    assert min(np.diff(lls)) > 0.1, lls
    for r in (rows[0], rows[-1]):
        single = flow_experiment.train_and_evaluate(sweep_spec.apply(config, r["setting"]),
                                                    str(tmp_path / r["name"]))
        np.testing.assert_allclose(r["metrics"]["test/log_likelihood"],
                                   single["test/log_likelihood"], rtol=1e-4)


@pytest.mark.parametrize("changes, field", [
    ({"data.preprocess": "unit"}, "data.preprocess"),
    ({"model.name": "nice"}, "model.name"),
    ({"model.transformer": "cubic"}, "model.transformer"),
    ({"model.max_log_scale": 0.0}, "model.max_log_scale"),
    ({"model.num_bins": 1}, "model.num_bins"),
    ({"model.logit_alpha": 0.5}, "model.logit_alpha"),
    ({"plots.temperature": 0.0}, "plots.temperature"),
])
def test_bad_settings_fail_before_anything_is_built(tmp_path, changes, field):
    with pytest.raises(ConfigError, match=rf"^--config\.{field}="):
        flow_experiment.train_and_evaluate(quick(**changes), str(tmp_path))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("changes, field, words", [
    ({"data.preprocess": "none"}, "data.preprocess", "'dequantize' for image data"),
    (dict(TOY, **{"data.preprocess": "dequantize"}), "data.preprocess", "'none' for points"),
    ({"model.name": "glow", "model.levels": 4}, "model.levels", "at most 3 levels for 8x8"),
    ({"model.init_examples": 5000}, "model.init_examples", "1438"),
    ({"eval.num_examples": 360}, "eval.num_examples", "test examples"),
    ({"eval.train_examples": 1439}, "eval.train_examples", "training examples"),
])
def test_settings_that_do_not_fit_the_data_are_one_line_errors(tmp_path, changes, field,
                                                               words):
    with pytest.raises(ConfigError, match=rf"^--config\.{field}=") as err:
        flow_experiment.train_and_evaluate(quick(**changes), str(tmp_path))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_user_images_outside_8_bits_and_nan_points_are_clear_errors(tmp_path):
    """Bring-your-own data: 8-bit images are checked where they are loaded (uint8 only),
    points with NaN too; the flow's own check names the 0..255 support."""
    bad_points = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    bad_points[7, 1] = np.nan
    np.savez(tmp_path / "points.npz", x=bad_points)
    config = quick(**{"data.name": f"npz:{tmp_path / 'points.npz'}",
                      "data.preprocess": "none"})
    with pytest.raises(gdata.DatasetError, match="NaN"):
        flow_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    from genjax.losses import flow as flow_loss
    with pytest.raises(ValueError, match="outside 0..255"):
        flow_loss.check_images_u8(np.array([[[[300]]]]))


@pytest.mark.slow
def test_non_finite_training_stops_with_the_step_and_metric_named(tmp_path):
    """A learning rate that blows the flow up: the loop stops with a one-line report
    naming the step and the metric, not a NaN in results.json."""
    p = subprocess.run(
        [sys.executable, "-m", "experiments.flow", "--config=configs/flow.py:quick",
         f"--workdir={tmp_path / 'run'}", "--config.optim.lr=1e6",
         "--config.optim.grad_clip=0.0", "--config.model.max_log_scale=1e30"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = p.stderr.strip().splitlines()
    assert p.returncode != 0, p.stdout[-2000:]
    assert err[-1].startswith("error: training stopped: ") and "= nan at step" in err[-1] \
        and "Lower --config.optim.lr" in err[-1], err[-5:]
    assert not os.path.exists(tmp_path / "run" / "results.json")


def test_presets_are_locked_and_valid():
    with pytest.raises(ValueError, match="maf_spirals"):
        flow_config.get_config("realnvpp")
    for preset in (None, *flow_config.PRESETS):
        c = flow_config.get_config(preset)
        with pytest.raises(AttributeError):
            c.model.hiden = 1
        flow_experiment.validate(c)
    assert flow_config.get_config().data.name == "digits"
    assert jax.tree.leaves(flow_config.get_config("gpu").model.hidden) == [128]
