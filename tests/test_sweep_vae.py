"""A sweep of the VAE end to end (genjax.train.sweep with experiments.vae's parts): each
setting gives its single run, static fields split the programs, the cli runs a sweep and
refuses a bad one in one line, a rerun resumes instead of retraining."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae as vae_config
from experiments import vae as vae_experiment
from genjax.train import ConfigError, NonFiniteError, sweep_spec
from tests.sweep_outputs import check_sweep_outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"data.name": "digits", "model.hidden": (16,), "model.latent_dim": 3,
        "train.num_steps": 50, "train.steps_per_dispatch": 25,
        "train.checkpoint_every": 50, "train.batch_size": 32, "eval.iw_samples": 10,
        "eval.iw_chunk": 10, "eval.fd_samples": 0, "plots.interp_steps": 3}
TINY_FLAGS = [f"--config.{k}={v}".replace(" ", "") for k, v in TINY.items()]
GRID = ["optim.lr=1e-3,3e-3", "seed=0,1"]
TEST_METRICS = ("test/elbo", "test/iw_log_likelihood", "test/kl", "test/log_px")


def tiny_config():
    return sweep_spec.apply(vae_config.get_config("quick"), TINY)


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("vae_sweep"))
    record = vae_experiment.sweep(tiny_config(), workdir, GRID)
    return workdir, record


@pytest.mark.slow
def test_each_setting_of_a_sweep_equals_its_single_run(grid_sweep, tmp_path):
    workdir, record = grid_sweep
    rows = record["settings"]
    assert [r["setting"] for r in rows] == [{"optim.lr": lr, "seed": s}
                                            for lr in (1e-3, 3e-3) for s in (0, 1)]
    assert len(record["programs"]) == 1 and record["description"].startswith(
        "4 settings in 1 compiled program")
    for r in rows:
        assert r["diverged"] is None
        single = vae_experiment.train_and_evaluate(
            sweep_spec.apply(tiny_config(), r["setting"]), str(tmp_path / r["name"]))
        # Same init (the setting's seed), data order, step keys and evaluation keys; only
        # float32 rounding may differ (4 settings' vmapped matmuls can reassociate unlike
        # the single run's), amplified over 50 Adam steps. Measured on CPU: at most 1e-7
        # relative (test/kl), 1e-8 for the likelihoods; rtol 1e-5 (0.4 millinats on ~-40
        # nats) leaves room for other backends and stays far below the > 1 nat between
        # settings.
        for k in TEST_METRICS:
            np.testing.assert_allclose(r["metrics"][k], single[k], rtol=1e-5, err_msg=k)
    # The settings differ from one another, so the comparison above has teeth.
    assert len({round(r["metrics"]["test/elbo"], 2) for r in rows}) == 4


def test_a_sweep_writes_per_setting_results_and_the_sweep_tables(grid_sweep):
    workdir, record = grid_sweep
    assert record["settings"][0]["name"] == "000_optim.lr=0.001_seed=0"
    assert record["main_metric"] == {"name": "test/iw_log_likelihood", "mode": "max"}
    check_sweep_outputs(workdir, record)


def test_rerunning_a_finished_sweep_resumes_instead_of_retraining(grid_sweep, capsys):
    workdir, record = grid_sweep
    jsonl = os.path.join(workdir, "programs", "000", "metrics.jsonl")
    before = open(jsonl).read()
    again = vae_experiment.sweep(tiny_config(), workdir, GRID)
    assert "resumed the sweep" in capsys.readouterr().out
    assert open(jsonl).read() == before                       # no step was trained
    for a, b in zip(again["settings"], record["settings"]):
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-6)
    with pytest.raises(ConfigError, match="other settings"):  # another sweep, same workdir
        vae_experiment.sweep(tiny_config(), workdir, ["optim.lr=1e-3,2e-3", "seed=0,1"])


@pytest.mark.slow
def test_a_static_axis_splits_the_sweep_into_programs(tmp_path, capsys):
    record = vae_experiment.sweep(tiny_config(), str(tmp_path),
                                  ["model.latent_dim=2,3", "optim.lr=1e-3,3e-3"])
    out = capsys.readouterr().out
    assert ("4 settings in 2 compiled programs (model.latent_dim takes 2 values; "
            "optim.lr varies inside each)") in out
    assert record["programs"] == [os.path.join("programs", "000_model.latent_dim=2"),
                                  os.path.join("programs", "001_model.latent_dim=3")]
    for r in record["settings"]:
        with open(os.path.join(tmp_path, r["name"], "results.json")) as f:
            assert json.load(f)["config"]["model"]["latent_dim"] == r["setting"][
                "model.latent_dim"]
        assert np.isfinite(r["metrics"]["test/iw_log_likelihood"])


def test_a_bad_setting_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep setting 001_loss.beta=-1: .*loss.beta"):
        vae_experiment.sweep(tiny_config(), str(tmp_path / "w"), ["loss.beta=1,-1"])
    assert not os.path.exists(tmp_path / "w")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is an existing file, not a folder"):
        vae_experiment.sweep(tiny_config(), str(tmp_path / "file"), ["loss.beta=1,2"])


def _cli(*args, module="experiments.vae"):
    p = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr.strip().splitlines()


@pytest.mark.slow
def test_the_cli_runs_a_random_sweep_and_prints_the_table(tmp_path):
    code, out, err = _cli("--config=configs/vae.py:quick", *TINY_FLAGS,
                          f"--workdir={tmp_path}", "--sweep=optim.lr=loguniform(1e-4,1e-2)",
                          "--sweep_samples=3", "--sweep_seed=0")
    assert code == 0, err[-5:]
    assert "3 settings in 1 compiled program (optim.lr varies inside it)" in out
    header = next(line for line in out.splitlines() if "test/iw_log_likelihood" in line)
    assert "optim.lr" in header
    with open(tmp_path / "sweep.json") as f:
        lrs = [r["setting"]["optim.lr"] for r in json.load(f)["settings"]]
    rng = np.random.default_rng(0)      # the documented draws
    np.testing.assert_allclose(lrs, np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), 3)))


@pytest.mark.parametrize("module, args, rc, words", [
    ("experiments.vae", ["--sweep=optim.lrr=1e-3,3e-3"], 1,
     ["--sweep=optim.lrr=1e-3,3e-3", 'did you mean "optim.lr"']),
    ("experiments.vae", ["--sweep=optim.lr=loguniform(1e-4,1e-2)"], 1,
     ["--sweep_samples"]),
    ("experiments.vae", ["--sweep_samples=4"], 2, ["--sweep_samples", "need --sweep"]),
    ("experiments.vae", ["--sweep=optim.lr=1e-3,3e-3", "--sweep_chunk=-1"], 1,
     ["--sweep_chunk=-1", ">= 0"]),
])
def test_a_bad_sweep_fails_with_one_clear_line(module, args, rc, words):
    code, _, err = _cli("--workdir=/nonexistent-never-created", *args, module=module)
    assert code == rc, err
    assert err[-1].startswith("error: ") and all(w in err[-1] for w in words), err
    assert not any("Traceback" in line for line in err)
    assert not os.path.exists("/nonexistent-never-created")


def test_a_diverging_setting_is_reported_and_an_all_diverged_sweep_fails(tmp_path):
    # lr 1e30: Adam's first step moves every weight by ~1e30, the loss overflows.
    record = vae_experiment.sweep(tiny_config(), str(tmp_path / "some"),
                                  ["optim.lr=1e-3,1e30"])
    ok, bad = record["settings"]
    assert ok["diverged"] is None and np.isfinite(ok["metrics"]["test/elbo"])
    assert bad["diverged"]["step"] >= 0 and np.isnan(bad["metrics"]["test/elbo"])
    assert record["best"] == ok["name"]
    with open(tmp_path / "some" / bad["name"] / "results.json") as f:
        stored = json.load(f)["diverged"]
    assert (stored["step"], stored["metric"]) == (bad["diverged"]["step"],
                                                  bad["diverged"]["metric"])
    with pytest.raises(NonFiniteError, match="every setting of the sweep diverged"):
        vae_experiment.sweep(tiny_config(), str(tmp_path / "all"), ["optim.lr=1e30,1e31"])


def test_the_seed_is_static_where_the_data_depend_on_it():
    # A program trains on one dataset; the toy densities and user data without a test
    # split are drawn or split with the seed, so a seed sweep there needs one program
    # per seed to equal its single runs.
    from genjax.train.sweep import data_depends_on_seed
    config = tiny_config()
    assert not data_depends_on_seed(config)
    for name in ("two_moons", "npz:/tmp/x.npz", "folder:/tmp/imgs"):
        assert data_depends_on_seed(sweep_spec.apply(config, {"data.name": name}))


@pytest.mark.slow
def test_chunks_give_the_same_sweep_and_vmapped_evaluation_equals_one_by_one(
        grid_sweep, tmp_path, capsys):
    """--sweep_chunk=K trains K settings at a time (each chunk its own folder and
    checkpoints) and ends where the sweep of all settings at once ends; the settings are
    evaluated together (Program.evaluate_stacked) as each alone would be."""
    workdir, record = grid_sweep
    chunked = vae_experiment.sweep(tiny_config(), str(tmp_path), GRID, chunk=3)
    assert "4 settings in 2 chunks of at most 3" in capsys.readouterr().out
    program = os.path.join(str(tmp_path), chunked["programs"][0])
    assert sorted(d for d in os.listdir(program) if d.startswith("chunk_")) == [
        "chunk_0", "chunk_1"]
    assert os.path.isdir(os.path.join(program, "chunk_1", "checkpoints"))
    for a, b in zip(record["settings"], chunked["settings"]):
        assert a["name"] == b["name"]
        for k in TEST_METRICS:       # vmapped over 4 vs over 3 and 1: float32 rounding
            np.testing.assert_allclose(b["metrics"][k], a["metrics"][k], rtol=1e-5,
                                       err_msg=k)
    # The stacked evaluation against one setting at a time, same parameters.
    config = tiny_config()
    program = vae_experiment.prepare_sweep_program(config, str(tmp_path / "eval"))
    states = [program.init(sweep_spec.apply(config, {"seed": s})) for s in (0, 1, 2)]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[s.params for s in states])
    configs = [sweep_spec.apply(config, {"seed": s}) for s in (0, 1, 2)]
    together = program.evaluate_stacked(configs, params)
    for s, c in enumerate(configs):
        alone = program.evaluate(c, jax.tree_util.tree_map(lambda a, s=s: a[s], params))
        for k in TEST_METRICS:
            np.testing.assert_allclose(together[s][k], alone[k], rtol=1e-6, err_msg=k)
    assert together[0]["test/elbo"] != together[1]["test/elbo"]   # seeds differ


def test_auto_chunk_fits_the_settings_in_the_device_memory(monkeypatch):
    """With no --sweep_chunk the sweep trains every setting at once where the device
    reports no memory limit (XLA:CPU), and as many as fit in 90% of a reported limit."""
    from genjax.train import sweep as sweeplib
    config = tiny_config()
    program = vae_experiment.prepare_sweep_program(config, tempfile.mkdtemp())
    assert jax.local_devices()[0].memory_stats() is None          # CPU: no limit
    assert sweeplib.auto_chunk(program, config, config.train, 100) == 100

    class Device:
        def __init__(self, limit):
            self.limit = limit

        def memory_stats(self):
            return {"bytes_limit": self.limit}

    monkeypatch.setattr(jax, "local_devices", lambda: [Device(10 ** 12)])
    assert sweeplib.auto_chunk(program, config, config.train, 100) == 100
    monkeypatch.setattr(jax, "local_devices", lambda: [Device(40 * 2 ** 20)])
    k = sweeplib.auto_chunk(program, config, config.train, 1000)
    assert 1 <= k < 1000


@pytest.mark.slow
def test_a_sweep_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    """kill -9 during the first of two chunks; the rerun resumes from the checkpoints and
    sweep.json's metrics equal an uninterrupted sweep's bit for bit."""
    args = ["--config=configs/vae.py:quick", *TINY_FLAGS, "--config.train.num_steps=600",
            "--config.train.steps_per_dispatch=10", "--config.train.checkpoint_every=50",
            *(f"--sweep={a}" for a in GRID), "--sweep_chunk=2"]

    def start(workdir):
        return subprocess.Popen([sys.executable, "-m", "experiments.vae",
                                 f"--workdir={workdir}", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def metrics(workdir):
        with open(os.path.join(workdir, "sweep.json")) as f:
            return {r["name"]: r["metrics"] for r in json.load(f)["settings"]}

    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    p = start(full)
    out = p.communicate(timeout=600)[0]
    assert p.returncode == 0, out[-2000:]
    p = start(killed)
    ckdir = None
    deadline = time.time() + 300
    while time.time() < deadline:
        found = [os.path.join(r, d) for r, ds, _ in os.walk(killed) for d in ds
                 if d.isdigit() and r.endswith(os.path.join("chunk_0", "checkpoints"))]
        if found and max(int(os.path.basename(d)) for d in found) >= 200:
            ckdir = found
            break
        time.sleep(0.05)
    assert ckdir, "the first chunk never checkpointed step 200"
    p.kill()
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(killed, "sweep.json"))
    p = start(killed)
    out = p.communicate(timeout=600)[0]
    assert p.returncode == 0, out[-2000:]
    assert "resumed the sweep from" in out
    assert metrics(killed) == metrics(full)
