"""The command line shared by the experiments: absl flags, a locked ml-collections config,
one-line errors, a default workdir.

    python -m experiments.vae --config=configs/vae.py[:preset] [--workdir=DIR]
                              [--config.optim.lr=3e-4 ...] [--allow_config_change]
                              [--sweep=FIELD=V1,V2 ... [--sweep_samples=N --sweep_seed=S]
                               [--sweep_chunk=K]]

--sweep (repeatable; spellings in `genjax.train.sweep_spec`) trains every setting of the
sweep instead of one run, through the experiment's ``sweep`` entry point
(`genjax.train.sweep`); its default workdir is runs/<experiment>/sweep_<preset>.

Several processes (hosts): each runs the same command with
--config.train.coordinator_address=HOST:PORT --config.train.num_processes=N and its own
--config.train.process_id=I (`genjax.train.distributed`); only process 0 writes files.

Rerunning in a workdir that holds a checkpoint resumes it; a config that differs from the
checkpoint's in more than what is safe to change on resume (`genjax.train.resume`) is an
error unless --allow_config_change is given.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Callable

from absl import app, flags, logging as absl_logging

from genjax.data import DatasetError
from genjax.train import resume
from genjax.train.checkpoint import CheckpointDamagedError, CheckpointMismatchError
from genjax.train.config import ConfigError
from genjax.train.loop import Interrupted, NonFiniteDataError, NonFiniteError

# ConfigError covers resume.ConfigChangeError and resume.WorkdirError.
USER_ERRORS = (ConfigError, DatasetError, CheckpointMismatchError, CheckpointDamagedError,
               NonFiniteError, NonFiniteDataError)


def _one_line(e: BaseException) -> str:
    """The message of ``e`` on one line; for an error raised while a config file was
    parsed (absl wraps it with its traceback), only the innermost 'XError: message'."""
    text = str(e).replace("\\n", " ").replace("\\'", "'")
    inner = re.findall(r"\b\w*Error: (.*)", text)
    if "Traceback" in text and inner:
        text = inner[-1]
    return " ".join(text.split()) or type(e).__name__


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        msg = _one_line(e)
    except (AttributeError, KeyError) as e:
        text = _one_line(e)
        bad = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")
               and any(f"'{part}'" in text for part in a.split("=")[0].split(".")[1:])] or ["--config.?"]
        hint = re.search(r'Did you mean "([^"]+)"', text)
        msg = (f"unknown config field {bad[0]}"
               + (f' (did you mean "{hint.group(1)}"?)' if hint else "")
               + "; the config file lists the fields")
    except (TypeError, ValueError) as e:
        msg = f"bad config override: {_one_line(e)}"
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _start_processes(config) -> None:
    """Several processes (--config.train.coordinator_address / num_processes /
    process_id, or --config.train.distributed=True for JAX's cluster detection): checks
    those fields and starts the JAX distributed system before anything touches a device
    (`genjax.train.distributed`); a coordinator that cannot be reached is a ConfigError."""
    from genjax.train import config as cfglib, distributed

    if "coordinator_address" in config.train:
        cfglib.validate_processes(config)
    distributed.initialize(config.train)


def default_workdir(experiment: str, config) -> str:
    return os.path.join("runs", experiment, config.get("preset", "default"))


def run(train_and_evaluate: Callable, *, experiment: str, config_file: str,
        description: str = "", sweep: Callable | None = None) -> None:
    """Define --config (a locked ml-collections config file, default ``config_file``),
    --workdir (default runs/<experiment>/<preset>) and --allow_config_change (see
    `genjax.train.resume`), then app.run ``train_and_evaluate(config, workdir)`` with clear
    errors: a user error prints 'error: ...' on one line and exits 1;
    an interruption exits 130 after its checkpoint is saved.

    sweep(config, workdir, axes, *, samples, sweep_seed, chunk): the experiment's sweep entry
    point, called instead of train_and_evaluate when --sweep is given (None: the
    experiment does not support sweeps yet, and --sweep is a one-line error).

    The flags are defined here, not when an experiment module is imported, so that several
    experiments can be imported in one process (tests, notebooks)."""
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file(
        "config", config_file,
        f"{description or experiment} config file, optionally with :preset.", lock_config=True)
    workdir_flag = flags.DEFINE_string(
        "workdir", None, f"Output folder (default runs/{experiment}/<preset>, or "
        f"runs/{experiment}/sweep_<preset> with --sweep).")
    allow_flag = flags.DEFINE_bool(
        "allow_config_change", False,
        "Resume the checkpoint in --workdir even if the config differs from its config.json "
        "in fields that are not safe to change on resume (the old config is kept as "
        "config.<step>.json).")

    sweep_flag = flags.DEFINE_multi_string(
        "sweep", None, "Train a sweep: FIELD=V1,V2,... (a grid axis), FIELD=uniform(A,B), "
        "FIELD=loguniform(A,B) or FIELD=choice(V1,...) (random axes, with "
        "--sweep_samples); repeat for several fields.")
    samples_flag = flags.DEFINE_integer(
        "sweep_samples", 0, "Random draws of the sweep's random axes (each combined with "
        "every grid point).")
    sweep_seed_flag = flags.DEFINE_integer(
        "sweep_seed", 0, "Seed of the sweep's random draws (the same seed, the same "
        "settings).")
    chunk_flag = flags.DEFINE_integer(
        "sweep_chunk", 0, "Train at most this many settings of a sweep at once, chunk "
        "after chunk (0: all that fit in the device's memory).")

    def main(argv):
        if len(argv) > 1:
            print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
            sys.exit(2)
        absl_logging.set_verbosity(absl_logging.WARNING)   # orbax logs every save at INFO
        config = config_flag.value
        axes = sweep_flag.value or []
        if axes and sweep is None:
            print(f"error: experiments.{experiment} does not support --sweep yet",
                  file=sys.stderr)
            sys.exit(2)
        if not axes and (samples_flag.value or sweep_seed_flag.value or chunk_flag.value):
            print("error: --sweep_samples, --sweep_seed and --sweep_chunk need "
                  "--sweep=FIELD=...",
                  file=sys.stderr)
            sys.exit(2)
        from genjax.train import sweep as sweeplib
        workdir = workdir_flag.value or (sweeplib.default_workdir(experiment, config)
                                         if axes else default_workdir(experiment, config))
        try:
            if config.get("train") is not None:
                _start_processes(config)
            with resume.allowing_config_change(allow_flag.value):
                if axes:
                    sweep(config, workdir, axes, samples=samples_flag.value,
                          sweep_seed=sweep_seed_flag.value, chunk=chunk_flag.value)
                else:
                    train_and_evaluate(config, workdir)
        except USER_ERRORS as e:
            print(f"error: {_one_line(e)}", file=sys.stderr)
            sys.exit(1)
        except Interrupted as e:
            print(f"interrupted: {_one_line(e)}", file=sys.stderr)
            sys.exit(130)

    app.run(main, flags_parser=_parse_flags)
