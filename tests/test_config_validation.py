"""Every config value is checked before anything compiles (issue 14, item 5).

A table-driven battery runs each experiment's `train_and_evaluate` (and the sample-quality
classifier's `get_classifier`) on bad values: negative, zero, wrong type, unknown choice,
inconsistent pairs, settings that do not fit the dataset. Each must raise a ConfigError
whose message is one line starting ``--config.FIELD=``, with no XLA compilation at all
(counted with jax.monitoring after clearing jax's caches). The values are the ones a
locked ml-collections config lets through to the validation (None for any field, a bool
for an int field, tuples of any length and element type); the ones it rejects itself (a
string or a float for an int field) never reach it.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ae_vs_vae
from genjax.eval import sample_quality
from genjax.train import ConfigError
from genjax.train import config as cfglib, experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ("vae", "nade", "gan", "ddpm", "gmm", "flow", "score", "ebm", "pixelcnn",
            "recommend")
CONFIGS = {f: importlib.import_module(f"configs.{f}") for f in FAMILIES}
EXPERIMENTS = {f: importlib.import_module(f"experiments.{f}") for f in FAMILIES}

# -- counting compilations --------------------------------------------------------------

_COUNTING: list[list] = []


def _on_event(name, *args, **kwargs):
    if name.startswith(("/jax/core/compile/", "/jax/compilation_cache/")):
        for events in _COUNTING:
            events.append(name)


jax.monitoring.register_event_listener(_on_event)
jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextlib.contextmanager
def compilations():
    """Collects jax's compile events inside; caches are cleared first, so a program
    compiled earlier in the session is compiled (and counted) again."""
    jax.clear_caches()
    events: list = []
    _COUNTING.append(events)
    try:
        yield events
    finally:
        _COUNTING.remove(events)


def test_the_compile_counter_sees_a_compilation():
    with compilations() as events:
        jax.block_until_ready(jnp.arange(3) * 2 + 1)
    assert events


# -- the battery ------------------------------------------------------------------------

def _leaves(c, prefix=""):
    for k, v in c.items():
        if hasattr(v, "items"):
            yield from _leaves(v, prefix + k + ".")
        else:
            yield prefix + k, v


def _bad_values(field, value):
    """Values of the field's own type (or None) that no check may accept."""
    out = [None]
    if isinstance(value, bool):
        return out
    if isinstance(value, int):
        return out + [True, -1]                        # bool is an int; every count >= 0
    if isinstance(value, float):
        return out + [-1.0, math.nan, math.inf]
    if isinstance(value, tuple):                       # (1.5,) is fine where floats are
        return out + [("a",), (-3,)] + ([] if any(isinstance(v, float) for v in value)
                                         else [(1.5,)])
    if isinstance(value, str) and field not in ("preset", "data.data_dir",
                                                "eval.classifier_dir", "data.name"):
        return out + ["bogus"]                         # a choice
    return out


def _generic_cases():
    for family in FAMILIES:
        config = CONFIGS[family].get_config("quick")
        for field, value in _leaves(config):
            for bad in _bad_values(field, value):
                yield pytest.param(family, "quick", {field: bad}, field,
                                   id=f"{family}-{field}={bad!r}")
    for field, value in _leaves(sample_quality.default_config()):
        for bad in _bad_values(field, value):
            yield pytest.param("classifier", None, {field: bad}, field,
                               id=f"classifier-{field}={bad!r}")


