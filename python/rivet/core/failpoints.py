"""Named fault injection, for the tests that prove a failure never looks like success.

``RIVET_FAILPOINTS="after_part_write:crash,before_success"`` arms points by name.
An entry is ``name[@hit][:action]``: it fires once, on the ``hit``-th time (default
the first) this process reaches the point. Actions: ``error`` (the default) raises
FailpointError; ``crash`` kills the process with SIGKILL, as an OOM kill would; ``stop``
freezes it with SIGSTOP (a process that seems dead, until a SIGCONT wakes it).
The native readers read the same variable for their own points (``reader_panic``,
``decode_error``, ``socket_closed``). Unset, a visit costs one dictionary lookup. A point
that fires says so on stderr (``rivet: failpoint NAME fired``); an entry naming no
point is refused when a run starts.

Points here, in the order a run meets them: ``after_part_write`` (a part staged, not
yet visible), ``between_parts`` (a part visible, the next not yet), ``before_manifest``,
``before_table_commit`` (manifest written, the Delta log not), ``before_success`` (manifest
written, ``_SUCCESS`` not), ``before_cursor`` (output
published, cursor not yet moved). Change capture adds ``after_anchor_recorded`` (the
state says the export is anchoring, no slot yet), ``after_anchor`` (slot made, snapshot
not read) and ``before_confirm`` (changes published, the slot not yet told).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from rivet.errors import ConfigError, RivetError

VARIABLE = "RIVET_FAILPOINTS"
# Points of this engine, in the order a run meets them, and the native readers' own.
POINTS = (
    "after_anchor_recorded",
    "after_anchor",
    "after_part_write",
    "between_parts",
    "before_manifest",
    "before_cursor",
    "before_table_commit",
    "before_success",
    "before_confirm",
)
NATIVE_POINTS = ("reader_panic", "decode_error", "socket_closed")
ACTIONS = ("error", "crash", "stop", "panic")

_hits: dict[str, int] = {}
_lock = threading.Lock()


class FailpointError(RivetError):
    """A fault injected by ``RIVET_FAILPOINTS``."""


def check() -> None:
    """Refuse an armed entry that names no point, or no action: it would silently never fire."""
    for entry in filter(None, (e.strip() for e in os.environ.get(VARIABLE, "").split(","))):
        head, _, action = entry.partition(":")
        point, at, hit = head.partition("@")
        if point.strip() not in POINTS + NATIVE_POINTS:
            known = ", ".join(POINTS + NATIVE_POINTS)
            raise ConfigError(f"{VARIABLE}: no failpoint '{point.strip()}' (the points: {known})")
        if at and not (hit.strip().isdigit() and int(hit) > 0):
            raise ConfigError(f"{VARIABLE}: '{entry}': @ takes the visit that fires, a number from 1")
        if action.strip() and action.strip() not in ACTIONS:
            raise ConfigError(f"{VARIABLE}: '{entry}': unknown action (the actions: {', '.join(ACTIONS)})")


def _armed(name: str) -> tuple[int, str] | None:
    for entry in os.environ.get(VARIABLE, "").split(","):
        head, _, action = entry.strip().partition(":")
        point, _, hit = head.partition("@")
        if point.strip() == name:
            return (int(hit) if hit.strip().isdigit() else 1), (action.strip() or "error")
    return None


def hit(name: str) -> None:
    """Visit the point ``name``: raise or crash if it is armed for this visit."""
    if VARIABLE not in os.environ:
        return
    armed = _armed(name)
    if armed is None:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        fires = _hits[name] == armed[0]
    if not fires:
        return
    # Said before it acts (a crash leaves no other trace), so a test knows the point was reached.
    print(f"rivet: failpoint {name} fired", file=sys.stderr, flush=True)
    if armed[1] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if armed[1] == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    raise FailpointError(f"failpoint {name}")
