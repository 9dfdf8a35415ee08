"""What a sweep is, before anything runs: parse ``--sweep`` arguments, expand them into
settings, apply a setting to the locked config, and group settings into the programs that
can each train several settings at once (a vmap over ``TrainState.hparams`` and seeds).

    axes = [parse_axis("optim.lr=1e-4,3e-4,1e-3"), parse_axis("model.latent_dim=8,16")]
    settings = expand(config, axes)                    # 6 dicts {field: value}
    groups = group(config, settings, dynamic_fields("loss.beta"))
    print(describe(groups))   # 6 settings in 2 compiled programs (model.latent_dim takes
                              # 2 values; optim.lr varies inside each)
    for g in groups: ... g.config, g.indices, g.dynamic ...
    names = setting_names(settings)              # ["000_optim.lr=0.0001_model...", ...]

Spellings of one ``--sweep`` argument (FIELD is a dotted config field, e.g. optim.lr):

  FIELD=V1,V2,...             a grid axis: every value is trained. Values are read as
                              ``--config.FIELD=V`` would read them for the field's type:
                              ints, floats (1e-4), bools (true/false), strings, tuples
                              ('(32,),(64,64)'); commas inside brackets or quotes do not
                              split values.
  FIELD=uniform(A,B)          a random axis, A <= value < B (a float field)
  FIELD=loguniform(A,B)       a random axis, log(value) uniform (0 < A < B; a float field)
  FIELD=choice(V1,V2,...)     a random axis, one of the values with equal probability

Expansion (`expand`): the grid axes form a cartesian product, in the order the axes were
given, the last axis varying fastest (as nested for-loops, or itertools.product). With
random axes, ``samples`` draws are made from ``numpy.random.default_rng(sweep_seed)``; a
draw samples every random axis (in the order given), and every draw is combined with every
grid point: ``samples x grid`` settings, draw-major (setting k is draw k // G at grid
point k % G). So ``--sweep=optim.lr=loguniform(1e-5,1e-3) --sweep=seed=0,1
--sweep_samples=16`` trains 16 learning rates, each with both seeds; random search over
a discrete field is spelled ``choice(...)``. The same sweep_seed gives the same settings.

Every problem is a `ConfigError` with one line naming the ``--sweep`` argument (or the
field) and what would be accepted.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import itertools
import math
import re

import numpy as np

from genjax.train.config import ConfigError

MAX_SETTINGS = 10_000

# Fields every experiment built on `make_train_step` / `genjax.train.train` varies inside
# one compiled program: the seed (initial parameters, keys and data order) and the
# optimiser's hyper-parameters in TrainState.hparams. Experiments add their own
# (`dynamic_fields`); every other swept field is static (it changes shapes or the trace).
DEFAULT_DYNAMIC = frozenset({"seed", "optim.lr", "optim.weight_decay", "optim.grad_clip"})

SPELLINGS = ("FIELD=V1,V2,..., FIELD=uniform(A,B), FIELD=loguniform(A,B) or "
             "FIELD=choice(V1,V2,...)")

_FIELD_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CALL_RE = re.compile(r"([A-Za-z_]\w*)\((.*)\)$", re.S)
_DISTRIBUTIONS = ("uniform", "loguniform", "choice")
_NAME_MAX = 150                  # characters of a setting's folder name (before the index)


@dataclasses.dataclass(frozen=True)
class Axis:
    """One ``--sweep`` argument. kind: "grid" | "choice" (``raw`` holds the value texts,
    typed later against the config's field) or "uniform" | "loguniform" (``low``,
    ``high``). ``text`` is the argument as given, for messages."""
    field: str
    kind: str
    raw: tuple = ()
    low: float = math.nan
    high: float = math.nan
    text: str = ""

    @property
    def is_random(self) -> bool:
        return self.kind != "grid"


@dataclasses.dataclass(frozen=True)
class Group:
    """Settings that share every static swept field, so one compiled program trains
    them all. ``static``: {field: value} of the static swept fields (empty when every
    swept field is dynamic); ``config``: the locked config with ``static`` applied (what
    the program is built from); ``indices``: the settings' positions in the full sweep,
    ascending; ``dynamic``: each setting's dynamic fields {field: value}, in the order
    of ``indices``; ``reason``: e.g. "model.latent_dim=8"."""
    static: dict
    config: object
    indices: tuple
    dynamic: tuple
    reason: str

    def __len__(self) -> int:
        return len(self.indices)


def dynamic_fields(*extra: str, optim_sections=("optim",)) -> frozenset:
    """The fields an experiment varies inside one program: the seed, ``lr``,
    ``weight_decay`` and ``grad_clip`` of each optimiser section, and ``extra`` (the experiment's own
    entries of TrainState.hparams, e.g. "loss.beta"). E.g. a GAN:
    ``dynamic_fields("loss.gp_weight", optim_sections=("optim", "optim_d"))``."""
    fields = {"seed"} | set(extra)
    for s in optim_sections:
        fields |= {f"{s}.lr", f"{s}.weight_decay", f"{s}.grad_clip"}
    return frozenset(fields)


# ---------------------------------------------------------------------------- parsing


def _malformed(text: str, why: str) -> ConfigError:
    return ConfigError(f"--sweep={text} is malformed: {why}; "
                       f"accepted spellings: {SPELLINGS}")


def _split_values(body: str, text: str) -> list:
    """Splits on commas outside brackets and quotes; each value stripped, none empty."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise _malformed(text, f"unbalanced {ch!r}")
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    if quote or depth:
        raise _malformed(text, "an unclosed quote or bracket")
    parts.append(body[start:])
    parts = [p.strip() for p in parts]
    if any(not p for p in parts):
        raise _malformed(text, "an empty value (two commas in a row, or a trailing comma)")
    return parts


