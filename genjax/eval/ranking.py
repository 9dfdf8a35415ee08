"""Top-k ranking metrics for recommenders, by full ranking (every item is scored, no
negative sampling), with dawenl/vae_cf's definitions (Liang et al., 2018):

  Recall@k = |top-k ∩ held-out| / min(k, |held-out|)
  NDCG@k   = DCG@k / IDCG@k,  DCG@k = sum_{r < k} held-out[item at rank r] / log2(r + 2),
             IDCG@k = sum_{r < min(k, |held-out|)} 1 / log2(r + 2)

The protocol: a test user's clicks are split into fold-in items (given to the model) and
held-out items (to be predicted); the fold-in items are removed from the ranking with
`mask_seen` before the metrics are taken.

Shapes: scores [B, I] (any real scores, higher is better, no NaN), heldout and seen [B, I]
(0/1; any positive entry counts as a click). k is a static Python int >= 1; everything is
jit-compatible (`jax.jit(recall_at_k, static_argnames="k")`).

Conventions, decided once here and used by the tests' brute force:
  * Ties are broken by item index, lower index first (`jax.lax.top_k`'s rule, and a
    stable sort by descending score): the ranking is deterministic.
  * Items scored -inf (what `mask_seen` gives the fold-in items) are never recommended:
    they count as misses even when k exceeds the number of finite scores (k is then
    larger than the list of candidates and the remaining slots stay empty). The
    denominators do not change.
  * k larger than the number of items I ranks all of them: the same numbers as k = I,
    since |held-out| <= I.
  * A user with no held-out items gets NaN (0 / 0 has no meaning there); average with
    `mean_over_users`, which skips them, as dawenl's evaluation never has such users.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from genjax.shapes import Shapes


def mask_seen(scores, seen):
    """scores [B, I] with the seen (fold-in) items, seen [B, I] > 0, set to -inf, so that
    they are never recommended. Returns [B, I] in scores' (floating) dtype."""
    s = Shapes("eval.ranking.mask_seen")
    s("scores", scores, "B I")
    s("seen", seen, "B I")
    scores = jnp.asarray(scores, jnp.result_type(scores, jnp.float32))
    return jnp.where(jnp.asarray(seen) > 0, -jnp.inf, scores)


def _top_hits(where: str, scores, heldout, k):
    """The checked inputs' top-k hits [B, min(k, I)] (1.0 where the item at rank r is
    held out and finite-scored, else 0.0, ranks in order) and |held-out| [B]."""
    s = Shapes(where)
    s.positive_int("k", k)
    s("scores", scores, "B I")
    s("heldout", heldout, "B I")
    scores = jnp.asarray(scores, jnp.result_type(scores, jnp.float32))
    relevant = jnp.asarray(heldout) > 0                                  # [B, I]
    kk = min(k, scores.shape[-1])
    top_scores, top_items = jax.lax.top_k(scores, kk)                    # [B, kk], ties: lower index first
    hit = jnp.take_along_axis(relevant, top_items, axis=-1) & (top_scores > -jnp.inf)
    return hit.astype(jnp.float32), jnp.sum(relevant, axis=-1)          # [B, kk], [B]


def recall_at_k(scores, heldout, *, k: int):
    """Recall@k per user: |top-k ∩ held-out| / min(k, |held-out|). scores [B, I],
    heldout [B, I] (0/1) -> [B] in [0, 1], NaN for users with no held-out item (see the
    module docstring for ties, -inf scores and k > I)."""
    hit, n = _top_hits("eval.ranking.recall_at_k", scores, heldout, k)
    denom = jnp.minimum(k, n).astype(jnp.float32)                        # [B]
    return jnp.where(n > 0, jnp.sum(hit, -1) / jnp.where(n > 0, denom, 1.0), jnp.nan)


def ndcg_at_k(scores, heldout, *, k: int):
    """NDCG@k per user (binary relevance): DCG@k / IDCG@k with DCG@k = sum_{r<k}
    heldout[item at rank r] / log2(r + 2) and IDCG@k = sum_{r < min(k, |held-out|)}
    1 / log2(r + 2). scores [B, I], heldout [B, I] (0/1) -> [B] in [0, 1], NaN for users
    with no held-out item (see the module docstring for ties, -inf scores and k > I)."""
    hit, n = _top_hits("eval.ranking.ndcg_at_k", scores, heldout, k)
    kk = hit.shape[-1]
    discount = 1.0 / jnp.log2(jnp.arange(2, kk + 2, dtype=jnp.float32))  # [kk]
    dcg = jnp.sum(hit * discount, axis=-1)                               # [B]
    ideal = jnp.concatenate([jnp.zeros(1), jnp.cumsum(discount)])        # [kk + 1]
    idcg = ideal[jnp.minimum(n, kk)]                                     # [B]
    return jnp.where(n > 0, dcg / jnp.where(n > 0, idcg, 1.0), jnp.nan)


def mean_over_users(values):
    """The mean of per-user metrics [U] (e.g. several batches' `recall_at_k` outputs
    concatenated), skipping the NaN of users with no held-out items; NaN if every entry
    is NaN. Returns a scalar."""
    s = Shapes("eval.ranking.mean_over_users")
    s("values", values, "U")
    return jnp.nanmean(jnp.asarray(values))


