"""Keyset chunks: ranges of a unique, indexed key of one or more columns (integers, text, uuid).

The server orders and compares the key; Python never does. Cuts are key tuples the server
returns while walking the key's index one chunk at a time (:mod:`rivet.plan.keywalk`), and
every range is a row comparison written in the dialect's literals.
A case- or accent-insensitive collation, trailing-space rules and MariaDB's UUID order are the
server's own. Ranges are half-open and contiguous, the first and last open-ended, so a row
inserted after planning still lands in exactly one chunk. With ``keyset_incremental`` every
chunk also keeps to the run's window: the keys after the mark the last run published, through
the highest key when the run was planned (the next run's mark). A unique key's columns are NOT NULL
(nullable ones are refused), but a query can still make them NULL (an outer join): a query's
chunks end with one for the rows whose key has a NULL.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rivet.errors import ConfigError
from rivet.plan.chunks import Chunk, ChunkSpec
from rivet.plan.keywalk import KeyWalk, walk_cuts
from rivet.sources.catalog import KeyOrigin

if TYPE_CHECKING:
    from rivet.plan.export import ExportPlan
    from rivet.sources.base import Session
    from rivet.sources.dialect import Dialect

log = logging.getLogger("rivet")
KeyValue = int | str
Cut = tuple[KeyValue, ...]
# MySQL types a keyset cannot cut: BIT comes back as raw bytes; ENUM and SET sort by their position
# in the list but compare with a literal as text.
UNWALKABLE_TYPES = ("bit", "enum", "set")
# How much of a key value a chunk's label shows (labels reach logs and the state store).
LABEL_CHARS = 24


@dataclass(frozen=True)
class KeyWindow:
    """The keys a ``keyset_incremental`` run reads.

    After ``mark`` (None: from the first key) through ``through`` (None: no key is after the
    mark, so nothing).
    """

    mark: Cut | None
    through: Cut | None

    def bounds(self) -> list[Any]:
        """The window as plain values, kept in every chunk's bounds."""
        return [None if self.mark is None else list(self.mark), None if self.through is None else list(self.through)]


@dataclass(frozen=True)
class Keyset:
    """The key of a keyset read: the query's column names, each column's kind, the dialect."""

    columns: tuple[str, ...]
    kinds: tuple[str, ...]  # "int" or "text" per column
    dialect: Dialect

    def literals(self, cut: Cut) -> list[str]:
        """Each value of ``cut`` as SQL the server compares with its column."""
        return [self.dialect.literal(v) for v in cut]

    def compare(self, columns: list[str], cut: Cut, op: str) -> str:
        """``(columns) op cut`` (``columns`` quoted)."""
        return self.dialect.key_compare(columns, self.literals(cut), op)

    def value(self, cut: Any) -> Cut:
        """``cut`` (a row of text from the server, or bounds from the state store) as typed values."""
        if not isinstance(cut, list | tuple) or len(cut) != len(self.kinds):
            raise ValueError(f"{cut!r} is not a value of the key ({', '.join(self.columns)})")
        values: list[KeyValue] = []
        for v, kind in zip(cut, self.kinds, strict=True):
            if kind == "int":
                if isinstance(v, bool) or not isinstance(v, int | str):
                    raise ValueError(f"{v!r} is not an integer key value")
                values.append(int(v))
            elif isinstance(v, str):
                values.append(v)
            else:
                raise ValueError(f"{v!r} is not a text key value")
        return tuple(values)


def keyset_of(schema: pa.Schema, keys: tuple[str, ...], dialect: Dialect) -> Keyset:
    """The keyset of ``keys`` in the export's schema, or a ConfigError naming the column."""
    kinds = []
    for key in keys:
        if key not in schema.names:
            raise ConfigError(
                f"chunk_by_key '{key}' is not a column of the query (it returns: {', '.join(schema.names)})"
            )
        t = schema.field(key).type
        source_type = (schema.field(key).metadata or {}).get(b"rivet.source_type", b"").decode().lower()
        if source_type.startswith(UNWALKABLE_TYPES):
            raise ConfigError(
                f"chunk_by_key '{key}' is {source_type}: the server orders it by another rule than it compares "
                "it (or sends it as raw bytes), so keyset chunks cannot cut it; use another unique key"
            )
        if pa.types.is_integer(t):
            kinds.append("int")
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            kinds.append("text")
        else:
            raise ConfigError(
                f"chunk_by_key '{key}' is {t}; keyset chunks take integer, text and uuid columns "
                "(use chunk_column for a date or timestamp key)"
            )
    return Keyset(keys, tuple(kinds), dialect)


