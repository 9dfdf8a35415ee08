"""Resuming: a changed config is checked against the checkpoint's, a damaged checkpoint
falls back to the previous one, a signal saves and stops, bad data and a bad workdir are
one-line errors."""

import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import vae as vae_config
from genjax.train import cli, experiment, init_state, make_train_step, resume, train
from genjax.train.checkpoint import CheckpointDamagedError, CheckpointMismatchError
from genjax.train.loop import Interrupted, NonFiniteDataError, check_finite_data
from tests.test_train_loop import ROOT, TINY, _toy_config


# --- a changed config -------------------------------------------------------------------

def _vae_config(**changes):
    """The VAE quick preset on the 8x8 digits (cheap to load); changes: {"a.b": value}."""
    c = vae_config.get_config("quick")
    c.data.name = "digits"
    c.train.batch_size = 64
    for field, value in changes.items():
        section, name = field.rsplit(".", 1) if "." in field else (None, field)
        node = c
        for part in (section.split(".") if section else []):
            node = node[part]
        node[name] = value
    return c


def _started_run(workdir, config, step=100):
    """A workdir as a run of ``config`` leaves it with a checkpoint at ``step`` (the
    comparison reads only config.json and the checkpoint folder's step number)."""
    experiment.prepare(config, str(workdir))
    os.makedirs(os.path.join(workdir, "checkpoints", str(step)))
    with open(os.path.join(workdir, "config.json")) as f:
        return json.load(f)


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_changes_safe_on_resume_pass_and_the_old_config_is_kept(tmp_path, capsys):
    old = _started_run(tmp_path, _vae_config())
    new = _vae_config(**{"optim.lr": 3e-4, "optim.weight_decay": 1e-4, "loss.beta": 4.0,
                         "train.num_steps": 400, "train.checkpoint_every": 200,
                         "train.keep_checkpoints": 5, "eval.iw_samples": 100,
                         "eval.iw_chunk": 50, "plots.num_samples": 9})
    experiment.prepare(new, str(tmp_path))
    assert _read(tmp_path / "config.100.json") == old
    saved = _read(tmp_path / "config.json")
    assert saved["optim"]["lr"] == 3e-4 and saved["train"]["num_steps"] == 400
    out = capsys.readouterr().out
    assert "optim.lr 0.001 -> 0.0003" in out and "config.100.json" in out


def test_other_changes_are_a_one_line_error_naming_each_field(tmp_path):
    old = _started_run(tmp_path, _vae_config())
    new = _vae_config(**{"data.name": "mnist5k", "loss.objective": "iwae",
                         "train.batch_size": 32, "model.latent_dim": 8, "seed": 3,
                         "optim.lr": 3e-4})
    with pytest.raises(resume.ConfigChangeError) as e:
        experiment.prepare(new, str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, cli.USER_ERRORS)
    for part in ("data.name 'digits' -> 'mnist5k'", "loss.objective 'elbo' -> 'iwae'",
                 "train.batch_size 64 -> 32", "model.latent_dim 20 -> 8", "seed 0 -> 3",
                 "step 100", "--workdir", "--allow_config_change"):
        assert part in msg, (part, msg)
    assert "optim.lr" not in msg                      # safe: not listed as a problem
    assert _read(tmp_path / "config.json") == old     # nothing overwritten
    assert not (tmp_path / "config.100.json").exists()


