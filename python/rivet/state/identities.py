"""Binding an export's state to the export it was written for.

Each function runs inside a state transaction (``c``: the store's backend). A run
binds its key before it reads any state: the first run of a key records its
identity; later runs must match it. State of the same export name elsewhere in the
store is never read silently:

* in another namespace and written to the same destination: that is most likely this
  export with its query, table or source changed, so the run is refused until
  ``rivet state rebind`` (keep that state) or ``rivet state reset`` (forget it);
* unclaimed (written before namespaces existed, or carried over from the original
  tool): claimed by the first export of that name that wrote to the same destination
  (any, when the runs recorded none).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rivet.errors import StateConflictError
from rivet.state.keys import UNCLAIMED, ExportIdentity, ExportKey, written_to

# Every table with rows of one export (namespace, export_name).
KEYED_TABLES = (
    "export_runs",
    "file_log",
    "chunk_runs",
    "run_journals",
    "cursors",
    "leases",
    "boundaries",
    "boundary_rows",
    "export_schemas",
    "export_shapes",
    "change_positions",
)
# What a run leaves that no later run reads to decide its rows.
HISTORY_TABLES = ("export_runs", "file_log", "run_journals", "chunk_runs")
# The tables whose rows steer the next run (history is kept when state is forgotten).
STEERING_TABLES = ("cursors", "boundaries", "boundary_rows", "export_schemas", "export_shapes", "change_positions")


def bind(c: Any, key: ExportKey, identity: ExportIdentity, now: str, config: str | None = None) -> str | None:
    """Record or check ``key``'s identity; a notice when unclaimed state became ``key``'s."""
    commands = _commands(key, config)
    stored = _stored(c, key.namespace, key.name)
    if stored is not None:
        changed = identity.differences(stored)
        if changed:
            raise StateConflictError(
                f"export '{key.name}': its state (namespace {key.namespace}) was written for another export: "
                f"{'; '.join(changed)}. Its cursor and checkpoints would select the wrong rows, so they are not "
                f"read. {commands}"
            )
        # The cursor a stored cursor value belongs to is kept while a full run has none.
        kept = dataclasses.replace(identity, cursor=identity.cursor or stored.cursor)
        if stored != kept:
            _record(c, key, kept, now)  # a cursor named for the first time, or a moved destination
        return None
    for n, namespace in enumerate(_earlier_selves(c, key, identity)):
        # The same export into the same folder before a change that steers nothing (a full export's
        # query): its history continues here, and the newest one's published schema, which the next
        # run compares with (schema drift).
        _move(c, namespace, key, tables=KEYED_TABLES if n == 0 else HISTORY_TABLES)
    clashes = clashing(c, key, identity)
    if clashes:
        namespace, other = clashes[0]
        raise StateConflictError(
            f"export '{key.name}': the state store holds the state of an export '{key.name}' writing to the same "
            f"destination for another export ({'; '.join(identity.differences(other))}; namespace {namespace}), "
            f"with a cursor or checkpoints that would decide what this run reads. {commands}"
        )
    notice = None
    if _holds_state(c, UNCLAIMED, key.name):
        recorded = _recorded_destinations(c, UNCLAIMED, key.name)
        elsewhere = recorded and not any(written_to(d, identity.destination) for d in recorded)
        if elsewhere and _steers(c, UNCLAIMED, key.name):
            raise StateConflictError(
                f"export '{key.name}': the state store holds state of an export '{key.name}' kept before state "
                f"namespaces, written to {recorded[-1]}, not to {identity.destination}; it is not read. "
                f"{commands}"
            )
        if elsewhere:
            # History of a folder this export does not write to: it stays unclaimed, and only what
            # steers no run is left there, so nothing of another export is read.
            _record(c, key, identity, now)
            return None
        _move(c, UNCLAIMED, key)
        notice = (
            f"export '{key.name}': the state kept for it before state namespaces (or carried over from the "
            f"original rivet) is now in its namespace {key.namespace}"
        )
    _record(c, key, identity, now)
    return notice


def rebind(c: Any, key: ExportKey, identity: ExportIdentity, origin: str | None, now: str) -> str:
    """Make this name's state (in ``origin``, or the one candidate) ``key``'s, for ``identity``; what was done."""
    stored = _stored(c, key.namespace, key.name)
    if origin is None and stored is not None:
        _record(c, key, identity, now)
        return f"the state of {key.name} (namespace {key.namespace}) now belongs to the export as configured"
    # This export as it was: the same name writing to the same destination, or state kept before namespaces.
    candidates = [ns for ns, _ in clashing(c, key, identity)]
    if _holds_state(c, UNCLAIMED, key.name):
        candidates.append(UNCLAIMED)
    if origin is not None:
        if origin not in namespaces_of(c, key.name) or origin == key.namespace:
            raise StateConflictError(f"no other state of an export '{key.name}' in namespace {origin!r}")
        candidates = [origin]
    if not candidates:
        if stored is None:
            _record(c, key, identity, now)
        return f"no other state of {key.name} to keep; its state (namespace {key.namespace}) is as configured"
    if len(candidates) > 1:
        raise StateConflictError(
            f"several namespaces hold state of an export '{key.name}' ({', '.join(repr(n) for n in candidates)}): "
            "name the one to keep with --from"
        )
    if stored is not None or _holds_state(c, key.namespace, key.name):
        raise StateConflictError(
            f"export '{key.name}' already has state in its namespace {key.namespace}: forget it first "
            "(`rivet state reset`), or keep it"
        )
    _move(c, candidates[0], key)
    _record(c, key, identity, now)
    return f"the state of {key.name} from namespace {candidates[0] or '(unclaimed)'} now belongs to the export"


def forget(c: Any, key: ExportKey, identity: ExportIdentity) -> int:
    """Forget what steers ``key``'s next run, and the clashing state of its name; how many namespaces."""
    namespaces = {key.namespace, *(ns for ns, _ in clashing(c, key, identity))}
    if _holds_state(c, UNCLAIMED, key.name):
        namespaces.add(UNCLAIMED)
    for namespace in namespaces:
        for table in (*STEERING_TABLES, "export_identities"):
            c.execute(f"DELETE FROM {table} WHERE namespace = ? AND export_name = ?", (namespace, key.name))
        if namespace != key.namespace:
            # History stays readable, under the key of the export it now belongs to.
            _move(c, namespace, key, tables=HISTORY_TABLES)
    return len(namespaces)


