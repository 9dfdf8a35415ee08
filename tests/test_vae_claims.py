"""The four lecture claims end to end, on the :quick preset with every analysis switched
on: the figures are written and the numbers behave as the claims say."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import vae as vae_config
from experiments import ae_vs_vae
from experiments import vae as vae_experiment
from genjax import data as gdata
from genjax.data import transforms
from genjax.eval import anomaly as anomaly_scores
from genjax.eval import sample_quality
from genjax.train import ConfigError, experiment
from tests.test_vae_experiment import untrained_test_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFIER_STEPS = 200


def _quick(tmp, **overrides):
    c = vae_config.get_config("quick")
    c.eval.update(fd_samples=200, classifier_steps=CLASSIFIER_STEPS,
                  classifier_dir=str(tmp / "classifier"))
    for k, v in overrides.items():
        section, field = k.split(".")
        c[section][field] = v
    return c


CLAIMS = {"model.latent_dim": 2, "data.classes": tuple(range(8)),
          "anomaly.held_out_classes": (8, 9), "anomaly.iw_samples": 20,
          "train.num_steps": 400}


@pytest.fixture(scope="module")
def claims_run(tmp_path_factory):
    """latent2d + anomaly + FD in one quick run (about 30 s on 2 CPU cores)."""
    tmp = tmp_path_factory.mktemp("claims")
    c = _quick(tmp, **CLAIMS)
    workdir = str(tmp / "run")
    return workdir, tmp, vae_experiment.train_and_evaluate(c, workdir)


@pytest.mark.slow
def test_the_two_dimensional_vae_learned(claims_run, tmp_path):
    """The claims are about a trained model: its test ELBO and IW log-likelihood, against
    the same evaluation of the untrained model (about -583 and -546 nats; -176 and -173
    after 400 steps with a 2-D latent), must at least halve in magnitude (gain > 270
    nats; a model that does not learn gains nothing)."""
    _, tmp, m = claims_run
    untrained = untrained_test_metrics(_quick(tmp, **CLAIMS), str(tmp_path))
    for k in ("elbo", "iw_log_likelihood"):
        assert m[f"test/{k}"] > untrained[k] / 2, (k, m[f"test/{k}"], untrained[k])


def _png(path):
    img = np.asarray(Image.open(path))
    assert img.ndim == 3 and img.std() > 10, path     # not blank
    return img


def test_every_analysis_figure_is_written(claims_run):
    workdir, _, _ = claims_run
    for name in ("samples.png", "reconstructions.png", "interpolation.png",
                 "interpolation_slerp.png", "latent_scatter.png", "latent_manifold.png",
                 "anomaly_scores.png"):
        _png(os.path.join(workdir, name))
    # the manifold is a grid of plots.manifold_grid^2 decoded digits (28 px + 2 px pad)
    g = vae_config.get_config("quick").plots.manifold_grid
    h, w, _ = np.asarray(Image.open(os.path.join(workdir, "latent_manifold.png"))).shape
    assert h >= g * 30 and w >= g * 30


def test_latent_space_holds_the_labels_it_never_saw(claims_run):
    _, _, m = claims_run
    # 8 classes: chance is 1/8; a 2-D VAE after 400 steps already separates most
    assert m["latent/knn5_accuracy"] > 0.5


def test_interpolation_paths_are_reported(claims_run):
    _, _, m = claims_run
    even = m["interp/even_path_max_jump"]
    for kind in ("linear", "slerp"):
        assert even <= m[f"interp/{kind}_max_jump"] < 1.0


def test_anomalies_get_higher_scores_than_normal_test_digits(claims_run):
    _, _, m = claims_run
    scores = ("reconstruction_error", "negative_elbo", "negative_iw_log_likelihood")
    for shift in anomaly_scores.SHIFTS:
        for s in scores:
            assert 0.0 <= m[f"anomaly/{shift}/{s}"] <= 1.0
    for s in scores:              # noise and inverted digits are far from the data
        assert m[f"anomaly/uniform_noise/{s}"] > 0.95, s
        assert m[f"anomaly/inverted/{s}"] > 0.95, s
    # upside-down known digits are a subtler shift, still well above chance (0.5; the
    # AUROC's standard error for 800 vs 800 scores is about 0.015). Unseen digit classes
    # are subtler still for a 2-D latent after 400 steps: not asserted here.
    for s in scores:
        assert m[f"anomaly/upside_down/{s}"] > 0.6, s


def test_sample_quality_is_reported_with_the_classifier_accuracy(claims_run):
    _, _, m = claims_run
    assert m["test/classifier_accuracy"] > 0.85
    assert m["test/fd_samples"] == 200
    assert 0 < m["test/frechet_distance"] < 1000


def test_the_classifier_is_saved_once_and_reused(claims_run, capsys):
    _, tmp, _ = claims_run
    clf_dir = str(tmp / "classifier")
    files_before = sorted(os.listdir(os.path.join(clf_dir, "checkpoints")))
    clf = sample_quality.get_classifier("mnist5k", clf_dir, num_steps=CLASSIFIER_STEPS)
    assert "(once)" not in capsys.readouterr().out            # loaded, not retrained
    assert sorted(os.listdir(os.path.join(clf_dir, "checkpoints"))) == files_before
    ds = gdata.load("mnist5k")
    x = np.asarray(transforms.to_unit(ds.test[:300]))
    assert np.mean(clf.predict(x) == ds.test_labels[:300]) > 0.85
    feats = clf.features(x)
    assert feats.shape[0] == 300 and feats.ndim == 2
    # test images are closer to training images than to noise, in the classifier's eyes
    train = np.asarray(transforms.to_unit(ds.train[:300]))
    noise = np.random.default_rng(0).uniform(size=x.shape).astype(np.float32)
    assert clf.frechet_distance(x, train) < 0.1 * clf.frechet_distance(x, noise)
    with pytest.raises(ValueError, match="shape"):
        clf.features(np.zeros((4, 8, 8, 1), np.float32))


def test_select_classes_keeps_only_those_labels_and_rejects_bad_ones():
    ds = gdata.load("mnist5k")
    sub = experiment.select_classes(ds, (3, 7))
    assert set(np.unique(sub.train_labels)) == {3, 7} == set(np.unique(sub.test_labels))
    assert len(sub.train) == np.isin(ds.train_labels, (3, 7)).sum()
    with pytest.raises(gdata.DatasetError, match="not labels"):
        experiment.select_classes(ds, (3, 12))


def test_anomaly_preset_needs_disjoint_normal_classes(tmp_path):
    c = _quick(tmp_path, **{"data.classes": (0, 1, 8), "anomaly.held_out_classes": (8, 9)})
    with pytest.raises(ConfigError, match="held_out_classes"):
        vae_experiment.train_and_evaluate(c, str(tmp_path / "w"))


@pytest.mark.slow
def test_ae_vs_vae_compares_prior_samples_of_both_decoders(tmp_path):
    """Claim 1 as the user runs it: one command, both models, one figure, both FDs."""
    workdir = tmp_path / "avv"
    args = ["--config=configs/vae.py:quick", f"--workdir={workdir}",
            "--config.train.num_steps=300", "--config.eval.fd_samples=200",
            f"--config.eval.classifier_steps={CLASSIFIER_STEPS}",
            f"--config.eval.classifier_dir={tmp_path / 'classifier'}"]
    p = subprocess.run([sys.executable, "-m", "experiments.ae_vs_vae", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    img = _png(workdir / "ae_vs_vae.png")
    assert img.shape[1] > 1.5 * img.shape[0]                  # two panels side by side
    with open(workdir / "results.json") as f:
        m = json.load(f)["metrics"]
    for name in ("vae", "ae"):
        assert os.path.exists(workdir / name / "results.json")
        assert np.isfinite(m[f"{name}/frechet_distance"])
    # the AE reconstructs at least as well but its decoder is not a generative model
    assert m["ae/log_px"] > m["vae/log_px"]
    assert m["ae/frechet_distance"] > m["vae/frechet_distance"]
    # both learned: each one's objective (the VAE's test ELBO, the AE's reconstruction
    # log-likelihood), against the same evaluation of its untrained network (about -584
    # and -544 nats; -129 and -87 after 300 steps), at least halves in magnitude
    for name, key, objective in (("vae", "elbo", "elbo"), ("ae", "log_px", "ae")):
        c = _quick(tmp_path, **{"train.num_steps": 300, "loss.objective": objective})
        untrained = untrained_test_metrics(c, str(tmp_path / f"untrained_{name}"))[key]
        assert m[f"{name}/{key}"] > untrained / 2, (name, m[f"{name}/{key}"], untrained)


def test_ae_vs_vae_rejects_an_autoencoder_config(tmp_path):
    c = vae_config.get_config("ae")
    with pytest.raises(ConfigError, match="loss.objective"):
        ae_vs_vae.train_and_evaluate(c, str(tmp_path))
