"""Sealed plans: ``rivet plan`` resolves exports into a JSON document, ``rivet apply`` runs it.

A plan holds, per export, the resolved query and strategy, the chunk boundaries, the
incremental cursor it starts from, a fingerprint of the config, an estimate of the
rows and a wave. Credentials never enter it: ``apply`` reads them again from the
config the plan names. ``apply`` refuses a plan past its expiry, an export whose
config changed since, and an incremental export whose cursor moved since.

The plan is sealed with an HMAC (SHA-256) keyed by a local secret, ``RIVET_PLAN_KEY``
or ``~/.config/rivet/plan_key`` (made on first use, readable by its owner only):
``apply`` refuses a plan whose chunk SQL, config path or anything else changed after
it was made, before it reads anything from it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rivet.config import ExportConfig, LoadedConfig, load_config
from rivet.core.runinfo import iso, utc_now
from rivet.core.version import __version__
from rivet.errors import ConfigError
from rivet.plan.chunks import Chunk
from rivet.plan.export import ExportPlan, build_plan
from rivet.state import StateStore, state_location

PLAN_VERSION = 1
VALID_FOR = dt.timedelta(hours=24)
# Estimated rows below which an export goes in the first wave, and below which in the second.
SMALL_ROWS = 1_000_000
MEDIUM_ROWS = 10_000_000


def _strategy(plan: ExportPlan) -> str:
    if plan.chunking is not None:
        return "key-chunks"
    if plan.parallel > 1:
        return "page-chunks"
    return plan.mode


def _row_estimate(plan: ExportPlan) -> int | None:
    """The optimizer's estimate of the rows (None when the source gives none)."""
    sql = plan.source.dialect.estimate_query(plan.query)
    if sql is None:
        return None
    rows = plan.server.session().query(sql)
    try:
        return plan.source.dialect.rows_in_plan(json.loads(rows[0][0] or "[]"))
    except (IndexError, ValueError):
        return None


# The wave of parallel or large exports: the ones that weigh on their source.
HEAVY_WAVE = 3


def _wave(export: ExportConfig, plan: ExportPlan, estimate: int | None) -> int:
    if export.wave is not None:
        return export.wave
    if plan.is_parallel or (estimate is not None and estimate >= MEDIUM_ROWS):
        return HEAVY_WAVE
    if estimate is None or estimate >= SMALL_ROWS:
        return 2
    return 1


