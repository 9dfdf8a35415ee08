"""The GAN experiment end to end: the :quick preset (DCGAN on digits, with the classifier
Fréchet distance) and a short 8-Gaussians run write every figure and results.json; bad
configs fail before anything is built; a diverging run stops naming the step and loss."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import gan as gan_config
from experiments import gan as gan_experiment
from genjax.data import DatasetError
from genjax.eval import frechet, gan_analysis
from genjax.train import ConfigError, NonFiniteError, experiment
from genjax.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(path):
    img = np.asarray(Image.open(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.std() > 5, path
    return img


def untrained(config, scratch):
    """(dataset, generate, the step-0 state of `build`, the experiment's numbers for it:
    the same latent draws, classifier and test images as the final evaluation)."""
    ds = experiment.prepare(config, scratch, kinds=("image", "points"))
    generate, discriminate, state, _ = gan_experiment.build(config, ds.example_shape)
    numbers = gan_experiment.Report(config, scratch, ds, generate, discriminate).numbers(state)
    return ds, generate, state, numbers


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan_quick")
    config = gan_config.get_config("quick")
    config.eval.classifier_dir = str(tmp / "classifier")
    workdir = str(tmp / "run")
    return workdir, config, gan_experiment.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    config = gan_config.get_config("eight_gaussians")
    config.train.update(num_steps=200, steps_per_dispatch=100, checkpoint_every=200,
                        eval_every=100)
    config.eval.toy_samples = 2000
    config.plots.toy_points = 500
    workdir = str(tmp_path_factory.mktemp("gan_toy"))
    return workdir, config, gan_experiment.train_and_evaluate(config, workdir)


def test_quick_preset_reports_the_frechet_distance(quick_run, tmp_path):
    workdir, config, metrics = quick_run
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    m = results["metrics"]
    assert m == pytest.approx(metrics)
    for k in ("test/frechet_distance", "test/ema_frechet_distance"):
        assert np.isfinite(m[k]) and m[k] > 0
    assert 0.5 < m["test/classifier_accuracy"] <= 1.0
    for k in ("test/predicted_class_kl", "test/ema_predicted_class_kl"):
        assert 0.0 <= m[k] <= np.log(10) + 1e-9
    assert m["test/real_predicted_class_kl"] < 0.1        # the test split is stratified
    assert m["test/fd_samples"] == config.eval.fd_samples
    assert m["interp/even_path_max_jump"] <= m["interp/slerp_max_jump"] <= 1.0
    assert results["config"]["loss"]["objective"] == "non_saturating"
    assert np.isfinite(results["train_summary"]["d_loss"])
    # The generator learned: the classifier FD of its samples (same latent draws, same
    # test images) at least halves from the untrained generator's (about 460; about 155,
    # EMA 165, after 100 steps). A generator that does not learn keeps its FD.
    before = untrained(config, str(tmp_path))[3]
    for k in ("frechet_distance", "ema_frechet_distance"):
        assert m[f"test/{k}"] < before[k] / 2, (k, m[f"test/{k}"], before[k])


def test_quick_preset_writes_every_figure(quick_run):
    workdir, config, _ = quick_run
    p = config.plots
    _png(os.path.join(workdir, "samples.png"))
    h, w, _ = _png(os.path.join(workdir, "interpolation.png")).shape
    # one row per latent pair, interp_steps frames of 28 px + 2 px padding, scale 2
    assert (h, w) == (2 * (p.interp_pairs * 30 + 2), 2 * (p.interp_steps * 30 + 2))
    # a samples grid at every evaluation during training
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_0000050.png"]


def test_both_losses_are_logged_and_checkpoints_written(quick_run):
    workdir, config, _ = quick_run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    train_rows = [r for r in rows if "train/d_loss" in r]
    assert [r["step"] for r in train_rows] == [50, 100]
    assert all({"train/g_loss", "train/stats/d_real", "train/stats/d_fake",
                "train/grad_norm/d", "train/grad_norm/g"} <= set(r) for r in train_rows)
    assert any("eval/frechet_distance" in r for r in rows)      # the evaluation at step 50
    ckpts = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                   if d.isdigit())
    assert ckpts[-1] == config.train.num_steps


def test_rerunning_resumes_instead_of_retraining(quick_run, capsys):
    workdir, config, metrics = quick_run
    again = gan_experiment.train_and_evaluate(config, workdir)
    assert "resumed from" in capsys.readouterr().out
    assert again == pytest.approx(metrics)


def test_toy_run_reports_mode_coverage_and_draws_its_figure(toy_run):
    workdir, config, m = toy_run
    assert 0 <= m["test/modes_covered"] <= 8
    assert 0.0 <= m["test/high_quality_fraction"] <= 1.0
    assert 0.0 <= m["test/mode_kl"] <= np.log(8) + 1e-9
    shares = [m[f"test/mode_share/{k}"] for k in range(8)]
    assert sum(shares) == pytest.approx(m["test/high_quality_fraction"], abs=1e-9)
    _png(os.path.join(workdir, "samples.png"))
    assert sorted(os.listdir(os.path.join(workdir, "samples"))) == ["step_0000100.png"]
    assert not os.path.exists(os.path.join(workdir, "interpolation.png"))  # images only


def test_toy_generator_moves_its_samples_onto_the_ring(toy_run, tmp_path):
    """200 steps are too few to cover modes (the mode metrics above stay near 0), but
    not to learn the ring's scale: the Fréchet distance of 2-D samples to the test points
    (a Gaussian fit to raw coordinates, no discriminator involved), for the same latent
    draws, falls at least 4-fold from the untrained generator's (about 2.86: samples
    huddle near the origin, the ring has radius 2) to the final checkpoint's (about
    0.11, 25-fold). A generator that does not learn (lr 1e-9) keeps 2.86."""
    workdir, config, _ = toy_run
    ds, generate, state0, _ = untrained(config, str(tmp_path))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    trained = ckpt.restore_latest(state0)
    ckpt.close()
    assert int(trained.step) == config.train.num_steps
    key, n = jax.random.key(config.seed + 2), config.eval.toy_samples
    real = np.asarray(ds.test[:n])
    fd = {name: frechet.frechet_distance(real, gan_analysis.sample(
              lambda z: generate(s.params["g"], z), key, n, config.model.latent_dim))
          for name, s in (("untrained", state0), ("trained", trained))}
    assert fd["trained"] < fd["untrained"] / 4, fd


@pytest.mark.parametrize("field, value, words", [
    ("loss.objective", "wgan", ["loss.objective", "wgan_gp"]),
    ("loss.d_steps", 0, ["loss.d_steps", "> 0"]),
    ("optim_d.lr", -1.0, ["optim_d.lr", "> 0"]),
    ("model.ema_decay", 1.0, ["model.ema_decay", "< 1"]),
    ("model.arch", "mlp", ["model.arch", "dcgan for the image"]),   # MLPs: 2-D points
    ("data.preprocess", "unit", ["data.preprocess", "symmetric"]),
])
def test_bad_values_fail_before_anything_is_built(tmp_path, field, value, words):
    config = gan_config.get_config("quick")
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError) as e:
        gan_experiment.train_and_evaluate(config, str(tmp_path / "w"))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not os.path.exists(tmp_path / "w" / "checkpoints")   # nothing trained


def test_a_model_for_the_other_kind_of_data_is_an_error(tmp_path):
    config = gan_config.get_config("quick")
    config.data.update(name="eight_gaussians", preprocess="none")
    with pytest.raises(ConfigError, match="symmetric"):      # dcgan wants [-1, 1] images
        gan_experiment.train_and_evaluate(config, str(tmp_path))
    config.data.preprocess = "symmetric"
    with pytest.raises(ConfigError, match="model.arch.*mlp for the points"):
        gan_experiment.train_and_evaluate(config, str(tmp_path))
    config = gan_config.get_config("quick")
    config.data.name = "mnist6k"
    with pytest.raises(DatasetError, match="mnist6k"):
        gan_experiment.train_and_evaluate(config, str(tmp_path / "x"))


def test_a_diverging_run_stops_naming_the_step_and_the_loss(tmp_path):
    config = gan_config.get_config("eight_gaussians")
    config.optim_d.lr = 1e30                          # D's first update overflows
    config.train.update(num_steps=100, steps_per_dispatch=50, checkpoint_every=50,
                        eval_every=0)
    with pytest.raises(NonFiniteError) as e:
        gan_experiment.train_and_evaluate(config, str(tmp_path))
    msg = str(e.value)
    assert "training stopped: " in msg and " at step " in msg, msg
    name = msg.split("training stopped: ")[1].split(" = ")[0]
    assert name in ("d_loss", "g_loss"), msg
    assert "--config.optim_d" in msg and "no checkpoint had been saved yet" in msg


def test_command_line_errors_are_one_line():
    p = subprocess.run([sys.executable, "-m", "experiments.gan", "--config=configs/gan.py:quick",
                        "--config.optim_d.lrr=1e-3", "--workdir=/nonexistent-never-created"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2, err
    assert err[-1].startswith("error: unknown config field --config.optim_d.lrr"), err
    assert not any("Traceback" in line for line in err)
    assert not os.path.exists("/nonexistent-never-created")


def test_presets_are_locked_and_distinct():
    for preset in (None, "quick", "eight_gaussians", "cifar10"):
        c = gan_config.get_config(preset)
        with pytest.raises(AttributeError):
            c.optim_d.lrr = 1.0
    assert gan_config.get_config("eight_gaussians").model.arch == "mlp"
    assert gan_config.get_config("cifar10").data.name == "cifar10"
    with pytest.raises(ValueError, match="unknown preset"):
        gan_config.get_config("dcgan")
