"""Batches drawn inside the compiled loop from a dataset held on the device.

The order depends on (seed, epoch) alone: epoch e visits the examples in the permutation
permutation(fold_in(data_key, e), N), dropping the last N mod B examples, so a resumed run
sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import jax


def batch_indices(data_key, step, *, num_examples: int, batch_size: int):
    """Indices [batch_size] int32 of the examples in batch number ``step`` (a traced int)."""
    steps_per_epoch = num_examples // batch_size
    epoch, i = step // steps_per_epoch, step % steps_per_epoch
    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)
    return jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)


def take(data, idx):
    """Gathers the rows ``idx`` of every leaf of the data pytree: [N, ...] -> [B, ...]."""
    return jax.tree_util.tree_map(lambda a: a[idx], data)
