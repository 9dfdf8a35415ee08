"""Click data for recommenders (Mult-VAE, EASE): a binary users x items matrix kept sparse
on the host, the paper's split, and `SparseRows`, the same matrix on the device.

    clicks = load_clicks("synthetic_clicks")          # or "movielens/20m-ratings",
    split = split_clicks(clicks, n_heldout=1_000)     # "movielens:/data/ml-20m/ratings.csv"
    rows = SparseRows.from_csr(split.train, batch_size=500)
    state, summary = train(state, step_fn, rows, ...)  # batches.take -> rows.take_rows(idx)

**On the host** a click matrix is a ``scipy.sparse.csr_matrix`` ``float32 [U, I]`` of
ones, indices sorted within each row, no duplicates, never dense (ML-20M: about 136,000
users x 20,000 items, 10M clicks, 80 MB as CSR against 11 GB dense). `Clicks` is one
such matrix with the original user and item ids of its rows and columns (rows in
increasing user id, columns in increasing item id; only users and items with clicks
left after filtering) and a ``stats`` dict.

**Sources** (`load_clicks(name)`):

* ``synthetic_clicks``: the embedded generator (`synthetic_clicks`, below), offline.
* ``movielens/<version>-ratings`` (e.g. ``movielens/1m-ratings``, ``100k``, ``20m``,
  ``25m``, ``latest-small``): TFDS, read through ``tfds.data_source`` without
  TensorFlow from a directory prepared as ArrayRecord (`genjax.data.tfds_source`), never
  downloaded; features ``user_id``, ``movie_id`` (strings of the GroupLens integer ids)
  and ``user_rating``. Every record is decoded in Python (tens of microseconds each), so
  ML-20M/25M take many minutes this way: for those, prefer the GroupLens file.
* ``movielens:PATH``: a GroupLens file, told apart by its name (or a folder holding one):
  ``ratings.csv`` (ML-20M/25M/latest: ``userId,movieId,rating,timestamp`` with a header),
  ``ratings.dat`` (ML-1M/10M: ``user::movie::rating::timestamp``, no header), ``u.data``
  (ML-100K: tab-separated ``user item rating timestamp``, no header). Ids must be
  integers and ratings numbers.
* ``csv:PATH``: your own comma-separated (user, item[, rating]) file with a header row
  naming the columns (``user``, ``item`` and, optionally, ``rating`` by default; other
  columns are ignored). Ids are integers or text (kept as given); with a rating column
  the rating threshold applies, without one every row is a click.
* ``npz:PATH``: either a matrix written by ``scipy.sparse.save_npz`` (rows are users
  0..U-1, columns items 0..I-1; every stored non-zero entry is a click, stored zeros are
  dropped and counted), or ``np.savez(PATH, user=..., item=...)`` with non-negative
  integer ids of equal length and optionally ``rating`` (numbers, thresholded) and
  ``num_items`` (a scalar: item ids must be below it).

Pandas (a dependency of mlxtend, pinned in requirements.lock) parses the text files:
ML-20M's 20M lines take about 10 s and 1-2 GB.

**Preprocessing** (Liang et al. 2018, dawenl/vae_cf's notebook ``filter_triplets`` with
its defaults): a rating strictly above ``rating_threshold`` = 3.5 is a click (on 1..5
stars: 4 and 5); duplicate (user, item) clicks are merged into one; items with fewer than
``min_item_clicks`` = 0 clicks are removed (no filter by default, as in the paper), then
users with fewer than ``min_user_clicks`` = 5, once, in that order (removing users can
leave an item with fewer clicks, as in the notebook). Every count goes into ``stats``
and one log line; input that cannot be read is a one-line `DatasetError` naming the
file, the row and what to fix, and so is an empty result (naming the threshold to lower).

**The split** (`split_clicks`), exactly dawenl's, with ``seed`` = 98765 reproducing it:

1. the U users (in increasing user id) are permuted by
   ``np.random.RandomState(seed).permutation(U)``; the last ``n_heldout`` are test users,
   the ``n_heldout`` before them validation users, the rest training users (10,000 and
   10,000 on ML-20M; ``n_heldout`` may also be a fraction of U);
2. the items are those clicked by a training user, re-indexed 0..I-1 in increasing
   original id (the notebook numbers them in order of first appearance in the file: the
   columns differ by a permutation, which changes no metric); validation and test
   clicks on other items are dropped (counted), and a user left without clicks is
   dropped (counted);
3. for the validation users, then for the test users, with a fresh
   ``np.random.RandomState(seed)`` each time, in increasing user id: a user with
   ``n >= 5`` clicks (after step 2) holds out
   ``rng.choice(n, size=int(0.2 * n), replace=False)`` of them (positions in increasing
   item id, i.e. the file's order for ML-20M) and folds in the rest; a user with fewer
   than 5 folds in all and holds out nothing (an empty held-out row: ranking metrics
   must skip such users; counted in stats).

Rows of every split matrix follow the permuted order (the notebook's ``uid``); fold-in
and held-out rows of one user are disjoint and their union is the user's clicks.

**The synthetic generator** (`synthetic_clicks`, the ``synthetic_clicks`` default:
10,000 users x 2,000 items, about 450,000 clicks, made in about 2 s), with
``rng = np.random.default_rng(seed)`` drawing, in this order:

* user factors ``U_u ~ N(0, (pref_scale^2 / sqrt(d)) I_d)`` [num_users, d] and item
  factors ``V_i ~ N(0, (1 / sqrt(d)) I_d)`` [num_items, d] (so ``<U_u, V_i>`` has
  standard deviation ``pref_scale`` = 2), d = ``dim`` = 16;
* a popularity bias ``b_i = -zipf_exponent * log(rank_i)`` with ``rank`` a random
  permutation of 1..num_items (Zipf-like: popularity ~ rank^-1.2, unrelated to the
  item's index); the true preference score is ``s[u, i] = <U_u, V_i> + b_i``;
* each user's number of clicks
  ``n_u = clip(round(min_clicks + median_extra_clicks * exp(clicks_sigma * xi_u)),
  min_clicks, max_clicks)``, ``xi_u ~ N(0, 1)`` (log-normal tail: 5, 25, 1.0, capped at
  400; median 30, mean about 45);
* per block of 1,000 users, Gumbel noise ``g ~ Gumbel(0, 1)`` [block, num_items]; user u
  clicks the ``n_u`` items of largest ``s[u] / temperature + g[u]`` (temperature 1):
  a draw without replacement from ``softmax(s[u] / temperature)`` (Gumbel top-k).

The result carries a `ClickTruth` (the factors and bias) whose ``scores(users, items)``
gives ``s``: ranking by it is the oracle (the best possible expected recall). On the
default with ``split_clicks(n_heldout=1000)`` (seed 98765), the test users' Recall@20 /
NDCG@100 (dawenl's definitions) measured 0.536 / 0.578 for the oracle and 0.291 / 0.318
for ranking by training popularity; the top 10% of items hold 53% of the clicks.

**On the device**, `SparseRows` holds a CSR matrix as a pytree (``row_start``,
``row_len`` [N] int32, ``indices`` [nnz] int32); the loop's ``batches.take(data, idx)``
calls its ``take_rows(idx)``, which builds the dense ``float32 [B, num_items]`` batch
inside the compiled step with static shapes: a budget of M slots, M = the sum of the B
largest row lengths (enough for any B distinct rows), each slot mapped to its (row,
position) by ``searchsorted`` over the batch's cumulative lengths, the unused ones
dropped by the scatter.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
import sys
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from genjax.data.dataset import DatasetError

RATING_THRESHOLD = 3.5     # a rating strictly above it is a click
MIN_USER_CLICKS = 5        # dawenl's min_uc
MIN_ITEM_CLICKS = 0        # dawenl's min_sc (0: no filter)
HELDOUT_FRACTION = 0.2     # test_prop
MIN_CLICKS_TO_HOLD_OUT = 5  # users with fewer fold in everything
SPLIT_SEED = 98765         # the notebook's seed
SYNTHETIC = "synthetic_clicks"
PREFIXES: tuple[str, ...] = ("movielens:", "csv:", "npz:")
MOVIELENS_FILES: tuple[str, ...] = ("ratings.csv", "ratings.dat", "u.data")
NPZ_ARRAY_KEYS: tuple[str, ...] = ("user", "item", "rating", "num_items")
TFDS_PREFIX = "movielens/"
READ_BATCH_SIZE = 4096
DENSE_LIMIT = 1 << 28      # dense_rows refuses more elements (1 GiB of float32)

_FORMATS = {
    "movielens": "a GroupLens ratings.csv (userId,movieId,rating,timestamp), ratings.dat "
                 "(user::movie::rating::timestamp) or u.data (tab-separated)",
    "csv": "a CSV with a header row and columns user,item[,rating]",
    "npz": "an .npz written by scipy.sparse.save_npz, or np.savez with arrays user, item "
           "[, rating, num_items]",
}


def _log(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


# ---------------------------------------------------------------------------------
# Host containers.


@dataclasses.dataclass(frozen=True, eq=False)
class ClickTruth:
    """The synthetic generator's true preferences: ``s[u, i] = <U_u, V_i> + b_i``.

    Attributes:
      user_factors: float64 [num_users, d], rows by user id (0..num_users-1).
      item_factors: float64 [num_items, d], rows by item id.
      item_bias: float64 [num_items], ``-zipf_exponent * log(rank)``.
      temperature: the softmax temperature the clicks were drawn at.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    temperature: float

    def scores(self, users, items=None) -> np.ndarray:
        """True scores float64 [len(users), len(items)] for original user and item ids
        (``items=None``: every item). Ranking a row by them is the oracle ranking."""
        users = np.asarray(users, np.int64)
        items = (np.arange(len(self.item_bias)) if items is None
                 else np.asarray(items, np.int64))
        return self.user_factors[users] @ self.item_factors[items].T + self.item_bias[items]


