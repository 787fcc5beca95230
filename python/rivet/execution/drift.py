"""Schema and shape drift: the output compared with what the export last published.

Schema drift (columns added, removed or retyped; meta columns aside) is found before
any row is read, so ``on_schema_drift: fail`` publishes nothing (exit code 4). With a
state store the last published schema is kept there, written in the run's commit;
without one, the destination's manifest is the reference. Shape drift: the widest
value of each text or binary column, against the widest any earlier run published;
``shape_drift_warn_factor`` times wider is a warning.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from rivet.errors import SchemaDriftError
from rivet.output.meta import EXPORTED_AT, ROW_HASH

if TYPE_CHECKING:
    from rivet.core.events import Observer
    from rivet.plan.export import ExportPlan
    from rivet.state import StateStore
    from rivet.storage.destinations import Destination

log = logging.getLogger("rivet")


def columns_of(schema: pa.Schema) -> list[dict[str, str]]:
    """The columns drift compares: name and Arrow type."""
    return [{"name": f.name, "arrow_type": str(f.type)} for f in schema]


@dataclass(frozen=True)
class Drift:
    """How the output's columns differ from the last published ones."""

    added: list[str]
    removed: list[str]
    retyped: list[str]
    # The names of the added columns (``added`` describes them with their types).
    added_names: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def describe(self) -> str:
        """E.g. ``1 added (note: string), 1 retyped (amount: decimal128(10, 2) -> double)``."""
        parts = [
            f"{len(items)} {label} ({', '.join(items)})"
            for label, items in (("added", self.added), ("removed", self.removed), ("retyped", self.retyped))
            if items
        ]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, list[str]]:
        """For events and the run summary."""
        return {"added": self.added, "removed": self.removed, "retyped": self.retyped}


def compare(before: list[dict[str, Any]], now: list[dict[str, str]]) -> Drift:
    """Columns added, removed and retyped from ``before`` to ``now``."""
    old = {c["name"]: c["arrow_type"] for c in before}
    new = {c["name"]: c["arrow_type"] for c in now}
    return Drift(
        added=[f"{n}: {t}" for n, t in new.items() if n not in old],
        removed=[f"{n}: {t}" for n, t in old.items() if n not in new],
        retyped=[f"{n}: {old[n]} -> {t}" for n, t in new.items() if n in old and old[n] != t],
        added_names=[n for n in new if n not in old],
    )


@dataclass
class DriftCheck:
    """One run's drift checks: the schema before reading, value widths while writing."""

    plan: ExportPlan
    state: StateStore | None
    events: Observer
    columns: list[dict[str, str]] = field(default_factory=list)
    drift: Drift | None = None
    widest: dict[str, int] = field(default_factory=dict)
    # Note widths without a state store: on a cluster's worker, for the coordinator's check.
    keep_widths: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check_schema(self, schema: pa.Schema, destination: Destination) -> None:
        """Compare ``schema`` (the source's columns) with the last published one; ``fail`` raises."""
        self.columns = columns_of(schema)
        before = self._published(destination)
        if before is None:
            return
        drift = compare(before, self.columns)
        if not drift:
            return
        self.drift = drift
        policy, name = self.plan.on_schema_drift, self.plan.name
        self.events.emit("schema_drift", name, policy=policy, **drift.to_dict())
        if policy == "fail":
            raise SchemaDriftError(
                f"export '{name}': schema drift detected, nothing published: {drift.describe()} "
                "(on_schema_drift: fail; set warn or continue to accept the new schema)",
                drift=drift.to_dict(),
            )
        if policy == "evolve" and self.plan.appends and (drift.removed or drift.retyped):
            raise SchemaDriftError(
                f"export '{name}': schema drift detected, nothing published: {drift.describe()}; "
                "on_schema_drift: evolve adds columns to the table, and an appending run cannot remove or "
                "retype one (a full run replaces the table's columns)",
                drift=drift.to_dict(),
            )
        if policy == "warn":
            log.warning("export %s: schema drift: %s", name, drift.describe())
        elif policy == "evolve":
            log.info("export %s: schema drift: %s; the table's columns follow", name, drift.describe())

    def _published(self, destination: Destination) -> list[dict[str, Any]] | None:
        if self.state is not None:
            return self.state.published_schema(self.plan.key)
        raw = destination.read_file(destination.spec.manifest_name)
        if raw is None:
            return None
        try:
            columns = list(json.loads(raw)["schema"])
        except (ValueError, KeyError, TypeError):
            return None
        # The manifest lists the output, meta columns included; drift compares the query's columns.
        return [c for c in columns if c.get("name") not in (EXPORTED_AT, ROW_HASH)]

    def observe(self, batch: pa.RecordBatch) -> None:
        """Note the widest value of each text and binary column (kept only with a state store)."""
        if not self.plan.shape_drift_warn_factor or (self.state is None and not self.keep_widths):
            return
        for f, column in zip(batch.schema, batch.columns, strict=True):
            if column.null_count == len(column) or not _is_variable_width(f.type):
                continue
            self.note_widths({f.name: pc.max(pc.binary_length(column)).as_py() or 0})

    def note_widths(self, widths: dict[str, int]) -> None:
        """Keep the widest value of each column seen so far."""
        with self._lock:
            for name, width in widths.items():
                if width > self.widest.get(name, 0):
                    self.widest[name] = width

    def warn_about_shape(self) -> None:
        """Warn when a column's widest value is ``shape_drift_warn_factor`` times the widest published."""
        factor = self.plan.shape_drift_warn_factor
        if not factor or self.state is None:
            return
        known = self.state.widest_values(self.plan.key)
        for column, width in sorted(self.widest.items()):
            before = known.get(column)
            if before and width > before * factor:
                message = f"column {column}: a value of {width} bytes, over {factor}x the widest before ({before})"
                log.warning("export %s: shape drift: %s", self.plan.name, message)
                self.events.emit("shape_drift", self.plan.name, column=column, bytes=width, before=before)

    def commit(self, run_id: str, now: str) -> None:
        """Remember this run's schema and widths (inside the run's state commit)."""
        if self.state is None:
            return
        self.state.save_schema(self.plan.key, self.columns, run_id, now)
        if self.widest:
            self.state.save_widest_values(self.plan.key, self.widest)


def _is_variable_width(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
