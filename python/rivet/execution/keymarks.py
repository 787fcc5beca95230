"""The mark of a keyset_incremental export: the highest key its published parts hold.

The state store keeps it (as the export's cursor) and the manifest says it too, so a run
appends only where both agree, or into a folder with no manifest yet (a new ``{date}``
folder, as a cursor's runs do): where they disagree (the folder written by another kind of
run, the state reset or restored from elsewhere), the run reads every key again and replaces
the folder's parts rather than add a second copy of rows beside them.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from rivet.core.runinfo import iso, utc_now
from rivet.errors import ConfigError, StateError
from rivet.plan.keyset import KeyWindow, keyset_of, stored_mark
from rivet.storage.destinations import open_destination

if TYPE_CHECKING:
    import pyarrow as pa

    from rivet.plan.export import ExportPlan
    from rivet.plan.keyset import Cut, Keyset
    from rivet.state import StateStore
    from rivet.storage.destinations import DestinationSpec

log = logging.getLogger("rivet")
# The manifest's entry: the key's columns and the mark its parts reach.
MANIFEST_KEY = "keyset_incremental"


def planned_mark(plan: ExportPlan, state: StateStore | None) -> str | None:
    """The stored mark a new run reads after: None (every key) without one, or where the destination disagrees."""
    if not plan.keyset_incremental:
        return None
    if state is None:
        raise ConfigError(f"export '{plan.name}': keyset_incremental keeps its mark in a state store (give state_dir)")
    stored = state.cursor(plan.key)
    if stored is None:
        return None
    manifest = _manifest(plan.destination)
    # A folder with no manifest yet (a new {date} folder) gets the keys after the mark, as a
    # cursor's runs do; one holding parts must hold those of the mark.
    if manifest is not None and _through(manifest) != _loaded(stored.value):
        log.warning(
            "export %s: the parts at %s do not end at the stored keyset_incremental mark %s: this run reads every "
            "key again and replaces them",
            plan.name,
            plan.destination.shown,
            stored.value[:200],
        )
        return None
    return stored.value


def check_resumed(plan: ExportPlan, schema: pa.Schema, state: StateStore, window: KeyWindow, run_id: str) -> None:
    """A resumed run's window must start at the stored mark (a reset in between would duplicate or lose keys)."""
    now = _stored(plan, keyset_of(schema, _keys(plan), plan.source.dialect), state)
    if window.mark is not None and now != window.mark:
        raise StateError(
            f"export '{plan.name}': its keyset_incremental mark moved since run {run_id} planned to read after "
            f"{list(window.mark)} (now {None if now is None else list(now)}); discard the run with "
            f"`{plan.command('state reset-chunks')}` and run again"
        )


def move_mark(plan: ExportPlan, schema: pa.Schema, state: StateStore, window: KeyWindow, run_id: str) -> None:
    """Move the mark to the highest key the run read (inside the run's state commit).

    A run that read after a mark needs that mark still stored: another run that moved it in
    between would have its keys read twice. A run that read every key supersedes any mark.
    """
    keyset = keyset_of(schema, _keys(plan), plan.source.dialect)
    now = _stored(plan, keyset, state)
    if window.mark is not None and now != window.mark:
        raise StateError(
            f"export '{plan.name}': its keyset_incremental mark moved while this run read (from {list(window.mark)} "
            f"to {None if now is None else list(now)}); this run's rows are not published. Run it again"
        )
    if window.through is not None:
        literal = ", ".join(keyset.literals(window.through))
        state.set_cursor(plan.key, json.dumps(list(window.through)), literal, run_id, iso(utc_now()))


def manifest_entry(plan: ExportPlan, window: KeyWindow) -> dict[str, Any]:
    """What the manifest says of the mark once the run is published."""
    reached = window.through if window.through is not None else window.mark
    return {MANIFEST_KEY: {"key": list(_keys(plan)), "through": None if reached is None else list(reached)}}


def _manifest(spec: DestinationSpec) -> dict[str, Any] | None:
    """The destination's manifest (None: none there); one that cannot be read is an empty one."""
    raw = open_destination(spec).read_file(spec.manifest_name)
    if raw is None:
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _through(manifest: dict[str, Any]) -> Any:
    """The mark a manifest says its parts reach (None: it says none)."""
    entry = manifest.get(MANIFEST_KEY)
    return entry.get("through") if isinstance(entry, dict) else None


def _stored(plan: ExportPlan, keyset: Keyset, state: StateStore) -> Cut | None:
    stored = state.cursor(plan.key)
    return None if stored is None else stored_mark(plan, keyset, stored.value)


def _loaded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _keys(plan: ExportPlan) -> tuple[str, ...]:
    assert plan.chunking is not None and plan.chunking.keys, "a keyset_incremental export has chunk_by_key"
    return plan.chunking.keys
