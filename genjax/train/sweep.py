"""Running a sweep of an experiment: the ``--sweep`` flags to results.

    python -m experiments.vae --config=configs/vae.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=loss.beta=0.5,1 --sweep=seed=0,1

`run_sweep` is generic; an experiment hands it a `SweepParts` that says what differs per
family (which fields vary inside one compiled program, how to validate a config, and how
to load the data and build a state, a step and an evaluation for one program). The flow:

1. parse and expand the axes (`genjax.train.sweep_spec`), apply each setting to the config
   and validate every setting's config: a problem is one line naming the setting and the
   field, before anything loads or compiles;
2. group the settings into compiled programs (settings that differ only in dynamic fields
   share one; ``seed`` is static when the data depend on it, `data_depends_on_seed`) and
   print `sweep_spec.describe`'s line;
3. prepare every program (load and check the data, write config.json, check resume) in
   its folder workdir/programs/<k>[_static fields]/, still before compiling;
4. per program: build each setting's state from its own config (so ``seed`` drives the
   initial parameters too), stack them and train them together (`train_sweep`,
   checkpoints, metrics.jsonl and per-setting TensorBoard runs in the program's folder;
   rerunning resumes). With ``chunk`` (--sweep_chunk=K, or `auto_chunk` when the
   device's memory would not hold them all) K settings at a time, one chunk after
   another, each in programs/<k>/chunk_<j>/;
5. evaluate the live settings (together, vmapped, when the program gives
   ``evaluate_stacked``), write workdir/<setting name>/results.json (the setting's
   config, its metrics, its divergence if any), workdir/sweep.json, workdir/sweep.csv, a
   console table sorted by the main metric and workdir/sweep.png.

A setting that diverges is frozen and reported; its metrics are NaN. When every setting
of the sweep diverged, `NonFiniteError` is raised (the cli exits 1) after the tables are
written. With several processes only process 0 writes files
(`genjax.train.distributed.is_main_process`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.train import sweep_spec
from genjax.train.config import ConfigError
from genjax.train.loop import NonFiniteError
from genjax.train.results import write_results
from genjax.train.resume import ensure_workdir
from genjax.train.distributed import barrier, is_main_process
from genjax.train.sweep_loop import make_sweep_chunk, train_sweep
from genjax.train.writers import log


@dataclasses.dataclass(frozen=True)
class Program:
    """What one compiled program of a sweep needs, from `SweepParts.prepare`.

    init(setting_config) -> TrainState of that setting (its seed, hyper-parameters);
    step_fn(state, batch, key) -> (state, metrics), pure (it is vmapped);
    train_data: the pytree of arrays [N, ...] every setting trains on;
    evaluate(setting_config, params) -> {metric name: float}, e.g. "test/elbo";
    evaluate_stacked(setting_configs, params [S, ...]) -> [S dicts as evaluate gives]:
        optional, the S settings evaluated at once (vmapped), e.g. with
        `genjax.eval.evaluate_dataset_stacked`; without it each setting is evaluated in
        turn by ``evaluate`` (one compiled program for all of them)."""
    init: Callable
    step_fn: Callable
    train_data: Any
    evaluate: Callable
    evaluate_stacked: Callable | None = None


@dataclasses.dataclass(frozen=True)
class SweepParts:
    """What an experiment supplies to `run_sweep`.

    dynamic: fields that vary inside one program (`sweep_spec.dynamic_fields(...)`);
    validate(config): raises ConfigError for a bad config (no data, no compiling);
    prepare(config, workdir) -> Program: loads and checks the data for ``config`` (a
        program's config: its static fields applied), writes config.json in ``workdir``;
    main_metric: (metric name, "max" | "min"), what the table is sorted by."""
    dynamic: frozenset
    validate: Callable
    prepare: Callable
    main_metric: tuple = ("test/iw_log_likelihood", "max")


# Settings evaluated together by Program.evaluate_stacked (bounds evaluation memory).
EVAL_GROUP = 64


def default_workdir(experiment: str, config) -> str:
    return os.path.join("runs", experiment, f"sweep_{config.get('preset', 'default')}")


def data_depends_on_seed(config) -> bool:
    """Whether ``genjax.data.load(config.data.name, seed=config.seed)`` gives other data
    for another seed: the 2-D toy densities (drawn with the seed) and user data (``npz:``
    / ``folder:``, split with the seed when it brings no test split). Embedded and TFDS
    image datasets have fixed splits."""
    from genjax.data import USER_PREFIXES
    from genjax.data.embedded import _TOYS

    name = config.get("data", {}).get("name", "") if hasattr(config, "get") else ""
    return isinstance(name, str) and (name in _TOYS or name.startswith(USER_PREFIXES))


def _stack(states):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def _plain(value):
    """A JSON / CSV friendly value: tuples as lists."""
    return list(value) if isinstance(value, tuple) else value


def _read_jsonl(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _check_same_sweep(workdir: str, record: list) -> None:
    """A program folder that holds a checkpoint must be rerun with the settings it was
    started with (settings.json; the checkpoint's settings axis depends on them)."""
    path = os.path.join(workdir, "settings.json")
    if os.path.exists(path) and os.path.isdir(os.path.join(workdir, "checkpoints")):
        with open(path) as f:
            old = json.load(f)
        if old != record:
            raise ConfigError(f"{workdir} holds a sweep of other settings ({len(old)} "
                              f"settings, the first {old[0]}); rerun the same --sweep "
                              "(and --sweep_chunk) flags to resume it, or pass a new "
                              "--workdir")
        return
    if not is_main_process():
        return
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=1)


def auto_chunk(prog: Program, config, train_cfg, num_settings: int) -> int:
    """How many settings of a program train at once when --sweep_chunk is not given: all
    of them, unless the device reports a memory limit (GPUs and TPUs do, XLA:CPU does
    not) that the compiled sweep would exceed. Then the compiled chunk's memory for one
    and for two settings (`Compiled.memory_analysis`, two extra compilations) gives the
    cost per setting, and as many settings as fit in 90% of the limit train at once."""
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit or num_settings <= 2:
        return num_settings
    num_examples = len(jax.tree_util.tree_leaves(prog.train_data)[0])
    chunk_fn = make_sweep_chunk(prog.step_fn, num_examples=num_examples,
                                batch_size=int(train_cfg.batch_size))
    one = prog.init(config)
    needs = []
    for s in (1, 2):
        states = jax.eval_shape(lambda: _stack([one] * s))
        mem = chunk_fn.lower(states, jax.ShapeDtypeStruct((s,), jnp.bool_),
                             prog.train_data, jax.eval_shape(
                                 lambda: jax.vmap(jax.random.key)(jnp.arange(s))),
                             int(train_cfg.steps_per_dispatch)).compile().memory_analysis()
        if mem is None:
            return num_settings
        needs.append(mem.argument_size_in_bytes + mem.output_size_in_bytes
                     + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
    per = max(needs[1] - needs[0], 1)
    # On several devices train_sweep splits the settings over them: each holds about
    # S / devices settings.
    fit = int((0.9 * limit - (needs[0] - per)) // per) * len(jax.devices())
    if fit >= num_settings:
        return num_settings
    fit = max(fit, 1)
    log(f"[sweep] {num_settings} settings need about {_gib(needs[0] + per * (num_settings - 1))}"
        f" of the device's {_gib(limit)}: {fit} at a time (set --sweep_chunk to choose)")
    return fit


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def run_sweep(config, workdir: str, axes_texts, *, parts: SweepParts, samples: int = 0,
              sweep_seed: int = 0, chunk: int = 0) -> dict:
    """Runs the sweep described by ``axes_texts`` (the ``--sweep`` arguments) of the
    locked ``config`` in ``workdir`` (see the module docstring). Returns the sweep record
    written to sweep.json: {"settings": [per setting {"name", "setting", "program",
    "metrics", "diverged"}], "best", "main_metric", "description", ...}.

    chunk: train at most this many settings of a program at once (chunks run one after
    another, each in programs/<program>/chunk_<j>/); 0: `auto_chunk` decides."""
    if int(chunk) < 0:
        raise ConfigError(f"--sweep_chunk={chunk} must be >= 0 (0 = as many settings as "
                          "fit in the device's memory)")
    axes = [sweep_spec.parse_axis(t) for t in axes_texts]
    settings = sweep_spec.expand(config, axes, samples=samples, sweep_seed=sweep_seed)
    names = sweep_spec.setting_names(settings)
    configs = []
    for name, setting in zip(names, settings):
        c = sweep_spec.apply(config, setting)
        try:
            parts.validate(c)
        except ConfigError as e:
            raise ConfigError(f"sweep setting {name}: {e}") from None
        configs.append(c)
    dynamic = parts.dynamic
    if "seed" in dynamic and "seed" in settings[0] and data_depends_on_seed(config):
        # One program trains on one dataset; here each seed has its own, so each seed
        # gets its own program (the settings still equal their single runs).
        dynamic = dynamic - {"seed"}
        log(f"[sweep] {config.data.name}'s data depend on the seed: one program per seed")
    groups = sweep_spec.group(config, settings, dynamic)
    description = sweep_spec.describe(groups)
    log(f"[sweep] {description}")

    # WorkdirError (one line) for a file or no permission; process 0 creates the folders
    ensure_workdir(workdir, create=is_main_process())
    folders = [os.path.join(workdir, "programs", sweep_spec.setting_name(k, g.static))
               for k, g in enumerate(groups)]
    programs = []
    for g, folder in zip(groups, folders):        # every check before the first compile
        _check_same_sweep(folder, [{f: _plain(v) for f, v in settings[i].items()}
                                   for i in g.indices])
        programs.append(parts.prepare(g.config, folder))
    barrier("genjax-sweep-prepared")      # process 0 has written settings.json / config
    metric_name, mode = parts.main_metric
    rows = [None] * len(settings)
    failed, runs = [], []
    for k, (g, folder, prog) in enumerate(zip(groups, folders, programs)):
        if len(groups) > 1:
            log(f"[sweep] program {k + 1}/{len(groups)}: {g.reason} ({len(g)} settings)")
        size = chunk or auto_chunk(prog, configs[g.indices[0]], g.config.train, len(g))
        pieces = [g.indices[a:a + size] for a in range(0, len(g), size)]
        if len(pieces) > 1:
            log(f"[sweep] {len(g)} settings in {len(pieces)} chunks of at most {size} "
                "(--sweep_chunk), trained one after another")
        for j, indices in enumerate(pieces):
            run_dir = folder if len(pieces) == 1 else os.path.join(folder, f"chunk_{j}")
            if len(pieces) > 1:
                _check_same_sweep(run_dir, [{f: _plain(v) for f, v in settings[i].items()}
                                            for i in indices])
                barrier(f"genjax-sweep-{run_dir}")
                log(f"[sweep] chunk {j + 1}/{len(pieces)}: settings "
                    f"{', '.join(names[i] for i in indices)}")
            runs.append((k, run_dir, indices))
            ok = _train_and_evaluate(prog, g.config, run_dir, indices, configs, settings,
                                     names, rows, k, metric_name)
            if not ok:
                failed.append(run_dir)
    every_metric = {m for r in rows for m in r["metrics"]}
    main_process = is_main_process()
    for r, setting_config in zip(rows, configs):   # diverged: NaN for every metric
        r["metrics"] = {m: r["metrics"].get(m, math.nan) for m in sorted(every_metric)}
        if main_process:
            setting_dir = os.path.join(workdir, r["name"])
            os.makedirs(setting_dir, exist_ok=True)
            write_results(setting_dir, metrics=r["metrics"], config=setting_config,
                          extra={"sweep": {"workdir": os.path.abspath(workdir),
                                           "setting": r["setting"], "program": r["program"],
                                           "program_dir": os.path.abspath(r.pop("run_dir"))},
                                 "diverged": r["diverged"]})
        else:
            r.pop("run_dir")

    def sort_key(row):
        v = row["metrics"].get(metric_name, math.nan)
        if not math.isfinite(v):
            return (1, 0.0)
        return (0, -v if mode == "max" else v)

    ranked = sorted(rows, key=sort_key)
    record = {"description": description, "axes": list(axes_texts), "samples": samples,
              "sweep_seed": sweep_seed, "main_metric": {"name": metric_name, "mode": mode},
              "best": ranked[0]["name"] if sort_key(ranked[0])[0] == 0 else None,
              "programs": [os.path.relpath(f, workdir) for f in folders],
              "settings": rows}
    fields = list(settings[0])
    metric_names = sorted({m for r in rows for m in r["metrics"]},
                          key=lambda m: (m != metric_name, not m.startswith("test/"), m))
    if main_process:
        log(table(ranked, fields, metric_names[:4]))
        with open(os.path.join(workdir, "sweep.json"), "w") as f:
            json.dump(record, f, indent=2)
        _write_csv(os.path.join(workdir, "sweep.csv"), rows, fields, metric_names)
        _figure(workdir, rows, fields, metric_name, runs, names)
        log(f"wrote {os.path.join(workdir, 'sweep.json')} and sweep.csv; best setting: "
            f"{record['best']}")
    if len(failed) == len(runs):
        raise NonFiniteError(
            f"every setting of the sweep diverged (the table above; sweep.json in "
            f"{workdir}); their last finite states are checkpointed in "
            + ", ".join(failed) + ". Lower the learning rates (or set optim.grad_clip) and "
            "start a new --workdir")
    return record


def _train_and_evaluate(prog: Program, config, run_dir: str, indices, configs, settings,
                        names, rows, program: int, metric_name: str) -> bool:
    """Trains the settings ``indices`` (global indices) of one program together in
    ``run_dir``, evaluates the live ones and fills their ``rows``. Returns False when
    every one of them diverged."""
    states = _stack([prog.init(configs[i]) for i in indices])
    seeds = np.array([int(configs[i].seed) for i in indices], np.int32)
    try:
        states, summary = train_sweep(states, prog.step_fn, prog.train_data,
                                      cfg=config.train, seeds=seeds, workdir=run_dir,
                                      setting_names=[names[i] for i in indices])
    except NonFiniteError:
        states, summary = None, None
    history = _read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    diverged_rows = {r["setting"]: r for r in history if "diverged" in r}
    last_train = {}
    for r in history:
        if "diverged" not in r:
            last_train[r["setting"]] = {k: v for k, v in r.items() if k.startswith("train/")}
    diverged = []
    for j in range(len(indices)):
        d = summary["settings"][j]["diverged"] if summary else None
        if summary is None and j in diverged_rows:
            r = diverged_rows[j]
            d = {"step": r["step"], "metric": r["diverged"], "value": float(r["value"])}
        elif summary is None:
            d = {"step": None, "metric": "unknown", "value": math.nan}
        diverged.append(d)
    live = [j for j, d in enumerate(diverged) if d is None]
    evaluated = {}
    if live:
        take = np.asarray(live)
        params = jax.tree_util.tree_map(lambda a: a[take], states.params)
        if prog.evaluate_stacked is not None:     # at most EVAL_GROUP settings at once
            results = []
            for a in range(0, len(live), EVAL_GROUP):
                part = jax.tree_util.tree_map(lambda x, a=a: x[a:a + EVAL_GROUP], params)
                results += prog.evaluate_stacked(
                    [configs[indices[j]] for j in live[a:a + EVAL_GROUP]], part)
        else:
            results = [prog.evaluate(configs[indices[j]],
                                     jax.tree_util.tree_map(lambda a, n=n: a[n], params))
                       for n in range(len(live))]
        evaluated = dict(zip(live, results))
    for j, i in enumerate(indices):
        metrics = dict(last_train.get(j, {}))
        if diverged[j] is None:
            metrics.update({m: float(v) for m, v in evaluated[j].items()})
        else:
            metrics = {m: math.nan for m in metrics}
            metrics.setdefault(metric_name, math.nan)
        rows[i] = {"name": names[i], "setting": {f: _plain(v) for f, v in
                                                 settings[i].items()},
                   "program": program, "metrics": metrics, "diverged": diverged[j],
                   "run_dir": run_dir}
    return bool(live)


def _figure(workdir, rows, fields, metric_name, runs, names) -> None:
    """sweep.png: the main metric against each swept field and every learning curve (the
    training loss, or the first training metric whose name ends in "loss")."""
    try:
        from genjax.viz import sweep as viz_sweep
    except ImportError as e:        # matplotlib missing: the numbers are written already
        log(f"no sweep.png: {e}")
        return
    curves, loss_key = {}, None
    for _, run_dir, indices in runs:
        for r in _read_jsonl(os.path.join(run_dir, "metrics.jsonl")):
            if loss_key is None:
                keys = sorted(k for k in r if k.startswith("train/") and k.endswith("loss"))
                loss_key = "train/loss" if "train/loss" in r else (keys[0] if keys else None)
            if loss_key in r:
                name = names[indices[r["setting"]]]
                curves.setdefault(name, ([], []))
                curves[name][0].append(r["step"])
                curves[name][1].append(r[loss_key])
    path = viz_sweep.sweep_figure(os.path.join(workdir, "sweep.png"), rows, fields,
                                  metric_name, curves=curves,
                                  curve_metric=loss_key or "train/loss")
    log(f"wrote {path}")


def _write_csv(path: str, rows: list, fields: list, metric_names: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", *fields, *metric_names, "diverged_step", "diverged_metric"])
        for r in rows:
            d = r["diverged"] or {}
            w.writerow([r["name"], *[r["setting"][f] for f in fields],
                        *[r["metrics"].get(m, "") for m in metric_names],
                        d.get("step", ""), d.get("metric", "")])


def table(rows: list, fields: list, metric_names: list) -> str:
    """The sweep's console table, one line per setting in the order given."""
    def cell(v):
        if isinstance(v, float):
            return format(v, ".4g")
        if isinstance(v, list):
            return "x".join(map(str, v))
        return str(v)

    head = ["#", *fields, *metric_names, "diverged"]
    body = [[r["name"].split("_", 1)[0], *[cell(r["setting"][f]) for f in fields],
             *[cell(r["metrics"].get(m, math.nan)) for m in metric_names],
             "" if r["diverged"] is None else
             f"{r['diverged']['metric']} @ {r['diverged']['step']}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(str(x).rjust(w) for x, w in zip(line, widths))
             for line in [head, *body]]
    return "\n".join(lines)


def entry_point(parts: SweepParts, name: str = "") -> Callable:
    """The ``--sweep`` entry point of an experiment whose sweep is `run_sweep` with its
    ``parts`` and nothing else: sweep(config, workdir, axes, *, samples=0, sweep_seed=0,
    **options) (``options``, e.g. the cli's chunk, go to run_sweep as they are)."""

    def sweep(config, workdir: str, axes, *, samples: int = 0, sweep_seed: int = 0,
              **options) -> dict:
        return run_sweep(config, workdir, axes, parts=parts, samples=samples,
                         sweep_seed=sweep_seed, **options)

    sweep.__doc__ = (f"The ``--sweep`` entry point of {name or 'the experiment'}: "
                     "`genjax.train.sweep.run_sweep` with its SWEEP parts.")
    return sweep
