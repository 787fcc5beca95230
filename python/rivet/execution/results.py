"""What an export or a run returns: rows, files, bytes, timings, readable in a notebook."""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rivet.errors import EXIT_INTERRUPTED, EXIT_OK
from rivet.output.manifest import CommittedPart

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.output.tables import TableVersion


def human_bytes(n: int) -> str:
    """``1.5 MiB``-style size."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class ReadTimes:
    """The seconds each read (a statement on the source) of a run took: summed, and the longest.

    Chunk reads are added from worker threads.
    """

    def __init__(self) -> None:
        self.total_s, self.longest_s, self.count = 0.0, 0.0, 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """One read's time."""
        with self._lock:
            self.total_s += seconds
            self.longest_s = max(self.longest_s, seconds)
            self.count += 1

    def totals(self) -> tuple[float, float] | None:
        """``(summed, longest)``, or None where the run read nothing from the source."""
        return (round(self.total_s, 6), round(self.longest_s, 6)) if self.count else None


@dataclass(frozen=True)
class ChunkRows:
    """A chunk of a chunked run: its index, key range and how many rows it read."""

    index: int
    label: str
    rows: int


@dataclass
class ExportResult:
    """The outcome of one export.

    Attributes:
        name: export name.
        run_id: ``<export>_<UTC timestamp>``, also in the manifest and the state store.
        status: ``success``, ``empty`` (an incremental or time-window run found no new
            rows and published no data file), ``skipped`` (``skip_empty``: no rows, nothing
            published, the destination left as it was), ``failed`` or ``interrupted``.
        parts: the committed parts (name, url, rows, bytes, sha256, and the chunks each holds).
        chunks: for a chunked run, every chunk with its key range and rows.
        duration_s: wall time.
        schema: Arrow schema of the output (``None`` if the export failed early).
        engine: which reader produced the rows: ``native``, ``connectorx``, or
            ``connectorx+native`` when some chunks fell back to the native reader.
        manifest: URL of ``manifest.json``.
        error: the error message when it failed.
        error_type: the exception class name.
        exit_code: the code this outcome maps to.
        peak_rss_mb: peak resident memory of the process so far.
        exception: the exception behind a failure.
    """

    name: str
    run_id: str
    status: str
    mode: str = "full"
    parts: list[CommittedPart] = field(default_factory=list)
    chunks: list[ChunkRows] = field(default_factory=list)
    duration_s: float = 0.0
    schema: pa.Schema | None = None
    engine: str = "native"
    manifest: str | None = None
    error: str | None = None
    error_type: str | None = None
    exit_code: int = EXIT_OK
    peak_rss_mb: float = 0.0
    # Columns added, removed and retyped since the last published run (None: no drift).
    schema_drift: dict[str, list[str]] | None = None
    retries: int = 0  # reads retried after a transient fault
    # How long the source spent serving the run's reads (its statements), where it read any.
    reads: ReadTimes = field(default_factory=ReadTimes, repr=False, compare=False)
    warnings: int = 0  # warnings the run's journal holds (shape drift, a lease taken over, ...)
    exception: BaseException | None = field(default=None, repr=False)
    # format delta or iceberg: the table as the run's commit left it.
    table: TableVersion | None = None
    # write: merge: the rows written into the table (a snapshot's, or each changed key's), which no part holds.
    merged_rows: int = 0
    # Totals reported by a child process, which sends no per-part details.
    reported: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the export succeeded.

        ``empty``: an appending run found no new rows; ``skipped``: ``skip_empty`` and no rows.
        """
        return self.status in ("success", "empty", "skipped")

    @property
    def rows(self) -> int:
        """Rows written."""
        if self.reported is not None:
            return int(self.reported["rows"])
        return sum(p.rows for p in self.parts) + self.merged_rows

    @property
    def bytes(self) -> int:
        """Total size of the parts."""
        if self.reported is not None:
            return int(self.reported["bytes"])
        return sum(p.bytes for p in self.parts)

    @property
    def files(self) -> list[str]:
        """URLs of the committed parts."""
        if self.reported is not None:
            return list(self.reported["files"])
        return [p.url for p in self.parts]

    @classmethod
    def failed(cls, name: str, mode: str, error: BaseException) -> ExportResult:
        """The result of an export that failed before it ran (its plan could not be built, say)."""
        from rivet.core.runinfo import run_id_for, utc_now
        from rivet.errors import exit_code_for

        result = cls(name=name, run_id=run_id_for(name, utc_now()), status="failed", mode=mode)
        result.error, result.error_type = str(error), type(error).__name__
        result.exit_code, result.exception = exit_code_for(error), error
        return result

    @classmethod
    def from_finished_event(cls, event: dict[str, Any], mode: str) -> ExportResult:
        """The result a child process reported in its ``finished`` event."""
        return cls(
            name=event["export"],
            run_id=event["run_id"],
            status=event["status"],
            mode=mode,
            duration_s=float(event["duration_s"]),
            engine=str(event.get("engine", "")),
            error=event.get("error"),
            error_type=event.get("error_type"),
            exit_code=int(event["exit_code"]),
            peak_rss_mb=float(event["peak_rss_mb"]),
            schema_drift=event.get("schema_drift"),
            retries=int(event.get("retries", 0)),
            warnings=int(event.get("warnings", 0)),
            reported={
                "rows": event["rows"],
                "bytes": event["bytes"],
                "files": event["files"],
                **({"table": event["table"]} if event.get("table") else {}),
            },
        )

    @property
    def rows_per_second(self) -> float:
        """Throughput."""
        return self.rows / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--json`` shape of one export)."""
        reported_table = (self.reported or {}).get("table")
        return {
            "name": self.name,
            "run_id": self.run_id,
            "status": self.status,
            "mode": self.mode,
            "rows": self.rows,
            "files": list(self.files),
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "engine": self.engine,
            "manifest": self.manifest,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "error": self.error,
            "error_type": self.error_type,
            "exit_code": self.exit_code,
            "schema_drift": self.schema_drift,
            "retries": self.retries,
            "warnings": self.warnings,
            **({"table": self.table.to_dict()} if self.table is not None else {}),
            **({"table": reported_table} if self.table is None and reported_table else {}),
        }

    def summary(self) -> str:
        """One line for a terminal."""
        if not self.ok:
            return f"✗ {self.name}: {self.status}: {self.error}"
        files = f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        changes = ", ".join(f"{len(v)} {k}" for k, v in (self.schema_drift or {}).items() if v)
        return (
            f"✓ {self.name}: {self.rows:,} rows, {files}, {human_bytes(self.bytes)} "
            f"in {self.duration_s:.2f} s ({self.rows_per_second:,.0f} rows/s) via {self.engine}"
            + (f"; schema drift: {changes}" if changes else "")
            + (f"; {self.retries} retr{'y' if self.retries == 1 else 'ies'}" if self.retries else "")
        )

    def __repr__(self) -> str:
        return f"ExportResult({self.summary()})"

    def to_arrow(self) -> pa.Table:
        """Every row this export published, read back from its Parquet parts (local or any fsspec URL).

        For ``format: delta`` or ``iceberg``: every row of the table as this run left it
        (the parts its log lists, those of earlier appending runs included).
        """
        import fsspec
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._readable()
        if self.table is not None:
            return self.table.to_arrow()
        tables = []
        for url in self.files:
            if "://" not in url:
                tables.append(pq.read_table(url))  # Arrow's own file reader
                continue
            with fsspec.open(url, "rb") as f:
                # Read on this thread: Arrow's pool threads would release the Python file's buffers later,
                # maybe only as the interpreter exits, when they cannot take the GIL (and abort it).
                tables.append(pq.ParquetFile(f).read(use_threads=False))
        if not tables:
            return self.schema.empty_table() if self.schema is not None else pa.table({})
        return pa.concat_tables(tables)

    def to_polars(self) -> Any:
        """Like :meth:`to_arrow`, as a polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.to_arrow(), rechunk=False)

    def scan(self) -> Any:
        """A polars LazyFrame over the published parts (nothing is read until it is collected).

        For ``format: delta`` or ``iceberg``: over the table as this run left it.
        """
        import polars as pl

        self._readable()
        if self.table is not None:
            return self.table.scan()
        return pl.scan_parquet(list(self.files))

    def _readable(self) -> None:
        from rivet.errors import ConfigError

        if not self.ok:
            raise ConfigError(f"export {self.name} {self.status}: it published nothing to read")
        if any(not url.endswith(".parquet") for url in self.files):
            raise ConfigError(f"export {self.name} wrote CSV: read its files with a CSV reader")
        if self.table is None and self.reported is not None and "table" in self.reported:
            # Its own parts are only what this run added; the table is read through its log.
            shown = self.reported["table"]
            raise ConfigError(
                f"export {self.name} ran in its own process and committed to a {shown['format']} table at "
                f"{shown['location']} (version {shown['version']}): read the table with its own reader"
            )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in self.to_dict().items()
            if k != "files"
        )
        files = "".join(f"<li>{html.escape(f)}</li>" for f in self.files)
        return f"<table>{rows}</table><ul>{files}</ul>"


@dataclass
class RunResult:
    """The outcome of ``rivet run``: every export's result and the worst exit code."""

    exports: list[ExportResult]
    duration_s: float
    config_path: str | None = None
    parallel_mode: str = "sequential"
    started_at: str | None = None

    @property
    def ok(self) -> bool:
        """True when every export succeeded."""
        return all(e.ok for e in self.exports)

    @property
    def exit_code(self) -> int:
        """The worst outcome: interrupted, then the highest code."""
        codes = [e.exit_code for e in self.exports]
        if EXIT_INTERRUPTED in codes:
            return EXIT_INTERRUPTED
        return max(codes, default=EXIT_OK)

    def __getitem__(self, name: str) -> ExportResult:
        for e in self.exports:
            if e.name == name:
                return e
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        rows = sum(e.rows for e in self.exports)
        return {
            "status": "success" if self.ok else "failed",
            "exit_code": self.exit_code,
            "config": self.config_path,
            "parallel_mode": self.parallel_mode,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "rows_per_second": round(rows / self.duration_s, 1) if self.duration_s else 0.0,
            "success_count": sum(e.ok for e in self.exports),
            "failed_count": sum(not e.ok for e in self.exports),
            "total_rows": sum(e.rows for e in self.exports),
            "total_files": sum(len(e.files) for e in self.exports),
            "total_bytes": sum(e.bytes for e in self.exports),
            "exports": [e.to_dict() for e in self.exports],
        }

    def __repr__(self) -> str:
        lines = "\n  ".join(e.summary() for e in self.exports)
        return f"RunResult(exit_code={self.exit_code},\n  {lines})"

    def _repr_html_(self) -> str:
        """A table for notebooks: one row per export, and the totals."""
        head = "".join(f"<th>{h}</th>" for h in ("export", "status", "rows", "files", "bytes", "seconds", "error"))
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    e.name,
                    e.status,
                    f"{e.rows:,}",
                    len(e.files),
                    human_bytes(e.bytes),
                    f"{e.duration_s:.2f}",
                    (e.error or "").splitlines()[0] if e.error else "",
                )
            )
            + "</tr>"
            for e in self.exports
        )
        total = self.to_dict()
        caption = (
            f"{total['success_count']} of {len(self.exports)} exports succeeded · {total['total_rows']:,} rows · "
            f"{human_bytes(total['total_bytes'])} · {self.duration_s:.2f} s · exit code {self.exit_code}"
        )
        return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{rows}</table>"
