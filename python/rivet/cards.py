"""Live cards for a run of many exports: one line per export, redrawn from its events.

On a terminal the cards are redrawn in place (rich); otherwise a plain line is
printed when an export starts and when it ends.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rivet import progress
from rivet.results import ExportResult, human_bytes


@dataclass
class Card:
    """What is known of one export."""

    name: str
    state: str = "waiting"
    mode: str = ""
    rows: int = 0
    chunks_done: int | None = None
    total_chunks: int | None = None
    retries: int = 0
    started: float | None = None
    result: ExportResult | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for this export."""
        if self.result is not None:
            return self.result.summary()
        if self.started is None:
            return f"… {self.name}: waiting"
        elapsed = time.monotonic() - self.started
        chunks = f" {self.chunks_done}/{self.total_chunks} chunks," if self.total_chunks is not None else ""
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        retries = f", {self.retries} retr{'y' if self.retries == 1 else 'ies'}" if self.retries else ""
        return f"▸ {self.name} [{self.mode}]:{chunks} {self.rows:,} rows, {elapsed:.1f} s ({rate:,.0f} rows/s){retries}"


class Cards:
    """Thread-safe board of cards, fed with events and results."""

    def __init__(self, names: list[str], *, live: bool | None = None) -> None:
        self.cards = {n: Card(n) for n in names}
        self._lock = threading.Lock()
        enabled = progress.ENABLED if progress.ENABLED is not None else sys.stderr.isatty()
        self._live = None
        if live if live is not None else enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)

    def __enter__(self) -> Cards:
        if self._live is not None:
            self._live.start()
            self._live.update(self._render())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()

    def _render(self) -> Any:
        from rich.text import Text

        return Text("\n".join(c.line() for c in self.cards.values()))

    def _refresh(self, card: Card, announce: str | None) -> None:
        if self._live is not None:
            self._live.update(self._render())
        elif announce is not None:
            print(announce, file=sys.stderr, flush=True)

    def event(self, event: dict[str, Any]) -> None:
        """Apply one event."""
        with self._lock:
            card = self.cards.get(event.get("export", ""))
            if card is None:
                return
            kind = event.get("type")
            announce = None
            if kind == "started":
                card.state, card.mode, card.started = "running", str(event.get("mode", "")), time.monotonic()
                announce = f"▸ {card.name} started ({card.mode})"
            elif kind == "progress_init":
                card.total_chunks, card.chunks_done = event["total_chunks"], event["done_chunks"]
            elif kind == "progress":
                card.rows = int(event["rows"])
                if "chunks_done" in event:
                    card.chunks_done = int(event["chunks_done"])
            elif kind == "retry":
                card.retries += 1
            elif kind == "warning":
                card.notes.append(str(event.get("message")))
            self._refresh(card, announce)

    def finish(self, result: ExportResult) -> None:
        """Show an export's final result."""
        with self._lock:
            card = self.cards.setdefault(result.name, Card(result.name))
            card.result, card.state = result, result.status
            self._refresh(card, result.summary())

    def summary(self, results: list[ExportResult], duration_s: float) -> str:
        """The closing block: totals and failures."""
        ok = sum(r.ok for r in results)
        rows = sum(r.rows for r in results)
        size = sum(r.bytes for r in results)
        rate = rows / duration_s if duration_s else 0.0
        lines = [
            f"{ok} of {len(results)} exports succeeded: {rows:,} rows, {human_bytes(size)} in {duration_s:.1f} s "
            f"({rate:,.0f} rows/s)"
        ]
        lines += [f"  failed: {r.name}: {(r.error or '').splitlines()[0][:200]}" for r in results if not r.ok]
        return "\n".join(lines)
