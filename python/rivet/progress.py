"""One progress display for a chunked export: chunks done, rows, rows/s, ETA (on a terminal only)."""

from __future__ import annotations

import sys
import threading
from types import TracebackType

# None: show progress when stderr is a terminal; the CLI sets False for --json.
ENABLED: bool | None = None


def _enabled() -> bool:
    return sys.stderr.isatty() if ENABLED is None else ENABLED


class ChunkProgress:
    """Thread-safe counters, drawn with rich when enabled."""

    def __init__(self, label: str, total_chunks: int, done_chunks: int = 0, *, enabled: bool = True) -> None:
        self._lock = threading.Lock()
        self.chunks = done_chunks
        self.rows = 0
        self._bar = None
        if enabled and _enabled():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks · {task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total_chunks, completed=done_chunks, rows=0, rate=0.0)
            self._bar.start()

    def advance(self, rows: int) -> None:
        """One more chunk done with ``rows`` rows."""
        with self._lock:
            self.chunks += 1
            self.rows += rows
            if self._bar is not None:
                elapsed = self._bar.tasks[0].elapsed or 0.0
                rate = self.rows / elapsed if elapsed else 0.0
                self._bar.update(self._task, advance=1, rows=self.rows, rate=rate)

    def __enter__(self) -> ChunkProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
