"""The sweep specification (genjax.train.sweep_spec): parsing, expansion, apply, grouping,
names. Pure Python and numpy: nothing is compiled."""

import itertools
import math
import os
import re

import numpy as np
import pytest

from configs import vae as vae_config
from genjax.train import sweep_spec as S
from genjax.train.config import ConfigError


@pytest.fixture
def config():
    return vae_config.get_config()


def _expand(config, *texts, **kw):
    return S.expand(config, [S.parse_axis(t) for t in texts], **kw)


# --------------------------------------------------------------------------- parsing

def test_parse_grid_values_and_tuples():
    a = S.parse_axis("optim.lr=1e-4, 3e-4,1e-3")
    assert (a.field, a.kind, a.raw, a.is_random) == ("optim.lr", "grid",
                                                     ("1e-4", "3e-4", "1e-3"), False)
    # commas inside brackets and quotes do not split values
    assert S.parse_axis("model.hidden=(32,),(64, 64),()").raw == ("(32,)", "(64, 64)", "()")
    assert S.parse_axis("data.name='a,b',c").raw == ("'a,b'", "c")


def test_parse_distributions():
    u = S.parse_axis("loss.beta=uniform(0.5,4)")
    assert (u.kind, u.low, u.high, u.is_random) == ("uniform", 0.5, 4.0, True)
    lu = S.parse_axis("optim.lr=loguniform(1e-5, 1e-3)")
    assert (lu.kind, lu.low, lu.high) == ("loguniform", 1e-5, 1e-3)
    c = S.parse_axis("model.hidden=choice((32,),(64,64))")
    assert (c.kind, c.raw) == ("choice", ("(32,)", "(64,64)"))


@pytest.mark.parametrize("text", [
    "optim.lr", "=1,2", "optim.lr=", "optim.lr=1,,2", "optim.lr=1,", "optim.lr=(1,2",
    "optim.lr=1)", "data.name='abc", "optim.lr=normal(0,1)", "optim.lr=uniform(1)",
    "optim.lr=uniform(1,2,3)", "optim.lr=uniform(2,1)", "optim.lr=uniform(1,1)",
    "optim.lr=uniform(a,1)", "optim.lr=uniform(0,inf)", "optim.lr=loguniform(0,1e-3)",
    "optim.lr=loguniform(-1,1)", "optim.lr=choice()", "--config.optim.lr=1",
    "optim..lr=1", "optim lr=1", "1seed=1"])
def test_malformed_is_one_line_naming_argument_and_spellings(text):
    with pytest.raises(ConfigError) as e:
        S.parse_axis(text)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"--sweep={text} is malformed")
    assert "FIELD=loguniform(A,B)" in msg and "FIELD=choice(V1,V2,...)" in msg


# ------------------------------------------------------------------------------ grid

def test_grid_is_the_cartesian_product_in_order(config):
    s = _expand(config, "optim.lr=1e-4,3e-4,1e-3", "loss.beta=0.5,1,2,4", "seed=0,1")
    lrs, betas, seeds = (1e-4, 3e-4, 1e-3), (0.5, 1.0, 2.0, 4.0), (0, 1)
    assert len(s) == 3 * 4 * 2
    # the axes' order, the last axis fastest: exactly itertools.product's order
    assert [tuple(d.values()) for d in s] == list(itertools.product(lrs, betas, seeds))
    assert all(list(d) == ["optim.lr", "loss.beta", "seed"] for d in s)
    assert len({tuple(d.values()) for d in s}) == len(s)        # each combination once


def test_values_are_typed_for_the_field(config):
    s = _expand(config, "optim.lr=1,2e-3", "seed=0,7", "model.hidden=(32,),(64,64),()",
                "train.distributed=true,False", "model.arch=mlp,'conv'")
    d = s[-1]
    assert type(d["optim.lr"]) is float and d["optim.lr"] == 2e-3
    assert s[0]["optim.lr"] == 1.0 and type(s[0]["optim.lr"]) is float
    assert type(d["seed"]) is int and d["seed"] == 7
    assert {x["model.hidden"] for x in s} == {(32,), (64, 64), ()}
    assert {x["train.distributed"] for x in s} == {True, False}
    assert {x["model.arch"] for x in s} == {"mlp", "conv"}
    # a string field keeps a number-looking value as its text
    assert _expand(config, "data.name=1")[0]["data.name"] == "1"


