"""Train and evaluate VAE recommenders (Mult-VAE, Mult-DAE; Liang et al. 2018) against
EASE, popularity and (on generated data) the oracle, on the paper's protocol.

    python -m experiments.recommend --config=configs/recommend.py[:quick|dae|ml20m|ml1m]
        [--workdir=runs/recommend/PRESET] [--config.loss.anneal_cap=0.3 ...]
    python -m experiments.recommend --config=configs/recommend.py:ml20m \\
        --config.data.name=movielens:/data/ml-20m/ratings.csv

The click matrix stays sparse on the host and on the device (`genjax.data.clicks`): each
batch of users is densified inside the compiled step. Held-out users (validation and
test) have 80% of their clicks folded in and the other 20% ranked against every item
not folded in (`genjax.eval.ranking.evaluate_users`: Recall@20, Recall@50, NDCG@100,
full ranking). The main model (model.name) and the neural baseline are selected on
validation NDCG@100 over training (evaluated every train.eval_every steps; the best
weights are kept in <workdir>/best/, so a resumed run keeps its best), EASE's l2 on
validation NDCG@100 among eval.ease_l2.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
best/ (the selected weights and their step), <baseline>/ (the neural baseline's own
run), recommend_curves.png (validation NDCG@100 over training; test Recall@k for
k = 1..100 per model) and results.json: test/<model>/recall@20, recall@50, ndcg@100 for
every model, the main model's as test/recall@20 ..., val/<model>/ndcg@100, the selected
step and EASE l2.

    python -m experiments.recommend --config=configs/recommend.py \\
        --sweep=loss.anneal_cap=0.1,0.2,0.4 --sweep=loss.dropout=0.3,0.5

sweeps the main model (`genjax.train.sweep`): seed, lr, weight_decay and the loss's
anneal_cap / dropout / l2 live in TrainState.hparams, so such a grid is one compiled
program; each setting reports its final weights' metrics (no selection over training),
ranked by val/ndcg@100.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax.data import clicks as clk
from genjax import xla
from genjax.eval import ranking
from genjax.losses import recommend as rl
from genjax.models import ease, multvae
from genjax.train import cli, config as cfglib, distributed, experiment, init_state
from genjax.train import make_optimizer, make_train_step, resume, sweep_spec, train
from genjax.train.sweep import Program, SweepParts, run_sweep
from genjax.train.writers import log

NEURAL = ("multvae", "multdae")
BASELINES = NEURAL + ("ease", "popularity")
KS = dict(recall_ks=(20, 50), ndcg_ks=(100,), curve_k=100)
SELECT = "ndcg@100"


def validate(config):
    """Every field of data (beyond the shared ones), model, loss, baseline_* and eval,
    before anything is loaded or compiled."""
    m, e = config.model, config.eval
    cfglib.one_of(config, "data.preprocess", ("none",))
    cfglib.number(config, "data.rating_threshold", low=0,
                  why="a rating above it is a click; MovieLens: 3.5")
    cfglib.integer(config, "data.min_user_clicks", minimum=1)
    cfglib.integer(config, "data.split_seed", minimum=0)
    cfglib.integer(config, "data.num_users", minimum=10)
    cfglib.integer(config, "data.num_items", minimum=10)
    cfglib.integer(config, "data.heldout_users", minimum=1)
    cfglib.one_of(config, "model.name", NEURAL)
    for sec in ("model", "baseline_dae", "baseline_vae"):
        cfglib.int_tuple(config, f"{sec}.hidden", min_len=0, example="'(600,)'",
                         what="layer sizes")
        cfglib.integer(config, f"{sec}.latent")
    cfglib.in_range(config, "loss.anneal_cap", 0.0, 10.0)
    cfglib.integer(config, "loss.total_anneal_steps", minimum=0)
    cfglib.in_range(config, "loss.dropout", 0.0, 1.0)
    cfglib.positive(config, "loss.l2", allow_zero=True)
    cfglib.positive(config, "baseline_dae.l2", allow_zero=True)
    cfglib.require(isinstance(e.baselines, tuple) and all(b in BASELINES for b in e.baselines)
                   and len(set(e.baselines)) == len(e.baselines) and m.name not in e.baselines,
                   "eval.baselines", e.baselines,
                   f"distinct names among {BASELINES} other than model.name={m.name!r}")
    cfglib.require(isinstance(e.ease_l2, tuple) and len(e.ease_l2) >= 1 and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 for v in e.ease_l2),
        "eval.ease_l2", e.ease_l2, "a tuple of EASE l2 weights > 0, e.g. '(100.0, 500.0)'")
    cfglib.integer(config, "eval.batch_size")
    cfglib.integer(config, "train.eval_every", minimum=1,
                   why="the model is selected on validation NDCG@100 during training")


def load_split(config) -> clk.ClickSplit:
    """The click data of data.name, filtered and split as the paper does. The generated
    default is drawn with seed 0 always (data.num_users x data.num_items): config.seed
    changes the training, data.split_seed the split."""
    d = config.data
    if d.name == clk.SYNTHETIC:
        clicks = clk.synthetic_clicks(num_users=d.num_users, num_items=d.num_items, seed=0)
    else:
        clicks = clk.load_clicks(d.name, data_dir=d.data_dir or None,
                                 rating_threshold=d.rating_threshold,
                                 min_user_clicks=d.min_user_clicks)
    cfglib.require(2 * d.heldout_users < clicks.num_users, "data.heldout_users",
                   d.heldout_users, f"fewer than half the {clicks.num_users:,} users of "
                   f"{d.name!r} (as many validation as test users, the rest train)")
    split = clk.split_clicks(clicks, n_heldout=d.heldout_users, seed=d.split_seed)
    cfglib.require(split.train.shape[0] >= config.train.batch_size, "train.batch_size",
                   config.train.batch_size,
                   f"at most the {split.train.shape[0]} training users of {d.name!r}")
    return split


def prepare(config, workdir: str) -> clk.ClickSplit:
    """What `experiment.prepare` does for image data, for click data: the shared checks,
    the workdir (resume-safe config), the split, config.json."""
    cfglib.validate_common(config, jax.device_count())
    xla.configure(config.train.get("xla_options"))
    resume.ensure_workdir(workdir, create=False)
    change = resume.check_config(config, workdir)
    split = load_split(config)
    distributed.barrier("genjax.recommend.prepare")
    resume.record_config(config, workdir, change)
    log(f"{config.data.name}: {split.train.shape[0]:,} train / {split.val_foldin.shape[0]:,} "
        f"validation / {split.test_foldin.shape[0]:,} test users x {split.num_items:,} items; "
        f"workdir {os.path.abspath(workdir)}; devices {jax.devices()}")
    return split


@dataclasses.dataclass(frozen=True)
class Built:
    state: Any
    step_fn: Callable
    score_fn: Callable        # score_fn(params, x, side) -> logits [B, I]
    graphdef: Any


def build(config, name: str, num_items: int) -> Built:
    """The neural model ``name`` ("multvae" | "multdae") of ``config`` (a baseline's sizes
    from baseline_dae / baseline_vae, its l2 baseline_dae.l2 / 0), its TrainState (hparams: the
    optimiser's, anneal_cap, dropout, l2) and step."""
    main = name == config.model.name
    sizes = (config.model if main else
             config.baseline_dae if name == "multdae" else config.baseline_vae)
    cls = multvae.MultVAE if name == "multvae" else multvae.MultDAE
    model = cls(num_items, hidden=tuple(sizes.hidden), latent=sizes.latent,
                rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx, hparams, schedule = make_optimizer(config.optim, config.train.num_steps)
    lo = config.loss
    # lam: loss.l2 for the main model; a baseline as the paper trains it (the DAE's
    # baseline_dae.l2 = 0.01 / batch, the VAE's 0)
    l2 = lo.l2 if main else (config.baseline_dae.l2 if name == "multdae" else 0.0)
    state = init_state(params, tx, dict(hparams, anneal_cap=lo.anneal_cap,
                                        dropout=lo.dropout, l2=l2))
    total = lo.total_anneal_steps

    def loss_fn(params, x, key, hp):
        m = nnx.merge(graphdef, params)
        kw = dict(encode=m.encode, decode_logits=m.decode_logits, dropout_rate=hp["dropout"])
        if name == "multvae":
            beta = rl.beta_annealing(hp["step"], total_anneal_steps=total,
                                     anneal_cap=hp["anneal_cap"])
            loss, metrics = rl.mult_vae_loss(x, key, beta=beta, **kw)
        else:
            loss, metrics = rl.mult_dae_loss(x, key, **kw)
        # dawenl's lam sum W^2; lam is a traced hparam (sweepable), so at lam = 0 a cond
        # skips the 24M-weight pass at run time (a vmapped sweep computes both branches)
        penalty = jax.lax.cond(hp["l2"] > 0,
                               lambda p: rl.l2_penalty(p, weight=2.0 * hp["l2"]),
                               lambda p: jnp.zeros((), jnp.float32), params)
        return loss + penalty, dict(metrics, l2_penalty=penalty)

    def score_fn(params, x, side):
        del side
        return multvae.scores(nnx.merge(graphdef, params), x)

    return Built(state, make_train_step(loss_fn, tx, schedule, with_step=True), score_fn,
                 graphdef)


def _evaluate(split, role: str, score_fn, params, batch_size: int, side=None) -> dict:
    foldin, heldout = ((split.val_foldin, split.val_heldout) if role == "val"
                       else (split.test_foldin, split.test_heldout))
    return ranking.evaluate_users(score_fn, foldin, heldout, params=params, side=side,
                                  batch_size=batch_size, **KS)


class BestKeeper:
    """The weights with the best validation NDCG@100 seen so far, kept in <dir>/ (weights
    as msgpack, step and value as JSON) so that a resumed run continues the selection."""

    def __init__(self, directory: str, like):
        self.dir, self.like = directory, like
        self.step, self.value, self.params = -1, -np.inf, None
        info = os.path.join(directory, "best.json")
        if os.path.exists(info):
            with open(info) as f:
                meta = json.load(f)
            with np.load(os.path.join(directory, "params.npz")) as f:
                leaves = [f[f"leaf_{i}"] for i in range(len(f.files))]
            self.params = jax.tree_util.tree_unflatten(
                jax.tree_util.tree_structure(like), leaves)
            self.step, self.value = int(meta["step"]), float(meta["value"])
        self.history = []                      # (step, value) of this process's evaluations

    def offer(self, step: int, value: float, params) -> None:
        self.history.append((int(step), float(value)))
        if value > self.value:
            self.step, self.value = int(step), float(value)
            self.params = jax.device_get(params)
            if distributed.is_main_process():
                os.makedirs(self.dir, exist_ok=True)
                leaves = jax.tree_util.tree_leaves(self.params)
                np.savez(os.path.join(self.dir, "params.npz"),
                         **{f"leaf_{i}": np.asarray(a) for i, a in enumerate(leaves)})
                with open(os.path.join(self.dir, "best.json"), "w") as f:
                    json.dump({"step": self.step, "value": self.value,
                               "metric": f"val/{SELECT}"}, f)


def train_neural(config, split, name: str, workdir: str, rows) -> dict:
    """Trains the neural model ``name`` in ``workdir`` (resuming), selecting its weights on
    validation NDCG@100 every train.eval_every steps and at the end. Returns
    {"params", "step", "val", "history", "summary", "score_fn"}."""
    b = build(config, name, split.num_items)
    bs = config.eval.batch_size
    keeper = BestKeeper(os.path.join(workdir, "best"), b.state.params)

    def eval_fn(state):
        v = _evaluate(split, "val", b.score_fn, state.params, bs)[SELECT]
        keeper.offer(int(state.step), v, state.params)
        return {SELECT: v}

    state, summary = train(b.state, b.step_fn, rows, cfg=config.train, seed=config.seed,
                           workdir=workdir, eval_fn=eval_fn)
    if int(state.step) != keeper.step:             # the last weights, if not evaluated yet
        eval_fn(state)
    log(f"{name}: best validation NDCG@100 {keeper.value:.4f} at step {keeper.step}")
    return {"params": keeper.params, "step": keeper.step, "val": keeper.value,
            "history": _history(workdir, keeper), "summary": summary, "score_fn": b.score_fn}


def _history(workdir: str, keeper: BestKeeper) -> list:
    """(step, validation NDCG@100) over the whole run, resumed parts included, from the
    run's metrics.jsonl (eval/ entries), else this process's evaluations."""
    path, out = os.path.join(workdir, "metrics.jsonl"), {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if f"eval/{SELECT}" in r:
                    out[int(r["step"])] = float(r[f"eval/{SELECT}"])
    out.update(dict(keeper.history))
    return sorted(out.items())


def fit_ease(config, split) -> dict:
    """EASE for each l2 of eval.ease_l2, selected on validation NDCG@100 (float32 on the
    host: I x I)."""
    best = None
    for l2 in config.eval.ease_l2:
        B = jnp.asarray(ease.ease_weights(split.train, l2=float(l2), dtype=np.float32))
        v = _evaluate(split, "val", _ease_scores, B, config.eval.batch_size)[SELECT]
        log(f"EASE l2={l2:g}: validation NDCG@100 {v:.4f}")
        if best is None or v > best["val"]:
            best = {"params": B, "val": v, "l2": float(l2)}
    return dict(best, score_fn=_ease_scores)


def _ease_scores(B, x, side):
    del side
    return x @ B


def _popularity_scores(counts, x, side):
    del side
    return jnp.broadcast_to(counts, x.shape)


def _side_scores(params, x, side):
    del params
    return side


def evaluate_all(config, split, models: dict) -> tuple[dict, dict]:
    """Test metrics of every model in ``models`` ({name: {"params", "score_fn", "val"?}})
    and of the oracle (generated data: the true preferences). Returns (metrics, curves:
    {name: test Recall@1..100})."""
    metrics, curves, bs = {}, {}, config.eval.batch_size
    for name, m in models.items():
        r = _evaluate(split, "test", m["score_fn"], m["params"], bs)
        for k in ("recall@20", "recall@50", "ndcg@100"):
            metrics[f"test/{name}/{k}"] = r[k]
        if "val" in m:
            metrics[f"val/{name}/{SELECT}"] = m["val"]
        curves[name] = r["recall_curve"]
        log(f"{name}: test Recall@20 {r['recall@20']:.4f}  Recall@50 {r['recall@50']:.4f}  "
            f"NDCG@100 {r['ndcg@100']:.4f}  ({r['users']} users)")
    if split.truth is not None:
        truth = split.truth.scores(split.test_users, split.item_ids).astype(np.float32)
        r = _evaluate(split, "test", _side_scores, None, bs, side=truth)
        for k in ("recall@20", "recall@50", "ndcg@100"):
            metrics[f"test/oracle/{k}"] = r[k]
        curves["oracle"] = r["recall_curve"]
        log(f"oracle: test Recall@20 {r['recall@20']:.4f}  NDCG@100 {r['ndcg@100']:.4f}")
    return metrics, curves


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) the main model and the neural baseline, fits EASE and
    popularity, evaluates all on the test users, writes the figure and results.json."""
    validate(config)
    split = prepare(config, workdir)
    rows = clk.SparseRows.from_csr(split.train, batch_size=config.train.batch_size)
    main = config.model.name
    runs = {main: train_neural(config, split, main, workdir, rows)}
    models = {main: runs[main]}
    for name in config.eval.baselines:
        if name in NEURAL:
            runs[name] = train_neural(config, split, name, os.path.join(workdir, name), rows)
            models[name] = runs[name]
        elif name == "ease":
            models[name] = fit_ease(config, split)
        else:
            counts = jnp.asarray(ease.popularity_scores(split.train), jnp.float32)
            val = _evaluate(split, "val", _popularity_scores, counts,
                            config.eval.batch_size)[SELECT]
            models[name] = {"params": counts, "score_fn": _popularity_scores, "val": val}
    metrics, curves = evaluate_all(config, split, models)
    for k in ("recall@20", "recall@50", "ndcg@100"):
        metrics[f"test/{k}"] = metrics[f"test/{main}/{k}"]
    metrics["val/ndcg@100"] = runs[main]["val"]
    metrics["selected_step"] = runs[main]["step"]
    if "ease" in models:
        metrics["ease/l2"] = models["ease"]["l2"]
    if distributed.is_main_process():
        from genjax.viz import recommend as viz_rec
        baselines = {n: m["val"] for n, m in models.items() if n not in runs}
        viz_rec.curves_figure(os.path.join(workdir, "recommend_curves.png"),
                              {n: r["history"] for n, r in runs.items()}, baselines, curves,
                              title=f"{config.data.name}: {len(split.test_users):,} test users")
    return experiment.finish(workdir, config, metrics, summary=runs[main]["summary"])


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep of the main model: the split, the sparse rows, the
    step; each setting's final weights evaluated on validation and test."""
    split = prepare(config, workdir)
    b = build(config, config.model.name, split.num_items)

    def evaluate(setting_config, params):
        out = {}
        for role in ("val", "test"):
            r = _evaluate(split, role, b.score_fn, params, config.eval.batch_size)
            out.update({f"{role}/{k}": r[k] for k in ("recall@20", "recall@50", "ndcg@100")})
        return out

    return Program(init=lambda c: build(c, c.model.name, split.num_items).state,
                   step_fn=b.step_fn,
                   train_data=clk.SparseRows.from_csr(split.train,
                                                      batch_size=config.train.batch_size),
                   evaluate=evaluate)


# The seed, the optimiser's lr / weight_decay / grad_clip and the loss's anneal_cap /
# dropout / l2 live in TrainState.hparams or the init: one program for a grid over them.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields("loss.anneal_cap", "loss.dropout",
                                                     "loss.l2"),
                   validate=validate, prepare=prepare_sweep_program,
                   main_metric=("val/ndcg@100", "max"))


def sweep(config, workdir: str, axes, *, samples: int = 0, sweep_seed: int = 0,
          **options) -> dict:
    """The ``--sweep`` entry point (`genjax.train.sweep.run_sweep`)."""
    return run_sweep(config, workdir, axes, parts=SWEEP, samples=samples,
                     sweep_seed=sweep_seed, **options)


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="recommend",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs",
                                     "recommend.py"),
            description="Recommender")
