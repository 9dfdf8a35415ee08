"""The VAE experiment end to end (the :quick preset) and its command-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import vae as vae_config
from experiments import vae as vae_experiment
from genjax.data import DatasetError
from genjax.train import ConfigError, experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ("samples.png", "reconstructions.png", "interpolation.png")


def untrained_test_metrics(config, scratch):
    """The experiment's own test evaluation (same config, seed, test examples and keys) of
    `build`'s step-0 parameters: the values training has to improve on."""
    ds = experiment.prepare(config, scratch)
    graphdef, state, *_ = vae_experiment.build(config, ds.example_shape)
    evaluate, _ = vae_experiment.make_evaluate(config, ds, graphdef)
    return evaluate(state.params)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("vae_quick"))
    config = vae_config.get_config("quick")
    metrics = vae_experiment.train_and_evaluate(config, workdir)
    return workdir, config, metrics


def test_quick_preset_trains_and_reports_test_likelihoods(quick_run, tmp_path):
    workdir, config, metrics = quick_run
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    m = results["metrics"]
    assert m == pytest.approx(metrics)
    for k in ("test/elbo", "test/iw_log_likelihood", "test/kl", "test/log_px"):
        assert np.isfinite(m[k])
    # An importance-weighted estimate is at least the ELBO on average.
    assert m["test/iw_log_likelihood"] >= m["test/elbo"]
    assert -250 < m["test/elbo"] < -80
    # The model learned: the same evaluation of the untrained model (ELBO about -584 nats,
    # IW -559: its decoder's logits are random) against the trained one (-139 and -133
    # after 200 steps). Both must at least halve in magnitude (gain > 270 nats); a model
    # that does not learn (lr 1e-9) gains 0.01 nats. (A decoder that learned only the
    # pixel marginals, about -206 nats, would pass this bar; the -250..-80 range above is
    # the absolute check.)
    untrained = untrained_test_metrics(config, str(tmp_path))
    for k in ("elbo", "iw_log_likelihood"):
        assert m[f"test/{k}"] > untrained[k] / 2, (k, m[f"test/{k}"], untrained[k])
    np.testing.assert_allclose(m["test/elbo"], m["test/log_px"] - m["test/kl"], rtol=1e-5)
    assert results["config"]["train"]["num_steps"] == config.train.num_steps
    assert results["versions"]["jax"] and results["versions"]["flax"]


def test_every_figure_is_written_with_the_expected_layout(quick_run):
    workdir, config, _ = quick_run
    for name in FIGURES:
        img = np.asarray(Image.open(os.path.join(workdir, name)))
        assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 10, name
    # interpolation: one row per pair, interp_steps + 2 tiles per row, 28 px + 2 px pad, x2
    h, w, _ = np.asarray(Image.open(os.path.join(workdir, "interpolation.png"))).shape
    p = config.plots
    assert (h, w) == (2 * (p.interp_pairs * 30 + 2), 2 * ((p.interp_steps + 2) * 30 + 2))


def test_logs_and_checkpoints_are_written(quick_run):
    workdir, config, _ = quick_run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    steps = [r["step"] for r in rows if "train/loss" in r]
    per = config.train.steps_per_dispatch
    assert steps == list(range(per, config.train.num_steps + 1, per))
    tags = _tensorboard_tags(os.path.join(workdir, "tensorboard"))
    assert {"train/loss", "train/elbo", "train/kl"} <= tags
    ckpts = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    assert ckpts[-1] == config.train.num_steps
    assert os.path.exists(os.path.join(workdir, "config.json"))


def _tensorboard_tags(logdir):
    """Scalar tags in the TensorBoard event files (TFRecord framing: u64 length, u32 crc,
    payload, u32 crc), parsed with tensorboardX's protos: no TensorFlow needed."""
    import struct
    from tensorboardX.proto import event_pb2
    tags = set()
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name), "rb") as f:
            buf = f.read()
        i = 0
        while i + 12 <= len(buf):
            (n,) = struct.unpack("<Q", buf[i:i + 8])
            ev = event_pb2.Event.FromString(buf[i + 12:i + 12 + n])
            tags |= {v.tag for v in ev.summary.value}
            i += 12 + n + 4
    return tags


def test_rerunning_a_finished_run_resumes_instead_of_retraining(quick_run, capsys):
    workdir, config, metrics = quick_run
    again = vae_experiment.train_and_evaluate(config, workdir)
    assert "resumed from" in capsys.readouterr().out
    assert again == pytest.approx(metrics)


def _cli(*args, workdir="/nonexistent-never-created"):
    p = subprocess.run([sys.executable, "-m", "experiments.vae", f"--workdir={workdir}", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stderr.strip().splitlines()


@pytest.mark.parametrize("args, rc, words", [
    (["--config=configs/vae.py:quick", "--config.optim.lrr=1e-3"], 2,
     ["unknown config field --config.optim.lrr", 'did you mean "lr"']),
    (["--config=configs/vae.py:quick", "--config.train.num_steps=ten"], 2,
     ["--config.train.num_steps=ten"]),
    (["--config=configs/vae.py:quick", "--config.train.num_steps=2.5"], 2,
     ["--config.train.num_steps=2.5"]),
    (["--config=configs/vae.py:quik"], 2, ["unknown preset 'quik'", "quick"]),
    (["--config=configs/vae.py:quick", "--config.optim.lr=-1"], 1,
     ["--config.optim.lr=-1.0 is invalid", "> 0"]),
    (["--config=configs/vae.py:quick", "--config.data.name=mnist6k"], 1,
     ["mnist6k", "mnist5k"]),
    (["--config=configs/vae.py:quick", "--config.train.batch_size=100",
      "--config.train.steps_per_dispatch=30"], 1, ["train.checkpoint_every", "multiple"]),
])
def test_bad_configs_fail_with_one_clear_line(args, rc, words):
    code, err = _cli(*args)
    assert code == rc
    last = err[-1]
    assert last.startswith("error: ") and all(w in last for w in words), err
    assert not any("Traceback" in line for line in err)
    assert not os.path.exists("/nonexistent-never-created")


def test_validation_runs_before_anything_is_built(tmp_path):
    config = vae_config.get_config("quick")
    with config.unlocked():
        config.model.arch = "transformer"
    with pytest.raises(ConfigError, match="model.arch"):
        vae_experiment.train_and_evaluate(config, str(tmp_path))
    assert not os.listdir(tmp_path)
    config = vae_config.get_config("quick")
    config.data.name = "two_moons"            # points, not images
    with pytest.raises(DatasetError, match="needs image"):
        vae_experiment.train_and_evaluate(config, str(tmp_path / "w"))


def test_presets_are_locked_configs():
    for preset in (None, "quick", "conv", "iwae", "mnist"):
        c = vae_config.get_config(preset)
        with pytest.raises(AttributeError):
            c.optim.lrr = 1.0
    assert vae_config.get_config("mnist").data.name == "mnist"
