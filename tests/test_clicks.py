"""Click data (genjax.data.clicks): SparseRows on the device, the synthetic generator, the
loaders and their errors, the paper's split (checked against dawenl's notebook code), and
TFDS MovieLens under mock_data."""

from __future__ import annotations

import socket
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tensorflow_datasets as tfds

from genjax.data import clicks as C
from genjax.data.dataset import DatasetError
from genjax.train import batches, loop


def random_csr(n=37, items=23, seed=0, max_len=15):
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, max_len + 1, n)
    lens[5] = items                                  # one full row, one empty
    lens[9] = 0
    rows = [np.sort(rng.choice(items, k, replace=False)) for k in lens]
    indptr = np.concatenate([[0], np.cumsum(lens)])
    return sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr),
                         shape=(n, items))


@pytest.fixture(scope="module")
def default_synth():
    return C.load_clicks("synthetic_clicks", verbose=False)


@pytest.fixture(scope="module")
def small_synth():
    return C.synthetic_clicks(num_users=1500, num_items=300, seed=3, verbose=False)


# ---------------------------------------------------------------------------------
# SparseRows


def test_sparse_rows_budget_is_sum_of_largest_rows():
    m = random_csr()
    lens = np.diff(m.indptr)
    for b in (1, 4, 37):
        rows = C.SparseRows.from_csr(m, batch_size=b)
        assert rows.budget == np.sort(lens)[::-1][:b].sum()
        assert rows.row_start.dtype == rows.row_len.dtype == rows.indices.dtype == np.int32
        assert jax.tree_util.tree_leaves(rows)[0].shape == (37,)     # the loop's N


def test_take_rows_equals_dense_rows_under_jit():
    m = random_csr()
    dense = m.toarray()
    b = 8
    rows = jax.device_put(C.SparseRows.from_csr(m, batch_size=b))
    take = jax.jit(lambda d, i: d.take_rows(i))
    longest = np.argsort(np.diff(m.indptr))[::-1][:b]
    rng = np.random.default_rng(1)
    batches_ = [longest, longest[::-1], np.array([9, 9, 5, 0, 9, 1, 2, 3]),   # repeats
                np.array([5, 9, 5, 9, 9, 9, 9, 9])]
    batches_ += [rng.choice(37, b, replace=False) for _ in range(5)]
    for idx in batches_:
        out = take(rows, jnp.asarray(idx, jnp.int32))
        assert out.dtype == jnp.float32 and out.shape == (b, 23)
        np.testing.assert_array_equal(np.asarray(out), dense[idx])
        np.testing.assert_array_equal(np.asarray(rows.take_rows(idx)), dense[idx])  # eager
    np.testing.assert_array_equal(C.dense_rows(m, longest), dense[longest])
    # smaller batches fit too
    np.testing.assert_array_equal(np.asarray(take(rows, jnp.asarray(longest[:3]))),
                                  dense[longest[:3]])


def test_take_rows_refuses_oversized_batches():
    m = random_csr()
    rows = C.SparseRows.from_csr(m, batch_size=2)
    with pytest.raises(ValueError, match="larger than the batch_size 2"):
        rows.take_rows(np.arange(3))
    with pytest.raises(ValueError, match="more than the budget"):
        rows.take_rows(np.array([5, 5]))          # the full row twice, 46 > 23 + 15


def test_batches_take_dispatches_and_data_checks_pass():
    m = random_csr()
    rows = C.SparseRows.from_csr(m, batch_size=4)
    idx = jnp.array([5, 1, 9, 30], jnp.int32)
    np.testing.assert_array_equal(np.asarray(batches.take(rows, idx)), m.toarray()[idx])
    labels = np.arange(37, dtype=np.float32)
    both = batches.take({"x": rows, "y": labels}, idx)     # a SparseRows inside a pytree
    np.testing.assert_array_equal(np.asarray(both["x"]), m.toarray()[idx])
    np.testing.assert_array_equal(np.asarray(both["y"]), labels[np.asarray(idx)])
    loop.check_finite_data(rows)                             # int32 leaves pass
    loop.check_finite_data(jax.device_put({"x": rows, "y": labels}))


class _State(NamedTuple):
    step: jax.Array
    acc: jax.Array