@functools.lru_cache(maxsize=64)
def metrics_program(score_fn, recall_ks: tuple, ndcg_ks: tuple, curve_k: int):
    """The compiled batch program of `evaluate_users`, built once per score function and
    k values (a run evaluates the same model every few hundred steps):
    program(params, x [B, I], heldout [B, I], side_rows or None) -> ([B] per metric in
    the order recall_ks then ndcg_ks, recall curve [B, curve_k]). One top-k at the
    largest k, from which every metric is read (the top-k of a smaller k is its prefix,
    ties included)."""
    k_max = max((*recall_ks, *ndcg_ks, curve_k))

    @jax.jit
    def metrics(params, x, held, side_rows):
        s = mask_seen(score_fn(params, x, side_rows), x)
        hit, n = _top_hits("eval.ranking.evaluate_users", s, held, k_max)    # [B, kk], [B]
        kk = hit.shape[-1]
        found = jnp.cumsum(hit, axis=-1)                                     # [B, kk]
        discount = 1.0 / jnp.log2(jnp.arange(2, kk + 2, dtype=jnp.float32))  # [kk]
        gain = jnp.cumsum(hit * discount, axis=-1)                           # [B, kk]
        ideal = jnp.concatenate([jnp.zeros(1), jnp.cumsum(discount)])        # [kk + 1]
        has = n > 0
        out = []
        for k in recall_ks:
            got = found[:, min(k, kk) - 1]
            out.append(jnp.where(has, got / jnp.maximum(jnp.minimum(k, n), 1), jnp.nan))
        for k in ndcg_ks:
            idcg = ideal[jnp.minimum(n, min(k, kk))]
            out.append(jnp.where(has, gain[:, min(k, kk) - 1] / jnp.where(has, idcg, 1.0),
                                 jnp.nan))
        curve_found = found[:, :curve_k]
        if kk < curve_k:                                 # k > I: no more items to find
            curve_found = jnp.concatenate(
                [curve_found, jnp.repeat(found[:, -1:], curve_k - kk, -1)], -1)
        ks = jnp.arange(1, curve_k + 1)
        denom = jnp.minimum(ks[None, :], n[:, None]).astype(jnp.float32)
        curve = jnp.where(has[:, None], curve_found / jnp.maximum(denom, 1.0), jnp.nan)
        return out, curve

    return metrics


def evaluate_users(score_fn, foldin, heldout, *, params=None, side=None,
                   recall_ks=(20, 50), ndcg_ks=(100,), curve_k: int = 100,
                   batch_size: int = 500) -> dict:
    """The full-ranking protocol over held-out users, batch by batch on the device.

    score_fn(params, x, side) -> scores [B, I]: a jittable function of the ``params``
    pytree (model weights, an EASE matrix, ...: an argument of the compiled program, not
    a constant baked into it), the fold-in rows x [B, I] float32 (dense) and the batch's
    rows of ``side`` (an optional host array [U, ...] of per-user inputs, e.g. the oracle's
    true scores; None when not given); foldin and heldout: [U, I] host matrices
    (scipy.sparse CSR or dense), one row per user. The fold-in items
    are masked (`mask_seen`), then Recall@k (k in recall_ks), NDCG@k (ndcg_ks) and the
    recall curve @1..curve_k are taken. Every batch has batch_size rows (the last padded
    with empty users, whose NaN are dropped), so score_fn compiles once.

    Returns {"recall@K": float, "ndcg@K": float, "recall_curve": [curve_k] float (means
    over users with held-out items), "users": int (those users), "per_user": {name: [U]}}.
    """
    import numpy as np                       # host side only
    import scipy.sparse as sp

    num = foldin.shape[0]
    if heldout.shape != foldin.shape:
        raise ValueError(f"eval.ranking.evaluate_users: foldin {foldin.shape} and heldout "
                         f"{heldout.shape} must both be [U, I]")
    if num == 0:
        raise ValueError("eval.ranking.evaluate_users: no users to evaluate")
    names = [f"recall@{k}" for k in recall_ks] + [f"ndcg@{k}" for k in ndcg_ks]
    metrics = metrics_program(score_fn, tuple(recall_ks), tuple(ndcg_ks), int(curve_k))

    def dense(m, lo, hi):
        rows = m[lo:hi]
        rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
        pad = batch_size - rows.shape[0]
        return np.pad(rows.astype(np.float32), ((0, pad), (0, 0)))

    per_user = {n: [] for n in names}
    curves = []
    for lo in range(0, num, batch_size):
        hi = min(lo + batch_size, num)
        side_rows = None if side is None else dense(side, lo, hi)
        out, curve = metrics(params, dense(foldin, lo, hi), dense(heldout, lo, hi), side_rows)
        for n, v in zip(names, out):
            per_user[n].append(np.asarray(v)[: hi - lo])
        curves.append(np.asarray(curve)[: hi - lo])
    per_user = {n: np.concatenate(v) for n, v in per_user.items()}
    curve = np.concatenate(curves)
    keep = ~np.isnan(curve[:, 0])
    if not keep.any():
        raise ValueError("eval.ranking.evaluate_users: no user has a held-out item")
    result = {n: float(np.mean(v[keep])) for n, v in per_user.items()}
    result.update(recall_curve=np.mean(curve[keep], axis=0), users=int(keep.sum()),
                  per_user=per_user)
    return result
