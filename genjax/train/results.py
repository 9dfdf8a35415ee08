"""results.json: final metrics, the config and the package versions of a run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time

import jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
            "ml-collections", "tensorflow-datasets", "grain", "chex")


def versions(packages=PACKAGES) -> dict:
    """{"python": ..., package: version or None, "genjax": ...}."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    import genjax
    out["genjax"] = genjax.__version__
    return out


def write_results(workdir: str, *, metrics: dict, config, extra: dict | None = None) -> str:
    """Writes workdir/results.json and returns its path. ``config`` is a ConfigDict.
    With several processes only process 0 writes (the others return the path)."""
    from genjax.train.distributed import is_main_process

    path = os.path.join(workdir, "results.json")
    if not is_main_process():
        return path
    record = {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "config": json.loads(config.to_json_best_effort()),
        "versions": versions(),
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
    return path
