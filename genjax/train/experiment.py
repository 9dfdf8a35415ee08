"""What every experiment does around the loop: validate the config and load the data
before compiling anything, give the test split a fixed preprocessing, write results."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from genjax import data as gdata
from genjax import xla
from genjax.data import transforms
from genjax.train import config as cfglib, distributed, resume
from genjax.train.results import write_results
from genjax.train.writers import log


def prepare(config, workdir: str, *, kinds=("image",),
            allow_config_change: bool | None = None) -> gdata.Dataset:
    """Validates the shared config sections, checks that ``workdir`` can hold the run (a
    folder; when it holds a checkpoint, a config that differs from its config.json only in
    fields safe to change on resume, `genjax.train.resume`), loads and validates the
    dataset, and writes config.json into ``workdir``. Raises ConfigError (or its
    ConfigChangeError / WorkdirError) / DatasetError with one line.

    allow_config_change: continue from the checkpoint whatever changed (None: as the cli's
    --allow_config_change, `resume.allowing_config_change`, says; default no)."""
    cfglib.validate_common(config, jax.device_count())
    xla.configure(config.train.get("xla_options"))
    cfglib.one_of(config, "data.preprocess", transforms.PREPROCESS_MODES)
    resume.ensure_workdir(workdir, create=False)     # created once all is checked
    change = resume.check_config(config, workdir, allow_config_change=allow_config_change)
    ds = gdata.load(config.data.name, data_dir=config.data.data_dir or None, seed=config.seed)
    if ds.kind not in kinds:
        raise gdata.DatasetError(
            f"dataset {config.data.name!r} holds {ds.kind}, but this experiment needs "
            f"{' or '.join(kinds)}; pick e.g. " + ", ".join(
                n for n in gdata.EMBEDDED if gdata.load(n).kind in kinds))
    if config.data.get("classes"):
        ds = select_classes(ds, tuple(config.data.classes))
    cfglib.validate_batch_vs_data(config, len(ds.train))
    # Every process has read config.json (check_config) before process 0 replaces it.
    distributed.barrier("genjax.experiment.prepare")
    resume.record_config(config, workdir, change)
    log(f"{config.data.name}: {len(ds.train)} train / {len(ds.test)} test examples of shape "
        f"{ds.example_shape}; workdir {os.path.abspath(workdir)}; devices {jax.devices()}")
    return ds


def select_classes(ds: gdata.Dataset, classes: tuple) -> gdata.Dataset:
    """The dataset restricted to examples whose label is in ``classes`` (both splits)."""
    if ds.train_labels is None:
        raise gdata.DatasetError(f"data.classes={classes} needs labels, but {ds.name!r} has "
                                 "none; set --config.data.classes='()'")
    bad = [c for c in classes if not 0 <= int(c) < ds.num_classes]
    if bad:
        raise gdata.DatasetError(f"data.classes: {bad} are not labels of {ds.name!r} "
                                 f"(0..{ds.num_classes - 1})")
    keep_tr, keep_te = np.isin(ds.train_labels, classes), np.isin(ds.test_labels, classes)
    return dataclasses.replace(ds, train=ds.train[keep_tr], test=ds.test[keep_te],
                               train_labels=ds.train_labels[keep_tr],
                               test_labels=ds.test_labels[keep_te])


def training_data(ds: gdata.Dataset, conditional: bool):
    """The loop's ``train_data``: the training examples [N, ...], or for a conditional
    model the pair (examples, labels int32 [N]) so that each batch carries its classes."""
    if not conditional:
        return ds.train
    return ds.train, np.asarray(ds.train_labels, np.int32)


def fixed_view(x: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    """The deterministic float32 version of an evaluation split for a preprocess mode:
    dynamic_binarize -> one fixed Bernoulli draw (the usual stochastically binarised
    test set, fixed by ``seed``); dequantize -> one fixed uniform dequantisation; other
    modes are deterministic already."""
    if mode == "dynamic_binarize":
        return transforms.to_unit(transforms.binarize_static(x, seed=seed)).__array__()
    return np.asarray(transforms.preprocess(jax.random.key(seed), x, mode))


def finish(workdir: str, config, metrics: dict, *, summary: dict | None = None) -> dict:
    """Writes results.json and prints the final metrics; returns the metrics. (With
    several processes every process returns them; process 0 writes and prints.)"""
    path = write_results(workdir, metrics=metrics, config=config,
                         extra={"train_summary": summary or {}})
    if distributed.is_main_process():
        log("final: " + json.dumps({k: round(float(v), 4) for k, v in metrics.items()}))
        log(f"wrote {path}")
    return metrics
