"""Planning facts about a MySQL/MariaDB table without scanning it: its keys, and row estimates.

The optimizer's ``EXPLAIN`` row estimate for a range of an indexed column comes from
index dives (a few page reads), so row-balanced chunk boundaries cost milliseconds
instead of a pass over the table. Estimates only place the cuts: the ranges stay
contiguous and open-ended, so a wrong estimate makes a chunk bigger, never loses a row.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rivet.sources.cuts import Piece, grouped_cuts, no_split
from rivet.sources.mysql.dialect import MysqlDialect

if TYPE_CHECKING:
    from rivet._native import MySession
    from rivet.sources.dialect import KeyKind

# Bisection stops at this depth: 2^64 pieces cover any integer or microsecond key span, so a
# dense cluster inside a huge sparse span is still split down to rows.
MAX_DEPTH = 64


MYSQL = MysqlDialect()


def leading_index(session: MySession, relation: str, column: str) -> bool | None:
    """Whether ``column`` leads an index of ``relation`` (None: it does not); True when it is nullable."""
    schema, table = MYSQL.qualified_parts(relation)
    rows = session.query(
        "SELECT NULLABLE FROM information_schema.STATISTICS WHERE "
        f"TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND COLUMN_NAME = {MYSQL.string(column)} "
        "AND SEQ_IN_INDEX = 1 LIMIT 1"
    )
    if not rows:
        return None
    return rows[0][0] == "YES"


def rows_in(plan: Any) -> int:
    """The first row estimate in an EXPLAIN FORMAT=JSON document (MySQL or MariaDB), 0 if none."""
    if isinstance(plan, dict):
        for key in ("rows_examined_per_scan", "rows"):
            if isinstance(plan.get(key), int | float):
                return int(plan[key])
        for value in plan.values():
            if (n := rows_in(value)) >= 0:
                return n
        return -1
    if isinstance(plan, list):
        for value in plan:
            if (n := rows_in(value)) >= 0:
                return n
    return -1


def estimated_cuts(
    session: MySession, relation: str, column: str, kind: KeyKind, lo: int, hi: int, target: int, min_chunks: int = 1
) -> list[int]:
    """Cut points in ``(lo, hi]``: about ``target`` rows per range, and about ``min_chunks`` ranges at least.

    Ranges may hold a quarter more than the target.
    The key span is halved until each piece is estimated to hold few enough rows, then
    neighbouring pieces are grouped up to the target, so dense and sparse stretches of a
    skewed key both end up in row-balanced ranges.
    """
    k = kind.quote(column)

    def estimate(a: int, b: int) -> int:
        sql = f"EXPLAIN FORMAT=JSON SELECT 1 FROM {relation} WHERE {k} >= {kind.literal(a)} AND {k} < {kind.literal(b)}"
        return max(rows_in(json.loads(session.query(sql)[0][0] or "{}")), 0)

    pieces: list[Piece] = []  # in key order

    def split(a: int, b: int, rows: int, depth: int) -> None:
        if rows <= limit or b - a <= 1 or depth >= MAX_DEPTH:
            pieces.append((a, b, rows))
            return
        middle = a + (b - a) // 2
        split(a, middle, estimate(a, middle), depth + 1)
        split(middle, b, estimate(middle, b), depth + 1)

    total = estimate(lo, hi + 1)
    limit = min(target, -(-total // min_chunks)) * 5 // 4
    split(lo, hi + 1, total, 0)
    return [c for c in grouped_cuts(pieces, limit, no_split) if c <= hi]