@dataclasses.dataclass(frozen=True, eq=False)
class Clicks:
    """A filtered binary click matrix on the host.

    Attributes:
      name: where it came from (``synthetic_clicks``, ``movielens:PATH``, ...).
      matrix: ``scipy.sparse.csr_matrix`` float32 [U, I] of ones, sorted indices.
      user_ids: [U] original user ids of the rows, increasing.
      item_ids: [I] original item ids of the columns, increasing.
      stats: counts of the preprocessing (rows read, below threshold, duplicates
        merged, users and items removed, what is left).
      truth: the generator's `ClickTruth` (synthetic data only), else ``None``.
    """

    name: str
    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    stats: dict
    truth: ClickTruth | None = None

    @property
    def num_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def num_items(self) -> int:
        return self.matrix.shape[1]


@dataclasses.dataclass(frozen=True, eq=False)
class ClickSplit:
    """The paper's split (`split_clicks`). Every matrix is a CSR float32 of ones with
    ``num_items`` columns (the training items); validation and test users have one row
    in their fold-in and held-out matrices (the same row order), disjoint per user.

    Attributes:
      train: [N_train, I] training users' clicks.
      val_foldin, val_heldout: [N_val, I] (held-out rows may be empty: users with < 5).
      test_foldin, test_heldout: [N_test, I].
      num_items: I.
      item_ids: [I] original ids of the columns.
      train_users, val_users, test_users: original ids of each matrix's rows.
      stats: the loader's stats plus the split's counts.
      truth: the generator's `ClickTruth` (synthetic only): the oracle scores of the test
        users are ``truth.scores(test_users, item_ids)``.
    """

    train: sp.csr_matrix
    val_foldin: sp.csr_matrix
    val_heldout: sp.csr_matrix
    test_foldin: sp.csr_matrix
    test_heldout: sp.csr_matrix
    num_items: int
    item_ids: np.ndarray
    train_users: np.ndarray
    val_users: np.ndarray
    test_users: np.ndarray
    stats: dict
    truth: ClickTruth | None = None


