"""Splitting one export into chunks.

Chunks are key ranges balanced by row count, calendar ranges, exact row-count
ranges, or physical page ranges of a table. Every plan covers every row exactly
once: ranges are half-open and contiguous, the first and last are open-ended,
and rows whose key is NULL get a chunk of their own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from rivet.dialects import Dialect, PostgresDialect
from rivet.errors import ConfigError
from rivet.mysql_planning import estimated_cuts, leading_index

if TYPE_CHECKING:
    from rivet._native import MySession, PgSession

    Session = PgSession | MySession

# A type name from the catalog that may be written into a cast.
SQL_TYPE_NAME = re.compile(r"^[a-z][a-z0-9 _]*$")
# A page-range chunk holds about this many 8 KiB pages (128 MiB of heap): fewer, larger parts.
PAGES_PER_CHUNK = 16384


@dataclass(frozen=True)
class Chunk:
    """One bounded read: the SQL to run and a label for people."""

    index: int
    query: str
    label: str


@dataclass(frozen=True)
class ChunkSpec:
    """The chunking keys of an export."""

    column: str | None
    size: int = 100_000
    count: int | None = None
    by_days: int | None = None
    dense: bool = False
    # At least this many chunks (a parallel full read splits even a small table).
    min_chunks: int = 1

    @property
    def strategy(self) -> str:
        """``days``, ``dense``, ``count`` or ``size``."""
        if self.by_days:
            return "days"
        if self.dense:
            return "dense"
        return "count" if self.count else "size"


@dataclass(frozen=True)
class KeyKind:
    """How a key column maps to integers (for bucketing) and back to SQL literals."""

    name: str  # int, date, timestamp, timestamptz
    dialect: Dialect

    def quote(self, column: str) -> str:
        """The column name, quoted for the dialect."""
        return self.dialect.quote(column)

    def as_number(self, column: str) -> str:
        """SQL turning the key into an integer: itself, days or microseconds since 1970."""
        return self.dialect.key_as_number(self.name, column)

    def literal(self, n: int) -> str:
        """The SQL literal of the key whose integer form is ``n``."""
        return self.dialect.key_literal(self.name, n)

    def day_unit(self) -> int:
        """Integer units in one day."""
        return 1 if self.name == "date" else 86_400_000_000


def key_kind(schema: pa.Schema, column: str, dialect: Dialect) -> KeyKind:
    """The kind of ``column`` in the export's schema, or a ConfigError naming it."""
    if column not in schema.names:
        raise ConfigError(
            f"chunk_column '{column}' is not a column of the query (it returns: {', '.join(schema.names)})"
        )
    t = schema.field(column).type
    if pa.types.is_integer(t):
        return KeyKind("int", dialect)
    if pa.types.is_date32(t):
        return KeyKind("date", dialect)
    if pa.types.is_timestamp(t):
        return KeyKind("timestamptz" if t.tz else "timestamp", dialect)
    raise ConfigError(f"chunk_column '{column}' is {t}; chunking needs an integer, date or timestamp column")


def _ranges(base: str, column: str, kind: KeyKind, cuts: list[int], with_nulls: bool) -> list[Chunk]:
    """Contiguous half-open ranges between ``cuts``, open at both ends, plus a NULL chunk."""
    k = kind.quote(column)

    def chunk(index: int, predicate: str, label: str) -> Chunk:
        return Chunk(index, f"SELECT * FROM ({base}) AS _rivet_chunk WHERE {predicate}", label)

    chunks = []
    if not cuts:
        chunks.append(chunk(0, f"{k} IS NOT NULL", "all keys"))
    else:
        bounds: list[int | None] = [None, *cuts, None]
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            parts = []
            if lo is not None:
                parts.append(f"{k} >= {kind.literal(lo)}")
            if hi is not None:
                parts.append(f"{k} < {kind.literal(hi)}")
            label = f"[{'-inf' if lo is None else kind.literal(lo)}, {'+inf' if hi is None else kind.literal(hi)})"
            chunks.append(chunk(i, " AND ".join(parts), label))
    if with_nulls:
        chunks.append(chunk(len(chunks), f"{k} IS NULL", "NULL keys"))
    return chunks


