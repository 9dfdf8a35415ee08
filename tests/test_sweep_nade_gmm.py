"""Sweeps of the autoregressive models (experiments.nade) and of the Gaussian mixture's
gradient method (experiments.gmm) end to end: each setting gives its single run, the
sweep writes its per-setting results and tables, the seed splits programs where it must
(MADE's masks, the toy densities' points), and an EM sweep is refused in one line."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import gmm as gmm_config
from configs import nade as nade_config
from experiments import gmm as gmm_experiment
from experiments import nade as nade_experiment
from genjax.train import ConfigError, sweep_spec
from tests.sweep_outputs import check_sweep_outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NADE_TINY = {"data.name": "digits", "model.hidden": (16,), "train.num_steps": 50,
             "train.steps_per_dispatch": 25, "train.checkpoint_every": 50,
             "train.batch_size": 32, "eval.num_examples": 200, "eval.train_examples": 100,
             "eval.batch_size": 100, "plots.num_samples": 4}
NADE_GRID = ["optim.lr=1e-3,3e-3", "seed=0,1"]
NADE_METRICS = ("test/log_likelihood", "test/nll", "test/bits_per_dim",
                "train/log_likelihood")
GMM_TINY = {"fit.method": "gradient", "fit.restarts": 2, "model.num_components": 4,
            "train.num_steps": 50, "train.steps_per_dispatch": 25,
            "train.checkpoint_every": 50, "train.batch_size": 500, "plots.grid": 10,
            "plots.num_samples": 50}


def nade_tiny(**more):
    return sweep_spec.apply(nade_config.get_config("quick"), {**NADE_TINY, **more})


def gmm_tiny(**more):
    return sweep_spec.apply(gmm_config.get_config("quick"), {**GMM_TINY, **more})


def _table(workdir):
    with open(os.path.join(workdir, "sweep.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def nade_sweep(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("nade_sweep"))
    return workdir, nade_experiment.sweep(nade_tiny(), workdir, NADE_GRID)


def test_each_nade_setting_of_a_sweep_equals_its_single_run(nade_sweep, tmp_path):
    workdir, record = nade_sweep
    rows = record["settings"]
    assert [r["setting"] for r in rows] == [{"optim.lr": lr, "seed": s}
                                            for lr in (1e-3, 3e-3) for s in (0, 1)]
    assert record["description"].startswith("4 settings in 1 compiled program")
    for r in rows:
        assert r["diverged"] is None
        single = nade_experiment.train_and_evaluate(
            nade_tiny(**r["setting"]), str(tmp_path / r["name"]))
        # Same init (the setting's seed; the output biases from the same training data),
        # data order, binarisation and step keys, and the same compiled evaluation of the
        # exact log-likelihood; only float32 rounding differs (the 4 settings' vmapped
        # matmuls can reassociate unlike the single run's), over 50 Adam steps. Measured
        # on CPU: at most 1e-8 relative; rtol 1e-5 (0.3 millinats on ~-27 nats) leaves
        # room for other backends and stays far below the > 0.09 nats between settings.
        for k in NADE_METRICS:
            np.testing.assert_allclose(r["metrics"][k], single[k], rtol=1e-5, err_msg=k)
    # The settings differ from one another, so the comparison above has teeth.
    values = sorted(r["metrics"]["test/log_likelihood"] for r in rows)
    assert min(np.diff(values)) > 0.01, values


def test_a_nade_sweep_writes_per_setting_results_and_the_sweep_tables(nade_sweep):
    workdir, record = nade_sweep
    assert record["settings"][0]["name"] == "000_optim.lr=0.001_seed=0"
    assert record["main_metric"] == {"name": "test/log_likelihood", "mode": "max"}
    check_sweep_outputs(workdir, record)
    assert list(_table(workdir)[0])[3] == "test/log_likelihood"   # the main metric first


def test_a_made_seed_sweep_gets_a_program_per_seed(tmp_path):
    # MADE's connectivity masks are drawn from the seed and are fixed arrays of the
    # compiled program (not trained parameters): two seeds need two programs, and the
    # seed still varies the result as in the single runs.
    config = nade_tiny(**{"model.name": "made", "train.num_steps": 25,
                          "train.checkpoint_every": 25, "eval.train_examples": 0})
    record = nade_experiment.sweep(config, str(tmp_path), ["seed=0,1"])
    assert record["description"].startswith("2 settings in 2 compiled programs (seed")
    lls = [r["metrics"]["test/log_likelihood"] for r in record["settings"]]
    assert np.all(np.isfinite(lls)) and lls[0] != lls[1]
    single = nade_experiment.train_and_evaluate(sweep_spec.apply(config, {"seed": 1}),
                                                str(tmp_path / "single"))
    np.testing.assert_allclose(lls[1], single["test/log_likelihood"], rtol=1e-5)


@pytest.mark.slow
def test_a_gmm_gradient_sweep_writes_results_with_a_program_per_seed(tmp_path, capsys):
    # eight_gaussians draws its points with the seed: run_sweep gives each seed its own
    # program (its own data), optim.lr varies inside each.
    record = gmm_experiment.sweep(gmm_tiny(), str(tmp_path), ["optim.lr=1e-2,3e-2",
                                                               "seed=0,1"])
    out = capsys.readouterr().out
    assert "eight_gaussians's data depend on the seed: one program per seed" in out
    assert ("4 settings in 2 compiled programs (seed takes 2 values; optim.lr varies "
            "inside each)") in out
    rows = record["settings"]
    for r in rows:
        assert r["diverged"] is None
        with open(tmp_path / r["name"] / "results.json") as f:
            res = json.load(f)
        assert res["config"]["seed"] == r["setting"]["seed"]
        assert res["config"]["optim"]["lr"] == r["setting"]["optim.lr"]
        m = res["metrics"]
        assert np.isfinite(m["test/log_likelihood"]) and m["test/nll"] == pytest.approx(
            -m["test/log_likelihood"])
        assert (m["fit/restart_log_likelihood_min"] <= m["train/log_likelihood"]
                == pytest.approx(m["fit/restart_log_likelihood_max"]))
    assert len({round(r["metrics"]["test/log_likelihood"], 4) for r in rows}) == 4
    assert [t["name"] for t in _table(tmp_path)] == [r["name"] for r in rows]
    with open(tmp_path / "sweep.json") as f:
        assert json.load(f)["main_metric"] == {"name": "test/log_likelihood", "mode": "max"}
    # Each setting starts from its seed's initial mixtures, like its single run.
    single = gmm_experiment.train_and_evaluate(gmm_tiny(**rows[3]["setting"]),
                                               str(tmp_path / "single"))
    for k in ("test/log_likelihood", "train/log_likelihood"):
        np.testing.assert_allclose(rows[3]["metrics"][k], single[k], rtol=1e-5, err_msg=k)


def test_a_gmm_sweep_of_em_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="sweeps need the gradient method"):
        gmm_experiment.sweep(gmm_tiny(**{"fit.method": "em"}), str(tmp_path / "w"),
                             ["optim.lr=1e-2,3e-2"])
    with pytest.raises(ConfigError, match=r"sweep setting 001_fit.method=em: "
                                          r"--config.fit.method='em' is invalid"):
        gmm_experiment.sweep(gmm_tiny(), str(tmp_path / "w"), ["fit.method=gradient,em"])
    assert not os.path.exists(tmp_path / "w")


def test_the_cli_refuses_an_em_sweep_in_one_line(tmp_path):
    workdir = tmp_path / "never-created"
    p = subprocess.run([sys.executable, "-m", "experiments.gmm",
                        "--config=configs/gmm.py:quick", "--sweep=optim.lr=1e-2,3e-2",
                        f"--workdir={workdir}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 1, err
    assert err[-1] == (
        "error: sweeps need the gradient method, but --config.fit.method='em': add "
        "--config.fit.method=gradient (or use --config=configs/gmm.py:gradient); EM has "
        "no training loop to vmap"), err
    assert not any("Traceback" in line for line in err)
    assert not os.path.exists(workdir)
