"""Data parallelism with ``jax.sharding``: the batch axis split over a ``Mesh`` of every device.

One compiled step runs on the global batch, sharded over the mesh, with replicated parameters;
XLA inserts the gradient reduction, so the step computes exactly the single-device update.
With several processes (``jax.distributed.initialize``, one per host or per GPU) the mesh spans
every process's devices: each process supplies its rows of the global batch and
``jax.make_array_from_process_local_data`` assembles them into one global array, so the same
compiled step runs in every process (SPMD). Outside the step (the frozen metric, evaluation)
each process computes on its own devices with the replicated parameters it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rhvae.parallel import RowShares
from rhvae.tree import tree_map


class DeviceMesh(RowShares):
    """The batch axis sharded over ``devices`` (default: every device of every process),
    parameters replicated. ``rank``/``world_size`` are the JAX process index and count."""

    def __init__(self, devices: list | None = None) -> None:
        self.devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.array(self.devices), ("batch",))
        self.rank, self.world_size = jax.process_index(), jax.process_count()
        self._sharded = NamedSharding(self.mesh, PartitionSpec("batch"))
        self._replicated = NamedSharding(self.mesh, PartitionSpec())

    def __repr__(self) -> str:
        return f"DeviceMesh(devices={len(self.devices)}, processes={self.world_size})"

    def place(self, x: jax.Array, n: int) -> jax.Array:
        """This process's rows of a global batch of ``n`` rows, as one global array: sharded over
        the mesh when ``n`` divides evenly over its devices, replicated otherwise."""
        if self.world_size == 1:
            return jax.device_put(x, self._sharded if n % len(self.devices) == 0 else self._replicated)
        if n % len(self.devices) == 0:
            return jax.make_array_from_process_local_data(self._sharded, np.asarray(x), (n, *x.shape[1:]))
        return self._replicate_leaf(self.gather_rows(x))

    def replicate(self, tree: Any) -> Any:
        """An array, or a tree of them (the parameters), as global arrays replicated on every
        device of the mesh."""
        if self.world_size == 1:
            return tree
        return tree_map(self._replicate_leaf, tree) if isinstance(tree, Mapping) else self._replicate_leaf(tree)

    def local(self, tree: Any) -> Any:
        """Global replicated arrays back as this process's own copy (for work outside the step)."""
        if self.world_size == 1:
            return tree
        return tree_map(lambda a: a.addressable_data(0) if not a.is_fully_addressable else a, tree)

    def _replicate_leaf(self, a: jax.Array) -> jax.Array:
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a  # already global
        return jax.make_array_from_process_local_data(self._replicated, np.asarray(a))

    def weighted_sum(self, tree: Any, weight: float) -> Any:
        return tree  # the step's loss is already the mean over the global (sharded) batch

    def barrier(self) -> None:
        multihost_utils.sync_global_devices("rhvae")

    def gather_rows(self, x: jax.Array) -> jax.Array:
        """Every process's rows in process order (a global array already holds them all)."""
        if self.world_size == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            return x
        sizes = multihost_utils.process_allgather(np.asarray([x.shape[0]]))
        longest = int(sizes.max())
        local = np.asarray(x)
        padded = np.concatenate([local, np.zeros((longest - len(local), *local.shape[1:]), local.dtype)])
        parts = multihost_utils.process_allgather(padded)  # (processes, longest, ...)
        return jax.numpy.asarray(np.concatenate([p[:int(k)] for p, k in zip(parts, sizes.ravel())]))


def initialize(coordinator: str, num_processes: int, process_id: int, timeout_s: int = 300) -> None:
    """Join a multi-process JAX run (``jax.distributed.initialize``) before any array is made.

    On CPU, cross-process collectives need an implementation chosen first (gloo ships with
    jaxlib). ``timeout_s`` bounds how long the others wait for a process that died or stopped
    early: a process whose training raised makes every process exit within about that time.
    """
    if jax.config.jax_platforms in (None, "") or "cpu" in jax.config.jax_platforms:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id,
                               heartbeat_timeout_seconds=timeout_s, shutdown_timeout_seconds=timeout_s)
