"""The progress of a run, one card per export, fed by the run's events.

Live (a terminal, or Jupyter): a rich bar per export and one for the whole run, each
with percent, rows, rows/s, bytes, retries and time left. A chunked export's bar
counts chunks; a single stream's counts rows against the optimizer's estimate (no
estimate: the bar pulses). Otherwise plain lines: when an export starts, every
``progress.plain_every_s()`` seconds while it runs (by the clock, so an export stuck
on a lock or a slow first row still says where it is), and its summary when it ends.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rivet.execution.results import ExportResult, human_bytes
from rivet.ui import progress


@dataclass
class Card:
    """What is known of one export."""

    name: str
    state: str = "waiting"
    mode: str = ""
    rows: int = 0
    bytes: int = 0
    chunks_done: int | None = None
    total_chunks: int | None = None
    estimated_rows: int | None = None
    retries: int = 0
    throttle_ms: int = 0
    started: float | None = None
    result: ExportResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        """Seconds since the export started."""
        return time.monotonic() - self.started if self.started is not None else 0.0

    def extent(self) -> tuple[float | None, float]:
        """The bar's total and what is done: chunks, or rows against the estimate (None: unknown)."""
        if self.total_chunks is not None:
            return float(self.total_chunks), float(self.chunks_done or 0)
        if self.estimated_rows:
            return float(max(self.estimated_rows, self.rows)), float(self.rows)
        return None, float(self.rows)

    def detail(self) -> str:
        """Rows, rate, bytes and retries."""
        rate = self.rows / self.elapsed if self.elapsed > 0 else 0.0
        rows = f"{self.rows:,}"
        if self.total_chunks is not None:
            rows = f"{self.chunks_done or 0}/{self.total_chunks} chunks, {rows}"
        elif self.estimated_rows:
            rows = f"{rows} of ~{self.estimated_rows:,}"
        parts = [f"{rows} rows", f"{rate:,.0f} rows/s"]
        if self.bytes:
            parts.append(human_bytes(self.bytes))
        if self.retries:
            parts.append(f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}")
        if self.throttle_ms:
            parts.append(f"throttled {self.throttle_ms} ms/batch")
        return " · ".join(parts)

    def line(self) -> str:
        """One plain line for this export."""
        if self.result is not None:
            return self.result.summary()
        if self.started is None:
            return f"… {self.name}: waiting"
        total, done = self.extent()
        percent = f" {100 * done / total:.0f}%," if total else ""
        return f"▸ {self.name} [{self.mode}]:{percent} {self.detail()}, {self.elapsed:.1f} s"


class Cards:
    """Thread-safe board of cards, fed with events and results."""

    def __init__(self, names: list[str], *, live: bool | None = None) -> None:
        self.cards = {n: Card(n) for n in names}
        self._lock = threading.Lock()
        self._printed: dict[str, float] = {}
        self._every_s = progress.plain_every_s()
        self._bars: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if live if live is not None else progress.live():
            self._bars = _Bars(self.cards)

    def __enter__(self) -> Cards:
        if self._bars is not None:
            self._bars.start()
        else:
            self._ticker = threading.Thread(target=self._tick, name="rivet-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bars is not None:
            self._bars.stop()

    def _tick(self) -> None:
        """Plain lines on time: each running export's line once its period has passed."""
        while not self._stop.wait(min(self._every_s, 1.0) / 2):
            with self._lock:
                for card in self.cards.values():
                    if card.state == "running" and card.result is None:
                        self._periodic(card)

    def event(self, event: dict[str, Any]) -> None:
        """Apply one event."""
        with self._lock:
            card = self.cards.get(event.get("export", ""))
            if card is None:
                return
            kind = event.get("type")
            if kind == "started":
                card.state, card.mode, card.started = "running", str(event.get("mode", "")), time.monotonic()
                card.throttle_ms = int(event.get("throttle_ms") or 0)
                self._say(f"▸ {card.name} started ({card.mode})")
                self._printed[card.name] = time.monotonic()
            elif kind == "progress_init":
                card.total_chunks = event.get("total_chunks")
                card.chunks_done = event.get("done_chunks")
                card.estimated_rows = event.get("estimated_rows")
            elif kind == "progress":
                card.rows = int(event["rows"])
                card.bytes = int(event.get("bytes") or card.bytes)
                if "chunks_done" in event:
                    card.chunks_done = int(event["chunks_done"])
                self._periodic(card)
            elif kind == "retry":
                card.retries += 1
            elif kind == "warning":
                card.notes.append(str(event.get("message")))
            if self._bars is not None:
                self._bars.update(card)

    def finish(self, result: ExportResult) -> None:
        """Show an export's final result."""
        with self._lock:
            card = self.cards.setdefault(result.name, Card(result.name))
            card.result, card.state = result, result.status
            if self._bars is not None:
                self._bars.update(card)
            else:
                self._say(result.summary())

    def _periodic(self, card: Card) -> None:
        if self._bars is not None:
            return
        now = time.monotonic()
        if now - self._printed.get(card.name, 0.0) >= self._every_s:
            self._printed[card.name] = now
            self._say(card.line())

    def _say(self, line: str) -> None:
        if self._bars is None:
            print(line, file=sys.stderr, flush=True)

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


class _Bars:
    """The rich display: a bar per export and one for the run (on stderr, or in the notebook)."""

    def __init__(self, cards: dict[str, Card]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.cards = cards
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=28),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            refresh_per_second=4,
        )
        self.tasks = {name: self.progress.add_task(f"  {name}", total=None, detail="waiting") for name in cards}
        self.total = self.progress.add_task("all", total=len(cards), detail="") if len(cards) > 1 else None

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.refresh()
        self.progress.stop()

    def update(self, card: Card) -> None:
        if card.name not in self.tasks:
            self.tasks[card.name] = self.progress.add_task(f"  {card.name}", total=None, detail="")
        task = self.tasks[card.name]
        if card.result is not None:
            mark = "✓" if card.result.ok else "✗"
            total, _ = card.extent()
            finished = total if total is not None and card.result.ok else card.extent()[1]
            detail = card.result.summary().split(": ", 1)[-1]
            self.progress.update(
                task, description=f"{mark} {card.name}", total=finished or 1, completed=finished or 1, detail=detail
            )
        else:
            total, done = card.extent()
            self.progress.update(task, description=f"▸ {card.name}", total=total, completed=done, detail=card.detail())
        if self.total is not None:
            ended = sum(c.result is not None for c in self.cards.values())
            rows = sum(c.rows if c.result is None else c.result.rows for c in self.cards.values())
            self.progress.update(
                self.total, completed=ended, detail=f"{ended}/{len(self.cards)} exports · {rows:,} rows"
            )
