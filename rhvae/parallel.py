"""Splitting a global batch across processes."""

from __future__ import annotations

from typing import Any


def row_share(n: int, rank: int, world_size: int) -> slice:
    """Rows ``[start, stop)`` of ``n`` that process ``rank`` of ``world_size`` takes: the first
    ``n mod world_size`` processes one row more, as ``np.array_split``."""
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


class RowShares:
    """What every :class:`~rhvae.interfaces.DataParallel` shares: process ``rank`` of ``world_size``
    reads :func:`row_share` of each global batch, and rank 0 is the main process."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_rows(self, n: int) -> slice:
        return row_share(n, self.rank, self.world_size)

    def replicate(self, tree: Any) -> Any:
        """An array or a tree of them (the parameters) as the compiled step takes it (as is,
        unless overridden)."""
        return tree

    def local(self, tree: Any) -> Any:
        """The step's parameters as this process uses them outside the step (inverse of replicate)."""
        return tree
