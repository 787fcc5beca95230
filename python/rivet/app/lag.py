"""How far behind its server's log a change capture is, from the state store alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivet.core.runinfo import from_iso, utc_now

if TYPE_CHECKING:
    from rivet.state import StateStore
    from rivet.state.keys import ExportKey


def cdc_lag(name: str, store: StateStore, key: ExportKey) -> dict[str, Any]:
    """How far behind the log a change-capture export is, from its last run that published.

    A run reads the log to its end as the run started: what it published was current then.
    """
    stored = store.change_position(key)
    last = store.last_success(key)
    lag: dict[str, Any] = {
        "export_name": name,
        "position": stored.position if stored else None,
        "current_as_of": None,
        "seconds_behind": None,
        "bytes_behind_at_start": None,
    }
    if stored is None or stored.position is None or last is None:
        return lag
    started = from_iso(last["started_at"])
    lag["current_as_of"] = last["started_at"]
    lag["seconds_behind"] = round((utc_now() - started).total_seconds(), 3)
    for journal in store.journals(key, run_id=last["run_id"]):
        said = [e for e in journal["events"] if e.get("type") == "cdc_lag"]
        if said:
            lag["bytes_behind_at_start"] = said[-1].get("bytes_behind")
    return lag
