"""Data parallelism with jax.sharding: one 1-D mesh axis "data" over all devices.

Parameters, optimiser state and the (small) dataset are replicated; each batch is split
along its leading axis, and XLA inserts the gradient all-reduce. One device is the
ordinary case and costs nothing. For several hosts call ``jax.distributed.initialize()``
before anything else (``--config.train.distributed=True`` does it in the experiments);
every host then loads the same embedded data and the mesh spans all global devices.
On a CPU machine ``JAX_NUM_CPU_DEVICES=8`` gives 8 devices for testing.

Sweeps (`genjax.train.sweep_loop.train_sweep`) use a 2-D mesh ("settings", "data"):
see `sweep_mesh_shape`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def data_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), ("data",), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis over "data"."""
    return NamedSharding(mesh, P("data"))


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))


# --- Sweeps: a 2-D mesh ("settings", "data") --------------------------------------------
#
# A sweep's stacked state [S, ...] is split along its settings axis over "settings"; each
# setting's batch is split over "data" (the gradient all-reduce then runs inside each
# settings group). Arrays are placed from host values identical on every process
# (`put`), so the same code works when the devices span several processes.

def sweep_mesh_shape(num_settings: int, batch_size: int, num_devices: int) -> tuple:
    """(settings, data) for S settings of batch B on D devices.

    settings = gcd(S, D): the settings axis is split as far as it divides evenly, with
    no padding and no setting computed twice (S=16 on 8 -> 8; S=2 -> 2; S=3 or 5 -> 1;
    S=12 -> 4). Splitting settings costs no communication, so it comes first.
    data = the largest divisor of D // settings that divides B (S=2, B=16 on 8 -> 4;
    S=3 -> 8). When B leaves some devices without an even share (D // settings = 8 and
    B = 12 -> data 4), settings * data < D and the sweep uses only that many devices.
    """
    s = math.gcd(int(num_settings), int(num_devices))
    rest = int(num_devices) // s
    data = max(k for k in range(1, rest + 1) if rest % k == 0 and int(batch_size) % k == 0)
    return s, data


def sweep_mesh(num_settings: int, batch_size: int, devices=None) -> Mesh:
    """The ("settings", "data") mesh of `sweep_mesh_shape` over the first settings * data
    of ``devices`` (default: all global devices, every process's)."""
    devices = jax.devices() if devices is None else list(devices)
    s, d = sweep_mesh_shape(num_settings, batch_size, len(devices))
    return jax.make_mesh((s, d), ("settings", "data"), devices=devices[:s * d],
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)


def settings_sharded(mesh: Mesh) -> NamedSharding:
    """Splits the leading (settings) axis over "settings"; the rest is replicated."""
    return NamedSharding(mesh, P("settings"))


def put(tree, sharding):
    """Places every leaf of ``tree`` on ``sharding`` (a Sharding, or a function of the leaf
    giving one) as a new array (never aliasing the input's buffers).

    Host values (numpy, Python scalars, fully addressable jax.Arrays) must be the same on
    every process: each process fills its own devices' shards from its copy with
    `jax.make_array_from_callback`, which is how a global array is built from host data
    on several processes. PRNG key arrays go through their key data. A jax.Array that is
    already global (spans other processes' devices) is resharded by a jitted copy."""
    def one(x):
        sh = sharding(x) if callable(sharding) else sharding
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.jit(jnp.copy, out_shardings=sh)(x)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sh, lambda idx: host[idx])
    return jax.tree_util.tree_map(one, tree)


def to_host(tree):
    """numpy copies of every leaf, readable on every process: an array that is fully
    addressable or fully replicated is read locally, any other (split over several
    processes' devices) is gathered with `multihost_utils.process_allgather` (a
    collective: every process must call it)."""
    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree_util.tree_map(one, tree)
