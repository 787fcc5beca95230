"""The counters a chunked export keeps for its progress."""

from __future__ import annotations

import threading


class ChunkCounter:
    """Chunks, rows and bytes written of a chunked run, counted by its worker threads.

    Bytes are those in part files: published parts, and the parts workers are filling.
    The count never goes down (a part dropped for a retry keeps its bytes shown).
    """

    def __init__(self, done_chunks: int = 0) -> None:
        self._lock = threading.Lock()
        self.chunks = done_chunks
        self.rows = 0
        self._published = 0
        self._filling: dict[int, int] = {}
        self._shown = 0

    @property
    def bytes(self) -> int:
        """Bytes written to parts so far."""
        with self._lock:
            self._shown = max(self._shown, self._published + sum(self._filling.values()))
            return self._shown

    def advance(self, rows: int) -> None:
        """One more chunk read, with ``rows`` rows."""
        with self._lock:
            self.chunks += 1
            self.rows += rows

    def filling(self, worker: int, nbytes: int) -> None:
        """Worker ``worker``'s part being written holds ``nbytes`` bytes."""
        with self._lock:
            self._filling[worker] = nbytes

    def published(self, nbytes: int, worker: int | None = None) -> None:
        """A part of ``nbytes`` bytes became visible (the one ``worker`` was filling)."""
        with self._lock:
            self._published += nbytes
            if worker is not None:
                self._filling.pop(worker, None)