def plan_keyset_chunks(
    plan: ExportPlan, session: Session, schema: pa.Schema, spec: ChunkSpec, mark: Any = None
) -> list[Chunk]:
    """Keyset chunks of ``plan`` on ``spec.keys``: cuts read from the server along the key's unique index.

    ``mark`` (with ``spec.incremental``): the highest key the last run published, as stored.
    """
    assert spec.keys
    keyset = keyset_of(schema, spec.keys, plan.source.dialect)
    relation, columns = _walked_key(plan, session, schema, spec.keys)
    window = None
    if spec.incremental:
        after = None if mark is None else stored_mark(plan, keyset, mark)
        window = KeyWindow(after, _highest(session, keyset, relation, columns, after))
        if window.through is None:
            log.info("export %s: no key after the last run's mark; nothing to read", plan.name)
            return _with_nulls(plan, keyset, [keyset_chunk(0, plan.query, keyset, None, None, window)])
    step, expected = spec.size, None
    wanted = max(spec.count or 1, spec.min_chunks)
    if wanted > 1:
        # A number of chunks (chunk_count, or a parallel full read's minimum) needs the table's size,
        # which statistics may understate: the walk lengthens its steps if it finds many more rows.
        rows = plan.source.catalog.table_rows(session, KeyOrigin(relation, columns[0]))
        if rows and (spec.count or rows < spec.size * wanted):
            step, expected = max(1, math.ceil(rows / wanted)), wanted
    walk = KeyWalk(keyset, relation, columns, step, through=window.through if window else None)
    cuts = walk_cuts(walk, session, grow_every=expected, start=window.mark if window else None)
    bounds: list[Cut | None] = [None, *cuts, None]
    chunks = [
        keyset_chunk(i, plan.query, keyset, lo, hi, window) for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]
    return _with_nulls(plan, keyset, chunks)


def _with_nulls(plan: ExportPlan, keyset: Keyset, chunks: list[Chunk]) -> list[Chunk]:
    if plan.table is None:
        # A query may make the key NULL (an outer join) though the table's column is NOT NULL.
        chunks.append(keyset_nulls_chunk(len(chunks), plan.query, keyset))
    return chunks


def _highest(session: Session, keyset: Keyset, relation: str, columns: tuple[str, ...], mark: Cut | None) -> Cut | None:
    """The highest key of ``relation`` now, if it is after ``mark``; None when there is none."""
    quoted = [keyset.dialect.quote(c) for c in columns]
    where = f" WHERE {keyset.compare(quoted, mark, '>')}" if mark is not None else ""
    order = ", ".join(f"{q} DESC" for q in quoted)
    found = session.query(f"SELECT {', '.join(quoted)} FROM {relation}{where} ORDER BY {order} LIMIT 1")
    return keyset.value(found[0]) if found else None


def stored_mark(plan: ExportPlan, keyset: Keyset, stored: Any) -> Cut:
    """The mark the state store keeps (JSON text of the key's values) as a key value, or a ConfigError."""
    try:
        return keyset.value(json.loads(stored) if isinstance(stored, str) else stored)
    except ValueError as e:
        raise ConfigError(
            f"export '{plan.name}': the stored keyset_incremental mark {str(stored)[:200]!r} is not a value of the "
            f"key ({', '.join(keyset.columns)}): {e}; reset it with `{plan.command('state reset')}`"
        ) from None


def keyset_chunk(
    index: int, base: str, keyset: Keyset, lo: Cut | None, hi: Cut | None, window: KeyWindow | None = None
) -> Chunk:
    """The chunk of ``base`` whose key lies in ``[lo, hi)`` (None: open), and in ``window`` if given."""
    quoted = [keyset.dialect.quote(c) for c in keyset.columns]
    parts = []
    if lo is not None:
        parts.append(keyset.compare(quoted, lo, ">="))
    if hi is not None:
        parts.append(keyset.compare(quoted, hi, "<"))
    label = "all keys" if not parts else f"keys [{_shown(lo, '-inf')}, {_shown(hi, '+inf')})"
    bounds: tuple[Any, ...] = (
        "keyset",
        list(keyset.columns),
        None if lo is None else list(lo),
        None if hi is None else list(hi),
    )
    if window is not None:
        bounds = (*bounds, *window.bounds())
        if window.through is None:
            parts, label = ["1 = 0"], "no keys after the mark"
        else:
            if window.mark is not None:
                parts.append(keyset.compare(quoted, window.mark, ">"))
            parts.append(keyset.compare(quoted, window.through, "<="))
            label += f" after {_shown(window.mark, '-inf')} through {_shown(window.through, '+inf')}"
    predicate = " AND ".join(parts) or "1 = 1"
    return Chunk(index, f"SELECT * FROM ({base}) AS _rivet_chunk WHERE {predicate}", label, bounds)


