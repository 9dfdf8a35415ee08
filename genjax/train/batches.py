"""Batches drawn inside the compiled loop from a dataset held on the device.

The order depends on (seed, epoch) alone: epoch e visits the examples in the permutation
permutation(fold_in(data_key, e), N), dropping the last N mod B examples, so a resumed run
sees exactly the batches the uninterrupted run would have seen.

The loop computes each epoch's permutation once and carries it through the scan
(`next_permutation`); `batch_indices` recomputes it from the step alone and gives the same
indices (used by tests and by code that wants one batch).
"""

from __future__ import annotations

import jax


def epoch_permutation(data_key, epoch, num_examples: int):
    """The visiting order [num_examples] int32 of epoch ``epoch`` (a traced int)."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def batch_indices(data_key, step, *, num_examples: int, batch_size: int):
    """Indices [batch_size] int32 of the examples in batch number ``step`` (a traced int)."""
    steps_per_epoch = num_examples // batch_size
    epoch, i = step // steps_per_epoch, step % steps_per_epoch
    perm = epoch_permutation(data_key, epoch, num_examples)
    return jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)


def next_permutation(data_key, step, perm, *, num_examples: int, batch_size: int):
    """Returns (perm, idx): the permutation of ``step``'s epoch, recomputed only when
    ``step`` starts an epoch (``perm`` is the one carried from the previous step), and the
    [batch_size] indices of the batch. Same indices as `batch_indices`."""
    steps_per_epoch = num_examples // batch_size
    epoch, i = step // steps_per_epoch, step % steps_per_epoch
    perm = jax.lax.cond(i == 0, lambda: epoch_permutation(data_key, epoch, num_examples),
                        lambda: perm)
    return perm, jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)


def take(data, idx):
    """Gathers the rows ``idx`` of every leaf of the data pytree: [N, ...] -> [B, ...].
    A node with a ``take_rows(idx)`` method (`genjax.data.clicks.SparseRows`, a sparse
    matrix) builds its own [B, ...] batch."""
    def rows(a):
        return a.take_rows(idx) if hasattr(a, "take_rows") else a[idx]

    return jax.tree_util.tree_map(rows, data, is_leaf=lambda a: hasattr(a, "take_rows"))