def _bound(value: str, text: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise _malformed(text, f"the bound {value!r} is not a finite number")
    return x


def parse_axis(text: str) -> Axis:
    """Parses one ``--sweep`` argument (the text after ``--sweep=``); see the module
    docstring for the spellings. Values are typed later, by `expand`, against the field."""
    field, sep, body = text.partition("=")
    field, body = field.strip(), body.strip()
    if not sep or not field:
        raise _malformed(text, "expected FIELD=...")
    if field.startswith("--"):
        raise _malformed(text, f"write the field without {field.split('.')[0] + '.'!r}"
                         if field.startswith("--config.") else "the field starts with '--'")
    if not _FIELD_RE.match(field):
        raise _malformed(text, f"{field!r} is not a dotted config field like optim.lr")
    if not body:
        raise _malformed(text, "no values after '='")
    call = _CALL_RE.match(body)
    if call:
        name, inner = call.group(1), call.group(2)
        if name not in _DISTRIBUTIONS:
            raise _malformed(text, f"unknown distribution {name!r}")
        args = _split_values(inner, text) if inner.strip() else []
        if name == "choice":
            if not args:
                raise _malformed(text, "choice() needs at least one value")
            return Axis(field, "choice", raw=tuple(args), text=text)
        if len(args) != 2:
            raise _malformed(text, f"{name}() takes two bounds A,B, got {len(args)}")
        low, high = (_bound(a, text) for a in args)
        if not low < high:
            raise _malformed(text, f"{name}(A,B) needs A < B")
        if name == "loguniform" and low <= 0:
            raise _malformed(text, "loguniform(A,B) needs 0 < A")
        return Axis(field, name, low=low, high=high, text=text)
    return Axis(field, "grid", raw=tuple(_split_values(body, text)), text=text)


# ------------------------------------------------------------------- fields and types


def _leaf_fields(config, prefix="") -> list:
    out = []
    for key in config.keys():
        value = config[key]
        if hasattr(value, "keys") and not isinstance(value, dict):
            out.extend(_leaf_fields(value, f"{prefix}{key}."))
        else:
            out.append(prefix + key)
    return out


def _lookup(config, field: str, arg: str):
    """The field's current value; a ConfigError names ``arg`` if it is no field."""
    node = config
    for part in field.split("."):
        if not hasattr(node, "keys") or isinstance(node, dict) or part not in node:
            known = _leaf_fields(config)
            close = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
            if not close:           # e.g. a field name under the wrong section
                last = field.rsplit(".", 1)[-1]
                close = [f for f in known if f.rsplit(".", 1)[-1] == last][:1]
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise ConfigError(f"{arg}: unknown config field {field!r}{hint}; the config "
                              "file lists the fields")
        node = node[part]
    if hasattr(node, "keys") and not isinstance(node, dict):
        example = next(iter(node.keys()), "FIELD")
        raise ConfigError(f"{arg}: {field!r} is a config section, not a field; sweep one "
                          f"of its fields, e.g. {field}.{example}")
    return node


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _coerce(raw: str, current, field: str, arg: str):
    """``raw`` read for the type of the field's ``current`` value, as --config.FIELD
    would read it; a value of another type is a ConfigError naming ``arg``."""
    def bad(expected):
        return ConfigError(f"{arg}: {raw!r} does not fit {field} (currently "
                           f"{current!r}): expected {expected}")

    if isinstance(current, bool):
        low = raw.lower()
        if low in ("true", "false"):
            return low == "true"
        raise bad("true or false")
    if _is_int(current):
        value = _literal(raw)
        if not _is_int(value):
            raise bad("an integer")
        return value
    if isinstance(current, float):
        value = _literal(raw)
        if raw.strip().lower() in ("inf", "-inf", "nan", "+inf"):
            value = float(raw)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value)):
            raise bad("a finite number, e.g. 1e-4")
        return float(value)
    if isinstance(current, str):
        value = _literal(raw)
        return value if isinstance(value, str) else raw
    if isinstance(current, (tuple, list)):
        value = _literal(raw)
        if not isinstance(value, (tuple, list)):
            raise bad("a tuple in brackets, e.g. (32,) or (64, 64)")
        return tuple(value)
    value = _literal(raw)           # None or another type: a Python literal, else a string
    if current is not None and not isinstance(value, type(current)):
        raise bad(f"a {type(current).__name__}")
    return value


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _typed_axis(config, axis: Axis):
    """(current value, typed values) of a grid or choice axis; bounds checked otherwise."""
    arg = f"--sweep={axis.text or axis.field}"
    current = _lookup(config, axis.field, arg)
    if axis.kind in ("uniform", "loguniform"):
        if not isinstance(current, float):
            raise ConfigError(f"{arg}: {axis.kind}() draws floats, but {axis.field} is "
                              f"{current!r}; list its values (FIELD=V1,V2) or use choice()")
        return current, ()
    values = tuple(_coerce(r, current, axis.field, arg) for r in axis.raw)
    seen = set()
    for r, v in zip(axis.raw, values):
        if _hashable(v) in seen:
            raise ConfigError(f"{arg}: the value {r!r} is given twice; "
                              "list each value once")
        seen.add(_hashable(v))
    return current, values