def test_loop_chunk_trains_on_sparse_rows():
    # The compiled chunk of the shared loop (scan, permutation, take) on a SparseRows gives
    # the batches the dense matrix gives.
    m = random_csr()
    dense = m.toarray()
    b, n = 8, 37
    weights = np.arange(23, dtype=np.float32)

    def step_fn(state, batch, key):
        s = jnp.sum(batch * weights, axis=1)                            # [B]
        return _State(state.step + 1, state.acc + s.sum()), {"s": s.sum()}

    chunk = loop.make_chunk(step_fn, num_examples=n, batch_size=b, batch_sharding=None)
    seed_key = jax.random.key(4)
    state, metrics = chunk(_State(jnp.array(0), jnp.array(0.0)),
                           jax.device_put(C.SparseRows.from_csr(m, batch_size=b)),
                           seed_key, 9)
    data_key = jax.random.fold_in(seed_key, 1)
    want = [(dense[np.asarray(batches.batch_indices(data_key, t, num_examples=n,
                                                    batch_size=b))] @ weights).sum()
            for t in range(9)]
    np.testing.assert_allclose(np.asarray(metrics["s"]), want, rtol=1e-6)
    assert int(state.step) == 9


# ---------------------------------------------------------------------------------
# The synthetic generator


def test_synthetic_is_deterministic_and_every_user_has_five_clicks(small_synth):
    again = C.synthetic_clicks(num_users=1500, num_items=300, seed=3, verbose=False)
    other = C.synthetic_clicks(num_users=1500, num_items=300, seed=4, verbose=False)
    assert (small_synth.matrix != again.matrix).nnz == 0
    np.testing.assert_array_equal(small_synth.item_ids, again.item_ids)
    assert (small_synth.matrix != other.matrix).nnz > 0
    per_user = np.diff(small_synth.matrix.indptr)
    assert small_synth.num_users == 1500 and per_user.min() >= 5 and per_user.max() <= 300
    assert small_synth.stats["num_clicks"] == small_synth.matrix.nnz
    assert np.all(small_synth.matrix.data == 1)


