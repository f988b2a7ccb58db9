"""Device mesh and shardings: data parallelism over every device of every host.

The mesh has one axis, 'data'. Batches are sharded along their leading axis; TrainState is replicated
except the leaves a method shards by its `state_sharding` rules (per-example tables, over 'data').
Each host feeds only its own slice of the global batch (`host_to_global`).
"""

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mlrpl_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all devices of all processes) with axis 'data'."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated over the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This process's share of a global batch; checks divisibility with a clear message."""
    num_devices = mesh.devices.size
    if global_batch_size % num_devices:
        raise ConfigError(
            f"batch size {global_batch_size} is not divisible by the {num_devices} devices of the "
            f"mesh; set config.train.batch_size / eval_batch_size to a multiple of {num_devices}."
        )
    return global_batch_size // jax.process_count()


def host_to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this process's numpy batch slice into global jax.Arrays sharded over 'data'."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def to_host(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host) global array as numpy, on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def tree_to_host(tree: Any) -> Any:
    """numpy values of a pytree of jax.Arrays on every process; leaves sharded across processes
    (e.g. a per-example table over 'data') are gathered, the others are read locally."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return to_host(x)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def tree_replicated(tree: Any, mesh: Mesh) -> Any:
    """A pytree of replicated shardings with the structure of `tree`."""
    return jax.tree.map(lambda _: replicated(mesh), tree)


def path_string(path: tuple) -> str:
    """'/'-joined names of a pytree key path, e.g. 'opt_state/0/mu/method/table'."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, PartitionSpec]] = ()) -> Any:
    """Shardings for a pytree: the spec of the first rule whose regex `re.search`es a leaf's path
    (`path_string`, e.g. 'method_state/table' or 'opt_state/0/1/mu/method/table'), else
    replicated. A leaf whose sharded dimensions do not divide over the mesh is an error that names
    it (per-example tables pad their rows, `ops.example_table`)."""
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]

    def one(path, leaf):
        name = path_string(path)
        for pattern, spec in compiled:
            if pattern.search(name):
                shape = getattr(leaf, "shape", ())
                for dim, axis in zip(shape, spec, strict=False):
                    size = mesh.shape[axis] if axis is not None else 1
                    if dim % size:
                        raise ValueError(
                            f"{name} {tuple(shape)} cannot be sharded as {spec}: dimension {dim} is "
                            f"not divisible by the {size} devices of mesh axis {axis!r}."
                        )
                return NamedSharding(mesh, spec)
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(one, tree)
