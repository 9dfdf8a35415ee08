"""Full-ranking Recall@k / NDCG@k (genjax.eval.ranking) against brute-force Python loops
with the same documented conventions: ties broken by lower item index, -inf (seen) items
never recommended, NaN for users with no held-out item."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.eval import ranking

recall = jax.jit(ranking.recall_at_k, static_argnames="k")
ndcg = jax.jit(ranking.ndcg_at_k, static_argnames="k")


def brute_force(scores, heldout, k):
    """Recall@k and NDCG@k per user by sorting Python lists."""
    rec, nd = [], []
    for s, h in zip(scores.tolist(), heldout.tolist()):
        candidates = [i for i in range(len(s)) if s[i] > -math.inf]
        top = sorted(candidates, key=lambda i: (-s[i], i))[:k]
        n = sum(1 for v in h if v > 0)
        if n == 0:
            rec.append(math.nan)
            nd.append(math.nan)
            continue
        rec.append(sum(1 for i in top if h[i] > 0) / min(k, n))
        dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(top) if h[i] > 0)
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, n)))
        nd.append(dcg / idcg)
    return np.array(rec), np.array(nd)


def _users(seed, U=12, I=15):
    """Integer scores (many exact ties), disjoint seen / held-out sets, and the edge
    cases: no held-out items, one held-out item, almost everything seen."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(U, I)).astype(np.float32)
    seen = (rng.random((U, I)) < 0.3).astype(np.float32)
    heldout = ((rng.random((U, I)) < 0.3) & (seen == 0)).astype(np.float32)
    heldout[0] = 0.0                                         # no held-out items: NaN
    heldout[1] = 0.0
    heldout[1, 7] = 1.0                                      # one held-out item (< k)
    seen[1, 7] = 0.0
    seen[2] = 1.0
    seen[2, [3, 11]] = 0.0                                   # two unseen items (< k)
    heldout[2] = 0.0
    heldout[2, 11] = 1.0
    return scores, seen, heldout


@pytest.mark.parametrize("k", [1, 3, 5, 15, 20])
def test_recall_and_ndcg_match_brute_force_with_ties_and_edge_cases(k):
    for seed in range(3):
        scores, seen, heldout = _users(seed)
        masked = np.asarray(jax.jit(ranking.mask_seen)(scores, seen))
        got_r = np.asarray(recall(masked, heldout, k=k))
        got_n = np.asarray(ndcg(masked, heldout, k=k))
        want_r, want_n = brute_force(masked, heldout, k)
        np.testing.assert_allclose(got_r, want_r, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(got_n, want_n, rtol=1e-6, equal_nan=True)
        assert np.isnan(got_r[0]) and np.isnan(got_n[0])
        assert np.all(np.isfinite(got_r[1:])) and np.all((got_r[1:] >= 0) & (got_r[1:] <= 1))
        assert np.all((got_n[1:] >= 0) & (got_n[1:] <= 1 + 1e-6))


def test_ties_go_to_the_lower_item_index():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]], np.float32)
    # ranks: item 1, 2, 3 (tied, by index), then 0, 4
    for item, rank in [(1, 0), (2, 1), (3, 2), (0, 3)]:
        heldout = np.zeros_like(scores)
        heldout[0, item] = 1.0
        np.testing.assert_allclose(ndcg(scores, heldout, k=5), [1.0 / math.log2(rank + 2)],
                                   rtol=1e-6)
    heldout = np.array([[0, 0, 0, 1, 0]], np.float32)
    assert float(recall(scores, heldout, k=2)[0]) == 0.0      # item 3 loses the tie
    assert float(recall(scores, heldout, k=3)[0]) == 1.0


def test_a_hand_computed_example_with_dawenls_formulas():
    scores = np.array([[0.9, 0.8, 0.7, 0.1]], np.float32)
    heldout = np.array([[0, 1, 0, 1]], np.float32)
    assert float(recall(scores, heldout, k=2)[0]) == pytest.approx(0.5)
    assert float(ndcg(scores, heldout, k=2)[0]) == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # k = 1 with 2 held out: recall's denominator is min(k, |held-out|) = 1
    assert float(recall(scores, heldout, k=1)[0]) == 0.0
    assert float(recall(-scores, heldout, k=1)[0]) == 1.0