def dense_rows(matrix, rows=None) -> np.ndarray:
    """Host helper: rows ``rows`` (default all) of a sparse matrix as float32 [len, I].
    Refuses more than 2^28 elements (1 GiB): evaluate a large set in batches."""
    m = sp.csr_matrix(matrix)
    n = m.shape[0] if rows is None else len(rows)
    if n * m.shape[1] > DENSE_LIMIT:
        raise ValueError(f"dense_rows of {n} rows x {m.shape[1]} items is {n * m.shape[1]:,} "
                         f"elements (limit {DENSE_LIMIT:,}); take fewer rows at a time")
    sub = m if rows is None else m[np.asarray(rows)]
    return sub.toarray().astype(np.float32)


# ---------------------------------------------------------------------------------
# On the device.


@dataclasses.dataclass(frozen=True, eq=False)
class SparseRows:
    """A CSR click matrix on the device, a pytree whose first leaf is [N] (the loop reads
    the number of examples from it). ``take_rows(idx)`` gathers dense batches.

    Attributes:
      row_start: int32 [N], offset of each row's first click in ``indices``.
      row_len: int32 [N], clicks per row.
      indices: int32 [nnz], item (column) of each click.
      num_items: static, the number of columns.
      batch_size: static, the largest batch ``take_rows`` accepts.
      budget: static, slots per batch: the sum of the ``batch_size`` largest row lengths.
    """

    row_start: Any
    row_len: Any
    indices: Any
    num_items: int
    batch_size: int
    budget: int

    @classmethod
    def from_csr(cls, matrix, *, batch_size: int) -> "SparseRows":
        """From a scipy sparse matrix [N, I] (entries are clicks whatever their value),
        for batches of at most ``batch_size`` distinct rows. Leaves are host numpy arrays;
        `jax.device_put` (or the loop) moves them."""
        m = sp.csr_matrix(matrix)
        if not m.has_canonical_format:          # never merge into the caller's matrix
            m = m.copy()
            m.sum_duplicates()
        n, num_items = m.shape
        if not isinstance(batch_size, (int, np.integer)) or not 0 < batch_size <= n:
            raise ValueError(f"batch_size must be an int in 1..{n} (the number of rows), "
                             f"got {batch_size!r}")
        if m.nnz == 0:
            raise DatasetError(f"the click matrix [{n}, {num_items}] holds no clicks")
        if m.nnz >= 2**31:
            raise DatasetError(f"{m.nnz:,} clicks exceed int32 offsets; split the matrix")
        row_len = np.diff(m.indptr).astype(np.int32)
        budget = int(np.sort(row_len)[n - int(batch_size):].sum())
        return cls(row_start=m.indptr[:-1].astype(np.int32), row_len=row_len,
                   indices=m.indices.astype(np.int32), num_items=int(num_items),
                   batch_size=int(batch_size), budget=max(budget, 1))

    @property
    def num_rows(self) -> int:
        return int(self.row_start.shape[0])

    def take_rows(self, idx, dtype=jnp.float32):
        """Dense rows ``idx`` (int [B], B <= batch_size): ``dtype`` [B, num_items] of 0/1.

        Jit-compatible with static shapes (B x budget work). Any B distinct rows fit the
        budget; repeated ids fit while their total length does (checked when ``idx`` and
        the leaves are concrete; under jit a batch past the budget would lose its last
        clicks, which batches of distinct rows never do).
        """
        idx = jnp.asarray(idx, jnp.int32)
        b = idx.shape[0]
        if b > self.batch_size:
            raise ValueError(f"a batch of {b} rows is larger than the batch_size "
                             f"{self.batch_size} this SparseRows was built for; rebuild it "
                             f"with SparseRows.from_csr(..., batch_size={b})")
        self._check_budget(idx)
        lens = self.row_len[idx]                                      # [B]
        starts = self.row_start[idx]                                  # [B]
        ends = jnp.cumsum(lens)                                       # [B] inclusive
        slot = jnp.arange(self.budget, dtype=jnp.int32)               # [M]
        row = jnp.searchsorted(ends, slot, side="right").astype(jnp.int32)  # [M] 0..B
        r = jnp.minimum(row, b - 1)                                   # B: an unused slot
        pos = starts[r] + slot - (ends[r] - lens[r])                  # [M]
        col = self.indices[jnp.clip(pos, 0, self.indices.shape[0] - 1)]  # [M]
        out = jnp.zeros((b, self.num_items), dtype)
        return out.at[row, col].set(1, mode="drop")                   # row B: dropped

    def _check_budget(self, idx) -> None:
        try:
            total = int(np.asarray(self.row_len)[np.asarray(idx)].sum())
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        if total > self.budget:
            raise ValueError(f"rows {np.asarray(idx).tolist()[:8]}... hold {total} clicks, "
                             f"more than the budget {self.budget} (the {self.batch_size} "
                             "largest rows): repeated ids past the budget would lose clicks")


jax.tree_util.register_dataclass(
    SparseRows, data_fields=["row_start", "row_len", "indices"],
    meta_fields=["num_items", "batch_size", "budget"])


# ---------------------------------------------------------------------------------
# From (user, item, rating) to Clicks.


def _ids_sorted_codes(ids: np.ndarray):
    """(unique ids increasing, codes int64 [n])."""
    uniq, codes = np.unique(ids, return_inverse=True)
    return uniq, codes.reshape(-1).astype(np.int64)


