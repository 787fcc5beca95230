"""Chunk boundaries by reading the key: only when asked (``chunk_strategy: count``, ``chunk_dense``).

These run aggregates over the whole query, so their statements take as long as a scan
of it; the default plans from estimates (``rivet.plan.estimates``) instead.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rivet.sources.cuts import even_split, grouped_cuts

if TYPE_CHECKING:
    from rivet.sources.base import Session
    from rivet.sources.dialect import KeyKind


def key_stats(session: Session, base: str, column: str, kind: KeyKind) -> tuple[int | None, int | None, int, int]:
    """min, max (as integers), the count of non-NULL keys and of NULL keys: one pass over ``base``."""
    x = kind.as_number(kind.quote(column))
    row = session.query(
        f"SELECT min(x), max(x), count(x), count(*) - count(x) FROM (SELECT {x} AS x FROM ({base}) AS _r) AS s"
    )[0]
    lo, hi = (int(row[0]) if row[0] is not None else None), (int(row[1]) if row[1] is not None else None)
    return lo, hi, int(row[2] or 0), int(row[3] or 0)


def balanced_cuts(
    session: Session, base: str, column: str, kind: KeyKind, lo: int, hi: int, count: int, target: int, depth: int = 0
) -> list[int]:
    """Cut points in ``[lo, hi]`` giving about ``target`` rows per range, from a histogram of the key.

    Equal-width buckets are counted in one pass; consecutive buckets are grouped until a
    range holds ``target`` rows, and a bucket heavier than that is counted again, finer,
    so a dense cluster inside a sparse key space still splits evenly.
    """
    expected = math.ceil(count / target)
    span = hi - lo + 1
    buckets = min(max(expected * 8, 64), 20_000, span)

    def edge(i: int) -> int:
        return lo + (i * span) // buckets

    x = kind.as_number(kind.quote(column))
    # Equal-width buckets 1..buckets, in exact decimal arithmetic (microsecond keys overflow bigint).
    bucket = f"floor((CAST(x AS DECIMAL(38,0)) - {lo}) * {buckets} / {span}) + 1"
    rows = session.query(
        f"SELECT b, count(*) FROM (SELECT {bucket} AS b "
        f"FROM (SELECT {x} AS x FROM ({base}) AS _r) AS s WHERE x >= {lo} AND x <= {hi}) AS h GROUP BY b"
    )
    counts = {int(b): int(n) for b, n in rows if b is not None and n is not None}

    def finer(start: int, end: int, n: float) -> list[int]:
        if end - start > 1 and depth < 6:
            return balanced_cuts(session, base, column, kind, start, end - 1, int(n), target, depth + 1)
        return even_split(start, end, n, target)

    pieces = [(edge(b - 1), edge(b), counts.get(b, 0)) for b in range(1, buckets + 1)]
    return [c for c in grouped_cuts(pieces, target, finer) if lo < c <= hi]


def dense_cuts(session: Session, base: str, column: str, kind: KeyKind, target: int) -> list[int]:
    """Cut points at every ``target``-th key in key order: exact row counts (one sorted pass)."""
    x = kind.as_number(kind.quote(column))
    rows = session.query(
        f"SELECT x FROM (SELECT x, row_number() OVER (ORDER BY x) AS rn FROM (SELECT {x} AS x FROM ({base}) AS _r "
        f"WHERE {kind.quote(column)} IS NOT NULL) AS s) AS t WHERE rn % {target} = 1 ORDER BY x"
    )
    values = [int(r[0]) for r in rows if r[0] is not None]
    return sorted(set(values[1:]))
