"""PostgreSQL's catalog (pg_class, pg_stats, pg_index), its planner's estimates and EXPLAIN."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any, ClassVar

from rivet.sources.base import SourceCapabilities
from rivet.sources.catalog import (
    KeyCuts,
    KeyOrigin,
    Pooler,
    ReplicationSlot,
    ServerCatalog,
    Table,
    UniqueKey,
    unique_keys_from,
)
from rivet.sources.cuts import even_split, grouped_cuts
from rivet.sources.postgres.dialect import PostgresDialect

PG = PostgresDialect()
# A type name from the catalog that may be written into a cast.
SQL_TYPE_NAME = re.compile(r"^[a-z][a-z0-9 _]*$")
INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Bitmap Index Scan", "Tid Range Scan"}


class PostgresCatalog(ServerCatalog):
    """PostgreSQL: statistics histograms for cuts, TID ranges for pages, cursors for single streams."""

    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities(
        shares_snapshots=True, splits_tables_by_pages=True, captures_changes=True
    )

    def tables_query(self, schema: str | None) -> str:
        """Ordinary and partitioned tables (not their partitions) of ``schema`` (default ``public``)."""
        return (
            "SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            f"AND n.nspname = {PG.string(schema or 'public')} ORDER BY c.relname"
        )

    def columns_query(self, table: Table) -> str:
        """``pg_attribute``, without dropped columns."""
        return (
            "SELECT a.attname, a.attnotnull, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            f"WHERE a.attrelid = {PG.relation(table.sql(PG))} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        )

    def table_rows(self, session: Any, origin: KeyOrigin) -> int | None:
        """``pg_class.reltuples``."""
        rows = session.query(f"SELECT reltuples::bigint FROM pg_class WHERE oid = {PG.relation(origin.relation)}")
        return int(rows[0][0]) if rows and rows[0][0] is not None and int(rows[0][0]) > 0 else None

    def leads_an_index(self, session: Any, origin: KeyOrigin) -> bool:
        """An index whose first column is the key."""
        rows = session.query(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            f"WHERE i.indrelid = {PG.relation(origin.relation)} AND a.attname = {PG.string(origin.column)} LIMIT 1"
        )
        return bool(rows)

    def key_nullable(self, session: Any, origin: KeyOrigin) -> bool:
        """``pg_attribute.attnotnull``."""
        rows = session.query(
            f"SELECT attnotnull FROM pg_attribute WHERE attrelid = {PG.relation(origin.relation)} "
            f"AND attname = {PG.string(origin.column)}"
        )
        return not (rows and rows[0][0] == "t")

    def unique_keys(self, session: Any, relation: str) -> list[UniqueKey]:
        """Valid unique btree indexes on plain columns that ``ORDER BY`` the columns walks.

        Each column has its own collation and default operator class in the index.
        """
        rows = session.query(
            "SELECT c.relname, a.attname, NOT a.attnotnull FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree' "
            "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            f"WHERE i.indrelid = {PG.relation(relation)} AND i.indisunique AND i.indisvalid "
            "AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts "
            "AND NOT EXISTS (SELECT 1 FROM generate_subscripts(i.indkey::int2[], 1) AS n "
            "  JOIN pg_attribute b ON b.attrelid = i.indrelid AND b.attnum = i.indkey[n - 1] "
            "  JOIN pg_opclass o ON o.oid = i.indclass[n - 1] "
            "  WHERE n <= i.indnkeyatts AND (i.indcollation[n - 1] <> b.attcollation OR NOT o.opcdefault)) "
            "ORDER BY i.indisprimary DESC, c.relname, k.ord"
        )
        return unique_keys_from(rows)

    def estimated_cuts(self, session: Any, key: KeyCuts) -> list[int] | None:
        """Cut points from the column's histogram (``pg_stats.histogram_bounds``, equal-frequency buckets).

        ``key.rows`` (else the table's) is spread over the buckets. None
        without statistics.
        """
        origin, kind, source_type, target = key.origin, key.kind, key.source_type, key.target
        if not SQL_TYPE_NAME.match(source_type):
            return None
        row = session.query(
            "SELECT c.reltuples::bigint, s.null_frac, s.histogram_bounds::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stats s ON s.schemaname = n.nspname "
            f"AND s.tablename = c.relname AND s.attname = {PG.string(origin.column)} "
            f"WHERE c.oid = {PG.relation(origin.relation)}"
        )[0]
        if row[2] is None or row[0] is None:
            return None
        total = key.rows if key.rows is not None else int(row[0])
        if total <= 0:
            return None
        x = kind.as_number("v")
        bounds = [
            int(r[0])
            for r in session.query(f"SELECT {x} FROM unnest({PG.string(row[2])}::{source_type}[]) AS t(v) ORDER BY 1")
            if r[0] is not None
        ]
        if len(bounds) < 2:
            return None
        per_bucket = total * (1 - float(row[1] or 0)) / (len(bounds) - 1)
        buckets = [(start, end, per_bucket) for start, end in itertools.pairwise(bounds)]
        return grouped_cuts(buckets, target, lambda start, end, rows: even_split(start, end, rows, target))

    def table_pages(self, session: Any, relation: str) -> tuple[int, int] | None:
        """Heap pages and the page size; TID range scans need PostgreSQL 14."""
        row = session.query(
            f"SELECT pg_relation_size({PG.relation(relation)}), "
            "current_setting('block_size')::int, current_setting('server_version_num')::int"
        )[0]
        block = int(row[1] or 8192)
        pages, version = int(row[0] or 0) // block, int(row[2] or 0)
        return None if version < 140000 or pages == 0 else (pages, block)

    def export_snapshot(self, session: Any) -> str:
        """``pg_export_snapshot()`` inside a repeatable-read, read-only transaction."""
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = session.query("SELECT pg_export_snapshot()")[0][0]
        assert snapshot is not None
        return snapshot

    def explain_summary(self, explained: Any) -> tuple[int | None, int | None, str | None]:
        """The top node's rows and width; the scan nodes as the path."""
        top = explained[0]["Plan"]
        scans = [n for n in _nodes(top) if "Relation Name" in n]
        path = ", ".join(f"{n['Node Type']} on {n['Relation Name']}" for n in scans) or top["Node Type"]
        return int(top.get("Plan Rows", 0)), int(top.get("Plan Width", 0)) or None, path

    def reaches_by_index(self, explained: Any) -> bool:
        """Every scan node an index (or TID range) scan."""
        scans = [n for n in _nodes(explained[0]["Plan"]) if "Relation Name" in n]
        return bool(scans) and all(n["Node Type"] in INDEX_NODES for n in scans)

    def pooler(self, session: Any, another: Callable[[], Any]) -> Pooler | None:
        """A transaction pool: consecutive statements reach different backends, or two sessions reach one.

        PgBouncer hands an idle server connection to whichever client asks next, so with no
        other traffic one session's statements keep one backend; a second session then gets it too.
        """
        pids = {session.query("SELECT pg_backend_pid()")[0][0] for _ in range(4)}
        shared = another().query("SELECT pg_backend_pid()")[0][0] in pids
        if len(pids) < 2 and not shared:
            return None
        # rivet reads inside transactions (cursor, SET LOCAL timeouts, imported snapshots), which a
        # transaction pool keeps on one server connection: exact, but each read holds a slot.
        return Pooler(
            "transaction pooling",
            "consecutive statements reached different server connections (a pooler in transaction "
            "mode, such as PgBouncer): each read holds a pool slot until it commits; size the pool "
            "for parallel + 1 connections, or connect rivet to the server",
        )

    def replication_slots(self, session: Any) -> list[ReplicationSlot]:
        """Logical slots and the WAL each keeps on the server (from the replay position on a standby)."""
        now = "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
        rows = session.query(
            f"SELECT slot_name::text, plugin::text, active::text, pg_wal_lsn_diff({now}, restart_lsn)::bigint::text, "
            "wal_status FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY slot_name"
        )
        return [
            ReplicationSlot(str(r[0]), str(r[1]), r[2] == "true", int(r[3]) if r[3] is not None else None, r[4])
            for r in rows
        ]


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", []):
        nodes += _nodes(child)
    return nodes
