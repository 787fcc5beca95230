"""Runs: their start, publication and end, the files they wrote, their journals and aggregates."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rivet.output.manifest import part_stem_of
from rivet.state.keys import ExportKey
from rivet.state.records import KEY, Records, _any_key, _args


class RunRecords(Records):
    """Runs: their start, publication and end, the files they wrote, their journals and aggregates."""

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

    def last_success(self, key: ExportKey, *, skipped_too: bool = False) -> dict[str, Any] | None:
        """The newest run of ``key`` that published its output (``skipped_too``: or found nothing new to)."""
        statuses = "'success', 'empty', 'skipped'" if skipped_too else "'success', 'empty'"
        rows = self._select(
            f"SELECT * FROM export_runs WHERE {KEY} AND status IN ({statuses}) ORDER BY started_at DESC LIMIT 1",
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
        retries: int = 0,
        reads: tuple[float, float] | None = None,
    ) -> None:
        """Record a run's outcome and metrics (``reads``: the source's read seconds, summed and longest)."""
        read_s, longest_read_s = reads if reads is not None else (None, None)
        with self._transaction() as c:
            c.execute(
                "UPDATE export_runs SET status=?, finished_at=?, rows=?, files=?, bytes=?, duration_ms=?, "
                "peak_rss_mb=?, engine=?, error=?, retries=?, read_s=?, longest_read_s=? WHERE run_id=?",
                (
                    status,
                    finished_at,
                    rows,
                    files,
                    nbytes,
                    duration_ms,
                    peak_rss_mb,
                    engine,
                    error,
                    retries,
                    read_s,
                    longest_read_s,
                    run_id,
                ),
            )

    def run_totals(self, key: ExportKey) -> list[dict[str, Any]]:
        """Per status, ``key``'s runs: how many, and their rows, files, bytes and retries summed."""
        return self._select(
            "SELECT status, count(*) AS runs, sum(rows) AS rows, sum(files) AS files, sum(bytes) AS bytes, "
            f"sum(retries) AS retries FROM export_runs WHERE {KEY} GROUP BY status ORDER BY status",
            _args(key),
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
