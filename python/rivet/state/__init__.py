"""What rivet remembers between runs: runs, files, cursors, chunk checkpoints, leases."""

from __future__ import annotations

from rivet.state.backends import STATE_FILE, STATE_URL_VARIABLE, state_location
from rivet.state.migrations import MIGRATIONS
from rivet.state.store import StateStore

__all__ = ["MIGRATIONS", "STATE_FILE", "STATE_URL_VARIABLE", "StateStore", "state_location"]
