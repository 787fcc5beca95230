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

import json
import logging
from typing import TYPE_CHECKING

from rivet.sources.catalog import Catalog, KeyOrigin

if TYPE_CHECKING:
    from rivet.sources.base import Session
    from rivet.sources.dialect import Dialect, KeyKind

log = logging.getLogger("rivet")


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


def planning_rows(
    session: Session, dialect: Dialect, catalog: Catalog, base: str, origin: KeyOrigin | None
) -> int | None:
    """The rows to plan for: the larger of the optimizer's estimate and the key table's size.

    Estimates of filters are often far too low; planning for more rows than arrive only
    makes more, smaller chunks, while planning for fewer makes chunks too long to read.
    """
    found = [n for n in (estimated_rows(session, dialect, base), origin and catalog.table_rows(session, origin)) if n]
    return max(found) if found else None


def indexed_bounds(session: Session, catalog: Catalog, origin: KeyOrigin, kind: KeyKind) -> tuple[int, int] | None:
    """Min and max of the key, when an index of its table leads with it (two index lookups)."""
    if not catalog.leads_an_index(session, origin):
        return None
    k = kind.as_number(kind.quote(origin.column))
    row = session.query(f"SELECT min({k}), max({k}) FROM {origin.relation}")[0]
    if row[0] is None or row[1] is None:
        return None
    return int(row[0]), int(row[1])


def uniform_cuts(lo: int, hi: int, pieces: int) -> list[int]:
    """``pieces`` ranges of equal key width over ``[lo, hi]``."""
    span = hi - lo + 1
    pieces = max(1, min(pieces, span))
    return sorted({lo + (j * span) // pieces for j in range(1, pieces)})
