"""Config sections shared by every experiment (optimiser, loop, data). Each family's config
file starts from these and adds its own model/loss/eval sections."""

from __future__ import annotations

import ml_collections


def optim(**overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(dict(
        name="adam", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, momentum=0.0, weight_decay=0.0,
        grad_clip=0.0, schedule="constant", warmup_steps=0))
    c.update(overrides)
    return c


def train(**overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(dict(
        num_steps=10_000, batch_size=128, steps_per_dispatch=100, checkpoint_every=1000,
        keep_checkpoints=3, eval_every=0, distributed=False,
        # several processes (genjax.train.distributed): process 0's HOST:PORT, how many
        # processes, this one's id 0..N-1 ("" / 0 / 0: one process), and how long to wait
        coordinator_address="", num_processes=0, process_id=0, init_timeout_s=60,
        # XLA compiler options of the compiled programs (genjax.xla): "auto" (on CPUs,
        # convolutions to XLA's own kernels instead of YNNPACK), "none" (XLA's defaults)
        # or "NAME=VALUE;NAME=VALUE"
        xla_options="auto"))
    c.update(overrides)
    return c


def data(**overrides) -> ml_collections.ConfigDict:
    # classes: keep only these labels in both splits (() = all), e.g. (0, 1, 2)
    c = ml_collections.ConfigDict(dict(name="mnist5k", data_dir="",
                                       preprocess="dynamic_binarize", classes=()))
    c.update(overrides)
    return c


def select_preset(arg: str | None, presets: dict, config_file: str) -> str:
    """Returns the preset name for ``arg`` ('' or None: 'default'); unknown names are an
    error that lists the known ones."""
    name = arg or "default"
    if name != "default" and name not in presets:
        raise ValueError(f"unknown preset {name!r} for {config_file}; known presets: "
                         + ", ".join(["default", *presets]))
    return name
