"""Node arithmetic of the Fenwick (binary indexed) trees the state buckets are stored in.

A state figure's value at the end of period `i` is the sum of its changes in periods 0..i. Stored as
plain per-period changes, a report would sum every period since the start of history, which grows
with the years. In a Fenwick tree over a fixed range of period numbers, a change touches at most
log2(size) nodes and a prefix sum reads at most log2(size) nodes: at most 14 rows per (figure, key)
for weeks, 12 for months, however long the history is.

Range: weeks 1970-W01 + 16384 weeks (to 2284), months 1970-01 + 4096 months (to 2311). A period
outside the range is clamped to its end (nothing real happens before 1970 or after 2284).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Final

from services.ledelsesinfo.domain.periods import PeriodKind

SIZE: Final[dict[str, int]] = {"W": 1 << 14, "M": 1 << 12}


def _one_based(kind: PeriodKind, index: int) -> int:
    return min(max(index, 0), SIZE[kind] - 1) + 1


def update_nodes(kind: PeriodKind, index: int) -> list[int]:
    """The nodes a change in period `index` adds to."""
    size, i, out = SIZE[kind], _one_based(kind, index), []
    while i <= size:
        out.append(i)
        i += i & -i
    return out


def prefix_nodes(kind: PeriodKind, index: int) -> list[int]:
    """The nodes whose sum is the total of all changes in periods up to and including `index`."""
    if index < 0:
        return []
    i, out = _one_based(kind, index), []
    while i > 0:
        out.append(i)
        i -= i & -i
    return out


def node_sums(kind: PeriodKind, changes: Mapping[int, int]) -> dict[int, int]:
    """The non-zero node values of a tree holding `changes` (period -> change): the same as adding
    each change to its `update_nodes`, but each node is computed once, however many changes share
    it: the linear Fenwick build, each node adding its total to its parent (a node `n` holds the
    changes in periods (n - lowbit(n), n], one-based; a node off every update path holds none)."""
    size = SIZE[kind]
    top = size - 1
    summed: dict[int, int] = {}
    get = summed.get
    for index, d in changes.items():
        i = (index if index <= top else top) + 1 if index >= 0 else 1
        summed[i] = get(i, 0) + d
    if not summed:
        return {}
    lo, hi = min(summed), max(summed)
    if hi - lo > 4 * len(summed) + 64:
        return _node_sums_sparse(size, summed)
    # the linear Fenwick build over lo..hi (nothing changes below lo): tree[k] is node lo + k once
    # every node below it has added itself to its parent; the parents above hi wait in `above`
    tree = [get(x, 0) for x in range(lo, hi + 1)]
    above: dict[int, int] = {}
    i = lo
    for v in tree:  # a list iterator reads each item when it gets there: after its children added
        if v:
            parent = i + (i & -i)
            if parent <= hi:
                tree[parent - lo] += v
            elif parent <= size:
                above[parent] = above.get(parent, 0) + v
        i += 1
    out = {n: v for n, v in zip(range(lo, hi + 1), tree, strict=True) if v}
    while above:  # lowest first: each node has every child's value before it passes its own on
        i = min(above)
        v = above.pop(i)
        if v:
            out[i] = v
            parent = i + (i & -i)
            if parent <= size:
                above[parent] = above.get(parent, 0) + v
    return out


def _node_sums_sparse(size: int, summed: dict[int, int]) -> dict[int, int]:
    """`node_sums` of one-based changes spread thinly over a wide range (bisect, no dense prefix)."""
    order = sorted(summed)
    prefix = [0]
    for i in order:
        prefix.append(prefix[-1] + summed[i])
    touched: set[int] = set()
    for i in order:
        while i <= size and i not in touched:
            touched.add(i)
            i += i & -i
    out: dict[int, int] = {}
    for n in touched:
        v = prefix[bisect_right(order, n)] - prefix[bisect_right(order, n - (n & -n))]
        if v:
            out[n] = v
    return out