# (family, preset, overrides, the field the error names): ranges, inconsistent pairs and
# values that do not fit the dataset (checked after it is loaded, before building)
SPECIFIC = [
    # shared sections (genjax.train.config.validate_common)
    ("vae", "quick", {"optim.eps": 0.0}, "optim.eps"),
    ("vae", "quick", {"optim.momentum": 1.0}, "optim.momentum"),
    ("vae", "quick", {"optim.b1": 1.0}, "optim.b1"),
    ("vae", "quick", {"optim.b2": 1.5}, "optim.b2"),
    ("vae", "quick", {"optim.lr": 0.0}, "optim.lr"),
    ("vae", "quick", {"optim.name": "rmsprop"}, "optim.name"),
    ("vae", "quick", {"train.num_steps": 0}, "train.num_steps"),
    ("vae", "quick", {"train.checkpoint_every": 75}, "train.checkpoint_every"),
    ("vae", "quick", {"train.eval_every": 30}, "train.eval_every"),
    ("vae", "quick", {"train.batch_size": 5000}, "train.batch_size"),     # > 4000 examples
    ("vae", "quick", {"data.classes": (1, 1)}, "data.classes"),
    ("vae", "quick", {"data.name": ""}, "data.name"),
    ("gmm", "quick", {"seed": -1}, "seed"),
    # the VAE
    ("vae", "quick", {"model.hidden": (-3,)}, "model.hidden"),
    ("vae", "quick", {"model.hidden": (0,)}, "model.hidden"),
    ("vae", "conv", {"model.hidden": (256, 128)}, "model.hidden"),
    ("vae", "quick", {"model.latent_dim": 0}, "model.latent_dim"),
    ("vae", "quick", {"eval.iw_chunk": 7}, "eval.iw_chunk"),
    ("vae", "quick", {"eval.classifier_steps": 0}, "eval.classifier_steps"),
    ("vae", "quick", {"loss.num_samples": 5}, "loss.num_samples"),       # K>1: iwae only
    ("vae", "iwae", {"loss.beta": 4.0}, "loss.beta"),                   # beta: elbo only
    ("vae", "quick", {"loss.kl": "exact"}, "loss.kl"),
    ("vae", "quick", {"data.preprocess": "symmetric"}, "data.preprocess"),  # Bernoulli
    ("vae", "quick", {"anomaly.held_out_classes": (8, 9)}, "data.classes"),
    ("vae", "quick", {"data.classes": (0, 1), "anomaly.held_out_classes": (1, 9)},
     "anomaly.held_out_classes"),
    ("vae", "quick", {"data.classes": (0, 1), "anomaly.held_out_classes": (12,)},
     "anomaly.held_out_classes"),                                       # not a label
    ("vae", "quick", {"plots.interp_steps": 1}, "plots.interp_steps"),
    ("vae", "quick", {"eval.num_examples": 5000}, "eval.num_examples"),  # > 1000 test
    ("vae", "quick", {"plots.interp_pairs": 101}, "plots.interp_pairs"),  # 200 examples
    ("vae", "quick", {"eval.fd_samples": 1}, "eval.fd_samples"),
    ("vae", "quick", {"eval.fd_samples": 1001}, "eval.fd_samples"),
    # autoregressive models
    ("nade", "quick", {"model.hidden": (100, 100)}, "model.hidden"),
    ("nade", "quick", {"model.hidden": ()}, "model.hidden"),
    ("nade", "quick", {"model.context": 3}, "model.context"),           # FVBN's only
    ("nade", "quick", {"model.name": "fvbn", "model.context": 784}, "model.context"),
    ("nade", "quick", {"model.num_masks": 2}, "model.num_masks"),       # MADE's only
    ("nade", "quick", {"model.components": 0}, "model.components"),
    ("nade", "quick", {"model.ordering": "zigzag"}, "model.ordering"),
    ("nade", "quick", {"plots.grid": 1}, "plots.grid"),
    ("nade", "quick", {"eval.num_examples": 1001}, "eval.num_examples"),
    ("nade", "quick", {"eval.train_examples": 4001}, "eval.train_examples"),
    ("nade", "rnade", {"data.preprocess": "dynamic_binarize"}, "data.preprocess"),
    # the GAN
    ("gan", "quick", {"model.ema_decay": 1.0}, "model.ema_decay"),
    ("gan", "quick", {"model.g_channels": 0}, "model.g_channels"),
    ("gan", "eight_gaussians", {"model.g_hidden": (0, 128)}, "model.g_hidden"),
    ("gan", "quick", {"loss.d_steps": 0}, "loss.d_steps"),
    ("gan", "quick", {"loss.gp_weight": -1.0}, "loss.gp_weight"),
    ("gan", "quick", {"eval.min_fraction": 1.5}, "eval.min_fraction"),
    ("gan", "quick", {"eval.num_std": 0.0}, "eval.num_std"),
    ("gan", "quick", {"plots.interp_steps": 1}, "plots.interp_steps"),
    ("gan", "quick", {"optim_d.lr": 0.0}, "optim_d.lr"),
    ("gan", "quick", {"optim_d.momentum": 1.0}, "optim_d.momentum"),
    ("gan", "quick", {"optim_d.eps": -1e-8}, "optim_d.eps"),
    ("gan", "quick", {"eval.fd_samples": 2000}, "eval.fd_samples"),    # > 1000 test
    ("gan", "quick", {"eval.classifier_steps": 0}, "eval.classifier_steps"),
    ("gan", "quick", {"data.preprocess": "unit"}, "data.preprocess"),  # dcgan: [-1, 1]
    ("gan", "quick", {"model.arch": "mlp"}, "model.arch"),             # images: dcgan
    # the DDPM
    ("ddpm", "quick", {"model.channels": 9}, "model.channels"),        # odd embedding
    ("ddpm", "quick", {"model.channel_mults": ()}, "model.channel_mults"),
    ("ddpm", "quick", {"model.attention_resolutions": (13,)}, "model.attention_resolutions"),
    ("ddpm", "quick", {"model.dropout": 1.0}, "model.dropout"),
    ("ddpm", "quick", {"ema.decay": 1.0}, "ema.decay"),
    ("ddpm", "quick", {"diffusion.num_steps": 1}, "diffusion.num_steps"),
    ("ddpm", "quick", {"eval.bound_t": 50}, "eval.bound_t"),           # T - 1 = 49
    ("ddpm", "quick", {"eval.ddim_steps": 51}, "eval.ddim_steps"),
    ("ddpm", "quick", {"eval.ddim_eta": 1.5}, "eval.ddim_eta"),
    ("ddpm", "quick", {"data.preprocess": "unit"}, "data.preprocess"),
    ("ddpm", "quick", {"eval.bound_examples": 1001}, "eval.bound_examples"),
    ("ddpm", "quick", {"eval.ancestral_fd_samples": 1001}, "eval.ancestral_fd_samples"),
    ("ddpm", "quick", {"plots.trajectory_frames": 0}, "plots.trajectory_frames"),
    # mixtures
    ("gmm", "quick", {"fit.tol": 0.0}, "fit.tol"),
    ("gmm", "quick", {"fit.reg_covar": -1.0}, "fit.reg_covar"),
    ("gmm", "quick", {"fit.restarts": 0}, "fit.restarts"),
    ("gmm", "quick", {"model.num_components": 30_000}, "model.num_components"),
    ("gmm", "quick", {"model.family": "bernoulli"}, "data.preprocess"),
    ("gmm", "digits", {"fit.method": "gradient"}, "fit.method"),       # Bernoulli: EM
    ("gmm", "gradient", {"optim.grad_clip": 1.0}, "optim.grad_clip"),
    ("gmm", "quick", {"data.preprocess": "unit"}, "data.preprocess"),  # points: 'none'
    ("gmm", "quick", {"data.binarizations": 0}, "data.binarizations"),
    ("gmm", "quick", {"plots.grid": 1}, "plots.grid"),
    # PixelCNN
    ("pixelcnn", "quick", {"model.kernel": 4}, "model.kernel"),
    ("pixelcnn", "quick", {"model.first_kernel": 1}, "model.first_kernel"),
    ("pixelcnn", "quick", {"model.levels": 16}, "model.levels"),
    ("pixelcnn", "quick", {"model.levels": 256}, "data.preprocess"),   # 8-bit: 'none'
    ("pixelcnn", "digits", {"data.preprocess": "dynamic_binarize"}, "data.preprocess"),
    ("pixelcnn", "quick", {"eval.completion_rows": 8}, "eval.completion_rows"),  # 8x8
    # conditional generation (issue 20): a label the data do not have, or settings the
    # conditional evaluation cannot honour
    ("vae", "quick", {"model.conditional": True, "data.classes": tuple(range(8)),
                      "anomaly.held_out_classes": (8, 9)}, "anomaly.held_out_classes"),
    ("vae", "quick", {"model.conditional": True, "plots.analogy_digits": 201},
     "plots.analogy_digits"),
    ("nade", "cquick", {"model.name": "fvbn"}, "model.conditional"),
    ("nade", "quick", {"model.name": "made", "model.ordering": "random",
                       "eval.completion_rows": 4}, "eval.completion_rows"),
    ("nade", "quick", {"eval.completion_rows": 28}, "eval.completion_rows"),
    ("nade", "cquick", {"eval.cond_samples": 1}, "eval.cond_samples"),
    ("nade", "cquick", {"eval.cond_samples": 1001}, "eval.cond_samples"),
    ("flow", "cond_quick", {"data.name": "checkerboard"}, "model.conditional"),
    ("flow", "quick", {"model.conditional": True, "eval.cond_samples": 5},
     "eval.cond_samples"),
    ("gan", "conditional_eight_gaussians", {"data.name": "checkerboard"},
     "model.conditional"),
    ("ddpm", "cond_quick", {"eval.guidance_weights": (0.0, -2.0)}, "eval.guidance_weights"),
    ("ddpm", "cond_quick", {"model.label_dropout": 0.0}, "model.label_dropout"),
    ("ddpm", "cond_quick", {"eval.cond_samples": 360}, "eval.cond_samples"),
    ("ddpm", "cond_quick", {"eval.inpaint_jump": 100}, "eval.inpaint_jump"),
    # the classifier of the Fréchet distance
    ("classifier", None, {"model.hidden": (-3,)}, "model.hidden"),
    ("classifier", None, {"train.batch_size": 0}, "train.batch_size"),
]


