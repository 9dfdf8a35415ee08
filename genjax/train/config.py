"""Checks on config values, run before anything is compiled.

The shared sections (seed, data, optim, train) are checked by `validate_common`; each
experiment checks its own sections with the reusable checkers below (`integer`,
`number`, `one_of`, `boolean`, `string`, `int_tuple`, `require` for cross-field rules).
Each failed check raises ConfigError with one line naming ``--config.FIELD``, the bad
value and what would be accepted.

A locked ml-collections config already rejects some wrong types when a value is set (a
string or a float for an int field), but lets these through, so the checkers test them:
``None`` for any field, a bool for an int field (bool is an int), an int for a float
field (stored as a float), and a tuple of any length with elements of any type.
"""

from __future__ import annotations

import contextlib
import math

from genjax.data.transforms import PREPROCESS_MODES
from genjax.train.optim import OPTIMIZERS, SCHEDULES


class ConfigError(ValueError):
    """A config value is out of range or inconsistent with another one."""


_TRACKED: list[set] = []        # the fields named by checks, while `tracking` is active


@contextlib.contextmanager
def tracking():
    """Collects the names of the fields the checks inside look at (tests use it to show
    that every field of every preset is checked)."""
    seen: set = set()
    _TRACKED.append(seen)
    try:
        yield seen
    finally:
        _TRACKED.remove(seen)


def _note(field: str) -> None:
    for seen in _TRACKED:
        seen.add(field)


def require(ok: bool, field: str, value, expected: str) -> None:
    _note(field)
    if not ok:
        raise ConfigError(f"--config.{field}={value!r} is invalid: expected {expected}")


def _get(config, field: str):
    _note(field)
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def one_of(config, field: str, choices) -> None:
    value = _get(config, field)
    ok = isinstance(value, str) and value in choices
    require(ok, field, value, "one of " + ", ".join(map(str, choices)))


def integer(config, field: str, minimum: int = 1, maximum: int | None = None,
            why: str = "") -> int:
    """An int (not a bool) in [minimum, maximum]; returns it."""
    value = _get(config, field)
    name = field.rsplit(".", 1)[-1]
    if maximum is not None:
        expected = f"an integer with {minimum} <= {name} <= {maximum}"
    elif minimum == 1:
        expected = "an integer > 0"
    else:
        expected = f"an integer >= {minimum}"
    ok = _is_int(value) and value >= minimum and (maximum is None or value <= maximum)
    require(ok, field, value, expected + (f" ({why})" if why else ""))
    return value


def number(config, field: str, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, why: str = "") -> float:
    """A finite int or float (not a bool) in the interval given by low / high (closed
    unless low_open / high_open; None = unbounded); returns it."""
    value = _get(config, field)
    ok = _is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if low is not None and high is not None:
        expected = (f"a number with {low:g} {'<' if low_open else '<='} "
                    f"{field.rsplit('.', 1)[-1]} {'<' if high_open else '<='} {high:g}")
    elif low is not None:
        expected = f"a number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        expected = f"a number {'<' if high_open else '<='} {high:g}"
    else:
        expected = "a finite number"
    require(ok, field, value, expected + (f" ({why})" if why else ""))
    return value


