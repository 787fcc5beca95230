"""The state store: runs, files, cursors, chunk checkpoints and leases, with versioned migrations."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rivet.core.runinfo import iso, utc_now
from rivet.errors import ExportBusyError, StateError
from rivet.output.manifest import part_stem_of
from rivet.state import original
from rivet.state.backends import STATE_FILE, SqliteBackend, open_backend
from rivet.state.keys import ExportIdentity, ExportKey
from rivet.state.lease import describe_holder
from rivet.state.migrations import MIGRATIONS

log = logging.getLogger("rivet")

__all__ = ["STATE_FILE", "StateStore"]


class StateStore:
    """The state tables in a SQLite file (WAL mode) or a PostgreSQL database, migrated on open."""

    def __init__(self, location: str | Path) -> None:
        """``location``: a file path, or a ``postgresql://`` URL (see ``state_location``)."""
        # One connection shared by the worker threads of a run, one statement at a time.
        self._lock = threading.RLock()
        self._depth = 0
        self._db = open_backend(location)
        self.where = self._db.where
        try:
            self._migrate()
        except BaseException as e:
            self._db.close()
            if isinstance(e, self._db.errors):
                raise StateError(f"state store {self.where}: {e}") from e
            raise

    @property
    def version(self) -> int:
        """The schema version in the store."""
        return self._db.version()

    def _migrate(self) -> None:
        current = self.version
        if current > len(MIGRATIONS):
            raise StateError(
                f"state store {self.where} has schema version {current}, newer than this rivet "
                f"understands ({len(MIGRATIONS)}); upgrade rivet"
            )
        if current == len(MIGRATIONS):
            return
        db = self._db
        with self._transaction() as c:
            current = self.version  # another process may have migrated it meanwhile
            found = db.original_tables() if current == 0 else set()
            adopting = original.is_original(found)
            if adopting:
                db.set_aside(found)
            for version in range(current, len(MIGRATIONS)):
                for statement in db.ddl(MIGRATIONS[version]):
                    c.execute(statement)
            db.set_version(len(MIGRATIONS))
            if adopting:
                carried = original.carry_over(c, db.original_rows, iso(utc_now()))
                log.warning(
                    "state store %s was written by the original rivet: %s (each incremental run continues "
                    "strictly after its cursor); its own tables are kept%s",
                    self.where,
                    carried.describe(),
                    f" as {original.PREFIX}*" if isinstance(db, SqliteBackend) else "",
                )

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            db = self._db
            if self._depth:
                # Inside transaction(): part of the enclosing commit.
                yield db
                return
            db.begin()
            try:
                yield db
                db.commit()
            except BaseException:
                db.rollback()
                raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every state write inside the block one atomic commit (other threads wait)."""
        with self._transaction():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def _select(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # -- identities: whose state a key holds ------------------------------------------------

    def bind(self, key: ExportKey, identity: ExportIdentity, config: str | None = None) -> str | None:
        """Claim ``key``'s state for ``identity`` before a run reads it; a notice when state was carried to it.

        Raises StateConflictError (its commands name ``config``) when the state of this name
        was written for another export.
        """
        from rivet.state import identities

        with self._transaction() as c:
            return identities.bind(c, key, identity, iso(utc_now()), config)

    def rebind(self, key: ExportKey, identity: ExportIdentity, *, origin: str | None = None) -> str:
        """Make the state of this export's name (in ``origin``, or the one candidate) ``key``'s; what was done."""
        from rivet.state import identities

        with self._transaction() as c:
            return identities.rebind(c, key, identity, origin, iso(utc_now()))

    def namespaces_of(self, name: str) -> list[str]:
        """The namespaces that hold state of an export called ``name``."""
        from rivet.state import identities

        with self._lock:
            return identities.namespaces_of(self._db, name)

    def forget(self, key: ExportKey, identity: ExportIdentity) -> int:
        """Forget the cursor, boundaries and identity of ``key`` and of the state of its name it would clash with."""
        from rivet.state import identities

        with self._transaction() as c:
            return identities.forget(c, key, identity)

    # -- runs ---------------------------------------------------------------------------

    def run_started(
        self,
        run_id: str,
        key: ExportKey,
        mode: str,
        started_at: str,
        fingerprint: str,
        destination: str | None = None,
        part_stem: str | None = None,
    ) -> None:
        """Record that a run began (where it writes, and how its parts are named)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO export_runs (run_id, namespace, export_name, mode, status, started_at, fingerprint, "
                "destination, part_stem) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, key.namespace, key.name, mode, started_at, fingerprint, destination, part_stem),
            )

    def mark_published(self, run_id: str, now: str) -> None:
        """Record that a run's output is committed: the next runs build on it."""
        with self._transaction() as c:
            c.execute("UPDATE export_runs SET published_at = ? WHERE run_id = ?", (now, run_id))

    def part_stem_of_run(self, run_id: str) -> str | None:
        """How the parts of run ``run_id`` are named (None: unknown)."""
        rows = self._select("SELECT part_stem FROM export_runs WHERE run_id = ?", (run_id,))
        return rows[0]["part_stem"] if rows else None

    def run_published(self, run_id: str) -> bool | None:
        """Whether a run reached its commit (None: the run is unknown here)."""
        rows = self._select("SELECT published_at FROM export_runs WHERE run_id = ?", (run_id,))
        return None if not rows else rows[0]["published_at"] is not None

    def stray_parts(self, key: ExportKey, names: Iterable[str], live: set[str]) -> list[str]:
        """Visible parts of ``key``'s export whose run never committed and that no chunk run can resume."""
        stems: dict[str, list[str]] = {}
        for name in names:
            stem = part_stem_of(key.name, name)
            if stem is not None and name not in live:
                stems.setdefault(stem, []).append(name)
        if not stems:
            return []
        resumable = self.resumable_stems(key, any_status=True)
        runs = self._select(
            "SELECT part_stem, max(CASE WHEN published_at IS NULL THEN 0 ELSE 1 END) AS published FROM export_runs "
            f"WHERE {KEY} AND part_stem IS NOT NULL GROUP BY part_stem",
            _args(key),
        )
        unpublished = {r["part_stem"] for r in runs if not r["published"]}
        return sorted(
            n for stem, found in stems.items() if stem in unpublished and stem not in resumable for n in found
        )

    def resumable_stems(self, key: ExportKey, *, any_status: bool = False) -> set[str]:
        """Part stems of the unfinished chunked runs of ``key`` (with ``any_status``, of all of them)."""
        where = "" if any_status else " AND status = 'in_progress'"
        rows = self._select(f"SELECT part_stem FROM chunk_runs WHERE {KEY}{where}", _args(key))
        return {r["part_stem"] for r in rows}

    def published_since(self, key: ExportKey, destination: str, run_id: str | None) -> list[str]:
        """Runs of ``key`` into ``destination`` that committed after ``run_id`` (all without it), in order."""
        rows = self._select(
            f"SELECT run_id, published_at FROM export_runs WHERE {KEY} AND destination = ? "
            "AND published_at IS NOT NULL ORDER BY published_at, run_id",
            (*_args(key), destination),
        )
        ids = [r["run_id"] for r in rows]
        return ids[ids.index(run_id) + 1 :] if run_id in ids else ([] if run_id else ids)

    def last_success(self, key: ExportKey) -> dict[str, Any] | None:
        """The newest run of ``key`` that published its output."""
        rows = self._select(
            f"SELECT * FROM export_runs WHERE {KEY} AND status IN ('success', 'empty') "
            "ORDER BY started_at DESC LIMIT 1",
            _args(key),
        )
        return rows[0] if rows else None

    def run_finished(
        self,
        run_id: str,
        *,
        status: str,
        finished_at: str,
        rows: int,
        files: int,
        nbytes: int,
        duration_ms: int,
        peak_rss_mb: float,
        engine: str,
        error: str | None,
    ) -> None:
        """Record a run's outcome and metrics."""
        with self._transaction() as c:
            c.execute(
                "UPDATE export_runs SET status=?, finished_at=?, rows=?, files=?, bytes=?, duration_ms=?, "
                "peak_rss_mb=?, engine=?, error=? WHERE run_id=?",
                (status, finished_at, rows, files, nbytes, duration_ms, peak_rss_mb, engine, error, run_id),
            )

    def log_files(self, run_id: str, key: ExportKey, files: list[tuple[str, int, int, str]], created_at: str) -> None:
        """Record committed parts: (url, rows, bytes, sha256)."""
        with self._transaction() as c:
            c.executemany(
                "INSERT INTO file_log (run_id, namespace, export_name, url, rows, bytes, sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, key.namespace, key.name, u, r, b, h, created_at) for u, r, b, h in files],
            )

    def runs(self, keys: Iterable[ExportKey] | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Recent runs of ``keys`` (every run without), newest first."""
        where, args = _any_key(keys)
        return self._select(f"SELECT * FROM export_runs{where} ORDER BY started_at DESC LIMIT ?", (*args, limit))

    def files(self, key: ExportKey) -> list[dict[str, Any]]:
        """The file log of ``key``, oldest first."""
        return self._select(f"SELECT * FROM file_log WHERE {KEY} ORDER BY id", _args(key))

    # -- chunk checkpoints ---------------------------------------------------------------

    def open_chunk_run(self, key: ExportKey) -> dict[str, Any] | None:
        """The unfinished chunked run of ``key``, if any."""
        rows = self._select(
            f"SELECT * FROM chunk_runs WHERE {KEY} AND status = 'in_progress' ORDER BY started_at DESC", _args(key)
        )
        return rows[0] if rows else None

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

    def claim_chunk_at(self, run_id: str, index: int, now: str) -> dict[str, Any] | None:
        """Take chunk ``index`` if it is still pending (None: it is not)."""
        with self._transaction() as c:
            row = c.execute(
                "UPDATE chunk_tasks SET status = 'running', attempts = attempts + 1, updated_at = ? "
                "WHERE run_id = ? AND chunk_index = ? AND status = 'pending' RETURNING chunk_index, query, label",
                (now, run_id, index),
            ).fetchone()
        return None if row is None else {"chunk_index": row[0], "query": row[1], "label": row[2]}

    def claim_pending_chunks(self, run_id: str, now: str) -> list[dict[str, Any]]:
        """Take every pending chunk of a run at once, in chunk order."""
        with self._transaction() as c:
            rows = c.execute(
                "UPDATE chunk_tasks SET status = 'running', attempts = attempts + 1, updated_at = ? "
                "WHERE run_id = ? AND status = 'pending' RETURNING chunk_index, query, label",
                (now, run_id),
            ).fetchall()
        return sorted(
            ({"chunk_index": r[0], "query": r[1], "label": r[2]} for r in rows), key=lambda r: r["chunk_index"]
        )

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

    def chunk_tasks(self, run_id: str) -> list[dict[str, Any]]:
        """Every chunk of a run, in order."""
        rows = self._select("SELECT * FROM chunk_tasks WHERE run_id = ? ORDER BY chunk_index", (run_id,))
        for r in rows:
            r["parts"] = json.loads(r["parts"]) if r["parts"] else []
            r["bounds"] = _json_or_none(r.get("bounds"))
        return rows

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

    def save_journal(self, run_id: str, key: ExportKey, finished_at: str, events: list[dict[str, Any]]) -> None:
        """Keep what happened in a run, in order."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO run_journals (run_id, namespace, export_name, finished_at, events_json) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET namespace = excluded.namespace, "
                "export_name = excluded.export_name, finished_at = excluded.finished_at, "
                "events_json = excluded.events_json",
                (run_id, *_args(key), finished_at, json.dumps(events, default=str)),
            )

    def journals(self, key: ExportKey, *, run_id: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
        """The journals of an export's newest runs (or of one run), newest first."""
        if run_id is not None:
            rows = self._select(f"SELECT * FROM run_journals WHERE {KEY} AND run_id = ?", (*_args(key), run_id))
        else:
            rows = self._select(
                f"SELECT * FROM run_journals WHERE {KEY} ORDER BY finished_at DESC LIMIT ?", (*_args(key), limit)
            )
        return [
            {"run_id": r["run_id"], "finished_at": r["finished_at"], "events": json.loads(r["events_json"])}
            for r in rows
        ]

    def fail_chunk_run(self, run_id: str, now: str) -> None:
        """Close a run that must not be resumed (its output failed a check and was taken back)."""
        with self._transaction() as c:
            c.execute("UPDATE chunk_runs SET status = 'failed', updated_at = ? WHERE run_id = ?", (now, run_id))

    def latest_chunk_run(self, key: ExportKey) -> dict[str, Any] | None:
        """The newest chunked run of ``key``."""
        rows = self._select(f"SELECT * FROM chunk_runs WHERE {KEY} ORDER BY started_at DESC LIMIT 1", _args(key))
        return rows[0] if rows else None

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

    # -- run aggregates -------------------------------------------------------------------

    def record_aggregate(self, summary: dict[str, Any], finished_at: str) -> None:
        """Keep the summary of a multi-export run."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO run_aggregates (started_at, finished_at, config_path, parallel_mode, exit_code, exports, "
                "succeeded, failed, rows, bytes, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    summary.get("started_at") or finished_at,
                    finished_at,
                    summary.get("config"),
                    summary["parallel_mode"],
                    summary["exit_code"],
                    len(summary["exports"]),
                    summary["success_count"],
                    summary["failed_count"],
                    summary["total_rows"],
                    summary["total_bytes"],
                    json.dumps(summary),
                ),
            )

    def aggregates(self, limit: int = 20) -> list[dict[str, Any]]:
        """Recent run summaries, newest first."""
        rows = self._select("SELECT * FROM run_aggregates ORDER BY id DESC LIMIT ?", (limit,))
        for r in rows:
            r["summary"] = json.loads(r["summary"])
        return rows

    # -- incremental cursors -------------------------------------------------------------

    def cursor(self, key: ExportKey) -> dict[str, Any] | None:
        """The stored cursor of ``key``."""
        rows = self._select(f"SELECT * FROM cursors WHERE {KEY}", _args(key))
        return rows[0] if rows else None

    def set_cursor(self, key: ExportKey, value: str, sql_literal: str, run_id: str, now: str) -> None:
        """Move the cursor (called only after the run's files are committed)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO cursors (namespace, export_name, value, sql_literal, run_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET value = excluded.value, "
                "sql_literal = excluded.sql_literal, run_id = excluded.run_id, updated_at = excluded.updated_at",
                (*_args(key), value, sql_literal, run_id, now),
            )

    def reset_cursor(self, key: ExportKey) -> bool:
        """Forget the cursor (and its boundary rows); the next run exports everything."""
        with self._transaction() as c:
            c.execute(f"DELETE FROM boundaries WHERE {KEY}", _args(key))
            c.execute(f"DELETE FROM boundary_rows WHERE {KEY}", _args(key))
            return int(c.execute(f"DELETE FROM cursors WHERE {KEY}", _args(key)).rowcount) > 0

    # -- leases ---------------------------------------------------------------------------

    def take_lease(
        self, key: ExportKey, run_id: str, holder: str, ttl_s: float, gone: Callable[[str], bool]
    ) -> dict[str, Any] | None:
        """Take the lease of ``key``; the previous holder's row when it was taken over.

        Heartbeats are the state database's clock, so machines whose clocks disagree still
        agree on whether a holder is late. Raises ExportBusyError when a live holder has it.
        """
        with self._transaction() as c:
            now = float(c.execute(f"SELECT {self._db.clock}").fetchone()[0])
            row = c.execute(
                f"SELECT run_id, holder, acquired_at, heartbeat_at FROM leases WHERE {KEY}", _args(key)
            ).fetchone()
            previous = None
            if row is not None:
                previous = dict(zip(("run_id", "holder", "acquired_at", "heartbeat_at"), row, strict=True))
                if previous["heartbeat_at"] >= now - ttl_s and not gone(previous["holder"]):
                    raise ExportBusyError(
                        f"export '{key.name}' is already running: {describe_holder(previous)}; this run was refused "
                        "(run it again when that one ends, or pass --wait)"
                    )
            if previous is not None:
                # A holder that died (a SIGKILL, an OOM kill) never recorded its end: its run is over now.
                c.execute(
                    "UPDATE export_runs SET status = 'interrupted', finished_at = ?, "
                    "error = 'the process ended without recording an outcome (killed); its lease was taken over' "
                    "WHERE run_id = ? AND status = 'running'",
                    (time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)), previous["run_id"]),
                )
            c.execute(
                "INSERT INTO leases (namespace, export_name, run_id, holder, acquired_at, heartbeat_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET "
                "run_id = excluded.run_id, holder = excluded.holder, acquired_at = excluded.acquired_at, "
                "heartbeat_at = excluded.heartbeat_at",
                (*_args(key), run_id, holder, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), now),
            )
            return previous

    def renew_lease(self, key: ExportKey, run_id: str) -> bool:
        """Renew a held lease; False when another run holds it now."""
        with self._transaction() as c:
            cur = c.execute(
                f"UPDATE leases SET heartbeat_at = {self._db.clock} WHERE {KEY} AND run_id = ?", (*_args(key), run_id)
            )
            return int(cur.rowcount) == 1

    def holds_lease(self, key: ExportKey, run_id: str) -> bool:
        """Whether ``run_id`` holds the lease of ``key`` now (inside a publishing transaction: its fence)."""
        rows = self._select(f"SELECT 1 FROM leases WHERE {KEY} AND run_id = ?", (*_args(key), run_id))
        return bool(rows)

    def release_lease(self, key: ExportKey, run_id: str) -> None:
        """Give a lease back (a no-op if another run took it over)."""
        with self._transaction() as c:
            c.execute(f"DELETE FROM leases WHERE {KEY} AND run_id = ?", (*_args(key), run_id))

    def lease(self, key: ExportKey) -> dict[str, Any] | None:
        """The lease row of ``key``, if held."""
        rows = self._select(f"SELECT * FROM leases WHERE {KEY}", _args(key))
        return rows[0] if rows else None

    # -- boundary rows of appending exports -------------------------------------------

    def boundary(self, key: ExportKey, scope: str) -> dict[str, Any] | None:
        """The last boundary of ``key`` in ``scope`` (value, sql_literal, strict), if any."""
        rows = self._select(f"SELECT * FROM boundaries WHERE {KEY} AND scope = ?", (*_args(key), scope))
        return rows[0] if rows else None

    def boundary_hashes(self, key: ExportKey, scope: str) -> list[int]:
        """The hashes of the rows already exported at the boundary."""
        rows = self._select(f"SELECT row_hash FROM boundary_rows WHERE {KEY} AND scope = ?", (*_args(key), scope))
        return [r["row_hash"] for r in rows]

    def set_boundary(
        self,
        key: ExportKey,
        scope: str,
        value: str,
        sql_literal: str,
        hashes: Iterable[int] | None,
        run_id: str,
        now: str,
    ) -> None:
        """Replace the boundary of ``key`` in ``scope``; ``hashes`` None makes the next run strict (``>``)."""
        with self._transaction() as c:
            c.execute(
                "INSERT INTO boundaries (namespace, export_name, scope, value, sql_literal, strict, run_id, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name, scope) DO UPDATE SET "
                "value = excluded.value, sql_literal = excluded.sql_literal, strict = excluded.strict, "
                "run_id = excluded.run_id, updated_at = excluded.updated_at",
                (*_args(key), scope, value, sql_literal, int(hashes is None), run_id, now),
            )
            c.execute(f"DELETE FROM boundary_rows WHERE {KEY} AND scope = ?", (*_args(key), scope))
            if hashes is not None:
                c.executemany(
                    "INSERT INTO boundary_rows (namespace, export_name, scope, row_hash) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [(*_args(key), scope, h) for h in hashes],
                )

    def reset_boundaries(self, key: ExportKey) -> None:
        """Forget every boundary of ``key``."""
        with self._transaction() as c:
            c.execute(f"DELETE FROM boundaries WHERE {KEY}", _args(key))
            c.execute(f"DELETE FROM boundary_rows WHERE {KEY}", _args(key))


# The condition that selects one export's rows.
KEY = "namespace = ? AND export_name = ?"


def _args(key: ExportKey) -> tuple[str, str]:
    return (key.namespace, key.name)


def _json_or_none(text: str | None) -> Any:
    """Stored JSON, or None when it is absent or not JSON (callers then refuse what needs it)."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _any_key(keys: Iterable[ExportKey] | None) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause selecting the rows of any of ``keys`` (every row for None)."""
    if keys is None:
        return "", ()
    chosen = list(keys)
    if not chosen:
        return " WHERE 1 = 0", ()
    return " WHERE " + " OR ".join(f"({KEY})" for _ in chosen), tuple(a for k in chosen for a in _args(k))
