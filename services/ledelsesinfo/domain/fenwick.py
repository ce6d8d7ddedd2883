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
    each change to its `update_nodes`, but each node is computed once, from prefix sums (a node `n`
    holds the changes in periods (n - lowbit(n), n], one-based), however many changes share it."""
    size = SIZE[kind]
    top = size - 1
    summed: dict[int, int] = {}
    for index, d in changes.items():
        i = (index if index <= top else top) if index >= 0 else 0
        summed[i + 1] = summed.get(i + 1, 0) + d
    if not summed:
        return {}
    lo, hi = min(summed), max(summed)
    if hi - lo > 4 * len(summed) + 64:
        return _node_sums_sparse(size, summed)
    # prefix[x - lo + 1] = the changes in lo..x (x in lo - 1 .. hi)
    prefix = [0] * (hi - lo + 2)
    total = 0
    get = summed.get
    for x in range(lo, hi + 1):
        total += get(x, 0)
        prefix[x - lo + 1] = total
    out: dict[int, int] = {}
    seen: set[int] = set()
    for i in summed:
        while i <= size and i not in seen:
            seen.add(i)
            below = i - (i & -i)  # the node holds (below, i]
            upper = total if i >= hi else prefix[i - lo + 1]
            lower = 0 if below < lo else total if below >= hi else prefix[below - lo + 1]
            if upper != lower:
                out[i] = upper - lower
            i += i & -i
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
