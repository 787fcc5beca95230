"""Chunk boundaries from what the servers already know, without reading the data.

A chunk key that a query reads straight from a table column is planned from that
column: PostgreSQL's statistics (``pg_stats.histogram_bounds``, equal-frequency
buckets) or MySQL's index dives, and the optimizer's estimate of the query's rows.
The servers say where a result column comes from (PostgreSQL's RowDescription,
MySQL's column metadata), so no SQL is parsed here. Estimates only place the cuts:
ranges stay contiguous and open-ended, so a wrong estimate makes a chunk bigger or
smaller, never loses a row.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rivet.sources.dialects import Dialect, MysqlDialect, PostgresDialect
from rivet.sources.mysql.estimates import estimated_cuts, leading_index

if TYPE_CHECKING:
    from rivet._native import MySession, PgSession
    from rivet.sources.dialect import KeyKind

    Session = PgSession | MySession

log = logging.getLogger("rivet")

# A type name from the catalog that may be written into a cast.
SQL_TYPE_NAME = re.compile(r"^[a-z][a-z0-9 _]*$")


@dataclass(frozen=True)
class KeyOrigin:
    """The table column a chunk key reads directly (quoted, qualified table; column name)."""

    relation: str
    column: str


def key_origin(session: Session, base: str, names: list[str], column: str, table: str | None) -> KeyOrigin | None:
    """Where the chunk key comes from: the exported table's column, or what the server says."""
    if table is not None:
        return KeyOrigin(table, column)
    origins = session.origins(base)
    if len(origins) != len(names) or column not in names:
        return None
    found = origins[names.index(column)]
    return KeyOrigin(found[0], found[1]) if found else None


def estimated_rows(session: Session, dialect: Dialect, base: str) -> int | None:
    """The optimizer's estimate of the rows ``base`` returns."""
    sql = dialect.estimate_query(base)
    if sql is None:
        return None
    rows = session.query(sql)
    try:
        return dialect.rows_in_plan(json.loads(rows[0][0] or "null"))
    except (IndexError, ValueError):
        return None


def table_rows(session: Session, dialect: Dialect, origin: KeyOrigin) -> int | None:
    """The row count the catalog keeps for the key's table (no scan)."""
    if isinstance(dialect, MysqlDialect):
        schema, table = dialect.qualified_parts(origin.relation)
        sql = f"SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table}"
    else:
        sql = f"SELECT reltuples::bigint FROM pg_class WHERE oid = {PostgresDialect().relation(origin.relation)}"
    rows = session.query(sql)
    return int(rows[0][0]) if rows and rows[0][0] is not None and int(rows[0][0]) > 0 else None


def planning_rows(session: Session, dialect: Dialect, base: str, origin: KeyOrigin | None) -> int | None:
    """The rows to plan for: the larger of the optimizer's estimate and the key table's size.

    Estimates of filters are often far too low; planning for more rows than arrive only
    makes more, smaller chunks, while planning for fewer makes chunks too long to read.
    """
    found = [n for n in (estimated_rows(session, dialect, base), origin and table_rows(session, dialect, origin)) if n]
    return max(found) if found else None


def indexed_bounds(session: Session, dialect: Dialect, origin: KeyOrigin, kind: KeyKind) -> tuple[int, int] | None:
    """Min and max of the key, when an index of its table leads with it (two index lookups)."""
    if not _leads_an_index(session, dialect, origin):
        return None
    k = kind.as_number(dialect.quote(origin.column))
    row = session.query(f"SELECT min({k}), max({k}) FROM {origin.relation}")[0]
    if row[0] is None or row[1] is None:
        return None
    return int(row[0]), int(row[1])


def _leads_an_index(session: Session, dialect: Dialect, origin: KeyOrigin) -> bool:
    if isinstance(dialect, MysqlDialect):
        return leading_index(session, origin.relation, origin.column) is not None  # type: ignore[arg-type]
    pg = PostgresDialect()
    rows = session.query(
        "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        f"WHERE i.indrelid = {pg.relation(origin.relation)} AND a.attname = {pg.string(origin.column)} LIMIT 1"
    )
    return bool(rows)


