"""Splitting one export into chunks.

Chunks are key ranges balanced by estimated row counts, calendar ranges, exact
row-count ranges, or physical page ranges of a table. Every plan covers every row
exactly once: ranges are half-open and contiguous, the first and last are
open-ended, and rows whose key is NULL get a chunk of their own (unless the key
column is NOT NULL).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.errors import ConfigError
from rivet.plan import counting, estimates
from rivet.sources.catalog import Catalog, KeyCuts, KeyOrigin
from rivet.sources.dialect import Dialect, KeyKind

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session

log = logging.getLogger("rivet")
# A page-range chunk is sized to keep its statement short: half a second of heap at a
# rate one backend sustains while a client drains it, even on a slow machine (32 MiB).
# Chunks share parts, so small chunks do not mean small files.
PAGE_CHUNK_SECONDS = 0.5
HEAP_BYTES_PER_SECOND = 64 * 1024 * 1024


@dataclass(frozen=True)
class Chunk:
    """One bounded read: the SQL to run, a label for people, and the bounds the SQL is made from.

    ``bounds`` (plain values, kept with a checkpoint) let a resumed run make the SQL again
    from its own plan instead of running SQL text from the state store:
    ``["keys", column, lo, hi]`` (the key's integer form in ``[lo, hi)``, None open),
    ``["nulls", column]``, ``["pages", lo, hi]`` (hi None: to the end), ``["whole"]`` or
    ``["keyset", columns, lo, hi]`` (key tuples, None open), with ``mark, through`` after them
    for a keyset_incremental run (its window, the same in every chunk).
    """

    index: int
    query: str
    label: str
    bounds: tuple[Any, ...] = ()


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
    # chunk_strategy: count reads the key to balance the chunks; the default estimates.
    counted: bool = False
    # chunk_by_key: keyset ranges of a unique key of these columns (``column`` is then None).
    keys: tuple[str, ...] = ()
    # keyset_incremental: only the keys after the mark the last run published.
    incremental: bool = False

    @property
    def strategy(self) -> str:
        """``keyset``, ``days``, ``dense``, ``count`` or ``size``."""
        if self.keys:
            return "keyset"
        if self.by_days:
            return "days"
        if self.dense:
            return "dense"
        return "count" if self.count else "size"


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
    bounds: list[int | None] = [None, *cuts, None]
    chunks = [
        key_chunk(i, base, kind, ("keys", column, lo, hi)) for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]
    if with_nulls:
        chunks.append(key_chunk(len(chunks), base, kind, ("nulls", column)))
    return chunks


def key_chunk(index: int, base: str, kind: KeyKind, bounds: tuple[Any, ...]) -> Chunk:
    """The chunk of ``base`` whose key lies within ``bounds`` (``keys`` or ``nulls``)."""
    k = kind.quote(bounds[1])
    if bounds[0] == "nulls":
        predicate, label = f"{k} IS NULL", "NULL keys"
    else:
        _, _, lo, hi = bounds
        parts = []
        if lo is not None:
            parts.append(f"{k} >= {kind.literal(int(lo))}")
        if hi is not None:
            parts.append(f"{k} < {kind.literal(int(hi))}")
        # Without cuts the one range holds every key (its NULLs have their own chunk).
        predicate = " AND ".join(parts) or f"{k} IS NOT NULL"
        label = "all keys" if not parts else f"[{_shown(kind, lo, '-inf')}, {_shown(kind, hi, '+inf')})"
    return Chunk(index, f"SELECT * FROM ({base}) AS _rivet_chunk WHERE {predicate}", label, bounds)


def _shown(kind: KeyKind, n: int | None, open_end: str) -> str:
    return open_end if n is None else kind.literal(int(n))


def plan_chunks(plan: ExportPlan, session: Session, schema: pa.Schema, mark: Any = None) -> list[Chunk]:
    """The chunks of ``plan``: those it carries, else planned now on ``session``.

    ``mark``: a keyset_incremental export's stored mark (None: it has none yet).
    """
    if plan.chunks is not None:
        return list(plan.chunks)
    spec = resolved_chunking(plan, session, schema)
    if spec is None:
        assert plan.table is not None
        return plan_page_chunks(session, plan.source.catalog, plan.table, plan.parallel)
    if spec.keys:
        from rivet.plan.keyset import plan_keyset_chunks  # keyset builds on this module's Chunk

        return plan_keyset_chunks(plan, session, schema, spec, mark)
    return plan_key_chunks(
        session,
        plan.query,
        schema,
        spec,
        consistent=plan.consistent,
        relation=plan.table,
        dialect=plan.source.dialect,
        catalog=plan.source.catalog,
    )


def resolved_chunking(plan: ExportPlan, session: Session, schema: pa.Schema) -> ChunkSpec | None:
    """The plan's chunking with its key decided (None: page chunks).

    ``chunk_column`` or ``chunk_by_key`` as configured; else the table's primary key: ranges
    of one integer, date or timestamp column; for any other key (a UUID, text, or several
    columns) page ranges where the database has them, else keyset chunks on the key (as the
    original tool chose for a MySQL table without an integer key).
    """
    spec = plan.chunking
    if spec is None or spec.keys or spec.column is not None:
        return spec
    assert plan.table is not None
    names = [r[0] for r in session.query(plan.source.dialect.primary_key_query(plan.table)) if r[0]]
    if not names:
        raise ConfigError(f"table {plan.table} has no primary key to chunk by; set chunk_column or chunk_by_key")
    if len(names) == 1 and names[0] in schema.names and _is_range_key(schema.field(names[0]).type):
        log.info("chunk_column not set: using the primary key %s of %s", names[0], plan.table)
        return dataclasses.replace(spec, column=names[0])
    if plan.source.catalog.capabilities.splits_tables_by_pages:
        # A key not in the heap's order (a random UUID) would read every page for every chunk.
        log.info("chunk_column not set and the primary key of %s is not one integer: page ranges", plan.table)
        return None
    log.info("chunk_column not set: keyset chunks on the primary key (%s) of %s", ", ".join(names), plan.table)
    return dataclasses.replace(spec, keys=tuple(names))


def _is_range_key(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_date32(t) or pa.types.is_timestamp(t))


def plan_key_chunks(
    session: Session,
    base: str,
    schema: pa.Schema,
    spec: ChunkSpec,
    *,
    consistent: bool,
    relation: str | None = None,
    dialect: Dialect,
    catalog: Catalog,
) -> list[Chunk]:
    """Chunks over the key column of ``base`` (``relation``: the table it reads whole, if any).

    Planned from statistics and estimates, which cost milliseconds; the key is read
    only for ``chunk_dense`` and ``chunk_strategy: count``.
    """
    assert spec.column is not None
    kind = key_kind(schema, spec.column, dialect)
    if spec.dense or spec.counted:
        return _counted_chunks(session, base, spec, kind, consistent)
    origin = estimates.key_origin(session, base, schema.names, spec.column, relation)
    # A query may make a NOT NULL column NULL (an outer join): only a table's own column says no.
    with_nulls = relation is None or origin is None or catalog.key_nullable(session, origin)
    rows = estimates.planning_rows(session, dialect, catalog, base, origin)
    if spec.by_days:
        bounds = _bounds(session, catalog, base, spec.column, origin, kind)
        return _ranges(base, spec.column, kind, _day_cuts(spec, kind, bounds), with_nulls)
    wanted = max(spec.count or math.ceil((rows or 0) / spec.size), spec.min_chunks)
    target = max(1, math.ceil((rows or 0) / wanted)) if rows else spec.size
    if wanted <= 1:
        return _ranges(base, spec.column, kind, [], with_nulls)
    cuts = None
    if origin is not None:
        source_type = (schema.field(spec.column).metadata or {}).get(b"rivet.source_type", b"").decode()
        cuts = catalog.estimated_cuts(session, KeyCuts(origin, kind, source_type, rows, target, wanted))
    if cuts is None:
        bounds = _bounds(session, catalog, base, spec.column, origin, kind)
        cuts = estimates.uniform_cuts(*bounds, wanted) if bounds else []
    return _ranges(base, spec.column, kind, cuts, with_nulls)


def _bounds(
    session: Session, catalog: Catalog, base: str, column: str, origin: KeyOrigin | None, kind: KeyKind
) -> tuple[int, int] | None:
    """Min and max of the key: through an index when one leads with it, else one pass over the query."""
    if origin is not None and (found := estimates.indexed_bounds(session, catalog, origin, kind)) is not None:
        return found
    log.info("planning reads min and max of %s in one pass: no index or statistics to plan from", column)
    lo, hi, _, _ = counting.key_stats(session, base, column, kind)
    return None if lo is None or hi is None else (lo, hi)


def _day_cuts(spec: ChunkSpec, kind: KeyKind, bounds: tuple[int, int] | None) -> list[int]:
    if kind.name == "int":
        raise ConfigError(f"chunk_by_days needs a date or timestamp chunk_column; '{spec.column}' is an integer")
    if bounds is None:
        return []
    lo, hi = bounds
    assert spec.by_days is not None
    unit = kind.day_unit() * spec.by_days
    first = (lo // kind.day_unit()) * kind.day_unit()
    return list(range(first + unit, hi + 1, unit))


def _counted_chunks(session: Session, base: str, spec: ChunkSpec, kind: KeyKind, consistent: bool) -> list[Chunk]:
    """Chunks from the key's values read in full (dense: exact row counts)."""
    assert spec.column is not None
    lo, hi, count, nulls = counting.key_stats(session, base, spec.column, kind)
    # Outside one snapshot, rows with a NULL key may arrive after planning: keep their chunk.
    with_nulls = nulls > 0 or not consistent
    if lo is None or hi is None:
        return _ranges(base, spec.column, kind, [], with_nulls)
    if spec.dense:
        cuts = counting.dense_cuts(session, base, spec.column, kind, spec.size)
    else:
        target = math.ceil(count / spec.count) if spec.count else min(spec.size, math.ceil(count / spec.min_chunks))
        cuts = (
            [] if count <= target else counting.balanced_cuts(session, base, spec.column, kind, lo, hi, count, target)
        )
    return _ranges(base, spec.column, kind, cuts, with_nulls)


def plan_page_chunks(session: Session, catalog: Catalog, relation: str, parallel: int) -> list[Chunk]:
    """Chunks over the physical pages of a table (PostgreSQL's TID range scans)."""
    layout = catalog.table_pages(session, relation)
    if layout is None:
        return [page_chunk(0, relation, ("whole",))]
    pages, block = layout
    pages_per_chunk = max(1, int(PAGE_CHUNK_SECONDS * HEAP_BYTES_PER_SECOND) // block)
    wanted = max(math.ceil(pages / pages_per_chunk), min(4 * parallel, pages))
    step = math.ceil(pages / wanted)
    count = math.ceil(pages / step)
    return [
        page_chunk(i, relation, ("pages", i * step if i > 0 else None, (i + 1) * step if i < count - 1 else None))
        for i in range(count)
    ]


def page_chunk(index: int, relation: str, bounds: tuple[Any, ...]) -> Chunk:
    """The chunk of ``relation`` on the pages within ``bounds`` (``pages`` or ``whole``)."""
    base = f"SELECT * FROM {relation}"
    if bounds[0] == "whole":
        return Chunk(index, base, "whole table", bounds)
    _, lo, hi = bounds
    parts = []
    if lo is not None:
        parts.append(f"ctid >= '({int(lo)},0)'::tid")
    if hi is not None:
        parts.append(f"ctid < '({int(hi)},0)'::tid")
    label = f"pages [{int(lo or 0)}, {'end' if hi is None else int(hi)})"
    return Chunk(index, f"{base} WHERE {' AND '.join(parts) or 'true'}", label, bounds)


def rebuilt_chunk(plan: ExportPlan, schema: pa.Schema, spec: ChunkSpec | None, index: int, bounds: Any) -> Chunk:
    """The chunk ``bounds`` describe, made again from ``plan`` (never from stored SQL).

    ``spec``: the chunking this run uses, its key decided (:func:`resolved_chunking`).
    Raises ValueError for bounds this plan could not have made.
    """
    if not isinstance(bounds, list | tuple) or not bounds:
        raise ValueError(f"chunk {index} has no bounds")
    bounds = tuple(bounds)
    if bounds[0] in ("keyset", "keyset_nulls"):
        from rivet.plan.keyset import rebuilt_keyset_chunk

        return rebuilt_keyset_chunk(plan, schema, spec.keys if spec else (), index, bounds)
    if bounds[0] in ("pages", "whole"):
        if (
            plan.table is None
            or spec is not None
            or not (bounds == ("whole",) or (len(bounds) == 3 and all(_integer_or_none(b) for b in bounds[1:])))
        ):
            raise ValueError(f"chunk {index}: {bounds!r} are not page bounds of this export")
        return page_chunk(index, plan.table, bounds)
    shape_ok = (bounds[0] == "keys" and len(bounds) == 4 and all(_integer_or_none(b) for b in bounds[2:])) or (
        bounds[0] == "nulls" and len(bounds) == 2
    )
    key_column = spec.column if spec else None
    if not shape_ok or key_column is None or bounds[1] != key_column:
        raise ValueError(f"chunk {index}: {bounds!r} are not key bounds of this export (its key is {key_column})")
    return key_chunk(index, plan.query, key_kind(schema, key_column, plan.source.dialect), bounds)


# Bounds shapes of ranges ``[kind, ..., lo, hi]`` and of chunks outside every range.
RANGE_BOUNDS = ("keys", "keyset", "pages")
EXTRA_BOUNDS = ("nulls", "keyset_nulls")


def check_cover(bounds: list[tuple[Any, ...]]) -> None:
    """Raise ValueError unless ``bounds`` (of chunks 0..n-1, in order) cover every row exactly once.

    Ranges must follow one another (each starts where the one before ends, the first and the last
    open), with at most one NULL-key chunk after them, or be one ``whole`` chunk: a store edited
    to overlap two ranges, or to leave a gap, would otherwise duplicate or lose rows.
    """
    if [tuple(b) for b in bounds] == [("whole",)]:
        return
    ranges = [b for b in bounds if b and b[0] in RANGE_BOUNDS]
    extras = [b for b in bounds if b and b[0] in EXTRA_BOUNDS]
    if len(ranges) + len(extras) != len(bounds) or len(extras) > 1 or (extras and bounds[-1] != extras[0]):
        raise ValueError("its chunks are not a run of ranges and at most one NULL-key chunk after them")
    if len({b[0] for b in ranges}) != 1:
        raise ValueError("its chunks mix kinds of ranges")
    # A keyset_incremental run's window follows its ranges' edges, and is the same in every chunk.
    if len({json.dumps(b[4:]) for b in ranges if b[0] == "keyset"}) > 1:
        raise ValueError("its keyset chunks read different windows of keys")
    edges = [(b[1], b[2]) if b[0] == "pages" else (b[2], b[3]) for b in ranges]
    if edges[0][0] is not None or edges[-1][1] is not None:
        raise ValueError("its first range has a lower bound or its last an upper one")
    for i, ((_, hi), (lo, _)) in enumerate(itertools.pairwise(edges)):
        if hi is None or hi != lo:
            raise ValueError(f"range {i} ends at {hi!r} but the next starts at {lo!r}")


def _integer_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def fingerprint(*parts: object) -> str:
    """A short stable hash of what decides a plan."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