def clashing(c: Any, key: ExportKey, identity: ExportIdentity) -> list[tuple[str, ExportIdentity]]:
    """Other namespaces' identities of this name that wrote to the same destination and hold a cursor or checkpoint.

    State that steers no run (a full export's history) clashes with nothing: the export
    replaces what it wrote whatever its query was.
    """
    rows = c.execute(
        "SELECT namespace, source, target, cursor, destination FROM export_identities "
        "WHERE export_name = ? AND namespace <> ? ORDER BY bound_at",
        (key.name, key.namespace),
    ).fetchall()
    found = [(r[0], ExportIdentity(r[1], r[2], r[3], r[4])) for r in rows]
    return [
        (ns, other) for ns, other in found if other.destination == identity.destination and _steers(c, ns, key.name)
    ]


def _earlier_selves(c: Any, key: ExportKey, identity: ExportIdentity) -> list[str]:
    """Other namespaces of this name, written to the same destination, whose state steers no run."""
    rows = c.execute(
        "SELECT namespace, destination FROM export_identities WHERE export_name = ? AND namespace <> ? "
        "ORDER BY bound_at DESC",
        (key.name, key.namespace),
    ).fetchall()
    return [
        ns for ns, dest in rows if dest == identity.destination and ns != UNCLAIMED and not _steers(c, ns, key.name)
    ]


def _steers(c: Any, namespace: str, name: str) -> bool:
    """Whether state would decide what a next run reads: a cursor, a boundary, an unfinished chunked run."""
    args = (namespace, name)
    return bool(
        c.execute("SELECT 1 FROM cursors WHERE namespace = ? AND export_name = ? LIMIT 1", args).fetchone()
        or c.execute("SELECT 1 FROM boundaries WHERE namespace = ? AND export_name = ? LIMIT 1", args).fetchone()
        or c.execute(
            "SELECT 1 FROM chunk_runs WHERE namespace = ? AND export_name = ? AND status = 'in_progress' LIMIT 1",
            args,
        ).fetchone()
    )


def namespaces_of(c: Any, name: str) -> list[str]:
    """Every namespace holding rows of an export called ``name``."""
    found: set[str] = set()
    for table in ("export_identities", *KEYED_TABLES):
        rows = c.execute(f"SELECT DISTINCT namespace FROM {table} WHERE export_name = ?", (name,)).fetchall()
        found.update(r[0] for r in rows)
    return sorted(found)


def _commands(key: ExportKey, config: str | None) -> str:
    where = f"-c {config} " if config else ""
    return (
        f"If this is the same export, keep its state: `rivet state rebind {where}-e {key.name}`; to start afresh: "
        f"`rivet state reset {where}-e {key.name}`; or give each export its own namespace (state.namespace)"
    )


def _stored(c: Any, namespace: str, name: str) -> ExportIdentity | None:
    row = c.execute(
        "SELECT source, target, cursor, destination FROM export_identities WHERE namespace = ? AND export_name = ?",
        (namespace, name),
    ).fetchone()
    return None if row is None else ExportIdentity(row[0], row[1], row[2], row[3])


def _record(c: Any, key: ExportKey, identity: ExportIdentity, now: str) -> None:
    c.execute(
        "INSERT INTO export_identities (namespace, export_name, source, target, cursor, destination, bound_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, export_name) DO UPDATE SET source = excluded.source, "
        "target = excluded.target, cursor = excluded.cursor, destination = excluded.destination, "
        "bound_at = excluded.bound_at",
        (key.namespace, key.name, identity.source, identity.target, identity.cursor, identity.destination, now),
    )


def _holds_state(c: Any, namespace: str, name: str) -> bool:
    return any(
        c.execute(f"SELECT 1 FROM {t} WHERE namespace = ? AND export_name = ? LIMIT 1", (namespace, name)).fetchone()
        for t in KEYED_TABLES
    )


def _recorded_destinations(c: Any, namespace: str, name: str) -> list[str]:
    rows = c.execute(
        "SELECT destination FROM export_runs WHERE namespace = ? AND export_name = ? AND destination IS NOT NULL "
        "ORDER BY started_at",
        (namespace, name),
    ).fetchall()
    return [str(r[0]).rstrip("/") for r in rows]


def _move(c: Any, namespace: str, key: ExportKey, tables: tuple[str, ...] = KEYED_TABLES) -> None:
    for table in tables:
        c.execute(
            f"UPDATE {table} SET namespace = ? WHERE namespace = ? AND export_name = ?",
            (key.namespace, namespace, key.name),
        )
    c.execute("DELETE FROM export_identities WHERE namespace = ? AND export_name = ?", (namespace, key.name))