def test_num_steps_may_grow_only_under_a_constant_schedule_and_past_the_checkpoint():
    base = json.loads(_vae_config().to_json_best_effort())
    longer = json.loads(_vae_config(**{"train.num_steps": 5000}).to_json_best_effort())
    safe, unsafe = resume.config_changes(base, longer, step=200)
    assert [f for f, *_ in safe] == ["train.num_steps"] and not unsafe
    warm = json.loads(_vae_config(**{"train.num_steps": 5000, "optim.warmup_steps": 0}
                                  ).to_json_best_effort())
    assert not resume.config_changes(base, warm, step=200)[1]
    shorter = json.loads(_vae_config(**{"train.num_steps": 150}).to_json_best_effort())
    (_, _, _, why), = resume.config_changes(base, shorter, step=200)[1]
    assert "step 200" in why
    cos_old = json.loads(_vae_config(**{"optim.schedule": "cosine"}).to_json_best_effort())
    cos_new = json.loads(_vae_config(**{"optim.schedule": "cosine", "train.num_steps": 5000}
                                     ).to_json_best_effort())
    (field, a, b, why), = resume.config_changes(cos_old, cos_new, step=200)[1]
    assert (field, a, b) == ("train.num_steps", 200, 5000) and "cosine" in why


def test_gradient_clipping_may_change_but_not_switching_the_gan_average_on():
    # grad_clip is an array in TrainState.hparams (0 = off), like the learning rate
    base = json.loads(_vae_config(**{"optim.grad_clip": 1.0}).to_json_best_effort())
    lower = json.loads(_vae_config(**{"optim.grad_clip": 0.5}).to_json_best_effort())
    off = json.loads(_vae_config(**{"optim.grad_clip": 0.0}).to_json_best_effort())
    assert not resume.config_changes(base, lower)[1]
    assert not resume.config_changes(base, off)[1]
    gan = {"model": {"ema_decay": 0.99}, "optim_d": {"lr": 1e-4}}
    assert not resume.config_changes(gan, {"model": {"ema_decay": 0.9},
                                           "optim_d": {"lr": 5e-5}})[1]
    assert resume.config_changes(gan, {"model": {"ema_decay": 0.0}, "optim_d": {"lr": 1e-4}}
                                 )[1][0][0] == "model.ema_decay"


def test_allow_config_change_continues_and_keeps_the_old_config(tmp_path, capsys):
    old = _started_run(tmp_path, _vae_config())
    new = _vae_config(**{"train.batch_size": 32})
    experiment.prepare(new, str(tmp_path), allow_config_change=True)
    assert _read(tmp_path / "config.100.json") == old
    assert _read(tmp_path / "config.json")["train"]["batch_size"] == 32
    assert "allowed by --allow_config_change" in capsys.readouterr().out
    # the cli flag's way: a context around the experiment; the keyword still wins
    newer = _vae_config(**{"train.batch_size": 16})
    with pytest.raises(resume.ConfigChangeError):
        experiment.prepare(newer, str(tmp_path))
    with resume.allowing_config_change():
        with pytest.raises(resume.ConfigChangeError):
            experiment.prepare(newer, str(tmp_path), allow_config_change=False)
        experiment.prepare(newer, str(tmp_path))
    assert _read(tmp_path / "config.100.json") == old   # the config that trained step 100


def test_without_a_checkpoint_there_is_nothing_to_compare(tmp_path):
    experiment.prepare(_vae_config(), str(tmp_path))    # a run that never saved a step
    experiment.prepare(_vae_config(**{"model.latent_dim": 8}), str(tmp_path))
    assert _read(tmp_path / "config.json")["model"]["latent_dim"] == 8
    assert [n for n in os.listdir(tmp_path) if n.startswith("config.")] == ["config.json"]


def _cli(workdir, *extra):
    cmd = [sys.executable, "-m", "experiments.vae", f"--workdir={workdir}", *TINY, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.mark.slow
def test_cli_config_change_error_and_override_flag(tmp_path):
    """The error is one line (exit 1) before anything compiles; --allow_config_change gets
    past it, to the (here fake, so unreadable) checkpoint: a one-line error too."""
    wd = tmp_path / "run"
    _started_run(wd, _vae_config(**{"model.latent_dim": 6}))
    p = _cli(wd)
    assert p.returncode == 1, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), p.stderr
    assert "model.latent_dim 6 -> 4" in err[0] and "--allow_config_change" in err[0]
    p = _cli(wd, "--allow_config_change")
    assert p.returncode == 1, p.stdout + p.stderr
    last = p.stderr.strip().splitlines()[-1]          # (after Orbax's warnings)
    assert last.startswith("error: no checkpoint in ") and "Traceback" not in p.stderr
    assert "step 100" in last and "allowed by --allow_config_change" in p.stdout