def test_seen_items_are_never_ranked_even_when_k_exceeds_the_unseen_items():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
    seen = np.array([[1, 0, 1, 1, 1]], np.float32)
    masked = ranking.mask_seen(scores, seen)
    assert np.all(np.isneginf(np.asarray(masked)[seen > 0]))
    np.testing.assert_array_equal(np.asarray(masked)[seen == 0], [4.0])
    # a held-out item that is also seen (not dawenl's protocol, but possible) never hits
    heldout = np.array([[1, 1, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(recall(masked, heldout, k=4), [0.5])
    np.testing.assert_allclose(ndcg(masked, heldout, k=4),
                               [1.0 / (1.0 + 1.0 / math.log2(3))], rtol=1e-6)
    heldout = np.array([[1, 0, 0, 0, 0]], np.float32)
    assert float(recall(masked, heldout, k=5)[0]) == 0.0
    assert float(ndcg(masked, heldout, k=5)[0]) == 0.0


def test_users_without_heldout_items_are_nan_and_mean_over_users_skips_them():
    scores = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    heldout = np.zeros((4, 6), np.float32)
    heldout[1, 2] = heldout[3, [0, 5]] = 1.0
    r = recall(scores, heldout, k=3)
    n = ndcg(scores, heldout, k=3)
    assert np.isnan(np.asarray(r)[[0, 2]]).all() and np.isnan(np.asarray(n)[[0, 2]]).all()
    assert float(ranking.mean_over_users(r)) == pytest.approx(float(np.nanmean(r)))
    assert float(ranking.mean_over_users(n)) == pytest.approx(np.mean(np.asarray(n)[[1, 3]]))
    assert np.isnan(float(ranking.mean_over_users(jnp.full(3, jnp.nan))))


def test_shapes_are_checked_and_k_is_static():
    with pytest.raises(ValueError, match=r"eval.ranking.recall_at_k: heldout has shape"):
        ranking.recall_at_k(jnp.zeros((2, 5)), jnp.zeros((2, 4)), k=2)
    with pytest.raises(ValueError, match=r"eval.ranking.ndcg_at_k: k = 0"):
        ranking.ndcg_at_k(jnp.zeros((2, 5)), jnp.zeros((2, 5)), k=0)
    with pytest.raises(ValueError, match=r"eval.ranking.mask_seen: seen has shape"):
        ranking.mask_seen(jnp.zeros((2, 5)), jnp.zeros((3, 5)))


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_users_batches_equal_the_brute_force_per_user(seed):
    """evaluate_users (one top-k read at every k, batches padded with empty users, the
    score function given params and per-user side rows) gives every user's brute-force
    numbers, and its means skip the users with no held-out item."""
    import scipy.sparse as sp

    scores, seen, held = _users(seed, U=13, I=15)
    side = np.asarray(scores, np.float32)
    r = ranking.evaluate_users(lambda p, x, s: s * p, sp.csr_matrix(seen), sp.csr_matrix(held),
                               params=jnp.float32(1.0), side=side, recall_ks=(3, 20),
                               ndcg_ks=(5, 100), curve_k=17, batch_size=5)
    masked = np.where(seen > 0, -np.inf, scores)
    for name, k in (("recall@3", 3), ("recall@20", 20), ("ndcg@5", 5), ("ndcg@100", 100)):
        rec, nd = brute_force(masked, held, k)
        want = rec if name.startswith("recall") else nd
        np.testing.assert_allclose(r["per_user"][name], want, rtol=1e-6, equal_nan=True)
        assert r[name] == pytest.approx(np.nanmean(want), rel=1e-6)
    assert r["users"] == int(np.sum(held.sum(1) > 0))
    for k in range(1, 18):                               # the curve is Recall@1..17
        rec, _ = brute_force(masked, held, k)
        assert r["recall_curve"][k - 1] == pytest.approx(np.nanmean(rec), rel=1e-6), k
