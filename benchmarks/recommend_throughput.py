"""Mult-VAE recommender throughput (Liang et al. 2018) at ML-20M's scale: genjax's compiled
training loop and full-ranking evaluation against PyTorch computing the same loss and
metrics from the same weights.

    python -m benchmarks.recommend_throughput [--out=benchmarks/results/recommend_throughput.json]
        [--steps=10] [--repeats=3] [--eval-users=2500] [--quick]

**Data** (generated, seed 0; ML-20M itself is not needed): the paper's ML-20M after its
preprocessing has 136,677 users x 20,108 items and 10.0M clicks (density 0.36%). This
benchmark draws the 116,677 training users of the paper's split (136,677 minus 10,000
validation and 10,000 test users) and ``--eval-users`` test users over 20,108 items, at
density 0.00364 (73 clicks per user on average) with `generate_clicks`:

* clicks per user n_u = clip(round(5 + m * exp(sigma * xi_u)), 5, I / 2), xi_u ~ N(0, 1),
  sigma = 1 and m set so that the mean is density * I (a log-normal tail as MovieLens's);
* item popularity Zipf-like, p_i proportional to rank_i^-1 (rank a random permutation of
  1..I); each user's n_u distinct items drawn with those probabilities (with-replacement
  draws, duplicates removed and the shortfall drawn again, up to 12 rounds; what is
  left short is counted in the JSON's ``data``);
* test users: int(0.2 n_u) of their clicks held out at random, the rest folded in (the
  paper's 80/20 split).

The click matrix stays a CSR on the host and in both trainers; the whole data set is
never dense.

**Training** (users per second, the batch of 500 users as the paper):

* genjax: the experiment's own step, ``experiments.recommend.build(config, "multvae",
  I)`` with ``configs/recommend.py:ml20m`` (hidden 600, latent 200, tanh, dropout 0.5 on
  the L2-normalised rows, multinomial log-likelihood + beta * KL, beta annealed over
  200,000 steps up to 0.2, Adam lr 1e-3), on `genjax.data.clicks.SparseRows` (each batch
  densified inside the compiled step, as in training), ``--steps`` steps per dispatch of
  `genjax.train.loop.make_chunk` (the training loop's scan of steps, compiled ahead of
  time; compile time reported apart).
* torch: the same model written for PyTorch (eager, ``torch.set_num_threads(<cores>)``),
  weights copied from genjax's initial ones, ``torch.optim.Adam`` with the same lr /
  betas / eps, the same beta annealing; each batch of a per-epoch randperm densified per
  step from the CSR's index arrays (torch tensors: repeat_interleave + one scatter;
  torch's sparse CSR tensors have no row index_select on the CPU).

**Evaluation** (users per second, full ranking of every item, batches of 500): the
fold-in rows scored without dropout and with z = mean, the fold-in items masked to -inf,
the top 100 taken, Recall@20, Recall@50 and NDCG@100 (dawenl's definitions).

* genjax: `genjax.eval.ranking.evaluate_users`'s computation (its jitted metrics program
  with the recall curve @1..100 the experiment asks for, and its host densification of
  each batch with scipy), the jitted program compiled once
  (`genjax.eval.ranking.metrics_program`, cached per score function; the first
  `evaluate_users` call, compilation included, is reported as ``evaluate_users_call_s``).
* torch: the same computation (``torch.topk``), batches densified from index arrays.

**Breakdown** (where the time goes), timed in the same rounds: genjax's densification
alone (`SparseRows.take_rows` of one batch, jitted), torch's alone, and the step's matmuls
alone (`benchmarks.common.dots_timer` over the step's 11 matmul shapes, one compiled
loop: the matmul floor of a step).

Contenders run round-robin (`benchmarks.common.interleaved`, ``--repeats`` rounds after
one warm-up round) and every number is a median over rounds; the JSON records the share of
the CPUs other processes used meanwhile.

**Peak memory**: each framework, in a child process of its own (the genjax one imports
no torch, the torch one no jax), loads the data, trains one dispatch (of 2 steps: the
buffers do not grow with the steps) and evaluates the test users, and reports its peak
resident set size (VmHWM from /proc/self/status on Linux, where getrusage's ru_maxrss
would start from the parent's size at fork) after imports and data loading
(``setup_rss_bytes``) and at the end (``peak_rss_bytes``); the difference is the
framework's working memory (for genjax, XLA's compiler's memory included). jax's own
estimate of the compiled chunk's buffers (``memory_analysis``) is recorded alongside.

**Peer check** (before timing; in the JSON): from the same weights on one training batch,
(1) without noise (dropout rate 0, z = mean: ``mult_vae_loss(train=False)`` and the torch
twin's eval path) the losses agree to rtol 1e-5 and the gradients to 1e-4 of each
tensor's largest magnitude; (2) the timed genjax step (dropout 0.5, sampled z, beta
annealing at step 20,000, Adam) against the torch step given genjax's dropout mask and
noise: same loss, same parameters after the update; (3) on the test users the scores
agree and the metrics of evaluate_users, of the benchmark's hoisted program and of torch
agree user by user.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

# `benchmarks.common`, jax and torch are imported inside functions: the memory children
# must each load only their own framework.

DEFAULT_OUT = os.path.join("benchmarks", "results", "recommend_throughput.json")
TARGETS = {"train_speedup_vs_torch": 1.5}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ML-20M after the paper's preprocessing (Liang et al. 2018, table 1)
ML20M = dict(num_users=136_677, num_items=20_108, clicks=10_000_000, heldout_users=10_000)
FULL = dict(train_users=ML20M["num_users"] - 2 * ML20M["heldout_users"],
            num_items=ML20M["num_items"],
            density=ML20M["clicks"] / (ML20M["num_users"] * ML20M["num_items"]),
            eval_users=2500, steps=10, repeats=3)
QUICK = dict(train_users=2000, num_items=1000, density=0.02, eval_users=500, steps=2,
             repeats=2)
BATCH = 500                          # the paper's batch size, training and evaluation
TOP_K = 100
LOSS_RTOL = 1e-5                     # peer check: loss, relative
GRAD_RTOL = 1e-4                     # peer check: gradients, relative to |g|max per tensor
SCORE_RTOL = 1e-5                    # peer check: scores, relative to |score|max
METRIC_ATOL = 1e-3                   # peer check: means over users of every metric
MEMORY_STEPS = 2                     # steps per dispatch in the memory children
PEER_STEP = 20_000                   # the step at which the peer step check anneals beta
METRICS = ("recall@20", "recall@50", "ndcg@100")


# ------------------------------------------------------------------------------- data

def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based np.unique is several times slower on
    millions of int64)."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def generate_clicks(num_users: int, num_items: int, *, density: float, seed: int = 0,
                    zipf_exponent: float = 1.0, sigma: float = 1.0, min_clicks: int = 5,
                    rounds: int = 12):
    """A random binary click matrix (module docstring): CSR float32 [num_users, num_items]
    of ones, sorted indices, and stats. Log-normal clicks per user with mean density * I,
    distinct items per user drawn from a Zipf-like popularity: every user's clicks drawn
    with replacement, duplicates removed, and the shortfall drawn again (1.5 / the user's
    untaken probability mass times as many draws, the surplus dropped at random) until
    every user has their count (``rounds`` at most; what is left short is counted)."""
    rng = np.random.default_rng(seed)
    mean = density * num_items
    if mean <= min_clicks:
        raise ValueError(f"density {density} gives {mean:.1f} clicks per user on average; "
                         f"it must be more than min_clicks = {min_clicks}")
    cap = max(min_clicks, num_items // 2)
    median_extra = (mean - min_clicks) / math.exp(sigma ** 2 / 2)       # log-normal mean
    want = np.clip(np.rint(min_clicks + median_extra
                           * np.exp(sigma * rng.standard_normal(num_users))),
                   min_clicks, cap).astype(np.int64)                    # [U]
    rank = rng.permutation(num_items) + 1.0
    p = rank ** -zipf_exponent
    cdf = np.cumsum(p / p.sum())

    def draw(users):                                    # user * I + item keys, i.i.d.
        items = np.minimum(np.searchsorted(cdf, rng.random(len(users)), side="right"),
                           num_items - 1)
        return users * num_items + items

    base = _sorted_unique(draw(np.repeat(np.arange(num_users, dtype=np.int64), want)))
    extra = np.zeros(0, np.int64)                       # sorted, disjoint from base
    deficit = want - np.bincount(base // num_items, minlength=num_users)
    p = p / p.sum()
    for _ in range(rounds):
        short = np.flatnonzero(deficit)
        if not len(short):
            break
        # each short user's untaken probability mass: enough draws to find the rest
        keys = np.concatenate([base, extra])
        taken = np.bincount(keys // num_items, weights=p[keys % num_items],
                            minlength=num_users)[short]
        free = np.maximum(1.0 - taken, 1e-6)
        n_draw = np.ceil(1.5 * deficit[short] / free).astype(np.int64) + 4
        new = _sorted_unique(draw(np.repeat(short, np.minimum(n_draw, 64 * num_items))))
        for known in (base, extra):                     # drop items the user already has
            pos = np.minimum(np.searchsorted(known, new), max(len(known) - 1, 0))
            new = new[known[pos] != new] if len(known) else new
        user = new // num_items
        order = np.lexsort((rng.random(len(new)), user))  # a random order per user
        first = np.searchsorted(user[order], user[order])  # each user's first position
        keep = order[np.arange(len(new)) - first < deficit[user[order]]]
        extra = _sorted_unique(np.concatenate([extra, new[keep]]))
        deficit -= np.bincount(user[keep], minlength=num_users)
    keys = _sorted_unique(np.concatenate([base, extra]))
    rows, cols = keys // num_items, keys % num_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num_users))])
    m = sp.csr_matrix((np.ones(len(cols), np.float32), cols.astype(np.int32), indptr),
                      shape=(num_users, num_items))
    per_item = np.sort(np.bincount(cols, minlength=num_items))[::-1]
    per_user = np.diff(indptr)
    stats = {"users": num_users, "items": num_items, "clicks": int(m.nnz),
             "density": m.nnz / (num_users * num_items),
             "clicks_per_user": {"mean": float(per_user.mean()),
                                 "median": float(np.median(per_user)),
                                 "max": int(per_user.max()), "min": int(per_user.min())},
             "clicks_short_of_target": int(deficit.sum()),
             "top_10pct_items_share_of_clicks":
                 float(per_item[:max(1, num_items // 10)].sum() / max(m.nnz, 1)),
             "items_never_clicked": int((per_item == 0).sum())}
    return m, stats


def fold_in_split(m: sp.csr_matrix, *, fraction: float = 0.2, seed: int = 1):
    """(fold-in, held-out) CSR matrices: int(fraction * n) of each row's n clicks held out
    at random (the paper's split of a test user)."""
    rng = np.random.default_rng(seed)
    n = np.diff(m.indptr)
    row = np.repeat(np.arange(m.shape[0]), n)
    order = np.lexsort((rng.random(m.nnz), row))          # each row's clicks shuffled
    rank = np.arange(m.nnz) - m.indptr[row[order]]
    held = np.zeros(m.nnz, bool)
    held[order] = rank < (fraction * n[row[order]]).astype(np.int64)

    def part(mask):
        out = sp.csr_matrix((m.data * mask, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        out.eliminate_zeros()
        return out

    return part(~held), part(held)


def make_data(train_users: int, num_items: int, density: float, eval_users: int):
    """(train CSR, test fold-in CSR, test held-out CSR, stats): the generated matrix's
    first ``train_users`` rows train, the next ``eval_users`` are test users."""
    t = time.perf_counter()
    m, stats = generate_clicks(train_users + eval_users, num_items, density=density)
    foldin, heldout = fold_in_split(m[train_users:])
    stats.update(train_users=train_users, test_users=eval_users,
                 test_foldin_clicks=int(foldin.nnz), test_heldout_clicks=int(heldout.nnz),
                 generate_s=time.perf_counter() - t)
    return m[:train_users].tocsr(), foldin, heldout, stats


def model_config(batch_size: int = BATCH):
    """configs/recommend.py:ml20m (the paper's Mult-VAE and schedule) with batch 500
    (configs import neither jax nor torch)."""
    from configs import recommend as rc
    config = rc.get_config("ml20m")
    config.train.batch_size = batch_size          # a locked config takes existing fields
    return config


def layer_sizes(config, num_items: int) -> list[tuple[int, int]]:
    """(in, out) of every dense layer: encoder I -> 600 -> 2 Z, decoder Z -> 600 -> I."""
    z, hidden = config.model.latent, list(config.model.hidden)
    enc, dec = [num_items, *hidden, 2 * z], [z, *reversed(hidden), num_items]
    return list(zip(enc[:-1], enc[1:])) + list(zip(dec[:-1], dec[1:]))


# ------------------------------------------------------------------------------ genjax

def genjax_training(config, rows, steps: int):
    """The experiment's Mult-VAE step in `make_chunk`'s compiled scan of ``steps`` steps
    on `SparseRows` ``rows``. Returns (run, built, params0, info): run() trains one chunk
    from where the last ended and returns the chunk's metrics (host); params0 are the
    initial weights (host copies); info holds lower_s, compile_s and jax's memory
    analysis of the chunk."""
    import jax

    from experiments import recommend as er
    from genjax.train.loop import make_chunk

    b = er.build(config, "multvae", rows.num_items)
    params0 = jax.device_get(b.state.params)
    state = jax.tree_util.tree_map(lambda a: a.copy(), jax.device_put(b.state))
    data = jax.device_put(rows)
    key = jax.random.key(config.seed)
    chunk = make_chunk(b.step_fn, num_examples=rows.num_rows,
                       batch_size=int(config.train.batch_size), batch_sharding=None)
    t = time.perf_counter()
    lowered = chunk.lower(state, data, key, steps)
    t_lower = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    info = {"lower_s": t_lower, "compile_s": time.perf_counter() - t}
    try:
        ma = compiled.memory_analysis()
        info["xla_memory_analysis_bytes"] = {
            k: int(getattr(ma, f"{k}_size_in_bytes")) for k in
            ("argument", "output", "alias", "temp", "generated_code")}
    except Exception:            # noqa: BLE001  (not every backend reports it)
        info["xla_memory_analysis_bytes"] = None
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], data, key)
        metrics = jax.device_get(metrics)
        if not np.all(np.isfinite(metrics["loss"])):
            raise FloatingPointError("genjax loss became non-finite in the benchmark")
        return metrics

    return run, b, params0, info


def genjax_metrics_program(score_fn):
    """`genjax.eval.ranking.evaluate_users`'s jitted per-batch program (mask the fold-in
    items, Recall@20/50, NDCG@100, recall curve @1..100), built once per score_fn."""
    from experiments import recommend as er
    from genjax.eval import ranking

    ks = er.KS
    program = ranking.metrics_program(score_fn, tuple(ks["recall_ks"]), tuple(ks["ndcg_ks"]),
                                      int(ks["curve_k"]))
    return lambda params, x, held: program(params, x, held, None)


def genjax_evaluator(score_fn, params, foldin, heldout, batch_size: int):
    """run() -> {metric: per-user [U]}: evaluate_users's loop (scipy densification of each
    batch on the host, the last padded) with its program compiled once."""
    import jax

    metrics = genjax_metrics_program(score_fn)
    params = jax.device_put(params)
    num = foldin.shape[0]

    def dense(m, lo, hi):
        rows = m[lo:hi].toarray().astype(np.float32)
        return np.pad(rows, ((0, batch_size - rows.shape[0]), (0, 0)))

    def run():
        out = {k: [] for k in METRICS}
        for lo in range(0, num, batch_size):
            hi = min(lo + batch_size, num)
            vals, _ = metrics(params, dense(foldin, lo, hi), dense(heldout, lo, hi))
            for k, v in zip(METRICS, vals):
                out[k].append(np.asarray(v)[:hi - lo])
        return {k: np.concatenate(v) for k, v in out.items()}

    return run


def genjax_densify(rows, batch_size: int, seed: int = 0):
    """run(): `SparseRows.take_rows` of one batch of distinct random rows, jitted."""
    import jax

    take = jax.jit(lambda d, i: d.take_rows(i))
    data = jax.device_put(rows)
    idx = jax.device_put(np.random.default_rng(seed).permutation(rows.num_rows)[:batch_size]
                         .astype(np.int32))
    jax.block_until_ready(take(data, idx))
    return lambda: jax.block_until_ready(take(data, idx))


# ------------------------------------------------------------------------------- torch

def _torch():
    import torch     # only the benchmark imports torch; genjax never does
    return torch


def make_torch_multvae(num_items: int, hidden=(600,), latent: int = 200):
    """The Mult-VAE in PyTorch, parameters named as genjax's (encoder.0.weight ...):
    encoder I -> hidden -> 2 Z (tanh between layers), decoder Z -> hidden -> I."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    enc, dec = [num_items, *hidden, 2 * latent], [latent, *reversed(hidden), num_items]

    class TorchMultVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.latent = latent
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:]))
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))

        @staticmethod
        def _run(layers, h):
            for i, layer in enumerate(layers):
                h = layer(h)
                if i < len(layers) - 1:
                    h = torch.tanh(h)
            return h

        def encode(self, h):
            out = self._run(self.encoder, h)                               # [B, 2 Z]
            return out[:, :self.latent], out[:, self.latent:]

        def decode_logits(self, z):
            return self._run(self.decoder, z)                              # [B, I]

        def loss(self, x, *, beta, dropout=0.5, train=True, mask=None, eps=None):
            """mean_B[-sum_i x_i log softmax(logits)_i + beta KL(q || N(0, I))], nats.
            train: inverted dropout on the L2-normalised rows (``mask`` [B, I] bool: the
            kept entries, drawn when None) and z = mean + exp(log_var / 2) eps (``eps``
            [B, Z], drawn when None); else no dropout and z = mean."""
            h = F.normalize(x, dim=1)
            if train:
                if mask is None:
                    h = F.dropout(h, p=dropout, training=True)
                else:
                    h = torch.where(mask, h / (1.0 - dropout), torch.zeros_like(h))
            mean, log_var = self.encode(h)
            if train:
                eps = torch.randn_like(mean) if eps is None else eps
                z = mean + torch.exp(0.5 * log_var) * eps
            else:
                z = mean
            logits = self.decode_logits(z)
            neg_ll = -(F.log_softmax(logits, dim=1) * x).sum(1)             # [B]
            kl = 0.5 * (torch.exp(log_var) + mean ** 2 - 1.0 - log_var).sum(1)
            return (neg_ll + beta * kl).mean()

        def scores(self, x):
            """Ranking scores [B, I]: normalised rows, no dropout, z = mean."""
            return self.decode_logits(self.encode(F.normalize(x, dim=1))[0])

    return TorchMultVAE()


def torch_twin_of(config, num_items: int, params):
    """The torch Mult-VAE holding exactly the genjax ``params``."""
    from benchmarks import torch_twin
    model = make_torch_multvae(num_items, tuple(config.model.hidden), config.model.latent)
    return torch_twin.load_genjax_params(model, params)


class TorchRows:
    """A CSR matrix as torch index tensors; ``dense(idx)`` builds rows idx as float32
    [B, I] of 0/1 (repeat_interleave + one scatter)."""

    def __init__(self, m: sp.csr_matrix):
        torch = _torch()
        self.indptr = torch.from_numpy(m.indptr.astype(np.int64))
        self.indices = torch.from_numpy(m.indices.astype(np.int64))
        self.num_rows, self.num_items = m.shape

    def dense(self, idx):
        torch = _torch()
        starts = self.indptr[idx]
        lens = self.indptr[idx + 1] - starts                                  # [B]
        rows = torch.repeat_interleave(torch.arange(len(idx)), lens)          # [nnz_b]
        first = torch.repeat_interleave(starts - (torch.cumsum(lens, 0) - lens), lens)
        cols = self.indices[first + torch.arange(len(first))]
        x = torch.zeros(len(idx), self.num_items)
        x[rows, cols] = 1.0
        return x


def torch_training(model, config, trows: TorchRows, steps: int, *, threads: int):
    """run(): ``steps`` eager training steps (Adam, beta annealed as genjax's), batches of
    a per-epoch randperm densified per step; returns the last loss."""
    torch = _torch()
    torch.manual_seed(config.seed)
    o, lo = config.optim, config.loss
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps)
    bsz, n = int(config.train.batch_size), trows.num_rows
    cap, total, rate = float(lo.anneal_cap), int(lo.total_anneal_steps), float(lo.dropout)
    holder = {"perm": torch.randperm(n), "pos": 0, "count": 0}

    def run():
        torch.set_num_threads(threads)
        model.train()
        for _ in range(steps):
            if holder["pos"] + bsz > n:
                holder["perm"], holder["pos"] = torch.randperm(n), 0
            x = trows.dense(holder["perm"][holder["pos"]:holder["pos"] + bsz])
            holder["pos"] += bsz
            beta = min(cap, holder["count"] / total) if total > 0 else cap
            loss = model.loss(x, beta=beta, dropout=rate)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            holder["count"] += 1
        loss = float(loss.detach())
        if not math.isfinite(loss):
            raise FloatingPointError("torch loss became non-finite in the benchmark")
        return loss

    return run


def torch_evaluator(model, foldin: TorchRows, heldout: TorchRows, batch_size: int, *,
                    threads: int):
    """run() -> {metric: per-user [U]}: the full-ranking evaluation in torch (score, mask
    the fold-in items, torch.topk(100), Recall@20/50, NDCG@100)."""
    torch = _torch()
    disc = 1.0 / torch.log2(torch.arange(2, TOP_K + 2, dtype=torch.float32))   # [K]
    ideal = torch.cat([torch.zeros(1), torch.cumsum(disc, 0)])                # [K + 1]

    def batch_metrics(x, held):
        s = model.scores(x).masked_fill_(x > 0, -math.inf)                    # [B, I]
        top_s, top_i = torch.topk(s, min(TOP_K, s.shape[1]), dim=1)
        hit = (held.gather(1, top_i) > 0) & (top_s > -math.inf)               # [B, K]
        hit = hit.float()
        n = (held > 0).sum(1)                                                 # [B]
        out = {}
        for k in (20, 50):
            out[f"recall@{k}"] = hit[:, :k].sum(1) / torch.clamp(torch.minimum(
                torch.tensor(k), n), min=1)
        dcg = (hit * disc[:hit.shape[1]]).sum(1)
        out["ndcg@100"] = dcg / torch.clamp(ideal[torch.clamp(n, max=hit.shape[1])],
                                            min=1e-30)
        return {k: torch.where(n > 0, v, torch.nan) for k, v in out.items()}

    def run():
        torch.set_num_threads(threads)
        model.eval()
        out = {k: [] for k in METRICS}
        with torch.inference_mode():
            for lo in range(0, foldin.num_rows, batch_size):
                idx = torch.arange(lo, min(lo + batch_size, foldin.num_rows))
                vals = batch_metrics(foldin.dense(idx), heldout.dense(idx))
                for k in METRICS:
                    out[k].append(vals[k].numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    return run


def torch_densify(trows: TorchRows, batch_size: int, seed: int = 0):
    torch = _torch()
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(trows.num_rows)
                           [:batch_size].astype(np.int64))
    return lambda: trows.dense(idx)


# -------------------------------------------------------------------------- peer check

def _max_rel(a: dict, b: dict) -> float:
    """The largest |a - b| over each tensor, relative to that tensor's largest |a|."""
    return max(float(np.max(np.abs(a[k] - b[k])) / (np.max(np.abs(a[k])) + 1e-30))
               for k in a)


def peer_check(config, built, params0, train: sp.csr_matrix, foldin, heldout) -> dict:
    """Checks (module docstring) that the torch twin is genjax's model: no-noise loss and
    gradients, the timed step with genjax's noise, evaluation scores and metrics."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from benchmarks import torch_twin
    from experiments import recommend as er
    from genjax import random as grandom
    from genjax.eval import ranking
    from genjax.losses import recommend as rl
    torch = _torch()

    num_items = train.shape[1]
    bsz = min(int(config.train.batch_size), train.shape[0])
    x = np.asarray(train[:bsz].toarray(), np.float32)
    xt = torch.from_numpy(x)
    paths = list(torch_twin.flat_params(params0))
    cap, total = float(config.loss.anneal_cap), int(config.loss.total_anneal_steps)
    out = {"batch_users": bsz, "tolerances": {
        "loss_rtol": LOSS_RTOL, "grad_rtol_of_tensor_max": GRAD_RTOL,
        "score_rtol_of_max": SCORE_RTOL, "metric_mean_atol": METRIC_ATOL}}

    # (1) no noise: dropout 0, z = mean
    def loss0(params, x):
        m = nnx.merge(built.graphdef, params)
        return rl.mult_vae_loss(x, None, encode=m.encode, decode_logits=m.decode_logits,
                                beta=cap, dropout_rate=0.0, train=False)[0]

    lj, gj = jax.jit(jax.value_and_grad(loss0))(params0, jnp.asarray(x))
    model = torch_twin_of(config, num_items, params0)
    lt = model.loss(xt, beta=cap, dropout=0.0, train=False)
    lt.backward()
    gt = torch_twin.torch_grads_as_genjax(model, paths)
    gj = torch_twin.flat_params(gj)
    lj, lt = float(lj), float(lt.detach())
    out["no_noise"] = {"beta": cap, "loss_genjax": lj, "loss_torch": lt,
                       "loss_rel_diff": abs(lj - lt) / abs(lj),
                       "grad_max_rel_diff": _max_rel(gj, gt)}
    out["no_noise"]["ok"] = bool(out["no_noise"]["loss_rel_diff"] <= LOSS_RTOL
                                 and out["no_noise"]["grad_max_rel_diff"] <= GRAD_RTOL)

    # (2) the timed step (dropout, sampled z, annealed beta, Adam) with genjax's noise
    state = jax.tree_util.tree_map(lambda a: a.copy(), jax.device_put(built.state))
    state = state._replace(step=jnp.asarray(PEER_STEP, state.step.dtype))
    key = jax.random.key(1234)
    new_state, metrics = jax.jit(built.step_fn)(state, jnp.asarray(x), key)
    k_drop, k_z = jax.random.split(key)                 # as mult_vae_loss splits the key
    rate = float(config.loss.dropout)
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = np.asarray(grandom.bernoulli(k_drop, keep, x.shape))
    eps = np.asarray(grandom.normal(k_z, (bsz, config.model.latent), jnp.float32))
    beta = min(cap, PEER_STEP / total) if total > 0 else cap
    model = torch_twin_of(config, num_items, params0)
    o = config.optim
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps)
    lt = model.loss(xt, beta=beta, dropout=rate, mask=torch.from_numpy(mask.copy()),
                    eps=torch.from_numpy(eps.copy()))
    opt.zero_grad()
    lt.backward()
    opt.step()
    pj = torch_twin.flat_params(new_state.params)
    pt = torch_twin.torch_params_as_genjax(model, paths)
    lr = float(o.lr)
    moved = [np.abs(pj[k] - pt[k]) > 0.01 * lr for k in paths]
    lj, lt = float(metrics["loss"]), float(lt.detach())
    out["train_step"] = {
        "step": PEER_STEP, "beta": beta, "beta_genjax": float(metrics["beta"]),
        "dropout": rate, "loss_genjax": lj, "loss_torch": lt,
        "loss_rel_diff": abs(lj - lt) / abs(lj),
        "params_after_adam_step_max_rel_diff": _max_rel(pj, pt),
        # Adam's first step moves each weight by about lr * sign(g): where |g| is at
        # rounding level the signs may differ; a wrong gradient or lr moves nearly all
        "params_after_adam_step_frac_differing":
            float(sum(m.sum() for m in moved) / sum(m.size for m in moved))}
    ts = out["train_step"]
    ts["ok"] = bool(ts["loss_rel_diff"] <= LOSS_RTOL and abs(ts["beta_genjax"] - beta) < 1e-7
                    and ts["params_after_adam_step_frac_differing"] < 1e-3)

    # (3) evaluation on the test users: scores and metrics, user by user; the one call of
    # evaluate_users is timed (its first call compiles the program, later calls reuse it)
    xf = np.asarray(foldin[:bsz].toarray(), np.float32)
    sj = np.asarray(jax.jit(built.score_fn)(params0, jnp.asarray(xf), None))
    model = torch_twin_of(config, num_items, params0)
    with torch.inference_mode():
        st = model.scores(torch.from_numpy(xf)).numpy()
    t = time.perf_counter()
    per = {"evaluate_users": ranking.evaluate_users(
        built.score_fn, foldin, heldout, params=params0, batch_size=BATCH, **er.KS)["per_user"]}
    call_s = time.perf_counter() - t
    per["genjax_hoisted"] = genjax_evaluator(built.score_fn, params0, foldin, heldout, BATCH)()
    per["torch"] = torch_evaluator(model, TorchRows(foldin), TorchRows(heldout), BATCH,
                                   threads=torch.get_num_threads())()
    means = {name: {k: float(np.nanmean(v[k])) for k in METRICS} for name, v in per.items()}
    ev = {"users": foldin.shape[0], "evaluate_users_call_s": call_s,
          "score_max_rel_diff": float(np.max(np.abs(sj - st)) / np.max(np.abs(sj))),
          "means": means}
    for name in ("genjax_hoisted", "torch"):
        for k in METRICS:
            a, b = per["evaluate_users"][k], per[name][k]
            ev[f"{name}_vs_evaluate_users_{k}_mean_abs_diff"] = abs(
                means[name][k] - means["evaluate_users"][k])
            ev[f"{name}_vs_evaluate_users_{k}_users_differing"] = int(np.sum(
                ~np.isclose(a, b, rtol=0, atol=1e-6, equal_nan=True)))
    ev["ok"] = bool(ev["score_max_rel_diff"] <= SCORE_RTOL and all(
        v <= METRIC_ATOL for k, v in ev.items() if k.endswith("mean_abs_diff")))
    out["evaluation"] = ev
    out["ok"] = bool(out["no_noise"]["ok"] and ts["ok"] and ev["ok"])
    return out


# ----------------------------------------------------------------------- memory child

def _rss_bytes() -> int:
    """This process's peak resident set size so far: VmHWM of /proc/self/status on Linux
    (getrusage's ru_maxrss there starts from the parent's size at fork, which would count
    the benchmark's own memory), else ru_maxrss (macOS: bytes)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024                 # kB
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _save_data(path: str, train, foldin, heldout) -> None:
    arrays = {}
    for name, m in (("train", train), ("foldin", foldin), ("heldout", heldout)):
        arrays.update({f"{name}_indptr": m.indptr, f"{name}_indices": m.indices,
                       f"{name}_shape": np.asarray(m.shape)})
    np.savez(path, **arrays)


def _load_data(path: str):
    with np.load(path) as f:
        return [sp.csr_matrix((np.ones(len(f[f"{n}_indices"]), np.float32),
                               f[f"{n}_indices"], f[f"{n}_indptr"]),
                              shape=tuple(f[f"{n}_shape"]))
                for n in ("train", "foldin", "heldout")]


def memory_child(framework: str, data_path: str, steps: int, batch_size: int) -> dict:
    """In a fresh process: load the data, train one dispatch of ``steps`` steps and
    evaluate the test users with ``framework`` alone; peak RSS after setup and at the
    end."""
    train, foldin, heldout = _load_data(data_path)
    if framework == "genjax":
        import jax

        from genjax.data import clicks as clk
        from genjax.eval import ranking
        from experiments import recommend as er
        jax.devices()
        setup = _rss_bytes()
        config = model_config(batch_size)
        run, built, _, _ = genjax_training(
            config, clk.SparseRows.from_csr(train, batch_size=batch_size), steps)
        state_params = jax.device_get(built.state.params)
        run()
        ranking.evaluate_users(built.score_fn, foldin, heldout, params=state_params,
                               batch_size=BATCH, **er.KS)
    elif framework == "torch":
        torch = _torch()
        threads = _cores()
        torch.set_num_threads(threads)
        setup = _rss_bytes()
        config = model_config(batch_size)
        model = make_torch_multvae(train.shape[1], tuple(config.model.hidden),
                                   config.model.latent)
        torch_training(model, config, TorchRows(train), steps, threads=threads)()
        torch_evaluator(model, TorchRows(foldin), TorchRows(heldout), BATCH,
                        threads=threads)()
    else:
        raise ValueError(f"unknown framework {framework!r}")
    peak = _rss_bytes()
    return {"setup_rss_bytes": setup, "peak_rss_bytes": peak, "working_bytes": peak - setup,
            "steps": steps, "jax_loaded": "jax" in sys.modules,
            "torch_loaded": "torch" in sys.modules}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure_memory(train, foldin, heldout, *, steps: int, batch_size: int,
                   timeout: int = 900) -> dict:
    """{framework: memory_child's record} for genjax and torch, each in its own process."""
    out = {"method": "peak RSS (VmHWM of /proc/self/status; getrusage's ru_maxrss where "
                     "there is no /proc) of a child process per framework "
                     "that loads the data, trains one dispatch and evaluates the test users; "
                     "working_bytes = peak - the peak after imports and data loading"}
    with tempfile.TemporaryDirectory(prefix="recommend-bench-") as tmp:
        path = os.path.join(tmp, "data.npz")
        _save_data(path, train, foldin, heldout)
        # both at once (the peaks are per process; mostly imports and compiles, one core each)
        procs = {fw: subprocess.Popen(
            [sys.executable, "-m", "benchmarks.recommend_throughput", f"--memory-child={fw}",
             f"--child-data={path}", f"--steps={steps}", f"--batch-size={batch_size}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for fw in ("genjax", "torch")}
        try:
            for fw, proc in procs.items():
                stdout, stderr = proc.communicate(timeout=timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"the {fw} memory child failed:\n{stderr[-3000:]}")
                line = [ln for ln in stdout.splitlines() if ln.startswith("MEMORY ")][-1]
                out[fw] = json.loads(line[len("MEMORY "):])
        finally:                      # a failed or timed-out child leaves none behind
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return out


# -------------------------------------------------------------------------- benchmark

def run_benchmark(*, train_users: int, num_items: int, density: float, eval_users: int,
                  steps: int, repeats: int, batch_size: int = BATCH, quick: bool = False,
                  breakdown: bool = True, memory: bool = True, pause_s: float = 0.05) -> dict:
    import jax

    from benchmarks import common
    from genjax.data import clicks as clk
    torch = _torch()
    cores = common.core_count()
    torch.set_num_threads(cores)

    train, foldin, heldout, data_stats = make_data(train_users, num_items, density,
                                                   eval_users)
    config = model_config(batch_size)
    rows = clk.SparseRows.from_csr(train, batch_size=batch_size)
    data_stats["sparse_rows_budget"] = rows.budget
    layers = layer_sizes(config, num_items)

    run_gj, built, params0, compile_info = genjax_training(config, rows, steps)
    peer = peer_check(config, built, params0, train, foldin, heldout)
    if not peer["ok"]:
        print("WARNING: the torch peer does not match genjax: " + json.dumps(peer),
              file=sys.stderr)

    model = torch_twin_of(config, num_items, params0)
    trows = TorchRows(train)
    run_tt = torch_training(model, config, trows, steps, threads=cores)
    # evaluation with the initial weights on both sides (throughput does not depend on them)
    eval_gj = genjax_evaluator(built.score_fn, params0, foldin, heldout, BATCH)
    eval_model = torch_twin_of(config, num_items, params0)
    eval_tt = torch_evaluator(eval_model, TorchRows(foldin), TorchRows(heldout), BATCH,
                              threads=cores)

    fns = {"genjax_train": run_gj, "torch_train": run_tt,
           "genjax_eval": eval_gj, "torch_eval": eval_tt}
    matmul_flops = None
    if breakdown:
        d_gj, d_tt = genjax_densify(rows, batch_size), torch_densify(trows, batch_size)
        fns["genjax_densify"] = lambda: [d_gj() for _ in range(steps)]
        fns["torch_densify"] = lambda: [d_tt() for _ in range(steps)]
        dots = common.dense_training_dots(batch_size, layers)
        fns["step_matmuls"], matmul_flops = common.dots_timer(dots, iters=steps)
    with common.CpuContention() as contention:
        times = common.interleaved(fns, repeats=repeats, warmup=1, pause_s=pause_s)
    med = {k: float(np.median(v)) for k, v in times.items()}

    train_rate = {k: steps * batch_size / med[f"{k}_train"] for k in ("genjax", "torch")}
    eval_rate = {k: eval_users / med[f"{k}_eval"] for k in ("genjax", "torch")}
    ratio_train = train_rate["genjax"] / train_rate["torch"]
    record = {
        "benchmark": "recommend_throughput",
        "quick": quick,
        "config": {
            "model": "Mult-VAE [I -> 600 -> 200 (x2: mean, log_var) -> 600 -> I], tanh, "
                     "L2-normalised input with dropout 0.5, multinomial log-likelihood + "
                     "beta KL (configs/recommend.py:ml20m)",
            "num_items": num_items, "layers": [list(l) for l in layers],
            "hidden": list(config.model.hidden), "latent": config.model.latent,
            "batch_size": batch_size, "eval_batch_size": BATCH, "top_k": TOP_K,
            "optimizer": {k: config.optim[k] for k in ("name", "lr", "b1", "b2", "eps")},
            "dropout": config.loss.dropout, "anneal_cap": config.loss.anneal_cap,
            "total_anneal_steps": config.loss.total_anneal_steps,
            "steps_per_dispatch": steps, "repeats": repeats,
            "jax_backend": jax.default_backend(), "jax_devices": jax.device_count(),
            "torch_threads": cores,
            "torch_densify": "per step from the CSR's index tensors (repeat_interleave + "
                             "scatter)",
            "genjax_densify": "inside the compiled step (SparseRows.take_rows)",
            "scale": ("quick (tiny, for the smoke test)" if quick else
                      "ML-20M: 136,677 users (116,677 train + 10,000 val + 10,000 test) x "
                      "20,108 items, 10.0M clicks; here the train users and "
                      f"{eval_users} test users are generated"),
        },
        "data": dict(data_stats, generator="generate_clicks: log-normal clicks per user "
                     "(min 5, sigma 1, mean density * I, cap I/2), distinct items from a "
                     "Zipf-like popularity rank^-1; test users 80/20 fold-in/held-out; "
                     "seed 0"),
        "training": {
            "genjax_users_per_s": train_rate["genjax"],
            "torch_users_per_s": train_rate["torch"],
            "genjax_over_torch": ratio_train,
            "genjax_steps_per_s": steps / med["genjax_train"],
            "torch_steps_per_s": steps / med["torch_train"],
            "genjax_block_s": common.summarize(times["genjax_train"]),
            "torch_block_s": common.summarize(times["torch_train"]),
            "genjax_lower_s": compile_info["lower_s"],
            "genjax_compile_s": compile_info["compile_s"],
        },
        "evaluation": {
            "users": eval_users,
            "genjax_users_per_s": eval_rate["genjax"],
            "torch_users_per_s": eval_rate["torch"],
            "genjax_over_torch": eval_rate["genjax"] / eval_rate["torch"],
            "genjax_block_s": common.summarize(times["genjax_eval"]),
            "torch_block_s": common.summarize(times["torch_eval"]),
            "evaluate_users_call_s": peer["evaluation"]["evaluate_users_call_s"],
            "evaluate_users_note": "the first genjax.eval.ranking.evaluate_users call "
                                   "of a score function compiles its program (cached "
                                   "for later calls); this end-to-end call includes "
                                   "that compile, the users/s above do not",
        },
        "peer_check": peer,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": {**TARGETS,
                    "train_speedup_vs_torch_met": bool(
                        ratio_train >= TARGETS["train_speedup_vs_torch"]),
                    "note": "CPU target: genjax >= 1.5x torch on training users/s"},
    }
    if breakdown:
        step_g, step_t = med["genjax_train"] / steps, med["torch_train"] / steps
        dens_g, dens_t = med["genjax_densify"] / steps, med["torch_densify"] / steps
        mm = med["step_matmuls"] / steps
        record["breakdown"] = {
            "genjax_step_s": step_g, "torch_step_s": step_t,
            "genjax_densify_s": dens_g, "torch_densify_s": dens_t,
            "step_matmuls_s": mm, "step_matmul_flops": matmul_flops / steps,
            "step_matmuls_flops_per_s": matmul_flops / med["step_matmuls"],
            "genjax_rest_s": step_g - dens_g - mm, "torch_rest_s": step_t - dens_t - mm,
            "note": "per step, medians; densify timed alone (one batch), step_matmuls = "
                    "the step's 11 matmul shapes alone in one compiled loop (jax); rest = "
                    "step - densify - matmuls (element-wise work, softmax, Adam, "
                    "dispatch; negative when the matmuls ran faster inside the step)",
        }
    record["memory"] = {"genjax_xla_chunk_buffers_bytes":
                        compile_info["xla_memory_analysis_bytes"]}
    if memory:
        record["memory"].update(measure_memory(train, foldin, heldout, steps=MEMORY_STEPS,
                                               batch_size=batch_size))
    return record


def summary_text(r: dict) -> str:
    c, tr, ev, t = r["config"], r["training"], r["evaluation"], r["targets"]
    d, p = r["data"], r["peer_check"]
    ok = lambda met: "met" if met else "NOT met"          # noqa: E731
    lines = [
        f"Mult-VAE {c['num_items']:,} items, {d['train_users']:,} train users "
        f"({d['clicks']:,} clicks, density {d['density']:.4f}), batch {c['batch_size']}; "
        f"medians of {c['repeats']} interleaved rounds, {c['steps_per_dispatch']} steps "
        "per block",
        f"  training   genjax {tr['genjax_users_per_s']:9.0f} users/s   torch "
        f"{tr['torch_users_per_s']:9.0f} users/s   genjax / torch = "
        f"{tr['genjax_over_torch']:.2f}x (target {t['train_speedup_vs_torch']}x: "
        f"{ok(t['train_speedup_vs_torch_met'])}); compile {tr['genjax_compile_s']:.1f} s apart",
        f"  evaluation genjax {ev['genjax_users_per_s']:9.0f} users/s   torch "
        f"{ev['torch_users_per_s']:9.0f} users/s   genjax / torch = "
        f"{ev['genjax_over_torch']:.2f}x ({ev['users']} users; one evaluate_users call "
        f"with its compile {ev['evaluate_users_call_s']:.1f} s)",
    ]
    if "breakdown" in r:
        b = r["breakdown"]
        lines.append(
            f"  per step   genjax {b['genjax_step_s'] * 1e3:.0f} ms (densify "
            f"{b['genjax_densify_s'] * 1e3:.1f} ms), torch {b['torch_step_s'] * 1e3:.0f} ms "
            f"(densify {b['torch_densify_s'] * 1e3:.1f} ms); the step's matmuls alone "
            f"{b['step_matmuls_s'] * 1e3:.0f} ms ({b['step_matmuls_flops_per_s'] / 1e9:.0f} "
            "GFLOP/s)")
    m = r["memory"]
    if "genjax" in m:
        lines.append("  peak RSS   " + ", ".join(
            f"{fw} {m[fw]['peak_rss_bytes'] / 2**20:.0f} MiB (working "
            f"{m[fw]['working_bytes'] / 2**20:.0f} MiB)" for fw in ("genjax", "torch")))
    nn, st, e = p["no_noise"], p["train_step"], p["evaluation"]
    lines.append(
        f"  peer check {'ok' if p['ok'] else 'FAILED'}: no-noise loss rel diff "
        f"{nn['loss_rel_diff']:.1e}, grads {nn['grad_max_rel_diff']:.1e}; step loss "
        f"{st['loss_rel_diff']:.1e}, params after Adam {st['params_after_adam_step_max_rel_diff']:.1e}; "
        f"scores {e['score_max_rel_diff']:.1e}")
    from benchmarks import common
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    from benchmarks import common
    p = common.base_parser("benchmarks.recommend_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved rounds (default 3; 2 with --quick)",
                           quick_help="2,000 users x 1,000 items, seconds, for smoke tests")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed dispatch (default 10; 4 with --quick)")
    p.add_argument("--eval-users", type=int, default=None,
                   help="test users ranked per timed evaluation (default 2500; 500 with "
                        "--quick)")
    p.add_argument("--batch-size", type=int, default=BATCH, help="training batch (500)")
    p.add_argument("--no-breakdown", action="store_true",
                   help="skip the densify / matmul breakdown")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory child processes")
    import argparse
    p.add_argument("--memory-child", choices=("genjax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--child-data", help=argparse.SUPPRESS)
    return common.parse_positive(p, argv, ("steps", "repeats", "eval_users", "batch_size"))


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if any(a.startswith("--memory-child") for a in argv):
        # a memory child: parse without importing benchmarks.common (it imports jax)
        opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        rec = memory_child(opts["memory-child"], opts["child-data"], int(opts["steps"]),
                           int(opts["batch-size"]))
        print("MEMORY " + json.dumps(rec), flush=True)
        return rec
    args = parse_args(argv)
    from benchmarks import common
    sizes = dict(QUICK if args.quick else FULL)
    steps = args.steps or sizes["steps"]
    repeats = args.repeats or sizes["repeats"]
    eval_users = args.eval_users or sizes["eval_users"]
    if args.batch_size > sizes["train_users"]:
        raise SystemExit(f"error: --batch-size={args.batch_size} is more than the "
                         f"{sizes['train_users']} training users")
    record = run_benchmark(train_users=sizes["train_users"], num_items=sizes["num_items"],
                           density=sizes["density"], eval_users=eval_users, steps=steps,
                           repeats=repeats, batch_size=args.batch_size, quick=args.quick,
                           breakdown=not args.no_breakdown, memory=not args.no_memory)
    return common.finish(args.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
