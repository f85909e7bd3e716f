"""Maps over parameter trees: nested ``dict[str, ...]`` with arrays at the leaves.

Written over plain dicts so the same code serves torch tensors, jax arrays and numpy arrays
(``jax.jit`` and ``torch.func`` both accept such dicts as pytrees).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


def tree_map(f: Callable[..., Any], tree: Mapping, *rest: Mapping) -> dict:
    """``f`` applied leafwise to ``tree`` and the trees of the same structure in ``rest``."""
    return {
        k: tree_map(f, v, *(r[k] for r in rest)) if isinstance(v, Mapping) else f(v, *(r[k] for r in rest))
        for k, v in tree.items()
    }


def flatten(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``("encoder/mu.w", leaf), ...``: leaves with their '/'-joined paths, in insertion order."""
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            yield from flatten(v, path + "/")
        else:
            yield path, v


def unflatten(items: Mapping[str, Any]) -> dict:
    """Inverse of :func:`flatten`."""
    out: dict = {}
    for path, leaf in items.items():
        *parents, last = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out