def _stats(session: Session, base: str, column: str, kind: KeyKind) -> tuple[int | None, int | None, int, int]:
    x = kind.as_number(kind.quote(column))
    row = session.query(
        f"SELECT min(x), max(x), count(x), count(*) - count(x) FROM (SELECT {x} AS x FROM ({base}) AS _r) AS s"
    )[0]
    lo, hi = (int(row[0]) if row[0] is not None else None), (int(row[1]) if row[1] is not None else None)
    return lo, hi, int(row[2] or 0), int(row[3] or 0)


def _balanced_cuts(
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
    cuts: list[int] = []
    acc = 0
    for b in range(1, buckets + 1):
        n = counts.get(b, 0)
        start, end = edge(b - 1), edge(b)
        if n > target:
            if acc:
                cuts.append(start)
            if end - start > 1 and depth < 6:
                cuts += _balanced_cuts(session, base, column, kind, start, end - 1, n, target, depth + 1)
            else:
                pieces = math.ceil(n / target)
                cuts += [start + (j * (end - start)) // pieces for j in range(1, pieces)]
            cuts.append(end)
            acc = 0
            continue
        if acc and acc + n > target:
            cuts.append(start)
            acc = 0
        acc += n
    return sorted({c for c in cuts if lo < c <= hi})


def _dense_cuts(session: Session, base: str, column: str, kind: KeyKind, target: int) -> list[int]:
    """Cut points at every ``target``-th key in key order: exact row counts (one sorted pass)."""
    x = kind.as_number(kind.quote(column))
    rows = session.query(
        f"SELECT x FROM (SELECT x, row_number() OVER (ORDER BY x) AS rn FROM (SELECT {x} AS x FROM ({base}) AS _r "
        f"WHERE {kind.quote(column)} IS NOT NULL) AS s) AS t WHERE rn % {target} = 1 ORDER BY x"
    )
    values = [int(r[0]) for r in rows if r[0] is not None]
    return sorted(set(values[1:]))


def _catalog_cuts(
    session: Session, relation: str, column: str, kind: KeyKind, source_type: str, lo: int, hi: int, target: int
) -> list[int] | None:
    """Cut points from the planner's statistics of a table column (no scan), or None without them.

    ``pg_stats.histogram_bounds`` splits the column into buckets of equal row counts;
    buckets are grouped, or split evenly, to about ``target`` rows per range.
    """
    pg = PostgresDialect()
    if not SQL_TYPE_NAME.match(source_type):
        return None
    row = session.query(
        "SELECT c.reltuples::bigint, s.null_frac, s.histogram_bounds::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stats s ON s.schemaname = n.nspname "
        f"AND s.tablename = c.relname AND s.attname = {pg.string(column)} WHERE c.oid = {pg.relation(relation)}"
    )[0]
    if row[0] is None or row[2] is None or int(row[0]) <= 0:
        return None
    x = kind.as_number("v")
    bounds = [
        int(r[0])
        for r in session.query(f"SELECT {x} FROM unnest({pg.string(row[2])}::{source_type}[]) AS t(v) ORDER BY 1")
        if r[0] is not None
    ]
    if len(bounds) < 2:
        return None
    per_bucket = int(row[0]) * (1 - float(row[1] or 0)) / (len(bounds) - 1)
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
    return sorted({c for c in cuts if lo < c <= hi})


def plan_key_chunks(
    session: Session,
    base: str,
    schema: pa.Schema,
    spec: ChunkSpec,
    *,
    consistent: bool,
    relation: str | None = None,
    dialect: Dialect,
) -> list[Chunk]:
    """Chunks over the key column of ``base`` (``relation``: the table it reads whole, if any)."""
    assert spec.column is not None
    kind = key_kind(schema, spec.column, dialect)
    # A whole table is planned without scanning it: from PostgreSQL's statistics, or
    # from MySQL's index-dive estimates; a query (or a key without them) is counted.
    if relation is not None and not spec.by_days and not spec.dense and not spec.count:
        if isinstance(dialect, PostgresDialect):
            chunks = _chunks_from_catalog(session, relation, base, schema, spec, kind, consistent)
        else:
            chunks = _chunks_from_estimates(session, relation, base, spec, kind)  # type: ignore[arg-type]
        if chunks is not None:
            return chunks
    lo, hi, count, nulls = _stats(session, base, spec.column, kind)
    # Outside one snapshot, rows with a NULL key may arrive after planning: keep their chunk.
    with_nulls = nulls > 0 or not consistent
    if lo is None or hi is None:
        return _ranges(base, spec.column, kind, [], with_nulls)
    if spec.by_days:
        if kind.name == "int":
            raise ConfigError(f"chunk_by_days needs a date or timestamp chunk_column; '{spec.column}' is an integer")
        unit = kind.day_unit() * spec.by_days
        first = (lo // kind.day_unit()) * kind.day_unit()
        cuts = list(range(first + unit, hi + 1, unit))
    elif spec.dense:
        cuts = _dense_cuts(session, base, spec.column, kind, spec.size)
    else:
        target = math.ceil(count / spec.count) if spec.count else min(spec.size, math.ceil(count / spec.min_chunks))
        cuts = [] if count <= target else _balanced_cuts(session, base, spec.column, kind, lo, hi, count, target)
    return _ranges(base, spec.column, kind, cuts, with_nulls)


def _chunks_from_catalog(
    session: Session,
    relation: str,
    base: str,
    schema: pa.Schema,
    spec: ChunkSpec,
    kind: KeyKind,
    consistent: bool,
) -> list[Chunk] | None:
    """Row-balanced chunks of a whole table from min/max (an index lookup) and its statistics."""
    assert spec.column is not None
    k = kind.quote(spec.column)
    row = session.query(f"SELECT min({kind.as_number(k)}), max({kind.as_number(k)}) FROM {relation}")[0]
    if row[0] is None or row[1] is None:
        return None
    source_type = (schema.field(spec.column).metadata or {}).get(b"rivet.source_type", b"").decode()
    cuts = _catalog_cuts(session, relation, spec.column, kind, source_type, int(row[0]), int(row[1]), spec.size)
    if cuts is None:
        return None
    # Statistics may be stale: the NULL chunk stays unless the column cannot hold NULL.
    pg = PostgresDialect()
    notnull = session.query(
        f"SELECT attnotnull FROM pg_attribute WHERE attrelid = {pg.relation(relation)} "
        f"AND attname = {pg.string(spec.column)}"
    )
    nullable = not (notnull and notnull[0][0] == "t")
    del consistent
    return _ranges(base, spec.column, kind, cuts, nullable)


def _chunks_from_estimates(
    session: MySession, relation: str, base: str, spec: ChunkSpec, kind: KeyKind
) -> list[Chunk] | None:
    """MySQL: row-balanced chunks of a whole table from min/max and the optimizer's estimates.

    None when the key leads no index: estimates would be guesses, so the key is counted.
    """
    assert spec.column is not None
    nullable = leading_index(session, relation, spec.column)
    if nullable is None:
        return None
    k = kind.quote(spec.column)
    row = session.query(f"SELECT {kind.as_number(f'MIN({k})')}, {kind.as_number(f'MAX({k})')} FROM {relation}")[0]
    if row[0] is None or row[1] is None:
        return None
    cuts = estimated_cuts(session, relation, spec.column, kind, int(row[0]), int(row[1]), spec.size, spec.min_chunks)
    return _ranges(base, spec.column, kind, cuts, nullable)


def plan_page_chunks(session: Session, relation: str, parallel: int) -> list[Chunk]:
    """Chunks over the physical pages of a table (TID range scans, PostgreSQL 14+)."""
    row = session.query(
        f"SELECT pg_relation_size({PostgresDialect().relation(relation)}) "
        "/ current_setting('block_size')::int, current_setting('server_version_num')::int"
    )[0]
    pages, version = int(row[0] or 0), int(row[1] or 0)
    base = f"SELECT * FROM {relation}"
    if version < 140000 or pages == 0:
        return [Chunk(0, base, "whole table")]
    wanted = max(math.ceil(pages / PAGES_PER_CHUNK), min(4 * parallel, pages))
    step = math.ceil(pages / wanted)
    count = math.ceil(pages / step)
    chunks = []
    for i in range(count):
        lo, hi = i * step, (i + 1) * step
        parts = []
        if i > 0:
            parts.append(f"ctid >= '({lo},0)'::tid")
        if i < count - 1:
            parts.append(f"ctid < '({hi},0)'::tid")
        where = " AND ".join(parts) or "true"
        chunks.append(Chunk(i, f"{base} WHERE {where}", f"pages [{lo}, {'end' if i == count - 1 else hi})"))
    return chunks


def fingerprint(*parts: object) -> str:
    """A short stable hash of what decides a plan."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