def _clicks_from_pairs(name: str, users, items, ratings, *, rating_threshold,
                       min_user_clicks, min_item_clicks, stats: dict | None = None,
                       matrix: sp.csr_matrix | None = None, verbose: bool = True,
                       truth: ClickTruth | None = None) -> Clicks:
    """Thresholds, merges duplicates, filters items then users; ``matrix`` (with ``users``
    and ``items`` its row and column ids) skips the pairs stage."""
    stats = dict(stats or {})
    _check_filter_args(rating_threshold, min_user_clicks, min_item_clicks)
    if matrix is None:
        n = len(users)
        stats.setdefault("rows_read", int(n))
        if ratings is not None:
            keep = ratings > rating_threshold
            stats["rows_at_or_below_threshold"] = int(n - keep.sum())
            if not keep.any():
                raise DatasetError(
                    f"Click data {name!r}: none of the {n} ratings is above rating_threshold="
                    f"{rating_threshold} (ratings span {_span(ratings)}); lower "
                    "rating_threshold")
            users, items = users[keep], items[keep]
        elif n == 0:
            raise DatasetError(f"Click data {name!r}: holds no rows")
        user_ids, u = _ids_sorted_codes(users)
        item_ids, i = _ids_sorted_codes(items)
        m = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)),
                          shape=(len(user_ids), len(item_ids)))
        m.sum_duplicates()
        stats["duplicate_clicks_merged"] = int(len(u) - m.nnz)
        m.data[:] = 1.0
    else:
        m, user_ids, item_ids = matrix, users, items
    clicks_in = int(m.nnz)
    stats["clicks_before_filters"] = clicks_in
    if min_item_clicks > 0:
        per_item = np.diff(m.tocsc().indptr)
        keep_items = per_item >= min_item_clicks
        stats["items_below_min_item_clicks"] = int((~keep_items).sum())
        stats["clicks_of_removed_items"] = int(per_item[~keep_items].sum())
        if not keep_items.any():
            raise DatasetError(
                f"Click data {name!r}: no item has min_item_clicks={min_item_clicks} clicks "
                f"(the most is {int(per_item.max(initial=0))}); lower min_item_clicks")
        m, item_ids = m[:, keep_items].tocsr(), item_ids[keep_items]
    per_user = np.diff(m.indptr)
    keep_users = per_user >= max(min_user_clicks, 1)
    stats["users_without_clicks"] = int((per_user == 0).sum())
    stats["users_below_min_user_clicks"] = int(((per_user < min_user_clicks)
                                                & (per_user > 0)).sum())
    stats["clicks_of_removed_users"] = int(per_user[~keep_users].sum())
    if not keep_users.any():
        raise DatasetError(
            f"Click data {name!r}: no user has min_user_clicks={min_user_clicks} clicks "
            f"(the most any user has is {int(per_user.max(initial=0))}, of {clicks_in} "
            "clicks in all); lower min_user_clicks")
    m, user_ids = m[keep_users], user_ids[keep_users]
    per_item = np.diff(m.tocsc().indptr)
    stats["items_left_without_clicks"] = int((per_item == 0).sum())
    m, item_ids = m[:, per_item > 0].tocsr(), item_ids[per_item > 0]
    m.sort_indices()
    m.data = np.ones(m.nnz, np.float32)
    stats.update(num_users=int(m.shape[0]), num_items=int(m.shape[1]), num_clicks=int(m.nnz))
    if verbose:
        _log(f"clicks {name}: " + ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    return Clicks(name=name, matrix=m, user_ids=user_ids, item_ids=item_ids, stats=stats,
                  truth=truth)


def _check_filter_args(rating_threshold, min_user_clicks, min_item_clicks) -> None:
    if not isinstance(rating_threshold, (int, float, np.number)) or isinstance(
            rating_threshold, bool) or not np.isfinite(rating_threshold):
        raise DatasetError(f"rating_threshold must be a finite number, got "
                           f"{rating_threshold!r}")
    for k, v in (("min_user_clicks", min_user_clicks), ("min_item_clicks", min_item_clicks)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise DatasetError(f"{k} must be a non-negative int, got {v!r}")


def _span(a: np.ndarray) -> str:
    return f"{float(np.min(a)):g}..{float(np.max(a)):g}" if len(a) else "nothing"


# ---------------------------------------------------------------------------------
# Text files (pandas).


def _pandas(name: str):
    try:
        import pandas as pd  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise DatasetError(f"Click data {name!r}: reading text files needs pandas: pip "
                           "install pandas") from e
    return pd


def _read_table(name: str, path: str, kind: str, **read_kw):
    """pandas.read_csv with its errors as one-line DatasetErrors."""
    pd = _pandas(name)
    try:
        return pd.read_csv(path, **read_kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as e:
        raise DatasetError(f"Click data {name!r}: cannot parse {path} as {_FORMATS[kind]} "
                           f"({type(e).__name__}: {_first_line(e)})") from e


def _numbers(name: str, path: str, df, col: str, *, line0: int, integer: bool,
             label: str) -> np.ndarray:
    """Column ``col`` as int64 / float64, or a DatasetError naming the first bad row
    (file line ``index + line0``)."""
    pd = _pandas(name)
    s = df[col]
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        num = pd.to_numeric(s, errors="coerce")
        bad = np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())
        if len(bad):
            raise DatasetError(
                f"Click data {name!r}: {label} column {col!r} of {path} holds non-numeric "
                f"values, the first {s.iloc[bad[0]]!r} on line {bad[0] + line0}; fix or "
                "remove those rows")
        s = num
    a = s.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.flatnonzero(~np.isfinite(a))
    if len(missing):
        raise DatasetError(
            f"Click data {name!r}: {label} column {col!r} of {path} has {len(missing)} "
            f"missing or non-finite values, the first on line {missing[0] + line0}; fix or "
            "remove those rows")
    if integer:
        if not np.array_equal(a, np.round(a)):
            first = int(np.flatnonzero(a != np.round(a))[0])
            raise DatasetError(
                f"Click data {name!r}: {label} column {col!r} of {path} holds a non-integer "
                f"id {a[first]:g} on line {first + line0}; ids must be integers")
        return s.to_numpy().astype(np.int64)
    return a


def _text_ids(name: str, path: str, df, col: str, *, line0: int) -> np.ndarray:
    """A bring-your-own id column: integers as int64, anything else as text."""
    pd = _pandas(name)
    s = df[col]
    if s.isna().any():
        first = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise DatasetError(f"Click data {name!r}: column {col!r} of {path} has "
                           f"{int(s.isna().sum())} missing ids, the first on line "
                           f"{first + line0}; fix or remove those rows")
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.to_numpy().astype(np.int64)
    return s.astype(str).to_numpy(dtype=object).astype(str)


def _require_file(name: str, path: str, kind: str) -> None:
    if not os.path.exists(path):
        raise DatasetError(f"Click data {name!r}: no such file {os.path.abspath(path)}; "
                           f"expected {_FORMATS[kind]}")
    if os.path.isdir(path):
        raise DatasetError(f"Click data {name!r}: {path} is a folder; expected "
                           f"{_FORMATS[kind]}")


def _movielens_file(name: str, path: str) -> str:
    if not os.path.exists(path):
        raise DatasetError(f"Click data {name!r}: no such file or folder "
                           f"{os.path.abspath(path)}; expected {_FORMATS['movielens']}")
    if os.path.isdir(path):
        for f in MOVIELENS_FILES:
            if os.path.isfile(os.path.join(path, f)):
                return os.path.join(path, f)
        raise DatasetError(f"Click data {name!r}: folder {path} holds none of "
                           f"{', '.join(MOVIELENS_FILES)}; expected {_FORMATS['movielens']}")
    if os.path.basename(path) not in MOVIELENS_FILES:
        raise DatasetError(f"Click data {name!r}: {os.path.basename(path)!r} is not a "
                           f"GroupLens file name ({', '.join(MOVIELENS_FILES)}); rename it, "
                           "or read your own (user, item[, rating]) CSV with csv:PATH")
    return path


def read_movielens(path: str, *, name: str | None = None, **filters) -> Clicks:
    """Clicks from a GroupLens ``ratings.csv`` / ``ratings.dat`` / ``u.data`` (or a folder
    holding one); ``filters``: rating_threshold, min_user_clicks, min_item_clicks,
    verbose."""
    name = name or f"movielens:{path}"
    path = _movielens_file(name, os.path.expanduser(path))
    base = os.path.basename(path)
    cols = ["user", "item", "rating"]
    if base == "ratings.csv":
        header = _read_table(name, path, "movielens", nrows=0)
        want = {"userId": "user", "movieId": "item", "rating": "rating"}
        missing = [c for c in want if c not in header.columns]
        if missing:
            raise DatasetError(
                f"Click data {name!r}: {path} has no column {', '.join(map(repr, missing))} "
                f"(its header: {', '.join(map(str, header.columns))}); a ratings.csv starts "
                "with userId,movieId,rating,timestamp")
        df = _read_table(name, path, "movielens", usecols=list(want)).rename(columns=want)
        line0 = 2
    else:
        source = path
        if base == "ratings.dat":       # '::' needs pandas' slow python engine: use tabs
            with open(path, "rb") as f:
                source = io.BytesIO(f.read().replace(b"::", b"\t"))
        df = _read_table(name, source, "movielens", sep="\t", header=None)
        if df.shape[1] < 3:
            raise DatasetError(
                f"Click data {name!r}: {path} has {df.shape[1]} column(s); {base} holds "
                "user, item, rating, timestamp per line")
        df = df.iloc[:, :3]
        df.columns = cols
        line0 = 1
    users = _numbers(name, path, df, "user", line0=line0, integer=True, label="user id")
    items = _numbers(name, path, df, "item", line0=line0, integer=True, label="item id")
    ratings = _numbers(name, path, df, "rating", line0=line0, integer=False, label="rating")
    del df
    return _clicks_from_pairs(name, users, items, ratings, **_filters(filters))


def read_csv(path: str, *, user_col: str = "user", item_col: str = "item",
             rating_col: str | None = "rating", name: str | None = None,
             **filters) -> Clicks:
    """Clicks from your own CSV with a header row. ``rating_col`` is used when the file
    has that column (thresholded), otherwise every row is a click; ``None``: ignore
    ratings."""
    name = name or f"csv:{path}"
    path = os.path.expanduser(path)
    _require_file(name, path, "csv")
    header = _read_table(name, path, "csv", nrows=0)
    have = [str(c) for c in header.columns]
    for role, col in (("user", user_col), ("item", item_col)):
        if col not in have:
            raise DatasetError(
                f"Click data {name!r}: {path} has no {role} column {col!r} (its header: "
                f"{', '.join(have) or 'empty'}); rename it or pass {role}_col=")
    use_rating = rating_col is not None and rating_col in have
    usecols = [user_col, item_col] + ([rating_col] if use_rating else [])
    df = _read_table(name, path, "csv", usecols=usecols)
    users = _text_ids(name, path, df, user_col, line0=2)
    items = _text_ids(name, path, df, item_col, line0=2)
    ratings = (_numbers(name, path, df, rating_col, line0=2, integer=False, label="rating")
               if use_rating else None)
    return _clicks_from_pairs(name, users, items, ratings, **_filters(filters))


# ---------------------------------------------------------------------------------
# NPZ.


def read_npz(path: str, *, name: str | None = None, **filters) -> Clicks:
    """Clicks from a ``scipy.sparse.save_npz`` matrix or an ``np.savez`` of user/item
    (see the module docstring)."""
    name = name or f"npz:{path}"
    path = os.path.expanduser(path)
    _require_file(name, path, "npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as e:
        raise DatasetError(f"Click data {name!r}: cannot read {path} as an .npz archive "
                           f"({type(e).__name__}: {_first_line(e)}); expected "
                           f"{_FORMATS['npz']}") from e
    if "format" in arrays:
        return _from_scipy_npz(name, path, arrays, filters)
    extra = [k for k in arrays if k not in NPZ_ARRAY_KEYS]
    if "user" not in arrays or "item" not in arrays or extra:
        raise DatasetError(f"Click data {name!r}: {path} holds {', '.join(arrays) or 'nothing'}"
                           f"; expected {_FORMATS['npz']}")
    users = _npz_ids(name, path, arrays["user"], "user")
    items = _npz_ids(name, path, arrays["item"], "item")
    if len(users) != len(items):
        raise DatasetError(f"Click data {name!r}: {path} has {len(users)} users but "
                           f"{len(items)} items; give one (user, item) pair per position")
    if "num_items" in arrays:
        num_items = arrays["num_items"]
        if num_items.shape != () or not np.issubdtype(num_items.dtype, np.integer):
            raise DatasetError(f"Click data {name!r}: num_items in {path} must be an "
                               f"integer scalar, got {num_items.dtype} {num_items.shape}")
        if len(items) and items.max() >= int(num_items):
            bad = int((items >= int(num_items)).sum())
            raise DatasetError(
                f"Click data {name!r}: {bad} item ids in {path} are out of range (max "
                f"{int(items.max())}, num_items={int(num_items)}); ids must be in "
                "0..num_items-1")
    ratings = None
    if "rating" in arrays:
        ratings = arrays["rating"]
        if not (np.issubdtype(ratings.dtype, np.number)) or ratings.shape != users.shape:
            raise DatasetError(f"Click data {name!r}: rating in {path} must be numbers "
                               f"[{len(users)}], got {ratings.dtype} {ratings.shape}")
        ratings = ratings.astype(np.float64)
        if not np.isfinite(ratings).all():
            raise DatasetError(f"Click data {name!r}: rating in {path} holds "
                               f"{int((~np.isfinite(ratings)).sum())} NaN/inf values; fix or "
                               "remove them")
    return _clicks_from_pairs(name, users, items, ratings, **_filters(filters))


def _npz_ids(name, path, a: np.ndarray, key: str) -> np.ndarray:
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        raise DatasetError(f"Click data {name!r}: {key} in {path} must be integer ids [n], "
                           f"got {a.dtype} {a.shape}; np.asarray({key}, np.int64)")
    if len(a) and a.min() < 0:
        raise DatasetError(f"Click data {name!r}: {key} ids in {path} are out of range "
                           f"(min {int(a.min())}); ids must be >= 0")
    return a.astype(np.int64)


def _from_scipy_npz(name: str, path: str, arrays: dict, filters: dict) -> Clicks:
    fmt = arrays["format"].item()
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    shape = tuple(int(s) for s in arrays["shape"])
    if len(shape) != 2:
        raise DatasetError(f"Click data {name!r}: {path} holds a {len(shape)}-d array; "
                           "expected a users x items matrix")
    axes = {"csr": [("indices", 1)], "csc": [("indices", 0)], "coo": [("row", 0), ("col", 1)]}
    what = ("user", "item")
    for key, axis in axes.get(fmt, []):
        ids = arrays.get(key)
        if ids is not None and len(ids) and (ids.min() < 0 or ids.max() >= shape[axis]):
            raise DatasetError(
                f"Click data {name!r}: {what[axis]} ids in {path} are out of range ({key} "
                f"spans {int(ids.min())}..{int(ids.max())}, the matrix is {shape[0]} users x "
                f"{shape[1]} items); fix the ids or the shape")
    try:
        raw = sp.load_npz(path)
    except (ValueError, OSError, KeyError) as e:
        raise DatasetError(f"Click data {name!r}: cannot read {path} as a scipy sparse "
                           f"matrix ({type(e).__name__}: {_first_line(e)})") from e
    stats = {"rows_read": int(raw.nnz)}  # entries stored (a coo entry given twice: 2)
    m = sp.csr_matrix(raw, dtype=np.float64, copy=True)
    m.sum_duplicates()
    stats["duplicate_clicks_merged"] = int(stats["rows_read"] - m.nnz)
    if not np.isfinite(m.data).all():
        raise DatasetError(f"Click data {name!r}: {path} stores "
                           f"{int((~np.isfinite(m.data)).sum())} NaN/inf entries; fix them")
    zeros = m.data == 0
    stats["stored_zeros_dropped"] = int(zeros.sum())
    m.eliminate_zeros()
    m.data = np.ones(m.nnz, np.float32)
    f = _filters(filters)
    return _clicks_from_pairs(name, np.arange(shape[0]), np.arange(shape[1]), None,
                              matrix=m, stats=stats, **f)


def _filters(filters: dict) -> dict:
    known = {"rating_threshold": RATING_THRESHOLD, "min_user_clicks": MIN_USER_CLICKS,
             "min_item_clicks": MIN_ITEM_CLICKS, "verbose": True}
    unknown = set(filters) - set(known)
    if unknown:
        raise TypeError(f"unknown argument(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(known)}")
    return {**known, **filters}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------------------------
# TFDS MovieLens.


def read_tfds_movielens(name: str, *, data_dir: str | None = None, **filters) -> Clicks:
    """Clicks from TFDS ``movielens/<version>-ratings`` (prepared as ArrayRecord in
    ``data_dir``, never downloaded): ``user_id``, ``movie_id``, ``user_rating``."""
    if not (name.startswith(TFDS_PREFIX) and name.endswith("-ratings")):
        raise DatasetError(f"Click data {name!r}: TFDS MovieLens is named "
                           "movielens/<version>-ratings, e.g. movielens/1m-ratings")
    from genjax.data.tfds_source import _import_tfds  # pylint: disable=import-outside-toplevel

    tfds = _import_tfds()
    # `import tensorflow_datasets` registers image builders lazily but not MovieLens.
    importlib.import_module("tensorflow_datasets.structured.movielens")

    try:
        source = tfds.data_source(name, split="train", data_dir=data_dir, download=False)
    except Exception as e:  # pylint: disable=broad-except
        raise _tfds_error(tfds, name, data_dir, e) from e
    n = len(source)
    users, items, ratings = [], [], []
    batched = _has_getitems(source)
    for start in range(0, n, READ_BATCH_SIZE):
        keys = list(range(start, min(n, start + READ_BATCH_SIZE)))
        for ex in (source.__getitems__(keys) if batched else [source[k] for k in keys]):
            users.append(ex["user_id"])
            items.append(ex["movie_id"])
            ratings.append(ex["user_rating"])
    if not users:
        raise DatasetError(f"Click data {name!r}: the TFDS train split is empty")
    return _clicks_from_pairs(name, _tfds_ids(users), _tfds_ids(items),
                              np.asarray(ratings, np.float64), **_filters(filters))


def _has_getitems(source) -> bool:
    """Whether ``source.__getitems__`` works (not under ``tfds.testing.mock_data``, nor
    for a plain list)."""
    try:
        source.__getitems__([0])
    except (TypeError, AttributeError):
        return False
    return True


def _tfds_ids(values: list) -> np.ndarray:
    """TFDS MovieLens ids are strings (bytes) of integers: int64 when they all are."""
    a = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in values])
    try:
        return a.astype(np.int64)
    except ValueError:
        return a


def _tfds_error(tfds, name: str, data_dir: str | None, cause: Exception) -> DatasetError:
    where = os.fspath(data_dir) if data_dir is not None else (
        tfds.core.constants.get_default_data_dir())
    try:
        prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # pylint: disable=broad-except
        prepared = False
    if not prepared:
        return DatasetError(
            f"TFDS dataset {name!r} is not prepared in {where}. With the network: tfds "
            f"build {name} --file_format=array_record --data_dir={where} (needs "
            "TensorFlow), or read the GroupLens file with movielens:PATH, or use "
            f"{SYNTHETIC}")
    return DatasetError(
        f"TFDS dataset {name!r} in {where} could not be read ({type(cause).__name__}: "
        f"{_first_line(cause)}); it must be prepared as ArrayRecord: tfds build {name} "
        f"--file_format=array_record --data_dir={where}")


# ---------------------------------------------------------------------------------
# The synthetic generator.


def synthetic_clicks(*, num_users: int = 10_000, num_items: int = 2_000, dim: int = 16,
                     pref_scale: float = 2.0, zipf_exponent: float = 1.2,
                     temperature: float = 1.0, min_clicks: int = 5,
                     median_extra_clicks: float = 25.0, clicks_sigma: float = 1.0,
                     max_clicks: int = 400, seed: int = 0, verbose: bool = True) -> Clicks:
    """Clicks with known structure (module docstring): ``Clicks.truth.scores`` gives
    the true scores. Same arguments, same clicks (one numpy Generator, fixed draw
    order). Items nobody clicked are not columns (``item_ids`` says which are)."""
    if min(num_users, num_items, dim) < 1:
        raise DatasetError("num_users, num_items and dim must be >= 1")
    cap = min(int(max_clicks), int(num_items))
    if not 1 <= min_clicks <= cap:
        raise DatasetError(f"need 1 <= min_clicks ({min_clicks}) <= min(max_clicks, "
                           f"num_items) ({cap})")
    if not temperature > 0:
        raise DatasetError(f"temperature must be > 0, got {temperature}")
    rng = np.random.default_rng(seed)
    root_d = np.sqrt(np.sqrt(dim))
    user_f = rng.standard_normal((num_users, dim)) * (pref_scale / root_d)   # [U, d]
    item_f = rng.standard_normal((num_items, dim)) / root_d                  # [I, d]
    rank = rng.permutation(num_items) + 1
    bias = -zipf_exponent * np.log(rank)                                     # [I]
    n_u = np.clip(np.rint(min_clicks + median_extra_clicks
                          * np.exp(clicks_sigma * rng.standard_normal(num_users))),
                  min_clicks, cap).astype(np.int64)                          # [U]
    cols = []
    for s0 in range(0, num_users, 1000):
        s = (user_f[s0:s0 + 1000] @ item_f.T + bias) / temperature           # [b, I]
        keys = s + rng.gumbel(size=s.shape)
        n_b = n_u[s0:s0 + 1000]
        k = int(n_b.max())
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k]                   # [b, k]
        order = np.argsort(-np.take_along_axis(keys, top, 1), axis=1)
        top = np.take_along_axis(top, order, 1)                              # by key
        cols.append(top[np.arange(k)[None, :] < n_b[:, None]])               # row-major
    indptr = np.concatenate([[0], np.cumsum(n_u)])
    m = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(cols), indptr),
                      shape=(num_users, num_items))
    m.sort_indices()
    truth = ClickTruth(user_factors=user_f, item_factors=item_f, item_bias=bias,
                       temperature=float(temperature))
    return _clicks_from_pairs(SYNTHETIC, np.arange(num_users), np.arange(num_items), None,
                              matrix=m, stats={"rows_read": int(m.nnz)}, truth=truth,
                              rating_threshold=RATING_THRESHOLD,
                              min_user_clicks=MIN_USER_CLICKS, min_item_clicks=0,
                              verbose=verbose)


