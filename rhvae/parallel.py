"""Splitting a global batch across processes: the row shares and the single-process default."""

from __future__ import annotations

from typing import Any

from rhvae.interfaces import Array


def row_share(n: int, rank: int, world_size: int) -> slice:
    """Rows ``[start, stop)`` of ``n`` that process ``rank`` of ``world_size`` takes: the first
    ``n mod world_size`` processes one row more, as ``np.array_split``."""
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


class SingleProcess:
    """One process holding the whole batch: every operation is the identity."""

    rank, world_size = 0, 1

    def __repr__(self) -> str:
        return "SingleProcess()"

    @property
    def is_main(self) -> bool:
        return True

    def local_rows(self, n: int) -> slice:
        return slice(0, n)

    def place(self, x: Array) -> Array:
        return x

    def weighted_sum(self, tree: Any, weight: float) -> Any:
        return tree

    def gather_rows(self, x: Array) -> Array:
        return x
