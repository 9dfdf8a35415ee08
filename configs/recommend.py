"""Recommender config: Mult-VAE / Mult-DAE (Liang et al., 2018) with EASE and popularity
baselines, on the paper's protocol. Presets (``--config=configs/recommend.py:NAME``):

  (default)  the embedded generated click matrix (`genjax.data.clicks.synthetic_clicks`:
             10,000 users x 2,000 items, known latent-factor preferences, a Zipf-like
             popularity skew), 1,000 validation and 1,000 test users; the Mult-VAE
             [I -> 600 -> 200 -> 600 -> I] for 200 epochs of batch 500, beta annealed to
             0.2, with the Mult-DAE, EASE, popularity and the oracle (the true
             preferences) in the same table; a few minutes on a 2-core CPU
  dae        the same run with the Mult-DAE as the main model (the Mult-VAE as a baseline)
  quick      seconds, for tests (2,000 users x 300 items, 20 epochs of 100, small nets)
  ml20m      the paper's ML-20M setting (10,000 validation / test users, batch 500, 200
             epochs, total_anneal_steps 200,000, cap 0.2, dropout 0.5, EASE l2 = 500)
             from GroupLens's ratings.csv: --config.data.name=movielens:/path/ratings.csv
  ml1m       ML-1M from its ratings.dat (600 validation / test users, as dawenl's ML-1M
             runs): --config.data.name=movielens:/path/ratings.dat

data.name: synthetic_clicks | movielens:PATH (ratings.csv / ratings.dat / u.data) |
movielens/<version>-ratings (TFDS, prepared offline) | csv:PATH (user,item[,rating]
with a header) | npz:PATH (`genjax.data.clicks.load_clicks`). data.heldout_users: the
number of validation users and of test users (fewer than half the users together);
data.split_seed 98765 is dawenl's. A click is a rating > data.rating_threshold; users
with fewer than data.min_user_clicks clicks are removed.

model.name "multvae" | "multdae" (the main model; eval.baselines names the others);
loss.anneal_cap (the largest beta), loss.total_anneal_steps (beta = min(cap, step / it)),
loss.dropout (input dropout of the normalised rows), loss.l2 (lam of dawenl's
lam * sum W^2 on the weight matrices of the main model: 0 for the VAE, 0.01 / batch for
the DAE; a baseline DAE takes baseline_dae.l2, a baseline VAE 0)
are in TrainState.hparams: a sweep over anneal_cap / dropout / l2 is one program.
eval.ease_l2: EASE's l2 candidates, the best on validation NDCG@100 is reported.
"""

import ml_collections

from configs import common


def _quick(c):
    c.data.update(name="synthetic_clicks", num_users=2000, num_items=300, heldout_users=200)
    c.model.update(hidden=(64,), latent=32)
    # 1,600 training users // 100 = 16 steps per epoch: 20 epochs
    c.train.update(num_steps=320, batch_size=100, steps_per_dispatch=80,
                   checkpoint_every=160, eval_every=80)
    c.loss.update(total_anneal_steps=1300)
    c.baseline_dae.update(hidden=(), latent=32, l2=1e-4)
    c.baseline_vae.update(hidden=(64,), latent=32)
    c.eval.update(ease_l2=(10.0, 100.0), batch_size=200)


def _dae(c):
    c.model.update(name="multdae", hidden=(), latent=200)
    c.loss.l2 = 0.01 / c.train.batch_size           # dawenl's lam for the Mult-DAE
    c.eval.baselines = ("multvae", "ease", "popularity")


def _ml20m(c):
    c.data.update(name="movielens:ml-20m/ratings.csv", heldout_users=10_000)
    # 116,677 training users // 500 = 233 steps per epoch (the last partial batch of each
    # epoch is dropped; dawenl's loop trains on it), 200 epochs, validation every epoch
    c.train.update(num_steps=233 * 200, steps_per_dispatch=233, eval_every=233,
                   checkpoint_every=233 * 10)
    c.loss.update(total_anneal_steps=200_000)
    c.eval.update(ease_l2=(500.0,), batch_size=500)


def _ml1m(c):
    c.data.update(name="movielens:ml-1m/ratings.dat", heldout_users=600)
    c.train.update(num_steps=10 * 200, batch_size=500, steps_per_dispatch=10,
                   eval_every=10, checkpoint_every=500)
    c.eval.update(ease_l2=(100.0, 300.0, 1000.0), batch_size=500)


PRESETS = {"quick": _quick, "dae": _dae, "ml20m": _ml20m, "ml1m": _ml1m}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/recommend.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    # num_users / num_items: the generated matrix's size (synthetic_clicks only)
    c.data = common.data(name="synthetic_clicks", preprocess="none", rating_threshold=3.5,
                         min_user_clicks=5, heldout_users=1000, split_seed=98765,
                         num_users=10_000, num_items=2_000)
    del c.data["classes"]
    c.model = ml_collections.ConfigDict(dict(name="multvae", hidden=(600,), latent=200))
    c.loss = ml_collections.ConfigDict(dict(anneal_cap=0.2, total_anneal_steps=13_000,
                                            dropout=0.5, l2=0.0))
    # the Mult-DAE trained as a baseline (or as the main model with model.name=multdae):
    # the paper's [I -> 200 -> I], lam = 0.01 / batch_size
    c.baseline_dae = ml_collections.ConfigDict(dict(hidden=(), latent=200, l2=2e-5))
    # the Mult-VAE as a baseline (:dae): the paper's [I -> 600 -> 200 -> 600 -> I], lam = 0
    c.baseline_vae = ml_collections.ConfigDict(dict(hidden=(600,), latent=200))
    c.optim = common.optim(lr=1e-3)
    # 8,000 training users // 500 = 16 steps per epoch: 200 epochs
    c.train = common.train(num_steps=3200, batch_size=500, steps_per_dispatch=80,
                           checkpoint_every=800, eval_every=80)
    # baselines: trained / fitted in the same run and reported in the same table;
    # ease_l2: EASE's candidates (the best on validation NDCG@100 is reported)
    c.eval = ml_collections.ConfigDict(dict(
        baselines=("multdae", "ease", "popularity"),
        ease_l2=(100.0, 300.0, 1000.0, 3000.0, 10000.0),
        batch_size=500))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