# ---------------------------------------------------------------------------- random

def test_random_draws_are_reproducible_and_in_bounds(config):
    args = ("optim.lr=loguniform(1e-5,1e-3)", "loss.beta=uniform(0.5,4)")
    a = _expand(config, *args, samples=50, sweep_seed=3)
    assert a == _expand(config, *args, samples=50, sweep_seed=3)
    assert a != _expand(config, *args, samples=50, sweep_seed=4)
    assert len(a) == 50
    assert all(1e-5 <= d["optim.lr"] < 1e-3 and 0.5 <= d["loss.beta"] < 4 for d in a)
    assert all(type(d["optim.lr"]) is float for d in a)


def test_loguniform_is_uniform_in_log_and_uniform_is_uniform(config):
    s = _expand(config, "optim.lr=loguniform(1e-5,1e-1)", "loss.beta=uniform(2,6)",
                samples=2000, sweep_seed=0)
    logs = np.log10([d["optim.lr"] for d in s])
    betas = np.array([d["loss.beta"] for d in s])
    # uniform on [-5, -1]: mean -3, sd 4/sqrt(12) = 1.155; the mean of 2000 has sd 0.026
    assert abs(logs.mean() + 3) < 0.1
    assert abs(logs.std() - 4 / math.sqrt(12)) < 0.05
    assert abs(np.mean((logs > -5) & (logs < -3)) - 0.5) < 0.05   # each half holds half
    assert abs(betas.mean() - 4) < 0.1 and betas.min() >= 2 and betas.max() < 6


def test_choice_yields_only_given_values_and_all_of_them(config):
    s = _expand(config, "model.hidden=choice((32,),(64,64))", "optim.lr=choice(1e-3,1e-4)",
                samples=200)
    assert {d["model.hidden"] for d in s} == {(32,), (64, 64)}
    assert {d["optim.lr"] for d in s} == {1e-3, 1e-4}


def test_draws_times_grid_draw_major(config):
    s = _expand(config, "optim.lr=loguniform(1e-5,1e-3)", "seed=0,1,2", "loss.beta=1,2",
                samples=4, sweep_seed=1)
    assert len(s) == 4 * 3 * 2
    grid = list(itertools.product((0, 1, 2), (1.0, 2.0)))
    for k in range(4):
        block = s[6 * k: 6 * (k + 1)]
        assert len({d["optim.lr"] for d in block}) == 1           # one draw per block
        assert [(d["seed"], d["loss.beta"]) for d in block] == grid
    assert len({d["optim.lr"] for d in s}) == 4
    assert [list(d) for d in s] == [["optim.lr", "seed", "loss.beta"]] * len(s)


# ---------------------------------------------------------------------------- errors

