"""Data parallelism with ``jax.sharding``: the batch axis split over a ``Mesh`` of every device.

One compiled step runs on the sharded batch with replicated parameters; XLA inserts the
gradient reduction, so the step computes exactly the single-device update. With several hosts
(``jax.distributed.initialize()`` called first), each process reads its share of the rows and
the global array is assembled from the processes' local data.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rhvae.parallel import row_share


class DeviceMesh:
    """The batch axis sharded over ``jax.devices()`` (all hosts), parameters replicated."""

    def __init__(self, devices: list | None = None) -> None:
        self.devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.array(self.devices), ("batch",))
        self.rank, self.world_size = jax.process_index(), jax.process_count()

    def __repr__(self) -> str:
        return f"DeviceMesh(devices={len(self.devices)}, processes={self.world_size})"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_rows(self, n: int) -> slice:
        return row_share(n, self.rank, self.world_size)

    def place(self, x: jax.Array) -> jax.Array:
        """Rows sharded over the mesh; replicated when the row count does not divide evenly."""
        n = x.shape[0] * self.world_size
        spec = PartitionSpec("batch") if n % len(self.devices) == 0 else PartitionSpec()
        sharding = NamedSharding(self.mesh, spec)
        if self.world_size == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x), (n, *x.shape[1:]))

    def weighted_sum(self, tree: Any, weight: float) -> Any:
        return tree  # the step's loss is already the mean over the global (sharded) batch

    def gather_rows(self, x: jax.Array) -> jax.Array:
        return x