class RecordingSession:
    """A session that notes every planning statement and how long it took (shown in the plan)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.statements: list[dict[str, Any]] = []

    def query(self, sql: str) -> list[list[str | None]]:
        """Run ``sql`` on the session, noting it."""
        started = time.perf_counter()
        try:
            return self._session.query(sql)
        finally:
            self.statements.append({"sql": sql, "seconds": round(time.perf_counter() - started, 4)})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _chunks(plan: ExportPlan, mark: str | None) -> tuple[list[Chunk] | None, list[dict[str, Any]]]:
    """The planned chunks, and the planning statements that found them (``mark``: keyset_incremental's)."""
    if not plan.is_parallel:
        return None, []
    import pyarrow as pa

    from rivet.plan.chunks import plan_chunks

    session = RecordingSession(plan.server.session())
    decimal, text = plan.server.split_overrides(plan.overrides)
    schema = pa.schema(session.describe(plan.query, decimal, text))
    return plan_chunks(plan, session, schema, mark), session.statements


KEY_VARIABLE = "RIVET_PLAN_KEY"


def plan_key() -> bytes:
    """The secret plans are sealed with: ``RIVET_PLAN_KEY``, else a key file of this user."""
    if value := os.environ.get(KEY_VARIABLE):
        return value.encode()
    path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "rivet" / "plan_key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
    return path.read_bytes()


def seal(document: dict[str, Any]) -> str:
    """The signature of a plan document (everything but its ``signature``)."""
    body = {k: v for k, v in document.items() if k != "signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "hmac-sha256:" + hmac.new(plan_key(), text.encode(), hashlib.sha256).hexdigest()


def make_plan(loaded: LoadedConfig, names: list[str] | None = None) -> dict[str, Any]:
    """The plan document for the selected exports (all by default)."""
    if loaded.path is None:
        raise ConfigError("a plan needs a config file, so that apply can read the credentials again")
    created = utc_now()
    selected = [loaded.export(n) for n in names] if names else list(loaded.config.exports)
    state = StateStore(state_location(loaded.base_dir))
    exports = []
    try:
        for export in selected:
            plan = build_plan(loaded, export, created)
            estimate = _row_estimate(plan)
            cursor = state.cursor(plan.key) if plan.cursor is not None or plan.keyset_incremental else None
            chunks, planning = _chunks(plan, cursor.value if cursor and plan.keyset_incremental else None)
            exports.append(
                {
                    "export": plan.name,
                    "wave": _wave(export, plan, estimate),
                    "strategy": _strategy(plan),
                    "fingerprint": plan.fingerprint(),
                    "row_estimate": estimate,
                    "cursor": cursor.sql_literal if cursor else None,
                    "chunks": [dataclasses.asdict(c) for c in chunks] if chunks is not None else None,
                    "planning_statements": planning,
                    "source_group": export.source_group,
                    "reconcile_required": export.reconcile_required,
                    "resolved": plan.describe(),
                }
            )
    finally:
        state.close()
    document = {
        "plan_version": PLAN_VERSION,
        "rivet_version": __version__,
        "plan_id": uuid.uuid4().hex,
        "created_at": iso(created),
        "expires_at": iso(created + VALID_FOR),
        "config": str(Path(loaded.path).resolve()),
        "environment": loaded.config.source.environment,
        # Within a wave, exports that must be reconciled afterwards go last.
        "exports": sorted(exports, key=lambda e: (e["wave"], e["reconcile_required"], e["export"])),
        "warnings": group_warnings(exports),
    }
    return {**document, "signature": seal(document)}


def group_warnings(exports: list[dict[str, Any]]) -> list[str]:
    """Heavy exports that share a ``source_group`` (one replica or host) in one wave."""
    heavy: dict[tuple[int, str], list[str]] = {}
    for e in exports:
        if e["source_group"] and e["wave"] >= HEAVY_WAVE:
            heavy.setdefault((e["wave"], e["source_group"]), []).append(e["export"])
    return [
        f"exports {', '.join(sorted(names))} share source_group {group} and are all heavy in wave {wave}: "
        "give them different waves (wave: N) to spare that source"
        for (wave, group), names in sorted(heavy.items())
        if len(names) > 1
    ]


@dataclass(frozen=True)
class SealedPlan:
    """A plan document checked against the config and the state it will run with."""

    document: dict[str, Any]
    loaded: LoadedConfig
    plans: dict[str, ExportPlan]

    def waves(self) -> list[list[str]]:
        """Export names grouped by wave, in wave order."""
        grouped: dict[int, list[str]] = {}
        for e in self.document["exports"]:
            grouped.setdefault(int(e["wave"]), []).append(e["export"])
        return [grouped[w] for w in sorted(grouped)]


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def load_plan(path: Path, *, force: bool = False, names: list[str] | None = None) -> SealedPlan:
    """Read a plan and refuse it if stale, if its config changed, or if a cursor moved."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read plan {path}: {e}") from None
    if not isinstance(document, dict) or document.get("plan_version") != PLAN_VERSION:
        raise ConfigError(f"{path} is not a rivet plan of version {PLAN_VERSION}")
    if not hmac.compare_digest(str(document.get("signature", "")), seal(document)):
        raise ConfigError(
            f"plan {path} was changed after it was made, or sealed with another key (its signature does not "
            f"match; {KEY_VARIABLE} shares the key between machines); make a new plan with `rivet plan`"
        )
    expires = _parse_time(document["expires_at"])
    if utc_now() > expires and not force:
        raise ConfigError(
            f"plan {path} expired at {document['expires_at']}; make a new one with `rivet plan`, or pass --force"
        )
    loaded = load_config(document["config"])
    wanted = set(names) if names else None
    plans: dict[str, ExportPlan] = {}
    state = StateStore(state_location(loaded.base_dir))
    try:
        for entry in document["exports"]:
            name = entry["export"]
            if wanted is not None and name not in wanted:
                continue
            plan = build_plan(loaded, loaded.export(name))
            if plan.fingerprint() != entry["fingerprint"]:
                raise ConfigError(
                    f"export '{name}' changed in {document['config']} since the plan was made; "
                    "make a new plan with `rivet plan`"
                )
            if plan.cursor is not None or plan.keyset_incremental:
                stored = state.cursor(plan.key)
                now = stored.sql_literal if stored else None
                if now != entry["cursor"]:
                    raise ConfigError(
                        f"the cursor of export '{name}' moved since the plan was made ({entry['cursor']} -> {now}); "
                        "make a new plan with `rivet plan` (--force does not skip this check)"
                    )
            if entry.get("chunks") is not None:
                plan = dataclasses.replace(plan, chunks=tuple(Chunk(**c) for c in entry["chunks"]))
            plans[name] = plan
    finally:
        state.close()
    if wanted is not None and wanted - set(plans):
        raise ConfigError(f"the plan has no export named {', '.join(sorted(wanted - set(plans)))}")
    document = {**document, "exports": [e for e in document["exports"] if e["export"] in plans]}
    return SealedPlan(document, loaded, plans)


def apply_plan(
    sealed: SealedPlan,
    plan_path: Path,
    *,
    processes: bool,
    max_processes: int | None = None,
    force: bool = False,
    observer: Any = None,
) -> list[Any]:
    """Run a sealed plan wave by wave; within a wave, exports run in processes when asked.

    A wave starts only when the previous one has finished (whatever its outcome).
    """
    import sys

    from rivet.app.fanout import run_processes
    from rivet.core.events import CallbackObserver
    from rivet.execution import run_export
    from rivet.ui.cards import Cards

    results = []
    for wave in sealed.waves():
        if processes and len(wave) > 1:
            command = [sys.executable, "-m", "rivet", "apply", str(plan_path.resolve()), "--events"]
            if force:
                command.append("--force")
            results += run_processes(sealed.loaded, wave, max_processes=max_processes, command=command)
            continue
        state = StateStore(state_location(sealed.loaded.base_dir))
        try:
            with Cards(wave, live=False if observer is not None else None) as cards:
                events = observer or CallbackObserver(cards.event)
                for name in wave:
                    result = run_export(sealed.plans[name], state, observer=events)
                    if observer is None:
                        cards.finish(result)
                    results.append(result)
        finally:
            state.close()
    return results