# ------------------------------------------------------------------------- expansion


def expand(config, axes, *, samples: int = 0, sweep_seed: int = 0) -> list:
    """The sweep's settings, each a dict {field: value} with the axes' fields in the order
    given, values typed for the fields. Order: see the module docstring (grid: last axis
    fastest; with random axes, ``samples`` draws x grid, draw-major). ConfigError for an
    unknown field, a value that does not fit its field, a field swept twice, an empty
    sweep, random axes without ``samples`` (or ``samples`` without random axes), and more
    than MAX_SETTINGS settings."""
    axes = list(axes)
    if not axes:
        raise ConfigError("the sweep is empty: pass at least one --sweep=" + SPELLINGS)
    if not _is_int(samples) or samples < 0:
        raise ConfigError(f"--sweep_samples={samples!r} is invalid: "
                          "expected an integer >= 0")
    seen = {}
    for a in axes:
        if a.field in seen:
            raise ConfigError(f"--sweep={a.text or a.field}: {a.field} is already swept by "
                              f"--sweep={seen[a.field]}; sweep each field once")
        seen[a.field] = a.text or a.field
    typed = [_typed_axis(config, a) for a in axes]
    grid = [(a, vals) for a, (_, vals) in zip(axes, typed) if not a.is_random]
    random_axes = [(a, vals) for a, (_, vals) in zip(axes, typed) if a.is_random]
    if random_axes and samples == 0:
        names = ", ".join(f"--sweep={a.text or a.field}" for a, _ in random_axes)
        raise ConfigError(f"{names} draws random values: pass --sweep_samples=N (N > 0 "
                          "draws), or list the values (FIELD=V1,V2,...)")
    if samples and not random_axes:
        raise ConfigError(f"--sweep_samples={samples} needs a random axis (uniform(A,B), "
                          "loguniform(A,B) or choice(...)); a grid (FIELD=V1,V2,...) "
                          "already lists every setting, so drop --sweep_samples")
    sizes = [len(vals) for _, vals in grid]
    total = math.prod(sizes) * (samples if random_axes else 1)
    if total > MAX_SETTINGS:
        shape = " x ".join(map(str, sizes + ([samples] if random_axes else [])))
        raise ConfigError(f"the sweep has {total} settings ({shape}), more than the "
                          f"{MAX_SETTINGS} allowed; sweep fewer values or samples")
    points = list(itertools.product(*[vals for _, vals in grid]))
    rng = np.random.default_rng(sweep_seed)
    draws = []
    for _ in range(samples if random_axes else 1):
        draw = {}
        for a, vals in random_axes:
            if a.kind == "uniform":
                draw[a.field] = float(rng.uniform(a.low, a.high))
            elif a.kind == "loguniform":
                draw[a.field] = float(np.exp(rng.uniform(np.log(a.low), np.log(a.high))))
            else:
                draw[a.field] = vals[int(rng.integers(len(vals)))]
        draws.append(draw)
    order = [a.field for a in axes]
    settings = []
    for draw in draws:
        for point in points:
            values = dict(draw, **dict(zip([a.field for a, _ in grid], point)))
            settings.append({f: values[f] for f in order})
    return settings