def positive(config, field: str, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with allow_zero)."""
    return number(config, field, low=0, low_open=not allow_zero)


def in_range(config, field: str, low: float, high: float, *, high_open: bool = True,
             why: str = "") -> float:
    """A number in [low, high) ([low, high] with high_open=False)."""
    return number(config, field, low, high, high_open=high_open, why=why)


def boolean(config, field: str) -> bool:
    value = _get(config, field)
    require(isinstance(value, bool), field, value, "True or False")
    return value


def string(config, field: str) -> str:
    value = _get(config, field)
    require(isinstance(value, str), field, value, "a string")
    return value


def int_tuple(config, field: str, *, minimum: int = 1, min_len: int = 1,
              max_len: int | None = None, distinct: bool = False, example: str = "",
              what: str = "") -> tuple:
    """A tuple of ints (not bools) >= minimum, of length in [min_len, max_len]; returns
    it. ``what`` names the entries in the message (e.g. "layer widths")."""
    value = _get(config, field)
    ok = (isinstance(value, (tuple, list)) and min_len <= len(value)
          and (max_len is None or len(value) <= max_len)
          and all(_is_int(v) and v >= minimum for v in value)
          and (not distinct or len(set(value)) == len(value)))
    if max_len is not None and max_len == min_len:
        size = f"{min_len} "
    elif max_len is not None:
        size = f"{min_len} to {max_len} "
    elif min_len:
        size = f"{min_len} or more "
    else:
        size = ""
    kind = "positive integers" if minimum == 1 else f"integers >= {minimum}"
    expected = (f"a tuple of {size}{'distinct ' if distinct else ''}{kind}"
                + (f" ({what})" if what else "") + (f", e.g. {example}" if example else ""))
    require(ok, field, value, expected)
    return tuple(value)


def validate_optim(config, section: str = "optim") -> None:
    """An optimiser section made by configs.common.optim (e.g. "optim", or a GAN's
    discriminator's "optim_d"): known name and schedule, lr > 0, the rest in range."""
    one_of(config, f"{section}.name", OPTIMIZERS)
    one_of(config, f"{section}.schedule", SCHEDULES)
    positive(config, f"{section}.lr")
    for f in ("weight_decay", "grad_clip"):
        positive(config, f"{section}.{f}", allow_zero=True)
    integer(config, f"{section}.warmup_steps", minimum=0)
    for b in ("b1", "b2"):
        in_range(config, f"{section}.{b}", 0, 1)
    positive(config, f"{section}.eps")
    in_range(config, f"{section}.momentum", 0, 1, why="SGD's momentum; 0 = none")


def validate_data_section(config) -> None:
    """data.name, data_dir, preprocess (a known mode; each experiment narrows it), classes."""
    require(isinstance(config.data.name, str) and config.data.name, "data.name",
            config.data.name, "a dataset name, e.g. mnist5k")
    one_of(config, "data.preprocess", PREPROCESS_MODES)
    string(config, "data.data_dir")
    if "classes" in config.data:
        int_tuple(config, "data.classes", minimum=0, min_len=0, distinct=True,
                  example="'(0, 1, 2)' (() keeps every class)", what="labels")


def validate_common(config, num_devices: int) -> None:
    """The sections genjax.train reads: seed, data.*, optim.*, train.*."""
    integer(config, "seed", minimum=0)
    if "preset" in config:
        string(config, "preset")
    validate_data_section(config)
    validate_optim(config, "optim")
    t = config.train
    for f in ("num_steps", "batch_size", "steps_per_dispatch", "checkpoint_every",
              "keep_checkpoints"):
        integer(config, "train." + f)
    integer(config, "train.eval_every", minimum=0, why="0 = only at the end")
    boolean(config, "train.distributed")
    if "coordinator_address" in t:      # configs/common.train has them; a bare one may not
        validate_processes(config)
    if "xla_options" in t:
        validate_xla_options(config)
    require(t.batch_size % num_devices == 0, "train.batch_size", t.batch_size,
            f"a multiple of the {num_devices} devices the batch is split over")
    for f in ("checkpoint_every", "eval_every"):
        require(t[f] % t.steps_per_dispatch == 0, "train." + f, t[f],
                f"a multiple of train.steps_per_dispatch={t.steps_per_dispatch} "
                "(the host acts only between dispatches)")


def validate_xla_options(config) -> None:
    """train.xla_options: "auto", "none" or "NAME=VALUE;..." (`genjax.xla.parse`)."""
    from genjax import xla

    spec = string(config, "train.xla_options")
    try:
        xla.check(spec)
    except ValueError as e:
        require(False, "train.xla_options", spec,
                "'auto', 'none' or 'NAME=VALUE;NAME=VALUE' with options XLA accepts "
                f"({e})")


def validate_processes(config) -> None:
    """train.coordinator_address / num_processes / process_id / init_timeout_s: all unset
    (one process) or a HOST:PORT, N >= 1 and an id in 0..N-1 (`genjax.train.distributed`)."""
    t = config.train
    address = string(config, "train.coordinator_address")
    integer(config, "train.num_processes", minimum=0, why="0 = one process")
    integer(config, "train.process_id", minimum=0, why="this process's id; 0 with one")
    number(config, "train.init_timeout_s", low=0, low_open=True,
           why="seconds to wait for the other processes")
    if address:
        host, sep, port = address.rpartition(":")
        require(bool(sep and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536),
                "train.coordinator_address", address,
                "HOST:PORT, e.g. '10.0.0.1:1234' (process 0's host and a free port)")
    if address or t.num_processes:
        require(bool(address), "train.coordinator_address", address,
                f"process 0's HOST:PORT with train.num_processes={t.num_processes}")
        require(t.num_processes >= 1, "train.num_processes", t.num_processes,
                f"the number of processes (>= 1) with train.coordinator_address={address!r}")
        require(0 <= t.process_id < t.num_processes, "train.process_id", t.process_id,
                f"this process's id, 0 .. {t.num_processes - 1} (a different one in each "
                "process)")
    else:
        require(t.process_id == 0, "train.process_id", t.process_id,
                "0 without train.coordinator_address and train.num_processes (one process)")


def validate_batch_vs_data(config, num_examples: int) -> None:
    require(config.train.batch_size <= num_examples, "train.batch_size",
            config.train.batch_size,
            f"at most the {num_examples} training examples of {config.data.name!r}")


def at_most(config, field: str, limit: int, what: str) -> None:
    """An already type-checked count that must not exceed ``limit`` (e.g. test examples)."""
    value = _get(config, field)
    require(value <= limit, field, value, f"at most {limit}, {what}")


def validate_fd(config, ds, fields=("eval.fd_samples",)) -> None:
    """The classifier Fréchet distance's settings against the dataset ``ds``: each count
    in ``fields`` is 0 (skip) or 2 .. the test split's size (as many real test images as
    samples), and a count > 0 needs a labelled dataset (the classifier trains on it)."""
    used = [f for f in fields if _get(config, f)]
    for f in used:
        n = _get(config, f)
        require(n >= 2, f, n, "0 (skip) or at least 2 (a covariance needs 2 samples)")
        at_most(config, f, len(ds.test),
                f"the test images of {config.data.name!r} compared with as many samples")
        require(ds.train_labels is not None, f, n,
                f"0: the Fréchet distance's classifier needs labels, and "
                f"{config.data.name!r} has none")
    if used:         # the classifier's own config, checked now rather than after training
        import jax  # pylint: disable=import-outside-toplevel
        from genjax.eval import sample_quality  # pylint: disable=import-outside-toplevel

        clf = sample_quality.default_config(config.data.name, config.eval.classifier_steps)
        try:
            validate_common(clf, jax.device_count())
            sample_quality.validate(clf)
            if not config.data.get("classes"):    # else the classifier sees more data
                validate_batch_vs_data(clf, len(ds.train))
        except ConfigError as e:
            n = _get(config, used[0])
            raise ConfigError(f"--config.{used[0]}={n!r} is invalid: expected 0, the "
                              f"Fréchet distance's classifier cannot be trained ({e})"
                              ) from None


def validate_conditional(config, ds, field: str = "model.conditional") -> bool:
    """``field`` (a bool) and, when True, that ``ds`` carries labels (the class the model is
    conditioned on; `genjax.conditioning`). Returns the flag."""
    on = boolean(config, field)
    require(not on or ds.train_labels is not None, field, on,
            f"False: {config.data.name!r} has no labels to condition on (pick a labelled "
            "dataset, e.g. mnist5k, digits or eight_gaussians)")
    return on