# ---------------------------------------------------------------------------------
# The entry point and the split.


def load_clicks(name: str, *, data_dir: str | None = None, seed: int = 0,
                **filters) -> Clicks:
    """Loads click data by name: ``synthetic_clicks`` (generator seed ``seed``),
    ``movielens/<version>-ratings`` (TFDS, ``data_dir``), ``movielens:PATH``,
    ``csv:PATH`` or ``npz:PATH``. ``filters``: rating_threshold (3.5), min_user_clicks
    (5), min_item_clicks (0), verbose (True); the generator ignores rating_threshold."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"click data name must be a non-empty string, got {name!r}")
    if name == SYNTHETIC:
        f = _filters(filters)
        return synthetic_clicks(seed=seed, verbose=f["verbose"])
    if name.startswith(TFDS_PREFIX):
        return read_tfds_movielens(name, data_dir=data_dir, **filters)
    kind, sep, path = name.partition(":")
    if sep and kind + ":" in PREFIXES:
        if not path.strip():
            raise DatasetError(f"Click data {name!r}: no path after {kind + ':'!r}")
        reader = {"movielens": read_movielens, "csv": read_csv, "npz": read_npz}[kind]
        return reader(path, name=name, **filters)
    raise DatasetError(
        f"Unknown click data {name!r}; use {SYNTHETIC}, movielens/<version>-ratings "
        "(TFDS, e.g. movielens/1m-ratings), movielens:PATH (ratings.csv, ratings.dat, "
        "u.data), csv:PATH (user,item[,rating]) or npz:PATH")


def _resolve_heldout(n_heldout, num_users: int) -> int:
    if isinstance(n_heldout, (bool, np.bool_)):
        raise DatasetError(f"n_heldout must be a count or a fraction, got {n_heldout!r}")
    if isinstance(n_heldout, (int, np.integer)):
        h = int(n_heldout)
    elif isinstance(n_heldout, (float, np.floating)) and 0 < n_heldout < 0.5:
        h = max(1, int(n_heldout * num_users))
    else:
        raise DatasetError(f"n_heldout must be a positive int or a fraction in (0, 0.5), "
                           f"got {n_heldout!r}")
    if h < 1 or num_users - 2 * h < 1:
        raise DatasetError(f"n_heldout={n_heldout!r} ({h} validation + {h} test users) "
                           f"leaves no training user of {num_users}; lower n_heldout")
    return h


def _fold_in_heldout(m: sp.csr_matrix, order: np.ndarray, *, fraction: float, seed: int):
    """dawenl's split_train_test_proportion on the rows of ``m``, users visited in
    ``order`` (increasing original id); returns (fold-in, held-out, users without held-out)."""
    rng = np.random.RandomState(seed)
    held = np.zeros(m.nnz, bool)
    short = 0
    for r in order:
        a, b = m.indptr[r], m.indptr[r + 1]
        n = b - a
        if n >= MIN_CLICKS_TO_HOLD_OUT:
            pick = rng.choice(n, size=int(fraction * n), replace=False).astype("int64")
            held[a + pick] = True
        else:
            short += 1

    def part(mask):                      # copies: eliminate_zeros works in place
        out = sp.csr_matrix((m.data * mask, m.indices.copy(), m.indptr.copy()),
                            shape=m.shape)
        out.eliminate_zeros()
        return out

    return part(~held), part(held), short


def split_clicks(clicks: Clicks, *, n_heldout, heldout_fraction: float = HELDOUT_FRACTION,
                 seed: int = SPLIT_SEED, verbose: bool = True) -> ClickSplit:
    """The paper's split (module docstring): ``n_heldout`` validation and as many test
    users (a count, or a fraction of the users in (0, 0.5)), 20% of each one's clicks
    held out. ``seed=98765`` with ``n_heldout=10_000`` on ML-20M is dawenl's split."""
    if not 0 < heldout_fraction < 1:
        raise DatasetError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    m = clicks.matrix
    u = m.shape[0]
    h = _resolve_heldout(n_heldout, u)
    perm = np.random.RandomState(seed).permutation(u)
    tr, vd, te = perm[:u - 2 * h], perm[u - 2 * h:u - h], perm[u - h:]
    train = m[tr]
    keep_items = np.diff(train.tocsc().indptr) > 0
    train = train[:, keep_items].tocsr()
    stats = dict(clicks.stats)
    stats.update(split_seed=int(seed), train_users=len(tr), train_clicks=int(train.nnz),
                 split_items=int(keep_items.sum()),
                 items_without_training_clicks=int((~keep_items).sum()))
    parts = {}
    for role, rows in (("val", vd), ("test", te)):
        full = m[rows]
        sub = full[:, keep_items].tocsr()
        sub.sort_indices()                          # positions in increasing item id
        stats[f"{role}_clicks_on_non_training_items_dropped"] = int(full.nnz - sub.nnz)
        alive = np.diff(sub.indptr) > 0
        stats[f"{role}_users_dropped_without_clicks"] = int((~alive).sum())
        sub, rows = sub[alive], rows[alive]
        order = np.argsort(rows, kind="stable")       # increasing user id (rows of m are)
        foldin, heldout, short = _fold_in_heldout(sub, order, fraction=heldout_fraction,
                                                  seed=seed)
        stats.update({f"{role}_users": int(len(rows)),
                      f"{role}_users_without_heldout": int(short),
                      f"{role}_foldin_clicks": int(foldin.nnz),
                      f"{role}_heldout_clicks": int(heldout.nnz)})
        parts[role] = (foldin, heldout, clicks.user_ids[rows])
    if verbose:
        _log(f"split {clicks.name}: " + ", ".join(
            f"{k} {v:,}" for k, v in stats.items() if k not in clicks.stats))
    return ClickSplit(
        train=train, val_foldin=parts["val"][0], val_heldout=parts["val"][1],
        test_foldin=parts["test"][0], test_heldout=parts["test"][1],
        num_items=int(keep_items.sum()), item_ids=clicks.item_ids[keep_items],
        train_users=clicks.user_ids[tr], val_users=parts["val"][2],
        test_users=parts["test"][2], stats=stats, truth=clicks.truth)