def _configure(family, preset, overrides):
    if family == "classifier":
        config = sample_quality.default_config("mnist5k", 200)
    else:
        config = CONFIGS[family].get_config(preset)
    for field, value in overrides.items():
        section, _, name = field.rpartition(".")
        (config[section] if section else config)[name] = value
    return config


def _run(family, config, workdir):
    if family == "classifier":
        return sample_quality.get_classifier("mnist5k", str(workdir), config=config)
    return EXPERIMENTS[family].train_and_evaluate(config, str(workdir))


@pytest.mark.parametrize("family, preset, overrides, field",
                         [*_generic_cases(),
                          *[pytest.param(*c, id=f"{c[0]}:{c[1]}-" + ",".join(
                              f"{k}={v!r}" for k, v in c[2].items())) for c in SPECIFIC]])
def test_bad_values_fail_with_one_line_naming_the_field_before_any_compilation(
        tmp_path, family, preset, overrides, field):
    config = _configure(family, preset, overrides)
    with compilations() as events, pytest.raises(ConfigError) as e:
        _run(family, config, tmp_path / "w")
    message = str(e.value)
    assert "\n" not in message, message
    assert message.startswith(f"--config.{field}="), message
    assert "expected" in message, message                    # says what is accepted
    assert not events, f"compiled before the error: {events[:3]}"
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_a_classifier_that_cannot_train_on_the_data_is_an_error_before_training(tmp_path):
    """The Fréchet distance's classifier (batch 128) cannot train on 100 examples: said
    upfront, naming the experiment's field, not after the model has trained."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=rng.integers(0, 256, (100, 8, 8, 1), dtype=np.uint8),
             y=np.arange(100) % 4, x_test=rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8),
             y_test=np.arange(40) % 4)
    config = _configure("vae", "quick", {"data.name": f"npz:{path}", "train.batch_size": 32,
                                         "eval.fd_samples": 10, "eval.num_examples": 40,
                                         "plots.interp_pairs": 2})
    with compilations() as events, pytest.raises(ConfigError) as e:
        _run("vae", config, tmp_path / "w")
    message = str(e.value)
    assert message.startswith("--config.eval.fd_samples=10 is invalid") and "\n" not in message
    assert "classifier" in message and "train.batch_size=128" in message, message
    assert not events
    config.eval.fd_samples = 0                   # without the Fréchet distance it is valid
    EXPERIMENTS["vae"].validate(config)
    EXPERIMENTS["vae"].validate_data(config, experiment.prepare(config, str(tmp_path / "v")))


def test_ae_vs_vae_checks_both_configs_before_any_compilation(tmp_path):
    for overrides, field in (({"loss.objective": "ae"}, "loss.objective"),
                             ({"model.hidden": (-3,)}, "model.hidden"),
                             ({"eval.iw_chunk": 7}, "eval.iw_chunk")):
        config = _configure("vae", "quick", overrides)
        with compilations() as events, pytest.raises(ConfigError) as e:
            ae_vs_vae.train_and_evaluate(config, str(tmp_path))
        assert str(e.value).startswith(f"--config.{field}=") and not events, str(e.value)


# -- every field of every preset is checked, and every preset passes --------------------

PRESETS = [(f, p) for f in FAMILIES for p in (None, *CONFIGS[f].PRESETS)]


@pytest.mark.parametrize("family, preset", [*PRESETS, ("classifier", None)])
def test_every_field_of_every_preset_is_checked(family, preset):
    if family == "classifier":
        config, validate = sample_quality.default_config(), sample_quality.validate
    else:
        config, validate = CONFIGS[family].get_config(preset), EXPERIMENTS[family].validate
    with cfglib.tracking() as seen:
        # e.g. 8 devices split a batch; the recommenders keep the paper's batch of 500
        # users, which 4 devices split (8 need --config.train.batch_size=504)
        cfglib.validate_common(config, 4 if family == "recommend" else 8)
        validate(config)
    unchecked = {field for field, _ in _leaves(config)} - seen
    assert not unchecked, f"fields no check looks at: {sorted(unchecked)}"


@pytest.mark.parametrize("num_steps", [1, 7, 499, 500, 501, 1200, 1201, 3000, 10_007])
def test_the_classifier_config_is_valid_for_any_number_of_steps(num_steps):
    """--config.eval.classifier_steps=1200 used to train the whole model and then fail on
    the classifier's train.checkpoint_every, a field the user never set."""
    config = sample_quality.default_config("mnist5k", num_steps)
    cfglib.validate_common(config, 8)
    sample_quality.validate(config)
    t = config.train
    assert t.num_steps == num_steps and t.steps_per_dispatch <= 500
    # one checkpoint, the final one: no multiple of checkpoint_every before the end
    assert t.checkpoint_every >= num_steps > t.checkpoint_every - t.steps_per_dispatch
    for bad in (0, -5, True, None):
        with pytest.raises(ConfigError, match=r"^--config\.eval\.classifier_steps="):
            sample_quality.default_config("mnist5k", bad)


# -- through the real command line (a few: each costs seconds) -------------------------

@pytest.mark.parametrize("module, args, field", [
    ("experiments.vae", ["--config=configs/vae.py:quick", "--config.model.hidden=(-3,)"],
     "model.hidden"),
    ("experiments.gan", ["--config=configs/gan.py:quick", "--config.optim_d.momentum=1.0"],
     "optim_d.momentum"),
])
def test_the_command_line_prints_one_line_naming_the_field(tmp_path, module, args, field):
    p = subprocess.run([sys.executable, "-m", module, *args, f"--workdir={tmp_path / 'w'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --config.{field}="), lines
    assert not os.path.exists(tmp_path / "w")