# --- a workdir that is a file -----------------------------------------------------------

def test_a_workdir_that_is_a_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    for wd in (f, f / "sub"):
        with pytest.raises(resume.WorkdirError) as e:
            experiment.prepare(_vae_config(), str(wd))
        assert str(wd) in str(e.value) and "folder" in str(e.value)
        assert "\n" not in str(e.value) and isinstance(e.value, cli.USER_ERRORS)
    state, step_fn, data = _problem()
    with pytest.raises(resume.WorkdirError):                      # library callers too
        train(state, step_fn, data, cfg=_toy_config(num_steps=10), seed=0, workdir=str(f))
    assert f.read_text() == "not a folder"
    p = _cli(f)
    assert p.returncode == 1 and p.stderr.strip() == (
        f"error: --workdir={f} is an existing file, not a folder; choose a folder (a new "
        "one to start a run, an old one to resume it)"), p.stderr


def test_checks_that_fail_leave_no_workdir_behind(tmp_path):
    wd = tmp_path / "new" / "run"
    with pytest.raises(cli.USER_ERRORS):
        experiment.prepare(_vae_config(**{"train.batch_size": 5000}), str(wd))  # > data
    assert not (tmp_path / "new").exists()
    experiment.prepare(_vae_config(), str(wd))
    assert (wd / "config.json").is_file()


# --- damaged checkpoints ----------------------------------------------------------------

def _problem(w_shape=(1,)):
    """A small regression with Adam (so the optimiser state matters) and a per-step random
    term (so the key matters)."""
    x = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    data = np.stack([x, 3.0 * x - 0.5], axis=1)                  # [N, 2]: (input, target)
    tx = optax.scale_by_adam()

    def loss_fn(params, batch, key, hp):
        noise = 0.01 * jax.random.normal(key, (batch.shape[0], 1))
        pred = batch[:, :1] * params["w"] + params["b"] + noise  # [B, 1]
        loss = jnp.mean((pred - batch[:, 1:]) ** 2)
        return loss, {"mse": loss}

    state = init_state({"w": jnp.zeros(w_shape), "b": jnp.zeros((1,))}, tx,
                       {"lr": 0.05, "weight_decay": 0.0})
    return state, make_train_step(loss_fn, tx), data


def _run(workdir, num_steps=50, state=None, **kw):
    s, step_fn, data = _problem()
    return train(s if state is None else state, step_fn, data,
                 cfg=_toy_config(num_steps=num_steps, **kw), seed=0, workdir=str(workdir))[0]