def apply(config, setting: dict):
    """A copy of ``config`` with the setting's fields set (locked if ``config`` was); the
    original is unchanged. The result can go through the experiment's validate()."""
    new = copy.deepcopy(config)
    for field, value in setting.items():
        arg = f"the sweep's {field}={value!r}"
        _lookup(new, field, arg)
        parent, _, last = field.rpartition(".")
        node = new
        for part in filter(None, parent.split(".")):
            node = node[part]
        try:
            node[last] = tuple(value) if isinstance(value, list) else value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{arg} does not fit the field: {e}") from None
    return new


# --------------------------------------------------------------------------- grouping


def _short(value) -> str:
    if isinstance(value, bool) or _is_int(value):
        return str(value)
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (tuple, list)):
        return "x".join(_short(v) for v in value) if value else "empty"
    return str(value)


def _assign(field, value) -> str:
    return f"{field}={_short(value)}"


def group(config, settings, dynamic) -> list:
    """Groups ``settings`` (from `expand`) by the values of their static swept fields
    (those not in ``dynamic``), in the order of each group's first setting. Each Group's
    config has its static values applied; its settings keep their global indices."""
    settings = list(settings)
    if not settings:
        raise ConfigError("the sweep is empty: no settings to group")
    fields = list(settings[0])
    static_fields = [f for f in fields if f not in dynamic]
    buckets: dict = {}
    for i, s in enumerate(settings):
        if list(s) != fields:
            raise ConfigError(f"setting {i} sweeps {sorted(s)}, not {sorted(fields)} like "
                              "setting 0; every setting sets the same fields")
        key = tuple(_hashable(s[f]) for f in static_fields)
        buckets.setdefault(key, []).append(i)
    groups = []
    for key, indices in buckets.items():
        static = dict(zip(static_fields, key))
        reason = (", ".join(_assign(f, v) for f, v in static.items())
                  or "every swept field varies inside one program")
        groups.append(Group(static=static, config=apply(config, static),
                            indices=tuple(indices),
                            dynamic=tuple({f: settings[i][f] for f in fields
                                           if f not in static} for i in indices),
                            reason=reason))
    return groups


def describe(groups) -> str:
    """One console line, e.g. "16 settings in 2 compiled programs (model.latent_dim
    takes 2 values; optim.lr, loss.beta vary inside each)"."""
    groups = list(groups)
    n = sum(len(g) for g in groups)
    head = (f"{n} setting{'s' * (n != 1)} in {len(groups)} compiled "
            f"program{'s' * (len(groups) != 1)}")
    static_fields = list(groups[0].static) if groups else []
    dynamic = list(groups[0].dynamic[0]) if groups and groups[0].dynamic else []
    parts = []
    if static_fields:
        parts.append(", ".join(
            f"{f} takes {len({_hashable(g.static[f]) for g in groups})} values"
            for f in static_fields))
    if dynamic:
        inside = "each" if len(groups) > 1 else "it"
        parts.append(f"{', '.join(dynamic)} var{'y' if len(dynamic) > 1 else 'ies'} "
                     f"inside {inside}")
    elif n > len(groups):
        parts.append("settings with equal values share a program")
    else:
        parts.append("one setting in each")
    return f"{head} ({'; '.join(parts)})"


# ----------------------------------------------------------------------------- names


def setting_name(index: int, setting: dict, *, width: int = 3) -> str:
    """A short, filesystem-safe folder (and TensorBoard run) name for a setting, e.g.
    "003_optim.lr=0.0003_loss.beta=2": the zero-padded index (which keeps names unique
    however values round: floats are written with 4 significant digits), then the
    fields. Only letters, digits and ``._=,+-`` appear; long names are cut."""
    body = "_".join(_assign(f, v) for f, v in setting.items())
    body = re.sub(r"[^A-Za-z0-9._=,+-]", "-", body)[:_NAME_MAX]
    return f"{index:0{width}d}_{body}" if body else f"{index:0{width}d}"


def setting_names(settings) -> list:
    """`setting_name` for every setting of a sweep, the index padded to the same width
    (at least 3 digits) so the names sort in sweep order."""
    settings = list(settings)
    width = max(3, len(str(max(len(settings) - 1, 0))))
    return [setting_name(i, s, width=width) for i, s in enumerate(settings)]
