"""What rivet remembers between runs: runs, files, cursors, chunk checkpoints, leases."""

from __future__ import annotations

from rivet.state.migrations import MIGRATIONS
from rivet.state.store import STATE_FILE, StateStore

__all__ = ["MIGRATIONS", "STATE_FILE", "StateStore"]
