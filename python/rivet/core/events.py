"""The event stream of a run: what a child process tells its parent, one JSON object per line.

Schema version 1. Every event has ``v`` (the version), ``type``, ``export`` and
``ts`` (UTC, ISO-8601), plus the fields of its type:

- ``started``: ``run_id``, ``mode``
- ``progress_init``: ``total_chunks``, ``done_chunks`` (chunked and parallel exports)
- ``progress``: ``rows`` and, for chunked exports, ``chunks_done``
- ``chunk``: ``chunk`` (its index), ``rows``, ``started`` (when its read began, UTC ISO-8601) and
  ``read_s`` (how long the read took): sent once the chunk's part is published (chunked and
  parallel exports)
- ``retry``: ``chunk`` (None for a single-stream export), ``attempt``, ``reason``, ``wait_s``, ``error``
- ``warning``: ``message``
- ``schema_drift``: ``policy``, ``added``, ``removed``, ``retyped`` (lists of ``name: type``)
- ``shape_drift``: ``column``, ``bytes``, ``before``
- ``cdc_lag``: ``position`` (where a change capture run starts), ``bytes_behind`` (the log
  written since, None when the server cannot say)
- ``finished``: ``run_id``, ``status``, ``rows``, ``files``, ``bytes``, ``duration_s``,
  ``peak_rss_mb``, ``error``, ``error_type``, ``exit_code``
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import IO, Any

from rivet.core.redact import redact_text
from rivet.core.runinfo import iso, utc_now

VERSION = 1
FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "started": {"run_id": str, "mode": str},
    "progress_init": {},
    "progress": {"rows": int},
    "chunk": {"chunk": int, "rows": int, "started": str, "read_s": (int, float)},
    "retry": {"chunk": (int, type(None)), "attempt": int, "reason": str, "wait_s": (int, float), "error": str},
    "warning": {"message": str},
    "schema_drift": {"policy": str, "added": list, "removed": list, "retyped": list},
    "shape_drift": {"column": str, "bytes": int, "before": int},
    "cdc_lag": {"position": str, "bytes_behind": (int, type(None))},
    "finished": {
        "run_id": str,
        "status": str,
        "rows": int,
        "files": list,
        "bytes": int,
        "duration_s": (int, float),
        "peak_rss_mb": (int, float),
        "error": (str, type(None)),
        "error_type": (str, type(None)),
        "exit_code": int,
    },
}


# Fields an event may carry, checked when present (chunked and single-stream exports differ).
OPTIONAL: dict[str, dict[str, type | tuple[type, ...]]] = {
    "started": {"throttle_ms": int},
    "progress_init": {"total_chunks": int, "done_chunks": int, "estimated_rows": (int, type(None))},
    "progress": {"chunks_done": int, "bytes": int},
    "finished": {"retries": int, "warnings": int},
}


def problems(event: object) -> list[str]:
    """What is wrong with ``event`` against the schema (empty when valid)."""
    if not isinstance(event, dict):
        return ["not a JSON object"]
    found = []
    if event.get("v") != VERSION:
        found.append(f"v must be {VERSION}")
    kind = event.get("type")
    if kind not in FIELDS:
        return [*found, f"unknown type {kind!r}"]
    for key in ("export", "ts"):
        if not isinstance(event.get(key), str):
            found.append(f"{key} must be a string")
    for key, expected in FIELDS[kind].items():
        if key not in event:
            found.append(f"{kind} needs {key}")
        elif not _is(event[key], expected):
            found.append(f"{kind}.{key} has the wrong type")
    for key, expected in OPTIONAL.get(kind, {}).items():
        if key in event and not _is(event[key], expected):
            found.append(f"{kind}.{key} has the wrong type")
    return found


def _is(value: object, expected: type | tuple[type, ...]) -> bool:
    return isinstance(value, expected) and not (isinstance(value, bool) and expected is int)


class Observer:
    """Receives a run's events; the base class drops them."""

    def emit(self, kind: str, export: str, **fields: Any) -> None:
        """Report one event."""

    def make(self, kind: str, export: str, **fields: Any) -> dict[str, Any]:
        """The event as a dict."""
        return {"v": VERSION, "type": kind, "export": export, "ts": iso(utc_now()), **fields}


class LatestProgress:
    """One stream's progress, emitted by the clock rather than by the rows.

    The reading loop calls ``update`` on every batch; a thread emits the latest counts
    every ``every_s`` seconds when they changed, so what is shown is never older than
    that, even while the reader waits on a slow or held server.
    """

    def __init__(self, events: Observer, export: str, every_s: float) -> None:
        self._events, self._export, self._every_s = events, export, every_s
        self._latest: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rivet-progress-{export}", daemon=True)

    def update(self, **fields: Any) -> None:
        """The counts so far."""
        with self._lock:
            self._latest = fields

    def __enter__(self) -> LatestProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        emitted: dict[str, Any] = {}
        while not self._stop.wait(self._every_s):
            with self._lock:
                latest = self._latest
            if latest and latest is not emitted:
                self._events.emit("progress", self._export, **latest)
                emitted = latest


class StreamObserver(Observer):
    """Writes events as JSON lines (a child process's stdout)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, kind: str, export: str, **fields: Any) -> None:
        """Write one line and flush it."""
        line = json.dumps(self.make(kind, export, **fields), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class CallbackObserver(Observer):
    """Hands events to a function (the threads mode of a parent)."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._callback = callback

    def emit(self, kind: str, export: str, **fields: Any) -> None:
        """Call the function with the event."""
        self._callback(self.make(kind, export, **fields))


# Events the journal does not keep: ticks, and one per chunk (the state store has the chunks).
UNJOURNALED = ("progress", "chunk")


class Journal(Observer):
    """Keeps a run's events (all but ticks and chunks) and passes every event on to ``inner``."""

    def __init__(self, inner: Observer | None) -> None:
        self.inner = inner or Observer()
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, export: str, **fields: Any) -> None:
        """Keep the event (its texts redacted: the journal outlives the run), then pass it on."""
        if kind not in UNJOURNALED:
            kept = {k: redact_text(v) if isinstance(v, str) else v for k, v in fields.items()}
            self.events.append(self.make(kind, export, **kept))
        self.inner.emit(kind, export, **fields)
