"""``rivet doctor``: everything an export needs, checked without exporting.

Per source: the name resolves, the port answers, the login works, and how the
connection travels (encrypted? server verified?). Per export: its query may be read
(``SELECT ... LIMIT 0`` checks privileges without reading a row) and holds the
columns its mode names. Per destination: a probe file is written, read back and
removed. The state store: it opens at the current schema and takes a write.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rivet.core.redact import redact_text

if TYPE_CHECKING:
    from rivet.config import LoadedConfig
    from rivet.plan.export import ExportPlan
    from rivet.sources.catalog import ReplicationSlot
    from rivet.sources.network import NetworkSource

OK, WARN, FAIL = "ok", "warn", "fail"
TCP_TIMEOUT_S = 5.0
CHANNEL_FIXES = {
    "plaintext": "encrypt it: source.tls: {mode: verify-full} (or sslmode=verify-full in the URL)",
    "tls-unverified": "verify the server: source.tls: {mode: verify-full, ca_file: ...}",
}


@dataclass(frozen=True)
class Check:
    """One verdict: what was checked, how it went, and what to do about a failure."""

    subject: str  # "source", "export orders", "destination out/", "state"
    check: str
    status: str
    detail: str
    fix: str | None = None


def diagnose(loaded: LoadedConfig, names: list[str] | None = None, dask_scheduler: str | None = None) -> list[Check]:
    """Every check of the config's source, its exports (all, or ``names``), destinations and state.

    With a Dask scheduler (``dask_scheduler``, or the config's ``executor``), also the cluster.
    """
    from rivet.plan.export import build_plan
    from rivet.sources.network import NetworkSource

    checks: list[Check] = []
    exports = [loaded.export(n) for n in names] if names else list(loaded.config.exports)
    plans: list[ExportPlan] = []
    for export in exports:
        try:
            plans.append(build_plan(loaded, export))
        except Exception as e:  # noqa: BLE001 - a broken export is one failed check
            checks.append(Check(f"export {export.name}", "settings", FAIL, _text(e), _fix_for(e)))
    source = plans[0].source if plans else None
    session = None
    if isinstance(source, NetworkSource):
        found, session = _source_checks(source)
        checks += found
        if session is not None:
            checks += _slot_checks(source, session)
    for plan in plans:
        checks += _export_checks(plan, session)
    seen: set[str] = set()
    for plan in plans:
        if plan.destination.url not in seen and not plan.destination.url.startswith("stdout"):
            seen.add(plan.destination.url)
            checks.append(_destination_check(plan))
    checks.append(_state_check(loaded))
    executor = loaded.config.executor
    address = dask_scheduler or (executor.address if executor.type == "dask" else None)
    if address:
        checks += _cluster_checks(address)
    return checks


def _cluster_checks(address: str) -> list[Check]:
    """The scheduler answers, has workers, and every worker runs this rivet."""
    from rivet.core.version import __version__
    from rivet.execution.cluster import Cluster

    try:
        cluster = Cluster.connect(address)
    except Exception as e:  # noqa: BLE001 - an unreachable cluster is one failed check
        return [Check("cluster", "scheduler", FAIL, _text(e), "start the scheduler, or fix the address")]
    try:
        versions = cluster.worker_versions()
    finally:
        cluster.close()
    checks = [Check("cluster", "scheduler", OK, f"{address} answers, {len(versions)} worker(s)")]
    if not versions:
        return [*checks, Check("cluster", "workers", FAIL, "no worker", "start workers: dask worker " + address)]
    other = {worker: found for worker, found in versions.items() if found != __version__}
    if other:
        shown = ", ".join(f"{w}: {v or 'no rivet'}" for w, v in sorted(other.items()))
        fix = f"install rivet {__version__} on every worker"
        return [*checks, Check("cluster", "workers", FAIL, f"not rivet {__version__}: {shown}", fix)]
    return [*checks, Check("cluster", "workers", OK, f"every worker runs rivet {__version__}")]


def _text(error: BaseException) -> str:
    return redact_text(str(error) or type(error).__name__)


def _fix_for(error: BaseException) -> str | None:
    from rivet.errors import hint_for

    return hint_for(error)


def _address(source: NetworkSource) -> tuple[str | None, int]:
    """The host and port connections go to (host None: a Unix socket).

    Resolved as every connection resolves them: fields over the URL, key=value strings, the
    environment. Settings that do not resolve give None too; the login check says why.
    """
    try:
        target = source.target()
    except Exception:  # noqa: BLE001 - reported by the login check
        return None, 0
    if target["unix_socket"]:
        return None, 0
    return str(target["host"]), int(target["port"])


def _source_checks(source: NetworkSource) -> tuple[list[Check], Any]:
    """Name, port, login and channel of the source; the session when the login worked."""
    shown = source.redacted()
    host, port = _address(source)
    checks = []
    if source.ssh is not None:
        # Only the bastion reaches the database: the login below goes through the tunnel.
        checks.append(Check("source", "ssh", OK, f"through the SSH bastion {source.ssh.shown}"))
        host = None
    if host is not None:
        try:
            addresses = sorted({str(a[4][0]) for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
        except OSError as e:
            fix = "check the host name, and this machine's DNS"
            return [Check("source", "dns", FAIL, f"{host} does not resolve: {e}", fix)], None
        checks.append(Check("source", "dns", OK, f"{host} is {', '.join(addresses)}"))
        try:
            socket.create_connection((host, port), timeout=TCP_TIMEOUT_S).close()
        except OSError as e:
            fix = "check that the server listens there and that no firewall is in the way"
            return [*checks, Check("source", "tcp", FAIL, f"{host}:{port} does not answer: {e}", fix)], None
        checks.append(Check("source", "tcp", OK, f"{host}:{port} answers"))
    try:
        session = source.session()
    except Exception as e:  # noqa: BLE001 - reported as the failed check
        return [*checks, Check("source", "login", FAIL, f"{shown}: {_text(e)}", _fix_for(e))], None
    checks.append(Check("source", "login", OK, f"{shown}: logged in"))
    channel = session.channel
    status = WARN if channel in CHANNEL_FIXES else OK
    checks.append(Check("source", "channel", status, f"connection: {channel}", CHANNEL_FIXES.get(channel)))
    try:
        version = session.query("SELECT version()")[0][0]
        checks.append(Check("source", "server", OK, str(version)))
    except Exception as e:  # noqa: BLE001 - the version is information, not a requirement
        checks.append(Check("source", "server", WARN, f"version unknown: {_text(e)}"))
    return checks, session


# An idle slot keeping more log than this is named: the server keeps it until the slot is read.
SLOT_WARN_BYTES = 1 << 30


def _slot_checks(source: NetworkSource, session: Any) -> list[Check]:
    """Each logical replication slot on the server, and the log it holds back."""
    try:
        slots = source.catalog.replication_slots(session)
    except Exception as e:  # noqa: BLE001 - the slots are information, not a requirement
        return [Check("source", "replication slots", WARN, f"cannot list them: {_text(e)}")]
    return [slot_check(slot) for slot in slots]


def slot_check(slot: ReplicationSlot) -> Check:
    """The verdict on one slot: a slot that lost log it needed fails; an idle one holding much warns."""
    from rivet.execution.results import human_bytes

    held = human_bytes(slot.retained_bytes) if slot.retained_bytes is not None else "an unknown amount"
    state = "active" if slot.active else "idle"
    detail = f"{slot.name} ({slot.plugin}, {state}) keeps {held} of WAL on the server"
    drop = f"SELECT pg_drop_replication_slot('{slot.name}')"
    if slot.wal_status == "lost":
        fix = f"its changes cannot be read any more: drop it ({drop}) and capture again from a snapshot"
        return Check("source", f"slot {slot.name}", FAIL, f"{detail}; the WAL it needed is gone", fix)
    idle_and_large = not slot.active and (slot.retained_bytes or 0) > SLOT_WARN_BYTES
    if idle_and_large or slot.wal_status == "unreserved":
        fix = f"run the change capture that reads it, or drop it if nothing does ({drop})"
        return Check("source", f"slot {slot.name}", WARN, f"{detail}, and more until it is read", fix)
    return Check("source", f"slot {slot.name}", OK, detail)


def _export_checks(plan: ExportPlan, session: Any) -> list[Check]:
    """The export's query may be read, and holds the columns its mode names."""
    subject = f"export {plan.name}"
    try:
        if session is not None:
            # Runs the query for no rows: the server checks every privilege it needs.
            session.query(f"SELECT * FROM ({plan.query}) AS _rivet_doctor LIMIT 0")
        schema = plan.source.describe(plan.query, plan.overrides)
    except Exception as e:  # noqa: BLE001 - reported as the failed check
        fix = _fix_for(e)
        if "permission denied" in str(e).lower() or "command denied" in str(e).lower():
            fix = "grant the user SELECT on the tables of the query"
        return [Check(subject, "select", FAIL, _text(e), fix)]
    checks = [Check(subject, "select", OK, f"{len(schema)} column(s) readable")]
    if plan.changes is not None:
        checks.append(_log_check(plan))
    named = {
        "cursor_column": plan.cursor.column if plan.cursor else None,
        "cursor_fallback_column": plan.cursor.fallback if plan.cursor else None,
        "chunk_column": plan.chunking.column if plan.chunking else None,
        **{f"chunk_by_key {c}": c for c in (plan.chunking.keys if plan.chunking else ())},
        "time_column": plan.window.column if plan.window else None,
        **{f"partition_by {c}": c for c in (plan.partitioning.columns if plan.partitioning else ())},
    }
    columns = set(schema.names)
    for key, column in named.items():
        if column is None:
            continue
        if column in columns:
            checks.append(Check(subject, "columns", OK, f"{key} {column} is in the result"))
        else:
            some = sorted(columns)
            fix = f"name a column of the query's result: {', '.join(some[:8])}{', ...' if len(some) > 8 else ''}"
            checks.append(Check(subject, "columns", FAIL, f"{key} {column} is not in the result", fix))
    return checks


def _log_check(plan: ExportPlan) -> Check:
    """A change capture's server logs whole rows."""
    subject = f"export {plan.name}"
    try:
        feed = plan.change_feed()
        try:
            return Check(subject, "log", OK, feed.check_server())
        finally:
            feed.close()
    except Exception as e:  # noqa: BLE001 - reported as the failed check
        return Check(subject, "log", FAIL, _text(e), _fix_for(e))


def _destination_check(plan: ExportPlan) -> Check:
    """Write, read back and remove a probe file where the export writes."""
    from rivet.storage.destinations import open_destination

    subject = f"destination {plan.destination.shown}"
    probe = f"_rivet/doctor-{secrets.token_hex(4)}.probe"
    payload = b"rivet doctor probe\n"
    try:
        destination = open_destination(plan.destination)
        destination.prepare()
        destination.write_file(probe, payload)
        try:
            back = destination.read_file(probe)
        finally:
            destination.remove([probe])
        destination.cleanup()
    except Exception as e:  # noqa: BLE001 - reported as the failed check
        return Check(subject, "write", FAIL, _text(e), "check the path or bucket, the credentials and free space")
    if back != payload:
        return Check(subject, "write", FAIL, "a probe file read back differently", "check the storage")
    return Check(subject, "write", OK, "a probe file was written, read back and removed")


def _state_check(loaded: LoadedConfig) -> Check:
    """The state store opens at the current schema and takes a write."""
    from rivet.state import MIGRATIONS, StateStore, state_location

    location = state_location(loaded.base_dir)
    try:
        store = StateStore(location)
        try:
            with store.transaction():
                pass
            where, version = store.where, store.version
        finally:
            store.close()
    except Exception as e:  # noqa: BLE001 - reported as the failed check
        return Check("state", "open", FAIL, _text(e), _fix_for(e))
    return Check("state", "open", OK, f"{where}: schema {version} of {len(MIGRATIONS)}, writable")


def as_dicts(checks: list[Check]) -> Iterator[dict[str, Any]]:
    """The checks as JSON-ready dicts."""
    return (asdict(c) for c in checks)


MARKS: dict[str, str] = {OK: "✓", WARN: "!", FAIL: "✗"}
Show = Callable[[str], None]


def render(checks: list[Check], show: Show) -> None:
    """One line per check; a failure's fix on the line below."""
    for c in checks:
        show(f"{MARKS[c.status]} {c.subject}: {c.check}: {c.detail}")
        if c.fix and c.status != OK:
            show(f"    fix: {c.fix}")
