"""The checks every family's sweep test makes of the files a sweep writes."""

import csv
import json
import os

import numpy as np
import pytest


def _field(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def check_sweep_outputs(workdir: str, record: dict) -> None:
    """Per-setting results.json (its config holds the setting's values, its metrics the
    record's), sweep.json (the record's settings and main metric), sweep.csv (one row per
    setting in order, with the swept values), the best setting by the main metric, and
    sweep.png."""
    rows = record["settings"]
    metric, mode = record["main_metric"]["name"], record["main_metric"]["mode"]
    for r in rows:
        with open(os.path.join(workdir, r["name"], "results.json")) as f:
            res = json.load(f)
        for field, value in r["setting"].items():
            stored = _field(res["config"], field)
            assert stored == (list(value) if isinstance(value, tuple) else value), field
        assert res["metrics"][metric] == pytest.approx(r["metrics"][metric], nan_ok=True)
        assert res["diverged"] == r["diverged"]
    with open(os.path.join(workdir, "sweep.json")) as f:
        stored = json.load(f)
    assert stored["settings"] == json.loads(json.dumps(rows))
    assert stored["main_metric"] == {"name": metric, "mode": mode}
    with open(os.path.join(workdir, "sweep.csv")) as f:
        table = list(csv.DictReader(f))
    assert [t["name"] for t in table] == [r["name"] for r in rows]
    for field in rows[0]["setting"]:
        values = [r["setting"][field] for r in rows]
        if all(isinstance(v, (int, float)) for v in values):
            assert [float(t[field]) for t in table] == [float(v) for v in values]
    finite = [r for r in rows if np.isfinite(r["metrics"][metric])]
    pick = max if mode == "max" else min
    assert record["best"] == pick(finite, key=lambda r: r["metrics"][metric])["name"]
    assert os.path.getsize(os.path.join(workdir, "sweep.png")) > 1000
