"""Data parallelism with jax.sharding: one 1-D mesh axis "data" over all devices.

Parameters, optimiser state and the (small) dataset are replicated; each batch is split
along its leading axis, and XLA inserts the gradient all-reduce. One device is the
ordinary case and costs nothing. For several hosts call ``jax.distributed.initialize()``
before anything else (``--config.train.distributed=True`` does it in the experiments);
every host then loads the same embedded data and the mesh spans all global devices.
On a CPU machine ``JAX_NUM_CPU_DEVICES=8`` gives 8 devices for testing.
"""

from __future__ import annotations

import jax
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
