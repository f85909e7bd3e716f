"""Splitting a global batch across processes."""

from __future__ import annotations


def row_share(n: int, rank: int, world_size: int) -> slice:
    """Rows ``[start, stop)`` of ``n`` that process ``rank`` of ``world_size`` takes: the first
    ``n mod world_size`` processes one row more, as ``np.array_split``."""
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))