def _assert_same(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _damage(step_dir, how):
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            if how == "truncate":                                # every file to half
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
            elif how == "lose_data" and f"{os.sep}d{os.sep}" in path:
                os.remove(path)                                  # the array chunks


@pytest.mark.parametrize("how", ["truncate", "lose_data"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, how):
    reference = _run(tmp_path / "reference")
    wd = tmp_path / "run"
    _run(wd)                                            # checkpoints at 30, 40, 50
    _damage(wd / "checkpoints" / "50", how)
    capsys.readouterr()
    resumed = _run(wd)
    out = capsys.readouterr().out
    assert "checkpoint at step 50" in out and "resuming from step 40" in out, out
    assert "resumed from" in out and "at step 40" in out
    assert int(resumed.step) == 50
    _assert_same(resumed, reference)                    # ends like the uninterrupted run
    assert (wd / "checkpoints" / "damaged-50").is_dir()  # kept aside, step 50 saved anew
    assert (wd / "checkpoints" / "50").is_dir()


def test_two_damaged_checkpoints_fall_back_further_and_none_left_is_one_line(tmp_path, capsys):
    reference = _run(tmp_path / "reference", num_steps=60)
    wd = tmp_path / "run"
    _run(wd)
    for step in (40, 50):
        _damage(wd / "checkpoints" / str(step), "truncate")
    resumed = _run(wd, num_steps=60)
    assert "checkpoints at step 50" in capsys.readouterr().out
    _assert_same(resumed, reference)

    wd = tmp_path / "all_bad"
    _run(wd)
    for step in (30, 40, 50):
        _damage(wd / "checkpoints" / str(step), "truncate")
    with pytest.raises(CheckpointDamagedError) as e:
        _run(wd)
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, cli.USER_ERRORS)
    assert all(f"step {s}:" in msg for s in (30, 40, 50)) and "new --workdir" in msg
    assert sorted(os.listdir(wd / "checkpoints")) == ["30", "40", "50"]  # nothing moved


def test_a_different_model_is_a_mismatch_not_damage(tmp_path):
    _run(tmp_path)
    wider, _, _ = _problem(w_shape=(2,))
    with pytest.raises(CheckpointMismatchError) as e:
        _run(tmp_path, state=wider)
    msg = str(e.value)
    assert "different model" in msg and "params.w" in msg and "(1,) saved, (2,) now" in msg
    assert "\n" not in msg
    # the newest checkpoint damaged and the next a different model: still a mismatch
    _damage(tmp_path / "checkpoints" / "50", "truncate")
    with pytest.raises(CheckpointMismatchError):
        _run(tmp_path, state=wider)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["30", "40", "50"]


# --- signals and data -------------------------------------------------------------------

def test_sigint_during_evaluation_saves_that_step_and_the_rerun_ends_identically(tmp_path):
    """Ctrl-C in-process: the checkpoint is saved at the step it arrived, even between
    checkpoint steps and during eval_fn, and resuming from it repeats the run exactly."""
    reference = _run(tmp_path / "reference")
    state, step_fn, data = _problem()

    def eval_fn(st):
        if int(st.step) == 20:
            os.kill(os.getpid(), signal.SIGINT)
        return {}

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as e:
        train(state, step_fn, data, cfg=_toy_config(num_steps=50, checkpoint_every=50,
                                                     eval_every=10),
              seed=0, workdir=str(tmp_path / "run"), eval_fn=eval_fn)
    assert f"stopped by signal {int(signal.SIGINT)} at step 20" in str(e.value)
    assert signal.getsignal(signal.SIGINT) is before        # handlers restored
    assert os.listdir(tmp_path / "run" / "checkpoints") == ["20"]
    _assert_same(_run(tmp_path / "run", checkpoint_every=50), reference)


def test_non_finite_training_data_is_reported_before_compiling(tmp_path):
    x = np.ones((32, 3), np.float32)
    x[3, 1], x[5, 0], x[7, 2] = np.nan, np.inf, np.nan
    labels = np.arange(32, dtype=np.int32)
    state, _, _ = _problem()

    def step_fn(*args):
        raise AssertionError("the step was traced despite non-finite data")

    with pytest.raises(NonFiniteDataError) as e:
        train(state, step_fn, (labels, x), cfg=_toy_config(), seed=0, workdir=str(tmp_path))
    msg = str(e.value)
    assert "train_data[1]" in msg and "2 NaN and 1 infinite values of 96" in msg
    assert "(3, 1)" in msg and "lr" not in msg and "\n" not in msg
    assert isinstance(e.value, cli.USER_ERRORS)
    assert not (tmp_path / "checkpoints").exists()
    # integer arrays are skipped; low-precision floats are checked too
    check_finite_data({"images": np.full((4, 2), 255, np.uint8), "x": np.zeros(3)})
    with pytest.raises(NonFiniteDataError, match=r"train_data\['x'\].*1 NaN and 0 inf"):
        check_finite_data({"x": jnp.array([1.0, jnp.nan], jnp.bfloat16)})
