"""Where progress is shown, and the counters a chunked export keeps for it.

Progress is drawn live (rich) when stderr is a terminal or the code runs in Jupyter;
otherwise a run prints plain lines: when an export starts, every ``PLAIN_EVERY_S``
seconds while it runs, and when it ends. The CLI turns live drawing off for --json.
"""

from __future__ import annotations

import os
import sys
import threading

# None: decide from the environment; the CLI sets False for --json and --events.
ENABLED: bool | None = None
# Seconds between two plain progress lines of one export (RIVET_PROGRESS_EVERY_S overrides).
PLAIN_EVERY_S = 10.0


def live() -> bool:
    """Whether progress is drawn in place: a terminal, or a Jupyter notebook."""
    if ENABLED is not None:
        return ENABLED
    if sys.stderr.isatty():
        return True
    return _in_jupyter()


def _in_jupyter() -> bool:
    """A Jupyter kernel that can redraw: rich draws there through an ipywidgets Output."""
    if "ipykernel" not in sys.modules:
        return False
    import importlib.util

    from rich.console import Console

    return Console().is_jupyter and importlib.util.find_spec("ipywidgets") is not None


def plain_every_s() -> float:
    """The period of plain progress lines."""
    try:
        return max(0.05, float(os.environ.get("RIVET_PROGRESS_EVERY_S", PLAIN_EVERY_S)))
    except ValueError:
        return PLAIN_EVERY_S


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