def keyset_nulls_chunk(index: int, base: str, keyset: Keyset) -> Chunk:
    """The chunk of ``base``'s rows whose key has a NULL (which no range holds)."""
    predicate = " OR ".join(f"{keyset.dialect.quote(c)} IS NULL" for c in keyset.columns)
    bounds = ("keyset_nulls", list(keyset.columns))
    return Chunk(index, f"SELECT * FROM ({base}) AS _rivet_chunk WHERE {predicate}", "NULL keys", bounds)


def rebuilt_keyset_chunk(
    plan: ExportPlan, schema: pa.Schema, keys: tuple[str, ...], index: int, bounds: tuple[Any, ...]
) -> Chunk:
    """The keyset chunk on ``keys`` that ``bounds`` (from the state store) describe, or ValueError."""
    nulls = bounds[0] == "keyset_nulls" and len(bounds) == 2 and plan.table is None
    incremental = bool(plan.chunking and plan.chunking.incremental)
    if not (nulls or len(bounds) == (6 if incremental else 4)) or not keys or bounds[1] != list(keys):
        raise ValueError(f"chunk {index}: {bounds!r} are not keyset bounds of this export (its key is {list(keys)})")
    keyset = keyset_of(schema, keys, plan.source.dialect)
    if nulls:
        return keyset_nulls_chunk(index, plan.query, keyset)
    lo, hi, *edges = (None if b is None else keyset.value(b) for b in bounds[2:])
    window = KeyWindow(edges[0], edges[1]) if incremental else None
    return keyset_chunk(index, plan.query, keyset, lo, hi, window)


def window_of(bounds: list[Any], keyset: Keyset) -> KeyWindow | None:
    """The window of a keyset_incremental run from its chunks' bounds (None: not such a run), typed."""
    for b in bounds:
        if b and b[0] == "keyset" and len(b) == 6:
            return KeyWindow(*(None if v is None else keyset.value(v) for v in b[4:]))
    return None


def _walked_key(
    plan: ExportPlan, session: Session, schema: pa.Schema, keys: tuple[str, ...]
) -> tuple[str, tuple[str, ...]]:
    """The table whose unique index the key is, and the key's columns there; or a ConfigError."""
    if plan.table is not None:
        relation, columns = plan.table, tuple(keys)
    else:
        origins = session.origins(plan.query)
        found = [origins[schema.names.index(k)] for k in keys] if len(origins) == len(schema.names) else []
        read = [f for f in found if f is not None]
        if len(read) != len(keys) or len({relation for relation, _ in read}) != 1:
            raise ConfigError(
                f"export '{plan.name}': chunk_by_key {list(keys)} must be columns the query reads as they are "
                "from one table (none computed, none from another table)"
            )
        relation, columns = read[0][0], tuple(column for _, column in read)
    uniques = plan.source.catalog.unique_keys(session, relation)
    match = next((u for u in uniques if u.columns == columns), None)
    shown = ", ".join("(" + ", ".join(u.columns) + ")" for u in uniques) or "none"
    if match is None:
        renamed = "" if columns == tuple(keys) else f" (columns {', '.join(columns)} of the table)"
        raise ConfigError(
            f"export '{plan.name}': chunk_by_key {list(keys)}{renamed} is not the primary key or a unique index of "
            f"{relation}; keyset chunks walk a unique index of whole columns in its column order (its unique "
            f"keys: {shown}). Use one of them, or chunk_column for a non-unique integer, date or timestamp column"
        )
    if match.nullable:
        raise ConfigError(
            f"export '{plan.name}': chunk_by_key {list(keys)}: {', '.join(match.nullable)} of unique index "
            f"{match.name} may be NULL, and NULLs repeat in a unique index; make the column NOT NULL or use the "
            "primary key"
        )
    return relation, columns


def _shown(cut: Cut | None, open_end: str) -> str:
    if cut is None:
        return open_end
    shown = [str(v) if len(str(v)) <= LABEL_CHARS else str(v)[:LABEL_CHARS] + "…" for v in cut]
    return shown[0] if len(shown) == 1 else "(" + ", ".join(shown) + ")"
