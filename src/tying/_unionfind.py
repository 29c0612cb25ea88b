"""Disjoint sets (union-find with path halving), used to group tensors and modules."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class UnionFind(Generic[K]):
    """Disjoint sets over hashable items; an item is added on first use. :meth:`union` keeps the
    smallest root by ``order`` (default: first added), so representatives are deterministic."""

    def __init__(self, items: Iterable[K] = ()) -> None:
        self.parent: dict[K, K] = {}
        self._rank: dict[K, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: K) -> K:
        if item not in self.parent:
            self.parent[item] = item
            self._rank[item] = len(self._rank)
        return item

    def __contains__(self, item: object) -> bool:
        return item in self.parent

    def find(self, item: K) -> K:
        parent = self.parent
        self.add(item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, items: Iterable[K]) -> K | None:
        """Join every item's set into one; returns its representative (``None`` for no items)."""
        roots = sorted({self.find(i) for i in items}, key=self._rank.__getitem__)
        if not roots:
            return None
        for r in roots[1:]:
            self.parent[r] = roots[0]
        return roots[0]

    def discard(self, items: Iterable[K]) -> None:
        """Forget ``items`` (whole sets: callers remove every member of the sets they drop)."""
        for i in list(items):
            self.parent.pop(i, None)
            self._rank.pop(i, None)

    def groups(self) -> dict[K, list[K]]:
        """``{representative: members}``, both in the order items were added."""
        out: dict[K, list[K]] = {}
        for item in sorted(self.parent, key=self._rank.__getitem__):
            out.setdefault(self.find(item), []).append(item)
        return out
