"""Chunk checkpoints of resumable runs, and the published schema and widest values of an export."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rivet.state.keys import ExportKey
from rivet.state.records import KEY, Records, _args, _json_or_none, _record
from rivet.state.rows import ChunkRun, ChunkTask, ClaimedChunk


class ChunkRecords(Records):
    """Chunk checkpoints of resumable runs, and the published schema and widest values of an export."""

    def open_chunk_run(self, key: ExportKey) -> ChunkRun | None:
        """The unfinished chunked run of ``key``, if any."""
        rows = self._select(
            f"SELECT * FROM chunk_runs WHERE {KEY} AND status = 'in_progress' ORDER BY started_at DESC", _args(key)
        )
        return _record(ChunkRun, rows[0]) if rows else None

    def create_chunk_run(
        self,
        run_id: str,
        key: ExportKey,
        fingerprint: str,
        part_stem: str,
        now: str,
        chunks: list[tuple[int, str, str, Any]],
        destination: str,
    ) -> None:
        """Persist a run, its resolved destination and its chunks (index, query, label, bounds), all pending."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO chunk_runs (run_id, namespace, export_name, fingerprint, part_stem, status, started_at, "
                "updated_at, destination) VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?, ?)",
                (run_id, key.namespace, key.name, fingerprint, part_stem, now, now, destination),
            )
            c.executemany(
                "INSERT INTO chunk_tasks (run_id, chunk_index, query, label, bounds, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                [(run_id, i, q, label, json.dumps(list(b)), now) for i, q, label, b in chunks],
            )

    def requeue_with_status(self, run_id: str, status: str, now: str) -> int:
        """Put the chunks in ``status`` back in the queue with fresh attempts; how many."""
        with self._transaction() as c:
            cur = c.execute(
                "UPDATE chunk_tasks SET status = 'pending', attempts = 0, last_error = NULL, updated_at = ? "
                "WHERE run_id = ? AND status = ?",
                (now, run_id, status),
            )
            return int(cur.rowcount)

    def requeue_unfinished(self, run_id: str, now: str) -> int:
        """Make chunks left running (by a crash) or failed claimable again; returns how many."""
        with self._transaction() as c:
            cur = c.execute(
                "UPDATE chunk_tasks SET status = 'pending', updated_at = ? "
                "WHERE run_id = ? AND status IN ('running', 'failed')",
                (now, run_id),
            )
            return int(cur.rowcount)

    def claim_chunk_at(self, run_id: str, index: int, now: str) -> ClaimedChunk | None:
        """Take chunk ``index`` if it is still pending (None: it is not)."""
        with self._transaction():
            rows = self._select(
                "UPDATE chunk_tasks SET status = 'running', attempts = attempts + 1, updated_at = ? "
                "WHERE run_id = ? AND chunk_index = ? AND status = 'pending' RETURNING chunk_index, query, label",
                (now, run_id, index),
            )
        return _record(ClaimedChunk, rows[0]) if rows else None

    def claim_pending_chunks(self, run_id: str, now: str) -> list[ClaimedChunk]:
        """Take every pending chunk of a run at once, in chunk order."""
        with self._transaction():
            rows = self._select(
                "UPDATE chunk_tasks SET status = 'running', attempts = attempts + 1, updated_at = ? "
                "WHERE run_id = ? AND status = 'pending' RETURNING chunk_index, query, label",
                (now, run_id),
            )
        return sorted((_record(ClaimedChunk, r) for r in rows), key=lambda r: r.chunk_index)

    def open_chunk_indexes(self, run_id: str) -> tuple[set[int], set[int]]:
        """The pending and the running chunks of a run."""
        rows = self._select(
            "SELECT chunk_index, status FROM chunk_tasks WHERE run_id = ? AND status IN ('pending', 'running')",
            (run_id,),
        )
        pending = {r["chunk_index"] for r in rows if r["status"] == "pending"}
        return pending, {r["chunk_index"] for r in rows if r["status"] == "running"}

    def release_chunks(self, run_id: str, indexes: Iterable[int], now: str) -> None:
        """Make running chunks claimable again (their part was abandoned)."""
        with self._transaction() as c:
            c.executemany(
                "UPDATE chunk_tasks SET status = 'pending', updated_at = ? "
                "WHERE run_id = ? AND chunk_index = ? AND status = 'running'",
                [(now, run_id, i) for i in indexes],
            )

    def chunks_done(self, run_id: str, reads: list[tuple[int, int]], parts: list[dict[str, Any]], now: str) -> None:
        """Record at once the chunks (index, rows) held by the published ``parts``."""
        with self._transaction() as c:
            c.executemany(
                "UPDATE chunk_tasks SET status = 'done', rows = ?, parts = ?, last_error = NULL, updated_at = ? "
                "WHERE run_id = ? AND chunk_index = ?",
                [(rows, json.dumps(parts), now, run_id, index) for index, rows in reads],
            )

    def requeue_chunks(self, run_id: str, indexes: Iterable[int], now: str) -> None:
        """Put done chunks whose parts are missing or changed back in the queue."""
        with self._transaction() as c:
            c.executemany(
                "UPDATE chunk_tasks SET status = 'pending', rows = NULL, parts = NULL, updated_at = ? "
                "WHERE run_id = ? AND chunk_index = ?",
                [(now, run_id, i) for i in indexes],
            )

    def chunk_failed(self, run_id: str, index: int, error: str, now: str) -> None:
        """Record a chunk that ran out of attempts."""
        with self._transaction() as c:
            c.execute(
                "UPDATE chunk_tasks SET status = 'failed', last_error = ?, updated_at = ? "
                "WHERE run_id = ? AND chunk_index = ?",
                (error, now, run_id, index),
            )

    def chunk_tasks(self, run_id: str) -> list[ChunkTask]:
        """Every chunk of a run, in order."""
        rows = self._select("SELECT * FROM chunk_tasks WHERE run_id = ? ORDER BY chunk_index", (run_id,))
        return [
            _record(
                ChunkTask,
                {**r, "parts": json.loads(r["parts"]) if r["parts"] else [], "bounds": _json_or_none(r.get("bounds"))},
            )
            for r in rows
        ]

    def finish_chunk_run(self, run_id: str, now: str) -> None:
        """Mark a run complete (only once every chunk is done)."""
        with self._transaction() as c:
            c.execute("UPDATE chunk_runs SET status = 'completed', updated_at = ? WHERE run_id = ?", (now, run_id))

    def published_schema(self, key: ExportKey) -> list[dict[str, str]] | None:
        """The columns (name, arrow_type) of the export's last published output."""
        rows = self._select(f"SELECT columns_json FROM export_schemas WHERE {KEY}", _args(key))
        return json.loads(rows[0]["columns_json"]) if rows else None

    def save_schema(self, key: ExportKey, columns: list[dict[str, str]], run_id: str, now: str) -> None:
        """Remember the columns a run published (inside its commit)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO export_schemas (namespace, export_name, columns_json, run_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET "
                "columns_json = excluded.columns_json, run_id = excluded.run_id, updated_at = excluded.updated_at",
                (*_args(key), json.dumps(columns), run_id, now),
            )

    def widest_values(self, key: ExportKey) -> dict[str, int]:
        """The most bytes one value of each text or binary column has held in a published run."""
        rows = self._select(f"SELECT column_name, max_bytes FROM export_shapes WHERE {KEY}", _args(key))
        return {r["column_name"]: int(r["max_bytes"]) for r in rows}

    def save_widest_values(self, key: ExportKey, widest: dict[str, int]) -> None:
        """Raise the stored widths to ``widest`` where it is wider (inside a run's commit)."""
        with self._transaction() as c:
            for column, width in widest.items():
                c.execute(
                    "INSERT INTO export_shapes (namespace, export_name, column_name, max_bytes) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (namespace, export_name, column_name) DO UPDATE SET "
                    "max_bytes = CASE WHEN excluded.max_bytes > export_shapes.max_bytes THEN excluded.max_bytes "
                    "ELSE export_shapes.max_bytes END",
                    (*_args(key), column, width),
                )

    def fail_chunk_run(self, run_id: str, now: str) -> None:
        """Close a run that must not be resumed (its output failed a check and was taken back)."""
        with self._transaction() as c:
            c.execute("UPDATE chunk_runs SET status = 'failed', updated_at = ? WHERE run_id = ?", (now, run_id))

    def latest_chunk_run(self, key: ExportKey) -> ChunkRun | None:
        """The newest chunked run of ``key``."""
        rows = self._select(f"SELECT * FROM chunk_runs WHERE {KEY} ORDER BY started_at DESC LIMIT 1", _args(key))
        return _record(ChunkRun, rows[0]) if rows else None

    def reset_chunks(self, key: ExportKey, *, finished_too: bool = False) -> int:
        """Forget the unfinished chunked runs of ``key`` (with ``finished_too``, every one); how many were dropped.

        A completed run's checkpoints are what ``rivet reconcile`` and ``repair`` check the
        published output against: they stay unless asked for.
        """
        unfinished = "" if finished_too else " AND status = 'in_progress'"
        with self._transaction() as c:
            runs = [r[0] for r in c.execute(f"SELECT run_id FROM chunk_runs WHERE {KEY}{unfinished}", _args(key))]
            for run_id in runs:
                c.execute("DELETE FROM chunk_tasks WHERE run_id = ?", (run_id,))
                c.execute("DELETE FROM chunk_runs WHERE run_id = ?", (run_id,))
            return len(runs)
