"""What may change when a run is resumed, checked before anything is compiled.

Rerunning an experiment in a workdir that holds a checkpoint continues that run. The
config it was started with is in ``config.json``; `check_config` compares the new config
with it field by field:

* a field in `SAFE_ON_RESUME` may change (its rule says when): the hyper-parameters the
  loop takes from the new config (``TrainState.hparams``: learning rates, weight decay,
  beta, EMA decay), a larger ``train.num_steps`` under a constant schedule, and what
  only decides how the run is executed, logged, checkpointed, evaluated or plotted;
* any other difference (data, model, objective, batch size, seed, schedule, optimiser
  type and moments, ...) raises `ConfigChangeError`, one line naming each field
  (old -> new) and how to proceed: a new ``--workdir``, or ``--allow_config_change``
  (``allow_config_change=True`` in Python) to continue from the checkpoint anyway.

Whenever the config changed (safely or by override), `record_config` keeps the previous
``config.json`` as ``config.<step>.json`` (step: the checkpoint it was continued from) and
logs the change, so the workdir says which config trained which steps.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import json
import os
from typing import NamedTuple

from genjax.train.config import ConfigError
from genjax.train.writers import log


class ConfigChangeError(ConfigError):
    """The config differs from the one the checkpoint in the workdir was trained with."""


class WorkdirError(ConfigError):
    """The workdir cannot be used as a folder (it is a file, or cannot be created)."""


class _Context(NamedTuple):
    config: dict          # the new config, flattened to {"section.field": value}
    step: int | None      # the step of the checkpoint the run would continue from


def _always(old, new, ctx: _Context) -> str | None:
    return None


def _same_on_off(old, new, ctx: _Context) -> str | None:
    """Safe while it stays on (> 0) or off (0): switching adds or drops state."""
    if (not old) != (not new):
        return "switching it on or off changes what the checkpoint holds"
    return None


def _num_steps(old, new, ctx: _Context) -> str | None:
    """A different length is the same run only when no learning-rate schedule depends on
    it (constant, with or without warm-up) and the checkpoint is not already past it."""
    cosine = sorted(k for k, v in ctx.config.items()
                    if k.endswith(".schedule") and v == "cosine")
    if cosine:
        return f"the cosine schedule of {cosine[0].rsplit('.', 1)[0]} depends on it"
    if ctx.step is not None and new < ctx.step:
        return f"the checkpoint is at step {ctx.step} already"
    return None


# Fields that may differ from the saved config when a run resumes: pattern -> rule(old,
# new, context) returning None when the change is safe, else why it is not. Keep this
# the one list (the README's "Resuming" section describes it).
SAFE_ON_RESUME = {
    # hyper-parameters in TrainState.hparams: the loop takes them from the new config
    "optim*.lr": _always,               # optim (and a GAN's optim_d)
    "optim*.weight_decay": _always,
    "loss.beta": _always,               # VAE
    "ema.decay": _always,               # DDPM
    "model.ema_decay": _same_on_off,    # GAN: 0 means no average in the state
    "optim*.grad_clip": _always,        # also an array in hparams; 0 = off
    "train.num_steps": _num_steps,
    # how the run is executed, logged, checkpointed, evaluated and plotted
    "train.steps_per_dispatch": _always,
    "train.checkpoint_every": _always,
    "train.keep_checkpoints": _always,
    "train.eval_every": _always,
    "train.distributed": _always,
    "train.coordinator_address": _always,   # where and how many processes run it
    "train.num_processes": _always,
    "train.process_id": _always,
    "train.init_timeout_s": _always,
    "train.xla_options": _always,       # how programs compile, not what they compute
    "eval.*": _always,
    "plots.*": _always,
    "anomaly.*": _always,               # VAE: scored after training
    "data.data_dir": _always,           # where the same dataset is read from
    "preset": _always,                  # a name; what it sets is compared field by field
}

_ALLOW = contextvars.ContextVar("allow_config_change", default=False)


@contextlib.contextmanager
def allowing_config_change(allow: bool = True):
    """Within this block, `check_config` accepts any config change (the cli's
    --allow_config_change wraps the experiment in it)."""
    token = _ALLOW.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW.reset(token)


def ensure_workdir(workdir: str, *, create: bool = True) -> str:
    """Raises WorkdirError (one line) when ``workdir`` is a file or cannot be created;
    with ``create``, creates it. Returns its absolute path. (``create=False`` checks the
    way up without writing anything, for checks made before a config is known good.)"""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"--workdir={workdir} is an existing file, not a folder; choose "
                           "a folder (a new one to start a run, an old one to resume it)")
    if not create:
        parent = os.path.dirname(path)
        while not os.path.exists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if os.path.isdir(parent):
            return path
        create = True                         # let makedirs say what is wrong
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:     # a parent is a file, no permission, read-only filesystem ...
        raise WorkdirError(f"--workdir={workdir} cannot be created ({type(e).__name__}: "
                           f"{e.strerror or e}); choose a folder you can write to") from e
    return path


def latest_checkpoint_step(workdir: str) -> int | None:
    """The newest finished checkpoint step in ``workdir``/checkpoints (Orbax renames a
    step's folder to its number once written), or None."""
    d = os.path.join(workdir, "checkpoints")
    steps = [int(n) for n in os.listdir(d) if n.isdigit()] if os.path.isdir(d) else []
    return max(steps, default=None)


def _flatten(tree, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _as_json(config) -> dict:
    return json.loads(config.to_json_best_effort())


_ABSENT = "(absent)"


def config_changes(old: dict, new: dict, *, step: int | None = None):
    """Compares two configs (JSON dicts) for resuming from a checkpoint at ``step``.
    Returns (safe, unsafe): lists of (field, old, new, reason) for the differing fields;
    reason is None for safe ones, and for unsafe ones outside SAFE_ON_RESUME."""
    o, n = _flatten(old), _flatten(new)
    ctx = _Context(n, step)
    safe, unsafe = [], []
    for field in sorted(set(o) | set(n)):
        a, b = o.get(field, _ABSENT), n.get(field, _ABSENT)
        if a == b or json.dumps(a) == json.dumps(b):      # (NaN != NaN)
            continue
        rule = next((r for p, r in SAFE_ON_RESUME.items() if fnmatch.fnmatchcase(field, p)),
                    None)
        if rule is None or _ABSENT in (a, b):
            unsafe.append((field, a, b, None))
            continue
        reason = rule(a, b, ctx)
        (safe if reason is None else unsafe).append((field, a, b, reason))
    return safe, unsafe


def _describe(changes) -> str:
    return ", ".join(f"{f} {a!r} -> {b!r}" + (f" ({why})" if why else "")
                     for f, a, b, why in changes)


class ConfigChange:
    """The result of `check_config`: what differs from the saved config (both lists empty
    for a fresh workdir or an unchanged config) and the checkpoint step it applies at."""

    def __init__(self, step=None, safe=(), unsafe=()):
        self.step, self.safe, self.unsafe = step, list(safe), list(unsafe)

    def __bool__(self) -> bool:
        return bool(self.safe or self.unsafe)


def check_config(config, workdir: str, *, allow_config_change: bool | None = None
                 ) -> ConfigChange:
    """Compares ``config`` with ``workdir``/config.json when the workdir holds a
    checkpoint (there is nothing to resume otherwise). Raises ConfigChangeError for a
    change outside SAFE_ON_RESUME unless allowed (by the keyword, or, when it is None,
    by `allowing_config_change`)."""
    step = latest_checkpoint_step(workdir)
    path = os.path.join(workdir, "config.json")
    if step is None or not os.path.isfile(path):
        return ConfigChange()
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        if not _allowed(allow_config_change):
            raise ConfigChangeError(
                f"{path} cannot be read ({type(e).__name__}), so the config the checkpoint "
                f"at step {step} was trained with is unknown; use a new --workdir, or pass "
                "--allow_config_change to resume with this config") from e
        return ConfigChange(step, unsafe=[("config.json", "(unreadable)", "(this config)",
                                           None)])
    safe, unsafe = config_changes(old, _as_json(config), step=step)
    if unsafe and not _allowed(allow_config_change):
        raise ConfigChangeError(
            f"{os.path.abspath(workdir)} holds a run (checkpoint at step {step}) with a "
            f"different config: {_describe(unsafe)}; use a new --workdir to start a new "
            "run, or pass --allow_config_change (allow_config_change=True in Python) to "
            "continue this one with the new config")
    return ConfigChange(step, safe, unsafe)


def _allowed(allow: bool | None) -> bool:
    return _ALLOW.get() if allow is None else bool(allow)


def record_config(config, workdir: str, change: ConfigChange | None = None) -> None:
    """Writes ``config`` to ``workdir``/config.json; when ``change`` says it differs from
    the saved one, first keeps that as config.<step>.json (the first config to reach a
    step is the one that trained it: an existing config.<step>.json is not replaced).
    With several processes only process 0 writes."""
    from genjax.train.distributed import is_main_process

    if not is_main_process():
        return
    ensure_workdir(workdir)
    path = os.path.join(workdir, "config.json")
    if change:
        kept = os.path.join(workdir, f"config.{change.step}.json")
        if not os.path.exists(kept):
            os.replace(path, kept)
        what = _describe(sorted(change.safe + change.unsafe, key=lambda c: c[0]))
        how = ("allowed by --allow_config_change" if change.unsafe
               else "all safe to change on resume")
        log(f"config changed since the checkpoint at step {change.step}: {what} ({how}); "
            f"the config that trained up to step {change.step} is kept in "
            f"{os.path.basename(kept)}")
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