def nullable(session: Session, dialect: Dialect, origin: KeyOrigin | None) -> bool:
    """Whether the key may be NULL (statistics may be stale, so only a NOT NULL column says no)."""
    if origin is None:
        return True
    if isinstance(dialect, MysqlDialect):
        schema, table = dialect.qualified_parts(origin.relation)
        rows = session.query(
            "SELECT IS_NULLABLE FROM information_schema.COLUMNS WHERE "
            f"TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND COLUMN_NAME = {dialect.string(origin.column)}"
        )
        return not rows or rows[0][0] != "NO"
    pg = PostgresDialect()
    rows = session.query(
        f"SELECT attnotnull FROM pg_attribute WHERE attrelid = {pg.relation(origin.relation)} "
        f"AND attname = {pg.string(origin.column)}"
    )
    return not (rows and rows[0][0] == "t")


def histogram_cuts(
    session: PgSession, origin: KeyOrigin, kind: KeyKind, source_type: str, rows: int | None, target: int
) -> list[int] | None:
    """PostgreSQL: cut points from the column's histogram, about ``target`` rows per range.

    The histogram splits the column into buckets of equal row counts; ``rows`` (the
    query's estimate, else the table's) is spread over them. None without statistics.
    """
    pg = PostgresDialect()
    if not SQL_TYPE_NAME.match(source_type):
        return None
    row = session.query(
        "SELECT c.reltuples::bigint, s.null_frac, s.histogram_bounds::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stats s ON s.schemaname = n.nspname "
        f"AND s.tablename = c.relname AND s.attname = {pg.string(origin.column)} "
        f"WHERE c.oid = {pg.relation(origin.relation)}"
    )[0]
    if row[2] is None or row[0] is None:
        return None
    total = rows if rows is not None else int(row[0])
    if total <= 0:
        return None
    x = kind.as_number("v")
    bounds = [
        int(r[0])
        for r in session.query(f"SELECT {x} FROM unnest({pg.string(row[2])}::{source_type}[]) AS t(v) ORDER BY 1")
        if r[0] is not None
    ]
    if len(bounds) < 2:
        return None
    per_bucket = total * (1 - float(row[1] or 0)) / (len(bounds) - 1)
    cuts: list[int] = []
    acc = 0.0
    for start, end in itertools.pairwise(bounds):
        if per_bucket > target:
            pieces = math.ceil(per_bucket / target)
            cuts += [start + (j * (end - start)) // pieces for j in range(pieces)]
            acc = 0.0
            continue
        if acc and acc + per_bucket > target:
            cuts.append(start)
            acc = 0.0
        acc += per_bucket
    return sorted(set(cuts))


def index_dive_cuts(
    session: MySession, origin: KeyOrigin, kind: KeyKind, target: int, min_chunks: int
) -> list[int] | None:
    """MySQL: cut points from the optimizer's index dives; None when the key leads no index."""
    if leading_index(session, origin.relation, origin.column) is None:
        return None
    k = kind.quote(origin.column)
    row = session.query(f"SELECT {kind.as_number(f'MIN({k})')}, {kind.as_number(f'MAX({k})')} FROM {origin.relation}")[
        0
    ]
    if row[0] is None or row[1] is None:
        return None
    return estimated_cuts(session, origin.relation, origin.column, kind, int(row[0]), int(row[1]), target, min_chunks)


def uniform_cuts(lo: int, hi: int, pieces: int) -> list[int]:
    """``pieces`` ranges of equal key width over ``[lo, hi]``."""
    span = hi - lo + 1
    pieces = max(1, min(pieces, span))
    return sorted({lo + (j * span) // pieces for j in range(1, pieces)})
