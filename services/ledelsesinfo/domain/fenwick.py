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
