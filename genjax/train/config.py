"""Checks on the config sections every experiment shares (seed, data, optim, train).

Each failed check raises ConfigError with one line naming the field, the bad value and
what would be accepted, before anything is compiled.
"""

from __future__ import annotations

from genjax.train.optim import OPTIMIZERS, SCHEDULES


class ConfigError(ValueError):
    """A config value is out of range or inconsistent with another one."""


def require(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"--config.{field}={value!r} is invalid: expected {expected}")


def one_of(config, field: str, choices) -> None:
    value = _get(config, field)
    require(value in choices, field, value, "one of " + ", ".join(map(str, choices)))


def positive(config, field: str, allow_zero: bool = False) -> None:
    value = _get(config, field)
    ok = value >= 0 if allow_zero else value > 0
    require(ok, field, value, "a number >= 0" if allow_zero else "a number > 0")


def _get(config, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def validate_optim(config, section: str = "optim") -> None:
    """An optimiser section made by configs.common.optim (e.g. "optim", or a GAN's
    discriminator's "optim_d"): known name and schedule, lr > 0, the rest in range."""
    one_of(config, f"{section}.name", OPTIMIZERS)
    one_of(config, f"{section}.schedule", SCHEDULES)
    positive(config, f"{section}.lr")
    for f in ("weight_decay", "grad_clip", "warmup_steps"):
        positive(config, f"{section}.{f}", allow_zero=True)
    for b in ("b1", "b2"):
        require(0 <= config[section][b] < 1, f"{section}.{b}", config[section][b],
                f"0 <= {b} < 1")


def validate_common(config, num_devices: int) -> None:
    """The sections genjax.train reads: seed, optim.*, train.*."""
    require(isinstance(config.seed, int) and config.seed >= 0, "seed", config.seed,
            "an integer >= 0")
    validate_optim(config, "optim")
    t = config.train
    for f in ("num_steps", "batch_size", "steps_per_dispatch", "checkpoint_every",
              "keep_checkpoints"):
        positive(config, "train." + f)
    positive(config, "train.eval_every", allow_zero=True)
    require(t.batch_size % num_devices == 0, "train.batch_size", t.batch_size,
            f"a multiple of the {num_devices} devices the batch is split over")
    for f in ("checkpoint_every", "eval_every"):
        require(t[f] % t.steps_per_dispatch == 0, "train." + f, t[f],
                f"a multiple of train.steps_per_dispatch={t.steps_per_dispatch} "
                "(the host acts only between dispatches)")


def validate_batch_vs_data(config, num_examples: int) -> None:
    require(config.train.batch_size <= num_examples, "train.batch_size",
            config.train.batch_size,
            f"at most the {num_examples} training examples of {config.data.name!r}")