def test_synthetic_default_size_and_popularity_skew(default_synth):
    c = default_synth
    assert c.matrix.shape == (10_000, 2_000) and 350_000 < c.matrix.nnz < 600_000
    per_item = np.sort(np.asarray(c.matrix.sum(0)).ravel())[::-1]
    share = per_item[:len(per_item) // 10].sum() / per_item.sum()
    assert share > 0.45         # measured 0.53 (items equally popular: about 0.1)


def test_synthetic_clicks_follow_the_true_scores(small_synth):
    truth = small_synth.truth
    s = truth.scores(small_synth.user_ids, small_synth.item_ids)       # [U, I]
    clicked = small_synth.matrix.toarray() > 0
    assert s[clicked].mean() > s[~clicked].mean() + 1.5
    # The oracle (rank by s) recovers clicks far better than popularity does.
    pop = clicked.sum(0)
    top = lambda scores: np.argsort(-scores, axis=1)[:, :10]          # noqa: E731
    hits = lambda t: np.take_along_axis(clicked, t, 1).mean()         # noqa: E731
    oracle, popular = hits(top(s)), hits(top(np.broadcast_to(pop, s.shape)))
    assert oracle > popular + 0.1, (oracle, popular)
    # scores() recomputes <U_u, V_i> + b_i
    np.testing.assert_allclose(truth.scores([2], [7])[0, 0],
                               truth.user_factors[2] @ truth.item_factors[7]
                               + truth.item_bias[7])


# ---------------------------------------------------------------------------------
# Loaders


# user -> [(item, rating)]: user 1 has 6 clicks (+2 low ratings), user 2 only 4 clicks
# (removed, and with it item 20, which nobody else clicked), user 3 five clicks with one
# (user, item) given twice (merged), user 4 only low ratings. Ratings > 3.5 are clicks.
ROWS = {1: [(10, 4), (11, 5), (12, 4.5), (13, 4), (14, 5), (15, 4), (16, 3), (17, 3.5)],
        2: [(10, 5), (11, 4), (12, 4), (20, 4)],
        3: [(10, 4), (11, 4), (12, 4), (18, 5), (18, 4), (19, 4)],
        4: [(10, 1), (11, 2)]}
N_ROWS = sum(len(v) for v in ROWS.values())


def _triples():
    return [(u, i, r) for u, rs in ROWS.items() for i, r in rs]


def _check_toy(c):
    assert c.matrix.shape == (2, 8)                         # users 1, 3; items 10..19 \ 17
    np.testing.assert_array_equal(c.user_ids.astype(np.int64), [1, 3])
    np.testing.assert_array_equal(c.item_ids.astype(np.int64), [10, 11, 12, 13, 14, 15, 18, 19])
    np.testing.assert_array_equal(np.diff(c.matrix.indptr), [6, 5])
    st = c.stats
    assert st["rows_read"] == N_ROWS
    assert st["rows_at_or_below_threshold"] == 4
    assert st["duplicate_clicks_merged"] == 1
    assert st["users_below_min_user_clicks"] == 1 and st["clicks_of_removed_users"] == 4
    assert st["items_left_without_clicks"] == 1             # item 20
    assert st["num_clicks"] == 11


def test_movielens_csv(tmp_path):
    p = tmp_path / "ratings.csv"
    p.write_text("userId,movieId,rating,timestamp\n"
                 + "".join(f"{u},{i},{r},99\n" for u, i, r in _triples()))
    _check_toy(C.load_clicks(f"movielens:{p}", verbose=False))
    _check_toy(C.load_clicks(f"movielens:{tmp_path}", verbose=False))    # the folder


def test_movielens_dat_and_u_data(tmp_path):
    (tmp_path / "ml1m").mkdir()
    (tmp_path / "ml100k").mkdir()
    dat = tmp_path / "ml1m" / "ratings.dat"
    dat.write_text("".join(f"{u}::{i}::{int(np.floor(r))}::978300760\n"
                           for u, i, r in _triples()))
    _check_toy(C.read_movielens(str(dat), verbose=False))
    udata = tmp_path / "ml100k" / "u.data"
    udata.write_text("".join(f"{u}\t{i}\t{int(np.floor(r))}\t881250949\n"
                             for u, i, r in _triples()))
    _check_toy(C.read_movielens(str(udata), verbose=False))


def test_own_csv_with_and_without_ratings(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("item,user,rating,extra\n"
                 + "".join(f"{i},{u},{r},x\n" for u, i, r in _triples()))
    _check_toy(C.load_clicks(f"csv:{p}", verbose=False))
    q = tmp_path / "pairs.csv"                  # no rating: every row is a click
    q.write_text("user,item\n" + "".join(f"u{u},{i}\n" for u, i, _ in _triples()))
    c = C.load_clicks(f"csv:{q}", verbose=False)
    assert list(c.user_ids) == ["u1", "u3"]     # text ids kept; u2 has 4, u4 has 2
    assert c.stats["duplicate_clicks_merged"] == 1 and "rows_at_or_below_threshold" not in c.stats
    assert c.stats["num_clicks"] == 8 + 5
    q2 = tmp_path / "cols.csv"
    q2.write_text("a,b\n" + "".join(f"{u},{i}\n" for u, i, _ in _triples()))
    c2 = C.read_csv(str(q2), user_col="a", item_col="b", min_user_clicks=2, verbose=False)
    assert c2.stats["num_users"] == 4


def test_npz_scipy_and_arrays(tmp_path):
    t = np.array(_triples(), dtype=np.float64)
    u, i, r = t[:, 0].astype(np.int64), t[:, 1].astype(np.int64), t[:, 2]
    np.savez(tmp_path / "arrays.npz", user=u, item=i, rating=r, num_items=np.int64(21))
    _check_toy(C.load_clicks(f"npz:{tmp_path / 'arrays.npz'}", verbose=False))
    keep = r > 3.5
    coo = sp.coo_matrix((np.ones(keep.sum()), (u[keep], i[keep])), shape=(5, 21))
    sp.save_npz(tmp_path / "m.npz", coo)                    # the duplicate stays in coo
    c = C.load_clicks(f"npz:{tmp_path / 'm.npz'}", verbose=False)
    np.testing.assert_array_equal(c.user_ids, [1, 3])
    np.testing.assert_array_equal(c.item_ids, [10, 11, 12, 13, 14, 15, 18, 19])
    assert c.stats["duplicate_clicks_merged"] == 1 and c.stats["num_clicks"] == 11
    assert c.stats["users_without_clicks"] == 2             # rows 0 and 4 are empty
    csr = sp.csr_matrix(coo)
    csr.data[:] = 1
    csr = sp.csr_matrix((np.r_[csr.data, 0.0], np.r_[csr.indices, 0], np.r_[csr.indptr[:-1],
                                                                        csr.nnz + 1]),
                        shape=(5, 21))                      # a stored zero in the last row
    sp.save_npz(tmp_path / "z.npz", csr)
    c = C.read_npz(str(tmp_path / "z.npz"), verbose=False)
    assert c.stats["stored_zeros_dropped"] == 1 and c.stats["num_clicks"] == 11


def test_thresholds_are_parameters(tmp_path):
    p = tmp_path / "ratings.csv"
    p.write_text("userId,movieId,rating,timestamp\n"
                 + "".join(f"{u},{i},{r},99\n" for u, i, r in _triples()))
    c = C.read_movielens(str(p), rating_threshold=2.5, min_user_clicks=1, verbose=False)
    assert c.stats["num_users"] == 3 and c.stats["num_clicks"] == 6 + 2 + 4 + 5
    # Items first: 13, 14, 15, 18, 19 and 20 have one click each; then users: 1 keeps 10,
    # 11, 12 (3), 2 keeps 3, 3 keeps 3.
    c = C.read_movielens(str(p), min_item_clicks=2, min_user_clicks=3, verbose=False)
    assert c.stats["items_below_min_item_clicks"] == 6
    assert c.stats["clicks_of_removed_items"] == 6
    assert c.matrix.shape == (3, 3) and c.stats["num_clicks"] == 9


# ---------------------------------------------------------------------------------
# Bad input


def _csv(tmp_path, text, name="ratings.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, problem", [
    ("userId,itemId,rating,timestamp\n1,2,4,0\n", "no column 'movieId'"),
    ("userId,movieId,rating,timestamp\n1,2,4,0\n1,3,x,0\n", "non-numeric values, the "
     "first 'x' on line 3"),
    ("userId,movieId,rating,timestamp\n1,2,4,0\nbob,3,4,0\n", "user id column 'user' .* "
     "non-numeric values, the first 'bob' on line 3"),
    ("userId,movieId,rating,timestamp\n1,2,4,0\n1,,4,0\n", "missing or non-finite values, "
     "the first on line 3"),
    ("userId,movieId,rating,timestamp\n1,2.5,4,0\n", "non-integer id 2.5 on line 2"),
    ("userId,movieId,rating,timestamp\n1,2,3,0\n1,3,3.5,0\n", "none of the 2 ratings is "
     "above rating_threshold=3.5 .*lower rating_threshold"),
    ("userId,movieId,rating,timestamp\n1,2,4,0\n1,3,4,0\n2,3,5,0\n", "no user has "
     "min_user_clicks=5 clicks \\(the most any user has is 2.*lower min_user_clicks"),
])
def test_movielens_csv_errors(tmp_path, text, problem):
    with pytest.raises(DatasetError, match=problem):
        C.load_clicks(f"movielens:{_csv(tmp_path, text)}", verbose=False)


def test_min_item_clicks_too_high(tmp_path):
    p = _csv(tmp_path, "userId,movieId,rating,timestamp\n1,2,4,0\n1,3,4,0\n")
    with pytest.raises(DatasetError, match="no item has min_item_clicks=3 .*lower "
                       "min_item_clicks"):
        C.read_movielens(p, min_item_clicks=3, verbose=False)


def test_dat_with_a_missing_field(tmp_path):
    p = _csv(tmp_path, "1::2::5::0\n1::3\n", name="ratings.dat")
    with pytest.raises(DatasetError, match="missing or non-finite values, the first on "
                       "line 2"):
        C.read_movielens(p, verbose=False)


def test_missing_files_name_path_and_format(tmp_path):
    gone = tmp_path / "nope"
    for prefix, expected in (("movielens", "ratings.csv"), ("csv", "header row"),
                             ("npz", "save_npz")):
        with pytest.raises(DatasetError, match=f"no such file.*{gone}.*expected.*{expected}"):
            C.load_clicks(f"{prefix}:{gone}/x.data", verbose=False)
    with pytest.raises(DatasetError, match="'x.data' is not a GroupLens file name"):
        C.read_movielens(_csv(tmp_path, "1,2\n", name="x.data"))
    with pytest.raises(DatasetError, match="Unknown click data 'mnist'"):
        C.load_clicks("mnist")
    with pytest.raises(DatasetError, match="no path after 'csv:'"):
        C.load_clicks("csv:")


def test_own_csv_errors(tmp_path):
    p = _csv(tmp_path, "user,product\n1,2\n", name="mine.csv")
    with pytest.raises(DatasetError, match="no item column 'item' \\(its header: user, "
                       "product\\); rename it or pass item_col="):
        C.read_csv(p)
    p = _csv(tmp_path, "user,item,rating\n1,2,good\n", name="mine.csv")
    with pytest.raises(DatasetError, match="rating column 'rating' .* 'good' on line 2"):
        C.read_csv(p)
    p = _csv(tmp_path, "user,item\n1,2\n,3\n", name="mine.csv")
    with pytest.raises(DatasetError, match="1 missing ids, the first on line 3"):
        C.read_csv(p)


def test_npz_errors(tmp_path):
    m = sp.csr_matrix((np.ones(2), np.array([0, 7]), np.array([0, 1, 2])), shape=(2, 5))
    sp.save_npz(tmp_path / "bad.npz", m)
    with pytest.raises(DatasetError, match="item ids in .* are out of range \\(indices "
                       "spans 0..7, the matrix is 2 users x 5 items\\)"):
        C.read_npz(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "a.npz", user=np.array([0, 1]), item=np.array([3, 9]),
             num_items=np.int64(5))
    with pytest.raises(DatasetError, match="1 item ids in .* are out of range \\(max 9, "
                       "num_items=5\\)"):
        C.read_npz(str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", user=np.array([0, 1]), item=np.array([-1, 2]))
    with pytest.raises(DatasetError, match="item ids in .* are out of range \\(min -1\\)"):
        C.read_npz(str(tmp_path / "b.npz"))
    np.savez(tmp_path / "c.npz", users=np.array([0]), item=np.array([1]))
    with pytest.raises(DatasetError, match="holds users, item; expected"):
        C.read_npz(str(tmp_path / "c.npz"))
    np.savez(tmp_path / "d.npz", user=np.array([0.5]), item=np.array([1]))
    with pytest.raises(DatasetError, match="user in .* must be integer ids"):
        C.read_npz(str(tmp_path / "d.npz"))
    (tmp_path / "e.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="cannot read .* as an .npz archive"):
        C.read_npz(str(tmp_path / "e.npz"))


# ---------------------------------------------------------------------------------
# The split


def _dawenl(df: pd.DataFrame, n_heldout: int, seed: int):
    """dawenl/vae_cf's notebook (VAE_ML20M_WWW2018), its global np.random replaced by
    RandomState(seed) at each of its np.random.seed(98765) calls."""
    unique_uid = df.groupby("userId").size().index               # user_activity.index
    idx_perm = np.random.RandomState(seed).permutation(unique_uid.size)
    unique_uid = unique_uid[idx_perm]
    n_users = unique_uid.size
    tr_users = unique_uid[:(n_users - n_heldout * 2)]
    vd_users = unique_uid[(n_users - n_heldout * 2): (n_users - n_heldout)]
    te_users = unique_uid[(n_users - n_heldout):]
    train_plays = df.loc[df["userId"].isin(tr_users)]
    unique_sid = pd.unique(train_plays["movieId"])

    def split_train_test_proportion(data, test_prop=0.2):
        rng = np.random.RandomState(seed)
        tr_list, te_list = [], []
        for _, group in data.groupby("userId"):
            n_items_u = len(group)
            if n_items_u >= 5:
                idx = np.zeros(n_items_u, dtype="bool")
                idx[rng.choice(n_items_u, size=int(test_prop * n_items_u),
                               replace=False).astype("int64")] = True
                tr_list.append(group[np.logical_not(idx)])
                te_list.append(group[idx])
            else:
                tr_list.append(group)
        return pd.concat(tr_list), pd.concat(te_list)

    out = {"train": train_plays, "items": unique_sid}
    for role, users in (("val", vd_users), ("test", te_users)):
        plays = df.loc[df["userId"].isin(users)]
        plays = plays.loc[plays["movieId"].isin(unique_sid)]
        out[role + "_foldin"], out[role + "_heldout"] = split_train_test_proportion(plays)
    return out


def _pairs(m, users, items):
    coo = m.tocoo()
    return set(zip(np.asarray(users)[coo.row].tolist(), np.asarray(items)[coo.col].tolist()))


def test_split_matches_dawenl_notebook(tmp_path):
    # synthetic clicks, plus 40 items clicked by one user each (some only by validation or
    # test users) and 30 users with 5..7 clicks, 1..3 on items of their own (those in
    # validation or test lose them and drop below 5: no held-out)
    syn = C.synthetic_clicks(num_users=600, num_items=400, seed=1, verbose=False).matrix
    rng = np.random.default_rng(0)
    coo = syn.tocoo()
    lone_users = rng.integers(0, 600, 40)
    short = [(600 + k, j) for k in range(30)          # 4 common items and 1-3 of their own
             for j in np.r_[rng.choice(400, 4, replace=False),
                            2000 + 3 * k + np.arange(int(rng.integers(1, 4)))]]
    user = np.r_[coo.row, lone_users, [u for u, _ in short]]
    item = np.r_[coo.col, 1000 + np.arange(40), [i for _, i in short]]
    np.savez(tmp_path / "c.npz", user=user, item=item)
    c = C.load_clicks(f"npz:{tmp_path / 'c.npz'}", verbose=False)
    coo = c.matrix.tocoo()                      # sorted by user then item, like ML-20M's
    df = pd.DataFrame({"userId": c.user_ids[coo.row], "movieId": c.item_ids[coo.col]})
    for seed in (98765, 5):
        s = C.split_clicks(c, n_heldout=100, seed=seed, verbose=False)
        ref = _dawenl(df, 100, seed)
        assert set(s.item_ids.tolist()) == set(ref["items"].tolist())
        pairs = lambda d: set(zip(d["userId"].tolist(), d["movieId"].tolist()))  # noqa: E731
        assert _pairs(s.train, s.train_users, s.item_ids) == pairs(ref["train"])
        for role in ("val", "test"):
            users = getattr(s, f"{role}_users")
            for part in ("foldin", "heldout"):
                got = _pairs(getattr(s, f"{role}_{part}"), users, s.item_ids)
                assert got == pairs(ref[f"{role}_{part}"]), (seed, role, part)
    # this example exercises the dropping of clicks on items no training user clicked
    assert s.stats["items_without_training_clicks"] > 0
    assert s.stats["test_clicks_on_non_training_items_dropped"] > 0
    assert s.stats["val_users_without_heldout"] + s.stats["test_users_without_heldout"] > 0


def test_split_conventions(small_synth):
    s = C.split_clicks(small_synth, n_heldout=200, verbose=False)
    t = C.split_clicks(small_synth, n_heldout=200, verbose=False)
    u = C.split_clicks(small_synth, n_heldout=200, seed=1, verbose=False)
    users = [set(s.train_users), set(s.val_users), set(s.test_users)]
    assert len(users[0]) == 1100 and len(users[1]) == len(users[2]) == 200
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    assert s.num_items == s.train.shape[1] == s.val_foldin.shape[1] == len(s.item_ids)
    assert np.all(np.diff(s.train.tocsc().indptr) > 0)      # every item has a train click
    full = small_synth.matrix
    row_of = {uid: r for r, uid in enumerate(small_synth.user_ids)}
    col_of = {iid: j for j, iid in enumerate(small_synth.item_ids)}
    cols = np.array([col_of[i] for i in s.item_ids])
    for role in ("val", "test"):
        fold, held = getattr(s, f"{role}_foldin"), getattr(s, f"{role}_heldout")
        assert fold.multiply(held).nnz == 0                  # disjoint per user
        for r, uid in enumerate(getattr(s, f"{role}_users")):
            n = fold[r].nnz + held[r].nnz
            assert held[r].nnz == (int(0.2 * n) if n >= 5 else 0)
            np.testing.assert_array_equal((fold[r] + held[r]).toarray()[0],
                                          full[row_of[uid]].toarray()[0, cols])
    for a, b in ((s.train, t.train), (s.test_heldout, t.test_heldout)):
        assert (a != b).nnz == 0
    np.testing.assert_array_equal(s.test_users, t.test_users)
    assert set(u.test_users) != set(s.test_users)
    # the oracle's scores line up with the split's rows and columns
    assert s.truth.scores(s.test_users, s.item_ids).shape == (200, s.num_items)


def test_split_drops_and_counts():
    # items 0..2 clicked by everybody; item 3 only by user 5, who ends up validation or
    # test at n_heldout=2 of 6 with this seed, and user 4 has only 4 clicks left.
    rows = [[0, 1, 2, 4, 5]] * 4 + [[0, 1, 2, 3, 6]] + [[0, 1, 2, 3, 4, 5, 6]]
    m = sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32), np.concatenate(rows),
                       np.r_[0, np.cumsum([len(r) for r in rows])]), shape=(6, 7))
    c = C._clicks_from_pairs("toy", np.arange(6), np.arange(7), None, matrix=m,
                             rating_threshold=3.5, min_user_clicks=5, min_item_clicks=0,
                             verbose=False)
    for seed in range(50):
        s = C.split_clicks(c, n_heldout=1, seed=seed, verbose=False)
        if 3 not in s.item_ids and 6 not in s.item_ids:
            break
    else:
        pytest.fail("no seed put users 4 and 5 outside training")
    assert s.stats["items_without_training_clicks"] == 2
    dropped = (s.stats["val_clicks_on_non_training_items_dropped"]
               + s.stats["test_clicks_on_non_training_items_dropped"])
    assert dropped == 4
    assert s.stats["val_users_without_heldout"] + s.stats["test_users_without_heldout"] == 1
    short = 4 if 4 in s.val_users else None
    if short is not None:
        assert s.val_heldout[list(s.val_users).index(4)].nnz == 0


def test_split_arguments(small_synth):
    s = C.split_clicks(small_synth, n_heldout=0.1, verbose=False)
    assert len(s.val_users) == len(s.test_users) == 150
    for bad, msg in ((750, "leaves no training user of 1500"), (0, "leaves no training"),
                     (0.5, "a fraction in \\(0, 0.5\\)"), (True, "a count or a fraction")):
        with pytest.raises(DatasetError, match=msg):
            C.split_clicks(small_synth, n_heldout=bad, verbose=False)


# ---------------------------------------------------------------------------------
# TFDS MovieLens


def _movielens_source(self, split, decoders=None, deserialize_method=None, **kwargs):
    """A stand-in for tfds' MovieLens ratings: 40 users x 5..9 movies, ids as bytes (as
    the real ArrayRecord source gives them) and ratings 1..5."""
    rng = np.random.default_rng(0)
    out = []
    for u in range(40):
        for m in rng.choice(30, int(rng.integers(5, 10)), replace=False):
            out.append({"user_id": str(u + 1).encode(), "movie_id": str(m + 1).encode(),
                        "user_rating": np.float32(rng.choice([3.0, 4.0, 5.0], p=[.1, .45,
                                                                                 .45])),
                        "timestamp": np.int64(0)})
    return out


def test_tfds_movielens_under_mock_data():
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=_movielens_source):
        c = C.load_clicks("movielens/100k-ratings", verbose=False)
    assert c.user_ids.dtype == np.int64 and c.item_ids.dtype == np.int64
    assert c.stats["rows_at_or_below_threshold"] > 0 and c.stats["num_users"] > 10
    s = C.split_clicks(c, n_heldout=5, verbose=False)
    assert isinstance(s, C.ClickSplit) and s.test_heldout.shape == (5, s.num_items)
    # tfds' own random mock: random string ids, ratings in [0, 1): nothing is a click
    with tfds.testing.mock_data(num_examples=30, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(DatasetError, match="none of the 30 ratings is above "
                           "rating_threshold=3.5"):
            C.load_clicks("movielens/1m-ratings", verbose=False)


def test_tfds_movielens_not_prepared(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DatasetError, match="'movielens/1m-ratings' is not prepared in .*"
                       "movielens:PATH"):
        C.load_clicks("movielens/1m-ratings", data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="movielens/<version>-ratings"):
        C.load_clicks("movielens/1m-movies")