def _error(config, *texts, **kw):
    with pytest.raises(ConfigError) as e:
        _expand(config, *texts, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("text, needles", [
    ("optim.lrr=1e-3", ["--sweep=optim.lrr=1e-3", "unknown config field 'optim.lrr'",
                        'did you mean "optim.lr"']),
    ("lr=1e-3", ["--sweep=lr=1e-3", "'lr'", 'did you mean "optim.lr"']),
    ("nothing_like_it=1", ["--sweep=nothing_like_it=1", "unknown config field"]),
    ("optim=1", ["--sweep=optim=1", "section", "optim."]),
    ("optim.lr.x=1", ["--sweep=optim.lr.x=1", "unknown config field"]),
    ("optim.lr=1e-3,abc", ["--sweep=optim.lr=1e-3,abc", "'abc'", "optim.lr", "number"]),
    ("optim.lr=1e-3,nan", ["'nan'", "finite number"]),
    ("optim.lr=True", ["'True'", "optim.lr"]),
    ("seed=0,1.5", ["--sweep=seed=0,1.5", "'1.5'", "seed", "integer"]),
    ("seed=1e3", ["'1e3'", "integer"]),
    ("seed=true", ["'true'", "integer"]),
    ("train.distributed=yes", ["'yes'", "true or false"]),
    ("model.hidden=32", ["'32'", "model.hidden", "tuple"]),
    ("seed=uniform(0,5)", ["--sweep=seed=uniform(0,5)", "floats", "choice()"]),
    ("optim.lr=1e-3,0.001", ["--sweep=optim.lr=1e-3,0.001", "'0.001'", "twice"]),
])
def test_bad_values_are_one_line_errors_naming_the_argument(config, text, needles):
    msg = _error(config, text)
    for n in needles:
        assert n in msg, (n, msg)


def test_bad_sweeps_as_a_whole(config):
    msg = _error(config, "optim.lr=1e-3", "seed=0,1", "optim.lr=1e-4")
    assert "--sweep=optim.lr=1e-4" in msg and "already swept" in msg
    msg = _error(config, "optim.lr=loguniform(1e-5,1e-3)", "seed=0,1")
    assert "--sweep=optim.lr=loguniform(1e-5,1e-3)" in msg and "--sweep_samples" in msg
    msg = _error(config, "loss.beta=choice(1,2)")
    assert "--sweep_samples" in msg
    msg = _error(config, "optim.lr=1e-3,1e-4", samples=8)
    assert "--sweep_samples=8" in msg and "random axis" in msg
    msg = _error(config, "optim.lr=loguniform(1e-5,1e-3)", samples=-1)
    assert "--sweep_samples=-1" in msg
    with pytest.raises(ConfigError, match="^the sweep is empty"):
        S.expand(config, [])


def test_cap_on_the_number_of_settings(config):
    many = ",".join(str(i) for i in range(101))
    msg = _error(config, f"seed={many}", f"train.num_steps={many}")
    assert "10201 settings (101 x 101)" in msg and str(S.MAX_SETTINGS) in msg
    msg = _error(config, "optim.lr=loguniform(1e-5,1e-3)", "seed=0,1", samples=6000)
    assert "12000 settings (2 x 6000)" in msg
    assert len(_expand(config, f"seed={many}", "train.num_steps=1,2")) == 202


# ----------------------------------------------------------------------------- apply

def test_apply_copies_and_keeps_the_lock(config):
    before = config.to_json()
    new = S.apply(config, {"optim.lr": 3e-4, "model.latent_dim": 8, "model.hidden": (32,)})
    assert config.to_json() == before                           # the original is unchanged
    assert (new.optim.lr, new.model.latent_dim, new.model.hidden) == (3e-4, 8, (32,))
    assert new.is_locked and config.is_locked
    with pytest.raises(AttributeError):                         # still locked: no new field
        new.optim.lrr = 1.0
    with pytest.raises(ConfigError, match="unknown config field 'optim.lrr'"):
        S.apply(config, {"optim.lrr": 1.0})
    with pytest.raises(ConfigError, match="seed"):
        S.apply(config, {"seed": 1.5})


def test_every_applied_setting_passes_the_experiments_validate(config):
    from experiments import vae
    from genjax.train import config as cfglib
    for s in _expand(config, "optim.lr=1e-4,1e-3", "model.hidden=(32,),(64,64)",
                     "loss.beta=0,2"):
        c = S.apply(config, s)
        cfglib.validate_common(c, num_devices=1)
        vae.validate(c)
    bad = S.apply(config, {"optim.lr": -1.0})                   # typed, but out of range
    with pytest.raises(ConfigError, match="optim.lr"):
        cfglib.validate_common(bad, num_devices=1)


# -------------------------------------------------------------------------- grouping

def test_group_by_static_fields_keeps_global_indices(config):
    s = _expand(config, "optim.lr=1e-4,1e-3", "model.latent_dim=8,16",
                "loss.beta=1,2", "model.arch=mlp,conv")
    groups = S.group(config, s, S.dynamic_fields("loss.beta"))
    assert len(groups) == 4 and sum(len(g) for g in groups) == len(s) == 16
    assert sorted(i for g in groups for i in g.indices) == list(range(16))
    for g in groups:
        assert list(g.indices) == sorted(g.indices)
        assert set(g.static) == {"model.latent_dim", "model.arch"}
        assert g.config.model.latent_dim == g.static["model.latent_dim"]
        assert g.config.model.arch == g.static["model.arch"]
        assert g.config.is_locked
        for i, dyn in zip(g.indices, g.dynamic):
            assert {k: s[i][k] for k in g.static} == g.static      # equal static values
            assert dyn == {"optim.lr": s[i]["optim.lr"], "loss.beta": s[i]["loss.beta"]}
    # ordered by first setting; the reason names the static values
    assert [g.indices[0] for g in groups] == sorted(g.indices[0] for g in groups)
    assert groups[0].reason == "model.latent_dim=8, model.arch=mlp"
    assert len({g.reason for g in groups}) == 4
    assert config.model.latent_dim == 20                          # the original untouched
    assert S.describe(groups) == ("16 settings in 4 compiled programs (model.latent_dim "
                                  "takes 2 values, model.arch takes 2 values; optim.lr, "
                                  "loss.beta vary inside each)")


def test_group_all_dynamic_and_all_static(config):
    s = _expand(config, "optim.lr=1e-4,1e-3", "seed=0,1,2")
    (g,) = S.group(config, s, S.DEFAULT_DYNAMIC)
    assert g.indices == tuple(range(6)) and g.static == {}
    assert g.dynamic == tuple(s)
    assert S.describe([g]) == ("6 settings in 1 compiled program "
                               "(optim.lr, seed vary inside it)")
    groups = S.group(config, _expand(config, "model.latent_dim=2,4,8"), S.DEFAULT_DYNAMIC)
    assert [g.indices for g in groups] == [(0,), (1,), (2,)]
    assert S.describe(groups) == ("3 settings in 3 compiled programs (model.latent_dim "
                                  "takes 3 values; one setting in each)")


def test_group_random_static_choice(config):
    s = _expand(config, "model.hidden=choice((32,),(64,))",
                "optim.lr=loguniform(1e-4,1e-2)", samples=40, sweep_seed=2)
    groups = S.group(config, s, S.DEFAULT_DYNAMIC)
    assert {g.static["model.hidden"] for g in groups} == {(32,), (64,)}
    for g in groups:
        assert all(s[i]["model.hidden"] == g.static["model.hidden"] for i in g.indices)
        assert g.config.model.hidden == g.static["model.hidden"]
    assert S.describe(groups).startswith("40 settings in 2 compiled programs "
                                         "(model.hidden takes 2 values; optim.lr varies")


def test_dynamic_fields():
    assert S.dynamic_fields() == S.DEFAULT_DYNAMIC
    gan = S.dynamic_fields("loss.gp_weight", optim_sections=("optim", "optim_d"))
    assert gan == {"seed", "optim.lr", "optim.weight_decay", "optim.grad_clip",
                   "optim_d.lr", "optim_d.weight_decay", "optim_d.grad_clip",
                   "loss.gp_weight"}


# ----------------------------------------------------------------------------- names

def test_setting_names_unique_safe_and_stable(config):
    s = _expand(config, "optim.lr=1e-4,3e-4,1e-3", "loss.beta=0.5,1,2",
                "model.hidden=(32,),(64,64),()", "data.name=mnist5k,'a b/c:d'")
    names = S.setting_names(s)
    assert len(set(names)) == len(names) == 54
    assert names == sorted(names)                                 # sort in sweep order
    assert names == S.setting_names(s)
    for n in names:
        assert re.fullmatch(r"\d{3}_[A-Za-z0-9._=,+-]+", n), n
        assert n not in (".", "..") and "/" not in n and len(n) <= 160
    assert names[0] == "000_optim.lr=0.0001_loss.beta=0.5_model.hidden=32_data.name=mnist5k"
    assert "model.hidden=64x64" in names[2] and "model.hidden=empty" in names[4]
    assert names[5].endswith("data.name=a-b-c-d")
    # values that round to the same text still get distinct names (the index)
    close = S.setting_names([{"optim.lr": 1e-3}, {"optim.lr": 1.00001e-3}])
    assert close == ["000_optim.lr=0.001", "001_optim.lr=0.001"]
    assert S.setting_name(7, {"seed": 3}) == "007_seed=3"
    wide = S.setting_names(_expand(config, "seed=" + ",".join(map(str, range(1200)))))
    assert wide[0] == "0000_seed=0" and wide[-1] == "1199_seed=1199"
    long = S.setting_name(0, {"data.name": "x" * 1000})
    assert len(long) <= 160 and os.sep not in long
