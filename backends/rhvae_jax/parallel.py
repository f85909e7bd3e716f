"""Data parallelism with ``jax.sharding``: the batch axis split over a ``Mesh`` of every device.

One compiled step runs on the sharded batch with replicated parameters; XLA inserts the
gradient reduction, so the step computes exactly the single-device update. One process drives
every device it sees; several processes (``jax.distributed.initialize``) are not supported yet.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rhvae.errors import RhvaeError
from rhvae.parallel import RowShares


class DeviceMesh(RowShares):
    """The batch axis sharded over ``jax.devices()`` (all hosts), parameters replicated."""

    def __init__(self, devices: list | None = None) -> None:
        if jax.process_count() > 1:
            raise RhvaeError(f"distributed training on JAX drives the devices of one process; this run has "
                             f"{jax.process_count()} processes (jax.distributed), which is not supported yet")
        self.devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.array(self.devices), ("batch",))
        self.rank, self.world_size = jax.process_index(), jax.process_count()

    def __repr__(self) -> str:
        return f"DeviceMesh(devices={len(self.devices)}, processes={self.world_size})"

    def place(self, x: jax.Array) -> jax.Array:
        """Rows sharded over the mesh; replicated when the row count does not divide evenly."""
        spec = PartitionSpec("batch") if x.shape[0] % len(self.devices) == 0 else PartitionSpec()
        return jax.device_put(x, NamedSharding(self.mesh, spec))

    def weighted_sum(self, tree: Any, weight: float) -> Any:
        return tree  # the step's loss is already the mean over the global (sharded) batch

    def gather_rows(self, x: jax.Array) -> jax.Array:
        return x
