"""Sweeps of the GAN and the DDPM end to end (genjax.train.sweep with the parts of
experiments.gan and experiments.ddpm): each GAN setting gives its single run, a sweep
writes per-setting results and the sweep tables, a GAN sweep that mixes settings with and
without an EMA of the generator splits into programs, and the cli runs the issue's sweep."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import ddpm as ddpm_config
from configs import gan as gan_config
from experiments import ddpm as ddpm_experiment
from experiments import gan as gan_experiment
from genjax.train import sweep_spec
from tests.sweep_outputs import check_sweep_outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The 8-Gaussians GAN with 2 x 32 MLPs for 200 steps (why no more: see
# test_each_gan_setting_equals_its_single_run).
GAN_TINY = {"model.g_hidden": (32, 32), "model.d_hidden": (32, 32), "optim_d.lr": 3e-3,
            "train.num_steps": 200, "train.steps_per_dispatch": 100,
            "train.checkpoint_every": 200, "train.batch_size": 64, "train.eval_every": 0,
            "eval.toy_samples": 10_000, "plots.toy_points": 200, "plots.interp_pairs": 2}
GAN_GRID = ["optim.lr=1e-3,3e-3"]
TOY_METRICS = ("test/high_quality_fraction", "test/mode_kl", "test/modes_covered")
TRAIN_METRICS = ("train/d_loss", "train/g_loss", "train/stats/d_real", "train/stats/d_fake")

# The DDPM at its smallest: a one-level, 4-channel U-Net without attention, 6 steps.
DDPM_TINY = {"model.channels": 4, "model.channel_mults": (1,),
             "model.attention_resolutions": (), "model.groups": 2,
             "train.num_steps": 6, "train.steps_per_dispatch": 3,
             "train.checkpoint_every": 6, "train.batch_size": 8, "eval.bound_examples": 8,
             "eval.bound_t": 3, "eval.batch_size": 8, "plots.num_samples": 4,
             "plots.trajectory_images": 2, "plots.trajectory_frames": 3}
DDPM_METRICS = ("test/bound_bpd", "test/decoder_bpd", "test/kl_steps_bpd")


def gan_tiny():
    return sweep_spec.apply(gan_config.get_config("eight_gaussians"), GAN_TINY)


def ddpm_tiny():
    return sweep_spec.apply(ddpm_config.get_config("quick"), DDPM_TINY)


def _last_train_row(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if "train/d_loss" in r or "train/loss" in r][-1]


@pytest.fixture(scope="module")
def gan_sweep(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("gan_sweep"))
    return workdir, gan_experiment.sweep(gan_tiny(), workdir, GAN_GRID)


# The equality check trains 6 steps: the GAN's early Adam steps amplify float rounding
# (a gradient entry near 0 with a tiny second moment moves its weight by a full lr
# step either way), so how long a vmapped setting tracks its single run bit for bit
# depends on the CPU's kernels: on an Intel Xeon the 200-step runs agreed to 1e-7; on
# an AMD EPYC the lr=3e-3 setting drifted by 4e-5 relative after 10 steps and 5% after
# 200 (measured, XLA:CPU at the test suite's -O0). 6 steps agreed to 1e-7 on both.
GAN_SHORT = {"train.num_steps": 6, "train.steps_per_dispatch": 3,
             "train.checkpoint_every": 6}


def test_each_gan_setting_equals_its_single_run(gan_sweep, tmp_path):
    _, record = gan_sweep
    rows = record["settings"]
    assert [r["setting"] for r in rows] == [{"optim.lr": 1e-3}, {"optim.lr": 3e-3}]
    assert record["description"].startswith("2 settings in 1 compiled program")
    for r in rows:
        assert r["diverged"] is None
    # The 200-step settings differ from one another by far more than rounding.
    a, b = (r["metrics"] for r in rows)
    assert abs(a["test/mode_kl"] - b["test/mode_kl"]) > 0.2          # 0.67 and 0.29
    assert abs(a["train/d_loss"] / b["train/d_loss"] - 1) > 1e-2
    # Same init, data order, step and evaluation keys: only float32 rounding may differ.
    base = sweep_spec.apply(gan_tiny(), GAN_SHORT)
    short = gan_experiment.sweep(base, str(tmp_path / "sweep"), GAN_GRID)
    finals = []
    for r in short["settings"]:
        workdir = str(tmp_path / r["name"])
        single = gan_experiment.train_and_evaluate(sweep_spec.apply(base, r["setting"]),
                                                   workdir)
        for k in TOY_METRICS:
            np.testing.assert_allclose(r["metrics"][k], single[k], atol=2e-4, err_msg=k)
        last = _last_train_row(workdir)
        for k in TRAIN_METRICS:
            np.testing.assert_allclose(r["metrics"][k], last[k], rtol=1e-5, err_msg=k)
        finals.append(last["train/d_loss"])
    # the two settings after 6 steps: 1.367 and 1.379, 900x the tolerance above apart
    assert abs(finals[0] / finals[1] - 1) > 1e-3


def test_a_gan_sweep_writes_per_setting_results_and_the_sweep_tables(gan_sweep):
    workdir, record = gan_sweep
    assert record["main_metric"] == {"name": "test/high_quality_fraction", "mode": "max"}
    check_sweep_outputs(workdir, record)
    best = next(r for r in record["settings"] if r["name"] == record["best"])
    # the per-mode shares stay out of a sweep's metrics (they would fill the table)
    assert not any(k.startswith("test/mode_share") for k in best["metrics"])
    assert set(TOY_METRICS) <= set(best["metrics"])


def _parts_of(monkeypatch, config, axes, samples=0):
    """The SweepParts gan.sweep hands to run_sweep (nothing is trained)."""
    seen = {}
    monkeypatch.setattr(gan_experiment, "run_sweep",
                        lambda config, workdir, axes, *, parts, **kw: seen.setdefault(
                            "parts", parts))
    gan_experiment.sweep(config, "/nonexistent", axes, samples=samples)
    return seen["parts"]


def test_gan_ema_decay_is_dynamic_unless_a_sweep_mixes_an_average_and_none(monkeypatch):
    toy = gan_tiny()                                           # ema_decay 0 (no average)
    parts = _parts_of(monkeypatch, toy, ["model.ema_decay=0.9,0.99"])
    assert "model.ema_decay" in parts.dynamic
    assert parts.main_metric == ("test/ema_high_quality_fraction", "max")
    parts = _parts_of(monkeypatch, toy, ["model.ema_decay=0,0.99"])
    assert "model.ema_decay" not in parts.dynamic                  # "g_ema" or not: static
    assert parts.main_metric == ("test/high_quality_fraction", "max")
    parts = _parts_of(monkeypatch, toy, ["optim.lr=loguniform(1e-5,1e-3)"], samples=3)
    assert parts.main_metric == ("test/high_quality_fraction", "max")
    assert {"seed", "optim.lr", "optim_d.lr", "optim.weight_decay", "optim_d.grad_clip",
            "loss.gp_weight", "model.ema_decay"} <= parts.dynamic
    images = gan_config.get_config("quick")                    # DCGAN with an EMA of G
    parts = _parts_of(monkeypatch, images, ["optim.lr=1e-4,2e-4"])
    assert parts.main_metric == ("test/ema_frechet_distance", "min")
    images.eval.use_ema = False
    assert _parts_of(monkeypatch, images, ["optim.lr=1e-4,2e-4"]).main_metric == (
        "test/frechet_distance", "min")


@pytest.mark.slow
def test_a_gan_sweep_with_ema_mixed_trains_one_program_per_kind(tmp_path):
    config = sweep_spec.apply(gan_tiny(), {"train.num_steps": 20, "train.steps_per_dispatch":
                                           10, "train.checkpoint_every": 20,
                                           "eval.toy_samples": 1000})
    record = gan_experiment.sweep(config, str(tmp_path), ["model.ema_decay=0,0.9"])
    assert len(record["programs"]) == 2
    plain, averaged = record["settings"]
    assert "test/ema_high_quality_fraction" in averaged["metrics"]
    assert np.isnan(plain["metrics"]["test/ema_high_quality_fraction"])   # no average


@pytest.mark.slow
def test_a_ddpm_sweep_writes_results_ranked_by_the_test_bound(tmp_path):
    workdir = str(tmp_path)
    record = ddpm_experiment.sweep(ddpm_tiny(), workdir, ["optim.lr=1e-3,3e-3"])
    assert record["description"].startswith("2 settings in 1 compiled program")
    assert record["main_metric"] == {"name": "test/bound_bpd", "mode": "min"}
    check_sweep_outputs(workdir, record)
    rows = record["settings"]
    for r in rows:
        assert set(DDPM_METRICS) <= set(r["metrics"])
        assert np.isfinite(r["metrics"]["test/bound_bpd"]) and r["metrics"][
            "test/bound_bpd"] > 0
    assert rows[0]["metrics"]["train/loss"] != rows[1]["metrics"]["train/loss"]


@pytest.mark.slow
def test_each_ddpm_setting_equals_its_single_run(tmp_path):
    # Measured on CPU: the EMA parameters' bound agrees to 5e-8 relative; rtol 1e-5.
    record = ddpm_experiment.sweep(ddpm_tiny(), str(tmp_path / "sweep"),
                                   ["optim.lr=1e-3,3e-3"])
    for r in record["settings"]:
        single = ddpm_experiment.train_and_evaluate(
            sweep_spec.apply(ddpm_tiny(), r["setting"]), str(tmp_path / r["name"]))
        for k in DDPM_METRICS:
            np.testing.assert_allclose(r["metrics"][k], single[k], rtol=1e-5, err_msg=k)
    a, b = (r["metrics"]["test/bound_bpd"] for r in record["settings"])
    assert abs(a - b) > 1e-2


@pytest.mark.slow
def test_the_cli_runs_the_issues_gan_sweep(tmp_path):
    # the issue's command, shortened as its README line suggests for a check
    short = dict(GAN_TINY, **{"train.num_steps": 200, "train.steps_per_dispatch": 100,
                              "train.checkpoint_every": 200})
    flags = [f"--config.{k}={v}".replace(" ", "") for k, v in short.items()]
    p = subprocess.run(
        [sys.executable, "-m", "experiments.gan", "--config=configs/gan.py:eight_gaussians",
         *flags, f"--workdir={tmp_path}", "--sweep=optim.lr=loguniform(1e-5,1e-3)",
         "--sweep_samples=3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "3 settings in 1 compiled program (optim.lr varies inside it)" in p.stdout
    with open(tmp_path / "sweep.json") as f:
        record = json.load(f)
    assert record["main_metric"]["name"] == "test/high_quality_fraction"
    for r in record["settings"]:
        assert os.path.exists(tmp_path / r["name"] / "results.json")
    assert os.path.exists(tmp_path / "sweep.csv")
